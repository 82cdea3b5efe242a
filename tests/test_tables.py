"""Table parsers: the seed lab's printouts as printed, the JSON of real nodes, and garbage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SAMPLES

from flannelcap._errors import TableParseError
from flannelcap.topology.kube import parse_kubectl_nodes, parse_kubectl_pods
from flannelcap.topology.model import build_topology
from flannelcap.topology.tables import (
    SubnetEnv,
    parse_fdb,
    parse_links,
    parse_neigh,
    parse_routes,
    parse_subnet_env,
    vxlan_device,
)

SEED = Path(__file__).parent / "data" / "seed"


def seed(name: str) -> str:
    return (SEED / name).read_text()


# -- the seed lab's printouts (§2.3 b–c, §3.3 b–d), exactly as printed -----------------------


def test_seed_kpi091_ip_neigh() -> None:
    entries = parse_neigh(seed("kpi091-ip-neigh-flannel.1.txt"))
    assert [(e.ip, e.mac, e.states) for e in entries] == [
        ("10.42.2.0", "2e:cb:94:23:86:79", ("PERMANENT",)),
        ("10.42.1.0", "36:84:0d:94:d6:34", ("PERMANENT",)),
        ("10.42.3.0", "9a:29:f6:23:6f:d9", ("PERMANENT",)),
    ]


def test_seed_kpi091_bridge_fdb() -> None:
    entries = parse_fdb(seed("kpi091-bridge-fdb-flannel.1.txt"))
    assert [(e.mac, e.dst, e.flags, e.state) for e in entries] == [
        ("36:84:0d:94:d6:34", "192.168.1.41", ("self",), "permanent"),
        ("2e:cb:94:23:86:79", "192.168.1.39", ("self",), "permanent"),
        ("9a:29:f6:23:6f:d9", "192.168.1.40", ("self",), "permanent"),
    ]


def test_seed_kpi091_flannel_device_with_wrapped_lines() -> None:
    link = vxlan_device(seed("kpi091-ip-d-addr-flannel.1.txt"))
    assert (link.ifindex, link.mac, link.mtu) == (4, "5e:14:d0:84:69:81", 1450)
    assert link.vxlan is not None
    assert (link.vxlan.vni, link.vxlan.local, link.vxlan.underlay, link.vxlan.dstport, link.vxlan.learning) == (
        1,
        "192.168.1.38",
        "eth0",
        8472,
        False,
    )
    assert link.addresses == ("10.42.0.0/32", "fe80::bcb1:aaff:fe6b:7485/64")


def test_seed_kpi093_ip_neigh_with_annotations() -> None:
    entries = parse_neigh(seed("kpi093-ip-neigh-flannel.1.txt"))
    assert {e.ip: e.mac for e in entries} == {
        "10.42.2.0": "e6:4b:9c:85:29:63",
        "10.42.0.0": "46:32:55:ca:55:1f",
        "10.42.1.0": "32:6d:8a:c8:c2:af",
    }


def test_seed_kpi093_bridge_fdb_with_wrapped_comments() -> None:
    entries = parse_fdb(seed("kpi093-bridge-fdb-flannel.1.txt"))
    assert [(e.mac, e.dst) for e in entries] == [
        ("1a:b8:85:b9:77:bf", "192.168.1.41"),
        ("e6:4b:9c:85:29:63", "192.168.1.39"),
        ("32:6d:8a:c8:c2:af", "192.168.1.41"),
        ("46:32:55:ca:55:1f", "192.168.1.38"),
    ]


def test_seed_kpi093_flannel_device() -> None:
    link = vxlan_device(seed("kpi093-ip-d-addr-flannel.1.txt"))
    assert link.mac == "66:16:cf:19:e8:2c"
    assert link.vxlan is not None and (link.vxlan.local, link.vxlan.vni) == ("192.168.1.40", 1)
    assert link.addresses[0] == "10.42.3.0/32"


def test_seed_kpi093_ip_route() -> None:
    routes = parse_routes(seed("kpi093-ip-route.txt"))
    assert [(r.dst, r.gateway, r.dev, r.onlink) for r in routes] == [
        ("default", "192.168.1.1", "eth0", False),
        ("10.42.0.0/24", "10.42.0.0", "flannel.1", True),
        ("10.42.1.0/24", "10.42.1.0", "flannel.1", True),
        ("10.42.2.0/24", "10.42.2.0", "flannel.1", True),
        ("10.42.3.0/24", None, "cni0", False),
        ("192.168.1.0/24", None, "eth0", False),
        ("192.168.1.1", None, "eth0", False),
    ]
    assert (routes[0].protocol, routes[0].src, routes[0].metric) == ("dhcp", "192.168.1.40", 100)
    assert (routes[4].scope, routes[4].src) == ("link", "10.42.3.1")


def test_seed_pod_tables() -> None:
    busybox = parse_routes(seed("busybox-ip-route.txt"))
    assert [(r.dst, r.gateway) for r in busybox] == [
        ("default", "10.42.3.1"),
        ("10.42.0.0/16", "10.42.3.1"),
        ("10.42.3.0/24", None),
    ]
    pod = parse_routes(seed("pod-ip-route.txt"))
    assert pod[0].gateway == "10.42.0.1"
    [_, eth0] = parse_links(seed("pod-ip-addr.txt"))
    assert (eth0.name, eth0.peer_ifindex, eth0.mac, eth0.mtu) == ("eth0", 7, "46:8d:d4:ef:84:7c", 1450)
    assert eth0.addresses[0] == "10.42.0.48/24"
    [_, nginx] = parse_links(seed("nginx-ip-addr.txt"))
    assert (nginx.peer_ifindex, nginx.addresses[0]) == (7, "10.42.2.21/24")


def test_seed_host_veth_pairs_with_pod_eth0() -> None:
    [veth] = parse_links(seed("kpi092-ip-link.txt"))
    assert (veth.ifindex, veth.name, veth.peer_ifindex, veth.master, veth.mtu) == (7, "veth3a7939d", 2, "cni0", 1450)
    assert veth.mac == "72:12:d0:d0:b5:60"


def test_seed_kubectl_wide() -> None:
    pods = parse_kubectl_pods(seed("kubectl-get-pods-wide.txt"))
    assert [(p.name, p.ip, p.node) for p in pods] == [
        ("dnsutils", "10.42.3.50", "kpi093"),
        ("nginx", "10.42.2.23", "kpi092"),
        ("busybox", "10.42.3.51", "kpi093"),
        ("nginx-busybox", "10.42.1.42", "kpi094"),
    ]
    tabbed = parse_kubectl_pods(seed("kubectl-get-pods-wide-diffnodes.txt"))
    assert [(p.name, p.ip, p.node) for p in tabbed] == [
        ("dnsutils", "10.42.3.43", "kpi093"),
        ("nginx-busybox", "10.42.1.36", "kpi094"),
        ("busybox", "10.42.3.44", "kpi093"),
    ]


def test_kubectl_wide_with_namespace_and_pending_pod() -> None:
    text = (
        "NAMESPACE     NAME                 READY   STATUS    RESTARTS   AGE   IP          NODE     NOMINATED NODE\n"
        "kube-system   coredns-abc          1/1     Running   0          2d    10.42.0.3   kpi091   <none>\n"
        "default       pending-1            0/1     Pending   0          1m    <none>      <none>   <none>\n"
    )
    assert [(p.namespace, p.name, p.ip, p.node) for p in parse_kubectl_pods(text)] == [
        ("kube-system", "coredns-abc", "10.42.0.3", "kpi091"),
        ("default", "pending-1", None, None),
    ]


# -- the JSON forms, from real nodes (the lab's kernel and iproute2) ----------------------------------


def test_json_and_text_forms_agree_on_every_recorded_node() -> None:
    for tables in SAMPLES.glob("*.tables"):
        for node in (p for p in tables.iterdir() if p.is_dir() and p.name != "pods"):

            def both(stem: str, node: Path = node) -> tuple[str, str]:
                return (node / f"{stem}.txt").read_text(), (node / f"{stem}.json").read_text()

            text, data = both("ip-neigh-flannel.1")
            assert parse_neigh(text) == parse_neigh(data)
            text, data = both("bridge-fdb-flannel.1")
            assert parse_fdb(text) == parse_fdb(data)
            text, data = both("ip-route")
            assert parse_routes(text) == parse_routes(data)
            text, data = both("ip-d-addr-flannel.1")
            assert vxlan_device(text).vxlan == vxlan_device(data).vxlan
            assert vxlan_device(text).mac == vxlan_device(data).mac
            text, data = both("ip-link")
            assert [(link.name, link.peer_ifindex, link.master) for link in parse_links(text)] == [
                (link.name, link.peer_ifindex, link.master) for link in parse_links(data)
            ]


def test_older_iproute2_json_keys() -> None:
    fdb = parse_fdb(
        '[{"mac":"36:84:0d:94:d6:34","ifname":"flannel.1","dst":"192.168.1.41","opts":["self"],"state":"permanent"}]'
    )
    assert (fdb[0].dev, fdb[0].flags) == ("flannel.1", ("self",))
    neigh = parse_neigh('[{"dst":"10.42.1.0","dev":"flannel.1","lladdr":"36:84:0D:94:D6:34","state":"PERMANENT"}]')
    assert (neigh[0].mac, neigh[0].states) == ("36:84:0d:94:d6:34", ("PERMANENT",))


def test_kubectl_nodes_annotations(samples: dict) -> None:
    text = (SAMPLES / str(samples["cross-node-http-client"]["tables"]) / "kubectl-get-nodes.json").read_text()
    nodes = {n.name: n for n in parse_kubectl_nodes(text)}
    assert nodes["kpi093"].public_ip == "192.168.1.40"
    assert nodes["kpi093"].pod_cidrs == ("10.42.2.0/24",)
    assert nodes["kpi093"].vni == 1 and nodes["kpi093"].backend_type == "vxlan"


# -- garbage, truncated or empty: one line naming the table and the line ------------------------------


@pytest.mark.parametrize(
    ("parser", "text", "message"),
    [
        (parse_neigh, "", "cannot read ip neigh output, input: the input is empty"),
        (
            parse_neigh,
            "10.42.2.0 lladdr 2e:cb:94:23:86:79 PERMANENT\nhello world\n",
            "cannot read ip neigh output, line 2: does not start with an IP address: 'hello world'",
        ),
        (parse_neigh, "10.42.2.0 lladdr 2e:cb:94\n", "line 1: no neighbour state"),
        (parse_neigh, "10.42.2.0 lladdr zz:cb:94:23:86:79 PERMANENT\n", "lladdr 'zz:cb:94:23:86:79' is not a MAC"),
        (
            parse_fdb,
            "36:84:0d:94:d6:34 dst 192.168.1.41 self permanent\n36:84:0d:94:d6:34 dst 192.168.1.\n",
            "cannot read bridge fdb output, line 2: dst '192.168.1.' is not an IP address",
        ),
        (parse_fdb, '[{"mac":"36:84:0d:94:d6:34","dst":"192.168.1.41"},\n{"mac":"9a:29', "line 2: broken JSON"),
        (
            parse_routes,
            "10.42.0.0/24 via 10.42.0.0 dev flannel.1 onlink\nvia dev\n",
            "cannot read ip route output, line 2: does not start with a destination",
        ),
        (parse_links, "flannel.1 is up\n", "cannot read ip link output, line 1: expected an interface line"),
        (vxlan_device, "4: cni0: <BROADCAST> mtu 1450\n", "no device flannel.1"),
        (vxlan_device, "4: flannel.1: <BROADCAST> mtu 1450\n", "flannel.1 has no VXLAN details"),
        (parse_kubectl_nodes, '{"kind": "List"}', "not a Node list"),
        (parse_kubectl_pods, "busybox 1/1 Running 0 1m 10.42.0.3 kpi091\n", "expected the header line"),
    ],
)
def test_bad_tables_raise_one_line(parser: object, text: str, message: str) -> None:
    with pytest.raises(TableParseError) as caught:
        parser(text)  # type: ignore[operator]
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_odd_flannel_annotations_are_notes_and_every_node_is_still_read() -> None:
    """Real clusters' dumps: host-gw nodes say ``backend-data: "null"`` (what flanneld writes for
    host-gw, ipip and udp: no note; with an empty backend-type, a note); a node flannel has not
    reached has none; a paste can damage one."""
    good = '{"VNI":1,"VtepMAC":"1A:5B:A4:90:84:DD"}'
    annotations = {
        "vxlan": {"backend-type": "vxlan", "backend-data": good, "public-ip": "172.31.9.11"},
        "hostgw": {"backend-type": "host-gw", "backend-data": "null", "public-ip": "172.31.9.12"},
        "unset": {"backend-type": "", "backend-data": "null", "public-ip": "172.31.9.13"},
        "empty": {"backend-type": "vxlan", "backend-data": "", "public-ip": "172.31.9.14"},
        "missing": {"backend-type": "vxlan", "public-ip": "172.31.9.15"},
        "damaged": {"backend-type": "vxlan", "backend-data": '{"VNI":1,"VtepMAC', "public-ip": "172.31.9.16"},
        "listed": {"backend-type": "vxlan", "backend-data": "[1, 2]", "public-ip": "172.31.9.17"},
    }
    items = [
        {
            "metadata": {
                "name": name,
                "annotations": {f"flannel.alpha.coreos.com/{k}": v for k, v in values.items()},
            },
            "spec": {"podCIDR": f"10.244.{i}.0/24"},
        }
        for i, (name, values) in enumerate(annotations.items())
    ]
    nodes = parse_kubectl_nodes(json.dumps({"items": items}))
    assert [n.name for n in nodes] == list(annotations)
    assert [n.public_ip for n in nodes] == [f"172.31.9.{11 + i}" for i in range(len(annotations))]
    assert [n.pod_cidrs for n in nodes] == [(f"10.244.{i}.0/24",) for i in range(len(annotations))]
    by_name = {n.name: n for n in nodes}
    assert (by_name["vxlan"].vtep_mac, by_name["vxlan"].vni, by_name["vxlan"].notes) == ("1a:5b:a4:90:84:dd", 1, ())
    assert (by_name["hostgw"].vtep_mac, by_name["hostgw"].notes, by_name["hostgw"].backend_type) == (
        None,
        (),
        "host-gw",
    )
    for name in ("unset", "empty", "missing", "damaged", "listed"):
        node = by_name[name]
        assert (node.vtep_mac, node.vni) == (None, None), name
        [note] = node.notes
        assert note.startswith(f"kubectl get nodes: node {name}"), note
        assert "None" not in note and "{" not in note.split("(")[0], note
    assert "backend-data is null (an empty backend-type" in by_name["unset"].notes[0]
    assert "backend-data is empty" in by_name["empty"].notes[0]
    assert "has no backend-data annotation" in by_name["missing"].notes[0]
    assert 'backend-data is not JSON (\'{"VNI":1,"VtepMAC\')' in by_name["damaged"].notes[0]
    assert "not a JSON object" in by_name["listed"].notes[0]
    topology = build_topology(kubectl_nodes=json.dumps({"items": items}))
    assert len(topology.nodes) == len(annotations) and len(topology.notes) == 5
    assert {n.name: n.backend for n in topology.nodes}["hostgw"] == "host-gw"


def test_subnet_env_as_flanneld_writes_it() -> None:
    text = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
    assert parse_subnet_env(text) == SubnetEnv(network="10.244.0.0/16", subnet="10.244.1.1/24", mtu=1450, ipmasq=True)
    assert parse_subnet_env("$ cat /run/flannel/subnet.env\nFLANNEL_SUBNET=10.42.3.1/24\n").subnet == "10.42.3.1/24"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no FLANNEL_NETWORK or FLANNEL_SUBNET line"),
        ("hello world\n", "line 1: expected KEY=value lines"),
        ("FLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=big\n", "line 2: FLANNEL_MTU is not a number"),
        ("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=ten/24\n", "line 2: FLANNEL_SUBNET is not an address/prefix"),
    ],
)
def test_bad_subnet_env_names_the_line(text: str, message: str) -> None:
    with pytest.raises(TableParseError, match=message):
        parse_subnet_env(text)


def test_pod_cidrs_from_node_tables_alone_agree_whatever_the_source() -> None:
    """A node's own cni0 route, its subnet.env and its peer's route via its VTEP address each
    give its pod CIDR; a peer's route that says otherwise is a conflict."""
    flannel = (
        "5: flannel.1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN\n"
        "    link/ether {mac} brd ff:ff:ff:ff:ff:ff\n"
        "    vxlan id 1 local {ip} dev eth0 srcport 0 0 dstport 8472 nolearning ttl auto ageing 300\n"
        "    inet {vtep}/32 scope global flannel.1\n"
    )
    tables = {
        "n1": {
            "flannel": flannel.format(mac="aa:aa:aa:aa:aa:01", ip="172.31.9.11", vtep="10.244.1.0"),
            "routes": "10.244.1.0/24 dev cni0 proto kernel scope link src 10.244.1.1\n"
            "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink\n",
        },
        "n2": {
            "flannel": flannel.format(mac="aa:aa:aa:aa:aa:02", ip="172.31.9.12", vtep="10.244.2.0"),
            "routes": "10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink\n",
            "subnet": "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.2.1/24\n",
        },
    }
    topology = build_topology(node_tables=tables)
    n1, n2 = topology.nodes
    assert (n1.pod_cidr, n1.cni0_ip, n1.sources["pod_cidr"]) == (
        "10.244.1.0/24",
        "10.244.1.1",
        "n1: ip route (10.244.1.0/24 dev cni0)",
    )
    assert (n2.pod_cidr, n2.cni0_ip, n2.sources["pod_cidr"]) == (
        "10.244.2.0/24",
        "10.244.2.1",
        "n2: /run/flannel/subnet.env",
    )
    assert topology.conflicts == ()
    only_peer = build_topology(node_tables={"n1": tables["n1"], "n2": {"flannel": tables["n2"]["flannel"]}})
    assert only_peer.node("n2").pod_cidr == "10.244.2.0/24"  # type: ignore[union-attr]
    assert only_peer.node("n2").sources["pod_cidr"] == "n1: ip route (10.244.2.0/24 via 10.244.2.0)"  # type: ignore[union-attr]
    tables["n1"]["routes"] = tables["n1"]["routes"].replace("10.244.2.0/24 via", "10.244.7.0/24 via")
    [conflict] = build_topology(node_tables=tables).conflicts
    assert (conflict.node, conflict.field) == ("n2", "pod_cidr")
    assert conflict.values == {
        "n2: /run/flannel/subnet.env": "10.244.2.0/24",
        "n1: ip route (10.244.7.0/24 via 10.244.2.0)": "10.244.7.0/24",
    }


def test_a_saved_subnet_env_is_read_whatever_else_its_name_says(tmp_path: Path) -> None:
    from flannelcap.topology.collect import topology_from_dir

    node = tmp_path / "n1"
    node.mkdir()
    (node / "flannel-subnet.env").write_text("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\n")
    (node / "route.txt").write_text("10.244.5.0/24 dev cni0 proto kernel scope link src 10.244.5.1\n")
    [n1] = topology_from_dir(tmp_path).nodes
    assert (n1.pod_cidr, n1.cni0_ip) == ("10.244.5.0/24", "10.244.5.1")
    assert topology_from_dir(tmp_path).view("n1").subnet.network == "10.244.0.0/16"  # type: ignore[union-attr]
