/* layers.c: link layers, IP and tunnels down to the TCP header (see engine.h). */
#include "engine.h"

/* ------------------------------------------------------------------ layers */

static int decode_ip(Engine *e, const uint8_t *p, size_t n, int64_t ts, pkt_t *out, int *emitted);

static int decode_ether(Engine *e, const uint8_t *p, size_t n, int64_t ts, pkt_t *out,
                        int *emitted) {
    if (n < 14 || e->tunnel_depth > 8) { e->c_undecodable++; return 0; }
    e->cur_mac = p + 6;
    uint16_t type = rd16be(p + 12);
    size_t off = 14;
    for (int guard = 0; guard < 8; guard++) {
        if (type == 0x8100 || type == 0x88a8 || type == 0x9100 || type == 0x9200) {
            if (n < off + 4) { e->c_undecodable++; return 0; }
            e->cur_tunnelled = 1;
            type = rd16be(p + off + 2); off += 4;
        } else if (type == 0x88e7) {               /* PBB: I-TAG then a whole frame */
            if (n < off + 4 + 14) { e->c_undecodable++; return 0; }
            e->cur_tunnelled = 1;
            e->tunnel_depth++;
            int r = decode_ether(e, p + off + 4, n - off - 4, ts, out, emitted);
            e->tunnel_depth--;
            return r;
        } else if (type == 0x8903) {               /* Cisco FabricPath: outer hdr + frame */
            if (n < off + 2 + 14) { e->c_undecodable++; return 0; }
            e->cur_tunnelled = 1;
            e->tunnel_depth++;
            int r = decode_ether(e, p + off + 2, n - off - 2, ts, out, emitted);
            e->tunnel_depth--;
            return r;
        } else break;
    }
    if (type == 0x8847 || type == 0x8848) {         /* MPLS label stack */
        e->cur_tunnelled = 1;
        for (;;) {
            if (n < off + 4) { e->c_undecodable++; return 0; }
            int bos = p[off + 2] & 1; off += 4;
            if (bos) break;
        }
        if (n <= off) { e->c_undecodable++; return 0; }
        int v = p[off] >> 4;
        if (v == 4 || v == 6) return decode_ip(e, p + off, n - off, ts, out, emitted);
        /* pseudowire with control word then Ethernet */
        if (v == 0 && n >= off + 4 + 14) {
            e->tunnel_depth++;
            int r = decode_ether(e, p + off + 4, n - off - 4, ts, out, emitted);
            e->tunnel_depth--;
            return r;
        }
        e->c_non_ip++; return 0;
    }
    if (type == 0x8864) {                           /* PPPoE session */
        if (n < off + 8) { e->c_undecodable++; return 0; }
        e->cur_tunnelled = 1;
        uint16_t proto = rd16be(p + off + 6);
        if (proto == 0x0021 || proto == 0x0057) return decode_ip(e, p + off + 8, n - off - 8, ts, out, emitted);
        e->c_non_ip++; return 0;
    }
    if (type == 0x0800 || type == 0x86dd) return decode_ip(e, p + off, n - off, ts, out, emitted);
    e->c_non_ip++;
    return 0;
}

