"""Conversations, HTTP exchanges and retransmissions, computed from the packet table.

Rule: pure. A pandas DataFrame of packets (the field vocabulary, as ``Capture.packets`` has it)
in, DataFrames out. Conversations and exchanges are group-bys over the columns, not loops over
packets; only HTTP streams whose responses outnumber their requests at some point (rare) are
paired one head at a time.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from flannelcap.packets.kernel import Encoder, first_sightings

FLOW_COLUMNS = [
    "flow",
    "proto",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "src_pod",
    "dst_pod",
    "src_node",
    "dst_node",
    "vni",
    "vxlan",
    "packets",
    "bytes",
    "start",
    "duration",
    "outer_src_ports",
]
HTTP_COLUMNS = [
    "request",
    "response",
    "flow",
    "client",
    "server",
    "method",
    "path",
    "host",
    "status",
    "reason",
    "request_time",
    "latency_ms",
    "version",
    "content_type",
    "grpc_status",
]


def _text(column: pd.Series) -> np.ndarray[Any, Any]:
    """A column's values as Python objects (None where missing)."""
    values: np.ndarray[Any, Any] = column.astype(object).to_numpy(copy=True)
    values[pd.isna(values)] = None
    return values


Ranks = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]


def missing(value: object) -> bool:
    """Whether a cell of these DataFrames holds no value: None, pandas' NA, or NaN (a Categorical's)."""
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def name_or(name: object, fallback: object) -> str:
    """A name or address from a row of these tables, or ``fallback`` where it is unknown (NaN
    or None there: pandas' NaN is truthy, so ``name or fallback`` would keep it)."""
    return name if isinstance(name, str) and name else str(fallback)


def _ip_ranks(packets: pd.DataFrame) -> Ranks:
    """The innermost addresses of each packet as ranks in the sorted list of every address seen
    (-1 where missing): (source ranks, destination ranks, the sorted addresses)."""
    src, dst = pd.Categorical(packets.src_ip), pd.Categorical(packets.dst_ip)
    every = np.unique(np.concatenate([np.asarray(src.categories, dtype=str), np.asarray(dst.categories, dtype=str)]))
    ranks = []
    for column in (src, dst):
        rank_of_code = np.searchsorted(every, np.asarray(column.categories, dtype=str)).astype(np.int64)
        codes = np.asarray(column.codes, dtype=np.int64)
        ranks.append(np.where(codes >= 0, rank_of_code[np.maximum(codes, 0)] if len(rank_of_code) else 0, -1))
    return ranks[0], ranks[1], every


def _flow_ids(packets: pd.DataFrame, ranks: Ranks | None = None) -> tuple[np.ndarray[Any, Any], list[str]]:
    """Each packet's conversation as an id (-1: none), the same in both directions, ids in order
    of first sight, and each id's name: ``proto lower-ip:port higher-ip:port`` (ends in text
    order). ``ranks``: the packets' ``_ip_ranks``, if already worked out."""

    proto = pd.Categorical(packets.proto)
    names_of_proto = np.asarray(proto.categories, dtype=str)
    proto_codes = np.asarray(proto.codes)
    is_tcp = np.isin(names_of_proto, ["tcp"])[np.maximum(proto_codes, 0)] & (proto_codes >= 0)
    is_udp = np.isin(names_of_proto, ["udp"])[np.maximum(proto_codes, 0)] & (proto_codes >= 0)
    src_rank, dst_rank, every = ranks or _ip_ranks(packets)
    src_port = packets.src_port.to_numpy(dtype=np.int64, na_value=-1)
    dst_port = packets.dst_port.to_numpy(dtype=np.int64, na_value=-1)
    usable = (is_tcp | is_udp) & (src_rank >= 0) & (dst_rank >= 0) & (src_port >= 0) & (dst_port >= 0)
    ids = np.full(len(packets), -1, dtype=np.int64)
    if not usable.any():
        return ids, []
    swap = (src_rank > dst_rank) | ((src_rank == dst_rank) & (src_port > dst_port))
    low = np.where(swap, dst_rank, src_rank) << 16 | np.where(swap, dst_port, src_port)
    high = np.where(swap, src_rank, dst_rank) << 16 | np.where(swap, src_port, dst_port)
    keys = np.stack([np.where(usable, is_udp.astype(np.int64) << 62 | low, -1), high], axis=1)
    ids = Encoder(2).ids(keys)
    first = first_sightings(ids)
    addresses = every.tolist()  # Python strings: indexing a NumPy array per name costs more
    names = [
        f"{'udp' if u else 'tcp'} {addresses[a >> 16]}:{a & 0xFFFF} {addresses[b >> 16]}:{b & 0xFFFF}"
        for u, a, b in zip(is_udp[first].tolist(), low[first].tolist(), high[first].tolist(), strict=True)
    ]
    return ids, names


