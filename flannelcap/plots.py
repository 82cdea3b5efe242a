"""Figures of a capture: the lab's Figure 2 rebuilt from it, a ladder diagram of one
conversation, the node-to-node traffic matrix, a timeline of conversations; and of several
captures taken at once, one flow's journey with the measured delay of each hop.

Rule: presentation only. Each function takes a ``Capture`` (from ``flannelcap.read``; for
``journey``, ``Captures`` from ``flannelcap.read_many``) and
an optional matplotlib ``Axes`` to draw on, and returns the ``Figure``. Every label comes
from the capture and its topology; nothing is typed in by hand. matplotlib is imported here
only, so ``import flannelcap`` stays light.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Rectangle
from matplotlib.ticker import MaxNLocator

from flannelcap._api import Capture
from flannelcap._errors import FlannelcapError
from flannelcap._many import Captures
from flannelcap.analysis import flows as _analysis
from flannelcap.analysis.audit import fdb_row, neigh_row
from flannelcap.analysis.flows import name_or
from flannelcap.packets.records import PacketRecord

_NODE_COLOURS = ("#e8f0fb", "#fdf0e3")
_HOLDER_COLOURS = ("#6c9bd2", "#f2a65a", "#7fbf7f", "#c38fd0", "#d9d26a")
_BOX = dict(boxstyle="round,pad=0.3", linewidth=1.0)


def _axes(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig, new_ax = plt.subplots(figsize=size)
    return fig, new_ax


def _flow_packets(
    capture: Capture, flow: int
) -> tuple[Any, list[PacketRecord], dict[tuple[object, ...], PacketRecord]]:
    """The conversation's row of flows(), its packets (the VXLAN copies, where there are), and
    the copy of each of its segments that carries an HTTP head (tcpdump -i any sees a segment on
    the pod's veth first, where the head is reported, and inside VXLAN later)."""
    table = capture.flows()
    if table.empty:
        raise FlannelcapError(f"{capture.path.name} holds no TCP or UDP conversation to draw")
    vxlan_flows = table[table.vxlan.astype(bool)]
    row = (vxlan_flows if len(vxlan_flows) else table).iloc[flow]
    packets = capture.packets
    forward = (packets.src_ip == row.src_ip) & (packets.src_port == row.src_port)
    forward &= (packets.dst_ip == row.dst_ip) & (packets.dst_port == row.dst_port)
    back = (packets.src_ip == row.dst_ip) & (packets.src_port == row.dst_port)
    back &= (packets.dst_ip == row.src_ip) & (packets.dst_port == row.src_port)
    members = capture.records_where((packets.proto == row.proto) & (forward | back))
    heads = {_segment(r): r for r in members if r.http_method or r.http_status is not None}
    if any(r.is_vxlan for r in members):  # -i any shows each packet on several interfaces
        members = [r for r in members if r.is_vxlan]
    return row, members, heads


def _segment(record: PacketRecord) -> tuple[object, ...]:
    """What makes two copies of a TCP segment the same segment."""
    return (record.src_ip, record.src_port, record.tcp_seq, record.tcp_ack, record.tcp_flags, record.payload_len)


def _label(record: PacketRecord) -> str:
    if record.http_method:
        return f"{record.http_method} {record.http_path} {record.http_version}"
    if record.http_status is not None:
        return f"{record.http_version} {record.http_status} {record.http_reason}".strip()
    if record.proto == "tcp":
        flags = record.tcp_flags or ""
        return flags + (f" ({record.payload_len} B)" if record.payload_len else "")
    return f"{(record.proto or '?').upper()} {record.payload_len or 0} B"


# -- Figure 2 -------------------------------------------------------------------------------


def figure2(capture: Capture, flow: int = 0, ax: Axes | None = None) -> Figure:
    """The lab's Figure 2 for one cross-node conversation, from the capture and its tables.

    Shows both nodes with their eth0 IP, flannel.1 MAC and VTEP IP, cni0 address and pod;
    the path between them; the outer (node IPs, UDP port, VNI) and inner (VTEP MACs, pod
    IPs) headers on the tunnel; and the ARP and FDB rows the sender used.
    """
    row, members, _heads = _flow_packets(capture, flow)
    first = next((r for r in members if r.is_vxlan and r.src_ip == row.src_ip), None)
    if first is None:
        raise FlannelcapError("this conversation never crossed VXLAN: there is no tunnel to draw")
    topology = capture.topology
    src_node = topology.node_by_ip(first.outer_src_ip) if topology else None
    dst_node = topology.node_by_ip(first.outer_dst_ip) if topology else None
    fig, ax = _axes(ax, (13, 7.5))
    ax.set_xlim(0, 100)
    ax.set_ylim(-4, 62)
    ax.axis("off")
    sides = [
        (
            5,
            src_node,
            first.outer_src_ip,
            first.inner_src_mac,
            first.inner_src_ip,
            name_or(row.src_pod, "?"),
            _NODE_COLOURS[0],
        ),
        (
            57,
            dst_node,
            first.outer_dst_ip,
            first.inner_dst_mac,
            first.inner_dst_ip,
            name_or(row.dst_pod, "?"),
            _NODE_COLOURS[1],
        ),
    ]
    for x, node, eth0_ip, vtep_mac, pod_ip, pod_name, colour in sides:
        name = node.name if node else f"node {eth0_ip}"
        ax.add_patch(FancyBboxPatch((x, 17), 38, 42, boxstyle="round,pad=0.5", facecolor=colour, edgecolor="#555"))
        ax.text(x + 19, 57, name, ha="center", va="center", fontsize=13, weight="bold")
        layers = [
            (49, f"pod {pod_name}\neth0 {pod_ip}", "#ffffff"),
            (
                40,
                f"cni0 {node.cni0_ip if node and node.cni0_ip else '?'}"
                + (f"  (pods {node.pod_cidr})" if node and node.pod_cidr else ""),
                "#ffffff",
            ),
            (32, f"flannel.1  VTEP {node.vtep_ip if node and node.vtep_ip else '?'}\nMAC {vtep_mac}", "#fff7d6"),
            (22, f"eth0 {eth0_ip}", "#ffffff"),
        ]
        for y, text, face in layers:
            ax.text(
                x + 19,
                y,
                text,
                ha="center",
                va="center",
                fontsize=10,
                family="monospace",
                bbox={**_BOX, "facecolor": face, "edgecolor": "#888"},
            )
        for upper, lower in ((50, 41), (41, 32), (32, 22)):
            start, end = (upper - 3.2, lower + 3.2) if x < 50 else (lower + 3.2, upper - 3.2)
            ax.annotate(
                "", xy=(x + 19, end), xytext=(x + 19, start), arrowprops=dict(arrowstyle="-|>", color="#1f5fa8", lw=1.8)
            )
    # The tunnel between the two eth0s.
    ax.add_patch(Rectangle((24, 5.5), 52, 5, facecolor="#cfe3cf", edgecolor="#3a7a3a"))
    ax.annotate("", xy=(76, 8), xytext=(24, 8), arrowprops=dict(arrowstyle="-|>", color="#1f5fa8", lw=2.2))
    ax.plot([24, 24], [8, 20], color="#1f5fa8", lw=1.8)
    ax.plot([76, 76], [8, 20], color="#1f5fa8", lw=1.8)
    outer = (
        f"outer: {first.outer_src_ip} → {first.outer_dst_ip}   UDP {first.outer_src_port} → "
        f"{first.outer_dst_port}   VXLAN VNI {first.vni}"
    )
    inner = f"inner: {first.inner_src_mac} → {first.inner_dst_mac}   {first.inner_src_ip} → {first.inner_dst_ip}"
    ax.text(
        50, 11.6, outer, ha="center", va="bottom", fontsize=10, family="monospace", weight="bold", gid="outer-header"
    )
    ax.text(50, 3.8, inner, ha="center", va="top", fontsize=10, family="monospace", gid="inner-header")
    rows = _tables_used(capture, src_node.name if src_node else None, first)
    if rows:
        ax.text(
            1,
            -3.5,
            "\n".join(rows),
            ha="left",
            va="bottom",
            fontsize=8.5,
            family="monospace",
            color="#333",
            gid="tables-used",
        )
    pods = f"{name_or(row.src_pod, row.src_ip)} → {name_or(row.dst_pod, row.dst_ip)}"
    ax.set_title(f"Figure 2, rebuilt from {capture.path.name}: {pods} (packet {first.number})", fontsize=12)
    return fig


def _tables_used(capture: Capture, node: str | None, first: PacketRecord) -> list[str]:
    topology = capture.topology
    view = topology.view(node) if topology and node else None
    if view is None:
        return []
    rows = [neigh_row(node, e) for e in view.neigh or () if e.mac == first.inner_dst_mac]  # type: ignore[arg-type]
    rows += [fdb_row(node, e) for e in view.fdb or () if e.mac == first.inner_dst_mac]  # type: ignore[arg-type]
    return rows


# -- ladder -------------------------------------------------------------------------------


def ladder(capture: Capture, flow: int = 0, ax: Axes | None = None, limit: int = 40) -> Figure:
    """A sequence diagram of one conversation: each packet an arrow between the two pods,
    with its time, what it is (SYN, GET, 200 …), and its outer and inner addresses."""
    row, members, heads = _flow_packets(capture, flow)
    members = members[:limit]
    height = max(4.0, 0.62 * len(members) + 1.5)
    fig, ax = _axes(ax, (13, height))
    left, right = 20.0, 80.0
    names = (
        f"{name_or(row.src_pod, row.src_ip)}\n({name_or(row.src_node, row.src_ip)})",
        f"{name_or(row.dst_pod, row.dst_ip)}\n({name_or(row.dst_node, row.dst_ip)})",
    )
    ax.set_xlim(0, 100)
    ax.set_ylim(len(members) + 0.5, -1.2)
    ax.axis("off")
    for x, name in zip((left, right), names, strict=True):
        ax.plot([x, x], [-0.2, len(members) + 0.2], color="#777", lw=1)
        ax.text(x, -0.6, name, ha="center", va="bottom", fontsize=10, weight="bold")
    start = members[0].time if members else 0.0
    for i, record in enumerate(members, start=0):
        y = i + 0.6
        forward = record.src_ip == row.src_ip
        x0, x1 = (left, right) if forward else (right, left)
        ax.annotate(
            "",
            xy=(x1, y),
            xytext=(x0, y),
            arrowprops=dict(arrowstyle="-|>", color="#1f5fa8", lw=1.3),
            gid=f"arrow-{record.number}",
        )
        ax.text(
            50,
            y - 0.08,
            _label(heads.get(_segment(record), record)),
            ha="center",
            va="bottom",
            fontsize=9.5,
            weight="bold",
            gid=f"label-{record.number}",
        )
        if record.is_vxlan:
            detail = (
                f"{record.outer_src_ip}:{record.outer_src_port} → {record.outer_dst_ip}:"
                f"{record.outer_dst_port} VNI {record.vni} | {record.inner_src_mac} → {record.inner_dst_mac}"
            )
            ax.text(50, y + 0.1, detail, ha="center", va="top", fontsize=7, family="monospace", color="#555")
        ax.text(
            1,
            y,
            f"#{record.number}  +{record.time - start:.6f} s",
            ha="left",
            va="center",
            fontsize=8,
            family="monospace",
        )
    ax.set_title(
        f"{capture.path.name}: {row.proto.upper()} {row.src_ip}:{row.src_port} → "
        f"{row.dst_ip}:{row.dst_port} ({len(members)} packets)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


# -- traffic matrix -------------------------------------------------------------------------


def traffic_matrix(capture: Capture, ax: Axes | None = None) -> Figure:
    """Packets and bytes over VXLAN per node pair; pairs with traffic one way only are framed in red."""
    packets = capture.packets
    vxlan = packets[packets.is_vxlan.astype(bool)] if len(packets) else packets
    if vxlan.empty:
        raise FlannelcapError(f"{capture.path.name} holds no VXLAN packet")
    src = [s or ip for s, ip in zip(vxlan.get("src_node", [None] * len(vxlan)), vxlan.outer_src_ip, strict=True)]
    dst = [d or ip for d, ip in zip(vxlan.get("dst_node", [None] * len(vxlan)), vxlan.outer_dst_ip, strict=True)]
    known = {n.name for n in capture.topology.nodes} if capture.topology else set()
    nodes = sorted(set(src) | set(dst) | known)
    index = {n: i for i, n in enumerate(nodes)}
    counts = [[0] * len(nodes) for _ in nodes]
    volume = [[0] * len(nodes) for _ in nodes]
    for s, d, size in zip(src, dst, vxlan.wire_len, strict=True):
        counts[index[s]][index[d]] += 1
        volume[index[s]][index[d]] += int(size)
    fig, ax = _axes(ax, (2.2 * len(nodes) + 3, 1.8 * len(nodes) + 2))
    image = ax.imshow(counts, cmap="Blues")
    for i, s in enumerate(nodes):
        for j, d in enumerate(nodes):
            if counts[i][j]:
                dark = counts[i][j] > max(map(max, counts)) / 2
                ax.text(
                    j,
                    i,
                    f"{counts[i][j]} pkts\n{volume[i][j]:,} B",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if dark else "black",
                    gid=f"cell-{s}-{d}",
                )
                if not counts[j][i]:
                    ax.add_patch(
                        Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", lw=2.5, gid=f"one-way-{s}-{d}")
                    )
    ax.set_xticks(range(len(nodes)), nodes, rotation=30, ha="right")
    ax.set_yticks(range(len(nodes)), nodes)
    ax.set_xlabel("to node (outer destination)")
    ax.set_ylabel("from node (outer source)")
    ax.set_title(f"VXLAN traffic between nodes, {capture.path.name}\n(red frame: one way only)", fontsize=11)
    fig.colorbar(image, ax=ax, label="packets", ticks=MaxNLocator(integer=True))
    fig.tight_layout()
    return fig


# -- timeline -------------------------------------------------------------------------------


def timeline(capture: Capture, ax: Axes | None = None) -> Figure:
    """Packets of each conversation over time; retransmissions and packets named by findings marked."""
    packets = capture.packets
    if packets.empty:
        raise FlannelcapError(f"{capture.path.name} holds no packet")
    keys = _analysis.flow_keys(packets)
    flows = capture.flows()
    labels = {
        r.flow: f"{name_or(r.src_pod, r.src_ip)}:{r.src_port} → {name_or(r.dst_pod, r.dst_ip)}:{r.dst_port}"
        for r in flows.itertuples(index=False)
    }
    order = list(labels)
    start = float(packets.time.min())
    retransmitted = _analysis.retransmissions(packets)
    flagged = {n for f in capture.findings_list() for n in f.packets}
    fig, ax = _axes(ax, (12, 1.0 + 0.7 * max(len(order), 2)))
    xs, ys, rx, ry, fx, fy = [], [], [], [], [], []
    for (_, row), key, again in zip(packets.iterrows(), keys, retransmitted, strict=True):
        if key not in labels:
            continue
        x, y = float(row.time) - start, order.index(key)
        xs.append(x)
        ys.append(y)
        if again:
            rx.append(x)
            ry.append(y)
        if row.number in flagged:
            fx.append(x)
            fy.append(y)
    ax.scatter(xs, ys, s=14, color="#1f5fa8", label="packet", zorder=2)
    if rx:
        ax.scatter(rx, ry, s=80, marker="x", color="red", label="retransmission", zorder=3)
    if fx:
        ax.scatter(fx, fy, s=90, marker="D", facecolors="none", edgecolors="orange", label="in a finding", zorder=3)
    ax.set_yticks(range(len(order)), [labels[k] for k in order])
    ax.set_ylim(-0.7, len(order) - 0.3)
    ax.set_xlabel("time since the first packet (s)")
    ax.set_title(f"Conversations over time, {capture.path.name}", fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


FIGURES = {"figure2": figure2, "ladder": ladder, "matrix": traffic_matrix, "timeline": timeline}


# -- one flow's journey ---------------------------------------------------------------------


def _chain(starts: list[str], ends: list[str]) -> list[str]:
    """The points of a flow in path order, from its hops (from → to)."""
    following = dict(zip(starts, ends, strict=True))
    point = next((s for s in starts if s not in set(ends)), starts[0])
    path = [point]
    while point in following and following[point] not in path:
        point = following[point]
        path.append(point)
    return path


def journey(captures: Captures, flow: int | str = 0, ax: Axes | None = None) -> Figure:
    """The lab's Figure 2 as measured: one flow's path, point by point (the pod's veth, cni0,
    flannel.1 and eth0 on each node), each hop labelled with its median delay and 99th
    percentile, and where packets stopped, how many. ``flow``: its place in ``hops()``'s
    order, or its name. Delays that cross nodes rest on the clock offsets' estimate."""
    table = captures.hops()
    names = list(dict.fromkeys(table["flow"].tolist()))
    if not names:
        raise FlannelcapError("no packet was matched across these captures: there is no journey to draw")
    name = names[flow] if isinstance(flow, int) else flow
    if name not in names:
        raise FlannelcapError(f"no flow {name!r}; the flows are: {', '.join(names)}")
    rows = table[table["flow"] == name]
    path = _chain(rows["from"].tolist(), rows["to"].tolist())
    packets = captures.journeys()
    lost = packets[(packets["flow"] == name) & packets["lost"]]
    stopped = (lost["last_node"].astype(str) + " " + lost["last_point"].astype(str)).value_counts().to_dict()
    pods = {p.veth: p.name for p in captures.topology.pods if p.veth} if captures.topology else {}
    fig, ax = _axes(ax, (max(8.0, 1.9 * len(path)), 4.2))
    ax.set_xlim(-0.8, len(path) - 0.2)
    ax.set_ylim(-1.6, 2.2)
    ax.axis("off")
    nodes = [p.split(" ", 1)[0] for p in path]
    start = 0
    for i in range(1, len(path) + 1):  # one shaded box per node, around its points
        if i == len(path) or nodes[i] != nodes[start]:
            colour = _NODE_COLOURS[len({*nodes[:start]}) % 2]
            ax.add_patch(
                FancyBboxPatch(
                    (start - 0.4, -0.9),
                    i - start - 0.2,
                    2.7,
                    boxstyle="round,pad=0.05",
                    facecolor=colour,
                    edgecolor="#555",
                )
            )
            ax.text((start + i - 1) / 2, 1.55, nodes[start], ha="center", fontsize=12, weight="bold")
            start = i
    for i, point in enumerate(path):
        interface = point.split(" ", 1)[1] if " " in point else point
        label = interface + (f"\n({pods[interface]})" if interface in pods else "")
        ax.text(
            i,
            0.5,
            label,
            ha="center",
            va="center",
            fontsize=9,
            family="monospace",
            bbox={**_BOX, "facecolor": "#ffffff", "edgecolor": "#888"},
            gid=f"point-{i}",
        )
        if point in stopped:
            ax.text(
                i + 0.5,
                -0.35,
                f"✗ {stopped[point]} lost",
                ha="center",
                fontsize=10,
                color="#b00020",
                weight="bold",
                gid="lost",
            )
    by_hop = {
        (a, b): (m, p, c)
        for a, b, m, p, c in zip(
            rows["from"], rows["to"], rows["median_us"], rows["p99_us"], rows["crosses_nodes"], strict=True
        )
    }
    for i in range(len(path) - 1):
        median, p99, crosses = by_hop[(path[i], path[i + 1])]
        ax.annotate(
            "", xy=(i + 0.62, 0.5), xytext=(i + 0.38, 0.5), arrowprops=dict(arrowstyle="-|>", color="#1f5fa8", lw=1.8)
        )
        ax.text(i + 0.5, 0.95, f"{median:.1f} µs" + ("*" if crosses else ""), ha="center", fontsize=9, gid="median")
        ax.text(i + 0.5, 0.1, f"p99 {p99:.1f}", ha="center", fontsize=7.5, color="#555")
    clocks = captures.clocks()[1:]
    note = "; ".join(
        f"{c.node}'s clock {c.offset * 1e6:+.1f} ± {c.uncertainty * 1e6:.1f} µs"
        if c.offset is not None and c.uncertainty is not None
        else f"{c.node}'s clock unknown"
        for c in clocks
    )
    if note:
        ax.text(
            -0.7, -1.45, f"* across nodes, by the clocks estimated from the packets: {note}", fontsize=8, color="#333"
        )
    ax.set_title(f"Figure 2, measured: {name}", fontsize=12)
    return fig


def announcers(captures: Captures, ax: Axes | None = None) -> Figure:
    """Which node held each LoadBalancer IP over time (seed lab §5.1 c): one row per Service IP,
    a bar per holder from its first claim to the next holder's, each claim marked (▲ a
    gratuitous ARP, | a reply); a split brain is drawn in red."""
    claims, changes, summary = captures.announcements(), captures.takeovers(), captures.services()
    if claims.empty:
        raise FlannelcapError("no ARP claim of a Service IP in these captures: nothing announced to draw")
    vips = list(dict.fromkeys(changes["vip"]))
    start, end = float(claims["time"].min()), float(claims["time"].max())
    for capture in captures.captures:
        if len(capture.packets):
            end = max(end, float(capture.packets["time"].max()))
    fig, ax = _axes(ax, (9.0, 1.1 + 0.8 * len(vips)))
    split = set(summary["vip"][summary["split_brain"]]) if len(summary) else set()
    holders = sorted({str(n or m) for n, m in zip(changes["to_node"], changes["to_mac"], strict=True)})
    colours = {h: _HOLDER_COLOURS[i % len(_HOLDER_COLOURS)] for i, h in enumerate(holders)}
    for row, vip in enumerate(vips):
        held = changes[changes["vip"] == vip]
        times = [*held["time"].astype(float), end]
        for i, (node, mac) in enumerate(zip(held["to_node"], held["to_mac"], strict=True)):
            holder = str(node or mac)
            ax.barh(row, times[i + 1] - times[i], left=times[i] - start, height=0.5, color=colours[holder],
                    edgecolor="#b00020" if vip in split else "#333", gid=f"held-{vip}-{holder}")  # fmt: skip
        mine = claims[claims["vip"] == vip]
        gratuitous = mine["kind"].str.startswith("gratuitous")
        ax.plot(mine["time"][gratuitous] - start, [row + 0.38] * int(gratuitous.sum()), "^", color="#222", ms=5)
        ax.plot(mine["time"][~gratuitous] - start, [row + 0.38] * int((~gratuitous).sum()), "|", color="#222", ms=8)
        if vip in split:
            ax.text(end - start, row, "  split brain", va="center", color="#b00020", weight="bold")
    ax.set_yticks(range(len(vips)), vips)
    ax.set_xlabel(f"seconds since the first claim ({len(claims)} claims; ▲ gratuitous ARP, | ARP reply)")
    ax.set_ylim(-0.6, len(vips) - 0.2)
    ax.legend(
        handles=[Rectangle((0, 0), 1, 1, color=colours[h]) for h in holders], labels=holders, loc="upper left",
        bbox_to_anchor=(1.01, 1.0), title="announced by",
    )  # fmt: skip
    ax.set_title("Who announces each LoadBalancer IP (ARP)")
    fig.tight_layout()
    return fig


def spread(captures: Captures, service: str | None = None, ax: Axes | None = None) -> Figure:
    """How kube-proxy spread a Service's connections over its endpoints (seed lab §5.3): a bar
    per endpoint pod, the uniform expectation as a line, the χ² test in the title."""
    counts, summary = captures.endpoints(), captures.services()
    placed = counts.groupby("service", sort=False)["connections"].sum()
    placed = placed[placed > 0]
    if placed.empty:
        raise FlannelcapError(
            "no connection to a Service was followed to its endpoint: capture -i any on the node that received them"
        )
    name = service or str(placed.index[0])
    if name not in placed.index:
        raise FlannelcapError(f"no connections of {name!r} were placed; these were: {', '.join(placed.index)}")
    rows = counts[counts["service"] == name]
    labels = [
        f"{pod or ip}\n{node or ''}"
        for pod, ip, node in zip(rows["pod"], rows["endpoint_ip"], rows["node"], strict=True)
    ]
    fig, ax = _axes(ax, (max(6.0, 2.2 * len(rows)), 4.0))
    bars = ax.bar(range(len(rows)), rows["connections"], color="#6c9bd2", edgecolor="#333", gid="endpoint")
    answered = rows["answered"].to_numpy()
    for bar, count, ok in zip(bars, rows["connections"], answered, strict=True):
        text = f"{count}" + ("" if ok == count else f" ({count - ok} unanswered)")
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), text, ha="center", va="bottom", fontsize=9)
    ax.axhline(float(rows["expected"].iloc[0]), color="#b00020", ls="--", lw=1.2, label="uniform")
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel("connections")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    test = summary[summary["service"] == name]
    title = f"{name}: {int(placed[name])} connections over {len(rows)} endpoints"
    if len(test) and test["chi2"].iloc[0] == test["chi2"].iloc[0]:
        title += (
            f"\nχ² = {test['chi2'].iloc[0]:.2f} ({int(test['dof'].iloc[0])} dof), p = {test['p_value'].iloc[0]:.3f}"
        )
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig
