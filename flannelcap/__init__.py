"""flannelcap: make flannel's VXLAN overlay visible.

Decode captures taken on Kubernetes nodes (VXLAN on UDP 8472 and 4789) down to the inner
Ethernet, IP, TCP and HTTP, in one vocabulary of field names. The public API is re-exported
here from private modules; everything else is internal.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flannelcap._errors import (
    AuthenticationError,
    BadArgument,
    CaptureError,
    CaptureFormatError,
    CaptureTruncatedError,
    CommandError,
    ConnectError,
    FlannelcapError,
    HostKeyError,
    LabError,
    RemoteError,
    SudoError,
    TableParseError,
    TopologyError,
)

if TYPE_CHECKING:
    from flannelcap._api import Capture, read
    from flannelcap._many import Captures, read_many
    from flannelcap.packets.capture import RecordStream, decode_file, scapy_packet
    from flannelcap.packets.reader import CaptureReader, Frame
    from flannelcap.packets.records import FIELD_NAMES, Layer, PacketRecord
    from flannelcap.packets.scapy_decoder import Decoder
    from flannelcap.packets.summary import CaptureSummary
    from flannelcap.packets.vxlan import DEFAULT_VXLAN_PORTS
    from flannelcap.topology.model import Topology

__version__ = "0.1.0"

# The public names, each loaded from its module on first use: importing the package imports
# neither numpy, Scapy nor pandas, so that the command line can set up the process first
# (``cli``) and starts in a fraction of the time when a command does not need them.
_LAZY = {
    "CaptureReader": "flannelcap.packets.reader",
    "Frame": "flannelcap.packets.reader",
    "FIELD_NAMES": "flannelcap.packets.records",
    "Layer": "flannelcap.packets.records",
    "PacketRecord": "flannelcap.packets.records",
    "CaptureSummary": "flannelcap.packets.summary",
    "DEFAULT_VXLAN_PORTS": "flannelcap.packets.vxlan",
    "Topology": "flannelcap.topology.model",
    "Capture": "flannelcap._api",
    "read": "flannelcap._api",
    "Captures": "flannelcap._many",
    "read_many": "flannelcap._many",
    "RecordStream": "flannelcap.packets.capture",
    "decode_file": "flannelcap.packets.capture",
    "scapy_packet": "flannelcap.packets.capture",
    "Decoder": "flannelcap.packets.scapy_decoder",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'flannelcap' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names, loaded or not (what a notebook offers after ``flannelcap.``)."""
    return sorted({*globals(), *__all__})


__all__ = [
    "DEFAULT_VXLAN_PORTS",
    "FIELD_NAMES",
    "AuthenticationError",
    "BadArgument",
    "Capture",
    "CaptureError",
    "CaptureFormatError",
    "CaptureReader",
    "CaptureSummary",
    "CaptureTruncatedError",
    "Captures",
    "CommandError",
    "ConnectError",
    "Decoder",
    "FlannelcapError",
    "Frame",
    "HostKeyError",
    "LabError",
    "Layer",
    "PacketRecord",
    "RecordStream",
    "RemoteError",
    "SudoError",
    "TableParseError",
    "Topology",
    "TopologyError",
    "__version__",
    "decode_file",
    "read",
    "read_many",
    "scapy_packet",
]
