"""The capture reader: formats, link types, and damage (truncated ≠ malformed)."""

from __future__ import annotations

import gzip
import io
import subprocess
from pathlib import Path

import pytest
from conftest import SAMPLES, require_tool
from pcapdata import pcap, pcapng

from flannelcap import CaptureFormatError, CaptureReader

FRAMES = [bytes([i]) * (60 + i) for i in range(3)]


def _read(data: bytes) -> tuple[list, CaptureReader]:
    reader = CaptureReader(io.BytesIO(data))
    return list(reader), reader


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("nanoseconds", [False, True])
def test_pcap_micro_and_nanoseconds_both_byte_orders(nanoseconds: bool, big_endian: bool) -> None:
    frames, reader = _read(pcap(FRAMES, nanoseconds=nanoseconds, big_endian=big_endian))
    assert [f.data for f in frames] == FRAMES
    assert [f.number for f in frames] == [1, 2, 3]
    assert [f.time_ns for f in frames] == [(1_700_000_000 + i) * 10**9 + 500_000_000 for i in range(3)]
    assert reader.problem is None and reader.format == "pcap"


def test_pcapng_several_interfaces_and_resolutions() -> None:
    data = pcapng(
        [(0, FRAMES[0]), (1, FRAMES[1]), (0, FRAMES[2])], interfaces=[(1, None), (276, 9)]
    )  # µs default; 10^-9 s ticks
    frames, reader = _read(data)
    assert [(f.interface, f.linktype, f.data) for f in frames] == [
        (0, 1, FRAMES[0]),
        (1, 276, FRAMES[1]),
        (0, 1, FRAMES[2]),
    ]
    assert [f.time_ns for f in frames] == [1_000_000 * 1000, 2_000_000, 3_000_000 * 1000]
    assert reader.problem is None and reader.format == "pcapng"


def test_gzip_compressed_pcap_and_pcapng(tmp_path: Path) -> None:
    for name, data in (
        ("a.pcap.gz", pcap(FRAMES)),
        ("b.pcapng.gz", pcapng([(0, f) for f in FRAMES], [(1, None)])),
    ):
        path = tmp_path / name
        path.write_bytes(gzip.compress(data))
        with CaptureReader(path) as reader:
            assert [f.data for f in reader] == FRAMES


def test_pcapng_written_by_mergecap_from_two_link_types(tmp_path: Path) -> None:
    require_tool("mergecap")
    merged = tmp_path / "both.pcapng"
    client, server = SAMPLES / "cross-node-http-client.pcap", SAMPLES / "cross-node-http-any.pcap"
    subprocess.run(["mergecap", "-F", "pcapng", "-w", str(merged), str(client), str(server)], check=True)
    with CaptureReader(merged) as reader:
        frames = list(reader)
        assert reader.format == "pcapng" and len(reader.interfaces) == 2
    with CaptureReader(client) as a, CaptureReader(server) as b:
        expected = sorted([(f.time_ns, f.data) for f in a] + [(f.time_ns, f.data) for f in b])
    assert sorted((f.time_ns, f.data) for f in frames) == expected
    assert {(f.interface, f.linktype) for f in frames} == {(0, 1), (1, 276)}  # Ethernet, cooked v2


def test_truncated_last_record_keeps_every_complete_one() -> None:
    data = pcap(FRAMES)[:-5]
    frames, reader = _read(data)
    assert [f.data for f in frames] == FRAMES[:2]
    assert reader.problem_kind == "truncated"
    assert "last record (3) is cut short" in (reader.problem or "")


def test_truncated_record_header() -> None:
    data = pcap(FRAMES) + b"\x01\x02\x03"
    frames, reader = _read(data)
    assert len(frames) == 3
    assert reader.problem_kind == "truncated"
    assert "inside the header of record 4" in (reader.problem or "")


def test_impossible_record_length_is_malformed_not_truncated() -> None:
    bad = bytearray(pcap(FRAMES))
    second = 24 + 16 + len(FRAMES[0])
    bad[second + 8 : second + 12] = (0x7FFFFFFF).to_bytes(4, "little")
    frames, reader = _read(bytes(bad))
    assert [f.data for f in frames] == FRAMES[:1]
    assert reader.problem_kind == "malformed"
    assert "record 2 claims 2147483647 bytes" in (reader.problem or "")


