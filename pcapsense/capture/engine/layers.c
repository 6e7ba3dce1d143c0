/* layers.c: link layers, IP and tunnels down to the TCP header (see engine.h). */
#include "engine.h"

/* ------------------------------------------------------------------ layers */

static int decode_ip(Engine *e, const uint8_t *p, size_t n, int64_t ts, pkt_t *out, int *emitted);
static int decode_ether(Engine *e, const uint8_t *p, size_t n, int64_t ts, pkt_t *out, int *emitted);

/* the datagram a fragment completed (`whole` bytes in e->frag_out; 0: not complete yet,
 * -1: no memory), decoded as the packet of this frame; fragments inside it are not held */
static int decode_reassembled(Engine *e, int whole, int64_t ts, pkt_t *out, int *emitted) {
    if (whole <= 0) return whole;
    e->in_frag = 1;
    int r = decode_ip(e, e->frag_out, (size_t)whole, ts, out, emitted);
    e->in_frag = 0;
    return r;
}

/* an MPLS label stack, then IPv4/IPv6 or (a pseudowire's control word and) Ethernet */
static int decode_mpls(Engine *e, const uint8_t *p, size_t n, int64_t ts, pkt_t *out, int *emitted) {
    size_t off = 0;
    e->cur_tunnelled = 1;
    for (;;) {
        if (n < off + 4) { e->c_undecodable++; return 0; }
        int bos = p[off + 2] & 1; off += 4;
        if (bos) break;
    }
    if (n <= off) { e->c_undecodable++; return 0; }
    int v = p[off] >> 4;
    if (v == 4 || v == 6) return decode_ip(e, p + off, n - off, ts, out, emitted);
    if (v == 0 && n >= off + 4 + 14 && e->tunnel_depth < 8) {
        e->tunnel_depth++;
        int r = decode_ether(e, p + off + 4, n - off - 4, ts, out, emitted);
        e->tunnel_depth--;
        return r;
    }
    e->c_non_ip++; return 0;
}

/* PPP (RFC 1661): an optional HDLC address/control (0xff 0x03; LINKTYPE_PPP_PPPD puts a
 * direction byte, 0x00 or 0x01, where the address is), then the protocol: two bytes, or
 * one when protocol-field compression made it odd (RFC 1661 6.5) */
static int decode_ppp(Engine *e, const uint8_t *p, size_t n, int64_t ts, pkt_t *out, int *emitted) {
    size_t off = 0;
    if (n >= 2 && (p[0] == 0xff || p[0] == 0x00 || p[0] == 0x01) && p[1] == 0x03) off = 2;
    if (n <= off) { e->c_undecodable++; return 0; }
    uint16_t proto;
    if (p[off] & 1) { proto = p[off]; off += 1; }
    else {
        if (n < off + 2) { e->c_undecodable++; return 0; }
        proto = rd16be(p + off); off += 2;
    }
    if (proto == 0x0021 || proto == 0x0057) return decode_ip(e, p + off, n - off, ts, out, emitted);
    if (proto == 0x0281 || proto == 0x0283) return decode_mpls(e, p + off, n - off, ts, out, emitted);
    e->c_non_ip++; return 0;
}

/* Cisco HDLC: address (0x0f unicast, 0x8f broadcast), control, an Ethernet type */
static int decode_chdlc(Engine *e, const uint8_t *p, size_t n, int64_t ts, pkt_t *out, int *emitted) {
    if (n < 4) { e->c_undecodable++; return 0; }
    uint16_t pr = rd16be(p + 2);
    if (pr == 0x0800 || pr == 0x86dd) return decode_ip(e, p + 4, n - 4, ts, out, emitted);
    if (pr == 0x8847 || pr == 0x8848) return decode_mpls(e, p + 4, n - 4, ts, out, emitted);
    e->c_non_ip++; return 0;
}

/* IEEE 802.11 data frames (LINKTYPE_IEEE802_11, and inside radiotap and PPI): the MAC
 * header (24 bytes, 30 with four addresses, + 2 of QoS control, + 4 of HT control), then
 * LLC/SNAP and an Ethernet type. Protected (encrypted) frames and A-MSDUs are not read. */
