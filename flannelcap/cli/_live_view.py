"""The live view of ``flannelcap capture``: decoded packets printed as they arrive, in the
columns of ``decode`` (or as its JSON lines), prefixed by node when there are several.

Rule: presentation only, and the view may lose lines, never packets. The capture files are
written before a byte reaches the view (``CaptureSession`` taps). Each node's bytes go through a
``LiveFeed`` into the one pipeline (``open_capture``, in a thread per node); one printer thread
writes the lines. When the terminal cannot keep up, lines beyond ``MAX_WAITING_LINES`` are
dropped from the view and counted, and a line says how many; when decoding itself falls behind
past the feed's bound, that node's view stops with a note.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TextIO, cast

from flannelcap._errors import FlannelcapError
from flannelcap.packets import lines
from flannelcap.packets.live import LiveFeed
from flannelcap.packets.pipeline import open_capture
from flannelcap.topology.model import Topology

MAX_WAITING_LINES = 20_000  # lines waiting for the terminal before the view drops some


class LiveView:
    """The view of a capture on ``nodes``. ``tap(node)`` is what the session feeds; ``start``
    begins decoding (once the topology is known); ``finish`` waits for the last line.

    Args:
        nodes: the nodes captured, in the order given.
        as_json: JSON lines (``decode --json``'s objects, ``file`` naming the capture file)
            instead of the packet list.
        out: where the lines go (``sys.stdout.buffer``).
        err: where notes go when ``out`` holds JSON (``sys.stderr``).
    """

    def __init__(self, nodes: list[str], *, as_json: bool, out: BinaryIO, err: TextIO = sys.stderr) -> None:
        self.as_json = as_json
        self.out, self.err = out, err
        self.feeds = {node: LiveFeed() for node in nodes}
        self.shown = 0
        self.skipped = 0
        self.notes: list[str] = []
        self._width = max(len(n) for n in nodes) if len(nodes) > 1 else 0
        self._waiting: deque[tuple[bytes, int]] = deque()  # text, the packets it shows
        self._waiting_lines = 0
        self._unreported_skips = 0
        self._changed = threading.Condition()
        self._decoders: list[threading.Thread] = []
        self._printer = threading.Thread(target=self._print, name="flannelcap-live-print", daemon=True)
        self._decoding = 0

    def tap(self, node: str) -> Callable[[bytes], None]:
        """What the session calls with each chunk of ``node``'s stream."""
        return self.feeds[node].feed

    def start(self, topology: Topology | None, files: dict[str, Path | None]) -> None:
        """Decode every node's stream from here on (what arrived before waits in its feed)."""
        if not self.as_json:
            node_column = f"{'Node':<{self._width}} " if self._width else ""
            self._put(f"{node_column}{lines.TABLE_HEADER}\n".encode(), 0)
        with self._changed:
            self._decoding = len(self.feeds)
        for node, feed in self.feeds.items():
            thread = threading.Thread(
                target=self._decode, args=(node, feed, topology, files.get(node)), name=f"live-{node}", daemon=True
            )
            thread.start()
            self._decoders.append(thread)
        self._printer.start()

    def close_feeds(self) -> None:
        """The capture has ended: each decoder reads what is left, then stops."""
        for feed in self.feeds.values():
            feed.close()

    def finish(self) -> None:
        """Wait until every line the view kept has been written."""
        self.close_feeds()
        for thread in self._decoders:
            thread.join()
        if self._printer.is_alive():
            self._printer.join()

    # -- decoding, one thread per node ------------------------------------------------------

    def _decode(self, node: str, feed: LiveFeed, topology: Topology | None, file: Path | None) -> None:
        prefix = f"{node:<{self._width}} ".encode() if self._width else b""
        try:
            source = open_capture(cast(BinaryIO, feed), topology=topology, more_waiting=feed.more_waiting, node=node)
            for batch in source:
                if self.as_json:
                    text = b"".join(lines.json_lines(batch, source.columns, str(file) if file else node))
                else:
                    text = b"".join(lines.table_lines(batch, source.columns))
                    if prefix:
                        text = b"".join(prefix + line for line in text.splitlines(keepends=True))
                self._put(text, batch.n)
            if feed.overflowed:
                self._note(f"{node}: live view stopped, decoding fell behind; the capture file holds every packet")
        except FlannelcapError as exc:
            if feed.received and not feed.overflowed:  # nothing received: the session says why
                self._note(f"{node}: no live view: {exc}")
        finally:
            with self._changed:
                self._decoding -= 1
                self._changed.notify_all()

    def _note(self, text: str) -> None:
        with self._changed:
            self.notes.append(text)
        if self.as_json:
            print(f"flannelcap: {text}", file=self.err, flush=True)
        else:
            self._put(f"[{text}]\n".encode(), 0)

    # -- printing, one thread ------------------------------------------------------------------

    def _put(self, text: bytes, packets: int) -> None:
        with self._changed:
            if packets and self._waiting_lines + packets > MAX_WAITING_LINES:
                self.skipped += packets
                self._unreported_skips += packets
                return
            if self._unreported_skips and packets:
                self._waiting.append((self._skip_line(self._unreported_skips), 0))
                self._unreported_skips = 0
            self._waiting.append((text, packets))
            self._waiting_lines += packets
            self.shown += packets
            self._changed.notify_all()

    def _skip_line(self, count: int) -> bytes:
        text = f"{count} packets not shown: the terminal fell behind (the capture files hold them)"
        if self.as_json:
            print(f"flannelcap: {text}", file=self.err, flush=True)
            return b""
        return f"[{text}]\n".encode()

    def _print(self) -> None:
        while True:
            with self._changed:
                while not self._waiting and self._decoding:
                    self._changed.wait()
                if not self._waiting and not self._decoding:
                    if self._unreported_skips:
                        self._waiting.append((self._skip_line(self._unreported_skips), 0))
                        self._unreported_skips = 0
                    else:
                        return
                chunks = list(self._waiting)
                self._waiting.clear()
            try:
                self.out.write(b"".join(text for text, _ in chunks))
                self.out.flush()
            except (BrokenPipeError, ValueError, OSError):
                return
            with self._changed:
                self._waiting_lines -= sum(packets for _, packets in chunks)
