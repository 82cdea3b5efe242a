"""HTTP heads reassembled per direction on the inner 4-tuple."""

from __future__ import annotations

from flannelcap.packets.http import MAX_HEAD_BYTES, HttpReassembler, parse_head

KEY = ("10.42.3.51", 40482, "10.42.2.23", 80)
BACK = ("10.42.2.23", 80, "10.42.3.51", 40482)


def test_parse_request_and_response() -> None:
    request = parse_head(b"GET /a?b=c HTTP/1.1\r\nhOsT: nginx\r\nAccept: */*")
    assert request is not None
    assert (request.method, request.path, request.version, request.host) == (
        "GET",
        "/a?b=c",
        "HTTP/1.1",
        "nginx",
    )
    response = parse_head(b"HTTP/1.1 301 Moved Permanently\r\nContent-Length: 5")
    assert response is not None
    assert (response.status, response.reason, response.content_length) == (301, "Moved Permanently", 5)
    assert response.start_line == "HTTP/1.1 301 Moved Permanently"
    assert parse_head(b"HELLO world") is None
    assert parse_head(b"HTTP/1.1 abc") is None


def test_body_is_skipped_by_content_length_then_next_response_found() -> None:
    tracker = HttpReassembler()
    first = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234"
    assert tracker.feed(BACK, 100, first).status == 200  # type: ignore[union-attr]
    # The rest of the body starts like a head, but it is body: not reported.
    assert tracker.feed(BACK, 100 + len(first), b"HTTP/") is None
    second = b"HTTP/1.1 204 No Content\r\n\r\n"
    assert tracker.feed(BACK, 100 + len(first) + 5, second).status == 204  # type: ignore[union-attr]


def test_gap_resets_the_stream() -> None:
    tracker = HttpReassembler()
    assert tracker.feed(KEY, 1, b"GET / HTTP/1.1\r\n") is None
    assert tracker.feed(KEY, 500, b"Host: x\r\n\r\n") is None  # bytes 17..499 were lost
    assert tracker.feed(KEY, 600, b"GET /b HTTP/1.1\r\n\r\n").path == "/b"  # type: ignore[union-attr]


def test_sequence_wraps_around() -> None:
    tracker = HttpReassembler()
    start = 2**32 - 5
    assert tracker.feed(KEY, start, b"GET /w") is None
    assert tracker.feed(KEY, 1, b"rap HTTP/1.1\r\n\r\n").path == "/wrap"  # type: ignore[union-attr]


def test_oversized_head_is_abandoned_in_linear_time() -> None:
    tracker = HttpReassembler()
    seq = 0
    assert tracker.feed(KEY, seq, b"GET / HTTP/1.1\r\n") is None
    seq += 16
    chunk = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    while seq < MAX_HEAD_BYTES + 5000:
        assert tracker.feed(KEY, seq, chunk) is None
        seq += len(chunk)
    assert tracker.feed(KEY, seq, b"\r\n") is None  # the head was given up, not reported late


def test_directions_are_separate() -> None:
    tracker = HttpReassembler()
    assert tracker.feed(KEY, 1, b"GET / HTTP/1.1\r\n") is None
    assert tracker.feed(BACK, 1, b"HTTP/1.1 200 OK\r\n\r\n").status == 200  # type: ignore[union-attr]
    assert tracker.feed(KEY, 17, b"\r\n").method == "GET"  # type: ignore[union-attr]
