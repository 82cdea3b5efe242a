"""Services on the wire (seed lab §4–5): which node announces each LoadBalancer IP, where
kube-proxy sent each connection to it, and how evenly it spread them.

Rule: pure, over the packet columns of one or more captures (``CaptureAt``) and a topology.

- **Announcements.** A node claims a service IP with an ARP reply, or with a gratuitous ARP
  (sender IP = target IP). MetalLB's layer-2 mode lets exactly one node do so, with its own
  LAN MAC. The claims of each IP in time order give its holders. A new holder is a takeover.
  An earlier holder that claims again after being replaced means two speakers answer (split
  brain). ARP requests that get no claim within ``ANSWER_WINDOW`` are silence. The IPs come
  from the topology's Services. Without Services, they are the IPs claimed gratuitously,
  and those a MAC claims besides the address it asks from.
- **Connections.** Each SYN to a Service IP (LoadBalancer or ClusterIP) is a connection;
  retransmissions and copies (``-i any``, several files) are one. Its DNATed leg is a SYN
  with the same sequence number that leaves within ``DNAT_WINDOW`` towards another address
  (NAT does not touch sequence numbers). The leg's destination is the endpoint; its source
  tells whether the client was masqueraded (``externalTrafficPolicy: Cluster``) or kept
  (``Local``). A connection is answered when a SYN-ACK acknowledges its SYN. The node that
  received it is the owner of the SYN's destination MAC, or the capture's node when a
  cooked capture saw it arrive.
- **Spread.** Per Service, the connections per endpoint (every endpoint of its
  EndpointSlices, also those that got none), tested against a uniform spread by Pearson's χ².
- **Ingress.** A request carrying ``X-Forwarded-Server`` was sent on by a proxy (Traefik) that
  names itself there; ``X-Forwarded-For`` ends with the address the proxy saw the request come
  from — the client, or the node that masqueraded it. Copies of one request (``-i any``) are one.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from flannelcap.analysis.audit import ERROR, WARNING, Finding
from flannelcap.analysis.journey import CaptureAt
from flannelcap.topology.kube import Endpoint
from flannelcap.topology.model import Topology

ANSWER_WINDOW = 1.0  # seconds an ARP request waits for its answer (arping's default interval)
DNAT_WINDOW = 1.0  # seconds between a SYN reaching a node and its DNATed copy leaving it
MAX_PACKETS_SHOWN = 12

CLAIM_COLUMNS = ("time", "file", "number", "vip", "service", "mac", "node", "kind")
TAKEOVER_COLUMNS = ("vip", "service", "time", "file", "number", "from_mac", "from_node", "to_mac", "to_node", "kind")
CONNECTION_COLUMNS = (
    "time", "file", "number", "service", "vip", "port", "client_ip", "client_port", "received_by",
    "endpoint_ip", "endpoint_pod", "endpoint_node", "local", "path", "seen_from", "masqueraded", "answered",
    "endpoint_answered", "syn_retransmits", "http_status",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Spread:
    """How one Service's connections spread over its endpoints."""

    service: str
    connections: int
    chi2: float
    dof: int
    p_value: float


def _arp(frame: pd.DataFrame) -> pd.DataFrame:
    if "arp_op" not in frame or frame.empty:
        return frame.iloc[0:0]
    return frame[frame["arp_op"].notna()]


def _text(column: pd.Series) -> pd.Series:
    """A label column as plain text (missing: empty)."""
    return column.astype(object).where(column.notna(), "").astype(str)


def service_ips(topology: Topology | None) -> dict[str, str]:
    """Each Service's LoadBalancer and external IP → ``namespace/name``."""
    return {ip: svc.key for svc in (topology.services if topology else ()) for ip in svc.external_ips}


