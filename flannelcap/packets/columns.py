"""A decoded batch made into the typed columns every output is a view of.

Rule: pure. A ``Batch`` (the kernel's integer rows, the Scapy decoder's records for the rows
it took, the HTTP heads found) in, a ``ColumnBatch`` out; no file, no printing. Nothing here
runs once per packet in Python: addresses become labels through a compiled hash of their
distinct values, topology names are looked up once per distinct address, HTTP heads are split
in C, and Info is written by one compiled text program per batch. Only the rows the Scapy
decoder took (rare: layouts and faults the kernel leaves) are copied in one by one.

``Columns`` keeps what must last from batch to batch: the labels of each column (codes stay
valid as labels are added), the TCP initial sequence numbers (Info shows relative sequence
numbers, as Wireshark does), the time of the first packet, and the topology lookups.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import numpy as np
from numpy.typing import NDArray

from flannelcap.packets import kernel as _kernel
from flannelcap.packets.dns import type_name
from flannelcap.packets.fields import FIELDS, HTTP_LABELS, NAME_FIELDS
from flannelcap.packets.http import HttpHead, parse_head
from flannelcap.packets.http2 import H2Segment
from flannelcap.packets.info import (
    ARP_OPS,
    ICMP_NAMES,
    PACKET_TYPES,
    InfoFormatter,
    dns_operation,
    rcode_name,
    tcp_flag_names,
)
from flannelcap.packets.kernel import NONE, Encoder, Int, first_sightings
from flannelcap.packets.kernel_columns import carries_inner, innermost
from flannelcap.packets.records import PacketRecord
from flannelcap.packets.text import Program, TextColumn, Texts, gather
from flannelcap.packets.tls import HELLO_NAMES, version_name
from flannelcap.packets.tunnels import ENCAP_CODES, ENCAP_NAMES, IPIP_PROTOCOLS
from flannelcap.topology.annotate import pod_name
from flannelcap.topology.model import Topology

Codes = NDArray[np.int32]
T = TypeVar("T")
PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", _kernel.ARP_CODE: "arp", **IPIP_PROTOCOLS}
TCP, UDP, ICMP, ARP = 6, 17, 1, _kernel.ARP_CODE
_MULTICAST = {143: "Multicast listener report v2", 130: "Multicast listener message"}
_ICMP_TEXTS = Texts.of(
    [_MULTICAST.get(t if t != 131 and t != 132 else 130) or ICMP_NAMES.get(t, f"type {t}") for t in range(256)]
)  # InfoFormatter's names, by ICMP type


def ip_text(value: int) -> str:
    """An IPv4 address kept as an integer, as text."""
    return socket.inet_ntoa(value.to_bytes(4, "big"))


def mac_text(value: int) -> str:
    """A MAC address kept as an integer, as text."""
    return value.to_bytes(6, "big").hex(":")


_TEXT_OF: dict[str, Callable[[int], str]] = {
    "ip": ip_text,
    "mac": mac_text,
    "proto": lambda v: PROTO_NAMES.get(v, str(v)),
    "flags": tcp_flag_names,
    "arp_op": lambda v: ARP_OPS.get(v, str(v)),
    "pkttype": lambda v: PACKET_TYPES.get(v, str(v)),
    "encap": lambda v: ENCAP_NAMES.get(v, str(v)),
}


class Labels:
    """The labels of one column: the text of each code, in order of first sight."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._codes: dict[str, int] = {}
        self._derived: dict[str, tuple[int, object]] = {}

    def code(self, text: str | bytes | None) -> int:
        """The code of ``text`` (-1 for None), added if new. A value the Scapy decoder left as
        bytes (a damaged field) is labelled by its hex digits."""
        if text is None:
            return -1
        if not isinstance(text, str):
            text = text.hex(":") if isinstance(text, bytes) else str(text)
        code = self._codes.get(text)
        if code is None:
            code = self._codes[text] = len(self.texts)
            self.texts.append(text)
        return code

    def encoded(self) -> Texts:
        """The labels as one block of bytes (made again only when labels were added)."""
        return self.derived("texts", Texts.of)

    def derived(self, key: str, make: Callable[[list[str]], T]) -> T:
        """Something made of the labels (their bytes, an Arrow array), kept under ``key`` and
        made again only when labels were added."""
        count, value = self._derived.get(key, (-1, None))
        if count != len(self.texts):
            value = make(self.texts)
            self._derived[key] = (len(self.texts), value)
        return value  # type: ignore[return-value]


class _Relabel:
    """Codes of one column's labels mapped to codes of another's through a function of the
    text (an address to a node's name, say), each label looked up once."""

    def __init__(self, source: Labels, target: Labels, func: Callable[[str], str | None]) -> None:
        self.source, self.target, self.func = source, target, func
        self._map = np.empty(0, dtype=np.int32)

    def __call__(self, codes: Codes) -> Codes:
        done = len(self._map)
        if len(self.source.texts) > done:
            more = [self.target.code(self.func(t)) for t in self.source.texts[done:]]
            self._map = np.concatenate([self._map, np.array(more, dtype=np.int32)])
        return _through(self._map, codes)


class LabelIds(NamedTuple):
    """A batch column's values as the ids of a compiled hash (dense, in order of first sight),
    and the count of ids before and after the batch."""

    ids: Int
    before: int
    after: int


