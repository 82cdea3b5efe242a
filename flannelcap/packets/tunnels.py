"""The encapsulations flannelcap takes apart — the overlays of flannel's backends, Calico and
Cilium — and the UDP ports each is looked for on.

Rule: constants and the pure parsing of tunnel headers (bytes in, a named tuple out); no
Scapy, no I/O. The C kernel decodes the same headers for the fast path (Geneve without options;
a Geneve header with options is left to the Scapy decoder, which reads them here); the
agreement tests hold the two together.

- ``vxlan`` (RFC 7348) and ``vxlan-gbp`` (the G flag: a 16-bit group policy ID; flannel's
  ``GBP: true``): UDP 8472 (the Linux default: flannel, Cilium) and 4789 (IANA: Calico).
- ``geneve`` (RFC 8926): UDP 6081; its VNI is Cilium's source security identity.
- ``udp-tun``: flannel's ``udp`` backend, UDP 8285: the bare inner IPv4 packet (TUN, no
  packet information), no Ethernet.
- ``ipip``: IP protocol 4 (IPv4 in IPv4: flannel's ``ipip``, Calico's ``tunl0``) and 41 (IPv6
  in IPv4).
- ``wireguard``: UDP 51820/51821 (flannel's ``flannel-wg``/``flannel-wg-v6``): encrypted; the
  message type and the sender and receiver indices are all there is to read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from flannelcap._errors import BadArgument
from flannelcap.packets.vxlan import DEFAULT_VXLAN_PORTS

ENCAP_NAMES = {1: "vxlan", 2: "vxlan-gbp", 3: "geneve", 4: "udp-tun", 5: "ipip", 6: "wireguard"}
ENCAP_CODES = {name: code for code, name in ENCAP_NAMES.items()}
UDP_KINDS = {"vxlan": 1, "geneve": 2, "udp-tun": 3, "wireguard": 4}  # a port rule's kind, as the kernel numbers it
DEFAULT_PORTS: Mapping[str, frozenset[int]] = {
    "vxlan": DEFAULT_VXLAN_PORTS,
    "geneve": frozenset({6081}),
    "udp-tun": frozenset({8285}),
    "wireguard": frozenset({51820, 51821}),
}
IPIP_PROTOCOLS = {4: "ipip", 41: "ipv6"}  # the outer IP protocol of an IP-in-IP packet, as ``outer_proto`` names it
GENEVE_HEADER_LEN = 8
WIREGUARD_TYPES = {1: "handshake initiation", 2: "handshake response", 3: "cookie reply", 4: "transport data"}
GENEVE_ETHERNET, GENEVE_IPV4 = 0x6558, 0x0800


def encap_short(encap: str) -> str:
    """The encapsulation as the packet table's VNI column shows it where there is no VNI."""
    return {"udp-tun": "udp", "wireguard": "wg"}.get(encap, encap)


class TunnelPorts(NamedTuple):
    """Which UDP port carries which tunnel (``kind`` of ``UDP_KINDS`` by port)."""

    by_port: Mapping[int, str]

    @staticmethod
    def of(vxlan_ports: Iterable[int] = DEFAULT_VXLAN_PORTS, extra: Iterable[tuple[str, int]] = ()) -> TunnelPorts:
        """The defaults of every kind but VXLAN, VXLAN on ``vxlan_ports``, then the ``extra``
        rules (a later rule for a port replaces an earlier one).

        Raises:
            BadArgument: a rule of ``extra`` has an unknown kind or is not a UDP port.
        """
        by_port = {port: kind for kind, ports in DEFAULT_PORTS.items() if kind != "vxlan" for port in ports}
        by_port |= dict.fromkeys(vxlan_ports, "vxlan")
        for kind, port in extra:
            by_port[port] = tunnel_port(f"{kind}:{port}")[0]  # checked as --tunnel-port KIND:PORT is
        return TunnelPorts(by_port)

    def kind(self, sport: int, dport: int) -> str | None:
        """The tunnel a datagram between these ports carries (the destination port's rule first)."""
        return self.by_port.get(dport) or self.by_port.get(sport)

    def ports(self, kind: str) -> frozenset[int]:
        """The ports of one kind."""
        return frozenset(p for p, k in self.by_port.items() if k == kind)

    def rules(self) -> list[int]:
        """The rules as the kernel takes them: ``kind << 16 | port``, sorted."""
        return sorted(UDP_KINDS[kind] << 16 | port for port, kind in self.by_port.items())


