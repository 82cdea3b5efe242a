"""``flannelcap capture``: tcpdump on nodes over SSH, one local pcap per node, shown live.

Rule: argument parsing, wiring the session's taps to the live view (``_live_view``) and to the
merged pcapng of ``-w`` (``remote._pcapng_stream``), the progress line and the summary; the
capturing is ``flannelcap.remote``.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from flannelcap._errors import FlannelcapError
from flannelcap.cli._topology_args import add_topology_options, topology_from_args

if TYPE_CHECKING:  # paramiko is imported when a command needs it, not to parse arguments
    from collections.abc import Callable

    from flannelcap.cli._live_view import LiveView
    from flannelcap.remote._capture import CaptureSession, NodeCapture
    from flannelcap.remote._pcapng_stream import PcapngMerger
    from flannelcap.remote._ssh import SshOptions
    from flannelcap.topology.model import Topology
    from flannelcap.topology.targets import CaptureTarget


def add_ssh_options(parser: argparse.ArgumentParser) -> None:
    """``-F`` and ``--accept-new-host-key``, as for ``ssh``."""
    parser.add_argument("-F", "--ssh-config", type=Path, metavar="FILE", help="ssh config file (default ~/.ssh/config)")
    parser.add_argument(
        "--accept-new-host-key",
        action="store_true",
        help="add unknown host keys to known_hosts (changed keys are always refused)",
    )


def ssh_options(args: argparse.Namespace) -> SshOptions:
    """The SSH options the arguments name."""
    from flannelcap.remote._ssh import SshOptions

    return SshOptions(config=args.ssh_config, accept_new_host_key=args.accept_new_host_key)


def add_parsers(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``capture``."""
    parser = subparsers.add_parser(
        "capture",
        help="run tcpdump on nodes over SSH; one local pcap per node, with its tables",
        description="Capture on each NODE (as in 'ssh NODE') at the same time, showing the packets as they "
        "arrive on a terminal; Ctrl-C stops.",
    )
    parser.add_argument("nodes", nargs="*", metavar="NODE")
    parser.add_argument("-i", "--interface", default="eth0", help="interface on the nodes (default eth0)")
    parser.add_argument(
        "--pod",
        action="append",
        default=[],
        metavar="NAME",
        help="capture on this pod's node, on its veth (found in --tables/--topology); repeat for more pods",
    )
    parser.add_argument(
        "--selector", metavar="LABELS", help="capture every pod with these labels, e.g. app=nginx (as kubectl -l)"
    )
    parser.add_argument(
        "--node-level",
        action="store_true",
        help="every interface of the node at once (-i any: eth0, flannel.1, cni0, the veths), each packet's "
        "interface named from the node's tables; with --pod, filtered to the pods and VXLAN",
    )
    parser.add_argument("-f", "--filter", default="", help="tcpdump filter, e.g. 'udp port 8472'")
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    stop.add_argument("-c", "--count", type=int, metavar="N", help="stop after N packets on each node")
    stop.add_argument("--max-size", type=float, metavar="MB", help="stop a node's capture at MB megabytes")
    parser.add_argument("-o", "--output-dir", type=Path, default=Path("."), help="where to write (default .)")
    parser.add_argument(
        "--via-file",
        action="store_true",
        help="write on the node and fetch with SFTP (then remove it) instead of streaming",
    )
    view = parser.add_mutually_exclusive_group()
    view.add_argument("-q", "--quiet", action="store_true", help="no live view of the packets")
    view.add_argument("--live", action="store_true", help="the live view even when stdout is not a terminal")
    view.add_argument("--json", action="store_true", help="the live view as JSON lines (as 'decode --json')")
    parser.add_argument(
        "-w",
        "--write",
        metavar="FILE",
        help="also write one merged pcapng (an interface per node, named NODE:IFACE) to FILE; "
        "'-' for stdout, e.g. '-w - | wireshark -k -i -'",
    )
    add_topology_options(parser, required=False)
    parser.add_argument(
        "--sudo-password",
        action="store_true",
        help="ask once for the sudo password (sent on stdin, never on a command line)",
    )
    add_ssh_options(parser)
    parser.set_defaults(run=run)


