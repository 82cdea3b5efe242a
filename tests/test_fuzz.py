"""Hardening: whatever a user feeds flannelcap, it raises only its own errors, keeps every
good packet, and prints one line instead of a traceback.

A quick property-based run (hypothesis) over the reader, both decoders, the HTTP
reassembler and every table parser; the replay of every input that ever broke something
(tests/regressions/, written by the long run in fuzz/run.py); and, per mutation family, how
many packets of a damaged capture survive.
"""

from __future__ import annotations

import io
import random
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pcapdata import pcap, vxlan_frame

from flannelcap import FlannelcapError, decode_file
from flannelcap.packets.http import MAX_HEAD_BYTES, HttpReassembler, parse_head
from flannelcap.packets.pipeline import RecordView, open_capture
from flannelcap.packets.reader import Frame
from flannelcap.packets.scapy_decoder import Decoder

sys.path.insert(0, str(REPO / "fuzz"))
from mutate import FAMILIES, mutate, mutate_text
from run import PARSERS, check_capture, check_table, check_topology, seeds

CAPTURES, TABLES = seeds()
QUICK = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def _both_engines(data: bytes) -> list[dict[str, object]] | None:
    """Every record of both engines, which must agree field by field on every packet (Info,
    HTTP and notes included); None when the file cannot be opened, which both must say.
    Only FlannelcapError may escape either engine, and only on open."""
    decoded: list[list[dict[str, object]] | None] = []
    engines = (lambda source: RecordView(open_capture(source)), lambda source: decode_file(source, engine="scapy"))
    for engine in engines:
        try:
            decoded.append([record.to_dict() for record in engine(io.BytesIO(data))])
        except FlannelcapError:
            decoded.append(None)
    fast, scapy = decoded
    if fast is None or scapy is None:
        assert fast is scapy, "one engine opens the file, the other does not"
        return None
    assert len(fast) == len(scapy)
    for ours, model in zip(fast, scapy, strict=True):
        assert ours == model, {k: (v, model[k]) for k, v in ours.items() if v != model[k]}
    return fast


@QUICK
@given(st.integers(0, len(CAPTURES) - 1), st.sampled_from(FAMILIES), st.integers(0, 2**32))
def test_mutated_captures(index: int, family: str, seed: int) -> None:
    _both_engines(mutate(CAPTURES[index], random.Random(seed), family))


@QUICK
@given(st.binary(max_size=200), st.sampled_from([1, 113, 276, 101, 228, 147]))
def test_random_frames_never_break_the_decoder(data: bytes, linktype: int) -> None:
    record = Decoder().decode(Frame(number=1, time_ns=0, linktype=linktype, data=data, wire_len=len(data)))
    assert (record.number, record.cap_len, record.wire_len) == (1, len(data), len(data))
    [both] = _both_engines(pcap([data], linktype=linktype)) or [None]
    assert both is not None and both["cap_len"] == len(data)


@QUICK
@given(st.binary(max_size=120), st.integers(0, 255), st.integers(0, 2**24 - 1))
def test_random_vxlan_payloads_decode_alike_in_both_engines(inner: bytes, flags: int, vni: int) -> None:
    """Anything inside a well-formed outer header: the compiled decoder takes what it can and
    must then say what Scapy says."""
    [record] = _both_engines(pcap([vxlan_frame(inner, flags=flags, vni=vni)])) or [None]
    assert record is not None and record["outer_dst_port"] == 8472
    assert record["vni"] == (vni if record["is_vxlan"] else None)


@QUICK
@given(st.binary(max_size=3000))
def test_random_bytes_as_a_capture(data: bytes) -> None:
    check_capture(data)
    check_capture(CAPTURES[0][:24] + data)  # a valid header, then anything


@QUICK
@given(st.sampled_from(sorted(k for k, v in TABLES.items() if v)), st.integers(0, 2**32))
def test_mutated_tables_raise_only_table_errors(kind: str, seed: int) -> None:
    rng = random.Random(seed)
    check_table(kind, mutate_text(rng.choice(TABLES[kind]), rng))


@QUICK
@given(st.integers(0, 2**32))
def test_mutated_topologies(seed: int) -> None:
    rng = random.Random(seed)
    check_topology({k: mutate_text(rng.choice(v), rng) for k, v in TABLES.items() if v})


@QUICK
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=300)), max_size=30))
def test_http_reassembler_takes_any_segments(segments: list[tuple[int, bytes]]) -> None:
    tracker = HttpReassembler()
    for seq, payload in segments:
        tracker.feed(("a", 1, "b", 2), seq, payload)


@QUICK
@given(st.binary(max_size=400))
def test_parse_head_takes_any_bytes(data: bytes) -> None:
    parse_head(b"HTTP/1.1 " + data)
    parse_head(b"GET " + data)


