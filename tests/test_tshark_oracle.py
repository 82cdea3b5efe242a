"""Differential test: on every recorded capture, flannelcap agrees with Wireshark's dissectors.

tshark is run for real with ``-d udp.port==8472,vxlan`` (tshark 4.0 maps only 4789 to VXLAN),
``-d udp.port==8285,ip`` (flannel's udp backend)
and ``-o http.desegment_body:FALSE`` so that an HTTP response is reported on the segment
that completes its head, as flannelcap reports it. Outer and inner fields come from the same
tshark field in order of occurrence (``ip.src`` gives the outer then the inner address).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import SAMPLES, every_sample_pcap, require_tool

from flannelcap import PacketRecord, decode_file
from flannelcap.packets.dns import type_name
from flannelcap.packets.http2 import frame_name
from flannelcap.packets.info import PACKET_TYPES
from flannelcap.packets.tls import HELLO_NAMES, is_grease, version_name

FIELDS = [
    "frame.number",
    "eth.src",
    "eth.dst",
    "sll.src.eth",
    "sll.pkttype",
    "sll.ifindex",
    "ip.src",
    "ip.dst",
    "ip.id",
    "udp.srcport",
    "udp.dstport",
    "vxlan.vni",
    "vxlan.gbp",
    "geneve.vni",
    "geneve.option.class",
    "geneve.option.type",
    "geneve.option.length",
    "wg.type",
    "wg.sender",
    "wg.receiver",
    "udp.length",
    "ipv6.src",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags",
    "tcp.seq_raw",
    "tcp.ack_raw",
    "tcp.len",
    "arp.opcode",
    "arp.src.proto_ipv4",
    "arp.dst.proto_ipv4",
    "http.request.method",
    "http.request.uri",
    "http.host",
    "http.response.code",
    "http.response.phrase",
    "http.x_forwarded_for",
    "http.content_type",
    "dns.id",
    "dns.flags.response",
    "dns.flags.rcode",
    "dns.qry.name",
    "dns.qry.type",
    "dns.count.answers",
    "dns.a",
    "dns.cname",
    "tls.handshake.type",
    "tls.handshake.extensions_server_name",
    "tls.handshake.extensions_alpn_str",
    "tls.handshake.ciphersuite",
    "tls.handshake.extensions.supported_version",
    "tls.handshake.version",
]


H2_FIELDS = ["frame.number", "http2.magic", "http2.type", "http2.streamid", "http2.header.name", "http2.header.value"]


def tshark_rows(path: Path, fields: list[str] = FIELDS, aggregator: str = ",") -> dict[int, dict[str, list[str]]]:
    """tshark's view of every frame: field name → values in order of occurrence (a header value
    may hold commas: HTTP/2's are read with another ``aggregator``)."""
    argv = [
        "tshark",
        "-n",
        "-r",
        str(path),
        "-d",
        "udp.port==8472,vxlan",
        "-d",
        "udp.port==8285,ip",  # flannel's udp backend: the bare inner packet
        "-o",
        "http.desegment_body:FALSE",
        "-T",
        "fields",
        "-E",
        "separator=\t",
        "-E",
        "occurrence=a",
        "-E",
        f"aggregator={aggregator}",
    ]
    for name in fields:
        argv += ["-e", name]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        values = line.split("\t")
        row = {name: [v for v in value.split(aggregator) if v] for name, value in zip(fields, values, strict=True)}
        rows[int(row["frame.number"][0])] = row
    return rows


def _tshark_hello(row: dict[str, list[str]], kind: int) -> tuple[object, ...]:
    """A hello as tshark's fields give it: type, version, SNI, ALPN, the server's cipher."""
    offered = [int(v, 16) for v in row["tls.handshake.extensions.supported_version"]]
    offered = [v for v in offered if not is_grease(v)]
    version = max(offered) if offered else int(row["tls.handshake.version"][0], 16)
    cipher = int(row["tls.handshake.ciphersuite"][0], 16) if kind == 2 else None
    sni = row["tls.handshake.extensions_server_name"][0] if row["tls.handshake.extensions_server_name"] else None
    return (
        HELLO_NAMES[kind],
        version_name(version),
        sni,
        ",".join(row["tls.handshake.extensions_alpn_str"]) or None,
        cipher,
    )