def flow_keys(packets: pd.DataFrame) -> pd.Series:
    """A key per packet naming its conversation the same in both directions, or None."""
    ids, names = _flow_ids(packets)
    labels = np.array([*names, None], dtype=object)
    return pd.Series(labels[ids], index=packets.index, dtype=object)


class Conversations(NamedTuple):
    """Each packet's conversation (see ``conversations``), worked out once for ``flows`` and
    ``http_exchanges`` of the same packets."""

    ranks: Ranks
    ids: np.ndarray[Any, Any]
    names: list[str]


def conversations(packets: pd.DataFrame) -> Conversations:
    """The innermost addresses' ranks, each packet's conversation id and each id's name."""
    ranks = _ip_ranks(packets)
    ids, names = _flow_ids(packets, ranks)
    return Conversations(ranks, ids, names)


def flows(packets: pd.DataFrame, known: Conversations | None = None) -> pd.DataFrame:
    """One row per inner conversation: who, where, how much, when, over which outer ports
    (``known``: the packets' ``conversations``, if already worked out).

    The direction is the one of the conversation's first packet (the SYN for TCP).
    """
    _, ids, names = known or conversations(packets)
    if not names:
        return pd.DataFrame(columns=FLOW_COLUMNS)
    rows = np.nonzero(ids >= 0)[0]
    flow = ids[rows]
    count = len(names)
    head = packets[list(_HEAD_COLUMNS)].iloc[first_sightings(ids)]
    time = packets.time.to_numpy()[rows]
    vxlan = packets["is_tunnel" if "is_tunnel" in packets else "is_vxlan"].to_numpy(dtype=bool)[rows]
    start = np.full(count, np.inf)
    end = np.full(count, -np.inf)
    np.minimum.at(start, flow, time)
    np.maximum.at(end, flow, time)
    vni = packets.vni.to_numpy(dtype=np.int64, na_value=-1)[rows]
    with_vni = np.nonzero(vxlan & (vni >= 0))[0]
    vni_of = np.full(count, -1, dtype=np.int64)
    at = np.full(count, len(with_vni), dtype=np.int64)  # each flow's first packet with a VNI
    np.minimum.at(at, flow[with_vni], np.arange(len(with_vni)))
    taken = at < len(with_vni)
    vni_of[taken] = vni[with_vni[at[taken]]]
    port = packets.outer_src_port.to_numpy(dtype=np.int64, na_value=-1)[rows]
    seen = flow[vxlan & (port >= 0)] << 16 | port[vxlan & (port >= 0)]
    pairs = np.sort(seen[first_sightings(Encoder(1).ids(seen))])  # distinct (flow, port), by hash then sorted
    cuts = np.searchsorted(pairs >> 16, np.arange(count + 1))
    ports = (pairs & 0xFFFF).tolist()
    table = pd.DataFrame(
        {
            "flow": names,
            "proto": _text(head.proto),
            "src_ip": _text(head.src_ip),
            "src_port": head.src_port.to_numpy(dtype=np.int64),
            "dst_ip": _text(head.dst_ip),
            "dst_port": head.dst_port.to_numpy(dtype=np.int64),
            "src_pod": _text(head.src_pod),
            "dst_pod": _text(head.dst_pod),
            "src_node": _text(head.src_node),
            "dst_node": _text(head.dst_node),
            "vni": [None if v < 0 else v for v in vni_of.tolist()],
            "vxlan": np.bincount(flow, weights=vxlan, minlength=count) > 0,
            "packets": np.bincount(flow, minlength=count),
            "bytes": np.bincount(flow, weights=packets.wire_len.to_numpy(dtype=np.int64)[rows], minlength=count).astype(
                np.int64
            ),
            "start": start,
            "duration": end - start,
            "outer_src_ports": [ports[a:b] for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True)],
        },
        columns=FLOW_COLUMNS,
    )
    return table.sort_values("start", ignore_index=True, kind="stable")


