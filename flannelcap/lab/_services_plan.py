"""The lab's services (seed lab §4–5): a Deployment of three nginx replicas and its LoadBalancer
Service, Traefik with its own LoadBalancer Service routing to them, which node's speaker
announces each Service IP, and kube-proxy's rules.

Rule: pure, like ``_plan``. Everything is derived from the nodes: the replicas' names and
addresses, the Service's ClusterIP and LoadBalancer IP (from a MetalLB-like pool on the node
LAN), the announcing node (MetalLB's layer-2 election: the eligible nodes sorted by
``sha256(node + "#" + ip)``, first wins), what kubectl would print about all of it, and the
nftables ruleset kube-proxy's nftables mode would load on each node.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flannelcap._errors import LabError

SERVICE_CIDR = "10.43.0.0/16"
POOL_FIRST_HOST = 200  # the seed's pool: 192.168.1.200-192.168.1.254
WEB_SERVICE = "web"
WEB_CLUSTER_IP = "10.43.71.110"  # as in the seed lab's §5.3
WEB_REPLICAS = 3
REPLICA_HOST = 17  # a replica's pod IP is 10.42.N.17 on node N
TEMPLATE_HASH = "6d4cf56db6"
TRAEFIK = "traefik"
TRAEFIK_NAMESPACE = "kube-system"
TRAEFIK_CLUSTER_IP = "10.43.42.129"  # as in the seed lab's §4.2
TRAEFIK_HASH = "7d6f8f4c9b"
TRAEFIK_WEB_PORT = 8000  # Traefik's "web" entrypoint, the Service's targetPort
TRAEFIK_HOST = 5  # the Traefik pod's IP is 10.42.0.5 on the first node
KUBE_DNS = "kube-dns"
KUBE_DNS_IP = "10.43.0.10"  # as in the seed lab's §4.2
COREDNS = "coredns"
COREDNS_HASH = "ccb96694c"
COREDNS_HOST = 4  # the CoreDNS pod's IP is 10.42.1.4 on the second node
UPSTREAM_NAMES = {"example.com": "192.0.2.10"}  # what the CoreDNS stand-in answers as if forwarded (TEST-NET-1)
MASQUERADE_MARK = 0x4000  # kube-proxy's mark for "masquerade this connection"
KUBE_PROXY_TABLE = "kube-proxy"
POLICIES = ("Cluster", "Local")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServicePlan:
    """A LoadBalancer Service: its addresses, endpoints (pod names) and announcing node."""

    name: str
    namespace: str
    cluster_ip: str
    external_ip: str
    port: int
    target_port: int
    node_port: int
    policy: str  # externalTrafficPolicy
    endpoints: tuple[str, ...]
    announcer: str  # "" for a ClusterIP Service (no external IP)
    protocols: tuple[str, ...] = ("tcp",)


def replica_name(index: int, app: str = WEB_SERVICE, template_hash: str = TEMPLATE_HASH) -> str:
    """The name a Deployment's ReplicaSet gives replica ``index`` (stable, like a pod's)."""
    digest = hashlib.sha256(f"{app}/{index}".encode()).hexdigest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"  # the letters Kubernetes' name suffixes use
    suffix = "".join(alphabet[int(digest[i : i + 2], 16) % len(alphabet)] for i in range(0, 10, 2))
    return f"{app}-{template_hash}-{suffix}"


def elect_announcer(nodes: Sequence[str], ip: str) -> str:
    """The node MetalLB's layer-2 mode elects for ``ip``: nodes sorted by
    ``sha256(node + "#" + ip)``, the first wins.

    Raises:
        LabError: no node is eligible.
    """
    if not nodes:
        raise LabError(f"no node can announce {ip}")
    return min(nodes, key=lambda node: hashlib.sha256(f"{node}#{ip}".encode()).digest())


def pool_address(lan: ipaddress.IPv4Network, host: int) -> str:
    """Address ``.host`` of the node LAN, for the LoadBalancer pool.

    Raises:
        LabError: the LAN is too small for the seed's pool.
    """
    if lan.num_addresses < 256:
        raise LabError(f"the LoadBalancer pool needs a /24 node LAN or larger, not {lan}")
    return str(lan.network_address + host)


def plan_web_service(
    node_names: Sequence[str], lan: ipaddress.IPv4Network, policy: str = "Cluster", *, node_port: int = 32456
) -> ServicePlan:
    """The seed's §5.3 Service: three replicas, one per node on the first three nodes, behind
    a LoadBalancer IP (``.201`` of the node LAN; ``.200`` is Traefik's in the seed).

    Raises:
        LabError: fewer than three nodes, or an unknown traffic policy.
    """
    if len(node_names) < WEB_REPLICAS:
        raise LabError(f"the services need {WEB_REPLICAS} nodes for their replicas: build the lab with --nodes 3")
    if policy not in POLICIES:
        raise LabError(f"externalTrafficPolicy {policy!r} is not one of {', '.join(POLICIES)}")
    external_ip = pool_address(lan, POOL_FIRST_HOST + 1)
    return ServicePlan(
        name=WEB_SERVICE,
        namespace="default",
        cluster_ip=WEB_CLUSTER_IP,
        external_ip=external_ip,
        port=80,
        target_port=80,
        node_port=node_port,
        policy=policy,
        endpoints=tuple(replica_name(i) for i in range(WEB_REPLICAS)),
        announcer=elect_announcer(node_names, external_ip),
    )


def plan_traefik(node_names: Sequence[str], lan: ipaddress.IPv4Network) -> ServicePlan:
    """k3s' Traefik: one pod behind a LoadBalancer Service on the pool's first address (the
    seed's ``192.168.1.200``), port 80 to the pod's ``web`` entrypoint."""
    external_ip = pool_address(lan, POOL_FIRST_HOST)
    return ServicePlan(
        name=TRAEFIK,
        namespace=TRAEFIK_NAMESPACE,
        cluster_ip=TRAEFIK_CLUSTER_IP,
        external_ip=external_ip,
        port=80,
        target_port=TRAEFIK_WEB_PORT,
        node_port=31446,
        policy="Cluster",
        endpoints=(replica_name(0, TRAEFIK, TRAEFIK_HASH),),
        announcer=elect_announcer(node_names, external_ip),
    )


def plan_kube_dns() -> ServicePlan:
    """k3s' CoreDNS behind ``kube-system/kube-dns`` (ClusterIP only, 53 over UDP and TCP)."""
    return ServicePlan(
        name=KUBE_DNS,
        namespace=TRAEFIK_NAMESPACE,
        cluster_ip=KUBE_DNS_IP,
        external_ip="",
        port=53,
        target_port=53,
        node_port=0,
        policy="Cluster",
        endpoints=(replica_name(0, COREDNS, COREDNS_HASH),),
        announcer="",
        protocols=("udp", "tcp"),
    )


def dns_zone(services: Sequence[ServicePlan]) -> dict[str, dict[str, str]]:
    """The names the CoreDNS stand-in answers: each Service's ``name.namespace.svc.cluster.local``
    (its ClusterIP), and the ``UPSTREAM_NAMES``."""
    names = {f"{svc.name}.{svc.namespace}.svc.cluster.local": svc.cluster_ip for svc in services}
    return {"services": names, "upstream": dict(UPSTREAM_NAMES)}


def resolv_conf(namespace: str = "default") -> str:
    """A pod's ``/etc/resolv.conf`` as the kubelet writes it (ClusterFirst DNS policy)."""
    search = f"{namespace}.svc.cluster.local svc.cluster.local cluster.local"
    return f"search {search}\nnameserver {KUBE_DNS_IP}\noptions ndots:5\n"


# -- what kubectl prints ---------------------------------------------------------------


def kubectl_services(services: Sequence[ServicePlan]) -> dict[str, Any]:
    """What ``kubectl get svc -A -o json`` shows for the lab's services."""
    items: list[dict[str, Any]] = []
    for svc in services:
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": svc.name, "namespace": svc.namespace, "annotations": {}},
                "spec": {
                    "type": "ClusterIP",
                    "clusterIP": svc.cluster_ip,
                    "clusterIPs": [svc.cluster_ip],
                    "internalTrafficPolicy": "Cluster",
                    "ports": [
                        {
                            "name": f"{p}-{svc.port}",
                            "port": svc.port,
                            "targetPort": svc.target_port,
                            "protocol": p.upper(),
                        }
                        for p in svc.protocols
                    ],
                    "selector": {"app": svc.name},
                    "sessionAffinity": "None",
                },
                "status": {"loadBalancer": {}},
            }
        )
        if svc.external_ip:
            item = items[-1]
            item["metadata"]["annotations"]["metallb.universe.tf/ip-allocated-from-pool"] = "first-pool"
            item["spec"].update(type="LoadBalancer", externalTrafficPolicy=svc.policy, loadBalancerIP=svc.external_ip)
            for port in item["spec"]["ports"]:
                port["nodePort"] = svc.node_port
            item["status"] = {"loadBalancer": {"ingress": [{"ip": svc.external_ip, "ipMode": "VIP"}]}}
    return {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}


