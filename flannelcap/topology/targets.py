"""Where to capture to see given pods: ``capture --pod`` and ``--selector``.

Rule: pure: the topology and the node's tables in, captures out. A pod is seen on its node,
on the host side of its veth (what the lab's §3.3 b) finds by hand from the pod's
``iflink``); the topology knows that veth where the pod's own ``ip addr`` table was
collected. Where it was not, the veth is found on the node as the capture starts: the pod's
MAC in the node's ARP table on cni0, then the bridge port that learned that MAC
(``veth_on_node``). Several chosen pods on one node are captured there at once with ``-i any``,
filtered to their addresses. Anything that cannot be resolved is an error that names the pod
and says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from flannelcap._errors import BadArgument
from flannelcap.topology.model import Pod, Topology
from flannelcap.topology.tables import parse_fdb, parse_neigh

BRIDGE = "cni0"  # flannel's CNI bridge
# What the node is asked to find a pod's veth: its ARP table and its bridge's learned ports.
VETH_TABLES = (("ip", "-j", "neigh", "show", "dev", BRIDGE), ("bridge", "-j", "fdb", "show", "br", BRIDGE))


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureTarget:
    """One node's capture: its interface, its tcpdump filter and the pods it is for."""

    node: str
    interface: str  # "" while the pod's veth is still to be found on the node (``veth_on_node``)
    filter: str
    pods: tuple[str, ...]
    pod_ip: str | None = None  # of the one pod whose veth is to be found


def parse_selector(selector: str) -> tuple[tuple[str, str, bool], ...]:
    """``app=nginx,tier!=db`` as (key, value, equal) terms, as kubectl's equality selectors.

    Raises:
        BadArgument: a term is not ``key=value``, ``key==value`` or ``key!=value``.
    """
    terms = []
    for term in selector.split(","):
        term = term.strip()
        equal = "!=" not in term
        key, sep, value = term.partition("!=" if not equal else ("==" if "==" in term else "="))
        if not sep or not key.strip():
            raise BadArgument(f"selector term {term!r} is not key=value or key!=value (e.g. --selector app=nginx)")
        terms.append((key.strip(), value.strip(), equal))
    return tuple(terms)


def _matches(pod: Pod, terms: tuple[tuple[str, str, bool], ...]) -> bool:
    labels = dict(pod.labels)
    return all((labels.get(key) == value) == equal for key, value, equal in terms)


def pod_targets(
    topology: Topology, names: list[str], selector: str | None, extra_filter: str = "", node_level: bool = False
) -> list[CaptureTarget]:
    """The captures that see the pods named (``name`` or ``namespace/name``) and those the
    selector picks, one per node, in the order the pods were named. ``node_level``: on each
    node every interface at once (``-i any``: the veth, cni0, flannel.1 and eth0 copies),
    filtered to the pods' addresses (outer VXLAN packets carry them inside, so a filter on the
    pod address alone would miss them: the filter also keeps the VXLAN ports).

    Raises:
        BadArgument: a pod is not in the topology, has no node or IP, its veth is unknown, or
            the selector picks no pod.
    """
    chosen: list[Pod] = []
    for name in names:
        pod = topology.pod(name)
        if pod is None:
            known = ", ".join(sorted(p.name for p in topology.pods)) or "none"
            raise BadArgument(f"no pod {name!r} in the topology (its pods: {known})")
        chosen.append(pod)
    if selector is not None:
        terms = parse_selector(selector)
        picked = [p for p in topology.pods if _matches(p, terms)]
        if not picked:
            raise BadArgument(f"no pod in the topology matches --selector {selector!r} (are the pods' labels in it?)")
        chosen += picked
    by_node: dict[str, list[Pod]] = {}
    for pod in dict.fromkeys(chosen):  # each pod once, in order
        if not pod.node or not pod.ip:
            raise BadArgument(f"pod {pod.name}: kubectl names no node or IP for it (is it running?)")
        by_node.setdefault(pod.node, []).append(pod)
    targets = []
    for node, pods in by_node.items():
        if node_level:
            hosts = " or ".join(f"host {p.ip}" for p in pods)
            interface, pod_filter = "any", f"{hosts} or udp port 8472 or udp port 4789"
        elif len(pods) == 1:
            interface, pod_filter = pods[0].veth or "", ""  # no veth in the tables: found on the node
        else:
            interface, pod_filter = "any", " or ".join(f"host {p.ip}" for p in pods)
        both = " and ".join(f"({f})" for f in (pod_filter, extra_filter) if f)
        targets.append(
            CaptureTarget(
                node=node,
                interface=interface,
                filter=both,
                pods=tuple(p.name for p in pods),
                pod_ip=pods[0].ip if not interface else None,
            )
        )
    return targets


def veth_on_node(neigh: str, fdb: str, target: CaptureTarget) -> str:
    """The host side of the veth of ``target``'s pod, from its node's ``ip -j neigh show dev
    cni0`` (the pod's MAC) and ``bridge -j fdb show br cni0`` (the port that learned it).

    Raises:
        BadArgument: the node has no ARP entry for the pod, or no bridge port learned its MAC.
    """
    pod, node, ip = ", ".join(target.pods), target.node, target.pod_ip
    mac = next((e.mac for e in parse_neigh(neigh, allow_empty=True) if e.ip == ip and e.mac), None)
    if mac is None:
        raise BadArgument(
            f"pod {pod}: {node} has no ARP entry for {ip} on {BRIDGE}, so its veth is not known there yet; "
            f"give the pod's tables (its 'ip -j addr') with --tables, or capture with --node-level"
        )
    ports = [e.dev for e in parse_fdb(fdb, allow_empty=True) if e.mac == mac and e.dev and e.dev != BRIDGE]
    if not ports:
        raise BadArgument(f"pod {pod}: no port of {BRIDGE} on {node} has learned its MAC {mac}; use --node-level")
    return ports[0]
