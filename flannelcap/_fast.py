"""The fast path: the same records as the Scapy decoder, for millions of packets, with numpy.

Rule: pure. A buffer of frames (numpy ``uint8``) and their offsets in, columns out; no file,
no Scapy. Every header field is read for all packets at once with vectorised indexing. Only
the common layouts are decoded here — Ethernet (one 802.1Q tag at most), Linux cooked v1/v2
or raw IPv4, then IPv4 with TCP/UDP/ICMP/ARP, VXLAN on the given ports with an inner
Ethernet/IPv4 or ARP frame — and only packets that need no note. Every other packet is
marked in ``fallback`` for the Scapy decoder, which stays the model. HTTP heads are found by
looking only at segments whose payload begins like HTTP (``HttpCandidates``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from flannelcap._http import METHODS, HttpHead, parse_head
from flannelcap._reader import (
    LINKTYPE_DLT_RAW,
    LINKTYPE_DLT_RAW_OPENBSD,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
)

Int = NDArray[np.int64]
Bool = NDArray[np.bool_]
NONE = -1  # "no such field" in an integer column
PAD = 128  # bytes of zeros after the buffer, so that reads past a short frame stay in bounds
FAST_LINKTYPES = frozenset(
    {
        LINKTYPE_ETHERNET,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_LINUX_SLL2,
        LINKTYPE_RAW,
        LINKTYPE_DLT_RAW,
        LINKTYPE_DLT_RAW_OPENBSD,
        LINKTYPE_IPV4,
    }
)
PROTO_CODES = {"tcp": 6, "udp": 17, "icmp": 1, "arp": 1000}
_HTTP_STARTS = [m + b" " for m in METHODS] + [b"HTTP/"]


@dataclass(slots=True)
class Columns:
    """Decoded fields of a batch of frames: one numpy array per field (``NONE`` where absent).

    Addresses are integers (IPv4 as 32 bits, MACs as 48 bits); ``fallback`` marks the frames
    the fast path left to the Scapy decoder; ``payload_start`` locates TCP payloads in the
    buffer for the HTTP search.
    """

    n: int
    fallback: Bool
    values: dict[str, Int] = field(default_factory=dict)
    payload_start: Int | None = None


def _u8(buf: NDArray[np.uint8], at: Int) -> Int:
    return buf[at].astype(np.int64)


def _u16(buf: NDArray[np.uint8], at: Int) -> Int:
    return (buf[at].astype(np.int64) << 8) | buf[at + 1]


def _u32(buf: NDArray[np.uint8], at: Int) -> Int:
    return (_u16(buf, at) << 16) | _u16(buf, at + 2)


def _mac(buf: NDArray[np.uint8], at: Int) -> Int:
    return (_u16(buf, at) << 32) | (_u16(buf, at + 2) << 16) | _u16(buf, at + 4)


def padded(data: bytes | bytearray | memoryview) -> NDArray[np.uint8]:
    """A frames buffer with ``PAD`` zero bytes after it, as ``decode_columns`` needs."""
    array = np.zeros(len(data) + PAD, dtype=np.uint8)
    array[: len(data)] = np.frombuffer(data, dtype=np.uint8)
    return array


class _Builder:
    """Fills columns, one protocol layer at a time, over the rows a mask selects."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.values: dict[str, Int] = {}

    def set(self, name: str, mask: Bool, value: Int | int) -> None:
        column = self.values.get(name)
        if column is None:
            column = self.values[name] = np.full(self.n, NONE, dtype=np.int64)
        column[mask] = value[mask] if isinstance(value, np.ndarray) else value


