"""flannelcap.read in a notebook's shoes: DataFrames and figures of the recorded captures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from conftest import SAMPLES, manifest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from matplotlib.text import Annotation

import flannelcap
from flannelcap import plots
from flannelcap.analysis.audit import audit_capture


def capture(name: str) -> flannelcap.Capture:
    return flannelcap.read(SAMPLES / f"{name}.pcap", topology=SAMPLES / f"{name}.tables")


def kube(name: str, kind: str) -> dict:
    items = json.loads((SAMPLES / f"{name}.tables" / f"kubectl-get-{kind}.json").read_text())["items"]
    return {i["metadata"]["name"]: i for i in items}


def node_ip(name: str, node: str) -> str:
    return kube(name, "nodes")[node]["metadata"]["annotations"]["flannel.alpha.coreos.com/public-ip"]


def vtep_mac(name: str, node: str) -> str:
    data = kube(name, "nodes")[node]["metadata"]["annotations"]["flannel.alpha.coreos.com/backend-data"]
    return json.loads(data)["VtepMAC"]


def test_packets_dataframe_holds_the_field_vocabulary() -> None:
    cap = capture("cross-node-http-client")
    frame = cap.packets
    assert list(frame.columns[: len(flannelcap.FIELD_NAMES)]) == list(flannelcap.FIELD_NAMES)
    vxlan = frame[frame.is_vxlan.astype(bool)]
    assert len(vxlan) == 12 and set(vxlan.vni) == {1}
    assert set(vxlan.src_node) == {"kpi093", "kpi092"} and set(vxlan.src_pod) == {"busybox", "nginx"}
    assert set(vxlan.outer_src_ip) == {
        node_ip("cross-node-http-client", "kpi093"),
        node_ip("cross-node-http-client", "kpi092"),
    }
    get = frame[frame.http_method == "GET"].iloc[0]
    assert (get.inner_dst_ip, get.dst_pod, get.dst_vtep_node) == ("10.42.1.2", "nginx", "kpi092")
    assert get.inner_dst_mac == vtep_mac("cross-node-http-client", "kpi092")


def test_flows_and_http() -> None:
    cap = capture("cross-node-http-client")
    [flow] = cap.flows().itertuples(index=False)
    pods = kube("cross-node-http-client", "pods")
    assert (flow.src_pod, flow.dst_pod, flow.src_node, flow.dst_node) == ("busybox", "nginx", "kpi093", "kpi092")
    assert (flow.src_ip, flow.dst_ip, flow.dst_port) == (
        pods["busybox"]["status"]["podIP"],
        pods["nginx"]["status"]["podIP"],
        80,
    )
    assert (flow.packets, flow.vni, flow.vxlan) == (12, 1, True)
    ports = sorted({r.outer_src_port for r in cap.records if r.is_vxlan})
    assert flow.outer_src_ports == ports and len(ports) == 2  # one hashed source port per direction
    assert flow.bytes == sum(r.wire_len for r in cap.records if r.is_vxlan)
    [exchange] = cap.http().itertuples(index=False)
    assert (exchange.client, exchange.server, exchange.method, exchange.path, exchange.status) == (
        "busybox",
        "nginx",
        "GET",
        "/",
        200,
    )
    request, response = (next(r for r in cap.records if r.number == n) for n in (exchange.request, exchange.response))
    assert exchange.latency_ms == round((response.time - request.time) * 1000, 3) > 0


def test_findings_and_explain() -> None:
    assert capture("cross-node-http-client").findings().empty
    faults = capture("fault-wrong-fdb").findings()
    assert sorted(faults.code) == ["fdb-wrong-dst", "inner-mac-mismatch"]
    steps = capture("fault-wrong-fdb").explain(0)
    assert [s.ok for s in steps] == [True, True, True, False, False, True, True]
    without = flannelcap.read(SAMPLES / "fault-bad-checksum.pcap")  # the wire alone
    assert list(without.findings().code) == ["bad-udp-checksum"]


def test_html_summary_and_scapy() -> None:
    cap = capture("cross-node-http-client")
    text = cap._repr_html_()
    assert "<b>flannelcap capture cross-node-http-client.pcap</b>" in text
    assert "VNI 1: 12" in text and "busybox, nginx" in text and "kpi092, kpi093" in text
    assert len(text) < 2000  # a summary, not a wall of text
    assert cap.scapy(3)["VXLAN"].vni == 1


def _texts(fig) -> list[str]:  # type: ignore[no-untyped-def]
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_figure2_labels_come_from_the_capture_and_tables(tmp_path: Path) -> None:
    cap = capture("cross-node-http-client")
    fig = plots.figure2(cap)
    texts = "\n".join(_texts(fig))
    client, server = "kpi093", "kpi092"
    for expected in (
        client,
        server,
        f"eth0 {node_ip('cross-node-http-client', client)}",
        f"MAC {vtep_mac('cross-node-http-client', server)}",
        "flannel.1  VTEP 10.42.1.0",
        "cni0 10.42.2.1",
        "pod busybox\neth0 10.42.2.2",
        "pod nginx\neth0 10.42.1.2",
        f"outer: {node_ip('cross-node-http-client', client)} → {node_ip('cross-node-http-client', server)}",
        "→ 8472   VXLAN VNI 1",
        f"inner: {vtep_mac('cross-node-http-client', client)} → {vtep_mac('cross-node-http-client', server)}",
        f"kpi093: bridge fdb show dev flannel.1: {vtep_mac('cross-node-http-client', server)} dst 192.168.1.39",
        "kpi093: ip neigh show dev flannel.1: 10.42.1.0 lladdr",
    ):
        assert expected in texts, expected
    fig.savefig(tmp_path / "figure2.png")
    assert (tmp_path / "figure2.png").stat().st_size > 10_000


@pytest.mark.parametrize("name", ["cross-node-http-client", "cross-node-http-any"])
def test_ladder_has_one_arrow_per_packet_in_order(name: str, tmp_path: Path) -> None:
    cap = capture(name)
    fig = plots.ladder(cap)
    [ax] = fig.axes
    arrows = [a for a in ax.texts if isinstance(a, Annotation) and a.get_gid() and a.get_gid().startswith("arrow-")]
    labels = [t.get_text() for t in ax.texts if (t.get_gid() or "").startswith("label-")]
    expected = [r for r in cap.records if r.is_vxlan and r.proto == "tcp"]
    assert [int(a.get_gid().split("-")[1]) for a in arrows] == [r.number for r in expected]
    assert labels[:4] == ["SYN", "SYN, ACK", "ACK", "GET / HTTP/1.1"]
    assert "HTTP/1.1 200 OK" in labels and labels[-1] == "ACK"
    forward = [a.xyann[0] < a.xy[0] for a in arrows]
    assert forward[:3] == [True, False, True]  # SYN out, SYN-ACK back, ACK out
    fig.savefig(tmp_path / "ladder.png")


def test_matrix_counts_and_one_way_pairs(tmp_path: Path) -> None:
    fig = plots.traffic_matrix(capture("cross-node-http-client"))
    gids = {t.get_gid(): t.get_text() for t in fig.axes[0].texts}
    assert gids["cell-kpi093-kpi092"].startswith("6 pkts") and gids["cell-kpi092-kpi093"].startswith("6 pkts")
    assert not [p for p in fig.axes[0].patches if (p.get_gid() or "").startswith("one-way")]
    fault = plots.traffic_matrix(capture("fault-wrong-fdb"))
    assert [p.get_gid() for p in fault.axes[0].patches if p.get_gid()] == ["one-way-kpi093-kpi091"]
    assert [label.get_text() for label in fault.axes[0].get_xticklabels()] == ["kpi091", "kpi092", "kpi093"]
    fault.savefig(tmp_path / "matrix.png")


def test_timeline_marks_retransmissions_and_findings(tmp_path: Path) -> None:
    fig = plots.timeline(capture("fault-wrong-fdb"))
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["packet", "retransmission", "in a finding"]
    packets, retransmitted, flagged = (len(c.get_offsets()) for c in ax.collections)
    syns = [r for r in capture("fault-wrong-fdb").records if r.tcp_flags == "SYN"]
    assert (packets, retransmitted, flagged) == (len(syns), len(syns) - 1, len(syns))
    fig.savefig(tmp_path / "timeline.png")


def test_plot_command_writes_png(tmp_path: Path) -> None:
    out = tmp_path / "f.png"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flannelcap",
            "plot",
            str(SAMPLES / "cross-node-http-client.pcap"),
            "figure2",
            "--tables",
            str(SAMPLES / "cross-node-http-client.tables"),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = subprocess.run(
        [sys.executable, "-m", "flannelcap", "plot", str(SAMPLES / "same-node-http.pcap"), "figure2", "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "flannelcap: error: this conversation never crossed VXLAN: there is no tunnel to draw"
    )


def test_read_without_topology_and_bad_input(tmp_path: Path) -> None:
    cap = flannelcap.read(SAMPLES / "cross-node-http-server.pcap")
    assert cap.packets.src_node.isna().all() and len(cap.flows()) == 1
    with pytest.raises(flannelcap.TopologyError, match="explain needs the cluster's tables"):
        cap.explain()
    (tmp_path / "x.pcap").write_bytes(b"nope")
    with pytest.raises(flannelcap.CaptureFormatError):
        flannelcap.read(tmp_path / "x.pcap")
    assert isinstance(cap.packets, pd.DataFrame)


# -- whatever a notebook user passes, only flannelcap's own errors come out ------------------

_PATHS = st.sampled_from(["missing.pcap", "dir", "garbage.pcap", "empty.pcap", "cut.pcap", "good.pcap"])
_TOPOLOGIES = st.sampled_from([None, "tables", "garbage-tables", "missing-tables", "garbage.json", "good.pcap"])
_PORTS = st.lists(st.one_of(st.integers(-5, 70_000), st.sampled_from([0, 65535, 65536, 8472])), max_size=3)


@pytest.fixture(scope="module")
def odd_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of the things a user may point read() at by mistake."""
    base = tmp_path_factory.mktemp("odd")
    good = (SAMPLES / "fault-wrong-fdb.pcap").read_bytes()
    (base / "good.pcap").write_bytes(good)
    (base / "cut.pcap").write_bytes(good[: len(good) // 2])
    (base / "empty.pcap").write_bytes(b"")
    (base / "garbage.pcap").write_bytes(b"not a capture at all\n" * 10)
    (base / "dir").mkdir()
    shutil.copytree(SAMPLES / "fault-wrong-fdb.tables", base / "tables")
    (base / "garbage-tables" / "kpi091").mkdir(parents=True)
    (base / "garbage-tables" / "kpi091" / "neigh.txt").write_text("}{ nothing a table holds\n")
    (base / "garbage.json").write_text('{"format": "flannelcap-topology/1", "nodes": 3}')
    return base


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    path=_PATHS,
    topology=_TOPOLOGIES,
    ports=_PORTS,
    flow=st.one_of(st.integers(-(2**40), 2**40), st.text(max_size=20)),
    number=st.integers(-(2**40), 2**40),
)
def test_the_public_api_raises_only_flannelcaps_errors(
    odd_files: Path, path: str, topology: str | None, ports: list[int], flow: int | str, number: int
) -> None:
    def attempt(call: Callable[[], object]) -> None:
        try:
            call()
        except flannelcap.FlannelcapError as error:
            assert str(error) and "Traceback" not in str(error)
            assert "None" not in str(error), str(error)

    where = odd_files / path
    attempt(lambda: list(flannelcap.decode_file(where, vxlan_ports=ports)))
    attempt(lambda: list(flannelcap.decode_file(where, vxlan_ports=ports, engine="scapy")))
    try:
        capture = flannelcap.read(where, topology=odd_files / topology if topology else None, vxlan_ports=ports)
        frame = capture.packets
    except flannelcap.FlannelcapError:
        # Refusing is right only for what is wrong: a good capture, good tables, good ports open.
        sound = path in ("good.pcap", "cut.pcap") and topology in (None, "tables")
        assert not (sound and all(1 <= p <= 65535 for p in ports)), "a sound input was refused"
        return
    assert frame["number"].tolist() == list(range(1, len(frame) + 1))  # every packet read, in order
    attempt(capture.flows)
    attempt(capture.http)
    attempt(capture.findings)
    attempt(lambda: capture.explain(flow))
    attempt(lambda: capture.scapy(number))
    attempt(lambda: repr(capture))


@pytest.mark.parametrize("entry", [str(e["file"]) for e in manifest()])
def test_records_made_from_the_dataframe_equal_the_decoded_ones(entry: str) -> None:
    """The figures, explain and the report take their records from the DataFrame's rows: each
    must be the record the decoder made, field for field (missing values None, not NaN)."""
    cap = flannelcap.read(SAMPLES / entry, topology=SAMPLES / entry.replace(".pcap", ".tables"))
    made = cap.records_where(pd.Series(True, index=cap.packets.index))
    assert [r.to_dict() for r in made] == [r.to_dict() for r in cap.records]
    assert cap.findings_list() == audit_capture(cap.records, cap.topology)  # type: ignore[arg-type]


def test_figures_without_a_topology_name_addresses_not_nan() -> None:
    cap = flannelcap.read(SAMPLES / "cross-node-http-client.pcap")  # no tables: no pod or node names
    texts = [t.get_text() for figure in (plots.figure2(cap), plots.ladder(cap)) for t in figure.axes[0].texts]
    assert not [t for t in texts if "nan" in t.split() or "nan\n" in t or "None" in t]
    assert "pod ?\neth0 10.42.2.2" in texts and "10.42.2.2\n(10.42.2.2)" in texts


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=-1, max_value=6), max_size=40))
def test_first_sightings_are_where_each_id_first_occurs(values: list[int]) -> None:
    import numpy as np

    from flannelcap.packets.kernel import first_sightings

    # ids in order of first sight, as the Encoder gives them (-1: no conversation)
    order: dict[int, int] = {}
    ids = [-1 if v < 0 else order.setdefault(v, len(order)) for v in values]
    expected = [ids.index(i) for i in range(len(order))]
    assert first_sightings(np.array(ids, dtype=np.int64)).tolist() == expected
    # the ids an encoder made new in a call (from its count before it, ``since``) alone
    since = len(order) // 2
    assert first_sightings(np.array(ids, dtype=np.int64), since=since).tolist() == expected[since:]


