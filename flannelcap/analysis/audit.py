"""Findings: where the wire and the tables disagree, with the evidence for each.

Rule: pure. A topology (and optionally the records of a capture) in, ``Finding``s out. Each
finding has a severity, a stable code, one line of explanation, and its evidence: the node,
the table rows, the packet numbers. Symptoms that a root cause already explains (a SYN
retransmitted because its VXLAN went to the wrong node) are folded into that root cause
rather than reported twice.
"""

from __future__ import annotations

from collections import defaultdict, namedtuple
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flannelcap.packets.records import PacketRecord
from flannelcap.topology.model import FLANNEL_DEVICE, NODE_TABLES, SUBNET_ENV, Node, Topology
from flannelcap.topology.tables import FdbEntry, NeighEntry, Route

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from numpy.typing import NDArray

ERROR, WARNING, INFO = "error", "warning", "info"
_SEVERITY_ORDER = {ERROR: 0, WARNING: 1, INFO: 2}
MAX_PACKETS_SHOWN = 12
# The same SYN seen again sooner than this is a copy on another interface (tcpdump -i any),
# not a retransmission: Linux waits at least its minimum RTO (200 ms) before resending.
RETRANSMIT_MIN_GAP = 0.2
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One thing wrong (or worth knowing), with its evidence."""

    severity: str
    code: str
    message: str
    node: str | None = None
    rows: tuple[str, ...] = ()
    packets: tuple[int, ...] = ()


# The encapsulation each backend puts on the wire (packets/tunnels names; host-gw: none).
BACKEND_ENCAP = {"calico-vxlan": "vxlan", "udp": "udp-tun", "host-gw": None}


def neigh_row(node: str, entry: NeighEntry) -> str:
    """An ARP entry as ``ip neigh`` prints it, prefixed with its node and table."""
    mac = f" lladdr {entry.mac}" if entry.mac else ""
    return f"{node}: {NODE_TABLES['neigh'].title}: {entry.ip}{mac} {' '.join(entry.states)}"


def fdb_row(node: str, entry: FdbEntry) -> str:
    """An FDB entry as ``bridge fdb`` prints it."""
    dst = f" dst {entry.dst}" if entry.dst else ""
    return (
        f"{node}: {NODE_TABLES['fdb'].title}: {entry.mac}{dst} {' '.join((*entry.flags, entry.state or ''))}".rstrip()
    )


def route_row(node: str, route: Route) -> str:
    """A route as ``ip route`` prints it."""
    parts = [route.dst]
    if route.gateway:
        parts += ["via", route.gateway]
    if route.dev:
        parts += ["dev", route.dev]
    if route.onlink:
        parts.append("onlink")
    if route.protocol:
        parts += ["proto", route.protocol]
    if route.scope:
        parts += ["scope", route.scope]
    if route.src:
        parts += ["src", route.src]
    return f"{node}: {NODE_TABLES['routes'].title}: {' '.join(parts)}"


def _name(topology: Topology, ip: str | None) -> str:
    node = topology.node_by_ip(ip)
    return f"{ip} ({node.name})" if node else f"{ip} (no node)"


def _node_name(topology: Topology, ip: str) -> str | None:
    node = topology.node_by_ip(ip)
    return node.name if node else None


def sorted_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Errors first, then warnings, then notes; by node and code within each."""
    return sorted(findings, key=lambda f: (_SEVERITY_ORDER[f.severity], f.node or "", f.code))


# -- the tables alone ---------------------------------------------------------------------------


