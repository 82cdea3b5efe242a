"""VXLAN's numbers (RFC 7348), shared by both decoders.

Rule: constants, and the check of a port list a caller gives.
"""

from __future__ import annotations

from collections.abc import Iterable

from flannelcap._errors import BadArgument

# 8472: the Linux kernel's default, used by flannel and Cilium; 4789: IANA (RFC 7348), Calico.
DEFAULT_VXLAN_PORTS: frozenset[int] = frozenset({8472, 4789})
VXLAN_HEADER_LEN = 8
VXLAN_FLAG_I = 0x08  # the VNI is valid
VXLAN_FLAG_G = 0x80  # group-based policy extension


def udp_ports(ports: Iterable[object]) -> frozenset[int]:
    """``ports`` as a set of UDP port numbers.

    Raises:
        BadArgument: one is not a whole number from 1 to 65535.
    """
    checked = set()
    for port in ports:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise BadArgument(f"{port!r} is not a UDP port (a whole number from 1 to 65535)")
        checked.add(port)
    return frozenset(checked)
