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
 * IPv4 with TCP/UDP/ICMP or ARP; the tunnels of flannelcap/packets/tunnels.py on the ports the
 * caller gives: VXLAN (and its group-based policy) and Geneve without options around an inner
 * Ethernet/IPv4 or ARP frame (or Geneve around IPv4), flannel's udp backend and IP-in-IP around
 * IPv4, WireGuard's header. flannelcap/packets/kernel.py is the typed Python face of this module.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NONE (-1) /* "no such field" */
#define FALLBACK (-2)
#define ARP_CODE 1000 /* proto / outer_proto of an ARP packet (not an IP protocol number) */

/* The fields, in the order of a packet's row of values: the kernel fields of the table in
 * flannelcap/packets/fields.py, in its order (a test holds this enum and these names to it). */
enum {
    PACKET_TYPE, IFINDEX, OUTER_SRC_MAC, OUTER_DST_MAC, VLAN, OUTER_IP_VERSION, OUTER_SRC_IP, OUTER_DST_IP, OUTER_TTL,
    OUTER_IP_LEN, OUTER_PROTO, OUTER_SRC_PORT, OUTER_DST_PORT, OUTER_UDP_LEN, OUTER_UDP_CHECKSUM,
    OUTER_UDP_CHECKSUM_OK, IS_TUNNEL, ENCAP, IS_VXLAN, VNI, VXLAN_FLAGS, VXLAN_GBP, GBP_FLAGS, GENEVE_FLAGS,
    GENEVE_PROTOCOL, WG_TYPE, WG_SENDER, WG_RECEIVER, INNER_SRC_MAC, INNER_DST_MAC,
    INNER_ETHERTYPE, INNER_SRC_IP, INNER_DST_IP, INNER_TTL, INNER_IP_LEN, IP_ID, PROTO, SRC_PORT, DST_PORT,
    TCP_FLAGS, TCP_SEQ, TCP_ACK, TCP_WINDOW, PAYLOAD_LEN, PAYLOAD_HASH, ICMP_TYPE, ICMP_CODE, ARP_OP,
    ARP_SENDER_MAC, ARP_SENDER_IP, ARP_TARGET_MAC, ARP_TARGET_IP, FIELD_COUNT
};
static const char *FIELD_NAMES[FIELD_COUNT] = {
    "packet_type", "ifindex", "outer_src_mac", "outer_dst_mac", "vlan", "outer_ip_version", "outer_src_ip", "outer_dst_ip",
    "outer_ttl", "outer_ip_len", "outer_proto", "outer_src_port", "outer_dst_port", "outer_udp_len",
    "outer_udp_checksum", "outer_udp_checksum_ok", "is_tunnel", "encap", "is_vxlan", "vni", "vxlan_flags",
    "vxlan_gbp", "gbp_flags", "geneve_flags", "geneve_protocol", "wg_type", "wg_sender", "wg_receiver",
    "inner_src_mac", "inner_dst_mac", "inner_ethertype", "inner_src_ip", "inner_dst_ip",
    "inner_ttl", "inner_ip_len", "ip_id", "proto", "src_port", "dst_port", "tcp_flags", "tcp_seq", "tcp_ack",
    "tcp_window", "payload_len", "payload_hash", "icmp_type", "icmp_code", "arp_op", "arp_sender_mac",
    "arp_sender_ip", "arp_target_mac", "arp_target_ip",
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

/* The encapsulations (ENCAP values; their names are tunnels.ENCAP_NAMES) and the kinds of UDP
 * port rule (the caller's rules are kind << 16 | port; tunnels.UDP_KINDS). */
enum { ENCAP_VXLAN = 1, ENCAP_VXLAN_GBP, ENCAP_GENEVE, ENCAP_UDP_TUN, ENCAP_IPIP, ENCAP_WIREGUARD };
enum { ON_VXLAN = 1, ON_GENEVE, ON_UDP_TUN, ON_WIREGUARD };

typedef struct {
    const int64_t *ports; /* UDP port rules: kind << 16 | port */
    Py_ssize_t port_count;
    int checksums;        /* verify the outer UDP checksum of VXLAN packets */
    const uint8_t *prefixes; /* how HTTP heads begin: rows of 5 bytes ... */
    const int64_t *widths;   /* ... and how many of each row count */
    Py_ssize_t prefix_count;
} options_t;

/* The kind of tunnel a UDP datagram between these ports carries (its destination port's rule
 * first), or 0. */
static int tunnel_on(int64_t sport, int64_t dport, const int64_t *rules, Py_ssize_t count) {
    for (int pass = 0; pass < 2; pass++)
        for (Py_ssize_t k = 0; k < count; k++)
            if ((rules[k] & 0xFFFF) == (pass ? sport : dport))
                return (int)(rules[k] >> 16);
    return 0;
}

/* UDP on these that is not decodable VXLAN goes to Scapy (for its note). */
static const int64_t ALWAYS_CHECKED_PORTS[2] = {ON_VXLAN << 16 | 8472, ON_VXLAN << 16 | 4789};

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

/* The payload's fingerprint that copies of one packet share wherever they are seen: FNV-1a
 * (32 bits) of its first bytes as captured (at most PAYLOAD_HASH_BYTES; see fields.py). */
enum { PAYLOAD_HASH_BYTES = 32 };
static int64_t payload_hash(bytes_t b, int64_t at, int64_t length, int64_t end) {
    int64_t n = length < PAYLOAD_HASH_BYTES ? length : PAYLOAD_HASH_BYTES;
    n = n < end - at ? n : end - at;
    uint32_t h = 2166136261u;
    for (int64_t i = 0; i < n; i++)
        h = (h ^ b[at + i]) * 16777619u;
    return h;
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
        v[PAYLOAD_HASH] = payload_hash(b, at + doff, v[PAYLOAD_LEN], end);
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
            v[PAYLOAD_HASH] = payload_hash(b, at + 8, v[PAYLOAD_LEN], end);
            return at + 8;
        }
        v[ICMP_TYPE] = b[at];
        v[ICMP_CODE] = b[at + 1];
        v[PAYLOAD_HASH] = payload_hash(b, at + 4, length - 4, end); /* identifier, sequence, data */
        return NONE;
    }
    return FALLBACK;
}

static inline int64_t le32(bytes_t b, int64_t at) {
    return (int64_t)b[at] | ((int64_t)b[at + 1] << 8) | ((int64_t)b[at + 2] << 16) | ((int64_t)b[at + 3] << 24);
}

/* The IPv4 packet a tunnel carries at `at` (no Ethernet header: udp-tun, ipip, Geneve's 0x0800),
 * and its transport; as decode_one returns. */
static int64_t inner_ipv4(bytes_t b, int64_t *v, int64_t at, int64_t end) {
    int64_t ihl = ipv4_header_length(b, at, end);
    if (ihl == 0)
        return FALLBACK;
    int64_t total = u16(b, at + 2);
    v[INNER_SRC_IP] = u32(b, at + 12);
    v[INNER_DST_IP] = u32(b, at + 16);
    v[INNER_TTL] = b[at + 8];
    v[INNER_IP_LEN] = total;
    v[IP_ID] = u16(b, at + 4);
    return transport(b, v, at + ihl, b[at + 9], total - ihl, end);
}

/* The Ethernet frame a tunnel carries at `at` (VXLAN, Geneve's 0x6558): ARP or IPv4. */
static int64_t inner_ethernet(bytes_t b, int64_t *v, int64_t at, int64_t end) {
    if (end < at + 14)
        return FALLBACK;
    v[INNER_DST_MAC] = mac(b, at);
    v[INNER_SRC_MAC] = mac(b, at + 6);
    int64_t inner_type = u16(b, at + 12);
    v[INNER_ETHERTYPE] = inner_type;
    if (inner_type == 0x0806)
        return arp(b, v, at + 14, end) ? NONE : FALLBACK;
    if (inner_type != 0x0800)
        return FALLBACK;
    return inner_ipv4(b, v, at + 14, end);
}