def decode_columns(
    buf: NDArray[np.uint8],
    start: Int,
    caplen: Int,
    wire_len: Int,
    linktype: int,
    vxlan_ports: frozenset[int],
    checksums: bool = True,
) -> Columns:
    """Decode every frame at ``start`` (lengths ``caplen``) of link type ``linktype``.

    Args:
        buf: the frames' bytes, followed by ``PAD`` zero bytes.
        start: offset of each frame in ``buf``.
        caplen: captured length of each frame.
        wire_len: length of each frame on the wire.
        linktype: link-layer type of all the frames.
        vxlan_ports: UDP ports that carry VXLAN.
        checksums: verify the outer UDP checksum of VXLAN packets (``outer_udp_checksum_ok``).

    Returns:
        The columns; rows in ``fallback`` hold nothing reliable.
    """
    n = len(start)
    b = _Builder(n)
    end = start + caplen
    fallback = caplen < wire_len  # snaplen-cut frames get a note from the Scapy decoder
    if linktype not in FAST_LINKTYPES:
        return Columns(n=n, fallback=np.ones(n, dtype=bool))
    # -- link layer ---------------------------------------------------------------------
    if linktype == LINKTYPE_ETHERNET:
        short = caplen < 14
        ethertype = _u16(buf, start + 12)
        tagged = ethertype == 0x8100
        b.set("outer_dst_mac", ~short, _mac(buf, start))
        b.set("outer_src_mac", ~short, _mac(buf, start + 6))
        b.set("vlan", tagged & ~short, _u16(buf, start + 14) & 0xFFF)
        l3 = start + np.where(tagged, 18, 14)
        ethertype = np.where(tagged, _u16(buf, start + 16), ethertype)
        fallback |= short | (tagged & (caplen < 18)) | (ethertype < 0x0600) | (ethertype == 0x8100)
        fallback |= ethertype == 0x88A8
    elif linktype == LINKTYPE_LINUX_SLL:
        ethertype = _u16(buf, start + 14)
        b.set("outer_src_mac", _u16(buf, start + 4) == 6, _mac(buf, start + 6))
        l3 = start + 16
        fallback |= (caplen < 16) | (_u16(buf, start + 2) != 1)
    elif linktype == LINKTYPE_LINUX_SLL2:
        ethertype = _u16(buf, start)
        b.set("outer_src_mac", _u8(buf, start + 11) == 6, _mac(buf, start + 12))
        l3 = start + 20
        fallback |= (caplen < 20) | (_u16(buf, start + 8) != 1)
    else:
        l3 = start.copy()
        ethertype = np.where(_u8(buf, start) >> 4 == 4, 0x0800, 0x86DD)
    # -- outer network layer -----------------------------------------------------------
    is_arp = (ethertype == 0x0806) & ~fallback
    fallback |= is_arp & ~_arp(buf, b, is_arp, l3, end)
    is_ip = (ethertype == 0x0800) & ~fallback
    fallback |= ~(is_ip | is_arp)
    ok_ip, l4, proto, ip_len = _ipv4(buf, b, is_ip, l3, end, "outer_")
    fallback |= is_ip & ~ok_ip
    b.set("outer_ip_version", ok_ip, 4)
    live = ok_ip & ~fallback
    # -- outer transport, and VXLAN -------------------------------------------------------
    udp = live & (proto == 17) & (end >= l4 + 8)
    sport, dport, udp_len = _u16(buf, l4), _u16(buf, l4 + 2), _u16(buf, l4 + 4)
    on_port = _on_ports(sport, dport, vxlan_ports | {8472, 4789})
    on_vxlan_port = udp & _on_ports(sport, dport, vxlan_ports)
    udp_payload = np.minimum(udp_len - 8, end - l4 - 8)
    vxlan = on_vxlan_port & (udp_payload >= 8) & (udp_len >= 8)
    flags = _u8(buf, l4 + 8)
    reserved = _u8(buf, l4 + 9) | _u8(buf, l4 + 10) | _u8(buf, l4 + 11) | _u8(buf, l4 + 15)
    # Anything with a note (short VXLAN payload, flags other than I, reserved bits) goes to Scapy.
    fallback |= udp & on_port & ~vxlan
    fallback |= vxlan & ((flags != 0x08) | (reserved != 0))
    fallback |= live & (proto == 17) & (end < l4 + 8)
    vxlan &= ~fallback
    plain = live & ~vxlan & ~fallback
    b.set("outer_src_port", (udp | (live & (proto == 6))) & ~fallback, sport)
    b.set("outer_dst_port", (udp | (live & (proto == 6))) & ~fallback, dport)
    b.set("outer_udp_len", vxlan, udp_len)
    b.set("outer_udp_checksum", vxlan, _u16(buf, l4 + 6))
    if checksums:
        b.set("outer_udp_checksum_ok", vxlan, _udp_checksum_ok(buf, vxlan, l3, l4, udp_len, end))
    b.set("is_vxlan", np.ones(n, dtype=bool), vxlan.astype(np.int64))
    b.set("vni", vxlan, _u32(buf, l4 + 12) >> 8)
    b.set("vxlan_flags", vxlan, flags)
    # -- inner Ethernet and network layer -------------------------------------------------
    inner = l4 + 16
    inner_short = vxlan & (end < inner + 14)
    fallback |= inner_short
    vxlan &= ~inner_short
    b.set("inner_dst_mac", vxlan, _mac(buf, inner))
    b.set("inner_src_mac", vxlan, _mac(buf, inner + 6))
    inner_type = _u16(buf, inner + 12)
    b.set("inner_ethertype", vxlan, inner_type)
    inner_arp = vxlan & (inner_type == 0x0806)
    fallback |= inner_arp & ~_arp(buf, b, inner_arp, inner + 14, end)
    inner_ip = vxlan & (inner_type == 0x0800)
    fallback |= vxlan & ~(inner_ip | inner_arp)
    ok_inner, il4, iproto, inner_len = _ipv4(buf, b, inner_ip & ~fallback, inner + 14, end, "inner_")
    fallback |= inner_ip & ~ok_inner
    # -- the innermost transport: the inner one for VXLAN, the outer one otherwise ----------
    t_at = np.where(vxlan, il4, l4)
    t_proto = np.where(vxlan, iproto, proto)
    t_ip_payload = np.where(vxlan, inner_len, ip_len)
    transport = ((vxlan & ok_inner) | plain) & ~fallback
    fallback |= _transport(buf, b, transport, t_at, t_proto, t_ip_payload, end)
    outer_proto = np.where(vxlan, 17, np.where(is_arp, PROTO_CODES["arp"], proto))
    b.set("outer_proto", (live | is_arp) & ~fallback, outer_proto)
    columns = Columns(n=n, fallback=fallback, values=b.values)
    tcp = transport & (t_proto == 6) & ~fallback
    doff = (_u8(buf, t_at + 12) >> 4) * 4
    columns.payload_start = np.where(tcp, t_at + doff, NONE)
    return columns


