"""Counting what a capture holds: the footer of ``flannelcap decode``.

Rule: pure. Records (or the fast path's columns) in, counts out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from flannelcap.packets.records import PacketRecord
from flannelcap.packets.tunnels import ENCAP_CODES, ENCAP_NAMES, IPIP_PROTOCOLS, TunnelPorts


@dataclass(slots=True)
class CaptureSummary:
    """Totals over the packets of one capture."""

    packets: int = 0
    vxlan_by_vni: Counter[int] = field(default_factory=Counter)
    other_packets: int = 0
    http_requests: int = 0
    http_responses: int = 0
    conversations: set[tuple[str, tuple[str, int], tuple[str, int]]] = field(default_factory=set)
    counted_conversations: int = 0  # more conversations, counted (not named) by the fast path
    packets_with_notes: Counter[str] = field(default_factory=Counter)
    tunnel_rules: Counter[str] = field(default_factory=Counter)  # packets per tunnel rule that fired
    stopped_early: str | None = None

    @property
    def vxlan_packets(self) -> int:
        """Number of VXLAN packets over all VNIs."""
        return sum(self.vxlan_by_vni.values())

    @property
    def conversation_count(self) -> int:
        """Distinct TCP and UDP conversations."""
        return len(self.conversations) + self.counted_conversations

    @property
    def http_exchanges(self) -> int:
        """Requests that a response followed, counted as pairs."""
        return min(self.http_requests, self.http_responses)

    def add(self, record: PacketRecord, tunnels: TunnelPorts | None = None) -> None:
        """Count one record (``tunnels``: the port rules it was decoded with)."""
        self.packets += 1
        if record.is_tunnel and record.encap in ENCAP_CODES:
            if record.encap == "ipip":
                port = 1 << 16 | next(n for n, name in IPIP_PROTOCOLS.items() if name == record.outer_proto)
            elif record.outer_dst_port is not None and record.outer_dst_port in (tunnels or TunnelPorts.of()).by_port:
                port = record.outer_dst_port
            else:
                port = record.outer_src_port or 0
            self.tunnel_rules[rule_text(ENCAP_CODES[record.encap] << 32 | port)] += 1
        if record.is_vxlan:
            self.vxlan_by_vni[record.vni or 0] += 1
        else:
            self.other_packets += 1
        if record.http_method:
            self.http_requests += 1
        if record.http_status is not None:
            self.http_responses += 1
        if record.proto in ("tcp", "udp") and record.src_ip and record.dst_ip:
            ends = sorted([(record.src_ip, record.src_port or 0), (record.dst_ip, record.dst_port or 0)])
            self.conversations.add((record.proto, ends[0], ends[1]))
        for note in record.notes:
            self.packets_with_notes[_note_kind(note)] += 1

    def lines(self) -> list[str]:
        """The summary as text lines, for the CLI footer."""
        per_vni = ", ".join(f"VNI {vni}: {n}" for vni, n in sorted(self.vxlan_by_vni.items()))
        lines = [
            f"{self.packets} packets: {self.vxlan_packets} VXLAN"
            + (f" ({per_vni})" if per_vni else "")
            + f", {self.other_packets} not VXLAN",
            f"{self.conversation_count} TCP/UDP conversations, "
            f"{self.http_requests} HTTP requests, {self.http_responses} HTTP responses",
        ]
        if self.tunnel_rules:
            fired = ", ".join(f"{rule}: {n}" for rule, n in sorted(self.tunnel_rules.items()))
            lines.append(f"tunnels decoded: {fired}")
        for kind, count in self.packets_with_notes.most_common():
            lines.append(f"{count} packets: {kind}")
        if self.stopped_early:
            lines.append(f"reading stopped early: {self.stopped_early}")
        return lines


def _note_kind(note: str) -> str:
    """Group notes by their wording up to the first detail (numbers, colons)."""
    head = note.split(":")[0]
    return "".join(ch for ch in head if not ch.isdigit()).replace("  ", " ").strip()


def rule_of(tunnels: TunnelPorts, encap: NDArray[np.int64], sport: NDArray[np.int64], dport: NDArray[np.int64],
            outer_proto: NDArray[np.int64]) -> NDArray[np.int64]:  # fmt: skip
    """The rule that found each tunnelled packet, as one integer: the encapsulation's code
    << 32, and the UDP port whose rule fired (the destination's, if it has one, as the
    decoders look), or for IP-in-IP 1 << 16 | the outer IP protocol."""
    ruled = np.isin(dport, np.array(sorted(tunnels.by_port) or [-1], dtype=np.int64))
    port = np.where(ruled, dport, sport)
    port = np.where(encap == ENCAP_CODES["ipip"], 1 << 16 | outer_proto, port)
    return encap.astype(np.int64) << 32 | port


def rule_text(key: int) -> str:
    """A rule as the footer says it: ``vxlan on UDP 8472``, ``ipip (IP protocol 4)``."""
    encap, port = ENCAP_NAMES.get(key >> 32, "?"), key & 0xFFFFFFFF
    if port >> 16:
        return f"{encap} (IP protocol {port & 0xFFFF})"
    return f"{encap} on UDP {port}"
