/* records.c: classic pcap and pcapng records (see engine.h). */
#include "engine.h"

static int64_t clamp_i64(__int128 v) {
    if (v > (__int128)TS_LIMIT) return TS_LIMIT;
    if (v < -(__int128)TS_LIMIT) return -TS_LIMIT;
    return (int64_t)v;
}

/* ticks at the interface's resolution -> ns since the epoch; 128-bit, clamped (hostile
 * if_tsresol / if_tsoffset values must not overflow) */
static int64_t ts_from_ticks(const iface_t *ifc, uint64_t ticks) {
    __int128 ns;
    if (ifc->tsres_pow2) {
        if (ifc->tsres >= 127) return 0;
        ns = (__int128)ticks * 1000000000 / ((__int128)1 << (ifc->tsres > 100 ? 100 : ifc->tsres));
    } else {
        int r = ifc->tsres;
        if (r <= 9) { __int128 m = 1; for (int i = r; i < 9; i++) m *= 10; ns = (__int128)ticks * m; }
        else { __int128 d = 1; for (int i = 9; i < r && i < 38; i++) d *= 10; ns = (__int128)ticks / d; }
    }
    ns += (__int128)ifc->tsoffset_s * 1000000000;
    return clamp_i64(ns);
}

static void parse_idb_options(Engine *e, iface_t *ifc, const uint8_t *o, size_t n) {
    size_t off = 0;
    while (off + 4 <= n) {
        uint16_t code = rd16(o + off, e->swapped), len = rd16(o + off + 2, e->swapped);
        if (code == 0) break;
        if (off + 4 + len > n) break;
        if (code == 9 && len >= 1) {
            uint8_t v = o[off + 4];
            ifc->tsres_pow2 = (v & 0x80) != 0; ifc->tsres = v & 0x7f;
        } else if (code == 14 && len >= 8) {
            uint64_t v; memcpy(&v, o + off + 4, 8);
            if (e->swapped) v = __builtin_bswap64(v);
            ifc->tsoffset_s = (int64_t)v;
        }
        off += 4 + (((size_t)len + 3) & ~(size_t)3);
    }
}

