"""The Info column and TCP flag names, worded as Wireshark's packet list words them.

Rule: pure, and free of Scapy, so that the fast path can use it without importing Scapy.
"""

from __future__ import annotations

from flannelcap.packets.dns import OPCODE_NAMES, RCODE_NAMES
from flannelcap.packets.http import HttpHead
from flannelcap.packets.records import PacketRecord

ARP_OPS = {1: "request", 2: "reply"}  # ARP's operation codes, as records name them
# Linux's packet types (PACKET_HOST…), as a cooked capture (tcpdump -i any) keeps them
PACKET_TYPES = {0: "host", 1: "broadcast", 2: "multicast", 3: "otherhost", 4: "outgoing"}
# ... and as tcpdump -i any words them before each packet
PACKET_TYPE_WORDS = {"host": "In", "outgoing": "Out", "broadcast": "B", "multicast": "M", "otherhost": "P"}
# Wireshark's order: from the lowest bit up.
_TCP_FLAG_NAMES = (
    (0x01, "FIN"),
    (0x02, "SYN"),
    (0x04, "RST"),
    (0x08, "PSH"),
    (0x10, "ACK"),
    (0x20, "URG"),
    (0x40, "ECE"),
    (0x80, "CWR"),
)
ICMP_NAMES = {
    0: "Echo (ping) reply",
    3: "Destination unreachable",
    5: "Redirect",
    8: "Echo (ping) request",
    11: "Time-to-live exceeded",
}
_ICMPV6_NAMES = {
    1: "Destination unreachable",
    2: "Packet too big",
    3: "Time exceeded",
    128: "Echo (ping) request",
    129: "Echo (ping) reply",
    133: "Router solicitation",
    134: "Router advertisement",
    135: "Neighbor solicitation",
    136: "Neighbor advertisement",
}


def tcp_flag_names(flags: int) -> str:
    """Wireshark-style TCP flag list, e.g. ``SYN, ACK``."""
    names = [name for bit, name in _TCP_FLAG_NAMES if flags & bit]
    return ", ".join(names) if names else "<none>"


def dns_operation(opcode: int, response: bool) -> str:
    """``Standard query``, ``Standard query response``, ``Dynamic update`` …"""
    name = OPCODE_NAMES.get(opcode, f"Unknown operation ({opcode})")
    return name + (" response" if response else "")


def rcode_name(rcode: int) -> str:
    """A response code as Wireshark names it (``No such name`` for NXDOMAIN)."""
    return RCODE_NAMES.get(rcode, f"Unknown error ({rcode})")


def dns_info(record: PacketRecord) -> str:
    """A DNS message's Info, e.g. ``Standard query 0x1a2b A web.default.svc.cluster.local``,
    and for an answer ``Standard query response 0x1a2b A web.default.svc.cluster.local
    10.43.71.110`` (an error's name before the question: ``No such name``)."""
    response = bool(record.dns_response)
    parts = [dns_operation(record.dns_opcode or 0, response), f"0x{record.dns_id or 0:04x}"]
    if response and record.dns_rcode:
        parts.append(rcode_name(record.dns_rcode))
    if record.dns_qname is not None:
        parts += [record.dns_qtype or "", record.dns_qname]
    if record.dns_cnames:
        parts += ["CNAME", record.dns_cnames]
    if record.dns_addresses:
        parts.append(record.dns_addresses)
    return " ".join(parts)


class InfoFormatter:
    """The Info column, as Wireshark's packet list words it; keeps the TCP initial sequence
    numbers so that sequence numbers are shown relative, as Wireshark shows them."""

    def __init__(self) -> None:
        self._isn: dict[tuple[str, int, str, int], int] = {}

    def format(self, record: PacketRecord, http: HttpHead | None = None) -> str:
        """The Info text of ``record`` (``http``: the head it completes, if any; else the
        record's own HTTP fields)."""
        if http is not None:
            return http.start_line
        if record.http_method:
            return f"{record.http_method} {record.http_path} {record.http_version}"
        if record.http_status is not None:
            reason = f" {record.http_reason}" if record.http_reason else ""
            return f"{record.http_version} {record.http_status}{reason}"
        if record.proto == "tcp":
            text = self._tcp_info(record)  # keeps the direction's ISN, also for a TLS hello
            if record.tls_handshake:
                return record.tls_handshake + (f" (SNI={record.tls_sni})" if record.tls_sni else "")
            return text
        if record.proto == "udp" and record.dns_id is not None:
            return dns_info(record)
        if record.proto == "udp":
            return f"{record.src_port} → {record.dst_port} Len={record.payload_len}"
        if record.proto == "arp":
            if record.arp_op == "request":
                return f"Who has {record.arp_target_ip}? Tell {record.arp_sender_ip}"
            if record.arp_op == "reply":
                return f"{record.arp_sender_ip} is at {record.arp_sender_mac}"
            return f"ARP {record.arp_op}"
        if record.proto in ("icmp", "icmpv6"):
            names = ICMP_NAMES if record.proto == "icmp" else _ICMPV6_NAMES
            name = names.get(record.icmp_type or 0, f"type {record.icmp_type}")
            if record.icmp_type in (143, 130, 131, 132):
                name = "Multicast listener " + ("report v2" if record.icmp_type == 143 else "message")
            return f"{name} (code {record.icmp_code})"
        if record.is_tunnel and record.inner_ethertype is not None and record.proto is None:
            return f"inner ethertype 0x{record.inner_ethertype:04x}"
        return record.proto or (record.notes[0] if record.notes else "")

    def _tcp_info(self, record: PacketRecord) -> str:
        if record.tcp_seq is None or record.tcp_ack is None:
            return f"{record.src_port} → {record.dst_port} [TCP header cut]"
        forward = (record.src_ip or "", record.src_port or 0, record.dst_ip or "", record.dst_port or 0)
        backward = (forward[2], forward[3], forward[0], forward[1])
        isn = self._isn.setdefault(forward, record.tcp_seq)
        seq = (record.tcp_seq - isn) % 2**32
        parts = [f"{record.src_port} → {record.dst_port} [{record.tcp_flags}]", f"Seq={seq}"]
        if record.tcp_flags and "ACK" in record.tcp_flags:
            peer_isn = self._isn.get(backward)
            ack = record.tcp_ack if peer_isn is None else (record.tcp_ack - peer_isn) % 2**32
            parts.append(f"Ack={ack}")
        parts.append(f"Win={record.tcp_window} Len={record.payload_len}")
        return " ".join(parts)
