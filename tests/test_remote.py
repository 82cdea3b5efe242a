"""Remote capture and table collection against real OpenSSH servers in the lab's nodes.

The fixture builds a lab with ``ssh=True``: sshd runs in every node's namespace with its own
host key and an AuthorizedKeysFile in the lab's state directory. The client (paramiko, in
this process) reaches the nodes through the management namespace with a ProxyCommand, or
directly from inside it. Test users are created for the sudo cases and removed afterwards.
No paramiko, sshd or tcpdump is mocked here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pty
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import require, require_root_lab

from flannelcap import decode_file
from flannelcap import read as flannelcap_read
from flannelcap.lab import Lab, LabSpec, teardown
from flannelcap.lab._lab import BIG_FILE_NAME
from flannelcap.lab._map import topology_of_lab
from flannelcap.lab._sshd import authorize, ssh_dir
from flannelcap.packets.reader import CaptureReader
from flannelcap.remote import capturing
from flannelcap.topology.collect import write_topology

USERS = {"fcsudo": "NOPASSWD: ", "fcpwsudo": "", "fcnosudo": None}
PASSWORD = "lab-Passw0rd"


@dataclass
class SshLab:
    lab: Lab
    config: Path  # aliases for every user and proxy case
    direct_config: Path  # the same without ProxyCommand, for use inside the management namespace
    base: Path


def _alias_block(name: str, hostname: str, user: str, base: Path, proxy: str | None, extra: str = "") -> str:
    lines = [
        f"Host {name}",
        f"    HostName {hostname}",
        f"    User {user}",
        f"    IdentityFile {base / 'id_ed25519'}",
        f"    UserKnownHostsFile {base / 'known_hosts'}",
    ]
    if proxy:
        lines.append(f"    ProxyCommand {proxy}")
    return "\n".join(lines) + extra + "\n"


@pytest.fixture(scope="module")
def ssh_lab() -> Iterator[SshLab]:
    require_root_lab()
    for tool in ("sshd", "ssh-keygen", "tcpdump", "sudo", "useradd"):
        require(shutil.which(tool) is not None or Path(f"/usr/sbin/{tool}").exists(), f"needs {tool}")
    prefix = "s" + uuid.uuid4().hex[:6]
    # sshd reads a user's AuthorizedKeysFile as that user: the state directory must be
    # reachable by the test users, which pytest's own temporary directory (0700) is not.
    state = Path(f"/run/flannelcap-test-{prefix}")
    state.mkdir(mode=0o755)
    previous = os.environ.get("FLANNELCAP_LAB_DIR")
    os.environ["FLANNELCAP_LAB_DIR"] = str(state)
    made_users: list[str] = []
    try:
        lab = Lab.up(LabSpec(prefix=prefix), ssh=True)
    except BaseException:
        shutil.rmtree(state, ignore_errors=True)
        raise
    try:
        base = ssh_dir(lab.state_dir)
        public = (base / "id_ed25519.pub").read_text()
        for user, rule in USERS.items():
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/bin/sh", user], check=True)
            made_users.append(user)
            if rule is not None:
                Path(f"/etc/sudoers.d/{user}").write_text(f"{user} ALL=(root) {rule}/usr/bin/tcpdump\n")
                os.chmod(f"/etc/sudoers.d/{user}", 0o440)
            authorize(lab.state_dir, user, public)
        subprocess.run(["chpasswd"], input=f"fcpwsudo:{PASSWORD}\n", text=True, check=True)
        proxy = f"ip netns exec {lab.plan.mgmt_netns} {sys.executable} -m flannelcap.lab._relay %h %p"
        blocks, direct = [], []
        for node in lab.plan.nodes:
            blocks.append(_alias_block(node.name, node.eth0_ip, "root", base, proxy))
            direct.append(_alias_block(node.name, node.eth0_ip, "root", base, None))
            for user in USERS:
                blocks.append(_alias_block(f"{node.name}-{user}", node.eth0_ip, user, base, proxy))
        target = lab.plan.nodes[-1]
        blocks.append(
            _alias_block("jumped", target.eth0_ip, "root", base, None, f"\n    ProxyJump {lab.plan.nodes[0].name}")
        )
        blocks.append(_alias_block("nobody-there", "192.168.1.99", "root", base, proxy))
        blocks.append(_alias_block("wrong-port", target.eth0_ip, "root", base, proxy, "\n    Port 2222"))
        config = base / "test_ssh_config"
        config.write_text("\n".join(blocks))
        direct_config = base / "test_direct_config"
        direct_config.write_text("\n".join(direct))
        yield SshLab(lab=lab, config=config, direct_config=direct_config, base=base)
    finally:
        teardown(prefix, lab.plan.namespaces)
        for user in made_users:
            subprocess.run(["userdel", user], check=False, capture_output=True)
            Path(f"/etc/sudoers.d/{user}").unlink(missing_ok=True)
        shutil.rmtree(state, ignore_errors=True)
        if previous is None:
            os.environ.pop("FLANNELCAP_LAB_DIR", None)
        else:
            os.environ["FLANNELCAP_LAB_DIR"] = previous


def flannelcap(*args: str, netns: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "flannelcap", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def started(argv: list[str], listening: int) -> tuple[subprocess.Popen[str], str]:
    """Start ``argv`` (a capture), return once ``listening`` nodes capture: the process, and
    what it said on stderr so far."""
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    )
    assert process.stderr is not None
    said = []
    while sum("capturing on" in line for line in said) < listening:
        line = process.stderr.readline()
        if not line:
            break
        said.append(line)
    return process, "".join(said)


def capture_during(
    lab: Lab, args: list[str], listening: int, path: str = "/", netns: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``flannelcap capture ARGS`` (inside ``netns`` if given); once ``listening`` nodes
    capture, fetch ``path`` from busybox; return when the capture ends."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    process, said = started([*prefix, sys.executable, "-m", "flannelcap", "capture", *args], listening)
    fetched = lab.fetch(path)
    out, err = process.communicate(timeout=90)
    assert fetched.returncode == 0
    return subprocess.CompletedProcess(process.args, process.returncode, out, said + err)


def _errors(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("flannelcap: error: ")]


def _tcpdumps_on(lab: Lab, node: str) -> list[str]:
    pids = subprocess.run(["ip", "netns", "pids", lab.plan.node(node).netns], capture_output=True, text=True).stdout
    names = []
    for pid in pids.split():
        with contextlib.suppress(OSError):
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
    return [n for n in names if n == "tcpdump"]


def _process_texts(lab: Lab, node: str) -> dict[int, tuple[bytes, bytes]]:
    """Every process in ``node``'s namespace (sshd, the shell, sudo, tcpdump): its command
    line and its environment, as anyone on the node with ps, or root, could read them."""
    pids = subprocess.run(["ip", "netns", "pids", lab.plan.node(node).netns], capture_output=True, text=True).stdout
    texts = {}
    for pid in map(int, pids.split()):
        with contextlib.suppress(OSError):
            texts[pid] = (Path(f"/proc/{pid}/cmdline").read_bytes(), Path(f"/proc/{pid}/environ").read_bytes())
    return texts


def _assert_http_over_vxlan(path: Path, lab: Lab) -> None:
    client = lab.plan.node(lab.plan.client_pod.node)
    server = lab.plan.node(lab.plan.server_pod.node)
    vxlan = [r for r in decode_file(path) if r.is_vxlan]
    assert {(r.outer_src_ip, r.outer_dst_ip) for r in vxlan} == {
        (client.eth0_ip, server.eth0_ip),
        (server.eth0_ip, client.eth0_ip),
    }
    assert [r.http_method for r in vxlan if r.http_method] == ["GET"]
    assert [r.http_status for r in vxlan if r.http_status] == [200]
    assert not [r for r in decode_file(path) if r.proto == "tcp" and 22 in (r.src_port, r.dst_port)]


def test_capture_on_the_client_node_holds_the_exchange(ssh_lab: SshLab, tmp_path: Path) -> None:
    lab = ssh_lab.lab
    node = lab.plan.client_pod.node
    done = capture_during(lab, ["-F", str(ssh_lab.config), node, "--duration", "2", "-o", str(tmp_path)], 1)
    assert done.returncode == 0, done.stderr
    [pcap] = tmp_path.glob(f"{node}-eth0-*.pcap")
    assert not pcap.name.endswith(".partial.pcap")
    _assert_http_over_vxlan(pcap, lab)
    packets = sum(1 for _ in decode_file(pcap))
    assert f"{node}: {packets} packets, {pcap.stat().st_size} bytes → {pcap}" in done.stdout
    [tables] = tmp_path.glob("*.tables")
    fdb = json.loads((tables / node / "bridge-fdb-flannel.1.json").read_text())
    server = lab.plan.node(lab.plan.server_pod.node)
    assert {"mac": server.vtep_mac, "dst": server.eth0_ip} in [{"mac": e["mac"], "dst": e["dst"]} for e in fdb]
    decoded = flannelcap("decode", "--json", "--tables", str(tables), str(pcap))
    # The lab's nodes have no kubectl: the peer is known from the node's own ARP and FDB
    # entries, and named by its IP.
    names = {
        (r["src_node"], r["dst_node"], r["dst_vtep_node"])
        for r in map(json.loads, decoded.stdout.splitlines())
        if r["is_vxlan"]
    }
    assert names == {(node, server.eth0_ip, server.eth0_ip), (server.eth0_ip, node, node)}
    assert _tcpdumps_on(lab, node) == []


def test_two_nodes_at_once_both_hold_the_exchange(ssh_lab: SshLab, tmp_path: Path) -> None:
    lab = ssh_lab.lab
    nodes = [lab.plan.client_pod.node, lab.plan.server_pod.node]
    done = capture_during(lab, ["-F", str(ssh_lab.config), *nodes, "--duration", "2", "-o", str(tmp_path)], 2)
    assert done.returncode == 0, done.stderr
    for node in nodes:
        [pcap] = tmp_path.glob(f"{node}-eth0-*.pcap")
        _assert_http_over_vxlan(pcap, lab)
        assert _tcpdumps_on(lab, node) == []


def test_sudo_user_via_file_fetches_and_removes_the_remote_file(ssh_lab: SshLab, tmp_path: Path) -> None:
    lab = ssh_lab.lab
    node = lab.plan.client_pod.node
    before = set(Path("/tmp").glob("flannelcap-*.pcap"))
    done = capture_during(
        lab, ["-F", str(ssh_lab.config), f"{node}-fcsudo", "--via-file", "--duration", "2", "-o", str(tmp_path)], 1
    )
    assert done.returncode == 0, done.stderr
    [pcap] = tmp_path.glob(f"{node}-fcsudo-eth0-*.pcap")
    _assert_http_over_vxlan(pcap, lab)
    assert set(Path("/tmp").glob("flannelcap-*.pcap")) == before  # nothing left on the node
    assert _tcpdumps_on(lab, node) == []


def test_user_without_sudo_rights_gets_one_line(ssh_lab: SshLab, tmp_path: Path) -> None:
    node = ssh_lab.lab.plan.client_pod.node
    done = flannelcap("capture", "-F", str(ssh_lab.config), f"{node}-fcnosudo", "-c", "1", "-o", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"flannelcap: error: {node}-fcnosudo: sudo needs a password to run tcpdump: run again with --sudo-password"
    ]
    assert list(tmp_path.glob("*.pcap")) == []


def test_sudo_password_is_asked_once_and_sent_on_stdin(ssh_lab: SshLab, tmp_path: Path) -> None:
    lab = ssh_lab.lab
    node = lab.plan.client_pod.node
    pid, fd = pty.fork()
    if pid == 0:  # the child: flannelcap on a terminal, as a user runs it
        os.execv(
            sys.executable,
            [
                sys.executable,
                "-m",
                "flannelcap",
                "capture",
                "-F",
                str(ssh_lab.config),
                f"{node}-fcpwsudo",
                "--sudo-password",
                "--duration",
                "5",
                "-o",
                str(tmp_path),
            ],
        )
    output = b""
    deadline = time.monotonic() + 60
    sent = fetched = False
    processes: dict[int, tuple[bytes, bytes]] = {}
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
        if not sent and b"sudo password on the nodes:" in output:
            os.write(fd, PASSWORD.encode() + b"\n")
            sent = True
        if not fetched and b"capturing on eth0" in output:
            # While tcpdump runs under sudo, nothing on the node may show the password.
            processes = _process_texts(lab, node)
            fetched = lab.fetch("/").returncode == 0
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert sent and fetched and os.WEXITSTATUS(status) == 0, text
    assert text.count("sudo password on the nodes:") == 1 and PASSWORD not in text
    assert any(b"tcpdump" in command for command, _ in processes.values())  # the scan saw the capture
    assert any(b"sudo" in command for command, _ in processes.values())
    for pid, (command, environment) in processes.items():
        assert PASSWORD.encode() not in command, f"the password is on the command line of {pid}: {command!r}"
        assert PASSWORD.encode() not in environment, f"the password is in the environment of {pid}: {command!r}"
    [pcap] = tmp_path.glob(f"{node}-fcpwsudo-eth0-*.pcap")
    _assert_http_over_vxlan(pcap, lab)


def test_unknown_host_key_is_refused_then_accepted_and_a_changed_one_always_refused(
    ssh_lab: SshLab, tmp_path: Path
) -> None:
    node = ssh_lab.lab.plan.nodes[0]
    known = tmp_path / "known_hosts"
    config = tmp_path / "config"
    config.write_text(ssh_lab.config.read_text().replace(str(ssh_lab.base / "known_hosts"), str(known)))
    refused = flannelcap("capture", "-F", str(config), node.name, "-c", "1", "-o", str(tmp_path))
    assert refused.returncode == 1
    assert f"{node.name}: the host key of {node.eth0_ip} is not known (ssh-ed25519" in refused.stderr
    assert "run again with --accept-new-host-key" in refused.stderr
    assert not known.exists()

    accepted = flannelcap("map", "--ssh", node.name, "-F", str(config), "--accept-new-host-key")
    assert accepted.returncode == 0, accepted.stderr
    real_key = (ssh_lab.base / node.name / "ssh_host_ed25519_key.pub").read_text().split()[1]
    assert known.read_text().split() == [node.eth0_ip, "ssh-ed25519", real_key]

    other = (ssh_lab.base / ssh_lab.lab.plan.nodes[1].name / "ssh_host_ed25519_key.pub").read_text().split()[1]
    known.write_text(f"{node.eth0_ip} ssh-ed25519 {other}\n")
    changed = flannelcap("map", "--ssh", node.name, "-F", str(config), "--accept-new-host-key")
    assert changed.returncode == 1
    assert f"the host key of {node.eth0_ip} has CHANGED" in changed.stderr
    assert "Traceback" not in changed.stderr and len(changed.stderr.strip().splitlines()) == 1
    assert known.read_text() == f"{node.eth0_ip} ssh-ed25519 {other}\n"  # never rewritten


def test_ctrl_c_leaves_a_valid_pcap_and_no_tcpdump(ssh_lab: SshLab, tmp_path: Path) -> None:
    lab = ssh_lab.lab
    node = lab.plan.client_pod.node
    process = subprocess.Popen(
        [sys.executable, "-m", "flannelcap", "capture", "-F", str(ssh_lab.config), node, "-o", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    line = process.stderr.readline()
    assert line.strip() == f"{node}: capturing on eth0 (Ctrl-C to stop)"
    assert lab.fetch("/").returncode == 0
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "stopped (Ctrl-C)" in err
    [pcap] = tmp_path.glob(f"{node}-eth0-*.pcap")
    with CaptureReader(pcap) as reader:
        frames = list(reader)
        assert reader.problem is None
    assert f"{node}: {len(frames)} packets" in out
    _assert_http_over_vxlan(pcap, lab)
    assert _tcpdumps_on(lab, node) == []


def test_count_and_size_caps(ssh_lab: SshLab, tmp_path: Path) -> None:
    lab = ssh_lab.lab
    node = lab.plan.client_pod.node
    args = ["-F", str(ssh_lab.config), node, "-c", "25", "-o", str(tmp_path / "count")]
    done = capture_during(lab, args, 1, path="/big.bin")
    assert done.returncode == 0, done.stderr
    [pcap] = (tmp_path / "count").glob("*.pcap")
    assert sum(1 for _ in decode_file(pcap)) == 25
    args = ["-F", str(ssh_lab.config), node, "--max-size", "0.2", "-o", str(tmp_path / "size")]
    done = capture_during(lab, args, 1, path="/big.bin")
    assert done.returncode == 0, done.stderr
    [pcap] = (tmp_path / "size").glob("*.pcap")
    assert 190_000 <= pcap.stat().st_size <= 200_000  # cut at the cap, on a packet boundary
    with CaptureReader(pcap) as reader:
        assert len(list(reader)) > 100 and reader.problem is None
    assert _tcpdumps_on(lab, node) == []


def test_faults_one_line_per_node_and_the_others_complete(ssh_lab: SshLab, tmp_path: Path) -> None:
    lab = ssh_lab.lab
    good = lab.plan.client_pod.node
    nodes = [good, "nobody-there", "wrong-port", f"{lab.plan.nodes[0].name}-fcnosudo"]
    done = capture_during(lab, ["-F", str(ssh_lab.config), *nodes, "--duration", "2", "-o", str(tmp_path)], 1)
    assert done.returncode == 1
    errors = _errors(done)
    assert len(errors) == 3, done.stderr
    assert any(e.startswith("flannelcap: error: nobody-there") and "no SSH server answered" in e for e in errors)
    assert any(e.startswith("flannelcap: error: wrong-port") and "no SSH server answered" in e for e in errors)
    assert any("fcnosudo: sudo needs a password" in e for e in errors)
    [pcap] = tmp_path.glob(f"{good}-eth0-*.pcap")
    _assert_http_over_vxlan(pcap, lab)

    bad_interface = flannelcap("capture", "-F", str(ssh_lab.config), good, "-i", "eth9", "-c", "1", "-o", str(tmp_path))
    assert bad_interface.returncode == 1
    assert "tcpdump failed (exit 1): tcpdump: eth9: No such device exists" in bad_interface.stderr

    auth = tmp_path / "noauth"
    auth.write_text(ssh_lab.config.read_text().replace("User root", "User daemon"))
    refused = flannelcap("capture", "-F", str(auth), good, "-c", "1", "-o", str(tmp_path))
    assert refused.returncode == 1 and "authentication failed" in refused.stderr

    hostile = flannelcap("capture", "-F", str(ssh_lab.config), good, "-i", "eth0; touch /tmp/flannelcap-pwned")
    assert hostile.returncode == 1 and "is not an interface name" in hostile.stderr
    hostile = flannelcap(
        "capture",
        "-F",
        str(ssh_lab.config),
        good,
        "-c",
        "1",
        "-f",
        "$(touch /tmp/flannelcap-pwned)",
        "-o",
        str(tmp_path),
    )
    assert hostile.returncode == 1 and "tcpdump failed" in hostile.stderr
    assert not Path("/tmp/flannelcap-pwned").exists()
    assert _tcpdumps_on(lab, good) == []


def test_connection_dropping_mid_capture_keeps_a_partial_file(ssh_lab: SshLab, tmp_path: Path) -> None:
    lab = ssh_lab.lab
    dropped, other = lab.plan.client_pod.node, lab.plan.server_pod.node
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flannelcap",
            "capture",
            "-F",
            str(ssh_lab.config),
            dropped,
            other,
            "--duration",
            "8",
            "-o",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for _ in range(2):
        assert "capturing on eth0" in process.stderr.readline()
    assert lab.fetch("/").returncode == 0
    time.sleep(1.5)
    # Cut the connection: kill the node's per-connection sshd processes.
    pids = subprocess.run(["ip", "netns", "pids", lab.plan.node(dropped).netns], capture_output=True, text=True)
    for pid in pids.stdout.split():
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"sshd" in cmdline and b"-f" not in cmdline:
                os.kill(int(pid), signal.SIGKILL)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    [error] = err.strip().splitlines()[-1:]
    assert error.startswith(f"flannelcap: error: {dropped}: ") and "marked partial" in error
    [partial] = tmp_path.glob(f"{dropped}-eth0-*.partial.pcap")
    assert [r for r in decode_file(partial) if r.http_method == "GET"]
    [complete] = tmp_path.glob(f"{other}-eth0-*.pcap")
    _assert_http_over_vxlan(complete, lab)
    assert f"{other}: " in out
    deadline = time.monotonic() + 5
    while _tcpdumps_on(lab, dropped) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _tcpdumps_on(lab, dropped) == []


def test_proxyjump_and_direct_from_the_management_host(ssh_lab: SshLab, tmp_path: Path) -> None:
    lab = ssh_lab.lab
    target = lab.plan.nodes[-1]
    done = flannelcap("map", "--ssh", "jumped", "-F", str(ssh_lab.config), "--json")
    assert done.returncode == 0, done.stderr
    [node] = [n for n in json.loads(done.stdout)["nodes"] if n["name"] == "jumped"]
    assert (node["public_ip"], node["vtep_mac"]) == (target.eth0_ip, target.vtep_mac)
    # The management host reaches the nodes directly over the LAN, as xubulab does in the lab.
    client = lab.plan.client_pod.node
    args = ["-F", str(ssh_lab.direct_config), client, "--duration", "2", "-o", str(tmp_path)]
    done = capture_during(lab, args, 1, netns=lab.plan.mgmt_netns)
    assert done.returncode == 0, done.stderr
    [pcap] = tmp_path.glob(f"{client}-eth0-*.pcap")
    _assert_http_over_vxlan(pcap, lab)


def test_map_over_ssh_equals_map_of_the_lab(ssh_lab: SshLab) -> None:
    nodes = [n.name for n in ssh_lab.lab.plan.nodes]
    done = flannelcap("map", "--ssh", *nodes, "-F", str(ssh_lab.config), "--json")
    assert done.returncode == 0, done.stderr
    over_ssh = json.loads(done.stdout)
    local = json.loads(json.dumps(topology_of_lab(ssh_lab.lab).to_json()))

    def facts(node: dict) -> dict:
        return {k: v for k, v in node.items() if k != "sources"}

    # Every fact the same, whichever way the tables travelled; over SSH each comes from the
    # node's own tables (there is no kubectl there), and names the table it was read from.
    assert [facts(n) for n in over_ssh["nodes"]] == [facts(n) for n in local["nodes"]]
    assert all(n["public_ip"] and n["vtep_mac"] and n["pod_cidr"] for n in over_ssh["nodes"])
    for node in over_ssh["nodes"]:
        assert node["sources"]["vtep_mac"] == f"{node['name']}: ip -d addr show flannel.1"
        assert node["sources"]["cni0_ip"] == f"{node['name']}: ip addr show cni0"
    for remote_view, local_view in zip(over_ssh["views"], local["views"], strict=True):
        for table in ("neigh", "fdb", "routes", "flannel", "cni0"):
            assert remote_view[table] == local_view[table], table


def test_python_context_manager(ssh_lab: SshLab, tmp_path: Path) -> None:
    lab = ssh_lab.lab
    node = lab.plan.client_pod.node
    with capturing([node], ssh_config=ssh_lab.config, output_dir=tmp_path) as session:
        assert lab.fetch("/").returncode == 0
        time.sleep(0.3)
    result = session.captures[node]
    assert result.error is None and result.path is not None
    _assert_http_over_vxlan(result.path, lab)
    assert result.packets == sum(1 for _ in decode_file(result.path))


# -- the live view and -w - ---------------------------------------------------------------------


def _lab_topology(lab: Lab, tmp_path: Path) -> Path:
    """The lab's topology (kubectl's pods included) in a file for ``--topology``: the lab's nodes
    have no kubectl, so the tables the capture saves name nodes but not pods."""
    path = tmp_path / "lab-topology.json"
    write_topology(topology_of_lab(lab), path)
    return path


def test_live_view_on_a_terminal_shows_the_get_with_both_pods_within_a_second(ssh_lab: SshLab, tmp_path: Path) -> None:
    lab = ssh_lab.lab
    nodes = [lab.plan.client_pod.node, lab.plan.server_pod.node]
    topology = _lab_topology(lab, tmp_path)
    pid, fd = pty.fork()
    if pid == 0:  # the child: flannelcap on a terminal, as a user runs it
        argv = ["capture", "-F", str(ssh_lab.config), *nodes, "--duration", "6", "--topology", str(topology)]
        os.execv(sys.executable, [sys.executable, "-m", "flannelcap", *argv, "-o", str(tmp_path / "out")])
    output = b""
    fetched_at: float | None = None
    get_seen: dict[str, float] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
        text = output.decode(errors="replace")
        if fetched_at is None and text.count("capturing on eth0") == 2:
            assert lab.fetch("/").returncode == 0
            fetched_at = time.monotonic()
        for line in text.splitlines():
            node = line.split(" ", 1)[0]
            if "busybox → nginx" in line and "GET / HTTP/1.1" in line and node in nodes:
                get_seen.setdefault(node, time.monotonic())
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert os.WEXITSTATUS(status) == 0, text
    assert fetched_at is not None, text
    # Both nodes' lines show the GET, named by pod, each within a second of the request.
    assert set(get_seen) == set(nodes), text
    assert all(seen - fetched_at < 1.0 for seen in get_seen.values()), (get_seen, fetched_at)
    header = next(line for line in text.splitlines() if "Inner src → dst" in line)
    assert header.startswith("Node")
    for node in nodes:  # the summary still names each file, after the packets
        [pcap] = (tmp_path / "out").glob(f"{node}-eth0-*.pcap")
        assert f"{node}: {sum(1 for _ in decode_file(pcap))} packets" in text


def test_live_json_equals_decoding_the_files(ssh_lab: SshLab, tmp_path: Path) -> None:
    lab = ssh_lab.lab
    nodes = [lab.plan.client_pod.node, lab.plan.server_pod.node]
    topology = _lab_topology(lab, tmp_path)
    args = ["-F", str(ssh_lab.config), *nodes, "--duration", "3", "--json", "--topology", str(topology)]
    done = capture_during(lab, [*args, "-o", str(tmp_path)], 2)
    assert done.returncode == 0, done.stderr
    live = [json.loads(line) for line in done.stdout.splitlines()]
    for node in nodes:
        [pcap] = tmp_path.glob(f"{node}-eth0-*.pcap")
        decoded = flannelcap("decode", "--json", "--topology", str(topology), str(pcap))
        from_file = [json.loads(line) for line in decoded.stdout.splitlines()]
        shown = [{k: v for k, v in row.items() if k != "file"} for row in live if row["file"] == str(pcap)]
        assert shown == from_file and len(shown) > 10  # cell for cell, in order, every packet
        assert any(r["http_method"] == "GET" and (r["src_pod"], r["dst_pod"]) == ("busybox", "nginx") for r in shown)
    assert "capturing on" in done.stderr and f"{nodes[0]}: " in done.stderr  # the summary left stdout to the JSON


def test_write_stdout_merges_the_nodes_into_one_pcapng_for_tshark(ssh_lab: SshLab, tmp_path: Path) -> None:
    lab = ssh_lab.lab
    nodes = [lab.plan.client_pod.node, lab.plan.server_pod.node]
    argv = ["capture", "-F", str(ssh_lab.config), *nodes, "--duration", "3", "-o", str(tmp_path), "-w", "-"]
    capture = shlex.join([sys.executable, "-m", "flannelcap", *argv])
    fields = ["-T", "fields", "-e", "frame.interface_name", "-e", "frame.time_epoch", "-e", "frame.len"]
    tshark = shlex.join(["tshark", "-n", "-r", "-", *fields])
    process, said = started(["sh", "-c", f"{capture} | {tshark}"], 2)
    assert lab.fetch("/").returncode == 0
    out, err = process.communicate(timeout=90)
    assert process.returncode == 0, said + err
    merged = [line.split("\t") for line in out.splitlines()]
    for node in nodes:
        [pcap] = tmp_path.glob(f"{node}-eth0-*.pcap")
        single = subprocess.run(["tshark", "-n", "-r", str(pcap), *fields], capture_output=True, text=True, check=True)
        from_file = [line.split("\t")[1:] for line in single.stdout.splitlines()]
        assert [row[1:] for row in merged if row[0] == f"{node}:eth0"] == from_file and len(from_file) > 10
    assert {row[0] for row in merged} == {f"{node}:eth0" for node in nodes}


def test_a_view_that_falls_behind_drops_lines_never_packets(ssh_lab: SshLab, tmp_path: Path) -> None:
    lab = ssh_lab.lab
    nodes = [lab.plan.client_pod.node, lab.plan.server_pod.node]
    args = ["capture", "-F", str(ssh_lab.config), *nodes, "--live", "-o", str(tmp_path)]
    # stdout is not read while the traffic runs: the view's writes block, as on a slow terminal
    process, said = started([sys.executable, "-m", "flannelcap", *args], 2)
    for _ in range(30):  # about 30,000 packets on each node
        assert lab.fetch(f"/{BIG_FILE_NAME}", timeout=30).returncode == 0
    time.sleep(3)  # the view has decoded the backlog; its lines wait behind the blocked stdout
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    text = said + err
    assert process.returncode == 0, text
    total = 0
    for node in nodes:
        [pcap] = tmp_path.glob(f"{node}-eth0-*.pcap")
        with CaptureReader(pcap) as reader:
            packets = sum(1 for _ in reader)
            assert reader.problem is None
        total += packets
        # The file holds every packet tcpdump says it captured, whatever the view did.
        assert f"{node}: {packets} packets" in text and f"(tcpdump: {packets} captured, " in text, text
    assert "live view: " in text, (text, out[:2000])
    skipped = int(text.split("live view: ", 1)[1].split()[0])
    view = out.splitlines()
    shown = sum(1 for line in view if line.split(" ", 1)[0] in nodes)
    assert skipped > 0 and shown + skipped == total > 20_000
    # The view itself says where it skipped, and how many: the notes add up to the count.
    notes = [int(line[1:].split()[0]) for line in view if line.endswith("(the capture files hold them)]")]
    assert sum(notes) == skipped


def test_capture_by_pod_lands_on_its_node_and_veth(ssh_lab: SshLab, tmp_path: Path) -> None:
    lab = ssh_lab.lab
    nginx = lab.plan.pod("nginx")
    busybox = lab.plan.pod("busybox")
    topology = _lab_topology(lab, tmp_path)
    args = ["-F", str(ssh_lab.config), "--pod", "nginx", "--topology", str(topology), "--duration", "3", "-q"]
    done = capture_during(lab, [*args, "-o", str(tmp_path)], 1)
    assert done.returncode == 0, done.stderr
    # The lab's own plan says where nginx is: its node, and the host side of its veth pair.
    assert f"{nginx.node}: nginx on {nginx.host_veth}\n" in done.stderr
    assert f"{nginx.node}: capturing on {nginx.host_veth} (Ctrl-C to stop)" in done.stderr
    [pcap] = tmp_path.glob(f"{nginx.node}-{nginx.host_veth}-*.pcap")
    records = list(decode_file(pcap))
    # On the veth the exchange is plain pod-to-pod IP: no VXLAN, busybox's address as sent.
    assert not any(r.is_vxlan for r in records)
    assert [(r.src_ip, r.dst_ip) for r in records if r.http_method] == [(busybox.ip, nginx.ip)]
    assert [r.http_status for r in records if r.http_status] == [200]


def test_capture_by_selector_takes_every_replica_on_its_node(ssh_lab: SshLab, tmp_path: Path) -> None:
    lab = ssh_lab.lab
    replicas = [lab.plan.pod("nginx"), lab.plan.pod("nginx-local")]
    assert len({p.node for p in replicas}) == 2  # two nodes
    topology = _lab_topology(lab, tmp_path)
    args = ["-F", str(ssh_lab.config), "--selector", "app=nginx", "--topology", str(topology), "--duration", "4"]
    process, said = started([sys.executable, "-m", "flannelcap", "capture", *args, "-q", "-o", str(tmp_path)], 2)
    for replica in replicas:
        assert lab.fetch("/", server=replica.name).returncode == 0
    _, err = process.communicate(timeout=90)
    assert process.returncode == 0, said + err
    for replica in replicas:
        [pcap] = tmp_path.glob(f"{replica.node}-{replica.host_veth}-*.pcap")
        gets = [(r.dst_ip, r.http_path) for r in decode_file(pcap) if r.http_method == "GET"]
        assert gets == [(replica.ip, "/")], (replica.name, gets)  # each replica's own request, once


def test_node_level_capture_names_every_interface_the_request_crossed(ssh_lab: SshLab, tmp_path: Path) -> None:
    lab = ssh_lab.lab
    node = lab.plan.client_pod.node
    busybox = lab.plan.pod("busybox")
    done = capture_during(lab, ["-F", str(ssh_lab.config), node, "--node-level", "--duration", "3", "-q", "-o",
                                str(tmp_path)], 1)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{node}: capturing on any (Ctrl-C to stop)" in done.stderr, done.stderr
    [pcap] = tmp_path.glob(f"{node}-any-*.pcap")
    [tables] = tmp_path.glob("*.tables")
    capture = flannelcap_read(pcap, topology=tables)  # the node from the file's name, its links from the tables
    assert capture.node == node
    packets = capture.packets
    [get] = packets[packets.http_method == "GET"].itertuples()  # the head is reported on its first copy
    copies = (packets.src_ip == get.src_ip) & (packets.src_port == get.src_port) & (packets.tcp_seq == get.tcp_seq)
    gets = packets[copies.fillna(False).astype(bool) & (packets.payload_len > 0).fillna(False).astype(bool)]
    # The node's own ip link, read here straight from its namespace, names the interfaces.
    links = json.loads(
        subprocess.run(["ip", "-n", lab.plan.node(node).netns, "-j", "link"], capture_output=True, text=True).stdout
    )
    names = {link["ifindex"]: link["ifname"] for link in links}
    assert [names[i] for i in gets.ifindex] == gets.if_name.astype(str).tolist()
    # The one request, seen on each interface it crossed on its way out: veth, cni0, flannel.1, eth0.
    assert set(gets.if_name.astype(str)) == {busybox.host_veth, "cni0", "flannel.1", "eth0"}
    assert gets[gets.if_name == "eth0"].is_vxlan.astype(bool).all()
    assert not gets[gets.if_name != "eth0"].is_vxlan.astype(bool).any()


def test_captured_on_two_nodes_every_packet_is_followed_from_pod_to_pod(ssh_lab: SshLab, tmp_path: Path) -> None:
    """The whole way a user goes: capture both nodes at node level over SSH, then ``journey``
    on what was written (its tables found beside the files): every packet of the exchange is
    seen at the eight points of the lab's path and delivered."""
    lab = ssh_lab.lab
    client, server = lab.plan.client_pod, lab.plan.server_pod
    nodes = [client.node, server.node]
    done = capture_during(lab, ["-F", str(ssh_lab.config), *nodes, "--node-level", "--duration", "3", "-q", "-o",
                                str(tmp_path)], 2)  # fmt: skip
    assert done.returncode == 0, done.stderr
    files = [str(next(tmp_path.glob(f"{node}-any-*.pcap"))) for node in nodes]
    out = subprocess.run(
        [sys.executable, "-m", "flannelcap", "journey", *files, "--json"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "nodes and pods named from" in out.stderr
    journeys = [json.loads(line) for line in out.stdout.splitlines()]
    # The saved tables are the nodes' (no kubectl): flows are named by the pods' addresses.
    exchange = [j for j in journeys if f"{client.ip}:" in j["flow"] and f"{server.ip}:80 " in j["flow"]]
    assert len(exchange) >= 12 and all(j["verdict"] == "delivered" for j in exchange)
    interfaces = [client.host_veth, "cni0", "flannel.1", "eth0", "eth0", "flannel.1", "cni0", server.host_veth]
    forward = list(zip([client.node] * 4 + [server.node] * 4, interfaces, strict=True))
    for journey in exchange:
        points = [(s["node"], s["interface"]) for s in journey["sightings"]]
        assert points == (forward if journey["flow"].startswith(client.ip) else forward[::-1]), journey


def test_a_pod_whose_veth_the_tables_do_not_name_is_found_on_its_node(ssh_lab: SshLab, tmp_path: Path) -> None:
    """As on a real cluster, where the pods' own tables are rarely at hand: the veth is found on
    the node over SSH, from its ARP table on cni0 and the bridge port that learned the pod's MAC."""
    lab = ssh_lab.lab
    nginx = lab.plan.pod("nginx")
    lab_topology = topology_of_lab(lab)
    assert lab_topology.pod("nginx").veth == nginx.host_veth  # type: ignore[union-attr]
    without_veths = dataclasses.replace(
        lab_topology, pods=tuple(dataclasses.replace(p, veth=None) for p in lab_topology.pods)
    )
    topology = tmp_path / "no-veths.json"
    write_topology(without_veths, topology)
    assert lab.fetch("/").returncode == 0  # the node has met nginx: its ARP entry, the bridge's port
    args = ["-F", str(ssh_lab.config), "--pod", "nginx", "--topology", str(topology), "--duration", "3", "-q"]
    done = capture_during(lab, [*args, "-o", str(tmp_path)], 1)
    assert done.returncode == 0, done.stderr
    assert f"{nginx.node}: nginx on {nginx.host_veth}\n" in done.stderr
    [pcap] = tmp_path.glob(f"{nginx.node}-{nginx.host_veth}-*.pcap")
    assert [r.dst_ip for r in decode_file(pcap) if r.http_method] == [nginx.ip]
