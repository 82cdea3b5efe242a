"""Write a VXLAN capture of HTTP conversations among pods on several flannel nodes.

    python benchmarks/make_capture.py OUT.pcap [--packets 1000000] [--nodes 4] [--seed 1] [--short] [--dns 0.3]
                                      [--encap vxlan|geneve|udp-tun]

Each conversation is what busybox → nginx looks like on a node's eth0: the handshake, a GET,
a 200 with a body of 1-64 KiB in 1398-byte segments (flannel.1 MTU 1450, TCP timestamps),
ACKs every second segment, and the FIN exchange; all inside VXLAN (UDP 8472, VNI 1) between
the two nodes' eth0 addresses, the outer source port hashed per flow as the kernel does.
With ``--short`` every body is 100-1,000 bytes, answered in one segment and acknowledged:
ten packets a conversation, a fifth of them HTTP heads (short API calls between pods).
With ``--dns F`` a fraction F of the packets are DNS lookups before the calls: a pod asks a
CoreDNS pod on another node for ``svc-N.default.svc.cluster.local`` (A), answered with one
address, or for an outside name expanded by ``ndots:5`` (NXDOMAIN, no answer).
With ``--encap geneve`` the same packets travel in Geneve (UDP 6081, VNI 1, no options: Cilium's
layout) and with ``--encap udp-tun`` as flannel's udp backend sends them (the bare inner IPv4
packet in UDP 8285, no inner Ethernet).
Outer UDP checksums are 0 (no checksum), as with 'noudpcsum'. Frames are built from
templates with struct, so a million packets take seconds, not the hours Scapy would.
"""

from __future__ import annotations

import argparse
import random
import struct
from pathlib import Path

NODE_MACS = [bytes([0x02, 0, 0, 0, 0, n]) for n in range(1, 17)]
VTEP_MACS = [bytes([0x5E, 0x14, 0xD0, 0x84, 0x69, n]) for n in range(1, 17)]
MSS = 1398


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4(src: bytes, dst: bytes, proto: int, payload_len: int, ident: int) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, ident & 0xFFFF, 0x4000, 64, proto, 0, src, dst)
    return header[:10] + struct.pack("!H", _ip_checksum(header)) + header[12:]


def tunnel(encap: str, vsrc: bytes, vdst: bytes, inner_ip: bytes, port: int) -> bytes:
    """The outer UDP header and payload that carry an inner IPv4 packet in ``encap``."""
    if encap == "udp-tun":
        return struct.pack("!HHHH", 8285, 8285, 8 + len(inner_ip), 0) + inner_ip
    header = b"\x00\x00\x65\x58\x00\x00\x01\x00" if encap == "geneve" else b"\x08\x00\x00\x00\x00\x00\x01\x00"
    payload = header + vdst + vsrc + b"\x08\x00" + inner_ip
    return struct.pack("!HHHH", port, 6081 if encap == "geneve" else 8472, 8 + len(payload), 0) + payload


class Writer:
    """Builds and writes frames; counts them."""

    def __init__(self, path: Path, limit: int, encap: str = "vxlan") -> None:
        self.encap = encap
        self.out = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        self.count = 0
        self.dns = 0
        self.limit = limit
        self.time = 1_790_000_000.0

    def frame(self, data: bytes, gap: float) -> None:
        self.time += gap
        seconds = int(self.time)
        self.out.write(struct.pack("<IIII", seconds, int((self.time - seconds) * 1e6), len(data), len(data)) + data)
        self.count += 1

    def close(self) -> None:
        self.out.close()


