/* The compiled loops of flannelcap's fast path: the record walk of a pcap piece, the header
 * decode of its frames, and the set of conversations.
 *
 * Rule: pure and bounds-checked by hand. Buffers in, buffers out (the caller allocates every
 * output); no file, no Python objects in the loops, which run without the GIL. Every read is
 * preceded by a check that it stays inside the frame, and every frame this code cannot decode
 * completely -- any layout but the common ones, any packet that needs a note -- is only marked
 * "fallback" for the Scapy decoder, which stays the model.
 *
 * The common layouts: Ethernet (one 802.1Q tag at most), Linux cooked v1/v2 or raw IPv4, then
 * IPv4 with TCP/UDP/ICMP or ARP, VXLAN on the given ports with an inner Ethernet/IPv4 or ARP
 * frame. flannelcap/_kernel.py is the typed Python face of this module.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define NONE (-1) /* "no such field" */
#define FALLBACK (-2)
#define ARP_CODE 1000 /* proto / outer_proto of an ARP packet (not an IP protocol number) */

/* The fields, in the order of a packet's row of values. FIELD_NAMES below must match. */
enum {
    OUTER_DST_MAC, OUTER_SRC_MAC, VLAN, OUTER_IP_VERSION, OUTER_SRC_IP, OUTER_DST_IP, OUTER_TTL,
    OUTER_IP_LEN, OUTER_PROTO, OUTER_SRC_PORT, OUTER_DST_PORT, OUTER_UDP_LEN, OUTER_UDP_CHECKSUM,
    OUTER_UDP_CHECKSUM_OK, IS_VXLAN, VNI, VXLAN_FLAGS, INNER_DST_MAC, INNER_SRC_MAC,
    INNER_ETHERTYPE, INNER_SRC_IP, INNER_DST_IP, INNER_TTL, INNER_IP_LEN, PROTO, SRC_PORT,
    DST_PORT, TCP_SEQ, TCP_ACK, TCP_FLAGS, TCP_WINDOW, PAYLOAD_LEN, ICMP_TYPE, ICMP_CODE, ARP_OP,
    ARP_SENDER_MAC, ARP_SENDER_IP, ARP_TARGET_MAC, ARP_TARGET_IP, FIELD_COUNT
};
static const char *FIELD_NAMES[FIELD_COUNT] = {
    "outer_dst_mac", "outer_src_mac", "vlan", "outer_ip_version", "outer_src_ip", "outer_dst_ip",
    "outer_ttl", "outer_ip_len", "outer_proto", "outer_src_port", "outer_dst_port",
    "outer_udp_len", "outer_udp_checksum", "outer_udp_checksum_ok", "is_vxlan", "vni",
    "vxlan_flags", "inner_dst_mac", "inner_src_mac", "inner_ethertype", "inner_src_ip",
    "inner_dst_ip", "inner_ttl", "inner_ip_len", "proto", "src_port", "dst_port", "tcp_seq",
    "tcp_ack", "tcp_flags", "tcp_window", "payload_len", "icmp_type", "icmp_code", "arp_op",
    "arp_sender_mac", "arp_sender_ip", "arp_target_mac", "arp_target_ip",
};

/* Link types (the pcap numbers; see _reader.py). */
#define LT_ETHERNET 1
#define LT_SLL 113
#define LT_SLL2 276

typedef const uint8_t *bytes_t;

static inline int64_t u16(bytes_t b, int64_t at) { return ((int64_t)b[at] << 8) | b[at + 1]; }
static inline int64_t u32(bytes_t b, int64_t at) { return (u16(b, at) << 16) | u16(b, at + 2); }
static inline int64_t mac(bytes_t b, int64_t at) { return (u16(b, at) << 32) | (u16(b, at + 2) << 16) | u16(b, at + 4); }
static inline int64_t record_u32(bytes_t b, int64_t at, int little) {
    if (little)
        return (int64_t)b[at] | ((int64_t)b[at + 1] << 8) | ((int64_t)b[at + 2] << 16) | ((int64_t)b[at + 3] << 24);
    return u32(b, at);
}

/* ---- the record walk -------------------------------------------------------------------- */

