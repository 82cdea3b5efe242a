"""Mutations of captures, frames and table text: the families the fuzzing uses.

Rule: pure. Bytes or text and a ``random.Random`` in, a mutated copy out.
"""

from __future__ import annotations

import random
import struct

FAMILIES = ("bitflip", "truncate", "length", "vxlan", "ihl", "ipv6-chain", "tcp-offset", "http", "splice")


def bitflip(data: bytes, rng: random.Random, flips: int = 4) -> bytes:
    """Flip a few random bits."""
    out = bytearray(data)
    for _ in range(flips):
        if out:
            at = rng.randrange(len(out))
            out[at] ^= 1 << rng.randrange(8)
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    """Cut at a random offset."""
    return data[: rng.randrange(len(data) + 1)]


def set_length(data: bytes, rng: random.Random) -> bytes:
    """Set a 16- or 32-bit field at a random offset to 0, its maximum, or past the end."""
    if len(data) < 4:
        return data
    at = rng.randrange(len(data) - 3)
    width = rng.choice((2, 4))
    value = rng.choice((0, 2 ** (8 * width) - 1, len(data) + rng.randrange(1, 5000)))
    value &= 2 ** (8 * width) - 1
    packed = struct.pack("!H" if width == 2 else "!I", value)
    return data[:at] + packed + data[at + width :]


def find(data: bytes, needle: bytes) -> list[int]:
    """Every offset of ``needle`` in ``data``."""
    found, start = [], 0
    while (at := data.find(needle, start)) >= 0:
        found.append(at)
        start = at + 1
    return found


def vxlan_flags(data: bytes, rng: random.Random) -> bytes:
    """Change the flags and reserved bytes of the VXLAN headers (found after UDP port 8472)."""
    out = bytearray(data)
    for at in find(data, b"\x21\x18"):  # dport 8472; the VXLAN header is 6 bytes on
        header = at + 6
        if header + 8 <= len(out):
            out[header] = rng.randrange(256)
            out[header + rng.randrange(1, 8)] = rng.randrange(256)
    return bytes(out)


def ihl(data: bytes, rng: random.Random) -> bytes:
    """Give IPv4 headers an IHL below 5, or past the packet."""
    out = bytearray(data)
    for at in find(data, b"\x08\x00\x45"):
        out[at + 2] = 0x40 | rng.choice((0, 1, 4, 15))
    return bytes(out)


def ipv6_chain(data: bytes, rng: random.Random) -> bytes:
    """Append a frame whose IPv6 header starts a chain of extension headers (hop-by-hop,
    routing, fragment, destination options) that may run past the packet."""
    chain = b""
    kinds = [0, 43, 44, 60]
    for _ in range(rng.randrange(1, 12)):
        next_header = rng.choice([*kinds, 6, 17])
        chain += bytes([next_header, rng.randrange(4)]) + bytes(6)
    ipv6 = b"\x60\x00\x00\x00" + struct.pack("!H", rng.choice((len(chain), 0, 65535))) + b"\x00\x40" + bytes(32)
    frame = b"\x02" * 6 + b"\x04" * 6 + b"\x86\xdd" + ipv6 + chain[: rng.randrange(len(chain) + 1)]
    return append_frame(data, frame)


def tcp_offset(data: bytes, rng: random.Random) -> bytes:
    """Set TCP data offsets (after port 80 or to it) past the segment."""
    out = bytearray(data)
    for at in find(data, b"\x00\x50"):
        if at + 12 < len(out):
            out[at + 12] = rng.choice((0x00, 0x10, 0xF0, 0x50))
    return bytes(out)


def http(data: bytes, rng: random.Random) -> bytes:
    """Damage HTTP heads: CRLFs removed, huge header lines, lying Content-Length."""
    text = bytearray(data)
    for at in find(data, b"\r\n")[: rng.randrange(1, 6)]:
        text[at : at + 2] = rng.choice((b"XX", b"\n\n", b"\r\r"))
    for at in find(data, b"Content-Length: ")[:1]:
        text[at + 16 : at + 17] = b"9"
    return bytes(text)


def splice(data: bytes, rng: random.Random) -> bytes:
    """Repeat or drop a random stretch of bytes."""
    if len(data) < 2:
        return data
    a, b = sorted(rng.sample(range(len(data)), 2))
    return data[:a] + data[a:b] * rng.randrange(0, 3) + data[b:]


def append_frame(capture: bytes, frame: bytes) -> bytes:
    """Add one Ethernet frame to a classic little-endian microsecond pcap."""
    return capture + struct.pack("<IIII", 1_700_000_000, 0, len(frame), len(frame)) + frame


MUTATORS = {
    "bitflip": bitflip,
    "truncate": truncate,
    "length": set_length,
    "vxlan": vxlan_flags,
    "ihl": ihl,
    "ipv6-chain": ipv6_chain,
    "tcp-offset": tcp_offset,
    "http": http,
    "splice": splice,
}


def mutate(data: bytes, rng: random.Random, family: str | None = None) -> bytes:
    """Apply one family (or a random one)."""
    return MUTATORS[family or rng.choice(FAMILIES)](data, rng)


def mutate_text(text: str, rng: random.Random) -> str:
    """Mutations of pasted table output: lines dropped, swapped or cut, characters flipped."""
    lines = text.splitlines()
    choice = rng.randrange(6)
    if choice == 0 and lines:
        del lines[rng.randrange(len(lines))]
    elif choice == 1 and len(lines) > 1:
        i, j = rng.sample(range(len(lines)), 2)
        lines[i], lines[j] = lines[j], lines[i]
    elif choice == 2:
        return text[: rng.randrange(len(text) + 1)]
    elif choice == 3 and text:
        at = rng.randrange(len(text))
        return text[:at] + rng.choice(["\x00", "{", "]", "\n", " ", ":", "ÿ", "9" * 40, "\t"]) + text[at + 1 :]
    elif choice == 4 and lines:
        i = rng.randrange(len(lines))
        lines[i] = " ".join(reversed(lines[i].split()))
    else:
        return bitflip(text.encode(), rng, 2).decode("latin-1")
    return "\n".join(lines)
