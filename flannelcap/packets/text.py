"""Text made from columns in C: a program of parts run once per row (Info, a table line, a JSON
object, a CSV row), and the text columns it reads and writes.

Rule: pure. Columns in, bytes out. A ``Program`` is a list of parts — a literal, an integer
(decimal or hexadecimal), a float, a label (a code into a list of texts, escaped for JSON or
CSV if asked), padding to a width — each written only in the rows its mask marks;
``kernel.format_rows`` runs it over all rows at once, without a Python step per row.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from flannelcap.packets import kernel as _kernel
from flannelcap.packets.kernel import Int

Codes = NDArray[np.int32]
Mask = NDArray[np.bool_]
LITERAL, INT, LABEL, FLOAT, FIXED6, PAD_START, PAD_END, HEX = range(8)
NO_ESCAPE, JSON, CSV = 0, 1, 2


def csv_cell(text: str) -> str:
    """A text as a CSV cell: quoted (quotes doubled) where it holds a comma, quote or newline."""
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\r\n') else text


@dataclass(frozen=True, slots=True)
class Texts:
    """A list of texts as one block of UTF-8 bytes: text ``i`` is ``data[offsets[i]:offsets[i+1]]``."""

    offsets: Int
    data: bytes
    _escaped: dict[int, Texts] = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @staticmethod
    def of(texts: Sequence[str]) -> Texts:
        encoded = [t.encode() for t in texts]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        return Texts(offsets, b"".join(encoded))

    def escaped(self, escape: int) -> Texts:
        """The texts as JSON strings (``JSON``) or CSV cells (``CSV``), as the compiled writer
        escapes them."""
        done = self._escaped.get(escape)
        if done is None:
            texts = self.to_list()
            escape_one = (lambda t: json.dumps(t, ensure_ascii=False)) if escape == JSON else csv_cell
            done = self._escaped[escape] = Texts.of([escape_one(t) for t in texts])
        return done

    def to_list(self) -> list[str]:
        bounds = self.offsets.tolist()
        return [self.data[a:b].decode() for a, b in itertools.pairwise(bounds)]


def gather(data: bytes | NDArray[np.uint8], starts: Int, lengths: Int) -> Texts:
    """The byte ranges ``[starts[i], starts[i] + lengths[i])`` of ``data``, one after the other."""
    buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
    offsets, joined = _kernel.gather(buffer, starts, lengths)
    return Texts(offsets, joined)


@dataclass(frozen=True, slots=True)
class TextColumn:
    """A text per row (``missing`` marks rows without one, if any)."""

    texts: Texts
    missing: Mask | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def codes(self) -> Codes:
        """Row ``i``'s text is text ``i`` (-1 where missing): as a label column of its own."""
        codes = np.arange(len(self.texts), dtype=np.int32)
        if self.missing is not None:
            codes[self.missing] = -1
        return codes

    def to_list(self) -> list[str | None]:
        texts: list[str | None] = list(self.texts.to_list())
        if self.missing is not None:
            for row in np.nonzero(self.missing)[0].tolist():
                texts[row] = None
        return texts

    @staticmethod
    def of(values: Sequence[str | None]) -> TextColumn:
        missing = np.array([v is None for v in values], dtype=np.bool_)
        return TextColumn(Texts.of([v or "" for v in values]), missing if missing.any() else None)

    @staticmethod
    def nothing(n: int) -> TextColumn:
        """``n`` rows, every one missing (made without a Python object per row)."""
        return TextColumn(Texts(np.zeros(n + 1, dtype=np.int64), b""), np.ones(n, dtype=np.bool_))


