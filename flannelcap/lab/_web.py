"""The lab's nginx stand-in and its wget stand-in, run inside pod namespaces.

Rule: tiny on purpose. ``serve`` answers GET/HEAD from a directory over HTTP/1.1 (with
``Server: nginx`` and a Content-Length, as nginx does); ``fetch`` gets one URL and prints
the body, like ``wget URL -O -``. Both run as ``python -m flannelcap.lab._web`` inside
``ip netns exec``.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import sys
import urllib.error
import urllib.request


class _Handler(http.server.SimpleHTTPRequestHandler):
    server_version = "nginx"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def serve(address: str, port: int, root: str) -> None:
    """Serve ``root`` on ``address:port`` until killed."""
    handler = functools.partial(_Handler, directory=root)
    with http.server.ThreadingHTTPServer((address, port), handler) as server:
        server.serve_forever()


def fetch(url: str, timeout: float) -> int:
    """Fetch ``url`` and write its body to stdout. Returns an exit status (0 ok, 1 failed)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(65536):
                sys.stdout.buffer.write(chunk)
    except (TimeoutError, urllib.error.URLError, OSError) as exc:
        print(f"fetch: {url}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line: ``serve ADDRESS PORT ROOT`` or ``fetch URL [--timeout S]``."""
    parser = argparse.ArgumentParser(prog="python -m flannelcap.lab._web")
    sub = parser.add_subparsers(dest="verb", required=True)
    serve_parser = sub.add_parser("serve")
    serve_parser.add_argument("address")
    serve_parser.add_argument("port", type=int)
    serve_parser.add_argument("root")
    fetch_parser = sub.add_parser("fetch")
    fetch_parser.add_argument("url")
    fetch_parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    if args.verb == "serve":
        serve(args.address, args.port, args.root)
        return 0
    return fetch(args.url, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
