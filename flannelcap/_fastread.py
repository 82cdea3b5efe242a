"""Reading a capture through the fast path: the file in chunks, batches of columns out, and
``PacketRecord``s, a DataFrame or a summary on demand.

Rule: the I/O edge of the fast path. It reads the file (a classic pcap directly in large
chunks; pcapng and gzip through ``CaptureReader``), cuts it into frames, hands the frames to
the pure ``_fast.decode_columns``, sends the frames the fast path cannot take to the Scapy
``Decoder`` (counted in ``fallback_frames``), and joins the two. Memory stays flat: one
chunk and one batch at a time.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from flannelcap._fast import NONE, PROTO_CODES, Columns, HttpCandidates, Int, decode_columns, http_candidates, padded
from flannelcap._http import HttpHead, HttpReassembler
from flannelcap._info import InfoFormatter, tcp_flag_names
from flannelcap._reader import MAX_RECORD_BYTES, CaptureReader, Frame
from flannelcap._records import FIELD_NAMES, PacketRecord
from flannelcap._summary import CaptureSummary
from flannelcap._vxlan import DEFAULT_VXLAN_PORTS

if TYPE_CHECKING:
    import pandas as pd

    from flannelcap._decode import Decoder

CHUNK_BYTES = 8 * 1024 * 1024
BATCH_FRAMES = 65536
HEAD_PEEK = 2048  # bytes of a candidate payload looked at first: heads are short
_PCAP_HEADERS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
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
    http: dict[int, HttpHead] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.number)


def _ip(value: int) -> str:
    return socket.inet_ntoa(value.to_bytes(4, "big"))


def _mac(value: int) -> str:
    return ":".join(f"{b:02x}" for b in value.to_bytes(6, "big"))


class FastStream:
    """The decoded packets of a capture, through the fast path.

    Args:
        source: path or binary file object of a capture.
        vxlan_ports: UDP ports that carry VXLAN.
        progress: called with (bytes read, total bytes) after each chunk, if given.

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
        try:
            plain = self._reader.format == "pcap" and isinstance(self._source, (str, Path)) and self._is_plain()
            groups = self._pcap_groups() if plain else self._reader_groups()
            for group in groups:
                yield self._decode(*group)
        finally:
            self._reader.close()

    def _is_plain(self) -> bool:
        with open(self._source, "rb") as raw:  # type: ignore[arg-type]
            return raw.read(4) in _PCAP_HEADERS

    def _pcap_groups(self) -> Iterator[tuple[Any, ...]]:
        path = Path(self._source)  # type: ignore[arg-type]
        total = path.stat().st_size
        with open(path, "rb") as raw:
            header = raw.read(24)
            order, unit_ns = _PCAP_HEADERS[header[:4]]
            linktype = struct.unpack(order + "I", header[20:24])[0] & 0x0FFFFFFF
            caplen_at = struct.Struct(order + "I").unpack_from
            pending = b""
            done = 24
            number = 0
            while True:
                chunk = raw.read(CHUNK_BYTES)
                data = pending + chunk
                starts, offset = _walk_records(data, caplen_at)
                if offset < 0:  # a record claims an impossible length
                    offset = -offset - 1
                    caplen = caplen_at(data, offset + 8)[0]
                    self.problem = (
                        f"record {number + len(starts) + 1} claims {caplen} bytes, which no packet has; "
                        f"the file is damaged from there on ({number + len(starts)} records read before it)"
                    )
                done += len(chunk)
                if starts:
                    yield self._pcap_group(data, starts, order, unit_ns, linktype, number)
                    number += len(starts)
                if self.progress:
                    self.progress(done, total)
                if self.problem:
                    return
                pending = data[offset:]
                if not chunk:
                    if pending:
                        self.problem = (
                            f"last record ({number + 1}) is cut short: {max(0, len(pending) - 16)} of "
                            f"{caplen_at(pending, 8)[0] if len(pending) >= 12 else '?'} bytes; "
                            "the capture was probably still being written"
                            if len(pending) >= 16
                            else f"file ends inside the header of record {number + 1} ({len(pending)} of 16 bytes); "
                            f"{number} records read before it"
                        )
                    return

    @staticmethod
    def _pcap_group(
        data: bytes, starts: list[int], order: str, unit_ns: int, linktype: int, number: int
    ) -> tuple[Any, ...]:
        buf = padded(data)
        at = np.asarray(starts, dtype=np.int64)

        def field32(delta: int) -> Int:
            b = [buf[at + delta + k].astype(np.int64) for k in range(4)]
            if order == "<":
                return b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)
            return (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]

        seconds, fraction, caplen, wire = field32(0), field32(4), field32(8), field32(12)
        time_ns = seconds * 1_000_000_000 + fraction * unit_ns
        numbers = np.arange(number + 1, number + 1 + len(starts), dtype=np.int64)
        return (buf, at + 16, caplen, np.maximum(wire, caplen), time_ns, np.zeros(len(at), np.int64), linktype, numbers)

    def _reader_groups(self) -> Iterator[tuple[Any, ...]]:
        frames: list[Frame] = []
        for frame in self._reader:
            if frames and (frame.linktype != frames[0].linktype or len(frames) >= BATCH_FRAMES):
                yield self._frames_group(frames)
                frames = []
            frames.append(frame)
        if frames:
            yield self._frames_group(frames)
        self.problem = self._reader.problem

    @staticmethod
    def _frames_group(frames: list[Frame]) -> tuple[Any, ...]:
        data = b"".join(f.data for f in frames)
        lengths = np.fromiter((len(f.data) for f in frames), dtype=np.int64, count=len(frames))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        return (
            padded(data),
            starts,
            lengths,
            np.fromiter((f.wire_len for f in frames), dtype=np.int64, count=len(frames)),
            np.fromiter((f.time_ns for f in frames), dtype=np.int64, count=len(frames)),
            np.fromiter((f.interface for f in frames), dtype=np.int64, count=len(frames)),
            frames[0].linktype,
            np.fromiter((f.number for f in frames), dtype=np.int64, count=len(frames)),
        )

    def _decode(
        self, buf: Any, start: Int, caplen: Int, wire: Int, time_ns: Int, interface: Int, linktype: int, numbers: Int
    ) -> Batch:
        columns = decode_columns(buf, start, caplen, wire, linktype, self.vxlan_ports)
        batch = Batch(
            linktype=linktype,
            number=numbers,
            time_ns=time_ns,
            cap_len=caplen,
            wire_len=wire,
            interface=interface,
            columns=columns,
        )
        self._find_http(buf, start + caplen, batch)
        for row in np.nonzero(columns.fallback)[0].tolist():
            frame = Frame(
                number=int(numbers[row]),
                time_ns=int(time_ns[row]),
                linktype=linktype,
                data=buf[start[row] : start[row] + caplen[row]].tobytes(),
                wire_len=int(wire[row]),
                interface=int(interface[row]),
            )
            if self._decoder is None:
                from flannelcap._decode import Decoder

                self._decoder = Decoder(self.vxlan_ports)
            batch.fallback_records[row] = self._decoder.decode(frame)
            self.fallback_frames += 1
        return batch

    def _key(self, values: dict[str, Int], row: int) -> tuple[int, int, int, int]:
        vxlan = values["is_vxlan"][row] == 1
        src = values["inner_src_ip" if vxlan else "outer_src_ip"][row]
        dst = values["inner_dst_ip" if vxlan else "outer_dst_ip"][row]
        return int(src), int(values["src_port"][row]), int(dst), int(values["dst_port"][row])

    def _find_http(self, buf: Any, end: Int, batch: Batch) -> None:
        columns, values = batch.columns, batch.columns.values
        if "tcp_seq" not in values or columns.payload_start is None:
            return
        rows = http_candidates(buf, columns, end).tolist()
        if self._slow_http:  # heads split across segments: every segment of those streams
            tcp = np.nonzero((columns.payload_start >= 0) & (values["payload_len"] > 0))[0].tolist()
            slow_rows = [r for r in tcp if self._key(values, r) in self._slow_http]
            rows = sorted(set(rows) | set(slow_rows))
        if not rows:
            return
        picked = np.asarray(rows, dtype=np.int64)
        vxlan = values["is_vxlan"][picked] == 1
        src = np.where(
            vxlan, values.get("inner_src_ip", values["outer_src_ip"])[picked], values["outer_src_ip"][picked]
        )
        dst = np.where(
            vxlan, values.get("inner_dst_ip", values["outer_dst_ip"])[picked], values["outer_dst_ip"][picked]
        )
        starts = columns.payload_start[picked]
        sizes = np.minimum(values["payload_len"][picked], end[picked] - starts)
        for row, key, at, size, seq in zip(
            rows,
            zip(
                src.tolist(),
                values["src_port"][picked].tolist(),
                dst.tolist(),
                values["dst_port"][picked].tolist(),
                strict=True,
            ),
            starts.tolist(),
            sizes.tolist(),
            values["tcp_seq"][picked].tolist(),
            strict=True,
        ):
            peek = size if key in self._slow_http else min(size, HEAD_PEEK)
            payload = buf[at : at + peek].tobytes()
            if peek < size and b"\r\n\r\n" not in payload:
                payload = buf[at : at + size].tobytes()
            if key in self._slow_http:
                head = self._slow_http[key].feed(key_str(key), seq, payload)
            else:
                head = self._http.feed(key, seq, payload)
                if key in self._http.pending:
                    self._http.pending.discard(key)
                    self._slow_http[key] = HttpReassembler()
                    head = self._slow_http[key].feed(key_str(key), seq, payload)
            if head is not None:
                batch.http[row] = head

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
        for batch in self.batches():
            values = batch.columns.values
            fast = ~batch.columns.fallback
            summary.packets += int(fast.sum())
            vxlan = fast & (values.get("is_vxlan", np.zeros(len(batch), np.int64)) == 1)
            if vxlan.any():
                vnis, counts = np.unique(values["vni"][vxlan], return_counts=True)
                for vni, count in zip(vnis.tolist(), counts.tolist(), strict=True):
                    summary.vxlan_by_vni[vni] += count
            summary.other_packets += int((fast & ~vxlan).sum())
            summary.conversations |= _conversations(values, fast)
            for head in batch.http.values():
                summary.http_requests += head.method is not None
                summary.http_responses += head.status is not None
            for record in batch.fallback_records.values():
                summary.add(record)
        summary.stopped_early = self.problem
        return summary


