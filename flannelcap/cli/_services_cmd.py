"""``flannelcap services``: the seed lab's §4–5 read from captures — which node announces each
LoadBalancer IP and when that changed, where kube-proxy sent each connection, how evenly.

Rule: formatting and printing only; the analysis is ``analysis.services``', reading
``flannelcap.read_many``'s.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flannelcap._errors import FlannelcapError
from flannelcap.cli._topology_args import add_node_option, add_topology_options, node_names, saved_tables


def add_parsers(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "services",
        help="LoadBalancer IPs on the wire: who announces them (ARP), where kube-proxy sent each connection",
        description=(
            "Read captures of a Service's traffic (the management host's eth0, an announcing node's -i any) with "
            "the cluster's Services and EndpointSlices (kubectl get svc,endpointslices -A -o json, saved with the "
            "tables). Says which node's speaker announces each LoadBalancer IP and every takeover, split brain and "
            "unanswered ARP; per connection the node that received it, the pod it was DNATed to and whether the "
            "client was masqueraded; per Service the connections per endpoint and a chi-square test of the spread."
        ),
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="CAPTURE", help="pcap or pcapng files")
    add_topology_options(parser, required=False)  # by default: the tables saved beside the captures
    add_node_option(parser)
    parser.add_argument("--connections", action="store_true", help="also list every connection")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--announcers", type=Path, metavar="IMAGE", help="draw who held each Service IP over time")
    parser.add_argument("--spread", type=Path, metavar="IMAGE", help="draw the connections per endpoint")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from flannelcap._many import read_many
    from flannelcap.cli._topology_args import topology_from_args

    topology, note = topology_from_args(args), None
    if topology is None:
        topology, note = saved_tables(args.files)
    captures = read_many(args.files, topology, nodes=node_names(args.node))
    for capture in captures.captures:
        if capture.problem:  # every packet before the damage is read
            print(f"flannelcap: warning: {capture.path.name}: {capture.problem}", file=sys.stderr)
    if topology is None or not topology.services:
        print(
            "flannelcap: note: no Services known (save 'kubectl get svc,endpointslices -A -o json' with the tables): "
            "service IPs are guessed from gratuitous ARP, connections are not paired",
            file=sys.stderr,
        )
    if args.json:
        _json(captures)
    else:
        _print(captures, args.connections)
    _figures(captures, args.announcers, args.spread)
    if note:  # after the output: an error comes alone, on one line
        print(f"flannelcap: note: {note}", file=sys.stderr)
    return 0


def _figures(captures: Any, announcers: Path | None, spread: Path | None) -> None:
    if not (announcers or spread):
        return
    from flannelcap import plots

    for path, draw in ((announcers, plots.announcers), (spread, plots.spread)):
        if path is None:
            continue
        figure = draw(captures)
        try:
            figure.savefig(path, dpi=110, bbox_inches="tight")
        except (OSError, ValueError) as exc:
            raise FlannelcapError(f"cannot write {path}: {exc}") from exc
        print(f"flannelcap: figure written to {path}", file=sys.stderr)


def _clock(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%H:%M:%S.%f")


def _print(captures: Any, every_connection: bool) -> None:
    summary, takeovers, endpoints = captures.services(), captures.takeovers(), captures.endpoints()
    connections, findings = captures.connections(), captures.service_findings()
    vips = list(dict.fromkeys([*summary["vip"].dropna(), *takeovers["vip"]]))
    for vip in vips:
        rows = summary[summary["vip"] == vip]
        head = rows.iloc[0] if len(rows) else None
        named = f" ({head['service']}, {head['type']}, ClusterIP {head['cluster_ip']})" if head is not None else ""
        print(f"{vip}{named}")
        held = takeovers[takeovers["vip"] == vip]
        if held.empty:
            print("  announced by: nobody (no ARP reply or gratuitous ARP for it in these captures)")
        for row in held.itertuples(index=False):
            who = f"{row.to_node} ({row.to_mac})" if row.to_node else row.to_mac
            if row.from_mac is None or row.from_mac != row.from_mac:
                print(f"  {_clock(row.time)}  announced by {who}: {row.kind}  [{row.file} #{row.number}]")
            else:
                was = row.from_node or row.from_mac
                print(f"  {_clock(row.time)}  taken over by {who} from {was}: {row.kind}  [{row.file} #{row.number}]")
        if head is not None and head["split_brain"]:
            print(f"  SPLIT BRAIN: {', '.join(head['announcers'])} answer at once")
        if head is not None and head["unanswered_arp"]:
            print(f"  {head['unanswered_arp']} ARP requests for it went unanswered")
    for row in summary.itertuples(index=False):
        print(f"\n{row.service}: {row.connections} connections to {row.vip}:{'/'.join(_ports(captures, row.service))}")
        if not row.connections:
            continue
        mine = connections[connections["service"] == row.service]
        received = ", ".join(f"{node} {count}" for node, count in mine["received_by"].value_counts().items())
        print(f"  received by: {received or 'unknown (capture on the node, or with Ethernet headers)'}")
        print(f"  answered: {row.answered} of {row.connections}")
        if row.observed_policy:
            kept = "the client masqueraded" if row.observed_policy == "Cluster" else "the client address kept"
            print(f"  DNATed legs show {kept}: externalTrafficPolicy {row.observed_policy} (kubectl: {row.policy})")
        placed = endpoints[endpoints["service"] == row.service]
        if int(placed["connections"].sum()) == 0:
            print("  no DNATed leg seen: capture on the receiving node (-i any) to see which endpoint got each one")
            continue
        print(f"  {'ENDPOINT':<15} {'POD':<24} {'NODE':<8} {'CONNS':>5} {'SHARE':>6} {'ANSWERED':>8}")
        for ep in placed.itertuples(index=False):
            share = f"{ep.share:.0%}" if ep.share == ep.share else "-"
            pod = ep.pod or ("(no such pod)" if not ep.in_slices else "-")
            print(
                f"  {ep.endpoint_ip:<15} {pod:<24} {ep.node or '-':<8} {ep.connections:>5} {share:>6} {ep.answered:>8}"
            )
        if not math.isnan(row.chi2):
            verdict = (
                "consistent with a uniform random choice"
                if row.p_value >= 0.05
                else "unlikely under a uniform random choice"
            )
            print(f"  chi-square {row.chi2:.2f} ({int(row.dof)} dof), p = {row.p_value:.3f}: {verdict}")
    _ingress(captures.ingress())
    if every_connection and len(connections):
        print(
            f"\n{'TIME':<15} {'CLIENT':<21} {'SERVICE IP':<15} {'NODE':<8} {'ENDPOINT POD':<24} {'PATH':<6} {'HTTP':>4}"
        )
        for c in connections.itertuples(index=False):
            status = "" if c.http_status is None or c.http_status != c.http_status else str(int(c.http_status))
            endpoint = c.endpoint_pod or c.endpoint_ip or "-"
            print(
                f"{_clock(c.time)[:15]:<15} {c.client_ip + ':' + str(c.client_port):<21} {c.vip:<15} "
                f"{c.received_by or '-':<8} {endpoint:<24} {c.path or '-':<6} {status:>4}"
            )
    if findings:
        print()
        for finding in findings:
            print(f"{finding.severity}: {finding.message}")


def _ingress(proxied: Any) -> None:
    """Per ingress proxy (X-Forwarded-Server): the requests it sent to each pod, and the clients
    it saw (X-Forwarded-For)."""
    for name, mine in proxied.groupby("ingress", sort=True):
        print(f"\ningress {name} (X-Forwarded-Server) sent {len(mine)} requests straight to pod IPs:")
        for (pod, ip, node), hits in mine.groupby(
            [mine["backend_pod"].fillna("-"), "backend_ip", mine["backend_node"].fillna("-")], sort=True
        ):
            print(f"  {ip:<15} {pod:<24} {node:<8} {len(hits):>5}")
        for (client, what), hits in mine.groupby([mine["client"].fillna("-"), mine["client_is"].fillna("-")]):
            print(f"  X-Forwarded-For {client}: {what} ({len(hits)} requests)")


def _ports(captures: Any, service: str) -> list[str]:
    topology = captures.topology
    svc = next((s for s in topology.services if s.key == service), None) if topology else None
    return [str(p) for p in svc.ports] if svc else []


def _json(captures: Any) -> None:
    def records(frame: Any) -> list[dict[str, Any]]:
        return json.loads(frame.to_json(orient="records"))  # type: ignore[no-any-return]

    document = {
        "services": records(captures.services()),
        "takeovers": records(captures.takeovers()),
        "endpoints": records(captures.endpoints()),
        "connections": records(captures.connections()),
        "ingress": records(captures.ingress()),
        "findings": [
            {"severity": f.severity, "code": f.code, "message": f.message, "node": f.node, "packets": list(f.packets)}
            for f in captures.service_findings()
        ],
    }
    print(json.dumps(document, indent=2))