def claims(captures: Sequence[CaptureAt], topology: Topology | None = None) -> pd.DataFrame:
    """Every ARP claim of a service IP: ``time``, ``file``, ``number``, ``vip``, ``service``,
    ``mac``, ``node`` (the MAC's owner from the nodes' ``ip link``), ``kind`` (``gratuitous
    request``, ``gratuitous reply`` or ``reply``), in time order."""
    parts = []
    for capture in captures:
        arp = _arp(capture.packets)
        if arp.empty:
            continue
        sender_ip, target_ip = _text(arp["arp_sender_ip"]), _text(arp["arp_target_ip"])
        op = _text(arp["arp_op"])
        gratuitous = sender_ip == target_ip
        claim = (op == "reply") | gratuitous
        part = pd.DataFrame(
            {
                "time": arp["time"].to_numpy(),
                "file": capture.name,
                "number": arp["number"].to_numpy(),
                "vip": sender_ip.to_numpy(),
                "mac": _text(arp["arp_sender_mac"]).str.lower().to_numpy(),
                "kind": np.where(gratuitous, "gratuitous " + op, op),
                "requester": np.where(op == "request", sender_ip, ""),
                "asked": np.where((op == "request") & ~gratuitous, target_ip, ""),
                "claim": claim.to_numpy(),
            }
        )
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=list(CLAIM_COLUMNS))
    every = pd.concat(parts, ignore_index=True)
    known = service_ips(topology)
    vips = set(known) or _guessed_vips(every)
    out = every[every["claim"] & every["vip"].isin(vips)].copy()
    out["service"] = out["vip"].map(known)
    owners = topology.lan_macs() if topology else {}
    node = out["mac"].map(owners).astype(object)
    out["node"] = node.where(node.notna(), None)
    out = out.sort_values(["time", "file"], kind="stable")
    return out[list(CLAIM_COLUMNS)].reset_index(drop=True)


def _guessed_vips(arp: pd.DataFrame) -> set[str]:
    """Service IPs without Services: those claimed gratuitously, and those a MAC claims
    besides the address it sends its own requests from."""
    claimed = arp[arp["claim"]]
    own = set(zip(arp["mac"][arp["requester"] != ""], arp["requester"][arp["requester"] != ""], strict=True))
    gratuitous = set(claimed["vip"][claimed["kind"].str.startswith("gratuitous")])
    extra = {
        vip
        for mac, vip in zip(claimed["mac"], claimed["vip"], strict=True)
        if (mac, vip) not in own and any(m == mac and ip != vip for m, ip in own)
    }
    return gratuitous | extra


def unanswered_requests(captures: Sequence[CaptureAt], vips: Iterable[str]) -> pd.DataFrame:
    """ARP requests for a service IP (not gratuitous) that no claim answered within
    ``ANSWER_WINDOW`` in any of the captures (a broadcast request reaches every node, the
    unicast reply only the path back): ``time``, ``file``, ``number``, ``vip``, ``requester``."""
    wanted = set(vips)
    every = [(capture.name, _arp(capture.packets)) for capture in captures]
    every = [(name, arp) for name, arp in every if not arp.empty]
    claimed_at: dict[str, list[float]] = {vip: [] for vip in wanted}
    for _, arp in every:
        op, sender, target = _text(arp["arp_op"]), _text(arp["arp_sender_ip"]), _text(arp["arp_target_ip"])
        claim = ((op == "reply") | (sender == target)) & sender.isin(wanted)
        for vip, time in zip(sender[claim], arp["time"][claim], strict=True):
            claimed_at[vip].append(float(time))
    answers = {vip: np.sort(np.array(times, dtype=float)) for vip, times in claimed_at.items()}
    rows = []
    for name, arp in every:
        op, sender, target = _text(arp["arp_op"]), _text(arp["arp_sender_ip"]), _text(arp["arp_target_ip"])
        times = arp["time"].to_numpy()
        numbers = arp["number"].to_numpy()
        asked = ((op == "request") & (sender != target) & target.isin(wanted)).to_numpy()
        for index in np.flatnonzero(asked):
            vip = target.iloc[index]
            later = answers[vip]
            at = np.searchsorted(later, times[index])
            if at == len(later) or later[at] - times[index] > ANSWER_WINDOW:
                rows.append((times[index], name, int(numbers[index]), vip, sender.iloc[index]))
    return pd.DataFrame(rows, columns=["time", "file", "number", "vip", "requester"])


