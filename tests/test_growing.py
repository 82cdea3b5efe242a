"""The DataFrame's column buffers (``packets.growing``), the row estimate that sizes them, and the
split of a batch's integers into their data and mask (``kernel.split_missing``)."""

from __future__ import annotations

import numpy as np
import pytest

from flannelcap.packets import kernel
from flannelcap.packets.growing import Growing, zeros
from flannelcap.packets.kernel import NONE
from flannelcap.packets.read import _expected


def _resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 1e6


def test_values_survive_growth_widening_and_skipped_rows() -> None:
    column = Growing(np.int8)
    column.append(np.array([1, -1, 7], dtype=np.int64))
    column.reserve(5000)  # left as zeros, past the first buffer: it grows, the rows so far are moved
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


def test_a_column_never_missing_leaves_its_mask_untouched() -> None:
    values, mask = Growing(np.int32), Growing(np.bool_)
    values.expect(20_000_000), mask.expect(20_000_000)
    before = _resident_mb()
    for start in range(0, 20_000_000, 1_000_000):
        kernel.split_missing(np.arange(start, start + 1_000_000), values.reserve(1_000_000), mask.reserve(1_000_000))
    grown = _resident_mb() - before
    assert 75 < grown < 95  # the 80 MB of data, not the 20 MB of mask
    assert not mask.values.any() and values.values[-1] == 19_999_999


def test_rows_never_written_take_no_memory() -> None:
    column = Growing(np.int64)
    before = _resident_mb()
    column.expect(20_000_000)  # 160 MB of room
    column.reserve(20_000_000)
    shared = zeros(64_000_000)
    assert _resident_mb() - before < 20
    assert len(column.values) == 20_000_000 and len(shared) == 64_000_000 and not shared[-10:].any()


def test_the_row_estimate_scales_what_was_read_and_is_bounded_by_record_headers() -> None:
    assert _expected(1000, 100_000, 1_000_000) == 1000 + int(9000 * 1.05) + 1  # a tenth read: ten times as many
    assert _expected(1000, 1_000_000, 1_000_000) == 1000  # all read: no more
    assert _expected(0, 0, 1_000_000) == 0
    assert _expected(10_000, 16_000, 32_000) == 10_000 + 16_000 // 16  # no more than one per 16 bytes left


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("width", [8, 16, 32, 64])
def test_values_split_into_data_and_mask_leave_missing_rows_unwritten(
    compiled: bool, width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not compiled:
        monkeypatch.setattr(kernel, "AVAILABLE", False)
    values = np.array([5, NONE, -3, NONE, 127], dtype=np.int64)
    data = np.full(5, 99, dtype=f"int{width}")
    mask = np.zeros(5, dtype=np.bool_)
    assert kernel.split_missing(values, data, mask) == 3
    assert mask.tolist() == [False, True, False, True, False]
    assert data.tolist() == [5, 99, -3, 99, 127]
    # only what is missing is marked: a mask is not cleared where values are present
    marked = np.ones(5, dtype=np.bool_)
    kernel.split_missing(values, data, marked)
    assert marked.all()


def test_a_data_buffer_too_short_or_of_floats_is_refused() -> None:
    values = np.zeros(4, dtype=np.int64)
    with pytest.raises(ValueError, match="as many integers"):
        kernel.split_missing(values, np.zeros(3, dtype=np.int32), np.zeros(4, dtype=np.bool_))
    with pytest.raises(ValueError, match="mask"):
        kernel.split_missing(values, np.zeros(4, dtype=np.int32), np.zeros(2, dtype=np.bool_))
