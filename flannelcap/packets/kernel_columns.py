"""The fast path: the same fields as the Scapy decoder, for millions of packets.

Rule: pure. A buffer of frames (numpy ``uint8``) and their offsets in, named columns out; no
file, no Scapy. The header fields are read by the compiled loop of ``kernel`` (which decides
which frames it can take and leaves every other one to the Scapy decoder, the model). HTTP
heads are found by the compiled search (``kernel.http_follow``), which looks only at segments
whose payload begins like HTTP, with the Scapy path's semantics on a lossless capture: a
retransmitted head is not reported twice, a segment inside a body that Content-Length
announced is body, and a head not complete in its segment is reassembled segment by segment.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from flannelcap.packets import kernel as _kernel
from flannelcap.packets.http import METHODS
from flannelcap.packets.kernel import NONE as NONE
from flannelcap.packets.kernel import PAD, Bool, Int
from flannelcap.packets.reader import (
    LINKTYPE_DLT_RAW,
    LINKTYPE_DLT_RAW_OPENBSD,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
)
from flannelcap.packets.tunnels import ENCAP_CODES, TunnelPorts

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
_HTTP_STARTS = [m + b" " for m in METHODS] + [b"HTTP/"]


@dataclass(slots=True)
class Columns:
    """Decoded fields of a batch of frames: one numpy array per field (``NONE`` where absent).

    Addresses are integers (IPv4 as 32 bits, MACs as 48 bits); ``fallback`` marks the frames
    the fast path left to the Scapy decoder (their columns hold nothing reliable).
    """

    n: int
    fallback: Bool
    values: dict[str, Int]
    matrix: Int  # the same values: len(FIELDS) rows of at least n columns (the first n used)


def carries_inner(tunnel: NDArray[np.bool_], encap: Int) -> NDArray[np.bool_]:
    """Rows whose innermost headers are the inner ones: a tunnel that carries a packet
    (every one but WireGuard, whose packet is encrypted)."""
    inner: NDArray[np.bool_] = tunnel & (encap != ENCAP_CODES["wireguard"])
    return inner


def innermost(values: dict[str, Int], rows: Any = slice(None)) -> tuple[Int, Int]:
    """The innermost IPv4 addresses of kernel rows (inner for a tunnel that carries a packet,
    else outer): source, destination."""
    inner = carries_inner(values["is_tunnel"][rows] == 1, values["encap"][rows])
    src = np.where(inner, values["inner_src_ip"][rows], values["outer_src_ip"][rows])
    dst = np.where(inner, values["inner_dst_ip"][rows], values["outer_dst_ip"][rows])
    return src, dst


@dataclass(slots=True)
class DecodedPiece:
    """What the HTTP search needs of one decoded piece of a batch: its first row in the batch,
    where each TCP payload starts in the piece's buffer (``NONE`` if none), and which payloads
    begin like an HTTP head."""

    first_row: int
    payload_start: Int
    http_hint: Bool


def padded(data: bytes | bytearray | memoryview) -> NDArray[np.uint8]:
    """A frames buffer with ``PAD`` zero bytes after it, as the kernel needs."""
    array = np.zeros(len(data) + PAD, dtype=np.uint8)
    array[: len(data)] = np.frombuffer(data, dtype=np.uint8)
    return array


def _http_prefixes() -> tuple[NDArray[np.uint8], Int]:
    """How HTTP heads begin, as the kernel takes them: up to 5 bytes of each, and how many."""
    widths = np.array([min(len(p), 5) for p in _HTTP_STARTS], dtype=np.int64)
    table = np.zeros((len(_HTTP_STARTS), 5), dtype=np.uint8)
    for row, prefix in enumerate(_HTTP_STARTS):
        table[row, : widths[row]] = np.frombuffer(prefix[:5], dtype=np.uint8)
    return table, widths


_PREFIXES, _WIDTHS = _http_prefixes()


class ColumnsBuilder:
    """The columns of up to ``capacity`` frames of one link type, filled piece by piece so that
    each piece is decoded while its bytes are still in the processor's cache.

    Args:
        capacity: most frames the batch takes.
        linktype: link-layer type of all the frames.
        tunnels: which UDP ports carry which tunnel.
        checksums: verify the outer UDP checksum of tunnelled packets (``outer_udp_checksum_ok``).
        kernel: use the compiled decode (else every frame is left to the Scapy decoder).
    """

    def __init__(
        self, capacity: int, linktype: int, tunnels: TunnelPorts, checksums: bool = True, kernel: bool = True
    ) -> None:
        self.capacity = capacity
        self.linktype = linktype
        self._kernel = kernel
        self.rows = 0
        self._ports = np.array(tunnels.rules(), dtype=np.int64)
        self._checksums = checksums
        # Field-major: each field's values contiguous, as columns are used (the kernel decodes
        # frames a block at a time into rows of their own, then copies the block's fields out).
        self._values = np.empty((len(_kernel.FIELDS), capacity), dtype=np.int64)
        self._fallback = np.empty(capacity, dtype=np.bool_)

    def add(self, buf: NDArray[np.uint8], start: Int, caplen: Int, wire_len: Int) -> DecodedPiece:
        """Decode the frames at ``start`` (lengths ``caplen``, on the wire ``wire_len``) of
        ``buf`` (followed by ``PAD`` zero bytes) into the next rows."""
        first, n = self.rows, len(start)
        if n > self.capacity - first:
            raise ValueError(f"{n} frames do not fit in the {self.capacity - first} rows left")
        if self.linktype in FAST_LINKTYPES and _kernel.AVAILABLE and self._kernel:
            payload_start, http_hint = _kernel.decode_frames(
                buf, start, caplen, wire_len, self.linktype, self._ports, self._checksums,
                _PREFIXES, _WIDTHS, self._values, self._fallback, first,
            )  # fmt: skip
        else:
            self._values[:, first : first + n] = NONE
            self._fallback[first : first + n] = True
            payload_start, http_hint = np.full(n, NONE, dtype=np.int64), np.zeros(n, dtype=np.bool_)
        self.rows += n
        return DecodedPiece(first_row=first, payload_start=payload_start, http_hint=http_hint)

    def columns(self) -> Columns:
        """The columns of the rows filled so far."""
        return Columns(
            n=self.rows,
            fallback=self._fallback[: self.rows],
            values=dict(zip(_kernel.FIELDS, self._values[:, : self.rows], strict=True)),  # contiguous views
            matrix=self._values,
        )


class ConversationSet:
    """The distinct TCP and UDP conversations of the fast rows of many batches, as integer
    keys in a compiled hash set; ``named`` gives them as ``CaptureSummary`` keeps them."""

    def __init__(self) -> None:
        self._table = np.full((1 << 12, 2), NONE, dtype=np.int64)
        self.count = 0

    def add(self, values: Int, rows: Bool) -> None:
        """Add the TCP and UDP conversations of the first ``len(rows)`` rows of the kernel's
        field-major ``values`` (``Columns.matrix``) that ``rows`` marks (decoded, not fallback)."""
        if not rows.any():
            return
        self._make_room(len(rows))
        self.count = _kernel.add_conversations(self._table, self.count, values, rows)

    def absorb(
        self, named: set[tuple[str, tuple[str, int], tuple[str, int]]]
    ) -> set[tuple[str, tuple[str, int], tuple[str, int]]]:
        """Add conversations known by name (the Scapy decoder's rows) to the set, where they are
        IPv4; returns the others (IPv6), which the set cannot hold."""
        if not _kernel.AVAILABLE:
            return named
        codes = {"tcp": 6, "udp": 17}
        keys, others = [], set()
        for proto, (a_ip, a_port), (b_ip, b_port) in named:
            try:
                a, b = (int.from_bytes(socket.inet_aton(ip), "big") for ip in (a_ip, b_ip))
            except OSError:
                others.add((proto, (a_ip, a_port), (b_ip, b_port)))
                continue
            if (a, a_port) > (b, b_port):
                a, a_port, b, b_port = b, b_port, a, a_port
            keys.append((codes[proto] << 48 | a << 16 | a_port, b << 16 | b_port))
        if keys:
            self._make_room(len(keys))
            self.count = _kernel.insert_keys(self._table, self.count, np.array(keys, dtype=np.int64))
        return others

    def _keys(self) -> Int:
        keys: Int = self._table[self._table[:, 0] != NONE]
        return keys

    def _make_room(self, more: int) -> None:
        """Room for ``more`` keys with the table at most half full (``kernel.half_full_rows``)."""
        if len(self._table) < 2 * (self.count + more):
            used = self._keys()
            self._table = np.full((_kernel.half_full_rows(self.count, more), 2), NONE, dtype=np.int64)
            self.count = _kernel.insert_keys(self._table, 0, used)

    def named(self) -> set[tuple[str, tuple[str, int], tuple[str, int]]]:
        """Each conversation as (protocol, end, end), the ends in text order."""
        names = {6: "tcp", 17: "udp"}
        from flannelcap.packets.columns import ip_text

        texts: dict[int, str] = {}  # few distinct addresses: each converted once
        found = set()
        for first, second in self._keys().tolist():
            a_ip, b_ip = first >> 16 & 0xFFFFFFFF, second >> 16
            a = texts.get(a_ip) or texts.setdefault(a_ip, ip_text(a_ip))
            b = texts.get(b_ip) or texts.setdefault(b_ip, ip_text(b_ip))
            ends = sorted([(a, first & 0xFFFF), (b, second & 0xFFFF)])
            found.add((names[first >> 48], ends[0], ends[1]))
        return found