class _KernelLabels:
    """Codes for a kernel column's integers: a compiled hash gives each distinct integer an id
    (``ids``: the reading thread may do this part, batch by batch in order), and each new id
    its label, converted once (``codes``)."""

    def __init__(self, labels: Labels, text_of: Callable[[int], str]) -> None:
        self.labels, self.text_of = labels, text_of
        self._encoder = Encoder(1)
        self._map = np.empty(0, dtype=np.int32)

    def __call__(self, values: Int) -> Codes:
        return self.codes(values, self.ids(values))

    def ids(self, values: Int) -> LabelIds | None:
        """Each value's id and the count of ids before (None: every value is missing, e.g. no
        ARP in the batch)."""
        if not len(values) or (values[0] == NONE and (values == NONE).all()):
            return None
        before = self._encoder.count
        return LabelIds(self._encoder.ids(values), before, self._encoder.count)

    def codes(self, values: Int, ids: LabelIds | None) -> Codes:
        """The codes of ``values`` whose ids ``ids`` gave (ids made in order: each batch's
        before the next's)."""
        if ids is None:
            return np.full(len(values), -1, dtype=np.int32)
        if ids.after > len(self._map):
            first = first_sightings(ids.ids, since=ids.before)
            more = [self.labels.code(self.text_of(v)) for v in values[first].tolist()]
            self._map = np.concatenate([self._map, np.array(more, dtype=np.int32)])
        return _through(self._map, ids.ids)


@dataclass(slots=True)
class Heads:
    """The HTTP heads of a batch that the compiled search found: their rows, kinds
    (``kernel.HEAD_REQUEST``/``HEAD_RESPONSE``) and bytes (``blob[offsets[i]:offsets[i+1]]``)."""

    rows: Int
    kinds: Int
    blob: bytes
    offsets: Int

    @staticmethod
    def empty() -> Heads:
        return Heads(np.empty(0, np.int64), np.empty(0, np.int64), b"", np.zeros(1, np.int64))

    @staticmethod
    def joined(parts: list[Heads]) -> Heads:
        """Several pieces' heads as one (rows in order)."""
        parts = [p for p in parts if len(p.rows)]
        if not parts:
            return Heads.empty()
        blob, offsets = _joined_blobs([p.blob for p in parts], [p.offsets for p in parts])
        return Heads(np.concatenate([p.rows for p in parts]), np.concatenate([p.kinds for p in parts]), blob, offsets)

    def requests(self) -> int:
        return int((self.kinds == _kernel.HEAD_REQUEST).sum())


@dataclass(slots=True)
class Payloads:
    """Payloads of some rows of a batch, for a parser of their protocol: DNS messages (UDP
    payloads, TCP segments after the length prefix, on port 53), TLS hellos. Their rows, and
    bytes ``blob[offsets[i]:offsets[i+1]]``."""

    rows: Int
    blob: bytes
    offsets: Int

    @staticmethod
    def empty() -> Payloads:
        return Payloads(np.empty(0, np.int64), b"", np.zeros(1, np.int64))

    @staticmethod
    def joined(parts: list[Payloads]) -> Payloads:
        """Several pieces' payloads as one (rows in order)."""
        parts = [p for p in parts if len(p.rows)]
        if not parts:
            return Payloads.empty()
        blob, offsets = _joined_blobs([p.blob for p in parts], [p.offsets for p in parts])
        return Payloads(np.concatenate([p.rows for p in parts]), blob, offsets)


def _joined_blobs(blobs: list[bytes], offsets: list[Int]) -> tuple[bytes, Int]:
    """Blobs with their offsets (``offsets[k][i]`` into ``blobs[k]``) as one blob and offsets."""
    if len(blobs) == 1:
        return blobs[0], offsets[0]
    shift = np.cumsum([0] + [len(b) for b in blobs[:-1]])
    joined = np.concatenate([offsets[0][:1]] + [o[1:] + s for o, s in zip(offsets, shift, strict=True)])
    return b"".join(blobs), joined


@dataclass(slots=True)
class DnsFields:
    """What the compiled parse of a batch's DNS messages gives, before labels: the integer
    columns (``NONE`` where not DNS), ``dns_response`` (-1, 0, 1), the answers' addresses and
    CNAMEs as text columns; for the rows with a message (``rows``), the question's type (-1
    if none) and where its name lies in ``text`` (from, to; -1 if none). ``latin``: some text
    is not ASCII (names then decoded as latin-1, as the Python parser does)."""

    ints: dict[str, Int]
    response: NDArray[np.int8]
    texts: dict[str, TextColumn]
    rows: Int
    types: Int
    names: Int
    text: bytes
    latin: bool

    @staticmethod
    def of(n: int, messages: Payloads) -> DnsFields:
        """The fields of a batch of ``n`` rows with DNS ``messages``."""
        block = np.full((len(_DNS_INTS), n), NONE, dtype=np.int64)  # one array for the integer columns
        ints = dict(zip(_DNS_INTS, block, strict=True))
        response = np.full(n, -1, dtype=np.int8)
        no_rows = np.empty(0, dtype=np.int64)
        if not len(messages.rows):  # most batches of most captures: nothing to parse or slice
            texts = {name: TextColumn.nothing(n) for name in _DNS_TEXTS}
            return DnsFields(ints, response, texts, no_rows, no_rows, np.empty((0, 2), dtype=np.int64), b"", False)
        parts, text = _kernel.dns_parts(messages.blob, messages.offsets)
        dns = parts[:, 0] >= 0
        rows, parts = messages.rows[dns], parts[dns]
        flags = parts[:, 1]
        values = (parts[:, 0], (flags >> 11) & 0xF, flags & 0xF, flags, parts[:, 3], parts[:, 5])  # as _DNS_INTS
        block[:, rows] = np.stack(values)
        response[rows] = (flags >> 15) & 1
        arena = np.frombuffer(text, dtype=np.uint8)
        latin = bool((arena >= 0x80).any())
        texts = {
            name: _spread(arena, n, rows, parts[:, column], parts[:, column + 1], latin)
            for name, column in zip(_DNS_TEXTS, (8, 10), strict=True)
        }
        return DnsFields(ints, response, texts, rows, parts[:, 4].copy(), parts[:, 6:8].copy(), text, latin)


