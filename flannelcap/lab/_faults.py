"""Breaking a lab the way real clusters break: the faults ``flannelcap audit`` must find.

Rule: like the lab itself, every change happens inside the lab's own namespaces, through
``Lab.output``. Each fault is applied on ``node`` and concerns its view of ``peer``, and
returns one line saying what it changed.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable

from flannelcap._errors import LabError
from flannelcap.lab._lab import Lab, stop_processes_in
from flannelcap.lab._plan import VXLAN_PORT, NodePlan
from flannelcap.lab._services import lead, leaders, stop_speaker
from flannelcap.topology.model import FLANNEL_DEVICE

NOBODYS_MAC = "de:ad:be:ef:00:01"
NOBODYS_IP = "192.168.1.250"
SMALLER_MTU = 1400


def _third(lab: Lab, node: NodePlan, peer: NodePlan) -> NodePlan:
    others = [n for n in lab.plan.nodes if n.name not in (node.name, peer.name)]
    if not others:
        raise LabError("this fault needs a third node: build the lab with --nodes 3 or more")
    return others[0]


def wrong_fdb(lab: Lab, node: NodePlan, peer: NodePlan) -> str:
    """``node``'s FDB entry for ``peer``'s VTEP MAC points at a third node's IP."""
    wrong = _third(lab, node, peer)
    lab.output(
        node.name,
        ["bridge", "fdb", "replace", peer.vtep_mac, "dev", FLANNEL_DEVICE, "dst", wrong.eth0_ip, "self", "permanent"],
    )
    return (
        f"on {node.name}, FDB entry {peer.vtep_mac} (VTEP of {peer.name}) points at "
        f"{wrong.eth0_ip} ({wrong.name}) instead of {peer.eth0_ip}"
    )


def stale_fdb(lab: Lab, node: NodePlan, peer: NodePlan) -> str:
    """An extra FDB entry on ``node`` for a MAC that is no node's VTEP (a node long gone)."""
    lab.output(
        node.name,
        ["bridge", "fdb", "append", NOBODYS_MAC, "dev", FLANNEL_DEVICE, "dst", NOBODYS_IP, "self", "permanent"],
    )
    return f"on {node.name}, a stale FDB entry {NOBODYS_MAC} dst {NOBODYS_IP}"


def wrong_arp(lab: Lab, node: NodePlan, peer: NodePlan) -> str:
    """``node``'s PERMANENT neighbour entry for ``peer``'s VTEP IP has a MAC that is no VTEP's."""
    lab.output(
        node.name,
        ["ip", "neigh", "replace", peer.vtep_ip, "lladdr", NOBODYS_MAC, "dev", FLANNEL_DEVICE, "nud", "permanent"],
    )
    return f"on {node.name}, neighbour {peer.vtep_ip} ({peer.name}) has MAC {NOBODYS_MAC} instead of {peer.vtep_mac}"


def missing(lab: Lab, node: NodePlan, peer: NodePlan) -> str:
    """``node`` lost its route, neighbour and FDB entry for ``peer`` (flanneld never added them)."""
    lab.output(node.name, ["ip", "route", "del", peer.pod_cidr])
    lab.output(node.name, ["ip", "neigh", "del", peer.vtep_ip, "dev", FLANNEL_DEVICE])
    lab.output(node.name, ["bridge", "fdb", "del", peer.vtep_mac, "dev", FLANNEL_DEVICE, "self"])
    return f"on {node.name}, no route, neighbour or FDB entry for {peer.name}"


def smaller_mtu(lab: Lab, node: NodePlan, peer: NodePlan) -> str:
    """``node``'s flannel.1 has a smaller MTU than every other node's."""
    lab.output(node.name, ["ip", "link", "set", FLANNEL_DEVICE, "mtu", str(SMALLER_MTU)])
    return f"on {node.name}, flannel.1 MTU {SMALLER_MTU} instead of 1450"


