"""HTTP request and status lines, reassembled on the inner TCP 5-tuple.

Rule: pure. Bytes in, heads out; no Scapy, no I/O. Streams are keyed on the conversation the
pods see (inner addresses and ports), never on the outer UDP ports, which the kernel picks
per flow and which change when a pod reconnects. A head split across segments is reported
on the segment that completes it, as Wireshark does. Work per byte is constant: the search
for the blank line only looks at new bytes, and a head larger than ``MAX_HEAD_BYTES`` is
abandoned. Memory follows the open streams: a direction is forgotten ``CLOSED_KEPT_NS`` of
capture time after its FIN or RST (the compiled search in ``_ckernel.c`` keeps the same rule).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

MAX_HEAD_BYTES = 64 * 1024
MAX_STREAMS = 65_536
# A direction that sent FIN or RST is forgotten this long (capture time) after: long past a copy
# of its last segments on another interface, or their retransmission; the streams held are then
# those still open, not every stream of the capture.
CLOSED_KEPT_NS = 10_000_000_000
CLOSING_FLAGS = ("FIN", "RST")  # the TCP flags (as Wireshark names them) of a segment that closes its direction

METHODS = (b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE")
_STARTS = (*(m + b" " for m in METHODS), b"HTTP/")

StreamKey = tuple[str, int, str, int]


class HttpHead(NamedTuple):
    """The start line, Host and proxy headers (X-Forwarded-For, X-Forwarded-Server) of one HTTP
    request or response head (a named tuple: immutable, and cheap to make, which counts at tens
    of thousands of heads a second)."""

    method: str | None = None
    path: str | None = None
    version: str | None = None
    status: int | None = None
    reason: str | None = None
    host: str | None = None
    content_length: int | None = None
    forwarded_for: str | None = None
    forwarded_server: str | None = None
    content_type: str | None = None

    def record_fields(self) -> dict[str, object]:
        """The head as ``PacketRecord`` fields (``http_method`` … ``http_forwarded_server``)."""
        return {
            "http_method": self.method,
            "http_path": self.path,
            "http_version": self.version,
            "http_host": self.host,
            "http_status": self.status,
            "http_reason": self.reason,
            "http_forwarded_for": self.forwarded_for,
            "http_forwarded_server": self.forwarded_server,
            "http_content_type": self.content_type,
        }

    @property
    def is_request(self) -> bool:
        """A request (else a response)."""
        return self.method is not None

    def parsed(self) -> HttpHead:
        """The head itself (as ``ScannedHead.parsed`` gives one)."""
        return self

    @property
    def start_line(self) -> str:
        """The head's first line, e.g. ``GET / HTTP/1.1`` or ``HTTP/1.1 200 OK``."""
        if self.method is not None:
            return f"{self.method} {self.path} {self.version}"
        reason = f" {self.reason}" if self.reason else ""
        return f"{self.version} {self.status}{reason}"


def looks_like_http_start(payload: bytes) -> bool:
    """True when a TCP payload begins like an HTTP/1.x request or response."""
    return payload.startswith(_STARTS)


