"""Time flannelcap against tshark, tcpdump and Scapy on the same VXLAN captures, in one run.

    python benchmarks/run.py [--packets 1000000] [--dir /tmp] [--scapy-subset 20000] [--repeat 5]
                             [--captures benchmark,short,dns,geneve,udp-tun] [--quick]

Captures, generated with make_capture.py if missing: the benchmark file (HTTP calls with
1-64 KiB bodies), a file of short HTTP calls (``--short``: ten packets a conversation, a
fifth of them HTTP heads), the short calls with 30 % DNS lookups among them (``--dns 0.3``;
tshark is then also asked the DNS fields), and the short calls in Geneve (``geneve``) and in
flannel's udp backend (``udp-tun``; tshark decodes UDP 8285 as IP). ``--quick`` runs the rows
that compare the encapsulations (the summary, ``read().packets``, the packet list, JSON, and the
anchors) and leaves out the rest. On each, every tool runs as a separate process (wall time and peak
RSS from GNU time; output to /dev/null) and the table gives packets per second and each row's
time against flannelcap's ``--summary``. Runs shorter than ten seconds are repeated (--repeat)
and the median is shown. The runs rotate: each tool runs on every capture before the next tool
does, and the sweep over all tools is repeated, so that captures, rows and anchors are compared
within the same minutes (this machine's speed drifts by ±15 % within an hour). Rows compare
like with like: the counts-only modes (flannelcap ``--summary``, ``tshark -q -z conv,ip``), then
the per-packet outputs (flannelcap's table, JSON, CSV, Parquet; ``tshark -T fields``;
``tcpdump -nn -r``). Some rows time work inside a running Python (no interpreter start, as in a
notebook; the child reports its own time): the summary, ``flannelcap.read(path).packets``,
``flows()``/``http()`` on it, and the journey matching of the capture and a copy 37 µs later
(the same packets at two points, as two nodes' eth0 hold them).
Scapy (PcapReader with full dissection) runs on the first --scapy-subset packets only and is
extrapolated: it is labelled so. flannelcap's modules are byte-compiled first, as ``pip install``
leaves them (an editable install in an environment with PYTHONDONTWRITEBYTECODE would otherwise
compile them again in every process).
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The fields flannelcap's records hold, asked of tshark for a like-for-like comparison.
TSHARK_FIELDS = [
    "frame.number",
    "ip.src",
    "ip.dst",
    "udp.srcport",
    "udp.dstport",
    "vxlan.vni",
    "eth.src",
    "eth.dst",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags",
    "tcp.seq_raw",
    "tcp.ack_raw",
    "tcp.len",
    "http.request.method",
    "http.request.uri",
    "http.response.code",
]
IN_PROCESS_SNIPPET = """
import sys, time
from flannelcap.packets.pipeline import open_capture
open_capture(sys.argv[1]).summary()  # once to warm the page cache and the imports
start = time.perf_counter()
open_capture(sys.argv[1]).summary()
print(time.perf_counter() - start, file=sys.stderr)
"""
READ_SNIPPET = """
import sys, time
import flannelcap, pandas, pyarrow  # imported before the clock starts, as in a notebook
start = time.perf_counter()
packets = flannelcap.read(sys.argv[1]).packets
print(time.perf_counter() - start, file=sys.stderr)
"""
ANALYSIS_SNIPPET = """
import sys, time
import flannelcap
capture = flannelcap.read(sys.argv[1])
start = time.perf_counter()
getattr(capture, sys.argv[2])()
print(time.perf_counter() - start, file=sys.stderr)
"""
JOURNEY_SNIPPET = """
import sys, time
import flannelcap
from flannelcap.analysis.journey import CaptureAt, hops, journeys
first, second = flannelcap.read(sys.argv[1]), flannelcap.read(sys.argv[2])  # read before the clock starts
start = time.perf_counter()
seen, packets = journeys([CaptureAt("first", "n1", first.packets), CaptureAt("second", "n2", second.packets)])
hops(seen)
# every packet matched across the two files (two DNS queries alike in IP ID, id and name are one)
assert len(packets) > 0.9999 * len(first.packets), (len(packets), len(first.packets))
print(time.perf_counter() - start, file=sys.stderr)
"""
LIVE_SNIPPET = """
import sys, threading, time
from flannelcap.packets import lines
from flannelcap.packets.live import LiveFeed
from flannelcap.packets.pipeline import open_capture
feed = LiveFeed()
def receive():  # as the SSH channel hands chunks to the session: 64 KiB at a time, the file first
    with open(sys.argv[1], "rb") as capture, open("/dev/null", "wb") as file:
        while chunk := capture.read(65536):
            file.write(chunk)
            while feed.backlog() > 32 << 20:  # a sender never runs further ahead than this
                time.sleep(0.001)
            feed.feed(chunk)
    feed.close()