@dataclass(slots=True)
class Batch:
    """Up to a few tens of thousands of consecutive frames of one link type, decoded: the
    kernel's rows (``values``, one column per kernel field; ``fallback`` marks the rows the
    Scapy decoder took, whose ``records`` stand instead), and the HTTP heads found."""

    linktype: int
    number: Int
    time_ns: Int
    cap_len: Int
    wire_len: Int
    interface: Int
    values: dict[str, Int]
    matrix: Int  # the same values, as the kernel filled them (``kernel_columns.Columns.matrix``)
    fallback: NDArray[np.bool_]
    records: dict[int, PacketRecord]
    heads: Heads
    slow_heads: dict[int, HttpHead]  # heads split across segments, reassembled in Python
    dns: Payloads = field(default_factory=Payloads.empty)
    tls: Payloads = field(default_factory=Payloads.empty)
    h2: dict[int, H2Segment] = field(default_factory=dict)  # what each HTTP/2 segment completes
    label_ids: dict[str, LabelIds | None] | None = None  # given by Columns.label_ids, where called
    _head_parts: Int | None = field(default=None, repr=False, compare=False)
    _dns_fields: DnsFields | None = field(default=None, repr=False, compare=False)
    _tls_parts: tuple[Int, bytes] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.number)

    def prepare(self) -> Batch:
        """Do now the work on the batch that needs nothing of ``Columns`` (called where batches
        are made: the reading thread, while the caller makes the previous batch's columns)."""
        if len(self.heads.rows):
            self.head_parts()
        if len(self.dns.rows):
            self.dns_fields()
        if len(self.tls.rows):
            self.tls_parts()
        return self

    def head_parts(self) -> Int:
        """``kernel.http_parts`` of the HTTP heads."""
        if self._head_parts is None:
            self._head_parts = _kernel.http_parts(self.heads.blob, self.heads.offsets, self.heads.kinds)
        return self._head_parts

    def dns_fields(self) -> DnsFields:
        """The DNS columns the compiled parse of the DNS messages gives (before labels)."""
        if self._dns_fields is None:
            self._dns_fields = DnsFields.of(len(self), self.dns)
        return self._dns_fields

    def tls_parts(self) -> tuple[Int, bytes]:
        """``kernel.tls_parts`` of the TLS hellos."""
        if self._tls_parts is None:
            self._tls_parts = _kernel.tls_parts(self.tls.blob, self.tls.offsets)
        return self._tls_parts


@dataclass(slots=True)
class ColumnBatch:
    """A batch as columns in the field table's vocabulary.

    ``ints``: int64, -1 where missing (every field of kind int, the floats' source aside);
    ``codes``: int32 codes into ``Columns.labels[name]``, -1 where missing; ``flags``: 1, 0 or
    -1 (missing); ``bools``; ``floats``; ``texts``: a text per row; ``notes``: the rows that
    have notes.
    """

    n: int
    ints: dict[str, Int]
    codes: dict[str, Codes]
    bools: dict[str, NDArray[np.bool_]]
    floats: dict[str, NDArray[np.float64]]
    texts: dict[str, TextColumn]
    notes: dict[int, tuple[str, ...]]
    flags: dict[str, NDArray[np.int8]]


def _name(node: Any) -> str | None:
    return node.name if node is not None else None