def audit_topology(topology: Topology) -> list[Finding]:
    """Check every node's tables against every other node's VTEP.

    Returns:
        Findings, errors first.
    """
    findings: list[Finding] = []
    findings += _shared_public_ips(topology)
    findings += _config_mismatches(topology)
    for conflict in topology.conflicts:
        findings.append(
            Finding(
                severity=WARNING,
                code="sources-disagree",
                node=conflict.node,
                message=f"{conflict.node}'s {conflict.field} differs between sources: "
                + ", ".join(f"{value} ({source})" for source, value in conflict.values.items()),
                rows=tuple(f"{source}: {value}" for source, value in conflict.values.items()),
            )
        )
    for note in topology.notes:
        findings.append(Finding(severity=INFO, code="source-not-read", message=note))
    peers = [n for n in topology.nodes if n.vtep_mac and n.vtep_ip and n.public_ip]
    unknown = [n.name for n in peers if not n.pod_cidr]
    if unknown and any(v.routes is not None for v in topology.views):
        findings.append(
            Finding(
                severity=INFO,
                code="routes-not-checked",
                message=f"cannot check the routes to {', '.join(unknown)}: no source names "
                f"{'its' if len(unknown) == 1 else 'their'} pod CIDR (give kubectl get nodes -o json, "
                f"{'its' if len(unknown) == 1 else 'their'} ip route, or {SUBNET_ENV})",
            )
        )
    for view in topology.views:
        if view.neigh is None or view.fdb is None or view.routes is None:
            continue
        for peer in peers:
            if peer.name != view.node:
                findings += _check_peer(view.node, peer, view.neigh, view.fdb, view.routes, topology)
        findings += _stale_entries(view.node, view.neigh, view.fdb, topology)
    return sorted_findings(findings)


def _shared_public_ips(topology: Topology) -> list[Finding]:
    by_ip: dict[str, list[Node]] = defaultdict(list)
    for node in topology.nodes:
        if node.public_ip:
            by_ip[node.public_ip].append(node)
    return [
        Finding(
            severity=ERROR,
            code="public-ip-shared",
            message=f"{' and '.join(n.name for n in nodes)} all announce public IP {ip}: "
            "VXLAN for one of them reaches the other (check flannel's public-ip / --iface)",
            rows=tuple(f"{n.name}: public IP {ip} ({n.sources.get('public_ip', '?')})" for n in nodes),
        )
        for ip, nodes in by_ip.items()
        if len(nodes) > 1
    ]


def _config_mismatches(topology: Topology) -> list[Finding]:
    findings = []
    for key, code, severity, what in (
        ("vni", "vni-mismatch", ERROR, "VNI"),
        ("dstport", "port-mismatch", ERROR, "VXLAN UDP port"),
        ("mtu", "mtu-mismatch", WARNING, "flannel.1 MTU"),
    ):
        values: dict[object, list[Node]] = defaultdict(list)
        for node in topology.nodes:
            if getattr(node, key) is not None:
                values[getattr(node, key)].append(node)
        if len(values) < 2:
            continue
        common = max(values, key=lambda v: len(values[v]))
        for value, nodes in values.items():
            if value == common:
                continue
            for node in nodes:
                findings.append(
                    Finding(
                        severity=severity,
                        code=code,
                        node=node.name,
                        message=f"{node.name}'s {what} is {value}, the other nodes' is {common}",
                        rows=tuple(f"{n.name}: {what} {getattr(n, key)}" for n in topology.nodes),
                    )
                )
    return findings


