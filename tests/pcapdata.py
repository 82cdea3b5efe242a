"""Building capture files byte by byte, for tests of the reader and the decoder.

Only pure parsing is tested with these; everything that crosses a boundary is tested on
captures made by the kernel and tcpdump (sample_pcaps/, the lab).
"""

from __future__ import annotations

import struct

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

# The detail view of an HTTP request inside VXLAN, outermost layer first.
VXLAN_HTTP_LAYERS = ("Frame", "Ethernet", "IP", "UDP", "VXLAN (RFC 7348)", "Ethernet", "IP", "TCP", "Raw", "HTTP")
NODE_A, NODE_B = "192.168.1.40", "192.168.1.39"
VTEP_A, VTEP_B = "66:16:cf:19:e8:2c", "e6:4b:9c:85:29:63"
POD_A, POD_B = "10.42.3.51", "10.42.2.23"


def pcap(
    frames: list[bytes],
    *,
    linktype: int = 1,
    nanoseconds: bool = False,
    big_endian: bool = False,
    snaplen: int = 262144,
    wire_lens: list[int] | None = None,
    fractions: list[int] | None = None,
) -> bytes:
    """A classic pcap file holding ``frames`` one second apart, each half a second past the
    second unless ``fractions`` gives the records' sub-second fields (µs, or ns if
    ``nanoseconds``)."""
    order = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for i, frame in enumerate(frames):
        wire = wire_lens[i] if wire_lens else len(frame)
        fraction = fractions[i] if fractions else 500_000_000 if nanoseconds else 500_000
        out.append(struct.pack(order + "IIII", 1_700_000_000 + i, fraction, len(frame), wire) + frame)
    return b"".join(out)


def _block(block_type: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    total = len(body) + 12
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def pcapng(frames: list[tuple[int, bytes]], interfaces: list[tuple[int, int | None]]) -> bytes:
    """A pcapng file. ``interfaces`` are (linktype, tsresol option or None); ``frames`` are
    (interface index, bytes), each 1 000 000 ticks after the previous one."""
    out = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    for linktype, tsresol in interfaces:
        options = b""
        if tsresol is not None:
            options = struct.pack("<HHB3x", 9, 1, tsresol) + struct.pack("<HH", 0, 0)
        out.append(_block(1, struct.pack("<HHI", linktype, 0, 262144) + options))
    for i, (iface, data) in enumerate(frames):
        ticks = 1_000_000 * (i + 1)
        out.append(
            _block(6, struct.pack("<IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)) + data)
        )
    return b"".join(out)


def inner_tcp(
    payload: bytes = b"",
    *,
    flags: str = "PA",
    seq: int = 1000,
    sport: int = 40482,
    src: str = POD_A,
    dst: str = POD_B,
    dport: int = 80,
) -> Packet:
    """The pod-to-pod frame that flannel.1 puts inside VXLAN."""
    return (
        Ether(src=VTEP_A, dst=VTEP_B)
        / IP(src=src, dst=dst)
        / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=1)
        / Raw(payload)
    )


def vxlan_frame(
    inner: Packet | bytes,
    *,
    vni: int = 1,
    flags: int = 0x08,
    port: int = 8472,
    sport: int = 45225,
    outer_src: str = NODE_A,
    outer_dst: str = NODE_B,
) -> bytes:
    """An outer Ethernet/IPv4/UDP/VXLAN frame around ``inner``."""
    header = struct.pack("!B3xI", flags, vni << 8)
    return bytes(
        Ether(src="b6:f8:33:0a:1e:8d", dst="6a:b1:84:d8:32:d7")
        / IP(src=outer_src, dst=outer_dst)
        / UDP(sport=sport, dport=port)
        / Raw(header + bytes(inner))
    )


__all__ = ["VXLAN", "inner_tcp", "pcap", "pcapng", "vxlan_frame"]


def GOOD_FRAME(port: int = 8472) -> bytes:
    """One well-formed VXLAN frame carrying a SYN."""
    return vxlan_frame(inner_tcp(b"", flags="S"), port=port)


def unusual_frames() -> list[bytes]:
    """Frames the compiled decoder leaves to Scapy: IPv6 outside, two VLAN tags, a VXLAN header
    without its I flag, an outer fragment, a VXLAN payload too short for its header."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.packet import Raw

    return [
        bytes(
            Ether()
            / IPv6(src="fd00::a", dst="fd00::b")
            / UDP(sport=1, dport=8472)
            / Raw(b"\x08\0\0\0\0\0\x01\0" + bytes(inner_tcp()))
        ),
        bytes(Ether() / Dot1Q(vlan=7) / Dot1Q(vlan=8) / IP(src=NODE_A, dst=NODE_B) / UDP(sport=1, dport=53)),
        vxlan_frame(inner_tcp(), flags=0x00),
        bytes(Ether() / IP(src=NODE_A, dst=NODE_B, flags="MF") / UDP(sport=1, dport=8472) / Raw(b"x" * 20)),
        bytes(Ether() / IP(src=NODE_A, dst=NODE_B) / UDP(sport=1, dport=8472) / Raw(b"\x08\x00")),
    ]


def every_tcp_flag_combination() -> list[bytes]:
    """256 VXLAN frames; frame ``i`` carries a TCP segment whose 8 flag bits are ``i`` (ECN's
    ECE and CWR, URG with an urgent pointer, and nonsense such as SYN+FIN+RST included)."""
    frames = []
    for bits in range(256):
        segment = inner_tcp(b"x" if bits & 0x08 else b"", sport=30000 + bits, seq=1000 + bits)
        segment[TCP].flags = bits
        segment[TCP].urgptr = 1 if bits & 0x20 else 0
        frames.append(vxlan_frame(segment))
    return frames
