"""Parsers for the tables a node prints: ip neigh, bridge fdb, ip -d link/addr, ip route, ip link.

Rule: pure functions over text, no I/O. Each parser takes either the plain text or the ``-j``
JSON form (detected by a leading ``[``) and tolerates what students paste: shell prompts,
``#`` comments and the seed lab's ``<=`` annotations, and lines that a PDF or terminal
wrapped. JSON is read leniently, since key sets differ between iproute2 versions. What
cannot be read raises ``TableParseError`` naming the table and the line.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flannelcap._errors import TableParseError

_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
# A shell prompt a student pasted along (``ubuntu@kpi093:~$ …``, busybox's ``/ # …``),
# or the ``...`` that elides lines in the seed lab's printouts.
PROMPT_RE = re.compile(r"^\s*(\S+@\S+:.*[$#](\s|$)|/ #(\s|$)|\$ |\.\.\.\s*$)")
_LINK_HEADER_RE = re.compile(r"^\s*(\d+):\s+([^:@\s]+)(?:@([^:\s]+))?:\s+<([^>]*)>")
NEIGH_STATES = frozenset({"PERMANENT", "NOARP", "REACHABLE", "STALE", "DELAY", "PROBE", "FAILED", "INCOMPLETE", "NONE"})


@dataclass(frozen=True, slots=True, kw_only=True)
class NeighEntry:
    """One ``ip neigh`` entry: IP → MAC on a device."""

    ip: str
    mac: str | None
    dev: str | None
    states: tuple[str, ...]

    @property
    def permanent(self) -> bool:
        """True for entries flanneld sets (PERMANENT)."""
        return "PERMANENT" in self.states


@dataclass(frozen=True, slots=True, kw_only=True)
class FdbEntry:
    """One ``bridge fdb`` entry: MAC → remote VTEP IP (``dst``) on a VXLAN device."""

    mac: str
    dst: str | None
    dev: str | None
    flags: tuple[str, ...]
    state: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One ``ip route`` entry."""

    dst: str
    gateway: str | None
    dev: str | None
    onlink: bool
    protocol: str | None
    scope: str | None
    src: str | None
    metric: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class VxlanInfo:
    """The VXLAN part of ``ip -d link``: what flannel.1 is configured with."""

    vni: int
    local: str | None
    underlay: str | None
    dstport: int | None
    learning: bool
    gbp: bool = False  # group-based policy (flannel's GBP: true)


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """One interface from ``ip link`` / ``ip addr`` (``-d`` adds ``vxlan``)."""

    ifindex: int
    name: str
    peer_ifindex: int | None
    master: str | None
    mac: str | None
    mtu: int | None
    netns: str | None
    addresses: tuple[str, ...]
    vxlan: VxlanInfo | None
    kind: str | None = None  # the device's type, from ``ip -d link`` (vxlan, geneve, ipip, tun, wireguard …)


# -- shared helpers ---------------------------------------------------------------------


def _is_json(text: str) -> bool:
    return text.lstrip().startswith(("[", "{"))


