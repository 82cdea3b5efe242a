"""Naming what a packet's addresses belong to: nodes, VTEPs and pods.

Rule: pure. A record and a topology in, the same record with ``src_node`` … ``dst_pod`` set.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

from flannelcap.packets.records import PacketRecord
from flannelcap.topology.model import Pod, Topology


def pod_name(pod: Pod | None) -> str | None:
    """A pod as flannelcap names it: ``name`` in the default namespace, else ``namespace/name``."""
    if pod is None:
        return None
    return pod.name if pod.namespace == "default" else f"{pod.namespace}/{pod.name}"


def annotate(record: PacketRecord, topology: Topology) -> PacketRecord:
    """Name the nodes (outer IPs), VTEP owners (inner MACs) and pods (innermost IPs); pod
    traffic routed between nodes without a tunnel (``direct_routed``) is named by the nodes
    whose pod subnets hold its addresses."""
    src_node = topology.node_by_ip(record.outer_src_ip)
    dst_node = topology.node_by_ip(record.outer_dst_ip)
    src_owner, dst_owner = topology.node_of_pod_ip(record.src_ip), topology.node_of_pod_ip(record.dst_ip)
    routed = not record.is_tunnel and src_owner is not None and dst_owner is not None and src_owner != dst_owner
    if routed:
        src_node, dst_node = src_owner, dst_owner
    src_vtep = topology.node_by_vtep_mac(record.inner_src_mac) if record.is_vxlan else None
    dst_vtep = topology.node_by_vtep_mac(record.inner_dst_mac) if record.is_vxlan else None
    return replace(
        record,
        src_node=src_node.name if src_node else None,
        dst_node=dst_node.name if dst_node else None,
        src_vtep_node=src_vtep.name if src_vtep else None,
        dst_vtep_node=dst_vtep.name if dst_vtep else None,
        src_pod=pod_name(topology.pod_by_ip(record.src_ip)),
        dst_pod=pod_name(topology.pod_by_ip(record.dst_ip)),
        direct_routed=routed,
    )


def annotate_all(records: Iterable[PacketRecord], topology: Topology) -> Iterator[PacketRecord]:
    """``annotate`` lazily over a stream of records."""
    for record in records:
        yield annotate(record, topology)
