"""Building, using and removing a flannel VXLAN cluster made of network namespaces.

Rule: this is the only module of flannelcap that changes the host's network state, and it
only ever does so inside namespaces it created itself. Every command names its namespace
(``ip -n NS …``, ``ip netns exec NS …``); nothing is added to the root namespace, and the
lab's traffic cannot leave it: the LAN is a bridge inside the lab's own ``<prefix>-lan``
namespace with no uplink. A failed ``up`` removes what it had made; ``down`` is idempotent.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flannelcap._errors import LabError
from flannelcap.lab._backends import build_backend, built_with, program_backend
from flannelcap.lab._backends_plan import backend
from flannelcap.lab._plan import (
    CLUSTER_CIDR,
    FLANNEL_MTU,
    WEB_PORT,
    LabPlan,
    LabSpec,
    NodePlan,
    PodPlan,
    plan_lab,
)
from flannelcap.lab._services import build_services, leaders, replica_page
from flannelcap.lab._services_plan import COREDNS, dns_zone, resolv_conf
from flannelcap.lab._sshd import enable_ssh, ssh_dir

DEFAULT_STATE_ROOT = Path("/run/flannelcap")
NETNS_ETC = Path("/etc/netns")  # per-namespace files that 'ip netns exec' mounts over /etc
BIG_FILE_NAME = "big.bin"
BIG_FILE_BYTES = 1024 * 1024 + 123
WELCOME_PAGE = """<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>
<p><em>Thank you for using nginx.</em></p>
</body>
</html>
"""
_REQUIRED_COMMANDS = {"ip": "iproute2", "bridge": "iproute2", "ethtool": "ethtool"}


def state_root() -> Path:
    """Where labs keep their state (``$FLANNELCAP_LAB_DIR`` or ``/run/flannelcap``)."""
    return Path(os.environ.get("FLANNELCAP_LAB_DIR", DEFAULT_STATE_ROOT))


def _run(argv: Sequence[str], what: str, *, check: bool = True) -> str:
    """Run a command; on failure raise ``LabError`` naming ``what`` and the command's error."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError as exc:
        raise LabError(f"{what}: command {argv[0]!r} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{what}: {' '.join(argv)} did not finish in 60 s") from exc
    if check and done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise LabError(f"{what}: {detail[-1] if detail else f'exit {done.returncode}'}")
    return done.stdout


def check_prerequisites(extra: dict[str, str] | None = None) -> None:
    """Fail early, with what to install, when the lab cannot be built here.

    Raises:
        LabError: not root, or a required command is missing.
    """
    if os.geteuid() != 0:
        raise LabError("the lab creates network namespaces and needs root: run it with sudo")
    for command, package in {**_REQUIRED_COMMANDS, **(extra or {})}.items():
        if shutil.which(command) is None:
            raise LabError(f"the lab needs the {command!r} command: install the Debian package {package}")


def existing_namespaces() -> set[str]:
    """Names of the network namespaces that exist now."""
    out = _run(["ip", "netns", "list"], "listing network namespaces")
    return {line.split()[0] for line in out.splitlines() if line.strip()}


