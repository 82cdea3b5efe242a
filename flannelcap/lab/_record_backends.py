"""Recording one cross-node HTTP exchange per overlay backend (``lab record --backends``): busybox
on one node fetches nginx's page on another, captured on the client node's eth0, with the
tables a student would save.

Rule: like ``_record``, traffic only through ``Lab`` and real tcpdump; a fresh lab per backend.
The node tables name the backend's own device (``ip neigh show dev flannel0`` …), and
``ip -d -j link`` keeps each device's kind, from which flannelcap learns the backend.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from flannelcap._errors import LabError
from flannelcap.lab._backends import built_with
from flannelcap.lab._backends_plan import BACKENDS, backend, net_conf
from flannelcap.lab._lab import Lab, check_prerequisites
from flannelcap.lab._plan import CLUSTER_CIDR, LabSpec, calicoctl_nodes
from flannelcap.lab._record import snapshot_tables, tcpdump

CLIENT, SERVER = "busybox", "nginx"


def _node_tables(device: str | None, kernel_vxlan: bool) -> dict[str, list[str]]:
    """File name → command, for one node of a backend built with ``device``."""
    tables = {
        "ip-route.txt": ["ip", "route"],
        "ip-route.json": ["ip", "-j", "route"],
        "ip-link.txt": ["ip", "-d", "link"],
        "ip-link.json": ["ip", "-d", "-j", "link"],
        "ip-addr-cni0.txt": ["ip", "addr", "show", "cni0"],
        "ip-addr-cni0.json": ["ip", "-j", "addr", "show", "cni0"],
    }
    if device is not None:
        tables |= {f"ip-neigh-{device}.txt": ["ip", "neigh", "show", "dev", device],
                   f"ip-neigh-{device}.json": ["ip", "-j", "neigh", "show", "dev", device]}  # fmt: skip
    if kernel_vxlan:
        tables |= {f"bridge-fdb-{device}.txt": ["bridge", "fdb", "show", "dev", str(device)],
                   f"bridge-fdb-{device}.json": ["bridge", "-j", "fdb", "show", "dev", str(device)]}  # fmt: skip
    return tables


def snapshot_backend_tables(lab: Lab, directory: Path) -> None:
    """What ``snapshot_tables`` writes, with the node tables of the lab's backend, and
    flannel's net-conf.json or Calico's Node resources."""
    chosen = backend(lab.plan.backend)
    node_tables = _node_tables(chosen.device, chosen.kernel_type == "vxlan")
    snapshot_tables(lab, directory, node_tables, subnet=chosen.flannel_type is not None)
    if chosen.name == "calico-vxlan":  # Calico's Node resources: addresses and VTEP MACs
        (directory / "calicoctl-get-nodes.json").write_text(json.dumps(calicoctl_nodes(lab.plan), indent=2) + "\n")
    conf = net_conf(chosen, CLUSTER_CIDR)
    if conf is not None:  # what kube-flannel-cfg holds (k3s: /var/lib/rancher/k3s/agent/etc/flannel/)
        (directory / "net-conf.json").write_text(json.dumps(conf, indent=2) + "\n")


def record_backend(lab: Lab, output_dir: Path) -> dict[str, object]:
    """Record the lab's backend into ``output_dir/<backend>/``. Returns its manifest entry."""
    chosen = backend(lab.plan.backend)
    directory = output_dir / chosen.name
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    client, server = lab.plan.pod(CLIENT), lab.plan.pod(SERVER)
    snapshot_backend_tables(lab, directory / "tables")
    pcap = directory / f"{client.node}-eth0.pcap"
    with tcpdump(lab, client.node, "eth0", pcap) as run:
        time.sleep(0.3)
        done = lab.fetch("/", client=CLIENT, server=SERVER, timeout=5)
    if done.returncode != 0 or b"Welcome to nginx!" not in done.stdout:
        raise LabError(f"{chosen.name}: busybox could not fetch nginx's page ({done.stderr.decode().strip()})")
    if run.dropped_by_kernel != 0:
        raise LabError(f"{chosen.name}: tcpdump lost {run.dropped_by_kernel} packets; record it again")
    return {
        "name": chosen.name,
        "files": [pcap.name],
        "node": client.node,
        "interface": "eth0",
        "tables": "tables",
        "backend": chosen.name,
        "device": chosen.device,
        "encap": chosen.encap,
        "port": chosen.port,
        "built_with": built_with(lab, client.node),
        "client": {"pod": CLIENT, "ip": client.ip, "node": client.node},
        "server": {"pod": SERVER, "ip": server.ip, "node": server.node},
        "traffic": f"busybox ({client.node}) gets / from nginx ({server.node}) over {chosen.name}, "
        f"captured on {client.node}'s eth0",
    }


def record_backends(output_dir: Path, names: set[str] | None = None) -> list[dict[str, object]]:
    """A fresh lab per backend (those in ``names`` only, if given), recorded into ``output_dir``;
    the entries replace those of the same name in ``output_dir/manifest.jsonl``.

    Raises:
        LabError: a lab could not be built, a tool is missing, or the exchange failed.
    """
    unknown = (names or set()) - set(BACKENDS)
    if unknown:
        raise LabError(f"no backend {', '.join(sorted(unknown))}: choose from {', '.join(BACKENDS)}")
    check_prerequisites({"tcpdump": "tcpdump"})
    output_dir.mkdir(parents=True, exist_ok=True)
    manifest = output_dir / "manifest.jsonl"
    kept = [json.loads(line) for line in manifest.read_text().splitlines()] if names and manifest.exists() else []
    entries = []
    for name in BACKENDS:
        if names and name not in names:
            continue
        with Lab.up(LabSpec(prefix="fcbk", backend=name)) as lab:
            entries.append(record_backend(lab, output_dir))
    merged = {e["name"]: e for e in kept} | {e["name"]: e for e in entries}
    manifest.write_text("".join(json.dumps(merged[n]) + "\n" for n in BACKENDS if n in merged))
    return entries
