"""The one declaration of a packet's fields: name, kind, width and what the C kernel fills.

Rule: data only, no I/O, no numpy. Everything else follows from this table: ``FIELD_NAMES``
(the CSV header, the JSON keys, the DataFrame columns), the kernel's field list (its order is
the C enum's, which a test checks against ``_ckernel.c``), the Arrow schema of Parquet and
of every batch, and the pandas dtypes of ``Capture.packets``. Adding a field means a row here
and, if the kernel decodes it, its C decode.

Kinds:
    int: an integer of ``width`` bits (signed, wide enough for the header field), missing where
        a packet has no such header.
    bool: never missing. flag: True, False or missing.
    float: seconds.
    label: text with few distinct values (addresses, names, protocol names), kept as codes into
        a list of labels (Arrow dictionary, pandas Categorical).
    text: free text (Info, the HTTP path). notes: a list of texts.

``kernel`` says how the C kernel's integer becomes the value: ``int``, ``bool``, ``ip``
(IPv4 as 32 bits), ``mac`` (48 bits), ``proto`` (IP protocol number, or ARP), ``flags`` (TCP
flag bits), ``arp_op``, ``pkttype`` (Linux packet type), ``encap`` (``tunnels.ENCAP_NAMES``);
None where the kernel does not fill the field.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a packet, as every output shows it."""

    name: str
    kind: str
    width: int = 64
    kernel: str | None = None


def _f(name: str, kind: str, width: int = 64, kernel: str | None = None) -> Field:
    return Field(name, kind, width, kernel)