class Lab:
    """A running namespace lab. Create one with ``Lab.up`` or ``Lab.load``.

    Args:
        plan: the lab's names and addresses.
        state_dir: where its plan, web root and logs live.
    """

    def __init__(self, plan: LabPlan, state_dir: Path) -> None:
        self.plan = plan
        self.state_dir = state_dir

    # -- lifecycle ---------------------------------------------------------------------

    @classmethod
    def up(cls, spec: LabSpec, *, ssh: bool = False) -> Lab:
        """Build a lab: namespaces, LAN, flannel.1, cni0, routes, ARP/FDB entries, pods;
        with ``ssh``, an OpenSSH server in every node (see ``ssh_config``).

        Raises:
            LabError: prerequisites missing, a lab with this prefix exists, or a step failed
                (in which case everything already made is removed again).
        """
        plan = plan_lab(spec)
        needs = {"nft": "nftables"} if spec.services or spec.backend == "vxlan-gbp" else {}
        if spec.backend == "wireguard":
            needs |= {"wg": "wireguard-tools", "wireguard-go": "wireguard-go"}
        check_prerequisites(needs or None)
        state_dir = state_root() / plan.prefix
        clash = sorted(ns for ns in existing_namespaces() if ns.startswith(plan.prefix + "-"))
        if state_dir.exists() or clash:
            raise LabError(
                f"a lab with prefix {plan.prefix!r} is already up"
                + (f" (namespaces {', '.join(clash)})" if clash else "")
                + f": run 'flannelcap lab down --prefix {plan.prefix}' first, or use another --prefix"
            )
        lab = cls(plan, state_dir)
        try:
            state_dir.mkdir(parents=True)
            lab._write_state()
            lab._build()
            if ssh:
                enable_ssh(plan, state_dir)
        except BaseException:
            lab.down()
            raise
        return lab

    @classmethod
    def load(cls, prefix: str = "fclab") -> Lab:
        """The lab that ``up`` made with ``prefix``.

        Raises:
            LabError: no such lab is up.
        """
        path = state_root() / prefix / "plan.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise LabError(f"no lab with prefix {prefix!r} is up: start one with 'flannelcap lab up'") from None
        except (OSError, ValueError) as exc:
            raise LabError(
                f"lab state {path} is unreadable ({exc}): run 'flannelcap lab down --prefix {prefix}'"
            ) from exc
        return cls(LabPlan.from_json(data), path.parent)

    @property
    def ssh_config(self) -> Path | None:
        """The ssh_config that reaches the nodes (after ``up(ssh=True)``), or None."""
        path = ssh_dir(self.state_dir) / "ssh_config"
        return path if path.exists() else None

    def down(self) -> list[str]:
        """Remove every namespace, link and process of the lab. Safe to run twice.

        Returns:
            The namespaces that were removed.
        """
        return teardown(self.plan.prefix, self.plan.namespaces)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def _write_state(self) -> None:
        (self.state_dir / "plan.json").write_text(json.dumps(self.plan.to_json(), indent=2))
        www = self.state_dir / "www"
        www.mkdir()
        (www / "index.html").write_text(WELCOME_PAGE)
        pattern = bytes(range(256)) * (BIG_FILE_BYTES // 256 + 1)
        (www / BIG_FILE_NAME).write_bytes(pattern[:BIG_FILE_BYTES])
        for pod in self.plan.pods:
            if pod.app:
                own = self.state_dir / f"www-{pod.name}"
                own.mkdir()
                (own / "index.html").write_text(replica_page(pod.name, pod.node, WELCOME_PAGE))

    # -- building ----------------------------------------------------------------------

    def _build(self) -> None:
        plan = self.plan
        lan = plan.lan_netns
        _run(["ip", "netns", "add", lan], f"creating namespace {lan}")
        _quiet_ipv6(lan)
        _run(["ip", "-n", lan, "link", "set", "lo", "up"], "LAN loopback")
        _run(["ip", "-n", lan, "link", "add", "br0", "type", "bridge"], "creating the LAN bridge")
        _run(["ip", "-n", lan, "link", "set", "br0", "up"], "LAN bridge up")
        self._build_mgmt()
        for node in plan.nodes:
            self._build_node(node)
        for node in plan.nodes:
            program_backend(self, node)
        for pod in plan.pods:
            self._build_pod(pod)
        for pod in plan.pods:
            if pod.serves_http:
                self._start_web_server(pod)
            elif pod.routes_to:
                self._start_ingress(pod)
            elif pod.app == COREDNS:
                self._start_dns(pod)
        if plan.services:
            build_services(self)

    def _build_mgmt(self) -> None:
        """The management host (xubulab): a namespace on the LAN, nothing else."""
        plan = self.plan
        ns = plan.mgmt_netns
        _run(["ip", "netns", "add", ns], f"{plan.mgmt_name}: creating its namespace")
        _quiet_ipv6(ns)
        _run(["ip", "-n", ns, "link", "set", "lo", "up"], f"{plan.mgmt_name}: loopback")
        self._join_lan(ns, "lanm", plan.mgmt_ip, plan.mgmt_name)

    def _join_lan(self, ns: str, lan_port: str, address: str, what: str, mac: str = "") -> None:
        """Give namespace ``ns`` an eth0 with ``address`` (and ``mac``, when given), its peer
        ``lan_port`` on the LAN bridge."""
        lan = self.plan.lan_netns
        _run(
            ["ip", "-n", ns, "link", "add", "name", "eth0", "type", "veth", "peer", "name", lan_port, "netns", lan],
            f"{what}: creating eth0",
        )
        _run(["ip", "-n", lan, "link", "set", lan_port, "master", "br0", "up"], f"{what}: joining eth0 to the LAN")
        _run(
            ["ip", "-n", ns, "addr", "add", f"{address}/{self.plan.lan_prefix_len}", "dev", "eth0"],
            f"{what}: eth0 address",
        )
        if mac:
            _run(["ip", "-n", ns, "link", "set", "eth0", "address", mac], f"{what}: eth0 MAC")
        _run(["ip", "-n", ns, "link", "set", "eth0", "up"], f"{what}: eth0 up")

    def _build_node(self, node: NodePlan) -> None:
        ns = node.netns
        what = f"node {node.name}"
        _run(["ip", "netns", "add", ns], f"{what}: creating its namespace")
        _quiet_ipv6(ns)
        _run(["ip", "-n", ns, "link", "set", "lo", "up"], f"{what}: loopback")
        self._join_lan(ns, node.lan_port, node.eth0_ip, what, node.eth0_mac)

        # Checksum in software, as a NIC would before the wire: captures then hold the real
        # outer UDP checksums, not the partial ones of checksum offload.
        _run(["ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off"], f"{what}: tx offload off")
        _run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"], f"{what}: IP forwarding")
        build_backend(self, node)
        _run(["ip", "-n", ns, "link", "add", "cni0", "type", "bridge"], f"{what}: creating cni0")
        _run(["ip", "-n", ns, "link", "set", "cni0", "mtu", str(FLANNEL_MTU), "up"], f"{what}: cni0 up")
        _run(["ip", "-n", ns, "addr", "add", f"{node.cni0_ip}/24", "dev", "cni0"], f"{what}: cni0 address")

    def _build_pod(self, pod: PodPlan) -> None:
        node = self.plan.node(pod.node)
        what = f"pod {pod.name}"
        _run(["ip", "netns", "add", pod.netns], f"{what}: creating its namespace")
        if self.plan.services:  # the kubelet's resolv.conf: 'ip netns exec' mounts it over /etc/resolv.conf
            etc = NETNS_ETC / pod.netns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "resolv.conf").write_text(resolv_conf(pod.namespace))
        _quiet_ipv6(pod.netns)
        _run(["ip", "-n", pod.netns, "link", "set", "lo", "up"], f"{what}: loopback")
        _run(
            [
                "ip",
                "-n",
                node.netns,
                "link",
                "add",
                "name",
                pod.host_veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                pod.netns,
            ],
            f"{what}: creating its veth pair",
        )
        _run(
            [
                "ip",
                "-n",
                node.netns,
                "link",
                "set",
                pod.host_veth,
                "mtu",
                str(FLANNEL_MTU),
                "master",
                "cni0",
                "up",
            ],
            f"{what}: joining cni0",
        )
        _run(["ip", "-n", pod.netns, "link", "set", "eth0", "mtu", str(FLANNEL_MTU), "up"], f"{what}: eth0 up")
        _run(["ip", "-n", pod.netns, "addr", "add", f"{pod.ip}/24", "dev", "eth0"], f"{what}: address")
        _run(["ip", "-n", pod.netns, "route", "add", "default", "via", node.cni0_ip], f"{what}: default route")
        _run(
            ["ip", "-n", pod.netns, "route", "add", CLUSTER_CIDR, "via", node.cni0_ip, "dev", "eth0"],
            f"{what}: cluster route",
        )
        # Segment in the pod as a NIC without TSO would, so that frames on eth0 stay within
        # the MTU, as on the lab's Raspberry Pi nodes.
        _run(
            ["ip", "netns", "exec", pod.netns, "ethtool", "-K", "eth0", "tso", "off", "gso", "off"],
            f"{what}: segmentation offload off",
        )

    def _start_web_server(self, pod: PodPlan) -> None:
        root = self.state_dir / (f"www-{pod.name}" if pod.app else "www")
        self.start_server(pod, ["flannelcap.lab._web", "serve", pod.ip, str(WEB_PORT), str(root)], WEB_PORT, "web")

    def _start_ingress(self, pod: PodPlan) -> None:
        """The Traefik stand-in, sending requests to the pods of Service ``pod.routes_to``."""
        svc = next(s for s in self.plan.services if s.name == pod.routes_to)
        ingress = next(s for s in self.plan.services if pod.name in s.endpoints)
        backends = [self.plan.pod(name).ip for name in svc.endpoints]
        argv = ["flannelcap.lab._ingress", pod.ip, str(ingress.target_port), pod.name, *backends]
        self.start_server(pod, argv, ingress.target_port, "ingress")

    def _start_dns(self, pod: PodPlan) -> None:
        """The CoreDNS stand-in, answering the Services' names."""
        zone = self.state_dir / "dns-zone.json"
        zone.write_text(json.dumps(dns_zone(self.plan.services), indent=2))
        self.start_server(pod, ["flannelcap.lab._dns_server", pod.ip, str(zone)], 53, "dns")

    def start_server(self, pod: PodPlan, module_argv: list[str], port: int, kind: str) -> None:
        """Run ``python -m MODULE ARGS`` in ``pod`` until the lab goes down; wait until it listens on ``port``."""
        log = open(self.state_dir / f"{kind}-{pod.name}.log", "ab")  # noqa: SIM115 - child keeps it
        with log:
            subprocess.Popen(
                ["ip", "netns", "exec", pod.netns, sys.executable, "-m", *module_argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        port_hex = f":{port:04X} "
        while time.monotonic() < deadline:
            sockets = _run(
                ["ip", "netns", "exec", pod.netns, "cat", "/proc/net/tcp"],
                f"pod {pod.name}: checking its {kind} server",
            )
            if any(port_hex in line and line.split()[3] == "0A" for line in sockets.splitlines()[1:]):
                return
            time.sleep(0.05)
        raise LabError(f"pod {pod.name}: the {kind} server did not start; see {log.name}")

    # -- using -------------------------------------------------------------------------

    def exec(self, name: str, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` inside the namespace of node or pod ``name`` (like ``kubectl exec``)."""
        netns = self.plan.netns_of(name)
        return subprocess.run(["ip", "netns", "exec", netns, *argv], check=False, **kwargs)

    def output(self, name: str, argv: Sequence[str]) -> str:
        """Run ``argv`` in node or pod ``name`` and return its stdout.

        Raises:
            LabError: the command failed.
        """
        return _run(["ip", "netns", "exec", self.plan.netns_of(name), *argv], f"{name}: {' '.join(argv)}")

    def output_in_netns(self, netns: str, argv: Sequence[str]) -> str:
        """Run ``argv`` in one of the lab's own namespaces (e.g. its LAN) and return stdout.

        Raises:
            LabError: the namespace is not the lab's, or the command failed.
        """
        if netns not in self.plan.namespaces:
            raise LabError(f"{netns} is not a namespace of this lab")
        return _run(["ip", "netns", "exec", netns, *argv], f"{netns}: {' '.join(argv)}")

    def fetch(
        self, path: str = "/", *, client: str = "busybox", server: str = "nginx", timeout: float = 10.0
    ) -> subprocess.CompletedProcess[bytes]:
        """``wget http://<server pod IP><path> -O -`` from the client pod."""
        url = f"http://{self.plan.pod(server).ip}{path}"
        return self.exec(
            client,
            [sys.executable, "-m", "flannelcap.lab._web", "fetch", url, "--timeout", str(timeout)],
            capture_output=True,
        )

    def status(self) -> dict[str, Any]:
        """What is running, as the kernel reports it (``ip -j``), not as planned."""
        alive = existing_namespaces()
        nodes = []
        for node in self.plan.nodes:
            entry: dict[str, Any] = {"name": node.name, "netns": node.netns, "up": node.netns in alive}
            if entry["up"]:
                device = backend(self.plan.backend).device
                link = json.loads(self.output(node.name, ["ip", "-j", "link", "show", device]))[0] if device else {}
                addrs = json.loads(self.output(node.name, ["ip", "-j", "addr", "show", "eth0"]))[0]
                entry.update(
                    eth0_ip=_first_inet(addrs),
                    vtep_mac=link.get("address"),
                    vtep_ip=node.vtep_ip,
                    pod_cidr=node.pod_cidr,
                    device=device,
                    built_with=built_with(self, node.name),
                )
            nodes.append(entry)
        pods = []
        for pod in self.plan.pods:
            entry = {"name": pod.name, "node": pod.node, "netns": pod.netns, "up": pod.netns in alive}
            if entry["up"]:
                addrs = json.loads(self.output(pod.name, ["ip", "-j", "addr", "show", "eth0"]))[0]
                entry["ip"] = _first_inet(addrs)
            pods.append(entry)
        led = leaders(self)
        services = [
            {
                "name": svc.name,
                "cluster_ip": svc.cluster_ip,
                "external_ip": svc.external_ip,
                "policy": svc.policy,
                "announced_by": sorted(node for node, ips in led.items() if svc.external_ip in ips),
            }
            for svc in self.plan.services
        ]
        return {
            "prefix": self.plan.prefix,
            "backend": self.plan.backend,
            "nodes": nodes,
            "pods": pods,
            "services": services,
        }


def _quiet_ipv6(netns: str) -> None:
    """Turn IPv6 off in a lab namespace: flannel here is IPv4-only, and without it the
    captures hold no router solicitations or MLD reports from interfaces just created."""
    for scope in ("all", "default"):
        _run(
            ["ip", "netns", "exec", netns, "sysctl", "-qw", f"net.ipv6.conf.{scope}.disable_ipv6=1"],
            f"{netns}: IPv6 off",
        )


def _first_inet(addr_json: dict[str, Any]) -> str | None:
    for info in addr_json.get("addr_info", []):
        if info.get("family") == "inet":
            return str(info["local"])
    return None


def teardown(prefix: str, namespaces: Sequence[str] = ()) -> list[str]:
    """Remove a lab's namespaces (and every process in them) and its state. Idempotent.

    Namespaces removed are those listed, plus any whose name starts with ``<prefix>-`` —
    so a lab whose ``up`` crashed half-way is removed too.
    """
    if os.geteuid() != 0:
        raise LabError("removing the lab's namespaces needs root: run it with sudo")
    alive = existing_namespaces()
    doomed = sorted(ns for ns in alive if ns in namespaces or ns.startswith(prefix + "-"))
    for ns in doomed:
        stop_processes_in(ns)
    for ns in doomed:
        _run(["ip", "netns", "del", ns], f"removing namespace {ns}", check=False)
        shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)
    shutil.rmtree(state_root() / prefix, ignore_errors=True)
    return doomed


def stop_processes_in(netns: str) -> None:
    """Stop every process in ``netns`` (SIGTERM, then SIGKILL after 2 s)."""
    pids = [int(p) for p in _run(["ip", "netns", "pids", netns], "listing processes", check=False).split()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 2
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if Path(f"/proc/{p}").exists() and not _is_zombie(p)]
            time.sleep(0.02)
        if not pids:
            return


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True
