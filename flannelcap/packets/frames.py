"""Arrow record batches, the DataFrame and ``PacketRecord``s: table views of the column batches.

Rule: pure. ``ColumnBatch``es in (with the ``Columns`` that made them: the labels), Arrow and
pandas objects out, with the schema the field table gives (``fields.FIELDS``): Parquet is the
Arrow batches written as they are; the DataFrame is built from the batches' columns at once; a
record is a row of an Arrow batch, made on demand. The text views (``lines``) follow the same
table, and a test holds all of them to the same cells.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from flannelcap.packets.columns import ColumnBatch, Columns, Labels
from flannelcap.packets.fields import BY_NAME, DERIVED, FIELD_NAMES, FIELDS, Field
from flannelcap.packets.growing import Growing, zeros
from flannelcap.packets.kernel import NONE, split_missing
from flannelcap.packets.records import PacketRecord
from flannelcap.packets.text import TextColumn, Texts

if TYPE_CHECKING:
    import pandas as pd

_LABEL = pa.dictionary(pa.int32(), pa.string())


def arrow_type(field: Field) -> pa.DataType:
    """A field's Arrow type: the same in every batch, in Parquet and in the DataFrame."""
    if field.kind == "int":
        return getattr(pa, f"int{field.width}")()
    return {
        "float": pa.float64(),
        "bool": pa.bool_(),
        "flag": pa.bool_(),
        "label": _LABEL,
        "text": pa.large_string(),
        "notes": pa.list_(pa.string()),
    }[field.kind]


SCHEMA = pa.schema([pa.field(f.name, arrow_type(f), nullable=f.kind != "bool") for f in FIELDS])

# How Parquet stores ``SCHEMA``: a dictionary page for the label columns only (they already are
# dictionaries; hashing every value of the numeric and text columns in search of repeats cost
# pyarrow a third of the writing time and made the file a fifth larger), and min/max statistics
# for the numeric columns only (what a reader filters row groups by; those of the label and text
# columns cost another fifth of the writing time).
PARQUET_OPTIONS: dict[str, Any] = {
    "use_dictionary": [f.name for f in FIELDS if f.kind == "label"],
    "write_statistics": [f.name for f in FIELDS if f.kind in ("int", "float", "bool", "flag")],
}


# -- Arrow --------------------------------------------------------------------------------


def _validity(missing: np.ndarray[Any, Any]) -> pa.Buffer | None:
    if not missing.any():
        return None
    return pa.py_buffer(np.packbits(~missing, bitorder="little"))


def _arrow_ints(values: np.ndarray[Any, Any], width: int) -> pa.Array:
    missing = values == NONE
    data = values.astype(f"int{width}", copy=False)
    return pa.Array.from_buffers(getattr(pa, f"int{width}")(), len(values), [_validity(missing), pa.py_buffer(data)])


# Arrays are made from their buffers here, never by ``pa.array``: pyarrow's ``pa.array`` imports
# pandas on its first call (to ask whether its argument is a Series), a quarter of a second
# that a Parquet run would spend on a library it does not use.


def _arrow_floats(values: np.ndarray[Any, Any]) -> pa.Array:
    data = np.ascontiguousarray(values, dtype=np.float64)
    return pa.Array.from_buffers(pa.float64(), len(values), [None, pa.py_buffer(data)])


def _arrow_bools(values: np.ndarray[Any, Any], missing: np.ndarray[Any, Any] | None = None) -> pa.Array:
    bits = pa.py_buffer(np.packbits(values, bitorder="little"))
    return pa.Array.from_buffers(pa.bool_(), len(values), [None if missing is None else _validity(missing), bits])


def _arrow_strings(texts: list[str]) -> pa.Array:
    """``texts`` as an Arrow string array."""
    block = Texts.of(texts)
    buffers = [None, pa.py_buffer(block.offsets.astype(np.int32)), pa.py_buffer(block.data)]
    return pa.Array.from_buffers(pa.string(), len(texts), buffers)


