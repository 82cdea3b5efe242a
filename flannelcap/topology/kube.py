"""Parsers for what kubectl prints about nodes and pods.

Rule: pure functions over text, no I/O. ``kubectl get nodes -o json`` gives flannel's view of
each node (its annotations: VTEP MAC, VNI, public IP); ``kubectl get pods -A -o json`` or
``-o wide`` gives pod names, IPs and nodes; ``kubectl get svc,endpointslices -A -o json`` the
Services, their ClusterIPs and LoadBalancer IPs, and their endpoints. What cannot be read
raises ``TableParseError``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from flannelcap._errors import TableParseError
from flannelcap.topology.tables import PROMPT_RE, is_ip, load_json

FLANNEL_ANNOTATION = "flannel.alpha.coreos.com/"


@dataclass(frozen=True, slots=True, kw_only=True)
class KubeNode:
    """A Node as flannel annotates it."""

    name: str
    internal_ip: str | None
    public_ip: str | None
    public_ip_overwrite: str | None
    backend_type: str | None
    vni: int | None
    vtep_mac: str | None
    pod_cidrs: tuple[str, ...]
    notes: tuple[str, ...] = ()  # what its annotations held that could not be read


@dataclass(frozen=True, slots=True, kw_only=True)
class KubePod:
    """A Pod: where it runs and its IP."""

    name: str
    namespace: str
    ip: str | None
    node: str | None
    labels: tuple[tuple[str, str], ...] = ()  # metadata.labels, sorted


def _labels(metadata: Any) -> tuple[tuple[str, str], ...]:
    """A pod's ``metadata.labels`` as sorted pairs (nothing where it is not a mapping)."""
    labels = metadata.get("labels") if isinstance(metadata, dict) else None
    if not isinstance(labels, dict):
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


def _items(text: str, table: str, kind: str) -> list[dict[str, Any]]:
    if not text.strip():
        raise TableParseError(table, 0, "", "the input is empty (was the command's output pasted?)")
    data = load_json(text, table)
    if isinstance(data, dict) and data.get("kind") == kind:
        data = {"items": [data]}
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise TableParseError(table, 1, text.strip()[:80], f"not a {kind} list (no 'items')")
    items: list[dict[str, Any]] = data["items"]
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict) or not isinstance(item.get("metadata"), dict) or "name" not in item["metadata"]:
            raise TableParseError(table, number, json.dumps(item)[:80], f"item {number} has no metadata.name")
    return items


def parse_kubectl_nodes(text: str) -> list[KubeNode]:
    """Parse ``kubectl get nodes -o json`` (a List, or a single Node).

    Raises:
        TableParseError: not JSON, not a Node list, or an annotation that is not valid.
    """
    table = "kubectl get nodes -o json"
    nodes = []
    for number, item in enumerate(_items(text, table, "Node"), 1):
        try:
            nodes.append(_node(item, table, number))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise TableParseError(table, number, json.dumps(item)[:80], f"item {number} is not a Node ({exc})") from exc
    return nodes


@dataclass(frozen=True, slots=True, kw_only=True)
class CalicoNode:
    """A Calico Node resource (``calicoctl get nodes -o json``, or ``kubectl get
    nodes.crd.projectcalico.org -o json``): its address and its tunnels' addresses."""

    name: str
    address: str | None  # spec.bgp.ipv4Address, without its prefix length
    vxlan_mac: str | None  # spec.vxlanTunnelMACAddr: the VTEP MAC of vxlan.calico
    vxlan_ip: str | None  # spec.ipv4VXLANTunnelAddr
    ipip_ip: str | None  # spec.bgp.ipv4IPIPTunnelAddr: tunl0's address