# The packets' columns the tables show (taken for their rows alone, not the packets' every column).
_HEAD_COLUMNS = ("proto", "src_ip", "src_port", "dst_ip", "dst_port", "src_pod", "dst_pod", "src_node", "dst_node")
_ASK_COLUMNS = ("number", "time", "src_pod", "src_ip", "dst_pod", "dst_ip", "http_method", "http_path", "http_host")
_ANSWER_COLUMNS = ("number", "time", "http_status", "http_reason", "http_version", "http_content_type")


def http_exchanges(packets: pd.DataFrame, known: Conversations | None = None) -> pd.DataFrame:
    """Each HTTP request with the response that answered it (HTTP/1: the next response head in
    the other direction of the same conversation; HTTP/2: the response on the same stream), and
    the latency between them (``known``: the packets' ``conversations``, if already worked out).
    gRPC's status comes from the stream's trailers."""
    if packets.empty or "http_method" not in packets:
        return pd.DataFrame(columns=HTTP_COLUMNS)
    is_request = packets.http_method.notna().to_numpy()
    is_head = is_request | packets.http_status.notna().to_numpy()
    if not is_head.any():
        return pd.DataFrame(columns=HTTP_COLUMNS)
    ranks, ids, names = known or conversations(packets)
    rows = np.nonzero(is_head & (ids >= 0))[0]
    request = is_request[rows]
    src_rank, dst_rank, _ = ranks
    client = np.where(request, src_rank[rows], dst_rank[rows])
    lanes, grpc = _h2_lanes(packets, ids)
    heads = pd.DataFrame({"row": rows, "request": request, "flow": lanes[rows], "client": client})
    stream = heads.groupby(["flow", "client"], sort=False)
    heads["nth"] = stream.cumcount()
    heads["requests"] = stream.request.cumsum()  # requests so far, this head included
    heads["responses"] = heads.nth + 1 - heads.requests
    # Where no response ever comes before its request, the k-th response answers the k-th request.
    early = (~heads.request) & (heads.responses > heads.requests)
    stream_of = heads.flow.to_numpy() << 32 | heads.client.to_numpy()
    plain = ~np.isin(stream_of, stream_of[early.to_numpy()])
    pairs = []
    simple = heads[plain]
    asks = simple[simple.request].set_index(["flow", "client", "requests"]).row
    answers = simple[~simple.request]
    key = pd.MultiIndex.from_arrays([answers.flow, answers.client, answers.responses])
    matched = asks.reindex(key).to_numpy()
    found = ~pd.isna(matched)
    pairs.append(np.stack([matched[found].astype(np.int64), answers.row.to_numpy()[found]], axis=1))
    for (_, _), group in heads[~plain].groupby(["flow", "client"], sort=False):
        waiting: list[int] = []
        for row, is_ask in zip(group.row.tolist(), group.request.tolist(), strict=True):
            if is_ask:
                waiting.append(row)
            elif waiting:
                pairs.append(np.array([[waiting.pop(0), row]], dtype=np.int64))
    matches = np.concatenate(pairs) if pairs else np.empty((0, 2), dtype=np.int64)
    matches = matches[np.argsort(matches[:, 1], kind="stable")]
    answered = [c for c in _ANSWER_COLUMNS if c in packets]  # http_content_type: not in older DataFrames
    ask, answer = packets[list(_ASK_COLUMNS)].iloc[matches[:, 0]], packets[answered].iloc[matches[:, 1]]
    ask_time, answer_time = ask.time.to_numpy(), answer.time.to_numpy()
    src_pod, src_ip = _text(ask.src_pod), _text(ask.src_ip)
    dst_pod, dst_ip = _text(ask.dst_pod), _text(ask.dst_ip)
    return pd.DataFrame(
        {
            "request": ask.number.to_numpy(dtype=np.int64),
            "response": answer.number.to_numpy(dtype=np.int64),
            "flow": [names[i] for i in ids[matches[:, 1]]],
            "client": np.where(pd.isna(src_pod), src_ip, src_pod),
            "server": np.where(pd.isna(dst_pod), dst_ip, dst_pod),
            "method": _text(ask.http_method),
            "path": _text(ask.http_path),
            "host": _text(ask.http_host),
            "status": answer.http_status.to_numpy(dtype=np.int64),
            "reason": _text(answer.http_reason),
            "request_time": ask_time,
            "latency_ms": np.round((answer_time - ask_time) * 1000, 3),
            "version": _text(answer.http_version),
            "content_type": _text(answer.http_content_type) if "http_content_type" in answer else None,
            "grpc_status": pd.array(grpc.reindex(lanes[matches[:, 1]]).to_numpy(), dtype="Int32"),
        },
        columns=HTTP_COLUMNS,
    )


