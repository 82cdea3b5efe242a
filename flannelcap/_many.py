"""``flannelcap.read_many``: several captures side by side — the copies of each packet matched
across them, its journey, the delay of each hop, where packets were lost; and the Services
they show: who announces each LoadBalancer IP, where kube-proxy sent each connection.

Rule: the edge between the library and a notebook for several files. Each file is read by
``flannelcap.read`` (the one pipeline); the matching is ``analysis.journey``'s, the services
``analysis.services``'. Each analysis runs when first asked for, once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from flannelcap._api import Capture, _topology, read
from flannelcap._errors import BadArgument
from flannelcap.analysis.audit import Finding
from flannelcap.analysis.dns import lookups
from flannelcap.analysis.journey import CaptureAt, ClockOffset, hops, journeys
from flannelcap.analysis.services import ServicesView, services_view
from flannelcap.topology.model import Topology


class Captures:
    """Several decoded captures, taken at the same time on different interfaces or nodes.
    Create them with ``flannelcap.read_many``."""

    def __init__(self, captures: list[Capture], topology: Topology | None) -> None:
        self.captures = captures
        self.topology = topology
        self._at = [CaptureAt(c.path.name, c.node or c.path.name, c.packets) for c in captures]
        self._journeys: tuple[pd.DataFrame, pd.DataFrame] | None = None
        self._hops: pd.DataFrame | None = None
        self._services: ServicesView | None = None
        self._dns: pd.DataFrame | None = None

    @property
    def _sightings(self) -> pd.DataFrame:
        return self._matched()[0]

    @property
    def _packets(self) -> pd.DataFrame:
        return self._matched()[1]

    def _matched(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        if self._journeys is None:
            self._journeys = journeys(self._at, self.topology)
        return self._journeys

    def _service_view(self) -> ServicesView:
        if self._services is None:
            self._services = services_view(self._at, self.topology)
        return self._services

    def announcements(self) -> pd.DataFrame:
        """Every ARP claim of a Service IP: ``time``, ``file``, ``number``, ``vip``,
        ``service``, ``mac``, ``node``, ``kind`` (gratuitous request/reply, or reply)."""
        return self._service_view().claims.copy()

    def takeovers(self) -> pd.DataFrame:
        """Per Service IP, each change of its announcer (the first claim included): ``time``,
        ``from_mac``/``from_node``, ``to_mac``/``to_node``, ``kind`` of the claim."""
        return self._service_view().takeovers.copy()

    def connections(self) -> pd.DataFrame:
        """One row per connection to a Service IP: client, the node that received it, the
        endpoint (pod, node) kube-proxy DNATed it to, by which path (``vxlan``, ``cni0``),
        whether the client was masqueraded, whether it was answered, its HTTP status."""
        return self._service_view().connections.copy()

    def endpoints(self) -> pd.DataFrame:
        """Per Service and endpoint: connections, answered, share, expected under a uniform
        spread (endpoints that got none included)."""
        return self._service_view().endpoints.copy()

    def services(self) -> pd.DataFrame:
        """Per Service: its IPs, who announced it (and any split brain), connections, the
        traffic policy the wire shows, and the χ² test of its spread over the endpoints."""
        return self._service_view().summary.copy()

    def ingress(self) -> pd.DataFrame:
        """One row per request an ingress proxy (Traefik) sent on to a pod: the proxy's name
        (``X-Forwarded-Server``), the client it saw (``X-Forwarded-For``) and what that address
        is, the backend pod and node, Host and path."""
        return self._service_view().ingress.copy()

    def dns(self) -> pd.DataFrame:
        """DNS queries paired with their responses across the captures (a query seen in several
        files, or at several points of one, is one row): client and server pods, name, type,
        sends, rcode, addresses, latency."""
        if self._dns is None:
            self._dns = lookups(self._at, self.topology)
        return self._dns.copy()

    def service_findings(self) -> list[Finding]:
        """The Services' findings: two announcers, an IP nobody answers, an endpoint that never
        answers, a DNAT to a pod IP no pod has."""
        return list(self._service_view().findings)

    def journeys(self) -> pd.DataFrame:
        """One row per matched packet: its flow, where it was first seen (``first_file``,
        ``first_number``), at how many points, where last, and its verdict (``delivered``, or
        where it was lost; ``lost``)."""
        return self._packets

    def sightings(self) -> pd.DataFrame:
        """One row per copy of a matched packet, in path order: ``packet``, ``hop``,
        ``file``, ``node``, ``point`` (the interface), ``direction``, ``encapsulated``,
        ``ttl``, ``time`` (the node's clock), ``clock_time`` (the reference clock),
        ``since_first``, ``flow``."""
        return self._sightings

    def hops(self) -> pd.DataFrame:
        """Per flow and hop: packets, median and 99th-percentile delay (µs), and whether the
        hop crosses nodes (its delay then rests on the clock offsets' estimate)."""
        if self._hops is None:
            self._hops = hops(self._sightings)
        return self._hops

    def clocks(self) -> list[ClockOffset]:
        """Each node's clock offset against the first capture's node, with its uncertainty."""
        clocks: list[ClockOffset] = self._packets.attrs["clocks"]
        return clocks

    def __repr__(self) -> str:
        return f"<flannelcap.Captures {len(self.captures)} files: {', '.join(c.path.name for c in self.captures)}>"


def read_many(
    paths: Iterable[str | Path],
    topology: Topology | str | Path | None = None,
    nodes: Mapping[str, str] | None = None,
    vxlan_ports: Iterable[int] = (),
) -> Captures:
    """Read captures taken at the same time and match each packet's copies across them.

    Args:
        paths: the capture files (pcap or pcapng).
        topology: as for ``flannelcap.read``: names nodes, pods and interfaces, and gives each
            node's IP, VNI, VXLAN port and VTEP MAC for the loss verdicts.
        nodes: file path → the node it was taken on, where its name does not say so
            (``flannelcap capture`` names files ``<node>-<interface>-…``).
        vxlan_ports: UDP ports that carry VXLAN besides the defaults.

    Raises:
        BadArgument: no files, or the same file twice.
        CaptureFormatError, TopologyError: as for ``flannelcap.read``.
    """
    files = [Path(p) for p in paths]
    if not files:
        raise BadArgument("read_many needs at least one capture file")
    if len({f.resolve() for f in files}) != len(files):
        raise BadArgument("the same capture file is named twice")
    known = _topology(topology)
    given = {str(Path(k)): v for k, v in (nodes or {}).items()}
    captures = [read(f, known, vxlan_ports, node=given.get(str(f))) for f in files]
    return Captures(captures, known)
