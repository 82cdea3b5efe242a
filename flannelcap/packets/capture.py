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

from flannelcap._errors import FlannelcapError
from flannelcap.packets.pipeline import RecordView, open_capture
from flannelcap.packets.reader import CaptureReader
from flannelcap.packets.records import PacketRecord
from flannelcap.packets.scapy_decoder import Decoder, dissect
from flannelcap.packets.vxlan import DEFAULT_VXLAN_PORTS, udp_ports
from flannelcap.topology.model import Topology


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
    engine: str = "auto",
    topology: Topology | None = None,
) -> RecordStream | RecordView:
    """Open a capture and return its decoded packets as a lazy stream of ``PacketRecord``s.

    Args:
        source: path or binary file object (pcap, pcapng, optionally gzip-compressed).
        vxlan_ports: UDP ports that carry VXLAN (default 8472 and 4789).
        detail: also produce the full layer stack of each packet (Scapy, packet by packet).
        engine: ``auto``: the records are rows of the pipeline's column batches (the compiled
            decoder, Scapy for what it leaves), made on demand; ``scapy``: each record straight
            from the Scapy decoder (the model the fast path is tested against).
        topology: the cluster, for node, VTEP and pod names (the pipeline only).

    Returns:
        An iterable of ``PacketRecord``s; ``problem`` says afterwards why reading stopped early.

    Raises:
        CaptureFormatError: not a capture file, or an empty one.
        BadArgument: a port that is not a UDP port.
    """
    if detail or engine == "scapy":
        return RecordStream(source, vxlan_ports=udp_ports(vxlan_ports), detail=detail)
    return RecordView(open_capture(source, vxlan_ports=vxlan_ports, engine=engine, topology=topology))


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
