"""The compiled loops of the fast path, as typed Python functions: the record walk of a pcap
piece, the header decode of its frames, the HTTP head classifier and the set of
conversations (``_ckernel.c``).

Rule: a thin face. The loops live in C; here the outputs are allocated and the types said.
The C code checks every buffer's size, reads nothing outside a frame, and leaves any frame it
cannot decode completely to the Scapy decoder, which stays the model. If the extension was not
built (no C compiler when flannelcap was installed), ``AVAILABLE`` is False, ``UNAVAILABLE``
says why, and the fast path hands every frame to the Scapy decoder.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

PAD = 128  # zero bytes after the frames in a buffer
NONE = -1  # "no such field" in an integer column
ARP_CODE = 1000  # ``proto``/``outer_proto`` of an ARP packet (not an IP protocol number)
# The fields of a packet's row of values, in the C code's order (PacketRecord's names).
FIELDS = (
    "outer_dst_mac", "outer_src_mac", "vlan", "outer_ip_version", "outer_src_ip", "outer_dst_ip",
    "outer_ttl", "outer_ip_len", "outer_proto", "outer_src_port", "outer_dst_port", "outer_udp_len",
    "outer_udp_checksum", "outer_udp_checksum_ok", "is_vxlan", "vni", "vxlan_flags", "inner_dst_mac",
    "inner_src_mac", "inner_ethertype", "inner_src_ip", "inner_dst_ip", "inner_ttl", "inner_ip_len",
    "proto", "src_port", "dst_port", "tcp_seq", "tcp_ack", "tcp_flags", "tcp_window", "payload_len",
    "icmp_type", "icmp_code", "arp_op", "arp_sender_mac", "arp_sender_ip", "arp_target_mac", "arp_target_ip",
)  # fmt: skip

_ckernel: Any
UNAVAILABLE: str | None = None  # why the compiled loops cannot be used, if they cannot
try:
    from flannelcap import _ckernel  # type: ignore[attr-defined,no-redef]
except ImportError:  # the test suite requires the extension
    _ckernel = None
    UNAVAILABLE = "the compiled fast path was not built (no C compiler when flannelcap was installed)"
else:
    if (tuple(_ckernel.FIELDS), _ckernel.NONE, _ckernel.ARP_CODE) != (FIELDS, NONE, ARP_CODE):
        UNAVAILABLE = "the compiled fast path is out of date (rebuild it: pip install the package again)"

Int = NDArray[np.int64]
Bool = NDArray[np.bool_]
AVAILABLE = UNAVAILABLE is None
NOT_HTTP, REQUEST, RESPONSE, ASK_PYTHON = 0, 1, 2, 3  # what http_scan makes of a head


def walk_pcap(buf: NDArray[np.uint8], size: int, little: bool, max_record: int) -> tuple[Int, Int, Int, Int, Int, int]:
    """The complete pcap records in ``buf[:size]``, a piece that starts on a record header.

    Returns (frame offsets, captured lengths, wire lengths, seconds, fractions, stop), where
    ``stop`` is the offset of the first incomplete record, or ``-offset - 1`` if the record
    there claims more than ``max_record`` bytes (the file is damaged from there on).
    """
    room = size // 16 + 1  # no record is shorter than its header; pages not written stay untouched
    outputs = [np.empty(room, dtype=np.int64) for _ in range(5)]
    count, stop = _ckernel.walk_pcap(buf, size, little, max_record, *outputs)
    start, caplen, wire, seconds, fraction = (o[:count].copy() for o in outputs)
    return start, caplen, wire, seconds, fraction, int(stop)


def decode_frames(
    buf: NDArray[np.uint8],
    start: Int,
    caplen: Int,
    wire_len: Int,
    linktype: int,
    ports: Int,
    checksums: bool,
    prefixes: NDArray[np.uint8],
    widths: Int,
    values: Int,
    fallback: Bool,
    first_row: int,
) -> tuple[Int, Bool]:
    """Decode every frame at ``start`` (lengths ``caplen``) of link type ``linktype``.

    Args:
        buf: the frames' bytes (uint8), followed by ``PAD`` zero bytes.
        start, caplen, wire_len: offset, captured length and length on the wire of each frame.
        linktype: link-layer type of all the frames (one the fast path takes).
        ports: UDP ports that carry VXLAN.
        checksums: verify the outer UDP checksum of VXLAN packets.
        prefixes, widths: how HTTP heads begin (5 bytes a row, and how many of them count).
        values, fallback: the batch's rows of fields (``len(FIELDS)`` columns, packet-major)
            and fallback marks; frame ``i`` goes to row ``first_row + i``. Fields a frame lacks
            are ``NONE``; a frame left to the Scapy decoder is marked and its row holds nothing
            reliable.

    Returns:
        (payload_start, http_hint), per frame: where its TCP payload starts in ``buf`` (``NONE``
        if none), and whether that payload begins like an HTTP request or response.
    """
    n = len(start)
    payload_start = np.empty(n, dtype=np.int64)
    http_hint = np.empty(n, dtype=np.bool_)
    _ckernel.decode_frames(
        buf, start, caplen, wire_len, linktype, ports, checksums, prefixes, widths,
        values, fallback, first_row, payload_start, http_hint, PAD,
    )  # fmt: skip
    return payload_start, http_hint


def add_conversations(table: Int, count: int, values: Int, rows: Bool) -> int:
    """Add the TCP and UDP conversations of the marked ``rows`` of ``values`` to a set; returns
    the new count.

    A conversation is the protocol and its two ends (address, port), the lower end first, kept
    as two integer keys in a row of ``table`` (``NONE`` marks a free row). The table has a power
    of two rows, at least twice the count after adding every row (the caller sees to it).
    """
    return int(_ckernel.add_conversations(table, count, values, rows))


def http_scan(buf: NDArray[np.uint8], start: Int, size: Int) -> tuple[Int, Int, Int]:
    """Find and classify the HTTP head at the start of each payload ``buf[start:start+size]``.

    Returns (ends, kinds, lengths), per payload: where its head ends (the offset of the first
    blank line, -1 if none), what ``_http.parse_head`` makes of the head (``NOT_HTTP``,
    ``REQUEST``, ``RESPONSE``, or ``ASK_PYTHON`` where a number is too long to be sure of here),
    and its Content-Length (-1 if none).
    """
    n = len(start)
    ends, kinds, lengths = (np.empty(n, dtype=np.int64) for _ in range(3))
    _ckernel.http_scan(buf, start, size, ends, kinds, lengths)
    return ends, kinds, lengths


def insert_keys(table: Int, count: int, keys: Int) -> int:
    """Add conversations given as their two keys (rows of ``keys``, as ``add_conversations``
    keeps them) to a set; returns the new count. Used to move a set into a larger table."""
    return int(_ckernel.insert_keys(table, count, np.ascontiguousarray(keys)))
