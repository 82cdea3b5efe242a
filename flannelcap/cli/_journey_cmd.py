"""``flannelcap journey``: each packet followed across the captures it appears in — the delay
of each hop per flow, where packets were lost — or one packet's journey (``--packet N``).

Rule: formatting and printing only; matching is ``analysis.journey``'s, reading
``flannelcap.read_many``'s.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from flannelcap._errors import BadArgument
from flannelcap.cli._topology_args import add_node_option, add_topology_options, node_names, saved_tables


def add_parsers(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "journey",
        help="follow each packet across interfaces and nodes: hop delays, where packets were lost",
        description=(
            "Match the copies of each packet across captures taken at the same time (tcpdump -i any on "
            "several nodes, or one file per interface), put them in path order, and say per flow how long "
            "each hop took and where packets stopped. A capture's node comes from its file name "
            "(<node>-<interface>-..., as 'flannelcap capture' writes) or from --node FILE=NODE."
        ),
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="CAPTURE", help="pcap or pcapng files")
    add_topology_options(parser, required=False)  # by default: the *.tables 'flannelcap capture' saved beside them
    add_node_option(parser)
    parser.add_argument("--packet", type=int, metavar="N", help="print the journey of packet N of the first file")
    parser.add_argument("--json", action="store_true", help="one JSON object per matched packet")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from flannelcap._many import read_many
    from flannelcap.cli._topology_args import topology_from_args

    topology, note = topology_from_args(args), None
    if topology is None:
        topology, note = saved_tables(args.files)
    captures = read_many(args.files, topology, nodes=node_names(args.node))
    for capture in captures.captures:
        if capture.problem:  # every packet before the damage is decoded and matched
            print(f"flannelcap: warning: {capture.path.name}: {capture.problem}", file=sys.stderr)
    status = _report(args, captures)
    if note:  # after the output: an error comes alone, on one line
        print(f"flannelcap: note: {note}", file=sys.stderr)
    return status


def _report(args: argparse.Namespace, captures: Any) -> int:
    seen, packets = captures.sightings(), captures.journeys()
    if args.packet is not None:
        return _one_packet(args, seen, packets)
    if args.json:
        _json(seen, packets)
        return 0
    _clocks(captures.clocks())
    if packets.empty:
        print("no packet of these captures was matched (IPv4 TCP, UDP and ICMP are)")
        return 0
    table = captures.hops()
    if table.empty:
        print(
            "no packet was seen at more than one point: capture at several interfaces or nodes at once "
            "(tcpdump -i any, or one capture per node) to follow packets"
        )
    for flow, rows in packets.groupby("flow", sort=False, observed=True):
        flow_hops = table[table["flow"] == flow]
        if flow_hops.empty:
            continue
        print(f"\n{flow}  ({len(rows)} packets)")
        width = max(len(f"{a} → {b}") for a, b in zip(flow_hops["from"], flow_hops["to"], strict=True))
        print(f"  {'hop':<{width}}  {'packets':>7}  {'median':>10}  {'p99':>10}  {'TTL':>3}")
        columns = ("from", "to", "packets", "median_us", "p99_us", "ttl_change", "reordered", "crosses_nodes")
        for start, end, count, median, p99, ttl, overtaken, crosses in zip(
            *(flow_hops[c] for c in columns), strict=True
        ):
            name = f"{start} → {end}"
            notes = (" *" if crosses else "") + (f"  {overtaken} arrived out of order" if overtaken else "")
            ttl_text = f"{int(ttl):+d}" if ttl == ttl and ttl else ""
            print(f"  {name:<{width}}  {count:>7}  {_us(median):>10}  {_us(p99):>10}  {ttl_text:>3}{notes}")
        duplicated = int(rows["duplicates"].sum())
        if duplicated:
            print(f"  {duplicated} copies seen twice at the same point (duplicates)")
        lost = rows[rows["lost"]]
        for packet in lost.itertuples(index=False):
            print(f"  lost: {packet.first_file} #{packet.first_number} ({packet.info}): {packet.verdict}")
        ended = rows[~rows["lost"] & (rows["verdict"] != "delivered")]
        if len(ended):
            print(f"  {len(ended)} packets not followed to the end: {ended['verdict'].iloc[0]}")
    print(f"\n{len(packets)} packets matched, {int(packets['lost'].sum())} lost. * crosses nodes (clock offsets above)")
    return 0


def _us(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1f} µs"


def _clocks(clocks: list[Any]) -> None:
    if len(clocks) < 2:
        return
    reference = clocks[0].node
    for clock in clocks[1:]:
        if clock.offset is None:
            print(
                f"clock: {clock.node}'s offset to {reference} is unknown (no packet crossed both ways): "
                f"its times are its own, not comparable with {reference}'s"
            )
        else:
            print(
                f"clock: {clock.node} is {clock.offset * 1e6:+.1f} µs against {reference} "
                f"(± {clock.uncertainty * 1e6:.1f} µs, from {clock.pairs} packets crossing both ways; "
                "assumes symmetric paths)"
            )


def _one_packet(args: argparse.Namespace, seen: Any, packets: Any) -> int:
    first = args.files[0].name
    hit = seen[(seen["file"] == first) & (seen["number"] == args.packet)]
    if hit.empty:
        raise BadArgument(f"packet {args.packet} of {first} is not a matched packet (IPv4 TCP, UDP or ICMP)")
    packet = int(hit["packet"].iloc[0])
    rows = seen[seen["packet"] == packet]
    verdict = packets[packets["packet"] == packet].iloc[0]
    print(f"{verdict['flow']}: {verdict['info']}")
    for row in rows.itertuples(index=False):
        layer = "VXLAN" if row.encapsulated else "plain"
        ttl = "" if math.isnan(row.ttl) else f"ttl {int(row.ttl)}"
        direction = row.direction if isinstance(row.direction, str) else ""
        clock = "" if row.clock_known else " (own clock)"
        print(
            f"  {row.since_first * 1e6:>+10.1f} µs  {row.node:<12} {row.point:<16} {direction:<9} {layer:<5} "
            f"{ttl:<7} {row.file} #{row.number}{clock}"
        )
    print(f"  {verdict.verdict}")
    return 0


def _json(seen: Any, packets: Any) -> None:
    by_packet = {int(k): rows for k, rows in seen.groupby("packet", sort=False)}
    out = sys.stdout
    for packet in packets.itertuples(index=False):
        rows = by_packet[int(packet.packet)]
        sightings = [
            {
                "file": row.file,
                "number": int(row.number),
                "node": row.node,
                "interface": row.point,
                "direction": row.direction if isinstance(row.direction, str) else None,
                "encapsulated": bool(row.encapsulated),
                "ttl": None if math.isnan(row.ttl) else int(row.ttl),
                "time": float(row.time),
                "since_first": float(row.since_first),
                "clock_known": bool(row.clock_known),
            }
            for row in rows.itertuples(index=False)
        ]
        record = {
            "packet": int(packet.packet),
            "flow": packet.flow,
            "verdict": packet.verdict,
            "lost": bool(packet.lost),
            "sightings": sightings,
        }
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
