"""``capture -w -``: the pcap streams of several nodes merged into one pcapng stream, for
Wireshark or tshark reading a pipe (``flannelcap capture n1 n2 -w - | wireshark -k -i -``).

Rule: bytes in, bytes out, nothing lost or changed. One section header first; for each node
stream, one interface block named ``node:interface`` (its link type and timestamp unit as the
node's tcpdump wrote them) as soon as that stream's pcap header has arrived; then each of its
records as an Enhanced Packet Block, in the order they arrive (pcapng lets interfaces from
several nodes interleave). Each write is flushed so that the reader sees packets at once. If
the reader goes away, the stream stops quietly and says so in ``closed``: the capture files
still hold everything.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from typing import BinaryIO

_SHB, _IDB, _EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
_OPT_END, _IF_NAME, _IF_TSRESOL = 0, 2, 9
_MICRO_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">"}
_NANO_MAGICS = {b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}


def _block(kind: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", kind, total) + body + struct.pack("<I", total)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def section_header() -> bytes:
    """A pcapng Section Header Block (little-endian, version 1.0, length unknown)."""
    return _block(_SHB, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def interface_block(name: str, linktype: int, snaplen: int, nanoseconds: bool) -> bytes:
    """An Interface Description Block named ``name`` (``if_tsresol`` 9 for nanoseconds, else 6)."""
    options = _option(_IF_NAME, name.encode()) + _option(_IF_TSRESOL, bytes([9 if nanoseconds else 6]))
    return _block(_IDB, struct.pack("<HHI", linktype, 0, snaplen) + options + _option(_OPT_END, b""))


def packet_block(interface: int, ticks: int, wire_len: int, data: bytes) -> bytes:
    """An Enhanced Packet Block: ``data`` seen on ``interface`` at ``ticks`` (in its unit)."""
    head = struct.pack("<IIIII", interface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), wire_len)
    return _block(_EPB, head + data + b"\0" * (-len(data) % 4))


class PcapngMerger:
    """One pcapng stream written to ``out`` from any number of pcap streams (see the module).

    Args:
        out: a binary file object (``sys.stdout.buffer``).
    """

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.closed = False
        self._lock = threading.Lock()
        self._interfaces = 0
        self.write(section_header())

    def stream(self, name: str) -> Callable[[bytes], None]:
        """A function that takes the chunks of one pcap stream, named ``name`` in the output."""
        return _Stream(self, name).take

    def add_interface(self, block: bytes) -> int:
        """Write an interface block; its index is its place among the interface blocks written."""
        with self._lock:
            index = self._interfaces
            self._interfaces += 1
            self._write_locked(block)
            return index

    def write(self, data: bytes) -> None:
        with self._lock:  # one stream's blocks stay whole and in order
            self._write_locked(data)

    def _write_locked(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.out.write(data)
            self.out.flush()
        except (BrokenPipeError, ValueError, OSError):  # the reader went away
            self.closed = True


class _Stream:
    """One node's pcap stream, cut into whole records as its chunks arrive."""

    def __init__(self, merger: PcapngMerger, name: str) -> None:
        self.merger, self.name = merger, name
        self.pending = bytearray()
        self.header: struct.Struct | None = None  # of a record, once the file header has arrived
        self.ticks_per_second = 0
        self.interface = -1
        self.foreign = False  # not a pcap stream: nothing of it is written

    def take(self, chunk: bytes) -> None:
        if self.foreign:
            return
        pending = self.pending
        pending.extend(chunk)
        if self.header is None and not self._start():
            return
        header = self.header
        assert header is not None
        blocks, at = [], 0
        while len(pending) - at >= 16:
            seconds, fraction, caplen, wire_len = header.unpack_from(pending, at)
            if len(pending) - at - 16 < caplen:
                break
            data = bytes(pending[at + 16 : at + 16 + caplen])
            ticks = seconds * self.ticks_per_second + fraction
            blocks.append(packet_block(self.interface, ticks, max(wire_len, caplen), data))
            at += 16 + caplen
        del pending[:at]
        if blocks:
            self.merger.write(b"".join(blocks))

    def _start(self) -> bool:
        """Read the pcap file header and write the interface block; False until it is whole."""
        if len(self.pending) < 24:
            return False
        magic = bytes(self.pending[:4])
        order = _MICRO_MAGICS.get(magic) or _NANO_MAGICS.get(magic)
        if order is None:
            self.foreign = True
            self.pending.clear()
            return False
        nano = magic in _NANO_MAGICS
        snaplen, linktype = struct.unpack(order + "II", self.pending[16:24])
        self.interface = self.merger.add_interface(interface_block(self.name, linktype & 0xFFFF, snaplen, nano))
        self.header = struct.Struct(order + "IIII")
        self.ticks_per_second = 10**9 if nano else 10**6
        del self.pending[:24]
        return True