static int decode_udp_tunnel(Engine *e, const uint8_t *u, size_t n, int64_t ts, pkt_t *out,
                             int *emitted) {
    if (n < 8) return 1;
    uint16_t sp = rd16be(u), dp = rd16be(u + 2);
    const uint8_t *p = u + 8; size_t m = n - 8;
    if (e->tunnel_depth >= 4) return 1;
    e->tunnel_depth++;
    e->cur_tunnelled = 1;
    int r = 1;
    if ((dp == 4789 || sp == 4789) && m >= 8 + 14 && (p[0] & 0x08)) {          /* VXLAN */
        r = decode_ether(e, p + 8, m - 8, ts, out, emitted);
    } else if ((dp == 6081 || sp == 6081) && m >= 8) {                          /* Geneve */
        size_t hl = 8 + (size_t)(p[0] & 0x3f) * 4;
        uint16_t pt = rd16be(p + 2);
        if (m > hl) {
            if (pt == 0x6558) r = decode_ether(e, p + hl, m - hl, ts, out, emitted);
            else if (pt == 0x0800 || pt == 0x86dd) r = decode_ip(e, p + hl, m - hl, ts, out, emitted);
        }
    } else if ((dp == 2152 || sp == 2152) && m >= 8) {                          /* GTP-U */
        uint8_t fl = p[0];
        if ((fl >> 5) == 1 && p[1] == 0xff) {
            size_t off = 8;
            if (fl & 0x07) {
                if (m < 12) goto out;
                uint8_t nxt = p[11]; off = 12;
                while (nxt && m > off) {
                    size_t l = (size_t)p[off] * 4;
                    if (!l || m < off + l) goto out;
                    nxt = p[off + l - 1]; off += l;
                }
            }
            if (m > off && ((p[off] >> 4) == 4 || (p[off] >> 4) == 6))
                r = decode_ip(e, p + off, m - off, ts, out, emitted);
        }
    } else if ((dp == 5072 || sp == 5072) && m >= 12) {                         /* AYIYA */
        size_t idlen = (size_t)1 << (p[0] >> 4);
        size_t siglen = (size_t)(p[1] >> 4) * 4;
        size_t off = 8 + idlen + siglen;
        uint8_t next = p[3];
        if (m > off && (next == 4 || next == 41))
            r = decode_ip(e, p + off, m - off, ts, out, emitted);
    } else if (m >= 40) {                                                       /* Teredo */
        /* by port 3544, or by content as Zeek does: an IPv6 packet (after optional
         * authentication / origin indication headers) whose length fits the datagram and
         * one of whose addresses is in the Teredo prefix 2001:0::/32 */
        size_t off = 0;
        for (int g = 0; g < 2; g++) {
            if (m >= off + 13 && p[off] == 0 && p[off + 1] == 1) {              /* auth */
                off += 13 + (size_t)p[off + 2] + p[off + 3];
            } else if (m >= off + 8 && p[off] == 0 && p[off + 1] == 0) {        /* origin */
                off += 8;
            }
        }
        if (m >= off + 40 && (p[off] >> 4) == 6) {
            const uint8_t *v6 = p + off;
            int port_match = dp == 3544 || sp == 3544;
            int len_ok = (size_t)rd16be(v6 + 4) + 40 == m - off;
            int prefix = (v6[8] == 0x20 && v6[9] == 0x01 && v6[10] == 0 && v6[11] == 0) ||
                         (v6[24] == 0x20 && v6[25] == 0x01 && v6[26] == 0 && v6[27] == 0);
            if (len_ok && (port_match || prefix))
                r = decode_ip(e, v6, m - off, ts, out, emitted);
        }
    }
out:
    e->tunnel_depth--;
    return r;
}

