"""Reading a capture through the fast path: the file in pieces, batches of columns out, and
``PacketRecord``s, a DataFrame or a summary on demand.

Rule: the I/O edge of the fast path. It reads the file (a classic pcap directly, a few MB at a
time; pcapng and gzip through ``CaptureReader``), has the compiled kernel walk and decode each
piece into the rows of a batch, finds the piece's HTTP heads, and sends the frames the kernel
cannot take to the Scapy ``Decoder`` (counted in ``fallback_frames``) — all before the next
piece is read over it. Memory stays flat: one piece and one batch at a time.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

import numpy as np
from numpy.typing import NDArray

from flannelcap import _kernel
from flannelcap._fast import (
    NONE,
    PENDING,
    PROTO_CODES,
    Columns,
    ColumnsBuilder,
    ConversationSet,
    DecodedPiece,
    HttpCandidates,
    ScannedHead,
    ip_text,
    padded,
)
from flannelcap._http import HttpHead, HttpReassembler
from flannelcap._info import InfoFormatter, tcp_flag_names
from flannelcap._kernel import PAD, Int
from flannelcap._reader import MAX_RECORD_BYTES, CaptureReader, Frame
from flannelcap._records import COLUMN_DTYPES, FIELD_NAMES, PacketRecord
from flannelcap._summary import CaptureSummary
from flannelcap._vxlan import DEFAULT_VXLAN_PORTS

if TYPE_CHECKING:
    import pandas as pd

    from flannelcap._decode import Decoder

PIECE_BYTES = 4 * 1024 * 1024  # read and decoded at once: large enough that the per-piece Python work is small
BATCH_FRAMES = 32768  # frames per Batch handed out
_PCAP_HEADERS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
_HTTP_FIELDS = HttpHead._fields[:6]  # method, path, version, status, reason, host: the record's http_* fields
_PROTO_NAMES = {code: name for name, code in PROTO_CODES.items()}
_IP_FIELDS = ("outer_src_ip", "outer_dst_ip", "inner_src_ip", "inner_dst_ip", "arp_sender_ip", "arp_target_ip")
_MAC_FIELDS = ("outer_src_mac", "outer_dst_mac", "inner_src_mac", "inner_dst_mac", "arp_sender_mac", "arp_target_mac")


@dataclass(slots=True)
class Batch:
    """Up to ``BATCH_FRAMES`` consecutive frames of one link type, decoded."""

    linktype: int
    number: Int
    time_ns: Int
    cap_len: Int
    wire_len: Int
    interface: Int
    columns: Columns
    fallback_records: dict[int, PacketRecord] = field(default_factory=dict)
    http: dict[int, HttpHead | ScannedHead] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.number)


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

    def __init__(self, linktype: int, vxlan_ports: frozenset[int]) -> None:
        self.columns = ColumnsBuilder(BATCH_FRAMES, linktype, vxlan_ports)
        self.meta = np.empty((5, BATCH_FRAMES), dtype=np.int64)  # number, time, caplen, wire, interface
        self.fallback_records: dict[int, PacketRecord] = {}
        self.http: dict[int, HttpHead | ScannedHead] = {}

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
        return Batch(
            linktype=self.columns.linktype,
            number=number,
            time_ns=time_ns,
            cap_len=cap_len,
            wire_len=wire_len,
            interface=interface,
            columns=self.columns.columns(),
            fallback_records=self.fallback_records,
            http=self.http,
        )


def _mac(value: int) -> str:
    return ":".join(f"{b:02x}" for b in value.to_bytes(6, "big"))


class FastStream:
    """The decoded packets of a capture, through the fast path.

    Args:
        source: path or binary file object of a capture.
        vxlan_ports: UDP ports that carry VXLAN.
        progress: called with (bytes read, total bytes) after each piece, if given.

    Raises:
        CaptureFormatError: not a capture file (on creation).
    """

    def __init__(
        self,
        source: str | Path | BinaryIO,
        *,
        vxlan_ports: Iterable[int] = DEFAULT_VXLAN_PORTS,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.vxlan_ports = frozenset(vxlan_ports)
        self.progress = progress
        self._source = source
        self._reader = CaptureReader(source)  # validates the header now; used unless a plain pcap
        if _kernel.UNAVAILABLE:
            warnings.warn(f"{_kernel.UNAVAILABLE}; decoding every packet with Scapy", RuntimeWarning, stacklevel=2)
        self.problem: str | None = None
        self.fallback_frames = 0
        self._decoder: Decoder | None = None  # Scapy, for the frames the fast path leaves
        self._http = HttpCandidates()
        self._slow_http: dict[tuple[int, int, int, int], HttpReassembler] = {}

    @property
    def linktype(self) -> int:
        """Link type of the capture's first interface."""
        return self._reader.linktype

    # -- frames into batches -----------------------------------------------------------

    def batches(self) -> Iterator[Batch]:
        """Decoded batches, in capture order."""
        for step in self._decoded_pieces():
            if isinstance(step, _Filling):
                yield step.batch()
            else:
                self._finish(*step)

    def _decoded_pieces(self) -> Iterator[tuple[_Frames, DecodedPiece, _Filling] | _Filling]:
        """Each piece read and decoded into the batch being filled, then each batch once full."""
        try:
            plain = self._reader.format == "pcap" and isinstance(self._source, (str, Path)) and self._is_plain()
            plain &= _kernel.AVAILABLE  # without the compiled walk, frames come from the reader
            filling: _Filling | None = None
            for piece in self._pcap_pieces() if plain else self._reader_pieces():
                for frames in _at_most(piece, BATCH_FRAMES):  # small frames: a piece holds more than a batch
                    if filling is not None and not filling.takes(frames):
                        yield filling
                        filling = None
                    if filling is None:
                        filling = _Filling(frames.linktype, self.vxlan_ports)
                    yield frames, filling.add(frames), filling
            if filling is not None:
                yield filling
        finally:
            self._reader.close()

    def _is_plain(self) -> bool:
        with open(self._source, "rb") as raw:  # type: ignore[arg-type]
            return raw.read(4) in _PCAP_HEADERS

    def _pcap_pieces(self) -> Iterator[_Frames]:
        path = Path(self._source)  # type: ignore[arg-type]
        total = path.stat().st_size
        with open(path, "rb") as raw:
            header = raw.read(24)
            order, unit_ns = _PCAP_HEADERS[header[:4]]
            little = order == "<"
            linktype = struct.unpack(order + "I", header[20:24])[0] & 0x0FFFFFFF
            # One buffer for the whole file: a piece read behind the part of a record the last
            # piece cut, then PAD zeros (pages are only touched as far as data goes). Each piece
            # is finished (HTTP heads, fallback frames) before the next is read over it.
            buf = np.zeros(PIECE_BYTES + MAX_RECORD_BYTES + 16 + PAD, dtype=np.uint8)
            view = memoryview(buf)  # type: ignore[arg-type]
            kept = 0
            done = 24
            number = 0
            while True:
                got = raw.readinto(view[kept : kept + PIECE_BYTES])
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

    def _finish(self, frames: _Frames, piece: DecodedPiece, filling: _Filling) -> None:
        """Find the HTTP heads of a decoded piece and hand the frames the fast path could not
        take to the Scapy decoder, while the piece's buffer is still there."""
        columns = filling.columns.columns()
        self._find_http(frames, piece, columns.values, filling.http)
        fallback = columns.fallback[piece.first_row : piece.first_row + len(frames.start)]
        for local in np.nonzero(fallback)[0].tolist():
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
                from flannelcap._decode import Decoder

                self._decoder = Decoder(self.vxlan_ports)
            filling.fallback_records[piece.first_row + local] = self._decoder.decode(frame)
            self.fallback_frames += 1

    def _find_http(
        self, frames: _Frames, piece: DecodedPiece, values: dict[str, Int], found: dict[int, HttpHead | ScannedHead]
    ) -> None:
        """Feed the piece's candidate segments (and every segment of a stream whose head is split
        across segments) to the HTTP search; heads go into ``found`` by batch row."""
        local = np.nonzero(piece.http_hint)[0]
        first = piece.first_row
        if self._slow_http:
            tcp = np.nonzero(
                (piece.payload_start >= 0) & (values["payload_len"][first : first + len(piece.payload_start)] > 0)
            )[0]
            local = np.union1d(local, tcp)
        if not len(local):
            return
        rows = local + first
        vxlan = values["is_vxlan"][rows] == 1
        src = np.where(vxlan, values["inner_src_ip"][rows], values["outer_src_ip"][rows])
        dst = np.where(vxlan, values["inner_dst_ip"][rows], values["outer_dst_ip"][rows])
        starts = piece.payload_start[local]
        sizes = np.minimum(values["payload_len"][rows], frames.start[local] + frames.caplen[local] - starts)
        ends, kinds, lengths = _kernel.http_scan(frames.buf, starts, sizes)
        buf = frames.buf
        for row, key, at, size, seq, end, kind, length in zip(
            rows.tolist(),
            zip(
                src.tolist(),
                values["src_port"][rows].tolist(),
                dst.tolist(),
                values["dst_port"][rows].tolist(),
                strict=True,
            ),
            starts.tolist(),
            sizes.tolist(),
            values["tcp_seq"][rows].tolist(),
            ends.tolist(),
            kinds.tolist(),
            lengths.tolist(),
            strict=True,
        ):
            slow = self._slow_http.get(key)
            if slow is None:
                if not piece.http_hint[row - first]:
                    continue  # a segment of some other stream
                head = self._http.feed(key, seq, (end, kind, length), buf, at)
                if head != PENDING:
                    if head is not None:
                        found[row] = head
                    continue
                slow = self._slow_http[key] = HttpReassembler()
            parsed = slow.feed(key_str(key), seq, buf[at : at + size].tobytes())
            if parsed is not None:
                found[row] = parsed

    # -- results -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[PacketRecord]:
        info = InfoFormatter()
        first: float | None = None
        for batch in self.batches():
            if first is None and len(batch):
                first = float(batch.time_ns[0] / 1e9)
            yield from records_of(batch, first or 0.0, info)

    def summary(self) -> CaptureSummary:
        """Packet, VNI, conversation and HTTP counts, without building a record per packet."""
        summary = CaptureSummary()
        conversations = ConversationSet()
        for batch in self.batches():
            values = batch.columns.values
            fast = ~batch.columns.fallback
            summary.packets += int(fast.sum())
            vxlan = fast & (values["is_vxlan"] == 1)
            if vxlan.any():
                vnis, counts = np.unique(values["vni"][vxlan], return_counts=True)
                for vni, count in zip(vnis.tolist(), counts.tolist(), strict=True):
                    summary.vxlan_by_vni[vni] += count
            summary.other_packets += int((fast & ~vxlan).sum())
            conversations.add(batch.columns, fast)
            for head in batch.http.values():
                summary.http_requests += head.is_request
                summary.http_responses += not head.is_request
            for record in batch.fallback_records.values():
                summary.add(record)
        summary.conversations |= conversations.named()
        summary.stopped_early = self.problem
        return summary


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