def bad_checksum(lab: Lab, node: NodePlan, peer: NodePlan) -> str:
    """The LAN corrupts the outer UDP checksum of every VXLAN packet ``node`` sends, as a
    broken NAT or offload does; ``peer``'s kernel then drops them."""
    if shutil.which("nft") is None:
        raise LabError("the bad-checksum fault needs the 'nft' command: install the Debian package nftables")
    port = lab.plan.nodes.index(node)
    lan_port = f"lan{port}"
    table = "flannelcap_fault"
    lab_lan = lab.plan.lan_netns
    for argv in (
        ["nft", "add", "table", "netdev", table],
        [
            "nft",
            "add",
            "chain",
            "netdev",
            table,
            lan_port,
            f"{{ type filter hook ingress device {lan_port} priority 0; }}",
        ],
        [
            "nft",
            "add",
            "rule",
            "netdev",
            table,
            lan_port,
            "udp",
            "dport",
            str(VXLAN_PORT),
            "@th,48,16",
            "set",
            "0xbeef",
        ],
    ):
        lab.output_in_netns(lab_lan, argv)
    return f"the LAN sets the outer UDP checksum of VXLAN packets from {node.name} to 0xbeef"


DROP_TABLE = "flannelcap_drop"


def drop_vxlan_input(lab: Lab, node: NodePlan, peer: NodePlan, every: int = 3) -> str:
    """``node``'s firewall drops every ``every``-th VXLAN packet arriving from ``peer`` after
    it was seen on eth0 (nftables' input hook, behind the capture point), and counts them."""
    if shutil.which("nft") is None:
        raise LabError("the drop-vxlan fault needs the 'nft' command: install the Debian package nftables")
    rule = ["ip", "saddr", peer.eth0_ip, "udp", "dport", str(VXLAN_PORT), "numgen", "inc", "mod", str(every)]
    for argv in (
        ["nft", "add", "table", "inet", DROP_TABLE],
        ["nft", "add", "chain", "inet", DROP_TABLE, "input", "{ type filter hook input priority 0; }"],
        ["nft", "add", "rule", "inet", DROP_TABLE, "input", *rule, "==", "0", "counter", "drop"],
    ):
        lab.output(node.name, argv)
    return f"on {node.name}, nftables drops one in {every} VXLAN packets from {peer.name} on input (after eth0)"


def dropped_by_fault(lab: Lab, node: str) -> int:
    """The packets ``drop_vxlan_input`` dropped on ``node`` so far (its rule's counter)."""
    listing = json.loads(lab.output(node, ["nft", "-j", "list", "table", "inet", DROP_TABLE]))
    counters = [
        expression["counter"]["packets"]
        for item in listing.get("nftables", [])
        for expression in item.get("rule", {}).get("expr", [])
        if isinstance(expression, dict) and "counter" in expression
    ]
    if len(counters) != 1:
        raise LabError(f"the drop rule on {node} has {len(counters)} counters, not one")
    return int(counters[0])


def _led_by(lab: Lab, node: NodePlan) -> list[str]:
    """The service IPs ``node``'s speaker leads now.

    Raises:
        LabError: the lab has no services, or ``node`` leads none of them.
    """
    if not lab.plan.services:
        raise LabError("this fault needs the lab's services: build it with 'flannelcap lab up --services'")
    led = leaders(lab).get(node.name, [])
    if not led:
        raise LabError(f"{node.name} announces no service IP now (announcers: {_announcers(lab)})")
    return led


def _announcers(lab: Lab) -> str:
    return ", ".join(f"{ip} by {node}" for node, ips in sorted(leaders(lab).items()) for ip in ips) or "none"


