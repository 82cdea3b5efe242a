"""HTTP/2 in cleartext and gRPC inside the tunnel: the follower on frames the ``h2`` library
itself writes (split, continued, padded, copied, lost), and the lab's recording of h2c requests
and a gRPC call between pods (``sample_pcaps/services/h2``), checked against what the clients
said."""

from __future__ import annotations

import json

import h2.config
import h2.connection
import pytest
from conftest import SAMPLES

import flannelcap
from flannelcap.cli import main
from flannelcap.packets.http2 import PREFACE, Http2Follower, status_text

H2 = SAMPLES / "services" / "h2"
ENTRY = next(
    e for e in map(json.loads, (SAMPLES / "services" / "manifest.jsonl").read_text().splitlines()) if e["name"] == "h2"
)
CLIENT = ("10.42.2.2", 40000, "10.42.1.2", 8080)
SERVER = ("10.42.1.2", 8080, "10.42.2.2", 40000)


def _request(connection: h2.connection.H2Connection, path: str, method: str = "GET", **headers: str) -> bytes:
    stream = connection.get_next_available_stream_id()
    fixed = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "web:8080")]
    connection.send_headers(stream, [*fixed, *headers.items()], end_stream=True)
    return connection.data_to_send()


def _client() -> tuple[h2.connection.H2Connection, bytes]:
    connection = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    connection.initiate_connection()
    return connection, connection.data_to_send()


def test_requests_read_through_the_dynamic_table() -> None:
    connection, opening = _client()
    first = _request(connection, "/a", **{"content-type": "application/grpc"})
    second = _request(connection, "/a", **{"content-type": "application/grpc"})  # all from the dynamic table
    assert len(second) < len(first)
    follower, seq = Http2Follower(), 1000
    said = []
    for data in (opening, first, second):
        said.append(follower.feed(CLIENT, seq, data))
        seq += len(data)
    assert said[0] is not None and said[0].frames.startswith("Magic,SETTINGS")
    for got, stream in zip(said[1:], (1, 3), strict=True):
        assert got is not None
        assert (got.method, got.path, got.host, got.content_type, got.stream) == (
            "GET", "/a", "web:8080", "application/grpc", stream
        )  # fmt: skip
        assert got.info == f"HEADERS[{stream}]: GET /a"


def test_a_frame_split_over_segments_belongs_to_the_last() -> None:
    connection, opening = _client()
    request = _request(connection, "/" + "x" * 300)
    follower = Http2Follower()
    follower.feed(CLIENT, 0, opening)
    seq = len(opening)
    assert follower.feed(CLIENT, seq, request[:5]) is None  # not even the frame header
    assert follower.feed(CLIENT, seq + 5, request[5:100]) is None
    done = follower.feed(CLIENT, seq + 100, request[100:])
    assert done is not None and done.path == "/" + "x" * 300


def test_copies_add_nothing_and_a_gap_stops_the_direction() -> None:
    connection, opening = _client()
    one, two, three = (_request(connection, p) for p in ("/1", "/2", "/3"))
    follower = Http2Follower()
    follower.feed(CLIENT, 0, opening)
    seq = len(opening)
    assert follower.feed(CLIENT, seq, one) is not None
    assert follower.feed(CLIENT, seq, one) is None  # the same segment on another interface
    seq += len(one)
    # ``two`` was not captured: ``three`` cannot be read (its headers may name ``two``'s).
    assert follower.feed(CLIENT, seq + len(two), three) is None
    assert follower.feed(CLIENT, seq, two) is None


def test_responses_trailers_and_not_http2() -> None:
    client, opening = _client()
    server = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    request = _request(client, "/helloworld.Greeter/SayHello", "POST", **{"content-type": "application/grpc"})
    server.receive_data(opening + request)
    server.send_headers(1, [(":status", "200"), ("content-type", "application/grpc")])
    server.send_data(1, b"\x00\x00\x00\x00\x02hi")
    server.send_headers(1, [("grpc-status", "14"), ("grpc-message", "unavailable")], end_stream=True)
    follower = Http2Follower()
    assert follower.feed(SERVER, 7, b"HTTP/1.1 200 OK\r\n\r\n") is None  # no preface: not followed
    follower.feed(CLIENT, 0, opening + request)
    answer = follower.feed(SERVER, 5000, server.data_to_send())
    assert answer is not None
    assert (answer.status, answer.content_type, answer.grpc_status, answer.stream) == (200, "application/grpc", 14, 1)
    assert answer.info == "SETTINGS[0], SETTINGS[0], HEADERS[1]: 200 OK, DATA[1] (application/grpc), HEADERS[1]"
    assert answer.record_fields()["http_version"] == "HTTP/2"
    assert status_text(404) == "404 Not Found" and status_text(599) == "599"


def test_garbage_after_the_preface_is_not_an_error() -> None:
    follower = Http2Follower()
    header_block_of_nonsense = b"\x00\x00\x04\x01\x05\x00\x00\x00\x01\xff\xff\xff\xff"
    said = follower.feed(CLIENT, 0, PREFACE + header_block_of_nonsense)
    assert said is not None and said.info == "Magic, HEADERS[1]" and said.method is None
    assert follower.feed(CLIENT, len(PREFACE) + 13, b"\x00\x00\x00\x04\x00\x00\x00\x00\x00") is None  # HPACK lost


def test_the_recorded_requests_as_the_clients_said() -> None:
    capture = flannelcap.read(H2 / ENTRY["files"][0], topology=H2 / "tables")
    http = capture.http()
    assert http["path"].tolist() == ENTRY["paths"]
    assert http["status"].tolist() == ENTRY["statuses"]
    assert set(http["version"]) == {"HTTP/2"}
    assert set(http["client"]) == {"busybox"} and set(http["server"]) == {ENTRY["server"]}
    grpc = http[http["path"] == "/helloworld.Greeter/SayHello"].iloc[0]
    assert (grpc["method"], grpc["content_type"], grpc["grpc_status"]) == ("POST", "application/grpc", 0)
    assert http["grpc_status"].isna().sum() == 3
    # Two GETs of / on one connection: the second's headers came from the dynamic table.
    assert http["flow"].iloc[0] == http["flow"].iloc[1] != http["flow"].iloc[3]


@pytest.mark.parametrize("engine", ["fast", "scapy"])
def test_decode_shows_wiresharks_info(engine: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(H2 / ENTRY["files"][0])
    assert main(["decode", path, "--proto", "http2", "--engine", engine, "--tables", str(H2 / "tables")]) == 0
    out = capsys.readouterr().out
    assert "HTTP2  veth" in out or "HTTP2  eth0" in out
    assert "HEADERS[1]: POST /helloworld.Greeter/SayHello" in out
    assert "HEADERS[5]: 404 Not Found, DATA[5] (text/plain)" in out
    assert "4 HTTP requests, 4 HTTP responses" in out
    assert main(["decode", path, "--proto", "grpc", "--engine", engine]) == 0
    assert "2 of 156 packets shown" in capsys.readouterr().out


def test_a_larger_table_the_peers_agreed_on_is_followed() -> None:
    """A peer's SETTINGS_HEADER_TABLE_SIZE may let the encoder grow its table past 4,096 bytes;
    the header block then opens with that size update, which a decoder that only watches
    must follow (hpack's default decoder refuses it)."""
    connection, opening = _client()
    connection.encoder.header_table_size = 65536
    request = _request(connection, "/big-table")
    said = Http2Follower().feed(CLIENT, 0, opening + request)
    assert said is not None and (said.method, said.path) == ("GET", "/big-table")
