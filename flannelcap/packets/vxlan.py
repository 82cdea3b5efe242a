"""VXLAN's numbers (RFC 7348), shared by both decoders.

Rule: constants only.
"""

from __future__ import annotations

# 8472: the Linux kernel's default, used by flannel and Cilium; 4789: IANA (RFC 7348), Calico.
DEFAULT_VXLAN_PORTS: frozenset[int] = frozenset({8472, 4789})
VXLAN_HEADER_LEN = 8
VXLAN_FLAG_I = 0x08  # the VNI is valid
VXLAN_FLAG_G = 0x80  # group-based policy extension
