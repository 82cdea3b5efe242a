"""The packet list, JSON lines and CSV of decoded packets: text views of the column batches.

Rule: pure formatting. ``ColumnBatch``es in (with the ``Columns`` that made them: the labels),
text out; the caller writes it. Every row is written by one compiled program per batch
(``text.Program``), no Python step per packet; the fields follow the field table
(``fields.FIELDS``), as the Arrow and DataFrame views do (``frames``), so that all of them agree
cell for cell (a test holds them to it). No pyarrow or pandas here: the command line's text
outputs start without them.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from flannelcap.packets.columns import Codes, ColumnBatch, Columns, Labels
from flannelcap.packets.fields import FIELD_NAMES, FIELDS
from flannelcap.packets.info import PACKET_TYPE_WORDS
from flannelcap.packets.kernel import NONE
from flannelcap.packets.text import CSV, JSON, Program, TextColumn, Texts, csv_cell, gather
from flannelcap.packets.tunnels import encap_short


def take(batch: ColumnBatch, rows: np.ndarray[Any, Any]) -> ColumnBatch:
    """The rows ``rows`` (indices, in order) of a batch."""
    return ColumnBatch(
        n=len(rows),
        ints={k: v[rows] for k, v in batch.ints.items()},
        codes={k: v[rows] for k, v in batch.codes.items()},
        bools={k: v[rows] for k, v in batch.bools.items()},
        floats={k: v[rows] for k, v in batch.floats.items()},
        texts={k: _take_texts(v, rows) for k, v in batch.texts.items()},
        notes={new: batch.notes[old] for new, old in enumerate(rows.tolist()) if old in batch.notes},
        flags={k: v[rows] for k, v in batch.flags.items()},
    )


def _take_texts(column: TextColumn, rows: np.ndarray[Any, Any]) -> TextColumn:
    offsets = column.texts.offsets
    texts = gather(column.texts.data, offsets[rows], offsets[rows + 1] - offsets[rows])
    return TextColumn(texts, None if column.missing is None else column.missing[rows])


# -- text, JSON and CSV ---------------------------------------------------------------------

# The note the packet list adds where the inner destination MAC is another node's VTEP than the
# outer destination's: (before the VTEP's node, between, after the outer destination's node).
VTEP_MISMATCH = (" [inner dst MAC is ", "'s VTEP, outer dst is ", "]")


def vtep_mismatch_text(vtep_node: str, node: str) -> str:
    """The packet list's note for a packet sent to ``node`` with ``vtep_node``'s VTEP MAC inside."""
    before, between, after = VTEP_MISMATCH
    return f"{before}{vtep_node}{between}{node}{after}"


TABLE_HEADER = f"{'No.':>5} {'Time':>10}  {'Outer src → dst':<33} {'VNI':<6} {'Inner src → dst':<33} {'Proto':<6} Info"
_BOOLEANS = {JSON: Texts.of(["false", "true"]), CSV: Texts.of(["False", "True"])}


def _either(first: tuple[Codes, Labels], second: tuple[Codes, Labels]) -> tuple[Codes, Texts]:
    """Each row's first label, else its second (-1 if neither): as codes into one list."""
    (a, a_labels), (b, b_labels) = first, second
    shift = len(a_labels.texts)
    codes: Codes = np.where(a >= 0, a, np.where(b >= 0, b + shift, -1)).astype(np.int32)
    return codes, Texts.of(a_labels.texts + b_labels.texts)


def seen_text(if_name: str | None, ifindex: int | None, packet_type: str | None) -> str:
    """Where the packet list says a packet was seen, before its Info, as ``tcpdump -i any``
    does (``eth0 Out``): the interface (by name, else ``if<index>``) and the direction; "" for
    a capture that does not say."""
    where = if_name or (f"if{ifindex}" if ifindex is not None else "")
    word = PACKET_TYPE_WORDS.get(packet_type, packet_type) if packet_type else ""
    return " ".join(part for part in (where, word) if part)


def _seen(batch: ColumnBatch, columns: Columns) -> tuple[Codes, Texts]:
    """Each row's ``seen_text`` as codes into the distinct texts of the batch (-1: none)."""
    name, kind, index = batch.codes["if_name"], batch.codes["packet_type"], batch.ints["ifindex"]
    known = (name >= 0) | (kind >= 0) | (index != NONE)
    codes = np.full(batch.n, -1, dtype=np.int32)
    if not known.any():
        return codes, Texts.of([])
    combos, which = np.unique(np.stack([name, kind, index], axis=1)[known], axis=0, return_inverse=True)
    names, kinds = columns.labels["if_name"].texts, columns.labels["packet_type"].texts
    texts = [
        seen_text(names[a] if a >= 0 else None, None if b == NONE else int(b), kinds[k] if k >= 0 else None)
        for a, k, b in combos.tolist()
    ]
    codes[known] = which.reshape(-1)
    return codes, Texts.of(texts)


