"""The packet record: one decoded packet, in flannelcap's one vocabulary of field names.

Rule: plain data only. No Scapy objects, no I/O. The same field names are the CLI's
columns, the keys of ``decode --json``, the CSV header and the DataFrame columns.

Naming: ``outer_*`` are the headers as they were on the wire; ``inner_*`` are the headers
carried inside VXLAN (unset for packets that are not VXLAN). The transport fields without a
prefix (``proto``, ``src_port``, ``tcp_flags``, ``http_*`` …) describe the innermost
transport: the pod-to-pod conversation for VXLAN packets, the packet itself otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flannelcap.packets.fields import FIELD_NAMES as FIELD_NAMES


@dataclass(frozen=True, slots=True, kw_only=True)
class Layer:
    """One protocol layer of the detail view: its name and its fields, already formatted."""

    name: str
    fields: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PacketRecord:
    """One decoded packet. Every field is ``None`` where the packet has no such header."""

    number: int
    time: float
    rel_time: float
    cap_len: int
    wire_len: int
    interface: int = 0

    # Where it was seen: a cooked capture's packet type and interface index, the interface's name.
    packet_type: str | None = None
    ifindex: int | None = None
    if_name: str | None = None

    # Outer headers, as on the wire.
    outer_src_mac: str | None = None
    outer_dst_mac: str | None = None
    vlan: int | None = None
    outer_ip_version: int | None = None
    outer_src_ip: str | None = None
    outer_dst_ip: str | None = None
    outer_ttl: int | None = None
    outer_ip_len: int | None = None
    outer_fragment: bool = False
    outer_proto: str | None = None
    outer_src_port: int | None = None
    outer_dst_port: int | None = None
    outer_udp_len: int | None = None
    outer_udp_checksum: int | None = None
    outer_udp_checksum_ok: bool | None = None  # None: no checksum (0), or not all captured

    # VXLAN (RFC 7348; group-based policy per draft-smith-vxlan-group-policy).
    # The tunnel (packets/tunnels.py): vxlan, vxlan-gbp, geneve, udp-tun, ipip, wireguard.
    is_tunnel: bool = False
    encap: str | None = None
    is_vxlan: bool = False
    vni: int | None = None  # VXLAN's, or Geneve's
    vxlan_flags: int | None = None
    vxlan_gbp: int | None = None
    gbp_flags: int | None = None
    geneve_flags: int | None = None
    geneve_protocol: int | None = None
    geneve_options: str | None = None
    wg_type: int | None = None
    wg_sender: int | None = None
    wg_receiver: int | None = None

    # Inner Ethernet and IP, carried inside VXLAN.
    inner_src_mac: str | None = None
    inner_dst_mac: str | None = None
    inner_ethertype: int | None = None
    inner_src_ip: str | None = None
    inner_dst_ip: str | None = None
    inner_ttl: int | None = None
    inner_ip_len: int | None = None
    ip_id: int | None = None  # the innermost IP header's (IPv4)

    # Innermost transport.
    proto: str | None = None
    src_port: int | None = None
    dst_port: int | None = None
    tcp_flags: str | None = None
    tcp_seq: int | None = None
    tcp_ack: int | None = None
    tcp_window: int | None = None
    payload_len: int | None = None
    payload_hash: int | None = None  # FNV-1a of the first 32 payload bytes
    icmp_type: int | None = None
    icmp_code: int | None = None
    arp_op: str | None = None
    arp_sender_mac: str | None = None
    arp_sender_ip: str | None = None
    arp_target_mac: str | None = None
    arp_target_ip: str | None = None

    # HTTP head, on the segment that completes it (reassembled on the inner 5-tuple).
    http_method: str | None = None
    http_path: str | None = None
    http_host: str | None = None
    http_version: str | None = None
    http_status: int | None = None
    http_reason: str | None = None
    http_forwarded_for: str | None = None
    http_forwarded_server: str | None = None
    http_content_type: str | None = None
    # HTTP/2 (h2c): the frames the segment completes, its first HEADERS frame's stream, gRPC's status.
    http2_frames: str | None = None
    http2_stream: int | None = None
    grpc_status: int | None = None
    dns_id: int | None = None
    dns_response: bool | None = None
    dns_opcode: int | None = None
    dns_rcode: int | None = None
    dns_flags: int | None = None
    dns_qname: str | None = None
    dns_qtype: str | None = None
    dns_answers: int | None = None
    dns_addresses: str | None = None
    dns_cnames: str | None = None
    dns_ttl: int | None = None
    tls_handshake: str | None = None
    tls_version: str | None = None
    tls_sni: str | None = None
    tls_alpn: str | None = None
    tls_cipher: int | None = None

    # Names from the topology (``decode --topology``): nodes owning the outer IPs, nodes
    # owning the inner MACs (VTEPs), pods owning the innermost IPs.
    src_node: str | None = None
    dst_node: str | None = None
    src_vtep_node: str | None = None
    dst_vtep_node: str | None = None
    src_pod: str | None = None
    dst_pod: str | None = None
    direct_routed: bool | None = None

    info: str = ""
    notes: tuple[str, ...] = ()
    layers: tuple[Layer, ...] = field(default=(), compare=False, repr=False)

    @property
    def carries_inner(self) -> bool:
        """The innermost headers are the inner ones: a tunnel that carries a packet (every one
        but WireGuard, whose packet is encrypted)."""
        return self.is_tunnel and self.encap != "wireguard"

    @property
    def src_ip(self) -> str | None:
        """Source IP of the innermost IP header (the pod for a tunnelled packet)."""
        return self.inner_src_ip if self.carries_inner else self.outer_src_ip

    @property
    def dst_ip(self) -> str | None:
        """Destination IP of the innermost IP header."""
        return self.inner_dst_ip if self.carries_inner else self.outer_dst_ip

    def to_dict(self) -> dict[str, Any]:
        """The record as a flat dict in the field vocabulary (without the detail layers)."""
        data = {name: getattr(self, name) for name in _DICT_FIELDS}
        data["notes"] = list(self.notes)
        return data


# The field vocabulary, in order, is the field table's (a test holds this dataclass to it).
_DICT_FIELDS = FIELD_NAMES
