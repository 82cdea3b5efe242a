"""HTTP/2 in cleartext (h2c, RFC 9113) and gRPC over it: the frames each TCP segment completes
and the request and response headers they carry.

Rule: pure, no Scapy, no numpy, no I/O; state per direction of a connection. A connection is
HTTP/2 when its client's first bytes are the connection preface (prior knowledge, as gRPC and
``curl --http2-prior-knowledge`` speak; an ``Upgrade: h2c`` from HTTP/1.1 is not followed).
Header blocks are decoded in the order they were sent, through one HPACK decoder per
direction (the ``hpack`` library), so a later request that names headers from the dynamic
table is read right. A frame belongs to the segment that completes it, as Wireshark shows it.
Like an HTTP/1 head, it is reported once: a copy of a segment already read (``tcpdump -i any``
shows one on each interface it crosses, or a retransmission) adds nothing. A direction with a
gap (a segment not captured) or a header block HPACK cannot read is not read further: its
HPACK state is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import NamedTuple

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER = 9
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
FRAME_NAMES = ("DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING", "GOAWAY",
               "WINDOW_UPDATE", "CONTINUATION")  # fmt: skip
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
VERSION = "HTTP/2"
_SEQ = 1 << 32

StreamKey = tuple[str, int, str, int]


def frame_name(kind: int) -> str:
    """``HEADERS`` and the like, ``UNKNOWN(11)`` for a type RFC 9113 does not define."""
    return FRAME_NAMES[kind] if kind < len(FRAME_NAMES) else f"UNKNOWN({kind})"


def status_text(status: int) -> str:
    """``200 OK``: the status with its standard phrase (HTTP/2 sends no reason phrase)."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


class H2Segment(NamedTuple):
    """What one TCP segment of an HTTP/2 connection completes: Wireshark's Info text of its
    frames (``Magic, SETTINGS[0]``, ``HEADERS[1]: GET /``), the frame types, and the first
    request's or response's headers among them (the attribute names of ``HttpHead``)."""

    info: str
    frames: str  # the frame types, comma-separated
    stream: int | None  # the first HEADERS frame's stream, else the first frame's
    method: str | None = None
    path: str | None = None
    host: str | None = None  # :authority
    status: int | None = None
    content_type: str | None = None
    grpc_status: int | None = None
    version: str = VERSION
    reason: None = None  # HTTP/2 sends none
    forwarded_for: str | None = None
    forwarded_server: str | None = None

    @property
    def is_head(self) -> bool:
        """A request or a response begins here."""
        return self.method is not None or self.status is not None

    @property
    def is_request(self) -> bool:
        """A request begins here (as ``HttpHead.is_request``)."""
        return self.method is not None

    def record_fields(self) -> dict[str, object]:
        """The segment as ``PacketRecord`` fields."""
        fields: dict[str, object] = {"http2_frames": self.frames, "http2_stream": self.stream}
        if self.grpc_status is not None:
            fields["grpc_status"] = self.grpc_status
        if self.is_head:
            fields.update(
                http_method=self.method,
                http_path=self.path,
                http_host=self.host,
                http_version=self.version,
                http_status=self.status,
                http_content_type=self.content_type,
                http_forwarded_for=self.forwarded_for,
                http_forwarded_server=self.forwarded_server,
            )
        return fields


@dataclass(slots=True)
class _Found:
    """What the frames completed in one segment said, gathered as they are read."""

    parts: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    stream: int | None = None
    head: dict[str, str] | None = None
    grpc_status: int | None = None

    def segment(self) -> H2Segment | None:
        if not self.parts:
            return None
        head = self.head or {}
        status = head.get(":status", "")
        grpc = self.grpc_status
        return H2Segment(
            info=", ".join(self.parts),
            frames=",".join(self.kinds),
            stream=self.stream,
            method=head.get(":method"),
            path=head.get(":path"),
            host=head.get(":authority"),
            status=int(status) if status.isascii() and status.isdigit() else None,
            content_type=head.get("content-type"),
            grpc_status=grpc,
        )


@dataclass(slots=True)
class _Direction:
    """One direction of an HTTP/2 connection, as read so far."""

    client: bool
    decoder: hpack.Decoder = field(default_factory=lambda: _passive_decoder())
    next_seq: int | None = None
    buffer: bytearray = field(default_factory=bytearray)
    preface_left: bool = False
    block: bytearray | None = None  # a header block waiting for its CONTINUATION frames
    block_stream: int = 0
    content_types: dict[int, str] = field(default_factory=dict)
    lost: bool = False