def test_every_regression_input_is_handled() -> None:
    inputs = sorted((REPO / "tests" / "regressions").glob("*.bin"))
    assert inputs, "the regression folder holds the inputs the long run found"
    for path in inputs:
        data = path.read_bytes()
        target = path.name.split("-")[0]
        if target == "capture":
            check_capture(data)
        elif target == "frame":
            Decoder().decode(Frame(number=1, time_ns=0, linktype=1, data=data, wire_len=len(data)))
        elif target == "table":
            check_table(path.name.split("-")[1], data.decode("utf-8", "surrogateescape"))
        elif target == "http":
            HttpReassembler().feed(("a", 1, "b", 2), 1, data)
        else:
            assert target == "topology"


def test_long_heads_and_tiny_segments_stay_linear() -> None:
    """A head that never ends, fed a byte at a time, is abandoned at MAX_HEAD_BYTES: the work
    per byte stays constant (the search only looks at new bytes)."""
    tracker = HttpReassembler()
    seq = 0
    assert tracker.feed(("a", 1, "b", 2), seq, b"GET / HTTP/1.1\r\n") is None
    seq += 16
    for _ in range(MAX_HEAD_BYTES + 10):
        assert tracker.feed(("a", 1, "b", 2), seq, b"x") is None
        seq += 1
    stream = tracker._streams[("a", 1, "b", 2)]
    assert not stream.collecting and len(stream.buffer) == 0


# -- how many packets survive each kind of damage ---------------------------------------------

SOURCE = (SAMPLES / "cross-node-http-client.pcap").read_bytes()
TOTAL = sum(1 for _ in decode_file(SAMPLES / "cross-node-http-client.pcap"))


def _survivors(data: bytes) -> int:
    records = _both_engines(data)
    return -1 if records is None else len(records)


def test_truncation_at_every_offset_keeps_every_complete_packet() -> None:
    ends, offset = [], 24
    while offset < len(SOURCE):
        caplen = int.from_bytes(SOURCE[offset + 8 : offset + 12], "little")
        offset += 16 + caplen
        ends.append(offset)
    for cut in range(24, len(SOURCE) + 1, 7):
        assert _survivors(SOURCE[:cut]) == sum(1 for end in ends if end <= cut)


def test_bit_flips_in_packet_bodies_keep_every_packet() -> None:
    rng = random.Random(7)
    header_spans = set()
    offset = 24
    while offset < len(SOURCE):
        header_spans.update(range(offset, offset + 16))
        offset += 16 + int.from_bytes(SOURCE[offset + 8 : offset + 12], "little")
    for _ in range(200):
        data = bytearray(SOURCE)
        at = rng.choice([i for i in range(24, len(data)) if i not in header_spans])
        data[at] ^= 1 << rng.randrange(8)
        assert _survivors(bytes(data)) == TOTAL  # the record headers are intact: every packet decodes


@pytest.mark.parametrize("family", ["vxlan", "ihl", "tcp-offset", "http"])
def test_header_damage_keeps_every_packet(family: str) -> None:
    for seed in range(20):
        assert _survivors(mutate(SOURCE, random.Random(seed), family)) == TOTAL


def test_ipv6_chains_add_one_packet() -> None:
    for seed in range(20):
        assert _survivors(mutate(SOURCE, random.Random(seed), "ipv6-chain")) == TOTAL + 1


def test_a_record_length_past_the_end_keeps_the_packets_before_it() -> None:
    data = bytearray(SOURCE)
    third = 24 + sum(16 + int.from_bytes(SOURCE[o + 8 : o + 12], "little") for o in _offsets()[:2])
    data[third + 8 : third + 12] = (0xFFFFFFF).to_bytes(4, "little")
    assert _survivors(bytes(data)) == 2


def _offsets() -> list[int]:
    offsets, offset = [], 24
    while offset < len(SOURCE):
        offsets.append(offset)
        offset += 16 + int.from_bytes(SOURCE[offset + 8 : offset + 12], "little")
    return offsets


def test_cli_on_damaged_files_exits_0_or_1_with_one_line(tmp_path: Path) -> None:
    rng = random.Random(3)
    for number in range(12):
        path = tmp_path / f"damaged-{number}.pcap"
        path.write_bytes(mutate(rng.choice(CAPTURES), rng))
        done = subprocess.run(
            [sys.executable, "-m", "flannelcap", "decode", "--json", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode in (0, 1)
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) <= 1, done.stderr


def test_parsers_cover_every_table_kind() -> None:
    assert set(PARSERS) == {"neigh", "fdb", "routes", "links", "nodes", "pods"}
    assert all(TABLES[kind] for kind in PARSERS)