FIELDS: tuple[Field, ...] = (
    _f("number", "int", 64),
    _f("time", "float"),
    _f("rel_time", "float"),
    _f("cap_len", "int", 32),
    _f("wire_len", "int", 32),
    _f("interface", "int", 32),
    # Where the packet was seen: a cooked capture's (tcpdump -i any) packet type and interface
    # index (v2 only), and the interface's name (pcapng's, or the capture node's ip link).
    _f("packet_type", "label", kernel="pkttype"),
    _f("ifindex", "int", 64, "int"),  # unsigned 32 bits on the wire
    _f("if_name", "label"),
    # Outer headers, as on the wire.
    _f("outer_src_mac", "label", kernel="mac"),
    _f("outer_dst_mac", "label", kernel="mac"),
    _f("vlan", "int", 16, "int"),
    _f("outer_ip_version", "int", 8, "int"),
    _f("outer_src_ip", "label", kernel="ip"),
    _f("outer_dst_ip", "label", kernel="ip"),
    _f("outer_ttl", "int", 16, "int"),
    _f("outer_ip_len", "int", 32, "int"),
    _f("outer_fragment", "bool"),
    _f("outer_proto", "label", kernel="proto"),
    _f("outer_src_port", "int", 32, "int"),
    _f("outer_dst_port", "int", 32, "int"),
    _f("outer_udp_len", "int", 32, "int"),
    _f("outer_udp_checksum", "int", 32, "int"),
    _f("outer_udp_checksum_ok", "flag", kernel="bool"),
    # The encapsulation (packets/tunnels.py): vxlan, vxlan-gbp, geneve, udp-tun (flannel's udp
    # backend), ipip (IPv4 or IPv6 in IP), wireguard; missing for a packet in no tunnel.
    _f("is_tunnel", "bool", kernel="bool"),
    _f("encap", "label", kernel="encap"),
    # VXLAN (RFC 7348; group-based policy per draft-smith-vxlan-group-policy: the G flag in
    # byte 0, D and A in byte 1, the policy ID), and Geneve (RFC 8926), whose VNI is ``vni``.
    _f("is_vxlan", "bool", kernel="bool"),
    _f("vni", "int", 32, "int"),
    _f("vxlan_flags", "int", 16, "int"),
    _f("vxlan_gbp", "int", 32, "int"),
    _f("gbp_flags", "int", 16, "int"),
    _f("geneve_flags", "int", 16, "int"),  # O (0x80) and C (0x40)
    _f("geneve_protocol", "int", 32, "int"),
    _f("geneve_options", "text"),  # class/type:length of each option TLV, comma-separated
    # WireGuard: the message type (1 initiation, 2 response, 3 cookie, 4 data) and the indices.
    _f("wg_type", "int", 16, "int"),
    _f("wg_sender", "int", 64, "int"),
    _f("wg_receiver", "int", 64, "int"),
    # Inner Ethernet and IP, carried inside the tunnel (no inner Ethernet for udp-tun and ipip).
    _f("inner_src_mac", "label", kernel="mac"),
    _f("inner_dst_mac", "label", kernel="mac"),
    _f("inner_ethertype", "int", 32, "int"),
    _f("inner_src_ip", "label", kernel="ip"),
    _f("inner_dst_ip", "label", kernel="ip"),
    _f("inner_ttl", "int", 16, "int"),
    _f("inner_ip_len", "int", 32, "int"),
    # The identification of the innermost IP header (IPv4; none for IPv6): with the transport
    # fields below, what copies of one packet share on every interface and node it crosses.
    _f("ip_id", "int", 32, "int"),
    # Innermost transport.
    _f("proto", "label", kernel="proto"),
    _f("src_port", "int", 32, "int"),
    _f("dst_port", "int", 32, "int"),
    _f("tcp_flags", "label", kernel="flags"),
    _f("tcp_seq", "int", 64, "int"),
    _f("tcp_ack", "int", 64, "int"),
    _f("tcp_window", "int", 32, "int"),
    _f("payload_len", "int", 32, "int"),
    # FNV-1a (32 bits) of the first 32 payload bytes as captured (TCP and UDP after their
    # headers, ICMP from its identifier on): tells apart packets whose headers agree.
    _f("payload_hash", "int", 64, "int"),
    _f("icmp_type", "int", 16, "int"),
    _f("icmp_code", "int", 16, "int"),
    _f("arp_op", "label", kernel="arp_op"),
    _f("arp_sender_mac", "label", kernel="mac"),
    _f("arp_sender_ip", "label", kernel="ip"),
    _f("arp_target_mac", "label", kernel="mac"),
    _f("arp_target_ip", "label", kernel="ip"),
    # HTTP head, on the segment that completes it.
    _f("http_method", "label"),
    _f("http_path", "text"),
    _f("http_host", "label"),
    _f("http_version", "label"),
    _f("http_status", "int", 64),
    _f("http_reason", "label"),
    # What a proxy in front of the server said about the request (Traefik, nginx ingress):
    # the client it came from and the proxy's own name.
    _f("http_forwarded_for", "label"),
    _f("http_forwarded_server", "label"),
    _f("http_content_type", "label"),
    # HTTP/2 in cleartext (h2c, after the connection preface): the frames a segment completes,
    # the stream of its first HEADERS frame, and gRPC's status from a response's trailers. Its
    # requests and responses fill the http_* fields above (version HTTP/2).
    _f("http2_frames", "label"),
    _f("http2_stream", "int", 32),
    _f("grpc_status", "int", 32),
    # DNS (RFC 1035) on port 53, over UDP or over TCP after its length prefix: the header, the
    # first question, and the answers' addresses (A, AAAA), CNAME targets and smallest TTL.
    _f("dns_id", "int", 32),
    _f("dns_response", "flag"),
    _f("dns_opcode", "int", 8),
    _f("dns_rcode", "int", 8),
    _f("dns_flags", "int", 32),
    _f("dns_qname", "label"),
    _f("dns_qtype", "label"),
    _f("dns_answers", "int", 32),
    _f("dns_addresses", "text"),
    _f("dns_cnames", "text"),
    _f("dns_ttl", "int", 64),
    # TLS hellos: what a ClientHello (server name, ALPN) and a ServerHello (version, cipher)
    # show in clear, on the segment that begins them.
    _f("tls_handshake", "label"),
    _f("tls_version", "label"),
    _f("tls_sni", "label"),
    _f("tls_alpn", "label"),
    _f("tls_cipher", "int", 32),
    # Names from the topology.
    _f("src_node", "label"),
    _f("dst_node", "label"),
    _f("src_vtep_node", "label"),
    _f("dst_vtep_node", "label"),
    _f("src_pod", "label"),
    _f("dst_pod", "label"),
    # Pod traffic routed between nodes without a tunnel (host-gw, VXLAN's DirectRouting): both
    # ends in pod subnets of different nodes (missing without a topology).
    _f("direct_routed", "flag"),
    _f("info", "text"),
    _f("notes", "notes"),
)

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
KERNEL_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.kernel)
"""The kernel's row of values, in this order (the C enum's)."""
HTTP_LABELS = (
    "http_method",
    "http_host",
    "http_version",
    "http_reason",
    "http_forwarded_for",
    "http_forwarded_server",
    "http_content_type",
)
NAME_FIELDS = ("src_node", "dst_node", "src_vtep_node", "dst_vtep_node", "src_pod", "dst_pod")
DERIVED = ("src_ip", "dst_ip")
"""Columns ``Capture.packets`` adds: the innermost addresses (inner for VXLAN, else outer)."""


def pandas_dtype(field: Field) -> str:
    """The pandas dtype of a field in ``Capture.packets`` (labels: ``category``)."""
    return {
        "int": f"Int{field.width}",
        "float": "float64",
        "bool": "bool",
        "flag": "boolean",
        "label": "category",
        "text": "string[pyarrow]",
        "notes": "object",
    }[field.kind]