def arrow_batch(batch: ColumnBatch, columns: Columns) -> pa.RecordBatch:
    """The batch as an Arrow record batch in ``SCHEMA``."""
    arrays = []
    for f in FIELDS:
        if f.kind == "int":
            arrays.append(_arrow_ints(batch.ints[f.name], f.width))
        elif f.kind == "float":
            arrays.append(_arrow_floats(batch.floats[f.name]))
        elif f.kind == "bool":
            arrays.append(_arrow_bools(batch.bools[f.name]))
        elif f.kind == "flag":
            flags = batch.flags[f.name]
            arrays.append(_arrow_bools(flags == 1, flags < 0))
        elif f.kind == "label":
            codes = batch.codes[f.name]
            indices = pa.Array.from_buffers(pa.int32(), batch.n, [_validity(codes < 0), pa.py_buffer(codes)])
            arrays.append(pa.DictionaryArray.from_arrays(indices, _arrow_labels(columns.labels[f.name])))
        elif f.kind == "text":
            arrays.append(arrow_text(batch.texts[f.name]))
        else:
            arrays.append(_arrow_notes(batch))
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


def _arrow_labels(labels: Labels) -> pa.Array:
    """A column's labels as an Arrow string array."""
    return labels.derived("arrow", _arrow_strings)


