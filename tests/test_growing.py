"""The DataFrame's column buffers (``packets.growing``) and the row estimate that sizes them."""

from __future__ import annotations

import numpy as np

from flannelcap.packets.growing import Growing, zeros
from flannelcap.packets.read import _expected


def _resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 1e6


def test_values_survive_growth_widening_and_skipped_rows() -> None:
    column = Growing(np.int8)
    column.append(np.array([1, -1, 7], dtype=np.int64))
    column.skip(5000)  # past the first buffer: it grows, the rows so far are moved
    column.append(np.arange(3, dtype=np.int64))
    column.widen(np.int16)
    column.append(np.array([300], dtype=np.int64))
    values = column.values
    assert values.dtype == np.int16 and len(values) == 5007
    assert values[:3].tolist() == [1, -1, 7]
    assert not values[3:5003].any()
    assert values[5003:].tolist() == [0, 1, 2, 300]


def test_room_made_ahead_keeps_the_rows_and_is_used_without_moving() -> None:
    column = Growing(np.float64)
    column.append(np.array([0.5, 1.5]))
    column.expect(3_000_000)
    before = column.values.__array_interface__["data"][0]
    column.append(np.ones(2_000_000))
    assert column.values.__array_interface__["data"][0] == before  # no copy: the room was there
    assert column.values[:3].tolist() == [0.5, 1.5, 1.0] and len(column.values) == 2_000_002


def test_rows_never_written_take_no_memory() -> None:
    column = Growing(np.int64)
    before = _resident_mb()
    column.expect(20_000_000)  # 160 MB of room
    column.skip(20_000_000)
    shared = zeros(64_000_000)
    assert _resident_mb() - before < 20
    assert len(column.values) == 20_000_000 and len(shared) == 64_000_000 and not shared[-10:].any()


def test_the_row_estimate_scales_what_was_read_and_is_bounded_by_record_headers() -> None:
    assert _expected(1000, 100_000, 1_000_000) == 1000 + int(9000 * 1.05) + 1  # a tenth read: ten times as many
    assert _expected(1000, 1_000_000, 1_000_000) == 1000  # all read: no more
    assert _expected(0, 0, 1_000_000) == 0
    assert _expected(10_000, 16_000, 32_000) == 10_000 + 16_000 // 16  # no more than one per 16 bytes left