def conversation(writer: Writer, rng: random.Random, nodes: int, short: bool = False) -> None:
    a, b = rng.sample(range(nodes), 2)
    node_ip = [bytes([192, 168, 1, 38 + n]) for n in range(nodes)]
    client_ip = bytes([10, 42, a, rng.randint(2, 250)])
    server_ip = bytes([10, 42, b, rng.randint(2, 250)])
    cport, sport = rng.randint(32768, 60999), 80
    outer_c, outer_s = rng.randint(32768, 60999), rng.randint(32768, 60999)
    cseq, sseq = rng.getrandbits(32), rng.getrandbits(32)
    ts = rng.getrandbits(32)

    def send(from_client: bool, flags: int, payload: bytes, gap: float) -> None:
        nonlocal cseq, sseq, ts
        if writer.count >= writer.limit:
            return
        ts = (ts + 1) & 0xFFFFFFFF
        if from_client:
            src, dst, s_port, d_port, seq, ack = client_ip, server_ip, cport, sport, cseq, sseq
            o_src, o_dst, o_port, smac, dmac, vsrc, vdst = (
                node_ip[a],
                node_ip[b],
                outer_c,
                NODE_MACS[a],
                NODE_MACS[b],
                VTEP_MACS[a],
                VTEP_MACS[b],
            )
        else:
            src, dst, s_port, d_port, seq, ack = server_ip, client_ip, sport, cport, sseq, cseq
            o_src, o_dst, o_port, smac, dmac, vsrc, vdst = (
                node_ip[b],
                node_ip[a],
                outer_s,
                NODE_MACS[b],
                NODE_MACS[a],
                VTEP_MACS[b],
                VTEP_MACS[a],
            )
        options = struct.pack("!BBBBII", 1, 1, 8, 10, ts, ts ^ 0x5A5A)
        tcp = struct.pack("!HHIIBBHHH", s_port, d_port, seq, ack if flags & 0x10 else 0, 0x80, flags, 502, 0, 0)
        segment = tcp + options + payload
        udp = tunnel(writer.encap, vsrc, vdst, _ipv4(src, dst, 6, len(segment), writer.count) + segment, o_port)
        writer.frame(dmac + smac + b"\x08\x00" + _ipv4(o_src, o_dst, 17, len(udp), writer.count) + udp, gap)
        step = len(payload) + (1 if flags & 0x03 else 0)
        if from_client:
            cseq = (cseq + step) & 0xFFFFFFFF
        else:
            sseq = (sseq + step) & 0xFFFFFFFF

    send(True, 0x02, b"", 0.0005)
    send(False, 0x12, b"", 0.00006)
    send(True, 0x10, b"", 0.00003)
    host = ".".join(map(str, server_ip)).encode()
    send(
        True,
        0x18,
        b"GET /item/%d HTTP/1.1\r\nHost: %s\r\nUser-Agent: Wget\r\nAccept: */*\r\n\r\n" % (rng.randint(1, 9999), host),
        0.00009,
    )
    send(False, 0x10, b"", 0.00004)
    body = rng.randint(100, 1000) if short else rng.randint(1024, 64 * 1024)
    head = (
        b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n"
        % body
    )
    data = head + bytes(rng.getrandbits(8) for _ in range(64)) * (body // 64) + b"x" * (body % 64)
    for i, start in enumerate(range(0, len(data), MSS)):
        send(False, 0x18 if start + MSS >= len(data) else 0x10, data[start : start + MSS], 0.00002)
        if i % 2 or short:
            send(True, 0x10, b"", 0.00001)
    send(False, 0x11, b"", 0.00005)
    send(True, 0x11, b"", 0.00004)
    send(False, 0x10, b"", 0.00003)


def _dns_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"


def lookup(writer: Writer, rng: random.Random, nodes: int) -> None:
    """One DNS query from a pod to a CoreDNS pod on another node, and its answer, in VXLAN."""
    a, b = rng.sample(range(nodes), 2)
    node_ip = [bytes([192, 168, 1, 38 + n]) for n in range(nodes)]
    client, server = bytes([10, 42, a, rng.randint(2, 250)]), bytes([10, 42, b, 4])
    port, ident = rng.randint(32768, 60999), rng.getrandbits(16)
    found = rng.random() < 0.6
    name = f"svc-{rng.randint(1, 500)}.default.svc.cluster.local" if found else "api.example.com.svc.cluster.local"
    question = _dns_name(name) + struct.pack("!HH", 1, 1)
    query = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question
    if found:
        record = struct.pack("!HHHIH", 0xC00C, 1, 1, 5, 4) + bytes([10, 43, rng.randint(0, 255), rng.randint(1, 254)])
        response = struct.pack("!HHHHHH", ident, 0x8580, 1, 1, 0, 0) + question + record
    else:
        response = struct.pack("!HHHHHH", ident, 0x8583, 1, 0, 0, 0) + question
    outer = rng.randint(32768, 60999)
    for src, dst, s_port, d_port, payload, x, y, gap in (
        (client, server, port, 53, query, a, b, 0.0004),
        (server, client, 53, port, response, b, a, 0.0003),
    ):
        if writer.count >= writer.limit:
            return
        udp_inner = struct.pack("!HHHH", s_port, d_port, 8 + len(payload), 0) + payload
        inner_ip = _ipv4(src, dst, 17, len(udp_inner), writer.count) + udp_inner
        udp = tunnel(writer.encap, VTEP_MACS[x], VTEP_MACS[y], inner_ip, outer)
        frame = (
            NODE_MACS[y] + NODE_MACS[x] + b"\x08\x00" + _ipv4(node_ip[x], node_ip[y], 17, len(udp), writer.count) + udp
        )
        writer.frame(frame, gap)
        writer.dns += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--short", action="store_true", help="short HTTP calls: ten packets a conversation")
    parser.add_argument("--dns", type=float, default=0.0, metavar="F", help="a fraction F of the packets is DNS")
    parser.add_argument("--encap", choices=("vxlan", "geneve", "udp-tun"), default="vxlan", help="the tunnel")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    writer = Writer(args.output, args.packets, args.encap)
    while writer.count < args.packets:
        while writer.count < args.packets and writer.dns < args.dns * (writer.count + 10):
            lookup(writer, rng, args.nodes)
        conversation(writer, rng, args.nodes, args.short)
    writer.close()
    dns = f", {writer.dns / writer.count:.0%} DNS" if writer.dns else ""
    print(f"{args.output}: {writer.count} packets{dns}, {args.output.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
