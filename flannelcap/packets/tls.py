"""TLS hellos (RFC 8446, RFC 5246): what a ClientHello and a ServerHello show in clear — the
server name (SNI), the ALPN protocols, the version, the chosen cipher suite.

Rule: pure, bytes in, a ``TlsHello`` out; no Scapy, no I/O. The C kernel's ``tls_parts`` does
the same for the fast path; the agreement tests hold the two together. A TCP segment is a
hello when it begins a handshake record (type 22, version 3.x) whose first message is a
ClientHello (1) or a ServerHello (2). Only what the segment holds is read (a hello split
across segments keeps what its first segment shows); a field that would run past the record
or the segment ends the reading, and what was read before it stays.
"""

from __future__ import annotations

from typing import NamedTuple

HANDSHAKE_RECORD = 22
CLIENT_HELLO, SERVER_HELLO = 1, 2
HELLO_NAMES = {CLIENT_HELLO: "Client Hello", SERVER_HELLO: "Server Hello"}
VERSION_NAMES = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}
SERVER_NAME, ALPN, SUPPORTED_VERSIONS = 0, 16, 43


def version_name(version: int) -> str:
    """``TLS 1.3`` and the like, or the number in hex."""
    return VERSION_NAMES.get(version, f"0x{version:04x}")


def is_grease(value: int) -> bool:
    """RFC 8701's reserved values (0x0a0a, 0x1a1a … 0xfafa), which say nothing."""
    return value & 0x0F0F == 0x0A0A and value >> 8 == value & 0xFF


class TlsHello(NamedTuple):
    """What flannelcap keeps of a hello."""

    kind: int  # CLIENT_HELLO or SERVER_HELLO
    version: int  # the highest supported_versions entry (client) or the chosen one (server), else the legacy field
    sni: str | None = None
    alpn: str | None = None  # the protocols, comma-separated
    cipher: int | None = None  # the server's chosen suite

    def record_fields(self) -> dict[str, object]:
        """The hello as ``PacketRecord`` fields (``tls_handshake`` … ``tls_cipher``)."""
        return {
            "tls_handshake": HELLO_NAMES[self.kind],
            "tls_version": version_name(self.version),
            "tls_sni": self.sni,
            "tls_alpn": self.alpn,
            "tls_cipher": self.cipher,
        }


def looks_like_hello(payload: bytes) -> bool:
    """A TCP payload that begins a handshake record holding a ClientHello or ServerHello."""
    return len(payload) >= 6 and payload[0] == HANDSHAKE_RECORD and payload[1] == 3 and payload[5] in HELLO_NAMES


def parse_hello(payload: bytes) -> TlsHello | None:
    """Parse the hello a TCP payload begins with (see ``looks_like_hello``), or None."""
    if not looks_like_hello(payload):
        return None
    end = min(len(payload), 5 + int.from_bytes(payload[3:5], "big"))
    kind = payload[5]
    at = 9  # after the record header (5) and the handshake header (4)
    if at + 2 > end:
        return TlsHello(kind, int.from_bytes(payload[1:3], "big"))
    hello = TlsHello(kind, int.from_bytes(payload[at : at + 2], "big"))
    at += 2 + 32  # version, random
    if at + 1 > end:
        return hello
    at += 1 + payload[at]  # session id
    if kind == CLIENT_HELLO:
        if at + 2 > end:
            return hello
        at += 2 + int.from_bytes(payload[at : at + 2], "big")  # cipher suites
    else:
        if at + 2 > end:
            return hello
        hello = hello._replace(cipher=int.from_bytes(payload[at : at + 2], "big"))
        at += 2
    if at + 1 > end:
        return hello
    at += 1 + (payload[at] if kind == CLIENT_HELLO else 0)  # compression methods (the server's: one byte)
    if at + 2 > end:
        return hello
    extensions_end = min(end, at + 2 + int.from_bytes(payload[at : at + 2], "big"))
    at += 2
    while at + 4 <= extensions_end:
        kind_of, size = int.from_bytes(payload[at : at + 2], "big"), int.from_bytes(payload[at + 2 : at + 4], "big")
        data = at + 4
        if data + size > extensions_end:
            break
        hello = _extension(hello, kind_of, payload[data : data + size])
        at = data + size
    return hello


def _extension(hello: TlsHello, kind: int, data: bytes) -> TlsHello:
    if kind == SERVER_NAME and len(data) >= 5 and data[2] == 0:
        size = int.from_bytes(data[3:5], "big")
        if 5 + size <= len(data):
            return hello._replace(sni=data[5 : 5 + size].decode("latin-1"))
    elif kind == ALPN and len(data) >= 2:
        names, at = [], 2
        end = min(len(data), 2 + int.from_bytes(data[:2], "big"))
        while at < end and at + 1 + data[at] <= end:
            names.append(data[at + 1 : at + 1 + data[at]].decode("latin-1"))
            at += 1 + data[at]
        if names:
            return hello._replace(alpn=",".join(names))
    elif kind == SUPPORTED_VERSIONS and hello.kind == SERVER_HELLO and len(data) == 2:
        return hello._replace(version=int.from_bytes(data, "big"))
    elif kind == SUPPORTED_VERSIONS and hello.kind == CLIENT_HELLO and len(data) >= 1:
        offered = [int.from_bytes(data[i : i + 2], "big") for i in range(1, min(len(data), 1 + data[0]) - 1, 2)]
        versions = [v for v in offered if not is_grease(v)]
        if versions:
            return hello._replace(version=max(versions))
    return hello