def _walk_records(data: bytes, caplen_at: Callable[[bytes, int], tuple[int, ...]]) -> tuple[list[int], int]:
    """Offsets of the complete records in ``data``, and where the first incomplete one starts
    (``-offset - 1`` if a record there claims more than ``MAX_RECORD_BYTES``). The one loop
    of the fast path that runs once per packet: kept to the bone."""
    starts: list[int] = []
    append = starts.append
    offset = 0
    last = len(data) - 16
    limit = MAX_RECORD_BYTES
    while offset <= last:
        caplen = caplen_at(data, offset + 8)[0]
        if caplen > limit:
            return starts, -offset - 1
        following = offset + 16 + caplen
        if following > last + 16:
            break
        append(offset)
        offset = following
    return starts, offset


def key_str(key: tuple[int, int, int, int]) -> tuple[str, int, str, int]:
    """The reassembler's key (addresses as text) for an integer key."""
    return _ip(key[0]), key[1], _ip(key[2]), key[3]


def _conversations(values: dict[str, Int], rows: Any) -> set[tuple[str, tuple[str, int], tuple[str, int]]]:
    proto = values.get("proto")
    if proto is None:
        return set()
    mask = rows & ((proto == 6) | (proto == 17))
    vxlan = values["is_vxlan"][mask] == 1
    src = np.where(vxlan, values.get("inner_src_ip", values["outer_src_ip"])[mask], values["outer_src_ip"][mask])
    dst = np.where(vxlan, values.get("inner_dst_ip", values["outer_dst_ip"])[mask], values["outer_dst_ip"][mask])
    sport, dport, kind = values["src_port"][mask], values["dst_port"][mask], proto[mask]
    swap = (src > dst) | ((src == dst) & (sport > dport))
    ends = np.stack(
        [
            kind,
            np.where(swap, dst, src),
            np.where(swap, dport, sport),
            np.where(swap, src, dst),
            np.where(swap, sport, dport),
        ],
        axis=1,
    )
    # Two 64-bit keys per conversation (protocol, address and port of each end), made unique
    # as 16-byte records: much cheaper than np.unique(axis=0) over five columns.
    first = (ends[:, 0] << 48) | (ends[:, 1] << 16) | ends[:, 2]
    second = (ends[:, 3] << 16) | ends[:, 4]
    pairs = np.ascontiguousarray(np.stack([first, second], axis=1)).view([("a", np.int64), ("b", np.int64)])
    unique = ends[np.unique(pairs.ravel(), return_index=True)[1]] if len(ends) else ends
    return {(_PROTO_NAMES[int(k)], (_ip(int(a)), int(p)), (_ip(int(b)), int(q))) for k, a, p, b, q in unique.tolist()}


def _convert(name: str, value: int) -> Any:
    if value == NONE:
        return None
    if name in _IP_FIELDS:
        return _ip(value)
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
        head = batch.http.get(row)
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
    frame = pd.DataFrame(data)
    for name in FIELD_NAMES:
        if name not in frame:
            frame[name] = False if name in ("is_vxlan", "outer_fragment") else None
    frame["notes"] = [()] * n
    frame["info"] = ""
    for row, head in batch.http.items():
        frame.loc[row, ["http_method", "http_path", "http_version", "http_host", "http_status", "http_reason"]] = [
            head.method,
            head.path,
            head.version,
            head.host,
            head.status,
            head.reason,
        ]
    for row, record in batch.fallback_records.items():
        for name, value in record.to_dict().items():
            frame.at[row, name] = tuple(value) if name == "notes" else value
    return frame[list(FIELD_NAMES)]
