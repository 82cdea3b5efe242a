"""Streaming reader for pcap, pcapng and their gzip-compressed forms.

Rule: one record in memory at a time. The reader takes an open binary file (or a path),
yields ``Frame`` objects lazily, and never decodes a protocol: link-layer bytes in, link-layer
bytes out. Damage is handled like dpkt's ``pcap`` and Wireshark do: a file that is not a
capture at all raises ``CaptureFormatError`` before the first frame; damage after the first
frame stops the reading there, keeps every frame read so far, and is reported in
``CaptureReader.problem`` (truncated ≠ malformed).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from flannelcap._errors import CaptureFormatError, CaptureTruncatedError

# Link-layer header types (https://www.tcpdump.org/linktypes.html).
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_DLT_RAW = 12
LINKTYPE_DLT_RAW_OPENBSD = 14
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229

LINKTYPE_NAMES = {
    LINKTYPE_ETHERNET: "Ethernet",
    LINKTYPE_RAW: "Raw IP",
    LINKTYPE_DLT_RAW: "Raw IP",
    LINKTYPE_DLT_RAW_OPENBSD: "Raw IP",
    LINKTYPE_LINUX_SLL: "Linux cooked v1",
    LINKTYPE_LINUX_SLL2: "Linux cooked v2",
    LINKTYPE_IPV4: "Raw IPv4",
    LINKTYPE_IPV6: "Raw IPv6",
}

# A record claiming more than this is not a packet but a damaged length field.
MAX_RECORD_BYTES = 16 * 1024 * 1024

PCAP_MAGICS = {  # magic → (byte order, nanoseconds per fraction unit)
    b"\xd4\xc3\xb2\xa1": ("<", 1_000),  # microseconds, little-endian
    b"\xa1\xb2\xc3\xd4": (">", 1_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """One captured frame, exactly as the capture file holds it.

    Attributes:
        number: 1-based position in the capture (Wireshark's ``frame.number``).
        time_ns: capture time in nanoseconds since the epoch.
        linktype: link-layer header type of ``data``.
        data: the captured bytes (possibly fewer than ``wire_len``).
        wire_len: length of the frame on the wire.
        interface: pcapng interface index (0 for pcap).
    """

    number: int
    time_ns: int
    linktype: int
    data: bytes
    wire_len: int
    interface: int = 0

    @property
    def time(self) -> float:
        """Capture time in seconds since the epoch (the double nearest to it, as
        ``seconds`` gives it)."""
        return self.time_ns / 1_000_000_000  # integers: Python rounds the quotient once


@dataclass(frozen=True, slots=True, kw_only=True)
class Interface:
    """A capture interface (pcap has one; pcapng may have several)."""

    linktype: int
    snaplen: int
    name: str = ""
    ticks_per_second: int = 1_000_000

    def time_ns(self, ticks: int) -> int:
        """Nanoseconds since the epoch for a timestamp of ``ticks`` (exact integer arithmetic)."""
        return ticks * 1_000_000_000 // self.ticks_per_second


class CaptureReader:
    """Iterate over the frames of a pcap or pcapng capture, optionally gzip-compressed.

    Args:
        source: a path or a binary file object positioned at the start of the capture.

    Raises:
        CaptureFormatError: the input is empty or not a capture file at all.
        CaptureTruncatedError: the file ends inside its first header.

    After iteration, ``problem`` holds a one-line description of the damage that stopped
    the reading early (``None`` if the whole file was read), and ``problem_kind`` is
    ``"truncated"`` or ``"malformed"``.
    """

    def __init__(self, source: str | Path | BinaryIO) -> None:
        self._owned: BinaryIO | None = None
        if isinstance(source, (str, Path)):
            try:
                self._owned = open(source, "rb")  # noqa: SIM115 - closed in close()
            except OSError as exc:
                raise CaptureFormatError(f"cannot open {source}: {exc.strerror}") from exc
            raw: BinaryIO = self._owned
        else:
            raw = source
        self._file = self._unwrap_gzip(raw)
        self.problem: str | None = None
        self.problem_kind: str | None = None
        self.interfaces: list[Interface] = []
        self.format = ""
        self._first = self._read_exact(4, "the file header")
        if self._first == _PCAPNG_SHB:
            self.format = "pcapng"
        elif self._first in PCAP_MAGICS:
            self.format = "pcap"
            self._read_pcap_header()
        else:
            raise CaptureFormatError(
                "not a pcap or pcapng file (unknown magic "
                f"{self._first.hex()}); give a file written by tcpdump, tshark or Wireshark"
            )

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file if this reader opened it."""
        if self._owned is not None:
            self._owned.close()

    @property
    def pcap_header(self) -> tuple[str, int] | None:
        """For an uncompressed pcap: its byte order (``<`` or ``>``) and timestamp unit in
        nanoseconds, the source then being positioned at the first record; else None."""
        if self.format != "pcap" or not isinstance(self._file, _Prepended) or self._file.pending:
            return None
        return self._order, self._unit_ns

    @property
    def linktype(self) -> int:
        """Link type of the first interface (0 if none was seen yet)."""
        return self.interfaces[0].linktype if self.interfaces else 0

    def __iter__(self) -> Iterator[Frame]:
        frames = self._pcap_frames() if self.format == "pcap" else self._pcapng_frames()
        try:
            yield from frames
        except CaptureTruncatedError as exc:
            self.problem, self.problem_kind = str(exc), "truncated"
        except CaptureFormatError as exc:
            self.problem, self.problem_kind = str(exc), "malformed"

    # -- low-level reads ---------------------------------------------------------------

    @staticmethod
    def _unwrap_gzip(raw: BinaryIO) -> BinaryIO:
        head = raw.read(2)
        stream = _Prepended(head, raw)
        if head == _GZIP_MAGIC:
            return cast(BinaryIO, gzip.GzipFile(fileobj=cast(BinaryIO, stream)))
        return cast(BinaryIO, stream)

    def _read(self, size: int) -> bytes:
        try:
            return self._file.read(size)
        except EOFError as exc:  # gzip stream cut short
            raise CaptureTruncatedError(f"compressed stream ends early: {exc}") from exc
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise CaptureFormatError(f"damaged gzip stream: {exc}") from exc

    def _read_exact(self, size: int, what: str) -> bytes:
        data = self._read(size)
        if len(data) < size:
            if not data and what == "the file header":
                raise CaptureFormatError("empty file: it holds no capture")
            raise CaptureTruncatedError(f"file ends inside {what} ({len(data)} of {size} bytes)")
        return data

    # -- pcap --------------------------------------------------------------------------

    def _read_pcap_header(self) -> None:
        self._order, self._unit_ns = PCAP_MAGICS[self._first]
        try:
            rest = self._read_exact(20, "the pcap file header")
        except CaptureTruncatedError as exc:
            raise CaptureFormatError(f"not a complete pcap file: {exc}") from exc
        _major, _minor, _zone, _sigfigs, snaplen, network = struct.unpack(self._order + "HHiIII", rest)
        self.interfaces.append(
            Interface(
                linktype=network & 0x0FFFFFFF,
                snaplen=snaplen,
                ticks_per_second=1_000_000_000 // self._unit_ns,
            )
        )

    def _pcap_frames(self) -> Iterator[Frame]:
        header = struct.Struct(self._order + "IIII")
        linktype = self.interfaces[0].linktype
        number = 0
        while True:
            raw = self._read(16)
            if not raw:
                return
            if len(raw) < 16:
                raise CaptureTruncatedError(
                    f"file ends inside the header of record {number + 1} "
                    f"({len(raw)} of 16 bytes); {number} records read before it"
                )
            seconds, fraction, caplen, wire_len = header.unpack(raw)
            if caplen > MAX_RECORD_BYTES:
                raise CaptureFormatError(
                    f"record {number + 1} claims {caplen} bytes, which no packet has; "
                    f"the file is damaged from there on ({number} records read before it)"
                )
            data = self._read(caplen)
            if len(data) < caplen:
                raise CaptureTruncatedError(
                    f"last record ({number + 1}) is cut short: {len(data)} of {caplen} "
                    "bytes; the capture was probably still being written"
                )
            number += 1
            yield Frame(
                number=number,
                time_ns=seconds * 1_000_000_000 + fraction * self._unit_ns,
                linktype=linktype,
                data=data,
                wire_len=max(wire_len, caplen),
            )

    # -- pcapng ------------------------------------------------------------------------

    def _pcapng_frames(self) -> Iterator[Frame]:
        order = "<"
        number = 0
        block_type_raw: bytes | None = self._first
        while True:
            if block_type_raw is None:
                block_type_raw = self._read(4)
                if not block_type_raw:
                    return
                if len(block_type_raw) < 4:
                    raise CaptureTruncatedError("file ends inside a block header")
            if block_type_raw == _PCAPNG_SHB:
                head = self._read_exact(8, "a section header block")
                bom = head[4:8]
                if bom == b"\x4d\x3c\x2b\x1a":
                    order = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    order = ">"
                else:
                    raise CaptureFormatError("pcapng section header has an unknown byte order")
                total = struct.unpack(order + "I", head[:4])[0]
                self._check_block_length(total, 28, number)
                self._read_exact(total - 12, "a section header block")
                self.interfaces = []
                block_type_raw = None
                continue
            length_raw = self._read_exact(4, "a block header")
            block_type = struct.unpack(order + "I", block_type_raw)[0]
            total = struct.unpack(order + "I", length_raw)[0]
            self._check_block_length(total, 12, number)
            body = self._read_exact(total - 8, f"block after record {number}")
            body = body[:-4]
            block_type_raw = None
            if block_type == 1:
                self.interfaces.append(_interface_from_idb(body, order))
            elif block_type in (6, 2):
                frame = self._packet_block(block_type, body, order, number + 1)
                number += 1
                yield frame
            elif block_type == 3:
                number += 1
                yield self._simple_packet_block(body, order, number)

    @staticmethod
    def _check_block_length(total: int, minimum: int, number: int) -> None:
        if total < minimum or total % 4 or total > MAX_RECORD_BYTES:
            raise CaptureFormatError(
                f"pcapng block after record {number} has an impossible length ({total}); "
                "the file is damaged from there on"
            )

    def _interface(self, index: int, number: int) -> Interface:
        if index >= len(self.interfaces):
            raise CaptureFormatError(f"record {number} names interface {index}, which the file never described")
        return self.interfaces[index]

    def _packet_block(self, block_type: int, body: bytes, order: str, number: int) -> Frame:
        if block_type == 6:
            if len(body) < 20:
                raise CaptureFormatError(f"record {number}: enhanced packet block too short")
            iface, ts_high, ts_low, caplen, wire_len = struct.unpack(order + "IIIII", body[:20])
        else:
            if len(body) < 20:
                raise CaptureFormatError(f"record {number}: packet block too short")
            iface, _drops, ts_high, ts_low, caplen, wire_len = struct.unpack(order + "HHIIII", body[:20])
        if 20 + caplen > len(body):
            raise CaptureFormatError(
                f"record {number} claims {caplen} captured bytes but its block holds {len(body) - 20}"
            )
        interface = self._interface(iface, number)
        ticks = (ts_high << 32) | ts_low
        return Frame(
            number=number,
            time_ns=interface.time_ns(ticks),
            linktype=interface.linktype,
            data=body[20 : 20 + caplen],
            wire_len=max(wire_len, caplen),
            interface=iface,
        )

    def _simple_packet_block(self, body: bytes, order: str, number: int) -> Frame:
        interface = self._interface(0, number)
        wire_len = struct.unpack(order + "I", body[:4])[0]
        caplen = min(wire_len, len(body) - 4, interface.snaplen or wire_len)
        return Frame(
            number=number,
            time_ns=0,
            linktype=interface.linktype,
            data=body[4 : 4 + caplen],
            wire_len=wire_len,
        )


def _interface_from_idb(body: bytes, order: str) -> Interface:
    """Read an Interface Description Block body (linktype, snaplen, name, tsresol)."""
    if len(body) < 8:
        raise CaptureFormatError("pcapng interface description block too short")
    linktype, _reserved, snaplen = struct.unpack(order + "HHI", body[:8])
    name = ""
    ticks_per_second = 1_000_000
    offset = 8
    while offset + 4 <= len(body):
        code, length = struct.unpack(order + "HH", body[offset : offset + 4])
        value = body[offset + 4 : offset + 4 + length]
        if code == 0:
            break
        if code == 2:
            name = value.decode("utf-8", "replace")
        elif code == 9 and value:
            resolution = value[0]
            exponent = resolution & 0x7F
            ticks_per_second = 2**exponent if resolution & 0x80 else 10**exponent
        offset += 4 + ((length + 3) & ~3)
    return Interface(linktype=linktype, snaplen=snaplen, name=name, ticks_per_second=ticks_per_second)


class _Prepended:
    """A read-only file that first returns ``head`` and then the rest of ``raw``."""

    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self._head = head
        self._raw = raw

    @property
    def pending(self) -> bool:
        """Whether bytes of ``head`` are still to be returned."""
        return bool(self._head)

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._raw.read(size)
        if size < 0:
            data, self._head = self._head + self._raw.read(), b""
            return data
        data, self._head = self._head[:size], self._head[size:]
        if len(data) < size:
            data += self._raw.read(size - len(data))
        return data
