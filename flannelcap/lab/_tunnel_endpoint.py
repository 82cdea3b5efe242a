"""``python -m flannelcap.lab._tunnel_endpoint CONFIG.json``: a node's tunnel endpoint in user space,
for the backends whose kernel device this machine lacks (and for flannel's ``udp``, which is
user space in flanneld too).

Rule: puts on the wire exactly what the device (or flanneld's proxy) would, and nothing else.
It attaches to the TUN/TAP device the builder made and programmed (addresses, routes,
neighbours) and forwards between it and the LAN:

- ``udp`` (flanneld's proxy, TUN ``flannel0``): each IPv4 packet, its TTL decremented as the
  proxy does, in a UDP datagram from and to port 8285 of the node owning its destination's
  subnet; received datagrams (TTL decremented again) go to the TUN device.
- ``ipip`` (TUN ``flannel.ipip``): each packet in an IP-in-IP packet (protocol 4) to that node,
  through a raw socket; received ones lose their outer header.
- ``geneve`` (TAP ``cilium_geneve``, as Cilium's datapath encapsulates): each Ethernet frame
  in a Geneve header (RFC 8926, protocol 0x6558, no options) whose VNI is the sending pod's
  security identity, to port 6081 of the node whose VTEP MAC it is sent to, with a zero UDP
  checksum as Cilium sends.

The config is JSON: ``kind``, ``device``, ``local`` (the node's LAN address), ``port``, and
``peers``: ``address``, ``pod_cidr``, ``vtep_mac`` of every other node. Runs inside the node's
namespace (``ip netns exec``) until killed.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import select
import socket
import struct
import sys
from pathlib import Path
from typing import Any

from flannelcap.lab._backends_plan import geneve_identity

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_TAP, IFF_NO_PI = 0x0001, 0x0002, 0x1000
SO_NO_CHECK = 11  # Linux: send UDP over IPv4 without a checksum
IPPROTO_IPIP = 4
GENEVE_ETHERNET = 0x6558


def ipv4_checksum(header: bytes) -> int:
    """The Internet checksum of an IPv4 header whose checksum field is zero."""
    total = int(sum(struct.unpack(f"!{len(header) // 2}H", header)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def decrement_ttl(packet: bytes) -> bytes | None:
    """The IPv4 packet with its TTL one less and its header checksum made again (as flanneld's
    proxy does), or None if the TTL runs out."""
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[8] <= 1:
        return None
    header_len = (packet[0] & 0x0F) * 4
    header = bytearray(packet[:header_len])
    header[8] -= 1
    header[10:12] = b"\0\0"
    header[10:12] = ipv4_checksum(bytes(header)).to_bytes(2, "big")
    return bytes(header) + packet[header_len:]


def geneve_header(vni: int) -> bytes:
    """A Geneve header without options around an Ethernet frame."""
    return bytes([0, 0]) + GENEVE_ETHERNET.to_bytes(2, "big") + vni.to_bytes(3, "big") + b"\0"


def _open_device(name: str, tap: bool) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    flags = (IFF_TAP if tap else IFF_TUN) | IFF_NO_PI
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
    return int(fd)


class Endpoint:
    """One node's endpoint (see the module's rule)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.kind: str = config["kind"]
        self.port: int = config.get("port") or 0
        self.peers = config["peers"]
        self.by_mac = {p["vtep_mac"].lower(): p["address"] for p in self.peers}
        self.subnets = [(ipaddress.IPv4Network(p["pod_cidr"]), p["address"]) for p in self.peers]
        self.device = _open_device(config["device"], tap=self.kind == "geneve")
        if self.kind == "ipip":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_IPIP)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((config["local"], self.port))
            if self.kind == "geneve":
                self.sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)

    def _peer_of(self, packet: bytes) -> str | None:
        if self.kind == "geneve":
            return self.by_mac.get(packet[:6].hex(":"))
        if len(packet) < 20:
            return None
        destination = ipaddress.IPv4Address(packet[16:20])
        return next((address for subnet, address in self.subnets if destination in subnet), None)

    def from_device(self, packet: bytes) -> None:
        peer = self._peer_of(packet)
        if peer is None:
            return
        if self.kind == "udp":
            aged = decrement_ttl(packet)
            if aged is not None:
                self.sock.sendto(aged, (peer, self.port))
        elif self.kind == "ipip":
            self.sock.sendto(packet, (peer, 0))
        else:
            source = socket.inet_ntoa(packet[26:30]) if packet[12:14] == b"\x08\x00" else "0.0.0.0"
            self.sock.sendto(geneve_header(geneve_identity(source)) + packet, (peer, self.port))

    def from_wire(self, data: bytes) -> None:
        if self.kind == "udp":
            aged = decrement_ttl(data)
            if aged is not None:
                os.write(self.device, aged)
        elif self.kind == "ipip":
            os.write(self.device, data[(data[0] & 0x0F) * 4 :])
        elif len(data) >= 8 and int.from_bytes(data[2:4], "big") == GENEVE_ETHERNET:
            os.write(self.device, data[8 + (data[0] & 0x3F) * 4 :])

    def run(self) -> None:
        wire = self.sock.fileno()
        while True:
            ready, _, _ = select.select([self.device, wire], [], [])
            if self.device in ready:
                self.from_device(os.read(self.device, 65535))
            if wire in ready:
                self.from_wire(self.sock.recv(65535))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m flannelcap.lab._tunnel_endpoint CONFIG.json", file=sys.stderr)
        sys.exit(2)
    Endpoint(json.loads(Path(sys.argv[1]).read_text())).run()
