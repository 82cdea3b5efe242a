"""The overlay backends a lab can be built with: what each puts on the wire and which device
carries it, as flannel (and Calico and Cilium, for the two that are theirs) set them up.

Rule: pure data and pure functions; ``_backends`` builds from them. A backend is built with the
kernel's own device where this machine's kernel has one, else by a user-space endpoint that
encapsulates exactly as the device would (``_tunnel_endpoint``, over TUN/TAP) — what flanneld's
own ``udp`` backend always does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backend:
    """One backend.

    Attributes:
        name: as ``lab up --backend`` takes it.
        device: the node's tunnel device (None: plain routes, host-gw).
        encap: the encapsulation on the wire (``packets.tunnels`` names; None: none).
        port: its UDP port, if it has one.
        vni: the VXLAN/Geneve VNI (Geneve: set per packet from the sender's identity).
        kernel_type: the ``ip link`` type of the kernel's device, if the kernel may have one.
        user_space: the kind of user-space endpoint that stands in when it does not (or always,
            for ``udp``), or None.
        flannel_type: flannel's ``backend-type`` annotation (Calico and Cilium have none).
    """

    name: str
    device: str | None
    encap: str | None
    port: int | None = None
    vni: int | None = None
    kernel_type: str | None = None
    user_space: str | None = None
    flannel_type: str | None = None


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("vxlan", "flannel.1", "vxlan", 8472, 1, "vxlan", None, "vxlan"),
        Backend("vxlan-gbp", "flannel.1", "vxlan-gbp", 8472, 1, "vxlan", None, "vxlan"),
        Backend("host-gw", None, None, flannel_type="host-gw"),
        Backend("ipip", "flannel.ipip", "ipip", kernel_type="ipip", user_space="ipip", flannel_type="ipip"),
        Backend("udp", "flannel0", "udp-tun", 8285, user_space="udp", flannel_type="udp"),
        Backend("wireguard", "flannel-wg", "wireguard", 51820, None, "wireguard", "wireguard-go", "wireguard"),
        Backend("geneve", "cilium_geneve", "geneve", 6081, user_space="geneve"),
        Backend("calico-vxlan", "vxlan.calico", "vxlan", 4789, 4096, "vxlan"),
    )
}
GBP_POLICY_BASE = 100  # the group policy ID a node's pods send with: 100 + the node's index
GENEVE_IDENTITY_BASE = 10000  # a pod's security identity (its packets' VNI): 10000 + its address's last 16 bits


def backend(name: str) -> Backend:
    """The backend called ``name``.

    Raises:
        ValueError: no such backend.
    """
    if name not in BACKENDS:
        raise ValueError(f"no backend {name!r}: choose from {', '.join(BACKENDS)}")
    return BACKENDS[name]


def geneve_identity(pod_ip: str) -> int:
    """The security identity the lab's Geneve endpoint sends a pod's packets with (its VNI)."""
    third, fourth = (int(part) for part in pod_ip.split(".")[2:])
    return GENEVE_IDENTITY_BASE + third * 256 + fourth


def backend_annotations(chosen: Backend, vtep_mac: str, public_key: str = "") -> dict[str, str]:
    """A node's flannel annotations for the backend (none for Calico's and Cilium's): the
    backend type, and its data as flanneld writes it — ``null`` for host-gw, ipip and udp."""
    if chosen.flannel_type is None:
        return {}
    if chosen.flannel_type == "vxlan":
        data = json.dumps({"VNI": chosen.vni, "VtepMAC": vtep_mac}, separators=(",", ":"))
    elif chosen.flannel_type == "wireguard":
        data = json.dumps({"PublicKey": public_key}, separators=(",", ":"))
    else:
        data = "null"
    return {"flannel.alpha.coreos.com/backend-data": data, "flannel.alpha.coreos.com/backend-type": chosen.flannel_type}


def net_conf(chosen: Backend, network: str) -> dict[str, object] | None:
    """flannel's ``net-conf.json`` for the backend (None for Calico's and Cilium's)."""
    if chosen.flannel_type is None:
        return None
    backend: dict[str, object] = {"Type": chosen.flannel_type}
    if chosen.flannel_type == "vxlan":
        backend |= {"VNI": chosen.vni, "Port": chosen.port}
    if chosen.name == "vxlan-gbp":
        backend["GBP"] = True
    if chosen.name == "udp":
        backend["Port"] = chosen.port
    return {"Network": network, "EnableIPv6": False, "Backend": backend}