def load_json(text: str, table: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        lines = text.split("\n")  # JSON counts lines by \n alone, as here
        line = lines[exc.lineno - 1] if 0 < exc.lineno <= len(lines) else ""
        raise TableParseError(table, exc.lineno, line, f"broken JSON ({exc.msg})") from exc
    except RecursionError as exc:
        raise TableParseError(table, 0, "", "JSON nested too deeply") from exc


def _each(table: str, items: list[dict[str, Any]], build: Any) -> list[Any]:
    """``build(item)`` for each JSON item; an item of unexpected shape is a one-line error."""
    built = []
    for number, item in enumerate(items, 1):
        try:
            built.append(build(number, item))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise TableParseError(table, number, json.dumps(item)[:80], f"entry {number} is malformed ({exc})") from exc
    return built


def _json_list(text: str, table: str) -> list[dict[str, Any]]:
    data = load_json(text, table)
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise TableParseError(table, 1, text[:80], "JSON is not a list of objects")
    return data


def _check_empty(text: str, table: str, allow_empty: bool) -> bool:
    """True if there is nothing to parse; raises for empty input unless it is allowed."""
    if text.strip():
        return False
    if allow_empty:
        return True
    raise TableParseError(table, 0, "", "the input is empty (was the command's output pasted?)")


def _data_lines(text: str) -> Iterator[tuple[int, str, bool]]:
    """(line number, content without annotation, had annotation) for each line with data.

    Skips blank lines, shell prompts and comments; cuts ``# …`` and ``<= …`` annotations.
    A line without any address that follows an annotated line is that annotation wrapped.
    """
    annotated_before = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or PROMPT_RE.match(raw):
            annotated_before = annotated_before and bool(line)
            continue
        cut = min((i for i in (line.find(" #"), line.find("<=")) if i >= 0), default=-1)
        annotated = cut >= 0
        if annotated:
            line = line[:cut].strip()
        if annotated_before and not any(_is_address(token) for token in line.split()):
            continue
        annotated_before = annotated
        if line:
            yield number, line, annotated


def _is_address(token: str) -> bool:
    return is_mac(token) or is_ip(token.split("/")[0])


def is_mac(text: str) -> bool:
    """True for a colon-separated 48-bit MAC address."""
    return bool(_MAC_RE.match(text))


def is_ip(text: str) -> bool:
    """True for an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _number(text: str | None) -> int | None:
    """A non-negative decimal number in ASCII digits, or None."""
    return int(text) if text and text.isascii() and text.isdigit() else None


def _value_after(tokens: list[str], key: str) -> str | None:
    try:
        return tokens[tokens.index(key) + 1]
    except (ValueError, IndexError):
        return None


# -- ip neigh -------------------------------------------------------------------------


def parse_neigh(text: str, *, allow_empty: bool = False) -> list[NeighEntry]:
    """Parse ``ip neigh show [dev DEV]`` (text or ``-j``).

    Raises:
        TableParseError: a line is not a neighbour entry, or the input is empty.
    """
    table = "ip neigh"
    if _check_empty(text, table, allow_empty):
        return []
    if _is_json(text):

        def neighbour(number: int, item: dict[str, Any]) -> NeighEntry:
            if "dst" not in item:
                raise TableParseError(table, number, json.dumps(item), "entry has no 'dst'")
            state = item.get("state", [])
            return NeighEntry(
                ip=str(item["dst"]),
                mac=_mac_or_none(item.get("lladdr")),
                dev=_str_or_none(item.get("dev")),
                states=tuple(str(s) for s in (state if isinstance(state, list) else [state])),
            )

        return _each(table, _json_list(text, table), neighbour)
    entries = []
    for number, line, _ in _data_lines(text):
        tokens = line.split()
        if not is_ip(tokens[0]):
            raise TableParseError(table, number, line, "does not start with an IP address")
        states = tuple(t for t in tokens[1:] if t in NEIGH_STATES)
        if not states:
            raise TableParseError(table, number, line, "no neighbour state (PERMANENT, REACHABLE, …)")
        mac = _value_after(tokens, "lladdr")
        if mac is not None and not is_mac(mac):
            raise TableParseError(table, number, line, f"lladdr {mac!r} is not a MAC address")
        entries.append(NeighEntry(ip=tokens[0], mac=_mac_or_none(mac), dev=_value_after(tokens, "dev"), states=states))
    return entries


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _mac_or_none(value: object) -> str | None:
    return str(value).lower() if value else None


# -- bridge fdb -------------------------------------------------------------------------

_FDB_FLAGS = frozenset({"self", "master", "extern_learn", "offloaded", "router", "sticky", "use"})
_FDB_STATES = frozenset({"permanent", "static", "dynamic", "stale", "nud_noarp", "nud_permanent"})


def parse_fdb(text: str, *, allow_empty: bool = False) -> list[FdbEntry]:
    """Parse ``bridge fdb show [dev DEV]`` (text or ``-j``).

    Raises:
        TableParseError: a line is not an FDB entry, or the input is empty.
    """
    table = "bridge fdb"
    if _check_empty(text, table, allow_empty):
        return []
    if _is_json(text):

        def forwarding(number: int, item: dict[str, Any]) -> FdbEntry:
            if not is_mac(str(item.get("mac", ""))):
                raise TableParseError(table, number, json.dumps(item), "entry has no MAC address")
            flags = item.get("flags", item.get("opts", []))
            return FdbEntry(
                mac=str(item["mac"]).lower(),
                dst=_str_or_none(item.get("dst")),
                dev=_str_or_none(item.get("ifname", item.get("dev"))),
                flags=tuple(str(f) for f in (flags if isinstance(flags, list) else [flags])),
                state=_str_or_none(item.get("state")) or None,
            )

        return _each(table, _json_list(text, table), forwarding)
    entries = []
    for number, line, _ in _data_lines(text):
        tokens = line.split()
        if not is_mac(tokens[0]):
            raise TableParseError(table, number, line, "does not start with a MAC address")
        dst = _value_after(tokens, "dst")
        if dst is not None and not is_ip(dst):
            raise TableParseError(table, number, line, f"dst {dst!r} is not an IP address")
        entries.append(
            FdbEntry(
                mac=tokens[0].lower(),
                dst=dst,
                dev=_value_after(tokens, "dev"),
                flags=tuple(t for t in tokens[1:] if t in _FDB_FLAGS),
                state=next((t for t in tokens[1:] if t in _FDB_STATES), None),
            )
        )
    return entries


# -- ip route -------------------------------------------------------------------------

_ROUTE_TYPES = frozenset(
    {"unicast", "local", "broadcast", "multicast", "unreachable", "prohibit", "blackhole", "throw"}
)
_ROUTE_FLAGS = frozenset({"onlink", "linkdown", "dead", "pervasive", "offload", "notify"})


def parse_routes(text: str, *, allow_empty: bool = False) -> list[Route]:
    """Parse ``ip route [show]`` (text or ``-j``).

    Raises:
        TableParseError: a line is not a route, or the input is empty.
    """
    table = "ip route"
    if _check_empty(text, table, allow_empty):
        return []
    if _is_json(text):

        def route(number: int, item: dict[str, Any]) -> Route:
            if "dst" not in item:
                raise TableParseError(table, number, json.dumps(item), "route has no 'dst'")
            metric = item.get("metric")
            return Route(
                dst=str(item["dst"]),
                gateway=_str_or_none(item.get("gateway")),
                dev=_str_or_none(item.get("dev")),
                onlink="onlink" in (item.get("flags") or []),
                protocol=_str_or_none(item.get("protocol")),
                scope=_str_or_none(item.get("scope")),
                src=_str_or_none(item.get("prefsrc")),
                metric=int(metric) if isinstance(metric, int) else None,
            )

        return _each(table, _json_list(text, table), route)
    routes = []
    for number, line, _ in _data_lines(text):
        tokens = line.split()
        if tokens[0] in _ROUTE_TYPES and len(tokens) > 1:
            tokens = tokens[1:]
        dst = tokens[0]
        if dst != "default" and not is_ip(dst.split("/")[0]):
            raise TableParseError(table, number, line, "does not start with a destination (default or a prefix)")
        gateway = _value_after(tokens, "via")
        if gateway is not None and gateway in ("inet", "inet6"):
            gateway = _value_after(tokens[tokens.index("via") + 1 :], gateway)
        if gateway is not None and not is_ip(gateway):
            raise TableParseError(table, number, line, f"gateway {gateway!r} is not an IP address")
        metric = _value_after(tokens, "metric")
        routes.append(
            Route(
                dst=dst,
                gateway=gateway,
                dev=_value_after(tokens, "dev"),
                onlink="onlink" in tokens,
                protocol=_value_after(tokens, "proto"),
                scope=_value_after(tokens, "scope"),
                src=_value_after(tokens, "src"),
                metric=_number(metric),
            )
        )
    return routes


# -- ip link / ip addr (with -d for VXLAN) ----------------------------------------------------


def parse_links(text: str, *, allow_empty: bool = False) -> list[Link]:
    """Parse ``ip [-d] link`` or ``ip [-d] addr`` (text or ``-j``), one ``Link`` per interface.

    Raises:
        TableParseError: the text holds no interface header, or the input is empty.
    """
    table = "ip link"
    if _check_empty(text, table, allow_empty):
        return []
    if _is_json(text):
        return _each(table, _json_list(text, table), lambda number, item: _link_from_json(item, table, number))
    links: list[Link] = []
    header: re.Match[str] | None = None
    body: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        match = _LINK_HEADER_RE.match(raw)
        if match:
            if header is not None:
                links.append(_link_from_text(header, body))
            header, body = match, [raw[match.end() :]]
        elif header is not None:
            body.append(raw)
        elif raw.strip() and not raw.strip().startswith("#") and not PROMPT_RE.match(raw):
            raise TableParseError(table, number, raw, "expected an interface line like '4: flannel.1: <…>'")
    if header is None:
        raise TableParseError(table, 0, text.strip().splitlines()[0], "no interface found")
    links.append(_link_from_text(header, body))
    return links


# Device types ``ip -d link`` names in a link's details (text form), the overlays' among them.
_DEVICE_KINDS = frozenset({"vxlan", "geneve", "ipip", "sit", "tun", "wireguard", "bridge", "veth", "gre"})


def _link_from_text(header: re.Match[str], body: list[str]) -> Link:
    tokens = " ".join(line.split("#")[0] for line in body).split()
    peer = header.group(3)
    vxlan = None
    if "vxlan" in tokens and "id" in tokens:
        after = tokens[tokens.index("vxlan") :]
        vni = _value_after(after, "id")
        port = _value_after(after, "dstport")
        vxlan = VxlanInfo(
            vni=_number(vni) or 0,
            local=_value_after(after, "local"),
            underlay=_value_after(after, "dev"),
            dstport=_number(port),
            learning="nolearning" not in after,
            gbp="gbp" in after,
        )
    mtu = _value_after(tokens, "mtu")
    kind = next((t for t in tokens if t in _DEVICE_KINDS), None)
    addresses = tuple(tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t in ("inet", "inet6"))
    return Link(
        ifindex=int(header.group(1)),
        name=header.group(2),
        peer_ifindex=_number(peer[2:]) if peer and peer.startswith("if") else None,
        master=_value_after(tokens, "master"),
        mac=_mac_or_none(_value_after(tokens, "link/ether")),
        mtu=_number(mtu),
        netns=_value_after(tokens, "link-netns"),
        addresses=addresses,
        vxlan=vxlan,
        kind=kind,
    )


def _link_from_json(item: dict[str, Any], table: str, number: int) -> Link:
    if "ifname" not in item:
        raise TableParseError(table, number, json.dumps(item)[:80], "interface has no 'ifname'")
    info = item.get("linkinfo", {})
    vxlan = None
    if info.get("info_kind") == "vxlan":
        data = info.get("info_data", {})
        vxlan = VxlanInfo(
            vni=int(data.get("id", 0)),
            local=data.get("local") or data.get("local6"),
            underlay=data.get("link"),
            dstport=data.get("port"),
            learning=bool(data.get("learning", not data.get("nolearning", False))),
            gbp=bool(data.get("gbp", False)),
        )
    addresses = tuple(f"{a['local']}/{a.get('prefixlen', 32)}" for a in item.get("addr_info", []) if "local" in a)
    return Link(
        ifindex=int(item.get("ifindex", 0)),
        name=str(item["ifname"]),
        peer_ifindex=item.get("link_index"),
        master=item.get("master"),
        mac=_mac_or_none(item.get("address")) if item.get("link_type", "ether") == "ether" else None,
        mtu=item.get("mtu"),
        netns=item.get("link_netns"),
        addresses=addresses,
        vxlan=vxlan,
        kind=info.get("info_kind"),
    )


def vxlan_device(text: str, name: str = "flannel.1") -> Link:
    """The VXLAN device ``name`` from ``ip -d link show`` / ``ip -d addr show``.

    Raises:
        TableParseError: the device is missing, or the output lacks its VXLAN details.
    """
    links = parse_links(text)
    for link in links:
        if link.name == name:
            if link.vxlan is None:
                raise TableParseError(
                    "ip -d link", 0, "", f"{name} has no VXLAN details: take the output of 'ip -d link show {name}'"
                )
            return link
    raise TableParseError("ip -d link", 0, "", f"no device {name} in the output")


@dataclass(frozen=True, slots=True, kw_only=True)
class SubnetEnv:
    """``/run/flannel/subnet.env``, which flanneld writes on each node: the cluster's pod
    network, this node's pod subnet (its cni0 address and prefix), the MTU, and IP masquerade."""

    network: str | None = None
    subnet: str | None = None
    mtu: int | None = None
    ipmasq: bool | None = None


_SUBNET_KEYS = {"FLANNEL_NETWORK", "FLANNEL_SUBNET", "FLANNEL_MTU", "FLANNEL_IPMASQ", "FLANNEL_IPV6_NETWORK",
                "FLANNEL_IPV6_SUBNET"}  # fmt: skip


def parse_subnet_env(text: str) -> SubnetEnv:
    """Parse flannel's ``subnet.env`` (``KEY=value`` lines; other keys are ignored).

    Raises:
        TableParseError: no FLANNEL_ line, or a value that is not what its key holds.
    """
    table = "cat /run/flannel/subnet.env"
    values: dict[str, tuple[int, str, str]] = {}
    for number, line, _wrapped in _data_lines(text):
        key, equals, value = line.strip().removeprefix("export ").partition("=")
        if not equals or not key.startswith("FLANNEL_"):
            raise TableParseError(table, number, line, "expected KEY=value lines such as FLANNEL_SUBNET=10.244.1.1/24")
        values[key] = (number, line, value.strip().strip("'\""))
    if not values.keys() & _SUBNET_KEYS:
        raise TableParseError(table, 0, text.strip()[:80], "no FLANNEL_NETWORK or FLANNEL_SUBNET line")

    def network(key: str) -> str | None:
        if key not in values:
            return None
        number, line, value = values[key]
        try:
            ipaddress.ip_interface(value)
        except ValueError:
            raise TableParseError(table, number, line, f"{key} is not an address/prefix") from None
        return value

    mtu = values.get("FLANNEL_MTU")
    if mtu is not None and not mtu[2].isdigit():
        raise TableParseError(table, mtu[0], mtu[1], "FLANNEL_MTU is not a number")
    masq = values.get("FLANNEL_IPMASQ")
    return SubnetEnv(
        network=network("FLANNEL_NETWORK"),
        subnet=network("FLANNEL_SUBNET"),
        mtu=int(mtu[2]) if mtu is not None else None,
        ipmasq=None if masq is None else masq[2].lower() == "true",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class NetConf:
    """flannel's ``net-conf.json`` (the ``kube-flannel-cfg`` ConfigMap; k3s writes it to
    ``/var/lib/rancher/k3s/agent/etc/flannel/net-conf.json``): the network and the backend."""

    network: str | None = None
    backend: str | None = None  # its Type, vxlan-gbp where VXLAN has GBP: true
    vni: int | None = None
    port: int | None = None
    direct_routing: bool = False


def parse_net_conf(text: str) -> NetConf:
    """Parse flannel's ``net-conf.json``.

    Raises:
        TableParseError: not a JSON object with a Backend object, or a field of the wrong type.
    """
    table = "net-conf.json"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TableParseError(table, exc.lineno, text.splitlines()[exc.lineno - 1][:80] if text.strip() else "",
                              "not JSON") from None  # fmt: skip
    backend = data.get("Backend") if isinstance(data, dict) else None
    if not isinstance(backend, dict):
        raise TableParseError(table, 0, text.strip()[:80], 'no "Backend" object (e.g. {"Backend": {"Type": "vxlan"}})')
    kind, vni, port = backend.get("Type"), backend.get("VNI"), backend.get("Port")
    if not isinstance(kind, str | None) or not isinstance(vni, int | None) or not isinstance(port, int | None):
        raise TableParseError(table, 0, json.dumps(backend)[:80], "Backend's Type is text, its VNI and Port numbers")
    if kind == "vxlan" and backend.get("GBP"):
        kind = "vxlan-gbp"
    network = data.get("Network")
    return NetConf(
        network=network if isinstance(network, str) else None,
        backend=kind,
        vni=vni,
        port=port,
        direct_routing=bool(backend.get("DirectRouting")),
    )
