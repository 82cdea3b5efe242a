"""Recording the sample captures: real tcpdump inside a lab node, with the tables beside it.

Rule: this module only runs tcpdump, traffic and table commands through ``Lab``; it never
crafts a packet. Each scenario is data (where to capture, what traffic to make, what fault to
inject); ``record_all`` plays them on a fresh lab and writes, per capture, the pcap, every
node's tables (plain text and ``-j`` JSON), the kubectl-shaped JSON, and a manifest line.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from flannelcap._errors import LabError
from flannelcap.lab._faults import apply_fault
from flannelcap.lab._lab import BIG_FILE_NAME, Lab, check_prerequisites
from flannelcap.lab._plan import LabPlan, LabSpec, kubectl_nodes, kubectl_pods, subnet_env
from flannelcap.lab._services_plan import kubectl_endpointslices, kubectl_services
from flannelcap.topology.model import FLANNEL_DEVICE, NODE_TABLES, POD_TABLES, TableCommand


def _both_forms(tables: dict[str, TableCommand]) -> dict[str, tuple[str, ...]]:
    """File name → command, for the plain text (``.txt``) and the ``-j`` JSON (``.json``)."""
    files = {}
    for table in tables.values():
        files[f"{table.stem}.txt"] = table.argv
        files[f"{table.stem}.json"] = table.json_argv
    return files


# What a student types on a node (seed lab §2.3 c, §3.3 c) — the tables flannelcap reads, and
# ``ip -d link show flannel.1`` besides — and inside a pod (§2.3 b).
NODE_TABLE_COMMANDS = _both_forms(
    {kind: table for kind, table in NODE_TABLES.items() if kind != "subnet"}  # subnet.env: from the plan
    | {"link": TableCommand("link", "ip-d-link-flannel.1", ("ip", "-d", "link", "show", FLANNEL_DEVICE))}
)
POD_TABLE_COMMANDS = _both_forms(POD_TABLES)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One sample capture: where it is taken, and what happens meanwhile."""

    name: str
    description: str
    node: Callable[[LabPlan], str]
    interface: str
    traffic: Callable[[Lab], None]
    server: str = "nginx"
    link_type: str | None = None
    fault: Callable[[Lab], str] | None = None


def _get(path: str, *, server: str = "nginx", timeout: float = 10.0, must_work: bool = True) -> Callable[[Lab], None]:
    def traffic(lab: Lab) -> None:
        done = lab.fetch(path, server=server, timeout=timeout)
        if must_work and done.returncode != 0:
            raise LabError(f"GET {path} from busybox failed: {done.stderr.decode(errors='replace').strip()}")
        if not must_work and done.returncode == 0:
            raise LabError(f"GET {path} from busybox worked although the fault should break it")

    return traffic


def _fault_on_client_node(kind: str) -> Callable[[Lab], str]:
    """Fault ``kind`` on the client pod's node, concerning the server pod's node."""

    def apply(lab: Lab) -> str:
        return apply_fault(lab, kind, lab.plan.client_pod.node, lab.plan.server_pod.node)

    return apply


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="cross-node-http-client",
        description=(
            "HTTP GET / from busybox to nginx on another node, captured on the client node's eth0 (lab §3.3 d)"
        ),
        node=lambda p: p.client_pod.node,
        interface="eth0",
        traffic=_get("/"),
    ),
    Scenario(
        name="cross-node-http-server",
        description="the same exchange, captured on the server node's eth0",
        node=lambda p: p.server_pod.node,
        interface="eth0",
        traffic=_get("/"),
    ),
    Scenario(
        name="same-node-http",
        description=("HTTP GET / from busybox to nginx-local on the same node (lab §3.2), captured on cni0: no VXLAN"),
        node=lambda p: p.client_pod.node,
        interface="cni0",
        server="nginx-local",
        traffic=_get("/", server="nginx-local"),
    ),
    Scenario(
        name="cross-node-http-any",
        description=("HTTP GET / from busybox to nginx, captured with -i any on the client node (Linux cooked v2)"),
        node=lambda p: p.client_pod.node,
        interface="any",
        link_type="LINUX_SLL2",
        traffic=_get("/"),
    ),
    Scenario(
        name="cross-node-large-transfer",
        description=("HTTP GET of a 1 MiB body from nginx, captured on the client node's eth0 (full-size segments)"),
        node=lambda p: p.client_pod.node,
        interface="eth0",
        traffic=_get("/" + BIG_FILE_NAME),
    ),
    Scenario(
        name="fault-wrong-fdb",
        description=(
            "busybox cannot reach nginx: the client node's FDB entry for the server's VTEP "
            "points at the wrong node; captured on the client node's eth0"
        ),
        node=lambda p: p.client_pod.node,
        interface="eth0",
        traffic=_get("/", timeout=3.5, must_work=False),
        fault=_fault_on_client_node("wrong-fdb"),
    ),
    Scenario(
        name="fault-bad-checksum",
        description=(
            "busybox cannot reach nginx: the LAN corrupts the outer UDP checksum of VXLAN packets "
            "from the client node (as a broken NAT does) and the server node's kernel drops them; "
            "captured on the server node's eth0"
        ),
        node=lambda p: p.server_pod.node,
        interface="eth0",
        traffic=_get("/", timeout=3.5, must_work=False),
        fault=_fault_on_client_node("bad-checksum"),
    ),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class JourneyScenario:
    """A recording for packet journeys: ``tcpdump -i any`` on the client's and the server's
    node at once, so that every packet of the exchange is seen at every point of its path
    (pod veth, cni0, flannel.1, eth0 on one node; eth0, flannel.1, cni0, veth on the other)."""

    name: str
    description: str
    traffic: Callable[[Lab], None]
    fault: Callable[[Lab], str] | None = None


