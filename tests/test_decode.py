"""The Scapy decoder on packets built in the test: every layer, and every kind of bad packet."""

from __future__ import annotations

import io
import struct

import pytest
from pcapdata import NODE_A, NODE_B, POD_A, POD_B, VTEP_A, VTEP_B, VXLAN_HTTP_LAYERS, inner_tcp, pcap, vxlan_frame
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, CookedLinux, Dot1Q, Ether
from scapy.packet import Raw

from flannelcap import PacketRecord, decode_file, scapy_packet


def decode(frames: list[bytes], **kwargs: object) -> list[PacketRecord]:
    linktype = kwargs.pop("linktype", 1)
    data = pcap(frames, linktype=int(linktype), wire_lens=kwargs.pop("wire_lens", None))  # type: ignore[arg-type]
    return list(decode_file(io.BytesIO(data), **kwargs))  # type: ignore[arg-type]


def test_vxlan_tcp_every_field() -> None:
    [record] = decode([vxlan_frame(inner_tcp(b"", flags="S", seq=4137192203), vni=7)])
    assert (record.outer_src_ip, record.outer_dst_ip) == (NODE_A, NODE_B)
    assert (record.outer_src_port, record.outer_dst_port, record.outer_proto) == (45225, 8472, "udp")
    assert (record.is_vxlan, record.vni, record.vxlan_flags) == (True, 7, 0x08)
    assert (record.inner_src_mac, record.inner_dst_mac) == (VTEP_A, VTEP_B)
    assert (record.inner_src_ip, record.inner_dst_ip) == (POD_A, POD_B)
    assert (record.proto, record.src_port, record.dst_port) == ("tcp", 40482, 80)
    assert (record.tcp_flags, record.tcp_seq, record.payload_len) == ("SYN", 4137192203, 0)
    assert record.info.startswith("40482 → 80 [SYN] Seq=0")
    assert record.notes == ()


def test_http_head_split_across_segments_with_changing_outer_port() -> None:
    head = b"GET /index.html HTTP/1.1\r\nHost: 10.42.2.23\r\nUser-Agent: Wget\r\n\r\n"
    first, second = head[:20], head[20:]
    frames = [
        vxlan_frame(inner_tcp(first, seq=1000), sport=40000),
        vxlan_frame(inner_tcp(second, seq=1000 + len(first)), sport=51111),  # outer port changed
        vxlan_frame(
            inner_tcp(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                src=POD_B,
                dst=POD_A,
                sport=80,
                dport=40482,
            ),
            sport=40001,
        ),
    ]
    records = decode(frames)
    assert records[0].http_method is None  # the head is not complete yet
    assert (records[1].http_method, records[1].http_path, records[1].http_host) == (
        "GET",
        "/index.html",
        "10.42.2.23",
    )
    assert records[1].info == "GET /index.html HTTP/1.1"
    assert (records[2].http_status, records[2].http_reason) == (404, "Not Found")


def test_http_on_any_port_and_retransmission_reported_once() -> None:
    request = inner_tcp(b"POST /api HTTP/1.1\r\nHost: x\r\n\r\n", dport=8080, seq=5)
    records = decode([vxlan_frame(request), vxlan_frame(request)])
    assert [r.http_method for r in records] == ["POST", None]


def test_extra_vxlan_port_and_default_ports() -> None:
    inner = inner_tcp(b"", flags="S")
    records = decode([vxlan_frame(inner, port=4789), vxlan_frame(inner, port=9999)])
    assert [r.is_vxlan for r in records] == [True, False]
    records = decode([vxlan_frame(inner, port=9999)], vxlan_ports={8472, 4789, 9999})
    assert records[0].is_vxlan and records[0].inner_src_ip == POD_A
    # Scapy binds 4790 to VXLAN on import; flannelcap decides by its own port set.
    assert not decode([vxlan_frame(inner, port=4790)])[0].is_vxlan


def test_non_vxlan_packets_are_decoded_and_marked() -> None:
    arp = bytes(
        Ether(src="b6:f8:33:0a:1e:8d", dst="ff:ff:ff:ff:ff:ff")
        / ARP(op=1, psrc=NODE_A, pdst=NODE_B, hwsrc="b6:f8:33:0a:1e:8d")
    )
    ssh = bytes(Ether() / IP(src="192.168.1.10", dst=NODE_A) / TCP(sport=50000, dport=22, flags="A"))
    ping = bytes(Ether() / IPv6(src="fd00::1", dst="fd00::2") / ICMPv6EchoRequest())
    records = decode([arp, ssh, ping])
    assert [r.is_vxlan for r in records] == [False, False, False]
    assert records[0].info == f"Who has {NODE_B}? Tell {NODE_A}"
    assert (records[0].proto, records[0].arp_op) == ("arp", "request")
    assert (records[1].proto, records[1].dst_port, records[1].outer_dst_port) == ("tcp", 22, 22)
    assert (records[2].proto, records[2].icmp_type, records[2].outer_ip_version) == ("icmpv6", 128, 6)


