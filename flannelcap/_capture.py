"""Decoding a capture file: the reader at one end, the decoder in the middle.

Rule: this is the edge where files are opened. It joins ``CaptureReader`` (I/O) to the pure
``Decoder`` and hands records on lazily, one at a time, so a capture of any size streams
through in constant memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from scapy.packet import Packet

from flannelcap._decode import Decoder, dissect
from flannelcap._errors import FlannelcapError
from flannelcap._reader import CaptureReader
from flannelcap._records import PacketRecord
from flannelcap._vxlan import DEFAULT_VXLAN_PORTS


class RecordStream:
    """The decoded packets of one capture file, produced lazily.

    Iterate once. Afterwards ``problem`` says what stopped the reading early (``None`` when
    the whole file was read).

    Args:
        source: path or binary file object of a pcap / pcapng capture, gzip-compressed or not.
        vxlan_ports: UDP ports that carry VXLAN.
        detail: fill ``PacketRecord.layers`` (slower).

    Raises:
        CaptureFormatError: the source is not a capture file at all (raised on creation).
    """

    def __init__(
        self,
        source: str | Path | BinaryIO,
        *,
        vxlan_ports: Iterable[int] = DEFAULT_VXLAN_PORTS,
        detail: bool = False,
    ) -> None:
        self._reader = CaptureReader(source)
        self._decoder = Decoder(vxlan_ports, detail=detail)

    @property
    def problem(self) -> str | None:
        """Why reading stopped before the end of the file, or ``None``."""
        return self._reader.problem

    @property
    def linktype(self) -> int:
        """Link type of the capture's first interface."""
        return self._reader.linktype

    def __iter__(self) -> Iterator[PacketRecord]:
        try:
            for frame in self._reader:
                yield self._decoder.decode(frame)
        finally:
            self._reader.close()

    def __enter__(self) -> RecordStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self._reader.close()


def decode_file(
    source: str | Path | BinaryIO,
    *,
    vxlan_ports: Iterable[int] = DEFAULT_VXLAN_PORTS,
    detail: bool = False,
) -> RecordStream:
    """Open a capture and return its decoded packets as a lazy stream.

    Args:
        source: path or binary file object (pcap, pcapng, optionally gzip-compressed).
        vxlan_ports: UDP ports that carry VXLAN (default 8472 and 4789).
        detail: also produce the full layer stack of each packet.

    Returns:
        A ``RecordStream``; iterate it for ``PacketRecord``s.

    Raises:
        CaptureFormatError: not a capture file, or an empty one.
    """
    return RecordStream(source, vxlan_ports=vxlan_ports, detail=detail)


def scapy_packet(
    source: str | Path | BinaryIO,
    number: int,
    *,
    vxlan_ports: Iterable[int] = DEFAULT_VXLAN_PORTS,
) -> Packet:
    """The Scapy packet for frame ``number`` (1-based), with VXLAN decoded on ``vxlan_ports``.

    Raises:
        FlannelcapError: the capture has no such frame.
    """
    with CaptureReader(source) as reader:
        for frame in reader:
            if frame.number == number:
                return dissect(frame, vxlan_ports)
    raise FlannelcapError(f"the capture has no packet {number}")
