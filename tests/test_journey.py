"""Packet journeys on the lab's recordings: ``tcpdump -i any`` on the client's and the server's
node at once (``sample_pcaps/journeys``, recorded by ``flannelcap lab record --journeys``),
and, as root, recorded afresh with the nftables drop fault and held to its counter."""

from __future__ import annotations

import json
import struct
import uuid
from pathlib import Path

import pytest
from conftest import SAMPLES, require_root_lab

import flannelcap
from flannelcap.cli import main
from flannelcap.topology.collect import topology_from_dir

JOURNEYS = SAMPLES / "journeys"
ENTRIES = {e["name"]: e for e in map(json.loads, (JOURNEYS / "manifest.jsonl").read_text().splitlines())}


def _files(name: str) -> list[Path]:
    return [JOURNEYS / name / f for f in ENTRIES[name]["files"]]


def _expected_path(tables: Path, client: str, server: str) -> list[tuple[str, str]]:
    """The lab's path from ``client`` pod to ``server`` pod (seed lab §3.3): the client's veth,
    cni0, flannel.1 and eth0 on its node, then the server node's eth0, flannel.1, cni0, veth."""
    pods = {p.name: p for p in topology_from_dir(tables).pods}
    a, b = pods[client], pods[server]
    assert a.node and b.node and a.veth and b.veth
    there = [(b.node, "eth0"), (b.node, "flannel.1"), (b.node, "cni0"), (b.node, b.veth)]
    return [(a.node, a.veth), (a.node, "cni0"), (a.node, "flannel.1"), (a.node, "eth0"), *there]


def _read(name: str, files: list[Path] | None = None) -> flannelcap.Captures:
    return flannelcap.read_many(files or _files(name), topology=JOURNEYS / name / "tables")


def test_every_packet_of_the_exchange_is_seen_at_every_point_in_path_order() -> None:
    captures = _read("all-points")
    tables = JOURNEYS / "all-points" / "tables"
    forward = _expected_path(tables, "busybox", "nginx")
    backward = _expected_path(tables, "nginx", "busybox")
    seen, packets = captures.sightings(), captures.journeys()
    flows = set(packets["flow"])
    assert len(flows) == 2 and all(f.endswith(" tcp") for f in flows)
    assert len(packets) >= 10 and not packets["lost"].any()
    assert set(packets["verdict"]) == {"delivered"}
    for packet, rows in seen.groupby("packet"):
        path = list(zip(rows["node"], rows["point"], strict=True))
        starts_at_busybox = rows["flow"].iloc[0].startswith("busybox:")
        assert path == (forward if starts_at_busybox else backward), f"packet {packet}"
        assert rows["hop"].tolist() == list(range(8))
        # Encapsulated exactly on the two eth0s; the TTL drops at each routing node.
        assert rows["encapsulated"].tolist() == [False, False, False, True, True, False, False, False]
        assert rows["ttl"].tolist() == [64, 64, 63, 63, 63, 63, 62, 62]
        assert (rows["since_first"].diff().dropna() >= -5e-6).all()  # in time order, within the clock estimate
    hops = captures.hops()
    assert len(hops) == 14 and (hops["packets"] == hops.groupby("flow")["packets"].transform("max")).all()
    assert hops["crosses_nodes"].sum() == 2 and hops["reordered"].sum() == 0
    # The TTL drops where a node routes: cni0 → flannel.1 on the sender, flannel.1 → cni0 on the receiver.
    routed = hops[hops["ttl_change"] != 0]
    assert (routed["ttl_change"] == -1).all() and len(routed) == 4
    assert {(a.split()[1], b.split()[1]) for a, b in zip(routed["from"], routed["to"], strict=True)} == {
        ("cni0", "flannel.1"),
        ("flannel.1", "cni0"),
    }
    assert packets["duplicates"].sum() == 0


def test_every_packet_the_firewall_dropped_is_lost_between_eth0_and_flannel1() -> None:
    entry = ENTRIES["drop-vxlan"]
    captures = _read("drop-vxlan")
    packets = captures.journeys()
    lost = packets[packets["lost"]]
    server = entry["nodes"][1]
    assert entry["dropped_by_fault"] > 0 and len(lost) == entry["dropped_by_fault"]
    assert set(lost["last_node"]) == {server} and set(lost["last_point"]) == {"eth0"}
    for verdict in lost["verdict"]:
        assert verdict.startswith(f"arrived on {server} eth0, never reached flannel.1: the kernel dropped it")
        assert "a firewall" in verdict  # checksum, VNI, port and inner MAC are all right
    assert set(packets[~packets["lost"]]["verdict"]) == {"delivered"}