def _check_peer(
    name: str,
    peer: Node,
    neigh: tuple[NeighEntry, ...],
    fdb: tuple[FdbEntry, ...],
    routes: tuple[Route, ...],
    topology: Topology,
) -> list[Finding]:
    """The route → neighbour → FDB chain that ``name`` needs to reach ``peer``'s pods."""
    route = next((r for r in routes if r.dst == peer.pod_cidr), None) if peer.pod_cidr else None
    arp = next((e for e in neigh if e.ip == peer.vtep_ip and (e.dev in (None, FLANNEL_DEVICE))), None)
    forward = next((e for e in fdb if e.mac == peer.vtep_mac and e.dev in (None, FLANNEL_DEVICE)), None)
    needed = (("route", route, bool(peer.pod_cidr)), ("ARP", arp, True), ("FDB", forward, True))
    missing = [what for what, entry, checkable in needed if entry is None and checkable]
    findings = []
    if missing:
        known = ", ".join(
            f"{what} {value}"
            for what, value in (("pods", peer.pod_cidr), ("VTEP", peer.vtep_ip), ("MAC", peer.vtep_mac))
            if value
        )
        findings.append(
            Finding(
                severity=ERROR,
                code="missing-entries",
                node=name,
                message=f"{name} has no {', '.join(missing)} entry for {peer.name} "
                f"({known}, node {peer.public_ip}): its pods cannot reach {peer.name}'s pods",
            )
        )
    if route is not None and (route.gateway != peer.vtep_ip or route.dev != FLANNEL_DEVICE or not route.onlink):
        findings.append(
            Finding(
                severity=ERROR,
                code="route-wrong",
                node=name,
                message=f"{name}'s route to {peer.name}'s pods {peer.pod_cidr} is not "
                f"'via {peer.vtep_ip} dev {FLANNEL_DEVICE} onlink'",
                rows=(route_row(name, route),),
            )
        )
    if arp is not None and arp.mac != peer.vtep_mac:
        owner = topology.node_by_vtep_mac(arp.mac)
        consequence = (
            f"that is {owner.name}'s VTEP, so traffic for {peer.name}'s pods detours through {owner.name}"
            if owner
            else "that is no node's VTEP, so flannel.1 has nowhere to send the traffic"
        )
        findings.append(
            Finding(
                severity=ERROR,
                code="neigh-wrong-mac",
                node=name,
                message=f"{name}'s ARP entry for {peer.name}'s VTEP {peer.vtep_ip} says {arp.mac}, "
                f"but {peer.name}'s flannel.1 is {peer.vtep_mac}; {consequence}",
                rows=(neigh_row(name, arp),),
            )
        )
    elif arp is not None and not arp.permanent:
        findings.append(
            Finding(
                severity=WARNING,
                code="neigh-not-permanent",
                node=name,
                message=f"{name}'s ARP entry for {peer.name}'s VTEP {peer.vtep_ip} is {'/'.join(arp.states)}, "
                "not PERMANENT as flanneld sets it",
                rows=(neigh_row(name, arp),),
            )
        )
    if forward is not None and forward.dst != peer.public_ip:
        findings.append(
            Finding(
                severity=ERROR,
                code="fdb-wrong-dst",
                node=name,
                message=f"{name}'s FDB entry for {peer.name}'s VTEP MAC {peer.vtep_mac} points at "
                f"{_name(topology, forward.dst)}, not at {peer.name}'s {peer.public_ip}: "
                f"VXLAN for {peer.name}'s pods goes to the wrong host",
                rows=(fdb_row(name, forward),),
            )
        )
    return findings


def _stale_entries(
    name: str, neigh: tuple[NeighEntry, ...], fdb: tuple[FdbEntry, ...], topology: Topology
) -> list[Finding]:
    findings = []
    for entry in fdb:
        if entry.dev not in (None, FLANNEL_DEVICE) or topology.node_by_vtep_mac(entry.mac):
            continue
        where = (
            f"{entry.dst}, which is no node's IP" if not topology.node_by_ip(entry.dst) else _name(topology, entry.dst)
        )
        findings.append(
            Finding(
                severity=WARNING,
                code="fdb-stale",
                node=name,
                message=f"{name}'s FDB holds {entry.mac} → {where}; {entry.mac} is no node's VTEP MAC "
                "(a stale entry, e.g. of a node that left or whose flannel.1 was re-created)",
                rows=(fdb_row(name, entry),),
            )
        )
    for arp in neigh:
        if arp.dev not in (None, FLANNEL_DEVICE) or topology.node_by_vtep_ip(arp.ip):
            continue
        findings.append(
            Finding(
                severity=WARNING,
                code="neigh-stale",
                node=name,
                message=f"{name}'s ARP table on flannel.1 holds {arp.ip}, which is no node's VTEP IP (stale)",
                rows=(neigh_row(name, arp),),
            )
        )
    return findings


# -- the wire against the tables -----------------------------------------------------------------


