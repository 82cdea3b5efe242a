"""The audit's findings from the wire alone, on captures built byte by byte: each finding
fires where it should and stays silent where it should not."""

from __future__ import annotations

from pathlib import Path

import pytest
from pcapdata import NODE_A, NODE_B, POD_A, POD_B, inner_tcp, pcap, vxlan_frame

import flannelcap
from flannelcap import decode_file
from flannelcap.analysis.audit import RETRANSMIT_MIN_GAP, audit_capture, audit_frame
from flannelcap.topology.model import Topology


def _syns(tmp_path: Path, fractions_us: list[int], flags: str = "S", answer: bool = False) -> list:
    """A capture of the same SYN once per second-slot, ``fractions_us`` past each second
    (and, if ``answer``, the SYN-ACK after them); returns the audit's SYN findings (without
    an answer the VXLAN is one-way too, which is another finding)."""
    frames = [vxlan_frame(inner_tcp(b"", flags=flags, seq=7000)) for _ in fractions_us]
    fractions = list(fractions_us)
    if answer:
        reply = inner_tcp(b"", flags="SA", seq=9000, sport=80, dport=40482, src=POD_B, dst=POD_A)
        frames.append(vxlan_frame(reply, outer_src=NODE_B, outer_dst=NODE_A))
        fractions.append(0)
    path = tmp_path / "syns.pcap"
    path.write_bytes(pcap(frames, fractions=fractions))
    findings = audit_capture(decode_file(path), Topology())  # the wire alone, as read(p).findings() without tables
    assert audit_frame(flannelcap.read(path).packets, Topology()) == findings  # the DataFrame's path agrees
    assert {f.code for f in findings} <= {"syn-retransmitted", "one-way-vxlan"}
    return [f for f in findings if f.code == "syn-retransmitted"]


def test_a_syn_sent_twice_past_the_threshold_is_a_retransmission(tmp_path: Path) -> None:
    # 1.0 s apart: Linux's first SYN retransmission comes after 1 s.
    [finding] = _syns(tmp_path, [0, 0])
    assert (finding.code, finding.severity, finding.packets) == ("syn-retransmitted", "warning", (1, 2))
    assert finding.message == f"SYN {POD_A}:40482 → {POD_B}:80 sent 2 times (+1.0 s); never answered"


def test_an_answered_retransmission_says_so(tmp_path: Path) -> None:
    [finding] = _syns(tmp_path, [0, 0, 0], answer=True)
    assert finding.packets == (1, 2, 3)
    assert finding.message.endswith("sent 3 times (+1.0 s, +2.0 s); answered at last")


def test_an_ecn_setup_syn_counts_as_a_syn(tmp_path: Path) -> None:
    [finding] = _syns(tmp_path, [0, 0], flags="SEC")
    assert (finding.code, finding.packets) == ("syn-retransmitted", (1, 2))


@pytest.mark.parametrize("gap_ms", [50, 150])
def test_two_copies_closer_than_the_threshold_are_one_syn(tmp_path: Path, gap_ms: int) -> None:
    # The second copy lands just after the next second starts: (1 s - 950 ms) = 50 ms later.
    assert gap_ms / 1000 < RETRANSMIT_MIN_GAP
    assert _syns(tmp_path, [1_000_000 - gap_ms * 1000, 0]) == []


def test_a_copy_just_past_the_threshold_is_a_retransmission(tmp_path: Path) -> None:
    gap_us = int(RETRANSMIT_MIN_GAP * 1_000_000) + 10_000
    [finding] = _syns(tmp_path, [1_000_000 - gap_us, 0])
    assert finding.packets == (1, 2)
