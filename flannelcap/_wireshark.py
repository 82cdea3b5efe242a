"""Wireshark's own dissection of chosen packets, through pyshark (tshark): its 3,000 dissectors
for the odd packet flannelcap's decoder does not know.

Rule: the edge to tshark, outside the pure stages (it runs tshark and writes a temporary
file; ``Capture.wireshark`` and ``decode --wireshark`` call it). Only the asked-for packets go
through it: they are copied, bytes and times as the capture holds them, into a small
temporary pcap, so one packet of a million-packet capture costs what one packet costs (a
packet whose meaning depends on earlier ones — a TCP segment of a reassembled message — is
dissected on its own). The VXLAN ports flannelcap decodes are applied as Decode-As. pyshark
and tshark are optional: without them, one line says what to install.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flannelcap._errors import BadArgument, FlannelcapError
from flannelcap.packets.reader import CaptureReader, Frame

PCAP_NS_MAGIC = 0xA1B23C4D  # pcap with nanosecond times


def _pyshark() -> Any:
    try:
        import pyshark
    except ImportError as exc:
        raise FlannelcapError(
            "Wireshark's dissection needs pyshark: pip install 'flannelcap[wireshark]' (or pip install pyshark)"
        ) from exc
    if shutil.which("tshark") is None:
        raise FlannelcapError("Wireshark's dissection needs tshark: install the Debian package tshark")
    return pyshark


def _frames(path: str | Path, numbers: set[int]) -> list[Frame]:
    """The frames numbered ``numbers``, in capture order (reading stops after the last)."""
    last = max(numbers)
    found: list[Frame] = []
    with CaptureReader(path) as reader:
        for frame in reader:
            if frame.number in numbers:
                found.append(frame)
            if frame.number >= last:
                break
    missing = sorted(numbers - {f.number for f in found})
    if missing:
        raise BadArgument(f"{Path(path).name} has no packet {missing[0]} (it holds {found[-1].number if found else 0})")
    return found


def _pcap(frames: list[Frame]) -> bytes:
    """The frames as one pcap (nanosecond times) of their link type."""
    linktype = frames[0].linktype
    out = [struct.pack("<IHHiIII", PCAP_NS_MAGIC, 2, 4, 0, 0, 262144, linktype)]
    for frame in frames:
        seconds, nanoseconds = divmod(frame.time_ns, 1_000_000_000)
        out.append(struct.pack("<IIII", seconds, nanoseconds, len(frame.data), frame.wire_len) + frame.data)
    return b"".join(out)


def dissect(path: str | Path, numbers: Iterable[int], vxlan_ports: Iterable[int]) -> dict[int, Any]:
    """Wireshark's dissection (pyshark packets) of the packets numbered ``numbers``.

    Raises:
        FlannelcapError: pyshark or tshark is missing; BadArgument: no such packet.
    """
    pyshark = _pyshark()
    wanted = set(numbers)
    if not wanted:
        return {}
    frames = _frames(path, wanted)
    decode_as = {f"udp.port=={port}": "vxlan" for port in sorted(set(vxlan_ports))}
    with tempfile.TemporaryDirectory(prefix="flannelcap-wireshark-") as directory:
        if len({f.linktype for f in frames}) == 1:
            source, keys = Path(directory) / "packets.pcap", [f.number for f in frames]
            source.write_bytes(_pcap(frames))
            capture = pyshark.FileCapture(str(source), decode_as=decode_as)
        else:  # link types differ (a pcapng of several interfaces): tshark reads the file, keeps these
            keys = [f.number for f in frames]
            condition = " || ".join(f"frame.number == {n}" for n in keys)
            capture = pyshark.FileCapture(str(path), decode_as=decode_as, display_filter=condition)
        try:
            packets = list(capture)
        finally:
            capture.close()
    if len(packets) != len(keys):
        raise FlannelcapError(f"tshark dissected {len(packets)} of the {len(keys)} packets asked for")
    return dict(zip(keys, packets, strict=True))


def dissection_text(packet: Any) -> str:
    """A pyshark packet as Wireshark's detail pane words it: each layer, then its fields."""
    return str(packet).replace("\n:\t", ":\n\t").rstrip("\n")  # pyshark puts a layer's colon on the next line
