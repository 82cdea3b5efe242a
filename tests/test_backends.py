"""The lab's overlay backends: their plan (annotations as flanneld writes them, WireGuard keys
as ``wg`` derives them), the recording of one exchange per backend (``sample_pcaps/backends``)
named node by node and pod by pod, and each backend built for real, the kernel's device or its
user-space stand-in carrying a pod's request to another node."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import SAMPLES, require_root_lab, require_tool

from flannelcap import read
from flannelcap.cli import main
from flannelcap.lab import Lab, LabSpec, teardown
from flannelcap.lab._backends import built_with
from flannelcap.lab._backends_plan import BACKENDS, geneve_identity
from flannelcap.lab._plan import kubectl_nodes, plan_lab, wireguard_keys
from flannelcap.lab._record_backends import record_backend
from flannelcap.packets.pipeline import open_capture

RECORDED = SAMPLES / "backends"
ENTRIES = {e["name"]: e for e in map(json.loads, (RECORDED / "manifest.jsonl").read_text().splitlines())}
ANNOTATION = "flannel.alpha.coreos.com/backend-data"


def test_every_backend_is_recorded() -> None:
    assert set(ENTRIES) == set(BACKENDS)


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_annotations_as_flanneld_writes_them(name: str) -> None:
    plan = plan_lab(LabSpec(prefix="fcbk", backend=name))
    nodes = kubectl_nodes(plan)["items"]
    annotations = [n["metadata"]["annotations"] for n in nodes]
    if name in ("geneve", "calico-vxlan"):  # Cilium's and Calico's nodes carry no flannel annotations
        assert annotations == [{}] * 3
    elif name in ("host-gw", "ipip", "udp"):
        assert {a[ANNOTATION] for a in annotations} == {"null"}
    elif name == "wireguard":
        keys = [json.loads(a[ANNOTATION])["PublicKey"] for a in annotations]
        assert keys == [wireguard_keys("fcbk", n.name)[1] for n in plan.nodes] and len(set(keys)) == 3
    else:
        assert [json.loads(a[ANNOTATION]) for a in annotations] == [
            {"VNI": 1, "VtepMAC": n.vtep_mac} for n in plan.nodes
        ]
    types = {a.get("flannel.alpha.coreos.com/backend-type") for a in annotations}
    assert types == {BACKENDS[name].flannel_type}


def test_wireguard_keys_are_what_wg_derives() -> None:
    require_tool("wg")
    private, public = wireguard_keys("fcbk", "kpi091")
    derived = subprocess.run(["wg", "pubkey"], input=private, capture_output=True, text=True, check=True).stdout
    assert derived.strip() == public


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_packet_of_the_exchange_is_named(name: str) -> None:
    entry = ENTRIES[name]
    path = RECORDED / name / entry["files"][0]
    capture = read(path, topology=RECORDED / name / "tables")
    p = capture.packets
    exchange = p[p["outer_proto"].astype("object").isin(["udp", "ipip", "tcp"])]
    assert len(exchange) >= 10
    client, server = entry["client"], entry["server"]
    nodes = {(client["node"], server["node"]), (server["node"], client["node"])}
    assert set(zip(exchange["src_node"].astype(str), exchange["dst_node"].astype(str), strict=True)) == nodes
    if name == "wireguard":  # encrypted: the nodes are all there is to name
        assert exchange["encap"].astype(str).unique().tolist() == ["wireguard"]
        assert set(exchange["wg_type"].astype(int)) >= {4}
    else:
        pods = {(client["pod"], server["pod"]), (server["pod"], client["pod"])}
        assert set(zip(exchange["src_pod"].astype(str), exchange["dst_pod"].astype(str), strict=True)) == pods
        assert capture.http()[["method", "status"]].values.tolist() == [["GET", 200]]
    encap = exchange["encap"].astype(object).where(exchange["encap"].notna(), None).unique().tolist()
    assert encap == [entry["encap"]]
    if name == "host-gw":
        assert exchange["direct_routed"].all() and (exchange["outer_src_ip"].astype(str).str.startswith("10.42.")).all()
    else:
        assert not exchange["direct_routed"].any()
    if name == "vxlan-gbp":  # the policy of the sending node's pods: 100 + the node's index
        assert set(exchange["vxlan_gbp"].astype(int)) == {102, 101}
    if name == "geneve":  # the VNI is the sending pod's identity
        expected = {geneve_identity(client["ip"]), geneve_identity(server["ip"])}
        assert set(exchange["vni"].astype(int)) == expected
    if name == "calico-vxlan":
        assert set(exchange["vni"].astype(int)) == {4096} and set(exchange["outer_dst_port"].astype(int)) == {4789}
    source = open_capture(path)
    list(source)
    assert source.fallback_frames == 0  # every backend's common layout, decoded in C


def test_the_footer_says_which_rules_fired(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", str(RECORDED / "udp" / ENTRIES["udp"]["files"][0]), "--summary"]) == 0
    assert "tunnels decoded: udp-tun on UDP 8285: 10" in capsys.readouterr().out


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    os.environ.setdefault("FLANNELCAP_LAB_DIR", str(tmp_path / "labstate"))
    return tmp_path


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_each_backend_built_for_real(name: str, state_dir: Path) -> None:
    """The backend up in namespaces: busybox fetches nginx's page on another node, and the
    capture on the client node's eth0 holds the backend's encapsulation."""
    require_root_lab()
    require_tool("tcpdump")
    if name == "vxlan-gbp":
        require_tool("nft")
    if name == "wireguard":
        require_tool("wg")
        require_tool("wireguard-go")
    prefix = "t" + uuid.uuid4().hex[:6]
    lab = Lab.up(LabSpec(prefix=prefix, backend=name))
    try:
        entry = record_backend(lab, state_dir)
        status = lab.status()
        how = {n["built_with"] for n in status["nodes"]}
        assert len(how) == 1 and how == {built_with(lab, lab.plan.nodes[0].name)}
        if BACKENDS[name].kernel_type == "vxlan":
            assert how == {"kernel vxlan device"}
        elif name == "host-gw":
            assert how == {"plain routes"}
        elif name in ("udp", "geneve"):
            assert next(iter(how)).startswith("user space")
        packets = read(state_dir / name / entry["files"][0], topology=state_dir / name / "tables").packets
        tunnelled = packets[packets["encap"].notna()]
        assert set(tunnelled["encap"].astype(str)) == ({BACKENDS[name].encap} if BACKENDS[name].encap else set())
        assert "busybox" in set(packets["src_pod"].astype(str)) or name == "wireguard"
    finally:
        teardown(prefix, lab.plan.namespaces)


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_the_topology_learns_the_backend(name: str) -> None:
    from flannelcap.topology.collect import topology_from_dir
    from flannelcap.topology.tables import parse_links

    topology = topology_from_dir(RECORDED / name / "tables")
    assert {n.backend for n in topology.nodes} == {name}
    assert not topology.conflicts and not topology.notes
    device = BACKENDS[name].device
    source = topology.nodes[0].sources["backend"]
    assert source == (f"kpi091: ip -d link ({device})" if device else "kubectl get nodes (backend-type)")
    # The text form of ip -d link names each device's type as the JSON does.
    text = parse_links((RECORDED / name / "tables" / "kpi091" / "ip-link.txt").read_text())
    json_form = parse_links((RECORDED / name / "tables" / "kpi091" / "ip-link.json").read_text())
    assert [(link.name, link.kind) for link in text] == [(link.name, link.kind) for link in json_form]
    if name == "calico-vxlan":
        assert {(n.vni, n.dstport) for n in topology.nodes} == {(4096, 4789)}


def test_audit_names_an_encapsulation_the_backend_does_not_use() -> None:
    geneve = RECORDED / "geneve" / ENTRIES["geneve"]["files"][0]
    wrong = read(geneve, topology=RECORDED / "vxlan" / "tables").findings()
    assert wrong["code"].tolist() == ["unexpected-encapsulation"]
    assert len(wrong["packets"].iloc[0]) == 10 and "are geneve" in wrong["message"].iloc[0]
    assert read(geneve, topology=RECORDED / "geneve" / "tables").findings().empty
    calico = read(
        RECORDED / "calico-vxlan" / ENTRIES["calico-vxlan"]["files"][0], topology=RECORDED / "vxlan" / "tables"
    )
    assert set(calico.findings()["code"]) == {"vni-port-mismatch"}


def test_the_udp_proxy_ages_packets_as_flanneld_does() -> None:
    from scapy.layers.inet import IP, TCP

    from flannelcap.lab._tunnel_endpoint import decrement_ttl, geneve_header
    from flannelcap.packets.tunnels import parse_geneve

    packet = bytes(IP(src="10.42.2.2", dst="10.42.1.2", ttl=63) / TCP(dport=80))
    aged = decrement_ttl(packet)
    assert aged is not None
    again = IP(aged)
    assert (
        again.ttl == 62
        and again.chksum == IP(bytes(IP(src="10.42.2.2", dst="10.42.1.2", ttl=62) / TCP(dport=80))).chksum
    )
    assert decrement_ttl(bytes(IP(ttl=1))) is None and decrement_ttl(b"\x60" + bytes(39)) is None
    header = parse_geneve(geneve_header(10514))
    assert header is not None and (header.vni, header.protocol, header.length, header.options) == (10514, 0x6558, 8, ())


def test_net_conf_is_a_source_and_disagreements_are_kept(tmp_path: Path) -> None:
    import shutil

    from flannelcap._errors import TableParseError
    from flannelcap.topology.collect import topology_from_dir
    from flannelcap.topology.tables import parse_net_conf

    tables = tmp_path / "tables"
    shutil.copytree(RECORDED / "ipip" / "tables", tables)
    assert {n.backend for n in topology_from_dir(tables).nodes} == {"ipip"}
    (tables / "net-conf.json").write_text(json.dumps({"Network": "10.42.0.0/16", "Backend": {"Type": "vxlan"}}))
    conflicts = topology_from_dir(tables).conflicts
    assert {(c.node, c.field) for c in conflicts} == {(n, "backend") for n in ("kpi091", "kpi092", "kpi093")}
    assert set(conflicts[0].values.values()) == {"ipip", "vxlan"}
    conf = parse_net_conf(json.dumps({"Backend": {"Type": "vxlan", "GBP": True, "VNI": 7, "Port": 4789}}))
    assert (conf.backend, conf.vni, conf.port) == ("vxlan-gbp", 7, 4789)
    for garbage, said in (
        ("{", "not JSON"),
        ('{"Network": "x"}', 'no "Backend"'),
        ('{"Backend": {"VNI": "1"}}', "numbers"),
    ):
        with pytest.raises(TableParseError, match=said):
            parse_net_conf(garbage)


def test_calicos_node_resources_name_the_vteps() -> None:
    from flannelcap._errors import TableParseError
    from flannelcap.topology.kube import parse_calico_nodes
    from flannelcap.topology.model import build_topology

    text = (RECORDED / "calico-vxlan" / "tables" / "calicoctl-get-nodes.json").read_text()
    topology = build_topology(calico_nodes=text)  # Calico's resources alone
    plan = plan_lab(LabSpec(prefix="fcbk", backend="calico-vxlan"))
    assert [(n.name, n.public_ip, n.vtep_mac, n.vtep_ip, n.backend) for n in topology.nodes] == [
        (p.name, p.eth0_ip, p.vtep_mac, p.vtep_ip, "calico-vxlan") for p in plan.nodes
    ]
    capture = read(
        RECORDED / "calico-vxlan" / ENTRIES["calico-vxlan"]["files"][0], topology=RECORDED / "calico-vxlan" / "tables"
    )
    tunnelled = capture.packets[capture.packets["is_vxlan"]]
    assert set(tunnelled["dst_vtep_node"].astype(str)) == {"kpi092", "kpi093"}
    with pytest.raises(TableParseError, match="spec is not a map"):
        parse_calico_nodes(json.dumps({"items": [{"metadata": {"name": "n"}, "spec": [1]}]}))
