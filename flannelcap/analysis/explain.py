"""The path of a packet from one pod to another, step by step, with the user's own addresses.

Rule: pure. A topology (and optionally the records of a capture) in, ``Step``s out. It walks
what the lab's §3.3 c) walks by hand: pod route → cni0 → host route via the peer's VTEP IP
onlink → PERMANENT neighbour entry → FDB entry → outer header → decapsulation on the peer →
cni0 → pod. Each step cites the table row it used and, with a capture, the packets that
confirm it; a step whose tables do not lead where they should is marked not ok.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from flannelcap._errors import TopologyError
from flannelcap.analysis.audit import fdb_row, neigh_row, route_row
from flannelcap.packets.records import PacketRecord
from flannelcap.topology.model import FLANNEL_DEVICE, Node, Pod, Topology
from flannelcap.topology.tables import Route


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One hop of the path."""

    title: str
    text: str
    ok: bool = True
    rows: tuple[str, ...] = ()
    packets: tuple[int, ...] = ()
    dropped: bool = False  # the kernel drops the packet here: no table entry to go on with


def _resolve(topology: Topology, name_or_ip: str) -> tuple[str, Pod | None]:
    pod = topology.pod(name_or_ip)
    if pod is not None and pod.ip:
        return pod.ip, pod
    try:
        ipaddress.ip_address(name_or_ip)
    except ValueError:
        names = ", ".join(p.name for p in topology.pods) or "none"
        raise TopologyError(f"no pod {name_or_ip!r} in the topology (pods: {names}); give a pod name or IP") from None
    return name_or_ip, None


def _route_for(routes: Iterable[Route], ip: str) -> Route | None:
    """Longest-prefix match, as the kernel does (``default`` last)."""
    address = ipaddress.ip_address(ip)
    best: tuple[int, Route] | None = None
    for route in routes:
        network = ipaddress.ip_network("0.0.0.0/0" if route.dst == "default" else route.dst, strict=False)
        if address in network and (best is None or network.prefixlen > best[0]):
            best = (network.prefixlen, route)
    return best[1] if best else None


def _label(ip: str, pod: Pod | None) -> str:
    return f"{pod.name} ({ip})" if pod else ip


def explain(topology: Topology, source: str, destination: str, records: Iterable[PacketRecord] = ()) -> list[Step]:
    """The steps a packet takes from pod ``source`` to pod ``destination``.

    Args:
        topology: the cluster, with each node's tables.
        source: pod name or IP.
        destination: pod name or IP.
        records: packets of a capture, to confirm the steps on the wire.

    Raises:
        TopologyError: a pod or its node is unknown.
    """
    src_ip, src_pod = _resolve(topology, source)
    dst_ip, dst_pod = _resolve(topology, destination)
    src_node = topology.node(src_pod.node) if src_pod and src_pod.node else topology.node_of_pod_ip(src_ip)
    dst_node = topology.node(dst_pod.node) if dst_pod and dst_pod.node else topology.node_of_pod_ip(dst_ip)
    if src_node is None or dst_node is None:
        raise TopologyError(f"cannot tell which node runs {source if src_node is None else destination}")
    vxlan = [r for r in records if r.is_vxlan and r.inner_src_ip == src_ip and r.inner_dst_ip == dst_ip]
    plain = [r for r in records if not r.is_vxlan and r.outer_src_ip == src_ip and r.outer_dst_ip == dst_ip]
    src, dst = _label(src_ip, src_pod), _label(dst_ip, dst_pod)
    gateway = (src_pod.gateway if src_pod else None) or src_node.cni0_ip
    veth = f" through its veth pair (host side {src_pod.veth})" if src_pod and src_pod.veth else ""
    steps = [
        Step(
            title=f"1. in pod {src_pod.name if src_pod else src_ip}",
            text=f"{src} sends to {dst}: its route 10.42.0.0/16 (or default) points via {gateway}, "
            f"the cni0 bridge of {src_node.name}, so the packet leaves eth0{veth} into cni0",
        )
    ]
    if src_node.name == dst_node.name:
        dst_veth = f" (host side {dst_pod.veth})" if dst_pod and dst_pod.veth else ""
        steps.append(
            Step(
                title=f"2. cni0 on {src_node.name}",
                text=f"{dst} is on the same node and the same cni0 bridge: the frame is switched to its veth"
                f"{dst_veth}; no flannel.1, no VXLAN, nothing on eth0",
                packets=tuple(r.number for r in plain[:5]),
            )
        )
        return steps
    sender = _sender_steps(topology, src_node, dst_node, dst_ip)
    steps += sender
    dropped = next((step for step in sender if step.dropped), None)
    steps.append(_wire_step(src_node, dst_node, src_ip, dst_ip, vxlan, dropped))
    steps += _receiver_steps(topology, dst_node, dst_ip, dst, dst_pod)
    return steps