def table_lines(batch: ColumnBatch, columns: Columns) -> list[memoryview]:
    """One line per packet, like Wireshark's packet list with both layers shown (under
    ``TABLE_HEADER``): node names stand for outer IPs and pod names for inner IPs where known."""
    codes, labels, n = batch.codes, columns.labels, batch.n
    tunnel = batch.bools["is_tunnel"]
    encap = codes["encap"]
    encrypted = tunnel & np.isin(encap, [i for i, t in enumerate(labels["encap"].texts) if t == "wireguard"])
    has_vni = tunnel & (batch.ints["vni"] != NONE)

    def named(address: str, name: str) -> tuple[Codes, Texts]:
        return _either((codes[name], labels[name]), (codes[address], labels[address]))

    def pair(program: Program, src: tuple[Codes, Texts], dst: tuple[Codes, Texts], when: Any) -> None:
        program.label(*src, missing="?", when=when).text(" → ", when).label(*dst, missing="?", when=when)

    def macs(layer: str) -> tuple[tuple[Codes, Texts], tuple[Codes, Texts]]:
        return tuple(  # type: ignore[return-value]
            (codes[f"{layer}_{side}_mac"], labels[f"{layer}_{side}_mac"].encoded()) for side in ("src", "dst")
        )

    outer_ip = (codes["outer_src_ip"] >= 0) | (codes["outer_dst_ip"] >= 0)
    inner_ip = tunnel & ((codes["inner_src_ip"] >= 0) | (codes["inner_dst_ip"] >= 0))
    inner_mac = tunnel & ~inner_ip & ~encrypted
    pods = ~tunnel & ((codes["src_pod"] >= 0) | (codes["dst_pod"] >= 0))
    h2 = codes["http2_frames"] >= 0
    http = ((codes["http_method"] >= 0) | (batch.ints["http_status"] != NONE)) & ~h2
    proto_codes, proto_texts = _either((codes["proto"], labels["proto"]), (codes["outer_proto"], labels["outer_proto"]))
    proto_texts = Texts.of([t.upper() for t in proto_texts.to_list()])
    line = Program()
    with line.padded(-5):
        line.integer(batch.ints["number"])
    line.text(" ")
    with line.padded(-10):
        line.real(batch.floats["rel_time"], fixed6=True)
    line.text("  ")
    with line.padded(33):
        pair(line, named("outer_src_ip", "src_node"), named("outer_dst_ip", "dst_node"), outer_ip)
        pair(line, *macs("outer"), ~outer_ip)
    line.text(" ")
    with line.padded(6):
        routed = batch.flags["direct_routed"] == 1
        line.integer(batch.ints["vni"], "None", has_vni).text("-", ~tunnel & ~routed).text("routed", routed)
        short = labels["encap"].derived("short", lambda texts: Texts.of([encap_short(t) for t in texts]))
        line.label(encap, short, when=tunnel & ~has_vni)
    line.text(" ")
    with line.padded(33):
        pair(line, named("inner_src_ip", "src_pod"), named("inner_dst_ip", "dst_pod"), inner_ip)
        pair(line, *macs("inner"), inner_mac)
        line.text("(encrypted)", encrypted)
        line.text("(not VXLAN)", ~tunnel).text(" ", pods)
        pair(line, named("outer_src_ip", "src_pod"), named("outer_dst_ip", "dst_pod"), pods)
    line.text(" ")
    with line.padded(6):
        line.text("HTTP2", h2).text("HTTP", http).label(proto_codes, proto_texts, missing="?", when=~http & ~h2)
    line.text(" ")
    seen = _seen(batch, columns)
    line.label(*seen, when=seen[0] >= 0).text(" ", seen[0] >= 0)
    line.column(batch.texts["info"])
    mismatch = _vtep_mismatch(batch, columns)
    before, between, after = VTEP_MISMATCH
    line.text(before, mismatch).label(codes["dst_vtep_node"], labels["dst_vtep_node"].encoded(), when=mismatch)
    line.text(between, mismatch).label(codes["dst_node"], labels["dst_node"].encoded(), when=mismatch)
    line.text(after, mismatch)
    if batch.notes:
        suffix = _note_suffixes(batch, mismatch, columns)
        line.label(suffix[0], suffix[1], when=suffix[0] >= 0)
    line.text("\n")
    return line.lines(n)