def _on_ports(sport: Int, dport: Int, ports: frozenset[int]) -> Bool:
    """Either port in a small set (comparisons: ``np.isin`` sorts, which costs more here)."""
    hit = np.zeros(len(sport), dtype=bool)
    for port in ports:
        hit |= (sport == port) | (dport == port)
    return hit


def _udp_checksum_ok(buf: NDArray[np.uint8], mask: Bool, l3: Int, l4: Int, udp_len: Int, end: Int) -> Int:
    """1 where the UDP checksum is right, 0 where wrong, NONE where there is none (0) or the
    datagram is not captured whole. The payload's 16-bit words are summed for all rows at
    once with ``np.add.reduceat`` over the bytes at even and at odd positions."""
    result = np.full(len(mask), NONE, dtype=np.int64)
    checksum = _u16(buf, l4 + 6)
    rows = np.nonzero(mask & (checksum != 0) & (l4 + udp_len <= end) & (udp_len >= 8))[0]
    if len(rows) == 0:
        return result
    first, last = l4[rows] + 8, l4[rows] + udp_len[rows]
    even = buf.astype(np.uint32)
    odd = even.copy()
    even[1::2] = 0
    odd[0::2] = 0
    bounds = np.empty(2 * len(rows), dtype=np.int64)
    bounds[0::2], bounds[1::2] = first, last
    sum_even = np.add.reduceat(even, bounds)[0::2].astype(np.int64)
    sum_odd = np.add.reduceat(odd, bounds)[0::2].astype(np.int64)
    sum_even[first == last] = 0
    sum_odd[first == last] = 0
    starts_even = first % 2 == 0
    payload = np.where(starts_even, (sum_even << 8) + sum_odd, (sum_odd << 8) + sum_even)
    src, dst = _u32(buf, l3[rows] + 12), _u32(buf, l3[rows] + 16)
    length = udp_len[rows]
    total = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + 17 + length
    total += _u16(buf, l4[rows]) + _u16(buf, l4[rows] + 2) + length + payload
    while (total > 0xFFFF).any():
        total = (total & 0xFFFF) + (total >> 16)
    computed = ~total & 0xFFFF
    computed[computed == 0] = 0xFFFF
    result[rows] = (computed == checksum[rows]).astype(np.int64)
    return result


def _arp(buf: NDArray[np.uint8], b: _Builder, mask: Bool, at: Int, end: Int) -> Bool:
    """ARP for IPv4 over Ethernet; returns the rows it could read."""
    ok = mask & (end >= at + 28) & (_u16(buf, at) == 1) & (_u16(buf, at + 2) == 0x0800)
    ok &= (_u8(buf, at + 4) == 6) & (_u8(buf, at + 5) == 4)
    b.set("proto", ok, PROTO_CODES["arp"])
    b.set("arp_op", ok, _u16(buf, at + 6))
    b.set("arp_sender_mac", ok, _mac(buf, at + 8))
    b.set("arp_sender_ip", ok, _u32(buf, at + 14))
    b.set("arp_target_mac", ok, _mac(buf, at + 18))
    b.set("arp_target_ip", ok, _u32(buf, at + 24))
    return np.asarray(ok, dtype=bool)


