"""Packet journeys: the copies of one packet found across interfaces and captures, in path
order, with the delay of each hop, where a packet was lost, and how far apart the capture
nodes' clocks are.

Rule: pure. The captures' packet DataFrames (columns, never per-packet objects) in; DataFrames
out. Copies are grouped by hashing their keys and every later step is a group-by or one sort,
so two captures of a million packets each are matched in seconds; Python runs per flow and per
lost packet only.

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

from collections import deque
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
    """One capture's packets (``Capture.packets``) and where it was taken."""

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


def _codes(values: pd.Series, vocabulary: dict[Any, int]) -> np.ndarray[Any, Any]:
    """Integer codes of a column's values (-1 where missing); a label's code comes from
    ``vocabulary``, shared by all captures, so that codes compare across them."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        labels = [vocabulary.setdefault(label, len(vocabulary)) for label in values.cat.categories]
        codes = values.cat.codes.to_numpy()
        mapped: np.ndarray[Any, Any] = np.where(codes >= 0, np.array([*labels, -1], dtype=np.int64)[codes], -1)
        return mapped
    ints: np.ndarray[Any, Any] = values.astype("Int64").fillna(-1).to_numpy(dtype=np.int64)
    return ints


def _points(capture: CaptureAt) -> tuple[np.ndarray[Any, Any], list[str]]:
    """Where each packet of a capture was seen (the interface's name, else ``if<index>``, else
    the capture's name): codes into a list of names."""
    p = capture.packets
    names = p["if_name"]
    categorical = isinstance(names.dtype, pd.CategoricalDtype)
    name_codes = names.cat.codes.to_numpy().astype(np.int64) if categorical else np.full(len(p), -1, dtype=np.int64)
    index = p["ifindex"].astype("Int64").fillna(-1).to_numpy(dtype=np.int64)
    combined = (name_codes + 1) * (int(index.max(initial=0)) + 2) + (index + 1)  # one integer per (name, index)
    which, unique = pd.factorize(combined)
    categories = list(names.cat.categories) if categorical else []
    labels = []
    for key in unique.tolist():
        a, b = divmod(int(key), int(index.max(initial=0)) + 2)
        a, b = a - 1, b - 1
        labels.append(str(categories[a]) if a >= 0 else f"if{b}" if b >= 0 else capture.name)
    return which, labels


def sightings(captures: Sequence[CaptureAt]) -> pd.DataFrame:
    """One row per matchable copy of every capture (IPv4 TCP, UDP or ICMP): ``capture``,
    ``row`` (in that capture's packets), ``number``, ``time``, ``file``, ``node``, ``point``,
    ``direction``, ``encapsulated``, ``ttl``, and ``packet``: the same number for every copy of
    one packet."""
    parts: list[pd.DataFrame] = []
    point_names: dict[str, int] = {}
    vocabularies: dict[str, dict[Any, int]] = {name: {} for name in KEY_FIELDS}
    for index, capture in enumerate(captures):
        p = capture.packets
        proto = p["proto"].astype("object")
        keep = (p["ip_id"].notna() & proto.isin(MATCHED_PROTOCOLS)).to_numpy()
        rows = np.nonzero(keep)[0]
        which, labels = _points(capture)
        global_points = np.array([point_names.setdefault(label, len(point_names)) for label in labels] or [0])
        tunnelled = p["is_tunnel"].to_numpy(dtype=bool)
        inner, outer = p["inner_ttl"].astype("Float64"), p["outer_ttl"].astype("Float64")
        ttl = np.where(  # the innermost header's: a tunnel's inner one where it carries one
            inner.notna().to_numpy(),
            inner.to_numpy(dtype=float, na_value=np.nan),
            outer.to_numpy(dtype=float, na_value=np.nan),
        )
        part = pd.DataFrame(
            {
                "capture": np.full(len(rows), index, dtype=np.int32),
                "row": rows,
                "number": p["number"].to_numpy(dtype=np.int64)[rows],
                "time": p["time"].to_numpy(dtype=np.float64)[rows],
                "point_code": global_points[which[rows]],
                "direction": p["packet_type"].astype("object").to_numpy()[rows],
                "encapsulated": tunnelled[rows],
                "ttl": ttl[rows],
            }
        )
        for name in KEY_FIELDS:
            part[name] = _codes(p[name], vocabularies[name])[rows]
        parts.append(part)
    if not parts:
        return pd.DataFrame()
    seen = pd.concat(parts, ignore_index=True)
    names = [c.name for c in captures]
    nodes = list(dict.fromkeys(c.node for c in captures))
    seen["file"] = pd.Categorical.from_codes(seen["capture"].to_numpy(), categories=pd.Index(names).unique())
    node_codes = np.array([nodes.index(c.node) for c in captures])[seen["capture"].to_numpy()]
    seen["node"] = pd.Categorical.from_codes(node_codes, categories=nodes)
    seen["point"] = pd.Categorical.from_codes(seen.pop("point_code").to_numpy(), categories=list(point_names))
    seen["direction"] = seen["direction"].astype("category")
    # The same packet seen anywhere: one hash-grouping over the key's columns.
    seen["packet"] = seen.groupby(list(KEY_FIELDS), sort=False).ngroup().to_numpy()
    return seen.drop(columns=list(KEY_FIELDS))


def _column(captures: Sequence[CaptureAt], seen: pd.DataFrame, name: str) -> pd.Series:
    """Field ``name`` of the packets behind the rows of ``seen``, in its own dtype where the
    captures share it (taken, not converted; labels of several captures are joined)."""
    capture, row = seen["capture"].to_numpy(), seen["row"].to_numpy()
    pieces, positions = [], []
    for index, at in enumerate(captures):
        mine = np.nonzero(capture == index)[0]
        if len(mine):
            pieces.append(at.packets[name].iloc[row[mine]].reset_index(drop=True))
            positions.append(mine)
    if not pieces:
        return pd.Series([], dtype=object)
    if all(isinstance(piece.dtype, pd.CategoricalDtype) for piece in pieces):
        joined = pd.Series(pd.api.types.union_categoricals([piece.array for piece in pieces]))
    else:
        joined = pd.concat(pieces, ignore_index=True)
    order = np.argsort(np.concatenate(positions), kind="stable")
    return joined.iloc[order].reset_index(drop=True)


def _values(captures: Sequence[CaptureAt], seen: pd.DataFrame, name: str) -> np.ndarray[Any, Any]:
    """``_column`` as Python values (None where missing): for the few rows a verdict reads."""
    return np.array(_python(_column(captures, seen, name)), dtype=object)


def _python(column: pd.Series) -> list[Any]:
    """A column's values as Python objects, None where missing."""
    values = column.astype(object)
    listed: list[Any] = values.where(values.notna(), None).tolist()
    return listed


def _node_ips(captures: Sequence[CaptureAt], seen: pd.DataFrame, topology: Topology | None) -> dict[str, str]:
    """Each capture node's own IP: the topology's, else the one address that every
    encapsulated copy on that node carries, as source or destination (none where two do: a
    capture between two nodes only, whose packets all carry both)."""
    ips = {n.name: str(n.public_ip) for n in topology.nodes if n.public_ip} if topology else {}
    wire = seen[seen["encapsulated"].to_numpy()]
    for node, rows in wire.groupby("node", observed=True, sort=False):
        if str(node) in ips:
            continue
        src, dst = (_column(captures, rows, name).astype(object) for name in ("outer_src_ip", "outer_dst_ip"))
        # Rows that carry each address (as source or destination; never both on a wire).
        carried = src.value_counts().add(dst[dst != src].value_counts(), fill_value=0)
        common = carried[carried == len(rows)].index.tolist()
        if len(common) == 1:
            ips[str(node)] = str(common[0])
    return ips


def _crossings(captures: Sequence[CaptureAt], seen: pd.DataFrame, topology: Topology | None) -> pd.DataFrame:
    """Each packet that left one capture node encapsulated and arrived at another: sender,
    receiver, and when it was sent (its last copy on the sender's wire side) and received (its
    first on the receiver's), by each node's own clock."""
    wire = seen[seen["encapsulated"].to_numpy()]
    if wire.empty:
        return pd.DataFrame(columns=["packet", "sender", "receiver", "sent", "received"])
    direction = wire["direction"]
    said = direction.notna().to_numpy()
    sent_here = np.array((direction == OUTGOING).to_numpy(dtype=bool, na_value=False))
    names = wire["node"].cat.categories
    node = wire["node"].cat.codes.to_numpy()
    if not said.all():
        ips = _node_ips(captures, seen, topology)
        unsaid = wire[~said]
        sources = _values(captures, unsaid, "outer_src_ip")
        own = np.array([ips.get(str(n)) for n in names], dtype=object)[node[~said]]
        sent_here[~said] = sources == own
    frame = pd.DataFrame({"packet": wire["packet"].to_numpy(), "node": node, "time": wire["time"].to_numpy()})
    sent = frame[sent_here].groupby(["packet", "node"], sort=False)["time"].max().rename("sent").reset_index()
    received = frame[~sent_here].groupby(["packet", "node"], sort=False)["time"].min().rename("received").reset_index()
    both = sent.merge(received, on="packet", suffixes=("_sender", "_receiver"))
    both = both[both["node_sender"] != both["node_receiver"]]
    labels = np.asarray(names, dtype=object)
    both["node_sender"] = labels[both["node_sender"].to_numpy()]
    both["node_receiver"] = labels[both["node_receiver"].to_numpy()]
    return both.rename(columns={"node_sender": "sender", "node_receiver": "receiver"})


def clock_offsets(
    captures: Sequence[CaptureAt], seen: pd.DataFrame, topology: Topology | None = None
) -> list[ClockOffset]:
    """Each capture node's clock offset against the first capture's node, from the packets
    that crossed between them: with ``t_B = t_A + delay + θ`` and delays never negative, the
    smallest apparent one-way time each way bounds θ to ``[-min(B→A), min(A→B)]``; the
    estimate is that interval's middle (symmetric paths), the uncertainty its half-width.
    Nodes linked to the reference only through others are chained; a node with no packet
    crossing both ways to a linked node gets ``offset=None``."""
    nodes = list(dict.fromkeys(c.node for c in captures))
    if seen.empty:
        return [ClockOffset(n, 0.0 if i == 0 else None, 0.0 if i == 0 else None, 0) for i, n in enumerate(nodes)]
    crossings = _crossings(captures, seen, topology)
    one_way = (crossings["received"] - crossings["sent"]).groupby([crossings["sender"], crossings["receiver"]])
    stats = one_way.agg(["min", "size"])
    least = {(str(a), str(b)): (float(m), int(c)) for (a, b), m, c in stats.itertuples(name=None)}
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
    """The sightings of each packet in path order, each with its ``hop`` number, its time by
    the reference clock (``clock_time``; NaN where the node's offset is unknown, flagged in
    ``clock_known``) and the time since the packet's first sighting (``since_first``; by the
    node's own clock where its offset is unknown)."""
    if seen.empty:
        return seen
    shift_of = {o.node: o.offset or 0.0 for o in offsets}
    known_of = {o.node: o.offset is not None for o in offsets}
    nodes = seen["node"].cat.categories
    codes = seen["node"].cat.codes.to_numpy()
    shift = np.array([shift_of.get(n, 0.0) for n in nodes])[codes]
    known = np.array([known_of.get(n, False) for n in nodes], dtype=bool)[codes]
    corrected = seen["time"].to_numpy() - shift
    out = seen.assign(clock_time=np.where(known, corrected, np.nan), clock_known=known, corrected=corrected)
    # A capture's copies of a packet stay together, in the capture's order; captures by time.
    out["block_time"] = out.groupby(["packet", "capture"], sort=False)["corrected"].transform("min")
    out = out.sort_values(["packet", "block_time", "capture", "number"], kind="stable", ignore_index=True)
    out["hop"] = out.groupby("packet", sort=False).cumcount().to_numpy()
    out["since_first"] = out["corrected"] - out.groupby("packet", sort=False)["corrected"].transform("first")
    return out.drop(columns=["block_time", "corrected"])


def _flows(captures: Sequence[CaptureAt], first: pd.DataFrame) -> tuple[np.ndarray[Any, Any], list[str]]:
    """Each packet's flow, as its first copy names it (before any NAT on the way), as codes
    into labels like ``busybox:35430 → nginx:80 tcp`` (pod names where known, else addresses)."""
    names = ("src_pod", "src_ip", "src_port", "dst_pod", "dst_ip", "dst_port", "proto")
    columns = {name: _column(captures, first, name) for name in names}
    codes = pd.DataFrame({name: pd.factorize(column, use_na_sentinel=True)[0] for name, column in columns.items()})
    flow = codes.groupby(list(names), sort=False).ngroup().to_numpy()
    _, at = np.unique(flow, return_index=True)
    values = {name: _python(column.iloc[at]) for name, column in columns.items()}
    labels = []
    for src_pod, src_ip, src_port, dst_pod, dst_ip, dst_port, proto in zip(*values.values(), strict=True):
        src = str(src_pod or src_ip) + (f":{src_port}" if src_port is not None else "")
        dst = str(dst_pod or dst_ip) + (f":{dst_port}" if dst_port is not None else "")
        labels.append(f"{src} → {dst} {proto}")
    return flow, labels


def journeys(captures: Sequence[CaptureAt], topology: Topology | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every matched packet's journey and verdict.

    Returns:
        ``(sightings, packets)``: one row per copy in path order (``packet``, ``hop``,
        ``file``, ``number``, ``node``, ``point``, ``direction``, ``encapsulated``, ``ttl``,
        ``time``, ``clock_time``, ``since_first``, ``flow``), and one row per packet
        (``packet``, ``flow``, ``first_file``, ``first_number``, ``info`` (its first copy's),
        ``seen``, ``duplicates`` (copies seen again at a point already passed), ``last_node``,
        ``last_point``, ``verdict``, ``lost``), with the clock offsets in
        ``packets.attrs["clocks"]``.
    """
    seen = sightings(captures)
    offsets = clock_offsets(captures, seen, topology)
    if seen.empty:
        empty = pd.DataFrame(columns=["packet", "flow", "seen", "verdict", "lost"])
        empty.attrs["clocks"] = offsets
        return seen, empty
    ordered = in_path_order(seen, offsets)
    starts = ordered["hop"].to_numpy() == 0
    first = ordered[starts]
    flow_codes, flow_labels = _flows(captures, first)
    per_packet = np.empty(int(ordered["packet"].max()) + 1, dtype=np.int64)
    per_packet[first["packet"].to_numpy()] = flow_codes
    ordered["flow"] = pd.Categorical.from_codes(per_packet[ordered["packet"].to_numpy()], categories=flow_labels)
    last = ordered.groupby("packet", sort=True).tail(1).set_index("packet").sort_index()
    first = first.set_index("packet").sort_index()
    count = ordered.groupby("packet", sort=True).size()
    points = ordered.drop_duplicates(["packet", "node", "point"]).groupby("packet", sort=True).size()
    packets = pd.DataFrame(
        {
            "packet": last.index.to_numpy(),
            "flow": last["flow"].array,
            "first_file": first["file"].array,
            "first_number": first["number"].to_numpy(),
            "info": _column(captures, first.reset_index(), "info").array,
            "seen": count.to_numpy(),
            "duplicates": (count - points).to_numpy(),
            "last_node": last["node"].array,
            "last_point": last["point"].array,
        }
    )
    path = _representatives(ordered, packets)
    position, length = _path_positions(path, packets)
    packets["verdict"] = DELIVERED
    packets["lost"] = False
    short = np.nonzero(position < length - 1)[0]
    if len(short):
        paths = _paths(path)
        ends = {c.node: float(c.packets["time"].max()) for c in captures if len(c.packets)}
        rows = last.iloc[short]
        details = {
            name: _values(captures, rows.reset_index(), name)
            for name in ("outer_udp_checksum_ok", "vni", "outer_dst_port", "inner_dst_mac")
        }
        for i, at in enumerate(short.tolist()):
            path = paths[str(packets.at[at, "flow"])]
            where = (str(packets.at[at, "last_node"]), str(packets.at[at, "last_point"]))
            facts = {name: values[i] for name, values in details.items()}
            facts.update(time=float(rows["time"].iloc[i]), encapsulated=bool(rows["encapsulated"].iloc[i]))
            verdict, lost = _verdict(path, where, facts, ends, topology)
            packets.at[at, "verdict"], packets.at[at, "lost"] = verdict, lost
    packets.attrs["clocks"] = offsets
    return ordered, packets


def _representatives(ordered: pd.DataFrame, packets: pd.DataFrame) -> pd.DataFrame:
    """Each flow's path, from its packet seen at the most distinct points: one row per point,
    ``flow``, ``node``, ``point``, ``position`` (0, 1, ...) and ``length``."""
    distinct = ordered.drop_duplicates(["packet", "node", "point"])
    points = distinct.groupby("packet", sort=True).size()
    chosen = (
        pd.DataFrame({"packet": points.index, "points": points.to_numpy(), "flow": packets["flow"].to_numpy()})
        .sort_values(["points", "packet"], ascending=[False, True], kind="stable")
        .drop_duplicates("flow")
    )
    path = distinct[distinct["packet"].isin(chosen["packet"])][["packet", "flow", "node", "point"]].copy()
    path["position"] = path.groupby("packet", sort=False).cumcount().to_numpy()
    path["length"] = path.groupby("packet", sort=False)["position"].transform("size").to_numpy()
    return path.drop(columns=["packet"])


def _path_positions(path: pd.DataFrame, packets: pd.DataFrame) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Each packet's last point's position in its flow's path, and the path's length (a
    position past the end where the last point is not on the path: counted as arrived)."""
    names = ("flow", "node", "point")
    ends = pd.DataFrame({n: packets[f"last_{n}" if n != "flow" else n].cat.codes.to_numpy() for n in names})
    on = pd.DataFrame({n: path[n].cat.codes.to_numpy() for n in names})
    on["position"], on["length"] = path["position"].to_numpy(), path["length"].to_numpy()
    found = ends.merge(on, on=list(names), how="left")
    length = found["length"].fillna(0).to_numpy(dtype=np.int64)
    position = found["position"].fillna(-1).to_numpy(dtype=np.int64)
    return np.where(position < 0, length, position), length


def _paths(path: pd.DataFrame) -> dict[str, tuple[tuple[str, str], ...]]:
    """Each flow's path (``_representatives``) as a tuple of (node, point), for the verdicts."""
    out: dict[str, list[tuple[str, str]]] = {}
    for flow, node, point in zip(
        path["flow"].astype(str), path["node"].astype(str), path["point"].astype(str), strict=True
    ):
        out.setdefault(flow, []).append((node, point))
    return {flow: tuple(points) for flow, points in out.items()}


def _verdict(
    path: tuple[tuple[str, str], ...],
    where: tuple[str, str],
    facts: dict[str, Any],
    ends: dict[str, float],
    topology: Topology | None,
) -> tuple[str, bool]:
    """Why a packet's journey ended before its flow's path did: lost between its last point
    and the next one, with the reason the capture shows where it shows one."""
    node, point = where
    next_node, next_point = path[path.index(where) + 1]
    if next_node != node:
        if ends.get(next_node, float("inf")) < facts["time"]:
            return f"not seen after {node} {point}: the capture on {next_node} had ended", False
        return f"lost between {node} {point} and {next_node} {next_point} (the wire or a firewall)", True
    if facts["encapsulated"]:
        reasons = _why_not_decapsulated(facts, node, topology)
        return f"arrived on {node} {point}, never reached {next_point}: the kernel dropped it ({reasons})", True
    return f"seen on {node} {point}, never on {next_point}: dropped inside {node}", True


def _why_not_decapsulated(facts: dict[str, Any], node: str, topology: Topology | None) -> str:
    """What the arriving copy shows that would make the node's kernel drop it before its VXLAN
    device, or, where it shows nothing, the candidates that remain."""
    found = []
    if facts["outer_udp_checksum_ok"] is False:
        found.append("its outer UDP checksum is wrong")
    here = next((n for n in topology.nodes if n.name == node), None) if topology else None
    vni, port, mac = facts["vni"], facts["outer_dst_port"], facts["inner_dst_mac"]
    if here is not None:
        if here.vni is not None and vni is not None and int(vni) != here.vni:
            found.append(f"VNI {int(vni)} is not {node}'s ({here.vni})")
        if here.dstport and port is not None and int(port) != here.dstport:
            found.append(f"UDP port {int(port)} is not {node}'s VXLAN port ({here.dstport})")
        if here.vtep_mac and isinstance(mac, str) and mac != here.vtep_mac:
            found.append(f"inner dst MAC {mac} is not {node}'s VTEP ({here.vtep_mac})")
    if found:
        return "; ".join(found)
    if here is None:
        return (
            "candidates: a bad outer checksum, a VNI or port mismatch, an inner MAC that is not this VTEP's, "
            "a firewall (give the tables to tell)"
        )
    return "its checksum, VNI, port and inner MAC are right: a firewall (nftables/iptables) on the node"


def hops(ordered: pd.DataFrame) -> pd.DataFrame:
    """Per flow, each hop of its packets (from one point to the next): ``packets``, the
    ``median_us`` and ``p99_us`` delay, ``ttl_change`` (the median; -1 where the hop routes),
    ``reordered`` (packets that left in one order and arrived overtaken by an earlier one),
    and ``crosses_nodes`` (the delay then rests on the clock offsets' estimate; NaN where a
    node's offset is unknown). A copy seen again at the same point is a duplicate, not a hop
    (counted in ``journeys()``)."""
    columns = ["flow", "from", "to", "packets", "median_us", "p99_us", "ttl_change", "reordered", "crosses_nodes"]
    if ordered.empty:
        return pd.DataFrame(columns=columns)
    ordered = ordered.drop_duplicates(["packet", "node", "point"])  # a point seen again is no hop
    packet = ordered["packet"].to_numpy()
    node, point = ordered["node"].cat.codes.to_numpy(), ordered["point"].cat.codes.to_numpy()
    here = np.nonzero(packet[1:] == packet[:-1])[0]
    there = here + 1
    same_node = node[here] == node[there]
    time, clock, ttl = ordered["time"].to_numpy(), ordered["clock_time"].to_numpy(), ordered["ttl"].to_numpy()
    leave = np.where(same_node, time[here], clock[here])
    arrive = np.where(same_node, time[there], clock[there])
    pairs = pd.DataFrame(
        {
            "flow": ordered["flow"].cat.codes.to_numpy()[here],
            "from_node": node[here],
            "from_point": point[here],
            "to_node": node[there],
            "to_point": point[there],
            "leave": leave,
            "delay": (arrive - leave) * 1e6,
            "arrive": arrive,
            "ttl_change": ttl[there] - ttl[here],
            "crosses_nodes": ~same_node,
        }
    )
    keys = ["flow", "from_node", "from_point", "to_node", "to_point"]
    # Overtaken: in the order the packets left, one arrives before a packet that left earlier did.
    pairs = pairs.sort_values([*keys, "leave"], kind="stable", ignore_index=True)
    latest = pairs.groupby(keys, sort=False)["arrive"].cummax()
    before = latest.groupby([pairs[k] for k in keys], sort=False).shift(1)
    pairs["reordered"] = (pairs["arrive"] < before).to_numpy(dtype=bool, na_value=False)
    grouped = pairs.groupby(keys, sort=False)
    table = pd.DataFrame(
        {
            "packets": grouped.size(),
            "median_us": grouped["delay"].median(),
            "p99_us": grouped["delay"].quantile(0.99),
            "ttl_change": grouped["ttl_change"].median(),
            "reordered": grouped["reordered"].sum(),
            "crosses_nodes": grouped["crosses_nodes"].max(),
        }
    ).reset_index()
    nodes, points = ordered["node"].cat.categories, ordered["point"].cat.categories
    flows = ordered["flow"].cat.categories
    names = np.array([f"{n} {p}" for n in nodes for p in points], dtype=object)
    table["from"] = names[table["from_node"].to_numpy() * len(points) + table["from_point"].to_numpy()]
    table["to"] = names[table["to_node"].to_numpy() * len(points) + table["to_point"].to_numpy()]
    table["flow"] = np.asarray(flows, dtype=object)[table["flow"].to_numpy()]
    # In path order: by each flow's first packet's hops, as they were seen.
    first_seen = pairs.groupby(keys, sort=False)["leave"].min().reset_index(drop=True)
    table = table.assign(first_seen=first_seen.to_numpy()).sort_values(["flow", "first_seen"], kind="stable")
    return table[columns].reset_index(drop=True)