/* Walk records in buf[0:n). base = file offset of buf[0]. */
void eng_feed(Engine *e, const uint8_t *buf, Py_ssize_t n, int64_t base, pkt_t *rows,
                      Py_ssize_t cap, feed_res_t *r) {
    Py_ssize_t pos = 0;
    r->code = R_NEED_MORE; r->rows = 0; r->msg[0] = 0; r->err_off = 0;
    while (1) {
        if (e->emit_packets && r->rows >= cap) { r->code = R_OUT_FULL; break; }
        const uint8_t *p = buf + pos; Py_ssize_t left = n - pos;
        if (e->fmt == FMT_UNKNOWN) {
            if (left < 4) break;
            uint32_t m; memcpy(&m, p, 4);
            if (m == 0x0A0D0D0A) { e->fmt = FMT_PCAPNG; continue; }
            if (left < 24) break;
            if (m == 0xa1b2c3d4 || m == 0xa1b23c4d) e->swapped = 0;
            else if (m == 0xd4c3b2a1 || m == 0x4d3cb2a1) e->swapped = 1;
            else {
                r->code = R_ERROR; r->err_off = base + pos;
                snprintf(r->msg, sizeof r->msg, "not a pcap or pcapng file (magic 0x%02x%02x%02x%02x)", p[0], p[1], p[2], p[3]);
                break;
            }
            uint32_t mm = rd32(p, e->swapped);
            e->pcap_nano = mm == 0xa1b23c4d;
            e->pcap_snaplen = rd32(p + 16, e->swapped);
            /* the link-type field: the type in its low 16 bits, reserved bits, and the FCS
             * length (bit 26 says it is there: 0x04000001 is Ethernet with an FCS) */
            uint32_t ltf = rd32(p + 20, e->swapped);
            if (rd16(p + 4, e->swapped) != 2 || rd16(p + 6, e->swapped) != 4) e->odd_header |= ODD_PCAP_VERSION;
            if (ltf & 0x03FF0000) e->odd_header |= ODD_LT_RESERVED;
            if (ltf & 0x04000000) e->odd_header |= ODD_LT_FCS;
            e->pcap_linktype = (int)(ltf & 0xFFFF);
            e->fmt = FMT_PCAP;
            e->n_ifaces = 1;
            e->ifaces[0].linktype = e->pcap_linktype;
            e->ifaces[0].tsres_pow2 = 0; e->ifaces[0].tsres = e->pcap_nano ? 9 : 6;
            pos += 24;
            continue;
        }
        if (e->fmt == FMT_PCAP) {
            if (left < 16) break;
            if (e->max_frames && e->frame >= e->max_frames) { r->code = R_LIMIT; break; }
            uint32_t sec = rd32(p, e->swapped), frac = rd32(p + 4, e->swapped);
            uint32_t caplen = rd32(p + 8, e->swapped), olen = rd32(p + 12, e->swapped);
            uint32_t maxcap = e->pcap_snaplen > 262144 ? e->pcap_snaplen : 262144;
            if (maxcap > 16 * 1024 * 1024) maxcap = 16 * 1024 * 1024;
            if (caplen > maxcap) {
                r->code = R_ERROR; r->err_off = base + pos;
                snprintf(r->msg, sizeof r->msg, "corrupt pcap record header (frame %lld claims %u captured bytes)",
                         (long long)(e->frame + 1), caplen);
                break;
            }
            if ((Py_ssize_t)(16 + caplen) > left) break;
            (void)olen;
            int64_t ts = (int64_t)sec * 1000000000LL + (int64_t)frac * (e->pcap_nano ? 1 : 1000);
            e->prev_ts = ts;
            if (ts < e->ts_from || ts >= e->ts_to) { e->c_outside++; pos += 16 + caplen; continue; }
            e->frame++;
            e->cur_rec_off = base + pos; e->cur_iface = 0; e->cur_rec_data = p + 16;
            int emitted = 0;
            if (!e->first_ts_seen) e->first_ts_seen = ts;
            e->last_ts_seen = ts;
            e->c_bytes += caplen;
            if (eng_decode_link(e, e->pcap_linktype, p + 16, caplen, ts, &rows[r->rows], &emitted) < 0) {
                r->code = R_ERROR; r->err_off = base + pos; snprintf(r->msg, sizeof r->msg, "out of memory"); break;
            }
            if (emitted) r->rows++;
            pos += 16 + caplen;
            continue;
        }
        /* pcapng */
        if (left < 12) break;
        uint32_t btype_raw; memcpy(&btype_raw, p, 4);
        if (btype_raw == 0x0A0D0D0A) {
            if (left < 12) break;
            uint32_t bom; memcpy(&bom, p + 8, 4);
            if (bom == 0x1A2B3C4D) e->swapped = 0;
            else if (bom == 0x4D3C2B1A) e->swapped = 1;
            else {
                r->code = R_ERROR; r->err_off = base + pos;
                snprintf(r->msg, sizeof r->msg, "corrupt pcapng section header (byte-order magic 0x%08x)", bom);
                break;
            }
        }
        uint32_t btype = rd32(p, e->swapped), blen = rd32(p + 4, e->swapped);
        if (blen < 12 || (blen & 3) || blen > 16 * 1024 * 1024) {
            r->code = R_ERROR; r->err_off = base + pos;
            snprintf(r->msg, sizeof r->msg, "corrupt pcapng block (type 0x%08x, length %u)", btype, blen);
            break;
        }
        if ((Py_ssize_t)blen > left) break;
        if (rd32(p + blen - 4, e->swapped) != blen) {
            r->code = R_ERROR; r->err_off = base + pos;
            snprintf(r->msg, sizeof r->msg, "corrupt pcapng block (type 0x%08x: trailing length differs)", btype);
            break;
        }
        const uint8_t *body = p + 8; size_t blen_body = blen - 12;
        if (btype == 0x0A0D0D0A) {
            e->n_ifaces = 0; e->c_sections++;
            if (blen_body >= 8 && (rd16(body + 4, e->swapped) != 1 || rd16(body + 6, e->swapped) != 0))
                e->odd_header |= ODD_PCAPNG_VERSION;
        } else if (btype == 1) {                       /* IDB */
            if (blen_body >= 8 && e->n_ifaces < MAX_IFACES) {
                iface_t *ifc = &e->ifaces[e->n_ifaces++];
                ifc->linktype = rd16(body, e->swapped);
                ifc->snaplen = rd32(body + 4, e->swapped);
                ifc->tsres_pow2 = 0; ifc->tsres = 6; ifc->tsoffset_s = 0;
                parse_idb_options(e, ifc, body + 8, blen_body - 8);
            } else if (e->n_ifaces >= MAX_IFACES) {
                r->code = R_ERROR; r->err_off = base + pos;
                snprintf(r->msg, sizeof r->msg, "more than %d interfaces in one pcapng section", MAX_IFACES);
                break;
            }
        } else if (btype == 6 || btype == 3 || btype == 2) {   /* EPB, SPB, OPB */
            uint32_t ifid = 0, caplen; uint64_t ticks = 0; const uint8_t *data; int have_ts = 1;
            if (btype == 6) {
                if (blen_body < 20) goto bad_block;
                ifid = rd32(body, e->swapped);
                ticks = ((uint64_t)rd32(body + 4, e->swapped) << 32) | rd32(body + 8, e->swapped);
                caplen = rd32(body + 12, e->swapped);
                data = body + 20;
                if (caplen > blen_body - 20) goto bad_block;
            } else if (btype == 2) {
                if (blen_body < 20) goto bad_block;
                ifid = rd16(body, e->swapped);
                ticks = ((uint64_t)rd32(body + 4, e->swapped) << 32) | rd32(body + 8, e->swapped);
                caplen = rd32(body + 12, e->swapped);
                data = body + 20;
                if (caplen > blen_body - 20) goto bad_block;
            } else {
                if (blen_body < 4) goto bad_block;
                uint32_t olen = rd32(body, e->swapped);
                caplen = (uint32_t)(blen_body - 4);
                if (olen < caplen) caplen = olen;
                if (e->n_ifaces > 0 && e->ifaces[0].snaplen && caplen > e->ifaces[0].snaplen) caplen = e->ifaces[0].snaplen;
                data = body + 4; have_ts = 0;
            }
            if (ifid >= (uint32_t)e->n_ifaces) {
                r->code = R_ERROR; r->err_off = base + pos;
                snprintf(r->msg, sizeof r->msg, "pcapng packet for interface %u, but only %d described", ifid, e->n_ifaces);
                break;
            }
            if (e->max_frames && e->frame >= e->max_frames) { r->code = R_LIMIT; break; }
            iface_t *ifc = &e->ifaces[ifid];
            int64_t ts = have_ts ? ts_from_ticks(ifc, ticks) : e->prev_ts;
            e->prev_ts = ts;
            if (ts < e->ts_from || ts >= e->ts_to) { e->c_outside++; pos += blen; continue; }
            e->frame++;
            e->cur_rec_off = base + pos; e->cur_iface = (int)ifid; e->cur_rec_data = data;
            if (!e->first_ts_seen) e->first_ts_seen = ts;
            e->last_ts_seen = ts;
            e->c_bytes += caplen;
            int emitted = 0;
            if (eng_decode_link(e, ifc->linktype, data, caplen, ts, &rows[r->rows], &emitted) < 0) {
                r->code = R_ERROR; r->err_off = base + pos; snprintf(r->msg, sizeof r->msg, "out of memory"); break;
            }
            if (emitted) r->rows++;
        } else if (btype == 10) {                     /* DSB: handed to Python before the packets after it */
            if (blen_body < 8) goto bad_block;
            uint32_t stype = rd32(body, e->swapped), slen = rd32(body + 4, e->swapped);
            if (slen > blen_body - 8) goto bad_block;
            uint8_t *copy = malloc(slen ? slen : 1);
            if (!copy) { r->code = R_ERROR; r->err_off = base + pos; snprintf(r->msg, sizeof r->msg, "out of memory"); break; }
            memcpy(copy, body + 8, slen);
            free(e->dsb);
            e->dsb = copy; e->dsb_n = slen; e->dsb_type = stype;
            pos += blen;
            r->code = R_SECRETS;
            break;
        } else {
            e->c_unknown_blocks++;
        }
        pos += blen;
        continue;
    bad_block:
        r->code = R_ERROR; r->err_off = base + pos;
        if (btype == 10)
            snprintf(r->msg, sizeof r->msg, "corrupt pcapng decryption secrets block (length %u)", blen);
        else
            snprintf(r->msg, sizeof r->msg, "corrupt pcapng packet block (type %u, length %u)", btype, blen);
        break;
    }
    r->consumed = pos;
}
