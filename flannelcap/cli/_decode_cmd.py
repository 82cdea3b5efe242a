"""``flannelcap decode``: argument parsing for the command, and writing what it decodes.

Rule: no decoding logic here. It opens the one pipeline (``open_capture``), picks the rows the
filters want from each column batch, and writes the batch through a view (the table, JSON,
CSV, Parquet); only ``-v`` goes packet by packet, through the Scapy decoder's layer stack.
"""

from __future__ import annotations

import argparse
import functools
import queue
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flannelcap._errors import BadArgument, FlannelcapError
from flannelcap.cli import _format
from flannelcap.cli._progress import ProgressBar
from flannelcap.cli._topology_args import add_topology_options, topology_from_args
from flannelcap.packets.kernel import NONE
from flannelcap.packets.lines import csv_header
from flannelcap.packets.pipeline import PacketSource, check_capture_node, open_capture, vxlan_ports_for
from flannelcap.packets.summary import CaptureSummary
from flannelcap.packets.tunnels import tunnel_port
from flannelcap.topology.annotate import annotate

if TYPE_CHECKING:
    from flannelcap.packets.columns import ColumnBatch, Columns

PROTO_CHOICES = ("tcp", "udp", "icmp", "arp", "http", "http2", "grpc", "dns", "tls")


