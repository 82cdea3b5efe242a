"""``python -m flannelcap.lab._ingress ADDRESS PORT NAME BACKEND…``: the lab's Traefik stand-in.

Rule: does on the wire what Traefik does for an IngressRoute to a Service: it sends each request
straight to one of the Service's pod IPs (round robin, not through kube-proxy), keeps the Host
header, and adds ``X-Forwarded-For`` (the address the request came from, appended to any it
carried), ``X-Forwarded-Host``, ``X-Forwarded-Port``, ``X-Forwarded-Proto``,
``X-Forwarded-Server`` (this pod's name) and ``X-Real-Ip``. Runs inside the Traefik pod's
namespace (``ip netns exec``); one connection to the backend per request.
"""

from __future__ import annotations

import http.client
import http.server
import itertools
import sys
import threading
from collections.abc import Iterator

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}


def forwarded_headers(headers: list[tuple[str, str]], client: str, name: str, port: int) -> list[tuple[str, str]]:
    """The request's headers as Traefik sends them on: hop-by-hop headers dropped, the
    X-Forwarded-* set and X-Real-Ip added (pure, for the tests)."""
    kept = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP and not k.lower().startswith("x-forwarded-")]
    earlier = [v for k, v in headers if k.lower() == "x-forwarded-for"]
    host = next((v for k, v in headers if k.lower() == "host"), "")
    return [
        *kept,
        ("X-Forwarded-For", ", ".join([*earlier, client])),
        ("X-Forwarded-Host", host),
        ("X-Forwarded-Port", str(port)),
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Server", name),
        ("X-Real-Ip", client),
    ]


class _Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = ""
    sys_version = ""
    backends: Iterator[str]
    name: str
    entry_port = 80
    lock = threading.Lock()

    def _forward(self) -> None:
        with self.lock:
            backend = next(self.backends)
        headers = forwarded_headers(list(self.headers.items()), self.client_address[0], self.name, self.entry_port)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        upstream = http.client.HTTPConnection(backend, 80, timeout=5)
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for key, value in headers:
                upstream.putheader(key, value)
            upstream.endheaders(body)
            answer = upstream.getresponse()
            data = answer.read()
        except OSError as exc:
            self.send_error(502, f"Bad Gateway: {backend}: {exc}")
            return
        finally:
            upstream.close()
        self.send_response_only(answer.status, answer.reason)
        for key, value in answer.getheaders():
            if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = _forward

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main(argv: list[str]) -> int:
    """Command line: ``ADDRESS PORT NAME BACKEND…``."""
    if len(argv) < 4:
        print("usage: python -m flannelcap.lab._ingress ADDRESS PORT NAME BACKEND…", file=sys.stderr)
        return 2
    address, port, name, backends = argv[0], int(argv[1]), argv[2], argv[3:]
    handler = type("Proxy", (_Proxy,), {"backends": itertools.cycle(backends), "name": name})
    with http.server.ThreadingHTTPServer((address, port), handler) as server:
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