def parse_calico_nodes(text: str) -> list[CalicoNode]:
    """Parse Calico's Node resources.

    Raises:
        TableParseError: not JSON, not a Node list, or a node whose spec is not a map.
    """
    table = "calicoctl get nodes -o json"
    nodes = []
    for number, item in enumerate(_items(text, table, "Node"), 1):
        spec = item.get("spec") or {}
        bgp = spec.get("bgp") or {} if isinstance(spec, dict) else None
        if not isinstance(spec, dict) or not isinstance(bgp, dict):
            raise TableParseError(table, number, json.dumps(item)[:80], f"item {number}'s spec is not a map")
        address = _text(bgp.get("ipv4Address"))
        mac = _text(spec.get("vxlanTunnelMACAddr"))
        nodes.append(
            CalicoNode(
                name=str(item["metadata"]["name"]),
                address=address.split("/")[0] if address else None,
                vxlan_mac=mac.lower() if mac else None,
                vxlan_ip=_text(spec.get("ipv4VXLANTunnelAddr")),
                ipip_ip=_text(bgp.get("ipv4IPIPTunnelAddr")),
            )
        )
    return nodes


def _node(item: dict[str, Any], table: str, number: int) -> KubeNode:
    """One Node object. Flannel's annotations are read for what they hold: ``backend-data``
    may be ``"null"`` (host-gw, or VXLAN data not published yet), empty, missing or damaged;
    each such annotation becomes a note, and the rest of the node is still read."""
    metadata = item["metadata"]
    name = str(metadata["name"])
    notes: list[str] = []
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, dict):
        notes.append(f"kubectl get nodes: node {name}'s annotations are not a map; flannel's are not read")
        annotations = {}
    backend = _backend_data(name, annotations, notes)
    spec: dict[str, Any] = item["spec"] if isinstance(item.get("spec"), dict) else {}
    cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    status: dict[str, Any] = item["status"] if isinstance(item.get("status"), dict) else {}
    addresses = [a for a in status.get("addresses") or [] if isinstance(a, dict)]
    internal = next((a.get("address") for a in addresses if a.get("type") == "InternalIP"), None)
    vtep_mac = backend.get("VtepMAC")
    return KubeNode(
        name=name,
        internal_ip=_text(internal),
        public_ip=_text(annotations.get(FLANNEL_ANNOTATION + "public-ip")),
        public_ip_overwrite=_text(annotations.get(FLANNEL_ANNOTATION + "public-ip-overwrite")),
        backend_type=_text(annotations.get(FLANNEL_ANNOTATION + "backend-type")),
        vni=backend.get("VNI") if isinstance(backend.get("VNI"), int) else None,
        vtep_mac=str(vtep_mac).lower() if isinstance(vtep_mac, str) and vtep_mac else None,
        pod_cidrs=tuple(str(c) for c in cidrs if isinstance(c, str)) if isinstance(cidrs, list) else (),
        notes=tuple(notes),
    )


def _text(value: object) -> str | None:
    """An annotation's text; empty or not text is no value."""
    return value if isinstance(value, str) and value else None