def test_inner_arp_and_icmp() -> None:
    who_has = Ether(src=VTEP_A, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, psrc="10.42.3.0", pdst="10.42.2.0")
    ping = Ether(src=VTEP_A, dst=VTEP_B) / IP(src=POD_A, dst=POD_B) / ICMP(type=8)
    records = decode([vxlan_frame(who_has), vxlan_frame(ping)])
    assert records[0].info == "Who has 10.42.2.0? Tell 10.42.3.0"
    assert (records[1].proto, records[1].icmp_type, records[1].vni) == ("icmp", 8, 1)


def test_outer_vlan_tag_and_ipv6_underlay() -> None:
    inner = bytes(inner_tcp(b"", flags="S"))
    tagged = bytes(
        Ether()
        / Dot1Q(vlan=42)
        / IP(src=NODE_A, dst=NODE_B)
        / UDP(sport=1, dport=8472)
        / Raw(struct.pack("!B3xI", 8, 1 << 8) + inner)
    )
    v6 = bytes(
        Ether()
        / IPv6(src="fd00::a", dst="fd00::b")
        / UDP(sport=1, dport=8472)
        / Raw(struct.pack("!B3xI", 8, 5 << 8) + inner)
    )
    records = decode([tagged, v6])
    assert (records[0].vlan, records[0].vni, records[0].inner_src_ip) == (42, 1, POD_A)
    assert (records[1].outer_src_ip, records[1].vni, records[1].inner_dst_ip) == ("fd00::a", 5, POD_B)


def test_group_based_policy_field() -> None:
    header = struct.pack("!BBHI", 0x88, 0, 0x1234, 1 << 8)
    frame = bytes(Ether() / IP(src=NODE_A, dst=NODE_B) / UDP(sport=1, dport=4789) / Raw(header + bytes(inner_tcp())))
    [record] = decode([frame])
    assert (record.vni, record.vxlan_gbp, record.notes) == (1, 0x1234, ())


def test_cooked_v1_and_raw_ip_link_types() -> None:
    inner = inner_tcp(b"", flags="S")
    cooked = (
        bytes(CookedLinux(pkttype=4, lladdrtype=1, lladdrlen=6, src=b"\xb6\xf8\x33\x0a\x1e\x8d\x00\x00", proto=0x0800))
        + vxlan_frame(inner)[14:]
    )
    [record] = decode([cooked], linktype=113)
    assert (record.outer_src_mac, record.vni, record.inner_src_ip) == ("b6:f8:33:0a:1e:8d", 1, POD_A)
    [raw] = decode([vxlan_frame(inner)[14:]], linktype=101)
    assert (raw.outer_src_ip, raw.inner_dst_ip) == (NODE_A, POD_B)


# -- bad packets: each keeps the packets around it, and says what is wrong -------------------

GOOD = vxlan_frame(inner_tcp(b"", flags="S"))


def test_udp_8472_payload_shorter_than_vxlan_header() -> None:
    short = bytes(Ether() / IP(src=NODE_A, dst=NODE_B) / UDP(sport=1, dport=8472) / Raw(b"\x08\x00\x00"))
    records = decode([GOOD, short, GOOD])
    assert [r.is_vxlan for r in records] == [True, False, True]
    assert records[1].notes == ("UDP 8472 payload is 3 bytes, shorter than a VXLAN header (8)",)


def test_vxlan_i_flag_unset_and_reserved_bits() -> None:
    records = decode([vxlan_frame(inner_tcp(), flags=0x00), vxlan_frame(inner_tcp(), flags=0x0C | 0x01)])
    assert records[0].is_vxlan and records[0].inner_src_ip == POD_A
    assert records[0].notes == ("VXLAN I flag not set: the VNI is not valid (RFC 7348 §5)",)
    assert "VXLAN reserved bits set (RFC 7348 says they must be zero)" in records[1].notes


def test_outer_ipv4_fragments_are_marked_not_reassembled() -> None:
    whole = IP(vxlan_frame(inner_tcp(b"x" * 1400))[14:])
    whole.flags, whole.id = 0, 7
    fragments = [bytes(Ether() / f) for f in whole.fragment(fragsize=800)]
    records = decode([*fragments, GOOD])
    assert [r.outer_fragment for r in records] == [True, True, False]
    assert records[0].is_vxlan  # the first fragment holds the VXLAN header
    assert "outer IPv4 fragment (offset 0, more follow): not reassembled" in records[0].notes
    assert records[1].notes == ("outer IPv4 fragment (offset 800): not reassembled",)
    assert records[2].is_vxlan and records[2].notes == ()


def test_ipv4_total_length_zero_and_frames_larger_than_mtu() -> None:
    big = inner_tcp(b"y" * 60000, seq=1)
    frame = bytearray(vxlan_frame(big))
    frame[16:18] = b"\x00\x00"  # outer IPv4 total length 0, as with TSO / BIG TCP
    [record] = decode([bytes(frame)])
    assert record.cap_len == len(frame) > 60000
    assert (record.is_vxlan, record.inner_src_ip, record.payload_len) == (True, POD_A, 60000)
    assert "outer IPv4 total length 0 (segmentation offload)" in record.notes


