"""Recording the services samples (seed lab §5.1 c, §5.3): ``arping`` and ``curl`` from the
management host to the LoadBalancer IP, with real tcpdump on the LAN and on the announcing node.

Rule: like ``_record``, traffic and faults only through ``Lab``, with the real tools a student
uses (``arping`` from iputils, ``curl``); what the client saw (which replica answered each
request) goes into the manifest, read from the response bodies.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from flannelcap._errors import LabError
from flannelcap.lab._faults import DNS_DROP_TABLE, announcer_failover, apply_fault
from flannelcap.lab._lab import Lab, check_prerequisites
from flannelcap.lab._plan import LabSpec
from flannelcap.lab._record import snapshot_tables, tcpdump
from flannelcap.lab._services import leaders
from flannelcap.lab._services_plan import KUBE_DNS, TRAEFIK, WEB_SERVICE, ServicePlan

_POD_RE = re.compile(r"<p>pod: (\S+) node: (\S+)</p>")


@dataclass(slots=True)
class ClientLog:
    """What the management host saw: per request, the replica that answered (None: failed)."""

    answers: list[str | None] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Answers per replica."""
        return dict(Counter(a for a in self.answers if a))


def curl(lab: Lab, url: str, log: ClientLog, timeout: float = 2.0) -> None:
    """``curl -s -m TIMEOUT URL`` on the management host; the answering replica is logged."""
    started = time.time()
    done = lab.exec(lab.plan.mgmt_name, ["curl", "-s", "-m", str(timeout), url], capture_output=True, text=True)
    match = _POD_RE.search(done.stdout) if done.returncode == 0 else None
    log.answers.append(match.group(1) if match else None)
    log.times.append(started)


def arping(lab: Lab, ip: str, count: int) -> str:
    """``arping -c COUNT IP`` on the management host (iputils); returns what it printed."""
    done = lab.exec(
        lab.plan.mgmt_name,
        ["arping", "-c", str(count), "-w", str(count + 2), "-I", "eth0", ip],
        capture_output=True,
        text=True,
    )
    return str(done.stdout)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServicesScenario:
    """One services recording: where tcpdump runs, and what happens meanwhile."""

    name: str
    description: str
    capture_on: Callable[[Lab], list[str]]  # nodes that also capture, with ``-i any``
    play: Callable[[Lab, ClientLog, dict[str, object]], None]
    service: str = WEB_SERVICE
    on_mgmt: bool = True  # capture the management host's eth0 too


def _service(lab: Lab, name: str = WEB_SERVICE) -> ServicePlan:
    return next(s for s in lab.plan.services if s.name == name)


def _vip(lab: Lab) -> str:
    return _service(lab).external_ip


def _announcer(lab: Lab) -> str:
    return _service(lab).announcer


def _traefik_nodes(lab: Lab) -> list[str]:
    """The node announcing Traefik's IP and the node its pod runs on."""
    traefik = _service(lab, TRAEFIK)
    return list(dict.fromkeys([traefik.announcer, lab.plan.pod(traefik.endpoints[0]).node]))


def _other_node(lab: Lab, *not_these: str) -> str:
    return next(n.name for n in lab.plan.nodes if n.name not in not_these)


def _arping_and_curl(lab: Lab, log: ClientLog, facts: dict[str, object]) -> None:
    facts["arping"] = arping(lab, _vip(lab), 3)
    for _ in range(3):
        curl(lab, f"http://{_vip(lab)}/", log)


def _thirty_curls(lab: Lab, log: ClientLog, facts: dict[str, object]) -> None:
    for _ in range(30):
        curl(lab, f"http://{_vip(lab)}/", log)


def _failover(lab: Lab, log: ClientLog, facts: dict[str, object]) -> None:
    old = _announcer(lab)
    new = _other_node(lab, old)
    for _ in range(4):
        curl(lab, f"http://{_vip(lab)}/", log)
        time.sleep(0.2)
    done: list[str] = []

    def fail() -> None:
        facts["leader_stopped_at"] = time.time()
        # the leader's death is noticed 1.5 s later, as MetalLB's memberlist would
        done.append(announcer_failover(lab, lab.plan.node(old), lab.plan.node(new), detect_after=1.5))

    worker = threading.Thread(target=fail)
    worker.start()
    deadline = time.monotonic() + 7
    while time.monotonic() < deadline:
        curl(lab, f"http://{_vip(lab)}/", log, timeout=1.0)
        time.sleep(0.2)
    worker.join()
    facts.update(fault=done[0], old_announcer=old, new_announcer=new)


