"""The bundled captures hold what their manifest and tables say they hold."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from conftest import SAMPLES, manifest

from flannelcap import decode_file
from flannelcap.packets.reader import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL2, CaptureReader


def _cluster(tables: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    nodes = {}
    for item in json.loads((tables / "kubectl-get-nodes.json").read_text())["items"]:
        annotations = item["metadata"]["annotations"]
        backend = json.loads(annotations["flannel.alpha.coreos.com/backend-data"])
        nodes[item["metadata"]["name"]] = {
            "ip": annotations["flannel.alpha.coreos.com/public-ip"],
            "vtep_mac": backend["VtepMAC"],
            "vni": backend["VNI"],
            "cidr": item["spec"]["podCIDR"],
        }
    pods = {
        item["metadata"]["name"]: {"ip": item["status"]["podIP"], "node": item["spec"]["nodeName"]}
        for item in json.loads((tables / "kubectl-get-pods.json").read_text())["items"]
    }
    return nodes, pods


def test_manifest_names_every_capture_and_its_tables() -> None:
    entries = manifest()
    assert {e["file"] for e in entries} == {p.name for p in SAMPLES.glob("*.pcap")}
    assert len(entries) >= 6
    for entry in entries:
        tables = SAMPLES / str(entry["tables"])
        nodes, _pods = _cluster(tables)
        for node in nodes:
            for name in (
                "ip-neigh-flannel.1.txt",
                "ip-neigh-flannel.1.json",
                "bridge-fdb-flannel.1.txt",
                "bridge-fdb-flannel.1.json",
                "ip-d-addr-flannel.1.txt",
                "ip-route.txt",
                "ip-route.json",
            ):
                assert (tables / node / name).stat().st_size > 0, f"{entry['file']}: {node}/{name}"


def test_kubectl_json_agrees_with_what_the_nodes_printed() -> None:
    for entry in manifest():
        tables = SAMPLES / str(entry["tables"])
        nodes, _pods = _cluster(tables)
        for name, node in nodes.items():
            link = json.loads((tables / name / "ip-d-link-flannel.1.json").read_text())[0]
            assert link["address"] == node["vtep_mac"]
            assert link["linkinfo"]["info_data"]["local"] == node["ip"]


def test_vxlan_packets_match_the_cluster_they_were_recorded_in() -> None:
    for entry in manifest():
        nodes, pods = _cluster(SAMPLES / str(entry["tables"]))
        node_of_ip = {n["ip"]: name for name, n in nodes.items()}
        node_of_mac = {n["vtep_mac"]: name for name, n in nodes.items()}
        pod_ips = {p["ip"] for p in pods.values()}
        vxlan = [r for r in decode_file(SAMPLES / str(entry["file"])) if r.is_vxlan]
        for record in vxlan:
            assert record.vni == 1
            assert record.outer_src_ip in node_of_ip and record.outer_dst_ip in node_of_ip
            assert node_of_mac[record.inner_src_mac] == node_of_ip[record.outer_src_ip]
            assert record.inner_src_ip in pod_ips and record.inner_dst_ip in pod_ips
            if not entry["fault"]:
                assert node_of_mac[record.inner_dst_mac] == node_of_ip[record.outer_dst_ip]


def test_each_scenario_shows_its_traffic() -> None:
    by_name = {str(e["file"]).removesuffix(".pcap"): e for e in manifest()}

    def records(name: str) -> list:
        return list(decode_file(SAMPLES / f"{name}.pcap"))

    for name in ("cross-node-http-client", "cross-node-http-server"):
        got = records(name)
        assert [r.http_method for r in got if r.http_method] == ["GET"]
        assert [r.http_status for r in got if r.http_status] == [200]
        assert all(r.is_vxlan for r in got if r.proto == "tcp")

    same_node = records("same-node-http")
    assert not any(r.is_vxlan for r in same_node)
    assert [r.http_status for r in same_node if r.http_status] == [200]

    with CaptureReader(SAMPLES / "cross-node-http-any.pcap") as reader:
        list(reader)
        assert reader.linktype == LINKTYPE_LINUX_SLL2
    with CaptureReader(SAMPLES / "cross-node-http-client.pcap") as reader:
        assert reader.linktype == LINKTYPE_ETHERNET

    large = records("cross-node-large-transfer")
    # Full-size packets: 1450-byte inner packets (flannel.1's MTU) + 50 bytes of VXLAN
    # encapsulation make 1500-byte outer packets, 1514-byte Ethernet frames.
    assert max(r.inner_ip_len or 0 for r in large if r.is_vxlan) == 1450
    assert max(r.outer_ip_len or 0 for r in large if r.is_vxlan) == 1500
    assert max(r.wire_len for r in large if r.is_vxlan) == 1514
    body = sum(r.payload_len or 0 for r in large if r.is_vxlan and r.src_port == 80)
    assert body >= 1024 * 1024

    fault = records("fault-wrong-fdb")
    syns = [r for r in fault if r.tcp_flags == "SYN"]
    assert len(syns) >= 3  # the SYN is retransmitted, never answered
    assert not [r for r in fault if r.tcp_flags == "SYN, ACK"]
    assert len(Counter(r.tcp_seq for r in syns)) == 1
    wrong_ip = str(by_name["fault-wrong-fdb"]["fault"]).split(" points at ")[1].split()[0]
    assert {r.outer_dst_ip for r in syns} == {wrong_ip}
