"""Command-line options that name a topology, shared by decode, audit, explain, journey and
services, and the node each capture was taken on.

Rule: argument handling only; reading goes through ``flannelcap.topology.collect``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from flannelcap._errors import BadArgument
from flannelcap.topology.collect import read_topology, topology_from_dir
from flannelcap.topology.model import Topology


def add_topology_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """``--topology FILE`` (from ``flannelcap map``) or ``--tables DIR`` (saved output)."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--topology", type=Path, metavar="FILE", help="topology written by 'flannelcap map -o'")
    group.add_argument("--tables", type=Path, metavar="DIR", help="node tables saved by hand or by 'lab record'")


def topology_from_args(args: argparse.Namespace) -> Topology | None:
    """The topology the options name, or ``None`` when none was given."""
    if getattr(args, "topology", None):
        return read_topology(args.topology)
    if getattr(args, "tables", None):
        return topology_from_dir(args.tables)
    return None


def add_node_option(parser: argparse.ArgumentParser) -> None:
    """``--node FILE=NODE``: the node a capture was taken on, where its file name does not say."""
    parser.add_argument(
        "--node",
        action="append",
        default=[],
        metavar="FILE=NODE",
        help="the node a capture was taken on, where its file name does not say (repeatable)",
    )


def node_names(pairs: list[str]) -> dict[str, str]:
    """``--node FILE=NODE`` options as file → node.

    Raises:
        BadArgument: an option is not ``FILE=NODE``.
    """
    nodes = {}
    for pair in pairs:
        file, sep, node = pair.rpartition("=")
        if not sep or not file or not node:
            raise BadArgument(f"--node {pair!r}: write it as FILE=NODE")
        nodes[file] = node
    return nodes


def saved_tables(files: list[Path]) -> tuple[Topology | None, str | None]:
    """The tables saved beside the captures — ``<time>.tables/`` as ``flannelcap capture``
    writes them, or ``tables/`` as ``flannelcap lab record`` does — where there is exactly one
    such directory, and what to say about it on stderr."""
    found = sorted({d for f in files for d in (*f.parent.glob("*.tables"), f.parent / "tables") if d.is_dir()})
    if len(found) != 1:
        several = f"{len(found)} tables directories beside the captures: name one with --tables"
        return None, several if found else None
    return topology_from_dir(found[0]), f"nodes and pods named from {found[0]}"