def _convert(name: str, value: int) -> Any:
    if value == NONE:
        return None
    if name in _IP_FIELDS:
        return ip_text(value)
    if name in _MAC_FIELDS:
        return _mac(value)
    if name in ("proto", "outer_proto"):
        return _PROTO_NAMES.get(value, str(value))
    if name == "tcp_flags":
        return tcp_flag_names(value)
    if name == "arp_op":
        return {1: "request", 2: "reply"}.get(value, str(value))
    if name in ("is_vxlan", "outer_udp_checksum_ok"):
        return bool(value)
    return value


def _converted(name: str, column: Int) -> list[Any]:
    """A column as Python values of the record's types, converting each distinct value once."""
    if name in _IP_FIELDS or name in _MAC_FIELDS or name in ("proto", "outer_proto", "tcp_flags", "arp_op"):
        distinct, inverse = np.unique(column, return_inverse=True)
        names = [_convert(name, int(v)) for v in distinct.tolist()]
        return [names[i] for i in inverse.tolist()]
    if name in ("is_vxlan", "outer_udp_checksum_ok"):
        return [None if v == NONE else v == 1 for v in column.tolist()]
    return [None if v == NONE else v for v in column.tolist()]


def records_of(batch: Batch, first_time: float, info: InfoFormatter) -> Iterator[PacketRecord]:
    """The batch as ``PacketRecord``s, with ``rel_time`` from ``first_time`` and the Info text
    (the fallback rows as the Scapy decoder made them, their Info redone in capture order)."""
    names = list(batch.columns.values)
    columns = [_converted(n, batch.columns.values[n]) for n in names]
    numbers, times = batch.number.tolist(), (batch.time_ns / 1e9).tolist()
    caps, wires, interfaces = batch.cap_len.tolist(), batch.wire_len.tolist(), batch.interface.tolist()
    rows = zip(*columns, strict=True) if columns else ((),) * len(batch)  # no columns: all rows fell back
    for row, values in enumerate(rows):
        fallback = batch.fallback_records.get(row)
        if fallback is not None:
            record = replace(fallback, rel_time=fallback.time - first_time)
            yield replace(record, info=info.format(record))
            continue
        fields = {name: value for name, value in zip(names, values, strict=True) if value is not None}
        found = batch.http.get(row)
        head = found.parsed() if found is not None else None
        if head is not None:
            fields.update(head.record_fields())
        record = PacketRecord(
            number=numbers[row],
            time=times[row],
            rel_time=times[row] - first_time,
            cap_len=caps[row],
            wire_len=wires[row],
            interface=interfaces[row],
            **fields,
        )
        # The record is not handed out yet: setting its Info here keeps it immutable to users
        # while saving a second construction per packet (dataclasses.replace), the costliest step.
        object.__setattr__(record, "info", info.format(record, head))
        yield record


