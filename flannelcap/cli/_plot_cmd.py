"""``flannelcap plot``: write one of the figures of ``flannelcap.plots`` to a file.

Rule: argument parsing and saving only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from flannelcap._errors import FlannelcapError
from flannelcap.cli._topology_args import add_topology_options, topology_from_args

KINDS = ("figure2", "ladder", "matrix", "timeline")


def add_parsers(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``plot``."""
    parser = subparsers.add_parser(
        "plot",
        help="draw the lab's Figure 2, a ladder diagram, the node traffic matrix or a timeline",
        description="Draw a figure of a capture (with --topology/--tables for names) into a PNG, SVG or PDF.",
    )
    parser.add_argument("file", help="capture file")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("-o", "--output", type=Path, required=True, help="image file (.png, .svg, .pdf)")
    parser.add_argument("--flow", type=int, default=0, help="which conversation (figure2, ladder): row of flows()")
    add_topology_options(parser, required=False)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Draw and save the figure."""
    from flannelcap import plots
    from flannelcap._api import read

    capture = read(args.file, topology=topology_from_args(args))
    if args.kind in ("figure2", "ladder"):
        figure = plots.FIGURES[args.kind](capture, flow=args.flow)  # type: ignore[operator]
    else:
        figure = plots.FIGURES[args.kind](capture)  # type: ignore[operator]
    try:
        figure.savefig(args.output, dpi=110, bbox_inches="tight")
    except (OSError, ValueError) as exc:
        raise FlannelcapError(f"cannot write {args.output}: {exc}") from exc
    print(f"{args.kind} written to {args.output}")
    return 0
