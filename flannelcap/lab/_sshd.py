"""OpenSSH servers in the lab's nodes, so that ``flannelcap capture kpi093`` works as on a
real cluster.

Rule: everything lives in the lab's state directory (host keys, the client key,
``authorized_keys``, ``known_hosts``, ``ssh_config``); the machine's own ``~/.ssh`` and
``/etc/ssh`` are never touched. Each sshd runs inside its node's namespace and listens on the
node's eth0 only. The ``ssh_config`` reaches the nodes through the management namespace
(xubulab) with a ProxyCommand, so no address is added to the machine's own namespace.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from flannelcap._errors import LabError
from flannelcap.lab._plan import LabPlan, NodePlan

SSH_PORT = 22
_SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/bin/sshd")


def ssh_dir(state_dir: Path) -> Path:
    """Where a lab keeps its SSH files."""
    return state_dir / "ssh"


def _sshd_binary() -> str:
    found = shutil.which("sshd") or next((p for p in _SSHD_CANDIDATES if Path(p).exists()), None)
    if found is None:
        raise LabError("lab up --ssh needs the OpenSSH server: install the Debian package openssh-server")
    if shutil.which("ssh-keygen") is None:
        raise LabError("lab up --ssh needs ssh-keygen: install the Debian package openssh-client")
    return found


def _keygen(path: Path, comment: str) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True, capture_output=True
    )
    return path.with_suffix(".pub").read_text().strip()


def authorize(state_dir: Path, user: str, public_key: str) -> None:
    """Let ``user`` log in to every lab node with ``public_key``."""
    keys = ssh_dir(state_dir) / "authorized_keys" / user
    keys.parent.mkdir(parents=True, exist_ok=True)
    with open(keys, "a") as out:
        out.write(public_key.strip() + "\n")


def _sshd_config(node: NodePlan, directory: Path, keys_dir: Path) -> str:
    return "\n".join(
        [
            f"ListenAddress {node.eth0_ip}:{SSH_PORT}",
            f"HostKey {directory / 'ssh_host_ed25519_key'}",
            f"PidFile {directory / 'sshd.pid'}",
            f"AuthorizedKeysFile {keys_dir}/%u",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication yes",
            "KbdInteractiveAuthentication no",
            "UsePAM yes",
            "AllowTcpForwarding yes",
            "Subsystem sftp internal-sftp",
            "",
        ]
    )


def enable_ssh(plan: LabPlan, state_dir: Path) -> Path:
    """Start sshd in every node and write the client's files. Returns the ssh_config path.

    Raises:
        LabError: OpenSSH is not installed, or an sshd did not start.
    """
    sshd = _sshd_binary()
    base = ssh_dir(state_dir)
    base.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    client_key = base / "id_ed25519"
    authorize(state_dir, "root", _keygen(client_key, f"flannelcap-lab-{plan.prefix}"))
    known_hosts = []
    for node in plan.nodes:
        directory = base / node.name
        directory.mkdir()
        host_key = _keygen(directory / "ssh_host_ed25519_key", node.name)
        known_hosts.append(f"{node.eth0_ip} {' '.join(host_key.split()[:2])}")
        config = directory / "sshd_config"
        config.write_text(_sshd_config(node, directory, base / "authorized_keys"))
        done = subprocess.run(
            ["ip", "netns", "exec", node.netns, sshd, "-f", str(config), "-E", str(directory / "sshd.log")],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise LabError(f"{node.name}: sshd did not start: {done.stderr.strip()}")
        _wait_listening(node)
    (base / "known_hosts").write_text("\n".join(known_hosts) + "\n")
    config_path = base / "ssh_config"
    config_path.write_text(client_config(plan, base))
    return config_path


def client_config(plan: LabPlan, base: Path) -> str:
    """An ssh_config that reaches every node as ``ssh -F <it> kpi093``, via the management host."""
    proxy = f"ip netns exec {plan.mgmt_netns} {sys.executable} -m flannelcap.lab._relay %h %p"
    blocks = []
    for node in plan.nodes:
        blocks.append(
            "\n".join(
                [
                    f"Host {node.name}",
                    f"    HostName {node.eth0_ip}",
                    "    User root",
                    f"    IdentityFile {base / 'id_ed25519'}",
                    f"    UserKnownHostsFile {base / 'known_hosts'}",
                    "    StrictHostKeyChecking yes",
                    f"    ProxyCommand {proxy}",
                ]
            )
        )
    return "\n\n".join(blocks) + "\n"


def _wait_listening(node: NodePlan) -> None:
    deadline = time.monotonic() + 10
    port = f":{SSH_PORT:04X} "
    while time.monotonic() < deadline:
        sockets = subprocess.run(
            ["ip", "netns", "exec", node.netns, "cat", "/proc/net/tcp"], capture_output=True, text=True
        ).stdout
        if any(port in line and line.split()[3] == "0A" for line in sockets.splitlines()[1:]):
            return
        time.sleep(0.05)
    raise LabError(f"{node.name}: sshd does not listen on port {SSH_PORT}")
