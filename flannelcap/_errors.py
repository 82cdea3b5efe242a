"""The one error tree of flannelcap.

Every exception the library raises on purpose is a ``FlannelcapError``. Errors from the
libraries underneath (Scapy, the ``ip`` command, the OS) are caught at the boundary that
meets them and re-raised as one of these, ``from`` the original, with a message a user can
act on: what went wrong, and what to do about it. The CLI prints ``str(error)`` as one line.

    FlannelcapError
    ├── CaptureError                a capture file cannot be read
    │   ├── CaptureFormatError      not a pcap/pcapng file, or a header that makes no sense
    │   └── CaptureTruncatedError   the file ends inside a header or record
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


class LabError(FlannelcapError):
    """The namespace lab could not be built, used or removed."""
