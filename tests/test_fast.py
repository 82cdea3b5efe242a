"""The fast path agrees with the Scapy decoder, field for field, and hands it what it cannot take."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO, SAMPLES, every_sample_pcap, require, require_tool
from hypothesis import given, settings
from hypothesis import strategies as st
from pcapdata import GOOD_FRAME, NODE_A, NODE_B, inner_tcp, pcap, unusual_frames, vxlan_frame
from scapy.layers.l2 import ARP, Ether

from flannelcap import decode_file
from flannelcap.packets import kernel as _kernel
from flannelcap.packets import read as _fastread
from flannelcap.packets.http import parse_head
from flannelcap.packets.kernel_columns import ConversationSet, padded
from flannelcap.packets.pipeline import RecordView, open_capture
from flannelcap.packets.read import PIECE_BYTES


def FastStream(source: Path | io.BytesIO) -> RecordView:
    """The fast engine's records, as every output makes them: rows of the pipeline's batches."""
    return RecordView(open_capture(source))


def scapy(source: Path | io.BytesIO) -> Any:
    """The Scapy decoder's records, packet by packet: the model."""
    return decode_file(source, engine="scapy")


def agree(path: Path | io.BytesIO) -> RecordView:
    """Decode with both engines; every field of every record must be equal."""
    slow = list(scapy(path if not isinstance(path, io.BytesIO) else io.BytesIO(path.getvalue())))
    fast_stream = FastStream(path if not isinstance(path, io.BytesIO) else io.BytesIO(path.getvalue()))
    fast = list(fast_stream)
    assert len(fast) == len(slow)
    for a, b in zip(slow, fast, strict=True):
        assert a.to_dict() == b.to_dict(), {
            k: (v, b.to_dict()[k]) for k, v in a.to_dict().items() if v != b.to_dict()[k]
        }
    return fast_stream


@pytest.mark.parametrize("name", every_sample_pcap())
def test_every_sample_capture_agrees(name: str) -> None:
    stream = agree(SAMPLES / name)
    assert stream.fallback_frames == 0  # the lab's captures are all common layouts


def test_the_benchmark_capture_agrees(tmp_path: Path) -> None:
    # make_capture.py writes the same packets whatever the count: these 12,000 are the first
    # 12,000 of the benchmark's million, byte for byte, and span three pieces of the reader.
    path = tmp_path / "bench.pcap"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "make_capture.py"), str(path), "--packets", "12000"],
        check=True,
        capture_output=True,
    )
    assert path.stat().st_size > 2 * PIECE_BYTES
    assert agree(path).fallback_frames == 0
    records = list(FastStream(path))
    assert sum(1 for r in records if r.http_method == "GET") == sum(1 for r in records if r.http_status == 200) > 200


def test_the_dns_benchmark_capture_agrees(tmp_path: Path) -> None:
    # Short calls with 30 % DNS lookups among them, as the benchmark's DNS-heavy capture.
    path = tmp_path / "dns.pcap"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "make_capture.py"),
            str(path),
            "--packets",
            "6000",
            "--short",
            "--dns",
            "0.3",
        ],
        check=True,
        capture_output=True,
    )
    assert agree(path).fallback_frames == 0
    records = list(FastStream(path))
    dns = [r for r in records if r.dns_id is not None]
    assert 0.29 < len(dns) / len(records) < 0.31
    answers = [r for r in dns if r.dns_response and r.dns_rcode == 0]
    assert answers and all(r.dns_addresses and r.dns_addresses.startswith("10.43.") for r in answers)
    assert {r.dns_qname for r in dns if r.dns_rcode == 3} == {"api.example.com.svc.cluster.local"}


def test_the_compiled_kernel_is_built() -> None:
    assert _kernel.AVAILABLE, _kernel.UNAVAILABLE


@pytest.mark.parametrize("piece", [600, 1500, 4096, 100_000])
def test_records_cut_across_pieces_agree(monkeypatch: pytest.MonkeyPatch, piece: int) -> None:
    """Pieces smaller than one record, a few records, many: every record is read whole once."""
    monkeypatch.setattr(_fastread, "PIECE_BYTES", piece)
    walks = []
    walk = _kernel.walk_pcap
    monkeypatch.setattr(_kernel, "walk_pcap", lambda *args: walks.append(1) or walk(*args))
    path = SAMPLES / "cross-node-large-transfer.pcap"
    stream = agree(path)
    assert stream.problem is None and stream.fallback_frames == 0
    assert len(walks) >= path.stat().st_size // piece  # the file was really read in pieces of that size
    stream = agree(SAMPLES / "cross-node-http-any.pcap")  # Linux cooked v2
    assert stream.problem is None and stream.fallback_frames == 0


