"""The ``flannelcap`` command line: parsing, dispatch, and the one place errors are printed.

Rule: commands format and print; the logic lives in the library. Every ``FlannelcapError``
becomes one line on stderr and exit status 1; bad usage exits 2 (argparse); a traceback is a
bug.
"""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from collections.abc import Sequence

from flannelcap import __version__
from flannelcap._errors import FlannelcapError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    from flannelcap.cli import (
        _capture_cmd,
        _decode_cmd,
        _journey_cmd,
        _lab_cmd,
        _plot_cmd,
        _report_cmd,
        _services_cmd,
        _topology_cmds,
    )

    parser = argparse.ArgumentParser(
        prog="flannelcap",
        description="Make flannel's VXLAN overlay visible: decode captures, map nodes and pods.",
    )
    parser.add_argument("--version", action="version", version=f"flannelcap {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _decode_cmd.add_parser(subparsers)
    _topology_cmds.add_parsers(subparsers)
    _capture_cmd.add_parser(subparsers)
    _journey_cmd.add_parser(subparsers)
    _services_cmd.add_parser(subparsers)
    _plot_cmd.add_parser(subparsers)
    _report_cmd.add_parser(subparsers)
    _lab_cmd.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line. Returns the process exit status."""
    args = build_parser().parse_args(argv)
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