class Program:
    """The parts of a text per row, added in order; ``run`` writes the rows."""

    def __init__(self) -> None:
        self._parts: list[list[int]] = []
        self._columns: list[Any] = []
        self._literals: list[bytes] = []
        self._column_at: dict[int, int] = {}
        self._literal_at: dict[bytes, int] = {}
        self._keep: list[Any] = []

    def _column(self, array: NDArray[Any], dtype: type) -> int:
        key = id(array)
        if key not in self._column_at:
            self._column_at[key] = len(self._columns)
            self._columns.append(np.ascontiguousarray(array, dtype=dtype))
            self._keep.append(array)
        return self._column_at[key]

    def _literal(self, text: str | None) -> int:
        if text is None:
            return -1
        data = text.encode()
        if data not in self._literal_at:
            self._literal_at[data] = len(self._literals)
            self._literals.append(data)
        return self._literal_at[data]

    def _when(self, mask: Mask | None) -> int:
        if mask is None:
            return -1
        key = id(mask)
        if key not in self._column_at:
            self._column_at[key] = len(self._columns)
            flags = mask.view(np.uint8) if mask.dtype == np.bool_ and mask.flags.c_contiguous else mask
            self._columns.append(np.ascontiguousarray(flags, dtype=np.uint8))
            self._keep.append(mask)  # its id stays its own while the program lives
        return self._column_at[key]

    def _add(self, kind: int, arg: int, when: Mask | None, escape: int = 0, width: int = 0, missing: int = -1) -> None:
        part = [kind, arg, self._when(when), escape, width, missing, -1]
        last = self._parts[-1] if self._parts else None
        value = kind in (INT, HEX, LABEL, FLOAT, FIXED6)
        if value and last and last[0] == LITERAL and last[2] == part[2] and last[6] < 0:
            part[6] = last[1]  # the literal before a value is written with it: one part, not two
            self._parts.pop()
        self._parts.append(part)

    def text(self, text: str, when: Mask | None = None) -> Program:
        """A literal text."""
        if text:
            self._add(LITERAL, self._literal(text), when)
        return self

    def integer(self, values: Int, missing: str | None = None, when: Mask | None = None) -> Program:
        """An integer in decimal (``missing`` written where it is ``NONE``)."""
        self._add(INT, self._column(values, np.int64), when, missing=self._literal(missing))
        return self

    def hexadecimal(self, values: Int, digits: int, missing: str | None = None, when: Mask | None = None) -> Program:
        """An integer as ``0x`` and at least ``digits`` lower-case hexadecimal digits (of its
        64 bits unsigned), as ``f"0x{value:0{digits}x}"`` writes a non-negative one."""
        self._add(HEX, self._column(values, np.int64), when, width=digits, missing=self._literal(missing))
        return self

    def real(self, values: NDArray[np.float64], fixed6: bool = False, when: Mask | None = None) -> Program:
        """A float as Python's ``repr`` writes it (or with six decimals)."""
        self._add(FIXED6 if fixed6 else FLOAT, self._column(values, np.float64), when)
        return self

    def label(
        self, codes: Codes, texts: Texts, escape: int = NO_ESCAPE, missing: str | None = None, when: Mask | None = None
    ) -> Program:
        """The text of each row's code (``missing`` where the code is -1); with ``escape``,
        as a JSON string or a CSV cell."""
        if escape != NO_ESCAPE and len(texts) <= len(codes):  # few labels: each escaped once, here
            texts, escape = texts.escaped(escape), NO_ESCAPE
        return self._label(codes, texts, escape, missing, when)

    def _label(self, codes: Codes, texts: Texts, escape: int, missing: str | None, when: Mask | None) -> Program:
        arg = len(self._columns)
        self._columns.extend([np.ascontiguousarray(codes, dtype=np.int32), texts.offsets, texts.data])
        self._add(LABEL, arg, when, escape, missing=self._literal(missing))
        return self

    def column(
        self, column: TextColumn, escape: int = NO_ESCAPE, missing: str | None = None, when: Mask | None = None
    ) -> Program:
        """A text column's text (escaped row by row, in C)."""
        return self._label(column.codes(), column.texts, escape, missing, when)

    @contextmanager
    def padded(self, width: int, when: Mask | None = None) -> Iterator[Program]:
        """What the body adds, padded with spaces to ``width`` characters (on the left if
        ``width`` is negative)."""
        self._add(PAD_START, 0, when, width=width)
        yield self
        self._add(PAD_END, 0, when)

    def run(self, n: int) -> Texts:
        """The text of each of ``n`` rows."""
        offsets = np.zeros(n + 1, dtype=np.int64)
        pieces = self._write_split(n, offsets[1:])
        return Texts(offsets, b"".join(pieces))

    def lines(self, n: int) -> list[memoryview]:
        """The text of all ``n`` rows, one after the other, in pieces: views of this thread's
        buffers, valid until the next program runs in this thread (write them out before then)."""
        return self._write_split(n, np.zeros(n, dtype=np.int64))

    def _write_split(self, n: int, ends: Int) -> list[memoryview]:
        """All ``n`` rows: on a large batch, the second half written by the helper thread while
        this thread writes the first (the compiled writer lets go of the GIL), each into a buffer
        of this thread's. ``ends`` come out counted from the start of the first piece."""
        buffers = _buffers()
        half = n // 2
        if n < SPLIT_ROWS or not _kernel.AVAILABLE:
            return [self._write(n, ends, 0, buffers, 0)]
        later = _helper().submit(self._write, n - half, ends[half:], half, buffers, 1)
        try:
            first = self._write(half, ends[:half], 0, buffers, 0)
        finally:
            second = later.result()
        ends[half:] += len(first)
        return [first, second]

    def _write(self, n: int, ends: Int, first: int, buffers: _Buffers, which: int) -> memoryview:
        """Rows ``[first, first + n)`` into buffer ``which`` of ``buffers``."""
        parts = np.array(self._parts, dtype=np.int64).reshape(-1, 7)
        literals = self._literals or [b""]
        if not _kernel.AVAILABLE:  # the extension was not built: the same rows, written in Python
            return memoryview(_write_in_python(n, parts, self._columns, literals, ends, first))
        while True:
            out = buffers.of[which]
            size = _kernel.format_rows(n, parts, self._columns, literals, ends, out, first)
            if size >= 0:
                return memoryview(out)[:size]  # type: ignore[arg-type]
            buffers.of[which] = np.empty(max(2 * len(out), -size + len(out) // 4), dtype=np.uint8)


# Batches of at least this many rows are written by two threads (see ``Program._write_split``).
SPLIT_ROWS = 4096


class _Buffers:
    """The two text buffers of one thread (the second for the helper's half), reused from batch
    to batch so that their pages stay mapped."""

    def __init__(self) -> None:
        self.of = [np.empty(1 << 22, dtype=np.uint8), np.empty(1 << 22, dtype=np.uint8)]


_local = threading.local()
_helper_pool: list[ThreadPoolExecutor] = []
_helper_lock = threading.Lock()


def _buffers() -> _Buffers:
    """This thread's buffers."""
    buffers: _Buffers | None = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = _Buffers()
    return buffers


def _helper() -> ThreadPoolExecutor:
    """The one thread that writes second halves, started when first needed."""
    with _helper_lock:
        if not _helper_pool:
            _helper_pool.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="flannelcap-text"))
        return _helper_pool[0]