static int decode_80211(Engine *e, const uint8_t *p, size_t n, int64_t ts, pkt_t *out, int *emitted) {
    if (n < 24) { e->c_undecodable++; return 0; }
    int type = (p[0] >> 2) & 3, subtype = (p[0] >> 4) & 0xf, flags = p[1];
    if (type != 2 || (subtype & 0x4)) { e->c_non_ip++; return 0; }          /* not data, or null data */
    if (flags & 0x40) { e->c_non_ip++; return 0; }                          /* protected */
    size_t hl = 24;
    if ((flags & 3) == 3) hl += 6;
    if (subtype & 0x8) {
        if (n < hl + 2) { e->c_undecodable++; return 0; }
        if (p[hl] & 0x80) { e->c_non_ip++; return 0; }                      /* A-MSDU */
        hl += 2;
        if (flags & 0x80) hl += 4;
    }
    if (n < hl + 8) { e->c_undecodable++; return 0; }
    const uint8_t *l = p + hl;
    if (l[0] == 0xaa && l[1] == 0xaa && l[2] == 0x03) {
        uint16_t pr = rd16be(l + 6);
        if (pr == 0x0800 || pr == 0x86dd) return decode_ip(e, l + 8, n - hl - 8, ts, out, emitted);
    }
    e->c_non_ip++; return 0;
}

