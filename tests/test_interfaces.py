"""Where each packet was seen: a ``tcpdump -i any`` capture's packet type and interface index
(Linux cooked v2), named by the capture node's own ``ip link`` table."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLES

import flannelcap

ANY = SAMPLES / "cross-node-http-any.pcap"
TABLES = SAMPLES / "cross-node-http-any.tables"
NODE = "kpi093"  # the sample's manifest: captured with -i any on the client node


def _links(node: str) -> dict[int, str]:
    return {link["ifindex"]: link["ifname"] for link in json.loads((TABLES / node / "ip-link.json").read_text())}


def test_every_packet_of_an_any_capture_is_named_by_the_nodes_ip_link() -> None:
    packets = flannelcap.read(ANY, topology=TABLES, node=NODE).packets
    links = _links(NODE)
    assert packets.ifindex.notna().all()
    assert [links[i] for i in packets.ifindex] == packets.if_name.astype(str).tolist()
    # The exchange crossed the pod's veth, the bridge, flannel.1 and eth0, each named.
    assert {"cni0", "flannel.1", "eth0"} <= set(packets.if_name.astype(str))
    assert set(packets.packet_type.astype(str)) <= {"host", "broadcast", "multicast", "outgoing"}
    vxlan = packets[packets.is_vxlan.astype(bool)]
    assert set(vxlan.if_name.astype(str)) == {"eth0"}  # only eth0 carries the encapsulated copies


def test_the_node_is_taken_from_the_file_name_as_flannelcap_capture_writes_it(tmp_path: Path) -> None:
    named = tmp_path / f"{NODE}-any-20261127T230000Z.pcap"
    shutil.copy(ANY, named)
    capture = flannelcap.read(named, topology=TABLES)
    assert capture.node == NODE
    assert capture.packets.if_name.notna().all()
    # Another node's links would name other interfaces: the name is the capture node's.
    other = flannelcap.read(ANY, topology=TABLES, node="kpi091").packets
    assert other.if_name.astype(object).tolist() != capture.packets.if_name.astype(object).tolist()


@pytest.mark.parametrize("fmt", ["--json", "--csv"])
def test_decode_prints_the_interface_in_json_and_csv(fmt: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flannelcap", "decode", fmt, "--tables", str(TABLES), "--node", NODE, str(ANY)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    if fmt == "--json":
        rows = [json.loads(line) for line in done.stdout.splitlines()]
    else:
        import csv

        rows = list(csv.DictReader(done.stdout.splitlines()))
    links = _links(NODE)
    assert [row["if_name"] for row in rows] == [links[int(row["ifindex"])] for row in rows]
    assert len(rows) == len(flannelcap.read(ANY).packets)


def test_without_the_nodes_tables_the_index_stays_and_no_name_is_guessed() -> None:
    packets = flannelcap.read(ANY).packets
    assert packets.ifindex.notna().all() and packets.if_name.isna().all()
    # A capture that is not cooked has neither.
    plain = flannelcap.read(SAMPLES / "cross-node-http-client.pcap").packets
    assert plain.ifindex.isna().all() and plain.packet_type.isna().all()


def test_the_packet_list_says_where_each_packet_was_seen_as_tcpdump_does() -> None:
    args = [sys.executable, "-m", "flannelcap", "decode", "--tables", str(TABLES), "--node", NODE, str(ANY)]
    lines = subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines()
    packets = flannelcap.read(ANY, topology=TABLES, node=NODE).packets
    words = {"outgoing": "Out", "host": "In", "broadcast": "B", "multicast": "M"}
    for line, row in zip(lines[1:], packets.itertuples(), strict=False):  # the footer follows the packets
        where = f"{row.if_name} {words[row.packet_type]} "
        assert f"  {where}{row.info}" in line, (line, where)
    # Without the node's tables the index stands in for the name.
    unnamed = subprocess.run([*args[:4], str(ANY)], capture_output=True, text=True, check=True).stdout.splitlines()
    assert f" if{packets.ifindex.iloc[0]} {words[packets.packet_type.iloc[0]]} " in unnamed[1]


def test_an_interface_index_past_two_to_the_31_is_read_unsigned_by_both_engines(tmp_path: Path) -> None:
    """The cooked v2 header's index is an unsigned 32-bit number (as libpcap and tshark read it;
    Scapy reads it signed). Found by the fuzz test."""
    from pcapdata import pcap

    sll2 = struct.pack(">HHIHBB8s", 0x0800, 0, 2**31, 1, 4, 6, bytes.fromhex("0242ac110002") + b"\0\0")
    path = tmp_path / "sll2.pcap"
    path.write_bytes(pcap([sll2 + bytes(20)], linktype=276))
    for engine in ("auto", "scapy"):
        [record] = flannelcap.decode_file(path, engine=engine)
        assert (record.ifindex, record.packet_type) == (2**31, "outgoing"), engine


def test_a_node_without_tables_is_one_line_not_a_silent_lack_of_names() -> None:
    from flannelcap import BadArgument

    for topology, said in ((TABLES, "the tables hold kpi091, kpi092, kpi093"), (None, "no tables were given")):
        with pytest.raises(BadArgument, match=f"no tables of node 'kpi099' to name its interfaces: {said}"):
            flannelcap.read(ANY, topology=topology, node="kpi099")
    done = subprocess.run(
        [sys.executable, "-m", "flannelcap", "decode", "--tables", str(TABLES), "--node", "kpi099", str(ANY)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (
        "flannelcap: error: no tables of node 'kpi099' to name its interfaces: the tables hold kpi091, kpi092, kpi093\n"
    )