/* Decode one frame b[start:end] into its row v. Returns the offset of the innermost TCP or UDP
 * payload, NONE if there is none, or FALLBACK. */
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
        v[PACKET_TYPE] = u16(b, start);
        if (u16(b, start + 4) == 6)
            v[OUTER_SRC_MAC] = mac(b, start + 6);
        ethertype = u16(b, start + 14);
        l3 = start + 16;
    } else if (linktype == LT_SLL2) {
        if (caplen < 20 || u16(b, start + 8) != 1)
            return FALLBACK;
        v[PACKET_TYPE] = b[start + 10];
        v[IFINDEX] = u32(b, start + 4);
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
        v[IS_TUNNEL] = 0;
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
    v[IP_ID] = u16(b, l3 + 4);
    v[IS_VXLAN] = 0;
    v[IS_TUNNEL] = 0;
    if (proto == 4) { /* IPv4 in IPv4: flannel's ipip backend, Calico's tunl0 */
        v[OUTER_PROTO] = 4;
        v[IS_TUNNEL] = 1;
        v[ENCAP] = ENCAP_IPIP;
        return inner_ipv4(b, v, l4, end);
    }
    if (proto != 17) {
        if (proto == 41)
            return FALLBACK; /* IPv6 in IPv4: Scapy */
        if (proto == 6 && end >= l4 + 4) {
            v[OUTER_SRC_PORT] = u16(b, l4);
            v[OUTER_DST_PORT] = u16(b, l4 + 2);
        }
        v[OUTER_PROTO] = proto;
        return transport(b, v, l4, proto, ip_total - ihl, end);
    }
    /* -- outer UDP, and the tunnel its ports say -- */
    if (end < l4 + 8)
        return FALLBACK;
    int64_t sport = u16(b, l4), dport = u16(b, l4 + 2), udp_len = u16(b, l4 + 4);
    v[OUTER_SRC_PORT] = sport;
    v[OUTER_DST_PORT] = dport;
    int kind = tunnel_on(sport, dport, o->ports, o->port_count);
    if (kind == 0) {
        if (tunnel_on(sport, dport, ALWAYS_CHECKED_PORTS, 2))
            return FALLBACK; /* a port the user did not call VXLAN: Scapy notes it */
        v[OUTER_PROTO] = 17;
        return transport(b, v, l4, proto, ip_total - ihl, end);
    }
    int64_t header = l4 + 8; /* the tunnel's header */
    v[OUTER_PROTO] = 17;
    v[OUTER_UDP_LEN] = udp_len;
    v[OUTER_UDP_CHECKSUM] = u16(b, l4 + 6);
    if (o->checksums)
        v[OUTER_UDP_CHECKSUM_OK] = udp_checksum_ok(b, l3, l4, udp_len, end);
    v[IS_TUNNEL] = 1;
    if (kind == ON_WIREGUARD) { /* the outer datagram is all there is to see */
        if (udp_len < 12 || end < header + 12 || b[header] < 1 || b[header] > 4 ||
            (b[header + 1] | b[header + 2] | b[header + 3]) != 0)
            return FALLBACK;
        int64_t type = b[header], first = le32(b, header + 4);
        v[ENCAP] = ENCAP_WIREGUARD;
        v[WG_TYPE] = type;
        if (type <= 2)
            v[WG_SENDER] = first;
        else
            v[WG_RECEIVER] = first;
        if (type == 2)
            v[WG_RECEIVER] = le32(b, header + 8);
        return transport(b, v, l4, proto, ip_total - ihl, end);
    }
    if (kind == ON_UDP_TUN) { /* flanneld's udp backend: the bare inner IPv4 packet */
        if (udp_len < 28)
            return FALLBACK;
        v[ENCAP] = ENCAP_UDP_TUN;
        return inner_ipv4(b, v, header, end);
    }
    if (udp_len < 16 || end - l4 < 16)
        return FALLBACK; /* too short for the header: a note */
    if (kind == ON_GENEVE) { /* RFC 8926, without options */
        if (b[header] != 0 || (b[header + 1] & 0x3F) != 0 || b[header + 7] != 0)
            return FALLBACK;
        v[ENCAP] = ENCAP_GENEVE;
        v[GENEVE_FLAGS] = b[header + 1];
        v[GENEVE_PROTOCOL] = u16(b, header + 2);
        v[VNI] = u32(b, header + 4) >> 8;
        if (v[GENEVE_PROTOCOL] == 0x0800)
            return inner_ipv4(b, v, header + 8, end);
        if (v[GENEVE_PROTOCOL] != 0x6558)
            return FALLBACK;
        return inner_ethernet(b, v, header + 8, end);
    }
    /* VXLAN. Anything with a note (flags other than I, or I and G; reserved bits) goes to Scapy. */
    if (b[header] == 0x08 && (b[header + 1] | b[header + 2] | b[header + 3] | b[header + 7]) == 0) {
        v[ENCAP] = ENCAP_VXLAN;
    } else if (b[header] == 0x88 && (b[header + 1] & ~0x48) == 0 && b[header + 7] == 0) {
        v[ENCAP] = ENCAP_VXLAN_GBP;
        v[GBP_FLAGS] = b[header + 1];
        v[VXLAN_GBP] = u16(b, header + 2);
    } else {
        return FALLBACK;
    }
    v[IS_VXLAN] = 1;
    v[VNI] = u32(b, header + 4) >> 8;
    v[VXLAN_FLAGS] = b[header];
    return inner_ethernet(b, v, header + 8, end);
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

/* What parse_head (flannelcap/packets/http.py) makes of the head p[0:n]: a request, a response, or
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

/* Where the value of the first header `name` (lower case, with its colon; any case in the head)
 * lies in the head p[0:n], stripped, as parse_head's _header finds it: 1 and [*from, *to), or 0. */
static int find_header(bytes_t p, int64_t n, const char *name, int64_t *from, int64_t *to) {
    const int64_t width = (int64_t)strlen(name);
    for (int64_t at = find2(p, 0, n, 0); at >= 0; at = find2(p, at + 1, n, 0)) {
        if (at + 2 + width > n)
            return 0;
        int64_t k = 0;
        for (; k < width; k++) {
            uint8_t c = p[at + 2 + k], want = (uint8_t)name[k];
            if (!(c == want || (want >= 'a' && want <= 'z' && (c | 0x20) == want)))
                break;
        }
        if (k < width)
            continue;
        int64_t start = at + 2 + width, end = find2(p, start, n, 0);
        if (end < 0)
            end = n;
        while (start < end && is_space(p[start]))
            start++;
        while (end > start && is_space(p[end - 1]))
            end--;
        *from = start, *to = end;
        return 1;
    }
    return 0;
}

/* The Content-Length of the head p[0:n] as parse_head reads it: the value of the first
 * "\r\ncontent-length:" (any case), stripped, if it is all digits; -1 if none, -2 if too long
 * to be sure of here. */
static int64_t content_length(bytes_t p, int64_t n) {
    int64_t from, to;
    if (!find_header(p, n, "content-length:", &from, &to) || !digits(p, from, to))
        return -1;
    if (to - from > 18)
        return -2;
    int64_t value = 0;
    for (int64_t i = from; i < to; i++)
        value = value * 10 + (p[i] - '0');
    return value;
}

/* The Content-Length of the head p[0:n] modulo 2^32, as the body range wants it: -1 if none or
 * not all digits (as parse_head reads it), else the value's low 32 bits (0 for a zero value). */
static int64_t content_length_low(bytes_t p, int64_t n) {
    int64_t exact = content_length(p, n), from = 0, to = 0;
    if (exact != -2)
        return exact < 0 ? -1 : exact % 4294967296LL;
    find_header(p, n, "content-length:", &from, &to);
    uint64_t value = 0;
    for (int64_t i = from; i < to; i++)
        value = (value * 10 + (uint64_t)(p[i] - '0')) & 0xFFFFFFFFULL;
    return (int64_t)value;
}

/* ---- dense ids for distinct keys -------------------------------------------------------- */

/* The dense id (0, 1, 2 ... in order of first sight) of each row of `width` keys (1 or 2), in an
 * open-addressing table of rows of width+1 int64s (the keys, then the id; NONE first key marks a
 * free row). A row whose first key is NONE gets -1, and so does an unseen row when !create.
 * Returns the number of ids given. */
static int64_t encode(int64_t *table, uint64_t mask, int64_t count, const int64_t *keys, Py_ssize_t n, int width,
                      int create, int64_t *ids) {
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t a = keys[width * i], b = width == 2 ? keys[width * i + 1] : 0;
        ids[i] = -1;
        if (a == NONE)
            continue;
        uint64_t mixed = (uint64_t)a * 0x9E3779B97F4A7C15ULL + (uint64_t)b * 0xC2B2AE3D27D4EB4FULL;
        for (uint64_t slot = (mixed ^ (mixed >> 31)) & mask;; slot = (slot + 1) & mask) {
            int64_t *row = table + (width + 1) * slot;
            if (row[0] == NONE) {
                if (create) {
                    row[0] = a;
                    if (width == 2)
                        row[1] = b;
                    row[width] = ids[i] = count++;
                }
                break;
            }
            if (row[0] == a && (width == 1 || row[1] == b)) {
                ids[i] = row[width];
                break;
            }
        }
    }
    return count;
}

/* Dense ids for the distinct byte strings p[at[i]:to[i]] (at[i] == -1: none, id -1), in order of
 * first sight, through an open-addressing table of `slots` rows (a power of two, more than n)
 * holding the first row of each string. first[id] is that row. Returns the number of ids. */
static int64_t dedupe(bytes_t p, const int64_t *at, const int64_t *to, Py_ssize_t n, int64_t *table, uint64_t mask,
                      int64_t *ids, int64_t *first) {
    int64_t count = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        ids[i] = -1;
        if (at[i] < 0)
            continue;
        uint64_t hash = 1469598103934665603ULL;
        for (int64_t j = at[i]; j < to[i]; j++)
            hash = (hash ^ p[j]) * 1099511628211ULL;
        for (uint64_t slot = hash & mask;; slot = (slot + 1) & mask) {
            int64_t row = table[slot];
            if (row < 0) {
                table[slot] = i;
                first[count] = i;
                ids[i] = count++;
                break;
            }
            if (to[row] - at[row] == to[i] - at[i] && memcmp(p + at[row], p + at[i], (size_t)(to[i] - at[i])) == 0) {
                ids[i] = ids[row];
                break;
            }
        }
    }
    return count;
}

/* ---- following HTTP streams --------------------------------------------------------------- */

/* One direction of a TCP stream, as the HTTP search follows it: a row of HTTP_STATE int64s in
 * an open-addressing table (KEY_A == NONE marks a free row). */
enum { KEY_A, KEY_B, LAST_SEQ, BODY_START, BODY_END, SLOW, HTTP_STATE };
enum { SKIP = 0, HEAD_REQUEST = 1, HEAD_RESPONSE = 2, TO_REASSEMBLER = 3, FRESH_TO_REASSEMBLER = 4 };
#define MOD32(x) ((int64_t)(((uint64_t)(x)) & 0xFFFFFFFFULL))

static uint64_t direction_home(int64_t a, int64_t b, uint64_t mask) {
    uint64_t mixed = (uint64_t)a * 0x9E3779B97F4A7C15ULL + (uint64_t)b * 0xC2B2AE3D27D4EB4FULL;
    return (mixed ^ (mixed >> 31)) & mask;
}

static int64_t *direction(int64_t *table, uint64_t mask, int64_t a, int64_t b, int create, int *created) {
    *created = 0;
    for (uint64_t slot = direction_home(a, b, mask);; slot = (slot + 1) & mask) {
        int64_t *row = table + HTTP_STATE * slot;
        if (row[KEY_A] == NONE) {
            if (!create)
                return NULL;
            row[KEY_A] = a, row[KEY_B] = b, row[LAST_SEQ] = NONE, row[BODY_START] = 0, row[BODY_END] = 0,
            row[SLOW] = 0;
            *created = 1;
            return row;
        }
        if (row[KEY_A] == a && row[KEY_B] == b)
            return row;
    }
}

/* Remove the direction (a, b) from the table, if there: the rows after it in its run move back
 * into the hole where their probe path passes it (linear probing's deletion, which leaves no
 * marker behind). Returns 1 if it was there. */
static int forget_direction(int64_t *table, uint64_t mask, int64_t a, int64_t b) {
    uint64_t hole = direction_home(a, b, mask);
    for (;; hole = (hole + 1) & mask) {
        const int64_t *row = table + HTTP_STATE * hole;
        if (row[KEY_A] == NONE)
            return 0;
        if (row[KEY_A] == a && row[KEY_B] == b)
            break;
    }
    for (uint64_t next = (hole + 1) & mask;; next = (next + 1) & mask) {
        int64_t *row = table + HTTP_STATE * next;
        if (row[KEY_A] == NONE)
            break;
        uint64_t home = direction_home(row[KEY_A], row[KEY_B], mask);
        if (((next - home) & mask) >= ((next - hole) & mask)) { /* the hole is on its path */
            memcpy(table + HTTP_STATE * hole, row, HTTP_STATE * sizeof(int64_t));
            hole = next;
        }
    }
    table[HTTP_STATE * hole + KEY_A] = NONE;
    return 1;
}

/* Directions that sent FIN or RST, oldest first: a ring of (time, key_a, key_b) rows. */
typedef struct {
    int64_t *rows;
    uint64_t mask;
    int64_t head, tail;
} closings_t;

/* The HTTP search over TCP segments (with payload, or closing: FIN or RST), in capture order,
 * by the rule of http.py's HttpReassembler (the model it agrees with): a head is looked for
 * only in segments that begin like one (hint); a head repeated or older than the last one is
 * not reported again; a segment inside a body that Content-Length announced is body; a head
 * not complete in its segment sends its direction, from then on, to the reassembler
 * (TO_REASSEMBLER, or FRESH_TO_REASSEMBLER where the direction is new: the reassembler's old
 * state for it is stale). A direction that closed is forgotten `kept` ns (capture time) after,
 * before the first segment that late. Returns how many directions the table holds. */