static int decode_ether(Engine *e, const uint8_t *p, size_t n, int64_t ts, pkt_t *out, int *emitted) {
    if (n < 14 || e->tunnel_depth > 8) { e->c_undecodable++; return 0; }
    e->cur_mac = p + 6;
    uint16_t type = rd16be(p + 12);
    size_t off = 14;
    for (int guard = 0; guard < 8; guard++) {
        if (type == 0x8100 || type == 0x88a8 || type == 0x9100 || type == 0x9200) {
            if (n < off + 4) { e->c_undecodable++; return 0; }
            e->cur_tunnelled = 1;
            type = rd16be(p + off + 2); off += 4;
        } else if (type == 0x893f) {               /* 802.1BR E-Tag: 6 bytes of tag */
            if (n < off + 8) { e->c_undecodable++; return 0; }
            e->cur_tunnelled = 1;
            type = rd16be(p + off + 6); off += 8;
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
    if (type == 0x8847 || type == 0x8848)           /* MPLS label stack */
        return decode_mpls(e, p + off, n - off, ts, out, emitted);
    if (type == 0x8864) {                           /* PPPoE session: 6 bytes, then PPP */
        if (n < off + 7) { e->c_undecodable++; return 0; }
        e->cur_tunnelled = 1;
        return decode_ppp(e, p + off + 6, n - off - 6, ts, out, emitted);
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
    } else if ((dp == 1701 || sp == 1701) && m >= 6 && (p[1] & 0x0f) == 2) {   /* L2TPv2 */
        uint16_t fl = rd16be(p);
        if (!(fl & 0x8000)) {                                                   /* data, not control */
            size_t off = 2;
            if (fl & 0x4000) off += 2;                                          /* length */
            off += 4;                                                           /* tunnel, session */
            if (fl & 0x0800) off += 4;                                          /* Ns, Nr */
            if (fl & 0x0200) { if (m < off + 2) goto out; off += 2 + rd16be(p + off); }   /* offset */
            if (m > off) r = decode_ppp(e, p + off, m - off, ts, out, emitted);
        }
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
    } else if (pt == 0x883e) {               /* WCCP redirect: a 4-byte header, then IP */
        size_t o2 = off + 4;
        if (n > o2 && (p[o2] >> 4) != 4 && (p[o2] >> 4) != 6) o2 += 4;      /* (WCCPv2 alternate header) */
        if (n > o2 && ((p[o2] >> 4) == 4 || (p[o2] >> 4) == 6)) r = decode_ip(e, p + o2, n - o2, ts, out, emitted);
        else e->c_undecodable++;
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
        if (frag & 0x3fff) {                       /* a fragment: held until its datagram is whole */
            e->c_fragments++;
            if (e->in_frag || tot <= ihl) return 0;
            if (n < tot) {
                /* not all of it captured (the snap length): as tshark, no reassembly; a
                 * first fragment's TCP header is read as it is, the others are not */
                if (frag & 0x1fff) return 0;
                ip.fragment = 1;
                goto v4_decoded;
            }
            return decode_reassembled(e, eng_frag_v4(e, p, n, (uint32_t)ihl, tot), ts, out, emitted);
        }
    v4_decoded:
        e->c_ipv4++;
        ip.ipver = 4; ip.src = p + 12; ip.dst = p + 16; ip.ttl = p[8]; ip.ipid = rd16be(p + 4);
        /* a loose or strict source route not yet completed: the datagram's destination
         * is the route's last address (RFC 791 3.1; the TCP pseudo-header's, and
         * Wireshark's ip.dst), the header's is the next hop */
        for (size_t o = 20; o + 1 < ihl;) {
            uint8_t t = p[o];
            if (t == 0) break;
            if (t == 1) { o++; continue; }
            size_t ol = p[o + 1];
            if (ol < 2 || o + ol > ihl) break;
            if ((t == 131 || t == 137) && ol >= 7 && p[o + 2] <= ol)
                ip.dst = p + o + 3 + 4 * ((ol - 3) / 4 - 1);
            o += ol;
        }
        ip.ip_len = tot;
        proto = p[9];
        l4 = p + ihl; l4_avail = n - ihl; l4_len = tot - (uint32_t)ihl;
        if (proto == 51) {                             /* AH: its length, then the next header */
            if (l4_avail < 8) { e->c_undecodable++; return 0; }
            size_t ah = ((size_t)l4[1] + 2) * 4;
            if (ah > l4_avail || ah > l4_len) { e->c_undecodable++; return 0; }
            proto = l4[0]; l4 += ah; l4_avail -= ah; l4_len -= (uint32_t)ah;
        }
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
                if (fo & 0xfff9) {                 /* a fragment (not an atomic one): held */
                    e->c_fragments++;
                    if (n < 40 + (size_t)plen) {   /* cut by the snap length: as IPv4 above */
                        if (fo & 0xfff8) return 0;
                        ip.fragment = 1;
                        proto = p[off]; off += 8;
                        continue;
                    }
                    e->c_ipv6--;
                    if (e->in_frag) return 0;
                    return decode_reassembled(e, eng_frag_v6(e, p, n, off, plen), ts, out, emitted);
                }
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
    if (proto == 50 || proto == 108) e->c_opaque++;    /* ESP, IPComp: encrypted or compressed */
    e->c_non_tcp++;
    return 0;
}

/* ARCNET (RFC 1201, and RFC 1051's "old" types): BSD's header (7) is source, destination,
 * type, then for the RFC 1201 types a split flag and sequence number (an exception frame,
 * flag 0xff, 4 bytes more); Linux's (129) puts a 2-byte offset before the type and always
 * carries the flag and sequence for the RFC 1201 types. Middle pieces of a split packet
 * are not read. */
static int decode_arcnet(Engine *e, int linux_hdr, const uint8_t *p, size_t n, int64_t ts, pkt_t *out,
                         int *emitted) {
    size_t tpos = linux_hdr ? 4 : 2;
    if (n <= tpos) { e->c_undecodable++; return 0; }
    uint8_t type = p[tpos];
    int old = type == 240 || type == 241 || type == 0x80;
    size_t hl = old ? tpos + 1 : tpos + 4;
    if (!old) {
        if (n < hl) { e->c_undecodable++; return 0; }
        uint8_t flag = p[tpos + 1];
        if (!linux_hdr && flag == 0xff) {
            hl += 4;
            if (n < hl) { e->c_undecodable++; return 0; }
            flag = p[tpos + 5];
        }
        if (flag && !(flag & 1)) { e->c_non_ip++; return 0; }          /* a middle piece */
    }
    if (n <= hl) { e->c_undecodable++; return 0; }
    if (type == 212 || type == 240 || type == 0xc4) return decode_ip(e, p + hl, n - hl, ts, out, emitted);
    e->c_non_ip++; return 0;
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
    case 9: case 166: case 204:                      /* PPP; PPP_PPPD; PPP_WITH_DIR (a direction byte) */
        if (linktype == 204) { if (n < 1) { e->c_undecodable++; return 0; } p++; n--; }
        return decode_ppp(e, p, n, ts, out, emitted);
    case 50:                                         /* PPP in HDLC framing, or Cisco HDLC */
        if (n >= 1 && (p[0] == 0x0f || p[0] == 0x8f)) return decode_chdlc(e, p, n, ts, out, emitted);
        return decode_ppp(e, p, n, ts, out, emitted);
    case 104: case 205:                              /* Cisco HDLC; with a direction byte */
        if (linktype == 205) { if (n < 1) { e->c_undecodable++; return 0; } p++; n--; }
        return decode_chdlc(e, p, n, ts, out, emitted);
    case 178: {                                      /* Juniper Ethernet: "MGC", flags, extensions */
        if (n < 4 || p[0] != 'M' || p[1] != 'G' || p[2] != 'C') { e->c_undecodable++; return 0; }
        size_t hl = 4;
        if (p[3] & 0x80) {                           /* extension TLVs, their total length first */
            if (n < 6) { e->c_undecodable++; return 0; }
            hl += 2 + rd16be(p + 4);
        }
        if (p[3] & 0x02) {                           /* no layer 2: a 4-byte cookie, then IP */
            hl += 4;
            if (n <= hl || ((p[hl] >> 4) != 4 && (p[hl] >> 4) != 6)) { e->c_undecodable++; return 0; }
            return decode_ip(e, p + hl, n - hl, ts, out, emitted);
        }
        if (n < hl + 14) { e->c_undecodable++; return 0; }
        return decode_ether(e, p + hl, n - hl, ts, out, emitted);
    }
    case 7: case 129:                                /* ARCNET: BSD, Linux */
        return decode_arcnet(e, linktype == 129, p, n, ts, out, emitted);
    case 242:                                        /* IP over InfiniBand (RFC 4391 6) as Linux */
        /* captures it: a 40-byte pseudo-header (the GRH, or the destination address), then
         * the 4-byte IPoIB header (type, reserved), as Wireshark reads it */
        if (n < 44) { e->c_undecodable++; return 0; }
        { uint16_t pr = rd16be(p + 40);
          if (pr == 0x0800 || pr == 0x86dd) return decode_ip(e, p + 44, n - 44, ts, out, emitted); }
        e->c_non_ip++; return 0;
    case 105:                                        /* IEEE 802.11 */
        return decode_80211(e, p, n, ts, out, emitted);
    case 127: {                                      /* radiotap, then 802.11 */
        if (n < 8) { e->c_undecodable++; return 0; }
        size_t hl = (size_t)p[2] | ((size_t)p[3] << 8);
        if (hl < 8 || hl > n) { e->c_undecodable++; return 0; }
        return decode_80211(e, p + hl, n - hl, ts, out, emitted);
    }
    case 192: {                                      /* PPI: a header, then the frame of its DLT */
        if (n < 8) { e->c_undecodable++; return 0; }
        size_t hl = (size_t)p[2] | ((size_t)p[3] << 8);
        uint32_t dlt = (uint32_t)p[4] | ((uint32_t)p[5] << 8) | ((uint32_t)p[6] << 16) | ((uint32_t)p[7] << 24);
        if (hl < 8 || hl > n || dlt == 192) { e->c_undecodable++; return 0; }
        if (dlt == 105) return decode_80211(e, p + hl, n - hl, ts, out, emitted);
        if (dlt == 1) return decode_ether(e, p + hl, n - hl, ts, out, emitted);
        e->c_unsupported_link++; return 0;
    }
    default:                                         /* said by its name in a warning */
        if (linktype >= 0 && linktype < 512) e->linktypes_unread[linktype / 64] |= 1ULL << (linktype % 64);
        else e->other_unread = 1;
        e->c_unsupported_link++;
        return 0;
    }
}
