"""The pieces of a live capture that need no network: the feed between the receiving and the
decoding thread, live decoding through the one pipeline, and the merged pcapng of ``-w``
(read back by flannelcap's reader and by tshark)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import SAMPLES, require

from flannelcap import decode_file
from flannelcap.packets.live import LiveFeed
from flannelcap.packets.pipeline import open_capture
from flannelcap.packets.reader import CaptureReader
from flannelcap.remote._pcapng_stream import PcapngMerger

CLIENT = SAMPLES / "cross-node-http-client.pcap"
SERVER = SAMPLES / "cross-node-http-server.pcap"


def test_the_feed_hands_over_every_byte_in_order_and_ends_when_closed() -> None:
    feed = LiveFeed()
    data = CLIENT.read_bytes()
    got = bytearray()

    def read() -> None:
        while chunk := feed.read(1000):
            got.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    for at in range(0, len(data), 333):
        feed.feed(data[at : at + 333])
    feed.close()
    reader.join(5)
    assert bytes(got) == data and not feed.overflowed


def test_a_read_waits_for_bytes_that_have_not_arrived() -> None:
    feed = LiveFeed()
    feed.feed(b"abc")
    assert feed.more_waiting()
    later = threading.Timer(0.2, feed.feed, args=(b"def",))
    later.start()
    started = time.monotonic()
    assert feed.read(5) == b"abcde" and time.monotonic() - started >= 0.15
    assert feed.more_waiting() and feed.read(1) == b"f" and not feed.more_waiting()
    feed.close()
    assert feed.read(4) == b""


def test_a_feed_past_its_bound_gives_up_and_holds_nothing() -> None:
    feed = LiveFeed(limit=100)
    feed.feed(b"x" * 60)
    feed.feed(b"y" * 60)  # 120 bytes would wait: the feed gives up
    assert feed.overflowed and not feed.more_waiting()
    feed.feed(b"z" * 10)
    assert feed.read(10) == b""  # the reader sees the end at once


def test_live_decoding_shows_each_packet_as_it_arrives_and_equals_the_file() -> None:
    """Packets fed one record at a time come out at once, one batch each, equal to the file's."""
    data = CLIENT.read_bytes()
    feed = LiveFeed()
    feed.feed(data[:24])
    with CaptureReader(CLIENT) as reader:
        frames = list(reader)
    ends, at = [], 24
    for frame in frames:
        at += 16 + len(frame.data)
        ends.append(at)
    source = open_capture(feed, more_waiting=feed.more_waiting)  # type: ignore[arg-type]
    batches = iter(source)
    start, numbers = 24, []
    with ThreadPoolExecutor(max_workers=1) as waiting:
        try:
            for end in ends:
                feed.feed(data[start:end])
                start = end
                # A packet held back for more would never come: the test fails after 5 s, not hangs.
                batch = waiting.submit(next, batches).result(timeout=5)
                numbers += batch.ints["number"].tolist()
        finally:
            feed.close()
    assert list(batches) == []
    assert numbers == list(range(1, len(frames) + 1))
    whole = [b.texts["info"].to_list() for b in open_capture(CLIENT)]
    live = [b.texts["info"].to_list() for b in open_capture(io.BytesIO(data))]
    assert live == whole


def _merged(chunk: int) -> bytes:
    out = io.BytesIO()
    merger = PcapngMerger(out)
    client, server = merger.stream("kpi093:eth0"), merger.stream("kpi092:eth0")
    a, b = CLIENT.read_bytes(), SERVER.read_bytes()
    for at in range(0, max(len(a), len(b)), chunk):  # interleaved, cut anywhere
        server(b[at : at + chunk])
        client(a[at : at + chunk])
    return out.getvalue()


@pytest.mark.parametrize("chunk", [1, 7, 100, 65536])
def test_the_merged_pcapng_holds_every_packet_of_each_node_under_its_name(chunk: int, tmp_path: Path) -> None:
    merged = tmp_path / "merged.pcapng"
    merged.write_bytes(_merged(chunk))
    with CaptureReader(merged) as reader:
        frames = list(reader)
        names = [i.name for i in reader.interfaces]
        assert reader.problem is None
    assert names == ["kpi092:eth0", "kpi093:eth0"]  # in the order their headers arrived
    for index, original in ((0, SERVER), (1, CLIENT)):
        with CaptureReader(original) as reader:
            expected = [(f.time_ns, f.wire_len, f.data) for f in reader]
        assert [(f.time_ns, f.wire_len, f.data) for f in frames if f.interface == index] == expected


def test_tshark_reads_the_merged_stream_from_a_pipe() -> None:
    require(shutil.which("tshark") is not None, "needs tshark")
    fields = ["-T", "ek", "-e", "frame.interface_name", "-e", "vxlan.vni", "-e", "http.request.method"]
    done = subprocess.run(["tshark", "-n", "-r", "-", "-d", "udp.port==8472,vxlan", *fields], input=_merged(4096),
                          capture_output=True, check=True)  # fmt: skip
    rows = [json.loads(line)["layers"] for line in done.stdout.splitlines() if b'"layers"' in line]
    by_node = {
        name: sum(1 for r in rows if r["frame_interface_name"] == [name]) for name in ("kpi092:eth0", "kpi093:eth0")
    }
    for name, original in (("kpi092:eth0", SERVER), ("kpi093:eth0", CLIENT)):
        with CaptureReader(original) as reader:
            assert by_node[name] == sum(1 for _ in reader)
    assert sum(r.get("http_request_method") == ["GET"] for r in rows) == 2  # the GET, seen on both nodes


def test_a_merged_pcapng_names_each_packets_interface_after_its_node() -> None:
    path = io.BytesIO(_merged(65536))
    names = [r.if_name for r in decode_file(path)]
    with CaptureReader(SERVER) as server, CaptureReader(CLIENT) as client:
        expected = {"kpi092:eth0": sum(1 for _ in server), "kpi093:eth0": sum(1 for _ in client)}
    assert {name: names.count(name) for name in set(names)} == expected
