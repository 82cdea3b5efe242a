"""The compiled text writer (``packets.text.Program``): a program run over rows in C, in two
halves by two threads on a large batch, writes what the same program writes row by row in
Python — for every kind of part, from any first row; and byte ranges gathered into texts."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flannelcap.packets import kernel as _kernel
from flannelcap.packets.kernel import NONE
from flannelcap.packets.text import CSV, JSON, SPLIT_ROWS, Program, TextColumn, Texts, _write_in_python, gather

ROWS = 3 * SPLIT_ROWS + 7  # an odd count, so that the halves differ in length


def _program(rng: np.random.Generator, n: int) -> Program:
    """A program of every kind of part over ``n`` random rows: integers with missing values,
    floats, labels needing JSON and CSV escapes, a text column, padding and masks."""
    ints = rng.integers(-(10**12), 10**12, n)
    ints[rng.random(n) < 0.3] = NONE
    floats = rng.random(n) * 1e9
    floats[::97] = 0.0
    labels = Texts.of(["10.244.1.2", 'say "hi"', "a,b", "tab\there", "ünï", ""])
    codes = rng.integers(-1, len(labels), n).astype(np.int32)
    info = TextColumn.of([None if i % 11 == 0 else f'GET /p{i}?q="{i}" \\ ,x' for i in range(n)])
    mask = rng.random(n) < 0.5
    program = Program().text("{")
    with program.padded(-8):
        program.integer(ints, "null")
    program.text(",").real(floats).text(",").real(floats, fixed6=True).text(",").hexadecimal(ints, 4, "-", when=mask)
    program.text(",").label(codes, labels, JSON, "null").text(";").label(codes, labels, CSV, "", when=mask)
    with program.padded(12, when=~mask):
        program.label(codes, labels, missing="?", when=~mask)
    program.text(",").column(info, JSON, "null").text("}\n")
    return program


def _in_python(program: Program, n: int, first: int = 0) -> tuple[bytes, np.ndarray]:  # type: ignore[type-arg]
    parts = np.array(program._parts, dtype=np.int64).reshape(-1, 7)
    ends = np.zeros(n, dtype=np.int64)
    text = _write_in_python(n, parts, program._columns, program._literals, ends, first)
    return text, ends


@pytest.mark.skipif(not _kernel.AVAILABLE, reason="the compiled kernel is not built")
def test_two_halves_write_what_one_pass_in_python_writes() -> None:
    program = _program(np.random.default_rng(7), ROWS)
    pieces = program.lines(ROWS)
    assert len(pieces) == 2  # the batch is large enough to be split
    expected, expected_ends = _in_python(program, ROWS)
    assert b"".join(pieces) == expected
    texts = program.run(ROWS)
    assert texts.data == expected and texts.offsets[1:].tolist() == expected_ends.tolist()
    assert expected.count(b"}\n") == ROWS and 'q=\\"' in expected.decode()  # every row, escapes written


@pytest.mark.skipif(not _kernel.AVAILABLE, reason="the compiled kernel is not built")
@pytest.mark.parametrize("first,n", [(0, 1), (1, 5), (SPLIT_ROWS - 1, 2), (ROWS - 3, 3), (ROWS, 0)])
def test_rows_from_a_first_row(first: int, n: int) -> None:
    program = _program(np.random.default_rng(11), ROWS)
    parts = np.array(program._parts, dtype=np.int64).reshape(-1, 7)
    ends = np.zeros(n, dtype=np.int64)
    out = np.empty(1 << 20, dtype=np.uint8)
    size = _kernel.format_rows(n, parts, program._columns, program._literals, ends, out, first)
    expected, expected_ends = _in_python(program, n, first)
    assert bytes(out[:size]) == expected and ends.tolist() == expected_ends.tolist()


@pytest.mark.skipif(not _kernel.AVAILABLE, reason="the compiled kernel is not built")
@pytest.mark.parametrize("first,n", [(-1, 1), (ROWS, 1), (ROWS - 1, 2), (2**62, 1)])
def test_rows_outside_the_columns_are_refused(first: int, n: int) -> None:
    program = _program(np.random.default_rng(3), ROWS)
    parts = np.array(program._parts, dtype=np.int64).reshape(-1, 7)
    with pytest.raises(ValueError, match="format_rows"):
        _kernel.format_rows(
            n, parts, program._columns, program._literals, np.zeros(n, np.int64), np.empty(1 << 16, np.uint8), first
        )


@pytest.mark.skipif(not _kernel.AVAILABLE, reason="the compiled kernel is not built")
@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e-7, 1e9, 1e15, 1e16, 1e17, 1e22, 1e-300, 1e300])
def test_floats_are_written_as_python_repr_writes_them(scale: float) -> None:
    """Random values, values rounded to microseconds (capture times), their neighbours one
    last place down and powers of ten: the shortest text that reads back, as ``repr``."""
    rng = np.random.default_rng(int(abs(np.log10(scale))))
    values = rng.random(60_000) * scale
    values[::3] = np.round(values[::3], 6)
    values[1::7] = np.nextafter(values[1::7], 0)
    values[2::11] = 10.0 ** rng.integers(-30, 30, len(values[2::11]))
    values[5::13] *= -1
    written = Program().real(values).text("\n").run(len(values)).data.decode().split("\n")[:-1]
    assert written == [repr(v) for v in values.tolist()]


def test_hexadecimal_is_written_as_python_formats_it() -> None:
    """In C (where built) and in its Python twin: four digits at least, more where the value
    needs them, the missing text for NONE, a negative value as its 64 bits unsigned."""
    values = np.array([0, 0x1A2B, 0xFFFF, 0x12345, NONE, -5, 2**63 - 1], dtype=np.int64)
    program = Program().hexadecimal(values, 4, "None").text("\n")
    expected = ["0x0000", "0x1a2b", "0xffff", "0x12345", "None", "0xfffffffffffffffb", "0x7fffffffffffffff"]
    assert expected[:4] == [f"0x{v:04x}" for v in values[:4].tolist()]
    assert _in_python(program, len(values))[0].decode().split("\n")[:-1] == expected
    assert program.run(len(values)).data.decode().split("\n")[:-1] == expected


@pytest.mark.skipif(not _kernel.AVAILABLE, reason="the compiled kernel is not built")
def test_six_decimals_are_rounded_as_python_rounds_them() -> None:
    """Capture times (the packet list's column): correctly rounded, ties to even, signs kept."""
    rng = np.random.default_rng(5)
    values = np.concatenate(
        [rng.random(50_000) * 1e9, rng.random(50_000) * 10, -rng.random(1_000) * 1e-6, [0.0078125, 2.5e-7, -0.0, 1e13]]
    )
    values[::3] = np.nextafter(np.round(values[::3], 6) + 5e-7, 0)  # just below a tie
    written = Program().real(values, fixed6=True).text("\n").run(len(values)).data.decode().split("\n")[:-1]
    assert written == [f"{v:.6f}" for v in values.tolist()]


@pytest.mark.parametrize("compiled", [True, False])
def test_ranges_are_gathered_in_order_and_empty_ones_may_start_anywhere(
    compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not compiled:
        monkeypatch.setattr(_kernel, "AVAILABLE", False)
    buf = np.frombuffer(b"GET /a HTTP/1.1\r\nHost: web\r\n", dtype=np.uint8)
    texts = gather(buf, np.array([0, 4, 10_000, 23, 0]), np.array([3, 2, 0, 3, 0]))
    assert texts.offsets.tolist() == [0, 3, 5, 5, 8, 8]
    assert texts.to_list() == ["GET", "/a", "", "web", ""]


def test_a_range_outside_the_buffer_is_refused() -> None:
    buf = np.zeros(16, dtype=np.uint8)
    for start, length in ((10, 7), (-1, 2), (0, -1)):
        with pytest.raises(ValueError, match="outside the buffer"):
            _kernel.gather(buf, np.array([start]), np.array([length]))


@pytest.mark.skipif(not _kernel.AVAILABLE, reason="the compiled kernel is not built")
@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(st.characters(exclude_categories=("Cs",)), max_size=40), min_size=1, max_size=8))
def test_text_columns_escaped_in_c_read_back_as_json_and_csv(values: list[str]) -> None:
    """Escaped row by row in C (eight bytes at a time where nothing needs escaping): each JSON
    string loads back, and each CSV cell parses back, to the text it was made from."""
    column = TextColumn.of(values)
    n = len(values)
    as_json = Program().column(column, JSON).text("\n").run(n).to_list()
    assert [json.loads(line) for line in as_json] == values
    as_csv = Program().column(column, CSV).text(",x\n").run(n).to_list()
    parsed = [next(csv.reader(io.StringIO(line, newline=""))) for line in as_csv]
    assert parsed == [[value, "x"] for value in values]
