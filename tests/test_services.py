"""Services on the wire (seed lab §4–5) on the lab's recordings (``sample_pcaps/services``,
recorded by ``flannelcap lab record --services``): who announces each LoadBalancer IP, where
kube-proxy sent each connection, Traefik's X-Forwarded-* — each held to what tshark reads
independently and to what the client saw; and, as root, a services lab built afresh."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import subprocess
import uuid
from collections import Counter
from pathlib import Path

import pytest
from conftest import SAMPLES, require_root_lab, require_tool

import flannelcap
from flannelcap._errors import LabError, TableParseError
from flannelcap.analysis.services import chi2_sf
from flannelcap.cli import main
from flannelcap.lab import Lab, LabSpec, plan_lab, teardown
from flannelcap.lab._ingress import forwarded_headers
from flannelcap.lab._services_plan import (
    elect_announcer,
    kube_proxy_ruleset,
    kubectl_endpointslices,
    kubectl_services,
)
from flannelcap.packets.http import parse_head
from flannelcap.topology.collect import topology_from_dir
from flannelcap.topology.kube import parse_kubectl_services

SERVICES = SAMPLES / "services"
ENTRIES = {e["name"]: e for e in map(json.loads, (SERVICES / "manifest.jsonl").read_text().splitlines())}


def _read(name: str) -> flannelcap.Captures:
    return flannelcap.read_many([SERVICES / name / f for f in ENTRIES[name]["files"]], SERVICES / name / "tables")


def _eth0_macs(name: str) -> dict[str, str]:
    """node → its eth0 MAC, from the saved ``ip -j link`` of each node."""
    macs = {}
    for node_dir in (SERVICES / name / "tables").iterdir():
        link = node_dir / "ip-link.json"
        if link.exists():
            eth0 = next(item for item in json.loads(link.read_text()) if item["ifname"] == "eth0")
            macs[node_dir.name] = eth0["address"]
    return macs


def _tshark(path: Path, display: str, fields: list[str]) -> list[list[str]]:
    require_tool("tshark")
    argv = ["tshark", "-n", "-r", str(path), "-d", "udp.port==8472,vxlan", "-Y", display, "-T", "fields"]
    for field in fields:
        argv += ["-e", field]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def _body_text(field: str) -> str:
    """``http.file_data`` as text: tshark 4.0 prints it as text, other versions as hex bytes."""
    if re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2})*", field):
        return bytes.fromhex(field.replace(":", "")).decode(errors="replace")
    return field


# -- pure parts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "dof", "p"),
    [
        (3.841458820694124, 1, 0.05),
        (5.991464547107979, 2, 0.05),
        (7.814727903251178, 3, 0.05),
        (9.487729036781154, 4, 0.05),
        (11.070497693516351, 5, 0.05),
        (0.10258658877510107, 2, 0.95),
        (3.2, 2, math.exp(-1.6)),
        (0.0, 3, 1.0),
    ],
)
def test_chi2_tail_matches_the_tables(x: float, dof: int, p: float) -> None:
    assert chi2_sf(x, dof) == pytest.approx(p, rel=1e-9)


def test_announcer_is_metallbs_layer2_election() -> None:
    nodes = ["kpi091", "kpi092", "kpi093"]
    for ip in ("192.168.1.200", "192.168.1.201", "192.168.1.202"):
        by_hash = sorted(nodes, key=lambda n: hashlib.sha256(f"{n}#{ip}".encode()).digest())
        assert elect_announcer(nodes, ip) == by_hash[0]
        assert elect_announcer(list(reversed(nodes)), ip) == by_hash[0]  # not the order given
    with pytest.raises(LabError):
        elect_announcer([], "192.168.1.201")


def test_kube_proxy_rules_follow_the_traffic_policy() -> None:
    cluster = plan_lab(LabSpec(services=True))
    web = next(s for s in cluster.services if s.name == "web")
    rules = kube_proxy_ruleset(cluster.services, cluster.pods, "kpi091")
    assert "ip daddr 192.168.1.201 tcp dport 80 jump ext-web" in rules
    assert "numgen random mod 3 vmap { 0 : jump ep-web-0, 1 : jump ep-web-1, 2 : jump ep-web-2 }" in rules
    assert "chain ext-web {\n    meta mark set meta mark | 0x4000\n    jump svc-web" in rules  # masquerade
    for name in web.endpoints:
        pod = cluster.pod(name)
        assert f"meta l4proto tcp dnat to {pod.ip}:80" in rules
    local = plan_lab(LabSpec(services=True, traffic_policy="Local"))
    on_kpi092 = kube_proxy_ruleset(local.services, local.pods, "kpi092")
    replica = next(p for p in local.pods if p.app == "web" and p.node == "kpi092")
    assert "chain ext-web {\n    jump local-web\n  }" in on_kpi092  # no masquerade mark
    assert "numgen random mod 1 vmap { 0 : jump ep-web-1 }" in on_kpi092
    assert replica.ip == "10.42.1.17"
    with pytest.raises(LabError, match="externalTrafficPolicy"):
        plan_lab(LabSpec(services=True, traffic_policy="Sometimes"))
    with pytest.raises(LabError, match="--nodes 3"):
        plan_lab(LabSpec(nodes=2, services=True))


def test_kubectl_services_and_endpointslices_parse_into_the_topology() -> None:
    plan = plan_lab(LabSpec(services=True))
    texts = [json.dumps(kubectl_services(plan.services)), json.dumps(kubectl_endpointslices(plan.services, plan.pods))]
    parsed = {s.key: s for s in parse_kubectl_services(texts)}
    web, traefik = parsed["default/web"], parsed["kube-system/traefik"]
    assert (web.type, web.cluster_ips, web.external_ips, web.ports, web.policy) == (
        "LoadBalancer",
        ("10.43.71.110",),
        ("192.168.1.201",),
        (80,),
        "Cluster",
    )
    assert [(e.ip, e.port, e.node) for e in web.endpoints] == [
        ("10.42.0.17", 80, "kpi091"),
        ("10.42.1.17", 80, "kpi092"),
        ("10.42.2.17", 80, "kpi093"),
    ]
    assert [(e.ip, e.port) for e in traefik.endpoints] == [("10.42.0.5", 8000)]
    # one List holding both kinds, as 'kubectl get svc,endpointslices -A -o json' prints it
    both = json.dumps({"kind": "List", "items": json.loads(texts[0])["items"] + json.loads(texts[1])["items"]})
    assert parse_kubectl_services([both]) == list(parsed.values())


@pytest.mark.parametrize("text", ["", "not json", '{"kind": "List"}', '{"items": [{"kind": "Service"}]}'])
def test_garbage_services_json_is_a_parse_error(text: str) -> None:
    with pytest.raises(TableParseError):
        parse_kubectl_services([text])


def test_traefik_stand_in_sets_the_forwarded_headers() -> None:
    sent = forwarded_headers(
        [("Host", "192.168.1.200"), ("Connection", "keep-alive"), ("X-Forwarded-For", "203.0.113.7")],
        "10.42.2.0",
        "traefik-7d6f8f4c9b-7ns8d",
        80,
    )
    assert dict(sent) == {
        "Host": "192.168.1.200",
        "X-Forwarded-For": "203.0.113.7, 10.42.2.0",
        "X-Forwarded-Host": "192.168.1.200",
        "X-Forwarded-Port": "80",
        "X-Forwarded-Proto": "http",
        "X-Forwarded-Server": "traefik-7d6f8f4c9b-7ns8d",
        "X-Real-Ip": "10.42.2.0",
    }
    head = parse_head(b"GET / HTTP/1.1\r\nHost: a\r\nx-forwarded-for:  1.2.3.4, 10.42.2.0 \r\nX-Forwarded-Server: t1")
    assert head is not None
    assert (head.forwarded_for, head.forwarded_server) == ("1.2.3.4, 10.42.2.0", "t1")


# -- the recordings --------------------------------------------------------------------


def test_thirty_curls_spread_as_the_responses_say() -> None:
    entry = ENTRIES["thirty-curls"]
    captures = _read("thirty-curls")
    summary = captures.services().set_index("service").loc["default/web"]
    assert summary["announced_by"] == entry["announcer"]
    assert (summary["connections"], summary["answered"]) == (30, 30)
    assert summary["observed_policy"] == "Cluster" == entry["policy"]
    # Which replica answered each request, read by tshark from the response bodies on the
    # management host's eth0 — independently of flannelcap's pairing of SYNs.
    bodies = _tshark(
        SERVICES / "thirty-curls" / "xubulab-eth0.pcap",
        f"ip.src == {entry['vip']} && http.response",
        ["http.file_data"],
    )
    texts = [_body_text(b[0]) for b in bodies]
    answered = Counter(m.group(1) for m in (re.search(r"pod: (\S+) ", t) for t in texts) if m)
    assert sum(answered.values()) == 30
    endpoints = captures.endpoints()
    web = endpoints[endpoints["service"] == "default/web"]
    assert dict(zip(web["pod"], web["connections"], strict=True)) == dict(answered) == entry["answers"]
    assert (web["answered"] == web["connections"]).all()
    connections = captures.connections()
    assert set(connections["received_by"]) == {entry["announcer"]}
    assert connections["masqueraded"].all() and (connections["http_status"] == 200).all()
    # Each DNATed leg leaves through VXLAN, or through cni0 to the announcing node's own replica.
    local = connections["endpoint_node"] == entry["announcer"]
    assert set(connections["path"][local]) <= {"cni0"} and set(connections["path"][~local]) == {"vxlan"}
    expected = [c for c in web["connections"]]
    chi2 = sum((c - 10) ** 2 / 10 for c in expected)
    assert summary["chi2"] == pytest.approx(chi2) and summary["p_value"] == pytest.approx(chi2_sf(chi2, 2))


def test_failover_shows_both_announcers_and_the_takeover_time() -> None:
    entry = ENTRIES["failover"]
    macs = _eth0_macs("failover")
    captures = _read("failover")
    takeovers = captures.takeovers()
    web = takeovers[takeovers["vip"] == entry["vip"]]
    assert web["to_node"].tolist() == [entry["old_announcer"], entry["new_announcer"]]
    assert web["to_mac"].tolist() == [macs[entry["old_announcer"]], macs[entry["new_announcer"]]]
    # The takeover is the new announcer's first gratuitous ARP, as tshark sees it.
    gratuitous = _tshark(
        SERVICES / "failover" / "xubulab-eth0.pcap",
        f"arp.isgratuitous && arp.src.hw_mac == {macs[entry['new_announcer']]} && arp.src.proto_ipv4 == {entry['vip']}",
        ["frame.time_epoch", "frame.number"],
    )
    takeover = web.iloc[1]
    assert takeover["time"] == pytest.approx(float(gratuitous[0][0]), abs=1e-6)
    assert takeover["number"] == int(gratuitous[0][1])
    assert takeover["time"] > entry["leader_stopped_at"]
    assert len(gratuitous) == 2 * 5  # request and reply, at once and every 1.1 s for 5 s
    summary = captures.services().set_index("service").loc["default/web"]
    assert summary["announced_by"] == entry["new_announcer"] and not summary["split_brain"]
    assert captures.service_findings() == []


def test_split_brain_is_an_error_naming_both_macs() -> None:
    entry = ENTRIES["split-brain"]
    macs = _eth0_macs("split-brain")
    found = _read("split-brain").service_findings()
    # the announcer led both Service IPs (Traefik's and web's): both are claimed twice
    assert [f.code for f in found] == ["vip-two-announcers"] * 2
    assert sorted(f.message.split()[0] for f in found) == ["192.168.1.200", "192.168.1.201"]
    assert {f.severity for f in found} == {"error"}
    for node in entry["announcers"]:
        assert all(f"{macs[node]} ({node})" in f.message for f in found)
    replies = _tshark(
        SERVICES / "split-brain" / "xubulab-eth0.pcap",
        f"arp.opcode == 2 && arp.src.proto_ipv4 == {entry['vip']}",
        ["arp.src.hw_mac"],
    )
    assert {r[0] for r in replies} == {macs[n] for n in entry["announcers"]}


def test_endpoint_down_is_found_with_its_lost_connections() -> None:
    entry = ENTRIES["endpoint-down"]
    captures = _read("endpoint-down")
    found = [f for f in captures.service_findings() if f.code == "endpoint-never-answers"]
    assert len(found) == 1 and entry["gone"] in found[0].message
    endpoints = captures.endpoints().set_index("pod")
    assert endpoints.loc[entry["gone"], "connections"] == entry["failed"] > 0
    assert endpoints.loc[entry["gone"], "answered"] == 0
    for pod, count in entry["answers"].items():
        assert endpoints.loc[pod, "connections"] == endpoints.loc[pod, "answered"] == count


def test_traefik_names_itself_and_the_masqueraded_client() -> None:
    entry = ENTRIES["traefik"]
    captures = _read("traefik")
    proxied = captures.ingress()
    tables = topology_from_dir(SERVICES / "traefik" / "tables")
    traefik_pod = next(p for p in tables.pods if p.name.startswith("traefik-"))
    announcer = tables.node(entry["announcer"])
    assert announcer is not None
    assert len(proxied) == entry["requests"] == 12
    assert set(proxied["ingress"]) == {traefik_pod.name} and set(proxied["ingress_ip"]) == {traefik_pod.ip}
    # The Service masqueraded the client (Cluster policy): Traefik sees the announcing node's flannel.1.
    assert set(proxied["client"]) == {announcer.vtep_ip}
    assert set(proxied["client_is"]) == {f"{announcer.name}'s flannel.1 (masqueraded)"}
    assert dict(Counter(proxied["backend_pod"])) == entry["answers"]
    connections = captures.connections()
    assert set(connections["endpoint_pod"]) == {traefik_pod.name} and len(connections) == 12


def test_cli_prints_announcer_spread_and_findings(capsys: pytest.CaptureFixture[str]) -> None:
    entry = ENTRIES["thirty-curls"]
    files = [str(SERVICES / "thirty-curls" / f) for f in entry["files"]]
    assert main(["services", *files]) == 0  # the tables beside the captures
    out, err = capsys.readouterr()
    assert "nodes and pods named from" in err
    assert f"announced by {entry['announcer']}" in out
    for pod, count in entry["answers"].items():
        assert re.search(rf"{pod}\s+\S+\s+{count}\s", out), pod
    assert "externalTrafficPolicy Cluster" in out
    assert main(["services", *files, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert len(document["connections"]) == 30 and document["findings"] == []
    split = [str(SERVICES / "split-brain" / f) for f in ENTRIES["split-brain"]["files"]]
    assert main(["services", *split]) == 0
    assert "SPLIT BRAIN" in capsys.readouterr().out


def test_audit_reports_the_split_brain(capsys: pytest.CaptureFixture[str]) -> None:
    capture = SERVICES / "split-brain" / "xubulab-eth0.pcap"
    assert main(["audit", str(capture), "--tables", str(SERVICES / "split-brain" / "tables"), "--json"]) == 0
    codes = [f["code"] for f in json.loads(capsys.readouterr().out)]
    assert "vip-two-announcers" in codes


def test_damaged_services_json_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tables = tmp_path / "tables"
    subprocess.run(["cp", "-r", str(SERVICES / "thirty-curls" / "tables"), str(tables)], check=True)
    (tables / "kubectl-get-svc.json").write_text('{"kind": "List", "items": [{"kind": "Service"}]}')
    capture = str(SERVICES / "thirty-curls" / "xubulab-eth0.pcap")
    assert main(["services", capture, "--tables", str(tables)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "kubectl get svc,endpointslices" in err[0] and "Traceback" not in err[0]


# -- a services lab, built here --------------------------------------------------------


def test_a_services_lab_announces_spreads_and_fails_over(tmp_path: Path) -> None:
    require_root_lab()
    require_tool("nft")
    require_tool("curl")
    prefix = "s" + uuid.uuid4().hex[:6]
    lab = Lab.up(LabSpec(prefix=prefix, services=True))
    try:
        web = next(s for s in lab.plan.services if s.name == "web")
        status = {s["name"]: s for s in lab.status()["services"]}
        assert status["web"]["announced_by"] == [web.announcer]
        seen = Counter()
        for _ in range(12):
            done = lab.exec("xubulab", ["curl", "-s", "-m", "3", f"http://{web.external_ip}/"], capture_output=True)
            match = re.search(rb"pod: (\S+) node: (\S+)<", done.stdout)
            assert match, done.stdout[-200:]
            seen[match.group(1).decode()] += 1
        assert set(seen) <= set(web.endpoints) and sum(seen.values()) == 12
        assert "jump ext-web" in lab.output(web.announcer, ["nft", "list", "table", "ip", "kube-proxy"])
        other = next(n.name for n in lab.plan.nodes if n.name != web.announcer)
        said = lab_fault(prefix, "announcer-failover", web.announcer, other)
        assert f"{other} took over" in said
        status = {s["name"]: s for s in lab.status()["services"]}
        assert status["web"]["announced_by"] == [other]
        with pytest.raises(LabError, match="announces no service IP"):
            lab_fault(prefix, "split-brain", web.announcer, other)
    finally:
        teardown(prefix, lab.plan.namespaces)


def lab_fault(prefix: str, kind: str, node: str, peer: str) -> str:
    from flannelcap.lab._faults import apply_fault

    return apply_fault(Lab.load(prefix), kind, node, peer)


def test_a_dnat_to_an_address_no_pod_has_is_found() -> None:
    # The tables after the replica on kpi091 was deleted (gone from the pods and the
    # EndpointSlice) while the capture still shows kube-proxy sending connections to it.
    entry = ENTRIES["thirty-curls"]
    tables = topology_from_dir(SERVICES / "thirty-curls" / "tables")
    gone = next(p for p in tables.pods if p.name.startswith("web-") and p.node == "kpi091")
    services = tuple(
        dataclasses.replace(s, endpoints=tuple(e for e in s.endpoints if e.ip != gone.ip)) for s in tables.services
    )
    stale = dataclasses.replace(tables, pods=tuple(p for p in tables.pods if p != gone), services=services)
    captures = flannelcap.read_many([SERVICES / "thirty-curls" / f for f in entry["files"]], stale)
    found = [f for f in captures.service_findings() if f.code == "dnat-to-unknown-pod"]
    assert len(found) == 1 and gone.ip in found[0].message
    assert f"{entry['answers'][gone.name]} connections" in found[0].message
    counts = captures.endpoints().set_index("endpoint_ip")
    assert not counts.loc[gone.ip, "in_slices"] and counts.loc[gone.ip, "connections"] == entry["answers"][gone.name]
    # the spread is tested over the endpoints the EndpointSlice lists
    web = captures.services().set_index("service").loc["default/web"]
    assert web["dof"] == 1


def test_an_ip_nobody_answers_arp_for() -> None:
    # Pure: an ARP request for a Service IP and nothing claiming it (a packets table as
    # flannelcap.read makes it, only the columns the check reads).
    import pandas as pd

    from flannelcap.analysis.journey import CaptureAt
    from flannelcap.analysis.services import claims, findings, unanswered_requests

    frame = pd.DataFrame(
        {
            "time": [1.0, 2.0, 2.5, 4.0],
            "number": [1, 2, 3, 4],
            "arp_op": pd.Categorical(["request", "request", "reply", "request"]),
            "arp_sender_ip": pd.Categorical(["192.168.1.254", "192.168.1.254", "192.168.1.40", "192.168.1.254"]),
            "arp_target_ip": pd.Categorical(["192.168.1.210", "192.168.1.40", "192.168.1.254", "192.168.1.210"]),
            "arp_sender_mac": pd.Categorical(["aa:00:00:00:00:fe"] * 2 + ["aa:00:00:00:00:40", "aa:00:00:00:00:fe"]),
        }
    )
    at = [CaptureAt("x.pcap", "xubulab", frame)]
    silent = unanswered_requests(at, {"192.168.1.210"})
    assert silent["number"].tolist() == [1, 4] and set(silent["vip"]) == {"192.168.1.210"}
    found = findings(claims(at), {}, silent, pd.DataFrame(), None)
    assert [(f.code, f.severity, f.packets) for f in found] == [("vip-unanswered", "error", (1, 4))]
    assert "nobody answers ARP for 192.168.1.210" in found[0].message
