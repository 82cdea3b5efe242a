"""map, decode --topology, audit and explain against a real lab, clean and with each fault."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_root_lab, require_tool

import flannelcap
from flannelcap import decode_file
from flannelcap.analysis.audit import audit_capture, audit_frame, audit_topology
from flannelcap.analysis.explain import Step, explain
from flannelcap.lab import Lab, LabSpec, teardown
from flannelcap.lab._faults import NOBODYS_IP, NOBODYS_MAC, SMALLER_MTU, apply_fault
from flannelcap.lab._lab import BIG_FILE_NAME
from flannelcap.lab._map import topology_of_lab
from flannelcap.lab._plan import kubectl_nodes, subnet_env
from flannelcap.lab._record import tcpdump
from flannelcap.topology.annotate import annotate_all


@pytest.fixture
def fresh_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    """A lab of its own for a test that breaks it."""
    require_root_lab()
    monkeypatch.setenv("FLANNELCAP_LAB_DIR", str(tmp_path / "state"))
    prefix = "b" + uuid.uuid4().hex[:6]
    built = Lab.up(LabSpec(prefix=prefix))
    try:
        yield built
    finally:
        teardown(prefix, built.plan.namespaces)


def _ip_json(lab: Lab, name: str, *args: str) -> list[dict]:
    return json.loads(lab.output(name, ["ip", "-j", *args]))


def test_map_builds_the_topology_the_kernel_reports(lab: Lab) -> None:
    topology = topology_of_lab(lab)
    assert [n.name for n in topology.nodes] == [n.name for n in lab.plan.nodes]
    for node in topology.nodes:
        link = _ip_json(lab, node.name, "-d", "link", "show", "flannel.1")[0]
        eth0 = _ip_json(lab, node.name, "addr", "show", "eth0")[0]
        cni0 = _ip_json(lab, node.name, "addr", "show", "cni0")[0]
        assert node.vtep_mac == link["address"]
        assert node.public_ip == link["linkinfo"]["info_data"]["local"] == eth0["addr_info"][0]["local"]
        assert node.cni0_ip == cni0["addr_info"][0]["local"]
        assert (node.vni, node.dstport, node.mtu) == (1, 8472, link["mtu"])
    for pod in topology.pods:
        addr = _ip_json(lab, pod.name, "addr", "show", "eth0")[0]
        assert pod.ip == addr["addr_info"][0]["local"]
        host = next(link for link in _ip_json(lab, pod.node, "link") if link["ifindex"] == addr["link_index"])  # type: ignore[arg-type]
        assert pod.veth == host["ifname"]
    assert topology.conflicts == ()
    assert audit_topology(topology) == []  # a clean lab gives no warnings


def test_decode_names_nodes_vteps_and_pods_and_a_clean_lab_has_no_findings(lab: Lab, tmp_path: Path) -> None:
    require_tool("tcpdump")
    client_node = lab.plan.client_pod.node
    capture = tmp_path / "wire.pcap"
    with tcpdump(lab, client_node, "eth0", capture):
        assert lab.fetch("/").returncode == 0
    topology = topology_of_lab(lab)
    vxlan = [r for r in annotate_all(decode_file(capture), topology) if r.is_vxlan]
    assert vxlan
    server_node = lab.plan.server_pod.node
    for record in vxlan:
        assert {record.src_node, record.dst_node} == {client_node, server_node}
        assert (record.src_vtep_node, record.dst_vtep_node) == (record.src_node, record.dst_node)
        assert {record.src_pod, record.dst_pod} == {"busybox", "nginx"}
    assert audit_capture(decode_file(capture), topology) == []

    topo_file = tmp_path / "topo.json"
    done = subprocess.run(
        [sys.executable, "-m", "flannelcap", "map", "--lab", "--prefix", lab.plan.prefix, "-o", str(topo_file)],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ,
    )
    assert "no findings: the tables agree with each other" in done.stdout
    decoded = subprocess.run(
        [sys.executable, "-m", "flannelcap", "decode", "--json", "--topology", str(topo_file), str(capture)],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {
        (r["src_node"], r["dst_node"], r["src_pod"], r["dst_pod"])
        for r in map(json.loads, decoded.stdout.splitlines())
        if r["is_vxlan"]
    }
    assert names == {(client_node, server_node, "busybox", "nginx"), (server_node, client_node, "nginx", "busybox")}


def test_explain_on_the_lab(lab: Lab) -> None:
    topology = topology_of_lab(lab)
    client = lab.plan.node(lab.plan.client_pod.node)
    server = lab.plan.node(lab.plan.server_pod.node)
    steps = explain(topology, "busybox", "nginx")
    assert all(s.ok for s in steps)
    assert steps[1].rows == (f"{client.name}: ip route: {server.pod_cidr} via {server.vtep_ip} dev flannel.1 onlink",)
    assert steps[2].rows == (
        f"{client.name}: ip neigh show dev flannel.1: {server.vtep_ip} lladdr {server.vtep_mac} PERMANENT",
    )
    assert steps[3].rows == (
        f"{client.name}: bridge fdb show dev flannel.1: {server.vtep_mac} dst {server.eth0_ip} self permanent",
    )
    assert f"outer {client.eth0_ip} → {server.eth0_ip} UDP dport 8472 VNI 1" in steps[4].text
    assert f"into cni0 ({server.cni0_ip})" in steps[6].text


# kind → (codes from the tables, codes from a capture, where to capture, path to fetch, fetch works)
FAULT_CASES = {
    "wrong-fdb": ({"fdb-wrong-dst"}, {"inner-mac-mismatch"}, "client", "/", False),
    "stale-fdb": ({"fdb-stale"}, set(), "client", "/", True),
    "wrong-arp": ({"neigh-wrong-mac"}, set(), "client", "/", False),
    "missing": ({"missing-entries"}, set(), "client", "/", False),
    "smaller-mtu": ({"mtu-mismatch"}, {"inner-larger-than-mtu"}, "client", "/" + BIG_FILE_NAME, True),
    "bad-checksum": (set(), {"bad-udp-checksum"}, "server", "/", False),
}


EXPLAINED = ("wrong-arp", "stale-fdb", "missing", "wrong-fdb")


def _assert_explain_under_fault(kind: str, steps: list[Step], lab: Lab) -> None:
    """Each step of explain busybox → nginx, checked on its own: verdict, cited rows, text."""
    client, server = lab.plan.node(lab.plan.client_pod.node), lab.plan.node(lab.plan.server_pod.node)
    route = f"{client.name}: ip route: {server.pod_cidr} via {server.vtep_ip} dev flannel.1 onlink"
    neigh = f"{client.name}: ip neigh show dev flannel.1: {server.vtep_ip} lladdr {{}} PERMANENT"
    fdb = f"{client.name}: bridge fdb show dev flannel.1: {{}} dst {{}} self permanent"
    delivery = f"{server.name}: ip route: {server.pod_cidr} dev cni0 proto kernel scope link src {server.cni0_ip}"
    assert [s.title[:2] for s in steps] == ["1.", "2.", "3.", "4.", "5.", "6.", "7."]
    assert steps[6].rows == (delivery,) and steps[6].ok  # the receiver's side is untouched by every fault
    assert steps[0].ok and steps[5].ok
    if kind == "wrong-arp":  # the ARP entry names no VTEP: the FDB is looked up by that MAC, and has none
        assert [s.ok for s in steps[1:5]] == [True, False, False, False]
        assert steps[1].rows == (route,)
        assert steps[2].rows == (neigh.format(NOBODYS_MAC),)
        assert steps[2].text.endswith(f"— expected {server.vtep_mac}, {server.name}'s flannel.1")
        assert steps[3].rows == ()
        assert steps[3].text.startswith(f"no FDB entry for {NOBODYS_MAC}: flannel.1 drops the frame")
        assert steps[4].text.startswith("nothing: the packet is dropped at step 4 (FDB entry on")
        assert steps[4].packets == ()
    if kind == "stale-fdb":  # an extra entry for nobody: the path itself is healthy and on the wire
        assert all(s.ok for s in steps)
        assert steps[1].rows == (route,)
        assert steps[2].rows == (neigh.format(server.vtep_mac),)
        assert steps[3].rows == (fdb.format(server.vtep_mac, server.eth0_ip),)
        assert steps[4].packets and steps[4].text.startswith("the capture shows")
    if kind == "missing":  # nothing to route by: the kernel refuses at the first step
        assert [s.ok for s in steps[1:5]] == [False, False, False, False]
        assert [s.rows for s in steps[1:5]] == [(), (), (), ()]
        expected = f"via {server.vtep_ip} dev flannel.1 onlink"
        assert steps[1].text == f"no route matches {lab.plan.server_pod.ip} — expected {expected}"
        assert steps[2].text.startswith(f"no ARP entry for {server.vtep_ip} on flannel.1")
        assert steps[3].text.startswith(f"no FDB entry for {server.vtep_mac}")
        assert steps[4].text.startswith("nothing: the packet is dropped at step 2 (route on")
    if kind == "wrong-fdb":  # the packet leaves, to the third node: the wire shows the wrong outer address
        assert [s.ok for s in steps[1:5]] == [True, True, False, False]
        assert steps[3].rows == (fdb.format(server.vtep_mac, "192.168.1.38"),)
        assert steps[3].text.endswith(f"— expected {server.eth0_ip} ({server.name})")
        assert steps[4].packets and f"outer {client.eth0_ip} → 192.168.1.38" in steps[4].text


@pytest.mark.parametrize("kind", sorted(FAULT_CASES))
def test_each_fault_gives_its_finding_and_nothing_else(fresh_lab: Lab, kind: str, tmp_path: Path) -> None:
    require_tool("tcpdump")
    if kind == "bad-checksum":
        require_tool("nft")
    lab = fresh_lab
    table_codes, wire_codes, where, path, works = FAULT_CASES[kind]
    client = lab.plan.node(lab.plan.client_pod.node)
    server = lab.plan.node(lab.plan.server_pod.node)
    apply_fault(lab, kind, client.name, server.name)
    topology = topology_of_lab(lab)

    table_findings = audit_topology(topology)
    assert {f.code for f in table_findings} == table_codes
    assert all(f.node == client.name for f in table_findings)

    capture = tmp_path / "fault.pcap"
    with tcpdump(lab, client.name if where == "client" else server.name, "eth0", capture):
        done = lab.fetch(path, timeout=3.5)
    assert (done.returncode == 0) is works
    findings = audit_capture(decode_file(capture), topology)
    assert {f.code for f in findings} == table_codes | wire_codes
    assert audit_frame(flannelcap.read(capture, topology=topology).packets, topology) == findings  # both paths
    by_code = {f.code: f for f in findings}
    if kind == "wrong-fdb":
        assert by_code["fdb-wrong-dst"].rows[0].endswith(f"{server.vtep_mac} dst 192.168.1.38 self permanent")
        assert by_code["inner-mac-mismatch"].packets and by_code["inner-mac-mismatch"].node == "kpi091"
    if kind == "stale-fdb":
        assert by_code["fdb-stale"].rows == (
            f"{client.name}: bridge fdb show dev flannel.1: {NOBODYS_MAC} dst {NOBODYS_IP} self permanent",
        )
    if kind == "wrong-arp":
        assert by_code["neigh-wrong-mac"].rows == (
            f"{client.name}: ip neigh show dev flannel.1: {server.vtep_ip} lladdr {NOBODYS_MAC} PERMANENT",
        )
        assert not [r for r in decode_file(capture) if r.is_vxlan]  # nowhere to send: nothing on the wire
    if kind == "missing":
        assert "no route, ARP, FDB entry for " + server.name in by_code["missing-entries"].message
    if kind in EXPLAINED:
        _assert_explain_under_fault(kind, explain(topology, "busybox", "nginx", decode_file(capture)), lab)
    if kind == "smaller-mtu":
        assert f"MTU is {SMALLER_MTU}, the other nodes' is 1450" in by_code["mtu-mismatch"].message
        too_big = by_code["inner-larger-than-mtu"]
        assert too_big.node == client.name and len(too_big.packets) > 100
    if kind == "bad-checksum":
        bad = by_code["bad-udp-checksum"]
        assert bad.severity == "warning" and bad.node == server.name
        assert bad.packets == tuple(r.number for r in decode_file(capture) if r.is_vxlan)


# What a person saves by hand, under names of their own (lab §2.3): no cni0 table, no kubectl.
BY_HAND = {
    "neigh": ("ip", "neigh", "show", "dev", "flannel.1"),
    "fdb": ("bridge", "fdb", "show", "dev", "flannel.1"),
    "flannel1": ("ip", "-d", "addr", "show", "flannel.1"),
    "route": ("ip", "route"),
}


def _save_by_hand(lab: Lab, directory: Path, form: str) -> None:
    for node in lab.plan.nodes:
        node_dir = directory / node.name
        node_dir.mkdir(parents=True)
        for name, argv in BY_HAND.items():
            command = [argv[0], "-j", *argv[1:]] if form == "json" else list(argv)
            (node_dir / f"{name}.{'json' if form == 'json' else 'txt'}").write_text(lab.output(node.name, command))


@pytest.mark.parametrize("source", ["text", "json", "subnet-and-route", "kubectl"])
def test_a_healthy_cluster_audits_clean_from_any_one_source(lab: Lab, tmp_path: Path, source: str) -> None:
    """Whatever a person could save — the §2.3 tables as text or JSON, only subnet.env and
    ip route, or only kubectl — map names every node's pod CIDR and a healthy cross-node
    exchange gives no error and no warning."""
    require_tool("tcpdump")
    tables = tmp_path / "tables"
    tables.mkdir()
    if source in ("text", "json"):
        _save_by_hand(lab, tables, source)
    elif source == "subnet-and-route":
        for node in lab.plan.nodes:
            (tables / node.name).mkdir()
            (tables / node.name / "subnet.env").write_text(subnet_env(node))
            (tables / node.name / "routes.txt").write_text(lab.output(node.name, ["ip", "route"]))
    else:
        (tables / "nodes.json").write_text(json.dumps(kubectl_nodes(lab.plan)))
    mapped = subprocess.run(
        [sys.executable, "-m", "flannelcap", "map", "--tables", str(tables), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    nodes = {n["name"]: n for n in json.loads(mapped.stdout)["nodes"]}
    assert {name: n["pod_cidr"] for name, n in nodes.items()} == {n.name: n.pod_cidr for n in lab.plan.nodes}
    if source in ("text", "json"):  # the node's own cni0 route, and its peers' routes via its VTEP
        for node in lab.plan.nodes:
            assert nodes[node.name]["sources"]["pod_cidr"] == f"{node.name}: ip route ({node.pod_cidr} dev cni0)"
            assert nodes[node.name]["vtep_ip"] == node.vtep_ip
    client = lab.plan.client_pod.node
    capture = tmp_path / "wire.pcap"
    with tcpdump(lab, client, "eth0", capture):
        assert lab.fetch("/").returncode == 0
    audited = subprocess.run(
        [sys.executable, "-m", "flannelcap", "audit", str(capture), "--tables", str(tables), "--json"],
        capture_output=True,
        text=True,
    )
    assert audited.returncode == 0, audited.stderr
    findings = json.loads(audited.stdout)
    assert [f for f in findings if f["severity"] in ("error", "warning")] == []
    assert "None" not in audited.stdout
    vxlan = [r for r in decode_file(capture) if r.is_vxlan]
    assert vxlan and {r.outer_src_ip for r in vxlan} == {
        lab.plan.node(client).eth0_ip,
        lab.plan.node(lab.plan.server_pod.node).eth0_ip,
    }


def test_a_checksum_left_to_the_nic_on_the_sender_is_info(fresh_lab: Lab, tmp_path: Path) -> None:
    """With transmit checksum offload on, tcpdump on the sender sees each VXLAN packet before
    its checksum is filled in: that is how offload looks, not a fault."""
    require_tool("tcpdump")
    lab = fresh_lab
    client = lab.plan.node(lab.plan.client_pod.node)
    server = lab.plan.node(lab.plan.server_pod.node)
    lab.output(client.name, ["ethtool", "-K", "eth0", "tx", "on"])
    capture = tmp_path / "offload.pcap"
    with tcpdump(lab, client.name, "eth0", capture):
        assert lab.fetch("/").returncode == 0  # the peer's kernel took every packet
    records = list(decode_file(capture))
    sent_bad = [r.number for r in records if r.is_vxlan and r.outer_src_ip == client.eth0_ip]
    assert sent_bad and all(r.outer_udp_checksum_ok is False for r in records if r.number in sent_bad)
    assert all(r.outer_udp_checksum_ok is not False for r in records if r.is_vxlan and r.number not in sent_bad)
    findings = audit_capture(decode_file(capture), topology_of_lab(lab))
    [offload] = findings
    assert (offload.code, offload.severity, offload.node) == ("checksum-offload", "info", client.name)
    assert offload.packets == tuple(sent_bad)
    assert f"{server.eth0_ip} ({server.name}) answered them" in offload.message
