"""``python -m flannelcap.lab._speaker IFACE STATE``: the lab's MetalLB speaker in layer-2 mode.

Rule: does on the wire what MetalLB's speaker does for the IPs this node leads, nothing else.
It answers ARP requests for them with the interface's own MAC, and on taking an IP over it
broadcasts a gratuitous ARP request and reply (sender IP = target IP = the service IP,
target MAC broadcast) at once and then every 1.1 s for 5 s. Which IPs it leads is the JSON
list ``{"lead": [...]}`` in STATE, read at start and again on SIGHUP; SIGTERM stops it.
Runs inside a lab node's namespace (``ip netns exec``); needs root for the packet socket.
"""

from __future__ import annotations

import ipaddress
import json
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6
BURST_EVERY = 1.1
BURST_FOR = 5.0


def arp_frame(op: int, src_mac: bytes, sender_ip: str, target_mac: bytes, target_ip: str, to: bytes) -> bytes:
    """An Ethernet frame carrying one ARP packet (RFC 826, IPv4 over Ethernet)."""
    ether = to + src_mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op)
    arp += src_mac + ipaddress.IPv4Address(sender_ip).packed + target_mac + ipaddress.IPv4Address(target_ip).packed
    return ether + arp


def parse_arp(frame: bytes) -> tuple[int, bytes, str, str] | None:
    """(op, sender MAC, sender IP, target IP) of an ARP frame, or None for anything else."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4):
        return None
    sender_ip = str(ipaddress.IPv4Address(frame[28:32]))
    return op, frame[22:28], sender_ip, str(ipaddress.IPv4Address(frame[38:42]))


class Speaker:
    """Answers and announces on one interface."""

    def __init__(self, interface: str, state: Path) -> None:
        self.state = state
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        self.sock.bind((interface, ETH_P_ARP))
        self.mac: bytes = self.sock.getsockname()[4]
        self.lead: set[str] = set()
        self.bursts: dict[str, float] = {}  # ip → when its takeover burst began
        self.sent: dict[str, int] = {}
        self.reload = True

    def _read_state(self) -> None:
        try:
            wanted = {str(ipaddress.IPv4Address(ip)) for ip in json.loads(self.state.read_text()).get("lead", [])}
        except (OSError, ValueError, AttributeError) as exc:
            print(f"speaker: cannot read {self.state}: {exc}", file=sys.stderr)
            return
        for ip in sorted(wanted - self.lead):
            print(f"speaker: taking over {ip}", file=sys.stderr, flush=True)
            self.bursts[ip] = time.monotonic()
            self.sent[ip] = 0
        self.lead = wanted

    def _gratuitous(self, ip: str) -> None:
        for op in (1, 2):
            self.sock.send(arp_frame(op, self.mac, ip, BROADCAST, ip, BROADCAST))

    def _due_bursts(self) -> float:
        """Send what is due; return seconds until the next one."""
        now = time.monotonic()
        wait = 0.1  # how soon a SIGHUP is noticed
        for ip, began in list(self.bursts.items()):
            if ip not in self.lead:
                del self.bursts[ip]
                continue
            due = began + self.sent[ip] * BURST_EVERY
            if due > began + BURST_FOR:
                del self.bursts[ip]
                continue
            if now >= due:
                self._gratuitous(ip)
                self.sent[ip] += 1
                due = began + self.sent[ip] * BURST_EVERY
            wait = min(wait, max(0.0, due - now))
        return wait

    def _answer(self, frame: bytes) -> None:
        arp = parse_arp(frame)
        if arp is None:
            return
        op, sender_mac, sender_ip, target_ip = arp
        if op != 1 or target_ip not in self.lead or sender_ip == target_ip or sender_mac == self.mac:
            return
        self.sock.send(arp_frame(2, self.mac, target_ip, sender_mac, sender_ip, sender_mac))

    def run(self) -> None:
        """Serve until SIGTERM."""
        while True:
            if self.reload:
                self.reload = False
                self._read_state()
            wait = self._due_bursts()
            try:
                ready, _, _ = select.select([self.sock], [], [], wait)
            except InterruptedError:
                continue
            if ready:
                self._answer(self.sock.recv(2048))


def main(argv: list[str]) -> int:
    """Command line: ``IFACE STATE``."""
    if len(argv) != 2:
        print("usage: python -m flannelcap.lab._speaker IFACE STATE", file=sys.stderr)
        return 2
    speaker = Speaker(argv[0], Path(argv[1]))

    def reload(*_: object) -> None:
        speaker.reload = True

    signal.signal(signal.SIGHUP, reload)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    speaker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