def _split_brain(lab: Lab, log: ClientLog, facts: dict[str, object]) -> None:
    old = _announcer(lab)
    other = _other_node(lab, old)
    facts["fault"] = apply_fault(lab, "split-brain", old, other)
    facts["announcers"] = sorted(node for node, ips in leaders(lab).items() if _vip(lab) in ips)
    time.sleep(0.5)
    facts["arping"] = arping(lab, _vip(lab), 3)
    for _ in range(3):
        curl(lab, f"http://{_vip(lab)}/", log)


def _through_traefik(lab: Lab, log: ClientLog, facts: dict[str, object]) -> None:
    for _ in range(12):
        curl(lab, f"http://{_service(lab, TRAEFIK).external_ip}/", log)


def lookup(lab: Lab, pod: str, name: str, command: str = "ahosts") -> dict[str, object]:
    """``getent ahosts NAME`` in ``pod``: glibc's resolver, with the pod's resolv.conf (search
    path, ``ndots:5``), asking A and AAAA. Returns the name, the exit status, the first
    address and how long it took."""
    started = time.monotonic()
    done = lab.exec(pod, ["getent", command, name], capture_output=True, text=True)
    first = done.stdout.split()[0] if done.returncode == 0 and done.stdout.split() else None
    return {"name": name, "status": done.returncode, "address": first, "seconds": round(time.monotonic() - started, 3)}


def _dns_lookups(lab: Lab, log: ClientLog, facts: dict[str, object]) -> None:
    facts["lookups"] = [
        lookup(lab, "busybox", "web"),  # found at the first search domain
        lookup(lab, "busybox", "example.com"),  # ndots:5: three NXDOMAINs before the name itself
        lookup(lab, "busybox", "nothere"),  # NXDOMAIN everywhere
    ]


def _dns_lost_answer(lab: Lab, log: ClientLog, facts: dict[str, object]) -> None:
    node = lab.plan.pod("busybox").node
    facts["fault"] = apply_fault(lab, "drop-dns-answer", node, _other_node(lab, node))
    facts["lookups"] = [lookup(lab, "busybox", "web", "ahostsv4")]  # the answer lost: resent after 5 s
    listing = json.loads(lab.output(node, ["nft", "-j", "list", "table", "inet", DNS_DROP_TABLE]))
    facts["dropped_by_fault"] = sum(
        e["counter"]["packets"]
        for item in listing.get("nftables", [])
        for e in item.get("rule", {}).get("expr", [])
        if isinstance(e, dict) and "counter" in e
    )


TLS_NAME = "web.default.svc.cluster.local"
TLS_PORT = 4443


def _tls_handshakes(lab: Lab, log: ClientLog, facts: dict[str, object]) -> None:
    """``openssl s_server`` in the nginx pod (a throw-away EC certificate, ALPN h2 and
    http/1.1) and two ``openssl s_client`` handshakes from busybox with SNI: TLS 1.3, then 1.2."""
    server = lab.plan.pod("nginx")
    key, cert = lab.state_dir / "tls.key", lab.state_dir / "tls.crt"
    lab.output(
        "nginx",
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={TLS_NAME}"],
    )  # fmt: skip
    argv = ["openssl", "s_server", "-quiet", "-accept", str(TLS_PORT), "-cert", str(cert), "-key", str(key)]
    process = subprocess.Popen(
        ["ip", "netns", "exec", server.netns, *argv, "-alpn", "h2,http/1.1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        sessions = []
        for version in ("-tls1_3", "-tls1_2"):
            done = lab.exec(
                "busybox",
                ["openssl", "s_client", "-connect", f"{server.ip}:{TLS_PORT}", "-servername", TLS_NAME,
                 "-alpn", "h2,http/1.1", version, "-brief"],
                input="", capture_output=True, text=True, timeout=10,
            )  # fmt: skip
            said = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in done.stderr.splitlines())}
            sessions.append({"version": said.get("Protocol version"), "cipher": said.get("Ciphersuite"),
                             "alpn": said.get("ALPN protocol"), "status": done.returncode})  # fmt: skip
        facts["sessions"] = sessions
        facts["sni"] = TLS_NAME
    finally:
        process.kill()
        process.wait()


H2_PORT = 8080
GRPC_PATH = "/helloworld.Greeter/SayHello"


