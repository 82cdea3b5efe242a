"""Packet journeys: the copies of one packet found across interfaces and captures, in path
order, with the delay of each hop, where a packet was lost, and how far apart the capture
nodes' clocks are.

Rule: pure. The captures' packet DataFrames (columns, never per-packet objects) in; DataFrames
out. Every step is a vectorised group-by, so matching is linear in the number of packets.

A packet's copies are matched on what its path does not change (``KEY_FIELDS``): the innermost
IPv4 identification, the transport protocol, TCP's sequence and acknowledgement numbers and
flags, ICMP's type and code, and the payload's length and fingerprint (``payload_hash``). Left
out, because the path changes them: addresses and ports (kube-proxy's DNAT and SNAT), the TTL
(one less at each routing hop), MAC addresses (each link's own), checksums (they follow the
TTL and NAT), and the outer headers (only the encapsulated copies have them).

Copies within one capture are in the order the capture holds them (the order the kernel
delivered them to tcpdump: a ``-i any`` capture lists a packet's veth, cni0, flannel.1 and eth0
copies in path order). Captures are put in order by time, with each node's clock corrected by
the offset estimated from the packets themselves (``clock_offsets``).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from flannelcap.topology.model import Topology

KEY_FIELDS = (
    "ip_id",
    "proto",
    "tcp_seq",
    "tcp_ack",
    "tcp_flags",
    "icmp_type",
    "icmp_code",
    "payload_len",
    "payload_hash",
)
MATCHED_PROTOCOLS = ("tcp", "udp", "icmp")
DELIVERED = "delivered"
OUTGOING = "outgoing"


@dataclass(frozen=True, slots=True)
class CaptureAt:
    """One capture's packets and where it was taken."""

    name: str
    node: str
    packets: pd.DataFrame


@dataclass(frozen=True, slots=True)
class ClockOffset:
    """How far ``node``'s clock is ahead of the reference node's (the first capture's), in
    seconds, and within what bound (``None`` where no packet crossed both ways)."""

    node: str
    offset: float | None
    uncertainty: float | None
    pairs: int


def sightings(captures: Sequence[CaptureAt]) -> pd.DataFrame:
    """One row per matchable packet copy of every capture (IPv4 TCP, UDP or ICMP): which
    capture, node and interface, when, and its key."""
    frames = []
    for index, capture in enumerate(captures):
        p = capture.packets
        vxlan = p["is_vxlan"].to_numpy(dtype=bool)
        point = p["if_name"].astype("object")
        by_index = "if" + p["ifindex"].astype("string")
        point = point.where(point.notna(), by_index.astype("object"))
        point = point.where(point.notna(), capture.name)
        frame = pd.DataFrame(
            {
                "capture": index,
                "file": capture.name,
                "node": capture.node,
                "point": point.astype(str),
                "direction": p["packet_type"].astype("object"),
                "number": p["number"].to_numpy(dtype=np.int64),
                "time": p["time"].to_numpy(dtype=np.float64),
                "encapsulated": vxlan,
                "ttl": np.where(vxlan, p["inner_ttl"].astype("Float64"), p["outer_ttl"].astype("Float64")),
                "src_ip": p["src_ip"].astype("object"),
                "dst_ip": p["dst_ip"].astype("object"),
                "src_port": p["src_port"],
                "dst_port": p["dst_port"],
                "src_pod": p["src_pod"].astype("object"),
                "dst_pod": p["dst_pod"].astype("object"),
                "outer_src_ip": p["outer_src_ip"].astype("object"),
                "outer_dst_port": p["outer_dst_port"],
                "outer_udp_checksum_ok": p["outer_udp_checksum_ok"],
                "vni": p["vni"],
                "inner_dst_mac": p["inner_dst_mac"].astype("object"),
                "info": p["info"].astype("object"),
                **{name: p[name] for name in KEY_FIELDS},
            }
        )
        proto = p["proto"].astype("object")
        frames.append(frame[(p["ip_id"].notna() & proto.isin(MATCHED_PROTOCOLS)).to_numpy()])
    if not frames:
        return pd.DataFrame()
    seen = pd.concat(frames, ignore_index=True)
    key = seen[list(KEY_FIELDS)].astype("object")
    seen["packet"] = key.groupby(list(KEY_FIELDS), dropna=False, sort=False).ngroup().to_numpy()
    return seen


