"""Reading a capture: the file in pieces, decoded batches out (``columns`` makes them into
columns, the views in ``lines`` and ``frames`` show them; ``pipeline`` counts the summary).

Rule: the I/O edge of the fast path. It reads the file (a classic pcap directly, a few MB at a
time; pcapng and gzip through ``CaptureReader``), has the compiled kernel walk and decode each
piece into the rows of a batch, finds the piece's HTTP heads, and sends the frames the kernel
cannot take to the Scapy ``Decoder`` (counted in ``fallback_frames``) — all before the next
piece is read over it. Memory stays flat: one piece and one batch at a time.
"""

from __future__ import annotations

import ipaddress
import struct
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, Protocol, cast

import numpy as np
from numpy.typing import NDArray

from flannelcap.packets import kernel as _kernel
from flannelcap.packets.columns import TCP, UDP, Batch, Heads, Payloads, ip_text
from flannelcap.packets.dns import DNS_PORT
from flannelcap.packets.http import (
    CLOSED_KEPT_NS,
    CLOSING_FLAGS,
    MAX_STREAMS,
    HttpHead,
    HttpReassembler,
    StreamKey,
    looks_like_http_start,
    parse_head,
)
from flannelcap.packets.http2 import PREFACE, H2Segment, Http2Follower
from flannelcap.packets.info import tcp_flag_names
from flannelcap.packets.kernel import NONE, PAD, Bool, Int
from flannelcap.packets.kernel_columns import ColumnsBuilder, DecodedPiece, innermost, padded
from flannelcap.packets.reader import MAX_RECORD_BYTES, PCAP_MAGICS, CaptureReader, Frame
from flannelcap.packets.records import PacketRecord
from flannelcap.packets.text import gather
from flannelcap.packets.tunnels import TunnelPorts
from flannelcap.packets.vxlan import DEFAULT_VXLAN_PORTS

if TYPE_CHECKING:
    from flannelcap.packets.scapy_decoder import Decoder

PIECE_BYTES = 4 * 1024 * 1024  # read and decoded at once: large enough that the per-piece Python work is small
BATCH_FRAMES = 32768  # frames per Batch handed out
# The bits of the TCP flags that close a direction (FIN, RST), as the flags' names say them.
_CLOSING_BITS = sum(1 << bit for bit in range(8) if tcp_flag_names(1 << bit) in CLOSING_FLAGS)


class _ReadsInto(Protocol):
    """A file or stream the kernel's walk reads from (a file, ``BytesIO``, a ``LiveFeed``)."""

    def readinto(self, view: memoryview, /) -> int | None: ...


class _Frames(NamedTuple):
    """A piece of a capture: consecutive frames of one link type in one buffer."""

    buf: NDArray[np.uint8]  # the frames' bytes, then PAD zero bytes
    start: Int
    caplen: Int
    wire_len: Int
    time_ns: Int
    interface: Int
    linktype: int
    number: Int


class _Filling:
    """A Batch being filled, piece by piece."""

    def __init__(self, linktype: int, tunnels: TunnelPorts, scapy_only: bool) -> None:
        self.columns = ColumnsBuilder(BATCH_FRAMES, linktype, tunnels, kernel=not scapy_only)
        self.meta = np.empty((5, BATCH_FRAMES), dtype=np.int64)  # number, time, caplen, wire, interface
        self.records: dict[int, PacketRecord] = {}
        self.heads: list[Heads] = []
        self.slow_heads: dict[int, HttpHead] = {}
        self.dns: list[Payloads] = []
        self.tls: list[Payloads] = []
        self.h2: dict[int, H2Segment] = {}

    def takes(self, frames: _Frames) -> bool:
        return frames.linktype == self.columns.linktype and len(frames.start) <= BATCH_FRAMES - self.columns.rows

    def add(self, frames: _Frames) -> DecodedPiece:
        first, n = self.columns.rows, len(frames.start)
        piece = self.columns.add(frames.buf, frames.start, frames.caplen, frames.wire_len)
        for row, values in enumerate((frames.number, frames.time_ns, frames.caplen, frames.wire_len, frames.interface)):
            self.meta[row, first : first + n] = values
        return piece

    def batch(self) -> Batch:
        rows = self.columns.rows
        number, time_ns, cap_len, wire_len, interface = self.meta[:, :rows]
        columns = self.columns.columns()
        return Batch(
            linktype=self.columns.linktype,
            number=number,
            time_ns=time_ns,
            cap_len=cap_len,
            wire_len=wire_len,
            interface=interface,
            values=columns.values,
            matrix=columns.matrix,
            fallback=columns.fallback,
            records=self.records,
            heads=Heads.joined(self.heads),
            slow_heads=self.slow_heads,
            dns=Payloads.joined(self.dns),
            tls=Payloads.joined(self.tls),
            h2=self.h2,
        )