def _tshark_h2(row: dict[str, list[str]]) -> tuple[list[str], list[int], list[tuple[str, str]]]:
    """The HTTP/2 frames tshark reads in a packet: their types (``Magic`` first, for the
    preface), their streams, and every header of their header blocks, in order."""
    kinds = ["Magic"] * len(row["http2.magic"]) + [frame_name(int(t)) for t in row["http2.type"]]
    headers = list(zip(row["http2.header.name"], row["http2.header.value"], strict=True))
    return kinds, [int(s) for s in row["http2.streamid"]], headers


def _check_h2(record: PacketRecord, row: dict[str, list[str]] | None, seen: set[str], where: str) -> None:
    """Every HTTP/2 segment flannelcap reads, tshark reads alike; tshark reads no other but
    later copies of one (it dissects a copy again, flannelcap reports it once)."""
    if record.http2_frames is None:
        if row is not None:
            assert ",".join(_tshark_h2(row)[0]) in seen, f"{where}: tshark reads HTTP/2 flannelcap does not"
        return
    assert row is not None, f"{where}: HTTP/2 that tshark does not read"
    kinds, streams, headers = _tshark_h2(row)
    assert record.http2_frames.split(",") == kinds, where
    assert record.http2_stream in streams, where
    wanted = {":method": record.http_method, ":path": record.http_path, ":authority": record.http_host}
    wanted |= {"content-type": record.http_content_type, "grpc-status": record.grpc_status}
    if record.http_status is not None:
        wanted[":status"] = record.http_status
    for name, value in wanted.items():
        if value is not None:
            assert (name, str(value)) in headers, f"{where}: {name}"
    seen.add(record.http2_frames)


def _our_hello(record: PacketRecord) -> tuple[object, ...]:
    return (record.tls_handshake, record.tls_version, record.tls_sni, record.tls_alpn, record.tls_cipher)


def _tcp_flag_bits(record: PacketRecord) -> int:
    names = {
        "FIN": 0x01,
        "SYN": 0x02,
        "RST": 0x04,
        "PSH": 0x08,
        "ACK": 0x10,
        "URG": 0x20,
        "ECE": 0x40,
        "CWR": 0x80,
    }
    return sum(names[n] for n in (record.tcp_flags or "").split(", ") if n in names)


ICMP_ERRORS = {3, 4, 5, 11, 12}  # destination unreachable, source quench, redirect, time exceeded, parameter problem
TCPDUMP = Path(__file__).parent / "data" / "tcpdump"
CAPTURES = every_sample_pcap() + sorted(str(p) for p in TCPDUMP.glob("*.pcap"))


def _check_tunnel(record: PacketRecord, row: dict[str, list[str]], where: str) -> None:
    """The tunnel's header as tshark reads it: VXLAN (and GBP), Geneve and its options,
    WireGuard's type and indices."""
    assert row["vxlan.vni"] == ([str(record.vni)] if record.is_vxlan else []), where
    # tshark reads bytes 2-3 as the group policy ID whatever the G flag (0 for plain VXLAN)
    assert [int(v, 0) for v in row["vxlan.gbp"]] == ([record.vxlan_gbp or 0] if record.is_vxlan else []), where
    if record.encap == "geneve":
        assert [int(v, 16) for v in row["geneve.vni"]] == [record.vni], where
        # tshark lists the options' total length, then each option's (its 4-byte header included).
        lengths = row["geneve.option.length"][1:]
        options = list(zip(row["geneve.option.class"], row["geneve.option.type"], lengths, strict=True))
        ours = [o.split(":") for o in (record.geneve_options or "").split(",") if o]
        assert [(int(c, 16), int(t, 16), int(n)) for c, t, n in options] == [
            (int(c, 16), int(t, 16), int(n) + 4) for (c, t), n in ((ct.split("/"), n) for ct, n in ours)
        ], where
    else:
        assert row["geneve.vni"] == [], where
    if record.encap == "wireguard":
        assert row["wg.type"] == [str(record.wg_type)], where
        assert [int(v, 16) for v in row["wg.sender"]] == [v for v in [record.wg_sender] if v is not None], where
        assert [int(v, 16) for v in row["wg.receiver"]] == [v for v in [record.wg_receiver] if v is not None], where
    if record.is_tunnel and record.inner_src_mac is not None:
        assert row["eth.src"][-1] == record.inner_src_mac, where
        assert row["eth.dst"][-1] == record.inner_dst_mac, where