def takeovers(claimed: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, set[str]]]:
    """Per service IP, each change of the MAC that claims it (the first claim included), and
    the MACs that claimed it after another had replaced them (split brain)."""
    rows = []
    split: dict[str, set[str]] = {}
    for vip, group in claimed.groupby("vip", sort=True):
        holder: str | None = None
        replaced: set[str] = set()
        for time, file, number, mac, node, kind, service in zip(
            group["time"], group["file"], group["number"], group["mac"], group["node"], group["kind"],
            group["service"], strict=True,
        ):  # fmt: skip
            if mac == holder:
                continue
            if mac in replaced:
                split.setdefault(str(vip), set()).update({mac, holder or mac})
            previous = holder
            if previous is not None:
                replaced.add(previous)
            holder = mac
            from_node = claimed_node(group, previous)
            rows.append((vip, service, time, file, number, previous, from_node, mac, node, kind))
    return pd.DataFrame(rows, columns=list(TAKEOVER_COLUMNS)), split


def claimed_node(group: pd.DataFrame, mac: str | None) -> str | None:
    """The node a MAC of ``group`` belongs to, where known."""
    if mac is None:
        return None
    nodes = group["node"][group["mac"] == mac].dropna()
    return str(nodes.iloc[0]) if len(nodes) else None


def _tcp(frame: pd.DataFrame, flags: str) -> pd.DataFrame:
    if frame.empty or "tcp_flags" not in frame:
        return frame.iloc[0:0]
    return frame[_text(frame["tcp_flags"]) == flags]


def connections(captures: Sequence[CaptureAt], topology: Topology | None = None) -> pd.DataFrame:
    """One row per connection to a Service IP (columns ``CONNECTION_COLUMNS``), in time order.
    Column operations throughout: merges and group-bys over the SYNs, never a loop over them."""
    topology = topology or Topology()
    by_ip = {ip: svc.key for svc in topology.services for ip in (*svc.cluster_ips, *svc.external_ips)}
    if not by_ip:
        return pd.DataFrame(columns=list(CONNECTION_COLUMNS))
    syns = _tcp_rows(captures, "SYN")
    to_service = syns["dst_ip"].isin(by_ip)
    front, legs = syns[to_service], syns[~to_service]
    if front.empty:
        return pd.DataFrame(columns=list(CONNECTION_COLUMNS))
    key = ["src_ip", "src_port", "dst_ip", "tcp_seq"]
    front = front.sort_values("time", kind="stable")
    front["receiver"] = _receivers(front, topology.lan_macs())
    conns = front.drop_duplicates(key).reset_index(drop=True)
    conns["sends"] = _sends(front, key).reindex(pd.MultiIndex.from_frame(conns[key])).to_numpy()
    leg = _dnat_legs(front, legs, key)
    conns = conns.merge(leg, on=key, how="left")
    conns["received_by"] = _receiver_seen_with_leg(front, conns, key)
    endpoint_ip = conns["leg_dst_ip"]
    names = _endpoint_names(topology, set(endpoint_ip.dropna()))
    acks = _tcp_rows(captures, "SYN, ACK")
    acked = (conns["tcp_seq"].astype("int64") + 1) % 2**32
    answered_from = pd.MultiIndex.from_arrays([acks["src_ip"], acks["tcp_ack"].astype("int64")])
    status = _first_status(captures, set(by_ip))
    out = pd.DataFrame(
        {
            "time": conns["time"].astype(float),
            "file": conns["file"],
            "number": conns["number"].astype("int64"),
            "service": conns["dst_ip"].map(by_ip),
            "vip": conns["dst_ip"],
            "port": conns["dst_port"].astype("int64"),
            "client_ip": conns["src_ip"],
            "client_port": conns["src_port"].astype("int64"),
            "received_by": conns["received_by"],
            "endpoint_ip": endpoint_ip,
            "endpoint_pod": endpoint_ip.map(lambda ip: names.get(ip, (None, None))[0]),
            "endpoint_node": endpoint_ip.map(lambda ip: names.get(ip, (None, None))[1]),
            "path": conns["leg_path"],
            "seen_from": conns["leg_src_ip"],
            "masqueraded": (conns["leg_src_ip"] != conns["src_ip"]).where(endpoint_ip.notna()),
            "answered": acked.isin(set(acks["tcp_ack"].astype("int64"))),
            "endpoint_answered": pd.Series(
                pd.MultiIndex.from_arrays([endpoint_ip.fillna(""), acked]).isin(answered_from), index=conns.index
            ).where(endpoint_ip.notna()),
            "syn_retransmits": conns["sends"].astype("int64") - 1,
            "http_status": pd.Series(
                pd.MultiIndex.from_arrays([conns["src_ip"], conns["src_port"].astype("int64")]).map(status.get),
                index=conns.index,
                dtype="Int64",
            ),
        }
    )
    local = out["endpoint_node"].notna() & out["received_by"].notna()
    out["local"] = (out["endpoint_node"] == out["received_by"]).where(local)
    out = out.astype({"masqueraded": "object", "endpoint_answered": "object", "local": "object"})
    for column in ("masqueraded", "endpoint_answered", "local"):
        out[column] = out[column].where(out[column].notna(), None)
    return out[list(CONNECTION_COLUMNS)].sort_values("time", kind="stable").reset_index(drop=True)


_SYN_COLUMNS = ("time", "number", "src_ip", "src_port", "dst_ip", "dst_port", "tcp_seq", "tcp_ack",
                "outer_dst_mac", "packet_type", "is_vxlan", "if_name")  # fmt: skip


def _tcp_rows(captures: Sequence[CaptureAt], flags: str) -> pd.DataFrame:
    """The TCP segments whose flags are exactly ``flags``, of every capture: the columns the
    pairing reads, addresses and names as text, with ``file`` and ``capture_node``."""
    parts = []
    for capture in captures:
        rows = _tcp(capture.packets, flags)
        if rows.empty:
            continue
        part = pd.DataFrame({name: rows[name].to_numpy() for name in _SYN_COLUMNS if name in rows})
        for name in ("src_ip", "dst_ip", "outer_dst_mac", "packet_type", "if_name"):
            if name in rows:
                part[name] = _text(rows[name]).to_numpy()
        part["file"], part["capture_node"] = capture.name, capture.node
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=[*_SYN_COLUMNS, "file", "capture_node"])
    out = pd.concat(parts, ignore_index=True)
    return out[out["tcp_seq"].notna() & out["src_port"].notna()]


def _receivers(front: pd.DataFrame, owners: dict[str, str]) -> pd.Series:
    """The node each copy of a SYN arrived at: the owner of its destination MAC, or the
    capture's node when a cooked capture saw it come in (``host``)."""
    by_mac = front["outer_dst_mac"].str.lower().map(owners)
    arrived = front["packet_type"] == "host"
    return by_mac.where(by_mac.notna(), front["capture_node"].where(arrived))


def _receiver_seen_with_leg(front: pd.DataFrame, conns: pd.DataFrame, key: list[str]) -> pd.Series:
    """Per connection, the receiving node of its copy in the capture that saw the DNATed leg,
    else of any copy."""
    known = front[front["receiver"].notna()][[*key, "file", "receiver", "time"]]
    if known.empty:
        return pd.Series([None] * len(conns), index=conns.index, dtype=object)
    paired = known.merge(conns[[*key, "leg_file"]], on=key)
    paired["other"] = paired["file"] != paired["leg_file"]
    first = paired.sort_values(["other", "time"], kind="stable").drop_duplicates(key)
    merged = conns[key].merge(first[[*key, "receiver"]], on=key, how="left")
    return merged["receiver"].where(merged["receiver"].notna(), None)


def _endpoint_names(topology: Topology, ips: set[str]) -> dict[str, tuple[str | None, str | None]]:
    """Each DNAT destination's pod and node: from the EndpointSlices, else from the pods and
    the nodes' pod CIDRs (each address looked up once)."""
    listed: dict[str, Endpoint] = {e.ip: e for svc in topology.services for e in svc.endpoints}
    names = {}
    for ip in ips:
        endpoint = listed.get(ip)
        pod, node = (endpoint.pod, endpoint.node) if endpoint else (None, None)
        if pod is None and (known := topology.pod_by_ip(ip)) is not None:
            pod, node = known.name, node or known.node
        if node is None and (owner := topology.node_of_pod_ip(ip)) is not None:
            node = owner.name
        names[ip] = (pod, node)
    return names


