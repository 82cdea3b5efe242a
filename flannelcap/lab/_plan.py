"""What a namespace lab is made of: nodes, pods, addresses, and what kubectl would say.

Rule: pure. A ``LabSpec`` in, a ``LabPlan`` out; every name, address and MAC is derived here
so that the builder only executes and the tests can check the plan without root. Addresses
follow what flanneld and the bridge CNI give a k3s node (seed lab §2.3, §3.3): node N owns
``10.42.N.0/24``, its ``flannel.1`` holds ``10.42.N.0/32``, its ``cni0`` ``10.42.N.1/24``.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from dataclasses import asdict, dataclass
from typing import Any

from flannelcap._errors import LabError
from flannelcap.lab._backends_plan import BACKENDS, backend_annotations
from flannelcap.lab._services_plan import (
    COREDNS,
    COREDNS_HASH,
    COREDNS_HOST,
    REPLICA_HOST,
    TEMPLATE_HASH,
    TRAEFIK,
    TRAEFIK_HASH,
    TRAEFIK_HOST,
    TRAEFIK_NAMESPACE,
    WEB_SERVICE,
    ServicePlan,
    plan_kube_dns,
    plan_traefik,
    plan_web_service,
)

VXLAN_VNI = 1
VXLAN_PORT = 8472
FLANNEL_MTU = 1450
CLUSTER_CIDR = "10.42.0.0/16"
WEB_PORT = 80
MGMT_NAME = "xubulab"
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class LabSpec:
    """What the user asks for.

    Args:
        nodes: number of nodes (2 or more).
        prefix: namespace-name prefix; labs with different prefixes run side by side.
        first_node_ip: eth0 address of the first node; the others follow it.
        lan_prefix_len: prefix length of the LAN joining the nodes.
        services: add the seed's §4–5: three nginx replicas behind a LoadBalancer Service,
            a MetalLB-like announcer in every node, kube-proxy's DNAT.
        traffic_policy: the Service's ``externalTrafficPolicy`` (``Cluster`` or ``Local``).
        backend: the overlay (``_backends_plan.BACKENDS``): flannel's vxlan (the default),
            vxlan-gbp, host-gw, ipip, udp or wireguard, Cilium's geneve, Calico's VXLAN.
    """

    nodes: int = 3
    prefix: str = "fclab"
    first_node_ip: str = "192.168.1.38"
    lan_prefix_len: int = 24
    services: bool = False
    traffic_policy: str = "Cluster"
    backend: str = "vxlan"


@dataclass(frozen=True, slots=True, kw_only=True)
class NodePlan:
    """One node: its namespace, eth0 address and flannel addresses."""

    name: str
    netns: str
    index: int
    eth0_ip: str
    vtep_mac: str
    vtep_ip: str
    pod_cidr: str
    cni0_ip: str
    lan_port: str
    eth0_mac: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PodPlan:
    """One pod: a namespace joined to its node's cni0 by a veth pair."""

    name: str
    netns: str
    node: str
    ip: str
    host_veth: str
    serves_http: bool
    app: str = ""  # the pod's app label (default: its image)
    namespace: str = "default"
    routes_to: str = ""  # an ingress pod (Traefik): the Service whose pods it sends requests to


@dataclass(frozen=True, slots=True, kw_only=True)
class LabPlan:
    """Everything the lab consists of.

    ``mgmt_*`` is the management host on the LAN (the lab's ``xubulab``), from where a
    student reaches the nodes over SSH as ``ssh kpi093``.
    """

    prefix: str
    lan_netns: str
    lan_prefix_len: int
    nodes: tuple[NodePlan, ...]
    pods: tuple[PodPlan, ...]
    mgmt_name: str = MGMT_NAME
    mgmt_netns: str = ""
    mgmt_ip: str = ""
    services: tuple[ServicePlan, ...] = ()
    backend: str = "vxlan"

    def node(self, name: str) -> NodePlan:
        """The node called ``name``.

        Raises:
            LabError: no node has that name.
        """
        for node in self.nodes:
            if node.name == name:
                return node
        raise LabError(f"the lab has no node {name!r} (nodes: {', '.join(n.name for n in self.nodes)})")

    def pod(self, name: str) -> PodPlan:
        """The pod called ``name``.

        Raises:
            LabError: no pod has that name.
        """
        for pod in self.pods:
            if pod.name == name:
                return pod
        raise LabError(f"the lab has no pod {name!r} (pods: {', '.join(p.name for p in self.pods)})")

    def netns_of(self, name: str) -> str:
        """Namespace of the node or pod called ``name``.

        Raises:
            LabError: no node or pod has that name.
        """
        if name == self.mgmt_name and self.mgmt_netns:
            return self.mgmt_netns
        members: list[NodePlan | PodPlan] = [*self.nodes, *self.pods]
        for item in members:
            if item.name == name:
                return item.netns
        names = ", ".join([*(i.name for i in members), self.mgmt_name])
        raise LabError(f"the lab has no node or pod {name!r} (it has: {names})")

    @property
    def namespaces(self) -> tuple[str, ...]:
        """Every namespace of the lab, LAN first."""
        mgmt = (self.mgmt_netns,) if self.mgmt_netns else ()
        return (self.lan_netns, *mgmt, *(n.netns for n in self.nodes), *(p.netns for p in self.pods))

    @property
    def server_pod(self) -> PodPlan:
        """The HTTP server pod (nginx), on another node than the client."""
        return self.pod("nginx")

    @property
    def client_pod(self) -> PodPlan:
        """The client pod (busybox)."""
        return self.pod("busybox")

    @property
    def local_server_pod(self) -> PodPlan:
        """The second HTTP server, on the client's node (the same-node case)."""
        return self.pod("nginx-local")

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON-ready data."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabPlan:
        """Inverse of ``to_json``."""
        return cls(
            prefix=data["prefix"],
            lan_netns=data["lan_netns"],
            lan_prefix_len=data["lan_prefix_len"],
            nodes=tuple(NodePlan(**n) for n in data["nodes"]),
            pods=tuple(PodPlan(**p) for p in data["pods"]),
            mgmt_name=data.get("mgmt_name", MGMT_NAME),
            mgmt_netns=data.get("mgmt_netns", ""),
            mgmt_ip=data.get("mgmt_ip", ""),
            services=tuple(ServicePlan(**{**s, "endpoints": tuple(s["endpoints"])}) for s in data.get("services", ())),
            backend=data.get("backend", "vxlan"),
        )