def _sender_steps(topology: Topology, src_node: Node, dst_node: Node, dst_ip: str) -> list[Step]:
    view = topology.view(src_node.name)
    if view is None or view.routes is None or view.neigh is None or view.fdb is None:
        return [
            Step(
                title=f"2. {src_node.name}",
                text=f"{src_node.name}'s route, ARP and FDB tables were not collected: "
                f"expected 'via {dst_node.vtep_ip} dev flannel.1 onlink' → {dst_node.vtep_mac} → {dst_node.public_ip}",
                ok=False,
            )
        ]
    steps = []
    route = _route_for(view.routes, dst_ip)
    route_ok = route is not None and route.gateway == dst_node.vtep_ip and route.dev == FLANNEL_DEVICE
    steps.append(
        Step(
            title=f"2. route on {src_node.name}",
            text=(
                f"{dst_ip} matches {route.dst} via {route.gateway} dev {route.dev}"
                + (" onlink" if route.onlink else "")
                + (f": the next hop is {dst_node.name}'s flannel.1 ({dst_node.vtep_ip})" if route_ok else "")
                if route
                else f"no route matches {dst_ip}"
            )
            + ("" if route_ok else f" — expected via {dst_node.vtep_ip} dev flannel.1 onlink"),
            ok=route_ok,
            rows=(route_row(src_node.name, route),) if route else (),
            dropped=route is None,
        )
    )
    hop = route.gateway if route and route.gateway else dst_node.vtep_ip
    arp = next((e for e in view.neigh if e.ip == hop), None)
    arp_ok = arp is not None and arp.mac == dst_node.vtep_mac
    steps.append(
        Step(
            title=f"3. neighbour (ARP) entry on {src_node.name}",
            text=(
                f"{hop} is at {arp.mac} ({' '.join(arp.states)}, set by flanneld): "
                f"this becomes the inner destination MAC"
                if arp
                else f"no ARP entry for {hop} on flannel.1"
            )
            + ("" if arp_ok else f" — expected {dst_node.vtep_mac}, {dst_node.name}'s flannel.1"),
            ok=arp_ok,
            rows=(neigh_row(src_node.name, arp),) if arp else (),
            dropped=arp is None,
        )
    )
    mac = arp.mac if arp and arp.mac else dst_node.vtep_mac
    forward = next((e for e in view.fdb if e.mac == mac), None)
    fdb_ok = forward is not None and forward.dst == dst_node.public_ip
    steps.append(
        Step(
            title=f"4. FDB entry on {src_node.name}",
            text=(
                f"{mac} is reached at {forward.dst}: this becomes the outer destination IP"
                if forward
                else f"no FDB entry for {mac}: flannel.1 drops the frame"
            )
            + ("" if fdb_ok else f" — expected {dst_node.public_ip} ({dst_node.name})"),
            ok=fdb_ok,
            rows=(fdb_row(src_node.name, forward),) if forward else (),
            dropped=forward is None,
        )
    )
    return steps


def _wire_step(
    src_node: Node, dst_node: Node, src_ip: str, dst_ip: str, vxlan: list[PacketRecord], dropped: Step | None
) -> Step:
    title = f"5. on the wire (eth0 of {src_node.name})"
    expected = (
        f"outer {src_node.public_ip} → {dst_node.public_ip} UDP dport {dst_node.dstport or 8472} VNI "
        f"{dst_node.vni if dst_node.vni is not None else 1}; inner {src_node.vtep_mac} → {dst_node.vtep_mac}, "
        f"{src_ip} → {dst_ip}"
    )
    if not vxlan and dropped is not None:
        return Step(
            title=title,
            text=f"nothing: the packet is dropped at step {dropped.title.split('.')[0]} ({dropped.title[3:]}); "
            f"a healthy path would send {expected}",
            ok=False,
        )
    if not vxlan:
        return Step(title=title, text=f"flannel.1 encapsulates: {expected}")
    first = vxlan[0]
    seen = (
        f"outer {first.outer_src_ip} → {first.outer_dst_ip} UDP {first.outer_src_port} → {first.outer_dst_port} "
        f"VNI {first.vni}; inner {first.inner_src_mac} → {first.inner_dst_mac}, {first.inner_src_ip} → "
        f"{first.inner_dst_ip}"
    )
    ok = (
        first.outer_src_ip == src_node.public_ip
        and first.outer_dst_ip == dst_node.public_ip
        and first.inner_dst_mac == dst_node.vtep_mac
        and first.inner_src_mac == src_node.vtep_mac
    )
    return Step(
        title=title,
        text=f"the capture shows {len(vxlan)} such packets, e.g. packet {first.number}: {seen}"
        + ("" if ok else f" — expected {expected}"),
        ok=ok,
        packets=tuple(r.number for r in vxlan[:12]),
    )


def _receiver_steps(topology: Topology, dst_node: Node, dst_ip: str, dst: str, dst_pod: Pod | None) -> list[Step]:
    steps = [
        Step(
            title=f"6. decapsulation on {dst_node.name}",
            text=f"{dst_node.name}'s eth0 ({dst_node.public_ip}) hands UDP {dst_node.dstport or 8472} to flannel.1 "
            f"(VNI {dst_node.vni}, MAC {dst_node.vtep_mac}), which strips the outer headers",
        )
    ]
    view = topology.view(dst_node.name)
    route = _route_for(view.routes, dst_ip) if view and view.routes else None
    ok = route is None or route.dev == "cni0"
    veth = f" and on through veth {dst_pod.veth}" if dst_pod and dst_pod.veth else ""
    steps.append(
        Step(
            title=f"7. route on {dst_node.name} and delivery",
            text=(f"{dst_ip} matches {route.dst} dev {route.dev}" if route else f"{dst_ip} is in {dst_node.pod_cidr}")
            + f": into cni0 ({dst_node.cni0_ip}){veth} to {dst}"
            + ("" if ok else " — expected dev cni0"),
            ok=ok,
            rows=(route_row(dst_node.name, route),) if route else (),
        )
    )
    return steps
