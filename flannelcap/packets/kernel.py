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

from flannelcap.packets.fields import KERNEL_FIELDS

PAD = 128  # zero bytes after the frames in a buffer
NONE = -1  # "no such field" in an integer column
ARP_CODE = 1000  # ``proto``/``outer_proto`` of an ARP packet (not an IP protocol number)
FIELDS = KERNEL_FIELDS  # a packet's row of values, in the C code's order (the field table's)

# The compiled functions' version, raised with every change of their arguments or of what they
# write (``KERNEL_VERSION`` in _ckernel.c: the two must be equal).
KERNEL_VERSION = 3

_ckernel: Any
UNAVAILABLE: str | None = None  # why the compiled loops cannot be used, if they cannot
try:
    from flannelcap.packets import _ckernel  # type: ignore[attr-defined,no-redef]
except ImportError:  # the test suite requires the extension
    _ckernel = None
    UNAVAILABLE = "the compiled fast path was not built (no C compiler when flannelcap was installed)"
else:
    known = (tuple(_ckernel.FIELDS), _ckernel.NONE, _ckernel.ARP_CODE) == (FIELDS, NONE, ARP_CODE)
    if not known or getattr(_ckernel, "KERNEL_VERSION", 0) != KERNEL_VERSION:
        UNAVAILABLE = "the compiled fast path is out of date (rebuild it: pip install the package again)"

Int = NDArray[np.int64]
Bool = NDArray[np.bool_]
AVAILABLE = UNAVAILABLE is None
NOT_HTTP, REQUEST, RESPONSE, ASK_PYTHON = 0, 1, 2, 3  # what http_scan makes of a head
# what http_follow makes of a segment
SKIP, HEAD_REQUEST, HEAD_RESPONSE, TO_REASSEMBLER, FRESH_TO_REASSEMBLER = 0, 1, 2, 3, 4
HTTP_STATE = 6  # int64s per direction in http_follow's table
HEAD_PARTS = 17  # http_parts: method, path, version (from, to), status; reason and 4 headers (from, to)


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
        values, fallback: the batch's fields (``len(FIELDS)`` rows of values, one per field:
            field-major) and fallback marks; frame ``i`` goes to column ``first_row + i``.
            Fields a frame lacks are ``NONE``; a frame left to the Scapy decoder is marked and
            its column holds nothing reliable.

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
    """Add the TCP and UDP conversations of the rows ``rows`` marks (the first ``len(rows)``)
    of ``values`` (the kernel's, field-major: a row of values per field) to a set; returns the
    new count.

    A conversation is the protocol and its two ends (address, port), the lower end first, kept
    as two integer keys in a row of ``table`` (``NONE`` marks a free row). The table has a power
    of two rows, at least twice the count after adding every row (the caller sees to it).
    """
    return int(_ckernel.add_conversations(table, count, values, rows))


