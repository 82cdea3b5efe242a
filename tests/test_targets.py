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
from flannelcap.topology.targets import CaptureTarget, parse_selector, pod_targets

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
        (["unmapped"], None, "pod unmapped: the tables do not say which veth on kpi092 is its own"),
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