/* The complete records in b[0:size]; their frame offsets, lengths and timestamps go to the
 * outputs (room for `room` records). Returns how many; *stop is where the first incomplete
 * record starts, or -offset-1 if the record there claims more than max_record bytes. */
static int64_t walk(bytes_t b, int64_t size, int little, int64_t max_record, int64_t room, int64_t *start,
                    int64_t *caplen_out, int64_t *wire_out, int64_t *seconds, int64_t *fraction, int64_t *stop) {
    int64_t count = 0, offset = 0;
    *stop = -1;
    while (offset + 16 <= size && count < room) {
        int64_t caplen = record_u32(b, offset + 8, little);
        if (caplen > max_record) {
            *stop = -offset - 1;
            return count;
        }
        if (offset + 16 + caplen > size)
            break;
        int64_t wire = record_u32(b, offset + 12, little);
        seconds[count] = record_u32(b, offset, little);
        fraction[count] = record_u32(b, offset + 4, little);
        caplen_out[count] = caplen;
        wire_out[count] = wire > caplen ? wire : caplen;
        start[count] = offset + 16;
        count++;
        offset += 16 + caplen;
    }
    *stop = offset;
    return count;
}

/* ---- the header decode ------------------------------------------------------------------- */

typedef struct {
    const int64_t *ports; /* UDP ports that carry VXLAN */
    Py_ssize_t port_count;
    int checksums;        /* verify the outer UDP checksum of VXLAN packets */
    const uint8_t *prefixes; /* how HTTP heads begin: rows of 5 bytes ... */
    const int64_t *widths;   /* ... and how many of each row count */
    Py_ssize_t prefix_count;
} options_t;

static int on_ports(int64_t sport, int64_t dport, const int64_t *ports, Py_ssize_t count) {
    for (Py_ssize_t k = 0; k < count; k++)
        if (sport == ports[k] || dport == ports[k])
            return 1;
    return 0;
}

static const int64_t ALWAYS_CHECKED_PORTS[2] = {8472, 4789}; /* UDP on these that is not decodable VXLAN goes to Scapy */

/* ARP for IPv4 over Ethernet at `at`; 0 if it is not that or not whole. */
static int arp(bytes_t b, int64_t *v, int64_t at, int64_t end) {
    if (end < at + 28 || u16(b, at) != 1 || u16(b, at + 2) != 0x0800 || b[at + 4] != 6 || b[at + 5] != 4)
        return 0;
    v[PROTO] = ARP_CODE;
    v[ARP_OP] = u16(b, at + 6);
    v[ARP_SENDER_MAC] = mac(b, at + 8);
    v[ARP_SENDER_IP] = u32(b, at + 14);
    v[ARP_TARGET_MAC] = mac(b, at + 18);
    v[ARP_TARGET_IP] = u32(b, at + 24);
    return 1;
}

/* The header length of a whole, unfragmented IPv4 header at `at`, or 0 if it is not one. */
static int64_t ipv4_header_length(bytes_t b, int64_t at, int64_t end) {
    if (end < at + 20)
        return 0;
    int64_t ihl = (b[at] & 0x0F) * 4;
    if (b[at] >> 4 != 4 || ihl < 20 || end < at + ihl)
        return 0;
    if ((u16(b, at + 6) & 0x3FFF) != 0 || u16(b, at + 2) < ihl)
        return 0;
    return ihl;
}

/* 1 if the UDP checksum of an IPv4 datagram is right, 0 if wrong, NONE if there is none (0)
 * or the datagram is not captured whole. */
static int64_t udp_checksum_ok(bytes_t b, int64_t l3, int64_t l4, int64_t udp_len, int64_t end) {
    int64_t checksum = u16(b, l4 + 6);
    if (checksum == 0 || l4 + udp_len > end || udp_len < 8)
        return NONE;
    uint64_t total = u16(b, l3 + 12) + u16(b, l3 + 14) + u16(b, l3 + 16) + u16(b, l3 + 18) + 17 + udp_len;
    total += u16(b, l4) + u16(b, l4 + 2) + udp_len;
    int64_t at = l4 + 8, last = l4 + udp_len;
    for (; at + 1 < last; at += 2)
        total += ((uint64_t)b[at] << 8) | b[at + 1];
    if (at < last)
        total += (uint64_t)b[at] << 8;
    while (total > 0xFFFF)
        total = (total & 0xFFFF) + (total >> 16);
    int64_t computed = ~total & 0xFFFF;
    if (computed == 0)
        computed = 0xFFFF;
    return computed == checksum;
}