static int64_t follow(int64_t *table, uint64_t mask, int64_t count, bytes_t b, Py_ssize_t n, const int64_t *ka,
                      const int64_t *kb, const int64_t *seq, const uint8_t *hint, const int64_t *start,
                      const int64_t *size, const int64_t *time, const uint8_t *closing, int64_t kept,
                      closings_t *closed, int64_t *kind, int64_t *end) {
    for (Py_ssize_t i = 0; i < n; i++) {
        while (closed->head != closed->tail && closed->rows[3 * closed->head] < time[i] - kept) {
            const int64_t *gone = closed->rows + 3 * closed->head;
            count -= forget_direction(table, mask, gone[1], gone[2]);
            closed->head = (int64_t)(((uint64_t)closed->head + 1) & closed->mask);
        }
        kind[i] = SKIP;
        end[i] = NONE;
        if (closing[i]) {
            int64_t *note = closed->rows + 3 * closed->tail;
            note[0] = time[i], note[1] = ka[i], note[2] = kb[i];
            closed->tail = (int64_t)(((uint64_t)closed->tail + 1) & closed->mask);
        }
        int created;
        int64_t *row = direction(table, mask, ka[i], kb[i], hint[i], &created);
        if (row == NULL)
            continue; /* a segment of a stream with no head so far */
        count += created;
        if (row[SLOW]) {
            kind[i] = TO_REASSEMBLER;
            continue;
        }
        if (!hint[i])
            continue;
        if (!created && row[LAST_SEQ] != NONE && MOD32(row[LAST_SEQ] - seq[i]) < 0x80000000LL)
            continue; /* the same head again, or older: a retransmission */
        if (MOD32(seq[i] - row[BODY_START]) < MOD32(row[BODY_END] - row[BODY_START]))
            continue; /* inside a body announced by Content-Length */
        bytes_t p = b + start[i];
        int64_t head_end = find2(p, 0, size[i], 1);
        if (head_end < 0) {
            row[SLOW] = 1;
            kind[i] = created ? FRESH_TO_REASSEMBLER : TO_REASSEMBLER;
            continue;
        }
        row[LAST_SEQ] = seq[i];
        int what = head_kind(p, head_end);
        if (what == NOT_HTTP)
            continue;
        int64_t length = content_length_low(p, head_end);
        if (length > 0) {
            row[BODY_START] = MOD32(seq[i] + head_end + 4);
            row[BODY_END] = MOD32(row[BODY_START] + length);
        }
        kind[i] = what == REQUEST ? HEAD_REQUEST : HEAD_RESPONSE;
        end[i] = head_end;
    }
    return count;
}

/* The parts of an HTTP head p[0:n] (a request or a response, as head_kind decided), as parse_head
 * splits them: offsets [from, to) of method, path, version, reason and the values of Host,
 * X-Forwarded-For, X-Forwarded-Server and Content-Type (-1 where absent), and the status (-1 if
 * none, -2 if too long to hold here). */
enum { METHOD_AT, METHOD_TO, PATH_AT, PATH_TO, VERSION_AT, VERSION_TO, STATUS, REASON_AT, REASON_TO, HOST_AT,
       HOST_TO, FORWARDED_FOR_AT, FORWARDED_FOR_TO, FORWARDED_SERVER_AT, FORWARDED_SERVER_TO, CONTENT_TYPE_AT,
       CONTENT_TYPE_TO, HEAD_PARTS };
static void head_parts(bytes_t p, int64_t n, int request, int64_t *out) {
    for (int k = 0; k < HEAD_PARTS; k++)
        out[k] = -1;
    int64_t line = find2(p, 0, n, 0);
    if (line < 0)
        line = n;
    const uint8_t *space = memchr(p, ' ', (size_t)line);
    int64_t s1 = space ? space - p : line;
    const uint8_t *next = s1 < line ? memchr(p + s1 + 1, ' ', (size_t)(line - s1 - 1)) : NULL;
    int64_t s2 = next ? next - p : line;
    int64_t from, to;
    if (find_header(p, n, "content-type:", &from, &to))
        out[CONTENT_TYPE_AT] = from, out[CONTENT_TYPE_TO] = to;
    if (!request) {
        out[VERSION_AT] = 0, out[VERSION_TO] = s1;
        int64_t digits_count = s2 - s1 - 1, status = 0;
        if (digits_count > 18) {
            out[STATUS] = -2;
        } else {
            for (int64_t i = s1 + 1; i < s2; i++)
                status = status * 10 + (p[i] - '0');
            out[STATUS] = status;
        }
        out[REASON_AT] = s2 < line ? s2 + 1 : line, out[REASON_TO] = line;
        return;
    }
    out[METHOD_AT] = 0, out[METHOD_TO] = s1;
    out[PATH_AT] = s1 + 1, out[PATH_TO] = s2;
    out[VERSION_AT] = s2 + 1, out[VERSION_TO] = line;
    if (find_header(p, n, "host:", &from, &to))
        out[HOST_AT] = from, out[HOST_TO] = to;
    if (find_header(p, n, "x-forwarded-for:", &from, &to))
        out[FORWARDED_FOR_AT] = from, out[FORWARDED_FOR_TO] = to;
    if (find_header(p, n, "x-forwarded-server:", &from, &to))
        out[FORWARDED_SERVER_AT] = from, out[FORWARDED_SERVER_TO] = to;
}

/* ---- DNS ----------------------------------------------------------------------------------- */

/* The parts of a DNS message m[0:n] (RFC 1035), as flannelcap/packets/dns.py parses them: the
 * header's id, flags, QDCOUNT and ANCOUNT; the first question's type; the smallest TTL of the
 * answers read; and where in the text arena its name, the answers' addresses (A, AAAA) and the
 * CNAMEs' targets lie, each [from, to) or -1 where absent. A message shorter than its header
 * gets DNS_NONE in every part. Text goes into arena[*used:cap]; if it does not fit, *used goes
 * past cap and nothing more is written (the caller grows the arena and calls again). */
enum { DNS_ID, DNS_FLAGS, DNS_QDCOUNT, DNS_ANCOUNT, DNS_QTYPE, DNS_TTL, DNS_QNAME_AT, DNS_QNAME_TO, DNS_ADDR_AT,
       DNS_ADDR_TO, DNS_CNAME_AT, DNS_CNAME_TO, DNS_PARTS };
#define DNS_MAX_POINTERS 64
#define DNS_MAX_ANSWERS 64

typedef struct {
    uint8_t *arena;
    int64_t used, cap;
} text_out;

static void put_bytes(text_out *t, const void *p, int64_t n) {
    if (t->used + n <= t->cap)
        memcpy(t->arena + t->used, p, (size_t)n);
    t->used += n;
}

/* Append the name at m[at] (dots between labels, "<Root>" for the root) to t; its end (after
 * the first pointer, if any) goes to *after. Returns 0 where the name runs past the message,
 * points forwards (a possible loop), uses more than DNS_MAX_POINTERS or exceeds 255 bytes;
 * what was written of it then stays, and the caller rolls t->used back. */
static int dns_name(bytes_t m, int64_t n, int64_t at, text_out *t, int64_t *after) {
    int64_t end = -1, length = 0;
    int hops = 0, labels = 0;
    for (;;) {
        if (at >= n)
            return 0;
        uint8_t size = m[at];
        if (size == 0)
            break;
        if ((size & 0xC0) == 0xC0) {
            if (at + 1 >= n || hops >= DNS_MAX_POINTERS)
                return 0;
            if (end < 0)
                end = at + 2;
            int64_t target = ((int64_t)(size & 0x3F) << 8) | m[at + 1];
            if (target >= at)
                return 0;
            at = target, hops++;
            continue;
        }
        if (size & 0xC0)
            return 0;
        if (at + 1 + size > n)
            return 0;
        length += size + 1;
        if (length > 255)
            return 0;
        if (labels++)
            put_bytes(t, ".", 1);
        put_bytes(t, m + at + 1, size);
        at += 1 + size;
    }
    if (!labels)
        put_bytes(t, "<Root>", 6);
    *after = end >= 0 ? end : at + 1;
    return 1;
}

