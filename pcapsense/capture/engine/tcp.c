/* tcp.c: the flow table, tcp.stream numbering, sequence analysis, counters, Zeek
 * history letters and both endpoints' state machines (see engine.h). */
#include "engine.h"

/* the 40-byte flow key hashed 8 bytes at a time (5 multiply-rotate rounds, then a
 * splitmix64 finaliser): FNV-1a byte by byte was 40 dependent multiplies per packet,
 * a third of the engine's time on 2M packets. Only the flow slot and the --jobs shard
 * of a connection depend on it, never a result (tests/test_parallel.py). */
static uint64_t hash_key(const uint8_t *k) {
    uint64_t h = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < 40; i += 8) {
        uint64_t w; memcpy(&w, k + i, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
        h = (h << 31) | (h >> 33);
    }
    h ^= h >> 30; h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27; h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

int eng_cmp_key40(const void *a, const void *b) { return memcmp(a, b, 40); }

static int grow_flows(Engine *e) {
    size_t ncap = e->flow_cap ? e->flow_cap * 2 : 1 << 14;
    flow_t *nf = calloc(ncap, sizeof(flow_t));
    if (!nf) return -1;
    for (size_t i = 0; i < e->flow_cap; i++) {
        if (!e->flows[i].key[39]) continue;          /* empty slot */
        size_t j = hash_key(e->flows[i].key) & (ncap - 1);
        while (nf[j].key[39]) j = (j + 1) & (ncap - 1);
        nf[j] = e->flows[i];
    }
    free(e->flows);
    e->flows = nf; e->flow_cap = ncap;
    return 0;
}

/* slot lookup: key[39] holds a non-zero "used" marker, so calloc'd slots are empty */
static flow_t *flow_find(Engine *e, const uint8_t *key, uint64_t hash, int *created) {
    if ((e->flow_n + 1) * 2 > e->flow_cap) { if (grow_flows(e) < 0) return NULL; }
    size_t j = hash & (e->flow_cap - 1);
    for (;;) {
        flow_t *f = &e->flows[j];
        if (f->key[39] == 0) {
            memcpy(f->key, key, 40);
            f->stream = -1;
            e->flow_n++;
            *created = 1;
            return f;
        }
        if (memcmp(f->key, key, 40) == 0) { *created = 0; return f; }
        j = (j + 1) & (e->flow_cap - 1);
    }
}

static stream_t *new_stream(Engine *e) {
    if (e->stream_n == e->stream_cap) {
        /* grow every per-stream array; the capacity moves only when all have grown */
        size_t ncap = e->stream_cap ? e->stream_cap * 2 : 1024;
        stream_t *ns = realloc(e->streams, ncap * sizeof(stream_t));
        if (!ns) return NULL;
        e->streams = ns;
        if (e->zeek_mode) {
            zk_t *nz = realloc(e->zk, ncap * sizeof(zk_t));
            if (!nz) return NULL;
            e->zk = nz;
        }
        if (e->app_mode) {
            appst_t *na = realloc(e->appst, ncap * sizeof(appst_t));
            if (!na) return NULL;
            e->appst = na;
        }
        e->stream_cap = ncap;
    }
    if (e->zeek_mode) memset(&e->zk[e->stream_n], 0, sizeof(zk_t));
    if (e->app_mode) memset(&e->appst[e->stream_n], 0, sizeof(appst_t));
    stream_t *s = &e->streams[e->stream_n];
    memset(s, 0, sizeof(*s));
    s->stream = (int64_t)e->stream_n;
    s->fin_frame = s->rst_frame = s->anomaly_frame = 0;
    for (int i = 0; i < 2; i++) { s->d[i].ttl_min = 255; }
    e->stream_n++;
    return s;
}

static int push_trans(Engine *e, int64_t stream, int64_t frame, int64_t ts, int ep,
                      int old, int nw, int kind) {
    if (e->trans_n == e->trans_cap) {
        size_t ncap = e->trans_cap ? e->trans_cap * 2 : 4096;
        trans_t *nt = realloc(e->trans, ncap * sizeof(trans_t));
        if (!nt) return -1;
        e->trans = nt; e->trans_cap = ncap;
    }
    trans_t *t = &e->trans[e->trans_n++];
    t->stream = stream; t->frame = frame; t->ts = ts;
    t->endpoint = (uint8_t)ep; t->old_state = (uint8_t)old; t->new_state = (uint8_t)nw;
    t->kind = (uint8_t)kind;
    memset(t->pad, 0, sizeof t->pad);
    return 0;
}

static void hist_add(stream_t *s, int dir, char c) {
    size_t n = strnlen(s->history, HIST_MAX);
    if (n + 1 >= HIST_MAX) return;
    if (c >= 'A' && c <= 'Z' && dir == 1) c = (char)(c - 'A' + 'a');
    s->history[n] = c; s->history[n + 1] = 0;
}

/* Zeek's logarithmic letters: 1st at >=1 events, 2nd at >=10, 3rd at >=100 ... */
static void hist_log(stream_t *s, int dir, uint8_t *level, uint32_t count, char c) {
    uint64_t need = 1;
    for (int i = 0; i < *level; i++) need *= 10;
    if (count >= need) { (*level)++; hist_add(s, dir, c); }
}

/* ------------------------------------------------------------------ checksum */

static uint64_t csum_add(uint64_t sum, const uint8_t *p, size_t n) {
    /* 32 bits at a time into 64-bit sums (2^16 = 1 modulo 0xffff, so the grouping does
     * not change the folded one's-complement sum); four independent sums per 32 bytes
     * let the compiler keep two vector adds in flight */
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    while (n >= 32) {
        uint64_t a, b, c, d;
        memcpy(&a, p, 8); memcpy(&b, p + 8, 8); memcpy(&c, p + 16, 8); memcpy(&d, p + 24, 8);
        s0 += (a & 0xffffffffULL) + (a >> 32);
        s1 += (b & 0xffffffffULL) + (b >> 32);
        s2 += (c & 0xffffffffULL) + (c >> 32);
        s3 += (d & 0xffffffffULL) + (d >> 32);
        p += 32; n -= 32;
    }
    sum += s0 + s1 + s2 + s3;
    while (n >= 8) {
        uint64_t v; memcpy(&v, p, 8);
        sum += (v & 0xffffffffULL) + (v >> 32);
        p += 8; n -= 8;
    }
    while (n >= 2) { uint16_t v; memcpy(&v, p, 2); sum += v; p += 2; n -= 2; }
    if (n) { uint16_t v = 0; memcpy(&v, p, 1); sum += v; }
    return sum;
}
static uint16_t csum_fold(uint64_t sum) {
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}
static void apply(Engine *e, stream_t *s, int64_t frame, int64_t ts, int ep, int kind) {
    dir_t *me = &s->d[ep], *peer = &s->d[ep ^ 1];
    uint8_t cur = me->state, nxt = e->rfc[(cur * 12 + peer->state) * N_KINDS + kind];
    if (nxt == 255) {
        s->anomalies++;
        if (!s->anomaly_frame) s->anomaly_frame = frame;
    } else if (nxt != cur) {
        me->state = nxt;
        push_trans(e, s->stream, frame, ts, ep, cur, nxt, kind);
    }
    uint8_t zc = me->zstate, zn = e->zeek[(zc * 8 + peer->zstate) * N_KINDS + kind];
    if (zn != 255) me->zstate = zn;
}

int eng_track_tcp(Engine *e, ippkt_t *ip, int64_t ts, pkt_t *out, int *emitted) {
    const uint8_t *t = ip->tcp;
    if (ip->tcp_avail < 14) { e->c_undecodable++; return 0; }
    uint16_t sport = rd16be(t), dport = rd16be(t + 2);
    uint32_t seq = rd32be(t + 4), ack = rd32be(t + 8);
    unsigned doff = (t[12] >> 4) * 4u;
    uint16_t flags = (uint16_t)(((t[12] & 1) << 8) | t[13]);
    uint16_t win = ip->tcp_avail >= 16 ? rd16be(t + 14) : 0;
    if (doff < 20) { e->c_undecodable++; return 0; }
    uint32_t payload_len = ip->tcp_len >= doff ? ip->tcp_len - doff : 0;
    uint32_t captured = ip->tcp_avail > doff ? ip->tcp_avail - doff : 0;
    if (captured > payload_len) captured = payload_len;
    int cut = captured < payload_len || ip->tcp_avail < doff;
    e->c_tcp++;
    if (cut) e->c_cut++;

    /* checksum: only when the whole segment is here */
    int csum = 0;   /* 0 unknown, 1 good, 2 bad */
    if (!cut && !ip->fragment && ip->tcp_avail >= ip->tcp_len && ip->tcp_len >= doff) {
        uint64_t sum = 0;
        int alen = ip->ipver == 4 ? 4 : 16;
        sum = csum_add(sum, ip->src, alen);
        sum = csum_add(sum, ip->dst, alen);
        uint8_t ph[8] = {0};
        uint32_t l = ip->tcp_len;
        ph[0] = (uint8_t)(l >> 24); ph[1] = (uint8_t)(l >> 16); ph[2] = (uint8_t)(l >> 8); ph[3] = (uint8_t)l;
        ph[7] = 6;
        sum = csum_add(sum, ph, 8);
        sum = csum_add(sum, t, ip->tcp_len);
        csum = csum_fold(sum) == 0xffff ? 1 : 2;
    }
    if (csum == 2) e->c_bad_csum++;
    if (csum == 0) e->c_unverified_csum++;

    /* key */
    uint8_t key[40]; memset(key, 0, 40);
    int alen = ip->ipver == 4 ? 4 : 16;
    uint8_t a[18], b[18]; memset(a, 0, 18); memset(b, 0, 18);
    memcpy(a, ip->src, alen); a[16] = (uint8_t)(sport >> 8); a[17] = (uint8_t)sport;
    memcpy(b, ip->dst, alen); b[16] = (uint8_t)(dport >> 8); b[17] = (uint8_t)dport;
    int src_is_low = memcmp(a, b, 18) <= 0;
    memcpy(key, src_is_low ? a : b, 18);
    memcpy(key + 18, src_is_low ? b : a, 18);
    key[36] = (uint8_t)ip->ipver;
    key[39] = 1;
    /* sharded runs (--jobs, Dask): every shard reads and decodes every frame, so frame
     * numbers and counters are the whole capture's; only the connections of this shard
     * are tracked. A 4-tuple's every packet lands in one shard, so its stream splits,
     * states and analysis are exactly those of an unsharded run. The high bits are used:
     * the flow table indexes by the low ones. */
    uint64_t hash = hash_key(key);          /* once per packet: the shard and the flow slot */
    if (e->shard_n > 1 && (uint32_t)((hash >> 40) % e->shard_n) != e->shard_k) return 0;
    /* only some 4-tuples (the packets of a few connections, read again): the same
     * argument as for shards, a 4-tuple's packets are tracked exactly as in a full run */
    if (e->n_only_keys && !bsearch(key, e->only_keys, e->n_only_keys, 40, eng_cmp_key40)) return 0;
    int created;
    flow_t *f = flow_find(e, key, hash, &created);
    if (!f) return -1;

    stream_t *s = f->stream >= 0 ? &e->streams[f->stream] : NULL;
    int dir = 0;
    if (s) dir = (memcmp(s->addr[0], ip->src, alen) == 0 && s->port[0] == sport &&
                  memcmp(s->addr[1], ip->dst, alen) == 0 && s->port[1] == dport) ? 0 : 1;

    /* Wireshark's split rule (4.0): a pure SYN whose direction already has a base
     * sequence number different from this one starts a new stream ("TCP port numbers
     * reused"). The same ISN is a retransmission, even after a FIN or RST; a SYN/ACK
     * never splits (it is only flagged). */
    int reused = 0;
    if (s && (flags & (TH_SYN | TH_ACK)) == TH_SYN) {
        dir_t *fd = &s->d[dir];
        if ((fd->flags & DF_SEQ) && seq != fd->isn) reused = 1;
    }
    if (s && e->zeek_mode) {
        zk_t *z = &e->zk[s->stream];
        int zo = s->d[0].zstate, zr = s->d[1].zstate;
        int expired = 0;
        if (z->close_deadline && ts >= z->close_deadline) expired = 1;
        if (z->attempt_deadline && ts >= z->attempt_deadline && zo == 1 && zr == 0)
            expired = 1;   /* a first SYN/ACK makes its sender the responder: no attempt */
        if (ts >= z->last_time + z->inactivity_ns) expired = 1;
        /* Zeek's IsReuse: a pure SYN with another ISN, or any SYN once a side closed */
        int zreuse = 0;
        if ((flags & (TH_SYN | TH_ACK)) == TH_SYN) {
            dir_t *o = (s->d[0].flags & DF_SEQ) ? &s->d[0] : &s->d[1];
            if (z->did_close[0] || z->did_close[1] || ((o->flags & DF_SEQ) && seq != o->isn)) zreuse = 1;
        }
        reused = expired || zreuse;
    }
    if (!s || reused) {
        int64_t idx = (int64_t)e->stream_n;
        s = new_stream(e);
        if (!s) return -1;
        f->stream = idx;
        memcpy(s->addr[0], ip->src, alen); memcpy(s->addr[1], ip->dst, alen);
        s->port[0] = sport; s->port[1] = dport;
        s->ipver = (uint8_t)ip->ipver;
        s->first_frame = e->frame; s->first_ts = ts;
        s->reused = (uint8_t)reused;
        s->vlan_or_tunnel = (uint8_t)e->cur_tunnelled;
        dir = 0;
    }

    int64_t frame = e->frame;
    dir_t *me = &s->d[dir], *peer = &s->d[dir ^ 1];
    uint16_t analysis = reused ? A_REUSED : 0;
    uint32_t nextseq_before = me->nextseq;

    /* idle gap (any direction) */
    if (s->last_frame && ts - s->last_ts > s->max_idle_ns) {
        s->max_idle_ns = ts - s->last_ts; s->max_idle_frame = frame;
    }
    if (!s->last_frame || ts >= s->last_ts) s->last_ts = ts;
    s->last_frame = frame;

    me->packets++;
    if (!(me->flags & DF_SEEN)) {
        me->flags |= DF_SEEN;
        me->first_frame = frame; me->first_ts = ts;
        me->ttl_first = ip->ttl; me->ipid_first = ip->ipid;
        if (e->cur_mac) memcpy(me->mac_first, e->cur_mac, 6);
    } else {
        if (ip->ttl != me->ttl_last) me->ttl_changes++;
        if (e->cur_mac && memcmp(me->mac_last, e->cur_mac, 6) != 0) me->mac_changes++;
    }
    int mac_differs = e->cur_mac && (me->flags & DF_SEEN) && me->packets > 1 &&
                      memcmp(me->mac_last, e->cur_mac, 6) != 0;
    uint8_t prev_ttl = me->packets > 1 ? me->ttl_last : ip->ttl;
    uint16_t prev_ipid = me->packets > 1 ? me->ipid_last : ip->ipid;
    me->last_frame = frame; me->last_ts = ts;
    me->ttl_last = ip->ttl; me->ipid_last = ip->ipid;
    if (ip->ttl < me->ttl_min) me->ttl_min = ip->ttl;
    if (ip->ttl > me->ttl_max) me->ttl_max = ip->ttl;
    if (ip->ipid == 0 && ip->ipver == 4) me->ipid_zero++;
    if (e->cur_mac) memcpy(me->mac_last, e->cur_mac, 6);
    me->ip_bytes += ip->ip_len;
    if (cut) me->cut_packets++;

    if (csum == 2) {
        me->bad_checksums++;
        if (e->verify_checksums) {
            hist_log(s, dir, &me->hist_c, me->bad_checksums, 'C');
            goto emit;     /* strict mode: the packet is counted, not used */
        }
    } else if (csum == 0) me->unverified_checksums++;

    {
    int syn = flags & TH_SYN, fin = flags & TH_FIN, rst = flags & TH_RST, ackf = flags & TH_ACK;
    uint32_t seglen = payload_len + (syn ? 1 : 0) + (fin ? 1 : 0);

    /* --- sequence analysis (Wireshark's definitions, simplified) */
    if (!(me->flags & DF_SEQ)) {
        me->flags |= DF_SEQ;
        me->isn = seq;
        me->nextseq = seq + seglen;
        me->seq_hi = seglen;
        if (payload_len) me->last_seg_ts = ts;
    } else {
        if (!syn && !fin && !rst && payload_len <= 1 && seq == me->nextseq - 1) {
            analysis |= A_KEEPALIVE; me->keepalives++;
        } else if (seglen > 0 && !rst && seq_lt(seq, me->nextseq)) {
            int64_t thresh = 3000000;  /* 3 ms */
            if (ts - me->last_seg_ts < thresh && me->nextseq != seq + seglen) {
                analysis |= A_OOO; me->out_of_order++;
            } else {
                analysis |= A_RETRANS;
                if (payload_len) me->retransmissions++;
            }
        } else if (!rst && seq_gt(seq, me->nextseq)) {
            analysis |= A_LOST; me->lost_segments++;
        }
        if (!(analysis & A_KEEPALIVE) && !rst && seq_gt(seq + seglen, me->nextseq)) {
            me->seq_hi += (int64_t)(uint32_t)(seq + seglen - me->nextseq);
            me->nextseq = seq + seglen;
        }
        if (seglen > 0 && !(analysis & A_KEEPALIVE)) me->last_seg_ts = ts;
    }
    if (ackf && (peer->flags & DF_SEQ) && seq_gt(ack, peer->nextseq)) {
        analysis |= A_ACKUNSEEN; me->ack_unseen++;
    }
    if (!syn && !fin && !rst && win == 0) { analysis |= A_ZEROWIN; me->zero_windows++; }
    if (!syn && !fin && !rst && payload_len == 0 && ackf && me->packets > 1 &&
        ack == me->last_ack && win == me->last_win && win != 0) {
        analysis |= A_DUPACK; me->dup_acks++;
    }
    me->last_ack = ack; me->last_win = win;

    /* --- data bookkeeping */
    if (payload_len) {
        me->payload_bytes += payload_len;
        me->captured_payload_bytes += captured;
        if (!me->first_data_frame) {
            me->first_data_frame = frame; me->first_data_ts = ts;
            uint32_t n = captured < 8 ? captured : 8;
            memcpy(me->head, t + doff, n); me->head_len = (uint8_t)n;
        }
        /* a segment that is exactly one TLS alert record (close_notify before a FIN, a
         * fatal alert; TLS 1.3 hides it in a 19-byte application-data record) ends the
         * conversation, it is not data: it must not reset the idle timer */
        if (eng_is_tls_alert_segment(t + doff, captured, payload_len)) {
            if (!me->first_alert_frame) { me->first_alert_frame = frame; me->first_alert_ts = ts; }
        } else {
            me->last_data_frame = frame; me->last_data_ts = ts;
            int ctl = eng_tls_control_segment(t + doff, captured, payload_len);
            if (ctl != 1) { me->last_msg_frame = frame; me->last_msg_ts = ts; }
            if (ctl == 0) { me->last_msg12_frame = frame; me->last_msg12_ts = ts; }
        }
    }
    /* (a stream already handed over by app_tails_for gets nothing more: its late
     * bytes would not be parsed) */
    if (e->app_mode && payload_len && captured && !rst && !(analysis & A_KEEPALIVE) &&
        !e->appst[s->stream].done && !e->appst[s->stream].framed) {
        if (eng_app_segment(e, s, me, dir, seq, t + doff, captured, payload_len, frame, ts, flags) < 0) return -1;
    }
    /* TLS records of a connection whose keys are known (decided at its first payload) */
    if (e->app_mode && payload_len && !rst && !(analysis & A_KEEPALIVE) && !e->appst[s->stream].done &&
        (e->appst[s->stream].tls || ((e->n_tls_randoms || e->n_tls_sessions) && !e->appst[s->stream].pad_))) {
        if (eng_tls_segment(e, s, me, dir, seq, t + doff, captured, payload_len, frame, ts) < 0) return -1;
    }

    /* --- flag counters */
    if (syn && !ackf) {
        if (me->syn_pkts && (me->flags & DF_SYN_SEEN) && seq == me->isn) me->syn_retransmits++;
        me->syn_pkts++;
        if (!me->first_syn_frame) me->first_syn_frame = frame;
        me->last_syn_ts = ts;
        me->flags |= DF_SYN_SEEN;
    }
    if (syn && ackf) { me->synack_pkts++; if (!me->first_synack_frame) { me->first_synack_frame = frame; me->first_synack_ts = ts; } }
    if (fin) {
        me->fin_pkts++;
        if (!me->first_fin_frame) { me->first_fin_frame = frame; me->first_fin_ts = ts; }
        if (!(me->flags & DF_FIN_SENT)) { me->fin_seq = seq + payload_len + (syn ? 1 : 0); }
        me->flags |= DF_FIN_SENT;
    }
    if (rst) {
        me->rst_pkts++;
        if (!me->first_rst_frame) { me->first_rst_frame = frame; me->first_rst_ts = ts; }
    }
    if (fin && rst) s->fin_rst_same_packet = 1;

    /* --- the first FIN / first RST of the connection, with both states before it */
    if (fin && !s->fin_frame) {
        s->fin_frame = frame; s->fin_ts = ts; s->fin_dir = (uint8_t)dir;
        s->fin_sender_state = me->state; s->fin_peer_state = peer->state;
    }
    if (rst && !s->rst_frame) {
        s->rst_frame = frame; s->rst_ts = ts; s->rst_dir = (uint8_t)dir;
        s->rst_sender_state = me->state; s->rst_peer_state = peer->state;
        s->rst_seq = seq; s->rst_ack = ack; s->rst_expected_seq = nextseq_before;
        s->rst_ttl = ip->ttl; s->rst_prev_ttl = prev_ttl;
        s->rst_ipid = ip->ipid; s->rst_prev_ipid = prev_ipid;
        s->rst_flags = (uint8_t)flags; s->rst_mac_differs = (uint8_t)mac_differs;
    }
    /* a RST once both FINs were out (RST-after-close); fin flag of this packet excluded */
    if (rst && s->d[0].first_fin_frame && s->d[1].first_fin_frame &&
        s->d[0].first_fin_frame < frame && s->d[1].first_fin_frame < frame)
        s->rst_after_close = 1;

    /* --- Zeek history letters */
    {
        int multi = (syn && fin) || (syn && rst);
        if (multi) {
            if (!(me->flags & DF_HIST_Q)) { me->flags |= DF_HIST_Q; hist_add(s, dir, 'Q'); }
        } else if (fin && rst) {
            if (!(me->flags & DF_HIST_I)) { me->flags |= DF_HIST_I; hist_add(s, dir, 'I'); }
        } else if (syn) {
            if (!(me->hflags & HF_SYN) || me->h_syn_seq != seq) hist_add(s, dir, ackf ? 'H' : 'S');
            me->hflags |= HF_SYN; me->h_syn_seq = seq;
        } else if (fin) {
            uint32_t fs = seq + payload_len;
            if (!(me->hflags & HF_FIN) || me->h_fin_seq != fs) hist_add(s, dir, 'F');
            me->hflags |= HF_FIN; me->h_fin_seq = fs;
        } else if (rst) {
            if (!(me->hflags & HF_RST) || me->h_rst_seq != seq) hist_add(s, dir, 'R');
            me->hflags |= HF_RST; me->h_rst_seq = seq;
        } else if (payload_len) {
            if (!(me->flags & DF_HIST_D)) { me->flags |= DF_HIST_D; hist_add(s, dir, 'D'); }
        } else if (ackf) {
            if (!(me->flags & DF_HIST_A)) { me->flags |= DF_HIST_A; hist_add(s, dir, 'A'); }
        }
        if ((analysis & (A_RETRANS | A_OOO)) && payload_len)
            hist_log(s, dir, &me->hist_t, me->retransmissions + me->out_of_order, 'T');
        if (analysis & A_LOST) hist_log(s, dir, &me->hist_g, me->lost_segments, 'G');
        if ((analysis & A_ZEROWIN) && !(peer->flags & DF_FIN_SENT) && !s->rst_frame)
            hist_log(s, dir, &me->hist_w, me->zero_windows, 'W');
    }

    /* --- state machines: sender kinds, then receiver kinds, in Kind order */
    {
        int other = dir ^ 1;
        if (syn) apply(e, s, frame, ts, dir, ackf ? K_SYNACK_OUT : K_SYN_OUT);
        if (!syn && !rst) apply(e, s, frame, ts, dir, K_SEG_OUT);
        if (fin && !syn) {
            /* FINs crossed: the peer's FIN is out but this FIN does not acknowledge it */
            int crossed = (peer->flags & DF_FIN_SENT) && peer->first_fin_frame < frame &&
                          (!ackf || seq_lt(ack, peer->fin_seq + 1));
            if (crossed) s->simultaneous_close = 1;
            apply(e, s, frame, ts, dir, crossed ? K_FIN_CROSS_OUT : K_FIN_OUT);
        }
        if (rst) apply(e, s, frame, ts, dir, K_RST_OUT);
        if (syn) apply(e, s, frame, ts, other, ackf ? K_SYNACK_IN : K_SYN_IN);
        if (!syn && !rst) {
            int acks_fin = ackf && (peer->flags & DF_FIN_SENT) && !seq_lt(ack, peer->fin_seq + 1);
            apply(e, s, frame, ts, other, acks_fin ? K_ACK_OF_FIN_IN : K_SEG_IN);
        }
        if (fin && !syn) apply(e, s, frame, ts, other, K_FIN_IN);
        if (rst) apply(e, s, frame, ts, other, K_RST_IN);
        if (e->zeek_mode) {
            zk_t *z = &e->zk[s->stream];
            int zme = me->zstate, zpeer = peer->zstate;
            if (me->packets == 1 && s->first_frame == frame && syn)
                z->attempt_deadline = ts + 5 * NS;
            if (!z->inactivity_ns) z->inactivity_ns = 60 * NS;
            int hs_me = zme <= 2, hs_peer = zpeer <= 2;   /* INACTIVE, SYN_SENT, SYN_ACK_SENT */
            if (!(hs_me && hs_peer) && z->inactivity_ns == 60 * NS) {
                int p0 = s->port[0], p1 = s->port[1];
                int long_port = p0 == 21 || p0 == 22 || p0 == 23 || p0 == 513 ||
                                p1 == 21 || p1 == 22 || p1 == 23 || p1 == 513;
                z->inactivity_ns = (long_port ? 3600 : 300) * NS;
            }
            if (!(z->did_close[0] && z->did_close[1])) z->last_time = ts;
            int closing = (fin || rst) && !z->did_close[dir] && zme >= 5;  /* CLOSED or RESET */
            if (closing) {
                z->did_close[dir] = 1;
                int complete = zme == 6 || zme == 7 || z->did_close[dir ^ 1] || zpeer == 0;
                if (complete) z->close_deadline = z->last_time + 5 * NS;
            } else if (rst && z->did_close[dir] && (zme == 6 || zme == 7)) {
                z->close_deadline = ts + 5 * NS;               /* ResetTimer */
            }
        }
    }
    }

emit:
    if (e->emit_packets) {
        pkt_t *o = out;
        o->frame = frame; o->ts = ts; o->stream = s->stream; o->rec_off = e->cur_rec_off;
        o->seq = seq; o->ack = ack; o->payload_len = payload_len; o->captured_len = captured;
        o->nextseq_before = nextseq_before;
        o->flags = flags; o->win = win; o->ipid = ip->ipid; o->analysis = analysis;
        { ptrdiff_t po = (t + doff) - e->cur_rec_data; o->payload_off = (uint16_t)(po > 65535 ? 65535 : po); }
        o->dir = (uint8_t)dir; o->ttl = ip->ttl; o->csum = (uint8_t)csum;
        o->iface = (uint8_t)e->cur_iface;
        o->state0 = s->d[0].state; o->state1 = s->d[1].state;
        if (e->cur_mac) memcpy(o->mac, e->cur_mac, 6); else memset(o->mac, 0, 6);
        o->pad[0] = o->pad[1] = 0;
        *emitted = 1;
    }
    return 0;
}