def _h2_lanes(packets: pd.DataFrame, ids: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], pd.Series]:
    """Where requests and responses pair up: the conversation, and in HTTP/2 also the stream
    (ids, per packet); and the gRPC status each lane's trailers carried (the last one)."""
    if "http2_stream" not in packets or packets.http2_stream.isna().all():
        return ids, pd.Series(dtype="Int32")
    stream = packets.http2_stream.to_numpy(dtype=np.int64, na_value=-1)
    lanes = np.where(ids >= 0, pd.factorize(ids.astype(np.int64) << 32 | (stream + 1))[0], -1)
    has_grpc = packets.grpc_status.notna().to_numpy() & (lanes >= 0)
    grpc = pd.Series(packets.grpc_status.to_numpy()[has_grpc], index=lanes[has_grpc]).groupby(level=0).last()
    return lanes, grpc


def retransmissions(packets: pd.DataFrame, min_gap: float = 0.2) -> pd.Series:
    """True for TCP segments that repeat an earlier segment's sequence number and flags in
    the same direction, at least ``min_gap`` seconds later (copies seen on several
    interfaces within that gap are not retransmissions)."""
    tcp = (packets.proto.astype(object) == "tcp").to_numpy() & packets.tcp_seq.notna().to_numpy()
    marks = np.zeros(len(packets), dtype=bool)
    if tcp.any():
        part = packets[tcp]
        keys = pd.DataFrame(
            {name: _text(part[name]) for name in ("src_ip", "src_port", "dst_ip", "dst_port", "tcp_seq", "tcp_flags")}
        )
        keys["payload_len"] = _text(part.payload_len)
        first = pd.Series(part.time.to_numpy()).groupby([keys[c] for c in keys.columns], dropna=False).transform("min")
        late = part.time.to_numpy() - first.to_numpy() >= min_gap
        flags = part.tcp_flags.astype(object).fillna("").astype(str)
        carries = (part.payload_len.fillna(0).to_numpy(dtype=np.int64) > 0) | flags.str.contains("SYN").to_numpy()
        marks[np.nonzero(tcp)[0]] = late & carries
    return pd.Series(marks, index=packets.index)