def vtep_mac(prefix: str, node: str) -> str:
    """A stable, locally administered unicast MAC for a node's flannel.1 (``node``), or for
    another of its interfaces (``node/eth0``)."""
    digest = hashlib.sha256(f"{prefix}/{node}".encode()).digest()
    first = (digest[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in (first, *digest[1:6]))


def _veth_name(prefix: str, pod: str) -> str:
    return "veth" + hashlib.sha256(f"{prefix}/{pod}".encode()).hexdigest()[:8]


def plan_lab(spec: LabSpec) -> LabPlan:
    """Derive every name and address of a lab from the user's spec.

    Raises:
        LabError: the spec cannot make a lab (too few nodes, bad prefix or address).
    """
    if not _PREFIX_RE.match(spec.prefix):
        raise LabError(f"lab prefix {spec.prefix!r} must be 1-10 lower-case letters or digits, starting with a letter")
    if not 2 <= spec.nodes <= 9:
        raise LabError(f"a lab needs 2 to 9 nodes, not {spec.nodes}")
    if spec.backend not in BACKENDS:
        raise LabError(f"no backend {spec.backend!r}: choose from {', '.join(BACKENDS)}")
    try:
        first = ipaddress.IPv4Address(spec.first_node_ip)
        lan = ipaddress.IPv4Network(f"{first}/{spec.lan_prefix_len}", strict=False)
    except ValueError as exc:
        raise LabError(f"bad node address {spec.first_node_ip!r}: {exc}") from exc
    nodes = []
    for index in range(spec.nodes):
        address = first + index
        if address not in lan or address in (lan.network_address, lan.broadcast_address):
            raise LabError(f"{spec.nodes} nodes from {first} do not fit in {lan}")
        name = f"kpi{91 + index:03d}"
        nodes.append(
            NodePlan(
                name=name,
                netns=f"{spec.prefix}-{name}",
                index=index,
                eth0_ip=str(address),
                vtep_mac=vtep_mac(spec.prefix, name),
                vtep_ip=f"10.42.{index}.0",
                pod_cidr=f"10.42.{index}.0/24",
                cni0_ip=f"10.42.{index}.1",
                lan_port=f"lan{index}",
                eth0_mac=vtep_mac(spec.prefix, f"{name}/eth0"),
            )
        )
    server_node = nodes[1]
    client_node = nodes[2] if len(nodes) > 2 else nodes[0]
    placements: tuple[tuple[str, NodePlan, int, bool], ...] = (
        ("nginx", server_node, 2, True),
        ("busybox", client_node, 2, False),
        ("nginx-local", client_node, 3, True),
    )
    services: tuple[ServicePlan, ...] = ()
    if spec.services:
        lan_net = ipaddress.IPv4Network(f"{first}/{spec.lan_prefix_len}", strict=False)
        web = plan_web_service([n.name for n in nodes], lan_net, spec.traffic_policy)
        traefik = plan_traefik([n.name for n in nodes], lan_net)
        kube_dns = plan_kube_dns()
        services = (kube_dns, traefik, web)
        placements += tuple((name, nodes[i], REPLICA_HOST, True) for i, name in enumerate(web.endpoints))
        placements += ((traefik.endpoints[0], nodes[0], TRAEFIK_HOST, False),)
        placements += ((kube_dns.endpoints[0], server_node, COREDNS_HOST, False),)
    pods = tuple(
        PodPlan(
            name=name,
            netns=f"{spec.prefix}-pod-{name}",
            node=node.name,
            ip=f"10.42.{node.index}.{host}",
            host_veth=_veth_name(spec.prefix, name),
            serves_http=serves,
            app=next((app for app in (WEB_SERVICE, TRAEFIK, COREDNS) if name.startswith(app + "-")), ""),
            namespace=TRAEFIK_NAMESPACE if name.startswith((TRAEFIK + "-", COREDNS + "-")) else "default",
            routes_to=WEB_SERVICE if name.startswith(TRAEFIK + "-") else "",
        )
        for name, node, host, serves in placements
    )
    mgmt_ip = lan.broadcast_address - 1
    if str(mgmt_ip) in {n.eth0_ip for n in nodes}:
        raise LabError(f"the nodes from {first} take {mgmt_ip}, the management host's address: start lower")
    return LabPlan(
        prefix=spec.prefix,
        lan_netns=f"{spec.prefix}-lan",
        lan_prefix_len=spec.lan_prefix_len,
        nodes=tuple(nodes),
        pods=pods,
        mgmt_netns=f"{spec.prefix}-{MGMT_NAME}",
        mgmt_ip=str(mgmt_ip),
        services=services,
        backend=spec.backend,
    )


def subnet_env(node: NodePlan) -> str:
    """The ``/run/flannel/subnet.env`` flanneld would write on ``node`` (the lab plays flanneld,
    as it plays kubectl; its nodes share this machine's /run, so the lab writes no such file)."""
    prefix = node.pod_cidr.split("/")[1]
    return (
        f"FLANNEL_NETWORK={CLUSTER_CIDR}\nFLANNEL_SUBNET={node.cni0_ip}/{prefix}\n"
        f"FLANNEL_MTU={FLANNEL_MTU}\nFLANNEL_IPMASQ=true\n"
    )


def kubectl_nodes(plan: LabPlan) -> dict[str, Any]:
    """What ``kubectl get nodes -o json`` shows for the lab, with flannel's annotations."""
    items = []
    for node in plan.nodes:
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": node.name,
                    "labels": {"kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux"},
                    "annotations": _node_annotations(plan, node),
                },
                "spec": {"podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr]},
                "status": {
                    "addresses": [
                        {"type": "InternalIP", "address": node.eth0_ip},
                        {"type": "Hostname", "address": node.name},
                    ]
                },
            }
        )
    return {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}