def test_pcapng_bad_block_length_stops_with_good_packets_kept() -> None:
    data = bytearray(pcapng([(0, f) for f in FRAMES], [(1, None)]))
    data += b"\x06\x00\x00\x00\x05\x00\x00\x00"  # a block claiming 5 bytes
    frames, reader = _read(bytes(data))
    assert len(frames) == 3
    assert reader.problem_kind == "malformed"


def test_pcapng_packet_on_undeclared_interface() -> None:
    frames, reader = _read(pcapng([(0, FRAMES[0]), (3, FRAMES[1])], [(1, None)]))
    assert len(frames) == 1
    assert "interface 3" in (reader.problem or "")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"GET / HTTP/1.1\r\n\r\n", "not a pcap or pcapng file"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "not a complete pcap file"),
        (gzip.compress(b"hello, world"), "not a pcap or pcapng file"),
    ],
)
def test_not_a_capture(data: bytes, message: str) -> None:
    with pytest.raises(CaptureFormatError, match=message):
        CaptureReader(io.BytesIO(data))


def test_missing_file_is_a_capture_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureFormatError, match="cannot open"):
        CaptureReader(tmp_path / "nope.pcap")


def test_cut_gzip_stream_is_truncated() -> None:
    data = gzip.compress(pcap(FRAMES * 50))
    frames, reader = _read(data[: len(data) // 2])
    assert 0 < len(frames) < 150
    assert reader.problem_kind == "truncated"


def test_reader_is_lazy() -> None:
    class Counting(io.BytesIO):
        reads = 0

        def read(self, size: int | None = -1) -> bytes:
            Counting.reads += 1
            return super().read(size)

    source = Counting(pcap([b"x" * 100] * 10_000))
    reader = CaptureReader(source)
    first = next(iter(reader))
    assert first.number == 1
    assert source.tell() < 1000  # one record read, not the whole million bytes


@pytest.mark.parametrize("big_endian", [False, True], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize("nanoseconds", [False, True], ids=["us", "ns"])
def test_timestamps_of_a_file_on_disk_agree_everywhere(tmp_path: Path, nanoseconds: bool, big_endian: bool) -> None:
    """The fast reader (a file on disk, not a stream), Scapy, the CLI, read() and tshark give
    the same capture times, in both units and both byte orders."""
    require_tool("tshark")
    import json
    import sys
    from decimal import Decimal

    from pcapdata import GOOD_FRAME

    import flannelcap
    from flannelcap import decode_file

    step = (123_456_789, 98_765_432) if nanoseconds else (123_456, 98_765)
    fractions = [step[0] + step[1] * i for i in range(4)]
    path = tmp_path / "times.pcap"
    path.write_bytes(pcap([GOOD_FRAME()] * 4, nanoseconds=nanoseconds, big_endian=big_endian, fractions=fractions))
    unit = Decimal(1) / (10**9 if nanoseconds else 10**6)
    expected = [Decimal(1_700_000_000 + i) + fraction * unit for i, fraction in enumerate(fractions)]
    tshark = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-T", "fields", "-e", "frame.time_epoch", "-e", "frame.time_relative"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert [Decimal(t) for t in tshark[0::2]] == expected  # the oracle reads the file as we wrote it
    relative = [Decimal(t) for t in tshark[1::2]]

    cli = subprocess.run(
        [sys.executable, "-m", "flannelcap", "decode", "--json", str(path)], capture_output=True, text=True, check=True
    )
    frame = flannelcap.read(path).packets
    views = {
        "fast": [(r.time, r.rel_time) for r in decode_file(path)],
        "scapy": [(r.time, r.rel_time) for r in decode_file(path, engine="scapy")],
        "cli": [(r["time"], r["rel_time"]) for r in map(json.loads, cli.stdout.splitlines())],
        "read": list(zip(frame["time"], frame["rel_time"], strict=True)),
    }
    for view, times in views.items():
        assert len(times) == 4, view
        for (time, rel), want, want_rel in zip(times, expected, relative, strict=True):
            # float seconds since 1970 hold about a quarter of a microsecond
            assert abs(Decimal(time) - want) < Decimal("0.0000003"), (view, time, want)
            assert abs(Decimal(rel) - want_rel) < Decimal("0.000000001"), (view, rel, want_rel)