def add_parsers(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    parser.add_argument(
        "--tunnel-port",
        type=_tunnel_port,
        action="append",
        default=[],
        metavar="PROTO:PORT",
        help="also decode this UDP port as a tunnel: vxlan, geneve, udp-tun (flannel's udp backend) or wireguard "
        "(repeatable; on by default: vxlan 8472/4789, geneve 6081, udp-tun 8285, wireguard 51820/51821)",
    )
    parser.add_argument(
        "--node",
        metavar="NAME",
        help="the node the capture was taken on: its 'ip link' in --tables/--topology names the interfaces "
        "of a -i any capture (default: the node the file's name starts with)",
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
        "--wireshark",
        action="store_true",
        help="with -v: Wireshark's own dissection of the packets --packets names, through tshark (pyshark); "
        "flannelcap's VXLAN ports applied as Decode-As",
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


def _tunnel_port(text: str) -> tuple[str, int]:
    try:
        return tunnel_port(text)
    except BadArgument as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--tunnel-port {text!r}: ")) from None


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


def _wanted(args: argparse.Namespace, batch: ColumnBatch, columns: Columns) -> np.ndarray | None:  # type: ignore[type-arg]
    """The rows of a batch the filters keep (None: all of them)."""
    keep = np.ones(batch.n, dtype=np.bool_)
    if args.packets:
        number = batch.ints["number"]
        keep &= (number >= args.packets[0]) & (number <= args.packets[1])
    if args.only_vxlan or args.vni:
        keep &= batch.bools["is_vxlan"]
    if args.vni:
        keep &= np.isin(batch.ints["vni"], list(args.vni))
    if args.proto == "http":
        keep &= (batch.codes["http_method"] >= 0) | (batch.ints["http_status"] != NONE)
    elif args.proto == "http2":
        keep &= batch.codes["http2_frames"] >= 0
    elif args.proto == "grpc":
        grpc = [i for i, t in enumerate(columns.labels["http_content_type"].texts) if t.startswith("application/grpc")]
        keep &= np.isin(batch.codes["http_content_type"], grpc) | (batch.ints["grpc_status"] != NONE)
    elif args.proto == "dns":
        keep &= batch.ints["dns_id"] != NONE
    elif args.proto == "tls":
        keep &= batch.codes["tls_handshake"] >= 0
    elif args.proto:
        labels = columns.labels["proto"].texts
        code = labels.index(args.proto) if args.proto in labels else -2
        keep &= batch.codes["proto"] == code
    return None if keep.all() else keep


def _open(args: argparse.Namespace, path: str, bar: ProgressBar | None) -> PacketSource:
    topology = topology_from_args(args)
    check_capture_node(topology, args.node)
    return open_capture(
        path,
        topology=topology,
        vxlan_ports=args.vxlan_port,
        tunnel_ports=args.tunnel_port,
        engine=args.engine,
        progress=bar,
        node=args.node,
    )


def _summary_only(path: str, source: PacketSource, bar: ProgressBar | None) -> int:
    summary = source.summary()
    if bar is not None:
        bar.clear()
    print("\n".join(summary.lines()))
    if source.fallback_frames and not source.stream.scapy_only:
        from flannelcap.packets import kernel as _kernel

        why = "the fast path is not built" if _kernel.UNAVAILABLE else "layouts the fast path does not take"
        print(f"{source.fallback_frames} packets decoded by Scapy ({why})")
    return _problem(path, source.problem, summary.packets)


def _problem(path: str, problem: str | None, packets: int) -> int:
    if problem:
        if packets == 0:
            raise FlannelcapError(f"{path}: nothing could be decoded: {problem}")
        print(
            f"flannelcap: warning: {path}: {problem}; the {packets} packets before it were decoded",
            file=sys.stderr,
        )
    return 0


def _parquet(args: argparse.Namespace, path: str, source: PacketSource, bar: ProgressBar | None) -> int:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise FlannelcapError("--parquet needs pyarrow: pip install pyarrow") from exc
    from flannelcap.packets.frames import PARQUET_OPTIONS, SCHEMA, arrow_batch
    from flannelcap.packets.lines import take

    if args.parquet.exists() and args.parquet.samefile(path):
        raise FlannelcapError(f"{args.parquet} is the capture itself: name another file to write")
    packets = 0
    try:
        with pq.ParquetWriter(args.parquet, SCHEMA, **PARQUET_OPTIONS) as writer, _Behind(writer.write_batch) as write:
            for batch in source:
                keep = _wanted(args, batch, source.columns)
                shown = batch if keep is None else take(batch, np.nonzero(keep)[0])
                write(arrow_batch(shown, source.columns))
                packets += shown.n
    except OSError as exc:
        raise FlannelcapError(f"cannot write {args.parquet}: {exc.strerror or exc}") from exc
    if bar is not None:
        bar.clear()
    summary = source.summary()
    print(f"{packets} packets written to {args.parquet}")
    return _problem(path, source.problem, summary.packets)


class _Behind:
    """Calls ``work`` on each item in a second thread, one item behind the caller: Parquet's
    encoding (which releases the GIL) runs while the next batch is decoded. An error in the
    thread is raised in the caller, at the next item or on leaving."""

    def __init__(self, work: Callable[[Any], object]) -> None:
        self._work = work
        self._items: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="flannelcap-writer", daemon=True)

    def _run(self) -> None:
        while (item := self._items.get()) is not _DONE:
            if self._error is None:
                try:
                    self._work(item)
                except BaseException as exc:  # handed to the caller
                    self._error = exc

    def __enter__(self) -> Callable[[Any], None]:
        self._thread.start()
        return self._put

    def _put(self, item: Any) -> None:
        if self._error is not None:
            raise self._error
        self._items.put(item)

    def __exit__(self, *exc: object) -> None:
        self._items.put(_DONE)
        self._thread.join()
        if self._error is not None and exc[0] is None:
            raise self._error


_DONE = object()


def run(args: argparse.Namespace) -> int:
    """Decode ``args.file`` (one capture or several) and print it. Returns the exit code."""
    if len(args.file) == 1:
        return decode_one(args, args.file[0])
    if args.detail or args.parquet:
        raise FlannelcapError("-v and --parquet take one capture file at a time")
    from flannelcap.cli._many import default_jobs, run_each

    def before(index: int, path: str) -> None:
        if args.csv and index == 0:
            print(csv_header(file=True))
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
    if args.wireshark:
        return _wireshark(args, path)
    if args.detail:
        return _detail(args, path)
    source = _open(args, path, bar)
    if args.summary:
        return _summary_only(path, source, bar)
    if args.parquet:
        return _parquet(args, path, source, bar)
    from flannelcap.packets import lines

    out = sys.stdout.buffer
    name = path if several else None
    if args.csv and not several:
        out.write((lines.csv_header() + "\n").encode())
    elif not (args.json or args.csv):
        out.write((lines.TABLE_HEADER + "\n").encode())
    shown = 0
    for batch in source:
        keep = _wanted(args, batch, source.columns)
        if keep is not None:
            batch = lines.take(batch, np.nonzero(keep)[0])
        shown += batch.n
        if args.json:
            out.writelines(lines.json_lines(batch, source.columns, name))
        elif args.csv:
            out.writelines(lines.csv_rows(batch, source.columns, name))
        else:
            out.writelines(lines.table_lines(batch, source.columns))
    out.flush()
    summary = source.summary()
    if bar is not None:
        bar.clear()
    if not (args.json or args.csv):
        _footer(summary, shown)
    return _problem(path, source.problem, summary.packets)


def _footer(summary: CaptureSummary, shown: int) -> None:
    print()
    for line in summary.lines():
        print(line)
    if shown != summary.packets:
        print(f"{shown} of {summary.packets} packets shown (filters)")


WIRESHARK_MOST = 1000  # packets one --wireshark run dissects


def _wireshark(args: argparse.Namespace, path: str) -> int:
    """``-v --wireshark --packets N``: Wireshark's detail pane of each packet named."""
    if not args.detail or args.packets is None:
        raise BadArgument("--wireshark shows chosen packets in detail: use it with -v and --packets N (or FIRST-LAST)")
    first, last = args.packets
    if last - first >= WIRESHARK_MOST:
        raise BadArgument(f"--wireshark dissects at most {WIRESHARK_MOST} packets at once: give a shorter --packets")
    from flannelcap._wireshark import dissect, dissection_text

    topology = topology_from_args(args)
    packets = dissect(path, range(first, last + 1), vxlan_ports_for(topology, args.vxlan_port))
    for number, packet in packets.items():
        print(f"Packet {number} of {Path(path).name} (Wireshark, through tshark):")
        print(dissection_text(packet))
        print()
    return 0


def _detail(args: argparse.Namespace, path: str) -> int:
    """``-v``: every field of every layer, packet by packet, from the Scapy decoder (the filters
    are ``_format.wanted``, the record-by-record twin of ``_wanted``)."""
    if args.engine == "fast":
        raise FlannelcapError("-v needs every field of every layer: use it with --engine scapy (or auto)")
    from flannelcap.packets.capture import decode_file

    topology = topology_from_args(args)
    stream = decode_file(path, vxlan_ports=vxlan_ports_for(topology, args.vxlan_port), detail=True)
    summary = CaptureSummary()
    print(_format.TABLE_HEADER)
    shown = 0
    for record in stream:
        if topology is not None:
            record = annotate(record, topology)
        summary.add(record)
        if _format.wanted(args, record):
            shown += 1
            print("\n".join(_format.detail_lines(record)))
    summary.stopped_early = stream.problem
    _footer(summary, shown)
    return _problem(path, stream.problem, summary.packets)
