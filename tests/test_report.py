"""The HTML report, opened in a real headless Chromium: what the page shows once its script
ran, that it asks the network for nothing, and that a hostile capture cannot run script in it."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import CHROMIUM, Browser
from conftest import SAMPLES, manifest, require
from pcapdata import inner_tcp, pcap, vxlan_frame

import flannelcap


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require(CHROMIUM is not None, "needs Chromium (Debian package chromium) to render the report")
    opened = Browser()
    try:
        yield opened
    finally:
        opened.close()


def _render(browser: Browser, page: Path) -> None:
    browser.events.clear()
    browser.open(page)


def _no_requests_or_errors(browser: Browser, page: Path) -> None:
    assert browser.requests() == [page.resolve().as_uri()]  # the page itself, nothing else
    assert browser.console_errors() == []


@pytest.mark.parametrize("entry", manifest(), ids=lambda e: str(e["file"]))
def test_the_report_of_each_sample_in_a_browser(browser: Browser, entry: dict, tmp_path: Path) -> None:
    capture = flannelcap.read(SAMPLES / str(entry["file"]), topology=SAMPLES / str(entry["tables"]))
    page = tmp_path / "report.html"
    done = subprocess.run(
        [sys.executable, "-m", "flannelcap", "report", str(capture.path), "--tables", str(SAMPLES / entry["tables"]),
         "-o", str(page)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout == f"report written to {page}\n", done.stderr
    _render(browser, page)
    _no_requests_or_errors(browser, page)

    # Figure 2 shows the addresses of the first tunnelled conversation's first VXLAN packet.
    packets, flows = capture.packets, capture.flows()
    tunnelled = flows[flows.vxlan.astype(bool)]
    figure = browser.js("[...document.querySelectorAll('figure.figure2 svg text')].map(t => t.textContent).join('\\n')")
    if tunnelled.empty:
        assert figure == "" and browser.js("document.getElementById('figure2')") is None
    else:
        flow = tunnelled.iloc[0]
        first = packets[packets.is_vxlan.astype(bool) & (packets.src_ip == flow.src_ip)].iloc[0]
        for address in (first.outer_src_ip, first.outer_dst_ip, first.inner_src_mac, first.inner_dst_mac):
            assert str(address) in figure, (address, figure)
        assert f"pod {flow.src_pod}" in figure and f"pod {flow.dst_pod}" in figure

    # Each finding's packet links land on that packet's row of the list.
    links = browser.js("[...document.querySelectorAll('#findings a')].map(a => a.getAttribute('href'))")
    expected = [f"#p{n}" for f in capture.findings_list() for n in f.packets]
    assert links == expected
    for href in links:
        browser.js(f"document.querySelector('#findings a[href=\"{href}\"]').click()")
        assert browser.js("document.querySelector(':target').id") == href[1:]
        assert browser.js("document.querySelector(':target').cells[0].textContent") == href[2:]

    # The footer names the capture by its SHA-256 (hashed beside the sections, in a thread).
    digest = hashlib.sha256(capture.path.read_bytes()).hexdigest()
    assert f"{capture.path.name} SHA-256 {digest}" in browser.js("document.querySelector('footer').textContent")

    # The packet list holds every packet, in order.
    numbers = browser.js("[...document.querySelectorAll('#packets-table tbody tr')].map(r => r.cells[0].textContent)")
    assert numbers == [str(n) for n in packets.number]

    # Filtering the conversations keeps the rows that hold the text, and only those.
    rows = browser.js("document.querySelectorAll('#conversations-table tbody tr').length")
    assert rows == len(flows)
    needle = str(flows.src_ip.iloc[0])
    browser.js(
        "const box = document.querySelector('input[data-table=\"conversations-table\"]');"
        f"box.value = {json.dumps(needle)}; box.dispatchEvent(new Event('input'));"
    )
    visible = browser.js(
        "[...document.querySelectorAll('#conversations-table tbody tr')].filter(r => !r.hidden).length"
    )
    assert visible == sum(1 for row in flows.itertuples() if needle in f"{row.src_ip} {row.dst_ip}") >= 1
    assert browser.console_errors() == []


HOSTILE_PATH = "/<script>console.log('pwned-path')</script>"
HOSTILE_HOST = "\"><img src=x onerror=console.log('pwned-host')>"
HOSTILE_POD = "<script>console.log('pwned-pod')</script>"


def test_a_hostile_capture_is_shown_as_text_and_runs_nothing(browser: Browser, tmp_path: Path) -> None:
    tables = tmp_path / "tables"
    shutil.copytree(SAMPLES / "cross-node-http-client.tables", tables)
    pods = json.loads((tables / "kubectl-get-pods.json").read_text())
    for item in pods["items"]:
        if item["metadata"]["name"] == "busybox":
            item["metadata"]["name"] = HOSTILE_POD
    (tables / "kubectl-get-pods.json").write_text(json.dumps(pods))
    request = f"GET {HOSTILE_PATH} HTTP/1.1\r\nHost: {HOSTILE_HOST}\r\n\r\n".encode()
    segment = inner_tcp(request, src="10.42.2.2", dst="10.42.1.2")
    capture = tmp_path / "hostile.pcap"
    capture.write_bytes(pcap([vxlan_frame(segment, outer_src="192.168.1.40", outer_dst="192.168.1.39")]))
    page = flannelcap.read(capture, topology=tables).report(tmp_path / "hostile.html")
    _render(browser, page)
    _no_requests_or_errors(browser, page)
    shown = browser.js("document.body.textContent")  # as text nodes, the collapsed packet details included
    for hostile in (HOSTILE_PATH, HOSTILE_HOST, HOSTILE_POD):
        assert hostile in shown, hostile
    assert "pwned" not in " ".join(browser.console_messages())
    assert browser.js("document.scripts.length") == 1  # the report's own
    assert browser.js("document.images.length") == 0
    assert browser.js("document.querySelectorAll('[onerror]').length") == 0


def test_the_packet_list_says_where_it_stops(browser: Browser, tmp_path: Path) -> None:
    capture = flannelcap.read(SAMPLES / "cross-node-large-transfer.pcap")
    page = capture.report(tmp_path / "short.html", max_packets=25)
    _render(browser, page)
    _no_requests_or_errors(browser, page)
    assert browser.js("document.querySelectorAll('#packets-table tbody tr').length") == 25
    assert f"The first 25 of {len(capture.packets)} packets" in browser.js(
        "document.getElementById('packets').innerText"
    )


def test_the_chosen_conversation_is_the_one_drawn(browser: Browser, tmp_path: Path) -> None:
    from conftest import REPO

    capture_file = tmp_path / "many.pcap"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "make_capture.py"), str(capture_file), "--packets", "200"],
        check=True,
        capture_output=True,
    )
    capture = flannelcap.read(capture_file)
    flows = capture.flows()
    tunnelled = [i for i, crossed in enumerate(flows.vxlan.astype(bool)) if crossed]
    assert len(tunnelled) > 3
    chosen = tunnelled[3]
    page = capture.report(tmp_path / "chosen.html", flow=chosen)
    _render(browser, page)
    _no_requests_or_errors(browser, page)
    figure = browser.js("[...document.querySelectorAll('figure.figure2 svg text')].map(t => t.textContent).join(' ')")
    assert f"{flows.src_ip.iloc[chosen]}" in figure and f"{flows.dst_ip.iloc[chosen]}" in figure
    others = {flows.src_ip.iloc[i] for i in tunnelled} - {flows.src_ip.iloc[chosen], flows.dst_ip.iloc[chosen]}
    assert not [ip for ip in others if f"eth0 {ip}" in figure]
    done = subprocess.run(
        [sys.executable, "-m", "flannelcap", "report", str(capture_file), "--flow", "99999", "-o", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "conversation 99999 is not one that crossed VXLAN" in done.stderr
    assert not (tmp_path / "x").exists()