def frame_of(batch: Batch) -> pd.DataFrame:
    """The batch as a DataFrame, converting each column once (addresses through their
    distinct values), then the fallback rows from their records."""
    import pandas as pd

    n = len(batch)
    data: dict[str, Any] = {
        "number": batch.number,
        "time": batch.time_ns / 1e9,
        "rel_time": np.zeros(n),
        "cap_len": batch.cap_len,
        "wire_len": batch.wire_len,
        "interface": batch.interface,
    }
    for name, column in batch.columns.values.items():
        present = column != NONE
        if name in _IP_FIELDS or name in _MAC_FIELDS or name in ("proto", "outer_proto", "tcp_flags", "arp_op"):
            distinct, inverse = np.unique(column, return_inverse=True)
            names = np.array([_convert(name, int(v)) for v in distinct.tolist()], dtype=object)
            data[name] = names[inverse]
        elif name == "is_vxlan":
            data[name] = column == 1
        elif name == "outer_udp_checksum_ok":
            data[name] = pd.array(np.where(present, column == 1, False), dtype="boolean")
            data[name][~present] = pd.NA
        else:
            data[name] = pd.array(np.where(present, column, 0), dtype="Int64")
            data[name][~present] = pd.NA
    if batch.http:
        rows = np.fromiter(batch.http, dtype=np.int64, count=len(batch.http))
        heads = [found.parsed() for found in batch.http.values()]
        for name, values in zip(_HTTP_FIELDS, list(zip(*heads, strict=True)), strict=False):
            column = np.full(n, None, dtype=object)
            column[rows] = values
            data[f"http_{name}"] = column
    frame = pd.DataFrame(data)
    for name in FIELD_NAMES:
        if name not in frame:
            frame[name] = False if name in ("is_vxlan", "outer_fragment") else None
    frame["notes"] = [()] * n
    frame["info"] = ""
    for row, record in batch.fallback_records.items():
        for name, value in record.to_dict().items():
            frame.at[row, name] = tuple(value) if name == "notes" else value
    # The same column types in every batch, whatever it holds (Parquet keeps the first schema).
    for name, kind in COLUMN_DTYPES.items():
        frame[name] = frame[name].astype(kind)
    text = [name for name in FIELD_NAMES if name not in COLUMN_DTYPES and name != "notes"]
    frame[text] = frame[text].astype("string")
    return frame[list(FIELD_NAMES)]