class FastStream:
    """The decoded packets of a capture, through the fast path.

    Args:
        source: path or binary file object of a capture.
        vxlan_ports: UDP ports that carry VXLAN.
        tunnel_ports: more UDP port rules (kind, port), over the defaults of ``tunnels``.
        progress: called with (bytes read, total bytes) after each piece, if given.
        scapy_only: every frame through the Scapy decoder (``--engine scapy``): the same
            batches, filled row by row.
        more_waiting: for a live stream (``LiveFeed``): says whether more bytes are waiting to
            be read. When none are, the frames read so far are handed out as a batch at once,
            instead of waiting for a full piece.

    Raises:
        CaptureFormatError: not a capture file (on creation).
    """

    def __init__(
        self,
        source: str | Path | BinaryIO,
        *,
        vxlan_ports: Iterable[int] = DEFAULT_VXLAN_PORTS,
        tunnel_ports: Iterable[tuple[str, int]] = (),
        progress: Callable[[int, int], None] | None = None,
        scapy_only: bool = False,
        more_waiting: Callable[[], bool] | None = None,
    ) -> None:
        self.vxlan_ports = frozenset(vxlan_ports)
        self.tunnels = TunnelPorts.of(self.vxlan_ports, tunnel_ports)
        self.more_waiting = more_waiting
        self.progress = progress
        self.scapy_only = scapy_only
        self._source = source
        self._reader = CaptureReader(source)  # validates the header now; used unless a plain pcap
        if _kernel.UNAVAILABLE and not scapy_only:
            warnings.warn(f"{_kernel.UNAVAILABLE}; decoding every packet with Scapy", RuntimeWarning, stacklevel=2)
        self.problem: str | None = None
        self.fallback_frames = 0
        self.frames_expected: int | None = None
        """For a capture file read piece by piece: its frames, as the part read so far predicts them."""
        self._decoder: Decoder | None = None  # Scapy, for the frames the fast path leaves
        self._directions = np.full((1 << 12, _kernel.HTTP_STATE), NONE, dtype=np.int64)  # the HTTP search's
        self._direction_count = 0
        self._closings = _kernel.Closings()  # the directions that closed, forgotten CLOSED_KEPT_NS later
        self._slow_http: dict[tuple[int, int, int, int], HttpReassembler] = {}
        self._other_addresses: dict[str, int] = {}
        self._h2 = Http2Follower(on_connection=self._h2_connection)  # one HTTP/2 state for both decoders
        self._h2_keys = _kernel.Encoder(2)  # its connections' directions, as the kernel's rows key them

    @property
    def linktype(self) -> int:
        """Link type of the capture's first interface."""
        return self._reader.linktype

    @property
    def reader(self) -> CaptureReader:
        """The reader of the capture's header and blocks (its ``interfaces``)."""
        return self._reader

    # -- frames into batches -----------------------------------------------------------

    def batches(self, prepared: bool = False, counts_only: bool = False) -> Iterator[Batch]:
        """Decoded batches, in capture order; ``prepared``: with ``Batch.prepare`` done (here, in
        the thread that reads), for a caller that makes their columns; ``counts_only``: for a
        caller that only counts them (``CaptureSummary``), without the DNS messages and TLS
        hellos, which it does not count."""
        for step in self._decoded_pieces():
            if isinstance(step, _Filling):
                yield step.batch().prepare() if prepared else step.batch()
            else:
                self._finish(*step, payloads=not counts_only)

    def _decoded_pieces(self) -> Iterator[tuple[_Frames, DecodedPiece, _Filling] | _Filling]:
        """Each piece read and decoded into the batch being filled, then each batch once full."""
        try:
            filling: _Filling | None = None
            for piece in self._pieces():
                for frames in _at_most(piece, BATCH_FRAMES):  # small frames: a piece holds more than a batch
                    if filling is not None and not filling.takes(frames):
                        yield filling
                        filling = None
                    if filling is None:
                        filling = _Filling(frames.linktype, self.tunnels, self.scapy_only)
                    yield frames, filling.add(frames), filling
                if self.more_waiting is not None and filling is not None:  # live: what arrived is shown now
                    yield filling
                    filling = None
            if filling is not None:
                yield filling
        finally:
            self._reader.close()

    def _pieces(self) -> Iterator[_Frames]:
        """The capture's frames, piece by piece: a plain pcap (a file, or a stream such as a
        live capture's) walked by the compiled kernel, anything else through the reader."""
        header = self._reader.pcap_header
        if not _kernel.AVAILABLE or header is None:  # without the compiled walk, frames come from the reader
            return self._reader_pieces()
        if isinstance(self._source, (str, Path)):
            return self._pcap_file_pieces()
        if hasattr(self._source, "readinto"):
            order, unit_ns = header
            return self._pcap_pieces(cast(_ReadsInto, self._source), order, unit_ns, self._reader.linktype, None, 24)
        return self._reader_pieces()

    def _pcap_file_pieces(self) -> Iterator[_Frames]:
        path = Path(self._source)  # type: ignore[arg-type]
        with open(path, "rb") as raw:
            head = raw.read(24)
            order, unit_ns = PCAP_MAGICS[head[:4]]
            linktype = struct.unpack(order + "I", head[20:24])[0] & 0x0FFFFFFF
            yield from self._pcap_pieces(raw, order, unit_ns, linktype, path.stat().st_size, 24)

    def _pcap_pieces(
        self, raw: _ReadsInto, order: str, unit_ns: int, linktype: int, total: int | None, done: int
    ) -> Iterator[_Frames]:
        """The records of a pcap from ``raw`` (positioned at the first record), walked by the
        kernel a piece at a time. A piece is what one ``readinto`` returns: up to 4 MB of a file,
        or what has arrived of a stream."""
        little = order == "<"
        # One buffer for the whole file: a piece read behind the part of a record the last
        # piece cut, then PAD zeros (pages are only touched as far as data goes). Each piece
        # is finished (HTTP heads, fallback frames) before the next is read over it.
        buf = np.zeros(PIECE_BYTES + MAX_RECORD_BYTES + 16 + PAD, dtype=np.uint8)
        view = memoryview(buf)  # type: ignore[arg-type]
        kept = 0
        number = 0
        while True:
            got = raw.readinto(view[kept : kept + PIECE_BYTES]) or 0
            size = kept + got
            buf[size : size + PAD] = 0
            start, caplen, wire, seconds, fraction, stop = _kernel.walk_pcap(buf, size, little, MAX_RECORD_BYTES)
            count = len(start)
            if stop < 0:  # a record claims an impossible length
                at = -stop - 1
                claimed = struct.unpack_from(order + "I", view, at + 8)[0]
                self.problem = (
                    f"record {number + count + 1} claims {claimed} bytes, which no packet has; "
                    f"the file is damaged from there on ({number + count} records read before it)"
                )
            done += got
            if count:
                numbers = np.arange(number + 1, number + 1 + count, dtype=np.int64)
                time_ns = seconds * 1_000_000_000 + fraction * unit_ns
                yield _Frames(buf, start, caplen, wire, time_ns, np.zeros(count, np.int64), linktype, numbers)
                number += count
            if total is not None:
                self.frames_expected = _expected(number, done, total)
                if self.progress:
                    self.progress(done, total)
            if self.problem:
                return
            kept = size - stop
            if got == 0:
                if kept:
                    self.problem = _cut_short(bytes(view[stop:size]), order, number)
                return
            buf[:kept] = buf[stop:size]

    def _reader_pieces(self) -> Iterator[_Frames]:
        frames: list[Frame] = []
        size = 0
        for frame in self._reader:
            if frames and (frame.linktype != frames[0].linktype or size >= PIECE_BYTES):
                yield self._frames_piece(frames)
                frames, size = [], 0
            frames.append(frame)
            size += len(frame.data)
            if self.more_waiting is not None and not self.more_waiting():
                yield self._frames_piece(frames)
                frames, size = [], 0
        if frames:
            yield self._frames_piece(frames)
        self.problem = self._reader.problem

    @staticmethod
    def _frames_piece(frames: list[Frame]) -> _Frames:
        data = b"".join(f.data for f in frames)
        lengths = np.fromiter((len(f.data) for f in frames), dtype=np.int64, count=len(frames))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        return _Frames(
            padded(data),
            starts,
            lengths,
            np.fromiter((f.wire_len for f in frames), dtype=np.int64, count=len(frames)),
            np.fromiter((f.time_ns for f in frames), dtype=np.int64, count=len(frames)),
            np.fromiter((f.interface for f in frames), dtype=np.int64, count=len(frames)),
            frames[0].linktype,
            np.fromiter((f.number for f in frames), dtype=np.int64, count=len(frames)),
        )

    def _finish(self, frames: _Frames, piece: DecodedPiece, filling: _Filling, payloads: bool) -> None:
        """Find the HTTP heads of a decoded piece (and, with ``payloads``, gather its DNS
        messages and TLS hellos) and hand the frames the fast path could not take to the Scapy
        decoder, while the piece's buffer is still there.

        Both kinds of frame follow one HTTP state, in capture order: the kernel's segments
        up to a fallback frame, then that frame (its head found through ``_follow_one``), and
        so on. So a head is reported once however its copies (``tcpdump -i any``) are split
        between the two decoders, as the Scapy engine reports it."""
        columns = filling.columns.columns()
        first, n = piece.first_row, len(piece.payload_start)
        fallback = columns.fallback[first : first + n]
        values = columns.values
        has_payload = (piece.payload_start >= 0) & (values["payload_len"][first : first + n] > 0)
        tcp = values["proto"][first : first + n] == TCP
        with_payload = np.nonzero(has_payload & tcp)[0]
        closing = ~fallback & tcp & (values["tcp_flags"][first : first + n] & _CLOSING_BITS > 0)
        segments = np.nonzero((has_payload | closing) & tcp)[0]  # what the HTTP search follows
        if payloads:
            self._find_dns(frames, piece, values, filling, np.nonzero(has_payload)[0])
            self._find_tls(frames, piece, values, filling, with_payload)
        done = 0
        for local in np.nonzero(fallback)[0].tolist():
            before = segments[done : done + int(np.searchsorted(segments[done:], local))]
            self._find_http(frames, piece, values, filling, before)
            done += len(before)
            at, caplen = int(frames.start[local]), int(frames.caplen[local])
            frame = Frame(
                number=int(frames.number[local]),
                time_ns=int(frames.time_ns[local]),
                linktype=frames.linktype,
                data=frames.buf[at : at + caplen].tobytes(),
                wire_len=int(frames.wire_len[local]),
                interface=int(frames.interface[local]),
            )
            if self._decoder is None:
                from flannelcap.packets.scapy_decoder import Decoder

                # Every frame goes to Scapy (no kernel, or --engine scapy): its own HTTP state.
                only_scapy = self.scapy_only or not _kernel.AVAILABLE
                self._decoder = Decoder(
                    self.vxlan_ports,
                    tunnels=self.tunnels,
                    find_head=None if only_scapy else self._follow_one,
                    http2=self._h2,
                )
            filling.records[first + local] = self._decoder.decode(frame)
            self.fallback_frames += 1
        self._find_http(frames, piece, values, filling, segments[done:])

    def _find_dns(
        self, frames: _Frames, piece: DecodedPiece, values: dict[str, Int], filling: _Filling, local: Int
    ) -> None:
        """Gather the DNS messages among the payloads at ``local`` (indices into the piece): UDP
        from or to port 53 whole, TCP after its 2-byte length prefix, as much as was captured."""
        rows = local + piece.first_row
        proto = values["proto"][rows]
        on_53 = (values["src_port"][rows] == DNS_PORT) | (values["dst_port"][rows] == DNS_PORT)
        take = on_53 & ((proto == UDP) | (proto == TCP))
        if not take.any():
            return
        local, rows, over_tcp = local[take], rows[take], proto[take] == TCP
        starts = piece.payload_start[local]
        sizes = np.minimum(values["payload_len"][rows], frames.start[local] + frames.caplen[local] - starts)
        if over_tcp.any():
            buf = frames.buf
            prefix = np.where(over_tcp & (sizes >= 2), buf[starts].astype(np.int64) << 8 | buf[starts + 1], 0)
            starts = np.where(over_tcp, starts + 2, starts)
            sizes = np.where(over_tcp, np.clip(np.minimum(prefix, sizes - 2), 0, None), sizes)
        texts = gather(frames.buf, starts, sizes)
        filling.dns.append(Payloads(rows, texts.data, texts.offsets))

    def _find_tls(
        self, frames: _Frames, piece: DecodedPiece, values: dict[str, Int], filling: _Filling, local: Int
    ) -> None:
        """Gather the TCP payloads at ``local`` that begin a TLS ClientHello or ServerHello
        (a handshake record, version 3.x, handshake type 1 or 2), as captured."""
        if not len(local):
            return
        rows = local + piece.first_row
        starts = piece.payload_start[local]
        sizes = np.minimum(values["payload_len"][rows], frames.start[local] + frames.caplen[local] - starts)
        buf = frames.buf  # padded: reading six bytes past a short payload stays inside it
        hello = (sizes >= 6) & (buf[starts] == 22) & (buf[starts + 1] == 3)
        hello &= (buf[starts + 5] == 1) | (buf[starts + 5] == 2)
        if not hello.any():
            return
        texts = gather(buf, starts[hello], sizes[hello])
        filling.tls.append(Payloads(rows[hello], texts.data, texts.offsets))

    def _find_http(
        self, frames: _Frames, piece: DecodedPiece, values: dict[str, Int], filling: _Filling, local: Int
    ) -> None:
        """Follow the TCP segments at ``local`` (indices into the piece: those with payload, and
        those that close their direction) through the compiled HTTP search; heads go into the
        batch being filled (those split across segments through the reassembler)."""
        if not len(local):
            return
        rows = local + piece.first_row
        src, dst = innermost(values, rows)
        sport, dport, seq = values["src_port"][rows], values["dst_port"][rows], values["tcp_seq"][rows]
        payload = (piece.payload_start[local] >= 0) & (values["payload_len"][rows] > 0)
        starts = np.where(payload, piece.payload_start[local], 0)
        sizes = np.where(
            payload, np.minimum(values["payload_len"][rows], frames.start[local] + frames.caplen[local] - starts), 0
        )
        some = slice(None) if payload.all() else np.nonzero(payload)[0]  # HTTP/2 only has segments with payload
        segment = (src[some], sport[some], dst[some], dport[some], seq[some])
        self._find_h2(frames.buf, filling, rows[some], segment, starts[some], sizes[some])
        closing = values["tcp_flags"][rows] & _CLOSING_BITS > 0
        kinds, ends = self._follow(
            frames.buf,
            (src << 16 | sport, dst << 16 | dport, seq, piece.http_hint[local] & payload, starts, sizes),
            frames.time_ns[local],
            closing,
        )
        found = np.nonzero((kinds == _kernel.HEAD_REQUEST) | (kinds == _kernel.HEAD_RESPONSE))[0]
        if len(found):
            texts = gather(frames.buf, starts[found], ends[found])
            filling.heads.append(Heads(rows[found], kinds[found], texts.data, texts.offsets))
        for i in np.nonzero(kinds >= _kernel.TO_REASSEMBLER)[0].tolist():
            key = (int(src[i]), int(sport[i]), int(dst[i]), int(dport[i]))
            at = int(starts[i])
            payload_bytes = frames.buf[at : at + int(sizes[i])].tobytes()
            fresh = kinds[i] == _kernel.FRESH_TO_REASSEMBLER
            head = self._reassemble(key, key_str(key), int(seq[i]), payload_bytes, fresh)
            if head is not None:
                filling.slow_heads[int(rows[i])] = head

    def _find_h2(
        self, buf: NDArray[np.uint8], filling: _Filling, rows: Int, segment: tuple[Int, ...], starts: Int, sizes: Int
    ) -> None:
        """Follow the segments of HTTP/2 connections (those that began with the preface, found
        here first) through the one ``Http2Follower``; what each completes goes into the batch."""
        src, sport, dst, dport, seq = segment
        lead = (sizes >= len(PREFACE)) & (buf[starts] == PREFACE[0]) & (buf[starts + 1] == PREFACE[1])
        lead &= (buf[starts + 2] == PREFACE[2]) & (buf[starts + 3] == PREFACE[3])
        for i in np.nonzero(lead)[0].tolist():
            at = int(starts[i])
            if buf[at : at + len(PREFACE)].tobytes() == PREFACE:
                self._h2_directions(int(src[i]), int(sport[i]), int(dst[i]), int(dport[i]))
        if not self._h2_keys.count:
            return
        known = self._h2_keys.ids(np.stack([src << 16 | sport, dst << 16 | dport], axis=1), create=False) >= 0
        for i in np.nonzero(known)[0].tolist():
            at, key = int(starts[i]), (int(src[i]), int(sport[i]), int(dst[i]), int(dport[i]))
            found = self._h2.feed(key_str(key), int(seq[i]), buf[at : at + int(sizes[i])].tobytes())
            if found is not None:
                filling.h2[int(rows[i])] = found

    def _h2_connection(self, key: StreamKey) -> None:
        """A connection whose preface a fallback frame carried."""
        self._h2_directions(self._address_id(key[0]), key[1], self._address_id(key[2]), key[3])

    def _h2_directions(self, src: int, sport: int, dst: int, dport: int) -> None:
        """Both directions of an HTTP/2 connection, as the kernel's rows key them."""
        self._h2_keys.ids(np.array([[src << 16 | sport, dst << 16 | dport], [dst << 16 | dport, src << 16 | sport]]))

    def _follow(
        self, buf: NDArray[np.uint8], segments: tuple[Int, Int, Int, Bool, Int, Int], times: Int, closing: Bool
    ) -> tuple[Int, Int]:
        while len(self._directions) < 2 * (self._direction_count + int(np.count_nonzero(segments[3]))):
            self._directions = _kernel.http_regrow(self._directions, 2 * len(self._directions))
        kinds, ends, self._direction_count = _kernel.http_follow(
            self._directions, self._direction_count, buf, segments, times, closing, CLOSED_KEPT_NS, self._closings
        )
        return kinds, ends

    def _reassemble(
        self, key: tuple[int, int, int, int], text: StreamKey, seq: int, payload: bytes, fresh: bool
    ) -> HttpHead | None:
        """The head a segment of a direction sent to the reassembler completes (``fresh``: the
        direction is new to the HTTP search, so what the reassembler held of it is stale)."""
        slow = self._slow_http.get(key)
        if slow is None or fresh:
            if len(self._slow_http) >= MAX_STREAMS:  # as the Scapy decoder's reassembler: memory stays flat
                self._slow_http.clear()
            slow = self._slow_http[key] = HttpReassembler()
        return slow.feed(text, seq, payload)

    def _follow_one(self, text: StreamKey, seq: int, payload: bytes, time_ns: int, closing: bool) -> HttpHead | None:
        """The HTTP head a fallback frame's segment completes, found in the same state as the
        kernel's segments (the Scapy decoder asks this instead of its own reassembler)."""
        src, sport, dst, dport = text
        key = (self._address_id(src), sport, self._address_id(dst), dport)
        segment = (
            np.array([key[0] << 16 | sport], dtype=np.int64),
            np.array([key[2] << 16 | dport], dtype=np.int64),
            np.array([seq], dtype=np.int64),
            np.array([len(payload) >= 4 and looks_like_http_start(payload)], dtype=np.bool_),
            np.zeros(1, dtype=np.int64),
            np.array([len(payload)], dtype=np.int64),
        )
        kinds, ends = self._follow(
            padded(payload), segment, np.array([time_ns], dtype=np.int64), np.array([closing], dtype=np.bool_)
        )
        kind = int(kinds[0])
        if kind in (_kernel.HEAD_REQUEST, _kernel.HEAD_RESPONSE):
            return parse_head(payload[: int(ends[0])])
        if kind >= _kernel.TO_REASSEMBLER:
            return self._reassemble(key, text, seq, payload, kind == _kernel.FRESH_TO_REASSEMBLER)
        return None

    def _address_id(self, address: str) -> int:
        """The key the kernel's rows use for an IPv4 address (its value); other addresses (IPv6,
        which only fallback frames carry) get ids above every IPv4 value."""
        try:
            return int(ipaddress.IPv4Address(address))
        except ValueError:
            return self._other_addresses.setdefault(address, (1 << 32) + len(self._other_addresses))


