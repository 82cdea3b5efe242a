"""Where ``capture --pod`` / ``--selector`` capture: pods resolved to their node and veth from
the topology alone (pure), and kubectl's labels read and kept through a topology file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flannelcap._errors import BadArgument
from flannelcap.topology.collect import read_topology, write_topology
from flannelcap.topology.kube import parse_kubectl_pods
from flannelcap.topology.model import Pod, Topology
from flannelcap.topology.targets import CaptureTarget, parse_selector, pod_targets, veth_on_node

PODS = (
    Pod(name="nginx", ip="10.42.1.2", node="kpi092", veth="veth1a2b", labels=(("app", "nginx"),)),
    Pod(name="nginx-local", ip="10.42.2.3", node="kpi093", veth="veth3c4d", labels=(("app", "nginx"), ("tier", "db"))),
    Pod(name="busybox", ip="10.42.2.2", node="kpi093", veth="veth5e6f", labels=(("app", "busybox"),)),
    Pod(name="pending", node=None, labels=(("app", "web"),)),
    Pod(name="unmapped", ip="10.42.1.9", node="kpi092", veth=None, labels=(("app", "web2"),)),
)
TOPOLOGY = Topology(pods=PODS)


def test_one_pod_is_captured_on_its_node_and_veth_only() -> None:
    assert pod_targets(TOPOLOGY, ["nginx"], None) == [
        CaptureTarget(node="kpi092", interface="veth1a2b", filter="", pods=("nginx",))
    ]
    [target] = pod_targets(TOPOLOGY, ["default/busybox"], None, "tcp port 80")
    assert (target.node, target.interface, target.filter) == ("kpi093", "veth5e6f", "(tcp port 80)")


def test_a_selector_takes_every_replica_each_on_its_node() -> None:
    targets = pod_targets(TOPOLOGY, [], "app=nginx")
    assert [(t.node, t.interface, t.pods) for t in targets] == [
        ("kpi092", "veth1a2b", ("nginx",)),
        ("kpi093", "veth3c4d", ("nginx-local",)),
    ]
    assert [t.pods for t in pod_targets(TOPOLOGY, [], "app==nginx,tier!=db")] == [("nginx",)]


def test_two_pods_on_one_node_are_captured_there_at_once() -> None:
    [target] = pod_targets(TOPOLOGY, ["busybox", "nginx-local", "busybox"], None, "tcp")
    assert target == CaptureTarget(
        node="kpi093",
        interface="any",
        filter="(host 10.42.2.2 or host 10.42.2.3) and (tcp)",
        pods=("busybox", "nginx-local"),
    )


@pytest.mark.parametrize(
    ("names", "selector", "message"),
    [
        (
            ["nginxx"],
            None,
            "no pod 'nginxx' in the topology (its pods: busybox, nginx, nginx-local, pending, unmapped)",
        ),
        (["pending"], None, "pod pending: kubectl names no node or IP for it (is it running?)"),
        ([], "app=nothing", "no pod in the topology matches --selector 'app=nothing'"),
        ([], "app", "selector term 'app' is not key=value or key!=value"),
        ([], "=x", "selector term '=x' is not key=value"),
    ],
)
def test_what_cannot_be_resolved_is_one_line_naming_it(names: list[str], selector: str | None, message: str) -> None:
    with pytest.raises(BadArgument) as raised:
        pod_targets(TOPOLOGY, names, selector)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_selector_terms() -> None:
    assert parse_selector("app=nginx, tier!=db,x==y") == (
        ("app", "nginx", True),
        ("tier", "db", False),
        ("x", "y", True),
    )


def test_kubectl_labels_are_read_and_survive_a_topology_file(tmp_path: Path) -> None:
    items = [
        {
            "metadata": {"name": "a", "labels": {"app": "nginx", "pod-template-hash": "7d9"}},
            "status": {"podIP": "1.2.3.4"},
        },
        {"metadata": {"name": "b", "labels": "not a mapping"}, "status": {}},
        {"metadata": {"name": "c"}, "status": {}},
    ]
    pods = parse_kubectl_pods(json.dumps({"kind": "List", "items": items}))
    assert [p.labels for p in pods] == [(("app", "nginx"), ("pod-template-hash", "7d9")), (), ()]
    write_topology(TOPOLOGY, tmp_path / "topo.json")
    assert read_topology(tmp_path / "topo.json").pods == PODS


# What iproute2 prints on a node (ip -j neigh show dev cni0; bridge -j fdb show br cni0).
NEIGH = json.dumps([
    {"dst": "10.42.1.9", "lladdr": "6a:3c:11:22:33:44", "state": ["REACHABLE"]},
    {"dst": "10.42.1.7", "state": ["FAILED"]},
])  # fmt: skip
FDB = json.dumps([
    {"mac": "33:33:00:00:00:01", "ifname": "cni0", "flags": ["self"], "state": "permanent"},
    {"mac": "6a:3c:11:22:33:44", "ifname": "veth9a8b7c6d", "master": "cni0", "state": ""},
    {"mac": "6a:3c:11:22:33:44", "ifname": "cni0", "vlan": 1, "master": "cni0", "state": "permanent"},
])  # fmt: skip


def test_a_pod_without_its_veth_in_the_tables_is_found_on_its_node() -> None:
    [target] = pod_targets(TOPOLOGY, ["unmapped"], None)
    assert (target.node, target.interface, target.pod_ip) == ("kpi092", "", "10.42.1.9")
    assert veth_on_node(NEIGH, FDB, target) == "veth9a8b7c6d"  # the port that learned the pod's MAC


def test_a_pod_the_node_has_not_met_is_one_line_saying_what_to_do() -> None:
    [target] = pod_targets(TOPOLOGY, ["unmapped"], None)
    with pytest.raises(BadArgument, match=r"^pod unmapped: kpi092 has no ARP entry for 10.42.1.9 on cni0"):
        veth_on_node("[]", FDB, target)
    learned_elsewhere = json.dumps([json.loads(FDB)[0]])
    with pytest.raises(BadArgument, match=r"no port of cni0 on kpi092 has learned its MAC 6a:3c:11:22:33:44"):
        veth_on_node(NEIGH, learned_elsewhere, target)
