"""Every output of ``flannelcap decode`` and of the Python API is a view of the same column
batches: JSON lines, CSV, Parquet, ``Capture.packets``, ``decode_file`` records and the packet
list must agree cell for cell on every field — values, missing values, Info and notes — with
and without a topology, on every sample capture, a generated capture and a capture of layouts
the compiled decoder leaves to Scapy (notes, IPv6, a damaged VXLAN header)."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, SAMPLES, manifest
from pcapdata import GOOD_FRAME, NODE_A, NODE_B, POD_A, POD_B, inner_tcp, pcap, unusual_frames, vxlan_frame
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether

import flannelcap
from flannelcap.cli import _format
from flannelcap.packets.fields import BY_NAME, FIELD_NAMES, FIELDS

TABLES = {str(e["file"]): SAMPLES / str(e["file"]).replace(".pcap", ".tables") for e in manifest()}


def decode(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "flannelcap", "decode", *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _cell(name: str, value: Any) -> Any:
    """A value as JSON holds it: None for missing, lists for notes."""
    if (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or value is getattr(sys.modules.get("pandas"), "NA", object())
    ):
        return None
    if name == "notes":
        return list(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def from_csv(text: str) -> list[dict[str, Any]]:
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        cells: dict[str, Any] = {}
        for name in FIELD_NAMES:
            raw, kind = row[name], BY_NAME[name].kind
            if name == "notes":
                cells[name] = raw.split("; ") if raw else []
            elif raw == "":
                cells[name] = None
            elif kind == "int":
                cells[name] = int(raw)
            elif kind == "float":
                cells[name] = float(raw)
            elif kind in ("bool", "flag"):
                cells[name] = {"True": True, "False": False}[raw]
            else:
                cells[name] = raw
        rows.append(cells)
    return rows


def without_empty_texts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """CSV cannot tell an empty text from a missing one: both are an empty cell."""
    return [
        {k: (None if v == "" and BY_NAME[k].kind in ("label", "text") else v) for k, v in row.items()} for row in rows
    ]


def unusual_capture(path: Path) -> Path:
    """Layouts the compiled decoder leaves to Scapy among common ones, and packets with notes."""
    frames = [
        GOOD_FRAME(),
        vxlan_frame(inner_tcp(b'GET /a%20b?q="x" HTTP/1.1\r\nHost: web\r\n\r\n', seq=5)),
        *unusual_frames(),
        bytes(Ether() / IP(src=NODE_A, dst=NODE_B) / ICMP(type=3, code=4)),
        bytes(Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / ARP(op=5, psrc=NODE_A, pdst=NODE_B)),
        vxlan_frame(
            inner_tcp(b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", seq=7, sport=80, dport=40483, src=POD_B, dst=POD_A)
        ),
        GOOD_FRAME()[:60],
    ]
    path.write_bytes(
        pcap(frames, wire_lens=[len(f) + (40 if i == len(frames) - 1 else 0) for i, f in enumerate(frames)])
    )
    return path


def generated_capture(path: Path) -> Path:
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "make_capture.py"), str(path), "--packets", "3000", "--short"],
        check=True,
        capture_output=True,
    )
    return path


def _captures(tmp_path: Path) -> list[tuple[Path, Path | None]]:
    cases: list[tuple[Path, Path | None]] = []
    for name, tables in TABLES.items():
        cases.append((SAMPLES / name, None))
        cases.append((SAMPLES / name, tables))
    cases.append((generated_capture(tmp_path / "short.pcap"), None))
    cases.append((unusual_capture(tmp_path / "unusual.pcap"), None))
    cases.append((unusual_capture(tmp_path / "unusual-named.pcap"), TABLES["cross-node-http-client.pcap"]))
    return cases


def test_every_output_agrees_cell_for_cell(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    checked = 0
    for capture, tables in _captures(tmp_path):
        named = ["--tables", str(tables)] if tables else []
        reference = [json.loads(line) for line in decode("--json", str(capture), *named).splitlines()]
        assert reference and [list(r) for r in reference] == [list(FIELD_NAMES)] * len(reference)
        if tables and capture.name in TABLES:
            assert any(r["src_pod"] for r in reference), capture  # names really came from the tables

        assert without_empty_texts(from_csv(decode("--csv", str(capture), *named))) == without_empty_texts(reference)

        out = tmp_path / "out.parquet"
        decode("--parquet", str(out), str(capture), *named)
        parquet = [{k: _cell(k, v) for k, v in row.items()} for row in pq.read_table(out).to_pylist()]
        assert parquet == reference, capture

        cap = flannelcap.read(capture, topology=tables)
        frame = cap.packets
        assert list(frame.columns) == [*FIELD_NAMES, "src_ip", "dst_ip"]
        rows = [
            {name: _cell(name, value) for name, value in zip(FIELD_NAMES, values, strict=False)}
            for values in frame[list(FIELD_NAMES)].astype(object).itertuples(index=False, name=None)
        ]
        assert rows == reference, capture

        topology = cap.topology
        records = [r.to_dict() for r in flannelcap.decode_file(capture, topology=topology)]
        assert records == reference, capture

        table = decode(str(capture), *named).splitlines()
        by_record = [_format.table_row(r) for r in flannelcap.decode_file(capture, topology=topology)]
        assert table[1 : 1 + len(by_record)] == by_record, capture
        checked += len(reference)
    assert checked > 3000


def test_the_engines_agree_in_every_output(tmp_path: Path) -> None:
    capture = unusual_capture(tmp_path / "unusual.pcap")
    for output in ("--json", "--csv"):
        assert decode(output, str(capture)) == decode(output, "--engine", "scapy", str(capture))
    fast = decode(
        "--json", str(SAMPLES / "cross-node-http-any.pcap"), "--tables", str(TABLES["cross-node-http-any.pcap"])
    )
    scapy = decode(
        "--json",
        "--engine",
        "scapy",
        str(SAMPLES / "cross-node-http-any.pcap"),
        "--tables",
        str(TABLES["cross-node-http-any.pcap"]),
    )
    assert fast == scapy


def test_the_unusual_capture_really_goes_through_scapy(tmp_path: Path) -> None:
    """The agreement above covers rows the Scapy decoder filled: there are some, with notes."""
    source = flannelcap.decode_file(unusual_capture(tmp_path / "u.pcap"))
    records = list(source)
    assert source.fallback_frames == 6  # type: ignore[union-attr]
    assert sum(1 for r in records if r.notes) >= 4
    assert [r.info for r in records if r.proto == "icmp"] == ["Destination unreachable (code 4)"]
    assert [r.http_path for r in records if r.http_method] == ['/a%20b?q="x"']
    assert [(r.http_status, r.http_reason) for r in records if r.http_status is not None] == [(200, "")]


def test_the_field_table_is_the_kernels(tmp_path: Path) -> None:
    """The C enum and its names follow the field table (its kernel fields, in its order)."""
    source = (REPO / "flannelcap" / "packets" / "_ckernel.c").read_text()
    enum = re.search(r"enum \{\n(.*?)FIELD_COUNT", source, re.S)
    names = re.search(r"FIELD_NAMES\[FIELD_COUNT\] = \{(.*?)\};", source, re.S)
    assert enum and names
    kernel = [f.name for f in FIELDS if f.kernel]
    assert [n.strip().lower() for n in enum.group(1).split(",") if n.strip()] == kernel
    assert re.findall(r'"(\w+)"', names.group(1)) == kernel
    from flannelcap.packets import kernel as _kernel

    assert tuple(kernel) == _kernel.FIELDS and _kernel.AVAILABLE


def test_the_dataframe_types_follow_the_field_table() -> None:
    from flannelcap.packets.fields import pandas_dtype

    frame = flannelcap.read(SAMPLES / "cross-node-http-client.pcap").packets
    for f in FIELDS:
        assert str(frame[f.name].dtype) == pandas_dtype(f) or (
            f.kind == "text" and str(frame[f.name].dtype) == "string"
        ), f.name
    assert frame.outer_src_port.dtype.name == "Int32" and frame.http_method.dtype.name == "category"


@pytest.mark.parametrize("name", ["cross-node-http-client.pcap", "fault-wrong-fdb.pcap"])
def test_record_fields_match_the_field_table(name: str) -> None:
    record = next(iter(flannelcap.decode_file(SAMPLES / name)))
    assert list(record.to_dict()) == list(FIELD_NAMES)


def test_the_record_follows_the_field_table() -> None:
    """``PacketRecord``'s fields are the field table's, in its order."""
    import dataclasses

    record_fields = tuple(f.name for f in dataclasses.fields(flannelcap.PacketRecord) if f.name != "layers")
    assert record_fields == FIELD_NAMES == flannelcap.FIELD_NAMES


def test_without_the_extension_the_text_outputs_are_the_same() -> None:
    """As after installing without a C compiler: the rows are written by the Python twin of
    the compiled writer, and the labels made without the compiled hash — the same bytes."""
    hide = (
        "import sys, warnings; warnings.simplefilter('ignore'); sys.modules['flannelcap.packets._ckernel'] = None; "
        "from flannelcap.cli import main; sys.exit(main())"
    )
    sample = SAMPLES / "cross-node-http-any.pcap"
    named = ["--tables", str(TABLES["cross-node-http-any.pcap"])]
    for output in ([], ["--json"], ["--csv"]):
        done = subprocess.run(
            [sys.executable, "-c", hide, "decode", *output, str(sample), *named],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == decode(*output, str(sample), *named) and len(done.stdout.splitlines()) >= 55


def test_parquet_keeps_dictionaries_for_labels_and_statistics_for_numbers(tmp_path: Path) -> None:
    """Label columns are stored dictionary-encoded and numeric columns with min/max (what a
    reader filters row groups by); the text columns are stored plain. The run never imports
    pandas (pyarrow's ``pa.array`` would, for a quarter of a second)."""
    import pyarrow.parquet as pq

    sample = SAMPLES / "cross-node-http-any.pcap"
    out = tmp_path / "x.parquet"
    watch = (
        "import sys; from flannelcap.cli import main; code = main(); sys.exit(3 if 'pandas' in sys.modules else code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", watch, "decode", "--parquet", str(out), str(sample)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.returncode, done.stderr)
    group = pq.ParquetFile(out).metadata.row_group(0)
    chunks = {group.column(i).path_in_schema.split(".")[0]: group.column(i) for i in range(group.num_columns)}
    assert chunks["outer_src_ip"].dictionary_page_offset is not None
    assert "RLE_DICTIONARY" in chunks["outer_src_ip"].encodings
    assert chunks["info"].dictionary_page_offset is None
    assert chunks["info"].statistics is None or not chunks["info"].statistics.has_min_max
    frames = chunks["number"].statistics
    assert (frames.min, frames.max) == (1, group.num_rows)
    assert chunks["vni"].statistics.min == chunks["vni"].statistics.max == 1


def test_a_capture_without_packets_has_the_same_column_types(tmp_path: Path) -> None:
    from flannelcap.packets.fields import pandas_dtype

    empty = tmp_path / "header-only.pcap"
    empty.write_bytes(pcap([]))
    frame = flannelcap.read(empty).packets
    assert len(frame) == 0
    for f in FIELDS:
        assert str(frame[f.name].dtype) in (pandas_dtype(f), "string" if f.kind == "text" else "-"), f.name


def test_explain_names_an_unknown_conversation_in_one_line() -> None:
    from flannelcap import TopologyError

    cap = flannelcap.read(SAMPLES / "cross-node-http-client.pcap", topology=TABLES["cross-node-http-client.pcap"])
    assert cap.explain("busybox")[0].title  # the pod that starts the one conversation
    for unknown in ("no-such-pod", 7):
        with pytest.raises(TopologyError, match="no conversation"):
            cap.explain(unknown)