def _shifted(source: Path, target: Path, seconds: int, microseconds: int) -> Path:
    """A copy of a little-endian microsecond pcap with every timestamp moved later."""
    data = bytearray(source.read_bytes())
    assert data[:4] == b"\xd4\xc3\xb2\xa1"
    at = 24
    while at < len(data):
        sec, usec, caplen, _ = struct.unpack_from("<IIII", data, at)
        usec += microseconds
        struct.pack_into("<II", data, at, sec + seconds + usec // 1_000_000, usec % 1_000_000)
        at += 16 + caplen
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("seconds,microseconds", [(0, 0), (3, 250_000), (-7, 900_000)])
def test_a_nodes_clock_offset_is_estimated_within_its_stated_uncertainty(
    tmp_path: Path, seconds: int, microseconds: int
) -> None:
    client, server = _files("all-points")
    moved = _shifted(server, tmp_path / server.name, seconds, microseconds)
    captures = _read("all-points", [client, moved])
    reference, other = captures.clocks()
    assert reference.offset == 0 and other.node == ENTRIES["all-points"]["nodes"][1]
    shift = seconds + microseconds / 1e6
    assert other.offset is not None and other.uncertainty is not None
    assert abs(other.offset - shift) <= other.uncertainty + 1e-6  # pcap times are whole microseconds
    assert other.uncertainty < 100e-6 and other.pairs >= 10
    # Corrected, the wire hop takes microseconds again, not the shift.
    wire = captures.hops()
    assert (wire[wire["crosses_nodes"]]["median_us"].abs() < 200).all()


def test_without_packets_both_ways_the_offset_is_unknown_and_said_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the client's packets: a server capture cut to what arrived from the client."""
    from flannelcap.packets.reader import CaptureReader

    client, server = _files("all-points")
    captures = _read("all-points", [client, server])
    seen = captures.sightings()
    inbound = set(seen[(seen["file"] == server.name) & (seen["direction"] == "host")]["number"])
    with CaptureReader(server) as reader:
        header = server.read_bytes()[:24]
        records = [f for f in reader if f.number in inbound or f.number == 1]
    body = b"".join(
        struct.pack("<IIII", *divmod(f.time_ns // 1000, 1_000_000), len(f.data), f.wire_len) + f.data for f in records
    )
    cut = tmp_path / server.name
    cut.write_bytes(header + body)
    one_way = _read("all-points", [client, cut])
    assert one_way.clocks()[1].offset is None
    assert main(["journey", str(client), str(cut), "--tables", str(JOURNEYS / "all-points" / "tables")]) == 0
    assert "offset to kpi093 is unknown" in capsys.readouterr().out.replace(ENTRIES["all-points"]["nodes"][0], "kpi093")


def test_cli_prints_hops_losses_one_packet_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(f) for f in _files("drop-vxlan")]
    tables = str(JOURNEYS / "drop-vxlan" / "tables")
    server = ENTRIES["drop-vxlan"]["nodes"][1]
    assert main(["journey", *files, "--tables", tables]) == 0
    out = capsys.readouterr().out
    dropped = ENTRIES["drop-vxlan"]["dropped_by_fault"]
    assert out.count(f"arrived on {server} eth0, never reached flannel.1") == dropped
    assert f"packets matched, {dropped} lost" in out
    assert "busybox:" in out and "→ nginx:80 tcp" in out
    first_lost = next(line for line in out.splitlines() if line.startswith("  lost: "))
    number = int(first_lost.split("#")[1].split()[0])
    assert main(["journey", *files, "--tables", tables, "--packet", str(number)]) == 0
    one = capsys.readouterr().out.splitlines()
    assert one[-1].strip().startswith(f"arrived on {server} eth0") and len(one) == 2 + 5  # 5 points, then lost
    assert main(["journey", *files, "--tables", tables, "--json"]) == 0
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sum(o["lost"] for o in objects) == dropped
    delivered = next(o for o in objects if not o["lost"])
    assert len(delivered["sightings"]) == 8 and delivered["sightings"][0]["since_first"] == 0.0
    assert [s["interface"] for s in delivered["sightings"]][2:6] == ["flannel.1", "eth0", "eth0", "flannel.1"]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--node", "nonsense"], "--node 'nonsense': write it as FILE=NODE"),
        (["--packet", "1"], "packet 1 of"),  # an ARP request: not matched
    ],
)
def test_cli_errors_are_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(f) for f in _files("all-points")]
    assert main(["journey", *files, *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("flannelcap: error: ") and message in err and err.count("\n") == 1


def test_recorded_afresh_the_losses_equal_the_firewall_counter(tmp_path: Path) -> None:
    """Root: a new lab, the drop fault, both nodes captured; the verdicts against nftables' count."""
    require_root_lab()
    from flannelcap.lab._lab import Lab
    from flannelcap.lab._plan import LabSpec
    from flannelcap.lab._record import JOURNEYS as SCENARIOS
    from flannelcap.lab._record import record_journey

    scenario = next(s for s in SCENARIOS if s.name == "drop-vxlan")
    with Lab.up(LabSpec(prefix="tj" + uuid.uuid4().hex[:5])) as lab:
        entry = record_journey(lab, scenario, tmp_path)
    directory = tmp_path / "drop-vxlan"
    captures = flannelcap.read_many([directory / f for f in entry["files"]], topology=directory / "tables")
    lost = captures.journeys()
    lost = lost[lost["lost"]]
    assert entry["dropped_by_fault"] >= 1 and len(lost) == entry["dropped_by_fault"]
    assert set(lost["last_point"]) == {"eth0"} and set(lost["last_node"]) == {entry["nodes"][1]}


def test_key_labels_get_one_code_across_captures() -> None:
    """A protocol or flag name must match its copies in another capture whose own list of
    names differs (a capture with ARP sorts ``tcp`` second, one without it first)."""
    import numpy as np
    import pandas as pd

    from flannelcap.analysis.journey import _codes

    vocabulary: dict[object, int] = {}
    with_arp = _codes(pd.Series(pd.Categorical(["tcp", "arp", None])), vocabulary)
    without = _codes(pd.Series(pd.Categorical(["udp", "tcp"])), vocabulary)
    assert with_arp[0] == without[1] and with_arp[2] == -1 and len(set(vocabulary.values())) == 3
    assert _codes(pd.Series([5, None], dtype="Int64"), {}).tolist() == [5, -1]
    assert isinstance(with_arp, np.ndarray)


def test_without_packet_types_the_sender_is_the_node_whose_address_is_the_outer_source() -> None:
    """Captures on eth0 (Ethernet: no packet type) say who sent a VXLAN packet only by its
    outer source address and the capture node's own address: from the tables, the clocks
    come out as from the cooked captures; without them, between two nodes whose packets all
    carry both addresses, the offset is unknown rather than guessed."""
    import pandas as pd

    from flannelcap.analysis.journey import CaptureAt, clock_offsets, sightings

    captures = _read("all-points")
    cooked = [CaptureAt(c.path.name, str(c.node), c.packets) for c in captures.captures]
    plain = [CaptureAt(c.name, c.node, c.packets.assign(packet_type=pd.NA)) for c in cooked]
    with_types = clock_offsets(cooked, sightings(cooked), None)
    from_tables = clock_offsets(plain, sightings(plain), captures.topology)
    assert [(c.node, c.offset, c.uncertainty, c.pairs) for c in from_tables] == [
        (c.node, c.offset, c.uncertainty, c.pairs) for c in with_types
    ]
    assert from_tables[1].pairs >= 10
    assert clock_offsets(plain, sightings(plain), None)[1].offset is None


def test_the_measured_figure_labels_each_hop_and_the_losses() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from flannelcap import plots

    captures = _read("drop-vxlan")
    figure = plots.journey(captures, 0)
    texts = {t.get_gid(): [] for t in figure.axes[0].texts}
    for t in figure.axes[0].texts:
        texts[t.get_gid()].append(t.get_text())
    hops = captures.hops()
    flow = hops[hops["flow"] == hops["flow"].iloc[0]]
    assert len(texts["median"]) == len(flow) == 7
    assert sorted(texts["median"]) == sorted(
        f"{m:.1f} µs" + ("*" if c else "") for m, c in zip(flow["median_us"], flow["crosses_nodes"], strict=True)
    )
    assert texts["lost"] == [f"✗ {ENTRIES['drop-vxlan']['dropped_by_fault']} lost"]
    assert "veth" in texts["point-0"][0] and "(busybox)" in texts["point-0"][0]
    with pytest.raises(flannelcap.FlannelcapError, match="no flow 'nothing'"):
        plots.journey(captures, "nothing")


def test_a_packet_seen_twice_at_one_point_is_a_duplicate_not_a_hop(tmp_path: Path) -> None:
    """Two overlapping captures of one node: every copy is seen twice at its point."""
    import shutil

    client, _ = _files("all-points")
    again = shutil.copy(client, tmp_path / "again.pcap")
    node = ENTRIES["all-points"]["nodes"][0]
    captures = flannelcap.read_many(
        [client, again], topology=JOURNEYS / "all-points" / "tables", nodes={str(again): node}
    )
    packets = captures.journeys()
    assert (packets["duplicates"] * 2 == packets["seen"]).all() and len(packets) >= 10
    alone = _read("all-points", [client]).hops()
    doubled = captures.hops()
    assert doubled[["flow", "from", "to", "packets"]].equals(alone[["flow", "from", "to", "packets"]])


def test_a_packet_overtaken_on_a_hop_is_counted_as_reordered() -> None:
    """The second packet of a flow made to reach the server node's eth0 before the first."""
    from flannelcap.analysis.journey import hops

    captures = _read("all-points")
    seen = captures.sightings().copy()
    forward = seen["flow"].astype(str).str.startswith("busybox:")
    arrivals = seen[forward & (seen["node"] == ENTRIES["all-points"]["nodes"][1]) & (seen["point"] == "eth0")]
    arrivals = arrivals.sort_values("time")
    first, second = arrivals.index[:2]
    seen.loc[second, ["time", "clock_time"]] = seen.loc[first, "time"] - 1e-6
    table = hops(seen)
    overtaken = table[table["reordered"] > 0]
    client, server = ENTRIES["all-points"]["nodes"]
    # Overtaken on the wire; and on the next hop, which the two leave in the new order and
    # reach flannel.1 in the old one.
    assert overtaken[["from", "to", "reordered"]].values.tolist() == [
        [f"{client} eth0", f"{server} eth0", 1],
        [f"{server} eth0", f"{server} flannel.1", 1],
    ]


def test_a_damaged_capture_is_followed_up_to_its_damage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The server's capture cut in the middle of a record: a warning, every packet before the
    cut matched, and the packets after it 'not seen after ...: the capture had ended', not lost."""
    client, server = _files("all-points")
    data = server.read_bytes()
    cut = tmp_path / server.name
    cut.write_bytes(data[: len(data) // 2 + 7])
    tables = str(JOURNEYS / "all-points" / "tables")
    assert main(["journey", str(client), str(cut), "--tables", tables]) == 0
    out, err = capsys.readouterr()
    assert err.startswith(f"flannelcap: warning: {cut.name}: ") and err.count("\n") == 1
    captures = _read("all-points", [client, cut])
    packets = captures.journeys()
    assert not packets["lost"].any()
    ended = packets[packets["verdict"].str.contains("had ended")]
    assert len(ended) >= 1 and f"{len(packets)} packets matched, 0 lost" in out


def test_captures_that_see_each_packet_once_say_what_to_capture(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["journey", str(SAMPLES / "same-node-http.pcap")]) == 0
    assert "no packet was seen at more than one point" in capsys.readouterr().out
    assert main(["journey", str(SAMPLES / "manifest.jsonl")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("flannelcap: error: not a pcap or pcapng file") and err.count("\n") == 1


def test_the_verdict_names_what_the_arriving_copy_shows() -> None:
    """The drop-vxlan recording with the dropped copies on kpi092's eth0 changed as broken
    senders change them: each reason is named instead of the firewall."""
    import pandas as pd

    from flannelcap.analysis.journey import CaptureAt, journeys

    captures = _read("drop-vxlan")
    base = [CaptureAt(c.path.name, str(c.node), c.packets) for c in captures.captures]
    lost = captures.journeys()
    lost = lost[lost["lost"]]
    seen = captures.sightings()
    server = ENTRIES["drop-vxlan"]["nodes"][1]
    arrivals = seen[seen["packet"].isin(lost["packet"]) & (seen["node"] == server) & (seen["point"] == "eth0")]
    numbers = set(arrivals["number"].tolist())
    changes = {
        "outer_udp_checksum_ok": (False, "its outer UDP checksum is wrong"),
        "vni": (7, f"VNI 7 is not {server}'s (1)"),
        "outer_dst_port": (4789, f"UDP port 4789 is not {server}'s VXLAN port (8472)"),
        "inner_dst_mac": ("de:ad:be:ef:00:01", f"inner dst MAC de:ad:be:ef:00:01 is not {server}'s VTEP"),
    }
    for field, (value, reason) in changes.items():
        changed = []
        for at in base:
            packets = at.packets
            if at.node == server:
                packets = packets.copy()
                rows = packets["number"].isin(numbers)
                if isinstance(packets[field].dtype, pd.CategoricalDtype):  # a label: its value must be a category
                    packets[field] = packets[field].cat.add_categories([value])
                packets.loc[rows, field] = value
            changed.append(CaptureAt(at.name, at.node, packets))
        _, verdicts = journeys(changed, captures.topology)
        named = verdicts[verdicts["lost"]]["verdict"]
        assert len(named) == len(lost) and all(reason in v and "firewall" not in v for v in named), (field, named)