static uint32_t be16(bytes_t p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t be32(bytes_t p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

static void put_ipv4(text_out *t, bytes_t p) {
    char text[16];
    int k = snprintf(text, sizeof text, "%u.%u.%u.%u", p[0], p[1], p[2], p[3]);
    put_bytes(t, text, k);
}

/* IPv6 as RFC 5952 (and Python's ipaddress) writes it: lower-case hex, the longest run of two
 * or more zero groups (the first of equal ones) as "::". */
static void put_ipv6(text_out *t, bytes_t p) {
    uint32_t g[8];
    for (int i = 0; i < 8; i++)
        g[i] = be16(p + 2 * i);
    int best = -1, best_len = 0;
    for (int i = 0; i < 8;) {
        if (g[i]) {
            i++;
            continue;
        }
        int j = i;
        while (j < 8 && !g[j])
            j++;
        if (j - i > best_len && j - i >= 2)
            best = i, best_len = j - i;
        i = j;
    }
    char text[48];
    int k = 0;
    for (int i = 0; i < 8; i++) {
        if (i == best) {
            k += snprintf(text + k, sizeof text - (size_t)k, "::");
            i += best_len - 1;
            continue;
        }
        if (k && text[k - 1] != ':')
            text[k++] = ':';
        k += snprintf(text + k, sizeof text - (size_t)k, "%x", g[i]);
    }
    put_bytes(t, text, k);
}

static void dns_parts(bytes_t m, int64_t n, int64_t *out, text_out *t) {
    for (int k = 0; k < DNS_PARTS; k++)
        out[k] = -1;
    if (n < 12)
        return;
    out[DNS_ID] = be16(m), out[DNS_FLAGS] = be16(m + 2), out[DNS_QDCOUNT] = be16(m + 4);
    out[DNS_ANCOUNT] = be16(m + 6);
    int64_t at = 12, mark = t->used, after;
    if (!out[DNS_QDCOUNT])
        return;
    if (!dns_name(m, n, at, t, &after) || after + 4 > n) {
        t->used = mark;
        return;
    }
    out[DNS_QNAME_AT] = mark, out[DNS_QNAME_TO] = t->used;
    out[DNS_QTYPE] = be16(m + after);
    at = after + 4;
    for (int64_t q = 1; q < out[DNS_QDCOUNT]; q++) {
        int64_t before = t->used;
        int ok = dns_name(m, n, at, t, &after);
        t->used = before;
        if (!ok || after + 4 > n)
            return;
        at = after + 4;
    }
    int64_t answers = out[DNS_ANCOUNT] < DNS_MAX_ANSWERS ? out[DNS_ANCOUNT] : DNS_MAX_ANSWERS;
    int64_t ttl = -1, addr_at = t->used, addresses = 0;
    /* Addresses first, then CNAMEs: two passes over the answers keep each list contiguous. */
    for (int pass = 0; pass < 2; pass++) {
        int64_t pos = at, cnames = 0, list_at = t->used;
        for (int64_t a = 0; a < answers; a++) {
            int64_t before = t->used;
            int ok = dns_name(m, n, pos, t, &after);
            t->used = before;
            if (!ok || after + 10 > n)
                break;
            uint32_t type = be16(m + after), size = be16(m + after + 8);
            int64_t data = after + 10;
            if (data + size > n)
                break;
            if (pass == 0) {
                int64_t rttl = be32(m + after + 4);
                ttl = ttl < 0 || rttl < ttl ? rttl : ttl;
                if ((type == 1 && size == 4) || (type == 28 && size == 16)) {
                    if (addresses++)
                        put_bytes(t, ",", 1);
                    if (type == 1)
                        put_ipv4(t, m + data);
                    else
                        put_ipv6(t, m + data);
                }
            } else if (type == 5) {
                int64_t mark_name = t->used;
                if (cnames)
                    put_bytes(t, ",", 1);
                int64_t ignored;
                if (dns_name(m, n, data, t, &ignored))
                    cnames++;
                else
                    t->used = mark_name;
            }
            pos = data + size;
        }
        if (pass == 0) {
            out[DNS_TTL] = ttl;
            if (addresses)
                out[DNS_ADDR_AT] = addr_at, out[DNS_ADDR_TO] = t->used;
        } else if (cnames) {
            out[DNS_CNAME_AT] = list_at, out[DNS_CNAME_TO] = t->used;
        }
    }
}

/* ---- TLS hellos ------------------------------------------------------------------------------ */

/* The parts of the hello a TCP payload p[0:n] begins with, as flannelcap/packets/tls.py reads
 * it: the handshake type (1 ClientHello, 2 ServerHello; -1 if the payload is no hello), the
 * version (the highest supported_versions entry, or the server's choice, else the legacy
 * field), the server's cipher suite, and where in the text arena the SNI and the ALPN list
 * (comma-separated) lie. Reading stops at the first field that would pass the record or the
 * payload; what was read stays. Text goes into t as dns_parts does. */
enum { TLS_KIND, TLS_VERSION, TLS_CIPHER, TLS_SNI_AT, TLS_SNI_TO, TLS_ALPN_AT, TLS_ALPN_TO, TLS_PARTS };

static int grease(uint32_t v) { return (v & 0x0F0F) == 0x0A0A && (v >> 8) == (v & 0xFF); }

static void tls_extension(bytes_t d, int64_t size, uint32_t type, int64_t *out, text_out *t) {
    if (type == 0 && size >= 5 && d[2] == 0) {
        int64_t length = be16(d + 3);
        if (5 + length <= size) {
            out[TLS_SNI_AT] = t->used;
            put_bytes(t, d + 5, length);
            out[TLS_SNI_TO] = t->used;
        }
    } else if (type == 16 && size >= 2) {
        int64_t end = 2 + (int64_t)be16(d), at = 2, names = 0, start = t->used;
        if (end > size)
            end = size;
        while (at < end && at + 1 + d[at] <= end) {
            if (names++)
                put_bytes(t, ",", 1);
            put_bytes(t, d + at + 1, d[at]);
            at += 1 + d[at];
        }
        if (names)
            out[TLS_ALPN_AT] = start, out[TLS_ALPN_TO] = t->used;
    } else if (type == 43 && out[TLS_KIND] == 2 && size == 2) {
        out[TLS_VERSION] = be16(d);
    } else if (type == 43 && out[TLS_KIND] == 1 && size >= 1) {
        int64_t limit = 1 + d[0] < size ? 1 + d[0] : size, best = -1;
        for (int64_t i = 1; i + 2 <= limit; i += 2) {
            uint32_t v = be16(d + i);
            if (!grease(v) && (int64_t)v > best)
                best = v;
        }
        if (best >= 0)
            out[TLS_VERSION] = best;
    }
}

static void tls_parts(bytes_t p, int64_t n, int64_t *out, text_out *t) {
    for (int k = 0; k < TLS_PARTS; k++)
        out[k] = -1;
    if (n < 6 || p[0] != 22 || p[1] != 3 || (p[5] != 1 && p[5] != 2))
        return;
    int64_t end = 5 + (int64_t)be16(p + 3), kind = p[5], at = 9;
    if (end > n)
        end = n;
    out[TLS_KIND] = kind;
    if (at + 2 > end) {
        out[TLS_VERSION] = be16(p + 1);
        return;
    }
    out[TLS_VERSION] = be16(p + at);
    at += 2 + 32;
    if (at + 1 > end)
        return;
    at += 1 + p[at];
    if (at + 2 > end)
        return;
    if (kind == 1) {
        at += 2 + (int64_t)be16(p + at);
    } else {
        out[TLS_CIPHER] = be16(p + at);
        at += 2;
    }
    if (at + 1 > end)
        return;
    at += 1 + (kind == 1 ? p[at] : 0);
    if (at + 2 > end)
        return;
    int64_t extensions_end = at + 2 + (int64_t)be16(p + at);
    if (extensions_end > end)
        extensions_end = end;
    at += 2;
    while (at + 4 <= extensions_end) {
        uint32_t type = be16(p + at);
        int64_t size = be16(p + at + 2), data = at + 4;
        if (data + size > extensions_end)
            break;
        tls_extension(p + data, size, type, out, t);
        at = data + size;
    }
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

/* Add the conversation of a row (a TCP or UDP packet) whose field f is v[f * stride]: the
 * protocol and its two ends, the lower end first, as two keys. Returns 1 if it was new. */
static int add_conversation(int64_t *table, uint64_t mask, const int64_t *v, Py_ssize_t stride) {
    int inner = v[IS_TUNNEL * stride] == 1 && v[ENCAP * stride] != ENCAP_WIREGUARD;
    int64_t a_ip = v[(inner ? INNER_SRC_IP : OUTER_SRC_IP) * stride];
    int64_t b_ip = v[(inner ? INNER_DST_IP : OUTER_DST_IP) * stride];
    int64_t a_port = v[SRC_PORT * stride], b_port = v[DST_PORT * stride];
    if (a_ip > b_ip || (a_ip == b_ip && a_port > b_port)) {
        int64_t ip = a_ip, port = a_port;
        a_ip = b_ip, a_port = b_port, b_ip = ip, b_port = port;
    }
    return insert_key(table, mask, (v[PROTO * stride] << 48) | (a_ip << 16) | a_port, (b_ip << 16) | b_port);
}

/* ---- text rows ------------------------------------------------------------------------------ */

/* A program of parts, run once per row, writes one text per row (Info, a table line, a JSON
 * object, a CSV row). Each part is a row of PART_WORDS int64s:
 *   kind, argument (a column or literal index), when (a mask column index, or -1: always),
 *   escape (for labels), width (for PAD_START: >0 pad on the right, <0 on the left; for HEX:
 *   the fewest hexadecimal digits), missing (the literal written for a missing value), prefix
 *   (a literal written first, or -1).
 * Columns are int64 (INT, HEX, FLOAT bits), int32 codes (LABEL, with two more columns after it: the
 * labels' int64 offsets and their UTF-8 bytes), or uint8 masks. */
enum { P_LITERAL, P_INT, P_LABEL, P_FLOAT, P_FIXED6, P_PAD_START, P_PAD_END, P_HEX, PART_KINDS };
enum { PART_KIND, PART_ARG, PART_WHEN, PART_ESCAPE, PART_WIDTH, PART_MISSING, PART_PREFIX, PART_WORDS };
enum { ESCAPE_NONE, ESCAPE_JSON, ESCAPE_CSV };

typedef struct {
    char *data;
    size_t size, room;
    int failed; /* the text did not fit in room */
} text_t;

static inline int grow(text_t *t, size_t more) {
    if (t->size + more <= t->room)
        return 1;
    t->failed = 1;
    return 0;
}

/* Copy n bytes; short runs with fixed-size moves (which the compiler inlines), never reading or
 * writing outside [from, from + n) and [to, to + n). */
static inline void copy(char *to, const char *from, size_t n) {
    if (n >= 8 && n <= 16) {
        memcpy(to, from, 8);
        memcpy(to + n - 8, from + n - 8, 8);
    } else if (n >= 4 && n < 8) {
        memcpy(to, from, 4);
        memcpy(to + n - 4, from + n - 4, 4);
    } else if (n < 4) {
        for (size_t i = 0; i < n; i++)
            to[i] = from[i];
    } else
        memcpy(to, from, n);
}

static inline void put(text_t *t, const char *bytes, size_t n) {
    if (grow(t, n)) {
        copy(t->data + t->size, bytes, n);
        t->size += n;
    }
}

static const char PAIRS[201] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                               "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                               "8081828384858687888990919293949596979899";

static void put_int(text_t *t, int64_t v) {
    char digits[24];
    char *end = digits + sizeof digits, *p = end;
    int negative = v < 0;
    uint64_t u = negative ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
    while (u >= 100) {
        unsigned pair = (unsigned)(u % 100);
        u /= 100;
        p -= 2;
        memcpy(p, PAIRS + 2 * pair, 2);
    }
    if (u >= 10) {
        p -= 2;
        memcpy(p, PAIRS + 2 * u, 2);
    } else
        *--p = (char)('0' + u);
    if (negative)
        *--p = '-';
    put(t, p, (size_t)(end - p));
}

static const double POWERS[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* m * 10^-k, as strtod would read its text: exact operands, one rounding (|k| <= 22, m < 2^53). */
static int reads_back(int64_t m, int k, double x) {
    if (m >= (1LL << 53) || k > 22 || k < -22)
        return -1; /* cannot tell here */
    double back = k >= 0 ? (double)m / POWERS[k] : (double)m * POWERS[-k];
    return back == x;
}

/* The digits of m (no trailing zeros) times 10^-k, laid out as Python's float repr does. */
static void put_decimal(text_t *t, int negative, int64_t m, int k) {
    char digits[24];
    int count = 0;
    for (int64_t rest = m; rest; rest /= 10)
        digits[sizeof digits - 1 - count++] = (char)('0' + rest % 10);
    const char *d = digits + sizeof digits - count;
    int exponent = count - 1 - k; /* of the first digit */
    if (negative)
        put(t, "-", 1);
    if (exponent >= -4 && exponent < 16) {
        if (k <= 0) {
            put(t, d, (size_t)count);
            for (int z = 0; z < -k; z++)
                put(t, "0", 1);
            put(t, ".0", 2);
        } else if (count > k) {
            put(t, d, (size_t)(count - k));
            put(t, ".", 1);
            put(t, d + count - k, (size_t)k);
        } else {
            put(t, "0.", 2);
            for (int z = 0; z < k - count; z++)
                put(t, "0", 1);
            put(t, d, (size_t)count);
        }
        return;
    }
    put(t, d, 1);
    if (count > 1) {
        put(t, ".", 1);
        put(t, d + 1, (size_t)(count - 1));
    }
    char tail[8];
    int n = snprintf(tail, sizeof tail, "e%c%02d", exponent < 0 ? '-' : '+', exponent < 0 ? -exponent : exponent);
    put(t, tail, (size_t)n);
}

/* round(x * 10^k) to the nearest integer (ties to even), exactly, for 0 <= k <= 22 and
 * x * 10^k < 2^62: the product's rounding error is recovered with a fused multiply-add.
 * Returns -1 where it cannot tell here. */
static int64_t rounded_scaled(double x, int k) {
    if (k < 0 || k > 22)
        return -1;
    double power = POWERS[k], p = x * power;
    if (!(p < 4611686018427387904.0)) /* 2^62 */
        return -1;
    double error = fma(x, power, -p); /* x * 10^k is exactly p + error, |error| <= half p's last place */
    double whole = floor(p);
    int64_t m = (int64_t)whole;
    double fraction = p - whole; /* exact: 0, or (below 2^53) a multiple of p's last place, which is <= 1/2 */
    int up, tie;
    if (fraction == 0) { /* the exact fraction is error's */
        double below = floor(error);
        m += (int64_t)below;
        fraction = error - below;
        up = fraction > 0.5, tie = fraction == 0.5;
    } else { /* error is less than a last place, so it only breaks a tie */
        up = fraction > 0.5 || (fraction == 0.5 && error > 0);
        tie = fraction == 0.5 && error == 0;
    }
    if (tie)
        up = (m & 1) != 0;
    return m + up;
}

/* Whether x < 10^e, exactly (for |e| <= 22; else log10's word is taken). */
static int below_power(double x, int e) {
    if (e > 22 || e < -22)
        return 0;
    if (e >= 0)
        return x < POWERS[e];
    double power = POWERS[-e], p = x * power; /* x < 10^e where x * 10^-e < 1 */
    return p < 1 || (p == 1 && fma(x, power, -p) < 0);
}

/* The digits of x (x > 0, finite) at `precision` significant digits, correctly rounded, as
 * m * 10^-k, by the C library's printf (exact in glibc). Returns whether they read back as x. */
static int printed_digits(double x, int precision, int64_t *m, int *k) {
    char text[40];
    snprintf(text, sizeof text, "%.*e", precision - 1, x);
    int good = strtod(text, NULL) == x;
    int64_t digits = 0;
    const char *c = text;
    for (; *c && *c != 'e'; c++)
        if (*c >= '0' && *c <= '9')
            digits = digits * 10 + (*c - '0');
    int exponent = *c == 'e' ? atoi(c + 1) : 0;
    *m = digits, *k = precision - 1 - exponent;
    return good;
}

/* A double as Python's repr writes it: the fewest digits that read back as the same double
 * (the correctly rounded digits at 15, 16, then 17 significant digits: where a shorter text
 * reads back, the 15-digit rounding is that text followed by zeros). */
static void put_float(text_t *t, double v) {
    if (v != v || v - v != 0) { /* NaN, infinities: as json.dumps writes them */
        put(t, v != v ? "NaN" : v > 0 ? "Infinity" : "-Infinity", v != v ? 3 : v > 0 ? 8 : 9);
        return;
    }
    int negative = signbit(v) != 0;
    double x = fabs(v);
    if (x == 0) {
        put(t, negative ? "-0.0" : "0.0", negative ? 4 : 3);
        return;
    }
    int e = (int)floor(log10(x)); /* the first digit's exponent, corrected where log10 rounded */
    if (below_power(x, e))
        e--;
    else if (!below_power(x, e + 1))
        e++;
    int64_t m = 0;
    int k = 0, good = 0;
    for (int precision = 15; precision <= 17 && !good; precision++) {
        k = precision - 1 - e;
        m = rounded_scaled(x, k);
        if (m >= 0 && precision == 17)
            good = 1; /* seventeen correctly rounded digits always read back */
        else if (m >= 0 && m < (1LL << 53))
            good = reads_back(m, k, x) == 1;
        else
            good = printed_digits(x, precision, &m, &k);
    }
    while (m && m % 10 == 0)
        m /= 10, k--;
    put_decimal(t, negative, m, k);
}

/* A double with six decimals, as Python's format(v, ".6f") writes it (correctly rounded). */
static void put_fixed6(text_t *t, double v) {
    int64_t micro = v == v ? rounded_scaled(fabs(v), 6) : -1;
    if (micro < 0) { /* NaN, infinities and values past 2^62 microseconds: the C library's text */
        char text[40];
        int n = v != v ? snprintf(text, sizeof text, "nan") : snprintf(text, sizeof text, "%.6f", v);
        put(t, text, (size_t)(n < (int)sizeof text ? n : (int)sizeof text - 1));
        return;
    }
    if (signbit(v))
        put(t, "-", 1);
    put_int(t, micro / 1000000);
    char fraction[7];
    int64_t rest = micro % 1000000;
    for (int k = 5; k >= 0; k--, rest /= 10)
        fraction[k] = (char)('0' + rest % 10);
    fraction[6] = '.';
    put(t, fraction + 6, 1);
    put(t, fraction, 6);
}

/* Eight bytes at a time: whether any of them is below 0x20 or equal to one of the bytes
 * repeated in `a` or `b` (exact for "any", as the classic bit tricks are). */
static inline int any_special(uint64_t w, uint64_t a, uint64_t b) {
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t below = (w - 0x20 * ones) & ~w & highs;
    uint64_t x = w ^ a, y = w ^ b;
    return (below | ((x - ones) & ~x & highs) | ((y - ones) & ~y & highs)) != 0;
}

/* The length of the run at p (at most n bytes) of bytes that are none of those any_special
 * looks for: whole words skipped, the rest left to the caller's byte loop. */
static inline int64_t plain_run(const uint8_t *p, int64_t n, uint8_t a, uint8_t b) {
    const uint64_t ones = 0x0101010101010101ULL;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (any_special(w, a * ones, b * ones))
            break;
    }
    return i;
}

static void put_escaped(text_t *t, const uint8_t *p, int64_t n, int escape) {
    if (escape == ESCAPE_JSON) {
        put(t, "\"", 1);
        int64_t from = 0;
        for (int64_t i = plain_run(p, n, '"', '\\'); i < n; i++) {
            uint8_t c = p[i];
            if (c >= 0x20 && c != '"' && c != '\\')
                continue;
            put(t, (const char *)p + from, (size_t)(i - from));
            from = i + 1;
            char code[7];
            switch (c) {
            case '"': put(t, "\\\"", 2); break;
            case '\\': put(t, "\\\\", 2); break;
            case '\n': put(t, "\\n", 2); break;
            case '\r': put(t, "\\r", 2); break;
            case '\t': put(t, "\\t", 2); break;
            case '\b': put(t, "\\b", 2); break;
            case '\f': put(t, "\\f", 2); break;
            default:
                snprintf(code, sizeof code, "\\u%04x", c);
                put(t, code, 6);
            }
        }
        put(t, (const char *)p + from, (size_t)(n - from));
        put(t, "\"", 1);
        return;
    }
    if (escape == ESCAPE_CSV) {
        int quote = 0;
        for (int64_t i = plain_run(p, n, ',', '"'); i < n && !quote; i++)
            quote = p[i] == ',' || p[i] == '"' || p[i] == '\n' || p[i] == '\r';
        if (quote) {
            put(t, "\"", 1);
            for (int64_t i = 0; i < n; i++) {
                if (p[i] == '"')
                    put(t, "\"\"", 2);
                else
                    put(t, (const char *)p + i, 1);
            }
            put(t, "\"", 1);
            return;
        }
    }
    put(t, (const char *)p, (size_t)n);
}

typedef struct {
    const void *data;
    Py_ssize_t len, itemsize;
} column_t;

typedef struct {
    const uint8_t *data;
    Py_ssize_t len;
} literal_t;

/* A part, ready to run: its columns and literals resolved to pointers. */
typedef struct {
    int kind, escape;
    int64_t width;
    const uint8_t *when;
    const void *values;
    size_t value_size; /* the bytes of one row's value (0: none), to start at row `first` */
    const int64_t *offsets;
    const uint8_t *bytes;
    const char *literal, *prefix, *missing;
    size_t literal_len, prefix_len, missing_len;
} step_t;

/* Run the steps over rows [0, n); row r's text ends at ends[r]. Every row first checks that the
 * most one row can take (row_bound) is left, so that the writes need no check of their own.
 * Returns 0 if the text did not fit in t's room, with t->size set to about what all rows need. */
/* Every literal and label a run copies sits in one arena with SLACK readable bytes after it,
 * and every row leaves SLACK bytes of room at its end: short texts are then copied with one
 * or two fixed 16-byte moves, whatever their length (the bytes past it are written over next). */
enum { SLACK = 32 };

static inline void put_short(char *to, const char *from, size_t n) {
    if (n <= 16)
        memcpy(to, from, 16);
    else if (n <= 32)
        memcpy(to, from, 32);
    else
        memcpy(to, from, n);
}

static const uint64_t POWERS_OF_TEN[20] = {1ULL,
                                           10ULL,
                                           100ULL,
                                           1000ULL,
                                           10000ULL,
                                           100000ULL,
                                           1000000ULL,
                                           10000000ULL,
                                           100000000ULL,
                                           1000000000ULL,
                                           10000000000ULL,
                                           100000000000ULL,
                                           1000000000000ULL,
                                           10000000000000ULL,
                                           100000000000000ULL,
                                           1000000000000000ULL,
                                           10000000000000000ULL,
                                           100000000000000000ULL,
                                           1000000000000000000ULL,
                                           10000000000000000000ULL};

/* v in decimal at `to`, digit pairs written from the last one back; returns the length. */
static inline size_t write_int(char *to, int64_t v) {
    size_t sign = v < 0;
    uint64_t u = sign ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
    int estimate = ((64 - __builtin_clzll(u | 1)) * 1233) >> 12; /* log10 from the bit length */
    size_t digits = (size_t)estimate + (u >= POWERS_OF_TEN[estimate]) + (u == 0);
    *to = '-';
    char *p = to + sign + digits;
    while (u >= 100) {
        p -= 2;
        memcpy(p, PAIRS + 2 * (u % 100), 2);
        u /= 100;
    }
    if (u >= 10) {
        p -= 2;
        memcpy(p, PAIRS + 2 * u, 2);
    } else
        *--p = (char)('0' + u);
    return sign + digits;
}

/* "0x" and v's hexadecimal digits (of v as 64 unsigned bits), at least `width` of them; returns the length. */
static inline size_t write_hex(char *to, uint64_t v, int64_t width) {
    size_t digits = v ? (size_t)(67 - __builtin_clzll(v)) / 4 : 1;
    digits = digits > (size_t)width ? digits : (size_t)width;
    to[0] = '0', to[1] = 'x';
    for (size_t i = digits; i > 0; i--, v >>= 4)
        to[1 + i] = "0123456789abcdef"[v & 0xF];
    return 2 + digits;
}

static int format_rows(Py_ssize_t n, const step_t *steps, Py_ssize_t step_count, size_t row_bound, text_t *t,
                       int64_t *ends) {
    char *base = t->data;
    size_t size = 0;
    for (Py_ssize_t r = 0; r < n; r++) {
        if (t->room - size < row_bound) {
            t->failed = 1;
            t->size = (size / (size_t)(r + 1) + 1) * (size_t)n + row_bound; /* about what all rows need */
            return 0;
        }
        text_t row = {base, size, t->room, 0};
        size_t pad_from = 0;
        int64_t pad_width = 0;
        for (Py_ssize_t k = 0; k < step_count; k++) {
            const step_t *step = steps + k;
            if (step->when && !step->when[r])
                continue;
            if (step->prefix_len) {
                put_short(row.data + row.size, step->prefix, step->prefix_len);
                row.size += step->prefix_len;
            }
            switch (step->kind) {
            case P_LITERAL:
                put_short(row.data + row.size, step->literal, step->literal_len);
                row.size += step->literal_len;
                break;
            case P_INT: {
                int64_t v = ((const int64_t *)step->values)[r];
                if (v != NONE)
                    row.size += write_int(row.data + row.size, v);
                else if (step->missing) {
                    put_short(row.data + row.size, step->missing, step->missing_len);
                    row.size += step->missing_len;
                }
                break;
            }
            case P_HEX: {
                int64_t v = ((const int64_t *)step->values)[r];
                if (v != NONE)
                    row.size += write_hex(row.data + row.size, (uint64_t)v, step->width);
                else if (step->missing) {
                    put_short(row.data + row.size, step->missing, step->missing_len);
                    row.size += step->missing_len;
                }
                break;
            }
            case P_FLOAT:
                put_float(&row, ((const double *)step->values)[r]);
                break;
            case P_FIXED6:
                put_fixed6(&row, ((const double *)step->values)[r]);
                break;
            case P_LABEL: {
                int32_t code = ((const int32_t *)step->values)[r];
                if (code < 0) {
                    if (step->missing) {
                        put_short(row.data + row.size, step->missing, step->missing_len);
                        row.size += step->missing_len;
                    }
                    break;
                }
                const uint8_t *from = step->bytes + step->offsets[code];
                int64_t length = step->offsets[code + 1] - step->offsets[code];
                if (step->escape == ESCAPE_NONE) {
                    put_short(row.data + row.size, (const char *)from, (size_t)length);
                    row.size += (size_t)length;
                } else
                    put_escaped(&row, from, length, step->escape);
                break;
            }
            case P_PAD_START:
                pad_from = row.size, pad_width = step->width;
                break;
            case P_PAD_END: {
                int64_t chars = 0, width = pad_width < 0 ? -pad_width : pad_width;
                for (size_t i = pad_from; i < row.size; i++)
                    chars += ((uint8_t)row.data[i] & 0xC0) != 0x80;
                if (chars >= width)
                    break;
                size_t fill = (size_t)(width - chars);
                if (pad_width < 0) {
                    memmove(row.data + pad_from + fill, row.data + pad_from, row.size - pad_from);
                    memset(row.data + pad_from, ' ', fill);
                } else
                    memset(row.data + row.size, ' ', fill);
                row.size += fill;
                break;
            }
            }
        }
        size = row.size;
        ends[r] = (int64_t)size;
    }
    t->size = size;
    return 1;
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

/* Every payload [s[i], s[i] + z[i]) inside a buffer of `size` bytes, or a ValueError. */
static int payloads_inside(const int64_t *s, const int64_t *z, Py_ssize_t n, Py_ssize_t size) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (s[i] < 0 || z[i] < 0 || s[i] + z[i] > size) {
            PyErr_SetString(PyExc_ValueError, "a payload lies outside the buffer");
            return 0;
        }
    return 1;
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

enum { DECODE_BLOCK = 64 }; /* frames decoded before their fields go to the columns: 26 KiB of rows */

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
        /* Frames are decoded a block at a time into rows of their own (in the first level of
         * cache), then the block's fields are copied to their columns, each a run of contiguous
         * values: the batch is field-major, as the columns above use it, and no transposing
         * copy of the whole batch is made afterwards. */
        int64_t block[DECODE_BLOCK][FIELD_COUNT];
        for (Py_ssize_t at = 0; at < n; at += DECODE_BLOCK) {
            Py_ssize_t m = n - at < DECODE_BLOCK ? n - at : DECODE_BLOCK;
            memset(block, 0xFF, (size_t)m * sizeof block[0]); /* every field NONE (all bits set) at first */
            for (Py_ssize_t k = 0; k < m; k++) {
                Py_ssize_t i = at + k;
                int64_t *v = block[k], first = s[i], end = s[i] + c[i];
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
            for (int f = 0; f < FIELD_COUNT; f++) {
                int64_t *column = vals + f * rows + first_row + at;
                for (Py_ssize_t k = 0; k < m; k++)
                    column[k] = block[k][f];
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
    /* values: the batch, field-major (a row of `stride` values for each of the FIELD_COUNT fields);
     * the first n values of each row are the batch's frames */
    Py_ssize_t stride = values.len / (8 * FIELD_COUNT), n = rows.len;
    int ok = check(&values, "values", 8, 0) && check(&rows, "rows", 1, 0) && check_table(&table, count, n);
    if (ok && n > stride) {
        PyErr_SetString(PyExc_ValueError, "more rows marked than the values hold");
        ok = 0;
    }
    if (ok) {
        int64_t *t = table.buf;
        const int64_t *vals = values.buf;
        const uint8_t *take = rows.buf;
        uint64_t mask = (uint64_t)(table.len / 16) - 1;
        Py_BEGIN_ALLOW_THREADS;
        for (Py_ssize_t i = 0; i < n; i++) {
            const int64_t *v = vals + i;
            if (take[i] && (v[PROTO * stride] == 6 || v[PROTO * stride] == 17))
                count += add_conversation(t, mask, v, stride);
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
    ok = ok && payloads_inside(s, z, n, buf.len);
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

static PyObject *py_http_follow(PyObject *self, PyObject *args) {
    Py_buffer table, buf, ka, kb, seq, hint, start, size, time, closing, ring, kind, end;
    Py_ssize_t count;
    long long kept, head, tail;
    if (!PyArg_ParseTuple(args, "w*ny*y*y*y*y*y*y*y*y*Lw*LLw*w*", &table, &count, &buf, &ka, &kb, &seq, &hint, &start,
                          &size, &time, &closing, &kept, &ring, &head, &tail, &kind, &end))
        return NULL;
    Py_buffer *all[] = {&table, &buf, &ka, &kb, &seq, &hint, &start, &size, &time, &closing, &ring, &kind, &end};
    Py_ssize_t n = ka.len / 8, slots = table.len / (8 * HTTP_STATE), hints = 0, closings = 0;
    Py_ssize_t ring_rows = ring.len / 24;
    int ok = check(&ka, "key_a", 8, n) && check(&kb, "key_b", 8, n) && check(&seq, "seq", 8, n) &&
             check(&hint, "hint", 1, n) && check(&start, "start", 8, n) && check(&size, "size", 8, n) &&
             check(&time, "time", 8, n) && check(&closing, "closing", 1, n) && check(&kind, "kind", 8, n) &&
             check(&end, "end", 8, n) && check(&table, "table", 8, 0) && check(&ring, "ring", 8, 0);
    for (Py_ssize_t i = 0; ok && i < n; i++) { /* only a segment that begins like a head adds a direction */
        hints += ((const uint8_t *)hint.buf)[i] != 0;
        closings += ((const uint8_t *)closing.buf)[i] != 0;
    }
    if (ok && (slots == 0 || (slots & (slots - 1)) != 0 || slots < 2 * (count + hints))) {
        PyErr_SetString(PyExc_ValueError, "the table must have a power of two rows, twice the directions it holds");
        ok = 0;
    }
    if (ok && (ring_rows == 0 || (ring_rows & (ring_rows - 1)) != 0 || ring.len % 24 || head < 0 || tail < 0 ||
               head >= ring_rows || tail >= ring_rows || ((tail - head) & (ring_rows - 1)) + closings >= ring_rows)) {
        PyErr_SetString(PyExc_ValueError, "the ring of closings must have a power of two rows, room for these");
        ok = 0;
    }
    const int64_t *s = start.buf, *z = size.buf;
    ok = ok && payloads_inside(s, z, n, buf.len);
    if (ok) {
        closings_t closed = {ring.buf, (uint64_t)ring_rows - 1, head, tail};
        Py_BEGIN_ALLOW_THREADS;
        count = follow(table.buf, (uint64_t)slots - 1, count, buf.buf, n, ka.buf, kb.buf, seq.buf, hint.buf, s, z,
                       time.buf, closing.buf, kept, &closed, kind.buf, end.buf);
        Py_END_ALLOW_THREADS;
        head = closed.head, tail = closed.tail;
    }
    return release(all, sizeof all / sizeof all[0], ok ? Py_BuildValue("nLL", count, head, tail) : NULL);
}

static PyObject *py_http_regrow(PyObject *self, PyObject *args) {
    Py_buffer table, old;
    if (!PyArg_ParseTuple(args, "w*y*", &table, &old))
        return NULL;
    Py_buffer *all[] = {&table, &old};
    Py_ssize_t slots = table.len / (8 * HTTP_STATE), rows = old.len / (8 * HTTP_STATE);
    int ok = check(&table, "table", 8, 0) && check(&old, "old", 8, 0);
    if (ok && (slots == 0 || (slots & (slots - 1)) != 0 || slots < rows)) {
        PyErr_SetString(PyExc_ValueError, "the new table must have a power of two rows");
        ok = 0;
    }
    if (ok) {
        const int64_t *from = old.buf;
        for (Py_ssize_t r = 0; r < rows; r++) {
            const int64_t *row = from + HTTP_STATE * r;
            if (row[KEY_A] == NONE)
                continue;
            int created;
            int64_t *to = direction(table.buf, (uint64_t)slots - 1, row[KEY_A], row[KEY_B], 1, &created);
            memcpy(to, row, HTTP_STATE * sizeof(int64_t));
        }
    }
    return release(all, 2, ok ? Py_NewRef(Py_None) : NULL);
}

static PyObject *py_http_parts(PyObject *self, PyObject *args) {
    Py_buffer blob, offsets, kinds, out;
    if (!PyArg_ParseTuple(args, "y*y*y*w*", &blob, &offsets, &kinds, &out))
        return NULL;
    Py_buffer *all[] = {&blob, &offsets, &kinds, &out};
    Py_ssize_t n = kinds.len / 8;
    int ok = check(&offsets, "offsets", 8, n + 1) && check(&kinds, "kinds", 8, n) &&
             check(&out, "out", 8, n * HEAD_PARTS);
    const int64_t *o = offsets.buf;
    for (Py_ssize_t i = 0; ok && i < n; i++)
        if (o[i] < 0 || o[i] > o[i + 1] || o[i + 1] > blob.len) {
            PyErr_SetString(PyExc_ValueError, "a head lies outside the blob");
            ok = 0;
        }
    if (ok) {
        const int64_t *k = kinds.buf;
        int64_t *parts = out.buf;
        Py_BEGIN_ALLOW_THREADS;
        for (Py_ssize_t i = 0; i < n; i++)
            head_parts((bytes_t)blob.buf + o[i], o[i + 1] - o[i], k[i] == HEAD_REQUEST, parts + HEAD_PARTS * i);
        Py_END_ALLOW_THREADS;
    }
    return release(all, 4, ok ? Py_NewRef(Py_None) : NULL);
}

/* Run one payload parser (dns_parts, tls_parts) over the payloads blob[o[i]:o[i+1]], each into
 * its row of `width` parts of out, the texts into the arena; returns the arena bytes used. */
typedef void (*payload_parser)(bytes_t, int64_t, int64_t *, text_out *);

static PyObject *parse_payloads(PyObject *args, payload_parser parse, Py_ssize_t width) {
    Py_buffer blob, offsets, out, arena;
    if (!PyArg_ParseTuple(args, "y*y*w*w*", &blob, &offsets, &out, &arena))
        return NULL;
    Py_buffer *all[] = {&blob, &offsets, &out, &arena};
    Py_ssize_t n = offsets.len / 8 - 1;
    int ok = n >= 0 && check(&offsets, "offsets", 8, n + 1) && check(&out, "out", 8, n * width);
    const int64_t *o = offsets.buf;
    for (Py_ssize_t i = 0; ok && i < n; i++)
        if (o[i] < 0 || o[i] > o[i + 1] || o[i + 1] > blob.len) {
            PyErr_SetString(PyExc_ValueError, "a payload lies outside the blob");
            ok = 0;
        }
    text_out t = {arena.buf, 0, arena.len};
    if (ok) {
        int64_t *parts = out.buf;
        Py_BEGIN_ALLOW_THREADS;
        for (Py_ssize_t i = 0; i < n; i++)
            parse((bytes_t)blob.buf + o[i], o[i + 1] - o[i], parts + width * i, &t);
        Py_END_ALLOW_THREADS;
    }
    return release(all, 4, ok ? PyLong_FromLongLong(t.used) : NULL);
}

static PyObject *py_dns_parts(PyObject *self, PyObject *args) { return parse_payloads(args, dns_parts, DNS_PARTS); }

static PyObject *py_tls_parts(PyObject *self, PyObject *args) { return parse_payloads(args, tls_parts, TLS_PARTS); }

static PyObject *py_encode(PyObject *self, PyObject *args) {
    Py_buffer table, keys, ids;
    Py_ssize_t count;
    int width, create;
    if (!PyArg_ParseTuple(args, "w*ny*ipw*", &table, &count, &keys, &width, &create, &ids))
        return NULL;
    Py_buffer *all[] = {&table, &keys, &ids};
    int ok = width == 1 || width == 2;
    if (!ok)
        PyErr_SetString(PyExc_ValueError, "keys are one or two int64s a row");
    Py_ssize_t n = ok ? keys.len / (8 * width) : 0, slots = ok ? table.len / (8 * (width + 1)) : 0;
    ok = ok && check(&keys, "keys", 8, n * width) && check(&ids, "ids", 8, n) && check(&table, "table", 8, 0);
    if (ok && (slots == 0 || (slots & (slots - 1)) != 0 || slots < 2 * (count + (create ? n : 0)))) {
        PyErr_SetString(PyExc_ValueError, "the table must have a power of two rows, twice the keys it holds");
        ok = 0;
    }
    if (ok) {
        Py_BEGIN_ALLOW_THREADS;
        count = encode(table.buf, (uint64_t)slots - 1, count, keys.buf, n, width, create, ids.buf);
        Py_END_ALLOW_THREADS;
    }
    return release(all, 3, ok ? PyLong_FromSsize_t(count) : NULL);
}

static PyObject *py_format_rows(PyObject *self, PyObject *args) {
    Py_ssize_t n, first = 0;
    Py_buffer parts, ends, out;
    PyObject *column_list, *literal_list;
    if (!PyArg_ParseTuple(args, "ny*O!O!w*w*|n", &n, &parts, &PyList_Type, &column_list, &PyList_Type, &literal_list,
                          &ends, &out, &first))
        return NULL;
    Py_ssize_t end = first + n; /* rows [first, end) are written */
    Py_ssize_t column_count = PyList_GET_SIZE(column_list), literal_count = PyList_GET_SIZE(literal_list);
    Py_ssize_t part_count = parts.len / (8 * PART_WORDS);
    Py_buffer *views = PyMem_Calloc((size_t)(column_count + literal_count) + 1, sizeof(Py_buffer));
    column_t *columns = PyMem_Calloc((size_t)column_count + 1, sizeof(column_t));
    literal_t *literals = PyMem_Calloc((size_t)literal_count + 1, sizeof(literal_t));
    Py_ssize_t held = 0;
    PyObject *result = NULL;
    int ok = views && columns && literals && check(&ends, "ends", 8, n) && check(&parts, "parts", 8, 0);
    if (ok && (first < 0 || n < 0 || first > PY_SSIZE_T_MAX / 16 - n)) {
        PyErr_SetString(PyExc_ValueError, "format_rows: first and n must not be negative");
        ok = 0;
    }
    if (!(views && columns && literals))
        PyErr_NoMemory();
    for (Py_ssize_t k = 0; ok && k < column_count + literal_count; k++) {
        PyObject *item = k < column_count ? PyList_GET_ITEM(column_list, k) : PyList_GET_ITEM(literal_list, k - column_count);
        ok = PyObject_GetBuffer(item, &views[k], PyBUF_SIMPLE | PyBUF_FORMAT) == 0;
        if (!ok)
            break;
        held++;
        if (k < column_count) {
            columns[k].data = views[k].buf, columns[k].len = views[k].len;
            columns[k].itemsize = views[k].itemsize;
        } else {
            literals[k - column_count].data = views[k].buf, literals[k - column_count].len = views[k].len;
        }
    }
    /* Every part must name columns and literals that exist and are long enough for n rows. */
    for (Py_ssize_t k = 0; ok && k < part_count; k++) {
        const int64_t *part = (const int64_t *)parts.buf + PART_WORDS * k;
        int64_t kind = part[PART_KIND], arg = part[PART_ARG], when = part[PART_WHEN], missing = part[PART_MISSING];
        int good = kind >= 0 && kind < PART_KINDS && missing < literal_count && when < column_count &&
                   part[PART_PREFIX] < literal_count;
        if (good && when >= 0)
            good = columns[when].len >= end;
        if (good && kind == P_LITERAL)
            good = arg >= 0 && arg < literal_count;
        if (good && (kind == P_INT || kind == P_HEX || kind == P_FLOAT || kind == P_FIXED6))
            good = arg >= 0 && arg < column_count && columns[arg].len >= 8 * end;
        if (good && kind == P_HEX)
            good = part[PART_WIDTH] >= 0 && part[PART_WIDTH] <= 16;
        if (good && kind == P_LABEL) {
            good = arg >= 0 && arg + 2 < column_count && columns[arg].len >= 4 * end;
            if (good) { /* every code within the labels, every label within the bytes */
                const int32_t *codes = columns[arg].data;
                const int64_t *offsets = columns[arg + 1].data;
                Py_ssize_t labels = columns[arg + 1].len / 8 - 1;
                for (Py_ssize_t r = first; good && r < end; r++)
                    good = codes[r] < labels;
                for (Py_ssize_t j = 0; good && j < labels; j++)
                    good = offsets[j] >= 0 && offsets[j] <= offsets[j + 1] && offsets[j + 1] <= columns[arg + 2].len;
            }
        }
        if (!good) {
            PyErr_Format(PyExc_ValueError, "format_rows: part %zd does not fit its columns", k);
            ok = 0;
        }
    }
    step_t *steps = ok ? PyMem_Calloc((size_t)part_count + 1, sizeof(step_t)) : NULL;
    if (ok && steps == NULL) {
        PyErr_NoMemory();
        ok = 0;
    }
    size_t row_bound = 0;
    for (Py_ssize_t k = 0; ok && k < part_count; k++) {
        const int64_t *part = (const int64_t *)parts.buf + PART_WORDS * k;
        step_t *step = steps + k;
        int64_t arg = part[PART_ARG];
        step->kind = (int)part[PART_KIND], step->escape = (int)part[PART_ESCAPE], step->width = part[PART_WIDTH];
        step->when = part[PART_WHEN] >= 0 ? (const uint8_t *)columns[part[PART_WHEN]].data + first : NULL;
        if (part[PART_PREFIX] >= 0)
            step->prefix = (const char *)literals[part[PART_PREFIX]].data,
            step->prefix_len = (size_t)literals[part[PART_PREFIX]].len;
        if (part[PART_MISSING] >= 0)
            step->missing = (const char *)literals[part[PART_MISSING]].data,
            step->missing_len = (size_t)literals[part[PART_MISSING]].len;
        size_t most = step->missing_len; /* the most this part writes in one row */
        switch (step->kind) {
        case P_LITERAL:
            step->literal = (const char *)literals[arg].data, step->literal_len = (size_t)literals[arg].len;
            most = step->literal_len;
            break;
        case P_INT:
        case P_HEX:
            step->values = columns[arg].data, step->value_size = 8;
            most = most > 24 ? most : 24;
            break;
        case P_FLOAT:
        case P_FIXED6:
            step->values = columns[arg].data, step->value_size = 8;
            most = most > 40 ? most : 40;
            break;
        case P_LABEL: {
            step->values = columns[arg].data, step->value_size = 4, step->offsets = columns[arg + 1].data;
            step->bytes = columns[arg + 2].data;
            size_t longest = 0;
            for (Py_ssize_t j = 0; j + 1 < columns[arg + 1].len / 8; j++) {
                size_t length = (size_t)(step->offsets[j + 1] - step->offsets[j]);
                longest = length > longest ? length : longest;
            }
            longest = step->escape == ESCAPE_NONE ? longest : 6 * longest + 2; /* \u00XX, quotes */
            most = most > longest ? most : longest;
            break;
        }
        case P_PAD_START:
            most = (size_t)(step->width < 0 ? -step->width : step->width);
            break;
        default:
            most = 0;
        }
        row_bound += step->prefix_len + most;
        if (step->value_size) /* row 0 of the run is row `first` of the columns */
            step->values = (const char *)step->values + (size_t)first * step->value_size;
    }
    /* The arena: each literal, and the bytes of each label copied as they are, with SLACK after. */
    char *arena = NULL, **literal_at = NULL;
    if (ok) {
        size_t size = 0;
        for (Py_ssize_t k = 0; k < literal_count; k++)
            size += (size_t)literals[k].len + SLACK;
        for (Py_ssize_t k = 0; k < part_count; k++) {
            if (steps[k].kind != P_LABEL || steps[k].escape != ESCAPE_NONE)
                continue;
            Py_ssize_t labels = columns[((const int64_t *)parts.buf)[PART_WORDS * k + PART_ARG] + 1].len / 8 - 1;
            size += (size_t)steps[k].offsets[labels] + SLACK; /* the labels' bytes */
        }
        arena = PyMem_Calloc(size + 1, 1);
        literal_at = PyMem_Calloc((size_t)literal_count + 1, sizeof(char *));
        if (arena == NULL || literal_at == NULL) {
            PyErr_NoMemory();
            ok = 0;
        }
        char *at = arena;
        for (Py_ssize_t k = 0; ok && k < literal_count; k++) {
            memcpy(at, literals[k].data, (size_t)literals[k].len);
            literal_at[k] = at;
            at += literals[k].len + SLACK;
        }
        for (Py_ssize_t k = 0; ok && k < part_count; k++) {
            step_t *step = steps + k;
            const int64_t *part = (const int64_t *)parts.buf + PART_WORDS * k;
            if (part[PART_PREFIX] >= 0)
                step->prefix = literal_at[part[PART_PREFIX]];
            if (part[PART_MISSING] >= 0)
                step->missing = literal_at[part[PART_MISSING]];
            if (step->kind == P_LITERAL)
                step->literal = literal_at[part[PART_ARG]];
            if (step->kind == P_LABEL && step->escape == ESCAPE_NONE) {
                size_t length = (size_t)step->offsets[columns[part[PART_ARG] + 1].len / 8 - 1];
                memcpy(at, step->bytes, length);
                step->bytes = (const uint8_t *)at;
                at += length + SLACK;
            }
        }
        row_bound += SLACK;
    }
    if (ok) {
        text_t t = {out.buf, 0, (size_t)out.len, 0};
        int done;
        Py_BEGIN_ALLOW_THREADS;
        done = format_rows(n, steps, part_count, row_bound, &t, ends.buf);
        Py_END_ALLOW_THREADS;
        result = PyLong_FromSsize_t(done ? (Py_ssize_t)t.size : -(Py_ssize_t)t.size - 1);
    }
    PyMem_Free(arena);
    PyMem_Free(literal_at);
    PyMem_Free(steps);
    for (Py_ssize_t k = 0; k < held; k++)
        PyBuffer_Release(&views[k]);
    PyMem_Free(views);
    PyMem_Free(columns);
    PyMem_Free(literals);
    PyBuffer_Release(&parts);
    PyBuffer_Release(&ends);
    PyBuffer_Release(&out);
    return result;
}

static PyObject *py_dedupe(PyObject *self, PyObject *args) {
    Py_buffer blob, at, to, ids, first;
    if (!PyArg_ParseTuple(args, "y*y*y*w*w*", &blob, &at, &to, &ids, &first))
        return NULL;
    Py_buffer *all[] = {&blob, &at, &to, &ids, &first};
    Py_ssize_t n = at.len / 8;
    int ok = check(&to, "to", 8, n) && check(&ids, "ids", 8, n) && check(&first, "first", 8, n);
    const int64_t *a = at.buf, *z = to.buf;
    for (Py_ssize_t i = 0; ok && i < n; i++)
        if (a[i] >= 0 && (a[i] > z[i] || z[i] > blob.len)) {
            PyErr_SetString(PyExc_ValueError, "a string lies outside the blob");
            ok = 0;
        }
    PyObject *result = NULL;
    if (ok) {
        uint64_t slots = 16;
        while (slots < 2 * (uint64_t)n)
            slots *= 2;
        int64_t *table = PyMem_Malloc(slots * sizeof(int64_t));
        if (table == NULL)
            PyErr_NoMemory();
        else {
            memset(table, 0xFF, slots * sizeof(int64_t));
            int64_t count;
            Py_BEGIN_ALLOW_THREADS;
            count = dedupe(blob.buf, a, z, n, table, slots - 1, ids.buf, first.buf);
            Py_END_ALLOW_THREADS;
            PyMem_Free(table);
            result = PyLong_FromLongLong((long long)count);
        }
    }
    return release(all, 5, result);
}

/* Each value where present into data of `width` bytes, and a 1 into the mask where it is NONE
   (missing); nothing else is written: the rows of a fresh (zeroed) buffer that a column never
   uses stay untouched pages, its data where missing, its mask where present. */
#define SPLIT_MISSING(TYPE)                                                                                            \
    for (Py_ssize_t i = 0; i < n; i++) {                                                                               \
        if (values[i] == NONE)                                                                                         \
            mask[i] = 1;                                                                                               \
        else {                                                                                                         \
            ((TYPE *)data)[i] = (TYPE)values[i];                                                                       \
            present++;                                                                                                 \
        }                                                                                                              \
    }

static Py_ssize_t split_missing(const int64_t *values, Py_ssize_t n, void *data, int width, uint8_t *mask) {
    Py_ssize_t present = 0;
    switch (width) {
    case 1:
        SPLIT_MISSING(int8_t);
        break;
    case 2:
        SPLIT_MISSING(int16_t);
        break;
    case 4:
        SPLIT_MISSING(int32_t);
        break;
    default:
        SPLIT_MISSING(int64_t);
    }
    return present;
}

static PyObject *py_split_missing(PyObject *self, PyObject *args) {
    Py_buffer values, data, mask;
    if (!PyArg_ParseTuple(args, "y*w*w*", &values, &data, &mask))
        return NULL;
    Py_buffer *all[] = {&values, &data, &mask};
    Py_ssize_t n = values.len / 8;
    int width = (int)data.itemsize;
    int ok = check(&values, "values", 8, n) && check(&mask, "mask", 1, n);
    if (ok && ((width != 1 && width != 2 && width != 4 && width != 8) || data.len / width < n)) {
        PyErr_SetString(PyExc_ValueError, "data: need as many integers of 1, 2, 4 or 8 bytes as values");
        ok = 0;
    }
    PyObject *result = NULL;
    if (ok) {
        Py_ssize_t present;
        Py_BEGIN_ALLOW_THREADS;
        present = split_missing(values.buf, n, data.buf, width, mask.buf);
        Py_END_ALLOW_THREADS;
        result = PyLong_FromSsize_t(present);
    }
    return release(all, 3, result);
}

/* The byte ranges [starts[i], starts[i] + lengths[i]) of buf, one after the other, as a new bytes
 * object; offsets (n + 1) where each begins and the end. An empty range may start anywhere. */
static PyObject *py_gather(PyObject *self, PyObject *args) {
    Py_buffer buf, starts, lengths, offsets;
    if (!PyArg_ParseTuple(args, "y*y*y*w*", &buf, &starts, &lengths, &offsets))
        return NULL;
    Py_buffer *all[] = {&buf, &starts, &lengths, &offsets};
    Py_ssize_t n = starts.len / 8;
    const int64_t *s = starts.buf, *z = lengths.buf;
    int ok = check(&lengths, "lengths", 8, n) && check(&offsets, "offsets", 8, n + 1);
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        if (z[i] < 0 || (z[i] > 0 && (s[i] < 0 || s[i] > buf.len - z[i]))) {
            PyErr_SetString(PyExc_ValueError, "a range lies outside the buffer");
            ok = 0;
        }
        total += z[i];
    }
    PyObject *joined = ok ? PyBytes_FromStringAndSize(NULL, total) : NULL;
    if (joined != NULL) {
        int64_t *at = offsets.buf;
        const uint8_t *from = buf.buf;
        uint8_t *to = (uint8_t *)PyBytes_AS_STRING(joined);
        Py_BEGIN_ALLOW_THREADS;
        at[0] = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (z[i] > 0)
                memcpy(to + at[i], from + s[i], (size_t)z[i]);
            at[i + 1] = at[i] + z[i];
        }
        Py_END_ALLOW_THREADS;
    }
    return release(all, 4, joined);
}

static PyMethodDef METHODS[] = {
    {"walk_pcap", py_walk_pcap, METH_VARARGS, "Walk the pcap records of a piece (see _kernel.walk_pcap)."},
    {"decode_frames", py_decode_frames, METH_VARARGS, "Decode frames into rows (see _kernel.decode_frames)."},
    {"http_scan", py_http_scan, METH_VARARGS, "Find and classify HTTP heads (see _kernel.http_scan)."},
    {"insert_keys", py_insert_keys, METH_VARARGS, "Move conversation keys to a table (see _kernel.insert_keys)."},
    {"add_conversations", py_add_conversations, METH_VARARGS, "Add conversations (see _kernel.add_conversations)."},
    {"http_follow", py_http_follow, METH_VARARGS, "Follow HTTP streams over segments (see _kernel.http_follow)."},
    {"http_regrow", py_http_regrow, METH_VARARGS, "Move HTTP stream states to a larger table (see _kernel)."},
    {"format_rows", py_format_rows, METH_VARARGS, "Text rows from columns (see packets.text.Program)."},
    {"dedupe", py_dedupe, METH_VARARGS, "Dense ids for distinct byte strings (see _kernel.dedupe)."},
    {"encode", py_encode, METH_VARARGS, "Dense ids for distinct keys (see _kernel.Encoder)."},
    {"http_parts", py_http_parts, METH_VARARGS, "Split HTTP heads into their parts (see _kernel.http_parts)."},
    {"dns_parts", py_dns_parts, METH_VARARGS, "Split DNS messages into their parts (see _kernel.dns_parts)."},
    {"tls_parts", py_tls_parts, METH_VARARGS, "Split TLS hellos into their parts (see _kernel.tls_parts)."},
    {"gather", py_gather, METH_VARARGS, "Byte ranges one after the other (see _kernel.gather)."},
    {"split_missing", py_split_missing, METH_VARARGS, "Values into data and a mask (see _kernel.split_missing)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "flannelcap.packets._ckernel", NULL, -1, METHODS, NULL, NULL, NULL, NULL};

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
    /* Raised with every change of a function's arguments or of what it writes, so that an
     * extension built before (an editable install not rebuilt) is reported out of date, not
     * called wrongly: 2, http_follow keeps the closings; 3, decode_frames writes its batch
     * field-major and add_conversations reads it so. kernel.py holds the same number. */
    if (PyModule_AddIntConstant(module, "KERNEL_VERSION", 3) < 0)
        goto error;
    return module;
error:
    Py_DECREF(module);
    return NULL;
}