class Http2Follower:
    """Follows the HTTP/2 connections of a capture, segment by segment in capture order.

    Args:
        on_connection: told each new connection's client-to-server key when its preface is seen.
    """

    def __init__(self, on_connection: Callable[[StreamKey], None] | None = None) -> None:
        self._directions: dict[StreamKey, _Direction] = {}
        self._on_connection = on_connection

    def __bool__(self) -> bool:
        return bool(self._directions)

    def follows(self, key: StreamKey) -> bool:
        """``key`` is a direction of a connection that began with the preface."""
        return key in self._directions

    def feed(self, key: StreamKey, seq: int, payload: bytes) -> H2Segment | None:
        """What the TCP segment ``payload`` (sequence number ``seq``) of direction ``key``
        completes, or None (not HTTP/2, or no frame ends here)."""
        direction = self._directions.get(key)
        if direction is None:
            if not payload.startswith(PREFACE):
                return None
            direction = self._directions[key] = _Direction(client=True, preface_left=True)
            src, sport, dst, dport = key
            self._directions[(dst, dport, src, sport)] = _Direction(client=False)
            if self._on_connection is not None:
                self._on_connection(key)
        if direction.next_seq is None:
            direction.next_seq = seq
        ahead = (seq - direction.next_seq) % _SEQ
        if ahead >= _SEQ // 2:  # begins before what was read: a copy, or a retransmission reaching further
            behind = _SEQ - ahead
            if len(payload) <= behind:
                return None
            payload = payload[behind:]
        elif ahead:
            direction.lost = True  # a gap: what follows cannot be read
        if direction.lost:
            return None
        direction.next_seq = (direction.next_seq + len(payload)) % _SEQ
        return self._read(direction, payload)

    def _read(self, direction: _Direction, payload: bytes) -> H2Segment | None:
        buffer = direction.buffer
        buffer += payload
        found = _Found()
        if direction.preface_left:
            if len(buffer) < len(PREFACE):
                return None
            del buffer[: len(PREFACE)]
            direction.preface_left = False
            found.parts.append("Magic")
            found.kinds.append("Magic")
        at = 0
        while len(buffer) - at >= FRAME_HEADER:
            length = int.from_bytes(buffer[at : at + 3], "big")
            if len(buffer) - at < FRAME_HEADER + length:
                break
            kind, flags = buffer[at + 3], buffer[at + 4]
            stream = int.from_bytes(buffer[at + 5 : at + 9], "big") & 0x7FFFFFFF
            body = bytes(buffer[at + FRAME_HEADER : at + FRAME_HEADER + length])
            at += FRAME_HEADER + length
            self._frame(direction, found, kind, flags, stream, body)
        del buffer[:at]
        return found.segment()

    def _frame(self, direction: _Direction, found: _Found, kind: int, flags: int, stream: int, body: bytes) -> None:
        name = frame_name(kind)
        found.kinds.append(name)
        if found.stream is None:
            found.stream = stream
        text = f"{name}[{stream}]"
        if kind == HEADERS:
            if not any(k == "HEADERS" for k in found.kinds[:-1]):
                found.stream = stream
            direction.block, direction.block_stream = bytearray(_fragment(body, flags)), stream
        elif kind == CONTINUATION and direction.block is not None:
            direction.block += body
        elif kind == DATA and stream in direction.content_types:
            text += f" ({direction.content_types[stream]})"
        if kind in (HEADERS, CONTINUATION) and flags & END_HEADERS and direction.block is not None:
            headers = self._headers(direction, bytes(direction.block))
            direction.block = None
            text += _summary(headers)
            if headers is not None:
                self._note(direction, found, headers)
        found.parts.append(text)

    def _headers(self, direction: _Direction, block: bytes) -> dict[str, str] | None:
        try:
            pairs = direction.decoder.decode(block, raw=True)
        except (hpack.HPACKError, ValueError, IndexError):
            direction.lost = True  # the dynamic table is now unknown
            return None
        return {bytes(k).decode("latin-1"): bytes(v).decode("latin-1") for k, v in pairs}

    @staticmethod
    def _note(direction: _Direction, found: _Found, headers: dict[str, str]) -> None:
        if "content-type" in headers:
            direction.content_types[direction.block_stream] = headers["content-type"]
        if "grpc-status" in headers and headers["grpc-status"].isdigit() and found.grpc_status is None:
            found.grpc_status = int(headers["grpc-status"])
        if found.head is None and (":method" in headers or ":status" in headers):
            found.head = headers


def _passive_decoder() -> hpack.Decoder:
    """An HPACK decoder that follows whatever table size the sender's encoder announces (a
    peer's SETTINGS_HEADER_TABLE_SIZE may allow more than the default 4,096 bytes: a decoder
    that only watches must not refuse it)."""
    decoder = hpack.Decoder()
    decoder.max_allowed_table_size = 1 << 30
    return decoder


def _fragment(body: bytes, flags: int) -> bytes:
    """A HEADERS frame's header block fragment: padding and priority fields left out."""
    start, end = 0, len(body)
    if flags & PADDED and body:
        start, end = 1, max(1, len(body) - body[0])
    if flags & PRIORITY_FLAG:
        start += 5
    return body[start:end]


def _summary(headers: dict[str, str] | None) -> str:
    """What Wireshark's Info adds after a HEADERS frame: ``: GET /``, ``: 200 OK``."""
    if headers is None:
        return ""
    if ":method" in headers:
        return f": {headers[':method']} {headers.get(':path', '')}"
    status = headers.get(":status", "")
    if status.isascii() and status.isdigit():
        return f": {status_text(int(status))}"
    return ""
