"""``flannelcap decode`` as a user runs it: the real console entry, its output and exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLES, manifest, require_tool
from pcapdata import GOOD_FRAME, VXLAN_HTTP_LAYERS, pcap


def flannelcap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flannelcap", *args], capture_output=True, text=True, timeout=120)


def _assert_no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 1, done.stderr


def test_decode_table_shows_both_layers_and_footer(samples: dict) -> None:
    done = flannelcap("decode", str(SAMPLES / "cross-node-http-client.pcap"))
    assert done.returncode == 0 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["No.", "Time", "Outer"]
    get = next(line for line in lines if "GET / HTTP/1.1" in line)
    tables = SAMPLES / str(samples["cross-node-http-client"]["tables"])
    pods = {
        p["metadata"]["name"]: p["status"]["podIP"]
        for p in json.loads((tables / "kubectl-get-pods.json").read_text())["items"]
    }
    nodes = {
        n["metadata"]["name"]: n["metadata"]["annotations"]["flannel.alpha.coreos.com/public-ip"]
        for n in json.loads((tables / "kubectl-get-nodes.json").read_text())["items"]
    }
    assert f"{nodes['kpi093']} → {nodes['kpi092']}" in get
    assert f"{pods['busybox']} → {pods['nginx']}" in get
    assert get.split()[5] == "1"  # No., Time, outer src, →, outer dst, VNI
    assert any("HTTP/1.1 200 OK" in line for line in lines)
    assert any("[SYN]" in line for line in lines)
    assert any("(not VXLAN)" in line and "ARP" in line for line in lines)
    vxlan = sum(1 for line in lines[1:] if " → " in line and "(not VXLAN)" not in line)
    assert f"packets: {vxlan} VXLAN (VNI 1: {vxlan})" in done.stdout
    assert "1 HTTP requests, 1 HTTP responses" in done.stdout


def test_json_lines_carry_the_field_vocabulary() -> None:
    done = flannelcap("decode", "--json", str(SAMPLES / "cross-node-http-server.pcap"))
    assert done.returncode == 0
    records = [json.loads(line) for line in done.stdout.splitlines()]
    vxlan = [r for r in records if r["is_vxlan"]]
    assert {r["vni"] for r in vxlan} == {1}
    assert {r["outer_dst_port"] for r in vxlan if r["outer_src_ip"] == "192.168.1.40"} == {8472}
    [get] = [r for r in records if r["http_method"]]
    assert (get["http_path"], get["inner_dst_ip"], get["dst_port"]) == ("/", "10.42.1.2", 80)


def test_csv_and_filters() -> None:
    done = flannelcap("decode", "--csv", "--proto", "http", str(SAMPLES / "cross-node-http-client.pcap"))
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [(r["http_method"], r["http_status"]) for r in rows] == [("GET", ""), ("", "200")]
    only = flannelcap(
        "decode", "--json", "--only-vxlan", "--packets", "1-6", str(SAMPLES / "cross-node-http-client.pcap")
    )
    numbers = [json.loads(line)["number"] for line in only.stdout.splitlines()]
    assert numbers and all(1 <= n <= 6 for n in numbers)
    assert all(json.loads(line)["is_vxlan"] for line in only.stdout.splitlines())
    none = flannelcap("decode", "--json", "--vni", "2", str(SAMPLES / "cross-node-http-client.pcap"))
    assert none.returncode == 0 and none.stdout == ""


def test_detail_shows_the_layer_stack() -> None:
    done = flannelcap("decode", "-v", "--proto", "http", str(SAMPLES / "cross-node-http-client.pcap"))
    assert done.returncode == 0
    block = done.stdout.split("GET / HTTP/1.1", 1)[1]
    layers = [
        line.strip() for line in block.splitlines() if line.startswith("    ") and not line.startswith("        ")
    ]
    assert layers[:10] == list(VXLAN_HTTP_LAYERS)
    assert "        dport: 8472" in block and "        vni: 0x1" in block


def test_extra_vxlan_port(tmp_path: Path) -> None:
    path = tmp_path / "custom.pcap"
    path.write_bytes(pcap([GOOD_FRAME(port=9999)]))
    plain = flannelcap("decode", "--json", str(path))
    assert json.loads(plain.stdout)["is_vxlan"] is False
    extra = flannelcap("decode", "--json", "--vxlan-port", "9999", str(path))
    assert json.loads(extra.stdout)["vni"] == 1


def test_gzip_capture(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "c.pcap.gz"
    path.write_bytes(gzip.compress((SAMPLES / "cross-node-http-client.pcap").read_bytes()))
    done = flannelcap("decode", "--json", str(path))
    assert done.returncode == 0
    assert [json.loads(line)["http_method"] for line in done.stdout.splitlines()].count("GET") == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file: it holds no capture"),
        (b"this is a text file\n", "not a pcap or pcapng file"),
    ],
)
def test_not_a_capture_exits_1_with_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    done = flannelcap("decode", str(path))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("flannelcap: error: ") and message in done.stderr
    _assert_no_traceback(done)
    assert path.read_bytes() == content  # the user's file is never touched


def test_missing_file(tmp_path: Path) -> None:
    done = flannelcap("decode", str(tmp_path / "nope.pcap"))
    assert done.returncode == 1 and "cannot open" in done.stderr
    _assert_no_traceback(done)


def test_truncated_capture_decodes_every_good_packet(tmp_path: Path) -> None:
    whole = (SAMPLES / "cross-node-http-client.pcap").read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(whole[:-10])
    done = flannelcap("decode", "--json", str(path))
    total = len(flannelcap("decode", "--json", str(SAMPLES / "cross-node-http-client.pcap")).stdout.splitlines())
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == total - 1
    assert done.stderr.startswith("flannelcap: warning: ")
    assert "is cut short" in done.stderr and f"the {total - 1} packets before it were decoded" in done.stderr
    _assert_no_traceback(done)


def test_header_only_capture_with_truncated_first_record(tmp_path: Path) -> None:
    path = tmp_path / "cut.pcap"
    path.write_bytes((SAMPLES / "cross-node-http-client.pcap").read_bytes()[:30])
    done = flannelcap("decode", str(path))
    assert done.returncode == 1
    assert "nothing could be decoded" in done.stderr
    _assert_no_traceback(done)


def test_snaplen_96_capture_made_by_editcap(tmp_path: Path) -> None:
    require_tool("editcap")
    cut = tmp_path / "s96.pcap"
    subprocess.run(["editcap", "-s", "96", str(SAMPLES / "cross-node-http-client.pcap"), str(cut)], check=True)
    done = flannelcap("decode", "--json", str(cut))
    assert done.returncode == 0
    records = [json.loads(line) for line in done.stdout.splitlines()]
    vxlan = [r for r in records if r["is_vxlan"]]
    assert vxlan and all(r["cap_len"] <= 96 for r in records)
    # 96 bytes hold the inner IP header and the first 12 bytes of TCP: the ports survive.
    assert {r["inner_src_ip"] for r in vxlan} == {"10.42.2.2", "10.42.1.2"}
    assert all(r["proto"] == "tcp" and 80 in (r["src_port"], r["dst_port"]) for r in vxlan)
    assert any("snaplen" in "; ".join(r["notes"]) for r in vxlan if r["cap_len"] < r["wire_len"])
    assert "later headers may be missing" in flannelcap("decode", str(cut)).stdout


def test_bad_usage_exits_2() -> None:
    done = flannelcap("decode", "--packets", "9-3", str(SAMPLES / "cross-node-http-client.pcap"))
    assert done.returncode == 2 and "empty packet range" in done.stderr
    no_file = flannelcap("decode")
    assert no_file.returncode == 2 and no_file.stdout == ""
    assert no_file.stderr.splitlines()[-1] == "flannelcap decode: error: the following arguments are required: file"
    unknown = flannelcap("frobnicate")
    assert unknown.returncode == 2 and "invalid choice: 'frobnicate'" in unknown.stderr


def test_lab_without_root_or_lab_says_what_to_do() -> None:
    done = flannelcap("lab", "status", "--prefix", "nosuchlab")
    assert done.returncode == 1 and done.stdout == ""
    expected = "no lab with prefix 'nosuchlab' is up" if os.geteuid() == 0 else "root"
    assert done.stderr.startswith("flannelcap: error: ") and expected in done.stderr, done.stderr
    _assert_no_traceback(done)


def test_unwritable_output_directories_are_one_line(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    for args in (["capture", "kpi093", "-o", str(blocked / "out")], ["lab", "record", "-o", str(blocked / "out")]):
        done = flannelcap(*args)
        assert done.returncode == 1, args
        assert done.stderr.startswith("flannelcap: error: "), done.stderr
        _assert_no_traceback(done)
    capture = flannelcap("capture", "kpi093", "-o", str(blocked / "out"))
    assert f"cannot write captures to {blocked / 'out'}: Not a directory" in capture.stderr


def test_several_files_in_parallel_print_in_order(tmp_path: Path) -> None:
    names = ["cross-node-http-client.pcap", "fault-wrong-fdb.pcap", "cross-node-large-transfer.pcap"]
    paths = [str(SAMPLES / n) for n in names]
    alone = [flannelcap("decode", "--summary", p).stdout for p in paths]
    together = flannelcap("decode", "--summary", "--jobs", "3", *paths)
    assert together.returncode == 0 and together.stderr == ""
    assert together.stdout == "\n".join(f"==> {p} <==\n{out}" for p, out in zip(paths, alone, strict=True))
    assert "800 packets" in together.stdout.split("==> ")[3]

    missing = str(tmp_path / "missing.pcap")
    done = flannelcap("decode", "--summary", "-j", "2", paths[0], missing, paths[1])
    assert done.returncode == 1
    assert done.stderr.strip() == f"flannelcap: error: cannot open {missing}: No such file or directory"
    assert done.stdout.count("packets:") == 2  # the files around the bad one are still decoded


def test_several_files_as_json_and_csv_say_which_file() -> None:
    paths = [str(SAMPLES / "cross-node-http-client.pcap"), str(SAMPLES / "fault-wrong-fdb.pcap")]
    objects = [json.loads(line) for line in flannelcap("decode", "--json", *paths).stdout.splitlines()]
    assert [o["file"] for o in objects] == [paths[0]] * 14 + [paths[1]] * 6
    assert [o["number"] for o in objects] == list(range(1, 15)) + list(range(1, 7))
    rows = list(csv.DictReader(io.StringIO(flannelcap("decode", "--csv", "-j", "1", *paths).stdout)))
    assert [r["file"] for r in rows] == [paths[0]] * 14 + [paths[1]] * 6
    assert rows[14]["number"] == "1" and rows[14]["outer_src_mac"] == objects[14]["outer_src_mac"]
    done = flannelcap("decode", "--parquet", "x.parquet", *paths)
    assert done.returncode == 1 and "one capture file at a time" in done.stderr


def test_progress_bar_on_a_terminal_is_wiped_before_the_summary() -> None:
    controller, terminal = pty.openpty()
    env = {**os.environ, "FLANNELCAP_PROGRESS_AFTER": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "flannelcap", "decode", "--summary", str(SAMPLES / "cross-node-large-transfer.pcap")],
        stdout=subprocess.PIPE,
        stderr=terminal,
        env=env,
        timeout=60,
        check=False,
    )
    os.close(terminal)
    shown = os.read(controller, 65536).decode()
    os.close(controller)
    assert done.returncode == 0 and done.stdout.startswith(b"800 packets")
    assert "cross-node-large-transfer.pcap [##############################] 100% 1/1 MB" in shown
    assert shown.endswith("\r\x1b[K")  # wiped: nothing of it stays on the terminal


# Python's words for "nothing" and its containers, where a value was unknown or a list empty.
INTERNALS = re.compile(r"\bNone\b|\[\]|\(\)|\{\}|<flannelcap\.|object at 0x")


def _unknowns(tmp_path: Path) -> Path:
    """Tables with holes: one node printed only its routes; kubectl knows another only by a
    null backend-data; a third has nothing but its name."""
    tables = tmp_path / "unknowns"
    shutil.copytree(SAMPLES / "cross-node-http-client.tables", tables)
    for table in (tables / "kpi091").iterdir():
        if "route" not in table.name:
            table.unlink()
    nodes = json.loads((tables / "kubectl-get-nodes.json").read_text())
    annotations = nodes["items"][1]["metadata"]["annotations"]
    annotations["flannel.alpha.coreos.com/backend-data"] = "null"
    annotations["flannel.alpha.coreos.com/backend-type"] = ""
    nodes["items"].append({"metadata": {"name": "kpi099"}})
    (tables / "kubectl-get-nodes.json").write_text(json.dumps(nodes))
    return tables


WITH_UNKNOWNS = {"file": "cross-node-http-client.pcap", "tables": "unknowns", "client": "busybox", "server": "nginx"}


@pytest.mark.parametrize("entry", [*manifest(), WITH_UNKNOWNS], ids=lambda e: str(e["tables"]))
def test_no_python_internals_in_any_message(entry: dict, tmp_path: Path) -> None:
    tables = _unknowns(tmp_path) if entry["tables"] == "unknowns" else SAMPLES / str(entry["tables"])
    capture = str(SAMPLES / str(entry["file"]))
    runs = {
        "decode": flannelcap("decode", capture, "--tables", str(tables)),
        "summary": flannelcap("decode", "--summary", capture, "--tables", str(tables)),
        "map": flannelcap("map", "--tables", str(tables)),
        "audit": flannelcap("audit", capture, "--tables", str(tables)),
        "explain": flannelcap(
            "explain", str(entry["client"]), str(entry["server"]), "--tables", str(tables), "--capture", capture
        ),
    }
    for command, done in runs.items():
        assert done.returncode in (0, 1), (command, done.stderr)
        text = done.stdout + done.stderr
        assert text.strip(), command
        assert not INTERNALS.findall(text), (command, [line for line in text.splitlines() if INTERNALS.search(line)])
    if entry["tables"] == "unknowns":
        assert "kubectl get nodes: node kpi092: backend-data is null (an empty backend-type" in runs["audit"].stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["kpi093", "--via-file", "--json"], "--via-file has no stream to show or merge: leave out --via-file"),
        (["kpi093", "--node-level", "-i", "eth1"], "--node-level captures every interface (-i any): leave out -i"),
        (["--pod", "nginx"], "--pod and --selector find pods in the cluster's tables: give --tables DIR or --topology"),
        ([], "name a node to capture on, or a pod with --pod / --selector"),
        (["kpi093", "--pod", "nginx", "--tables", str(SAMPLES / "cross-node-http-client.tables")],
         "give nodes or --pod/--selector, not both"),
        (["--pod", "nosuchpod", "--tables", str(SAMPLES / "cross-node-http-client.tables")],
         "no pod 'nosuchpod' in the topology (its pods: "),
        (["--selector", "app", "--tables", str(SAMPLES / "cross-node-http-client.tables")],
         "selector term 'app' is not key=value or key!=value"),
        (["kpi093", "-w", "-", "--json"], "-w - writes the packets to stdout: the live view cannot go there too"),
    ],
)  # fmt: skip
def test_capture_arguments_that_cannot_work_are_one_line_before_any_connection(args: list[str], message: str) -> None:
    done = flannelcap("capture", "-F", "/dev/null", *args)
    assert done.returncode != 0 and f"flannelcap: error: {message}" in done.stderr, done.stderr
    _assert_no_traceback(done)


def test_capture_never_overwrites_a_merged_capture(tmp_path: Path) -> None:
    existing = tmp_path / "merged.pcapng"
    existing.write_bytes(b"the user's capture")
    done = flannelcap("capture", "-F", "/dev/null", "kpi093", "-q", "-w", str(existing), "-o", str(tmp_path))
    assert done.returncode == 1
    assert f"flannelcap: error: {existing} exists: flannelcap never overwrites a capture" in done.stderr
    assert existing.read_bytes() == b"the user's capture"
    _assert_no_traceback(done)


def test_a_command_loads_its_own_module_and_help_lists_every_command() -> None:
    """``flannelcap decode`` starts without the lab, SSH or plotting code; ``--help`` still
    names every command, and a command that does not exist is a usage error naming them."""
    sample = str(SAMPLES / "cross-node-http-client.pcap")
    probe = (
        "import sys, contextlib, io\nfrom flannelcap.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        f"    status = main(['decode', '--summary', {sample!r}])\n"
        "print(status, 'VXLAN' in out.getvalue(), sorted(m for m in sys.modules if m.startswith('flannelcap.cli.')))\n"
        "print(sorted(m for m in ('flannelcap.lab', 'flannelcap.remote', 'flannelcap.plots') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    first, second = done.stdout.splitlines()
    assert first.startswith("0 True ") and "'flannelcap.cli._decode_cmd'" in first
    assert "_lab_cmd" not in first and "_capture_cmd" not in first
    assert second == "[]"
    commands = ("decode", "map", "audit", "explain", "capture", "journey", "services", "plot", "report", "lab")
    listed = flannelcap("--help").stdout
    assert all(re.search(rf"^\s+{name}\s", listed, re.M) for name in commands), listed
    wrong = flannelcap("decoed", sample)
    assert wrong.returncode == 2 and "invalid choice: 'decoed'" in wrong.stderr and "'lab'" in wrong.stderr


def test_the_command_line_keeps_numpys_blas_to_one_thread() -> None:
    """Importing the package imports no numpy, so the command line sets OPENBLAS_NUM_THREADS before
    numpy starts its BLAS threads (which spin on the cores a decode needs); a value the user set
    is kept. Counted in /proc: the process's threads once numpy is loaded through the CLI."""
    probe = (
        "import os, sys; import flannelcap; assert 'numpy' not in sys.modules, 'the package imported numpy'; "
        "import flannelcap.cli, numpy; print(os.environ['OPENBLAS_NUM_THREADS'], len(os.listdir('/proc/self/task')))"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", probe], env=clean, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"]
    mine = subprocess.run(
        [sys.executable, "-c", probe], env={**clean, "OPENBLAS_NUM_THREADS": "3"}, capture_output=True, text=True
    )
    assert mine.returncode == 0, mine.stderr
    assert mine.stdout.split()[0] == "3"
