"""``flannelcap report``: one self-contained HTML page per set of captures — the lab hand-in
and the incident write-up.

Rule: gathers what a ``Capture`` already knows (counts, flows, HTTP, findings, explain, the
figures as SVG) into sections, has ``_page`` write them, and writes the file: the only I/O
is reading the captures (through ``flannelcap.read``) and writing the page.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from flannelcap._api import Capture
from flannelcap._errors import FlannelcapError
from flannelcap.analysis.audit import capture_node_ip, fdb_row, neigh_row, route_row
from flannelcap.analysis.flows import missing, name_or
from flannelcap.report._page import Section, Table, definition_list, page, text
from flannelcap.topology.model import FLANNEL_DEVICE

MAX_PACKETS = 2000
_LAYERS = (
    ("Frame", ("number", "time", "cap_len", "wire_len", "interface", "notes")),
    ("Outer Ethernet", ("outer_src_mac", "outer_dst_mac", "vlan")),
    ("Outer IP", ("outer_ip_version", "outer_src_ip", "outer_dst_ip", "outer_ttl", "outer_ip_len", "outer_fragment")),
    ("Outer UDP", ("outer_src_port", "outer_dst_port", "outer_udp_len", "outer_udp_checksum", "outer_udp_checksum_ok")),
    ("VXLAN", ("vni", "vxlan_flags", "vxlan_gbp")),
    ("Inner Ethernet", ("inner_src_mac", "inner_dst_mac", "inner_ethertype")),
    ("Inner IP", ("inner_src_ip", "inner_dst_ip", "inner_ttl", "inner_ip_len")),
    ("Transport", ("proto", "src_port", "dst_port", "tcp_flags", "tcp_seq", "tcp_ack", "tcp_window", "payload_len",
                   "icmp_type", "icmp_code")),
    ("ARP", ("arp_op", "arp_sender_mac", "arp_sender_ip", "arp_target_mac", "arp_target_ip")),
    ("HTTP", ("http_method", "http_path", "http_host", "http_version", "http_status", "http_reason")),
    ("Names", ("src_node", "dst_node", "src_vtep_node", "dst_vtep_node", "src_pod", "dst_pod")),
)  # fmt: skip


def write_report(
    captures: Capture | Sequence[Capture], path: str | Path, max_packets: int = MAX_PACKETS, flow: int | None = None
) -> Path:
    """Write the report of ``captures`` to ``path`` (one HTML file, nothing fetched when opened).

    Args:
        captures: one capture or several (each gets its sections).
        path: the HTML file.
        max_packets: rows of the packet list (and of the conversation and HTTP tables).
        flow: the conversation (a row of ``flows()``) that Figure 2, the path and the ladder
            show; by default the first tunnelled one between named pods.

    Raises:
        FlannelcapError: the file cannot be written, or ``flow`` is no tunnelled conversation.
    """
    chosen = [captures] if isinstance(captures, Capture) else list(captures)
    target = Path(path)
    html = report_html(chosen, max_packets, flow)
    try:
        target.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise FlannelcapError(f"cannot write the report to {target}: {exc.strerror}") from exc
    return target


def report_html(captures: Sequence[Capture], max_packets: int = MAX_PACKETS, flow: int | None = None) -> str:
    """The report page of ``captures``, as text (``write_report`` says what the arguments are)."""
    from flannelcap import __version__

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="flannelcap-sha256") as hashing:
        # hashlib releases the GIL: the files are hashed on the second core while the sections are made
        digests = [hashing.submit(_sha256, c.path) for c in captures]
        sections: list[Section] = []
        for index, capture in enumerate(captures):
            prefix = f"c{index}-" if len(captures) > 1 else ""
            sections += _capture_sections(capture, prefix, max_packets, flow)
        names = ", ".join(c.path.name for c in captures)
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        footer = f"flannelcap {text(__version__)}, {stamp}. " + "; ".join(
            f"{text(c.path.name)} SHA-256 <code>{digest.result()}</code>"
            for c, digest in zip(captures, digests, strict=True)
        )
    return page(f"flannelcap report: {names}", sections, footer)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _capture_sections(capture: Capture, prefix: str, max_packets: int, flow: int | None) -> list[Section]:
    flows = capture.flows()
    findings = capture.findings_list()
    vxlan = flows.vxlan.fillna(False).astype(bool).tolist()
    tunnelled = [i for i, crossed in enumerate(vxlan) if crossed]
    named = flows.src_pod.notna().tolist()
    chosen = next((i for i in tunnelled if named[i]), tunnelled[0] if tunnelled else None)
    if flow is not None:
        if flow not in tunnelled:
            raise FlannelcapError(
                f"{capture.path.name}: conversation {flow} is not one that crossed VXLAN ("
                + (f"those are rows {', '.join(map(str, tunnelled))} of flows())" if tunnelled else "none did)")
            )
        chosen = flow
    shown = set(capture.packets.number.iloc[:max_packets].tolist())
    sections = [_summary(capture, prefix, findings)]
    if chosen is not None:
        drawn = tunnelled.index(chosen)  # the figures count the tunnelled conversations only
        figure = _svg(capture, "figure2", drawn)
        sections.append(Section(f"{prefix}figure2", "Figure 2, with this capture's addresses", [figure]))
        steps = _explain(capture, chosen)
        if steps:
            sections.append(Section(f"{prefix}path", "The path, step by step", [_steps_html(steps)]))
    sections.append(_conversations(flows, prefix, max_packets))
    http = capture.http()
    if len(http):
        sections.append(_http(http, prefix, shown, max_packets))
    if chosen is not None:
        ladder = _svg(capture, "ladder", tunnelled.index(chosen))
        sections.append(Section(f"{prefix}ladder", "Ladder of the conversation", [ladder]))
    sections.append(_findings(findings, prefix, shown))
    sections.append(_packets(capture, prefix, max_packets))
    answers = _lab_answers(capture, chosen)
    if answers is not None:
        sections.append(Section(f"{prefix}answers", "The lab's questions, answered from this cluster", answers))
    return sections


def _summary(capture: Capture, prefix: str, findings: list[Any]) -> Section:
    packets, counts = capture.packets, capture.counts
    items = [("capture", text(capture.path.name)), ("packets", text(counts.packets))]
    if len(packets):
        first, last = packets.time.iloc[0], packets.time.iloc[-1]
        start = datetime.fromtimestamp(float(first), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        items.append(("time span", f"{text(start)}, {float(last) - float(first):.3f} s"))
    point = _capture_point(capture)
    if point:
        items.append(("taken on", text(point)))
    vnis = ", ".join(f"VNI {text(vni)}: {count}" for vni, count in sorted(counts.vxlan_by_vni.items()))
    items.append(("VXLAN", vnis or "none"))
    items.append(("not VXLAN", text(counts.other_packets)))
    names = {
        "nodes seen": sorted({str(n) for c in ("src_node", "dst_node") for n in packets[c].dropna().unique()}),
        "pods seen": sorted({str(p) for c in ("src_pod", "dst_pod") for p in packets[c].dropna().unique()}),
    }
    for label, values in names.items():
        if values:
            items.append((label, text(", ".join(values))))
    by_severity = {s: sum(1 for f in findings if f.severity == s) for s in ("error", "warning", "info")}
    items.append(("findings", text(", ".join(f"{n} {s}" for s, n in by_severity.items()))))
    if capture.problem:
        items.append(("reading stopped", text(capture.problem)))
    return Section(f"{prefix}summary", f"Summary: {capture.path.name}", [definition_list(items)])


def _capture_point(capture: Capture) -> str | None:
    """Where the capture was taken (the audit's rule), named where the topology knows the node."""
    packets = capture.packets
    vxlan = packets.loc[packets.is_vxlan.fillna(False).astype(bool), ["outer_src_ip", "outer_dst_ip"]]
    pairs = vxlan.astype(str).drop_duplicates().itertuples(index=False, name=None)
    ip = capture_node_ip(pairs)
    node = capture.topology.node_by_ip(ip) if capture.topology and ip else None
    return f"{ip} ({node.name})" if node else ip


def _svg(capture: Capture, figure: str, flow: int) -> str:
    import matplotlib
    import matplotlib.pyplot as plt

    from flannelcap import plots

    with matplotlib.rc_context({"svg.fonttype": "none", "text.parse_math": False, "svg.hashsalt": "flannelcap"}):
        try:
            drawn = getattr(plots, figure)(capture, flow)
        except FlannelcapError as exc:
            return f"<p>{text(exc)}</p>"
        out = io.StringIO()
        drawn.savefig(out, format="svg", bbox_inches="tight")
        plt.close(drawn)
    svg = out.getvalue()
    return f'<figure class="{figure}">' + svg[svg.index("<svg") :] + "</figure>"


def _explain(capture: Capture, flow: int) -> list[Any]:
    if capture.topology is None:
        return []
    try:
        return capture.explain(flow)
    except FlannelcapError:
        return []


def _steps_html(steps: list[Any]) -> str:
    items = []
    for step in steps:
        mark = "✓" if step.ok else "✗"
        rows = "".join(f"<br><code>← {text(row)}</code>" for row in step.rows)
        cls = "" if step.ok else ' class="error"'
        items.append(f"<li{cls}><b>{mark} {text(step.title)}</b><br>{text(step.text)}{rows}</li>")
    return "<ol>" + "".join(items) + "</ol>"


def _first(table: Any, limit: int, what: str) -> tuple[Any, list[str]]:
    """The first ``limit`` rows of a table, and a line saying so when there were more."""
    if len(table) <= limit:
        return table, []
    return table.iloc[:limit], [f"<p>The first {limit} of {len(table)} {what} (as many as the packet list).</p>"]


def _conversations(flows: Any, prefix: str, limit: int) -> Section:
    shown, said = _first(flows, limit, "conversations")
    headers = ["flow", "proto", "source", "destination", "source pod", "destination pod", "nodes", "VNI", "packets",
               "bytes", "start", "duration (s)"]  # fmt: skip
    rows = [
        [
            text(r.flow),
            text(r.proto),
            text(f"{r.src_ip}:{r.src_port}"),
            text(f"{r.dst_ip}:{r.dst_port}"),
            text(r.src_pod),
            text(r.dst_pod),
            text(f"{name_or(r.src_node, '?')} → {name_or(r.dst_node, '?')}"),
            text(r.vni),
            text(r.packets),
            text(r.bytes),
            f"{float(r.start):.6f}",
            f"{float(r.duration):.6f}",
        ]
        for r in shown.itertuples()
    ]
    return Section(
        f"{prefix}conversations", "Conversations", [*said, Table(f"{prefix}conversations-table", headers, rows).html()]
    )


def _packet_link(number: int, prefix: str, shown: set[int]) -> str:
    return f'<a href="#{prefix}p{number}">{number}</a>' if number in shown else str(number)


def _http(http: Any, prefix: str, shown: set[int], limit: int) -> Section:
    http, said = _first(http, limit, "HTTP exchanges")
    headers = ["request", "response", "client", "server", "method", "path", "host", "status", "latency (ms)"]
    rows = [
        [
            _packet_link(int(r.request), prefix, shown) if r.request == r.request else "—",
            _packet_link(int(r.response), prefix, shown) if r.response == r.response else "—",
            text(r.client),
            text(r.server),
            text(r.method),
            text(r.path),
            text(r.host),
            text(r.status),
            text(None if r.latency_ms != r.latency_ms else f"{float(r.latency_ms):.3f}"),
        ]
        for r in http.itertuples()
    ]
    return Section(f"{prefix}http", "HTTP exchanges", [*said, Table(f"{prefix}http-table", headers, rows).html()])


def _findings(findings: list[Any], prefix: str, shown: set[int]) -> Section:
    if not findings:
        return Section(f"{prefix}findings", "Findings", ["<p>No findings: the wire and the tables agree.</p>"])
    items = []
    for finding in findings:
        rows = "".join(f"<li><code>{text(row)}</code></li>" for row in finding.rows)
        links = ", ".join(_packet_link(n, prefix, shown) for n in finding.packets)
        items.append(
            f'<li class="{text(finding.severity)}"><b>{text(finding.severity.upper())} {text(finding.code)}</b>'
            + (f" ({text(finding.node)})" if finding.node else "")
            + f": {text(finding.message)}"
            + (f"<ul>{rows}</ul>" if rows else "")
            + (f'<p class="packets">packets {links}</p>' if links else "")
            + "</li>"
        )
    return Section(f"{prefix}findings", "Findings", ["<ul>" + "".join(items) + "</ul>"])


def _packets(capture: Capture, prefix: str, max_packets: int) -> Section:
    packets = capture.packets
    head = packets.iloc[:max_packets]
    headers = ["No.", "time", "outer src → dst", "VNI", "inner src → dst", "proto", "nodes / pods", "info"]
    rows, ids = [], []
    for record in head.to_dict("records"):
        vxlan = bool(record["is_vxlan"]) if record["is_vxlan"] == record["is_vxlan"] else False
        outer = f"{name_or(record['outer_src_ip'], '?')} → {name_or(record['outer_dst_ip'], '?')}"
        inner = (
            f"{name_or(record['inner_src_ip'], '?')} → {name_or(record['inner_dst_ip'], '?')}"
            if vxlan
            else "(not VXLAN)"
        )
        names = " → ".join(
            "/".join(str(v) for v in (record[f"{side}_node"], record[f"{side}_pod"]) if isinstance(v, str)) or "?"
            for side in ("src", "dst")
        )
        ids.append(f"{prefix}p{record['number']}")
        rows.append(
            [
                text(record["number"]),
                f"{float(record['rel_time']):.6f}",
                text(outer),
                text(record["vni"]) if vxlan else "",
                text(inner),
                text(record["proto"]),
                text(names),
                f"<details><summary>{text(record['info'])}</summary>{_detail(record)}</details>",
            ]
        )
    body = [Table(f"{prefix}packets-table", headers, rows, ids).html()]
    if len(packets) > len(head):
        body.insert(0, f"<p>The first {len(head)} of {len(packets)} packets (the list stops at {max_packets}).</p>")
    return Section(f"{prefix}packets", "Packets", body)


def _detail(record: dict[str, Any]) -> str:
    """The packet's fields, layer by layer, as ``decode -v`` shows its layers."""
    parts = []
    for layer, names in _LAYERS:
        values = []
        for name in names:
            value = record[name]
            if isinstance(value, tuple):
                value = ", ".join(value) if value else None
            if not missing(value):
                shown = escape(value) if isinstance(value, str) else str(value)  # numbers need no escaping
                values.append(f"<dt>{name}</dt><dd>{shown}</dd>")
        if values:
            parts.append(f"<b>{layer}</b><dl>{''.join(values)}</dl>")
    return "".join(parts)


def _lab_answers(capture: Capture, flow: int | None) -> list[str] | None:
    """Q1 (the §3.3 c) path with this cluster's addresses) and Q2/Q3 (what flanneld keeps on
    the sending node), where the tables allow."""
    if flow is None or capture.topology is None:
        return None
    steps = _explain(capture, flow)
    if not steps:
        return None
    body = ["<h3>Q1: the path of a packet from one pod to a pod on another node</h3>",
            "<p>" + " ".join(f"{text(s.title)}: {text(s.text)}." for s in steps) + "</p>"]  # fmt: skip
    node = capture.flows().src_node.iloc[flow]
    view = capture.topology.view(str(node)) if isinstance(node, str) else None
    if view is not None:
        rows = [neigh_row(view.node, e) for e in view.neigh or () if e.mac]
        rows += [fdb_row(view.node, e) for e in view.fdb or () if e.dst]
        rows += [route_row(view.node, r) for r in view.routes or () if r.dev == FLANNEL_DEVICE]
        body.append(
            f"<h3>Q2/Q3: what flanneld keeps on {text(view.node)} for flannel.1</h3><p>One PERMANENT neighbour "
            "entry per peer (its VTEP IP → VTEP MAC), one FDB entry per peer (VTEP MAC → node IP) and one route "
            "per peer's pod subnet via its VTEP IP, onlink. flannel.1 itself (the kernel's VXLAN device) does "
            "the encapsulation with them:</p><ul>"
            + "".join(f"<li><code>{text(row)}</code></li>" for row in rows)
            + "</ul>"
        )
    return body