def _first_status(captures: Sequence[CaptureAt], ips: set[str]) -> dict[tuple[str, int], int]:
    """(client IP, client port) → the HTTP status of the first response a Service IP sent it."""
    parts = []
    for capture in captures:
        frame = capture.packets
        if frame.empty or "http_status" not in frame:
            continue
        answers = frame[frame["http_status"].notna() & _text(frame["src_ip"]).isin(ips)]
        columns = {
            "client": _text(answers["dst_ip"]),
            "port": answers["dst_port"].astype("int64"),
            "status": answers["http_status"].astype("int64"),
            "time": answers["time"],
        }
        parts.append(pd.DataFrame(columns))
    if not parts:
        return {}
    first = pd.concat(parts).sort_values("time", kind="stable").drop_duplicates(["client", "port"])
    return dict(zip(zip(first["client"], first["port"], strict=True), first["status"], strict=True))


def _sends(front: pd.DataFrame, key: list[str]) -> pd.Series:
    """How many times each connection's SYN was sent: copies closer than 0.2 s (Linux's
    minimum RTO) are one send seen twice (``-i any``, several files)."""
    ordered = front.sort_values([*key, "time"], kind="stable")
    same = (ordered[key] == ordered[key].shift()).all(axis=1)
    again = same & (ordered["time"].diff() >= 0.2)
    return again.groupby([ordered[k] for k in key], sort=False).sum() + 1


