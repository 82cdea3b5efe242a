"""The namespace lab, built for real: kernel VXLAN devices, veths, bridges, real tcpdump."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import require_root_lab, require_tool

from flannelcap import decode_file
from flannelcap._errors import LabError
from flannelcap.lab import Lab, LabSpec, teardown
from flannelcap.lab._lab import existing_namespaces
from flannelcap.lab._record import tcpdump


def _ip_json(lab: Lab, name: str, *args: str) -> list[dict]:
    return json.loads(lab.output(name, ["ip", "-j", *args]))


def test_flannel_device_is_programmed_as_flanneld_does(lab: Lab) -> None:
    for node in lab.plan.nodes:
        link = _ip_json(lab, node.name, "-d", "link", "show", "flannel.1")[0]
        vxlan = link["linkinfo"]["info_data"]
        assert link["linkinfo"]["info_kind"] == "vxlan"
        assert vxlan["id"] == 1
        assert vxlan["port"] == 8472
        assert vxlan["local"] == node.eth0_ip
        assert vxlan["learning"] is False
        assert link["mtu"] == 1450
        assert link["address"] == node.vtep_mac
        addrs = _ip_json(lab, node.name, "addr", "show", "flannel.1")[0]["addr_info"]
        assert [(a["local"], a["prefixlen"]) for a in addrs if a["family"] == "inet"] == [(node.vtep_ip, 32)]
        cni0 = _ip_json(lab, node.name, "addr", "show", "cni0")[0]["addr_info"]
        assert [(a["local"], a["prefixlen"]) for a in cni0 if a["family"] == "inet"] == [(node.cni0_ip, 24)]
        forwarding = lab.output(node.name, ["sysctl", "-n", "net.ipv4.ip_forward"]).strip()
        assert forwarding == "1"


def test_every_node_has_route_neighbour_and_fdb_entry_for_every_peer(lab: Lab) -> None:
    for node in lab.plan.nodes:
        routes = {r["dst"]: r for r in _ip_json(lab, node.name, "route")}
        neigh = {n["dst"]: n for n in _ip_json(lab, node.name, "neigh", "show", "dev", "flannel.1")}
        fdb = {
            f["mac"]: f for f in json.loads(lab.output(node.name, ["bridge", "-j", "fdb", "show", "dev", "flannel.1"]))
        }
        peers = [p for p in lab.plan.nodes if p.name != node.name]
        assert len(neigh) == len(peers)
        for peer in peers:
            route = routes[peer.pod_cidr]
            assert (route["gateway"], route["dev"]) == (peer.vtep_ip, "flannel.1")
            assert "onlink" in route["flags"]
            assert neigh[peer.vtep_ip]["lladdr"] == peer.vtep_mac
            assert "PERMANENT" in neigh[peer.vtep_ip]["state"]
            assert fdb[peer.vtep_mac]["dst"] == peer.eth0_ip
            assert fdb[peer.vtep_mac]["state"] == "permanent"


def test_pods_have_cni_routes(lab: Lab) -> None:
    for pod in lab.plan.pods:
        node = lab.plan.node(pod.node)
        routes = {r["dst"]: r for r in _ip_json(lab, pod.name, "route")}
        assert routes["default"]["gateway"] == node.cni0_ip
        assert routes["10.42.0.0/16"]["gateway"] == node.cni0_ip
        addr = _ip_json(lab, pod.name, "addr", "show", "eth0")[0]
        assert addr["mtu"] == 1450
        assert [a["local"] for a in addr["addr_info"] if a["family"] == "inet"] == [pod.ip]
        veth = _ip_json(lab, node.name, "link", "show", pod.host_veth)[0]
        assert veth["master"] == "cni0"


def test_cross_node_fetch_is_vxlan_between_the_two_nodes(lab: Lab, tmp_path: Path) -> None:
    require_tool("tcpdump")
    client, server = lab.plan.client_pod, lab.plan.server_pod
    client_node, server_node = lab.plan.node(client.node), lab.plan.node(server.node)
    capture = tmp_path / "wire.pcap"
    with tcpdump(lab, client_node.name, "eth0", capture):
        done = lab.fetch("/")
    assert done.returncode == 0, done.stderr
    assert b"Welcome to nginx!" in done.stdout

    macs = {n.name: _ip_json(lab, n.name, "link", "show", "flannel.1")[0]["address"] for n in lab.plan.nodes}
    records = [r for r in decode_file(capture) if r.is_vxlan]
    assert len(records) >= 8  # handshake, GET, 200, body, FIN exchange
    for record in records:
        assert record.vni == 1
        assert record.outer_dst_port == 8472
        assert {record.outer_src_ip, record.outer_dst_ip} == {client_node.eth0_ip, server_node.eth0_ip}
        assert {record.inner_src_mac, record.inner_dst_mac} == {
            macs[client_node.name],
            macs[server_node.name],
        }
        assert {record.inner_src_ip, record.inner_dst_ip} == {client.ip, server.ip}
        # The VTEP MAC of the node that sends is the inner source MAC.
        sender = client_node if record.outer_src_ip == client_node.eth0_ip else server_node
        assert record.inner_src_mac == macs[sender.name]
    methods = [r.http_method for r in records if r.http_method]
    statuses = [r.http_status for r in records if r.http_status]
    assert methods == ["GET"] and statuses == [200]
    # The kernel hashes the inner flow into one outer source port per direction.
    assert len({r.outer_src_port for r in records if r.outer_src_ip == client_node.eth0_ip}) == 1


def test_same_node_traffic_never_reaches_eth0(lab: Lab, tmp_path: Path) -> None:
    require_tool("tcpdump")
    client_node = lab.plan.node(lab.plan.client_pod.node)
    eth0, cni0 = tmp_path / "eth0.pcap", tmp_path / "cni0.pcap"
    with tcpdump(lab, client_node.name, "eth0", eth0), tcpdump(lab, client_node.name, "cni0", cni0):
        done = lab.fetch("/", server="nginx-local")
    assert done.returncode == 0
    assert [r for r in decode_file(eth0) if r.proto == "tcp"] == []
    local = [r for r in decode_file(cni0) if r.proto == "tcp"]
    assert local and not any(r.is_vxlan for r in local)
    assert {r.src_ip for r in local} == {lab.plan.client_pod.ip, lab.plan.local_server_pod.ip}


def test_lab_up_twice_with_one_prefix_is_refused(lab: Lab) -> None:
    with pytest.raises(LabError, match="already up"):
        Lab.up(LabSpec(prefix=lab.plan.prefix))
    assert lab.fetch("/").returncode == 0  # the refused attempt broke nothing


def test_cli_status_and_exec(lab: Lab) -> None:
    env = {**os.environ}
    status = subprocess.run(
        [sys.executable, "-m", "flannelcap", "lab", "status", "--json", "--prefix", lab.plan.prefix],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    data = json.loads(status.stdout)
    assert [(n["name"], n["eth0_ip"], n["vtep_mac"]) for n in data["nodes"]] == [
        (n.name, n.eth0_ip, n.vtep_mac) for n in lab.plan.nodes
    ]
    assert {p["name"]: p["ip"] for p in data["pods"]} == {p.name: p.ip for p in lab.plan.pods}
    routes = subprocess.run(
        [
            sys.executable,
            "-m",
            "flannelcap",
            "lab",
            "exec",
            "--prefix",
            lab.plan.prefix,
            "busybox",
            "--",
            "ip",
            "route",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    gateway = lab.plan.node(lab.plan.client_pod.node).cni0_ip
    assert f"default via {gateway} dev eth0" in routes.stdout
    assert f"10.42.0.0/16 via {gateway} dev eth0" in routes.stdout


def test_cli_kubectl_json_has_flannel_annotations(lab: Lab) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flannelcap", "lab", "kubectl", "--prefix", lab.plan.prefix, "nodes"],
        capture_output=True,
        text=True,
        check=True,
    )
    nodes = {item["metadata"]["name"]: item for item in json.loads(done.stdout)["items"]}
    assert sorted(nodes) == ["kpi091", "kpi092", "kpi093"]
    for node in lab.plan.nodes:
        annotations = nodes[node.name]["metadata"]["annotations"]
        kernel_mac = _ip_json(lab, node.name, "link", "show", "flannel.1")[0]["address"]
        assert json.loads(annotations["flannel.alpha.coreos.com/backend-data"]) == {
            "VNI": 1,
            "VtepMAC": kernel_mac,
        }
        assert annotations["flannel.alpha.coreos.com/public-ip"] == node.eth0_ip
        assert annotations["flannel.alpha.coreos.com/backend-type"] == "vxlan"
        assert nodes[node.name]["spec"]["podCIDR"] == node.pod_cidr
    done = subprocess.run(
        [sys.executable, "-m", "flannelcap", "lab", "kubectl", "--prefix", lab.plan.prefix, "pods"],
        capture_output=True,
        text=True,
        check=True,
    )
    pods = {
        i["metadata"]["name"]: (i["status"]["podIP"], i["spec"]["nodeName"]) for i in json.loads(done.stdout)["items"]
    }
    assert pods == {
        p.name: (_ip_json(lab, p.name, "addr", "show", "eth0")[0]["addr_info"][0]["local"], p.node)
        for p in lab.plan.pods
    }


def test_missing_commands_are_named_with_their_package(tmp_path: Path) -> None:
    require_root_lab()
    prefix = "m" + uuid.uuid4().hex[:6]
    env = {**os.environ, "PATH": str(tmp_path), "FLANNELCAP_LAB_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "flannelcap", "lab", "up", "--prefix", prefix],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 1
    assert done.stderr == "flannelcap: error: the lab needs the 'ip' command: install the Debian package iproute2\n"
    for tool in ("ip", "bridge"):  # give it ip and bridge, still no ethtool
        (tmp_path / tool).symlink_to(str(shutil.which(tool)))
    done = subprocess.run(
        [sys.executable, "-m", "flannelcap", "lab", "up", "--prefix", prefix],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.stderr == "flannelcap: error: the lab needs the 'ethtool' command: install the Debian package ethtool\n"
    assert not any(ns.startswith(prefix + "-") for ns in existing_namespaces())


def test_lab_down_removes_everything_and_is_safe_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_root_lab()
    monkeypatch.setenv("FLANNELCAP_LAB_DIR", str(tmp_path))
    prefix = "d" + uuid.uuid4().hex[:6]
    other = "o" + uuid.uuid4().hex[:6]
    first = Lab.up(LabSpec(prefix=prefix, nodes=2))
    second = Lab.up(LabSpec(prefix=other, nodes=2))  # side by side, same addresses
    try:
        assert first.fetch("/").returncode == 0
        assert second.fetch("/").returncode == 0
        servers = [
            int(p)
            for p in subprocess.run(
                ["ip", "netns", "pids", first.plan.server_pod.netns], capture_output=True, text=True
            ).stdout.split()
        ]
        assert servers, "the nginx pod runs a web server process"
        removed = first.down()
        assert sorted(removed) == sorted(first.plan.namespaces)
        assert not any(ns.startswith(prefix + "-") for ns in existing_namespaces())
        assert not any(Path(f"/proc/{pid}").exists() for pid in servers)
        assert not (tmp_path / prefix).exists()
        assert first.down() == []  # twice is fine
        assert second.fetch("/").returncode == 0  # the other lab is untouched
    finally:
        teardown(prefix)
        teardown(other)
    assert not any(ns.startswith((prefix + "-", other + "-")) for ns in existing_namespaces())


def test_failed_up_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_root_lab()
    monkeypatch.setenv("FLANNELCAP_LAB_DIR", str(tmp_path))
    prefix = "f" + uuid.uuid4().hex[:6]
    # 192.168.1.254 + 2 nodes runs past the /24: refused before anything is made.
    with pytest.raises(LabError, match="do not fit"):
        Lab.up(LabSpec(prefix=prefix, first_node_ip="192.168.1.254"))
    # Interrupt `lab up` half-way (Ctrl-C): what it had made is removed again.
    up = subprocess.Popen(
        [sys.executable, "-m", "flannelcap", "lab", "up", "--prefix", prefix],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(ns.startswith(prefix + "-kpi") for ns in existing_namespaces()):
            time.sleep(0.01)
        assert any(ns.startswith(prefix + "-") for ns in existing_namespaces()), "up had started"
        up.send_signal(signal.SIGINT)
        _out, err = up.communicate(timeout=30)
        left_behind = sorted(ns for ns in existing_namespaces() if ns.startswith(prefix + "-"))
        state_left = (tmp_path / prefix).exists()
    finally:
        teardown(prefix)  # only a safety net: the assertions below look at what `up` left
    assert up.returncode == 130
    assert err.strip() == "flannelcap: interrupted"
    assert left_behind == []
    assert not state_left


def test_root_namespace_is_untouched(lab: Lab) -> None:
    root_addrs = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout
    root_routes = subprocess.run(["ip", "-j", "route"], capture_output=True, text=True, check=True).stdout
    for node in lab.plan.nodes:
        assert node.eth0_ip not in root_addrs
        assert node.pod_cidr not in root_routes
    links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout)
    assert not [
        link
        for link in links
        if link["ifname"].startswith(("flannel", "cni0", "veth", "lan")) and lab.plan.prefix in json.dumps(link)
    ]
    # None of the interfaces the lab made may sit in the machine's own namespace.
    lab_names = {n.lan_port for n in lab.plan.nodes} | {p.host_veth for p in lab.plan.pods} | {"lanm"}
    assert not lab_names & {link["ifname"] for link in links}
    assert lab.plan.mgmt_ip not in root_addrs
    assert not any(pod.ip in root_addrs for pod in lab.plan.pods)