start = time.perf_counter()
threading.Thread(target=receive, daemon=True).start()  # an error here must end the run
source = open_capture(feed, more_waiting=feed.more_waiting)
with open("/dev/null", "wb") as out:
    for batch in source:
        out.writelines(lines.table_lines(batch, source.columns))
assert not feed.overflowed
print(time.perf_counter() - start, file=sys.stderr)
"""
SCAPY_SNIPPET = """
import sys
from scapy.all import PcapReader
n = 0
for packet in PcapReader(sys.argv[1]):
    packet.summary()
    n += 1
    if n >= int(sys.argv[2]):
        break
"""


def timed(argv: list[str], reported: bool = False) -> tuple[float, float]:
    """Wall seconds (or the seconds the child reports on its stderr) and peak RSS (MB) of one
    child process (GNU time's %M); its output is discarded."""
    start = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True
    )
    elapsed = time.perf_counter() - start
    lines = done.stderr.strip().splitlines()
    return (float(lines[-2]) if reported else elapsed), int(lines[-1]) / 1024


CAPTURES = {
    "benchmark": ("flannelcap-bench.pcap", []),
    "short": ("flannelcap-bench-short.pcap", ["--short"]),
    "dns": ("flannelcap-bench-dns.pcap", ["--short", "--dns", "0.3"]),
    "geneve": ("flannelcap-bench-geneve.pcap", ["--short", "--encap", "geneve"]),
    "udp-tun": ("flannelcap-bench-udp-tun.pcap", ["--short", "--encap", "udp-tun"]),
}
DNS_FIELDS = ["dns.id", "dns.flags.rcode", "dns.qry.name", "dns.qry.type", "dns.a"]


QUICK_ROWS = ("flannelcap decode --summary", "tshark -q -z", "flannelcap.read(path)", "flannelcap decode (the",
              "flannelcap decode --json", "tcpdump", "tshark -T fields")  # fmt: skip


Run = tuple[str, list[str], int, bool]  # the row's name, the command, the packets it reads, whether it reports its time


def runs_on(path: Path, packets: int, extra: list[str], scapy_subset: int, scratch: Path, quick: bool) -> list[Run]:
    """Generate the capture if missing; the rows to time on it."""
    if not path.exists():
        subprocess.run(
            [sys.executable, str(HERE / "make_capture.py"), str(path), "--packets", str(packets), *extra], check=True
        )
    n = packets
    # The same packets seen at a second point 37 µs later (Wireshark's editcap), for the journey row.
    later = path.with_name(path.stem + "-37us-later.pcap")
    if not later.exists():
        subprocess.run(["editcap", "-t", "0.000037", str(path), str(later)], check=True)
    flannelcap = [sys.executable, "-m", "flannelcap", "decode"]
    parquet = scratch / "bench.parquet"
    tshark = ["tshark", "-n", "-r", str(path), "-d", "udp.port==8472,vxlan", "-d", "udp.port==8285,ip"]
    runs = [
        ("flannelcap decode --summary", [*flannelcap, "--summary", str(path)], n, False),
        ("  the same, inside a running Python", [sys.executable, "-c", IN_PROCESS_SNIPPET, str(path)], n, True),
        ("tshark -q -z conv,ip (counts only)", [*tshark, "-q", "-z", "conv,ip"], n, False),
        ("flannelcap.read(path).packets, inside Python", [sys.executable, "-c", READ_SNIPPET, str(path)], n, True),
        ("  then flows() on it", [sys.executable, "-c", ANALYSIS_SNIPPET, str(path), "flows"], n, True),
        ("  then http() on it", [sys.executable, "-c", ANALYSIS_SNIPPET, str(path), "http"], n, True),
        (
            "  two captures of them matched (journeys(), hops())",
            [sys.executable, "-c", JOURNEY_SNIPPET, str(path), str(later)],
            n,
            True,
        ),
        ("flannelcap decode (the packet list)", [*flannelcap, str(path)], n, False),
        (
            "  the capture's live view: a stream in 64 KiB chunks",
            [sys.executable, "-c", LIVE_SNIPPET, str(path)],
            n,
            True,
        ),
        ("flannelcap decode --json", [*flannelcap, "--json", str(path)], n, False),
        ("flannelcap decode --csv", [*flannelcap, "--csv", str(path)], n, False),
        ("flannelcap decode --parquet", [*flannelcap, "--parquet", str(parquet), str(path)], n, False),
        (
            "flannelcap report (HTML, 2,000-row packet list)",
            [sys.executable, "-m", "flannelcap", "report", str(path), "-o", str(parquet.with_suffix(".html"))],
            n,
            False,
        ),
        ("tcpdump -nn -r", ["tcpdump", "-nn", "-r", str(path)], n, False),
        (
            "tshark -T fields (same fields)",
            [*tshark, "-T", "fields", *[a for f in _fields(extra) for a in ("-e", f)]],
            n,
            False,
        ),
        (
            f"Scapy PcapReader, {scapy_subset} packets, extrapolated",
            [sys.executable, "-c", SCAPY_SNIPPET, str(path), str(scapy_subset)],
            scapy_subset,
            False,
        ),
    ]
    if quick:
        runs = [run for run in runs if run[0].startswith(QUICK_ROWS)]
    return runs