def calicoctl_nodes(plan: LabPlan) -> dict[str, Any]:
    """What ``calicoctl get nodes -o json`` shows for a lab built with Calico's VXLAN."""
    items = [
        {
            "kind": "Node",
            "apiVersion": "projectcalico.org/v3",
            "metadata": {"name": node.name},
            "spec": {
                "bgp": {"ipv4Address": f"{node.eth0_ip}/{plan.lan_prefix_len}"},
                "ipv4VXLANTunnelAddr": node.vtep_ip,
                "vxlanTunnelMACAddr": node.vtep_mac,
                "orchRefs": [{"nodeName": node.name, "orchestrator": "k8s"}],
            },
        }
        for node in plan.nodes
    ]
    return {"kind": "NodeList", "apiVersion": "projectcalico.org/v3", "items": items}


def _node_annotations(plan: LabPlan, node: NodePlan) -> dict[str, str]:
    """flannel's annotations of a node (Calico's and Cilium's backends have none of them)."""
    chosen = BACKENDS[plan.backend]
    found = backend_annotations(chosen, node.vtep_mac, wireguard_keys(plan.prefix, node.name)[1])
    if found:
        found["flannel.alpha.coreos.com/kube-subnet-manager"] = "true"
        found["flannel.alpha.coreos.com/public-ip"] = node.eth0_ip
    return found


def wireguard_keys(prefix: str, node: str) -> tuple[str, str]:
    """A node's WireGuard private and public key (base64, as ``wg genkey``/``wg pubkey`` write
    them), derived from the lab's prefix and the node's name so that the plan stays pure."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = bytearray(hashlib.sha256(f"{prefix}/{node}/wireguard".encode()).digest())
    private[0] &= 248
    private[31] = (private[31] & 127) | 64  # clamped, as wg genkey does
    public = (
        X25519PrivateKey.from_private_bytes(bytes(private)).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    return base64.b64encode(bytes(private)).decode(), base64.b64encode(public).decode()


def kubectl_pods(plan: LabPlan) -> dict[str, Any]:
    """What ``kubectl get pods -A -o json`` shows for the lab's pods."""
    items = []
    for pod in plan.pods:
        node = plan.node(pod.node)
        image = {TRAEFIK: "traefik", COREDNS: "coredns"}.get(pod.app) or ("nginx" if pod.serves_http else "busybox")
        template = {TRAEFIK: TRAEFIK_HASH, COREDNS: COREDNS_HASH}.get(pod.app, TEMPLATE_HASH)
        labels = {"app": pod.app, "pod-template-hash": template} if pod.app else {"app": image}
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod.name, "namespace": pod.namespace, "labels": labels},
                "spec": {
                    "nodeName": pod.node,
                    "containers": [{"name": image, "image": image}],
                },
                "status": {
                    "phase": "Running",
                    "hostIP": node.eth0_ip,
                    "podIP": pod.ip,
                    "podIPs": [{"ip": pod.ip}],
                },
            }
        )
    return {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}