def _drop_on_server_node(lab: Lab) -> str:
    return apply_fault(lab, "drop-vxlan", lab.plan.server_pod.node, lab.plan.client_pod.node)


JOURNEYS: tuple[JourneyScenario, ...] = (
    JourneyScenario(
        name="all-points",
        description="HTTP GET / from busybox to nginx on another node, captured with -i any on both nodes",
        traffic=_get("/"),
    ),
    JourneyScenario(
        name="drop-vxlan",
        description=(
            "the same exchange while the server node's nftables drops every third VXLAN packet from the "
            "client node on input (after eth0, before flannel.1); TCP retransmits until it gets through"
        ),
        traffic=_get("/", timeout=30),
        fault=_drop_on_server_node,
    ),
)


@dataclass(slots=True)
class TcpdumpRun:
    """What tcpdump said when it stopped."""

    captured: int = -1
    dropped_by_kernel: int = -1


@contextmanager
def tcpdump(lab: Lab, node: str, interface: str, output: Path, link_type: str | None = None) -> Iterator[TcpdumpRun]:
    """Run real tcpdump in ``node``'s namespace while the ``with`` body runs.

    Yields:
        A ``TcpdumpRun`` that holds tcpdump's own counts once the block has ended.

    Raises:
        LabError: tcpdump is missing or did not start.
    """
    argv = [
        "tcpdump",
        "-i",
        interface,
        "-s",
        "0",
        "-U",
        "--immediate-mode",
        "-B",
        "32768",
        "-n",
        "-Z",
        "root",
        "-w",
        str(output),
    ]
    if link_type:
        argv += ["-y", link_type]
    process = subprocess.Popen(
        ["ip", "netns", "exec", lab.plan.netns_of(node), *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    said = ""
    for _ in range(5):  # "-y" adds a line before "listening on"
        line = process.stderr.readline().decode(errors="replace")
        said = line.strip() or said
        if not line or "listening on" in line:
            break
    if "listening on" not in said:
        process.kill()
        process.wait()
        raise LabError(f"tcpdump on {node} {interface} did not start: {said}")
    run = TcpdumpRun()
    try:
        yield run
        time.sleep(0.3)  # let the last packets reach the file
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, tail = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            _, tail = process.communicate()
        from flannelcap.remote._command import tcpdump_counts  # what tcpdump says as it exits, read one way

        counts = tcpdump_counts(tail.decode(errors="replace").splitlines())
        run.captured = counts.get("captured", run.captured)
        run.dropped_by_kernel = counts.get("dropped by kernel", run.dropped_by_kernel)


def snapshot_tables(
    lab: Lab, directory: Path, node_commands: Mapping[str, Sequence[str]] = NODE_TABLE_COMMANDS, subnet: bool = True
) -> None:
    """Write every node's tables (file name → command; and flanneld's subnet.env where
    ``subnet``), every pod's, and the kubectl JSON, under ``directory``."""
    for node in lab.plan.nodes:
        node_dir = directory / node.name
        node_dir.mkdir(parents=True, exist_ok=True)
        for filename, argv in node_commands.items():
            (node_dir / filename).write_text(lab.output(node.name, argv))
        if subnet:
            (node_dir / NODE_TABLES["subnet"].stem).write_text(subnet_env(node))
    for pod in lab.plan.pods:
        pod_dir = directory / "pods" / pod.name
        pod_dir.mkdir(parents=True, exist_ok=True)
        for filename, argv in POD_TABLE_COMMANDS.items():
            (pod_dir / filename).write_text(lab.output(pod.name, argv))
    (directory / "kubectl-get-nodes.json").write_text(json.dumps(kubectl_nodes(lab.plan), indent=2) + "\n")
    (directory / "kubectl-get-pods.json").write_text(json.dumps(kubectl_pods(lab.plan), indent=2) + "\n")
    if lab.plan.services:
        for kind, document in (
            ("svc", kubectl_services(lab.plan.services)),
            ("endpointslices", kubectl_endpointslices(lab.plan.services, lab.plan.pods)),
        ):
            (directory / f"kubectl-get-{kind}.json").write_text(json.dumps(document, indent=2) + "\n")


def record_scenario(lab: Lab, scenario: Scenario, output_dir: Path) -> dict[str, object]:
    """Record one scenario on a running lab. Returns its manifest entry."""
    node = scenario.node(lab.plan)
    pcap = output_dir / f"{scenario.name}.pcap"
    fault = scenario.fault(lab) if scenario.fault else None
    snapshot_tables(lab, output_dir / f"{scenario.name}.tables")
    with tcpdump(lab, node, scenario.interface, pcap, scenario.link_type) as run:
        time.sleep(0.2)
        scenario.traffic(lab)
    if run.dropped_by_kernel != 0:
        raise LabError(f"{scenario.name}: tcpdump lost {run.dropped_by_kernel} packets; record it again")
    return {
        "file": pcap.name,
        "tables": f"{scenario.name}.tables",
        "node": node,
        "interface": scenario.interface,
        "link_type": scenario.link_type or "EN10MB",
        "traffic": scenario.description,
        "fault": fault,
        "client": lab.plan.client_pod.name,
        "server": scenario.server,
    }


def record_journey(lab: Lab, scenario: JourneyScenario, output_dir: Path) -> dict[str, object]:
    """Record one journey scenario into ``output_dir/<name>/``: ``<node>-any.pcap`` per node
    (named as ``flannelcap capture`` names files, so that each file's node is known) and the
    tables under ``tables/``. Returns its manifest entry."""
    from flannelcap.lab._faults import dropped_by_fault

    client, server = lab.plan.client_pod.node, lab.plan.server_pod.node
    directory = output_dir / scenario.name
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    fault = scenario.fault(lab) if scenario.fault else None
    snapshot_tables(lab, directory / "tables")
    with ExitStack() as stack:
        runs = {
            node: stack.enter_context(tcpdump(lab, node, "any", directory / f"{node}-any.pcap", "LINUX_SLL2"))
            for node in (client, server)
        }
        time.sleep(0.2)
        scenario.traffic(lab)
    lost = {node: run.dropped_by_kernel for node, run in runs.items() if run.dropped_by_kernel != 0}
    if lost:
        raise LabError(f"{scenario.name}: tcpdump lost packets ({lost}); record it again")
    return {
        "name": scenario.name,
        "files": [f"{node}-any.pcap" for node in (client, server)],
        "nodes": [client, server],
        "tables": "tables",
        "interface": "any",
        "link_type": "LINUX_SLL2",
        "traffic": scenario.description,
        "fault": fault,
        "dropped_by_fault": dropped_by_fault(lab, server) if scenario.fault else 0,
        "client": lab.plan.client_pod.name,
        "server": "nginx",
    }


def record_journeys(output_dir: Path, spec: LabSpec | None = None) -> list[dict[str, object]]:
    """Bring up a fresh lab per journey scenario, record it, take the lab down; the entries
    are also written to ``output_dir/manifest.jsonl``."""
    check_prerequisites({"tcpdump": "tcpdump", "nft": "nftables"})
    output_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for scenario in JOURNEYS:
        with Lab.up(spec or LabSpec(prefix="fcjrn")) as lab:
            entries.append(record_journey(lab, scenario, output_dir))
    (output_dir / "manifest.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    return entries


def record_all(output_dir: Path, spec: LabSpec | None = None, names: set[str] | None = None) -> list[dict[str, object]]:
    """Bring up a fresh lab, record every scenario (or those in ``names``), take it down.

    Returns:
        The manifest entries, also written to ``output_dir/manifest.jsonl``.

    Raises:
        LabError: the lab could not be built, tcpdump is missing, or a scenario's traffic
            did not behave as the scenario says.
    """
    check_prerequisites({"tcpdump": "tcpdump"})
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabError(
            f"cannot write recordings to {output_dir}: {exc.strerror}; choose another directory with -o"
        ) from exc
    entries = []
    for scenario in SCENARIOS:
        if names and scenario.name not in names:
            continue
        shutil.rmtree(output_dir / f"{scenario.name}.tables", ignore_errors=True)
        # A fresh lab per scenario: no ARP cache or fault carries over from the one before.
        with Lab.up(spec or LabSpec(prefix="fcrec")) as lab:
            entries.append(record_scenario(lab, scenario, output_dir))
    manifest = output_dir / "manifest.jsonl"
    kept = []
    if manifest.exists() and names:
        kept = [
            line
            for line in manifest.read_text().splitlines()
            if line.strip() and json.loads(line)["file"] not in {e["file"] for e in entries}
        ]
    manifest.write_text("".join(line + "\n" for line in kept) + "".join(json.dumps(e) + "\n" for e in entries))
    return entries
