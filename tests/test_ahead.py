"""Reading ahead changes only when work is done: the same items, in order, the producer's error
at its place, and a caller that stops early stops the worker."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from flannelcap.packets.ahead import read_ahead


def test_items_arrive_in_order_and_complete() -> None:
    assert list(read_ahead(iter(range(1000)), depth=2)) == list(range(1000))


def test_the_producers_error_is_raised_after_the_items_before_it() -> None:
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("damaged piece")

    seen: list[int] = []
    with pytest.raises(ValueError, match="damaged piece"):
        for item in read_ahead(failing()):
            seen.append(item)
    assert seen == [1, 2]


def test_at_most_depth_items_wait_and_an_early_stop_ends_the_worker() -> None:
    produced: list[int] = []
    finished = threading.Event()

    def counting() -> Iterator[int]:
        try:
            for i in range(100):
                produced.append(i)
                yield i
        finally:
            finished.set()

    items = read_ahead(counting(), depth=3)
    assert next(items) == 0
    threading.Event().wait(0.3)  # the worker fills the queue and waits
    assert len(produced) <= 1 + 3 + 1  # the one taken, three waiting, one in hand
    items.close()  # the caller stops: the worker must not go on reading
    assert len(produced) <= 5
    assert finished.is_set()  # the producer was closed before close() returned
    assert not any(t.name == "flannelcap-read-ahead" and t.is_alive() for t in threading.enumerate())


def test_the_worker_runs_in_another_thread() -> None:
    def where() -> Iterator[int]:
        yield threading.get_ident()

    assert next(read_ahead(where())) != threading.get_ident()