def test_flows_of_many_conversations_agree_with_a_count_by_hand(tmp_path: Path) -> None:
    """Generated short HTTP calls and DNS lookups: every flow's packets, bytes, first sender
    and VNI as counted row by row from the packets DataFrame."""
    path = tmp_path / "calls.pcap"
    make = Path(__file__).resolve().parents[1] / "benchmarks" / "make_capture.py"
    options = ["--packets", "3000", "--short", "--dns", "0.3"]
    subprocess.run([sys.executable, str(make), str(path), *options], check=True, capture_output=True)
    cap = flannelcap.read(path)
    packets, flows = cap.packets, cap.flows()
    by_hand: dict[str, list] = {}
    for row in packets.itertuples():
        if row.proto not in ("tcp", "udp") or pd.isna(row.src_port):
            continue
        ends = sorted([(row.src_ip, int(row.src_port)), (row.dst_ip, int(row.dst_port))])
        key = f"{row.proto} {ends[0][0]}:{ends[0][1]} {ends[1][0]}:{ends[1][1]}"
        seen = by_hand.setdefault(key, [0, 0, row.src_ip, None])
        seen[0] += 1
        seen[1] += row.wire_len
        if seen[3] is None and row.is_vxlan and not pd.isna(row.vni):
            seen[3] = int(row.vni)
    assert len(flows) == len(by_hand) > 50
    for flow in flows.itertuples():
        assert [flow.packets, flow.bytes, flow.src_ip, flow.vni] == by_hand[flow.flow]


def test_every_public_name_loads_and_is_listed() -> None:
    """The package's names are loaded on first use; each one in ``__all__`` loads, and ``dir``
    lists them before they are (what a notebook offers after ``flannelcap.``)."""
    listed = dir(flannelcap)
    for name in flannelcap.__all__:
        assert name in listed, name
        assert getattr(flannelcap, name) is not None, name
    assert flannelcap.Topology.__module__ == "flannelcap.topology.model"
    with pytest.raises(AttributeError, match="no attribute 'Topologie'"):
        _ = flannelcap.Topologie  # type: ignore[attr-defined]