def test_truncated_file_in_small_pieces(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(_fastread, "PIECE_BYTES", 3000)
    path = tmp_path / "cut.pcap"
    path.write_bytes((SAMPLES / "cross-node-large-transfer.pcap").read_bytes()[:-100])
    slow, fast = scapy(path), FastStream(path)
    assert [r.to_dict() for r in slow] == [r.to_dict() for r in fast]
    assert fast.problem == slow.problem and "is cut short" in str(fast.problem)


def test_the_kernel_refuses_buffers_too_small() -> None:
    frames = np.zeros(64 + _kernel.PAD, dtype=np.uint8)
    start, length = np.array([0], dtype=np.int64), np.array([64], dtype=np.int64)
    ports, prefixes, widths = np.array([8472], dtype=np.int64), np.zeros((1, 5), np.uint8), np.array([1], np.int64)
    too_few_rows = np.empty((0, len(_kernel.FIELDS)), dtype=np.int64)
    with pytest.raises(ValueError, match="rows left"):
        _kernel.decode_frames(
            frames, start, length, length, 1, ports, True, prefixes, widths, too_few_rows, np.empty(0, bool), 0
        )
    with pytest.raises(ValueError, match="outside the buffer"):
        _kernel.http_scan(frames, np.array([60], dtype=np.int64), np.array([500], dtype=np.int64))
    with pytest.raises(ValueError, match="size"):
        _kernel.walk_pcap(frames, len(frames) + 1, True, 1000)


_TOKENS = st.sampled_from(
    [b"GET", b"POST", b"get", b"TRACE", b"BREW", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/", b"HTTP", b"/", b"/a b",
     b"200", b"20x", b"\xb2", b"OK", b"Not Found", b"", b" ", b"  ", b"\t"]
)  # fmt: skip
_HEADERS = st.sampled_from(
    [b"Host: web", b"host:  10.244.1.5 ", b"Content-Length: 12", b"content-length:0", b"CONTENT-LENGTH: \t7\r",
     b"Content-Length: 1x", b"Content-Length: ", b"Content-Length: 123456789012345678901234", b"Content-Length 5",
     b"Content_Length: 9", b"Content-Length: 99999999999999999", b"X: y", b"content-length: 5\n6"]
)  # fmt: skip


@given(
    start=st.lists(_TOKENS, max_size=5).map(b" ".join),
    headers=st.lists(_HEADERS, max_size=4),
    body=st.binary(max_size=8),
)
@settings(max_examples=400, deadline=None)
def test_http_scan_decides_like_parse_head(start: bytes, headers: list[bytes], body: bytes) -> None:
    head = b"\r\n".join([start, *headers])
    payload = head + b"\r\n\r\n" + body
    buf = padded(payload)
    ends, kinds, lengths = _kernel.http_scan(buf, np.array([0], np.int64), np.array([len(payload)], np.int64))
    end = payload.find(b"\r\n\r\n")
    assert ends[0] == end
    parsed = parse_head(payload[:end])
    if kinds[0] == _kernel.ASK_PYTHON:  # only for a Content-Length too long for the kernel's integers
        at = payload[:end].lower().find(b"\r\ncontent-length:")
        value = payload[at + 17 :].split(b"\r\n")[0].strip()
        assert at >= 0 and value.isdigit() and len(value) > 18
        return
    assert kinds[0] == (
        _kernel.NOT_HTTP if parsed is None else _kernel.REQUEST if parsed.method is not None else _kernel.RESPONSE
    )
    if parsed is not None:
        assert lengths[0] == (parsed.content_length if parsed.content_length is not None else -1)


def test_unusual_packets_fall_back_to_scapy_and_are_counted() -> None:
    unusual = unusual_frames()
    common = [GOOD_FRAME(), vxlan_frame(inner_tcp(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", seq=5))]
    data = pcap([*common, *unusual, *common])
    stream = agree(io.BytesIO(data))
    assert stream.fallback_frames == len(unusual)


def test_snaplen_cut_and_truncated_files_agree() -> None:
    frames = [GOOD_FRAME()] * 3
    cut = pcap([f[:60] for f in frames], wire_lens=[len(f) for f in frames])
    assert agree(io.BytesIO(cut)).fallback_frames == 3
    whole = (SAMPLES / "cross-node-http-client.pcap").read_bytes()
    slow, fast = scapy(io.BytesIO(whole[:-7])), FastStream(io.BytesIO(whole[:-7]))
    assert len(list(slow)) == len(list(fast)) == 13
    assert fast.problem == slow.problem and "is cut short" in str(fast.problem)


def test_truncated_plain_file_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "cut.pcap"
    path.write_bytes((SAMPLES / "cross-node-large-transfer.pcap").read_bytes()[:-100])
    slow, fast = scapy(path), FastStream(path)
    assert [r.to_dict() for r in slow] == [r.to_dict() for r in fast]
    assert fast.problem == slow.problem


def test_pcapng_and_gzip_go_through_the_reader(tmp_path: Path) -> None:
    require_tool("mergecap")
    merged = tmp_path / "both.pcapng"
    subprocess.run(
        [
            "mergecap",
            "-F",
            "pcapng",
            "-w",
            str(merged),
            str(SAMPLES / "cross-node-http-client.pcap"),
            str(SAMPLES / "cross-node-http-any.pcap"),
        ],
        check=True,
    )
    agree(merged)
    packed = tmp_path / "c.pcap.gz"
    packed.write_bytes(gzip.compress((SAMPLES / "cross-node-large-transfer.pcap").read_bytes()))
    agree(packed)


def flannelcap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flannelcap", *args], capture_output=True, text=True, timeout=120)


def test_summary_engines_agree() -> None:
    for name in ("cross-node-http-any.pcap", "cross-node-large-transfer.pcap", "fault-wrong-fdb.pcap"):
        fast = flannelcap("decode", "--summary", str(SAMPLES / name))
        slow = flannelcap("decode", "--summary", "--engine", "scapy", str(SAMPLES / name))
        assert fast.returncode == slow.returncode == 0
        assert fast.stdout == slow.stdout and "packets:" in fast.stdout


def test_json_engines_agree() -> None:
    fast = flannelcap("decode", "--json", str(SAMPLES / "cross-node-http-any.pcap"))
    slow = flannelcap("decode", "--json", "--engine", "scapy", str(SAMPLES / "cross-node-http-any.pcap"))
    assert fast.stdout == slow.stdout and len(fast.stdout.splitlines()) == 55


def test_parquet_holds_every_packet(tmp_path: Path) -> None:
    require(importlib.util.find_spec("pyarrow") is not None, "needs pyarrow (the [parquet] extra)")
    import pyarrow.parquet as pq

    out = tmp_path / "p.parquet"
    done = flannelcap("decode", "--parquet", str(out), str(SAMPLES / "cross-node-large-transfer.pcap"))
    assert done.returncode == 0, done.stderr
    table = pq.read_table(out).to_pandas()
    records = list(decode_file(SAMPLES / "cross-node-large-transfer.pcap"))
    assert len(table) == len(records) == 800
    assert list(table.number) == [r.number for r in records]
    assert list(table.outer_src_ip.astype(object).fillna("")) == [r.outer_src_ip or "" for r in records]
    assert list(table.vni.fillna(-1).astype(int)) == [r.vni if r.vni is not None else -1 for r in records]
    assert table.http_method.dropna().astype(str).tolist() == ["GET"]
    assert json.loads(
        flannelcap("decode", "--json", "--packets", "5", str(SAMPLES / "cross-node-large-transfer.pcap")).stdout
    )["tcp_seq"] == int(table.tcp_seq[4])


def test_detail_needs_scapy() -> None:
    done = flannelcap("decode", "-v", "--engine", "fast", str(SAMPLES / "cross-node-http-client.pcap"))
    assert done.returncode == 1 and "-v needs every field of every layer" in done.stderr
    assert flannelcap("decode", "-v", str(SAMPLES / "cross-node-http-client.pcap")).returncode == 0


def test_without_the_compiled_kernel_everything_goes_to_scapy_with_a_warning() -> None:
    """As after installing without a C compiler: the extension cannot be imported."""
    hide = (
        "import sys; sys.modules['flannelcap.packets._ckernel'] = None; "
        "from flannelcap.cli import main; sys.exit(main())"
    )
    sample = str(SAMPLES / "cross-node-http-any.pcap")
    done = subprocess.run(
        [sys.executable, "-c", hide, "decode", "--summary", sample], capture_output=True, text=True, timeout=120
    )
    scapy = flannelcap("decode", "--summary", "--engine", "scapy", sample)
    assert done.returncode == 0
    assert done.stderr.startswith("flannelcap: warning: the compiled fast path was not built")
    assert done.stdout == scapy.stdout + "55 packets decoded by Scapy (the fast path is not built)\n"
    forced = subprocess.run(
        [sys.executable, "-c", hide, "decode", "--engine", "fast", sample], capture_output=True, text=True, timeout=120
    )
    assert forced.returncode == 1 and "use --engine scapy" in forced.stderr


def test_pieces_holding_more_frames_than_a_batch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    arp = bytes(Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=NODE_A, pdst=NODE_B))
    path = tmp_path / "arp.pcap"
    path.write_bytes(pcap([arp] * 40_000))  # 2.3 MB: one piece of 40,000 frames, more than a batch holds
    stream = open_capture(path)
    summary = stream.summary()
    assert summary.packets == summary.other_packets == 40_000 and stream.fallback_frames == 0
    monkeypatch.setattr(_fastread, "BATCH_FRAMES", 5)
    assert [b.n for b in open_capture(SAMPLES / "cross-node-http-client.pcap")] == [5, 5, 4]
    agree(SAMPLES / "cross-node-large-transfer.pcap")


def test_parquet_columns_keep_their_types_from_batch_to_batch(tmp_path: Path) -> None:
    """The first batch holds no HTTP and no VXLAN: the columns must not be fixed to Arrow's
    null type there, or the later batch that has them could not be written."""
    require(importlib.util.find_spec("pyarrow") is not None, "needs pyarrow (the [parquet] extra)")
    import pyarrow.parquet as pq

    arp = bytes(Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=NODE_A, pdst=NODE_B))
    get = vxlan_frame(inner_tcp(b"GET /x HTTP/1.1\r\nHost: web\r\n\r\n", seq=9))
    capture = tmp_path / "late-http.pcap"
    capture.write_bytes(pcap([arp] * 33_000 + [get]))
    out = tmp_path / "late-http.parquet"
    done = flannelcap("decode", "--parquet", str(out), str(capture))
    assert done.returncode == 0, done.stderr
    table = pq.read_table(out)
    assert (
        table.num_rows == 33_001
        and str(table.schema.field("http_method").type) == "dictionary<values=string, indices=int32, ordered=0>"
    )
    last = table.slice(33_000).to_pylist()[0]
    assert (last["http_method"], last["http_path"], last["http_host"], last["vni"]) == ("GET", "/x", "web", 1)


def test_conversation_set_keeps_every_conversation_as_its_table_grows() -> None:
    field = {name: i for i, name in enumerate(_kernel.FIELDS)}
    conversations = ConversationSet()
    for batch in range(3):  # 3 × 20,000 conversations, each seen twice (both directions)
        capacity = 41_000 + 1000 * batch  # a batch's fields fill the first columns of the kernel's matrix
        values = np.full((len(_kernel.FIELDS), capacity), -1, dtype=np.int64)
        ids = np.arange(20_000) + 20_000 * batch
        client, server = 0x0A2A0000 + ids, np.full(20_000, 0x0A2A0100)
        columns = {name: values[i, :40_000] for i, name in enumerate(_kernel.FIELDS)}
        columns["is_vxlan"][:] = columns["is_tunnel"][:] = columns["encap"][:] = 1  # VXLAN
        columns["proto"][:] = 6
        columns["inner_src_ip"][:] = np.concatenate([client, server])
        columns["inner_dst_ip"][:] = np.concatenate([server, client])
        columns["src_port"][:] = np.concatenate([40_000 + ids % 1000, np.full(20_000, 80)])
        columns["dst_port"][:] = np.concatenate([np.full(20_000, 80), 40_000 + ids % 1000])
        values[:, 40_000:] = values[:, : capacity - 40_000]  # beyond the batch's rows: repeats that must not count
        values[field["inner_src_ip"], 40_000:] += 1 << 24
        conversations.add(values, np.ones(40_000, bool))
        assert conversations.count == 20_000 * (batch + 1)
    named = conversations.named()
    assert len(named) == 60_000
    assert ("tcp", ("10.42.0.0", 40000), ("10.42.1.0", 80)) in named
    assert ("tcp", ("10.42.1.0", 80), ("10.42.234.95", 40999)) in named  # ends in text order, as the Scapy path


# The 8 flag bits from the lowest up, as Wireshark names them; written here, not imported, so
# that the table the code uses is checked and not merely repeated.
FLAG_BITS = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")


def test_every_tcp_flag_combination_agrees_and_is_named_bit_for_bit() -> None:
    from pcapdata import every_tcp_flag_combination

    stream = agree(io.BytesIO(pcap(every_tcp_flag_combination())))
    assert stream.fallback_frames == 0  # all 256 went through the compiled decoder
    records = list(FastStream(io.BytesIO(pcap(every_tcp_flag_combination()))))
    for bits, record in enumerate(records):
        names = [name for i, name in enumerate(FLAG_BITS) if bits >> i & 1]
        assert record.tcp_flags == (", ".join(names) if names else "<none>"), bits
        assert record.src_port == 30000 + bits
    assert records[0xC2].tcp_flags == "SYN, ECE, CWR"  # an ECN-setup SYN
    assert records[0x52].tcp_flags == "SYN, ACK, ECE"  # its ECN-setup SYN-ACK


def test_vlan_ids_leave_out_the_priority_bits() -> None:
    from scapy.layers.l2 import Dot1Q

    tagged = Ether(bytes(vxlan_frame(inner_tcp(b"", flags="S"))))
    frame = Ether(src=tagged.src, dst=tagged.dst) / Dot1Q(prio=5, dei=1, vlan=100) / tagged.payload
    stream = agree(io.BytesIO(pcap([bytes(frame)])))
    assert stream.fallback_frames == 0
    [record] = list(FastStream(io.BytesIO(pcap([bytes(frame)]))))
    assert (record.vlan, record.vni, record.inner_src_ip) == (100, 1, "10.42.3.51")


def test_a_udp_checksum_that_computes_to_zero_is_sent_as_ffff() -> None:
    """RFC 768: a computed checksum of 0 goes on the wire as 0xFFFF (0 means "none")."""
    frame = bytearray(vxlan_frame(inner_tcp(b"\0\0rest of the payload")))
    udp = 14 + 20
    checksum = int.from_bytes(frame[udp + 6 : udp + 8], "big")
    payload = udp + 8 + 8 + 14 + 20 + 20  # the inner TCP payload's first word (even offset from UDP)
    frame[payload : payload + 2] = checksum.to_bytes(2, "big")  # adding it makes the sum 0xFFFF
    frame[udp + 6 : udp + 8] = b"\xff\xff"
    from scapy.layers.inet import UDP

    assert UDP in Ether(bytes(frame)) and Ether(bytes(frame))[UDP].chksum == 0xFFFF
    stream = agree(io.BytesIO(pcap([bytes(frame)])))
    assert stream.fallback_frames == 0
    [record] = list(FastStream(io.BytesIO(pcap([bytes(frame)]))))
    assert (record.outer_udp_checksum, record.outer_udp_checksum_ok) == (0xFFFF, True)


def test_a_first_fragment_is_not_a_whole_packet() -> None:
    from scapy.layers.inet import IP

    whole = Ether(bytes(vxlan_frame(inner_tcp(b"x" * 40))))
    whole[IP].flags = "MF"  # more fragments follow; the offset stays 0
    del whole[IP].chksum
    data = bytes(whole)
    assert agree(io.BytesIO(pcap([data]))).fallback_frames == 1  # fragments are Scapy's, with their note
    [record] = list(FastStream(io.BytesIO(pcap([data]))))
    assert record.outer_fragment is True and record.vni == 1  # the first one holds the headers
    assert record.notes == ("outer IPv4 fragment (offset 0, more follow): not reassembled",)


def test_a_body_that_looks_like_a_head_is_body() -> None:
    """Content-Length says how much body follows; a head-like text inside it is not a head."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n"
    body = b"HTTP/1.1 404 Not Found\r\n\r\n".ljust(40, b".")
    back = {"src": "10.42.2.23", "dst": "10.42.3.51", "sport": 80, "dport": 40482}
    frames = [
        vxlan_frame(inner_tcp(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", seq=1)),
        vxlan_frame(inner_tcp(head, seq=5000, **back)),  # type: ignore[arg-type]
        vxlan_frame(inner_tcp(body, seq=5000 + len(head), **back)),  # type: ignore[arg-type]
    ]
    assert agree(io.BytesIO(pcap(frames))).fallback_frames == 0
    records = list(FastStream(io.BytesIO(pcap(frames))))
    assert [(r.http_method, r.http_status) for r in records] == [("GET", None), (None, 200), (None, None)]


def test_keep_alive_reports_every_request_and_response() -> None:
    """Several exchanges on one connection (HTTP keep-alive): each head once, in both engines."""
    back = {"src": "10.42.2.23", "dst": "10.42.3.51", "sport": 80, "dport": 40482}
    frames, seq, ack = [], 0xFFFFFF00, 7000  # the client's sequence numbers wrap past 2^32
    for path in ("/one", "/two", "/three"):
        request = f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode()
        response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        frames.append(vxlan_frame(inner_tcp(request, seq=seq % 2**32)))
        frames.append(vxlan_frame(inner_tcp(response, seq=ack, **back)))  # type: ignore[arg-type]
        seq, ack = seq + len(request), ack + len(response)
    assert agree(io.BytesIO(pcap(frames))).fallback_frames == 0
    records = list(FastStream(io.BytesIO(pcap(frames))))
    assert [r.http_path for r in records if r.http_method] == ["/one", "/two", "/three"]
    assert [r.http_status for r in records] == [None, 200] * 3


def test_encoder_ids_stay_in_order_of_first_sight_as_its_table_grows() -> None:
    encoder = _kernel.Encoder(2)
    first = np.stack([np.arange(10), np.arange(10) * 7], axis=1)
    assert encoder.ids(first).tolist() == list(range(10))
    # one call much larger than the table: grown at once to the size needed, earlier ids kept
    more = np.stack([np.arange(100_000) % 50_000, (np.arange(100_000) % 50_000) * 7], axis=1)
    ids = encoder.ids(more)
    assert encoder.count == 50_000 and len(encoder._table) == 1 << 18  # chunks of 65,536 keys: room for 50,000 + 65,536
    assert ids[:10].tolist() == list(range(10)) and ids[10:12].tolist() == [10, 11]
    assert (ids[50_000:] == ids[:50_000]).all()
    unseen = encoder.ids(np.array([[50_000, 350_000], [3, 21], [_kernel.NONE, 0]]), create=False)
    assert unseen.tolist() == [-1, 3, -1] and encoder.count == 50_000


def test_summary_counts_vnis_and_tunnel_rules_the_same_whether_columns_are_made_or_not(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Counted in the reading thread while columns are made (``iter``), or alone
    (``summary()``): one batch of mixed VNIs and ports, another of one VNI only."""
    monkeypatch.setattr(_fastread, "BATCH_FRAMES", 20)
    mixed = [vxlan_frame(inner_tcp(), vni=v, port=p) for v, p in [(1, 8472), (2, 8472), (7, 4789), (2, 4789)] * 5]
    path = tmp_path / "vnis.pcap"
    path.write_bytes(pcap(mixed + [vxlan_frame(inner_tcp(), vni=3)] * 6))
    for walk in (True, False):
        source = open_capture(path)
        if walk:
            assert [batch.n for batch in source] == [20, 6]
        summary = source.summary()
        assert summary.packets == 26 and summary.other_packets == 0
        assert dict(summary.vxlan_by_vni) == {1: 5, 2: 10, 7: 5, 3: 6}
        assert dict(summary.tunnel_rules) == {"vxlan on UDP 8472": 16, "vxlan on UDP 4789": 10}


@pytest.mark.parametrize("seed", range(5))
def test_closed_directions_are_forgotten_and_the_others_still_found(seed: int) -> None:
    """The HTTP search's table forgets a direction ``CLOSED_KEPT_NS`` after its FIN or RST
    (linear probing's deletion: 30 directions in 64 rows, long runs of probes, a third of them
    closed in random order); each other is still found, and each forgotten one is not."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 1 << 40, size=(30, 2), dtype=np.int64)
    table = np.full((64, _kernel.HTTP_STATE), _kernel.NONE, dtype=np.int64)
    closings = _kernel.Closings()
    part = b"GET /not-yet-ended"  # a head not complete: its direction is sent to the reassembler
    count = 0

    def follow(rows: np.ndarray, when_s: int, hint: bool, closing: bool) -> list[int]:
        nonlocal count
        n = len(rows)
        segments = (
            keys[rows, 0], keys[rows, 1], np.arange(n, dtype=np.int64) * 100, np.full(n, hint),
            np.zeros(n, dtype=np.int64), np.full(n, 0 if closing else len(part), dtype=np.int64),
        )  # fmt: skip
        times = np.full(n, when_s * 1_000_000_000, dtype=np.int64)
        kinds, _, count = _kernel.http_follow(
            table, count, padded(part), segments, times, np.full(n, closing), 10_000_000_000, closings
        )
        return kinds.tolist()

    every = np.arange(30)
    assert follow(every, 0, hint=True, closing=False) == [_kernel.FRESH_TO_REASSEMBLER] * 30 and count == 30
    gone = rng.permutation(30)[:10]
    assert follow(gone, 1, hint=False, closing=True) == [_kernel.TO_REASSEMBLER] * 10  # FINs with no payload
    assert follow(every, 10, hint=False, closing=False) == [_kernel.TO_REASSEMBLER] * 30  # 9 s later: all kept
    assert count == 30
    assert follow(every, 12, hint=False, closing=False) == [
        _kernel.SKIP if i in gone else _kernel.TO_REASSEMBLER for i in range(30)
    ]  # 11 s later: the closed ones are forgotten before the first of these segments
    assert count == 20 and int((table[:, 0] != _kernel.NONE).sum()) == 20
    assert follow(gone[:1], 13, hint=True, closing=False) == [_kernel.FRESH_TO_REASSEMBLER]  # new again


def test_a_closed_direction_is_forgotten_ten_seconds_after_its_fin(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Both engines keep a direction that sent FIN for ``CLOSED_KEPT_NS`` of capture time: a
    copy of its head a second after the FIN (another interface's) is not a head again; the same
    segment twelve seconds after is (a retransmission that late is one that Wireshark shows as
    HTTP too). The fast path's table then holds the streams still open, not all of them."""
    monkeypatch.setattr(_fastread, "PIECE_BYTES", 200)  # a frame or two a piece
    request = b"GET /a HTTP/1.1\r\nHost: web\r\n\r\n"
    head = vxlan_frame(inner_tcp(request, seq=1000))
    fin = vxlan_frame(inner_tcp(flags="FA", seq=1000 + len(request)))
    arp = bytes(Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=NODE_A, pdst=NODE_B))
    frames = [head, fin, head] + [arp] * 12 + [head]  # one frame a second
    path = tmp_path / "closed.pcap"
    path.write_bytes(pcap(frames))
    source = open_capture(path)
    methods = [method for batch in source for method in batch.codes["http_method"].tolist()]
    assert [number for number, code in enumerate(methods, 1) if code >= 0] == [1, 16]
    assert source.stream._direction_count == 1  # the last head's direction; the first was forgotten
    assert agree(path).fallback_frames == 0  # the Scapy engine finds the same heads


def test_a_split_head_after_a_closed_direction_starts_from_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A direction forgotten after its FIN and used again (port reuse) comes back fresh: what
    the reassembler held of the old connection (its next sequence number) does not make the
    new connection's split head look like a retransmission. Both engines find both heads."""
    monkeypatch.setattr(_fastread, "PIECE_BYTES", 200)  # a frame or two a piece
    first, rest = b"GET /a HTTP/1.1\r\nHo", b"st: web\r\n\r\n"
    old = [vxlan_frame(inner_tcp(first, seq=5000)), vxlan_frame(inner_tcp(rest, seq=5000 + len(first)))]
    fin = vxlan_frame(inner_tcp(flags="FA", seq=5000 + len(first) + len(rest)))
    arp = bytes(Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=NODE_A, pdst=NODE_B))
    new = [vxlan_frame(inner_tcp(first, seq=1000)), vxlan_frame(inner_tcp(rest, seq=1000 + len(first)))]
    path = tmp_path / "reused.pcap"
    path.write_bytes(pcap([*old, fin, *[arp] * 12, *new]))  # one frame a second: the new one 14 s after the FIN
    methods = [method for batch in open_capture(path) for method in batch.codes["http_method"].tolist()]
    assert [number for number, code in enumerate(methods, 1) if code >= 0] == [2, 17]
    assert agree(path).fallback_frames == 0