/* TCP, UDP or ICMP fields at `at`. Returns the TCP payload offset (NONE if not TCP), or
 * FALLBACK if the packet needs the Scapy decoder after all. */
static int64_t transport(bytes_t b, int64_t *v, int64_t at, int64_t proto, int64_t length, int64_t end) {
    if (proto == 6) {
        if (end < at + 20)
            return FALLBACK;
        int64_t doff = (b[at + 12] >> 4) * 4;
        if (doff < 20)
            return FALLBACK;
        v[PROTO] = 6;
        v[SRC_PORT] = u16(b, at);
        v[DST_PORT] = u16(b, at + 2);
        v[TCP_SEQ] = u32(b, at + 4);
        v[TCP_ACK] = u32(b, at + 8);
        v[TCP_FLAGS] = b[at + 13];
        v[TCP_WINDOW] = u16(b, at + 14);
        v[PAYLOAD_LEN] = length - doff > 0 ? length - doff : 0;
        return at + doff;
    }
    if (proto == 17 || proto == 1) {
        if (end < at + 8)
            return FALLBACK;
        v[PROTO] = proto;
        if (proto == 17) {
            v[SRC_PORT] = u16(b, at);
            v[DST_PORT] = u16(b, at + 2);
            v[PAYLOAD_LEN] = u16(b, at + 4) - 8 > 0 ? u16(b, at + 4) - 8 : 0;
        } else {
            v[ICMP_TYPE] = b[at];
            v[ICMP_CODE] = b[at + 1];
        }
        return NONE;
    }
    return FALLBACK;
}

/* Decode one frame b[start:end] into its row v. Returns the TCP payload offset, NONE if there
 * is no TCP payload, or FALLBACK. */