def _ipv4(
    buf: NDArray[np.uint8], b: _Builder, mask: Bool, at: Int, end: Int, prefix: str
) -> tuple[Bool, Int, Int, Int]:
    """IPv4 without fragments, options read past; returns (rows read, transport offset,
    protocol, transport length from the IP header)."""
    first = _u8(buf, at)
    ihl = (first & 0x0F) * 4
    total = _u16(buf, at + 2)
    fragment = _u16(buf, at + 6) & 0x3FFF
    ok = mask & (end >= at + 20) & (first >> 4 == 4) & (ihl >= 20) & (end >= at + ihl)
    ok &= (fragment == 0) & (total >= ihl)
    b.set(prefix + "src_ip", ok, _u32(buf, at + 12))
    b.set(prefix + "dst_ip", ok, _u32(buf, at + 16))
    b.set(prefix + "ttl", ok, _u8(buf, at + 8))
    b.set(prefix + "ip_len", ok, total)
    return ok, at + ihl, _u8(buf, at + 9), total - ihl


def _transport(buf: NDArray[np.uint8], b: _Builder, mask: Bool, at: Int, proto: Int, length: Int, end: Int) -> Bool:
    """TCP, UDP and ICMP fields; returns the rows that need the Scapy decoder after all."""
    tcp = mask & (proto == 6)
    doff = (_u8(buf, at + 12) >> 4) * 4
    tcp_bad = tcp & ((end < at + 20) | (doff < 20))
    tcp &= ~tcp_bad
    b.set("proto", tcp, PROTO_CODES["tcp"])
    b.set("src_port", tcp, _u16(buf, at))
    b.set("dst_port", tcp, _u16(buf, at + 2))
    b.set("tcp_seq", tcp, _u32(buf, at + 4))
    b.set("tcp_ack", tcp, _u32(buf, at + 8))
    b.set("tcp_flags", tcp, _u8(buf, at + 13))
    b.set("tcp_window", tcp, _u16(buf, at + 14))
    b.set("payload_len", tcp, np.maximum(0, length - doff))
    udp = mask & (proto == 17)
    udp_bad = udp & (end < at + 8)
    udp &= ~udp_bad
    b.set("proto", udp, PROTO_CODES["udp"])
    b.set("src_port", udp, _u16(buf, at))
    b.set("dst_port", udp, _u16(buf, at + 2))
    b.set("payload_len", udp, np.maximum(0, _u16(buf, at + 4) - 8))
    icmp = mask & (proto == 1)
    icmp_bad = icmp & (end < at + 8)
    icmp &= ~icmp_bad
    b.set("proto", icmp, PROTO_CODES["icmp"])
    b.set("icmp_type", icmp, _u8(buf, at))
    b.set("icmp_code", icmp, _u8(buf, at + 1))
    other = mask & (proto != 1) & (proto != 6) & (proto != 17)
    return np.asarray(tcp_bad | udp_bad | icmp_bad | other, dtype=bool)


def http_candidates(buf: NDArray[np.uint8], columns: Columns, end: Int) -> Int:
    """Rows whose TCP payload begins like an HTTP request or response."""
    start = columns.payload_start
    if start is None:
        return np.zeros(0, dtype=np.int64)
    has = (start >= 0) & (end - start >= 4) & (columns.values.get("payload_len", np.zeros(columns.n)) > 0)
    rows = np.nonzero(has)[0]
    if len(rows) == 0:
        return rows
    at = start[rows]
    window = np.stack([buf[at + k] for k in range(5)], axis=1)
    hit = np.zeros(len(rows), dtype=bool)
    for prefix in _HTTP_STARTS:
        width = min(len(prefix), 5)
        want = np.frombuffer(prefix[:width], dtype=np.uint8)
        hit |= (window[:, :width] == want).all(axis=1)
    return rows[hit]


@dataclass(slots=True)
class _Direction:
    last_seq: int | None = None
    body_start: int = 0
    body_end: int = 0


class HttpCandidates:
    """HTTP heads from candidate segments only, with the Scapy path's semantics on a
    lossless capture: a retransmitted head is not reported twice, a segment inside a body
    that Content-Length announced is body, and a head not complete in its segment is
    handed back to be reassembled segment by segment (``pending``)."""

    def __init__(self) -> None:
        self._directions: dict[tuple[int, int, int, int], _Direction] = {}
        self.pending: set[tuple[int, int, int, int]] = set()

    def feed(self, key: tuple[int, int, int, int], seq: int, payload: bytes) -> HttpHead | None:
        """One candidate segment (its captured payload). Returns the head it holds, if any."""
        state = self._directions.setdefault(key, _Direction())
        if state.last_seq is not None and (state.last_seq - seq) % 2**32 < 2**31:
            return None  # the same head again, or older: a retransmission
        if (seq - state.body_start) % 2**32 < (state.body_end - state.body_start) % 2**32:
            return None  # inside a body announced by Content-Length
        end = payload.find(b"\r\n\r\n")
        if end < 0:
            self.pending.add(key)
            return None
        head = parse_head(payload[:end])
        state.last_seq = seq
        if head is not None and head.content_length:
            state.body_start = (seq + end + 4) % 2**32
            state.body_end = (state.body_start + head.content_length) % 2**32
        return head
