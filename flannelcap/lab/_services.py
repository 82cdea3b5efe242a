"""Building the lab's services and changing who announces them: kube-proxy's ruleset and a
MetalLB-like speaker in every node, the replicas' pages.

Rule: like the rest of ``lab``, every change happens inside the lab's own namespaces,
through ``Lab``. The speakers are told which IPs to lead through a state file per node and
SIGHUP (``_speaker``); nothing here crafts a packet.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from flannelcap._errors import LabError
from flannelcap.lab._services_plan import kube_proxy_ruleset

if TYPE_CHECKING:
    from flannelcap.lab._lab import Lab

SPEAKER_INTERFACE = "eth0"


def replica_page(pod: str, node: str, welcome: str) -> str:
    """The page a replica serves: nginx's welcome page naming the pod and its node, so that
    each response tells which replica answered (as ``hostname`` does in the usual demos)."""
    return welcome.replace("<h1>Welcome to nginx!</h1>", f"<h1>Welcome to nginx!</h1>\n<p>pod: {pod} node: {node}</p>")


def build_services(lab: Lab) -> None:
    """Load kube-proxy's rules in every node and start every node's speaker.

    Raises:
        LabError: nftables refused the rules, or a speaker did not start.
    """
    plan = lab.plan
    for node in plan.nodes:
        rules = lab.state_dir / f"kube-proxy-{node.name}.nft"
        rules.write_text(kube_proxy_ruleset(plan.services, plan.pods, node.name))
        lab.output(node.name, ["nft", "-f", str(rules)])
    for node in plan.nodes:
        lead = [svc.external_ip for svc in plan.services if svc.announcer == node.name]
        _write_lead(lab, node.name, lead)
        _start_speaker(lab, node.name)


def _state_file(lab: Lab, node: str) -> Path:
    return lab.state_dir / f"speaker-{node}.json"


def _pid_file(lab: Lab, node: str) -> Path:
    return lab.state_dir / f"speaker-{node}.pid"


def _write_lead(lab: Lab, node: str, ips: list[str]) -> None:
    _state_file(lab, node).write_text(json.dumps({"lead": ips}))


def _start_speaker(lab: Lab, node: str) -> None:
    log = open(lab.state_dir / f"speaker-{node}.log", "ab")  # noqa: SIM115 - the child keeps it
    with log:
        process = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                lab.plan.netns_of(node),
                sys.executable,
                "-m",
                "flannelcap.lab._speaker",
                SPEAKER_INTERFACE,
                str(_state_file(lab, node)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    time.sleep(0.3)
    if process.poll() is not None:
        raise LabError(f"node {node}: the speaker did not start; see {log.name}")
    _pid_file(lab, node).write_text(str(process.pid))


def _speaker_pid(lab: Lab, node: str) -> int | None:
    try:
        return int(_pid_file(lab, node).read_text())
    except (OSError, ValueError):
        return None


def leaders(lab: Lab) -> dict[str, list[str]]:
    """Per node, the IPs its speaker leads now (an empty list where it runs but leads none;
    absent where it is stopped)."""
    led = {}
    for node in lab.plan.nodes:
        pid = _speaker_pid(lab, node.name)
        if pid is None or not os.path.exists(f"/proc/{pid}"):
            continue
        try:
            led[node.name] = list(json.loads(_state_file(lab, node.name).read_text())["lead"])
        except (OSError, ValueError, KeyError):
            led[node.name] = []
    return led


def lead(lab: Lab, node: str, ips: list[str]) -> None:
    """Make ``node``'s speaker lead ``ips`` (it announces the new ones at once).

    Raises:
        LabError: the node's speaker is not running.
    """
    pid = _speaker_pid(lab, node)
    if pid is None or not os.path.exists(f"/proc/{pid}"):
        raise LabError(f"node {node}: its speaker is not running")
    _write_lead(lab, node, ips)
    os.kill(pid, signal.SIGHUP)


def stop_speaker(lab: Lab, node: str) -> None:
    """Stop ``node``'s speaker, as when its node or pod fails."""
    pid = _speaker_pid(lab, node)
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 3
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.02)
