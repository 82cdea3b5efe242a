"""A progress bar on standard error for long decodes.

Rule: display only. The bar shows only on a terminal, only once a decode has taken longer than
``FLANNELCAP_PROGRESS_AFTER`` seconds (1 by default: short decodes stay quiet), redraws at most
ten times a second, and is wiped before anything else is printed.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

WIDTH = 30


class ProgressBar:
    """Called with (bytes read, total bytes) as a decode goes; ``clear`` wipes it."""

    def __init__(self, label: str, stream: TextIO = sys.stderr) -> None:
        self.label = label
        self.stream = stream
        try:
            self.after = float(os.environ.get("FLANNELCAP_PROGRESS_AFTER", "1"))
        except ValueError:  # not a number of seconds: the default
            self.after = 1.0
        self.started = time.monotonic()
        self.drawn = 0.0  # when the bar was last drawn; 0: never

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.started < self.after or now - self.drawn < 0.1:
            return
        self.drawn = now
        share = done / total if total else 1.0
        filled = int(WIDTH * share)
        rate = done / max(now - self.started, 1e-9) / 1e6
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] {share:4.0%} "
            f"{done / 1e6:.0f}/{total / 1e6:.0f} MB, {rate:.0f} MB/s\x1b[K"
        )
        self.stream.flush()

    def clear(self) -> None:
        """Wipe the bar, if it was drawn."""
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.drawn = 0.0
