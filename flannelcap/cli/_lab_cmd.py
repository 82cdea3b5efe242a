"""``flannelcap lab``: up, down, status, exec and record, printed for a person.

Rule: no lab logic here; it calls ``flannelcap.lab`` and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flannelcap._errors import LabError
from flannelcap.lab import Lab, LabPlan, LabSpec, kubectl_nodes, kubectl_pods, teardown
from flannelcap.lab._backends_plan import BACKENDS
from flannelcap.lab._faults import FAULTS, apply_fault
from flannelcap.lab._services_plan import kubectl_endpointslices, kubectl_services

DEFAULT_PREFIX = "fclab"


def add_parsers(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``lab`` and its subcommands."""
    parser = subparsers.add_parser(
        "lab",
        help="a flannel VXLAN cluster in network namespaces (needs root)",
        description="Build, use and remove a flannel-like k3s cluster made of network namespaces.",
    )
    verbs = parser.add_subparsers(dest="lab_command", metavar="VERB", required=True)

    up = verbs.add_parser("up", help="build the lab: nodes kpi091…, pods nginx, busybox, nginx-local")
    up.add_argument("--nodes", type=int, default=3, help="number of nodes (2-9, default 3)")
    up.add_argument("--prefix", default=DEFAULT_PREFIX, help="namespace prefix (default fclab)")
    up.add_argument("--first-ip", default="192.168.1.38", help="eth0 IP of the first node")
    up.add_argument("--ssh", action="store_true", help="run an OpenSSH server in every node, write an ssh_config")
    up.add_argument(
        "--services",
        action="store_true",
        help="add the seed's §4-5: 3 nginx replicas behind a LoadBalancer IP, a MetalLB-like announcer, "
        "kube-proxy's DNAT (needs 3 nodes and nftables)",
    )
    up.add_argument(
        "--traffic-policy",
        choices=("Cluster", "Local"),
        default="Cluster",
        help="the Service's externalTrafficPolicy (default Cluster: masquerade, any replica)",
    )
    up.add_argument(
        "--backend",
        choices=tuple(BACKENDS),
        default="vxlan",
        help="the overlay: flannel's vxlan (default), vxlan-gbp, host-gw, ipip, udp or wireguard, Cilium's geneve, "
        "Calico's VXLAN (VNI 4096 on 4789); the kernel's device where it has one, else a user-space stand-in",
    )
    up.set_defaults(run=_up)

    down = verbs.add_parser("down", help="remove the lab (safe to run twice)")
    down.add_argument("--prefix", default=DEFAULT_PREFIX)
    down.set_defaults(run=_down)

    status = verbs.add_parser("status", help="nodes, eth0 IPs, VTEP MACs, pods and pod IPs")
    status.add_argument("--prefix", default=DEFAULT_PREFIX)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(run=_status)

    exec_ = verbs.add_parser("exec", help="run a command in a node or pod: lab exec busybox -- ip route")
    exec_.add_argument("--prefix", default=DEFAULT_PREFIX)
    exec_.add_argument("target", metavar="NODE_OR_POD")
    exec_.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD…")
    exec_.set_defaults(run=_exec)

    fault = verbs.add_parser("fault", help="break the lab as real clusters break (for flannelcap audit to find)")
    fault.add_argument("--prefix", default=DEFAULT_PREFIX)
    fault.add_argument("kind", choices=sorted(FAULTS))
    fault.add_argument("--node", required=True, help="the node whose tables or traffic break")
    fault.add_argument("--peer", required=True, help="the other node concerned")
    fault.set_defaults(run=_fault)

    kubectl = verbs.add_parser(
        "kubectl", help="what 'kubectl get nodes|pods|svc|endpointslices -o json' would show for the lab"
    )
    kubectl.add_argument("--prefix", default=DEFAULT_PREFIX)
    kubectl.add_argument("kind", choices=("nodes", "pods", "svc", "endpointslices"))
    kubectl.set_defaults(run=_kubectl)

    record = verbs.add_parser("record", help="record the sample captures with real tcpdump")
    record.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("sample_pcaps"),
        help="directory to write to (default sample_pcaps)",
    )
    record.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="record only this scenario (repeatable)"
    )
    record.add_argument(
        "--journeys",
        action="store_true",
        help="record the journey captures instead (-i any on two nodes at once, into OUTPUT/journeys/)",
    )
    record.add_argument(
        "--backends",
        action="store_true",
        help="record one cross-node HTTP exchange per overlay backend instead (into OUTPUT/backends/)",
    )
    record.add_argument(
        "--services",
        action="store_true",
        help="record the services captures instead (arping, curls, failover, split brain; into OUTPUT/services/)",
    )
    record.set_defaults(run=_record)