class CaptureAudit:
    """Accumulates what a capture shows, one record at a time, then reports findings.

    Args:
        topology: the cluster the capture was taken in.
    """

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        # Lookups by address, once (the first node with an address wins, as in Topology).
        self._node_by_ip: dict[str | None, Node] = {}
        self._node_by_vtep_ip: dict[str | None, Node] = {}
        for node in topology.nodes:
            if node.public_ip:
                self._node_by_ip.setdefault(node.public_ip, node)
            if node.vtep_ip:
                self._node_by_vtep_ip.setdefault(node.vtep_ip, node)
        self._every_ip_known = bool(topology.nodes) and all(n.public_ip for n in topology.nodes)
        self._wrong_mac: dict[tuple[str, str], list[int]] = defaultdict(list)
        self._unknown_dst: dict[str, list[int]] = defaultdict(list)
        self._pairs: dict[tuple[str, str], list[int]] = defaultdict(list)
        self._bad_checksum: dict[tuple[str, str], list[int]] = defaultdict(list)
        self._syns: dict[tuple[str, int, str, int, int], list[tuple[int, float]]] = defaultdict(list)
        self._answered: set[tuple[str, int, str, int]] = set()
        self._fragments: list[int] = []
        self._too_big: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self._vni_port: dict[tuple[str, str], list[int]] = defaultdict(list)
        self._unencapsulated: dict[tuple[str, str, int, int], list[int]] = defaultdict(list)
        self._encapsulated_flows: set[tuple[str, str, int, int]] = set()
        self._masqueraded: dict[str, list[int]] = defaultdict(list)
        self._encaps: dict[str, list[int]] = defaultdict(list)  # the packets of each encapsulation seen

    def add(self, record: PacketRecord) -> None:
        """Look at one record (in capture order)."""
        if record.is_tunnel and record.encap:
            self._encaps[record.encap].append(record.number)
        if record.is_vxlan:
            self._add_vxlan(record)
            self._encapsulated_flows.add(_flow(record))
        elif record.outer_src_ip and record.proto in ("tcp", "udp", "icmp"):
            self._add_plain(record)
        self._add_tcp(record)

    def _add_plain(self, record: PacketRecord) -> None:
        """Pod traffic outside VXLAN between pods of two nodes."""
        src = self.topology.node_of_pod_ip(record.outer_src_ip)
        dst = self.topology.node_of_pod_ip(record.outer_dst_ip)
        if src and dst and src.name != dst.name:
            self._unencapsulated[_flow(record)].append(record.number)

    def _add_tcp(self, record: PacketRecord) -> None:
        """SYNs and their answers."""
        if record.proto == "tcp" and record.tcp_flags and record.src_ip and record.dst_ip:
            key = (record.src_ip, record.src_port or 0, record.dst_ip, record.dst_port or 0)
            flags = record.tcp_flags.split(", ")  # an ECN-setup SYN is "SYN, ECE, CWR"
            if "SYN" in flags and "ACK" not in flags:
                seen = self._syns[(*key, record.tcp_seq or 0)]
                if not seen or record.time - seen[-1][1] >= RETRANSMIT_MIN_GAP:
                    seen.append((record.number, record.time))
            elif "SYN" in flags:
                self._answered.add((key[2], key[3], key[0], key[1]))

    def _add_vxlan(self, record: PacketRecord) -> None:
        self._add_vxlan_packets(
            record.outer_src_ip or "",
            record.outer_dst_ip or "",
            record.inner_dst_mac,
            record.outer_udp_checksum_ok,
            bool(record.outer_fragment),
            record.vni,
            record.outer_dst_port,
            record.inner_src_ip,
            [record.number],
            [record.inner_ip_len],
        )

    def _add_vxlan_packets(
        self,
        src: str,
        dst: str,
        inner_dst_mac: str | None,
        checksum_ok: bool | None,
        fragment: bool,
        vni: int | None,
        dst_port: int | None,
        inner_src_ip: str | None,
        numbers: list[int],
        inner_lengths: list[int | None],
    ) -> None:
        """VXLAN packets that agree on everything checked here but their number and inner length."""
        self._pairs[(src, dst)].extend(numbers)
        dst_node = self._node_by_ip.get(dst)
        if dst_node is None:
            if self._every_ip_known:  # only then can an address be no node's
                self._unknown_dst[dst].extend(numbers)
        elif inner_dst_mac not in (dst_node.vtep_mac, BROADCAST_MAC, None):
            self._wrong_mac[(dst, inner_dst_mac or "")].extend(numbers)
        if checksum_ok is False:
            self._bad_checksum[(src, dst)].extend(numbers)
        if fragment:
            self._fragments.extend(numbers)
        for node in (dst_node, self._node_by_ip.get(src)):
            if node is None:
                continue
            if (node.vni is not None and vni != node.vni) or (node.dstport is not None and dst_port != node.dstport):
                self._vni_port[(node.name, f"VNI {vni} port {dst_port}")].extend(numbers)
        if dst_node and dst_node.mtu:
            mtu = dst_node.mtu
            too_big = [(n, size) for n, size in zip(numbers, inner_lengths, strict=True) if size and size > mtu]
            if too_big:
                self._too_big[dst_node.name].extend(too_big)
        masquerade = self._node_by_vtep_ip.get(inner_src_ip)
        if masquerade is not None:
            self._masqueraded[masquerade.name].extend(numbers)

    def add_frame(self, frame: pd.DataFrame) -> None:
        """Look at every packet of a ``Capture.packets`` DataFrame: what ``add`` checks, with the
        VXLAN packets taken in groups that agree on every column checked (a few hundred groups
        for a million packets), and only the SYNs and unencapsulated pod traffic row by row."""
        import numpy as np
        import pandas as pd

        if "encap" in frame:
            encap = frame.loc[frame.encap.notna(), ["encap", "number"]]
            for name, numbers in encap.groupby(encap.encap.astype(str), sort=False, observed=True).number:
                self._encaps[str(name)].extend(numbers.astype(int).tolist())
        vxlan = frame.is_vxlan.fillna(False).astype(bool)
        tunnelled = frame.loc[vxlan, [*_VXLAN_KEY, "number", "inner_ip_len"]]
        groups = _groups_in_order(tunnelled, _VXLAN_KEY)  # as add() would meet them
        firsts = tunnelled.iloc[[int(rows[0]) for rows in groups]]
        key_values = {c: _values(firsts, c) for c in _VXLAN_KEY}  # each group's values, from its first row
        numbers = tunnelled.number.to_numpy(dtype=np.int64)
        lengths = tunnelled.inner_ip_len.to_numpy(dtype=np.int64, na_value=0)  # 0: no length, never too big
        for group, rows in enumerate(groups):
            src, dst, mac, checksum_ok, fragment, vni, port, inner_src = (key_values[c][group] for c in _VXLAN_KEY)
            self._add_vxlan_packets(
                str(src or ""), str(dst or ""), mac, checksum_ok, bool(fragment), vni, port, inner_src,
                numbers[rows].tolist(), lengths[rows].tolist(),
            )  # fmt: skip
        ends = ["src_ip", "src_port", "dst_ip", "dst_port"]
        plain = ~vxlan & frame.outer_src_ip.notna() & frame.proto.isin(["tcp", "udp", "icmp"])
        tcp = (frame.proto == "tcp").to_numpy(dtype=bool, na_value=False)
        syn = pd.Series(tcp & _flag_set(frame.tcp_flags, "SYN"), index=frame.index)
        ack = _flag_set(frame.tcp_flags, "ACK")
        # Only a SYN sent more than once can be a retransmission; an answer counts for any SYN.
        bare_syns = frame.loc[syn & ~ack, [*ends, "tcp_seq"]]
        repeated = pd.Series(False, index=frame.index)
        repeated[bare_syns.index[bare_syns.duplicated(keep=False)]] = True
        answers = frame.loc[syn & ack, ends]
        # An answer matters only to a SYN seen more than once: the others are left in the columns.
        asked = frame.loc[repeated, ends]
        answers = answers[answers.dst_ip.isin(asked.src_ip.dropna()) & answers.dst_port.isin(asked.src_port.dropna())]
        answers = answers.drop_duplicates()
        self._answered |= set(
            zip(*(_values(answers, c) for c in ("dst_ip", "dst_port", "src_ip", "src_port")), strict=True)
        )
        chosen = frame.loc[plain | repeated, list(_ROW_BY_ROW._fields)]
        records = map(_ROW_BY_ROW._make, zip(*(_values(chosen, name) for name in _ROW_BY_ROW._fields), strict=True))
        either = plain | repeated
        for record, is_plain, is_repeated in zip(
            records, plain[either].tolist(), repeated[either].tolist(), strict=True
        ):
            if is_plain:
                self._add_plain(record)  # type: ignore[arg-type]
            if is_repeated:
                self._add_tcp(record)  # type: ignore[arg-type]
        if self._unencapsulated:  # which of those conversations also went through VXLAN
            crossed = frame.loc[vxlan, ends].drop_duplicates()
            self._encapsulated_flows |= set(map(_flow_of, *(_values(crossed, c) for c in ends)))
        for lists in (self._pairs, self._unknown_dst, self._wrong_mac, self._bad_checksum, self._vni_port,
                      self._masqueraded, self._too_big):  # fmt: skip
            for packets in lists.values():
                packets.sort()
        self._fragments.sort()

    def findings(self) -> list[Finding]:
        """What the capture shows, root causes first, symptoms they explain folded in."""
        causes = self._wrong_mac_findings() + self._checksum_findings()
        explained = {n for f in causes for n in f.packets}
        symptoms = self._one_way_findings(explained) + self._syn_findings(explained)
        others = self._other_findings() + self._backend_findings()
        return sorted_findings([*causes, *symptoms, *others])

    def _backend_findings(self) -> list[Finding]:
        """Encapsulations on the wire that the cluster's backend (as the tables say) does not use."""
        backends = sorted({n.backend for n in self.topology.nodes if n.backend})
        if not backends:
            return []
        expected = {BACKEND_ENCAP.get(b, b) for b in backends}
        said = ", ".join(backends)
        return [
            Finding(
                severity=WARNING,
                code="unexpected-encapsulation",
                message=f"{len(numbers)} packets on the wire are {encap}, but the tables say the cluster's backend "
                f"is {said}: another overlay (a second CNI, a node with another backend) or a port taken for a tunnel "
                "by mistake",
                packets=tuple(numbers),
            )
            for encap, numbers in self._encaps.items()
            if encap not in expected
        ]

    def _sender_rows(self, src_ip: str, mac: str) -> tuple[str, ...]:
        sender = self.topology.node_by_ip(src_ip)
        view = self.topology.view(sender.name) if sender else None
        if sender is None or view is None or view.fdb is None:
            return ()
        rows = tuple(fdb_row(sender.name, e) for e in view.fdb if e.mac == mac)
        rows += tuple(neigh_row(sender.name, e) for e in (view.neigh or ()) if e.mac == mac)
        return rows

    def _wrong_mac_findings(self) -> list[Finding]:
        findings = []
        for (dst_ip, mac), packets in self._wrong_mac.items():
            dst_node = self.topology.node_by_ip(dst_ip)
            owner = self.topology.node_by_vtep_mac(mac)
            owner_text = f"the VTEP of {owner.name}" if owner else "no node's VTEP"
            srcs = {src for (src, dst), nums in self._pairs.items() if dst == dst_ip and set(nums) & set(packets)}
            answered = any((dst_ip, s) in self._pairs for s in srcs)
            rows: tuple[str, ...] = ()
            for src in sorted(srcs):
                rows += self._sender_rows(src, mac)
            findings.append(
                Finding(
                    severity=ERROR,
                    code="inner-mac-mismatch",
                    node=dst_node.name if dst_node else None,
                    message=f"{len(packets)} VXLAN packets to {_name(self.topology, dst_ip)} carry inner destination "
                    f"MAC {mac}, {owner_text}, not {dst_node.vtep_mac if dst_node else '?'}: the sender's FDB or "
                    "ARP entry is wrong or stale" + ("" if answered else "; none was answered"),
                    rows=rows,
                    packets=tuple(packets),
                )
            )
        for dst_ip, packets in self._unknown_dst.items():
            findings.append(
                Finding(
                    severity=WARNING,
                    code="vxlan-to-unknown-host",
                    message=f"{len(packets)} VXLAN packets go to {dst_ip}, which is no node's IP "
                    "(a stale FDB entry, or a node missing from the topology)",
                    packets=tuple(packets),
                )
            )
        return findings

    def _checksum_findings(self) -> list[Finding]:
        capture_node = capture_node_ip(self._pairs)
        findings = []
        for (src, dst), packets in self._bad_checksum.items():
            receiver = self.topology.node_by_ip(dst)
            if self._sent_here(src, dst, capture_node):
                findings.append(
                    Finding(
                        severity=INFO,
                        code="checksum-offload",
                        node=_node_name(self.topology, src),
                        message=f"{len(packets)} VXLAN packets {_name(self.topology, src)} → "
                        f"{_name(self.topology, dst)} show a wrong outer UDP checksum as captured on the sender: "
                        "checksum offload (the NIC fills the checksum in after tcpdump saw the packet)"
                        + (f"; {_name(self.topology, dst)} answered them" if (dst, src) in self._pairs else ""),
                        packets=tuple(packets),
                    )
                )
                continue
            findings.append(
                Finding(
                    severity=WARNING,
                    code="bad-udp-checksum",
                    node=receiver.name if receiver else None,
                    message=f"{len(packets)} VXLAN packets {_name(self.topology, src)} → {_name(self.topology, dst)} "
                    "arrive with a wrong outer UDP checksum: the receiver's kernel drops them (the VXLAN "
                    "checksum / double-NAT bug behind 63-second connection delays); check NAT and checksum "
                    "offload between the nodes",
                    packets=tuple(packets),
                )
            )
        return findings

    def _sent_here(self, src: str, dst: str, capture_node: str | None) -> bool:
        """Whether the packets src → dst were captured on their sender. Known when one node is
        on every VXLAN packet (the capture node); else inferred: the peer answered (so its
        kernel took them) and nothing it sent back has a wrong checksum."""
        if capture_node is not None:
            return src == capture_node
        return (dst, src) in self._pairs and (dst, src) not in self._bad_checksum

    def _one_way_findings(self, explained: set[int]) -> list[Finding]:
        findings = []
        for (src, dst), packets in self._pairs.items():
            if (dst, src) in self._pairs or set(packets) <= explained:
                continue
            findings.append(
                Finding(
                    severity=WARNING,
                    code="one-way-vxlan",
                    message=f"{len(packets)} VXLAN packets {_name(self.topology, src)} → "
                    f"{_name(self.topology, dst)} and none back: the VXLAN port is blocked, or the "
                    "receiver drops them",
                    packets=tuple(packets),
                )
            )
        return findings

    def _syn_findings(self, explained: set[int]) -> list[Finding]:
        findings = []
        for (src, sport, dst, dport, _seq), seen in self._syns.items():
            if len(seen) < 2 or {n for n, _ in seen} <= explained:
                continue
            answered = (src, sport, dst, dport) in self._answered
            delays = ", ".join(f"+{t - seen[0][1]:.1f} s" for _, t in seen[1:])
            findings.append(
                Finding(
                    severity=WARNING,
                    code="syn-retransmitted",
                    message=f"SYN {src}:{sport} → {dst}:{dport} sent {len(seen)} times ({delays})"
                    + ("; answered at last" if answered else "; never answered"),
                    packets=tuple(n for n, _ in seen),
                )
            )
        return findings

    def _other_findings(self) -> list[Finding]:
        findings = []
        if self._fragments:
            findings.append(
                Finding(
                    severity=WARNING,
                    code="outer-fragments",
                    message=f"{len(self._fragments)} VXLAN packets are IPv4 fragments: inner packets are larger "
                    "than the underlay MTU allows (flannel.1's MTU should be the underlay's minus 50)",
                    packets=tuple(self._fragments),
                )
            )
        for node, seen in self._too_big.items():
            largest = max(size for _, size in seen)
            findings.append(
                Finding(
                    severity=WARNING,
                    code="inner-larger-than-mtu",
                    node=node,
                    message=f"{len(seen)} inner packets to {node} are up to {largest} bytes, larger than "
                    f"{node}'s flannel.1 MTU {self.topology.node(node).mtu}: the MTUs of the nodes differ",  # type: ignore[union-attr]
                    packets=tuple(n for n, _ in seen),
                )
            )
        for (node, what), packets in self._vni_port.items():
            findings.append(
                Finding(
                    severity=ERROR,
                    code="vni-port-mismatch",
                    node=node,
                    message=f"{len(packets)} VXLAN packets use {what}, not what {node}'s flannel.1 is configured with",
                    packets=tuple(packets),
                )
            )
        # Pod-side copies of flows that the capture also shows inside VXLAN (tcpdump -i any
        # sees both) are not unencapsulated traffic.
        bare = sorted(
            n for flow, numbers in self._unencapsulated.items() if flow not in self._encapsulated_flows for n in numbers
        )
        if bare:
            findings.append(
                Finding(
                    severity=INFO,
                    code="unencapsulated-pod-traffic",
                    message=f"{len(bare)} packets between pods on different nodes are not "
                    "encapsulated (flannel DirectRouting or host-gw)",
                    packets=tuple(bare),
                )
            )
        for node, packets in self._masqueraded.items():
            findings.append(
                Finding(
                    severity=INFO,
                    code="masqueraded-source",
                    node=node,
                    message=f"{len(packets)} inner packets come from {node}'s VTEP address: traffic from the node "
                    "itself, or masqueraded by flannel's ipMasq rules",
                    packets=tuple(packets),
                )
            )
        return findings