static int64_t decode_one(bytes_t b, int64_t *v, int64_t start, int64_t end, int64_t linktype, const options_t *o) {
    int64_t caplen = end - start, ethertype, l3;
    /* -- link layer -- */
    if (linktype == LT_ETHERNET) {
        if (caplen < 14)
            return FALLBACK;
        v[OUTER_DST_MAC] = mac(b, start);
        v[OUTER_SRC_MAC] = mac(b, start + 6);
        ethertype = u16(b, start + 12);
        l3 = start + 14;
        if (ethertype == 0x8100) {
            if (caplen < 18)
                return FALLBACK;
            v[VLAN] = u16(b, start + 14) & 0xFFF;
            ethertype = u16(b, start + 16);
            l3 = start + 18;
        }
        if (ethertype < 0x0600 || ethertype == 0x8100 || ethertype == 0x88A8)
            return FALLBACK;
    } else if (linktype == LT_SLL) {
        if (caplen < 16 || u16(b, start + 2) != 1)
            return FALLBACK;
        if (u16(b, start + 4) == 6)
            v[OUTER_SRC_MAC] = mac(b, start + 6);
        ethertype = u16(b, start + 14);
        l3 = start + 16;
    } else if (linktype == LT_SLL2) {
        if (caplen < 20 || u16(b, start + 8) != 1)
            return FALLBACK;
        if (b[start + 11] == 6)
            v[OUTER_SRC_MAC] = mac(b, start + 12);
        ethertype = u16(b, start);
        l3 = start + 20;
    } else { /* raw IP; the caller passes only the raw link types here */
        if (caplen < 1 || b[start] >> 4 != 4)
            return FALLBACK;
        ethertype = 0x0800;
        l3 = start;
    }
    /* -- outer network layer -- */
    if (ethertype == 0x0806) {
        if (!arp(b, v, l3, end))
            return FALLBACK;
        v[OUTER_PROTO] = ARP_CODE;
        v[IS_VXLAN] = 0;
        return NONE;
    }
    if (ethertype != 0x0800)
        return FALLBACK;
    int64_t ihl = ipv4_header_length(b, l3, end);
    if (ihl == 0)
        return FALLBACK;
    int64_t ip_total = u16(b, l3 + 2), l4 = l3 + ihl, proto = b[l3 + 9];
    v[OUTER_SRC_IP] = u32(b, l3 + 12);
    v[OUTER_DST_IP] = u32(b, l3 + 16);
    v[OUTER_TTL] = b[l3 + 8];
    v[OUTER_IP_LEN] = ip_total;
    v[OUTER_IP_VERSION] = 4;
    v[IS_VXLAN] = 0;
    if (proto != 17) {
        if (proto == 6 && end >= l4 + 4) {
            v[OUTER_SRC_PORT] = u16(b, l4);
            v[OUTER_DST_PORT] = u16(b, l4 + 2);
        }
        v[OUTER_PROTO] = proto;
        return transport(b, v, l4, proto, ip_total - ihl, end);
    }
    /* -- outer UDP, and VXLAN -- */
    if (end < l4 + 8)
        return FALLBACK;
    int64_t sport = u16(b, l4), dport = u16(b, l4 + 2), udp_len = u16(b, l4 + 4);
    v[OUTER_SRC_PORT] = sport;
    v[OUTER_DST_PORT] = dport;
    int vxlan_port = on_ports(sport, dport, o->ports, o->port_count);
    if (!(vxlan_port && udp_len >= 16 && end - l4 >= 16)) {
        if (vxlan_port || on_ports(sport, dport, ALWAYS_CHECKED_PORTS, 2))
            return FALLBACK; /* a note (short VXLAN payload), or a port the user did not call VXLAN */
        v[OUTER_PROTO] = 17;
        return transport(b, v, l4, proto, ip_total - ihl, end);
    }
    /* Anything with a note (flags other than I, reserved bits) goes to Scapy. */
    if (b[l4 + 8] != 0x08 || (b[l4 + 9] | b[l4 + 10] | b[l4 + 11] | b[l4 + 15]) != 0)
        return FALLBACK;
    int64_t inner = l4 + 16;
    if (end < inner + 14)
        return FALLBACK;
    v[OUTER_PROTO] = 17;
    v[OUTER_UDP_LEN] = udp_len;
    v[OUTER_UDP_CHECKSUM] = u16(b, l4 + 6);
    if (o->checksums)
        v[OUTER_UDP_CHECKSUM_OK] = udp_checksum_ok(b, l3, l4, udp_len, end);
    v[IS_VXLAN] = 1;
    v[VNI] = u32(b, l4 + 12) >> 8;
    v[VXLAN_FLAGS] = 0x08;
    /* -- inner Ethernet and network layer -- */
    v[INNER_DST_MAC] = mac(b, inner);
    v[INNER_SRC_MAC] = mac(b, inner + 6);
    int64_t inner_type = u16(b, inner + 12);
    v[INNER_ETHERTYPE] = inner_type;
    if (inner_type == 0x0806)
        return arp(b, v, inner + 14, end) ? NONE : FALLBACK;
    if (inner_type != 0x0800)
        return FALLBACK;
    int64_t inner_l3 = inner + 14, inner_ihl = ipv4_header_length(b, inner_l3, end);
    if (inner_ihl == 0)
        return FALLBACK;
    int64_t inner_total = u16(b, inner_l3 + 2);
    v[INNER_SRC_IP] = u32(b, inner_l3 + 12);
    v[INNER_DST_IP] = u32(b, inner_l3 + 16);
    v[INNER_TTL] = b[inner_l3 + 8];
    v[INNER_IP_LEN] = inner_total;
    return transport(b, v, inner_l3 + inner_ihl, b[inner_l3 + 9], inner_total - inner_ihl, end);
}

static int starts_like_http(bytes_t b, int64_t at, int64_t end, const options_t *o) {
    for (Py_ssize_t k = 0; k < o->prefix_count; k++) {
        int64_t width = o->widths[k];
        const uint8_t *prefix = o->prefixes + 5 * k;
        if (end - at >= width && b[at] == prefix[0] && memcmp(b + at, prefix, (size_t)width) == 0)
            return 1;
    }
    return 0;
}

/* ---- HTTP heads --------------------------------------------------------------------------- */

enum { NOT_HTTP = 0, REQUEST = 1, RESPONSE = 2, ASK_PYTHON = 3 };
static const char *METHOD_NAMES[] = {"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"};

