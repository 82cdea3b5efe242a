"""Every overlay's encapsulation: the header parsers (pure), the port rules, both engines held
together on tunnel headers of every shape (the C kernel takes the common layouts itself, and
leaves the rest to Scapy), and tcpdump's own VXLAN and Geneve captures decoded without error."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from flannelcap import decode_file, read
from flannelcap._errors import BadArgument
from flannelcap.cli import main
from flannelcap.packets.pipeline import open_capture
from flannelcap.packets.tunnels import TunnelPorts, parse_geneve, parse_wireguard, tunnel_port

TCPDUMP = Path(__file__).parent / "data" / "tcpdump"
NODE_A, NODE_B, POD_A, POD_B = "192.168.1.38", "192.168.1.39", "10.42.0.5", "10.42.1.7"


def _inner(sport: int = 40000) -> IP:
    return (
        IP(src=POD_A, dst=POD_B, ttl=62, id=4321)
        / TCP(sport=sport, dport=80, flags="PA", seq=7)
        / b"GET / HTTP/1.1\r\n\r\n"
    )


INNER = _inner()


def _outer(payload: bytes, dport: int, sport: int = 50000) -> Ether:
    return (
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src=NODE_A, dst=NODE_B, id=1)
        / UDP(sport=sport, dport=dport)
        / Raw(payload)
    )


def _inner_frame(sport: int = 40000) -> bytes:
    return bytes(Ether(src="0a:00:00:00:00:0a", dst="0b:00:00:00:00:0b") / _inner(sport))


def _geneve(vni: int, options: bytes = b"", protocol: int = 0x6558, flags: int = 0, version: int = 0) -> bytes:
    return (
        bytes([version << 6 | len(options) // 4, flags])
        + protocol.to_bytes(2, "big")
        + vni.to_bytes(3, "big")
        + b"\0"
        + options
    )


def _vxlan(vni: int, first: int = 0x08, second: int = 0, policy: int = 0) -> bytes:
    return bytes([first, second]) + policy.to_bytes(2, "big") + vni.to_bytes(3, "big") + b"\0"


def _wireguard(kind: int, first: int, second: int = 0) -> bytes:
    return bytes([kind, 0, 0, 0]) + first.to_bytes(4, "little") + second.to_bytes(4, "little") + b"\x11" * 32


def _decode_both(tmp_path: Path, frames: list[Ether]) -> tuple[list, list, int]:  # type: ignore[type-arg]
    path = tmp_path / "t.pcap"
    wrpcap(str(path), frames)
    source = open_capture(path)
    fast = source.records()
    fast_records = list(fast)
    scapy = list(decode_file(path, engine="scapy"))
    for ours, model in zip(fast_records, scapy, strict=True):
        assert dataclasses.asdict(ours) == dataclasses.asdict(model)
    return fast_records, scapy, source.fallback_frames


def test_each_overlay_decoded_by_the_kernel_as_by_scapy(tmp_path: Path) -> None:
    frames = [
        _outer(_vxlan(1) + _inner_frame(40000), 8472),
        _outer(_vxlan(1, 0x88, 0x48, policy=100) + _inner_frame(40001), 8472),  # GBP, D and A set
        _outer(_geneve(42) + _inner_frame(40002), 6081),
        _outer(_geneve(4096, protocol=0x0800) + bytes(_inner(40003)), 6081),
        _outer(bytes(_inner(40004)), 8285, sport=8285),  # flannel's udp backend
        Ether() / IP(src=NODE_A, dst=NODE_B, proto=4) / _inner(40005),  # IP in IP
        _outer(_wireguard(1, 0xDEADBEEF), 51820, sport=51820),
        _outer(_wireguard(2, 7, 0xDEADBEEF), 51820, sport=51820),
        _outer(_wireguard(4, 7), 51820, sport=51820),
    ]
    records, _, fallback = _decode_both(tmp_path, frames)
    assert fallback == 0  # the common layouts, all in C
    assert [r.encap for r in records] == [
        "vxlan", "vxlan-gbp", "geneve", "geneve", "udp-tun", "ipip", "wireguard", "wireguard", "wireguard"
    ]  # fmt: skip
    for i, r in enumerate(records[:6]):
        assert (r.src_ip, r.dst_ip, r.src_port, r.dst_port, r.ip_id, r.inner_ttl) == (
            POD_A,
            POD_B,
            40000 + i,
            80,
            4321,
            62,
        )
        assert (r.outer_src_ip, r.outer_dst_ip, r.is_tunnel, r.http_method) == (NODE_A, NODE_B, True, "GET")
    gbp = records[1]
    assert (gbp.is_vxlan, gbp.vxlan_gbp, gbp.gbp_flags, gbp.vxlan_flags, gbp.vni) == (True, 100, 0x48, 0x88, 1)
    assert (records[2].vni, records[2].geneve_protocol, records[2].inner_src_mac) == (42, 0x6558, "0a:00:00:00:00:0a")
    assert (records[3].vni, records[3].geneve_protocol, records[3].inner_src_mac) == (4096, 0x0800, None)
    assert records[5].outer_proto == "ipip" and records[4].outer_proto == "udp"
    wg = [(r.wg_type, r.wg_sender, r.wg_receiver, r.src_ip, r.proto) for r in records[6:]]
    assert wg == [
        (1, 0xDEADBEEF, None, NODE_A, "udp"), (2, 7, 0xDEADBEEF, NODE_A, "udp"), (4, None, 7, NODE_A, "udp")
    ]  # fmt: skip
    assert not any(r.is_vxlan for r in records[2:])


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([8472, 6081, 8285, 51820]),
    st.binary(min_size=0, max_size=12),
    st.integers(0, 40),
)
def test_the_kernel_and_scapy_agree_on_any_header(tmp_path_factory: pytest.TempPathFactory, port: int,
                                                  header: bytes, cut: int) -> None:  # fmt: skip
    """Whatever bytes follow a tunnel's port, the fast path agrees with Scapy (or leaves the
    frame to it): headers with flags and lengths of every kind, cut anywhere."""
    tail = _inner_frame() if port in (8472, 6081) else bytes(INNER)
    frames = [_outer((header + tail)[: len(header) + cut], port), _outer(header + tail, port)]
    _decode_both(tmp_path_factory.mktemp("any"), frames)


def test_geneve_options_and_notes(tmp_path: Path) -> None:
    dsr = (0x014B).to_bytes(2, "big") + bytes([0x81, 2]) + bytes(8)  # Cilium's DSR option, 8 bytes of data
    frames = [
        _outer(_geneve(7, options=dsr) + _inner_frame(), 6081),
        _outer(_geneve(7, flags=0x40 | 0x01) + _inner_frame(), 6081),  # C flag and a reserved bit
        _outer(_geneve(7, version=1) + _inner_frame(), 6081),
    ]
    records, _, fallback = _decode_both(tmp_path, frames)
    assert fallback == 3  # options and notes: Scapy's
    assert records[0].geneve_options == "0x014b/0x81:8" and records[0].src_ip == POD_A
    assert records[1].geneve_flags == 0x41 and "Geneve reserved bits set" in records[1].notes[0]
    assert "Geneve version 1" in records[2].notes[0]


def test_parsers() -> None:
    header = parse_geneve(_geneve(5, options=(0x0102).to_bytes(2, "big") + bytes([0x80, 1]) + b"abcd"))
    assert header is not None
    assert (header.vni, header.length, header.options_text(), header.options_whole) == (5, 16, "0x0102/0x80:4", True)
    assert parse_geneve(b"\x01\x00\x65\x58\x00\x00") is None  # shorter than its fixed part
    assert parse_geneve(_geneve(5)[:7]) is None
    assert parse_geneve(bytes([2, 0, 0x65, 0x58, 0, 0, 5, 0]) + b"\0\0\0") is None  # claims 8 bytes of options
    assert parse_wireguard(_wireguard(3, 9)) == (3, None, 9)
    assert parse_wireguard(_wireguard(5, 9)) is None and parse_wireguard(b"\x01\0\0\x01" + bytes(8)) is None


def test_port_rules() -> None:
    rules = TunnelPorts.of([8472], [("geneve", 6082), ("udp-tun", 8472)])
    assert rules.kind(1, 6082) == "geneve" and rules.kind(8285, 1) == "udp-tun" and rules.kind(50000, 8472) == "udp-tun"
    assert rules.kind(1, 4789) is None  # VXLAN's ports are the caller's
    assert rules.ports("wireguard") == {51820, 51821}
    assert tunnel_port("geneve:6082") == ("geneve", 6082)
    for bad, said in (("gre:1", "the kind is one of"), ("geneve:0", "not a UDP port"), ("geneve", "not a UDP port")):
        with pytest.raises(BadArgument, match=said):
            tunnel_port(bad)


def test_tunnel_port_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "g.pcap"
    wrpcap(str(path), [_outer(_geneve(9) + _inner_frame(), 7000)])
    assert main(["decode", str(path)]) == 0
    assert "tunnels decoded" not in capsys.readouterr().out  # 7000 is no tunnel's port
    assert main(["decode", str(path), "--tunnel-port", "geneve:7000"]) == 0
    out = capsys.readouterr().out
    assert f"{POD_A} → {POD_B}" in out and "tunnels decoded: geneve on UDP 7000: 1" in out
    assert read(path, tunnel_ports=["geneve:7000"]).packets["vni"].tolist() == [9]
    with pytest.raises(SystemExit) as bad:
        main(["decode", str(path), "--tunnel-port", "gre:1"])
    assert bad.value.code == 2
    assert "the kind is one of vxlan, geneve, udp-tun, wireguard" in capsys.readouterr().err


@pytest.mark.parametrize("capture", sorted(p.name for p in TCPDUMP.glob("*.pcap")))
def test_tcpdumps_captures_decode_without_error(capture: str, tmp_path: Path) -> None:
    path = TCPDUMP / capture
    fast, scapy = list(decode_file(path)), list(decode_file(path, engine="scapy"))
    assert [dataclasses.asdict(r) for r in fast] == [dataclasses.asdict(r) for r in scapy]
    assert all(not any("could not be dissected" in n for n in r.notes) for r in fast)
    encap = "geneve" if "geneve" in capture else "vxlan"
    tunnelled = [r for r in fast if r.encap == encap]
    if capture == "bigtcp-ipv6-vxlan-ipv6.pcap":  # an IPv6 jumbogram: UDP length 0, as tshark finds it malformed
        assert not tunnelled and "UDP header incomplete" in fast[0].notes[0]
    else:
        assert tunnelled and all(r.inner_src_ip or r.inner_src_mac for r in tunnelled), capture
    assert main(["decode", str(path), "--json"]) == 0


def test_the_kernels_tunnel_numbers_are_the_tables() -> None:
    """The C kernel's encapsulation codes and port-rule kinds are those of ``tunnels`` (the
    kernel's ``encap`` integers become labels through ``ENCAP_NAMES``)."""
    import re

    from flannelcap.packets.tunnels import ENCAP_NAMES, UDP_KINDS

    source = (Path(__file__).parent.parent / "flannelcap" / "packets" / "_ckernel.c").read_text()

    def numbered(first: str) -> dict[str, int]:
        found = re.search(rf"enum \{{ ({first} = 1[^}}]*)\}};", source)
        assert found, first
        return {name.strip(): code for code, name in enumerate(found.group(1).replace(" = 1", "").split(","), 1)}

    encaps = numbered("ENCAP_VXLAN")
    named = {code: name.removeprefix("ENCAP_").lower().replace("_", "-") for name, code in encaps.items()}
    assert named == ENCAP_NAMES
    kinds = numbered("ON_VXLAN")
    assert {name.removeprefix("ON_").lower().replace("_", "-"): code for name, code in kinds.items()} == UDP_KINDS


def test_rules_given_in_python_are_checked_too() -> None:
    path = TCPDUMP / "geneve.pcap"
    for bad, said in ((("gre", 47),), "the kind is one of"), ((("geneve", 70000),), "not a UDP port"):
        with pytest.raises(BadArgument, match=said):
            read(path, tunnel_ports=list(bad))
    assert read(path, tunnel_ports=[("geneve", 6081)]).packets["encap"].astype(str).unique().tolist() == ["geneve"]
