"""Printing topologies, findings and paths for a person, and as JSON.

Rule: formatting only. Data in, strings out.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from flannelcap.analysis.audit import MAX_PACKETS_SHOWN, Finding
from flannelcap.analysis.explain import Step
from flannelcap.topology.model import Topology


def topology_lines(topology: Topology) -> list[str]:
    """Nodes and pods as two small tables."""
    lines = [f"{'NODE':<10} {'PUBLIC IP':<15} {'FLANNEL.1 MAC':<17} {'VTEP IP':<11} {'POD CIDR':<15} VNI MTU"]
    for node in topology.nodes:
        lines.append(
            f"{node.name:<10} {node.public_ip or '?':<15} {node.vtep_mac or '?':<17} {node.vtep_ip or '?':<11} "
            f"{node.pod_cidr or '?':<15} {node.vni if node.vni is not None else '?'} {node.mtu or '?'}"
        )
    if topology.pods:
        lines += ["", f"{'POD':<24} {'IP':<15} {'NODE':<10} VETH"]
        for pod in topology.pods:
            name = pod.name if pod.namespace == "default" else f"{pod.namespace}/{pod.name}"
            lines.append(f"{name:<24} {pod.ip or '?':<15} {pod.node or '?':<10} {pod.veth or ''}")
    return lines


def _packet_list(packets: tuple[int, ...]) -> str:
    shown = ", ".join(str(n) for n in packets[:MAX_PACKETS_SHOWN])
    more = len(packets) - MAX_PACKETS_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def finding_lines(findings: list[Finding], *, with_capture: bool = False) -> list[str]:
    """Each finding: severity, code, node, message, then its evidence indented."""
    if not findings:
        agree = "the capture and the tables agree" if with_capture else "the tables agree with each other"
        return [f"no findings: {agree}"]
    lines = []
    for finding in findings:
        node = f" [{finding.node}]" if finding.node else ""
        lines.append(f"{finding.severity.upper():<8}{finding.code}{node}: {finding.message}")
        for row in finding.rows:
            lines.append(f"        {row}")
        if finding.packets:
            lines.append(f"        packets: {_packet_list(finding.packets)}")
    counts = {s: sum(1 for f in findings if f.severity == s) for s in ("error", "warning", "info")}
    lines.append("")
    lines.append(", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items()))
    return lines


def findings_json(findings: list[Finding]) -> str:
    """Findings as a JSON list."""
    return json.dumps([asdict(f) for f in findings], indent=2)


def step_lines(steps: list[Step]) -> list[str]:
    """The path, one step a paragraph, with its table rows and packets."""
    lines = []
    for step in steps:
        mark = "" if step.ok else "  ✗"
        lines.append(f"{step.title}{mark}")
        lines.append(f"    {step.text}")
        for row in step.rows:
            lines.append(f"    ← {row}")
        if step.packets:
            lines.append(f"    ← packets: {_packet_list(step.packets)}")
    return lines
