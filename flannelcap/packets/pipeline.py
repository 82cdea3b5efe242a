"""The one way into a capture: ``open_capture`` reads it once and hands out its column batches.

Rule: the edge where a capture file is opened for every consumer — the command line,
``flannelcap.read``, ``decode_file``, audit and explain. It joins the reader and decoders
(``read``) to the column maker (``columns``), takes the VXLAN ports from one place (the
defaults, the caller's, and the topology's flannel.1 ports), and counts the summary as the
batches go by. What is made of the batches is the views' business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from flannelcap._errors import BadArgument, FlannelcapError
from flannelcap.packets import kernel as _kernel
from flannelcap.packets.ahead import read_ahead
from flannelcap.packets.columns import Batch, ColumnBatch, Columns
from flannelcap.packets.http import HttpHead
from flannelcap.packets.http2 import H2Segment
from flannelcap.packets.kernel_columns import ConversationSet
from flannelcap.packets.read import FastStream
from flannelcap.packets.records import PacketRecord
from flannelcap.packets.summary import CaptureSummary, rule_of, rule_text
from flannelcap.packets.tunnels import TunnelPorts
from flannelcap.packets.vxlan import DEFAULT_VXLAN_PORTS, udp_ports
from flannelcap.topology.model import VXLAN_BACKENDS, Topology

ENGINES = ("auto", "fast", "scapy")


def vxlan_ports_for(topology: Topology | None, extra: Iterable[int] = ()) -> frozenset[int]:
    """The UDP ports decoded as VXLAN: 8472 and 4789, the caller's, and every ``dstport`` the
    topology's flannel.1 devices use.

    Raises:
        BadArgument: a port of ``extra`` is not a UDP port.
    """
    ports = set(DEFAULT_VXLAN_PORTS) | udp_ports(extra)
    if topology is not None:
        ports |= {n.dstport for n in topology.nodes if n.dstport and n.backend in (None, *VXLAN_BACKENDS)}
    return frozenset(ports)


class SummaryCounter:
    """The ``CaptureSummary`` of decoded batches, counted column-wise (rows the Scapy decoder
    took are counted from their records)."""

    def __init__(self, tunnels: TunnelPorts) -> None:
        self.summary = CaptureSummary()
        self.tunnels = tunnels
        self._conversations = ConversationSet()

    def add(self, batch: Batch) -> None:
        """Count one batch."""
        summary, values = self.summary, batch.values
        fast = ~batch.fallback
        summary.packets += int(fast.sum())
        vxlan = fast & (values["is_vxlan"] == 1)
        if vxlan.any():
            for vni, count in _value_counts(values["vni"][vxlan]):
                summary.vxlan_by_vni[vni] += count
        summary.other_packets += int((fast & ~vxlan).sum())
        tunnelled = np.nonzero(fast & (values["is_tunnel"] == 1))[0]
        if len(tunnelled):
            rule = rule_of(self.tunnels, values["encap"][tunnelled], values["outer_src_port"][tunnelled],
                           values["outer_dst_port"][tunnelled], values["outer_proto"][tunnelled])  # fmt: skip
            for key, count in _value_counts(rule):
                summary.tunnel_rules[rule_text(key)] += count
        self._conversations.add(batch.matrix, fast)
        requests = batch.heads.requests()
        summary.http_requests += requests
        summary.http_responses += len(batch.heads.rows) - requests
        heads: list[HttpHead | H2Segment] = [*batch.slow_heads.values()]
        heads += [segment for segment in batch.h2.values() if segment.is_head]
        for head in heads:
            summary.http_requests += head.is_request
            summary.http_responses += not head.is_request
        for record in batch.records.values():
            summary.add(record, self.tunnels)

    def finish(self, problem: str | None) -> CaptureSummary:
        """The summary, with the conversations of both kinds of rows merged."""
        summary = self.summary
        summary.conversations = self._conversations.absorb(summary.conversations)
        summary.counted_conversations = self._conversations.count
        summary.stopped_early = problem
        return summary


def _value_counts(values: _kernel.Int) -> list[tuple[int, int]]:
    """Each distinct value of a non-empty array and how often it occurs (sorted only when
    they differ: a batch's packets mostly share one VNI and one tunnel rule)."""
    if (values == values[0]).all():
        return [(int(values[0]), len(values))]
    keys, counts = np.unique(values, return_counts=True)
    return list(zip(keys.tolist(), counts.tolist(), strict=True))


class PacketSource:
    """A capture opened for reading (see ``open_capture``): iterate it once for its column
    batches, or call ``records`` or ``summary``; afterwards ``problem`` says why reading
    stopped early (a damaged tail), ``fallback_frames`` how many frames the Scapy decoder took.
    """

    def __init__(
        self,
        source: str | Path | BinaryIO,
        *,
        topology: Topology | None,
        vxlan_ports: frozenset[int],
        tunnel_ports: Iterable[tuple[str, int]] = (),
        engine: str,
        progress: Callable[[int, int], None] | None,
        more_waiting: Callable[[], bool] | None = None,
        node: str | None = None,
    ) -> None:
        if engine not in ENGINES:
            raise FlannelcapError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
        if engine == "fast" and _kernel.UNAVAILABLE:
            raise FlannelcapError(f"{_kernel.UNAVAILABLE}: use --engine scapy, or reinstall with a C compiler")
        self.topology = topology
        self.vxlan_ports = vxlan_ports
        self.tunnel_ports = tuple(tunnel_ports)
        self.stream = FastStream(
            source,
            vxlan_ports=vxlan_ports,
            tunnel_ports=self.tunnel_ports,
            progress=progress,
            scapy_only=engine == "scapy",
            more_waiting=more_waiting,
        )
        self.node = node if node is not None else capture_node_by_name(topology, source)
        reader = self.stream.reader
        self.columns = Columns(
            topology, node_links(topology, self.node), lambda: [interface.name for interface in reader.interfaces]
        )
        self._counter = SummaryCounter(self.stream.tunnels)
        self._started = False

    @property
    def problem(self) -> str | None:
        """Why reading stopped before the end of the file, or None."""
        return self.stream.problem

    @property
    def fallback_frames(self) -> int:
        """Frames the Scapy decoder took."""
        return self.stream.fallback_frames

    @property
    def linktype(self) -> int:
        """Link type of the capture's first interface."""
        return self.stream.linktype

    @property
    def frames_expected(self) -> int | None:
        """For a capture file: its frames, as the part read so far predicts them (else None)."""
        return self.stream.frames_expected

    def __iter__(self) -> Iterator[ColumnBatch]:
        self._started = True
        for batch in read_ahead(self._counted(self.stream.batches(prepared=True))):
            yield self.columns.make(batch)

    def _counted(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        """The batches, each counted and its label ids found: work the reading thread does
        (in order) while the caller makes the previous batch's columns."""
        try:
            for batch in batches:
                self._counter.add(batch)
                yield self.columns.label_ids(batch)
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    def records(self) -> Iterator[PacketRecord]:
        """Every packet as a ``PacketRecord`` (made from the batches, one batch at a time)."""
        from flannelcap.packets.frames import records

        for batch in self:
            yield from records(batch, self.columns)

    def summary(self) -> CaptureSummary:
        """The counts of what has been read, or, before any reading, of the whole capture
        (read now, without making columns: the fastest pass)."""
        if not self._started:
            self._started = True
            for batch in read_ahead(self.stream.batches(counts_only=True)):
                self._counter.add(batch)
        return self._counter.finish(self.problem)


def capture_node_by_name(topology: Topology | None, source: str | Path | BinaryIO) -> str | None:
    """The node a capture file was taken on, where its name says so as ``flannelcap capture``
    and ``lab record`` write it (``<node>-<interface>-…``) and the topology knows that node."""
    if topology is None or not isinstance(source, (str, Path)):
        return None
    name = Path(source).name
    nodes = [view.node for view in topology.views if name.startswith(f"{view.node}-")]
    return max(nodes, key=len) if nodes else None


def check_capture_node(topology: Topology | None, node: str | None) -> None:
    """A capture node the caller names (``--node``, ``read(node=)``) must be one whose tables
    the topology holds: else no interface could be named, and nothing would say why.

    Raises:
        BadArgument: no topology, or no tables of that node in it.
    """
    if node is None:
        return
    known = [view.node for view in topology.views] if topology else []
    if node not in known:
        where = f"the tables hold {', '.join(known)}" if known else "no tables were given (--tables or --topology)"
        raise BadArgument(f"no tables of node {node!r} to name its interfaces: {where}")


def node_links(topology: Topology | None, node: str | None) -> dict[int, str]:
    """``node``'s interfaces by index, from its ``ip link`` table in the topology."""
    view = next((v for v in topology.views if v.node == node), None) if topology and node else None
    return {link.ifindex: link.name for link in view.links or ()} if view else {}


def open_capture(
    source: str | Path | BinaryIO,
    *,
    topology: Topology | None = None,
    vxlan_ports: Iterable[int] = (),
    tunnel_ports: Iterable[tuple[str, int]] = (),
    engine: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    more_waiting: Callable[[], bool] | None = None,
    node: str | None = None,
) -> PacketSource:
    """Open a capture for reading through flannelcap's one pipeline.

    Args:
        source: path or binary file object (pcap, pcapng, optionally gzip-compressed).
        topology: the cluster, for node, VTEP and pod names, and for its VXLAN ports.
        vxlan_ports: UDP ports decoded as VXLAN besides 8472, 4789 and the topology's.
        tunnel_ports: more (kind, port) rules (``tunnels.tunnel_port``), over the defaults:
            Geneve on 6081, flannel's udp backend on 8285, WireGuard on 51820 and 51821.
        engine: ``auto``/``fast`` (the compiled decoder, Scapy for what it leaves), or
            ``scapy`` (every frame through Scapy, into the same batches).
        progress: called with (bytes read, total bytes) as the file is read.
        more_waiting: for a live stream: whether more bytes wait to be read (see ``FastStream``);
            batches then come as packets arrive.
        node: the node the capture was taken on, whose ``ip link`` names the interfaces of a
            ``tcpdump -i any`` capture (by default the node the file's name starts with).

    Raises:
        CaptureFormatError: not a capture file.
        FlannelcapError: ``engine="fast"`` without the compiled decoder, or an unknown engine.
    """
    ports = vxlan_ports_for(topology, vxlan_ports)
    return PacketSource(
        source,
        topology=topology,
        vxlan_ports=ports,
        tunnel_ports=tunnel_ports,
        engine=engine,
        progress=progress,
        more_waiting=more_waiting,
        node=node,
    )


class RecordView:
    """The packets of a capture as ``PacketRecord``s, made from its batches on demand
    (what ``decode_file`` returns). Iterate once; ``problem`` afterwards, as ``RecordStream``."""

    def __init__(self, capture: PacketSource) -> None:
        self._capture = capture

    @property
    def problem(self) -> str | None:
        """Why reading stopped before the end of the file, or None."""
        return self._capture.problem

    @property
    def linktype(self) -> int:
        """Link type of the capture's first interface."""
        return self._capture.linktype

    @property
    def fallback_frames(self) -> int:
        """Frames the Scapy decoder took (so far)."""
        return self._capture.fallback_frames

    def __iter__(self) -> Iterator[PacketRecord]:
        return self._capture.records()

    def __enter__(self) -> RecordView:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