class Columns:
    """Makes ``ColumnBatch``es of consecutive batches of one capture.

    Args:
        topology: the cluster, for the node, VTEP and pod names (None: names stay missing).
        links: the capture node's interfaces by index (its ``ip link``), naming the interface
            of each packet of a cooked capture (``tcpdump -i any``).
        interface_names: the capture's own interface names by interface number (pcapng's
            interface blocks), asked as batches come (blocks may come late).
    """

    def __init__(
        self,
        topology: Topology | None = None,
        links: Mapping[int, str] | None = None,
        interface_names: Callable[[], Sequence[str]] | None = None,
    ) -> None:
        self.topology = topology
        self.links = dict(links or {})
        self.interface_names = interface_names
        self.labels: dict[str, Labels] = {f.name: Labels() for f in FIELDS if f.kind == "label"}
        self.labels["src_ip"], self.labels["dst_ip"] = Labels(), Labels()
        self._kernel_labels = {
            f.name: _KernelLabels(self.labels[f.name], _TEXT_OF[f.kernel])
            for f in FIELDS
            if f.kind == "label" and f.kernel
        }
        self.first_ns: int | None = None  # time of the first packet
        self._directions = Encoder(2)
        self._isn = np.empty(0, dtype=np.int64)
        self._first_seen = np.empty(0, dtype=np.int64)
        self._other_info = InfoFormatter()  # TCP over IPv6 (Scapy's rows only): its own ISNs
        self._relabels: dict[str, _Relabel] = {}
        self._codes_by_bytes: dict[str, dict[bytes, int]] = {}
        self._qtype_labels = _KernelLabels(self.labels["dns_qtype"], type_name)  # DNS types (-1: none)
        self._subnet_owners = Labels()
        for side in ("src", "dst"):
            for layer in ("inner", "outer"):
                self._relabels[f"{layer}_{side}_ip"] = _Relabel(
                    self.labels[f"{layer}_{side}_ip"], self.labels[f"{side}_ip"], lambda t: t
                )
        if topology is not None:
            for side in ("src", "dst"):
                self._relabels[f"{side}_node"] = _Relabel(
                    self.labels[f"outer_{side}_ip"],
                    self.labels[f"{side}_node"],
                    lambda t: _name(topology.node_by_ip(t)),
                )
                self._relabels[f"{side}_vtep_node"] = _Relabel(
                    self.labels[f"inner_{side}_mac"],
                    self.labels[f"{side}_vtep_node"],
                    lambda t: _name(topology.node_by_vtep_mac(t)),
                )
                self._relabels[f"{side}_pod"] = _Relabel(
                    self.labels[f"{side}_ip"], self.labels[f"{side}_pod"], lambda t: pod_name(topology.pod_by_ip(t))
                )
                # The node whose pod subnet holds the address: in one set for both sides (to
                # compare them), and among the node names (for packets routed between nodes).
                self._relabels[f"{side}_subnet_owner"] = _Relabel(
                    self.labels[f"{side}_ip"], self._subnet_owners, lambda t: _name(topology.node_of_pod_ip(t))
                )
                self._relabels[f"{side}_routed_node"] = _Relabel(
                    self.labels[f"{side}_ip"], self.labels[f"{side}_node"], lambda t: _name(topology.node_of_pod_ip(t))
                )

    # -- the batch ------------------------------------------------------------------------

    def label_ids(self, batch: Batch) -> Batch:
        """Find the ids of the batch's kernel label columns now (``Batch.label_ids``), for
        ``make`` to turn into codes: the hash lookups, the larger part of labelling, can then
        run in the thread that reads, ahead of ``make``. Either every batch of a capture comes
        through here, in order, or none does."""
        batch.label_ids = {
            f.name: self._kernel_labels[f.name].ids(batch.values[f.name])
            for f in FIELDS
            if f.kernel and f.kind == "label"
        }
        return batch

    def make(self, batch: Batch) -> ColumnBatch:
        """The columns of ``batch`` (batches must come in capture order)."""
        n = len(batch)
        out = ColumnBatch(n=n, ints={}, codes={}, bools={}, floats={}, texts={}, notes={}, flags={})
        if self.first_ns is None and n:
            self.first_ns = int(batch.time_ns[0])
        out.floats["time"] = seconds(batch.time_ns)
        out.floats["rel_time"] = seconds(batch.time_ns - (self.first_ns or 0))  # the exact difference, rounded once
        out.ints.update(number=batch.number, cap_len=batch.cap_len, wire_len=batch.wire_len, interface=batch.interface)
        for f in FIELDS:  # the builder fills every row of the kernel's fields (NONE where not decoded)
            if not f.kernel:
                continue
            column = batch.values[f.name]
            if f.kind == "label":
                labels = self._kernel_labels[f.name]
                ids = batch.label_ids[f.name] if batch.label_ids is not None else labels.ids(column)
                out.codes[f.name] = labels.codes(column, ids)
            elif f.kind == "int":
                out.ints[f.name] = column
            elif f.kind == "bool":
                out.bools[f.name] = column == 1
            else:
                out.flags[f.name] = column.astype(np.int8)
        out.bools["outer_fragment"] = np.zeros(n, dtype=np.bool_)
        out.texts["geneve_options"] = TextColumn.nothing(n)
        self._http(batch, out)
        self._dns(batch, out)
        self._tls(batch, out)
        self._h2(batch, out)
        if batch.records:
            self._patch(batch.records, out)
        out.codes["if_name"] = self._if_names(batch.interface, out.ints["ifindex"])
        self._names(out)
        out.texts["info"] = self._info(batch, out)
        return out

    def _patch(self, records: dict[int, PacketRecord], out: ColumnBatch) -> None:
        """Copy the rows the Scapy decoder took into the columns."""
        options = {row: r.geneve_options for row, r in records.items() if r.geneve_options is not None}
        if options:  # the one text field outside HTTP and DNS
            texts = out.texts["geneve_options"].to_list()
            for row, text in options.items():
                texts[row] = text
            out.texts["geneve_options"] = TextColumn.of(texts)
        for row, record in records.items():
            for f in FIELDS:
                if f.name in ("number", "time", "rel_time", "info", "notes") or f.name.startswith(
                    ("http_", "dns_", "tls_")
                ):
                    continue
                if f.name in NAME_FIELDS or f.name in ("if_name", "direct_routed"):
                    continue
                value = getattr(record, f.name)
                if f.kind == "label":
                    out.codes[f.name][row] = self.labels[f.name].code(value)
                elif f.kind == "text":
                    continue
                elif f.kind == "int":
                    out.ints[f.name] = _writable(out.ints[f.name])
                    out.ints[f.name][row] = NONE if value is None else value
                elif f.kind == "bool":
                    out.bools[f.name] = _writable(out.bools[f.name])
                    out.bools[f.name][row] = value
                elif f.kind == "flag":
                    out.flags[f.name][row] = -1 if value is None else int(value)
            if record.notes:
                out.notes[row] = record.notes

    def _if_names(self, interface: Int, ifindex: Int) -> Codes:
        """The interface each packet was seen on: by the cooked header's index in the capture
        node's links, else by the capture's interface number in its own names (pcapng)."""
        label = self.labels["if_name"]
        codes = np.full(len(interface), -1, dtype=np.int32)
        names = self.interface_names() if self.interface_names else ()
        if any(names):
            for number in np.unique(interface).tolist():
                if 0 <= number < len(names) and names[number]:
                    codes[interface == number] = label.code(names[number])
        if self.links:
            for index in np.unique(ifindex[ifindex != NONE]).tolist():
                if index in self.links:
                    codes[ifindex == index] = label.code(self.links[index])
        return codes

    # -- HTTP ---------------------------------------------------------------------------

    def _http(self, batch: Batch, out: ColumnBatch) -> None:
        n = out.n
        status = np.full(n, NONE, dtype=np.int64)
        codes = {name: np.full(n, -1, dtype=np.int32) for name in HTTP_LABELS}
        path_lengths = np.zeros(n, dtype=np.int64)
        path_data = b""
        heads = batch.heads
        if len(heads.rows):
            parts = batch.head_parts()
            blob = np.frombuffer(heads.blob, dtype=np.uint8)
            starts = heads.offsets[:-1]
            texts = {}
            named = (("method", 0), ("path", 2), ("version", 4), ("reason", 7), ("host", 9))
            for name, at in (*named, ("forwarded_for", 11), ("forwarded_server", 13), ("content_type", 15)):
                texts[name] = _slices(blob, starts, parts[:, at], parts[:, at + 1])
            odd = parts[:, 6] == -2  # a status too long to hold in C
            if (blob >= 0x80).any() or odd.any():  # latin-1 text: parse_head decodes it, as the slow path does
                self._heads_in_python(heads, texts, parts)
            status[heads.rows] = np.where(parts[:, 6] >= 0, parts[:, 6], NONE)
            for name in HTTP_LABELS:
                codes[name][heads.rows] = self._codes_of(name, texts[name.removeprefix("http_")])
            path = texts["path"]
            path_lengths[heads.rows] = np.diff(path.texts.offsets)
            path_data = path.texts.data
        extra: dict[int, HttpHead | H2Segment] = dict(batch.slow_heads)
        extra.update((row, segment) for row, segment in batch.h2.items() if segment.is_head)
        for row, record in batch.records.items():
            head = _head_of(record)
            if head is not None:
                extra[row] = head
        out.ints["http_status"] = status
        out.codes.update(codes)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(path_lengths, out=offsets[1:])
        has_path = codes["http_method"] >= 0
        out.texts["http_path"] = TextColumn(Texts(offsets, path_data), ~has_path)
        if extra:  # heads the reassembler or the Scapy decoder found: rare, row by row
            paths = out.texts["http_path"].to_list()
            for row, found in extra.items():
                status[row] = NONE if found.status is None else found.status
                for name in HTTP_LABELS:
                    codes[name][row] = self.labels[name].code(getattr(found, name.removeprefix("http_")))
                paths[row] = found.path
            out.texts["http_path"] = TextColumn.of(paths)

    def _h2(self, batch: Batch, out: ColumnBatch) -> None:
        """The HTTP/2 columns of the kernel's rows (the Scapy decoder's come with its records)."""
        n = out.n
        stream, grpc = np.full(n, NONE, dtype=np.int64), np.full(n, NONE, dtype=np.int64)
        frames = np.full(n, -1, dtype=np.int32)
        label = self.labels["http2_frames"]
        for row, segment in batch.h2.items():
            frames[row] = label.code(segment.frames)
            stream[row] = NONE if segment.stream is None else segment.stream
            grpc[row] = NONE if segment.grpc_status is None else segment.grpc_status
        out.codes["http2_frames"], out.ints["http2_stream"], out.ints["grpc_status"] = frames, stream, grpc

    # -- DNS ----------------------------------------------------------------------------

    def _dns(self, batch: Batch, out: ColumnBatch) -> None:
        """The DNS columns: the compiled parse of the kernel's messages (made in the reading
        thread, ``DnsFields``), labelled here, then the Scapy decoder's rows as its records
        have them."""
        n = out.n
        found = batch.dns_fields()
        ints, response, texts = found.ints, found.response, found.texts
        qname = np.full(n, -1, dtype=np.int32)
        qtype = np.full(n, -1, dtype=np.int32)
        if len(found.rows):
            qtype[found.rows] = self._qtype_labels(found.types)
            if found.latin:  # latin-1 names: decoded as the Python parser does
                names = TextColumn.of(
                    [None if a < 0 else found.text[a:b].decode("latin-1") for a, b in found.names.tolist()]
                )
                qname[found.rows] = self._codes_of("dns_qname", names)
            else:
                qname[found.rows] = self._codes_of_ranges("dns_qname", found.text, found.names[:, 0], found.names[:, 1])
        records = {row: r for row, r in batch.records.items() if r.dns_id is not None}
        if records:  # rows the Scapy decoder took: row by row
            lists = {name: column.to_list() for name, column in texts.items()}
            for row, record in records.items():
                for name in _DNS_INTS:
                    value = getattr(record, name)
                    ints[name][row] = NONE if value is None else value
                response[row] = int(bool(record.dns_response))
                qname[row] = self.labels["dns_qname"].code(record.dns_qname)
                qtype[row] = self.labels["dns_qtype"].code(record.dns_qtype)
                lists["dns_addresses"][row], lists["dns_cnames"][row] = record.dns_addresses, record.dns_cnames
            texts = {name: TextColumn.of(values) for name, values in lists.items()}
        out.ints.update(ints)
        out.flags["dns_response"] = response
        out.codes["dns_qname"], out.codes["dns_qtype"] = qname, qtype
        out.texts.update(texts)

    # -- TLS ----------------------------------------------------------------------------

    def _tls(self, batch: Batch, out: ColumnBatch) -> None:
        """The TLS columns: the compiled parse of the hellos the kernel's rows begin, then the
        Scapy decoder's rows as its records have them."""
        n = out.n
        codes = {name: np.full(n, -1, dtype=np.int32) for name in _TLS_LABELS}
        cipher = np.full(n, NONE, dtype=np.int64)
        hellos = batch.tls
        if len(hellos.rows):
            parts, text = batch.tls_parts()
            found = parts[:, 0] >= 0
            rows, parts = hellos.rows[found], parts[found]
            cipher[rows] = parts[:, 2]
            for name, column, names in (("tls_handshake", 0, HELLO_NAMES), ("tls_version", 1, None)):
                words = {v: names[v] if names else version_name(v) for v in np.unique(parts[:, column]).tolist()}
                mapping = {v: self.labels[name].code(w) for v, w in words.items()}
                codes[name][rows] = [mapping[v] for v in parts[:, column].tolist()]
            for name, at in (("tls_sni", 3), ("tls_alpn", 5)):
                bounds = parts[:, at : at + 2].tolist()
                texts = [None if a < 0 else text[a:b].decode("latin-1") for a, b in bounds]
                codes[name][rows] = [self.labels[name].code(t) for t in texts]
        for row, record in batch.records.items():
            if record.tls_handshake is None:
                continue
            for name in _TLS_LABELS:
                codes[name][row] = self.labels[name].code(getattr(record, name))
            cipher[row] = NONE if record.tls_cipher is None else record.tls_cipher
        out.codes.update(codes)
        out.ints["tls_cipher"] = cipher

    def _codes_of(self, name: str, column: TextColumn) -> Codes:
        """Codes in ``labels[name]`` for a column of texts (each distinct text looked up once)."""
        offsets = column.texts.offsets
        at, to = offsets[:-1].copy(), offsets[1:]
        if column.missing is not None:
            at[column.missing] = -1
        return self._codes_of_ranges(name, column.texts.data, at, to)

    def _codes_of_ranges(self, name: str, data: bytes, at: Int, to: Int) -> Codes:
        """Codes in ``labels[name]`` for the UTF-8 texts ``data[at[i]:to[i]]`` (-1 where ``at``
        is -1), each distinct text looked up once."""
        ids, first = _kernel.dedupe(data, at, to)
        labels = self.labels[name]
        known = self._codes_by_bytes.setdefault(name, {})  # each text decoded once per capture, not per batch
        mapping = np.empty(len(first), dtype=np.int32)
        for i, (a, z) in enumerate(zip(at[first].tolist(), to[first].tolist(), strict=True)):
            key = data[a:z]
            code = known.get(key)
            if code is None:
                code = known[key] = labels.code(key.decode())
            mapping[i] = code
        return _through(mapping, ids)

    def _heads_in_python(self, heads: Heads, texts: dict[str, TextColumn], parts: Int) -> None:
        """The heads' texts as ``parse_head`` makes them (latin-1 bytes, overlong statuses)."""
        bounds = heads.offsets.tolist()
        parsed = [parse_head(heads.blob[a:b]) for a, b in itertools.pairwise(bounds)]
        names = ("method", "path", "version", "reason", "host", "forwarded_for", "forwarded_server", "content_type")
        for name in names:
            texts[name] = TextColumn.of([getattr(h, name) if h else None for h in parsed])
        parts[:, 6] = [h.status if h and h.status is not None else -1 for h in parsed]

    # -- names --------------------------------------------------------------------------

    def _names(self, out: ColumnBatch) -> None:
        vxlan = out.bools["is_vxlan"]
        encap = _codes_to_values(out.codes["encap"], self.labels["encap"], ENCAP_CODES)
        tunnelled = carries_inner(out.bools["is_tunnel"], encap)
        for side in ("src", "dst"):
            inner = self._relabels[f"inner_{side}_ip"](out.codes[f"inner_{side}_ip"])
            outer = self._relabels[f"outer_{side}_ip"](out.codes[f"outer_{side}_ip"])
            out.codes[f"{side}_ip"] = np.where(tunnelled, inner, outer).astype(np.int32)
            if self.topology is None:
                for name in (f"{side}_node", f"{side}_vtep_node", f"{side}_pod"):
                    out.codes[name] = np.full(out.n, -1, dtype=np.int32)
                continue
            out.codes[f"{side}_node"] = self._relabels[f"{side}_node"](out.codes[f"outer_{side}_ip"])
            vtep = self._relabels[f"{side}_vtep_node"](out.codes[f"inner_{side}_mac"])
            out.codes[f"{side}_vtep_node"] = np.where(vxlan, vtep, -1).astype(np.int32)
            out.codes[f"{side}_pod"] = self._relabels[f"{side}_pod"](out.codes[f"{side}_ip"])
        out.flags["direct_routed"] = self._direct_routed(out)

    def _direct_routed(self, out: ColumnBatch) -> NDArray[np.int8]:
        """Pod traffic routed between nodes without a tunnel (host-gw, DirectRouting): both ends
        in pod subnets of different nodes; those packets are named by those nodes. Missing
        without a topology."""
        if self.topology is None:
            return np.full(out.n, -1, dtype=np.int8)
        owners = [self._relabels[f"{side}_subnet_owner"](out.codes[f"{side}_ip"]) for side in ("src", "dst")]
        routed = ~out.bools["is_tunnel"] & (owners[0] >= 0) & (owners[1] >= 0) & (owners[0] != owners[1])
        if routed.any():
            for side in ("src", "dst"):
                by_subnet = self._relabels[f"{side}_routed_node"](out.codes[f"{side}_ip"])
                out.codes[f"{side}_node"] = np.where(routed, by_subnet, out.codes[f"{side}_node"]).astype(np.int32)
        flag: NDArray[np.int8] = routed.astype(np.int8)
        return flag

    # -- Info -----------------------------------------------------------------------------

    def _info(self, batch: Batch, out: ColumnBatch) -> TextColumn:
        """The Info column, worded as ``InfoFormatter`` words it (the rule lives there)."""
        n = out.n
        ints, codes, labels = out.ints, out.codes, self.labels
        proto = _codes_to_values(codes["proto"], labels["proto"], {v: k for k, v in PROTO_NAMES.items()})
        request = codes["http_method"] >= 0
        response = (ints["http_status"] != NONE) & ~request
        python_rows = np.zeros(n, dtype=np.bool_)
        src, dst = innermost(batch.values)
        src, dst = np.where(batch.fallback, NONE, src), np.where(batch.fallback, NONE, dst)
        for row, record in batch.records.items():
            v4 = record.src_ip is not None and ":" not in record.src_ip and record.dst_ip is not None
            if record.proto == "tcp" and v4 and record.tcp_seq is not None and record.tcp_ack is not None:
                # In the column-wise TCP Info: its ISN must be kept in capture order with the others.
                src[row] = int.from_bytes(socket.inet_aton(record.src_ip or ""), "big")
                dst[row] = int.from_bytes(socket.inet_aton(record.dst_ip or ""), "big")
            else:
                python_rows[row] = True
        other = ~request & ~response & ~python_rows
        tcp = other & (proto == TCP) & (src != NONE)
        dns = other & (proto == UDP) & (ints["dns_id"] != NONE)
        udp, icmp, arp = other & (proto == UDP) & ~dns, other & (proto == ICMP), other & (proto == ARP)
        seq, ack = self._relative_seq(
            batch.number, tcp, src, dst, ints["src_port"], ints["dst_port"], ints["tcp_seq"], ints["tcp_ack"]
        )
        hello = tcp & (codes["tls_handshake"] >= 0)  # a TLS hello: its own words (its ISN is kept above)
        tcp = tcp & ~hello
        flags = labels["tcp_flags"]
        has_ack = tcp & _per_label(codes["tcp_flags"], flags, lambda t: "ACK" in t)
        has_reason = response & _per_label(codes["http_reason"], labels["http_reason"], bool)
        op = codes["arp_op"]
        arp_request = arp & _per_label(op, labels["arp_op"], lambda t: t == "request")
        arp_reply = arp & _per_label(op, labels["arp_op"], lambda t: t == "reply")
        arp_other = arp & ~arp_request & ~arp_reply
        version = labels["http_version"].encoded()
        text = Program()
        text.label(codes["http_method"], labels["http_method"].encoded(), when=request).text(" ", request)
        text.column(out.texts["http_path"], missing="None", when=request).text(" ", request)
        text.label(codes["http_version"], version, missing="None", when=request)
        text.label(codes["http_version"], version, missing="None", when=response).text(" ", response)
        text.integer(ints["http_status"], when=response).text(" ", has_reason)
        text.label(codes["http_reason"], labels["http_reason"].encoded(), when=has_reason)
        ports = tcp | udp
        text.integer(ints["src_port"], "None", ports).text(" → ", ports).integer(ints["dst_port"], "None", ports)
        text.text(" [", tcp).label(codes["tcp_flags"], flags.encoded(), missing="None", when=tcp)
        text.text("] Seq=", tcp).integer(seq, when=tcp).text(" Ack=", has_ack).integer(ack, when=has_ack)
        text.text(" Win=", tcp).integer(ints["tcp_window"], "None", tcp)
        text.text(" Len=", ports).integer(ints["payload_len"], "None", ports)
        icmp_type = np.where(icmp, np.clip(ints["icmp_type"], 0, 255), 0).astype(np.int32)
        text.label(icmp_type, _ICMP_TEXTS, when=icmp).text(" (code ", icmp).integer(ints["icmp_code"], "None", icmp)
        text.text(")", icmp)
        arp_texts = {name: labels[name].encoded() for name in ("arp_target_ip", "arp_sender_ip", "arp_sender_mac")}
        text.text("Who has ", arp_request)
        text.label(codes["arp_target_ip"], arp_texts["arp_target_ip"], missing="None", when=arp_request)
        text.text("? Tell ", arp_request)
        text.label(codes["arp_sender_ip"], arp_texts["arp_sender_ip"], missing="None", when=arp_request | arp_reply)
        text.text(" is at ", arp_reply)
        text.label(codes["arp_sender_mac"], arp_texts["arp_sender_mac"], missing="None", when=arp_reply)
        text.text("ARP ", arp_other).label(op, labels["arp_op"].encoded(), missing="None", when=arp_other)
        self._dns_info(text, out, dns)
        named = hello & (codes["tls_sni"] >= 0)
        text.label(codes["tls_handshake"], labels["tls_handshake"].encoded(), when=hello)
        text.text(" (SNI=", named).label(codes["tls_sni"], labels["tls_sni"].encoded(), when=named).text(")", named)
        info = TextColumn(text.run(n))
        h2 = {row: segment.info for row, segment in batch.h2.items()}
        h2.update((row, r.info) for row, r in batch.records.items() if r.http2_frames is not None and r.info)
        if python_rows.any() or h2:
            texts = info.to_list()
            for row in np.nonzero(python_rows)[0].tolist():
                texts[row] = self._other_info.format(batch.records[row])
            for row, said in h2.items():  # HTTP/2: Wireshark's words for the frames a segment completes
                texts[row] = said
            info = TextColumn.of(texts)
        return info

    def _dns_info(self, text: Program, out: ColumnBatch, dns: NDArray[np.bool_]) -> None:
        """``Standard query 0x1a2b A web.default.svc.cluster.local`` and its response, worded
        as ``info.dns_info`` words them."""
        if not dns.any():
            return
        ints, codes, labels = out.ints, out.codes, self.labels
        answer = dns & (out.flags["dns_response"] == 1)
        operation = np.where(dns, (ints["dns_opcode"] & 0xF) * 2 + answer, 0).astype(np.int32)
        text.label(operation, _DNS_OPERATIONS, when=dns).text(" ", dns)
        text.hexadecimal(ints["dns_id"] & 0xFFFF, 4, when=dns)
        failed = answer & (ints["dns_rcode"] > 0)
        text.text(" ", failed).label(
            np.where(failed, ints["dns_rcode"] & 0xF, 0).astype(np.int32), _RCODES, when=failed
        )
        asked = dns & (codes["dns_qname"] >= 0)
        text.text(" ", asked).label(codes["dns_qtype"], labels["dns_qtype"].encoded(), missing="", when=asked)
        text.text(" ", asked).label(codes["dns_qname"], labels["dns_qname"].encoded(), when=asked)
        cnames, addresses = out.texts["dns_cnames"], out.texts["dns_addresses"]
        has_cnames = dns & ~_missing(cnames)
        has_addresses = dns & ~_missing(addresses)
        text.text(" CNAME ", has_cnames).column(cnames, when=has_cnames)
        text.text(" ", has_addresses).column(addresses, when=has_addresses)

    def _relative_seq(
        self, number: Int, tcp: NDArray[np.bool_], src: Int, dst: Int, sport: Int, dport: Int, seq: Int, ack: Int
    ) -> tuple[Int, Int]:
        """Sequence and acknowledgement numbers relative to each direction's first (as
        ``InfoFormatter`` keeps them: the ack is relative once the other direction was seen)."""
        rows = np.nonzero(tcp)[0]
        seq_out, ack_out = seq.copy(), ack.copy()
        if not len(rows):
            return seq_out, ack_out
        a = src[rows] << 16 | sport[rows]
        b = dst[rows] << 16 | dport[rows]
        before = self._directions.count
        ids = self._directions.ids(np.stack([a, b], axis=1))
        count = self._directions.count
        if count > len(self._isn):
            grow = max(count, 2 * len(self._isn))
            self._isn = np.concatenate([self._isn, np.zeros(grow - len(self._isn), np.int64)])
            self._first_seen = np.concatenate([self._first_seen, np.zeros(grow - len(self._first_seen), np.int64)])
        if count > before:
            first = rows[first_sightings(ids, since=before)]
            self._isn[before:count] = seq[first]
            self._first_seen[before:count] = number[first]
        back = self._directions.ids(np.stack([b, a], axis=1), create=False)
        seq_out[rows] = (seq[rows] - self._isn[ids]) % 2**32
        known = (back >= 0) & ((self._first_seen[np.maximum(back, 0)] < number[rows]) | (back == ids))
        ack_out[rows] = np.where(known, (ack[rows] - self._isn[np.maximum(back, 0)]) % 2**32, ack[rows])
        return seq_out, ack_out