static int64_t find2(bytes_t p, int64_t from, int64_t n, int blank_line) {
    /* The first "\r\n" (or "\r\n\r\n" if blank_line) in p[from:n], or -1. */
    int64_t width = blank_line ? 4 : 2;
    for (int64_t i = from; i + width <= n; i++) {
        const uint8_t *q = memchr(p + i, '\r', (size_t)(n - i));
        if (q == NULL)
            return -1;
        i = q - p;
        if (i + width > n)
            return -1;
        if (p[i + 1] == '\n' && (!blank_line || (p[i + 2] == '\r' && p[i + 3] == '\n')))
            return i;
    }
    return -1;
}

static int digits(bytes_t p, int64_t from, int64_t to) {
    if (to <= from)
        return 0;
    for (int64_t i = from; i < to; i++)
        if (p[i] < '0' || p[i] > '9')
            return 0;
    return 1;
}

/* What parse_head (flannelcap/_http.py) makes of the head p[0:n]: a request, a response, or
 * neither (None) -- the same decision, byte for byte. */
static int head_kind(bytes_t p, int64_t n) {
    int64_t line = find2(p, 0, n, 0);
    if (line < 0)
        line = n;
    const uint8_t *space = memchr(p, ' ', (size_t)line);
    int64_t s1 = space ? space - p : -1;
    int64_t first_end = s1 >= 0 ? s1 : line;
    if (first_end >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        if (s1 < 0)
            return NOT_HTTP;
        const uint8_t *next = memchr(p + s1 + 1, ' ', (size_t)(line - s1 - 1));
        return digits(p, s1 + 1, next ? next - p : line) ? RESPONSE : NOT_HTTP;
    }
    if (s1 < 0)
        return NOT_HTTP;
    const uint8_t *next = memchr(p + s1 + 1, ' ', (size_t)(line - s1 - 1));
    if (next == NULL)
        return NOT_HTTP;
    int64_t s2 = next - p;
    if (line - s2 - 1 < 5 || memcmp(p + s2 + 1, "HTTP/", 5) != 0)
        return NOT_HTTP;
    for (size_t m = 0; m < sizeof METHOD_NAMES / sizeof METHOD_NAMES[0]; m++)
        if ((size_t)s1 == strlen(METHOD_NAMES[m]) && memcmp(p, METHOD_NAMES[m], (size_t)s1) == 0)
            return REQUEST;
    return NOT_HTTP;
}

static int is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0x0b || c == 0x0c; }

/* The Content-Length of the head p[0:n] as parse_head reads it: the value of the first
 * "\r\ncontent-length:" (any case), stripped, if it is all digits; -1 if none, -2 if too long
 * to be sure of here. */
static int64_t content_length(bytes_t p, int64_t n) {
    static const char NAME[] = "content-length:";
    const int64_t width = sizeof NAME - 1;
    for (int64_t at = find2(p, 0, n, 0); at >= 0; at = find2(p, at + 1, n, 0)) {
        if (at + 2 + width > n)
            return -1;
        int64_t k = 0;
        while (k < width && (p[at + 2 + k] | 0x20) == (uint8_t)NAME[k] && (NAME[k] != ':' || p[at + 2 + k] == ':') &&
               (NAME[k] != '-' || p[at + 2 + k] == '-'))
            k++;
        if (k < width)
            continue;
        int64_t from = at + 2 + width, to = find2(p, from, n, 0);
        if (to < 0)
            to = n;
        while (from < to && is_space(p[from]))
            from++;
        while (to > from && is_space(p[to - 1]))
            to--;
        if (!digits(p, from, to))
            return -1;
        if (to - from > 18)
            return -2;
        int64_t value = 0;
        for (int64_t i = from; i < to; i++)
            value = value * 10 + (p[i] - '0');
        return value;
    }
    return -1;
}

/* ---- the conversation set ----------------------------------------------------------------- */

/* Add a conversation's two keys to an open-addressing set of rows of two keys (NONE marks a
 * free row) of length mask+1. Returns 1 if it was new. */