def _h2_requests(lab: Lab, log: ClientLog, facts: dict[str, object]) -> None:
    """The h2c server in the nginx pod (another node); from busybox, the lab's h2 client asks
    for ``/``, ``/`` and ``/missing`` on one connection (the later requests' headers come from
    the HPACK dynamic table), then ``curl --http2-prior-knowledge`` makes a gRPC call (POST,
    ``content-type: application/grpc``, one message; answered with trailers ``grpc-status: 0``)."""
    if importlib.util.find_spec("h2") is None:
        raise LabError("the h2 scenario's server and client need the h2 library: pip install 'flannelcap[lab]'")
    server = lab.plan.pod("nginx")
    argv = ["flannelcap.lab._h2_server", "serve", server.ip, str(H2_PORT), server.name]
    lab.start_server(server, argv, H2_PORT, "h2")
    paths = ["/", "/", "/missing"]
    done = lab.exec(
        "busybox",
        [sys.executable, "-m", "flannelcap.lab._h2_server", "get", server.ip, str(H2_PORT), *paths],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    statuses = [int(line) for line in done.stdout.split()]
    message = lab.state_dir / "grpc-request.bin"
    message.write_bytes(b"\x00\x00\x00\x00\x07\x0a\x05world")  # HelloRequest{name: "world"}
    done = lab.exec(
        "busybox",
        ["curl", "-s", "-o", "/dev/null", "--http2-prior-knowledge", "-w", "%{http_code} %{http_version}",
         "--max-time", "5", "-H", "content-type: application/grpc", "-H", "te: trailers",
         "--data-binary", f"@{message}", f"http://{server.ip}:{H2_PORT}{GRPC_PATH}"],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    code, _, version = done.stdout.partition(" ")
    if version != "2" or len(statuses) != len(paths):
        raise LabError(f"h2: the h2c server did not answer every request over HTTP/2 ({statuses}, curl: {done.stdout})")
    facts["server"] = server.name
    facts["port"] = H2_PORT
    facts["paths"] = [*paths, GRPC_PATH]
    facts["statuses"] = [*statuses, int(code)]


def _busybox_node(lab: Lab) -> list[str]:
    return [lab.plan.pod("busybox").node]


def _endpoint_down(lab: Lab, log: ClientLog, facts: dict[str, object]) -> None:
    gone_on = _other_node(lab, _announcer(lab))
    facts["fault"] = apply_fault(lab, "endpoint-down", gone_on, _announcer(lab))
    facts["gone"] = next(p.name for p in lab.plan.pods if p.app and p.node == gone_on)
    for _ in range(12):
        curl(lab, f"http://{_vip(lab)}/", log, timeout=1.0)


SERVICES_SCENARIOS: tuple[ServicesScenario, ...] = (
    ServicesScenario(
        name="arping-curl",
        description="arping -c 3 and 3 curls to the LoadBalancer IP from the management host, on its eth0 (§5.1 c)",
        capture_on=lambda lab: [],
        play=_arping_and_curl,
    ),
    ServicesScenario(
        name="thirty-curls",
        description=(
            "30 curls to the LoadBalancer IP from the management host, captured on its eth0 and with -i any on "
            "the announcing node (§5.3: kube-proxy spreads them over 3 replicas)"
        ),
        capture_on=lambda lab: [_announcer(lab)],
        play=_thirty_curls,
    ),
    ServicesScenario(
        name="failover",
        description=(
            "curls every 0.2 s while the announcing node's speaker stops and another node takes the IP over "
            "1.5 s later with gratuitous ARP; captured on the management host's eth0"
        ),
        capture_on=lambda lab: [],
        play=_failover,
    ),
    ServicesScenario(
        name="split-brain",
        description=(
            "two nodes' speakers answer ARP for the LoadBalancer IP; arping and 3 curls from the management host"
        ),
        capture_on=lambda lab: [],
        play=_split_brain,
    ),
    ServicesScenario(
        name="endpoint-down",
        description=(
            "12 curls while one replica is gone but still an endpoint in the DNAT rules; captured on the management "
            "host's eth0 and with -i any on the announcing node"
        ),
        capture_on=lambda lab: [_announcer(lab)],
        play=_endpoint_down,
    ),
    ServicesScenario(
        name="traefik",
        description=(
            "12 curls to Traefik's LoadBalancer IP from the management host (§5.2): kube-proxy sends them to the "
            "Traefik pod, which sends each to a web replica's pod IP with X-Forwarded-* headers; captured on the "
            "management host's eth0 and with -i any on the announcing node and on Traefik's node"
        ),
        capture_on=_traefik_nodes,
        play=_through_traefik,
        service=TRAEFIK,
    ),
    ServicesScenario(
        name="dns",
        description=(
            "busybox looks up web, example.com and nothere (getent ahosts: glibc, ndots:5, A and AAAA) through the "
            "kube-dns ClusterIP, DNATed to CoreDNS on another node; -i any on busybox's node"
        ),
        capture_on=_busybox_node,
        play=_dns_lookups,
        service=KUBE_DNS,
        on_mgmt=False,
    ),
    ServicesScenario(
        name="tls",
        description=(
            "openssl s_client from busybox to openssl s_server in nginx (another node), SNI "
            f"{TLS_NAME}, ALPN h2/http/1.1: a TLS 1.3 and a TLS 1.2 handshake; -i any on busybox's node"
        ),
        capture_on=_busybox_node,
        play=_tls_handshakes,
        service=KUBE_DNS,
        on_mgmt=False,
    ),
    ServicesScenario(
        name="h2",
        description=(
            f"curl --http2-prior-knowledge from busybox to an h2c server in nginx (another node, port {H2_PORT}): "
            "two GETs on one connection, a GET of a missing path, and a gRPC call; -i any on busybox's node"
        ),
        capture_on=_busybox_node,
        play=_h2_requests,
        service=KUBE_DNS,
        on_mgmt=False,
    ),
    ServicesScenario(
        name="dns-lost-answer",
        description=(
            "busybox looks up web while its node's nftables drops the first DNS answer before cni0: glibc asks "
            "again after its 5-second timeout; -i any on busybox's node"
        ),
        capture_on=_busybox_node,
        play=_dns_lost_answer,
        service=KUBE_DNS,
        on_mgmt=False,
    ),
)


def record_services_scenario(lab: Lab, scenario: ServicesScenario, output_dir: Path) -> dict[str, object]:
    """Record one scenario into ``output_dir/<name>/``. Returns its manifest entry."""
    directory = output_dir / scenario.name
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    snapshot_tables(lab, directory / "tables")
    svc = _service(lab, scenario.service)
    log = ClientLog()
    facts: dict[str, object] = {}
    files: dict[str, tuple[str, str, str | None]] = {}
    if scenario.on_mgmt:
        files[f"{lab.plan.mgmt_name}-eth0.pcap"] = (lab.plan.mgmt_name, "eth0", None)
    for node in scenario.capture_on(lab):
        files[f"{node}-any.pcap"] = (node, "any", "LINUX_SLL2")
    with ExitStack() as stack:
        runs = {
            name: stack.enter_context(tcpdump(lab, where, interface, directory / name, link_type))
            for name, (where, interface, link_type) in files.items()
        }
        time.sleep(0.3)
        scenario.play(lab, log, facts)
    lost = {name: run.dropped_by_kernel for name, run in runs.items() if run.dropped_by_kernel != 0}
    if lost:
        raise LabError(f"{scenario.name}: tcpdump lost packets ({lost}); record it again")
    return {
        "name": scenario.name,
        "files": list(files),
        "nodes": [where for where, _, _ in files.values()],
        "tables": "tables",
        "traffic": scenario.description,
        "service": f"{svc.namespace}/{svc.name}",
        "vip": svc.external_ip,
        "cluster_ip": svc.cluster_ip,
        "announcer": svc.announcer,
        "policy": svc.policy,
        "requests": len(log.answers),
        "answers": log.counts(),
        "failed": sum(1 for a in log.answers if a is None),
        **facts,
    }


def record_services(
    output_dir: Path, spec: LabSpec | None = None, names: set[str] | None = None
) -> list[dict[str, object]]:
    """A fresh services lab per scenario (those in ``names`` only, if given), recorded into
    ``output_dir``; the entries replace those of the same name in ``output_dir/manifest.jsonl``.

    Raises:
        LabError: the lab could not be built, a tool is missing, or tcpdump lost packets.
    """
    check_prerequisites({"tcpdump": "tcpdump", "nft": "nftables", "arping": "iputils-arping", "curl": "curl"})
    output_dir.mkdir(parents=True, exist_ok=True)
    unknown = (names or set()) - {s.name for s in SERVICES_SCENARIOS}
    if unknown:
        raise LabError(f"no services scenario {', '.join(sorted(unknown))}: choose from "
                       f"{', '.join(s.name for s in SERVICES_SCENARIOS)}")  # fmt: skip
    manifest = output_dir / "manifest.jsonl"
    kept = [json.loads(line) for line in manifest.read_text().splitlines()] if names and manifest.exists() else []
    entries = []
    for scenario in SERVICES_SCENARIOS:
        if names and scenario.name not in names:
            continue
        with Lab.up(spec or LabSpec(prefix="fcsvc", services=True)) as lab:
            entries.append(record_services_scenario(lab, scenario, output_dir))
    order = [s.name for s in SERVICES_SCENARIOS]
    merged = {e["name"]: e for e in kept} | {e["name"]: e for e in entries}
    lines = [json.dumps(merged[name]) + "\n" for name in order if name in merged]
    manifest.write_text("".join(lines))
    return entries