def _write_in_python(n: int, parts: Int, columns: list[Any], literals: list[bytes], ends: Int, first: int) -> bytes:
    """What ``kernel.format_rows`` writes, row by row in Python (slow; without the extension)."""
    out: list[bytes] = []
    size = 0
    for r in range(first, first + n):
        row: list[bytes] = []
        pad_at, pad_width = 0, 0
        for kind, arg, when, escape, width, missing, prefix in parts.tolist():
            if when >= 0 and not columns[when][r]:
                continue
            if prefix >= 0:
                row.append(literals[prefix])
            if kind == LITERAL:
                row.append(literals[arg])
            elif kind == INT:
                value = int(columns[arg][r])
                row.append(
                    literals[missing]
                    if value == _kernel.NONE and missing >= 0
                    else b""
                    if value == _kernel.NONE
                    else str(value).encode()
                )
            elif kind == HEX:
                value = int(columns[arg][r])
                if value != _kernel.NONE:
                    row.append(f"0x{value & 0xFFFF_FFFF_FFFF_FFFF:0{width}x}".encode())
                elif missing >= 0:
                    row.append(literals[missing])
            elif kind == FLOAT:
                row.append(repr(float(columns[arg][r])).encode())
            elif kind == FIXED6:
                row.append(f"{float(columns[arg][r]):.6f}".encode())
            elif kind == LABEL:
                code = int(columns[arg][r])
                if code < 0:
                    row.append(literals[missing] if missing >= 0 else b"")
                    continue
                offsets, data = columns[arg + 1], columns[arg + 2]
                text = bytes(data[int(offsets[code]) : int(offsets[code + 1])])
                if escape == JSON:
                    text = json.dumps(text.decode(), ensure_ascii=False).encode()
                elif escape == CSV:
                    text = csv_cell(text.decode()).encode()
                row.append(text)
            elif kind == PAD_START:
                pad_at, pad_width = len(row), width
            elif kind == PAD_END:
                body = b"".join(row[pad_at:]).decode()
                row[pad_at:] = [(body.rjust(-pad_width) if pad_width < 0 else body.ljust(pad_width)).encode()]
        line = b"".join(row)
        out.append(line)
        size += len(line)
        ends[r - first] = size
    return b"".join(out)
