"""The long fuzzing run: mutated captures, frames and tables against every parser.

    python fuzz/run.py [--inputs 1000000] [--seed 1] [--minutes 30]

Contract checked for every input: the library raises nothing but flannelcap's own errors
(``FlannelcapError``); the Scapy decoder and the fast path never raise for bad packet
contents. An input that breaks the contract is written to tests/regressions/ (replayed by
the normal test suite) and reported. The last run's result goes in fuzz/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import random
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "fuzz"))

from mutate import mutate, mutate_text  # noqa: E402

from flannelcap import FlannelcapError  # noqa: E402
from flannelcap.packets.capture import decode_file  # noqa: E402
from flannelcap.packets.http import HttpReassembler  # noqa: E402
from flannelcap.packets.pipeline import RecordView, open_capture  # noqa: E402
from flannelcap.packets.reader import Frame  # noqa: E402
from flannelcap.packets.scapy_decoder import Decoder  # noqa: E402
from flannelcap.topology.kube import parse_kubectl_nodes, parse_kubectl_pods  # noqa: E402
from flannelcap.topology.model import build_topology  # noqa: E402
from flannelcap.topology.tables import parse_fdb, parse_links, parse_neigh, parse_routes  # noqa: E402

REGRESSIONS = ROOT / "tests" / "regressions"
SAMPLES = ROOT / "sample_pcaps"


def seeds() -> tuple[list[bytes], dict[str, list[str]]]:
    """Every capture in sample_pcaps/ (the large one cut to its first 40 packets) and every table."""
    captures = []
    for path in sorted(SAMPLES.glob("*.pcap")):
        data = path.read_bytes()
        captures.append(data[:60_000])
    tables: dict[str, list[str]] = {"neigh": [], "fdb": [], "routes": [], "links": [], "nodes": [], "pods": []}
    for path in sorted(SAMPLES.glob("*.tables/**/*")) + sorted((ROOT / "tests" / "data" / "seed").glob("*")):
        if not path.is_file():
            continue
        name = path.name
        for kind, words in (
            ("neigh", "neigh"),
            ("fdb", "fdb"),
            ("routes", "route"),
            ("links", "link"),
            ("links", "addr"),
            ("nodes", "nodes"),
            ("pods", "pods"),
        ):
            if words in name:
                tables[kind].append(path.read_text())
                break
    return captures, tables


PARSERS = {
    "neigh": parse_neigh,
    "fdb": parse_fdb,
    "routes": parse_routes,
    "links": parse_links,
    "nodes": parse_kubectl_nodes,
    "pods": parse_kubectl_pods,
}


def check_capture(data: bytes) -> None:
    """Both engines over a mutated capture: only FlannelcapError may escape, and only on open."""
    for engine in ("fast", "scapy"):
        try:
            if engine == "fast":
                stream = RecordView(open_capture(io.BytesIO(data)))
            else:
                stream = decode_file(io.BytesIO(data), engine="scapy")
        except FlannelcapError:
            return
        for _ in stream:
            pass


def check_frame(decoder: Decoder, data: bytes, linktype: int) -> None:
    """One mutated frame through the Scapy decoder."""
    decoder.decode(Frame(number=1, time_ns=0, linktype=linktype, data=data, wire_len=len(data)))


def check_table(kind: str, text: str) -> None:
    with contextlib.suppress(FlannelcapError):
        PARSERS[kind](text)


def check_topology(texts: dict[str, str]) -> None:
    """A whole topology from damaged tables (one node) and kubectl output."""
    node = {
        kind: texts[key]
        for kind, key in (
            ("neigh", "neigh"),
            ("fdb", "fdb"),
            ("routes", "routes"),
            ("flannel", "links"),
            ("cni0", "links"),
        )
        if key in texts
    }
    with contextlib.suppress(FlannelcapError):
        build_topology(kubectl_nodes=texts.get("nodes"), kubectl_pods=texts.get("pods"), node_tables={"n": node})


def save(target: str, data: bytes) -> Path:
    REGRESSIONS.mkdir(exist_ok=True)
    path = REGRESSIONS / f"{target}-{hashlib.sha256(data).hexdigest()[:16]}.bin"
    path.write_bytes(data)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=60)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    captures, tables = seeds()
    frames = [c[40 : 40 + 1514] for c in captures]
    decoder = Decoder()
    http = HttpReassembler()
    counts: Counter[str] = Counter()
    crashes: list[str] = []
    deadline = time.monotonic() + args.minutes * 60
    start = time.monotonic()
    while sum(counts.values()) < args.inputs and time.monotonic() < deadline:
        roll = rng.random()
        target, blob = "", b""
        try:
            if roll < 0.06:
                target = "capture"
                blob = mutate(rng.choice(captures), rng)
                check_capture(blob)
            elif roll < 0.16:
                target = "frame"
                blob = mutate(rng.choice(frames), rng)
                check_frame(decoder, blob, rng.choice((1, 1, 1, 113, 276, 101, 147)))
            elif roll < 0.22:
                target = "topology"
                texts = {k: mutate_text(rng.choice(v), rng) for k, v in tables.items() if v}
                blob = repr(texts).encode("utf-8", "surrogateescape")
                check_topology(texts)
            elif roll < 0.30:
                target = "http"
                blob = mutate(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", rng)
                http.feed(("a", 1, "b", 2), rng.randrange(2**32), blob)
            else:
                kind = rng.choice([k for k, v in tables.items() if v])
                target = f"table-{kind}"
                text = mutate_text(rng.choice(tables[kind]), rng)
                blob = text.encode("utf-8", "surrogateescape")
                check_table(kind, text)
        except Exception as exc:
            path = save(target, blob)
            crashes.append(f"{target}: {type(exc).__name__}: {exc} → {path.name}")
            traceback.print_exc(limit=3)
        counts[target.split("-")[0]] += 1
        total = sum(counts.values())
        if total % 50_000 == 0:
            print(f"{total} inputs, {len(crashes)} crashes, {time.monotonic() - start:.0f} s", flush=True)
    elapsed = time.monotonic() - start
    print(f"done: {sum(counts.values())} inputs in {elapsed:.0f} s ({dict(counts)}), {len(crashes)} crashes")
    for line in crashes:
        print("  " + line)


if __name__ == "__main__":
    main()
