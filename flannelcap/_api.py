"""``flannelcap.read``: a capture as DataFrames, for notebooks.

Rule: the edge between the library and a notebook. It reads the file once through the one
pipeline (``open_capture``: decoded, annotated with the topology, in column batches) into one
DataFrame; the analysis is in ``analysis.flows``, the figures in ``flannelcap.plots``. Records, for
the audit and the path, are made again from the file when asked for.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from flannelcap.analysis import flows as _analysis
from flannelcap.analysis.audit import Finding, audit_frame, sorted_findings
from flannelcap.analysis.dns import dns_findings, lookups
from flannelcap.analysis.explain import Step, explain
from flannelcap.analysis.flows import Conversations, conversations, missing
from flannelcap.analysis.journey import CaptureAt
from flannelcap.analysis.services import services_view
from flannelcap.packets.frames import FrameBuilder
from flannelcap.packets.records import FIELD_NAMES, PacketRecord
from flannelcap.packets.summary import CaptureSummary
from flannelcap.packets.tunnels import tunnel_port
from flannelcap.topology.collect import read_topology, topology_from_dir
from flannelcap.topology.model import Topology

if TYPE_CHECKING:
    from scapy.packet import Packet
from flannelcap.packets.pipeline import check_capture_node, open_capture


def _topology(source: Topology | str | Path | None) -> Topology | None:
    if source is None or isinstance(source, Topology):
        return source
    path = Path(source)
    return topology_from_dir(path) if path.is_dir() else read_topology(path)


class Capture:
    """A decoded capture. Create it with ``flannelcap.read``.

    Attributes:
        path: the capture file.
        topology: the cluster it was taken in, if known.
        problem: why reading stopped early (a damaged tail), or None.
    """

    def __init__(
        self,
        path: Path,
        topology: Topology | None,
        vxlan_ports: Iterable[int],
        node: str | None = None,
        tunnel_ports: Iterable[tuple[str, int]] = (),
    ) -> None:
        self.path = path
        self.topology = topology
        source = open_capture(path, topology=topology, vxlan_ports=vxlan_ports, tunnel_ports=tunnel_ports, node=node)
        self.vxlan_ports = source.vxlan_ports
        self.tunnel_ports = source.tunnel_ports
        self.node = source.node
        """The node the capture was taken on, where given or its file name says (else None)."""
        frame = FrameBuilder(source.columns)
        for batch in source:
            frame.add(batch, source.frames_expected)
        self.packets: pd.DataFrame = frame.frame()
        """One row per packet, columns in the field vocabulary (as ``decode --json``) and
        ``src_ip``/``dst_ip`` (the innermost addresses). Integers are nullable pandas integers
        of the field's width, addresses, names and protocol names Categoricals, Info and the
        HTTP path Arrow-backed strings, notes tuples."""
        self.problem = source.problem
        self.counts: CaptureSummary = source.summary()
        self._record_list: list[PacketRecord] | None = None
        self._findings: list[Finding] | None = None
        self._flows: pd.DataFrame | None = None
        self._http: pd.DataFrame | None = None
        self._dns: pd.DataFrame | None = None
        self._conversation_ids: Conversations | None = None

    @property
    def records(self) -> list[PacketRecord]:
        """Every packet as a ``PacketRecord`` (decoded again from the file, once, and kept)."""
        if self._record_list is None:
            self._record_list = list(self._records())
        return self._record_list

    def _records(self) -> Iterable[PacketRecord]:
        """The records, from memory if kept, else streamed from the file."""
        if self._record_list is not None:
            return self._record_list
        return open_capture(
            self.path, topology=self.topology, vxlan_ports=self.vxlan_ports, tunnel_ports=self.tunnel_ports,
            node=self.node,
        ).records()  # fmt: skip

    def _conversations(self) -> Conversations:
        if self._conversation_ids is None:
            self._conversation_ids = conversations(self.packets)
        return self._conversation_ids

    def flows(self) -> pd.DataFrame:
        """One row per inner conversation: pods, nodes, VNI, packets, bytes, start, duration,
        and the outer UDP source ports seen (worked out once; each call returns a copy)."""
        if self._flows is None:
            self._flows = _analysis.flows(self.packets, self._conversations())
        return self._flows.copy()

    def http(self) -> pd.DataFrame:
        """HTTP requests paired with their responses, with the latency in milliseconds (worked
        out once; each call returns a copy)."""
        if self._http is None:
            self._http = _analysis.http_exchanges(self.packets, self._conversations())
        return self._http.copy()

    def dns(self) -> pd.DataFrame:
        """DNS queries paired with their responses: client and server (pods where known), id,
        name, type, how often sent, rcode, addresses, CNAMEs, TTL, latency in milliseconds."""
        if self._dns is None:
            self._dns = lookups([self._at()], self.topology)
        return self._dns.copy()

    def _at(self) -> CaptureAt:
        return CaptureAt(self.path.name, self.node or self.path.name, self.packets)

    def findings(self) -> pd.DataFrame:
        """The audit: where the wire and the tables disagree (the wire alone without a topology)."""
        found = self.findings_list()
        return pd.DataFrame(
            [
                {
                    "severity": f.severity,
                    "code": f.code,
                    "node": f.node,
                    "message": f.message,
                    "rows": list(f.rows),
                    "packets": list(f.packets),
                }
                for f in found
            ],
            columns=["severity", "code", "node", "message", "rows", "packets"],
        )

    def findings_list(self) -> list[Finding]:
        """The audit's findings as objects (worked out once, from the columns it reads)."""
        if self._findings is None:
            topology = self.topology or Topology()
            found = [*audit_frame(self.packets, topology), *dns_findings(self.dns())]
            if topology.services:  # who announces each Service IP, where kube-proxy sent connections
                found += services_view([self._at()], topology).findings
            self._findings = sorted_findings(found)
        return self._findings

    def records_where(self, rows: pd.Series) -> list[PacketRecord]:
        """The packets where ``rows`` (a boolean Series over ``packets``) is true, as
        ``PacketRecord``s made from the DataFrame (not decoded again)."""
        chosen = self.packets.loc[rows.fillna(False).astype(bool), list(FIELD_NAMES)]
        return [
            PacketRecord(**{k: None if missing(v) else v for k, v in row.items()})  # type: ignore[arg-type]
            for row in chosen.to_dict("records")
        ]

    def explain(self, flow: int | str = 0) -> list[Step]:
        """The path of a conversation, step by step (``flow``: a row number of ``flows()``,
        or a pod name to start from).

        Raises:
            TopologyError: no topology was given, or the pods are unknown.
        """
        from flannelcap._errors import TopologyError

        if self.topology is None:
            raise TopologyError("explain needs the cluster's tables: flannelcap.read(path, topology=…)")
        table = self.flows()
        if table.empty:
            raise TopologyError("the capture holds no TCP or UDP conversation")
        if isinstance(flow, int):
            chosen = table.iloc[[flow]] if -len(table) <= flow < len(table) else table.iloc[:0]
        else:
            chosen = table[table.src_pod == flow]
        if chosen.empty:
            raise TopologyError(f"no conversation {flow!r}: give a row number of flows() or a source pod's name")
        row = chosen.iloc[0]
        packets = self.packets
        between = ((packets.inner_src_ip == row.src_ip) & (packets.inner_dst_ip == row.dst_ip)) | (
            (packets.outer_src_ip == row.src_ip) & (packets.outer_dst_ip == row.dst_ip)
        )
        return explain(self.topology, row.src_ip, row.dst_ip, self.records_where(between))

    def report(self, path: str | Path, max_packets: int = 2000, flow: int | None = None) -> Path:
        """Write this capture's report: one self-contained HTML page (``flannelcap report``;
        ``flow``: the conversation its figures show, a row of ``flows()``)."""
        from flannelcap.report import write_report

        return write_report(self, path, max_packets=max_packets, flow=flow)

    def scapy(self, number: int) -> Packet:
        """The Scapy packet for packet ``number`` (1-based), VXLAN decoded."""
        from flannelcap.packets.capture import scapy_packet  # Scapy: loaded only when asked for

        return scapy_packet(self.path, number, vxlan_ports=self.vxlan_ports)

    def summary(self) -> dict[str, Any]:
        """The counts the HTML view shows."""
        packets, counts = self.packets, self.counts

        def named(*columns: str) -> list[str]:
            return sorted({str(v) for c in columns for v in packets[c].dropna().unique()})

        return {
            "file": self.path.name,
            "packets": counts.packets,
            "vxlan": dict(sorted(counts.vxlan_by_vni.items())),
            "not_vxlan": counts.other_packets,
            "nodes": named("src_node", "dst_node"),
            "pods": named("src_pod", "dst_pod"),
            "http_exchanges": len(self.http()),
            "findings": len(self.findings_list()),
        }

    def _repr_html_(self) -> str:
        info = self.summary()
        vxlan = ", ".join(f"VNI {k}: {v}" for k, v in info["vxlan"].items()) or "none"
        rows = [
            ("packets", info["packets"]),
            ("VXLAN", vxlan),
            ("not VXLAN", info["not_vxlan"]),
            ("nodes", ", ".join(info["nodes"]) or "(no topology)"),
            ("pods", ", ".join(info["pods"]) or "(no topology)"),
            ("HTTP exchanges", info["http_exchanges"]),
            ("findings", info["findings"]),
        ]
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
        )
        return f"<b>flannelcap capture {html.escape(info['file'])}</b><table>{body}</table>"

    def wireshark(self, number: int) -> Any:
        """Wireshark's own dissection of packet ``number`` (a pyshark packet: ``.layers``,
        ``.vxlan.vni``, ``str()`` for the detail pane), through tshark with this capture's VXLAN
        ports as Decode-As. Needs pyshark (``pip install 'flannelcap[wireshark]'``) and tshark."""
        from flannelcap._wireshark import dissect

        return dissect(self.path, [number], self.vxlan_ports)[number]

    def __repr__(self) -> str:
        return f"<flannelcap.Capture {self.path.name}: {len(self.packets)} packets>"