def _vtep_mismatch(batch: ColumnBatch, columns: Columns) -> np.ndarray[Any, Any]:
    """Rows whose inner destination MAC is another node's VTEP than the outer destination's."""
    node, vtep = batch.codes["dst_node"], batch.codes["dst_vtep_node"]
    both = (node >= 0) & (vtep >= 0)
    if not both.any():
        return both
    node_texts = np.array(columns.labels["dst_node"].texts, dtype=object)
    vtep_texts = np.array(columns.labels["dst_vtep_node"].texts, dtype=object)
    rows = np.nonzero(both)[0]
    differ = both.copy()
    differ[rows] = node_texts[node[rows]] != vtep_texts[vtep[rows]]
    return differ


def _note_suffixes(batch: ColumnBatch, mismatch: np.ndarray[Any, Any], columns: Columns) -> tuple[Codes, Texts]:
    """The first note of each row with notes, in brackets, unless the Info already says it."""
    codes = np.full(batch.n, -1, dtype=np.int32)
    suffixes: list[str] = []
    info = batch.texts["info"].to_list()
    dst_node, dst_vtep = columns.labels["dst_node"].texts, columns.labels["dst_vtep_node"].texts
    for row, notes in batch.notes.items():
        text = info[row] or ""
        if mismatch[row]:
            node, vtep = batch.codes["dst_node"][row], batch.codes["dst_vtep_node"][row]
            text += vtep_mismatch_text(dst_vtep[vtep], dst_node[node])
        if notes and notes[0] not in text:
            codes[row] = len(suffixes)
            suffixes.append(f" [{notes[0]}]" if text else f"[{notes[0]}]")
    return codes, Texts.of(suffixes)


def _fields_program(batch: ColumnBatch, columns: Columns, escape: int, file: str | None) -> Program:
    """The fields of each row as JSON values or CSV cells, in the field vocabulary's order."""
    program = Program()
    missing = "null" if escape == JSON else ""
    if escape == JSON:
        program.text("{" + ("" if file is None else f'"file":{json.dumps(file, ensure_ascii=False)},'))
    elif file is not None:
        program.text(csv_cell(file) + ",")
    for i, f in enumerate(FIELDS):
        if escape == JSON:
            program.text(("," if i else "") + f'"{f.name}":')
        elif i:
            program.text(",")
        if f.kind == "int":
            program.integer(batch.ints[f.name], missing)
        elif f.kind == "float":
            program.real(batch.floats[f.name])
        elif f.kind == "bool":
            program.label(batch.bools[f.name].astype(np.int32), _BOOLEANS[escape])
        elif f.kind == "flag":
            program.label(batch.flags[f.name].astype(np.int32), _BOOLEANS[escape], missing=missing)
        elif f.kind == "label":
            program.label(batch.codes[f.name], columns.labels[f.name].encoded(), escape, missing)
        elif f.kind == "text":
            program.column(batch.texts[f.name], escape, missing)
        else:
            program.label(*_rendered_notes(batch, escape), escape=0 if escape == JSON else CSV)
    program.text("}\n" if escape == JSON else "\n")
    return program


def _rendered_notes(batch: ColumnBatch, escape: int) -> tuple[Codes, Texts]:
    codes = np.zeros(batch.n, dtype=np.int32)
    rendered = ["[]" if escape == JSON else ""]
    for row, notes in batch.notes.items():
        codes[row] = len(rendered)
        rendered.append(json.dumps(list(notes), ensure_ascii=False) if escape == JSON else "; ".join(notes))
    return codes, Texts.of(rendered)


def json_lines(batch: ColumnBatch, columns: Columns, file: str | None = None) -> list[memoryview]:
    """One JSON object per packet, keys in the field vocabulary (``file`` first, if given).
    The text (in pieces) is valid until the next view is made in this thread (see
    ``Program.lines``)."""
    return _fields_program(batch, columns, JSON, file).lines(batch.n)


def csv_header(file: bool = False) -> str:
    """The CSV header row (without its newline)."""
    return ",".join((("file",) if file else ()) + FIELD_NAMES)


def csv_rows(batch: ColumnBatch, columns: Columns, file: str | None = None) -> list[memoryview]:
    """The batch as CSV rows under ``csv_header``: missing values empty, notes joined with
    ``; ``, booleans ``True``/``False``, text quoted where it needs to be. Valid until the next
    view is made in this thread."""
    return _fields_program(batch, columns, CSV, file).lines(batch.n)
