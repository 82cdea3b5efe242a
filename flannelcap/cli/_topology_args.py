"""Command-line options that name a topology, shared by decode, audit and explain.

Rule: argument handling only; reading goes through ``flannelcap.topology.collect``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

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