def _dnat_legs(front: pd.DataFrame, legs: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """Per connection key, its DNATed leg (``leg_file``, ``leg_dst_ip``, ``leg_src_ip``,
    ``leg_path``): the first SYN with its sequence number that left for another address
    within ``DNAT_WINDOW`` in the same capture."""
    columns = [*key, "leg_file", "leg_dst_ip", "leg_src_ip", "leg_path"]
    if legs.empty:
        return pd.DataFrame(columns=columns)
    pairs = front[[*key, "file", "time"]].merge(
        legs[["file", "tcp_seq", "time", "src_ip", "dst_ip", "is_vxlan", "if_name"]],
        on=["file", "tcp_seq"],
        suffixes=("", "_leg"),
    )
    delay = pairs["time_leg"] - pairs["time"]
    pairs = pairs[(delay >= 0) & (delay <= DNAT_WINDOW)].sort_values("time_leg", kind="stable").drop_duplicates(key)
    vxlan = pairs["is_vxlan"].astype(bool) | (pairs["if_name"] == "flannel.1")
    interface = pairs["if_name"].where(pairs["if_name"] != "", "routed")
    return pd.DataFrame(
        {
            **{k: pairs[k] for k in key},
            "leg_file": pairs["file"],
            "leg_dst_ip": pairs["dst_ip_leg"],
            "leg_src_ip": pairs["src_ip_leg"],
            "leg_path": interface.where(~vxlan, "vxlan"),
        }
    )


def endpoint_counts(conns: pd.DataFrame, topology: Topology | None) -> pd.DataFrame:
    """Per Service and endpoint: ``connections``, ``answered``, ``share``, ``expected`` (a
    uniform spread over the Service's endpoints), ``pod``, ``node``, ``ready``. Endpoints of
    the EndpointSlices that got no connection are listed with 0."""
    rows = []
    for svc in topology.services if topology else ():
        mine = conns[conns["service"] == svc.key] if len(conns) else conns
        placed = mine[mine["endpoint_ip"].notna()] if len(mine) else mine
        total = len(placed)
        listed = {e.ip for e in svc.endpoints}
        extra = sorted(set(placed["endpoint_ip"]) - listed) if total else []
        for ip, pod, node, ready in [(e.ip, e.pod, e.node, e.ready) for e in svc.endpoints] + [
            (ip, None, None, False) for ip in extra
        ]:
            hits = placed[placed["endpoint_ip"] == ip] if total else placed
            count = len(hits)
            rows.append(
                {
                    "service": svc.key,
                    "endpoint_ip": ip,
                    "pod": pod,
                    "node": node,
                    "ready": ready,
                    "in_slices": ip in listed,
                    "connections": count,
                    "answered": int(hits["endpoint_answered"].fillna(False).astype(bool).sum()) if count else 0,
                    "share": count / total if total else math.nan,
                    "expected": total / len(svc.endpoints) if svc.endpoints else math.nan,
                }
            )
    columns = ["service", "endpoint_ip", "pod", "node", "ready", "in_slices", "connections", "answered", "share"]
    return pd.DataFrame(rows, columns=[*columns, "expected"])


def spread(counts: pd.DataFrame) -> list[Spread]:
    """Pearson's χ² of each Service's connections per endpoint against a uniform spread."""
    out = []
    for service, group in counts[counts["in_slices"].astype(bool)].groupby("service", sort=False):
        observed = group["connections"].to_numpy(dtype=float)
        total = float(observed.sum())
        if total == 0 or len(observed) < 2:
            continue
        expected = total / len(observed)
        chi2 = float(((observed - expected) ** 2 / expected).sum())
        dof = len(observed) - 1
        out.append(Spread(service=str(service), connections=int(total), chi2=chi2, dof=dof, p_value=chi2_sf(chi2, dof)))
    return out


def chi2_sf(x: float, dof: int) -> float:
    """P(χ²_dof ≥ x): the closed forms of the regularised upper incomplete gamma function
    Q(dof/2, x/2) for whole and half-whole shapes."""
    if x <= 0:
        return 1.0
    half = x / 2.0
    if dof % 2 == 0:
        term, total = 1.0, 1.0
        for i in range(1, dof // 2):
            term *= half / i
            total += term
        return min(1.0, math.exp(-half) * total)
    total = math.erfc(math.sqrt(half))
    term = math.exp(-half) / math.sqrt(math.pi * half)
    for i in range(1, (dof + 1) // 2):
        term *= half / (i - 0.5)
        total += term
    return min(1.0, total)


def findings(
    claimed: pd.DataFrame,
    split: dict[str, set[str]],
    unanswered: pd.DataFrame,
    conns: pd.DataFrame,
    topology: Topology | None,
) -> list[Finding]:
    """The services' findings: two announcers for one IP, an IP nobody answers ARP for, an
    endpoint that never answers, a DNAT to a pod IP that no pod has."""
    out = []
    owners = topology.lan_macs() if topology else {}
    for vip, macs in sorted(split.items()):
        named = ", ".join(f"{mac} ({owners.get(mac, 'not a node')})" for mac in sorted(macs))
        numbers = claimed["number"][(claimed["vip"] == vip) & claimed["mac"].isin(macs)].tolist()
        out.append(
            Finding(
                severity=ERROR,
                code="vip-two-announcers",
                message=(
                    f"{vip} is announced by {len(macs)} MACs at once: {named} — two speakers claim it (split brain); "
                    "clients reach whichever answered last"
                ),
                packets=tuple(numbers[:MAX_PACKETS_SHOWN]),
            )
        )
    if len(unanswered):
        answered_vips = set(claimed["vip"])
        for vip, group in unanswered.groupby("vip", sort=True):
            never = vip not in answered_vips
            out.append(
                Finding(
                    severity=ERROR if never else WARNING,
                    code="vip-unanswered",
                    message=(
                        f"nobody answers ARP for {vip}: {len(group)} requests, no reply — no speaker announces it"
                        if never
                        else f"{len(group)} ARP requests for {vip} went unanswered (an announcer gap, e.g. a failover)"
                    ),
                    packets=tuple(group["number"].tolist()[:MAX_PACKETS_SHOWN]),
                )
            )
    if len(conns):
        placed = conns[conns["endpoint_ip"].notna()]
        for ip, group in placed.groupby("endpoint_ip", sort=True):
            if not group["endpoint_answered"].fillna(False).astype(bool).any():
                pod = group["endpoint_pod"].iloc[0]
                out.append(
                    Finding(
                        severity=ERROR,
                        code="endpoint-never-answers",
                        message=(
                            f"endpoint {ip}{f' ({pod})' if pod else ''} of {group['service'].iloc[0]} never answered: "
                            f"{len(group)} connections were DNATed to it and none got a SYN-ACK — a replica gone or "
                            "not listening, still in the EndpointSlice and kube-proxy's rules"
                        ),
                        node=group["endpoint_node"].iloc[0],
                        packets=tuple(group["number"].tolist()[:MAX_PACKETS_SHOWN]),
                    )
                )
        if topology is not None and topology.pods:
            unknown = placed[placed["endpoint_pod"].isna() & placed["endpoint_ip"].map(_in_pod_cidr(topology))]
            for ip, group in unknown.groupby("endpoint_ip", sort=True):
                out.append(
                    Finding(
                        severity=ERROR,
                        code="dnat-to-unknown-pod",
                        message=(
                            f"{len(group)} connections to {group['service'].iloc[0]} were DNATed to {ip}, which no pod "
                            "has: kube-proxy's rules point at an endpoint that is gone"
                        ),
                        packets=tuple(group["number"].tolist()[:MAX_PACKETS_SHOWN]),
                    )
                )
    return out


def _in_pod_cidr(topology: Topology) -> object:
    networks = []
    for node in topology.nodes:
        if node.pod_cidr:
            try:
                networks.append(ipaddress.ip_network(node.pod_cidr, strict=False))
            except ValueError:
                continue

    def inside(ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in networks)

    return inside


INGRESS_COLUMNS = (
    "time", "file", "number", "ingress", "ingress_ip", "client", "client_is", "forwarded_for", "backend_ip",
    "backend_pod", "backend_node", "host", "path",
)  # fmt: skip


def ingress_requests(captures: Sequence[CaptureAt], topology: Topology | None = None) -> pd.DataFrame:
    """One row per request a proxy sent on (``X-Forwarded-Server`` set): ``ingress`` (that
    header: the proxy pod's name), ``client`` (the last ``X-Forwarded-For`` address) and what
    it is (``client_is``: a pod, a node's flannel.1 or cni0 — the client masqueraded — or
    outside the cluster), the backend pod and node, Host and path."""
    topology = topology or Topology()
    parts = []
    for capture in captures:
        frame = capture.packets
        if frame.empty or "http_forwarded_server" not in frame:
            continue
        asked = frame[frame["http_forwarded_server"].notna()]
        if len(asked):
            parts.append(asked.assign(file=capture.name))
    if not parts:
        return pd.DataFrame(columns=list(INGRESS_COLUMNS))
    asked = pd.concat(parts, ignore_index=True).sort_values("time", kind="stable")
    asked["src_ip"], asked["dst_ip"] = _text(asked["src_ip"]), _text(asked["dst_ip"])
    asked = asked.drop_duplicates(["src_ip", "src_port", "dst_ip", "dst_port", "tcp_seq"])
    rows = []
    for row in asked.itertuples(index=False):
        chain = str(row.http_forwarded_for) if isinstance(row.http_forwarded_for, str) else ""
        client = chain.rsplit(",", 1)[-1].strip() or None
        pod = topology.pod_by_ip(row.dst_ip)
        owner = topology.node_of_pod_ip(row.dst_ip)
        rows.append(
            {
                "time": float(row.time),
                "file": row.file,
                "number": int(row.number),
                "ingress": str(row.http_forwarded_server),
                "ingress_ip": row.src_ip,
                "client": client,
                "client_is": _what_address(topology, client),
                "forwarded_for": chain,
                "backend_ip": row.dst_ip,
                "backend_pod": pod.name if pod else None,
                "backend_node": pod.node if pod and pod.node else (owner.name if owner else None),
                "host": row.http_host if isinstance(row.http_host, str) else None,
                "path": row.http_path if isinstance(row.http_path, str) else None,
            }
        )
    return pd.DataFrame(rows, columns=list(INGRESS_COLUMNS))


def _what_address(topology: Topology, ip: str | None) -> str | None:
    """What an address is in the cluster: a pod, a node's flannel.1 or cni0 (traffic the node
    masqueraded), a node, or outside the cluster."""
    if not ip:
        return None
    if (pod := topology.pod_by_ip(ip)) is not None:
        return f"pod {pod.name}"
    for node in topology.nodes:
        if ip == node.vtep_ip:
            return f"{node.name}'s flannel.1 (masqueraded)"
        if ip == node.cni0_ip:
            return f"{node.name}'s cni0 (masqueraded)"
        if ip == node.public_ip:
            return f"node {node.name}"
    return "outside the cluster"


@dataclass(frozen=True, slots=True)
class ServicesView:
    """Everything the services analysis found in a set of captures."""

    claims: pd.DataFrame
    takeovers: pd.DataFrame
    split: dict[str, set[str]]
    unanswered: pd.DataFrame
    connections: pd.DataFrame
    endpoints: pd.DataFrame
    spreads: tuple[Spread, ...]
    summary: pd.DataFrame
    findings: tuple[Finding, ...]
    ingress: pd.DataFrame


SUMMARY_COLUMNS = (
    "service", "type", "cluster_ip", "vip", "policy", "announced_by", "takeovers", "split_brain",
    "unanswered_arp", "connections", "answered", "observed_policy", "chi2", "dof", "p_value",
)  # fmt: skip


def services_view(captures: Sequence[CaptureAt], topology: Topology | None) -> ServicesView:
    """Claims, takeovers, connections, endpoint counts, spreads, per-Service summary and
    findings of ``captures``."""
    claimed = claims(captures, topology)
    changes, split = takeovers(claimed)
    vips = set(service_ips(topology)) or set(claimed["vip"])
    silent = unanswered_requests(captures, vips)
    conns = connections(captures, topology)
    counts = endpoint_counts(conns, topology)
    spreads = tuple(spread(counts))
    summary = _summary(topology, claimed, changes, split, silent, conns, spreads)
    found = tuple(findings(claimed, split, silent, conns, topology))
    proxied = ingress_requests(captures, topology)
    return ServicesView(claimed, changes, split, silent, conns, counts, spreads, summary, found, proxied)


def observed_policy(conns: pd.DataFrame) -> str | None:
    """What the DNATed legs show: ``Cluster`` (the client masqueraded), ``Local`` (kept),
    ``mixed``, or None where no leg was seen."""
    seen = conns["masqueraded"].dropna().astype(bool) if len(conns) else pd.Series([], dtype=bool)
    if seen.empty:
        return None
    if seen.all():
        return "Cluster"
    return "Local" if not seen.any() else "mixed"


def _summary(
    topology: Topology | None,
    claimed: pd.DataFrame,
    changes: pd.DataFrame,
    split: dict[str, set[str]],
    silent: pd.DataFrame,
    conns: pd.DataFrame,
    spreads: Sequence[Spread],
) -> pd.DataFrame:
    rows = []
    tests = {s.service: s for s in spreads}
    for svc in topology.services if topology else ():
        for vip in svc.external_ips or (None,):
            mine = conns[conns["service"] == svc.key] if len(conns) else conns
            held = changes[changes["vip"] == vip] if vip else changes.iloc[0:0]
            last = held.iloc[-1] if len(held) else None
            announcers = sorted({str(n) for n in claimed["node"][claimed["vip"] == vip].dropna()}) if vip else []
            test = tests.get(svc.key)
            rows.append(
                {
                    "service": svc.key,
                    "type": svc.type,
                    "cluster_ip": svc.cluster_ips[0] if svc.cluster_ips else None,
                    "vip": vip,
                    "policy": svc.policy,
                    "announced_by": (last["to_node"] or last["to_mac"]) if last is not None else None,
                    "takeovers": max(0, len(held) - 1),
                    "split_brain": bool(vip and vip in split),
                    "unanswered_arp": int((silent["vip"] == vip).sum()) if len(silent) else 0,
                    "connections": len(mine),
                    "answered": int(mine["answered"].sum()) if len(mine) else 0,
                    "observed_policy": observed_policy(mine),
                    "chi2": test.chi2 if test else math.nan,
                    "dof": test.dof if test else None,
                    "p_value": test.p_value if test else math.nan,
                    "announcers": announcers,
                }
            )
    return pd.DataFrame(rows, columns=[*SUMMARY_COLUMNS, "announcers"])