def _node_ips(seen: pd.DataFrame, topology: Topology | None) -> dict[str, str]:
    """Each capture node's own IP: the topology's, else the outer address every encapsulated
    copy on that node carries (as source or destination) most often."""
    known = {n.name: n.public_ip for n in topology.nodes if n.public_ip} if topology else {}
    ips: dict[str, str] = {}
    for node, rows in seen[seen["encapsulated"]].groupby("node", sort=False):
        if node in known:
            ips[str(node)] = str(known[node])
            continue
        counts = Counter(rows["outer_src_ip"].dropna().tolist())
        if counts:
            ips[str(node)] = counts.most_common(1)[0][0]
    return {**ips, **{n: ip for n, ip in known.items() if n not in ips}}


def _crossings(seen: pd.DataFrame, topology: Topology | None) -> pd.DataFrame:
    """Each packet that left one capture node encapsulated and arrived at another: sender,
    receiver, and the time it was sent (last copy on the sender's wire side) and received
    (first copy on the receiver's), by each node's own clock."""
    wire = seen[seen["encapsulated"]]
    if wire.empty:
        return pd.DataFrame(columns=["packet", "sender", "receiver", "sent", "received"])
    ips = _node_ips(seen, topology)
    node_ip = wire["node"].map(ips)
    sent_here = np.where(
        wire["direction"].notna(), wire["direction"] == OUTGOING, wire["outer_src_ip"] == node_ip
    ).astype(bool)
    sent = wire[sent_here].groupby(["packet", "node"], sort=False)["time"].max().rename("sent").reset_index()
    received = wire[~sent_here].groupby(["packet", "node"], sort=False)["time"].min().rename("received").reset_index()
    both = sent.merge(received, on="packet", suffixes=("_sender", "_receiver"))
    both = both[both["node_sender"] != both["node_receiver"]]
    return both.rename(columns={"node_sender": "sender", "node_receiver": "receiver"})


def clock_offsets(seen: pd.DataFrame, topology: Topology | None = None) -> list[ClockOffset]:
    """Each capture node's clock offset against the first capture's node, from the packets
    that crossed between them: with ``t_B = t_A + delay + θ`` and delays never negative, the
    smallest apparent one-way time each way bounds θ to ``[-min(B→A), min(A→B)]``; the
    estimate is that interval's middle (symmetric paths), the uncertainty its half-width.
    Nodes linked to the reference only through others are chained; a node with no packet
    crossing both ways to a linked node gets ``offset=None``."""
    if seen.empty:
        return []
    nodes = list(dict.fromkeys(seen.sort_values("capture")["node"].tolist()))
    crossings = _crossings(seen, topology)
    one_way = (
        (crossings["received"] - crossings["sent"])
        .groupby([crossings["sender"], crossings["receiver"]])
        .agg(["min", "count"])
    )
    least = {(str(a), str(b)): (float(row["min"]), int(row["count"])) for (a, b), row in one_way.iterrows()}
    result = {nodes[0]: ClockOffset(nodes[0], 0.0, 0.0, 0)}
    queue = deque([nodes[0]])
    while queue:
        a = queue.popleft()
        for b in nodes:
            if b in result or (a, b) not in least or (b, a) not in least:
                continue
            (ab, count_ab), (ba, count_ba) = least[(a, b)], least[(b, a)]
            base = result[a]
            assert base.offset is not None and base.uncertainty is not None
            result[b] = ClockOffset(
                b, base.offset + (ab - ba) / 2, base.uncertainty + (ab + ba) / 2, count_ab + count_ba
            )
            queue.append(b)
    return [result.get(node, ClockOffset(node, None, None, 0)) for node in nodes]


