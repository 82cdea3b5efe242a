"""flannelcap: make flannel's VXLAN overlay visible.

Decode captures taken on Kubernetes nodes (VXLAN on UDP 8472 and 4789) down to the inner
Ethernet, IP, TCP and HTTP, in one vocabulary of field names. The public API is re-exported
here from private modules; everything else is internal.
"""

from flannelcap._api import Capture, read
from flannelcap._capture import RecordStream, decode_file, scapy_packet
from flannelcap._decode import DEFAULT_VXLAN_PORTS, Decoder
from flannelcap._errors import (
    CaptureError,
    CaptureFormatError,
    CaptureTruncatedError,
    FlannelcapError,
    LabError,
    TableParseError,
    TopologyError,
)
from flannelcap._reader import CaptureReader, Frame
from flannelcap._records import FIELD_NAMES, Layer, PacketRecord
from flannelcap._summary import CaptureSummary
from flannelcap._topology import Topology

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_VXLAN_PORTS",
    "FIELD_NAMES",
    "Capture",
    "CaptureError",
    "CaptureFormatError",
    "CaptureReader",
    "CaptureSummary",
    "CaptureTruncatedError",
    "Decoder",
    "FlannelcapError",
    "Frame",
    "LabError",
    "Layer",
    "PacketRecord",
    "RecordStream",
    "TableParseError",
    "Topology",
    "TopologyError",
    "__version__",
    "decode_file",
    "read",
    "scapy_packet",
]