static int insert_key(int64_t *table, uint64_t mask, int64_t first, int64_t second) {
    uint64_t mixed = (uint64_t)first * 0x9E3779B97F4A7C15ULL + (uint64_t)second * 0xC2B2AE3D27D4EB4FULL;
    for (uint64_t slot = (mixed ^ (mixed >> 31)) & mask;; slot = (slot + 1) & mask) {
        if (table[2 * slot] == NONE) {
            table[2 * slot] = first;
            table[2 * slot + 1] = second;
            return 1;
        }
        if (table[2 * slot] == first && table[2 * slot + 1] == second)
            return 0;
    }
}

/* Add the conversation of row v (a TCP or UDP packet): the protocol and its two ends, the lower
 * end first, as two keys. Returns 1 if it was new. */
static int add_conversation(int64_t *table, uint64_t mask, const int64_t *v) {
    int vxlan = v[IS_VXLAN] == 1;
    int64_t a_ip = v[vxlan ? INNER_SRC_IP : OUTER_SRC_IP], b_ip = v[vxlan ? INNER_DST_IP : OUTER_DST_IP];
    int64_t a_port = v[SRC_PORT], b_port = v[DST_PORT];
    if (a_ip > b_ip || (a_ip == b_ip && a_port > b_port)) {
        int64_t ip = a_ip, port = a_port;
        a_ip = b_ip, a_port = b_port, b_ip = ip, b_port = port;
    }
    return insert_key(table, mask, (v[PROTO] << 48) | (a_ip << 16) | a_port, (b_ip << 16) | b_port);
}

/* ---- Python glue ------------------------------------------------------------------------- */

/* A buffer of at least `count` items of `itemsize` bytes, or a ValueError naming it. */
static int check(Py_buffer *buffer, const char *name, Py_ssize_t itemsize, Py_ssize_t count) {
    if (buffer->itemsize != itemsize || buffer->len / itemsize < count) {
        PyErr_Format(PyExc_ValueError, "%s: need %zd items of %zd bytes, got %zd bytes of items of %zd", name, count,
                     itemsize, buffer->len, buffer->itemsize);
        return 0;
    }
    return 1;
}

/* Release the buffers; the result is None if all went well, else NULL (the error is set). */
static PyObject *release(Py_buffer **buffers, size_t count, PyObject *result) {
    for (size_t k = 0; k < count; k++)
        PyBuffer_Release(buffers[k]);
    return result;
}

static PyObject *py_walk_pcap(PyObject *self, PyObject *args) {
    Py_buffer buf, start, caplen, wire, seconds, fraction;
    Py_ssize_t size, max_record;
    int little;
    if (!PyArg_ParseTuple(args, "y*npnw*w*w*w*w*", &buf, &size, &little, &max_record, &start, &caplen, &wire,
                          &seconds, &fraction))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t room = start.len / 8;
    Py_buffer *outputs[] = {&start, &caplen, &wire, &seconds, &fraction};
    int ok = size >= 0 && size <= buf.len;
    if (!ok)
        PyErr_SetString(PyExc_ValueError, "size is outside the buffer");
    for (int k = 0; ok && k < 5; k++)
        ok = check(outputs[k], "walk_pcap output", 8, room);
    if (ok) {
        int64_t count, stop;
        Py_BEGIN_ALLOW_THREADS;
        count = walk(buf.buf, size, little, max_record, room, start.buf, caplen.buf, wire.buf, seconds.buf,
                     fraction.buf, &stop);
        Py_END_ALLOW_THREADS;
        result = Py_BuildValue("LL", (long long)count, (long long)stop);
    }
    PyBuffer_Release(&buf);
    return release(outputs, 5, result);
}

