"""Conversations, HTTP exchanges and retransmissions, computed from the packet table.

Rule: pure. A pandas DataFrame of packets (the field vocabulary, as ``Capture.packets`` has it)
in, DataFrames out. Conversations and exchanges are group-bys over the columns, not loops over
packets; only HTTP streams whose responses outnumber their requests at some point (rare) are
paired one head at a time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

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
]


def _text(column: pd.Series) -> np.ndarray[Any, Any]:
    """A column's values as Python objects (None where missing)."""
    values: np.ndarray[Any, Any] = column.astype(object).to_numpy(copy=True)
    values[pd.isna(values)] = None
    return values


def _flow_ids(packets: pd.DataFrame) -> tuple[np.ndarray[Any, Any], list[str]]:
    """Each packet's conversation as an id (-1: none), the same in both directions, and each
    id's name: ``proto lower-ip:port higher-ip:port`` (ends in text order)."""
    proto = packets.proto.astype(object)
    usable = (
        proto.isin(["tcp", "udp"]).to_numpy()
        & packets.src_ip.notna().to_numpy()
        & packets.dst_ip.notna().to_numpy()
        & packets.src_port.notna().to_numpy()
        & packets.dst_port.notna().to_numpy()
    )
    ids = np.full(len(packets), -1, dtype=np.int64)
    if not usable.any():
        return ids, []
    rows = np.nonzero(usable)[0]
    src_ip, dst_ip = _text(packets.src_ip.iloc[rows]), _text(packets.dst_ip.iloc[rows])
    every_ip = np.unique(np.concatenate([src_ip, dst_ip]).astype(str))  # sorted: ranks follow text order
    src_rank = np.searchsorted(every_ip, src_ip.astype(str))
    dst_rank = np.searchsorted(every_ip, dst_ip.astype(str))
    src_port = packets.src_port.iloc[rows].to_numpy(dtype=np.int64)
    dst_port = packets.dst_port.iloc[rows].to_numpy(dtype=np.int64)
    swap = (src_rank > dst_rank) | ((src_rank == dst_rank) & (src_port > dst_port))
    low_ip, high_ip = np.where(swap, dst_rank, src_rank), np.where(swap, src_rank, dst_rank)
    low_port, high_port = np.where(swap, dst_port, src_port), np.where(swap, src_port, dst_port)
    is_udp = (proto.iloc[rows] == "udp").to_numpy()
    keys = pd.DataFrame({"u": is_udp, "a": low_ip, "p": low_port, "b": high_ip, "q": high_port})
    codes, uniques = pd.MultiIndex.from_frame(keys).factorize()
    ids[rows] = codes
    names = [
        f"{'udp' if u else 'tcp'} {every_ip[a]}:{p} {every_ip[b]}:{q}"
        for u, a, p, b, q in uniques.tolist()  # type: ignore[union-attr]
    ]
    return ids, names


def flow_keys(packets: pd.DataFrame) -> pd.Series:
    """A key per packet naming its conversation the same in both directions, or None."""
    ids, names = _flow_ids(packets)
    labels = np.array([*names, None], dtype=object)
    return pd.Series(labels[ids], index=packets.index, dtype=object)


def flows(packets: pd.DataFrame) -> pd.DataFrame:
    """One row per inner conversation: who, where, how much, when, over which outer ports.

    The direction is the one of the conversation's first packet (the SYN for TCP).
    """
    ids, names = _flow_ids(packets)
    if not names:
        return pd.DataFrame(columns=FLOW_COLUMNS)
    rows = np.nonzero(ids >= 0)[0]
    part = packets.iloc[rows]
    flow = ids[rows]
    groups = pd.Series(np.arange(len(rows))).groupby(flow, sort=True)
    first = rows[groups.first().to_numpy()]
    head = packets.iloc[first]
    vxlan = part.is_vxlan.to_numpy(dtype=bool)
    time = part.time.to_numpy()
    stats = pd.DataFrame({"flow": flow, "time": time, "wire_len": part.wire_len.to_numpy(dtype=np.int64)})
    by_flow = stats.groupby("flow", sort=True)
    vni = pd.Series(part.vni.to_numpy(dtype=float, na_value=np.nan)[vxlan]).groupby(flow[vxlan]).first()
    ports = (
        pd.DataFrame({"flow": flow[vxlan], "port": part.outer_src_port.to_numpy(dtype=float, na_value=np.nan)[vxlan]})
        .dropna()
        .drop_duplicates()
        .sort_values(["flow", "port"])
        .groupby("flow")["port"]
        .agg(lambda p: [int(x) for x in p])
    )
    index = np.arange(len(names))
    start, end = by_flow.time.min().to_numpy(), by_flow.time.max().to_numpy()
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
            "vni": [None if np.isnan(v) else int(v) for v in vni.reindex(index).to_numpy()],
            "vxlan": pd.Series(vxlan).groupby(flow).any().reindex(index).to_numpy(),
            "packets": by_flow.size().to_numpy(),
            "bytes": by_flow.wire_len.sum().to_numpy(),
            "start": start,
            "duration": end - start,
            "outer_src_ports": [p if isinstance(p, list) else [] for p in ports.reindex(index).tolist()],
        },
        columns=FLOW_COLUMNS,
    )
    return table.sort_values("start", ignore_index=True, kind="stable")


def http_exchanges(packets: pd.DataFrame) -> pd.DataFrame:
    """Each HTTP request with the response that answered it (the next response head in the
    other direction of the same conversation), and the latency between them."""
    if packets.empty or "http_method" not in packets:
        return pd.DataFrame(columns=HTTP_COLUMNS)
    is_request = packets.http_method.notna().to_numpy()
    is_head = is_request | packets.http_status.notna().to_numpy()
    if not is_head.any():
        return pd.DataFrame(columns=HTTP_COLUMNS)
    ids, names = _flow_ids(packets)
    rows = np.nonzero(is_head & (ids >= 0))[0]
    request = is_request[rows]
    client = np.where(request, _text(packets.src_ip.iloc[rows]), _text(packets.dst_ip.iloc[rows]))
    heads = pd.DataFrame({"row": rows, "request": request, "flow": ids[rows], "client": client})
    stream = heads.groupby(["flow", "client"], sort=False)
    heads["nth"] = stream.cumcount()
    heads["requests"] = stream.request.cumsum()  # requests so far, this head included
    heads["responses"] = heads.nth + 1 - heads.requests
    # Where no response ever comes before its request, the k-th response answers the k-th request.
    early = (~heads.request) & (heads.responses > heads.requests)
    odd_streams = set(map(tuple, heads.loc[early, ["flow", "client"]].to_numpy().tolist()))
    plain = (
        ~heads[["flow", "client"]].apply(tuple, axis=1).isin(odd_streams) if odd_streams else np.ones(len(heads), bool)
    )
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
    ask, answer = packets.iloc[matches[:, 0]], packets.iloc[matches[:, 1]]
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
        },
        columns=HTTP_COLUMNS,
    )


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
