"""``python -m flannelcap.lab._relay HOST PORT``: join stdin/stdout to a TCP connection.

Rule: a stand-in for ``nc HOST PORT`` as an ssh ProxyCommand. Run inside the lab's
management namespace (``ip netns exec <prefix>-xubulab``), it lets ssh and flannelcap on the
machine reach the lab's nodes without any address in the machine's own namespace.
"""

from __future__ import annotations

import os
import socket
import sys
import threading


def _pump_in(sock: socket.socket) -> None:
    while data := os.read(0, 65536):
        sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)


def main(argv: list[str]) -> int:
    """Relay until either side closes. Returns an exit status."""
    if len(argv) != 2:
        print("usage: python -m flannelcap.lab._relay HOST PORT", file=sys.stderr)
        return 2
    try:
        sock = socket.create_connection((argv[0], int(argv[1])), timeout=10)
    except OSError as exc:
        print(f"relay: {argv[0]}:{argv[1]}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    sock.settimeout(None)
    threading.Thread(target=_pump_in, args=(sock,), daemon=True).start()
    while data := sock.recv(65536):
        os.write(1, data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
