"""``flannelcap decode``: argument parsing for the command, and printing what it decodes.

Rule: no decoding logic here; it filters and prints what ``decode_file`` yields.
"""

from __future__ import annotations

import argparse
import csv
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from flannelcap._annotate import annotate
from flannelcap._errors import FlannelcapError
from flannelcap._fastread import FastStream, frame_of
from flannelcap._vxlan import DEFAULT_VXLAN_PORTS

if TYPE_CHECKING:
    from flannelcap._capture import RecordStream
from flannelcap._records import PacketRecord
from flannelcap._summary import CaptureSummary
from flannelcap.cli import _format
from flannelcap.cli._progress import ProgressBar
from flannelcap.cli._topology_args import add_topology_options, topology_from_args

PROTO_CHOICES = ("tcp", "udp", "icmp", "arp", "http")


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``decode`` and its options."""
    parser = subparsers.add_parser(
        "decode",
        help="decode a capture: every VXLAN packet with its outer and inner headers",
        description="Decode a pcap/pcapng capture (optionally .gz), VXLAN on UDP 8472 and 4789.",
    )
    parser.add_argument(
        "file",
        nargs="+",
        help="capture file (pcap, pcapng, optionally gzip-compressed); several are decoded each by itself, "
        "in parallel (--jobs), and printed in order",
    )
    parser.add_argument(
        "--vxlan-port",
        type=_port,
        action="append",
        default=[],
        metavar="PORT",
        help="also decode this UDP port as VXLAN (repeatable; 8472 and 4789 always are)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "-v", "--detail", action="store_true", help="every field of every layer, like Wireshark's detail pane"
    )
    output.add_argument("--json", action="store_true", help="JSON lines, one object per packet")
    output.add_argument("--csv", action="store_true", help="CSV with a header row")
    parser.add_argument(
        "--vni",
        type=int,
        action="append",
        default=[],
        help="show only VXLAN packets with this VNI (repeatable)",
    )
    parser.add_argument("--only-vxlan", action="store_true", help="show only VXLAN packets")
    parser.add_argument("--proto", choices=PROTO_CHOICES, help="show only packets of this (innermost) protocol")
    parser.add_argument(
        "--packets",
        type=_packet_range,
        metavar="FIRST-LAST",
        help="show only packets numbered FIRST to LAST (e.g. 10-20, 5-, 7)",
    )
    parser.add_argument(
        "--engine",
        choices=("auto", "fast", "scapy"),
        default="auto",
        help="fast: the compiled decoder over the raw file (Scapy for what it cannot take); scapy: Scapy for every "
        "packet; "
        "auto (default): fast, but scapy for -v",
    )
    output.add_argument("--summary", action="store_true", help="only the counts, not a line per packet")
    parser.add_argument(
        "-j",
        "--jobs",
        type=_positive,
        metavar="N",
        help="decode up to N of several files at once, each in its own process (default: one per processor)",
    )
    output.add_argument("--parquet", type=Path, metavar="OUT", help="write every packet to a Parquet file")
    add_topology_options(parser, required=False)
    parser.set_defaults(run=run)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port out of range 1-65535: {port}")
    return port


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _packet_range(text: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    try:
        low = int(first) if first else 1
        high = int(last) if last else (low if not sep else 2**63)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a packet range: {text!r} (use FIRST-LAST)") from None
    if low < 1 or high < low:
        raise argparse.ArgumentTypeError(f"empty packet range: {text!r}")
    return low, high


def _selector(args: argparse.Namespace) -> Callable[[PacketRecord], bool]:
    vnis = set(args.vni)

    def wanted(record: PacketRecord) -> bool:
        if args.packets and not args.packets[0] <= record.number <= args.packets[1]:
            return False
        if (args.only_vxlan or vnis) and not record.is_vxlan:
            return False
        if vnis and record.vni not in vnis:
            return False
        if args.proto == "http":
            return bool(record.http_method or record.http_status is not None)
        return not args.proto or record.proto == args.proto

    return wanted


def _open(args: argparse.Namespace, path: str, bar: ProgressBar | None) -> RecordStream | FastStream:
    ports = DEFAULT_VXLAN_PORTS | set(args.vxlan_port)
    if args.engine == "scapy" or (args.engine == "auto" and args.detail):
        from flannelcap._capture import decode_file  # Scapy: imported only when used

        return decode_file(path, vxlan_ports=ports, detail=args.detail)
    if args.detail:
        raise FlannelcapError("-v needs every field of every layer: use it with --engine scapy (or auto)")
    from flannelcap import _kernel

    if args.engine == "fast" and _kernel.UNAVAILABLE:
        raise FlannelcapError(f"{_kernel.UNAVAILABLE}: use --engine scapy, or reinstall with a C compiler")
    return FastStream(path, vxlan_ports=ports, progress=bar)


def _summary_only(path: str, stream: RecordStream | FastStream, bar: ProgressBar | None) -> int:
    if isinstance(stream, FastStream):
        summary = stream.summary()
    else:
        summary = CaptureSummary()
        for record in stream:
            summary.add(record)
        summary.stopped_early = stream.problem
    if bar is not None:
        bar.clear()
    print("\n".join(summary.lines()))
    if isinstance(stream, FastStream) and stream.fallback_frames:
        from flannelcap import _kernel

        why = "the fast path is not built" if _kernel.UNAVAILABLE else "layouts the fast path does not take"
        print(f"{stream.fallback_frames} packets decoded by Scapy ({why})")
    return _problem(path, stream, summary.packets)


def _problem(path: str, stream: RecordStream | FastStream, packets: int) -> int:
    if stream.problem:
        if packets == 0:
            raise FlannelcapError(f"{path}: nothing could be decoded: {stream.problem}")
        print(
            f"flannelcap: warning: {path}: {stream.problem}; the {packets} packets before it were decoded",
            file=sys.stderr,
        )
    return 0


def _parquet(args: argparse.Namespace, path: str, stream: RecordStream | FastStream, bar: ProgressBar | None) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise FlannelcapError("--parquet needs pyarrow: pip install 'flannelcap[parquet]'") from exc
    if not isinstance(stream, FastStream):
        raise FlannelcapError("--parquet goes through the fast path: leave out --engine scapy")
    writer = None
    packets = 0
    first: float | None = None
    try:
        for batch in stream.batches():
            frame = frame_of(batch)
            first = float(frame["time"].iloc[0]) if first is None and len(frame) else first
            frame["rel_time"] = frame["time"] - (first or 0.0)
            frame["notes"] = frame["notes"].map(lambda notes: "; ".join(notes))
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(args.parquet, table.schema)
            writer.write_table(table.cast(writer.schema))
            packets += len(frame)
    except OSError as exc:
        raise FlannelcapError(f"cannot write {args.parquet}: {exc.strerror or exc}") from exc
    finally:
        if writer is not None:
            writer.close()
    if bar is not None:
        bar.clear()
    print(f"{packets} packets written to {args.parquet}")
    return _problem(path, stream, packets)


def run(args: argparse.Namespace) -> int:
    """Decode ``args.file`` (one capture or several) and print it. Returns the exit code."""
    if len(args.file) == 1:
        return decode_one(args, args.file[0])
    if args.detail or args.parquet:
        raise FlannelcapError("-v and --parquet take one capture file at a time")
    from flannelcap.cli._many import default_jobs, run_each

    def before(index: int, path: str) -> None:
        if args.csv and index == 0:
            print(",".join(("file", *_format.CSV_FIELDS)))
        elif not (args.json or args.csv):
            print(f"{chr(10) if index else ''}==> {path} <==")

    work = functools.partial(decode_one, args, several=True)
    return run_each(args.file, work, args.jobs or default_jobs(len(args.file)), before)


def decode_one(args: argparse.Namespace, path: str, several: bool = False) -> int:
    """Decode one capture and print it. ``several``: one of several files, so that each JSON
    object and CSV row says which file it is from (and the CSV header is left to the caller)."""
    # A bar while it runs, on a terminal, where it does not mix with the packets printed there.
    quiet_stdout = args.summary or args.parquet or not sys.stdout.isatty()
    bar = ProgressBar(Path(path).name) if sys.stderr.isatty() and quiet_stdout and not several else None
    try:
        return _decode(args, path, several, bar)
    finally:
        if bar is not None:
            bar.clear()


def _decode(args: argparse.Namespace, path: str, several: bool, bar: ProgressBar | None) -> int:
    stream = _open(args, path, bar)
    if args.summary:
        return _summary_only(path, stream, bar)
    if args.parquet:
        return _parquet(args, path, stream, bar)
    topology = topology_from_args(args)
    wanted = _selector(args)
    summary = CaptureSummary()
    out = sys.stdout
    writer = None
    if args.csv:
        writer = csv.DictWriter(
            out, fieldnames=(("file",) if several else ()) + _format.CSV_FIELDS, lineterminator="\n"
        )
        if not several:
            writer.writeheader()
    elif not args.json:
        print(_format.TABLE_HEADER, file=out)
    shown = 0
    for record in stream:
        if topology is not None:
            record = annotate(record, topology)
        summary.add(record)
        if not wanted(record):
            continue
        shown += 1
        if args.json:
            print(_format.json_line(record, path if several else None), file=out)
        elif writer is not None:
            writer.writerow({"file": path, **_format.csv_row(record)} if several else _format.csv_row(record))
        elif args.detail:
            print("\n".join(_format.detail_lines(record)), file=out)
        else:
            print(_format.table_row(record), file=out)
    summary.stopped_early = stream.problem
    if bar is not None:
        bar.clear()
    if not (args.json or args.csv):
        print(file=out)
        for line in summary.lines():
            print(line, file=out)
        if shown != summary.packets:
            print(f"{shown} of {summary.packets} packets shown (filters)", file=out)
    return _problem(path, stream, summary.packets)
