"""Text, JSON and CSV renderings of packet records for the terminal.

Rule: formatting only. Records in, strings out; the caller prints.
"""

from __future__ import annotations

import json

from flannelcap._records import FIELD_NAMES, PacketRecord

TABLE_HEADER = (
    f"{'No.':>5} {'Time':>10}  {'Outer src → dst':<33} {'VNI':<6} {'Inner src → dst':<33} {'Proto':<6} Info"
)


def _pair(src: str | None, dst: str | None) -> str:
    return f"{src or '?'} → {dst or '?'}"


def table_row(record: PacketRecord) -> str:
    """One line per packet, like Wireshark's packet list with both layers shown."""
    if record.outer_src_ip or record.outer_dst_ip:
        outer = _pair(record.outer_src_ip, record.outer_dst_ip)
    else:
        outer = _pair(record.outer_src_mac, record.outer_dst_mac)
    if record.is_vxlan:
        vni = str(record.vni)
        if record.inner_src_ip or record.inner_dst_ip:
            inner = _pair(record.inner_src_ip, record.inner_dst_ip)
        else:
            inner = _pair(record.inner_src_mac, record.inner_dst_mac)
    else:
        vni, inner = "-", "(not VXLAN)"
    proto = (
        "HTTP"
        if (record.http_method or record.http_status is not None)
        else (record.proto or record.outer_proto or "?").upper()
    )
    info = record.info
    if record.notes and record.notes[0] not in info:
        info = f"{info} [{record.notes[0]}]" if info else f"[{record.notes[0]}]"
    return f"{record.number:>5} {record.rel_time:>10.6f}  {outer:<33} {vni:<6} {inner:<33} {proto:<6} {info}"


def detail_lines(record: PacketRecord) -> list[str]:
    """The full layer stack of one packet, each field on its own line."""
    lines = [table_row(record)]
    for layer in record.layers:
        lines.append(f"    {layer.name}")
        for name, value in layer.fields:
            lines.append(f"        {name}: {value}")
    return lines


def json_line(record: PacketRecord) -> str:
    """One JSON object per packet, keys in the field vocabulary."""
    return json.dumps(record.to_dict(), separators=(",", ":"))


CSV_FIELDS = FIELD_NAMES


def csv_row(record: PacketRecord) -> dict[str, object]:
    """One CSV row (notes joined with ``; ``)."""
    row = record.to_dict()
    row["notes"] = "; ".join(record.notes)
    return row
