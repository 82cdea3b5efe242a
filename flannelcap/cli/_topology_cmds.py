"""``flannelcap map``, ``audit`` and ``explain``: argument parsing and printing.

Rule: no logic here; it collects through ``topology.collect`` / the lab, and prints what ``analysis.audit``
and ``analysis.explain`` return.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flannelcap._errors import TopologyError
from flannelcap.analysis.audit import audit_topology
from flannelcap.analysis.explain import explain
from flannelcap.cli import _report
from flannelcap.cli._capture_cmd import add_ssh_options, ssh_options
from flannelcap.cli._topology_args import add_topology_options, topology_from_args
from flannelcap.packets.pipeline import open_capture
from flannelcap.topology.collect import topology_from_dir, write_topology
from flannelcap.topology.model import build_topology


def add_parsers(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``map``, ``audit`` and ``explain``."""
    map_ = subparsers.add_parser(
        "map",
        help="collect every node's flannel tables into a topology, and check them",
        description="Build a topology (nodes, VTEPs, pods, each node's ARP/FDB/routes) and audit the tables.",
    )
    source = map_.add_mutually_exclusive_group()
    source.add_argument("--lab", action="store_true", help="collect from the namespace lab (root)")
    source.add_argument("--tables", type=Path, metavar="DIR", help="tables saved by hand or by 'lab record'")
    source.add_argument("--ssh", nargs="+", metavar="NODE", help="collect over SSH from these nodes")
    map_.add_argument(
        "--kubectl", type=Path, nargs="+", metavar="JSON", help="kubectl output: nodes JSON [pods JSON or -o wide]"
    )
    add_ssh_options(map_)
    map_.add_argument("--prefix", default="fclab", help="lab prefix, with --lab")
    map_.add_argument("-o", "--output", type=Path, help="write the topology to this file")
    map_.add_argument("--json", action="store_true", help="print the topology as JSON")
    map_.set_defaults(run=_map)

    audit = subparsers.add_parser(
        "audit",
        help="check a capture against the tables: wrong VTEPs, stale entries, checksums, MTU",
        description="Find where the wire and the flannel tables disagree, with evidence.",
    )
    audit.add_argument("file", help="capture file")
    add_topology_options(audit, required=True)
    audit.add_argument("--json", action="store_true", help="findings as JSON")
    audit.set_defaults(run=_audit)

    explain_ = subparsers.add_parser(
        "explain",
        help="the path of a packet from one pod to another, step by step",
        description="Walk pod route → cni0 → route → ARP → FDB → VXLAN → peer, citing the tables.",
    )
    explain_.add_argument("source", metavar="SRC", help="pod name or IP")
    explain_.add_argument("destination", metavar="DST", help="pod name or IP")
    add_topology_options(explain_, required=True)
    explain_.add_argument("--capture", metavar="FILE", help="confirm the steps with the packets of this capture")
    explain_.set_defaults(run=_explain)


def _map(args: argparse.Namespace) -> int:
    if not (args.lab or args.tables or args.ssh or args.kubectl):
        raise TopologyError("say where the tables come from: --lab, --tables DIR, --ssh NODE… or --kubectl")
    kubectl = _read_kubectl(args.kubectl) if args.kubectl else (None, None)
    if args.lab:
        from flannelcap.lab import Lab
        from flannelcap.lab._map import topology_of_lab

        topology = topology_of_lab(Lab.load(args.prefix))
    elif args.tables:
        topology = topology_from_dir(args.tables)
    else:
        from flannelcap.remote._collect import collect_over_ssh

        node_tables = collect_over_ssh(args.ssh, ssh_options(args)) if args.ssh else None
        topology = build_topology(kubectl_nodes=kubectl[0], kubectl_pods=kubectl[1], node_tables=node_tables)
    if args.output:
        write_topology(topology, args.output)
    if args.json:
        print(json.dumps(topology.to_json(), indent=2))
        return 0
    print("\n".join(_report.topology_lines(topology)))
    print()
    print("\n".join(_report.finding_lines(audit_topology(topology))))
    if args.output:
        print(f"\ntopology written to {args.output}")
    return 0


def _read_kubectl(paths: list[Path]) -> tuple[str, str | None]:
    if len(paths) > 2:
        raise TopologyError("--kubectl takes the nodes JSON and, optionally, the pods output")
    try:
        texts = [p.read_text() for p in paths]
    except OSError as exc:
        raise TopologyError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    return texts[0], texts[1] if len(texts) > 1 else None


def _audit(args: argparse.Namespace) -> int:
    topology = topology_from_args(args)
    assert topology is not None
    from flannelcap._api import read  # pandas: loaded only by the commands that need it

    capture = read(args.file, topology)
    if capture.problem:  # every packet before the damage is audited
        print(f"flannelcap: warning: {args.file}: {capture.problem}", file=sys.stderr)
    findings = capture.findings_list()
    if args.json:
        print(_report.findings_json(findings))
    else:
        print("\n".join(_report.finding_lines(findings, with_capture=True)))
    return 0


def _explain(args: argparse.Namespace) -> int:
    topology = topology_from_args(args)
    assert topology is not None
    records = list(open_capture(args.capture, topology=topology).records()) if args.capture else []
    print("\n".join(_report.step_lines(explain(topology, args.source, args.destination, records))))
    return 0