def test_heads_split_across_segments_keep_at_most_max_streams_directions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The directions whose heads came split (reassembled in Python) are held as the Scapy
    decoder's reassembler holds its streams: at most ``MAX_STREAMS``, then all let go, so memory
    stays flat however many there are. Every head is still found, in both engines."""
    import flannelcap.packets.http as http

    monkeypatch.setattr(http, "MAX_STREAMS", 4)
    monkeypatch.setattr(_fastread, "MAX_STREAMS", 4)
    first, rest = b"GET /k HTTP/1.1\r\nHo", b"st: web\r\n\r\n"
    frames = []
    for k in range(11):  # eleven directions, one after the other, each head in two segments
        frames.append(vxlan_frame(inner_tcp(first, sport=41000 + k, seq=1000)))
        frames.append(vxlan_frame(inner_tcp(rest, sport=41000 + k, seq=1000 + len(first))))
    path = tmp_path / "split.pcap"
    path.write_bytes(pcap(frames))
    source = open_capture(path)
    methods = [method for batch in source for method in batch.codes["http_method"].tolist()]
    assert [number for number, code in enumerate(methods, 1) if code >= 0] == list(range(2, 23, 2))
    assert 1 <= len(source.stream._slow_http) <= 4
    assert agree(path).fallback_frames == 0  # the Scapy engine finds the same heads


@pytest.mark.parametrize("name", every_sample_pcap())
def test_the_summary_counted_alone_is_the_one_counted_while_columns_are_made(name: str) -> None:
    """``summary()`` before any reading counts batches without their DNS messages and TLS hellos
    (it counts neither): the same counts as when every batch is made into columns."""
    alone = open_capture(SAMPLES / name).summary()
    source = open_capture(SAMPLES / name)
    rows = sum(batch.n for batch in source)
    walked = source.summary()
    assert alone == walked and alone.packets == rows


@pytest.mark.parametrize("service", ["dns", "tls"])
def test_batches_counted_only_leave_the_dns_messages_and_tls_hellos_out(service: str) -> None:
    """What ``summary()`` reads: the same batches without the payloads it does not count."""
    path = SAMPLES / "services" / service / "kpi093-any.pcap"

    def gathered(counts_only: bool) -> tuple[int, int]:
        batches = list(open_capture(path).stream.batches(counts_only=counts_only))
        return sum(len(b.dns.rows) for b in batches), sum(len(b.tls.rows) for b in batches)

    dns, tls = gathered(counts_only=False)
    assert (dns > 0) if service == "dns" else (tls > 0)
    assert gathered(counts_only=True) == (0, 0)


@pytest.mark.parametrize("version", [None, 2, _kernel.KERNEL_VERSION])
def test_an_extension_of_another_version_is_reported_out_of_date(version: int | None) -> None:
    """An extension built before its functions changed (an editable install not rebuilt) would be
    called with arguments it does not take, or write a layout the columns do not read: it is
    reported out of date and not used. Checked with a stand-in for the extension's module."""
    probe = (
        "import sys, types\n"
        "from flannelcap.packets.fields import KERNEL_FIELDS\n"
        "fake = types.ModuleType('flannelcap.packets._ckernel')\n"
        "fake.FIELDS, fake.NONE, fake.ARP_CODE = KERNEL_FIELDS, -1, 1000\n"
        "if sys.argv[1] != 'None': fake.KERNEL_VERSION = int(sys.argv[1])\n"
        "sys.modules['flannelcap.packets._ckernel'] = fake\n"
        "from flannelcap.packets import kernel\n"
        "print(kernel.UNAVAILABLE)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(version)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out_of_date = "the compiled fast path is out of date (rebuild it: pip install the package again)"
    assert done.stdout.strip() == ("None" if version == _kernel.KERNEL_VERSION else out_of_date)
    assert _kernel._ckernel.KERNEL_VERSION == _kernel.KERNEL_VERSION  # the extension built here is this one
