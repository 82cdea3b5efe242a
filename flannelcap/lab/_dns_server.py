"""``python -m flannelcap.lab._dns_server ADDRESS ZONE.json``: the lab's CoreDNS stand-in.

Rule: answers as CoreDNS's ``kubernetes`` plugin answers a cluster's names, over UDP and TCP
on port 53: ``<service>.<namespace>.svc.cluster.local`` A → the Service's ClusterIP (TTL 5),
AAAA → no answer (an IPv4 cluster), any other name under ``cluster.local`` → NXDOMAIN; names
outside the cluster from the zone's ``upstream`` table (as if forwarded), others NXDOMAIN.
The zone file is JSON: ``{"services": {name: ip}, "upstream": {name: ip}}``. Runs inside the
CoreDNS pod's namespace (``ip netns exec``).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import socketserver
import struct
import sys
import threading
from pathlib import Path

CLUSTER_DOMAIN = "cluster.local"
TTL = 5
A, AAAA = 1, 28
NOERROR, FORMERR, NXDOMAIN = 0, 1, 3


def question(message: bytes) -> tuple[str, int, int] | None:
    """(name in lower case, type, end offset) of a query's first question (no compression in
    a question), or None when it cannot be read."""
    at, labels = 12, []
    while at < len(message):
        size = message[at]
        if size == 0:
            break
        if size & 0xC0 or at + 1 + size > len(message):
            return None
        labels.append(message[at + 1 : at + 1 + size].decode("latin-1").lower())
        at += 1 + size
    if at + 5 > len(message):
        return None
    return ".".join(labels), int.from_bytes(message[at + 1 : at + 3], "big"), at + 5


def answer(query: bytes, zone: dict[str, dict[str, str]]) -> bytes | None:
    """The response to ``query`` (pure, for the tests), or None for what is not a query."""
    if len(query) < 12 or query[2] & 0x80:
        return None
    flags_in = int.from_bytes(query[2:4], "big")
    asked = question(query)
    if asked is None:
        return query[:2] + struct.pack("!HHHHH", 0x8000 | (flags_in & 0x0100) | FORMERR, 0, 0, 0, 0)
    name, qtype, end = asked
    address = zone.get("services", {}).get(name) or zone.get("upstream", {}).get(name)
    inside = name == CLUSTER_DOMAIN or name.endswith("." + CLUSTER_DOMAIN)
    rcode = NOERROR if address or (inside and _is_service(name, zone)) else NXDOMAIN
    records = b""
    if address and qtype == A:
        ip = ipaddress.IPv4Address(address).packed
        records = struct.pack("!HHHIH", 0xC00C, A, 1, TTL, 4) + ip
    aa = 0x0400 if inside else 0
    flags = 0x8000 | aa | (flags_in & 0x0100) | 0x0080 | rcode  # QR, AA, RD copied, RA
    return query[:2] + struct.pack("!HHHHH", flags, 1, 1 if records else 0, 0, 0) + query[12:end] + records


def _is_service(name: str, zone: dict[str, dict[str, str]]) -> bool:
    return name in zone.get("services", {})


class _Udp(socketserver.BaseRequestHandler):
    zone: dict[str, dict[str, str]]

    def handle(self) -> None:
        data, sock = self.request
        reply = answer(data, self.zone)
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _Tcp(socketserver.StreamRequestHandler):
    zone: dict[str, dict[str, str]]

    def handle(self) -> None:
        while prefix := self.rfile.read(2):
            if len(prefix) < 2:
                return
            query = self.rfile.read(int.from_bytes(prefix, "big"))
            reply = answer(query, self.zone)
            if reply is None:
                return
            self.wfile.write(len(reply).to_bytes(2, "big") + reply)


def main(argv: list[str]) -> int:
    """Command line: ``ADDRESS ZONE.json``."""
    if len(argv) != 2:
        print("usage: python -m flannelcap.lab._dns_server ADDRESS ZONE.json", file=sys.stderr)
        return 2
    zone = json.loads(Path(argv[1]).read_text())
    udp = socketserver.ThreadingUDPServer((argv[0], 53), type("Udp", (_Udp,), {"zone": zone}))
    tcp = socketserver.ThreadingTCPServer((argv[0], 53), type("Tcp", (_Tcp,), {"zone": zone}))
    tcp.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    threading.Thread(target=udp.serve_forever, daemon=True).start()
    tcp.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