static int decode_gre(Engine *e, const uint8_t *p, size_t n, int64_t ts, pkt_t *out, int *emitted) {
    if (n < 4 || e->tunnel_depth >= 4) { e->c_non_tcp++; return 0; }
    uint16_t fl = rd16be(p), pt = rd16be(p + 2);
    int ver = fl & 7;
    size_t off = 4;
    if (fl & 0x8000) off += 4;               /* checksum + reserved */
    if (fl & 0x2000) off += 4;               /* key */
    if (fl & 0x1000) off += 4;               /* sequence */
    if (ver == 1) {                          /* enhanced GRE (PPTP): ack field */
        if (fl & 0x0080) off += 4;
    }
    if (n <= off) { e->c_undecodable++; return 0; }
    e->tunnel_depth++;
    e->cur_tunnelled = 1;
    int r = 0;
    if (pt == 0x0800 || pt == 0x86dd) r = decode_ip(e, p + off, n - off, ts, out, emitted);
    else if (pt == 0x6558) r = decode_ether(e, p + off, n - off, ts, out, emitted);
    else if (pt == 0x88be) {                 /* ERSPAN type II (or I without seq) */
        size_t hl = (fl & 0x1000) ? 8 : 0;
        if (n > off + hl + 14) r = decode_ether(e, p + off + hl, n - off - hl, ts, out, emitted);
    } else if (pt == 0x22eb) {               /* ERSPAN type III */
        if (n > off + 12) {
            size_t hl = 12 + ((p[off + 11] & 1) ? 8 : 0);
            if (n > off + hl + 14) r = decode_ether(e, p + off + hl, n - off - hl, ts, out, emitted);
        }
    } else if (pt == 0x880b && ver == 1) {   /* PPP in enhanced GRE */
        size_t o2 = off;
        if (n > o2 + 2 && p[o2] == 0xff && p[o2 + 1] == 0x03) o2 += 2;
        if (n > o2 + 2) {
            uint16_t pp = rd16be(p + o2);
            if (pp == 0x0021 || pp == 0x0057) r = decode_ip(e, p + o2 + 2, n - o2 - 2, ts, out, emitted);
        }
    } else e->c_non_tcp++;
    e->tunnel_depth--;
    return r;
}

static int decode_ip(Engine *e, const uint8_t *p, size_t n, int64_t ts, pkt_t *out, int *emitted) {
    if (n < 1) { e->c_undecodable++; return 0; }
    ippkt_t ip; memset(&ip, 0, sizeof ip);
    int v = p[0] >> 4;
    int proto; const uint8_t *l4; size_t l4_avail; uint32_t l4_len;
    if (v == 4) {
        if (n < 20) { e->c_undecodable++; return 0; }
        size_t ihl = (size_t)(p[0] & 0x0f) * 4;
        if (ihl < 20 || n < ihl) { e->c_undecodable++; return 0; }
        uint32_t tot = rd16be(p + 2);
        if (tot == 0) tot = (uint32_t)n;          /* TSO on the capturing host */
        if (tot < ihl) { e->c_undecodable++; return 0; }
        uint16_t frag = rd16be(p + 6);
        if (frag & 0x1fff) { e->c_fragments++; return 0; }   /* not the first fragment */
        ip.fragment = (frag & 0x2000) != 0;
        if (ip.fragment) e->c_fragments++;
        e->c_ipv4++;
        ip.ipver = 4; ip.src = p + 12; ip.dst = p + 16; ip.ttl = p[8]; ip.ipid = rd16be(p + 4);
        ip.ip_len = tot;
        proto = p[9];
        l4 = p + ihl; l4_avail = n - ihl; l4_len = tot - (uint32_t)ihl;
    } else if (v == 6) {
        if (n < 40) { e->c_undecodable++; return 0; }
        e->c_ipv6++;
        ip.ipver = 6; ip.src = p + 8; ip.dst = p + 24; ip.ttl = p[7]; ip.ipid = 0;
        uint32_t plen = rd16be(p + 4);
        if (plen == 0) plen = (uint32_t)(n - 40);
        ip.ip_len = plen + 40;
        proto = p[6];
        size_t off = 40;
        for (int g = 0; g < 12; g++) {
            if (proto == 0 || proto == 43 || proto == 60 || proto == 135 || proto == 139 || proto == 140) {
                if (n < off + 8) { e->c_undecodable++; return 0; }
                proto = p[off]; off += ((size_t)p[off + 1] + 1) * 8;
            } else if (proto == 44) {
                if (n < off + 8) { e->c_undecodable++; return 0; }
                uint16_t fo = rd16be(p + off + 2);
                if (fo & 0xfff8) { e->c_fragments++; return 0; }
                ip.fragment = (fo & 1) != 0;
                if (ip.fragment) e->c_fragments++;
                proto = p[off]; off += 8;
            } else if (proto == 51) {
                if (n < off + 8) { e->c_undecodable++; return 0; }
                proto = p[off]; off += ((size_t)p[off + 1] + 2) * 4;
            } else break;
        }
        if (off > n || off - 40 > plen) { e->c_undecodable++; return 0; }
        l4 = p + off; l4_avail = n - off; l4_len = plen - (uint32_t)(off - 40);
    } else { e->c_undecodable++; return 0; }

    if (l4_avail > l4_len) l4_avail = l4_len;     /* Ethernet padding */
    if (proto == 6) {
        ip.tcp = l4; ip.tcp_avail = (uint32_t)l4_avail; ip.tcp_len = l4_len;
        return eng_track_tcp(e, &ip, ts, out, emitted);
    }
    if (proto == 17 && e->tunnel_depth < 4) {
        int r = decode_udp_tunnel(e, l4, l4_avail, ts, out, emitted);
        if (r == 1) e->c_non_tcp++;
        return r < 0 ? r : 0;
    }
    if (proto == 47) return decode_gre(e, l4, l4_avail, ts, out, emitted);
    if ((proto == 4 || proto == 41) && e->tunnel_depth < 4) {
        e->tunnel_depth++; e->cur_tunnelled = 1;
        int r = decode_ip(e, l4, l4_avail, ts, out, emitted);
        e->tunnel_depth--;
        return r;
    }
    e->c_non_tcp++;
    return 0;
}