def capture_node_ip(pairs: Iterable[tuple[str, str]]) -> str | None:
    """Where a capture was taken: the node IP on every VXLAN packet (given as the distinct outer
    (source, destination) pairs), when exactly one is. With two nodes talking both are on every
    packet, and the capture point is not known from addresses alone."""
    common: set[str] | None = None
    for src, dst in pairs:
        common = {src, dst} if common is None else common & {src, dst}
    return next(iter(common)) if common and len(common) == 1 else None


def _flow(record: PacketRecord) -> tuple[str, str, int, int]:
    """The pods' conversation, the same in both directions."""
    return _flow_of(record.src_ip, record.src_port, record.dst_ip, record.dst_port)


def _flow_of(
    src_ip: str | None, src_port: int | None, dst_ip: str | None, dst_port: int | None
) -> tuple[str, str, int, int]:
    (ip1, port1), (ip2, port2) = sorted(((src_ip or "", src_port or 0), (dst_ip or "", dst_port or 0)))
    return (ip1, ip2, port1, port2)


def audit_capture(records: Iterable[PacketRecord], topology: Topology) -> list[Finding]:
    """Findings from the tables and from a capture checked against them."""
    audit = CaptureAudit(topology)
    for record in records:
        audit.add(record)
    return sorted_findings([*audit_topology(topology), *audit.findings()])


