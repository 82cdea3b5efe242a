"""The one error tree of flannelcap.

Every exception the library raises on purpose is a ``FlannelcapError``. Errors from the
libraries underneath (Scapy, the ``ip`` command, the OS) are caught at the boundary that
meets them and re-raised as one of these, ``from`` the original, with a message a user can
act on: what went wrong, and what to do about it. The CLI prints ``str(error)`` as one line.

    FlannelcapError
    ├── CaptureError                a capture file cannot be read
    │   ├── CaptureFormatError      not a pcap/pcapng file, or a header that makes no sense
    │   └── CaptureTruncatedError   the file ends inside a header or record
    ├── TableParseError             a node table (ip neigh, bridge fdb, …) cannot be read
    ├── TopologyError               a topology file cannot be read or written
    ├── CommandError                a command run on a node failed
    ├── RemoteError                 reaching a node over SSH failed
    │   ├── ConnectError            unreachable, refused, or the connection dropped
    │   ├── HostKeyError            unknown or changed host key
    │   ├── AuthenticationError     no key or password was accepted
    │   └── SudoError               no right to run tcpdump as root
    └── LabError                    the namespace lab cannot be built, used or removed
"""

from __future__ import annotations


class FlannelcapError(Exception):
    """Base class of every error flannelcap raises on purpose."""


class CaptureError(FlannelcapError):
    """A capture file could not be read."""


class CaptureFormatError(CaptureError):
    """The bytes are not a capture flannelcap understands (bad magic, impossible header)."""


class CaptureTruncatedError(CaptureError):
    """The file ends inside a header or a record."""


class TableParseError(FlannelcapError):
    """A node table could not be parsed.

    Args:
        table: which table, e.g. ``"ip neigh"``.
        line_number: 1-based line that could not be read, or 0 for the whole input.
        line: the offending text.
        reason: what was wrong with it.
    """

    def __init__(self, table: str, line_number: int, line: str, reason: str) -> None:
        where = f"line {line_number}" if line_number else "input"
        shown = line.strip()
        shown = shown if len(shown) <= 70 else shown[:67] + "..."
        super().__init__(f"cannot read {table} output, {where}: {reason}" + (f": {shown!r}" if shown else ""))
        self.table = table
        self.line_number = line_number
        self.line = line
        self.reason = reason


class TopologyError(FlannelcapError):
    """A topology could not be built, read or written."""


class CommandError(FlannelcapError):
    """A command run on a node (locally, in a lab namespace or over SSH) exited non-zero."""


class RemoteError(FlannelcapError):
    """A node could not be used over SSH."""


class ConnectError(RemoteError):
    """The node could not be reached, refused the connection, or the connection dropped."""


class HostKeyError(RemoteError):
    """The node's host key is unknown (and not accepted) or has changed."""


class AuthenticationError(RemoteError):
    """The node accepted none of the keys or passwords offered."""


class SudoError(RemoteError):
    """The remote user may not run tcpdump as root."""


class BadArgument(FlannelcapError):
    """A value given to flannelcap that it cannot use: a UDP port out of range, or a node name,
    interface or filter that cannot be passed on to a node's shell safely."""


class LabError(FlannelcapError):
    """The namespace lab could not be built, used or removed."""