def seconds(time_ns: Int) -> NDArray[np.float64]:
    """Times in nanoseconds as seconds: the double nearest to each (as ``Frame.time``), so that
    a microsecond timestamp reads as its six decimals (``1795679555.282707``)."""
    micro = time_ns % 1000 == 0
    out: NDArray[np.float64] = (time_ns // 1000) / 1e6  # both exact below 2**53 µs: one rounding
    if not micro.all():
        rest = ~micro
        exact = time_ns[rest].astype(np.longdouble) / np.longdouble(1e9)
        out[rest] = exact.astype(np.float64)
    return out


def _through(mapping: Codes, ids: NDArray[Any]) -> Codes:
    """``mapping[ids]``, -1 where an id is -1."""
    extended = np.empty(len(mapping) + 1, dtype=np.int32)  # the last entry answers id -1
    extended[:-1] = mapping
    extended[-1] = -1
    out: Codes = extended[ids]
    return out


_DNS_INTS = ("dns_id", "dns_opcode", "dns_rcode", "dns_flags", "dns_answers", "dns_ttl")
_DNS_TEXTS = ("dns_addresses", "dns_cnames")
_TLS_LABELS = ("tls_handshake", "tls_version", "tls_sni", "tls_alpn")
_DNS_OPERATIONS = Texts.of([dns_operation(op, bool(answer)) for op in range(16) for answer in (0, 1)])
_RCODES = Texts.of([rcode_name(code) for code in range(16)])


def _missing(column: TextColumn) -> NDArray[np.bool_]:
    """Where a text column has no text."""
    if column.missing is None:
        return np.zeros(len(column), dtype=np.bool_)
    return column.missing


def _writable(array: NDArray[Any]) -> NDArray[Any]:
    return array if array.flags.writeable and array.base is None else array.copy()


def _head_of(record: PacketRecord) -> HttpHead | None:
    if record.http_method is None and record.http_status is None:
        return None
    return HttpHead(
        method=record.http_method,
        path=record.http_path,
        version=record.http_version,
        status=record.http_status,
        reason=record.http_reason,
        host=record.http_host,
        forwarded_for=record.http_forwarded_for,
        forwarded_server=record.http_forwarded_server,
        content_type=record.http_content_type,
    )


def _per_label(codes: Codes, labels: Labels, test: Callable[[str], bool]) -> NDArray[np.bool_]:
    """Whether each row's label passes ``test`` (False where missing), each label tested once."""
    if not labels.texts:
        return np.zeros(len(codes), dtype=np.bool_)
    passed = np.array([test(t) for t in labels.texts], dtype=np.bool_)
    out: NDArray[np.bool_] = (codes >= 0) & passed[np.maximum(codes, 0)]
    return out


def _codes_to_values(codes: Codes, labels: Labels, value_of: dict[str, int]) -> Int:
    mapping = np.array([value_of.get(t, -2) for t in labels.texts] or [0], dtype=np.int64)
    out: Int = np.where(codes >= 0, mapping[np.maximum(codes, 0)], NONE)
    return out


def _spread(arena: NDArray[np.uint8], n: int, rows: Int, at: Int, to: Int, latin: bool) -> TextColumn:
    """A text column of ``n`` rows holding ``arena[at[i]:to[i]]`` at row ``rows[i]`` (missing where
    ``at[i]`` is -1, and in every other row); ``latin``: the bytes are decoded as latin-1 (as the
    Python parser decodes them), else they are ASCII."""
    present = at >= 0
    if not present.any():
        return TextColumn.nothing(n)
    where, at, to = rows[present], at[present], to[present]
    if latin:
        values: list[str | None] = [None] * n
        for row, a, b in zip(where.tolist(), at.tolist(), to.tolist(), strict=True):
            values[row] = arena[a:b].tobytes().decode("latin-1")
        return TextColumn.of(values)
    lengths = np.zeros(n + 1, dtype=np.int64)  # offsets once summed: the rows between hold nothing
    lengths[where + 1] = to - at
    missing = np.ones(n, dtype=np.bool_)
    missing[where] = False
    return TextColumn(Texts(np.cumsum(lengths), gather(arena, at, to - at).data), missing)


def _slices(blob: NDArray[np.uint8], starts: Int, at: Int, to: Int) -> TextColumn:
    """The byte ranges ``[starts + at, starts + to)`` of ``blob`` as texts (missing where ``at``
    is -1). The bytes must be ASCII (the caller checks)."""
    present = at >= 0
    texts = gather(blob, starts + np.where(present, at, 0), np.where(present, to - at, 0))
    return TextColumn(texts, None if present.all() else ~present)