static PyObject *py_decode_frames(PyObject *self, PyObject *args) {
    Py_buffer buf, start, caplen, wire, ports, prefixes, widths, values, fallback, payload_start, http_hint;
    Py_ssize_t linktype, first_row, pad;
    int checksums;
    if (!PyArg_ParseTuple(args, "y*y*y*y*ny*py*y*w*w*nw*w*n", &buf, &start, &caplen, &wire, &linktype, &ports,
                          &checksums, &prefixes, &widths, &values, &fallback, &first_row, &payload_start,
                          &http_hint, &pad))
        return NULL;
    Py_buffer *all[] = {&buf, &start, &caplen, &wire, &ports, &prefixes, &widths, &values, &fallback, &payload_start,
                        &http_hint};
    Py_ssize_t n = start.len / 8, rows = values.len / (8 * FIELD_COUNT);
    int ok = check(&start, "start", 8, n) && check(&caplen, "caplen", 8, n) && check(&wire, "wire_len", 8, n) &&
             check(&ports, "ports", 8, 0) && check(&widths, "widths", 8, 0) &&
             check(&prefixes, "prefixes", 1, 5 * (widths.len / 8)) && check(&values, "values", 8, 0) &&
             check(&fallback, "fallback", 1, rows) && check(&payload_start, "payload_start", 8, n) &&
             check(&http_hint, "http_hint", 1, n);
    if (ok && (first_row < 0 || first_row + n > rows || pad < 64 || pad > buf.len)) {
        PyErr_SetString(PyExc_ValueError, "the frames do not fit the rows left, or the buffer has no padding");
        ok = 0;
    }
    if (ok) {
        options_t o = {ports.buf, ports.len / 8, checksums, prefixes.buf, widths.buf, widths.len / 8};
        bytes_t b = buf.buf;
        const int64_t *s = start.buf, *c = caplen.buf, *w = wire.buf;
        int64_t *vals = values.buf, *payload = payload_start.buf;
        uint8_t *fb = fallback.buf, *hint = http_hint.buf;
        int64_t size = buf.len - pad;
        Py_BEGIN_ALLOW_THREADS;
        /* Every field NONE (all bits set) at first: one large fill beats one per packet. */
        memset(vals + first_row * FIELD_COUNT, 0xFF, (size_t)n * FIELD_COUNT * sizeof(int64_t));
        for (Py_ssize_t i = 0; i < n; i++) {
            int64_t *v = vals + (first_row + i) * FIELD_COUNT, first = s[i], end = s[i] + c[i];
            payload[i] = NONE;
            hint[i] = 0;
            if (c[i] < w[i] || first < 0 || c[i] < 0 || end > size) {
                fb[first_row + i] = 1; /* snaplen-cut frames get a note from the Scapy decoder */
                continue;
            }
            int64_t found = decode_one(b, v, first, end, linktype, &o);
            fb[first_row + i] = found == FALLBACK;
            if (found >= 0) {
                payload[i] = found;
                hint[i] = v[PAYLOAD_LEN] > 0 && end - found >= 4 && starts_like_http(b, found, end, &o);
            }
        }
        Py_END_ALLOW_THREADS;
    }
    return release(all, sizeof all / sizeof all[0], ok ? Py_NewRef(Py_None) : NULL);
}

/* Check a conversation table: a power of two rows, at least twice what it will hold. */
static int check_table(Py_buffer *table, Py_ssize_t count, Py_ssize_t adding) {
    Py_ssize_t slots = table->len / 16;
    if (!check(table, "table", 8, 0))
        return 0;
    if (slots == 0 || (slots & (slots - 1)) != 0 || slots < 2 * (count + adding)) {
        PyErr_SetString(PyExc_ValueError, "the table must have a power of two rows, twice the conversations it holds");
        return 0;
    }
    return 1;
}

static PyObject *py_add_conversations(PyObject *self, PyObject *args) {
    Py_buffer table, values, rows;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "w*ny*y*", &table, &count, &values, &rows))
        return NULL;
    Py_buffer *all[] = {&table, &values, &rows};
    Py_ssize_t n = values.len / (8 * FIELD_COUNT);
    int ok = check(&values, "values", 8, 0) && check(&rows, "rows", 1, n) && check_table(&table, count, n);
    if (ok) {
        int64_t *t = table.buf;
        const int64_t *vals = values.buf;
        const uint8_t *take = rows.buf;
        uint64_t mask = (uint64_t)(table.len / 16) - 1;
        Py_BEGIN_ALLOW_THREADS;
        for (Py_ssize_t i = 0; i < n; i++) {
            const int64_t *v = vals + i * FIELD_COUNT;
            if (take[i] && (v[PROTO] == 6 || v[PROTO] == 17))
                count += add_conversation(t, mask, v);
        }
        Py_END_ALLOW_THREADS;
    }
    return release(all, 3, ok ? PyLong_FromSsize_t(count) : NULL);
}