def _digits(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` also takes '²', which ``int`` refuses)."""
    return text.isascii() and text.isdigit()


def _header(lowered: bytes, head: bytes, name: bytes) -> str | None:
    """The value of header ``name`` (lower case, with the colon) in a head, or None."""
    at = lowered.find(b"\r\n" + name)
    if at < 0:
        return None
    start = at + 2 + len(name)
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip().decode("latin-1")


def parse_head(head: bytes) -> HttpHead | None:
    """Parse an HTTP/1.x head (without the final blank line).

    Returns:
        The head's start line, Host, Content-Length, Content-Type and a request's
        X-Forwarded-For and X-Forwarded-Server, or ``None`` if the first line is not HTTP.
    """
    line_end = head.find(b"\r\n")
    parts = head[: line_end if line_end >= 0 else len(head)].decode("latin-1").split(" ", 2)
    lowered = head.lower()
    length_text = _header(lowered, head, b"content-length:") or ""
    content_length = int(length_text) if _digits(length_text) else None
    content_type = _header(lowered, head, b"content-type:")
    if parts[0].startswith("HTTP/"):
        if len(parts) < 2 or not _digits(parts[1]):
            return None
        return HttpHead(
            version=parts[0],
            status=int(parts[1]),
            reason=parts[2] if len(parts) > 2 else "",
            content_length=content_length,
            content_type=content_type,
        )
    if len(parts) == 3 and parts[0].encode() in METHODS and parts[2].startswith("HTTP/"):
        return HttpHead(
            method=parts[0],
            path=parts[1],
            version=parts[2],
            host=_header(lowered, head, b"host:"),
            content_length=content_length,
            forwarded_for=_header(lowered, head, b"x-forwarded-for:"),
            forwarded_server=_header(lowered, head, b"x-forwarded-server:"),
            content_type=content_type,
        )
    return None


@dataclass(slots=True)
class _Stream:
    next_seq: int | None = None
    collecting: bool = False
    buffer: bytearray = field(default_factory=bytearray)
    body_left: int = 0


class HttpReassembler:
    """Finds HTTP heads in the TCP segments of many conversations, one direction each.

    Feed every TCP segment with payload, and every one that closes its direction (FIN or RST),
    in capture order; ``feed`` returns the head that the segment completes, if any. A direction
    is forgotten ``CLOSED_KEPT_NS`` after it closed, before the first segment that late.
    """

    def __init__(self) -> None:
        self._streams: dict[StreamKey, _Stream] = {}
        self._closed: deque[tuple[int, StreamKey]] = deque()

    def feed(
        self, key: StreamKey, seq: int, payload: bytes, time_ns: int = 0, closing: bool = False
    ) -> HttpHead | None:
        """Add one segment's payload to the stream ``key`` (src ip, src port, dst ip, dst port).

        Args:
            key: the inner 4-tuple of the segment's direction.
            seq: the segment's TCP sequence number.
            payload: the segment's TCP payload as captured.
            time_ns: when it was captured.
            closing: it carries FIN or RST.

        Returns:
            The HTTP head completed by this segment, or ``None``.
        """
        while self._closed and self._closed[0][0] < time_ns - CLOSED_KEPT_NS:
            self._streams.pop(self._closed.popleft()[1], None)
        if closing:
            self._closed.append((time_ns, key))
        return self._feed(key, seq, payload) if payload else None

    def _feed(self, key: StreamKey, seq: int, payload: bytes) -> HttpHead | None:
        stream = self._streams.get(key)
        if stream is None:
            if not looks_like_http_start(payload):
                return None
            if len(self._streams) >= MAX_STREAMS:
                self._streams.clear()
            stream = self._streams[key] = _Stream()
        if stream.next_seq is not None and seq != stream.next_seq:
            if (stream.next_seq - seq) % 2**32 < 2**31:
                return None  # retransmission or overlap: already seen
            stream.collecting, stream.body_left = False, 0  # a gap: bytes were lost
            stream.buffer.clear()
        stream.next_seq = (seq + len(payload)) % 2**32
        if stream.body_left:
            skipped = min(stream.body_left, len(payload))
            stream.body_left -= skipped
            payload = payload[skipped:]
            if not payload:
                return None
        if not stream.collecting:
            if not looks_like_http_start(payload):
                return None
            stream.collecting = True
            stream.buffer.clear()
        search_from = max(0, len(stream.buffer) - 3)
        stream.buffer += payload
        end = stream.buffer.find(b"\r\n\r\n", search_from)
        if end < 0:
            if len(stream.buffer) > MAX_HEAD_BYTES:
                stream.collecting = False
                stream.buffer.clear()
            return None
        head = parse_head(bytes(stream.buffer[:end]))
        body_in_hand = len(stream.buffer) - end - 4
        stream.collecting = False
        stream.buffer.clear()
        if head is not None and head.content_length:
            stream.body_left = max(0, head.content_length - body_in_hand)
        return head