def _at_most(frames: _Frames, count: int) -> Iterator[_Frames]:
    """The piece in parts of at most ``count`` frames (views of the same buffer)."""
    if len(frames.start) <= count:
        yield frames
        return
    for first in range(0, len(frames.start), count):
        part = slice(first, first + count)
        yield frames._replace(
            start=frames.start[part],
            caplen=frames.caplen[part],
            wire_len=frames.wire_len[part],
            time_ns=frames.time_ns[part],
            interface=frames.interface[part],
            number=frames.number[part],
        )


def _cut_short(tail: bytes, order: str, number: int) -> str:
    """What is wrong with a file that ends inside record ``number + 1`` (``tail`` holds its start)."""
    if len(tail) < 16:
        return (
            f"file ends inside the header of record {number + 1} ({len(tail)} of 16 bytes); "
            f"{number} records read before it"
        )
    claimed = struct.unpack_from(order + "I", tail, 8)[0]
    return (
        f"last record ({number + 1}) is cut short: {len(tail) - 16} of {claimed} bytes; "
        "the capture was probably still being written"
    )


def key_str(key: tuple[int, int, int, int]) -> tuple[str, int, str, int]:
    """The reassembler's key (addresses as text) for an integer key."""
    return ip_text(key[0]), key[1], ip_text(key[2]), key[3]


def _expected(frames: int, done: int, total: int) -> int:
    """The frames of a file of ``total`` bytes in which the first ``done`` held ``frames`` (at
    most one per 16-byte record header left)."""
    if done <= 0:
        return frames
    return frames + min(int(frames * (total - done) / done * 1.05) + 1, max(total - done, 0) // 16)