def _by_version(addresses: list[str | None]) -> tuple[list[str], list[str]]:
    """IPv4 addresses in order, then IPv6 ones (tshark's ip.src and ipv6.src)."""
    given = [a for a in addresses if a]
    return [a for a in given if ":" not in a], [a for a in given if ":" in a]


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda c: c.removeprefix(str(TCPDUMP.parent.parent) + "/"))
def test_every_packet_agrees_with_tshark(capture: str) -> None:
    require_tool("tshark")
    path = SAMPLES / capture
    oracle = tshark_rows(path)
    h2_oracle = {n: row for n, row in tshark_rows(path, H2_FIELDS, "|").items() if row["http2.type"]}
    h2_seen: set[str] = set()
    records = list(decode_file(path))
    assert len(records) == len(oracle) > 0
    http_seen_by_us: set[tuple[str, str]] = set()
    hellos_seen_by_tshark: set[tuple[object, ...]] = set()
    for record in records:
        row = oracle[record.number]
        where = f"{capture} packet {record.number}"
        ips = [record.outer_src_ip, record.inner_src_ip] if record.carries_inner else [record.outer_src_ip]
        dsts = [record.outer_dst_ip, record.inner_dst_ip] if record.carries_inner else [record.outer_dst_ip]
        if row["udp.length"][:1] == ["0"]:
            # Segmentation offload (GSO, BIG TCP): tshark reads the outer headers only.
            assert row["ip.src"] + row["ipv6.src"] == [record.outer_src_ip], where
            assert record.outer_udp_len == 0 and record.notes, where
            continue
        ids = row["ip.id"]
        if record.icmp_type in ICMP_ERRORS:  # tshark also lists the IP header the error quotes
            quoted = len([ip for ip in ips if ip])
            row = {**row, "ip.src": row["ip.src"][:quoted], "ip.dst": row["ip.dst"][:quoted]}
            ids = ids[:quoted]
        assert (row["ip.src"], row["ipv6.src"]) == _by_version(ips), where
        assert (row["ip.dst"], row["ipv6.dst"]) == _by_version(dsts), where
        # The innermost IPv4 header's identification (tshark writes it in hex).
        assert [int(v, 16) for v in ids[-1:]] == ([record.ip_id] if record.ip_id is not None else []), where
        _check_tunnel(record, row, where)
        if record.is_tunnel and record.outer_proto == "udp":
            assert row["udp.srcport"][:1] == [str(record.outer_src_port)], where
            assert row["udp.dstport"][:1] == [str(record.outer_dst_port)], where
            outer_src = row["eth.src"][:1] if row["eth.src"] and not row["sll.src.eth"] else row["sll.src.eth"]
            assert outer_src == [record.outer_src_mac], where
        # A cooked capture's packet type (by Linux's number) and interface index (v2 only).
        packet_types = {name: str(number) for number, name in PACKET_TYPES.items()}
        assert row["sll.pkttype"] == ([packet_types[record.packet_type]] if record.packet_type else []), where
        assert row["sll.ifindex"] == ([str(record.ifindex)] if record.ifindex is not None else []), where
        if record.proto == "tcp":
            assert row["tcp.srcport"] == [str(record.src_port)], where
            assert row["tcp.dstport"] == [str(record.dst_port)], where
            assert int(row["tcp.flags"][0], 16) == _tcp_flag_bits(record), where
            assert row["tcp.seq_raw"] == [str(record.tcp_seq)], where
            assert row["tcp.ack_raw"] == [str(record.tcp_ack)], where
            assert row["tcp.len"] == [str(record.payload_len)], where
        elif record.icmp_type not in ICMP_ERRORS:  # an error quotes the TCP header it is about
            assert row["tcp.srcport"] == [], where
        if record.proto == "arp":
            assert row["arp.src.proto_ipv4"] == [record.arp_sender_ip], where
            assert row["arp.dst.proto_ipv4"] == [record.arp_target_ip], where
        if record.dns_id is not None:
            assert [int(v, 16) for v in row["dns.id"]] == [record.dns_id], where
            assert row["dns.flags.response"] == [str(int(bool(record.dns_response)))], where
            assert row["dns.flags.rcode"] == ([str(record.dns_rcode)] if record.dns_response else []), where
            assert row["dns.qry.name"] == [record.dns_qname], where
            assert [type_name(int(v)) for v in row["dns.qry.type"]] == [record.dns_qtype], where
            assert row["dns.count.answers"] == [str(record.dns_answers)], where
            assert ",".join(row["dns.a"]) == (record.dns_addresses or ""), where
            assert ",".join(row["dns.cname"]) == (record.dns_cnames or ""), where
        elif record.icmp_type not in ICMP_ERRORS:
            assert row["dns.id"] == [], where
        hello_types = [int(v) for v in row["tls.handshake.type"]][:1]
        if hello_types in ([1], [2]):
            # Every hello Wireshark dissects, flannelcap reads the same.
            hello = _tshark_hello(row, hello_types[0])
            assert _our_hello(record) == hello, where
            hellos_seen_by_tshark.add(hello)
        elif record.tls_handshake:
            # Wireshark dissects a hello once: later copies (tcpdump -i any) are retransmissions to it.
            assert _our_hello(record) in hellos_seen_by_tshark, f"{where}: a hello tshark never saw"
        _check_h2(record, h2_oracle.get(record.number), h2_seen, where)
        if record.http_version == "HTTP/2":
            continue
        ours_request = [record.http_method, record.http_path] if record.http_method else []
        ours_response = [str(record.http_status), record.http_reason] if record.http_status else []
        theirs_request = row["http.request.method"] + row["http.request.uri"]
        theirs_response = row["http.response.code"] + row["http.response.phrase"]
        if ours_request or ours_response:
            # Every head we report, Wireshark reports on the same packet.
            assert ours_request == theirs_request or not ours_request, where
            assert ours_response == theirs_response or not ours_response, where
            assert (ours_request or ours_response) in (theirs_request, theirs_response), where
            assert record.http_host == (row["http.host"] or [None])[0], where
            # a proxy's X-Forwarded-For (tshark splits it at its commas, as the aggregator)
            assert record.http_forwarded_for == (",".join(row["http.x_forwarded_for"]) or None), where
            assert record.http_content_type == (",".join(row["http.content_type"]) or None), where
            http_seen_by_us.add(("req", " ".join(ours_request)) if ours_request else ("res", " ".join(ours_response)))
        elif theirs_request or theirs_response:
            # Wireshark also reports a head on later copies of a segment (the same packet
            # seen on veth, cni0 and eth0 with -i any); flannelcap reports it once. Never
            # may Wireshark see a head that flannelcap misses altogether.
            key = ("req", " ".join(theirs_request)) if theirs_request else ("res", " ".join(theirs_response))
            assert key in http_seen_by_us, f"{where}: tshark sees HTTP {key} that flannelcap does not"


def test_all_256_tcp_flag_combinations_agree_with_tshark(tmp_path: Path) -> None:
    require_tool("tshark")
    from pcapdata import every_tcp_flag_combination, pcap

    path = tmp_path / "flags.pcap"
    path.write_bytes(pcap(every_tcp_flag_combination()))
    oracle = tshark_rows(path)
    records = list(decode_file(path))
    assert len(records) == len(oracle) == 256
    for bits, record in enumerate(records):
        theirs = int(oracle[record.number]["tcp.flags"][0], 16) & 0xFF  # tshark adds the AE bit above
        assert theirs == bits == _tcp_flag_bits(record), (bits, record.tcp_flags)
