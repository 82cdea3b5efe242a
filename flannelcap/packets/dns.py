"""DNS messages (RFC 1035): the header, the first question, and the answers' addresses, CNAMEs
and smallest TTL — what flannelcap shows of each DNS packet.

Rule: pure, bytes in, a ``DnsMessage`` out; no Scapy, no I/O. The C kernel's ``dns_parts``
does the same in compiled code for the fast path; the agreement tests hold the two together.
Names are followed through compression pointers (at most ``MAX_POINTERS``, never forwards
into a loop) and printed as Wireshark prints them: labels joined by dots, ``<Root>`` for the
root. A message too short for its header is not DNS; a damaged question or answer section
leaves what could not be read missing, and the header still counts.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

HEADER_BYTES = 12
MAX_POINTERS = 64
MAX_ANSWERS = 64  # answers read per message (their addresses, CNAMEs and TTLs)
DNS_PORT = 53

TYPE_NAMES = {
    1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 13: "HINFO", 15: "MX", 16: "TXT", 28: "AAAA",
    33: "SRV", 35: "NAPTR", 39: "DNAME", 41: "OPT", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY",
    64: "SVCB", 65: "HTTPS", 252: "AXFR", 255: "ANY", 257: "CAA",
}  # fmt: skip
RCODE_NAMES = {0: "No error", 1: "Format error", 2: "Server failure", 3: "No such name", 4: "Not implemented",
               5: "Refused"}  # fmt: skip
OPCODE_NAMES = {0: "Standard query", 1: "Inverse query", 2: "Server status request", 4: "Zone change notification",
                5: "Dynamic update"}  # fmt: skip


def type_name(number: int) -> str:
    """A record type's mnemonic (``A``, ``AAAA``…), or ``TYPE<n>`` as RFC 3597 writes unknown ones."""
    return TYPE_NAMES.get(number, f"TYPE{number}")


class DnsMessage(NamedTuple):
    """What flannelcap keeps of one DNS message."""

    id: int
    flags: int
    questions: int
    answers: int
    qname: str | None = None
    qtype: int | None = None
    addresses: str | None = None  # the A and AAAA answers, comma-separated, in order
    cnames: str | None = None  # the CNAME answers' targets, comma-separated
    ttl: int | None = None  # the smallest TTL of the answers read

    @property
    def is_response(self) -> bool:
        """The QR bit."""
        return bool(self.flags & 0x8000)

    @property
    def opcode(self) -> int:
        """The header's opcode (0: a standard query)."""
        return (self.flags >> 11) & 0xF

    @property
    def rcode(self) -> int:
        """The response code (3: NXDOMAIN)."""
        return self.flags & 0xF

    def record_fields(self) -> dict[str, object]:
        """The message as ``PacketRecord`` fields (``dns_id`` … ``dns_ttl``)."""
        return {
            "dns_id": self.id,
            "dns_response": self.is_response,
            "dns_opcode": self.opcode,
            "dns_rcode": self.rcode,
            "dns_flags": self.flags,
            "dns_qname": self.qname,
            "dns_qtype": type_name(self.qtype) if self.qtype is not None else None,
            "dns_answers": self.answers,
            "dns_addresses": self.addresses,
            "dns_cnames": self.cnames,
            "dns_ttl": self.ttl,
        }


def read_name(message: bytes, at: int) -> tuple[str, int] | None:
    """The name at ``at`` and the offset just after it (after its first pointer, if any), or
    None where it runs past the message, loops, or is longer than 255 bytes."""
    labels: list[str] = []
    end: int | None = None
    hops = 0
    length = 0
    while True:
        if at >= len(message):
            return None
        size = message[at]
        if size == 0:
            break
        if size & 0xC0 == 0xC0:
            if at + 1 >= len(message) or hops >= MAX_POINTERS:
                return None
            if end is None:
                end = at + 2
            target = ((size & 0x3F) << 8) | message[at + 1]
            if target >= at:  # pointers point backwards; anything else may loop
                return None
            at, hops = target, hops + 1
            continue
        if size & 0xC0:
            return None  # the extended label types of RFC 6891 are not names to show
        label = message[at + 1 : at + 1 + size]
        if len(label) < size:
            return None
        length += size + 1
        if length > 255:
            return None
        labels.append(label.decode("latin-1"))
        at += 1 + size
    return (".".join(labels) if labels else "<Root>"), (end if end is not None else at + 1)


def parse_message(message: bytes) -> DnsMessage | None:
    """Parse one DNS message (without TCP's length prefix).

    Returns:
        The message, or None when it is shorter than a DNS header.
    """
    if len(message) < HEADER_BYTES:
        return None
    ident = int.from_bytes(message[0:2], "big")
    flags = int.from_bytes(message[2:4], "big")
    questions = int.from_bytes(message[4:6], "big")
    answers = int.from_bytes(message[6:8], "big")
    head = DnsMessage(ident, flags, questions, answers)
    at = HEADER_BYTES
    if not questions:
        return head
    name = read_name(message, at)
    if name is None or name[1] + 4 > len(message):
        return head
    qname, at = name
    qtype = int.from_bytes(message[at : at + 2], "big")
    at += 4
    for _ in range(questions - 1):  # skip the other questions
        other = read_name(message, at)
        if other is None or other[1] + 4 > len(message):
            return head._replace(qname=qname, qtype=qtype)
        at = other[1] + 4
    addresses: list[str] = []
    cnames: list[str] = []
    ttl: int | None = None
    for _ in range(min(answers, MAX_ANSWERS)):
        owner = read_name(message, at)
        if owner is None or owner[1] + 10 > len(message):
            break
        at = owner[1]
        rtype = int.from_bytes(message[at : at + 2], "big")
        rttl = int.from_bytes(message[at + 4 : at + 8], "big")
        size = int.from_bytes(message[at + 8 : at + 10], "big")
        data = at + 10
        if data + size > len(message):
            break
        ttl = rttl if ttl is None else min(ttl, rttl)
        if rtype == 1 and size == 4:
            addresses.append(str(ipaddress.IPv4Address(message[data : data + 4])))
        elif rtype == 28 and size == 16:
            addresses.append(str(ipaddress.IPv6Address(message[data : data + 16])))
        elif rtype == 5:
            target = read_name(message, data)
            if target is not None:
                cnames.append(target[0])
        at = data + size
    return head._replace(
        qname=qname,
        qtype=qtype,
        addresses=",".join(addresses) or None,
        cnames=",".join(cnames) or None,
        ttl=ttl,
    )


def dns_payload(payload: bytes, over_tcp: bool) -> bytes:
    """The DNS message in a UDP payload, or in a TCP segment after its 2-byte length (as much
    of it as the segment holds)."""
    if not over_tcp:
        return payload
    if len(payload) < 2:
        return b""
    return payload[2 : 2 + int.from_bytes(payload[:2], "big")]
