"""The topology model, annotation, audit and explain on the recorded captures and their tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SAMPLES, manifest

from flannelcap import decode_file
from flannelcap._errors import TopologyError
from flannelcap.analysis.audit import audit_capture, audit_topology
from flannelcap.analysis.explain import explain
from flannelcap.topology.annotate import annotate_all
from flannelcap.topology.collect import read_topology, topology_from_dir, write_topology
from flannelcap.topology.model import Topology, build_topology


def tables(name: str) -> Path:
    return SAMPLES / f"{name}.tables"


def kube_nodes(name: str) -> dict:
    return {
        i["metadata"]["name"]: i for i in json.loads((tables(name) / "kubectl-get-nodes.json").read_text())["items"]
    }


def test_topology_from_saved_tables_matches_what_the_kernel_printed() -> None:
    topology = topology_from_dir(tables("cross-node-http-client"))
    assert [n.name for n in topology.nodes] == ["kpi091", "kpi092", "kpi093"]
    for node in topology.nodes:
        link = json.loads((tables("cross-node-http-client") / node.name / "ip-d-link-flannel.1.json").read_text())[0]
        assert node.vtep_mac == link["address"]
        assert node.public_ip == link["linkinfo"]["info_data"]["local"]
        assert (node.vni, node.dstport, node.mtu) == (1, 8472, 1450)
        assert node.vtep_ip == {"kpi091": "10.42.0.0", "kpi092": "10.42.1.0", "kpi093": "10.42.2.0"}[node.name]
        assert node.sources["vtep_mac"] == f"{node.name}: ip -d addr show flannel.1"
    pods = {p.name: p for p in topology.pods}
    assert (pods["busybox"].ip, pods["busybox"].node, pods["busybox"].gateway) == ("10.42.2.2", "kpi093", "10.42.2.1")
    host_links = json.loads((tables("cross-node-http-client") / "kpi093" / "ip-link.json").read_text())
    pod_eth0 = json.loads((tables("cross-node-http-client") / "pods" / "busybox" / "ip-addr.json").read_text())[1]
    peer = next(link for link in host_links if link["ifindex"] == pod_eth0["link_index"])
    assert pods["busybox"].veth == peer["ifname"] and peer["master"] == "cni0"
    assert topology.conflicts == ()


def test_topology_round_trips_through_a_file(tmp_path: Path) -> None:
    topology = topology_from_dir(tables("fault-wrong-fdb"))
    path = tmp_path / "topo.json"
    write_topology(topology, path)
    assert read_topology(path) == topology
    path.write_text('{"nodes": []}')
    with pytest.raises(TopologyError, match="not a flannelcap topology file"):
        read_topology(path)
    with pytest.raises(TopologyError, match="cannot read topology"):
        read_topology(tmp_path / "missing.json")


def test_kubectl_only_topology_derives_vtep_and_cni0() -> None:
    text = (tables("cross-node-http-client") / "kubectl-get-nodes.json").read_text()
    topology = build_topology(kubectl_nodes=text)
    node = topology.node("kpi092")
    assert node is not None
    assert (node.vtep_ip, node.cni0_ip, node.pod_cidr) == ("10.42.1.0", "10.42.1.1", "10.42.1.0/24")
    assert (
        node.vtep_mac
        == json.loads(
            kube_nodes("cross-node-http-client")["kpi092"]["metadata"]["annotations"][
                "flannel.alpha.coreos.com/backend-data"
            ]
        )["VtepMAC"]
    )
    assert node.sources["vtep_ip"] == "kubectl get nodes (podCIDR)"


def test_annotation_and_kernel_disagreeing_is_a_conflict_and_a_finding() -> None:
    nodes = json.loads((tables("cross-node-http-client") / "kubectl-get-nodes.json").read_text())
    nodes["items"][1]["metadata"]["annotations"]["flannel.alpha.coreos.com/backend-data"] = (
        '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}'
    )
    node_tables = {
        "kpi092": {"flannel": (tables("cross-node-http-client") / "kpi092" / "ip-d-addr-flannel.1.json").read_text()}
    }
    topology = build_topology(kubectl_nodes=json.dumps(nodes), node_tables=node_tables)
    [conflict] = topology.conflicts
    assert (conflict.node, conflict.field) == ("kpi092", "vtep_mac")
    assert set(conflict.values.values()) == {"aa:bb:cc:dd:ee:ff", topology.node("kpi092").vtep_mac}  # type: ignore[union-attr]
    findings = audit_topology(topology)
    assert [(f.code, f.node) for f in findings] == [("sources-disagree", "kpi092")]


def test_every_vxlan_packet_is_named_on_clean_captures() -> None:
    for entry in manifest():
        if entry["fault"]:
            continue
        name = str(entry["file"]).removesuffix(".pcap")
        topology = topology_from_dir(tables(name))
        for record in annotate_all(decode_file(SAMPLES / str(entry["file"])), topology):
            if not record.is_vxlan:
                continue
            assert record.src_node == record.src_vtep_node is not None
            assert record.dst_node == record.dst_vtep_node is not None
            assert {record.src_pod, record.dst_pod} == {entry["client"], entry["server"]}
            pod = topology.pod(record.src_pod)  # type: ignore[arg-type]
            assert pod is not None and pod.node == record.src_node


@pytest.mark.parametrize("entry", manifest(), ids=lambda e: str(e["file"]))
def test_audit_of_each_recorded_capture(entry: dict) -> None:
    name = str(entry["file"]).removesuffix(".pcap")
    topology = topology_from_dir(tables(name))
    findings = audit_capture(decode_file(SAMPLES / str(entry["file"])), topology)
    codes = sorted(f.code for f in findings)
    if name == "fault-wrong-fdb":
        assert codes == ["fdb-wrong-dst", "inner-mac-mismatch"]
        table, wire = sorted(findings, key=lambda f: f.code)
        assert table.node == "kpi093"
        assert table.rows == (
            f"kpi093: bridge fdb show dev flannel.1: {topology.node('kpi092').vtep_mac} "  # type: ignore[union-attr]
            "dst 192.168.1.38 self permanent",
        )
        syns = [r.number for r in decode_file(SAMPLES / str(entry["file"])) if r.tcp_flags == "SYN"]
        assert wire.packets == tuple(syns) and wire.node == "kpi091"
    elif name == "fault-bad-checksum":
        [finding] = findings
        assert (finding.code, finding.severity, finding.node) == ("bad-udp-checksum", "warning", "kpi092")
        bad = [r.number for r in decode_file(SAMPLES / str(entry["file"])) if r.outer_udp_checksum_ok is False]
        assert finding.packets == tuple(bad) and len(bad) >= 3
    else:
        assert codes == [], [f.message for f in findings]


def test_explain_busybox_to_nginx_from_the_recorded_tables() -> None:
    topology = topology_from_dir(tables("cross-node-http-client"))
    records = list(decode_file(SAMPLES / "cross-node-http-client.pcap"))
    steps = explain(topology, "busybox", "nginx", records)
    assert all(step.ok for step in steps)
    client, server = topology.node("kpi093"), topology.node("kpi092")
    assert client is not None and server is not None
    # Each step on its own: what it says, and the one table row it cites.
    assert steps[0].text.startswith("busybox (10.42.2.2) sends to nginx (10.42.1.2)") and steps[0].rows == ()
    assert steps[1].title == "2. route on kpi093"
    assert steps[1].rows == ("kpi093: ip route: 10.42.1.0/24 via 10.42.1.0 dev flannel.1 onlink",)
    assert steps[1].text.startswith("10.42.1.2 matches 10.42.1.0/24 via 10.42.1.0 dev flannel.1 onlink")
    assert steps[2].title == "3. neighbour (ARP) entry on kpi093"
    assert steps[2].rows == (f"kpi093: ip neigh show dev flannel.1: 10.42.1.0 lladdr {server.vtep_mac} PERMANENT",)
    assert steps[2].text.startswith(f"10.42.1.0 is at {server.vtep_mac} (PERMANENT")
    assert steps[3].title == "4. FDB entry on kpi093"
    assert steps[3].rows == (
        f"kpi093: bridge fdb show dev flannel.1: {server.vtep_mac} dst {server.public_ip} self permanent",
    )
    assert steps[3].text.startswith(f"{server.vtep_mac} is reached at {server.public_ip}")
    assert f"outer {client.public_ip} → {server.public_ip} UDP" in steps[4].text and steps[4].rows == ()
    assert f"inner {client.vtep_mac} → {server.vtep_mac}, 10.42.2.2 → 10.42.1.2" in steps[4].text
    assert steps[5].title == "6. decapsulation on kpi092" and steps[5].rows == ()
    assert steps[6].title == "7. route on kpi092 and delivery"
    assert steps[6].rows == ("kpi092: ip route: 10.42.1.0/24 dev cni0 proto kernel scope link src 10.42.1.1",)
    assert steps[6].text.startswith("10.42.1.2 matches 10.42.1.0/24 dev cni0")
    wire = steps[4]
    assert wire.packets[0] == next(r.number for r in records if r.is_vxlan and r.inner_src_ip == "10.42.2.2")


def test_explain_marks_the_broken_step() -> None:
    topology = topology_from_dir(tables("fault-wrong-fdb"))
    steps = explain(topology, "10.42.2.2", "nginx", list(decode_file(SAMPLES / "fault-wrong-fdb.pcap")))
    assert [s.ok for s in steps] == [True, True, True, False, False, True, True]
    assert "expected 192.168.1.39 (kpi092)" in steps[3].text


def test_explain_same_node_and_unknown_pod() -> None:
    topology = topology_from_dir(tables("same-node-http"))
    steps = explain(topology, "busybox", "nginx-local")
    assert len(steps) == 2 and "no flannel.1, no VXLAN" in steps[1].text
    with pytest.raises(TopologyError, match="no pod 'nope' in the topology"):
        explain(topology, "busybox", "nope")


def test_shared_public_ip_and_config_mismatch_findings() -> None:
    nodes = json.loads((tables("cross-node-http-client") / "kubectl-get-nodes.json").read_text())
    annotations = nodes["items"][2]["metadata"]["annotations"]
    annotations["flannel.alpha.coreos.com/public-ip"] = "192.168.1.38"
    annotations["flannel.alpha.coreos.com/backend-data"] = annotations["flannel.alpha.coreos.com/backend-data"].replace(
        '"VNI":1', '"VNI":2'
    )
    nodes["items"][2]["status"]["addresses"][0]["address"] = "192.168.1.38"
    topology = build_topology(kubectl_nodes=json.dumps(nodes))
    findings = {(f.code, f.node) for f in audit_topology(topology)}
    assert findings == {("public-ip-shared", None), ("vni-mismatch", "kpi093")}
    assert isinstance(topology, Topology)