static PyObject *py_insert_keys(PyObject *self, PyObject *args) {
    Py_buffer table, keys;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "w*ny*", &table, &count, &keys))
        return NULL;
    Py_buffer *all[] = {&table, &keys};
    Py_ssize_t n = keys.len / 16;
    int ok = check(&keys, "keys", 8, 2 * n) && check_table(&table, count, n);
    if (ok) {
        int64_t *t = table.buf;
        const int64_t *k = keys.buf;
        uint64_t mask = (uint64_t)(table.len / 16) - 1;
        for (Py_ssize_t i = 0; i < n; i++)
            count += insert_key(t, mask, k[2 * i], k[2 * i + 1]);
    }
    return release(all, 2, ok ? PyLong_FromSsize_t(count) : NULL);
}

static PyObject *py_http_scan(PyObject *self, PyObject *args) {
    Py_buffer buf, start, size, ends, kinds, lengths;
    if (!PyArg_ParseTuple(args, "y*y*y*w*w*w*", &buf, &start, &size, &ends, &kinds, &lengths))
        return NULL;
    Py_buffer *all[] = {&buf, &start, &size, &ends, &kinds, &lengths};
    Py_ssize_t n = start.len / 8;
    int ok = check(&start, "start", 8, n) && check(&size, "size", 8, n) && check(&ends, "ends", 8, n) &&
             check(&kinds, "kinds", 8, n) && check(&lengths, "lengths", 8, n);
    const int64_t *s = start.buf, *z = size.buf;
    for (Py_ssize_t i = 0; ok && i < n; i++)
        if (s[i] < 0 || z[i] < 0 || s[i] + z[i] > buf.len) {
            PyErr_SetString(PyExc_ValueError, "a payload lies outside the buffer");
            ok = 0;
        }
    if (ok) {
        int64_t *e = ends.buf, *k = kinds.buf, *l = lengths.buf;
        Py_BEGIN_ALLOW_THREADS;
        for (Py_ssize_t i = 0; i < n; i++) {
            bytes_t p = (bytes_t)buf.buf + s[i];
            e[i] = find2(p, 0, z[i], 1);
            k[i] = NOT_HTTP;
            l[i] = -1;
            if (e[i] >= 0) {
                k[i] = head_kind(p, e[i]);
                l[i] = content_length(p, e[i]);
                if (l[i] == -2)
                    k[i] = ASK_PYTHON;
            }
        }
        Py_END_ALLOW_THREADS;
    }
    return release(all, sizeof all / sizeof all[0], ok ? Py_NewRef(Py_None) : NULL);
}

static PyMethodDef METHODS[] = {
    {"walk_pcap", py_walk_pcap, METH_VARARGS, "Walk the pcap records of a piece (see _kernel.walk_pcap)."},
    {"decode_frames", py_decode_frames, METH_VARARGS, "Decode frames into rows (see _kernel.decode_frames)."},
    {"http_scan", py_http_scan, METH_VARARGS, "Find and classify HTTP heads (see _kernel.http_scan)."},
    {"insert_keys", py_insert_keys, METH_VARARGS, "Move conversation keys to a table (see _kernel.insert_keys)."},
    {"add_conversations", py_add_conversations, METH_VARARGS, "Add conversations (see _kernel.add_conversations)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "flannelcap._ckernel", NULL, -1, METHODS, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__ckernel(void) {
    PyObject *module = PyModule_Create(&MODULE);
    if (module == NULL)
        return NULL;
    PyObject *names = PyTuple_New(FIELD_COUNT);
    if (names == NULL)
        goto error;
    for (int f = 0; f < FIELD_COUNT; f++) {
        PyObject *name = PyUnicode_FromString(FIELD_NAMES[f]);
        if (name == NULL) {
            Py_DECREF(names);
            goto error;
        }
        PyTuple_SET_ITEM(names, f, name);
    }
    if (PyModule_AddObject(module, "FIELDS", names) < 0) {
        Py_DECREF(names);
        goto error;
    }
    if (PyModule_AddIntConstant(module, "NONE", NONE) < 0 || PyModule_AddIntConstant(module, "ARP_CODE", ARP_CODE) < 0)
        goto error;
    return module;
error:
    Py_DECREF(module);
    return NULL;
}
