"""Reading ahead: the next batches are read and decoded in a second thread while the caller
works on the current one.

Rule: only the order of work changes, never what is produced. The producer's iterator runs in
one worker thread; its items, and the exception that ended it, reach the caller in order. At
most ``depth`` items wait (memory stays flat), and a caller that stops early stops the worker,
and closes the producer's iterator, before the call that stopped returns. The compiled kernel
releases the GIL while it decodes, so on two cores reading and decoding overlap the caller's
column making and writing.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def read_ahead(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """The items of ``items``, produced in a worker thread up to ``depth`` ahead of the caller.

    An exception raised by ``items`` is raised here, at its place in the sequence.
    """
    waiting: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item: object) -> bool:
        while not stop.is_set():
            try:
                waiting.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not hand_over(item):
                    return
        except BaseException as error:  # handed to the caller, raised there
            hand_over(_Failed(error))
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # a generator's own clean-up (its file) runs now, in this thread
                close()
        hand_over(_DONE)

    worker = threading.Thread(target=produce, name="flannelcap-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item = waiting.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()
