"""Wireshark's own dissection on demand (``decode -v --wireshark``, ``Capture.wireshark``),
through the real tshark and pyshark, held to flannelcap's own decoding of the same packet."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import SAMPLES, require_tool

import flannelcap
from flannelcap.cli import main

CAPTURE = SAMPLES / "cross-node-http-client.pcap"


def _record(number: int) -> flannelcap.PacketRecord:
    return next(r for r in flannelcap.decode_file(CAPTURE) if r.number == number)


def test_the_detail_pane_of_a_vxlan_packet(capsys: pytest.CaptureFixture[str]) -> None:
    require_tool("tshark")
    ours = next(r for r in flannelcap.decode_file(CAPTURE) if r.is_vxlan and r.proto == "tcp")
    assert main(["decode", str(CAPTURE), "-v", "--wireshark", "--packets", str(ours.number)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Packet {ours.number} of {CAPTURE.name} (Wireshark, through tshark):")
    assert f"VXLAN Network Identifier (VNI): {ours.vni}" in out  # 8472 decoded as VXLAN
    assert f"Source Address: {ours.outer_src_ip}" in out and f"Source Address: {ours.inner_src_ip}" in out
    assert f"Sequence Number (raw): {ours.tcp_seq}" in out
    assert "Layer VXLAN:\n" in out and "\n:\t" not in out


def test_a_range_gives_one_dissection_per_packet(capsys: pytest.CaptureFixture[str]) -> None:
    require_tool("tshark")
    assert main(["decode", str(CAPTURE), "-v", "--wireshark", "--packets", "3-6"]) == 0
    out = capsys.readouterr().out
    heads = [line.split()[1] for line in out.splitlines() if line.endswith("(Wireshark, through tshark):")]
    assert heads == ["3", "4", "5", "6"]


def test_from_python_the_pyshark_packet() -> None:
    require_tool("tshark")
    capture = flannelcap.read(CAPTURE)
    ours = _record(5)
    packet = capture.wireshark(5)
    assert packet.vxlan.vni == str(ours.vni)
    assert [layer.layer_name for layer in packet.layers][:4] == ["eth", "ip", "udp", "vxlan"]
    assert packet.get_multiple_layers("ip")[1].src == ours.inner_src_ip
    assert int(packet.length) == ours.wire_len


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--wireshark", "--packets", "5"], "use it with -v and --packets"),
        (["-v", "--wireshark"], "use it with -v and --packets"),
        (["-v", "--wireshark", "--packets", "1-5000"], "at most 1000 packets"),
        (["-v", "--wireshark", "--packets", "99999"], "has no packet 99999"),
    ],
)
def test_wrong_requests_are_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    require_tool("tshark")
    assert main(["decode", str(CAPTURE), *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("flannelcap: error: ") and message in err and err.count("\n") == 1


def test_without_tshark_one_line_says_what_to_install() -> None:
    env = {**os.environ, "PATH": "/nonexistent"}
    done = subprocess.run(
        [sys.executable, "-m", "flannelcap", "decode", str(CAPTURE), "-v", "--wireshark", "--packets", "5"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == "flannelcap: error: Wireshark's dissection needs tshark: install the Debian package tshark\n"
