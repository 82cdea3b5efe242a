"""The ``flannelcap`` command line: parsing, dispatch, and the one place errors are printed.

Rule: commands format and print; the logic lives in the library. Every ``FlannelcapError``
becomes one line on stderr and exit status 1; bad usage exits 2 (argparse); a traceback is a
bug.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import warnings
from collections.abc import Sequence

# The command line does no linear algebra: numpy's OpenBLAS is kept to the calling thread.
# Otherwise its worker threads, started when numpy is imported, spin for a while on the cores
# the decode needs (on two cores, 0.1 s of CPU per decode; `decode --parquet` of a million
# short calls 1.44 → 1.41 s). Set before numpy is first imported (the package imports it only
# when used); a value the user set is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from flannelcap import __version__
from flannelcap._errors import FlannelcapError

# Each subcommand and the module that registers and runs it. Only the module of the command
# asked for is imported (the others pull in the lab, SSH or plotting code a decode never needs);
# without a known command, for ``--help`` or a usage error, every one is.
COMMAND_MODULES = {
    "decode": "_decode_cmd",
    "map": "_topology_cmds",
    "audit": "_topology_cmds",
    "explain": "_topology_cmds",
    "capture": "_capture_cmd",
    "journey": "_journey_cmd",
    "services": "_services_cmd",
    "plot": "_plot_cmd",
    "report": "_report_cmd",
    "lab": "_lab_cmd",
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser: with ``argv`` naming a command, that command's alone; otherwise
    every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="flannelcap",
        description="Make flannel's VXLAN overlay visible: decode captures, map nodes and pods.",
    )
    parser.add_argument("--version", action="version", version=f"flannelcap {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    asked = next((arg for arg in argv or () if not arg.startswith("-")), None)
    chosen = [COMMAND_MODULES[asked]] if asked in COMMAND_MODULES else list(dict.fromkeys(COMMAND_MODULES.values()))
    for name in chosen:
        module = importlib.import_module(f"flannelcap.cli.{name}")
        module.add_parsers(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line. Returns the process exit status."""
    if argv is None:
        argv = sys.argv[1:]
    args = build_parser(argv).parse_args(argv)
    warnings.formatwarning = _one_line_warning
    try:
        return int(args.run(args))
    except FlannelcapError as exc:
        print(f"flannelcap: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("flannelcap: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (e.g. `| head`): stop quietly, as tcpdump does.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        return 0


def _one_line_warning(message: Warning | str, *_: object, **__: object) -> str:
    return f"flannelcap: warning: {message}\n"


def entry_point() -> None:
    """Console-script entry point."""
    sys.exit(main())
