"""The Scapy decoder: frames in, ``PacketRecord``s out.

Rule: Scapy stays inside this module. Nothing here reads files or opens sockets; the only
state is the per-capture bookkeeping a dissector needs (first timestamp, TCP initial sequence
numbers for relative numbering, the HTTP reassembler). A tunnel is recognised by the explicit
port rules this module checks itself (``tunnels.TunnelPorts``), never by Scapy's global
``bind_layers`` table, so the result does not depend on which Scapy modules some other code
imported; its header is read by ``tunnels`` (Scapy's layers only show it in the detail view).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from scapy.contrib.geneve import GENEVE
from scapy.contrib.wireguard import Wireguard
from scapy.fields import ConditionalField, ThreeBytesField, X3BytesField, XByteField
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, _ICMPv6
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import NoPayload, Packet, Padding, Raw
from scapy.utils import checksum

from flannelcap.packets.dns import DNS_PORT, dns_payload, parse_message
from flannelcap.packets.http import CLOSING_FLAGS, HttpHead, HttpReassembler, StreamKey
from flannelcap.packets.http2 import H2Segment, Http2Follower
from flannelcap.packets.info import ARP_OPS, PACKET_TYPES, InfoFormatter, tcp_flag_names
from flannelcap.packets.reader import (
    LINKTYPE_DLT_RAW,
    LINKTYPE_DLT_RAW_OPENBSD,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NAMES,
    LINKTYPE_RAW,
    Frame,
)
from flannelcap.packets.records import Layer, PacketRecord
from flannelcap.packets.tls import parse_hello
from flannelcap.packets.tunnels import (
    GENEVE_ETHERNET,
    GENEVE_IPV4,
    IPIP_PROTOCOLS,
    TunnelPorts,
    parse_geneve,
    parse_wireguard,
)
from flannelcap.packets.vxlan import DEFAULT_VXLAN_PORTS, VXLAN_FLAG_G, VXLAN_FLAG_I, VXLAN_HEADER_LEN

_RAW_IP_LINKTYPES = {LINKTYPE_RAW, LINKTYPE_DLT_RAW, LINKTYPE_DLT_RAW_OPENBSD}
_IP_PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp", 47: "gre"}


def dissect(
    frame: Frame, vxlan_ports: Iterable[int] = DEFAULT_VXLAN_PORTS, tunnels: TunnelPorts | None = None
) -> Packet:
    """Build the Scapy packet for one frame, with each tunnel decoded on its ports only.

    Args:
        frame: the frame as read from the capture.
        vxlan_ports: UDP ports (source or destination) that carry VXLAN.
        tunnels: the UDP ports of every tunnel (default: those of ``tunnels.DEFAULT_PORTS``,
            VXLAN's from ``vxlan_ports``).

    Returns:
        A Scapy packet whose UDP layer on a tunnel's port carries ``VXLAN / Ether / …``,
        ``GENEVE / Ether / …`` (or ``/ IP``), the inner ``IP`` (udp-tun) or ``Wireguard``.
    """
    packet = _link_layer(frame)
    tunnels = tunnels or TunnelPorts.of(vxlan_ports)
    udp = _outer_udp(packet)
    if udp is not None:
        data = _udp_payload(udp)
        carried = _tunnel_layer(tunnels.kind(udp.sport, udp.dport), data)
        if carried is not None:
            udp.remove_payload()
            udp.add_payload(carried)
        elif isinstance(udp.payload, VXLAN | GENEVE | Wireguard):  # Scapy's own port bindings
            udp.remove_payload()
            udp.add_payload(Raw(data))
    return packet


def _tunnel_layer(kind: str | None, data: bytes) -> Packet | None:
    """The layers a tunnel of ``kind`` makes of a UDP payload, or None (not one, or too short)."""
    if kind == "vxlan" and len(data) >= VXLAN_HEADER_LEN:
        header, inner = data[:VXLAN_HEADER_LEN], data[VXLAN_HEADER_LEN:]
        try:
            vxlan = VXLAN(header)
        except struct.error:  # flags Scapy reads as VXLAN-GPE's longer layout
            vxlan = _Rfc7348Header(header)
        vxlan.remove_payload()
        if len(inner) >= ETHER_HEADER_LEN:
            vxlan.add_payload(Ether(inner))
        elif inner:
            vxlan.add_payload(Raw(inner))
        return vxlan
    if kind == "geneve":
        read = parse_geneve(data)
        if read is None:
            return None
        geneve, inner = GENEVE(data[: read.length]), data[read.length :]
        geneve.remove_payload()
        if read.protocol == GENEVE_ETHERNET and len(inner) >= ETHER_HEADER_LEN:
            geneve.add_payload(Ether(inner))
        elif read.protocol == GENEVE_IPV4 and inner[:1] and inner[0] >> 4 == 4:
            geneve.add_payload(IP(inner))
        elif inner:
            geneve.add_payload(Raw(inner))
        return geneve
    if kind == "udp-tun" and data[:1] and data[0] >> 4 == 4:
        return IP(data)
    if kind == "wireguard" and parse_wireguard(data) is not None:
        return Wireguard(data)
    return None


ETHER_HEADER_LEN = 14


class _Rfc7348Header(VXLAN):
    """A VXLAN header read as RFC 7348 lays out its 8 bytes, whatever its flags say."""

    fields_desc = [  # noqa: RUF012 (Scapy's own class attribute)
        XByteField("flags", 0),
        X3BytesField("reserved1", 0),
        ThreeBytesField("vni", 0),
        XByteField("reserved2", 0),
    ]


def _link_layer(frame: Frame) -> Packet:
    data = frame.data
    if frame.linktype == LINKTYPE_ETHERNET:
        return Ether(data)
    if frame.linktype == LINKTYPE_LINUX_SLL:
        return CookedLinux(data)
    if frame.linktype == LINKTYPE_LINUX_SLL2:
        return CookedLinuxV2(data)
    if frame.linktype in _RAW_IP_LINKTYPES or frame.linktype in (LINKTYPE_IPV4, LINKTYPE_IPV6):
        if data[:1] and data[0] >> 4 == 6:
            return IPv6(data)
        return IP(data)
    return Raw(data)


def _outer_udp(packet: Packet) -> UDP | None:
    """The first UDP header that is not inside an ICMP error quote."""
    udp = packet.getlayer(UDP)
    return udp if isinstance(udp, UDP) else None


def _udp_payload(udp: UDP) -> bytes:
    """The datagram's payload as captured: the UDP length's worth when that much was captured
    (whatever Scapy took for padding inside it: an inner IP header claiming less than it
    carries, for one), else what there is, less the frame's padding."""
    data = bytes(udp.payload)
    if isinstance(udp.payload, Padding):
        return b""
    if udp.len is not None and udp.len >= 8 and len(data) >= udp.len - 8:
        return data[: udp.len - 8]
    padding = udp.getlayer(Padding)
    if padding is not None:
        data = data[: len(data) - len(bytes(padding))]
    return data


def udp_checksum_ok(udp: UDP) -> bool | None:
    """Whether a UDP header's checksum matches its pseudo-header and payload (RFC 768).

    Returns:
        ``None`` when there is nothing to check: checksum 0 over IPv4 (none was computed),
        or a datagram not captured whole.
    """
    ip = udp.underlayer
    data = _udp_payload(udp)
    if udp.len is None or len(data) + 8 != udp.len:
        return None
    header = struct.pack("!HHHH", udp.sport, udp.dport, udp.len, 0)
    if isinstance(ip, IP):
        if udp.chksum == 0:
            return None
        pseudo = socket.inet_aton(ip.src) + socket.inet_aton(ip.dst) + struct.pack("!BBH", 0, 17, udp.len)
    elif isinstance(ip, IPv6):
        pseudo = socket.inet_pton(socket.AF_INET6, ip.src) + socket.inet_pton(socket.AF_INET6, ip.dst)
        pseudo += struct.pack("!I3xB", udp.len, 17)
    else:
        return None
    computed = checksum(pseudo + header + data) or 0xFFFF
    return bool(computed == udp.chksum)


class Decoder:
    """Decodes the frames of one capture, in order, into ``PacketRecord``s.

    Args:
        vxlan_ports: UDP ports that carry VXLAN (default 8472 and 4789).
        detail: also fill ``PacketRecord.layers`` with every field of every layer.
        find_head: where a TCP segment's payload goes to find the HTTP head it completes
            (key, seq, payload, time in ns, whether it closes its direction → head), and a
            segment with no payload that closes its direction (FIN, RST); by default the
            decoder's own ``HttpReassembler``. The fast path passes its own, so that both
            decoders follow one HTTP state.
        http2: the follower of HTTP/2 connections (by default the decoder's own; the fast path
            passes its own, for the same reason).
    """

    def __init__(
        self,
        vxlan_ports: Iterable[int] = DEFAULT_VXLAN_PORTS,
        *,
        tunnels: TunnelPorts | None = None,
        detail: bool = False,
        find_head: Callable[[StreamKey, int, bytes, int, bool], HttpHead | None] | None = None,
        http2: Http2Follower | None = None,
    ) -> None:
        self.vxlan_ports = frozenset(vxlan_ports)
        self.tunnels = tunnels or TunnelPorts.of(self.vxlan_ports)
        self.detail = detail
        self._first_ns: int | None = None
        self._find_head = find_head or HttpReassembler().feed
        self._http2 = http2 if http2 is not None else Http2Follower()
        self._info = InfoFormatter()

    def decode(self, frame: Frame) -> PacketRecord:
        """Decode one frame. Frames must be given in capture order.

        Never raises for bad packet contents: what could not be decoded is described in
        ``PacketRecord.notes``.
        """
        if self._first_ns is None:
            self._first_ns = frame.time_ns
        fields: dict[str, Any] = {}
        notes: list[str] = []
        if frame.linktype not in LINKTYPE_NAMES:
            notes.append(f"unknown link type {frame.linktype}: not decoded")
        if len(frame.data) < frame.wire_len:
            notes.append(
                f"captured {len(frame.data)} of {frame.wire_len} bytes (snaplen): later headers may be missing"
            )
        try:
            packet = dissect(frame, self.vxlan_ports, self.tunnels)
            _Walker(packet, fields, notes).walk()
        except Exception as exc:
            notes.append(f"could not be dissected: {type(exc).__name__}: {exc}")
            packet = Raw(frame.data)
        h2 = self._h2_segment(fields)
        http = self._http_head(fields, frame.time_ns)
        if http is not None:
            fields.update(http.record_fields())
        if h2 is not None:
            fields.update(h2.record_fields())
        fields.pop("_tcp_payload", None)
        record = PacketRecord(
            number=frame.number,
            time=frame.time,
            rel_time=(frame.time_ns - self._first_ns) / 1_000_000_000,  # exact difference, one rounding
            cap_len=len(frame.data),
            wire_len=frame.wire_len,
            interface=frame.interface,
            notes=tuple(notes),
            **fields,
        )
        info = self._info.format(record, http)  # also for HTTP/2: it keeps each direction's first sequence number
        record = replace(record, info=h2.info if h2 is not None else info)
        if self.detail:
            record = replace(record, layers=layers_of(packet, record, http, h2))
        return record

    def _http_head(self, fields: dict[str, Any], time_ns: int) -> HttpHead | None:
        payload = fields.get("_tcp_payload") or b""
        closing = any(flag in CLOSING_FLAGS for flag in (fields.get("tcp_flags") or "").split(", "))
        key = _direction(fields) if payload or closing else None
        return None if key is None else self._find_head(key, fields["tcp_seq"], payload, time_ns, closing)

    def _h2_segment(self, fields: dict[str, Any]) -> H2Segment | None:
        key = _segment_key(fields)
        if key is None:
            return None
        payload = fields["_tcp_payload"][: fields["payload_len"]]
        return self._http2.feed(key, fields["tcp_seq"], payload)


def _direction(fields: dict[str, Any]) -> StreamKey | None:
    """The direction of a TCP segment (innermost addresses and ports), else None (not TCP, or
    its header was not read)."""
    if fields.get("proto") != "tcp" or "src_port" not in fields or "tcp_seq" not in fields:
        return None
    src, dst = _innermost_ips(fields)
    return (src or "", fields["src_port"], dst or "", fields["dst_port"])


def _segment_key(fields: dict[str, Any]) -> StreamKey | None:
    """The direction of a TCP segment with payload, else None."""
    return _direction(fields) if fields.get("_tcp_payload") else None


def _innermost_ips(fields: dict[str, Any]) -> tuple[str | None, str | None]:
    if fields.get("is_tunnel") and fields.get("encap") != "wireguard":
        return fields.get("inner_src_ip"), fields.get("inner_dst_ip")
    return fields.get("outer_src_ip"), fields.get("outer_dst_ip")


class _Walker:
    """Fills record fields from a dissected packet, outer headers first."""

    def __init__(self, packet: Packet, fields: dict[str, Any], notes: list[str]) -> None:
        self.packet = packet
        self.fields = fields
        self.notes = notes

    def walk(self) -> None:
        outer = self._link(self.packet, outer=True)
        layer = self._network(outer, prefix="outer_")
        carried = outer.proto if isinstance(outer, IP) else outer.nh if isinstance(outer, IPv6) else None
        if carried in IPIP_PROTOCOLS and isinstance(layer, IP | IPv6) and not self.fields.get("outer_fragment"):
            self.fields.update(outer_proto=IPIP_PROTOCOLS[carried], is_tunnel=True, encap="ipip")
            self._transport(self._network(layer, prefix="inner_"))
            return
        self.fields["is_tunnel"] = False
        if isinstance(layer, UDP) and isinstance(layer.payload, GENEVE | IP | Wireguard):
            self._outer_udp(layer)
            self.fields["is_tunnel"] = True
            if isinstance(layer.payload, Wireguard):
                self._wireguard(layer)
            elif isinstance(layer.payload, GENEVE):
                self._geneve(layer)
            else:
                self.fields["encap"] = "udp-tun"
                self._transport(self._network(layer.payload, prefix="inner_"))
            return
        if isinstance(layer, UDP) and isinstance(layer.payload, VXLAN):
            self._outer_udp(layer)
            self.fields["is_tunnel"] = True
            self._vxlan(layer.payload)
            if not isinstance(layer.payload.payload, Ether):
                self.notes.append(
                    f"VXLAN payload holds {len(_udp_payload(layer)) - VXLAN_HEADER_LEN} bytes after its header, "
                    f"too few for an inner Ethernet header ({ETHER_HEADER_LEN})"
                )
                return
            inner = self._link(layer.payload.payload, outer=False)
            self._transport(self._network(inner, prefix="inner_"))
        else:
            udp = layer if isinstance(layer, UDP) else None
            if udp is not None and self._vxlan_port_too_short(udp):
                self.notes.append(
                    f"UDP {udp.dport} payload is {len(_udp_payload(udp))} bytes, shorter than a VXLAN header (8)"
                )
            self._transport(layer)
            for key in ("proto", "src_port", "dst_port"):
                if key in self.fields:
                    self.fields["outer_" + key] = self.fields[key]

    def _outer_udp(self, udp: UDP) -> None:
        self.fields.update(
            outer_proto="udp",
            outer_src_port=udp.sport,
            outer_dst_port=udp.dport,
            outer_udp_len=udp.len,
            outer_udp_checksum=udp.chksum,
            outer_udp_checksum_ok=udp_checksum_ok(udp),
        )

    def _geneve(self, udp: UDP) -> None:
        header = parse_geneve(_udp_payload(udp))
        assert header is not None  # dissect made the layer from it
        self.fields.update(
            encap="geneve",
            vni=header.vni,
            geneve_flags=header.flags,
            geneve_protocol=header.protocol,
            geneve_options=header.options_text(),
        )
        if header.version != 0:
            self.notes.append(f"Geneve version {header.version} (RFC 8926 knows 0): read as version 0")
        if not header.reserved_ok:
            self.notes.append("Geneve reserved bits set (RFC 8926 says they must be zero)")
        if not header.options_whole:
            self.notes.append("Geneve options overrun their length")
        inner = udp.payload.payload
        if isinstance(inner, Ether):
            inner = self._link(inner, outer=False)
        elif not isinstance(inner, IP):
            self.notes.append(f"Geneve protocol 0x{header.protocol:04x}: the payload is not decoded")
            return
        self._transport(self._network(inner, prefix="inner_"))

    def _wireguard(self, udp: UDP) -> None:
        header = parse_wireguard(_udp_payload(udp))
        assert header is not None  # dissect made the layer from it
        self.fields.update(
            encap="wireguard", wg_type=header.message_type, wg_sender=header.sender, wg_receiver=header.receiver
        )
        self._transport(udp)
        for key in ("proto", "src_port", "dst_port"):
            self.fields["outer_" + key] = self.fields[key]

    @staticmethod
    def _vxlan_port_too_short(udp: UDP) -> bool:
        return (
            bool(DEFAULT_VXLAN_PORTS.intersection((udp.sport, udp.dport))) and len(_udp_payload(udp)) < VXLAN_HEADER_LEN
        )

    def _link(self, layer: Packet, *, outer: bool) -> Packet:
        prefix = "outer_" if outer else "inner_"
        if isinstance(layer, Ether):
            self.fields[prefix + "src_mac"] = layer.src
            self.fields[prefix + "dst_mac"] = layer.dst
            if not outer:
                self.fields["inner_ethertype"] = layer.type
            layer = layer.payload
        elif isinstance(layer, CookedLinux | CookedLinuxV2):
            if outer:
                self.fields["packet_type"] = PACKET_TYPES.get(layer.pkttype, str(layer.pkttype))
                if isinstance(layer, CookedLinuxV2):
                    self.fields["ifindex"] = layer.ifindex & 0xFFFFFFFF  # Scapy reads it signed
            if outer and layer.lladdrlen == 6:
                self.fields["outer_src_mac"] = ":".join(f"{b:02x}" for b in bytes(layer.src)[:6])
            layer = layer.payload
        while isinstance(layer, Dot1Q):
            if outer and "vlan" not in self.fields:
                self.fields["vlan"] = layer.vlan
            if not outer:
                self.fields["inner_ethertype"] = layer.type
            layer = layer.payload
        return layer

    def _network(self, layer: Packet, *, prefix: str) -> Packet:
        if isinstance(layer, IP):
            self.fields[prefix + "src_ip"] = layer.src
            self.fields[prefix + "dst_ip"] = layer.dst
            self.fields[prefix + "ttl"] = layer.ttl
            self.fields[prefix + "ip_len"] = layer.len
            self.fields["ip_id"] = layer.id
            if prefix == "outer_":
                self.fields["outer_ip_version"] = 4
            if layer.ihl is not None and layer.ihl < 5:
                self.notes.append(f"{prefix}IPv4 header length {layer.ihl * 4} < 20: not decoded further")
                return NoPayload()
            if layer.frag or layer.flags.MF:
                if prefix == "outer_":
                    self.fields["outer_fragment"] = True
                self.notes.append(
                    f"{prefix.rstrip('_')} IPv4 fragment (offset {layer.frag * 8}"
                    f"{', more follow' if layer.flags.MF else ''}): not reassembled"
                )
                if layer.frag:
                    self.fields.setdefault(
                        "proto" if prefix == "inner_" else "outer_proto",
                        _IP_PROTO_NAMES.get(layer.proto, str(layer.proto)),
                    )
                    return NoPayload()
            if layer.len == 0:
                self.notes.append(f"{prefix.rstrip('_')} IPv4 total length 0 (segmentation offload)")
            return layer.payload
        if isinstance(layer, IPv6):
            self.fields[prefix + "src_ip"] = layer.src
            self.fields[prefix + "dst_ip"] = layer.dst
            self.fields[prefix + "ttl"] = layer.hlim
            self.fields[prefix + "ip_len"] = layer.plen + 40
            self.fields.pop("ip_id", None)  # the innermost IP header has none
            if prefix == "outer_":
                self.fields["outer_ip_version"] = 6
            payload = layer.payload
            while str(payload.name).startswith("IPv6 Extension Header"):
                payload = payload.payload
            return payload
        if isinstance(layer, ARP):
            return layer
        return layer

    def _vxlan(self, vxlan: VXLAN) -> None:
        header = bytes(vxlan)[:VXLAN_HEADER_LEN]
        flags = header[0]
        vni = int.from_bytes(header[4:7], "big")
        self.fields.update(is_vxlan=True, vni=vni, vxlan_flags=flags, encap="vxlan")
        if flags & VXLAN_FLAG_G:
            self.fields.update(encap="vxlan-gbp", vxlan_gbp=struct.unpack("!H", header[2:4])[0], gbp_flags=header[1])
        if not flags & VXLAN_FLAG_I:
            self.notes.append("VXLAN I flag not set: the VNI is not valid (RFC 7348 §5)")
        reserved = (
            (flags & ~(VXLAN_FLAG_I | VXLAN_FLAG_G)) or header[7] or (not flags & VXLAN_FLAG_G and any(header[1:4]))
        )
        if reserved:
            self.notes.append("VXLAN reserved bits set (RFC 7348 says they must be zero)")

    def _dns(self, layer: Packet, payload: bytes, *, over_tcp: bool) -> None:
        """The DNS fields of a segment or datagram from or to port 53."""
        if DNS_PORT not in (layer.sport, layer.dport):
            return
        message = parse_message(dns_payload(payload, over_tcp))
        if message is not None:
            self.fields.update(message.record_fields())

    def _transport(self, layer: Packet) -> None:
        fields = self.fields
        if isinstance(layer, TCP):
            payload = _payload_bytes(layer)
            fields.update(
                proto="tcp",
                src_port=layer.sport,
                dst_port=layer.dport,
                tcp_flags=tcp_flag_names(int(layer.flags)),
                tcp_seq=layer.seq,
                tcp_ack=layer.ack,
                tcp_window=layer.window,
                payload_len=_segment_len(layer, len(payload)),
                _tcp_payload=payload,
            )
            fields["payload_hash"] = payload_hash(payload, fields["payload_len"])
            self._dns(layer, payload[: fields["payload_len"]], over_tcp=True)
            hello = parse_hello(payload[: fields["payload_len"]])
            if hello is not None:
                fields.update(hello.record_fields())
            if layer.dataofs is not None and layer.dataofs < 5:
                self.notes.append(f"TCP header length {layer.dataofs * 4} < 20")
        elif isinstance(layer, UDP):
            fields.update(
                proto="udp",
                src_port=layer.sport,
                dst_port=layer.dport,
                payload_len=max(0, (layer.len or 8) - 8),
            )
            payload = _payload_bytes(layer)
            fields["payload_hash"] = payload_hash(payload, fields["payload_len"])
            self._dns(layer, payload[: fields["payload_len"]], over_tcp=False)
        elif isinstance(layer, ICMP):
            fields.update(proto="icmp", icmp_type=layer.type, icmp_code=layer.code)
            fields["payload_hash"] = payload_hash(_icmp_rest(layer), None)
        elif isinstance(layer, _ICMPv6):
            fields.update(
                proto="icmpv6",
                icmp_type=getattr(layer, "type", None),
                icmp_code=getattr(layer, "code", None),
            )
        elif isinstance(layer, ARP):
            addresses = {
                "arp_sender_mac": layer.hwsrc,
                "arp_sender_ip": layer.psrc,
                "arp_target_mac": layer.hwdst,
                "arp_target_ip": layer.pdst,
            }
            odd = [name for name, value in addresses.items() if not isinstance(value, str)]
            if odd:  # Scapy gives bytes for addresses that are not Ethernet or IPv4
                self.notes.append(
                    f"ARP for hardware type {layer.hwtype} ({layer.hwlen}-byte addresses), protocol type "
                    f"0x{layer.ptype:04x} ({layer.plen}-byte addresses): not Ethernet/IPv4, addresses not shown"
                )
            fields.update(
                proto="arp",
                arp_op=ARP_OPS.get(layer.op, str(layer.op)),
                **{name: None if name in odd else value for name, value in addresses.items()},
            )
        elif isinstance(layer, Raw) and isinstance(layer.underlayer, IP | IPv6):
            self._cut_transport(layer)
        elif isinstance(layer, Raw | Padding | NoPayload):
            return
        else:
            fields.setdefault("proto", str(layer.name).lower())

    def _cut_transport(self, raw: Raw) -> None:
        """A transport header the capture cut short: name it, and keep the ports if present."""
        ip = raw.underlayer
        number = ip.proto if isinstance(ip, IP) else getattr(ip, "nh", -1)
        name = _IP_PROTO_NAMES.get(int(number))
        if name is None:
            return
        self.fields["proto"] = name
        if name in ("tcp", "udp") and len(raw.load) >= 4:
            self.fields["src_port"], self.fields["dst_port"] = struct.unpack("!HH", raw.load[:4])
        self.notes.append(f"{name.upper()} header incomplete ({len(raw.load)} bytes captured)")


def _payload_bytes(layer: Packet) -> bytes:
    """The captured payload of a transport layer, without Ethernet padding."""
    payload = layer.payload
    data = bytes(payload)
    padding = payload.getlayer(Padding) if not isinstance(payload, NoPayload) else None
    if padding is not None:
        data = data[: len(data) - len(bytes(padding))]
    return data


PAYLOAD_HASH_BYTES = 32


def payload_hash(payload: bytes, length: int | None) -> int:
    """The ``payload_hash`` field: FNV-1a (32 bits) of the first ``PAYLOAD_HASH_BYTES`` of the
    captured payload (and of its first ``length`` bytes, the length its headers give)."""
    count = PAYLOAD_HASH_BYTES if length is None else min(PAYLOAD_HASH_BYTES, max(length, 0))
    h = 2166136261
    for byte in payload[:count]:
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h


def _icmp_rest(icmp: ICMP) -> bytes:
    """An ICMPv4 message from its identifier on (after type, code and checksum), as captured
    and as long as its IP header says."""
    data = bytes(icmp)[4:]
    ip = icmp.underlayer
    if isinstance(ip, IP) and ip.len and ip.ihl:
        data = data[: max(0, int(ip.len) - int(ip.ihl) * 4 - 4)]
    return data


def _segment_len(tcp: TCP, captured: int) -> int:
    """TCP payload length from the IP header (as on the wire), else as captured."""
    header = int(tcp.dataofs or 5) * 4
    ip = tcp.underlayer
    while ip is not None and not isinstance(ip, IP | IPv6):
        ip = ip.underlayer  # IPv6 extension headers
    if isinstance(ip, IP) and ip.len and ip.ihl:
        return max(0, int(ip.len) - int(ip.ihl) * 4 - header)
    if isinstance(ip, IPv6) and ip.plen:
        extensions = len(bytes(ip.payload)) - len(bytes(tcp))
        return max(0, int(ip.plen) - extensions - header)
    return captured


def layers_of(
    packet: Packet, record: PacketRecord, http: HttpHead | None, h2: H2Segment | None = None
) -> tuple[Layer, ...]:
    """Every field of every layer, formatted like Wireshark's detail pane."""
    layers = [
        Layer(
            name="Frame",
            fields=(
                ("number", str(record.number)),
                ("time", f"{record.time:.6f}"),
                ("rel_time", f"{record.rel_time:.6f}"),
                ("cap_len", str(record.cap_len)),
                ("wire_len", str(record.wire_len)),
                ("interface", str(record.interface)),
            ),
        )
    ]
    layer: Packet = packet
    while not isinstance(layer, NoPayload):
        if isinstance(layer, Raw | Padding):
            layers.append(Layer(name=layer.name, fields=(("length", str(len(layer.load))),)))
            break
        shown = []
        for fld in layer.fields_desc:
            if isinstance(fld, ConditionalField) and not fld._evalcond(layer):
                continue
            value = layer.getfieldval(fld.name)
            shown.append((fld.name, str(fld.i2repr(layer, value))))
        name = str(layer.name) if not isinstance(layer, VXLAN) else "VXLAN (RFC 7348)"
        layers.append(Layer(name=name, fields=tuple(shown)))
        layer = layer.payload
    if http is not None:
        http_fields = [("start_line", http.start_line)]
        if http.host:
            http_fields.append(("host", http.host))
        if http.content_length is not None:
            http_fields.append(("content_length", str(http.content_length)))
        if http.forwarded_for:
            http_fields.append(("x_forwarded_for", http.forwarded_for))
        if http.forwarded_server:
            http_fields.append(("x_forwarded_server", http.forwarded_server))
        layers.append(Layer(name="HTTP", fields=tuple(http_fields)))
    if h2 is not None:
        h2_fields = [("frames", h2.info), ("stream", str(h2.stream))]
        heads: tuple[tuple[str, object], ...] = (
            ("method", h2.method), ("path", h2.path), ("authority", h2.host), ("status", h2.status)
        )  # fmt: skip
        h2_fields += [(name, str(value)) for name, value in heads if value is not None]
        if h2.content_type:
            h2_fields.append(("content_type", h2.content_type))
        if h2.grpc_status is not None:
            h2_fields.append(("grpc_status", str(h2.grpc_status)))
        layers.append(Layer(name="HTTP/2", fields=tuple(h2_fields)))
    if record.notes:
        layers.append(Layer(name="Notes", fields=tuple(("note", n) for n in record.notes)))
    return tuple(layers)
