"""DNS lookups on the wire: each query paired with its response, and what is wrong with them.

Rule: pure, group-bys and merges over the DNS columns of ``Capture.packets`` (one or several
captures), never a loop over packets.

- A query is identified by its client (address and port), id, name and type: what NAT leaves
  alone (kube-proxy DNATs the server's address, ``10.43.0.10`` → a CoreDNS pod). Copies of it
  (``tcpdump -i any``: veth, cni0, flannel.1, eth0) are one query; copies less than
  ``RESEND_GAP`` apart are one send, later ones are resends (glibc resends after its
  ``timeout``, 5 s by default). The server is the address the client asked, and the pod the
  query was DNATed to where a copy shows it.
- Its response is the first with the same client, id, name and type after its last send (an
  answer seen before a resend never reached the client, or it would not have asked again);
  the latency runs from the first send, as the client waited.
- Findings: queries never answered; the 5-second pattern (a query sent again 4–6 s after the
  first, the lost-UDP or conntrack race); the ``ndots`` search-path expansion (NXDOMAIN for
  ``name.<search domain>`` before the name that resolves); answers slower than
  ``SLOW_ANSWER``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from flannelcap.analysis.audit import ERROR, INFO, WARNING, Finding
from flannelcap.analysis.journey import CaptureAt
from flannelcap.topology.model import Topology

RESEND_GAP = 0.2  # seconds: closer copies are one send seen at several points
RETRY_AFTER = (4.0, 6.0)  # the 5-second retry: a resend this long after the first send
SLOW_ANSWER = 1.0  # seconds
MAX_PACKETS_SHOWN = 12
NXDOMAIN = 3

COLUMNS = (
    "time", "file", "number", "client_ip", "client_port", "client_pod", "server_ip", "server_pod", "id", "name",
    "type", "sends", "resent_after", "answered", "rcode", "addresses", "cnames", "ttl", "latency_ms",
    "response_number",
)  # fmt: skip
_KEY = ["client_ip", "client_port", "id", "name", "type"]


def _text(column: pd.Series) -> pd.Series:
    return column.astype(object).where(column.notna(), None)


def _messages(captures: Sequence[CaptureAt]) -> pd.DataFrame:
    """Every DNS message of the captures with the columns the pairing reads."""
    parts = []
    for capture in captures:
        frame = capture.packets
        if frame.empty or "dns_id" not in frame:
            continue
        dns = frame[frame["dns_id"].notna() & frame["dns_qname"].notna()]
        if dns.empty:
            continue
        part = pd.DataFrame(
            {
                "time": dns["time"].to_numpy(dtype=float),
                "file": capture.name,
                "number": dns["number"].to_numpy(dtype=np.int64),
                "src_ip": _text(dns["src_ip"]).to_numpy(),
                "dst_ip": _text(dns["dst_ip"]).to_numpy(),
                "src_port": dns["src_port"].to_numpy(dtype=float),
                "dst_port": dns["dst_port"].to_numpy(dtype=float),
                "id": dns["dns_id"].to_numpy(dtype=np.int64),
                "response": dns["dns_response"].fillna(False).to_numpy(dtype=bool),
                "rcode": dns["dns_rcode"].to_numpy(dtype=float),
                "name": _text(dns["dns_qname"]).to_numpy(),
                "type": _text(dns["dns_qtype"]).to_numpy(),
                "addresses": _text(dns["dns_addresses"]).to_numpy(),
                "cnames": _text(dns["dns_cnames"]).to_numpy(),
                "ttl": dns["dns_ttl"].to_numpy(dtype=float),
            }
        )
        parts.append(part)
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True).sort_values("time", kind="stable")


def lookups(captures: Sequence[CaptureAt], topology: Topology | None = None) -> pd.DataFrame:
    """One row per DNS query (columns ``COLUMNS``): when it was first sent and how often,
    its client and server (pods where the topology knows them), and its response (rcode,
    addresses, CNAMEs, TTL, latency in milliseconds), in time order."""
    messages = _messages(captures)
    if messages.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    queries = messages[~messages["response"]].rename(columns={"src_ip": "client_ip", "src_port": "client_port"})
    answers = messages[messages["response"]].rename(columns={"dst_ip": "client_ip", "dst_port": "client_port"})
    if queries.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    first = queries.drop_duplicates(_KEY).rename(columns={"dst_ip": "server_ip"})
    sends = _sends(queries)
    pods = {p.ip: f"{p.namespace}/{p.name}" for p in (topology.pods if topology else ()) if p.ip}
    servers = queries[queries["dst_ip"].isin(pods)].drop_duplicates(_KEY)[[*_KEY, "dst_ip"]]
    out = first.merge(sends, on=_KEY, how="left").merge(servers, on=_KEY, how="left")
    replies = answers[[*_KEY, "time", "number", "rcode", "addresses", "cnames", "ttl"]].rename(
        columns={"time": "answer_time", "number": "response_number"}
    )
    paired = out[[*_KEY, "last_send"]].merge(replies, on=_KEY)
    paired = paired[paired["answer_time"] >= paired["last_send"]].sort_values("answer_time", kind="stable")
    paired = paired.drop_duplicates(_KEY).drop(columns="last_send")
    out = out.drop(columns=["rcode", "addresses", "cnames", "ttl"]).merge(paired, on=_KEY, how="left")
    out["answered"] = out["answer_time"].notna()
    out["latency_ms"] = (out["answer_time"] - out["time"]) * 1000.0
    out["client_pod"] = out["client_ip"].map(pods)
    out["server_pod"] = out["dst_ip"].map(pods).where(out["dst_ip"].notna(), out["server_ip"].map(pods))
    out["client_port"] = out["client_port"].astype("Int64")
    for column in ("rcode", "ttl", "response_number"):
        out[column] = out[column].astype("Int64")
    return out[list(COLUMNS)].sort_values("time", kind="stable").reset_index(drop=True)


def _sends(queries: pd.DataFrame) -> pd.DataFrame:
    """Per query: ``sends`` (copies ``RESEND_GAP`` apart or more are resends) and
    ``resent_after`` (seconds from the first send to the last)."""
    ordered = queries.sort_values([*_KEY, "time"], kind="stable")
    same = (ordered[_KEY] == ordered[_KEY].shift()).all(axis=1)
    again = same & (ordered["time"].diff() >= RESEND_GAP)
    grouped = ordered.assign(again=again).groupby(_KEY, sort=False, dropna=False)
    out = grouped.agg(sends=("again", "sum"), first=("time", "min"), last_send=("time", "max")).reset_index()
    out["sends"] = out["sends"].astype(int) + 1
    out["resent_after"] = np.where(out["sends"] > 1, out["last_send"] - out["first"], np.nan)
    return out[[*_KEY, "sends", "resent_after", "last_send"]]


def dns_findings(table: pd.DataFrame) -> list[Finding]:
    """Findings of a ``lookups`` table: unanswered queries, the 5-second resend, the ``ndots``
    expansion, answers slower than ``SLOW_ANSWER`` (not counting those a resend explains)."""
    found: list[Finding] = []
    if table.empty:
        return found
    silent = table[~table["answered"]]
    for (client, name, kind), group in silent.groupby(["client_ip", "name", "type"], sort=True, dropna=False):
        found.append(
            Finding(
                severity=ERROR,
                code="dns-unanswered",
                message=f"{len(group)} DNS queries from {client} for {name} ({kind}) were never answered",
                packets=tuple(group["number"].tolist()[:MAX_PACKETS_SHOWN]),
            )
        )
    answered = table[table["answered"]]
    resent = table[table["sends"] > 1]
    five = resent[resent["resent_after"].between(*RETRY_AFTER)]
    if len(five):
        found.append(
            Finding(
                severity=WARNING,
                code="dns-5s-retry",
                message=(
                    f"{len(five)} DNS queries were sent again about 5 s after the first (glibc's timeout): the first "
                    f"answer was lost — {', '.join(sorted(set(five['name'])))}; a lookup that takes 5 s is this"
                ),
                packets=tuple(five["number"].tolist()[:MAX_PACKETS_SHOWN]),
            )
        )
    found += _ndots(table)
    slow = answered[(answered["latency_ms"] > SLOW_ANSWER * 1000) & (answered["sends"] == 1)]
    if len(slow):
        found.append(
            Finding(
                severity=WARNING,
                code="dns-slow-answer",
                message=(
                    f"{len(slow)} DNS answers took longer than {SLOW_ANSWER:g} s "
                    f"(slowest {slow['latency_ms'].max():.0f} ms)"
                ),
                packets=tuple(slow["number"].tolist()[:MAX_PACKETS_SHOWN]),
            )
        )
    return found


def _ndots(table: pd.DataFrame) -> list[Finding]:
    """NXDOMAIN answers for a name with a search domain appended (``name.<namespace>.svc.
    cluster.local``, ``name.svc.cluster.local``, ``name.cluster.local``) where the name itself
    then resolved: the cost of ``ndots:5`` for names outside the cluster."""
    nx = table[table["rcode"] == NXDOMAIN]
    resolved = set(table["name"][table["answered"] & (table["rcode"] == 0)])
    wasted: dict[str, list[int]] = {}
    for name, number in zip(nx["name"], nx["number"], strict=True):
        for suffix in (".svc.cluster.local", ".cluster.local"):
            if not name.endswith(suffix):
                continue
            base = name[: -len(suffix)]
            candidates = [base]
            if suffix == ".svc.cluster.local" and "." in base:  # name.<namespace>.svc.cluster.local
                candidates.append(base.rsplit(".", 1)[0])
            hit = next((c for c in candidates if c in resolved and not c.endswith(".cluster.local")), None)
            if hit:
                wasted.setdefault(hit, []).append(int(number))
            break
    return [
        Finding(
            severity=INFO,
            code="dns-ndots-expansion",
            message=(
                f"{name}: {len(numbers)} NXDOMAIN answers for the search path (ndots:5) before {name} itself "
                f"resolved; ask for '{name}.' (a trailing dot) or lower ndots to save them"
            ),
            packets=tuple(numbers[:MAX_PACKETS_SHOWN]),
        )
        for name, numbers in sorted(wasted.items())
        if len(numbers) >= 2
    ]
