"""Collecting the tables: from a node through a runner, from a directory of saved output,
and topology files on disk.

Rule: this is an I/O edge. It runs commands (through a ``Runner``: the lab's, in its
namespaces, or SSH's, on a node; none of them lives here) and reads and writes files,
then hands plain text to the pure parsers in ``tables``, ``kube`` and ``model``. The
tables code does not care whether a runner reaches a lab namespace, this machine, or (later)
a node over SSH: a runner runs one command and returns its output.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from flannelcap._errors import CommandError, TopologyError
from flannelcap.topology.model import NODE_TABLES, OPTIONAL_NODE_TABLES, POD_TABLES, Topology, build_topology


class Runner(Protocol):
    """Runs a command on one node (or pod) and returns what it printed."""

    name: str

    def run(self, argv: Sequence[str]) -> str:
        """Run ``argv``; return stdout. Raises ``CommandError`` on a non-zero exit."""
        ...


def collect_node_tables(runner: Runner) -> dict[str, str]:
    """Every table of ``NODE_TABLES`` from one node (those of ``OPTIONAL_NODE_TABLES`` may be
    absent: cni0 on a node without pods, subnet.env where flanneld does not run).

    Raises:
        CommandError: a table that every flannel node has could not be read.
    """
    tables = {}
    for kind, table in NODE_TABLES.items():
        try:
            tables[kind] = runner.run(table.json_argv)
        except CommandError:
            if kind not in OPTIONAL_NODE_TABLES:
                raise
    return tables


def collect_pod_tables(runner: Runner) -> dict[str, str]:
    """A pod's own ``ip addr`` and ``ip route``."""
    return {kind: runner.run(table.json_argv) for kind, table in POD_TABLES.items()}


# -- saved output in a directory -------------------------------------------------------------

# Which table a saved file holds, by words in its name (first match wins).
_FILE_KINDS = (
    ("subnet", "subnet"),  # first: flanneld's file is often saved as flannel-subnet.env
    ("neigh", "neigh"),
    ("fdb", "fdb"),
    ("flannel", "flannel"),
    ("cni0", "cni0"),
    ("route", "routes"),
    ("link", "links"),
)
_POD_FILE_KINDS = (("addr", "addr"), ("route", "routes"))


def _kind(filename: str, kinds: tuple[tuple[str, str], ...]) -> str | None:
    return next((kind for word, kind in kinds if word in filename), None)


def _read_tables(directory: Path, kinds: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """Files of one node or pod, by table kind; ``.json`` preferred over text."""
    tables: dict[str, str] = {}
    for path in sorted(directory.iterdir(), key=lambda p: p.suffix != ".json"):
        kind = _kind(path.name, kinds) if path.is_file() else None
        if kind is not None and kind not in tables:
            tables[kind] = path.read_text(errors="replace")
    return tables


def topology_from_dir(directory: Path) -> Topology:
    """Build a topology from output saved by hand or by ``flannelcap lab record``.

    Layout: ``DIR/<node>/<table files>`` (names containing neigh, fdb, flannel, cni0,
    route, link, subnet), ``DIR/pods/<pod>/`` (addr, route), and ``DIR/*nodes*.json`` /
    ``DIR/*pods*`` / ``DIR/*svc*.json``, ``DIR/*endpointslices*.json`` for kubectl output, and
    ``DIR/*net-conf*`` for flannel's configuration, ``DIR/*calico*.json`` for Calico's Nodes.

    Raises:
        TopologyError: the directory holds nothing to build from.
        TableParseError: a file cannot be read as the table its name says.
    """
    if not directory.is_dir():
        raise TopologyError(f"{directory} is not a directory of saved tables")
    node_tables = {}
    pod_tables = {}
    kubectl_nodes = kubectl_pods = net_conf = calico_nodes = None
    kubectl_services = []
    for path in sorted(directory.iterdir()):
        if path.is_dir() and path.name == "pods":
            pod_tables = {p.name: _read_tables(p, _POD_FILE_KINDS) for p in sorted(path.iterdir()) if p.is_dir()}
        elif path.is_dir():
            tables = _read_tables(path, _FILE_KINDS)
            if tables:
                node_tables[path.name] = tables
        elif "calico" in path.name and path.suffix == ".json":
            calico_nodes = path.read_text(errors="replace")
        elif "net-conf" in path.name:
            net_conf = path.read_text(errors="replace")
        elif "nodes" in path.name:
            kubectl_nodes = path.read_text(errors="replace")
        elif "pods" in path.name:
            kubectl_pods = path.read_text(errors="replace")
        elif path.suffix == ".json" and any(word in path.name for word in ("svc", "services", "endpointslices")):
            kubectl_services.append(path.read_text(errors="replace"))
    if not node_tables and kubectl_nodes is None:
        raise TopologyError(f"{directory} holds no node tables (DIR/<node>/ip-neigh….txt …) and no kubectl nodes JSON")
    return build_topology(
        kubectl_nodes=kubectl_nodes,
        kubectl_pods=kubectl_pods,
        node_tables=node_tables,
        pod_tables=pod_tables,
        kubectl_services=kubectl_services,
        net_conf=net_conf,
        calico_nodes=calico_nodes,
    )


def read_topology(path: Path) -> Topology:
    """Load a topology file written by ``write_topology``.

    Raises:
        TopologyError: the file is missing, not JSON, or not a topology.
    """
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise TopologyError(f"cannot read topology {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise TopologyError(f"{path} is not a topology file (not JSON: {exc})") from exc
    return Topology.from_json(data)


def write_topology(topology: Topology, path: Path) -> None:
    """Save a topology as JSON.

    Raises:
        TopologyError: the file cannot be written.
    """
    try:
        path.write_text(json.dumps(topology.to_json(), indent=2) + "\n")
    except OSError as exc:
        raise TopologyError(f"cannot write topology {path}: {exc.strerror}") from exc
