"""Time flannelcap against tshark, tcpdump and Scapy on the same VXLAN capture, in one run.

    python benchmarks/run.py [--packets 1000000] [--file /tmp/bench.pcap] [--scapy-subset 20000] [--repeat 5]

Generates the capture with make_capture.py if the file is missing, then runs each tool as a
separate process (wall time and peak RSS from GNU time) and prints packets per second and each
tool's ratio to flannelcap's fast path. Runs shorter than ten seconds are repeated (--repeat)
and the median is shown. Scapy (PcapReader with full dissection) runs on the first
--scapy-subset packets only and is extrapolated: it is labelled so. One row times the decode
inside a running Python (no interpreter start, as in a notebook): the child reports it.
"""

from __future__ import annotations

import argparse
import os
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


def median_of(argv: list[str], repeat: int, reported: bool = False) -> tuple[float, float]:
    """``timed``, repeated up to ``repeat`` times while runs are short: the median time, the
    largest peak RSS."""
    results = [timed(argv, reported)]
    while len(results) < repeat and results[0][0] < 10:
        results.append(timed(argv, reported))
    return statistics.median(r[0] for r in results), max(r[1] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--file", type=Path, default=Path("/tmp/flannelcap-bench.pcap"))
    parser.add_argument("--scapy-subset", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each tool under ten seconds (median shown)")
    args = parser.parse_args()
    if not args.file.exists():
        subprocess.run(
            [sys.executable, str(HERE / "make_capture.py"), str(args.file), "--packets", str(args.packets)], check=True
        )
    n = args.packets
    size = args.file.stat().st_size / 1e6
    rows: list[tuple[str, float, float, int]] = []
    flannelcap = [sys.executable, "-m", "flannelcap", "decode"]
    parquet = Path(tempfile.mkdtemp(prefix="flannelcap-bench-")) / "bench.parquet"
    runs = [
        ("tcpdump -nn -r", ["tcpdump", "-nn", "-r", str(args.file)], n),
        ("flannelcap decode --summary (fast)", [*flannelcap, "--summary", str(args.file)], n),
        (
            "  the same decode inside Python (no start-up)",
            [sys.executable, "-c", IN_PROCESS_SNIPPET, str(args.file)],
            n,
        ),
        ("flannelcap decode --parquet (fast)", [*flannelcap, "--parquet", str(parquet), str(args.file)], n),
        ("flannelcap decode --json (fast)", [*flannelcap, "--json", str(args.file)], n),
        (
            "tshark -T fields (same fields)",
            [
                "tshark",
                "-n",
                "-r",
                str(args.file),
                "-d",
                "udp.port==8472,vxlan",
                "-T",
                "fields",
                *[a for f in TSHARK_FIELDS for a in ("-e", f)],
            ],
            n,
        ),
        (
            f"Scapy PcapReader, {args.scapy_subset} packets, extrapolated",
            [sys.executable, "-c", SCAPY_SNIPPET, str(args.file), str(args.scapy_subset)],
            args.scapy_subset,
        ),
    ]
    for name, argv, count in runs:
        elapsed, peak = median_of(argv, args.repeat, reported="inside Python" in name)
        rows.append((name, elapsed * n / count, peak, count))
    parquet.unlink()
    parquet.parent.rmdir()
    base = next(r for r in rows if "--summary" in r[0])[1]
    print(f"capture: {args.file} — {n} packets, {size:.0f} MB; machine: {os.cpu_count()} cores, {os.uname().machine}")
    print(f"{'tool':<52} {'seconds':>9} {'packets/s':>12} {'peak RSS MB':>12} {'time vs flannelcap':>19}")
    for name, seconds, peak, _ in rows:
        print(f"{name:<52} {seconds:>9.2f} {n / seconds:>12,.0f} {peak:>12.0f} {seconds / base:>18.1f}x")


if __name__ == "__main__":
    main()
