"""Column buffers that grow in place, for a DataFrame made of a whole capture's batches.

Rule: pure (memory only). A buffer is an anonymous memory map of its own: pages never written
are never resident (a column missing in every packet costs nothing but its mask), a full buffer
is copied once into one twice its size, and a dropped buffer goes back to the system at once.
Joining a capture's thousands of per-batch pieces at the end would hold the pieces and the
joined column at the same time, and the heap keeps the freed pieces' pages resident after.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np
from numpy.typing import NDArray

_FIRST_ROWS = 1 << 12
_MAPPED_BYTES = 1 << 20  # smaller buffers come from the heap (a process has a limited number of maps)


def _mapped(rows: int, dtype: np.dtype[Any]) -> NDArray[Any]:
    """``rows`` zeros of ``dtype``; from ``_MAPPED_BYTES`` on in a memory map of their own
    (untouched pages are not resident)."""
    size = rows * dtype.itemsize
    if size < _MAPPED_BYTES:
        return np.zeros(rows, dtype=dtype)
    try:
        return np.frombuffer(mmap.mmap(-1, size), dtype=dtype, count=rows)
    except OSError:  # the process is out of maps (vm.max_map_count): the heap's zeros do too
        return np.zeros(rows, dtype=dtype)


class Growing:
    """One column's values, appended batch by batch; ``values`` is a view of the rows so far."""

    def __init__(self, dtype: Any) -> None:
        self._data = _mapped(_FIRST_ROWS, np.dtype(dtype))
        self.rows = 0

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._data.dtype

    def expect(self, rows: int) -> None:
        """Make room for ``rows`` rows in all, now (one copy instead of several doublings)."""
        if rows > len(self._data):
            self._move(rows, self._data.dtype)

    def reserve(self, rows: int) -> NDArray[Any]:
        """Room for ``rows`` more rows: the slice they go to (zeros until written)."""
        need = self.rows + rows
        if need > len(self._data):
            self._move(max(need, 2 * len(self._data)), self._data.dtype)
        at = self.rows
        self.rows = need
        return self._data[at:need]

    def append(self, values: NDArray[Any]) -> None:
        self.reserve(len(values))[:] = values

    def widen(self, dtype: Any) -> None:
        """Hold the values in a wider integer type from now on (those so far converted)."""
        self._move(len(self._data), np.dtype(dtype))

    def _move(self, rows: int, dtype: np.dtype[Any]) -> None:
        grown = _mapped(rows, dtype)
        grown[: self.rows] = self._data[: self.rows]
        self._data = grown

    @property
    def values(self) -> NDArray[Any]:
        return self._data[: self.rows]


_ZEROS: list[NDArray[np.uint8]] = []


def zeros(size: int) -> NDArray[np.uint8]:
    """``size`` zero bytes shared by every caller, never written (views of one memory map, grown
    when a caller needs more): the offsets and validity of all-missing Arrow columns."""
    if not _ZEROS or len(_ZEROS[0]) < size:
        block = _mapped(max(size, 1 << 20), np.dtype(np.uint8))
        block.flags.writeable = False
        _ZEROS[:] = [block]
    return _ZEROS[0][:size]