def test_packets_cut_by_snaplen() -> None:
    full = vxlan_frame(inner_tcp(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
    records = decode([full[:110], full[:96], full[:40]], wire_lens=[len(full)] * 3)
    assert records[0].is_vxlan and records[0].inner_dst_ip == POD_B
    assert records[0].payload_len == 27  # from the IP header, as on the wire
    assert records[0].notes == (f"captured 110 of {len(full)} bytes (snaplen): later headers may be missing",)
    # tcpdump -s 96: the inner TCP header is cut, its ports are still read.
    assert (records[1].proto, records[1].src_port, records[1].dst_port) == ("tcp", 40482, 80)
    assert records[1].notes[1] == "TCP header incomplete (12 bytes captured)"
    assert not records[2].is_vxlan and records[2].outer_src_ip == NODE_A


def test_unknown_link_type() -> None:
    [record] = decode([b"\x00" * 30], linktype=147)
    assert record.notes == ("unknown link type 147: not decoded",)
    assert record.outer_src_ip is None


def test_ipv4_header_length_below_minimum() -> None:
    frame = bytearray(GOOD)
    frame[14] = 0x43  # IHL 3
    [record] = decode([bytes(frame)])
    assert not record.is_vxlan
    assert any("header length 12 < 20" in n for n in record.notes)


def test_detail_lists_every_layer() -> None:
    [record] = decode([vxlan_frame(inner_tcp(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))], detail=True)
    names = [layer.name for layer in record.layers]
    assert names == list(VXLAN_HTTP_LAYERS)
    vxlan = dict(record.layers[4].fields)
    assert vxlan["vni"] == "0x1" and vxlan["flags"] == "Instance"
    assert dict(record.layers[9].fields) == {"start_line": "GET / HTTP/1.1", "host": "a"}


def test_scapy_packet_on_request() -> None:
    data = pcap([GOOD, vxlan_frame(inner_tcp(b"", flags="SA"), vni=9)])
    packet = scapy_packet(io.BytesIO(data), 2)
    assert packet["VXLAN"].vni == 9
    assert packet["VXLAN"]["IP"].src == POD_A


def test_record_json_round_trip_uses_the_vocabulary() -> None:
    from flannelcap import FIELD_NAMES

    [record] = decode([GOOD])
    data = record.to_dict()
    assert list(data) == list(FIELD_NAMES)
    assert data["vni"] == 1 and data["inner_src_mac"] == VTEP_A


# GOOD's layout: outer Ethernet 0-14, IP 14-34, UDP 34-42, VXLAN 42-50, inner Ethernet 50-64,
# inner IP 64-84, TCP 84-104. Cut at each boundary (and inside a header), every header that
# was captured whole is decoded, and nothing past the cut is made up.
CUTS = {  # cut → (outer src IP, outer dst port, VNI, inner src MAC, inner src IP, inner src port)
    14: (None, None, None, None, None, None),
    20: (None, None, None, None, None, None),
    34: (NODE_A, None, None, None, None, None),
    42: (NODE_A, 8472, None, None, None, None),
    50: (NODE_A, 8472, 1, None, None, None),
    64: (NODE_A, 8472, 1, VTEP_A, None, None),
    70: (NODE_A, 8472, 1, VTEP_A, None, None),
    84: (NODE_A, 8472, 1, VTEP_A, POD_A, None),
    90: (NODE_A, 8472, 1, VTEP_A, POD_A, 40482),
}


@pytest.mark.parametrize("cut", sorted(CUTS))
def test_cut_anywhere_decodes_what_was_captured(cut: int) -> None:
    [record] = decode([GOOD[:cut]], wire_lens=[len(GOOD)])
    assert (record.number, record.cap_len, record.wire_len) == (1, cut, len(GOOD))
    assert record.outer_src_mac == "b6:f8:33:0a:1e:8d"
    decoded = (record.outer_src_ip, record.outer_dst_port, record.vni, record.inner_src_mac, record.inner_src_ip)
    assert (*decoded, record.src_port if record.is_vxlan else None) == CUTS[cut]
    assert record.is_vxlan is (cut >= 50)
    assert record.notes[0] == f"captured {cut} of {len(GOOD)} bytes (snaplen): later headers may be missing"


def test_payload_hash_is_fnv1a_of_the_first_32_bytes() -> None:
    from flannelcap.packets.scapy_decoder import payload_hash

    assert payload_hash(b"", 0) == 0x811C9DC5  # FNV-1a's offset basis
    assert payload_hash(b"a", 1) == 0xE40C292C  # the published test vector
    assert payload_hash(b"a" * 40, 40) == payload_hash(b"a" * 32 + b"b" * 8, 40)  # only the first 32 count
    assert payload_hash(b"ab", 1) == payload_hash(b"a", None)  # no further than the headers' length
