"""The detail view (``decode -v``) of packet records, one packet at a time.

Rule: formatting only. Records in, strings out; the caller prints. The packet list, JSON and
CSV of whole captures are views of the column batches (``packets.views``); ``table_row`` words
one record's line as ``views.table_lines`` words a batch's (a test holds them to it).
"""

from __future__ import annotations

import argparse

from flannelcap.packets.fields import NAME_FIELDS
from flannelcap.packets.lines import TABLE_HEADER as TABLE_HEADER
from flannelcap.packets.lines import seen_text, vtep_mismatch_text
from flannelcap.packets.records import PacketRecord
from flannelcap.packets.tunnels import encap_short


def _pair(src: str | None, dst: str | None) -> str:
    return f"{src or '?'} → {dst or '?'}"


def _named(address: str | None, name: str | None) -> str:
    """An address, or the name the topology gives it (as Wireshark's name resolution)."""
    return name or address or "?"


def table_row(record: PacketRecord) -> str:
    """One line per packet, like Wireshark's packet list with both layers shown."""
    if record.outer_src_ip or record.outer_dst_ip:
        outer = f"{_named(record.outer_src_ip, record.src_node)} → {_named(record.outer_dst_ip, record.dst_node)}"
    else:
        outer = _pair(record.outer_src_mac, record.outer_dst_mac)
    if record.is_tunnel:
        vni = str(record.vni) if record.vni is not None else encap_short(record.encap or "?")
        if record.inner_src_ip or record.inner_dst_ip:
            inner = f"{_named(record.inner_src_ip, record.src_pod)} → {_named(record.inner_dst_ip, record.dst_pod)}"
        elif record.encap == "wireguard":
            inner = "(encrypted)"
        else:
            inner = _pair(record.inner_src_mac, record.inner_dst_mac)
    else:
        vni, inner = "routed" if record.direct_routed else "-", "(not VXLAN)"
        if record.src_pod or record.dst_pod:
            pods = f"{_named(record.outer_src_ip, record.src_pod)} → {_named(record.outer_dst_ip, record.dst_pod)}"
            inner = f"(not VXLAN) {pods}"
    if record.http2_frames is not None:
        proto = "HTTP2"
    elif record.http_method or record.http_status is not None:
        proto = "HTTP"
    else:
        proto = (record.proto or record.outer_proto or "?").upper()
    seen = seen_text(record.if_name, record.ifindex, record.packet_type)
    info = f"{seen} {record.info}" if seen else record.info
    if record.dst_node and record.dst_vtep_node and record.dst_vtep_node != record.dst_node:
        info += vtep_mismatch_text(record.dst_vtep_node, record.dst_node)
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
    names = [(field, getattr(record, field)) for field in NAME_FIELDS if getattr(record, field)]
    if names:
        lines.append("    Topology")
        lines.extend(f"        {field}: {value}" for field, value in names)
    return lines


def wanted(args: argparse.Namespace, record: PacketRecord) -> bool:
    """Whether the ``decode`` filters (``--packets``, ``--vni``, ``--only-vxlan``, ``--proto``)
    keep a record."""
    if args.packets and not args.packets[0] <= record.number <= args.packets[1]:
        return False
    if (args.only_vxlan or args.vni) and not record.is_vxlan:
        return False
    if args.vni and record.vni not in set(args.vni):
        return False
    kinds = {
        "http": record.http_method is not None or record.http_status is not None,
        "http2": record.http2_frames is not None,
        "grpc": (record.http_content_type or "").startswith("application/grpc") or record.grpc_status is not None,
        "dns": record.dns_id is not None,
        "tls": record.tls_handshake is not None,
    }
    return not args.proto or kinds.get(args.proto, record.proto == args.proto)
