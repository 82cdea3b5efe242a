"""Conversations, HTTP exchanges and retransmissions, computed from the packet table.

Rule: pure. A pandas DataFrame of packets (the field vocabulary) in, DataFrames out.
"""

from __future__ import annotations

from typing import Any

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


def flow_keys(packets: pd.DataFrame) -> pd.Series:
    """A key per packet naming its conversation the same in both directions, or None."""

    def key(row: Any) -> str | None:
        if row.proto not in ("tcp", "udp") or not row.src_ip or not row.dst_ip:
            return None
        a, b = sorted([(row.src_ip, int(row.src_port)), (row.dst_ip, int(row.dst_port))])
        return f"{row.proto} {a[0]}:{a[1]} {b[0]}:{b[1]}"

    return pd.Series([key(r) for r in packets.itertuples(index=False)], index=packets.index, dtype=object)


def flows(packets: pd.DataFrame) -> pd.DataFrame:
    """One row per inner conversation: who, where, how much, when, over which outer ports.

    The direction is the one of the conversation's first packet (the SYN for TCP).
    """
    if packets.empty:
        return pd.DataFrame(columns=FLOW_COLUMNS)
    keyed = packets.assign(flow=flow_keys(packets)).dropna(subset=["flow"])
    rows = []
    for key, group in keyed.groupby("flow", sort=False):
        first = group.iloc[0]
        ports = sorted({int(p) for p in group.loc[group.is_vxlan, "outer_src_port"].dropna()})
        vnis = group.loc[group.is_vxlan, "vni"].dropna()
        rows.append(
            {
                "flow": key,
                "proto": first.proto,
                "src_ip": first.src_ip,
                "src_port": int(first.src_port),
                "dst_ip": first.dst_ip,
                "dst_port": int(first.dst_port),
                "src_pod": first.get("src_pod"),
                "dst_pod": first.get("dst_pod"),
                "src_node": first.get("src_node"),
                "dst_node": first.get("dst_node"),
                "vni": int(vnis.iloc[0]) if len(vnis) else None,
                "vxlan": bool(group.is_vxlan.any()),
                "packets": len(group),
                "bytes": int(group.wire_len.sum()),
                "start": float(group.time.min()),
                "duration": float(group.time.max() - group.time.min()),
                "outer_src_ports": ports,
            }
        )
    return pd.DataFrame(rows, columns=FLOW_COLUMNS).sort_values("start", ignore_index=True)


def http_exchanges(packets: pd.DataFrame) -> pd.DataFrame:
    """Each HTTP request with the response that answered it (the next response head in the
    other direction of the same conversation), and the latency between them."""
    if packets.empty or "http_method" not in packets:
        return pd.DataFrame(columns=HTTP_COLUMNS)
    keyed = packets.assign(flow=flow_keys(packets))
    heads = keyed[keyed.http_method.notna() | keyed.http_status.notna()]
    rows = []
    waiting: dict[tuple[str, str], list[Any]] = {}
    for row in heads.itertuples(index=False):
        if row.http_method is not None and not pd.isna(row.http_method):
            waiting.setdefault((row.flow, row.src_ip), []).append(row)
            continue
        pending = waiting.get((row.flow, row.dst_ip))
        if not pending:
            continue
        request = pending.pop(0)
        rows.append(
            {
                "request": int(request.number),
                "response": int(row.number),
                "flow": row.flow,
                "client": request.src_pod or request.src_ip,
                "server": request.dst_pod or request.dst_ip,
                "method": request.http_method,
                "path": request.http_path,
                "host": request.http_host,
                "status": int(row.http_status),
                "reason": row.http_reason,
                "request_time": float(request.time),
                "latency_ms": round((row.time - request.time) * 1000, 3),
            }
        )
    return pd.DataFrame(rows, columns=HTTP_COLUMNS)


def retransmissions(packets: pd.DataFrame, min_gap: float = 0.2) -> pd.Series:
    """True for TCP segments that repeat an earlier segment's sequence number and flags in
    the same direction, at least ``min_gap`` seconds later (copies seen on several
    interfaces within that gap are not retransmissions)."""
    seen: dict[tuple[Any, ...], float] = {}
    marks = []
    for row in packets.itertuples(index=False):
        if row.proto != "tcp" or pd.isna(row.tcp_seq):
            marks.append(False)
            continue
        key = (row.src_ip, row.src_port, row.dst_ip, row.dst_port, row.tcp_seq, row.tcp_flags, row.payload_len)
        first = seen.setdefault(key, row.time)
        marks.append(bool(row.time - first >= min_gap and (row.payload_len or "SYN" in (row.tcp_flags or ""))))
    return pd.Series(marks, index=packets.index)