def _up(args: argparse.Namespace) -> int:
    spec = LabSpec(
        nodes=args.nodes,
        prefix=args.prefix,
        first_node_ip=args.first_ip,
        services=args.services,
        traffic_policy=args.traffic_policy,
        backend=args.backend,
    )
    lab = Lab.up(spec, ssh=args.ssh)
    _print_status(lab.status())
    print(f"\nlab {args.prefix!r} is up; try: flannelcap lab exec busybox -- ip route")
    for svc in lab.plan.services:
        print(f"service {svc.name}: from the management host: flannelcap lab exec xubulab -- curl {svc.external_ip}")
    if lab.ssh_config:
        node = lab.plan.nodes[-1].name
        print(f"over SSH: ssh -F {lab.ssh_config} {node}   or   flannelcap capture -F {lab.ssh_config} {node}")
    return 0


def _down(args: argparse.Namespace) -> int:
    removed = teardown(args.prefix)
    print(f"removed {len(removed)} namespaces" + (f": {', '.join(removed)}" if removed else ""))
    return 0


def _status(args: argparse.Namespace) -> int:
    status = Lab.load(args.prefix).status()
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        _print_status(status)
    return 0


def _print_status(status: dict[str, object]) -> None:
    print(f"backend {status.get('backend', 'vxlan')}")
    print(f"{'NODE':<8} {'ETH0 IP':<15} {'DEVICE MAC':<17} {'VTEP IP':<11} {'POD CIDR':<14} DEVICE, BUILT WITH")
    for node in status["nodes"]:  # type: ignore[attr-defined]
        if not node["up"]:
            print(f"{node['name']:<8} (namespace {node['netns']} is gone)")
            continue
        device = f"{node.get('device') or '-'}, {node.get('built_with', '')}"
        print(
            f"{node['name']:<8} {node['eth0_ip']:<15} {node['vtep_mac'] or '-':<17} {node['vtep_ip']:<11} "
            f"{node['pod_cidr']:<14} {device}"
        )
    print(f"\n{'POD':<22} {'NODE':<8} IP")
    for pod in status["pods"]:  # type: ignore[attr-defined]
        print(f"{pod['name']:<22} {pod['node']:<8} {pod.get('ip') or '(gone)'}")
    services = status.get("services") or []
    if services:
        print(f"\n{'SERVICE':<8} {'CLUSTER-IP':<13} {'EXTERNAL-IP':<14} {'POLICY':<8} ANNOUNCED BY")
    for svc in services:  # type: ignore[attr-defined]
        print(
            f"{svc['name']:<8} {svc['cluster_ip']:<13} {svc['external_ip']:<14} {svc['policy']:<8} "
            f"{', '.join(svc['announced_by']) or '(nobody)'}"
        )


def _exec(args: argparse.Namespace) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise LabError("no command given: flannelcap lab exec NODE_OR_POD -- CMD…")
    try:
        return Lab.load(args.prefix).exec(args.target, argv).returncode
    except OSError as exc:
        raise LabError(f"cannot run {argv[0]!r}: {exc.strerror}") from exc


def _fault(args: argparse.Namespace) -> int:
    print(apply_fault(Lab.load(args.prefix), args.kind, args.node, args.peer))
    return 0


def _kubectl(args: argparse.Namespace) -> int:
    plan = Lab.load(args.prefix).plan
    documents: dict[str, Callable[[LabPlan], dict[str, Any]]] = {
        "nodes": kubectl_nodes,
        "pods": kubectl_pods,
        "svc": lambda p: kubectl_services(p.services),
        "endpointslices": lambda p: kubectl_endpointslices(p.services, p.pods),
    }
    document = documents[args.kind](plan)
    print(json.dumps(document, indent=2))
    return 0


def _record(args: argparse.Namespace) -> int:
    from flannelcap.lab._record import record_all, record_journeys

    if args.backends:
        from flannelcap.lab._record_backends import record_backends

        for entry in record_backends(args.output / "backends", names=set(args.only) or None):
            print(f"{args.output / 'backends' / str(entry['name'])}/: {entry['traffic']} ({entry['built_with']})")
        return 0
    if args.services:
        from flannelcap.lab._record_services import record_services

        for entry in record_services(args.output / "services", names=set(args.only) or None):
            print(f"{args.output / 'services' / str(entry['name'])}/: {entry['traffic']}")
        return 0
    if args.journeys:
        for entry in record_journeys(args.output / "journeys"):
            print(f"{args.output / 'journeys' / str(entry['name'])}/: {entry['traffic']}")
        return 0
    entries = record_all(args.output, names=set(args.only) or None)
    for entry in entries:
        print(f"{args.output / str(entry['file'])}: {entry['traffic']}", file=sys.stdout)
    return 0
