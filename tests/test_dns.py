"""DNS inside the tunnel: the parser (Python and the C kernel's, held together on arbitrary
bytes), and the lab's recordings of pods resolving through the kube-dns ClusterIP
(``sample_pcaps/services/dns*``): the ndots search expansion, and a lost answer asked again
after glibc's 5 seconds — each checked against what the lookups themselves saw."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st
from pcapdata import POD_A, POD_B, VTEP_A, VTEP_B, inner_tcp, pcap, vxlan_frame
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

import flannelcap
from flannelcap.cli import main
from flannelcap.lab._dns_server import answer
from flannelcap.packets import kernel as _kernel
from flannelcap.packets.dns import dns_payload, parse_message, read_name

SERVICES = SAMPLES / "services"
ENTRIES = {e["name"]: e for e in map(json.loads, (SERVICES / "manifest.jsonl").read_text().splitlines())}


def _name(text: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in text.split(".") if p) + b"\0"


def _query(ident: int, name: str, qtype: int = 1) -> bytes:
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + _name(name) + struct.pack("!HH", qtype, 1)


def _in_c(message: bytes) -> tuple[list[int], dict[str, str | None]]:
    parts, text = _kernel.dns_parts(message, np.array([0, len(message)], dtype=np.int64))
    row = parts[0].tolist()

    def cut(at: int) -> str | None:
        return None if row[at] < 0 else text[row[at] : row[at + 1]].decode("latin-1")

    return row[:6], {"qname": cut(6), "addresses": cut(8), "cnames": cut(10)}


def _agree(message: bytes) -> None:
    """The C kernel reads ``message`` exactly as dns.parse_message does."""
    python = parse_message(message)
    ints, texts = _in_c(message)
    if python is None:
        assert ints == [-1] * 6 and set(texts.values()) == {None}
        return
    expected = [python.id, python.flags, python.questions, python.answers]
    expected += [-1 if python.qtype is None else python.qtype, -1 if python.ttl is None else python.ttl]
    assert ints == expected
    assert texts == {"qname": python.qname, "addresses": python.addresses, "cnames": python.cnames}


def test_a_response_with_compressed_names() -> None:
    query = _query(0x1A2B, "web.default.svc.cluster.local")
    zone = {"services": {"web.default.svc.cluster.local": "10.43.71.110"}, "upstream": {}}
    response = answer(query, zone)
    assert response is not None
    cname = struct.pack("!HHHIH", 0xC00C, 5, 1, 30, 2) + b"\xc0\x0c"  # a CNAME pointing at the question
    aaaa = struct.pack("!HHHIH", 0xC00C, 28, 1, 7, 16) + bytes.fromhex("fd000000000000000000000000000001")
    more = response[:6] + struct.pack("!H", 3) + response[8:] + cname + aaaa
    message = parse_message(more)
    assert message is not None
    assert (message.id, message.is_response, message.rcode, message.answers) == (0x1A2B, True, 0, 3)
    assert (message.qname, message.qtype) == ("web.default.svc.cluster.local", 1)
    assert message.addresses == "10.43.71.110,fd00::1" and message.cnames == "web.default.svc.cluster.local"
    assert message.ttl == 5  # the smallest of 5, 30 and 7
    _agree(more)


def test_nxdomain_root_and_damage() -> None:
    nx = answer(_query(7, "nothere.cluster.local", 28), {"services": {}, "upstream": {}})
    assert nx is not None
    message = parse_message(nx)
    assert message is not None and (message.rcode, message.qtype, message.answers) == (3, 28, 0)
    assert parse_message(_query(9, ".", 2)) is not None and parse_message(_query(9, ".", 2)).qname == "<Root>"  # type: ignore[union-attr]
    assert parse_message(b"\x00\x01\x00") is None  # shorter than a header: not DNS
    loop = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c" + b"\0\1\0\1"  # a pointer to itself
    assert read_name(loop, 12) is None
    damaged = parse_message(loop)
    assert damaged is not None and damaged.qname is None and damaged.id == 1  # the header still counts
    for message in (nx, _query(9, ".", 2), b"\x00\x01\x00", loop, _query(1, "a" * 63 + "." + "b" * 63)):
        _agree(message)
    assert dns_payload(b"\x00\x05hello!", over_tcp=True) == b"hello"
    assert dns_payload(b"\x00", over_tcp=True) == b""


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=80),
        st.builds(
            lambda base, cut, flips: _mutated(base, cut, flips),
            st.sampled_from(["web.default.svc.cluster.local", "example.com", "a.b"]),
            st.integers(0, 120),
            st.lists(st.tuples(st.integers(0, 119), st.integers(0, 255)), max_size=4),
        ),
    )
)
def test_the_c_kernel_reads_any_bytes_as_the_python_parser(message: bytes) -> None:
    _agree(message)


def _mutated(name: str, cut: int, flips: list[tuple[int, int]]) -> bytes:
    zone = {"services": {name: "10.43.71.110"}, "upstream": {}}
    response = bytearray(answer(_query(0x77, name), zone) or b"")
    for at, value in flips:
        if at < len(response):
            response[at] = value
    return bytes(response[:cut])


# -- the recordings --------------------------------------------------------------------


def _lookups(name: str) -> tuple[flannelcap.Capture, object]:
    directory = SERVICES / name
    capture = flannelcap.read(directory / ENTRIES[name]["files"][0], topology=directory / "tables")
    return capture, capture.dns()


def test_ndots_expansion_before_an_outside_name() -> None:
    entry = ENTRIES["dns"]
    capture, table = _lookups("dns")
    said = {lookup["name"]: lookup for lookup in entry["lookups"]}
    web = table[table["name"] == "web.default.svc.cluster.local"].iloc[0]
    assert web["addresses"] == said["web"]["address"] == "10.43.71.110" and web["rcode"] == 0
    assert web["client_pod"] == "default/busybox" and web["server_ip"] == entry["cluster_ip"]
    assert web["server_pod"].startswith("kube-system/coredns-")  # the copy after kube-proxy's DNAT
    expanded = table[table["name"].str.startswith("example.com")]
    assert expanded["name"].tolist() == [
        "example.com.default.svc.cluster.local",
        "example.com.svc.cluster.local",
        "example.com.cluster.local",
        "example.com",
    ]
    assert expanded["rcode"].tolist() == [3, 3, 3, 0]
    assert expanded["addresses"].iloc[-1] == said["example.com"]["address"]
    assert table[table["name"].str.startswith("nothere")]["rcode"].tolist() == [3, 3, 3, 3]
    assert said["nothere"]["status"] == 2  # getent: not found
    assert table["answered"].all() and (table["sends"] == 1).all()
    found = {f.code: f for f in capture.findings_list()}
    assert set(found) == {"dns-ndots-expansion"}
    assert found["dns-ndots-expansion"].packets == tuple(expanded["number"].iloc[:3])


def test_a_lost_answer_is_asked_again_after_five_seconds() -> None:
    entry = ENTRIES["dns-lost-answer"]
    capture, table = _lookups("dns-lost-answer")
    assert entry["dropped_by_fault"] == 1
    assert len(table) == 1
    lookup = table.iloc[0]
    assert (lookup["name"], lookup["sends"], lookup["rcode"]) == ("web.default.svc.cluster.local", 2, 0)
    assert 4.9 < lookup["resent_after"] < 5.2
    # the latency the client waited: from the first send to the answer after the resend
    assert lookup["latency_ms"] == pytest.approx(entry["lookups"][0]["seconds"] * 1000, abs=60)
    codes = [f.code for f in capture.findings_list()]
    assert codes == ["dns-5s-retry"]
    # The dropped answer reached the node (eth0, flannel.1) but never the pod's veth.
    packets = capture.packets
    answers = packets[(packets["dns_response"] == True) & (packets["dns_id"] == lookup["id"])]  # noqa: E712
    first, second = (
        answers[answers["time"] < answers["time"].min() + 1],
        answers[answers["time"] > answers["time"].min() + 1],
    )
    assert "cni0" not in set(first["if_name"].astype(str)) and "cni0" in set(second["if_name"].astype(str))


def test_decode_shows_only_dns_with_wireshark_info(capsys: pytest.CaptureFixture[str]) -> None:
    path = SERVICES / "dns" / ENTRIES["dns"]["files"][0]
    assert main(["decode", str(path), "--proto", "dns"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "Standard query" in line]
    assert lines and all(" UDP " in line for line in lines)
    assert any(
        line.endswith("Standard query response 0x" + line.split("0x")[1][:4] + " A example.com 192.0.2.10")
        for line in lines
    )
    assert any("No such name A nothere.cluster.local" in line for line in lines)


def _cname_response(ident: int, name: bytes, target: bytes) -> bytes:
    """A response whose answers are a CNAME to ``target`` and its address; names as raw bytes."""

    def wire(raw: bytes) -> bytes:
        return b"".join(bytes([len(p)]) + p for p in raw.split(b".")) + b"\0"

    header = struct.pack("!HHHHHH", ident, 0x8180, 1, 2, 0, 0)
    question = wire(name) + struct.pack("!HH", 1, 1)
    cname = b"\xc0\x0c" + struct.pack("!HHIH", 5, 1, 30, len(wire(target))) + wire(target)
    address = wire(target) + struct.pack("!HHIH", 1, 1, 30, 4) + bytes([10, 43, 0, 7])
    return header + question + cname + address


def test_names_that_are_not_ascii_read_alike_in_both_engines(tmp_path: Path) -> None:
    """Names with bytes beyond ASCII are read as latin-1 by both engines (the compiled parse's
    text of such a batch is decoded row by row), between rows that are not DNS and rows whose
    response has no CNAME."""
    from flannelcap.packets.pipeline import RecordView, open_capture

    def udp(message: bytes) -> bytes:
        inner = Ether(src=VTEP_B, dst=VTEP_A) / IP(src=POD_B, dst=POD_A) / UDP(sport=53, dport=40100) / Raw(message)
        return vxlan_frame(inner)

    frames = [
        udp(_cname_response(0x0101, b"caf\xe9.default.svc.cluster.local", b"w\xe9b.example")),
        vxlan_frame(inner_tcp(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")),
        udp(_cname_response(0x0202, b"plain.default.svc.cluster.local", b"web.example")),
        udp(_query(0x0303, "only.asked")),
    ]
    path = tmp_path / "latin.pcap"
    path.write_bytes(pcap(frames))
    fast = [r.to_dict() for r in RecordView(open_capture(path))]
    slow = [r.to_dict() for r in flannelcap.decode_file(path, engine="scapy")]
    assert fast == slow
    assert [r["dns_cnames"] for r in fast] == ["w\xe9b.example", None, "web.example", None]
    assert [r["dns_addresses"] for r in fast] == ["10.43.0.7", None, "10.43.0.7", None]
    assert [r["dns_qname"] for r in fast] == [
        "caf\xe9.default.svc.cluster.local",
        None,
        "plain.default.svc.cluster.local",
        "only.asked",
    ]
