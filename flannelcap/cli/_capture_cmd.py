"""``flannelcap capture``: tcpdump on nodes over SSH, one local pcap per node.

Rule: argument parsing, the live progress line and the summary; the work is
``flannelcap.remote``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from flannelcap._errors import FlannelcapError

if TYPE_CHECKING:  # paramiko is imported when a command needs it, not to parse arguments
    from flannelcap.remote._capture import NodeCapture
    from flannelcap.remote._ssh import SshOptions


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


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``capture``."""
    parser = subparsers.add_parser(
        "capture",
        help="run tcpdump on nodes over SSH; one local pcap per node, with its tables",
        description="Capture on each NODE (as in 'ssh NODE') at the same time; Ctrl-C stops.",
    )
    parser.add_argument("nodes", nargs="+", metavar="NODE")
    parser.add_argument("-i", "--interface", default="eth0", help="interface on the nodes (default eth0)")
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
    """Capture; print one line per node. Exit 1 if any node failed."""
    from flannelcap.remote._capture import CaptureRequest, CaptureSession

    if (args.count is not None and args.count < 1) or (args.duration is not None and args.duration <= 0):
        raise FlannelcapError("--count and --duration must be positive")
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
    session = CaptureSession(args.nodes, request, ssh_options(args))
    session.start()
    interrupted = False
    try:
        session.wait_listening()
        for node, state in session.captures.items():
            if state.listening:
                print(f"{node}: capturing on {args.interface} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        session.wait(_progress if sys.stderr.isatty() else None)
    except KeyboardInterrupt:
        interrupted = True
        session.stop()
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    failed = 0
    for node, state in session.captures.items():
        if state.error:
            failed += 1
            kept = f" (kept {state.packets} packets in {state.path}, marked partial)" if state.partial else ""
            print(f"flannelcap: error: {state.error}{kept}", file=sys.stderr)
            continue
        tables = f", tables in {state.tables_dir}" if state.tables_dir else ""
        print(f"{node}: {state.packets} packets, {state.bytes} bytes → {state.path}{tables}")
    if interrupted:
        print("stopped (Ctrl-C)", file=sys.stderr)
    return 1 if failed else 0