def _backend_data(node: str, annotations: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """flannel's ``backend-data`` annotation as a map, or empty with a note saying why."""
    key = FLANNEL_ANNOTATION + "backend-data"
    kind = annotations.get(FLANNEL_ANNOTATION + "backend-type")
    where = f"kubectl get nodes: node {node}"
    if key not in annotations:
        if kind or any(k.startswith(FLANNEL_ANNOTATION) for k in annotations):
            notes.append(f"{where} has no backend-data annotation: its VTEP MAC and VNI are not known from kubectl")
        return {}
    text = annotations[key]
    if not isinstance(text, str) or not text.strip():
        notes.append(f"{where}: backend-data is empty: its VTEP MAC and VNI are not known from kubectl")
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        shown = text if len(text) <= 40 else text[:37] + "..."
        notes.append(f"{where}: backend-data is not JSON ({shown!r}): its VTEP MAC and VNI are not known from kubectl")
        return {}
    if data is None and kind in ("host-gw", "ipip", "udp"):
        return {}  # what flanneld writes for backends without VTEP data
    if data is None:
        backend = f"backend-type {kind!r}" if kind else "an empty backend-type"
        notes.append(
            f"{where}: backend-data is null ({backend}: host-gw, or flannel has not published VXLAN data yet): "
            "no VTEP MAC or VNI from kubectl"
        )
        return {}
    if not isinstance(data, dict):
        notes.append(f"{where}: backend-data is not a JSON object: its VTEP MAC and VNI are not known from kubectl")
        return {}
    return data


def parse_kubectl_pods(text: str) -> list[KubePod]:
    """Parse ``kubectl get pods [-A] -o json`` or ``-o wide`` text.

    Raises:
        TableParseError: neither JSON pods nor a ``-o wide`` table.
    """
    if text.lstrip().startswith("{"):
        table = "kubectl get pods -o json"
        pods = []
        for number, item in enumerate(_items(text, table, "Pod"), 1):
            try:
                status = item.get("status") or {}
                pods.append(
                    KubePod(
                        name=str(item["metadata"]["name"]),
                        namespace=str(item["metadata"].get("namespace", "default")),
                        ip=_text_or_none(status.get("podIP")),
                        node=_text_or_none((item.get("spec") or {}).get("nodeName")),
                        labels=_labels(item["metadata"]),
                    )
                )
            except (KeyError, TypeError, AttributeError, ValueError) as exc:
                raise TableParseError(
                    table, number, json.dumps(item)[:80], f"item {number} is not a Pod ({exc})"
                ) from exc
        return pods
    return _parse_wide(text)


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _parse_wide(text: str) -> list[KubePod]:
    """``kubectl get pods -o wide``: columns found by the pod IP, since AGE and RESTARTS
    (``49 (37h ago)``) hold spaces and pasted headers wrap."""
    table = "kubectl get pods -o wide"
    if not text.strip():
        raise TableParseError(table, 0, "", "the input is empty (was the command's output pasted?)")
    with_namespace = False
    saw_header = False
    pods = []
    for number, raw in enumerate(text.splitlines(), 1):
        tokens = raw.split()
        if not tokens or PROMPT_RE.match(raw) or raw.lstrip().startswith("#"):
            continue
        if tokens[0] in ("NAME", "NAMESPACE"):
            saw_header = True
            with_namespace = tokens[0] == "NAMESPACE"
            continue
        if not saw_header:
            raise TableParseError(table, number, raw, "expected the header line (NAME … IP NODE …)")
        ip_index = next((i for i, t in enumerate(tokens) if is_ip(t) or t == "<none>"), None)
        if ip_index is None or ip_index + 1 >= len(tokens):
            if all(t.isupper() for t in tokens):
                continue  # a wrapped header ("READINESS GATES")
            raise TableParseError(table, number, raw, "no pod IP and node columns")
        namespace, name = (tokens[0], tokens[1]) if with_namespace else ("default", tokens[0])
        ip = tokens[ip_index] if tokens[ip_index] != "<none>" else None
        node = tokens[ip_index + 1] if tokens[ip_index + 1] != "<none>" else None
        pods.append(KubePod(name=name, namespace=namespace, ip=ip, node=node))
    if not pods:
        raise TableParseError(table, 0, "", "no pods in the table")
    return pods


# -- services --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """One endpoint of a Service (from its EndpointSlices): a pod IP, where it runs."""

    ip: str
    port: int | None
    pod: str | None
    node: str | None
    ready: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    """A Service: its addresses, ports, external traffic policy and endpoints."""

    name: str
    namespace: str
    type: str
    cluster_ips: tuple[str, ...]
    external_ips: tuple[str, ...]  # the LoadBalancer's ingress IPs and spec.externalIPs
    ports: tuple[int, ...]
    node_ports: tuple[int, ...] = ()
    policy: str = "Cluster"  # externalTrafficPolicy
    endpoints: tuple[Endpoint, ...] = ()

    @property
    def key(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"


def parse_kubectl_services(texts: Sequence[str]) -> list[Service]:
    """Parse ``kubectl get svc,endpointslices -A -o json`` (or the two kinds in separate
    texts): Services with their endpoints joined in from the EndpointSlices that name them.

    Raises:
        TableParseError: not JSON, or an item that is not a Service or EndpointSlice.
    """
    table = "kubectl get svc,endpointslices -o json"
    services: dict[tuple[str, str], Service] = {}
    slices: list[tuple[str, str, tuple[Endpoint, ...]]] = []
    for text in texts:
        items = _any_items(text, table)
        if items and not any(item.get("kind") in ("Service", "EndpointSlice") for item in items):
            kinds = sorted({str(item.get("kind")) for item in items})
            raise TableParseError(table, 1, text.strip()[:80], f"holds {', '.join(kinds)}, no Service or EndpointSlice")
        for number, item in enumerate(items, 1):
            kind = item.get("kind")
            try:
                if kind == "Service":
                    svc = _service(item)
                    services[(svc.namespace, svc.name)] = svc
                elif kind == "EndpointSlice":
                    slices.append(_slice(item))
            except (KeyError, TypeError, AttributeError, ValueError) as exc:
                raise TableParseError(
                    table, number, json.dumps(item)[:80], f"item {number} is not a {kind} ({exc})"
                ) from exc
    for namespace, name, endpoints in slices:
        owner = services.get((namespace, name))
        if owner is not None:
            services[(namespace, name)] = replace(owner, endpoints=owner.endpoints + endpoints)
    return list(services.values())


def _any_items(text: str, table: str) -> list[dict[str, Any]]:
    """The items of a List of any kinds (or one object)."""
    if not text.strip():
        raise TableParseError(table, 0, "", "the input is empty (was the command's output pasted?)")
    data = load_json(text, table)
    if isinstance(data, dict) and "items" not in data and data.get("kind") in ("Service", "EndpointSlice"):
        data = {"items": [data]}
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise TableParseError(table, 1, text.strip()[:80], "not a kubectl list (no 'items')")
    return [item for item in data["items"] if isinstance(item, dict)]


def _service(item: dict[str, Any]) -> Service:
    metadata = item["metadata"]
    spec = item.get("spec") or {}
    ingress = ((item.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    external = [i["ip"] for i in ingress if isinstance(i, dict) and i.get("ip")] + list(spec.get("externalIPs") or [])
    ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
    return Service(
        name=str(metadata["name"]),
        namespace=str(metadata.get("namespace", "default")),
        type=str(spec.get("type", "ClusterIP")),
        cluster_ips=tuple(str(ip) for ip in cluster_ips if ip and ip != "None"),
        external_ips=tuple(dict.fromkeys(str(ip) for ip in external)),
        ports=tuple(int(p["port"]) for p in ports if "port" in p),
        node_ports=tuple(int(p["nodePort"]) for p in ports if p.get("nodePort")),
        policy=str(spec.get("externalTrafficPolicy") or "Cluster"),
    )


def _slice(item: dict[str, Any]) -> tuple[str, str, tuple[Endpoint, ...]]:
    metadata = item["metadata"]
    service = (metadata.get("labels") or {}).get("kubernetes.io/service-name")
    ports = [p for p in item.get("ports") or [] if isinstance(p, dict)]
    port = int(ports[0]["port"]) if ports and ports[0].get("port") is not None else None
    endpoints = []
    for endpoint in item.get("endpoints") or []:
        ref = endpoint.get("targetRef") or {}
        ready = (endpoint.get("conditions") or {}).get("ready")
        for ip in endpoint.get("addresses") or []:
            endpoints.append(
                Endpoint(
                    ip=str(ip),
                    port=port,
                    pod=_text(ref.get("name")) if ref.get("kind", "Pod") == "Pod" else None,
                    node=_text(endpoint.get("nodeName")),
                    ready=ready is not False,
                )
            )
    return str(metadata.get("namespace", "default")), str(service or metadata["name"]), tuple(endpoints)