def in_path_order(seen: pd.DataFrame, offsets: Sequence[ClockOffset]) -> pd.DataFrame:
    """The sightings of each packet in path order, each with its hop number, its time by the
    reference clock (``clock_time``; NaN where the node's offset is unknown) and the time since
    the packet's first sighting (``since_first``; by each node's own clock where an offset is
    unknown, and then flagged in ``clock_known``)."""
    if seen.empty:
        return seen
    offset_of = {o.node: o.offset for o in offsets}
    known = seen["node"].map(lambda n: offset_of.get(n) is not None).astype(bool)
    corrected = seen["time"] - seen["node"].map(lambda n: offset_of.get(n) or 0.0).astype(float)
    out = seen.assign(clock_time=corrected.where(known), clock_known=known, corrected=corrected)
    # A capture's copies of a packet stay together, in the capture's order; captures by time.
    out["block_time"] = corrected.groupby([out["packet"], out["capture"]]).transform("min")
    out = out.sort_values(["packet", "block_time", "capture", "number"], kind="stable", ignore_index=True)
    out["hop"] = out.groupby("packet").cumcount()
    out["since_first"] = out["corrected"] - out.groupby("packet")["corrected"].transform("first")
    return out.drop(columns=["block_time", "corrected"])


def flows_of(ordered: pd.DataFrame) -> pd.Series:
    """Each packet's flow, as its first copy names it (before any NAT on the way):
    ``busybox:35430 → nginx:80 tcp`` (pod names where known, else addresses)."""
    first = ordered.groupby("packet", sort=False).first()

    def end(name: pd.Series, ip: pd.Series, port: pd.Series) -> pd.Series:
        who = name.where(name.notna(), ip).astype(str)
        return who + np.where(port.notna(), ":" + port.astype("string").fillna(""), "")

    label = end(first["src_pod"], first["src_ip"], first["src_port"]) + " → "
    label = label + end(first["dst_pod"], first["dst_ip"], first["dst_port"]) + " " + first["proto"].astype(str)
    return label


def _paths(ordered: pd.DataFrame, flows: pd.Series) -> dict[str, tuple[tuple[str, str], ...]]:
    """Each flow's path: the points (node, interface) of its packet seen at the most points,
    in path order (the most common such sequence where several are as long)."""
    points = list(zip(ordered["node"].tolist(), ordered["point"].tolist(), strict=True))
    sequences: dict[int, list[tuple[str, str]]] = {}
    for packet, point in zip(ordered["packet"].tolist(), points, strict=True):
        sequences.setdefault(packet, []).append(point)
    best: dict[str, Counter[tuple[tuple[str, str], ...]]] = {}
    for packet, sequence in sequences.items():
        unique = tuple(dict.fromkeys(sequence))
        best.setdefault(str(flows[packet]), Counter())[unique] += 1
    return {flow: max(counter, key=lambda s: (len(s), counter[s])) for flow, counter in best.items()}