def http_scan(buf: NDArray[np.uint8], start: Int, size: Int) -> tuple[Int, Int, Int]:
    """Find and classify the HTTP head at the start of each payload ``buf[start:start+size]``:
    the classifier ``http_follow`` runs, on its own (the tests hold it to ``parse_head`` here).

    Returns (ends, kinds, lengths), per payload: where its head ends (the offset of the first
    blank line, -1 if none), what ``http.parse_head`` makes of the head (``NOT_HTTP``,
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


class Closings:
    """The directions that sent FIN or RST, oldest first, as ``http_follow`` keeps them across
    calls: a ring of (time, key_a, key_b) rows, grown here when a call could fill it."""

    def __init__(self) -> None:
        self.rows = np.zeros((1 << 10, 3), dtype=np.int64)
        self.head = self.tail = 0

    def make_room(self, more: int) -> None:
        """Room for ``more`` closings besides those held."""
        held = (self.tail - self.head) % len(self.rows)
        if held + more < len(self.rows):
            return
        order = (self.head + np.arange(held)) % len(self.rows)
        rows = np.zeros((1 << (2 * (held + more)).bit_length(), 3), dtype=np.int64)
        rows[:held] = self.rows[order]
        self.rows, self.head, self.tail = rows, 0, held


def http_follow(
    table: Int,
    count: int,
    buf: NDArray[np.uint8],
    segments: tuple[Int, Int, Int, Bool, Int, Int],
    time: Int,
    closing: Bool,
    kept_ns: int,
    closings: Closings,
) -> tuple[Int, Int, int]:
    """Follow the HTTP streams of TCP segments ``(key_a, key_b, seq, hint, start, size)`` (a
    payload ``buf[start:start+size]``, maybe empty) in capture order, in a table of directions
    (``HTTP_STATE`` int64s a row; ``key_a == NONE`` marks a free row; a power of two rows, at
    least twice the directions after adding one for every segment that ``hint`` marks: only
    those add a direction).

    A direction is keyed by (source address << 16 | port, destination address << 16 | port). A
    segment that ``closing`` marks (FIN or RST) goes into ``closings``; its direction is
    forgotten before the first segment ``kept_ns`` or more later (``time``, in ns). Returns
    (kinds, ends, count), per segment: ``SKIP``, ``HEAD_REQUEST``/``HEAD_RESPONSE`` (a head
    ending at ``end``, the blank line excluded), or ``TO_REASSEMBLER`` (the direction's head
    is split across segments: from now on Python reassembles it; ``FRESH_TO_REASSEMBLER`` if
    the direction is new); and the directions held.
    """
    key_a, key_b, seq, hint, start, size = segments
    n = len(key_a)
    closings.make_room(int(np.count_nonzero(closing)))
    kinds, ends = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    count, closings.head, closings.tail = _ckernel.http_follow(
        table, count, buf, key_a, key_b, seq, hint, start, size, time, closing, kept_ns,
        closings.rows, closings.head, closings.tail, kinds, ends,
    )  # fmt: skip
    return kinds, ends, int(count)


def http_regrow(table: Int, rows: int) -> Int:
    """The directions of ``table`` in a new table of ``rows`` rows (a power of two)."""
    grown = np.full((rows, HTTP_STATE), NONE, dtype=np.int64)
    _ckernel.http_regrow(grown, np.ascontiguousarray(table))
    return grown


def http_parts(blob: bytes, offsets: Int, kinds: Int) -> Int:
    """Where the parts of each head ``blob[offsets[i]:offsets[i+1]]`` (a request where ``kinds``
    says ``HEAD_REQUEST``, else a response) lie, as ``http.parse_head`` splits them: rows of
    ``HEAD_PARTS`` (from/to of method, path, version; the status, -2 if too long to hold; from/to
    of the reason and of the values of Host, X-Forwarded-For, X-Forwarded-Server and
    Content-Type), -1 where absent."""
    out = np.empty((len(kinds), HEAD_PARTS), dtype=np.int64)
    _ckernel.http_parts(blob, offsets, kinds, out)
    return out


DNS_PARTS = 12  # dns_parts: id, flags, QDCOUNT, ANCOUNT, qtype, smallest TTL; qname, addresses, CNAMEs (from, to)


def dns_parts(blob: bytes, offsets: Int) -> tuple[Int, bytes]:
    """The parts of each DNS message ``blob[offsets[i]:offsets[i+1]]``, as ``dns.parse_message``
    reads them: rows of ``DNS_PARTS`` (id, flags, QDCOUNT, ANCOUNT, the first question's type,
    the answers' smallest TTL; from/to in the returned text of the question's name, the
    answers' addresses and the CNAMEs' targets), -1 where absent."""
    n = len(offsets) - 1
    out = np.empty((n, DNS_PARTS), dtype=np.int64)
    arena = bytearray(2 * len(blob) + 64 * n + 64)
    used = _ckernel.dns_parts(blob, offsets, out, arena)
    if used > len(arena):  # names that compression made longer than the messages: once more, with room
        arena = bytearray(used)
        used = _ckernel.dns_parts(blob, offsets, out, arena)
    return out, bytes(arena[:used])


TLS_PARTS = 7  # tls_parts: handshake type, version, cipher; SNI, ALPN (from, to)


def tls_parts(blob: bytes, offsets: Int) -> tuple[Int, bytes]:
    """The parts of the TLS hello each payload ``blob[offsets[i]:offsets[i+1]]`` begins with,
    as ``tls.parse_hello`` reads it: rows of ``TLS_PARTS`` (handshake type, version, the
    server's cipher; from/to in the returned text of the SNI and of the ALPN list), -1 where
    absent."""
    n = len(offsets) - 1
    out = np.empty((n, TLS_PARTS), dtype=np.int64)
    arena = bytearray(len(blob) + 64)  # every text is a copy of payload bytes (and commas between)
    used = _ckernel.tls_parts(blob, offsets, out, arena)
    if used > len(arena):
        arena = bytearray(used)
        used = _ckernel.tls_parts(blob, offsets, out, arena)
    return out, bytes(arena[:used])


def half_full_rows(count: int, more: int) -> int:
    """The rows an open-addressing table of ``count`` keys needs to take ``more`` and stay at
    most half full: a power of two, so that it is grown once to the size needed rather than
    through doublings that each re-insert every key."""
    return 1 << (2 * (count + more) - 1).bit_length()


_ENCODE_CHUNK = 1 << 16  # keys looked up at once (a batch's column is half of it)


class Encoder:
    """Dense ids (0, 1, 2 … in order of first sight) for distinct keys of one or two int64s,
    kept across calls: the compiled hash table behind labels, directions and conversations."""

    def __init__(self, width: int = 1) -> None:
        self.width = width
        self.count = 0
        self._table = np.full((1 << 10, width + 1), NONE, dtype=np.int64)
        self._known: dict[tuple[int, ...], int] = {}  # the same, without the extension

    def ids(self, keys: Int, create: bool = True) -> Int:
        """The id of each key (rows of ``width`` keys; a first key of ``NONE`` gets -1, and so
        does an unseen key when not ``create``)."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        if not AVAILABLE:
            return self._ids_in_python(keys, create)
        n = len(keys)
        if n > _ENCODE_CHUNK:  # a table with room for every key would be sized by the keys, not the distinct ones
            parts = [self.ids(keys[at : at + _ENCODE_CHUNK], create) for at in range(0, n, _ENCODE_CHUNK)]
            return np.concatenate(parts)
        if len(self._table) < 2 * (self.count + n):
            self._grow(half_full_rows(self.count, n))
        out = np.empty(n, dtype=np.int64)
        self.count = int(_ckernel.encode(self._table, self.count, keys, self.width, create, out))
        return out

    def _ids_in_python(self, keys: Int, create: bool) -> Int:
        """``ids`` without the compiled table (the extension was not built)."""
        known = self._known
        out = np.full(len(keys), -1, dtype=np.int64)
        for i, key in enumerate(map(tuple, keys.reshape(len(keys), -1).tolist())):
            if key[0] == NONE:
                continue
            if key not in known and create:
                known[key] = len(known)
            out[i] = known.get(key, -1)
        self.count = len(known)
        return out

    def _grow(self, rows: int) -> None:
        used = self._table[self._table[:, 0] != NONE]
        order = np.argsort(used[:, self.width], kind="stable")  # re-inserted in id order: ids kept
        self._table = np.full((rows, self.width + 1), NONE, dtype=np.int64)
        self.count = 0
        self.count = int(
            _ckernel.encode(self._table, 0, np.ascontiguousarray(used[order, : self.width]), self.width, True,
                            np.empty(len(used), dtype=np.int64))
        )  # fmt: skip


def first_sightings(ids: np.ndarray[Any, Any], since: int = 0) -> np.ndarray[Any, Any]:
    """Where each id from ``since`` on first occurs, for ids given in order of first sight
    (0, 1, 2 …; -1: none), as ``Encoder.ids`` gives them: the rows where the running maximum
    grows (``since``: the encoder's count before the call, for the ids it made new)."""
    if not len(ids):
        return np.empty(0, dtype=np.int64)
    if since:
        ids = np.where(ids >= since, ids - since, -1)
    running = np.maximum.accumulate(ids)
    grows = np.empty(len(ids), dtype=np.bool_)
    grows[0] = ids[0] >= 0
    np.greater(running[1:], running[:-1], out=grows[1:])
    return np.nonzero(grows)[0]


def format_rows(
    n: int, parts: Int, columns: list[Any], literals: list[bytes], ends: Int, out: NDArray[np.uint8], first: int = 0
) -> int:
    """Run a program of text parts (``packets.text.Program``) over the ``n`` rows from row
    ``first``, writing into ``out``; the text of the run's ``i``-th row ends at ``ends[i]``.
    Returns the bytes written, or, if they did not fit in ``out``, ``-(about the bytes needed)
    - 1``. Every column and code is checked before the run (a ``ValueError`` if one does not
    fit)."""
    parts = np.ascontiguousarray(parts, dtype=np.int64)
    size: int = _ckernel.format_rows(n, parts, columns, literals, ends, out, first)
    return size


def split_missing(values: Int, data: NDArray[Any], mask: NDArray[np.bool_]) -> int:
    """Each of ``values`` that is present into ``data`` (integers of 1 to 8 bytes, as many as
    values), and True into ``mask`` where it is ``NONE``; nothing else is written (``mask``
    is expected to be False, as in a fresh buffer: its pages where no value is missing, and
    the data's where every one is, stay untouched). Returns how many values are present."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    if not AVAILABLE:
        missing = values == NONE
        mask[missing] = True
        data[~missing] = values[~missing]
        return int(len(values) - missing.sum())
    present: int = _ckernel.split_missing(values, data, mask.view(np.uint8))
    return present


def gather(buf: NDArray[np.uint8], starts: Int, lengths: Int) -> tuple[Int, bytes]:
    """The byte ranges ``[starts[i], starts[i] + lengths[i])`` of ``buf`` (each inside it, but
    an empty one), one after the other, and the offsets (one more than ranges) where each begins."""
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    lengths = np.ascontiguousarray(lengths, dtype=np.int64)
    offsets = np.empty(len(starts) + 1, dtype=np.int64)
    if not AVAILABLE:
        offsets[0] = 0
        np.cumsum(lengths, out=offsets[1:])
        index = np.repeat(starts - offsets[:-1], lengths) + np.arange(int(offsets[-1]))
        return offsets, buf[index].tobytes()
    joined: bytes = _ckernel.gather(buf, starts, lengths, offsets)
    return offsets, joined


def dedupe(blob: bytes, at: Int, to: Int) -> tuple[Int, Int]:
    """Dense ids (in order of first sight) for the distinct byte strings ``blob[at[i]:to[i]]``
    (-1 where ``at[i]`` is -1), and the first row of each id."""
    n = len(at)
    ids, first = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    if not AVAILABLE:
        seen: dict[bytes, int] = {}
        firsts: list[int] = []
        for i, (a, z) in enumerate(zip(at.tolist(), to.tolist(), strict=True)):
            if a < 0:
                ids[i] = -1
                continue
            if blob[a:z] not in seen:
                seen[blob[a:z]] = len(firsts)
                firsts.append(i)
            ids[i] = seen[blob[a:z]]
        return ids, np.array(firsts, dtype=np.int64)
    count = int(_ckernel.dedupe(blob, np.ascontiguousarray(at), np.ascontiguousarray(to), ids, first))
    return ids, first[:count]