def kubectl_endpointslices(services: Sequence[ServicePlan], pods: Sequence[Any]) -> dict[str, Any]:
    """What ``kubectl get endpointslices -A -o json`` shows: one slice per Service, its
    endpoints with pod IP, node and target pod. ``pods`` are the lab's ``PodPlan``s."""
    by_name = {pod.name: pod for pod in pods}
    items = []
    for svc in services:
        endpoints = [
            {
                "addresses": [by_name[name].ip],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "nodeName": by_name[name].node,
                "targetRef": {"kind": "Pod", "name": name, "namespace": by_name[name].namespace},
            }
            for name in svc.endpoints
        ]
        items.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{svc.name}-{TEMPLATE_HASH[:5]}",
                    "namespace": svc.namespace,
                    "labels": {"kubernetes.io/service-name": svc.name},
                },
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": [
                    {"name": f"{p}-{svc.port}", "port": svc.target_port, "protocol": p.upper()} for p in svc.protocols
                ],
            }
        )
    return {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}


# -- kube-proxy ------------------------------------------------------------------------


def kube_proxy_ruleset(services: Sequence[ServicePlan], pods: Sequence[Any], node: str) -> str:
    """The nftables ruleset kube-proxy's nftables mode loads on ``node`` for ``services``.

    Connections to the ClusterIP or the LoadBalancer IP are DNATed to one endpoint chosen at
    random (``numgen random mod n``), per connection (conntrack keeps the choice). External
    traffic is marked for masquerade under ``externalTrafficPolicy: Cluster``; under ``Local``
    it goes only to this node's endpoints, unmasqueraded, and is dropped where there are none.
    A pod reaching itself through the Service is masqueraded too (hairpin).
    """
    by_name = {pod.name: pod for pod in pods}
    lines = [f"table ip {KUBE_PROXY_TABLE} {{"]
    lines += [
        "  chain services {",
        *(
            f"    ip daddr {svc.cluster_ip} {proto} dport {svc.port} jump svc-{svc.name}"
            for svc in services
            for proto in svc.protocols
        ),
        *(
            f"    ip daddr {svc.external_ip} {proto} dport {svc.port} jump ext-{svc.name}"
            for svc in services
            if svc.external_ip
            for proto in svc.protocols
        ),
        "  }",
        "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n    jump services\n  }",
        "  chain output {\n    type nat hook output priority -100; policy accept;\n    jump services\n  }",
        "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n"
        f"    meta mark & {MASQUERADE_MARK:#x} == {MASQUERADE_MARK:#x} masquerade\n  }}",
        "  chain filter-forward {\n    type filter hook forward priority filter; policy accept;\n"
        "    ct state new jump no-endpoints\n  }",
        "  chain no-endpoints {",
    ]
    for svc in services:
        if svc.external_ip and svc.policy == "Local" and not any(by_name[e].node == node for e in svc.endpoints):
            lines.append(f"    ip daddr {svc.external_ip} tcp dport {svc.port} drop")
    lines.append("  }")
    for svc in services:
        lines += _service_chains(svc, by_name, node)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _service_chains(svc: ServicePlan, by_name: dict[str, Any], node: str) -> list[str]:
    def spread(chain: str, endpoints: Sequence[str]) -> list[str]:
        if not endpoints:
            return [f"  chain {chain} {{\n  }}"]
        targets = ", ".join(f"{i} : jump ep-{svc.name}-{svc.endpoints.index(e)}" for i, e in enumerate(endpoints))
        return [f"  chain {chain} {{\n    numgen random mod {len(endpoints)} vmap {{ {targets} }}\n  }}"]

    lines = spread(f"svc-{svc.name}", svc.endpoints)
    if svc.external_ip and svc.policy == "Cluster":
        lines.append(
            f"  chain ext-{svc.name} {{\n    meta mark set meta mark | {MASQUERADE_MARK:#x}\n"
            f"    jump svc-{svc.name}\n  }}"
        )
    elif svc.external_ip:
        local = [e for e in svc.endpoints if by_name[e].node == node]
        lines += spread(f"local-{svc.name}", local)
        lines.append(f"  chain ext-{svc.name} {{\n    jump local-{svc.name}\n  }}")
    for index, name in enumerate(svc.endpoints):
        ip = by_name[name].ip
        dnat = "".join(f"    meta l4proto {p} dnat to {ip}:{svc.target_port}\n" for p in svc.protocols)
        lines.append(
            f"  chain ep-{svc.name}-{index} {{\n"
            f"    ip saddr {ip} meta mark set meta mark | {MASQUERADE_MARK:#x}\n{dnat}  }}"
        )
    return lines