def tunnel_port(text: str) -> tuple[str, int]:
    """``PROTO:PORT`` (``--tunnel-port geneve:6082``) as a rule.

    Raises:
        BadArgument: an unknown kind, or not a UDP port.
    """
    kind, _, port = text.partition(":")
    if kind not in UDP_KINDS:
        raise BadArgument(f"--tunnel-port {text!r}: the kind is one of {', '.join(UDP_KINDS)} (e.g. geneve:6081)")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise BadArgument(f"--tunnel-port {text!r}: {port!r} is not a UDP port (a whole number from 1 to 65535)")
    return kind, int(port)


class GeneveOption(NamedTuple):
    """One Geneve option TLV: its class, its type (the high bit: critical) and its data's length."""

    option_class: int
    option_type: int
    length: int  # bytes of data

    def text(self) -> str:
        """``0x014b/0x81:4`` (class/type:length)."""
        return f"0x{self.option_class:04x}/0x{self.option_type:02x}:{self.length}"


class GeneveHeader(NamedTuple):
    """A Geneve header (RFC 8926 §3.4)."""

    version: int
    flags: int  # O (0x80), C (0x40) and the reserved bits
    protocol: int
    vni: int
    options: tuple[GeneveOption, ...]
    length: int  # the header's bytes, options included
    reserved_ok: bool  # the reserved bits and byte are zero
    options_whole: bool  # the options fill their length exactly

    def options_text(self) -> str | None:
        """The options as ``geneve_options`` shows them, or None if there are none."""
        return ",".join(o.text() for o in self.options) or None


def parse_geneve(data: bytes) -> GeneveHeader | None:
    """The Geneve header ``data`` begins with, or None if it is shorter than its fixed part or
    than the options it claims."""
    if len(data) < GENEVE_HEADER_LEN:
        return None
    length = GENEVE_HEADER_LEN + (data[0] & 0x3F) * 4
    if len(data) < length:
        return None
    options = []
    at = GENEVE_HEADER_LEN
    while at + 4 <= length:
        size = (data[at + 3] & 0x1F) * 4
        options.append(GeneveOption(int.from_bytes(data[at : at + 2], "big"), data[at + 2], size))
        at += 4 + size
    return GeneveHeader(
        version=data[0] >> 6,
        flags=data[1],
        protocol=int.from_bytes(data[2:4], "big"),
        vni=int.from_bytes(data[4:7], "big"),
        options=tuple(options),
        length=length,
        reserved_ok=data[1] & 0x3F == 0 and data[7] == 0,
        options_whole=at == length,
    )


class WireGuardHeader(NamedTuple):
    """What a WireGuard message shows in clear (the indices are little-endian)."""

    message_type: int
    sender: int | None
    receiver: int | None


def parse_wireguard(data: bytes) -> WireGuardHeader | None:
    """The WireGuard message ``data`` holds, or None if it is not one (a type from 1 to 4, three
    reserved zero bytes, and room for its indices)."""
    if len(data) < 12 or data[0] not in WIREGUARD_TYPES or data[1:4] != b"\0\0\0":
        return None
    first = int.from_bytes(data[4:8], "little")
    kind = data[0]
    if kind == 2:
        return WireGuardHeader(kind, first, int.from_bytes(data[8:12], "little"))
    return WireGuardHeader(kind, first, None) if kind == 1 else WireGuardHeader(kind, None, first)
