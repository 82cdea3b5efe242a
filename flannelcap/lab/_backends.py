"""Building a node's overlay backend: its device and what flanneld (or Calico, or Cilium) programs
for every other node — routes, neighbours, forwarding entries, keys.

Rule: like the rest of ``lab``, every change happens inside the lab's own namespaces, through
``Lab``. The kernel's device is tried first; where this machine's kernel has none (``ip link
add`` says "Unknown device type"), a user-space endpoint stands in for it (``_tunnel_endpoint``
over TUN/TAP, or wireguard-go), and ``built_with`` says which way each node's backend was made.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from flannelcap._errors import LabError
from flannelcap.lab._backends_plan import GBP_POLICY_BASE, Backend, backend
from flannelcap.lab._plan import FLANNEL_MTU, NodePlan, wireguard_keys

if TYPE_CHECKING:
    from flannelcap.lab._lab import Lab

MTU = {"ipip": 1480, "udp": 1472, "wireguard": 1420}  # flanneld's, below the LAN's 1500
WIREGUARD_KEEPALIVE = 25
_BUILT_WITH = "backend-{node}.json"  # in the state directory: how the node's backend was built


def build_backend(lab: Lab, node: NodePlan) -> None:
    """Make ``node``'s tunnel device (none for host-gw).

    Raises:
        LabError: a step failed (or a user-space stand-in's tool is missing).
    """
    chosen = backend(lab.plan.backend)
    if chosen.device is None:
        _record(lab, node, "plain routes")
        return
    if chosen.kernel_type == "vxlan":
        _vxlan_device(lab, node, chosen)
        _record(lab, node, "kernel vxlan device")
    elif chosen.kernel_type is not None and _kernel_device(lab, node, chosen):
        _record(lab, node, f"kernel {chosen.kernel_type} device")
    elif chosen.user_space == "wireguard-go":
        _record(lab, node, "user space (wireguard-go)")  # it makes the device itself, in program_backend
        return
    else:
        mode = "tap" if chosen.user_space == "geneve" else "tun"
        lab.output(node.name, ["ip", "tuntap", "add", "dev", chosen.device, "mode", mode])
        if mode == "tap":  # an Ethernet device: the VTEP MAC the peers' neighbour entries name
            lab.output(node.name, ["ip", "link", "set", chosen.device, "address", node.vtep_mac])
        _record(lab, node, f"user space ({chosen.user_space} endpoint over {mode.upper()})")
    _address(lab, node, chosen)


def program_backend(lab: Lab, node: NodePlan) -> None:
    """What the backend's agent programs on ``node`` for every other node, and the user-space
    endpoint where one stands in for the device."""
    chosen = backend(lab.plan.backend)
    peers = [p for p in lab.plan.nodes if p.name != node.name]
    if chosen.name == "wireguard":
        _program_wireguard(lab, node, peers)
        return
    for peer in peers:
        if chosen.device is None:  # host-gw: the peer's pods are reached through the peer itself
            lab.output(node.name, ["ip", "route", "add", peer.pod_cidr, "via", peer.eth0_ip, "dev", "eth0"])
        elif chosen.kernel_type == "vxlan" or chosen.user_space == "geneve":
            _program_vtep(lab, node, peer, chosen)
        elif built_with(lab, node.name).startswith("kernel"):  # flannel's ipip device
            lab.output(node.name, ["ip", "route", "add", peer.pod_cidr, "via", peer.eth0_ip, "dev", chosen.device,
                                   "onlink"])  # fmt: skip
        elif chosen.name != "udp":  # a TUN device takes the peer's subnet itself
            lab.output(node.name, ["ip", "route", "add", peer.pod_cidr, "dev", chosen.device])
    if chosen.name == "vxlan-gbp":
        _mark_policy(lab, node)
    if chosen.user_space is not None and built_with(lab, node.name).startswith("user space"):
        _start_endpoint(lab, node, chosen, peers)


def built_with(lab: Lab, node: str) -> str:
    """How ``node``'s backend was built: ``kernel vxlan device``, ``user space (udp over TUN)``…"""
    path = lab.state_dir / _BUILT_WITH.format(node=node)
    return str(json.loads(path.read_text())["built_with"]) if path.exists() else "kernel vxlan device"


def _record(lab: Lab, node: NodePlan, how: str) -> None:
    (lab.state_dir / _BUILT_WITH.format(node=node.name)).write_text(json.dumps({"built_with": how}))


def _vxlan_device(lab: Lab, node: NodePlan, chosen: Backend) -> None:
    argv = ["ip", "link", "add", str(chosen.device), "type", "vxlan", "id", str(chosen.vni), "local", node.eth0_ip,
            "dev", "eth0", "dstport", str(chosen.port), "nolearning"]  # fmt: skip
    if chosen.name == "vxlan-gbp":
        argv.append("gbp")
    try:
        lab.output(node.name, argv)
    except LabError as exc:
        raise LabError(f"{exc} — the kernel may lack VXLAN support: load it with 'modprobe vxlan'") from exc
    lab.output(node.name, ["ip", "link", "set", str(chosen.device), "address", node.vtep_mac])


def _kernel_device(lab: Lab, node: NodePlan, chosen: Backend) -> bool:
    """Try the kernel's device; False where the kernel does not know the type."""
    extra = ["local", node.eth0_ip] if chosen.kernel_type == "ipip" else []
    done = lab.exec(node.name, ["ip", "link", "add", str(chosen.device), "type", str(chosen.kernel_type), *extra],
                    capture_output=True, text=True)  # fmt: skip
    if done.returncode == 0:
        return True
    if "Unknown device type" in done.stderr or "not supported" in done.stderr.lower():
        return False
    raise LabError(f"node {node.name}: creating {chosen.device}: {done.stderr.strip()}")


def _address(lab: Lab, node: NodePlan, chosen: Backend) -> None:
    device = str(chosen.device)
    mtu = MTU.get(chosen.name, FLANNEL_MTU)
    lab.output(node.name, ["ip", "link", "set", device, "mtu", str(mtu), "up"])
    if chosen.name == "udp":  # flanneld's flannel0: the whole cluster network, the node's own subnet via cni0
        lab.output(node.name, ["ip", "addr", "add", f"{node.vtep_ip}/16", "dev", device])
    else:
        lab.output(node.name, ["ip", "addr", "add", f"{node.vtep_ip}/32", "dev", device])


def _program_vtep(lab: Lab, node: NodePlan, peer: NodePlan, chosen: Backend) -> None:
    """flanneld's three entries for a peer's VTEP: route, permanent neighbour, and (for the
    kernel's VXLAN device) the forwarding entry to the peer's address."""
    device = str(chosen.device)
    lab.output(node.name, ["ip", "route", "add", peer.pod_cidr, "via", peer.vtep_ip, "dev", device, "onlink"])
    lab.output(node.name, ["ip", "neigh", "add", peer.vtep_ip, "lladdr", peer.vtep_mac, "dev", device, "nud",
                           "permanent"])  # fmt: skip
    if chosen.kernel_type == "vxlan":
        lab.output(node.name, ["bridge", "fdb", "add", peer.vtep_mac, "dev", device, "dst", peer.eth0_ip, "self",
                               "permanent"])  # fmt: skip


def _mark_policy(lab: Lab, node: NodePlan) -> None:
    """VXLAN-GBP: the kernel sends a packet's mark as its group policy ID; mark what the
    node's pods send with the node's policy (100 + its index)."""
    rules = lab.state_dir / f"gbp-{node.name}.nft"
    policy = GBP_POLICY_BASE + node.index
    rules.write_text(
        "table ip flannelcap_gbp {\n  chain set_policy {\n    type filter hook prerouting priority -150;\n"
        f'    iifname "cni0" meta mark set {policy}\n  }}\n}}\n'
    )
    lab.output(node.name, ["nft", "-f", str(rules)])


def _start_endpoint(lab: Lab, node: NodePlan, chosen: Backend, peers: list[NodePlan]) -> None:
    config = lab.state_dir / f"endpoint-{node.name}.json"
    config.write_text(
        json.dumps(
            {
                "kind": chosen.user_space,
                "device": chosen.device,
                "local": node.eth0_ip,
                "port": chosen.port,
                "peers": [{"address": p.eth0_ip, "pod_cidr": p.pod_cidr, "vtep_mac": p.vtep_mac} for p in peers],
            }
        )
    )
    path = lab.state_dir / f"endpoint-{node.name}.log"
    log = open(path, "ab")  # noqa: SIM115 - the child keeps it
    with log:
        process = subprocess.Popen(
            ["ip", "netns", "exec", node.netns, sys.executable, "-m", "flannelcap.lab._tunnel_endpoint", str(config)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
    # Up once it holds the device: a TUN/TAP device without a process attached has no carrier.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = path.read_text(errors="replace").strip().splitlines()
            raise LabError(f"node {node.name}: the {chosen.user_space} endpoint stopped at once: "
                           f"{said[-1] if said else 'no output'} (see {path})")  # fmt: skip
        link = json.loads(lab.output(node.name, ["ip", "-j", "link", "show", "dev", str(chosen.device)]))[0]
        if "NO-CARRIER" not in link.get("flags", []):
            return
        time.sleep(0.05)
    raise LabError(f"node {node.name}: the {chosen.user_space} endpoint did not attach to {chosen.device} (see {path})")


def _program_wireguard(lab: Lab, node: NodePlan, peers: list[NodePlan]) -> None:
    """flanneld's WireGuard: a private key per node, every peer with its public key, endpoint
    (port 51820) and subnet, and a route to each subnet through the device."""
    private, _ = wireguard_keys(lab.plan.prefix, node.name)
    key_file = lab.state_dir / f"wg-{node.name}.key"
    key_file.write_text(private + "\n")
    key_file.chmod(0o600)
    argv = ["wg", "set", "flannel-wg", "private-key", str(key_file), "listen-port", "51820"]
    for peer in peers:
        argv += ["peer", wireguard_keys(lab.plan.prefix, peer.name)[1], "endpoint", f"{peer.eth0_ip}:51820",
                 "allowed-ips", peer.pod_cidr, "persistent-keepalive", str(WIREGUARD_KEEPALIVE)]  # fmt: skip
    if built_with(lab, node.name).startswith("kernel"):
        lab.output(node.name, argv)
        for peer in peers:
            lab.output(node.name, ["ip", "route", "add", peer.pod_cidr, "dev", "flannel-wg"])
        return
    # wireguard-go keeps its control socket in /run/wireguard, which the nodes would share: each
    # node's runs in a mount namespace of its own, set up, configured and then left running.
    script = " && ".join(
        [
            "mount -t tmpfs tmpfs /run/wireguard",
            "wireguard-go flannel-wg",
            " ".join(argv),
            f"ip link set flannel-wg mtu {MTU['wireguard']} up",
            f"ip addr add {node.vtep_ip}/32 dev flannel-wg",
            *(f"ip route add {p.pod_cidr} dev flannel-wg" for p in peers),
            "exec sleep infinity",
        ]
    )
    log = open(lab.state_dir / f"wireguard-{node.name}.log", "ab")  # noqa: SIM115 - the child keeps it
    with log:
        subprocess.Popen(
            ["ip", "netns", "exec", node.netns, "unshare", "--mount", "--propagation", "private", "sh", "-c",
             f"mkdir -p /run/wireguard && {script}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        shown = lab.output(node.name, ["ip", "route", "show", "dev", "flannel-wg"]) if _has_wg(lab, node) else ""
        if all(p.pod_cidr in shown for p in peers):
            return
        time.sleep(0.1)
    raise LabError(f"node {node.name}: wireguard-go did not bring flannel-wg up (see {log.name})")


def _has_wg(lab: Lab, node: NodePlan) -> bool:
    return lab.exec(node.name, ["ip", "link", "show", "flannel-wg"], capture_output=True).returncode == 0