int eng_decode_link(Engine *e, int linktype, const uint8_t *p, size_t n, int64_t ts,
                       pkt_t *out, int *emitted) {
    e->cur_mac = NULL; e->tunnel_depth = 0; e->cur_tunnelled = 0;
    if (linktype >= 0 && linktype < 512) e->linktypes_seen[linktype / 64] |= 1ULL << (linktype % 64);
    else e->other_linktype = linktype;
    switch (linktype) {
    case 1: return decode_ether(e, p, n, ts, out, emitted);
    case 113:                                        /* Linux cooked SLL */
        if (n < 16) { e->c_undecodable++; return 0; }
        if (rd16be(p + 4) == 6) e->cur_mac = p + 6;
        { uint16_t pr = rd16be(p + 14);
          if (pr == 0x0800 || pr == 0x86dd) return decode_ip(e, p + 16, n - 16, ts, out, emitted);
          if (pr == 0x8100 && n >= 20) { uint16_t in = rd16be(p + 18);
              if (in == 0x0800 || in == 0x86dd) return decode_ip(e, p + 20, n - 20, ts, out, emitted); } }
        e->c_non_ip++; return 0;
    case 276:                                        /* Linux cooked SLL2 */
        if (n < 20) { e->c_undecodable++; return 0; }
        if (p[11] == 6) e->cur_mac = p + 12;
        { uint16_t pr = rd16be(p);
          if (pr == 0x0800 || pr == 0x86dd) return decode_ip(e, p + 20, n - 20, ts, out, emitted); }
        e->c_non_ip++; return 0;
    case 0:                                          /* BSD loopback, host byte order */
    case 108: {                                      /* OpenBSD loopback, network order */
        if (n < 4) { e->c_undecodable++; return 0; }
        uint32_t fam = linktype == 108 ? rd32be(p) : (p[0] == 0 && p[1] == 0 ? rd32be(p) : rd32(p, 0));
        if (linktype == 0 && fam > 0xffff) fam = __builtin_bswap32(fam);
        if (fam == 2 || fam == 24 || fam == 28 || fam == 30 || fam == 10 || fam == 23)
            return decode_ip(e, p + 4, n - 4, ts, out, emitted);
        e->c_non_ip++; return 0;
    }
    case 101: case 12: case 14: case 228: case 229:  /* raw IP */
        return decode_ip(e, p, n, ts, out, emitted);
    default:
        e->c_unsupported_link++;
        return 0;
    }
}