def read(
    path: str | Path,
    topology: Topology | str | Path | None = None,
    vxlan_ports: Iterable[int] = (),
    node: str | None = None,
    tunnel_ports: Iterable[tuple[str, int] | str] = (),
) -> Capture:
    """Read and decode a capture for analysis in a notebook.

    Args:
        path: pcap or pcapng capture (optionally gzip-compressed).
        topology: a ``Topology``, a topology file from ``flannelcap map -o``, or a directory
            of saved tables (as ``--tables``).
        vxlan_ports: UDP ports that carry VXLAN besides 8472, 4789 and the topology's
            flannel.1 ports.
        node: the node the capture was taken on: its ``ip link`` table names the interface of
            each packet of a ``tcpdump -i any`` capture (by default the node whose name the
            file's name starts with, as ``flannelcap capture`` names files).
        tunnel_ports: more UDP tunnel rules, as ``("geneve", 6082)`` or ``"geneve:6082"``, over
            the defaults (VXLAN on 8472/4789, Geneve on 6081, flannel's udp backend on 8285,
            WireGuard on 51820/51821).

    Returns:
        A ``Capture``: ``.packets``, ``.flows()``, ``.http()``, ``.findings()``, ``.explain()``.

    Raises:
        CaptureFormatError: not a capture file.
        TopologyError, TableParseError: the topology cannot be read.
    """
    known = _topology(topology)
    check_capture_node(known, node)
    rules = [tunnel_port(r) if isinstance(r, str) else r for r in tunnel_ports]
    return Capture(Path(path), known, vxlan_ports, node, rules)