def audit_frame(frame: pd.DataFrame, topology: Topology) -> list[Finding]:
    """``audit_capture`` of a ``Capture.packets`` DataFrame (the same findings, far fewer steps)."""
    audit = CaptureAudit(topology)
    audit.add_frame(frame)
    return sorted_findings([*audit_topology(topology), *audit.findings()])


# What VXLAN packets must share to be checked as one group.
_VXLAN_KEY = ("outer_src_ip", "outer_dst_ip", "inner_dst_mac", "outer_udp_checksum_ok", "outer_fragment", "vni",
              "outer_dst_port", "inner_src_ip")  # fmt: skip
# What the checks made row by row (SYNs, pod traffic outside VXLAN) read of a packet.
_ROW_BY_ROW = namedtuple(
    "_ROW_BY_ROW",
    "number time proto outer_src_ip outer_dst_ip src_ip dst_ip src_port dst_port tcp_flags tcp_seq",
)


def _groups_in_order(frame: pd.DataFrame, columns: Iterable[str]) -> list[NDArray[np.intp]]:
    """The positions of the rows that agree on ``columns`` (a missing value is a value of its
    own), group by group in the order of each group's first row."""
    import numpy as np
    import pandas as pd

    key = np.zeros(len(frame), dtype=np.int64)
    for column in columns:
        codes, uniques = pd.factorize(frame[column], use_na_sentinel=True)
        key = key * (len(uniques) + 1) + (codes + 1)
        key, _ = pd.factorize(key)  # dense again: the next column's product cannot overflow
        key = key.astype(np.int64)
    if not len(key):
        return []
    order = np.argsort(key, kind="stable")  # factorize numbers groups by first appearance
    bounds = np.cumsum(np.bincount(key))[:-1]
    return list(np.split(order, bounds))


def _flag_set(flags: pd.Series, flag: str) -> NDArray[np.bool_]:
    """Where a ``tcp_flags`` column (categorical: "SYN,ACK" and the like) holds ``flag``: one test
    per distinct text, not per packet."""
    import numpy as np

    column = flags.astype("category")
    holds = np.array([flag in str(text).split(", ") for text in column.cat.categories] + [False])
    out: NDArray[np.bool_] = holds[column.cat.codes.to_numpy()]  # code -1 (missing) takes the last entry
    return out


def _values(frame: pd.DataFrame, name: str) -> list[Any]:
    """A column as Python values, missing ones None."""
    column = frame[name]
    return column.astype(object).where(column.notna(), None).tolist()  # type: ignore[no-any-return]