def rotate(plans: dict[Path, list[Run]], repeat: int) -> dict[Path, list[tuple[float, float]]]:
    """Time every row on every capture, ``repeat`` sweeps in rotation: each row runs on each
    capture before the next row, and each sweep runs every row (a row whose first run took ten
    seconds or more runs once). The machine's speed drifts by ±15 % within an hour, so the
    captures are compared within the same minutes, and so are the rows and their anchors.
    Returns, for each capture and row, the median time and the largest peak RSS."""
    results: dict[Path, list[list[tuple[float, float]]]] = {path: [[] for _ in runs] for path, runs in plans.items()}
    for sweep in range(repeat):
        for row in range(max(len(runs) for runs in plans.values())):
            for path, runs in plans.items():
                if row >= len(runs) or (sweep and results[path][row][0][0] >= 10):
                    continue
                _, argv, _, reported = runs[row]
                results[path][row].append(timed(argv, reported))
    return {
        path: [(statistics.median(r[0] for r in got), max(r[1] for r in got)) for got in rows]
        for path, rows in results.items()
    }


def table(path: Path, packets: int, runs: list[Run], timings: list[tuple[float, float]]) -> None:
    """Print one capture's table: each row's time (scaled to every packet where it read a
    subset), packets per second, peak RSS, and its time against ``--summary``."""
    rows = [
        (name, elapsed * packets / count, peak)
        for (name, _, count, _), (elapsed, peak) in zip(runs, timings, strict=True)
    ]
    base = rows[0][1]
    size = path.stat().st_size / 1e6
    print(
        f"\ncapture: {path} — {packets} packets, {size:.0f} MB; machine: {os.cpu_count()} cores, {os.uname().machine}"
    )
    print(f"{'tool':<52} {'seconds':>9} {'packets/s':>12} {'peak RSS MB':>12} {'time vs --summary':>18}")
    for name, seconds, peak in rows:
        print(f"{name:<52} {seconds:>9.2f} {packets / seconds:>12,.0f} {peak:>12.0f} {seconds / base:>17.1f}x")


def _fields(extra: list[str]) -> list[str]:
    """The fields asked of tshark: flannelcap's, and the DNS ones on the DNS capture."""
    return TSHARK_FIELDS + (DNS_FIELDS if "--dns" in extra else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp"), help="where the captures are (made if missing)")
    parser.add_argument("--scapy-subset", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each tool under ten seconds (median shown)")
    parser.add_argument("--captures", default="benchmark,short,dns", help="which captures, comma-separated")
    parser.add_argument("--quick", action="store_true", help="only the rows that compare encapsulations")
    args = parser.parse_args()
    package = importlib.util.find_spec("flannelcap")
    if package is None or not package.submodule_search_locations:
        parser.error("flannelcap is not installed in this Python: pip install -e . first")
    for where in package.submodule_search_locations:
        compileall.compile_dir(where, quiet=1)
    args.dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="flannelcap-bench-"))  # the Parquet and HTML rows' output
    try:
        plans: dict[Path, list[Run]] = {}
        for which in args.captures.split(","):
            if which not in CAPTURES:
                parser.error(f"no capture {which!r}; choose from {', '.join(CAPTURES)}")
            name, extra = CAPTURES[which]
            path = args.dir / name
            (scratch / which).mkdir()
            plans[path] = runs_on(path, args.packets, extra, args.scapy_subset, scratch / which, args.quick)
        timings = rotate(plans, args.repeat)
    finally:
        shutil.rmtree(scratch)
    for path, runs in plans.items():
        table(path, args.packets, runs, timings[path])


if __name__ == "__main__":
    main()
