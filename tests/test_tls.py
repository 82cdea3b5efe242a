"""TLS hellos inside the tunnel: the parser (Python and the C kernel's, held together on the
lab's real hellos and on damaged copies of them), and the lab's recording of two ``openssl``
handshakes between pods (``sample_pcaps/services/tls``), checked against what the client said."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import TCP
from scapy.utils import rdpcap

import flannelcap
from flannelcap.cli import main
from flannelcap.packets import kernel as _kernel
from flannelcap.packets.tls import CLIENT_HELLO, SERVER_HELLO, is_grease, parse_hello

TLS = SAMPLES / "services" / "tls"
ENTRY = next(
    e for e in map(json.loads, (SAMPLES / "services" / "manifest.jsonl").read_text().splitlines()) if e["name"] == "tls"
)
CIPHERS = {"TLS_AES_256_GCM_SHA384": 0x1302, "ECDHE-ECDSA-AES256-GCM-SHA384": 0xC02C}  # OpenSSL's names


def _hellos() -> list[bytes]:
    """The TCP payloads of the recording that begin a handshake record (as captured)."""
    payloads = []
    for packet in rdpcap(str(TLS / ENTRY["files"][0])):
        segment = packet.getlayer(TCP)
        data = bytes(segment.payload) if segment is not None else b""
        if data[:1] == b"\x16" and data not in payloads:
            payloads.append(data)
    return payloads


HELLOS = _hellos()


def _agree(payload: bytes) -> None:
    python = parse_hello(payload)
    parts, text = _kernel.tls_parts(payload, np.array([0, len(payload)], dtype=np.int64))
    row = parts[0].tolist()

    def cut(at: int) -> str | None:
        return None if row[at] < 0 else text[row[at] : row[at + 1]].decode("latin-1")

    if python is None:
        assert row == [-1] * 7
        return
    cipher = -1 if python.cipher is None else python.cipher
    assert row[:3] == [python.kind, python.version, cipher]
    assert (cut(3), cut(5)) == (python.sni, python.alpn)


def test_the_recorded_hellos() -> None:
    kinds = [h[5] for h in HELLOS]
    assert kinds.count(CLIENT_HELLO) == 2 and kinds.count(SERVER_HELLO) == 2
    for payload in HELLOS:
        _agree(payload)
    assert not is_grease(0x0303) and is_grease(0x0A0A) and is_grease(0xFAFA) and not is_grease(0x0A1A)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(range(4)),
    st.integers(0, 600),
    st.lists(st.tuples(st.integers(0, 599), st.integers(0, 255)), max_size=4),
)
def test_the_c_kernel_reads_damaged_hellos_as_the_python_parser(
    which: int, cut: int, flips: list[tuple[int, int]]
) -> None:
    payload = bytearray(HELLOS[which % len(HELLOS)])
    for at, value in flips:
        if at < len(payload):
            payload[at] = value
    _agree(bytes(payload[:cut]))


def test_sni_alpn_versions_and_ciphers_as_openssl_said() -> None:
    packets = flannelcap.read(TLS / ENTRY["files"][0], topology=TLS / "tables").packets
    hellos = packets[packets["tls_handshake"].notna()].drop_duplicates(["tls_handshake", "tls_version", "tls_cipher"])
    clients = hellos[hellos["tls_handshake"] == "Client Hello"]
    servers = hellos[hellos["tls_handshake"] == "Server Hello"]
    assert set(clients["tls_sni"]) == {ENTRY["sni"]}
    assert set(clients["tls_alpn"]) == {"h2,http/1.1"}
    said = ENTRY["sessions"]
    assert servers["tls_version"].tolist() == [s["version"].replace("TLSv", "TLS ") for s in said]
    assert servers["tls_cipher"].tolist() == [CIPHERS[s["cipher"]] for s in said]
    # TLS 1.2 sends the server's ALPN choice in clear; TLS 1.3 encrypts it.
    assert servers["tls_alpn"].astype(object).where(servers["tls_alpn"].notna(), None).tolist() == [None, "h2"]
    assert str(clients["src_pod"].iloc[0]) == "busybox" and str(clients["dst_pod"].iloc[0]) == "nginx"


def test_info_names_the_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", str(TLS / ENTRY["files"][0])]) == 0
    out = capsys.readouterr().out
    assert f"Client Hello (SNI={ENTRY['sni']})" in out and "Server Hello" in out