def announcer_failover(lab: Lab, node: NodePlan, peer: NodePlan, detect_after: float = 0.0) -> str:
    """``node``'s speaker, the leader, stops; ``detect_after`` seconds later (MetalLB's
    memberlist noticing) ``peer``'s speaker takes its IPs over, with gratuitous ARP."""
    led = _led_by(lab, node)
    stop_speaker(lab, node.name)
    time.sleep(detect_after)
    lead(lab, peer.name, sorted({*leaders(lab).get(peer.name, []), *led}))
    return f"{node.name}'s speaker stopped; {peer.name} took over {', '.join(led)}"


def split_brain(lab: Lab, node: NodePlan, peer: NodePlan) -> str:
    """``peer``'s speaker also leads the IPs ``node`` announces: two MACs answer for them."""
    led = _led_by(lab, node)
    lead(lab, peer.name, sorted({*leaders(lab).get(peer.name, []), *led}))
    return f"{peer.name} announces {', '.join(led)} as well as {node.name} (split brain)"


def endpoint_down(lab: Lab, node: NodePlan, peer: NodePlan) -> str:
    """The Service's replica on ``node`` is gone (its server stopped, its veth removed) but
    it stays in the EndpointSlice and in every node's DNAT rules."""
    if not lab.plan.services:
        raise LabError("this fault needs the lab's services: build it with 'flannelcap lab up --services'")
    replicas = [p for p in lab.plan.pods if p.app and p.node == node.name]
    if not replicas:
        raise LabError(f"no replica of a Service runs on {node.name}")
    pod = replicas[0]
    lab.output(node.name, ["ip", "link", "del", pod.host_veth])
    stop_processes_in(pod.netns)
    return f"replica {pod.name} ({pod.ip}) on {node.name} is gone but still an endpoint in the DNAT rules"


DNS_DROP_TABLE = "flannelcap_dns_drop"


def drop_dns_answer(lab: Lab, node: NodePlan, peer: NodePlan) -> str:
    """``node``'s firewall drops the first DNS answer it forwards to one of its pods (after
    flannel.1, before cni0), as a lost UDP datagram on the overlay; it counts what it dropped."""
    if shutil.which("nft") is None:
        raise LabError("the drop-dns-answer fault needs the 'nft' command: install the Debian package nftables")
    rule = ["oifname", "cni0", "udp", "sport", "53", "numgen", "inc", "mod", "1000000", "==", "0", "counter", "drop"]
    for argv in (
        ["nft", "add", "table", "inet", DNS_DROP_TABLE],
        ["nft", "add", "chain", "inet", DNS_DROP_TABLE, "forward", "{ type filter hook forward priority 0; }"],
        ["nft", "add", "rule", "inet", DNS_DROP_TABLE, "forward", *rule],
    ):
        lab.output(node.name, argv)
    return f"on {node.name}, nftables drops the first DNS answer forwarded to its pods"


FAULTS: dict[str, Callable[[Lab, NodePlan, NodePlan], str]] = {
    "wrong-fdb": wrong_fdb,
    "stale-fdb": stale_fdb,
    "wrong-arp": wrong_arp,
    "missing": missing,
    "smaller-mtu": smaller_mtu,
    "bad-checksum": bad_checksum,
    "drop-vxlan": drop_vxlan_input,
    "announcer-failover": announcer_failover,
    "split-brain": split_brain,
    "endpoint-down": endpoint_down,
    "drop-dns-answer": drop_dns_answer,
}


def apply_fault(lab: Lab, kind: str, node: str, peer: str) -> str:
    """Apply fault ``kind`` on ``node`` concerning ``peer``. Returns what was changed.

    Raises:
        LabError: unknown fault or node, or the change failed.
    """
    if kind not in FAULTS:
        raise LabError(f"no fault {kind!r}; choose one of {', '.join(FAULTS)}")
    node_plan, peer_plan = lab.plan.node(node), lab.plan.node(peer)
    if node_plan == peer_plan:
        raise LabError("a fault concerns two different nodes: NODE and PEER")
    return FAULTS[kind](lab, node_plan, peer_plan)