def journeys(captures: Sequence[CaptureAt], topology: Topology | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every matched packet's journey and verdict.

    Returns:
        ``(sightings, packets)``: one row per copy in path order (``packet``, ``hop``,
        ``file``, ``node``, ``point``, ``direction``, ``encapsulated``, ``ttl``, ``time``,
        ``since_first``, ``flow``, ...), and one row per packet (``packet``, ``flow``,
        ``first_file``, ``first_number``, ``seen``, ``last_node``, ``last_point``,
        ``verdict``, ``lost``), with the clock offsets in ``packets.attrs["clocks"]``.
    """
    seen = sightings(captures)
    if seen.empty:
        empty = pd.DataFrame(columns=["packet", "flow", "verdict", "lost"])
        empty.attrs["clocks"] = []
        return seen, empty
    offsets = clock_offsets(seen, topology)
    ordered = in_path_order(seen, offsets)
    flows = flows_of(ordered)
    ordered["flow"] = ordered["packet"].map(flows)
    paths = _paths(ordered, flows)
    ends = {c.node: float(c.packets["time"].max()) for c in captures if len(c.packets)}
    grouped = ordered.groupby("packet", sort=True)
    last = grouped.last()
    first = grouped.first()
    packets = pd.DataFrame(
        {
            "packet": last.index,
            "flow": flows.reindex(last.index).to_numpy(),
            "first_file": first["file"].to_numpy(),
            "first_number": first["number"].to_numpy(),
            "seen": grouped.size().to_numpy(),
            "last_node": last["node"].to_numpy(),
            "last_point": last["point"].to_numpy(),
        }
    )
    verdicts = [
        _verdict(paths[flow], (node, point), row, ends, topology)
        for flow, node, point, row in zip(
            packets["flow"].tolist(),
            packets["last_node"].tolist(),
            packets["last_point"].tolist(),
            last.itertuples(index=False),
            strict=True,
        )
    ]
    packets["verdict"] = [v for v, _ in verdicts]
    packets["lost"] = [lost for _, lost in verdicts]
    packets.attrs["clocks"] = offsets
    return ordered, packets


def _verdict(
    path: tuple[tuple[str, str], ...],
    where: tuple[str, str],
    last: Any,
    ends: dict[str, float],
    topology: Topology | None,
) -> tuple[str, bool]:
    """Where a packet's journey ended against its flow's path: delivered, or lost between its
    last point and the next one, with the reason the capture shows where it shows one."""
    if where not in path or path.index(where) == len(path) - 1:
        return DELIVERED, False
    node, point = where
    next_node, next_point = path[path.index(where) + 1]
    if next_node != node:
        if ends.get(next_node, float("inf")) < float(last.time):
            return f"not seen after {node} {point}: the capture on {next_node} had ended", False
        return f"lost between {node} {point} and {next_node} {next_point} (the wire or a firewall)", True
    if bool(last.encapsulated):
        reasons = _why_not_decapsulated(last, node, topology)
        return f"arrived on {node} {point}, never reached {next_point}: the kernel dropped it ({reasons})", True
    return f"seen on {node} {point}, never on {next_point}: dropped inside {node}", True


def _why_not_decapsulated(last: Any, node: str, topology: Topology | None) -> str:
    """What the arriving copy shows that would make the node's kernel drop it before its VXLAN
    device, or, where it shows nothing, the candidates that remain."""
    found = []
    if pd.notna(last.outer_udp_checksum_ok) and not bool(last.outer_udp_checksum_ok):
        found.append("its outer UDP checksum is wrong")
    here = next((n for n in topology.nodes if n.name == node), None) if topology else None
    if here is not None:
        if here.vni is not None and pd.notna(last.vni) and int(last.vni) != here.vni:
            found.append(f"VNI {int(last.vni)} is not {node}'s ({here.vni})")
        if here.dstport and pd.notna(last.outer_dst_port) and int(last.outer_dst_port) != here.dstport:
            found.append(f"UDP port {int(last.outer_dst_port)} is not {node}'s VXLAN port ({here.dstport})")
        if here.vtep_mac and isinstance(last.inner_dst_mac, str) and last.inner_dst_mac != here.vtep_mac:
            found.append(f"inner dst MAC {last.inner_dst_mac} is not {node}'s VTEP ({here.vtep_mac})")
    if found:
        return "; ".join(found)
    if here is None:
        return (
            "candidates: a bad outer checksum, a VNI or port mismatch, an inner MAC that is not this VTEP's, a firewall"
        )
    return "its checksum, VNI, port and inner MAC are right: a firewall (nftables/iptables) on the node"


def hops(ordered: pd.DataFrame) -> pd.DataFrame:
    """Per flow, the delay of each hop of its packets (from one point to the next): count,
    median and 99th percentile in microseconds, and whether the hop crosses nodes (then the
    delay depends on the clock offsets' estimate; NaN where a node's offset is unknown)."""
    if ordered.empty:
        return pd.DataFrame(columns=["flow", "from", "to", "packets", "median_us", "p99_us", "crosses_nodes"])
    following = ordered.groupby("packet")
    nxt = following[["node", "point", "clock_time", "time", "clock_known"]].shift(-1)
    pairs = ordered.assign(
        to_node=nxt["node"],
        to_point=nxt["point"],
        delay=np.where(
            nxt["node"] == ordered["node"],
            nxt["time"] - ordered["time"],
            nxt["clock_time"] - ordered["clock_time"],
        ),
    ).dropna(subset=["to_node"])
    pairs["from"] = pairs["node"] + " " + pairs["point"]
    pairs["to"] = pairs["to_node"].astype(str) + " " + pairs["to_point"].astype(str)
    stats = pairs.groupby(["flow", "from", "to"], sort=False)["delay"].agg(
        packets="size",
        median_us=lambda d: float(np.nanmedian(d)) * 1e6 if d.notna().any() else np.nan,
        p99_us=lambda d: float(np.nanpercentile(d, 99)) * 1e6 if d.notna().any() else np.nan,
    )
    crosses = pairs.groupby(["flow", "from", "to"], sort=False).apply(
        lambda g: bool((g["node"] != g["to_node"]).any()), include_groups=False
    )
    return stats.assign(crosses_nodes=crosses).reset_index()
