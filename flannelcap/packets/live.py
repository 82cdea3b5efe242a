"""A capture arriving live: the bytes of a pcap stream handed from the thread that receives
them to the thread that decodes them.

Rule: never block the receiver and never lose a byte it was given, up to a bound. The receiver
``feed``s chunks as they come (after writing them to the capture file, which holds everything);
the decoder ``read``s as from a file (or ``readinto``, a piece of what has arrived), waiting
for bytes that have not arrived yet, and asks ``more_waiting`` to know when to show what it
has. If the decoder falls so far behind that more than ``limit`` bytes wait, the feed gives
up: it drops what waits, takes nothing more, and says so in ``overflowed``; the reader then
sees the stream end. Memory stays within the bound.
"""

from __future__ import annotations

import threading

DEFAULT_LIMIT = 256 * 1024 * 1024


class LiveFeed:
    """A byte stream between two threads, read like a file object (``read(size)``).

    Args:
        limit: most bytes kept waiting before the feed gives up (see the module's rule).
    """

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self.overflowed = False
        self.received = 0  # bytes fed, kept or not
        self._buffer = bytearray()
        self._at = 0  # the next byte to read in _buffer
        self._closed = False
        self._changed = threading.Condition()

    def feed(self, data: bytes) -> None:
        """Append the next chunk of the stream (never blocks)."""
        with self._changed:
            self.received += len(data)
            if self._closed or self.overflowed:
                return
            if len(self._buffer) - self._at + len(data) > self.limit:
                self.overflowed = True
                self._buffer, self._at = bytearray(), 0
            else:
                self._buffer += data
            self._changed.notify_all()

    def close(self) -> None:
        """The stream has ended: readers get what is left, then end of file."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def backlog(self) -> int:
        """Bytes waiting to be read."""
        with self._changed:
            return len(self._buffer) - self._at

    def more_waiting(self) -> bool:
        """Whether bytes wait to be read."""
        with self._changed:
            return len(self._buffer) > self._at

    def readinto(self, view: memoryview) -> int:
        """Copy what has arrived into ``view`` (at most its length), waiting for at least one
        byte; 0 only at the end of the stream. A live capture is walked this way, piece by piece."""
        with self._changed:
            while not (self._closed or self.overflowed) and len(self._buffer) == self._at:
                self._changed.wait()
            count = min(len(view), len(self._buffer) - self._at)
            view[:count] = self._buffer[self._at : self._at + count]
            self._at += count
            self._compact()
            return count

    def _compact(self) -> None:
        if self._at > 1 << 20 and self._at * 2 > len(self._buffer):  # drop what was read, now and then
            del self._buffer[: self._at]
            self._at = 0

    def read(self, size: int = -1) -> bytes:
        """``size`` bytes, waiting for them to arrive; fewer only at the end of the stream."""
        with self._changed:
            while not (self._closed or self.overflowed) and (size < 0 or len(self._buffer) - self._at < size):
                self._changed.wait()
            end = len(self._buffer) if size < 0 else min(len(self._buffer), self._at + size)
            data = bytes(self._buffer[self._at : end])
            self._at = end
            self._compact()
            return data
