"""``python -m flannelcap.lab._h2_server serve ADDRESS PORT NAME``: the lab's h2c (HTTP/2 over
cleartext) server, a stand-in for a gRPC service or any HTTP/2 backend between pods; and
``… get ADDRESS PORT PATH…``, a client that asks for each path in turn on one connection (curl
7.88 closes a prior-knowledge connection instead of reusing it).

Rule: what such a server puts on the wire, through the ``h2`` library's own state machine
(HPACK, flow control, SETTINGS): a request whose content-type starts with ``application/grpc``
is answered as gRPC answers (``:status 200``, ``content-type: application/grpc``, one
length-prefixed message naming the pod, then trailers ``grpc-status: 0``); any other request
gets ``:status 200`` with a text body naming the pod, or 404 for a path other than ``/``.
Prior knowledge only (a client sends the connection preface first), one thread per connection.
The client prints each answer's status. Both run inside a pod's namespace (``ip netns exec``).
"""

from __future__ import annotations

import socket
import sys
import threading

import h2.config
import h2.connection
import h2.events


def grpc_message(payload: bytes) -> bytes:
    """One gRPC length-prefixed message: not compressed, a 4-byte length, the bytes."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def _answer(connection: h2.connection.H2Connection, stream: int, headers: dict[str, str], name: str) -> None:
    if headers.get("content-type", "").startswith("application/grpc"):
        connection.send_headers(stream, [(":status", "200"), ("content-type", "application/grpc")])
        connection.send_data(stream, grpc_message(f"hello from {name}".encode()))
        connection.send_headers(stream, [("grpc-status", "0"), ("grpc-message", "OK")], end_stream=True)
        return
    found = headers.get(":path") == "/"
    body = f"{name}\n".encode() if found else b"not found\n"
    connection.send_headers(
        stream,
        [(":status", "200" if found else "404"), ("content-type", "text/plain"), ("content-length", str(len(body)))],
    )
    connection.send_data(stream, body, end_stream=True)


def _serve_one(sock: socket.socket, name: str) -> None:
    connection = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
    connection.initiate_connection()
    sock.sendall(connection.data_to_send())
    requests: dict[int, dict[str, str]] = {}
    with sock:
        while data := sock.recv(65536):
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    requests[event.stream_id] = {_text(k): _text(v) for k, v in event.headers or []}
                elif isinstance(event, h2.events.DataReceived):
                    connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    _answer(connection, event.stream_id, requests.pop(event.stream_id, {}), name)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    sock.sendall(connection.data_to_send())
                    return
            sock.sendall(connection.data_to_send())


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def serve(address: str, port: int, name: str) -> None:
    """Serve h2c on ``address:port`` until killed."""
    listener = socket.create_server((address, port), reuse_port=False)
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=_serve_one, args=(sock, name), daemon=True).start()


def get(address: str, port: int, paths: list[str]) -> list[int]:
    """GET each of ``paths`` from ``address:port``, one after another on one connection; the
    statuses, in order."""
    connection = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    connection.initiate_connection()
    statuses: list[int] = []
    with socket.create_connection((address, port), timeout=5) as sock:
        sock.sendall(connection.data_to_send())
        for path in paths:
            stream = connection.get_next_available_stream_id()
            request = [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", f"{address}:{port}")]
            connection.send_headers(stream, [*request, ("user-agent", "flannelcap-lab-h2")], end_stream=True)
            sock.sendall(connection.data_to_send())
            ended = False
            while not ended and (data := sock.recv(65536)):
                for event in connection.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        statuses.append(int(dict((_text(k), _text(v)) for k, v in event.headers or [])[":status"]))
                    elif isinstance(event, h2.events.DataReceived):
                        connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    ended = ended or isinstance(event, h2.events.StreamEnded)
                sock.sendall(connection.data_to_send())
        connection.close_connection()
        sock.sendall(connection.data_to_send())
    return statuses


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"] and len(sys.argv) == 5:
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif sys.argv[1:2] == ["get"] and len(sys.argv) >= 5:
        print("\n".join(str(s) for s in get(sys.argv[2], int(sys.argv[3]), sys.argv[4:])))
    else:
        print("usage: python -m flannelcap.lab._h2_server serve ADDRESS PORT NAME | get ADDRESS PORT PATH…",
              file=sys.stderr)  # fmt: skip
        sys.exit(2)
