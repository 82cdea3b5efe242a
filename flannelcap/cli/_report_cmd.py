"""``flannelcap report``: one self-contained HTML page of one or more captures.

Rule: argument parsing only; the page is made by ``flannelcap.report``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from flannelcap.cli._topology_args import add_topology_options, topology_from_args


def add_parsers(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``report``."""
    parser = subparsers.add_parser(
        "report",
        help="write one HTML page: summary, Figure 2, path, conversations, findings, packets",
        description="Write one self-contained HTML page (no external requests; prints well) of the captures: "
        "summary, Figure 2 and the path with your addresses, conversations, HTTP, findings with their "
        "evidence, the packet list, and the lab's answers where the tables allow.",
    )
    parser.add_argument("file", nargs="+", help="capture file(s)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the HTML file to write")
    parser.add_argument(
        "--max-packets", type=int, default=2000, metavar="N", help="packets in the packet list (default 2000)"
    )
    parser.add_argument(
        "--flow", type=int, metavar="N", help="the conversation Figure 2, the path and the ladder show (row of flows())"
    )
    add_topology_options(parser, required=False)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Read the captures and write the page."""
    from flannelcap._api import read
    from flannelcap.report import write_report

    topology = topology_from_args(args)
    captures = [read(path, topology=topology) for path in args.file]
    written = write_report(captures, args.output, max_packets=max(0, args.max_packets), flow=args.flow)
    print(f"report written to {written}")
    return 0
