"""The cluster as flannel sees it: nodes, VTEPs, pods, and each node's own tables.

Rule: pure. Texts in (kubectl JSON, what each node printed), one ``Topology`` out, with
lookups by IP and MAC; it is saved and loaded as JSON data (the file I/O is the caller's).
Every fact records the source it came from. Where two sources disagree (the kubectl
annotation says one VTEP MAC, the node's flannel.1 has another) the node's kernel wins,
since it is what the packets obey, and the disagreement is kept as a ``Conflict``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from flannelcap._errors import TopologyError
from flannelcap.topology.kube import (
    CalicoNode,
    Endpoint,
    KubeNode,
    KubePod,
    Service,
    parse_calico_nodes,
    parse_kubectl_nodes,
    parse_kubectl_pods,
    parse_kubectl_services,
)
from flannelcap.topology.tables import (
    FdbEntry,
    Link,
    NeighEntry,
    Route,
    SubnetEnv,
    VxlanInfo,
    parse_fdb,
    parse_links,
    parse_neigh,
    parse_net_conf,
    parse_routes,
    parse_subnet_env,
    vxlan_device,
)

FLANNEL_DEVICE = "flannel.1"
SUBNET_ENV = "/run/flannel/subnet.env"
TOPOLOGY_FORMAT = "flannelcap-topology/1"


@dataclass(frozen=True, slots=True)
class TableCommand:
    """A table a node (or pod) prints: its kind, the file stem it is saved under, and the
    command in its plain-text form (``json_argv`` is the ``-j`` form flannelcap reads)."""

    kind: str
    stem: str
    argv: tuple[str, ...]
    has_json: bool = True  # iproute2 prints JSON with -j; a file (subnet.env) is read as it is

    @property
    def title(self) -> str:
        """The command as a student types it, e.g. ``ip neigh show dev flannel.1``."""
        return " ".join(self.argv)

    @property
    def json_argv(self) -> tuple[str, ...]:
        """The same command with ``-j`` (iproute2's JSON output), or as it is without one."""
        return (self.argv[0], "-j", *self.argv[1:]) if self.has_json else self.argv


NODE_TABLES: dict[str, TableCommand] = {
    t.kind: t
    for t in (
        TableCommand("neigh", "ip-neigh-flannel.1", ("ip", "neigh", "show", "dev", FLANNEL_DEVICE)),
        TableCommand("fdb", "bridge-fdb-flannel.1", ("bridge", "fdb", "show", "dev", FLANNEL_DEVICE)),
        TableCommand("flannel", "ip-d-addr-flannel.1", ("ip", "-d", "addr", "show", FLANNEL_DEVICE)),
        TableCommand("routes", "ip-route", ("ip", "route")),
        TableCommand("cni0", "ip-addr-cni0", ("ip", "addr", "show", "cni0")),
        TableCommand("links", "ip-link", ("ip", "link")),
        TableCommand("subnet", "subnet.env", ("cat", SUBNET_ENV), has_json=False),
    )
}
# Tables a node may lack without anything being wrong: cni0 exists only once a pod runs there,
# subnet.env only where flanneld runs (not in the lab, not on host-gw-only setups).
OPTIONAL_NODE_TABLES = frozenset({"cni0", "subnet"})
POD_TABLES: dict[str, TableCommand] = {
    t.kind: t
    for t in (
        TableCommand("addr", "ip-addr", ("ip", "addr", "show")),
        TableCommand("routes", "ip-route", ("ip", "route", "show")),
    )
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """A node of the overlay: its underlay IP and its VTEP."""

    name: str
    public_ip: str | None = None
    vtep_mac: str | None = None
    vtep_ip: str | None = None
    pod_cidr: str | None = None
    cni0_ip: str | None = None
    vni: int | None = None
    dstport: int | None = None
    mtu: int | None = None
    backend: str | None = None  # the overlay (lab/_backends_plan names): from kubectl's backend-type or ip -d link
    sources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pod:
    """A pod: its IP, node, and (where the node's tables tell) its veth and gateway."""

    name: str
    namespace: str = "default"
    ip: str | None = None
    node: str | None = None
    veth: str | None = None
    gateway: str | None = None
    source: str = ""
    labels: tuple[tuple[str, str], ...] = ()  # kubectl's metadata.labels, sorted


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeView:
    """One node's own tables. ``None`` where the table was not collected."""

    node: str
    neigh: tuple[NeighEntry, ...] | None = None
    fdb: tuple[FdbEntry, ...] | None = None
    routes: tuple[Route, ...] | None = None
    flannel: Link | None = None
    cni0: Link | None = None
    links: tuple[Link, ...] | None = None
    subnet: SubnetEnv | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Conflict:
    """Two sources disagree about one fact of a node."""

    node: str
    field: str
    values: dict[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Topology:
    """Nodes, pods, and each node's view, with lookups by address."""

    nodes: tuple[Node, ...] = ()
    pods: tuple[Pod, ...] = ()
    views: tuple[NodeView, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    notes: tuple[str, ...] = ()  # what a source held but could not be read (one odd annotation)
    services: tuple[Service, ...] = ()  # from kubectl get svc,endpointslices

    def node(self, name: str) -> Node | None:
        """The node called ``name``."""
        return next((n for n in self.nodes if n.name == name), None)

    def view(self, name: str) -> NodeView | None:
        """The tables node ``name`` printed."""
        return next((v for v in self.views if v.node == name), None)

    def node_by_ip(self, ip: str | None) -> Node | None:
        """The node whose underlay (public) IP is ``ip``."""
        return next((n for n in self.nodes if ip and n.public_ip == ip), None)

    def node_by_vtep_mac(self, mac: str | None) -> Node | None:
        """The node whose flannel.1 has MAC ``mac``."""
        mac = (mac or "").lower()
        return next((n for n in self.nodes if mac and n.vtep_mac == mac), None)

    def node_by_vtep_ip(self, ip: str | None) -> Node | None:
        """The node whose flannel.1 has address ``ip`` (``10.42.N.0``)."""
        return next((n for n in self.nodes if ip and n.vtep_ip == ip), None)

    def node_of_pod_ip(self, ip: str | None) -> Node | None:
        """The node whose pod CIDR holds ``ip``."""
        if not ip:
            return None
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None
        for node in self.nodes:
            network = _network(node.pod_cidr) if node.pod_cidr else None
            if network is not None and address in network:
                return node
        return None

    def pod_by_ip(self, ip: str | None) -> Pod | None:
        """The pod with IP ``ip``."""
        return next((p for p in self.pods if ip and p.ip == ip), None)

    def pod(self, name_or_ip: str) -> Pod | None:
        """A pod by name (``ns/name`` or ``name``) or by IP."""
        namespace, _, name = name_or_ip.rpartition("/")
        for pod in self.pods:
            if pod.ip == name_or_ip or (pod.name == name and (not namespace or pod.namespace == namespace)):
                return pod
        return None

    def service_by_ip(self, ip: str | None) -> Service | None:
        """The Service whose ClusterIP or LoadBalancer/external IP is ``ip``."""
        return next((s for s in self.services if ip and (ip in s.cluster_ips or ip in s.external_ips)), None)

    def lan_macs(self) -> dict[str, str]:
        """Each node's LAN interface MAC → node name, from its ``ip link``: the interface
        flannel.1 sends through (``ip -d link``'s ``dev``), else ``eth0``."""
        macs = {}
        for view in self.views:
            underlay = view.flannel.vxlan.underlay if view.flannel and view.flannel.vxlan else None
            for link in view.links or ():
                if link.mac and link.name in {underlay or "eth0", "eth0"}:
                    macs[link.mac.lower()] = view.node
        return macs

    def to_json(self) -> dict[str, Any]:
        """The topology as JSON-ready data."""
        return {"format": TOPOLOGY_FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Topology:
        """Inverse of ``to_json``.

        Raises:
            TopologyError: the data is not a flannelcap topology.
        """
        if not isinstance(data, Mapping) or data.get("format") != TOPOLOGY_FORMAT:
            raise TopologyError("not a flannelcap topology file (make one with 'flannelcap map … -o topo.json')")
        try:
            return cls(
                nodes=tuple(Node(**n) for n in data["nodes"]),
                pods=tuple(Pod(**{**p, "labels": tuple(map(tuple, p.get("labels", ())))}) for p in data["pods"]),
                views=tuple(_view_from_json(v) for v in data["views"]),
                conflicts=tuple(Conflict(**c) for c in data["conflicts"]),
                notes=tuple(str(n) for n in data.get("notes", ())),
                services=tuple(_service_from_json(s) for s in data.get("services", ())),
            )
        except (KeyError, TypeError) as exc:
            raise TopologyError(f"damaged topology file: {exc}") from exc


def _service_from_json(data: dict[str, Any]) -> Service:
    tuples = {k: tuple(v) for k, v in data.items() if isinstance(v, list) and k != "endpoints"}
    endpoints = tuple(Endpoint(**e) for e in data.get("endpoints", ()))
    return Service(**{**data, **tuples, "endpoints": endpoints})


def _link_from_json(data: dict[str, Any] | None) -> Link | None:
    if data is None:
        return None
    vxlan = VxlanInfo(**data["vxlan"]) if data.get("vxlan") else None
    return Link(**{**data, "vxlan": vxlan, "addresses": tuple(data["addresses"])})


def _view_from_json(data: dict[str, Any]) -> NodeView:
    def entries(key: str, kind: type) -> tuple[Any, ...] | None:
        items = data.get(key)
        if items is None:
            return None
        return tuple(kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in item.items()}) for item in items)

    links = data.get("links")
    return NodeView(
        node=data["node"],
        neigh=entries("neigh", NeighEntry),
        fdb=entries("fdb", FdbEntry),
        routes=entries("routes", Route),
        flannel=_link_from_json(data.get("flannel")),
        cni0=_link_from_json(data.get("cni0")),
        links=None if links is None else tuple(_link_from_json(item) for item in links),  # type: ignore[misc]
        subnet=SubnetEnv(**data["subnet"]) if data.get("subnet") else None,
    )


# -- building --------------------------------------------------------------------------


def build_topology(
    *,
    kubectl_nodes: str | None = None,
    kubectl_pods: str | None = None,
    node_tables: Mapping[str, Mapping[str, str]] | None = None,
    pod_tables: Mapping[str, Mapping[str, str]] | None = None,
    kubectl_services: Iterable[str] = (),
    net_conf: str | None = None,
    calico_nodes: str | None = None,
) -> Topology:
    """Build a topology from any mix of kubectl output and node tables.

    Args:
        kubectl_nodes: ``kubectl get nodes -o json``.
        kubectl_pods: ``kubectl get pods -A -o json`` or ``-o wide``.
        node_tables: per node name, table kind (a key of ``NODE_TABLES``) → printed text.
        pod_tables: per pod name, table kind (a key of ``POD_TABLES``) → printed text.
        kubectl_services: ``kubectl get svc,endpointslices -A -o json`` (one text, or one per kind).
        net_conf: flannel's ``net-conf.json``: the backend, VNI and port of every node.
        calico_nodes: Calico's Node resources (``calicoctl get nodes -o json``): addresses,
            VTEP MACs and tunnel addresses.

    Raises:
        TableParseError: a table cannot be read (the message names it, and the line).
        TopologyError: nothing was given to build from.
    """
    if not (kubectl_nodes or node_tables or calico_nodes):
        raise TopologyError("nothing to build a topology from: give node tables or kubectl output")
    kube_nodes = {n.name: n for n in parse_kubectl_nodes(kubectl_nodes)} if kubectl_nodes else {}
    calico = {n.name: n for n in parse_calico_nodes(calico_nodes)} if calico_nodes else {}
    views = {name: _view(name, tables) for name, tables in (node_tables or {}).items()}
    names = list(dict.fromkeys([*kube_nodes, *views, *calico]))
    facts = {name: _own_facts(name, views.get(name)) for name in names}
    _offer_peer_routes(facts, views.values(), kube_nodes.values())
    conf = parse_net_conf(net_conf) if net_conf else None
    for name in names:
        if name in kube_nodes:
            _offer_kubectl(facts[name], kube_nodes[name])
        if name in calico:
            _offer_calico(facts[name], calico[name])
        if conf is not None:
            _offer(facts[name], "backend", conf.backend, "net-conf.json (Backend.Type)")
            if conf.backend in VXLAN_BACKENDS:  # the udp backend's Port is no VXLAN port
                _offer(facts[name], "vni", conf.vni, "net-conf.json (Backend.VNI)")
                _offer(facts[name], "dstport", conf.port, "net-conf.json (Backend.Port)")
    conflicts: list[Conflict] = []
    nodes = tuple(_choose(name, facts[name], conflicts) for name in names)
    nodes += _peers_seen_from(views.values(), nodes)
    kube_pods = parse_kubectl_pods(kubectl_pods) if kubectl_pods else []
    pods = tuple(_pod(p, views, pod_tables or {}) for p in kube_pods)
    notes = tuple(note for node in kube_nodes.values() for note in node.notes)
    services = tuple(parse_kubectl_services(list(kubectl_services)))
    return Topology(
        nodes=nodes,
        pods=pods,
        views=tuple(views.values()),
        conflicts=tuple(conflicts),
        notes=notes,
        services=services,
    )


def _view(name: str, tables: Mapping[str, str]) -> NodeView:
    flannel = vxlan_device(tables["flannel"], FLANNEL_DEVICE) if "flannel" in tables else None
    cni0 = None
    if "cni0" in tables and tables["cni0"].strip():
        cni0 = next((link for link in parse_links(tables["cni0"]) if link.name == "cni0"), None)
    return NodeView(
        node=name,
        neigh=tuple(parse_neigh(tables["neigh"], allow_empty=True)) if "neigh" in tables else None,
        fdb=tuple(parse_fdb(tables["fdb"], allow_empty=True)) if "fdb" in tables else None,
        routes=tuple(parse_routes(tables["routes"])) if "routes" in tables else None,
        flannel=flannel,
        cni0=cni0,
        links=tuple(parse_links(tables["links"])) if "links" in tables else None,
        subnet=parse_subnet_env(tables["subnet"]) if tables.get("subnet", "").strip() else None,
    )


def _first_ipv4(addresses: tuple[str, ...]) -> ipaddress.IPv4Interface | None:
    for address in addresses:
        try:
            interface = ipaddress.ip_interface(address)
        except ValueError:
            continue  # not an address: the table was damaged; the rest may be fine
        if isinstance(interface, ipaddress.IPv4Interface):
            return interface
    return None


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


# Per fact (vtep_mac, pod_cidr, …), per source, the value that source gives. Sources are
# offered in order of trust: the node's own tables first (what its kernel obeys), then what
# its peers' tables say about it, then kubectl; the first offered is chosen.
Facts = dict[str, dict[str, Any]]


def _offer(facts: Facts, key: str, value: Any, source: str) -> None:
    if value is not None:
        facts.setdefault(key, {}).setdefault(source, value)


def _own_facts(name: str, view: NodeView | None) -> Facts:
    """What a node's own tables say about it: flannel.1, cni0, its cni0 route, subnet.env."""
    facts: Facts = {}
    if view is None:
        return facts
    if view.flannel is not None and view.flannel.vxlan is not None:
        source = f"{name}: {NODE_TABLES['flannel'].title}"
        vxlan_address = _first_ipv4(view.flannel.addresses)
        _offer(facts, "vtep_mac", view.flannel.mac, source)
        _offer(facts, "public_ip", view.flannel.vxlan.local, source)
        _offer(facts, "vni", view.flannel.vxlan.vni, source)
        _offer(facts, "dstport", view.flannel.vxlan.dstport, source)
        _offer(facts, "mtu", view.flannel.mtu, source)
        _offer(facts, "vtep_ip", str(vxlan_address.ip) if vxlan_address else None, source)
    backend, device = _backend_of_links(view.links or ())
    if backend is not None:
        source = f"{name}: ip -d link ({device})"
        _offer(facts, "backend", backend, source)
        link = next(link for link in view.links or () if link.name == device)
        if view.flannel is None and link.vxlan is not None:  # another VXLAN device than flannel.1 (Calico's)
            _offer(facts, "vtep_mac", link.mac, source)
            _offer(facts, "vni", link.vxlan.vni, source)
            _offer(facts, "dstport", link.vxlan.dstport, source)
            _offer(facts, "mtu", link.mtu, source)
    if view.cni0 is not None:
        cni0 = _first_ipv4(view.cni0.addresses)
        if cni0 is not None:
            source = f"{name}: {NODE_TABLES['cni0'].title}"
            _offer(facts, "cni0_ip", str(cni0.ip), source)
            _offer(facts, "pod_cidr", str(cni0.network), source)
    for route in view.routes or ():  # 10.244.1.0/24 dev cni0 proto kernel scope link src 10.244.1.1
        if route.dev == "cni0" and route.gateway is None and _network(route.dst) is not None:
            source = f"{name}: {NODE_TABLES['routes'].title} ({route.dst} dev cni0)"
            _offer(facts, "pod_cidr", str(_network(route.dst)), source)
            _offer(facts, "cni0_ip", route.src, source)
            break
    if view.subnet is not None and view.subnet.subnet:
        subnet = ipaddress.ip_interface(view.subnet.subnet)
        source = f"{name}: {SUBNET_ENV}"
        _offer(facts, "pod_cidr", str(subnet.network), source)
        _offer(facts, "cni0_ip", str(subnet.ip), source)  # FLANNEL_MTU is the pods' MTU, kept in the view
    return facts


def _offer_peer_routes(facts: Mapping[str, Facts], views: Iterable[NodeView], kube: Iterable[KubeNode]) -> None:
    """Each peer's route ``10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink`` names the pod CIDR
    of the node whose flannel.1 holds the via address (its VTEP IP, from its own tables or,
    as flannel assigns it, the first address of its kubectl podCIDR)."""
    by_vtep_ip = {
        str(value): name for name, node_facts in facts.items() for value in node_facts.get("vtep_ip", {}).values()
    }
    for node in kube:
        network = _network(node.pod_cidrs[0]) if node.pod_cidrs else None
        if network is not None:
            by_vtep_ip.setdefault(str(network.network_address), node.name)
    for view in views:
        for route in view.routes or ():
            owner = by_vtep_ip.get(route.gateway or "")
            network = _network(route.dst)
            if route.dev != FLANNEL_DEVICE or owner is None or owner == view.node or network is None:
                continue
            source = f"{view.node}: {NODE_TABLES['routes'].title} ({route.dst} via {route.gateway})"
            _offer(facts[owner], "pod_cidr", str(network), source)


VXLAN_BACKENDS = frozenset({"vxlan", "vxlan-gbp", "calico-vxlan"})
"""The backends whose device is a VXLAN device (its VNI and dstport are ``Node.vni``/``dstport``)."""

# The devices of each backend, by name (``ip -d link``): flannel's, Calico's and Cilium's.
_BACKEND_DEVICES = {
    "flannel.1": "vxlan",
    "vxlan.calico": "calico-vxlan",
    "cilium_vxlan": "vxlan",
    "flannel.ipip": "ipip",
    "flannel0": "udp",
    "flannel-wg": "wireguard",
    "cilium_geneve": "geneve",
}


def _backend_of_links(links: Iterable[Link]) -> tuple[str | None, str | None]:
    """The backend a node's devices show, and the device that shows it."""
    for link in links:
        backend = _BACKEND_DEVICES.get(link.name)
        if backend is None and link.kind == "geneve":
            backend = "geneve"
        if backend == "vxlan" and link.vxlan is not None and link.vxlan.gbp:
            backend = "vxlan-gbp"
        if backend is not None:
            return backend, link.name
    return None, None


def _offer_calico(facts: Facts, node: CalicoNode) -> None:
    source = "calicoctl get nodes"
    _offer(facts, "public_ip", node.address, f"{source} (bgp.ipv4Address)")
    _offer(facts, "vtep_mac", node.vxlan_mac, f"{source} (vxlanTunnelMACAddr)")
    _offer(facts, "vtep_ip", node.vxlan_ip, f"{source} (ipv4VXLANTunnelAddr)")
    backend = "calico-vxlan" if node.vxlan_mac else "ipip" if node.ipip_ip else None
    _offer(facts, "backend", backend, source)


def _offer_kubectl(facts: Facts, kube: KubeNode) -> None:
    source = "kubectl get nodes"
    learned = next(iter(facts.get("backend", {}).values()), None)
    if kube.backend_type and not (learned and learned.startswith(kube.backend_type)):  # vxlan-gbp is vxlan to flannel
        _offer(facts, "backend", kube.backend_type, f"{source} (backend-type)")
    _offer(facts, "vtep_mac", kube.vtep_mac, source)
    _offer(facts, "public_ip", kube.public_ip_overwrite or kube.public_ip or kube.internal_ip, source)
    _offer(facts, "vni", kube.vni, source)
    network = _network(kube.pod_cidrs[0]) if kube.pod_cidrs else None
    if network is not None:
        _offer(facts, "pod_cidr", str(network), source)
        _offer(facts, "vtep_ip", str(network.network_address), f"{source} (podCIDR)")
        _offer(facts, "cni0_ip", str(network.network_address + 1), f"{source} (podCIDR)")


def _choose(name: str, facts: Facts, conflicts: list[Conflict]) -> Node:
    """One node from its facts: the first source offered wins; disagreements are kept."""
    chosen: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, by_source in facts.items():
        source, value = next(iter(by_source.items()))
        chosen[key], sources[key] = value, source
        if len({str(v) for v in by_source.values()}) > 1:
            conflicts.append(Conflict(node=name, field=key, values={s: str(v) for s, v in by_source.items()}))
    return Node(name=name, sources=sources, **chosen)


def _peers_seen_from(views: Iterable[NodeView], known: tuple[Node, ...]) -> tuple[Node, ...]:
    """Nodes that no source names but whose VTEP a node's tables describe: the peer behind each
    PERMANENT neighbour entry on flannel.1, its FDB entry and its route. Named by their IP,
    since only kubectl knows their names (a capture on one node, without kubectl)."""
    peers: dict[str, Node] = {}
    known_macs = {n.vtep_mac for n in known if n.vtep_mac}
    known_ips = {n.public_ip for n in known if n.public_ip}
    for view in views:
        if view.neigh is None or view.fdb is None:
            continue
        for arp in view.neigh:
            forward = next((f for f in view.fdb if f.mac == arp.mac and f.dst), None)
            if arp.mac is None or forward is None or forward.dst is None:
                continue
            if arp.mac in known_macs or forward.dst in known_ips or forward.dst in peers:
                continue
            route = next((r for r in view.routes or () if r.gateway == arp.ip and r.dev == FLANNEL_DEVICE), None)
            source = f"{view.node}: {NODE_TABLES['neigh'].title} and {NODE_TABLES['fdb'].title}"
            peers[forward.dst] = Node(
                name=forward.dst,
                public_ip=forward.dst,
                vtep_mac=arp.mac,
                vtep_ip=arp.ip,
                pod_cidr=route.dst if route else None,
                sources={key: source for key in ("public_ip", "vtep_mac", "vtep_ip")}
                | ({"pod_cidr": f"{view.node}: {NODE_TABLES['routes'].title}"} if route else {}),
            )
    return tuple(peers.values())


def _pod(kube: KubePod, views: Mapping[str, NodeView], pod_tables: Mapping[str, Mapping[str, str]]) -> Pod:
    """A pod from kubectl, with its veth and gateway where the tables tell."""
    veth = gateway = None
    tables = pod_tables.get(kube.name, {})
    if "routes" in tables:
        default = next((r for r in parse_routes(tables["routes"]) if r.dst == "default"), None)
        gateway = default.gateway if default else None
    if "addr" in tables:
        eth0 = next((link for link in parse_links(tables["addr"]) if link.name == "eth0"), None)
        view = views.get(kube.node or "")
        if eth0 is not None and eth0.peer_ifindex is not None and view is not None and view.links:
            host = next((link for link in view.links if link.ifindex == eth0.peer_ifindex), None)
            veth = host.name if host else None
    return Pod(
        name=kube.name,
        namespace=kube.namespace,
        ip=kube.ip,
        node=kube.node,
        veth=veth,
        gateway=gateway,
        source="kubectl get pods",
        labels=kube.labels,
    )