def _arrow_notes(batch: ColumnBatch) -> pa.Array:
    """Each row's notes as a list of strings (empty where a row has none)."""
    counts = np.zeros(batch.n, dtype=np.int32)
    for row, notes in batch.notes.items():
        counts[row] = len(notes)
    offsets = np.zeros(batch.n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    texts = [note for row in sorted(batch.notes) for note in batch.notes[row]]
    starts = pa.Array.from_buffers(pa.int32(), batch.n + 1, [None, pa.py_buffer(offsets)])
    return pa.ListArray.from_arrays(starts, _arrow_strings(texts))


def records(batch: ColumnBatch, columns: Columns) -> Iterator[PacketRecord]:
    """The rows of a batch as ``PacketRecord``s (made here, on demand)."""
    arrow = arrow_batch(batch, columns)
    names = [n for n in FIELD_NAMES if n != "notes"]
    values = [arrow.column(n).to_pylist() for n in names]
    for row, each in enumerate(zip(*values, strict=True)):
        fields = {n: v for n, v in zip(names, each, strict=True) if v is not None}
        yield PacketRecord(notes=batch.notes.get(row, ()), **fields)


# -- the DataFrame ------------------------------------------------------------------------


class FrameBuilder:
    """Collects the columns of consecutive batches and makes one DataFrame of them at the end:
    labels become pandas Categoricals over the labels of the whole capture (codes stay valid as
    labels are added), text columns Arrow-backed strings, integers nullable pandas integers of
    the field's width, notes tuples. Values and masks go straight into buffers that grow in
    place (``growing``), which the DataFrame's columns then are: nothing is joined at the end,
    and a column missing in a batch writes only its mask."""

    def __init__(self, columns: Columns) -> None:
        self.columns = columns
        self.rows = 0
        self._room = 0
        self._values: dict[str, Growing] = {}
        self._missing: dict[str, Growing] = {}
        self._texts: dict[str, list[TextColumn | int]] = {}
        self._notes: dict[int, tuple[str, ...]] = {}
        for f in FIELDS:
            if f.kind in ("int", "flag"):
                self._values[f.name] = Growing(f"int{f.width}" if f.kind == "int" else np.bool_)
                self._missing[f.name] = Growing(np.bool_)
            elif f.kind in ("float", "bool"):
                self._values[f.name] = Growing(np.float64 if f.kind == "float" else np.bool_)
            elif f.kind == "label":
                self._values[f.name] = Growing(np.int8)
            elif f.kind == "text":
                self._texts[f.name] = []
        for name in DERIVED:
            self._values[name] = Growing(np.int8)

    def add(self, batch: ColumnBatch, rows_expected: int | None = None) -> None:
        """Add a batch's columns (integers narrowed to their field's width); ``rows_expected``:
        how many rows the whole capture is likely to have, if known (room is made for them)."""
        n = batch.n
        if rows_expected is not None and rows_expected > self._room:
            self._room = rows_expected
            for buffer in (*self._values.values(), *self._missing.values()):
                buffer.expect(rows_expected)
        for f in FIELDS:
            name = f.name
            if f.kind == "int":  # rows of missing values leave the data's pages untouched
                split_missing(batch.ints[name], self._values[name].reserve(n), self._missing[name].reserve(n))
            elif f.kind == "flag":  # only Trues written, as split_missing does
                flags = batch.flags[name]
                self._missing[name].reserve(n)[flags < 0] = True
                self._values[name].reserve(n)[flags == 1] = True
            elif f.kind == "float":
                self._values[name].append(batch.floats[name])
            elif f.kind == "bool":
                self._values[name].append(batch.bools[name])
            elif f.kind == "label":
                self._add_codes(name, batch.codes[name])
            elif f.kind == "text":
                column = batch.texts[name]
                nothing = column.missing is not None and bool(column.missing.all())
                self._texts[name].append(n if nothing else column)
            else:
                self._notes.update({self.rows + row: notes for row, notes in batch.notes.items()})
        for name in DERIVED:
            self._add_codes(name, batch.codes[name])
        self.rows += n

    def _add_codes(self, name: str, codes: np.ndarray[Any, Any]) -> None:
        column = self._values[name]
        wide = _code_type(len(self.columns.labels[name].texts))
        if wide.itemsize > column.dtype.itemsize:
            column.widen(wide)
        column.append(codes)

    def frame(self) -> pd.DataFrame:
        """The DataFrame of every batch added: the field vocabulary, then ``src_ip``/``dst_ip``."""
        import pandas as pd

        data: dict[str, Any] = {}
        for name in (*FIELD_NAMES, *DERIVED):
            f = BY_NAME.get(name)
            kind = f.kind if f is not None else "label"
            if kind == "notes":
                none = np.empty(1, dtype=object)
                none[0] = ()
                notes = none.repeat(self.rows)  # one shared empty tuple
                for row, value in self._notes.items():
                    notes[row] = value
                data[name] = notes
            elif kind == "text":
                chunks = [_missing_text(p) if isinstance(p, int) else arrow_text(p) for p in self._texts.pop(name)]
                data[name] = pd.StringDtype("pyarrow").__from_arrow__(pa.chunked_array(chunks, pa.large_string()))
            elif kind == "label":
                categories = pd.Index(self.columns.labels[name].texts, dtype=object)
                data[name] = pd.Categorical.from_codes(self._values.pop(name).values, categories=categories)
            elif kind == "int":
                data[name] = pd.arrays.IntegerArray(self._values.pop(name).values, self._missing.pop(name).values)
            elif kind == "flag":
                data[name] = pd.arrays.BooleanArray(self._values.pop(name).values, self._missing.pop(name).values)
            else:
                data[name] = self._values.pop(name).values
        return pd.DataFrame(data, copy=False)


def _code_type(labels: int) -> np.dtype[Any]:
    """The narrowest integers that hold codes of ``labels`` labels (as pandas picks them)."""
    return np.dtype(np.int8 if labels < 127 else np.int16 if labels < 32767 else np.int32)


def _missing_text(rows: int) -> pa.Array:
    """``rows`` missing texts, their offsets and validity in shared zero pages (no memory of their own)."""
    validity, offsets = zeros((rows + 7) // 8), zeros(8 * (rows + 1))
    buffers = [pa.py_buffer(validity), pa.py_buffer(offsets), pa.py_buffer(b"")]
    return pa.Array.from_buffers(pa.large_string(), rows, buffers)


def arrow_text(column: TextColumn) -> pa.Array:
    """A text column as an Arrow (large) string array, without copying its bytes."""
    validity = None if column.missing is None else _validity(column.missing)
    buffers = [validity, pa.py_buffer(column.texts.offsets), pa.py_buffer(column.texts.data)]
    return pa.Array.from_buffers(pa.large_string(), len(column), buffers)
