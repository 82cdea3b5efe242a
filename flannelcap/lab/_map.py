"""Collecting a lab's topology through the same runner interface a real cluster uses.

Rule: I/O edge. It only reads (commands that print tables) from the lab's namespaces.
"""

from __future__ import annotations

import json

from flannelcap.lab._lab import Lab
from flannelcap.lab._plan import kubectl_nodes, kubectl_pods, subnet_env
from flannelcap.lab._runner import LocalRunner
from flannelcap.topology.collect import collect_node_tables, collect_pod_tables
from flannelcap.topology.model import Topology, build_topology


def topology_of_lab(lab: Lab) -> Topology:
    """Every node's tables, every pod's tables, and the lab's kubectl view, as one topology."""
    node_tables = {
        n.name: collect_node_tables(LocalRunner(n.name, n.netns)) | {"subnet": subnet_env(n)} for n in lab.plan.nodes
    }
    pod_tables = {p.name: collect_pod_tables(LocalRunner(p.name, p.netns)) for p in lab.plan.pods}
    return build_topology(
        kubectl_nodes=json.dumps(kubectl_nodes(lab.plan)),
        kubectl_pods=json.dumps(kubectl_pods(lab.plan)),
        node_tables=node_tables,
        pod_tables=pod_tables,
    )
