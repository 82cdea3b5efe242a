"""The notebooks run clean, and show the values they should (not merely that they ran)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import nbformat
import pytest
from conftest import REPO, SAMPLES, require_root_lab
from nbclient import NotebookClient

from flannelcap.lab import teardown
from flannelcap.lab._lab import existing_namespaces

NOTEBOOKS = REPO / "notebooks"


def run_notebook(name: str, workdir: Path) -> tuple[str, int]:
    """Execute a copy of the notebook beside a link to sample_pcaps; return its text output
    and how many PNG figures it showed."""
    (workdir / "notebooks").mkdir()
    (workdir / "sample_pcaps").symlink_to(SAMPLES)
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(workdir / "notebooks")}}
    )
    client.execute()
    texts, images = [], 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                pytest.fail(f"{name}: {output['ename']}: {output['evalue']}")
            texts.append(output.get("text", ""))
            data = output.get("data", {})
            texts.append(data.get("text/plain", ""))
            texts.append(data.get("text/html", ""))
            images += "image/png" in data
    return "\n".join(texts), images


def _annotations(name: str) -> dict[str, dict]:
    items = json.loads((SAMPLES / name / "kubectl-get-nodes.json").read_text())["items"]
    return {i["metadata"]["name"]: i["metadata"]["annotations"] for i in items}


def test_lab_walkthrough(tmp_path: Path) -> None:
    text, images = run_notebook("1-lab-walkthrough.ipynb", tmp_path)
    nodes = _annotations("cross-node-http-client.tables")
    server_mac = json.loads(nodes["kpi092"]["flannel.alpha.coreos.com/backend-data"])["VtepMAC"]
    for expected in (
        "flannelcap capture cross-node-http-client.pcap",
        "VNI 1: 12",
        "busybox",
        "nginx",
        nodes["kpi093"]["flannel.alpha.coreos.com/public-ip"],
        server_mac,
        "GET / HTTP/1.1",
        "10.42.1.0/24 via 10.42.1.0 dev flannel.1 onlink",
        f"10.42.1.0 is at {server_mac} (PERMANENT",
        f"kpi093: bridge fdb show dev flannel.1: {server_mac} dst 192.168.1.39 self permanent",
    ):
        assert expected in text, expected
    assert images == 2  # Figure 2 and the ladder


def test_audit_notebook(tmp_path: Path) -> None:
    text, images = run_notebook("2-audit-a-broken-overlay.ipynb", tmp_path)
    assert "fdb-wrong-dst" in text and "inner-mac-mismatch" in text
    assert "points at 192.168.1.38 (kpi091), not at kpi092's 192.168.1.39" in text
    assert "✗ 4. FDB entry on kpi093" in text and "✗ 5. on the wire" in text
    assert images == 2


def test_journey_notebook(tmp_path: Path) -> None:
    text, images = run_notebook("4-follow-a-packet.ipynb", tmp_path)
    entry = json.loads((SAMPLES / "journeys" / "manifest.jsonl").read_text().splitlines()[1])
    assert entry["name"] == "drop-vxlan"
    assert text.count("arrived on kpi092 eth0, never reached flannel.1") == entry["dropped_by_fault"]
    assert "kpi092 +" in text or "kpi092 -" in text  # the clock estimate, signed
    assert "kpi093 veth49b5672c" in text and "kpi092 flannel.1" in text  # the hop table's points
    assert images == 1


def test_capture_over_ssh_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The notebook builds its lab under a prefix this test chooses, so that afterwards the
    test removes that lab's namespaces (if the notebook failed to) and nothing else: a
    namespace someone else made while it ran is still there after it."""
    require_root_lab()
    prefix = "nbt" + uuid.uuid4().hex[:5]
    foreign = "fcforeign-" + uuid.uuid4().hex[:6]  # stands for other work on this machine
    monkeypatch.setenv("FLANNELCAP_NOTEBOOK_LAB_PREFIX", prefix)
    subprocess.run(["ip", "netns", "add", foreign], check=True)
    try:
        try:
            text, _images = run_notebook("3-capture-over-ssh.ipynb", tmp_path)
        finally:
            left = [ns for ns in existing_namespaces() if ns.startswith(prefix + "-")]
            teardown(prefix)
        assert foreign in existing_namespaces()
    finally:
        subprocess.run(["ip", "netns", "del", foreign], check=False)
    assert "cluster reachable: True" in text
    assert "lab up: kpi091 192.168.1.38, kpi092 192.168.1.39, kpi093 192.168.1.40" in text
    lines = [line.split() for line in text.splitlines() if line.strip().startswith(tuple("0123456789"))]
    vxlan = [line for line in lines if len(line) > 4 and line[3] == "1" and line[1].startswith("192.168.1.")]
    assert {(line[1], line[2]) for line in vxlan} == {
        ("192.168.1.40", "192.168.1.39"),
        ("192.168.1.39", "192.168.1.40"),
    }
    assert any("GET / HTTP/1.1" in line for line in text.splitlines())
    assert "lab down: 8 namespaces removed" in text
    assert not left, f"the notebook left namespaces behind: {left}"
    assert not (tmp_path / "notebooks" / "captures").exists()
    assert shutil.which("ip")


def test_services_notebook(tmp_path: Path) -> None:
    text, images = run_notebook("5-services-metallb-kube-proxy.ipynb", tmp_path)
    entries = {
        e["name"]: e for e in map(json.loads, (SAMPLES / "services" / "manifest.jsonl").read_text().splitlines())
    }
    curls, failover = entries["thirty-curls"], entries["failover"]
    assert "default      web      LoadBalancer  10.43.71.110   192.168.1.201" in text
    assert f"announced by {curls['announcer']}; 30 connections, 30 answered" in text
    assert "externalTrafficPolicy Cluster (the client masqueraded)" in text
    for pod, count in curls["answers"].items():  # what the client read in the 30 responses
        assert re.search(rf"{pod}\s+kpi\d+\s+{count}\s+{count}\s", text), pod  # pod, node, connections, answered
    assert failover["old_announcer"] in text and failover["new_announcer"] in text
    assert text.count("vip-two-announcers") == 2
    assert "traefik-7d6f8f4c9b-7ns8d" in text and "flannel.1 (masqueraded)" in text
    assert images == 2  # the spread and the announcers' timeline