def _progress(captures: dict[str, NodeCapture]) -> None:
    parts = []
    for node, state in captures.items():
        status = "error" if state.error else ("done" if state.done else "")
        parts.append(f"{node}: {state.packets} packets {state.bytes / 1000:.1f} kB {status}".rstrip())
    sys.stderr.write("\r" + "  |  ".join(parts) + "\x1b[K")
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    """Capture; show the packets live (on a terminal), print one line per node. Exit 1 if any
    node failed."""
    from flannelcap.remote._capture import CaptureRequest, CaptureSession

    if (args.count is not None and args.count < 1) or (args.duration is not None and args.duration <= 0):
        raise FlannelcapError("--count and --duration must be positive")
    if args.node_level and args.interface != "eth0":
        raise FlannelcapError("--node-level captures every interface (-i any): leave out -i")
    to_stdout = args.write == "-"
    if to_stdout and (args.json or args.live):
        raise FlannelcapError("-w - writes the packets to stdout: the live view cannot go there too; leave out -w -")
    if args.via_file and (args.live or args.json or args.write):
        raise FlannelcapError("--via-file has no stream to show or merge: leave out --via-file")
    topology = topology_from_args(args)  # before connecting: a bad --tables is one line, nothing started
    nodes, interfaces, filters = _targets(args, topology)
    view = None if args.via_file else _live_view(args, nodes)  # a file fetched at the end shows nothing live
    merged = _merged_output(args.write) if args.write else None
    password = getpass.getpass("sudo password on the nodes: ") if args.sudo_password else None
    request = CaptureRequest(
        interface=args.interface,
        filter=args.filter,
        duration=args.duration,
        count=args.count,
        max_bytes=int(args.max_size * 1_000_000) if args.max_size else None,
        via_file=args.via_file,
        sudo_password=password,
        output_dir=args.output_dir,
    )
    taps: dict[str, list[Callable[[bytes], object]]] = {node: [] for node in nodes}
    for node in nodes:
        if view is not None:
            taps[node].append(view.tap(node))
        if merged is not None:
            taps[node].append(merged.stream(f"{node}:{interfaces[node]}"))
    session = CaptureSession(nodes, request, ssh_options(args), taps, interfaces, filters)
    session.start()
    interrupted = False
    quiet_progress = view is not None or to_stdout or not sys.stderr.isatty()
    try:
        session.wait_listening()
        for node, state in session.captures.items():
            if state.listening:
                where = session.interfaces[node]
                print(f"{node}: capturing on {where} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        if view is not None:
            if topology is None:  # name what the view shows after the tables the capture takes
                session.wait_tables()
                topology = _saved_topology(session)
            view.start(topology, {n: s.path for n, s in session.captures.items()})
        session.wait(None if quiet_progress else _progress)
    except KeyboardInterrupt:
        interrupted = True
        session.stop()
    finally:
        if view is not None:
            view.finish()
    if not quiet_progress:
        sys.stderr.write("\n")
    summary = sys.stderr if view is not None or to_stdout else sys.stdout  # stdout holds the packets
    failed = 0
    for node, state in session.captures.items():
        if state.error:
            failed += 1
            kept = f" (kept {state.packets} packets in {state.path}, marked partial)" if state.partial else ""
            print(f"flannelcap: error: {state.error}{kept}", file=sys.stderr)
            continue
        tables = f", tables in {state.tables_dir}" if state.tables_dir else ""
        if state.tables_problem:
            print(f"flannelcap: warning: {node}: tables not saved: {state.tables_problem}", file=sys.stderr)
        counts = state.tcpdump_counts
        said = (
            f" (tcpdump: {counts['captured']} captured, {counts.get('dropped by kernel', '?')} dropped by kernel)"
            if "captured" in counts
            else ""
        )
        print(f"{node}: {state.packets} packets, {state.bytes} bytes → {state.path}{tables}{said}", file=summary)
    if view is not None and view.skipped:
        print(f"live view: {view.skipped} packets not shown (the terminal fell behind)", file=sys.stderr)
    if merged is not None and merged.closed:
        print(f"-w {args.write}: the reader went away; the per-node files hold every packet", file=sys.stderr)
    if interrupted:
        print("stopped (Ctrl-C)", file=sys.stderr)
    return 1 if failed else 0


def _targets(args: argparse.Namespace, topology: Topology | None) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """The nodes to capture on, and each one's interface and tcpdump filter: the nodes named
    (``-i``, or ``any`` with ``--node-level``), or the nodes of ``--pod`` / ``--selector``."""
    if not (args.pod or args.selector):
        if not args.nodes:
            raise FlannelcapError("name a node to capture on, or a pod with --pod / --selector")
        interface = "any" if args.node_level else args.interface
        return list(args.nodes), dict.fromkeys(args.nodes, interface), dict.fromkeys(args.nodes, args.filter)
    if args.nodes:
        raise FlannelcapError("give nodes or --pod/--selector, not both: a pod's node is found from the topology")
    if topology is None:
        raise FlannelcapError("--pod and --selector find pods in the cluster's tables: give --tables DIR or --topology")
    from flannelcap.topology.targets import pod_targets

    targets = [
        _with_veth(t, args) for t in pod_targets(topology, args.pod, args.selector, args.filter, args.node_level)
    ]
    for target in targets:
        print(f"{target.node}: {', '.join(target.pods)} on {target.interface}", file=sys.stderr)
    return [t.node for t in targets], {t.node: t.interface for t in targets}, {t.node: t.filter for t in targets}


def _with_veth(target: CaptureTarget, args: argparse.Namespace) -> CaptureTarget:
    """``target`` with its pod's veth, asked of its node where the tables did not name it."""
    if target.interface:
        return target
    from flannelcap.remote._ssh import SshRunner, connect
    from flannelcap.topology.targets import VETH_TABLES, veth_on_node

    client = connect(target.node, ssh_options(args))
    try:
        runner = SshRunner(target.node, client)
        neigh, fdb = (runner.run(argv) for argv in VETH_TABLES)
    finally:
        client.close()
    return dataclasses.replace(target, interface=veth_on_node(neigh, fdb, target))


def _live_view(args: argparse.Namespace, nodes: list[str]) -> LiveView | None:
    """The live view the arguments ask for (on a terminal, ``--live`` or ``--json``), or None."""
    if args.quiet or args.write == "-" or not (args.json or args.live or sys.stdout.isatty()):
        return None
    from flannelcap.cli._live_view import LiveView

    return LiveView(nodes, as_json=args.json, out=sys.stdout.buffer)


def _merged_output(target: str) -> PcapngMerger:
    """The merged pcapng stream of ``-w``: stdout, or a new file (never one that exists)."""
    from flannelcap.remote._pcapng_stream import PcapngMerger

    if target == "-":
        if sys.stdout.isatty():
            raise FlannelcapError("-w - writes binary pcapng to stdout: pipe it, e.g. '| wireshark -k -i -'")
        return PcapngMerger(sys.stdout.buffer)
    path = Path(target)
    try:
        file = open(path, "xb")  # noqa: SIM115 - open for the whole capture, closed at exit
    except FileExistsError as exc:
        raise FlannelcapError(f"{path} exists: flannelcap never overwrites a capture; choose another -w") from exc
    except OSError as exc:
        raise FlannelcapError(f"cannot write {path}: {exc.strerror}") from exc
    return PcapngMerger(file)


def _saved_topology(session: CaptureSession) -> Topology | None:
    """The topology of the tables the session saved beside the captures, for names in the view
    (None, with a note, where they cannot be read)."""
    from flannelcap.topology.collect import topology_from_dir

    saved = next((s.tables_dir for s in session.captures.values() if s.tables_dir), None)
    if saved is None:
        return None
    try:
        return topology_from_dir(saved)
    except FlannelcapError as exc:
        print(f"flannelcap: the live view names no nodes or pods: {exc}", file=sys.stderr)
        return None
