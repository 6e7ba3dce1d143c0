/* tls_frame.c: TLS record boundaries per direction, for the connections whose keys are
 * known (see tlsrec_t in engine.h).
 *
 * Why here and not in Python: decryption needs the records of a direction in order,
 * each with its sequence number, and a TCP stream holds them cut across segments, with
 * retransmissions, reordering and holes. Walking the 5-byte headers across segments is a
 * per-segment job at wire speed; doing it in Python would be the loop per packet this
 * engine exists to avoid. Only the connections whose keys are known are framed, and
 * Python gets one row per record instead of one per segment.
 *
 * What is copied of a record: AEAD suites are counter mode, so a record's first bytes
 * (an HTTP head) and its last bytes (TLS 1.3's inner content type) decrypt without the
 * rest, and the framer can hand over only those (`tls_whole`, `tls_head`). Measured on
 * the HTTPS benchmark (1M packets), copying every record whole is faster: Python's
 * AES-GCM decrypts and verifies a 16 KiB record in 2.7 us, while counter-mode access to
 * its first 2 KiB costs 12 us, most of it making the cipher object (cryptography 48).
 * So whole records are the default, every tag is verified, and heads and tails remain
 * for the records the capture did not hold whole.
 *
 * A connection is framed when its ClientHello (the first payload of the connection, at
 * offset 0) carries a random that is in the key log (Engine.set_tls_randoms), or a TLS
 * 1.2 session id that Python reported as resumable (Engine.add_tls_sessions); a client
 * that offers h2 in ALPN gets every record whole (HPACK needs every HEADERS frame, and
 * HTTP/2 frames start anywhere in a record). Per direction:
 *
 *   - bytes are taken in sequence order; a segment that arrives ahead of a hole is held
 *     (at most 64 segments and 1 MiB a direction, 64 MiB in all) until the hole is
 *     filled, or declared lost when the limits are reached or the connection is handed
 *     over; retransmitted and overlapping bytes are used once;
 *   - a hole inside a record's body only costs that record's copy (TLSR_MISSING); a hole
 *     over a header loses the framing: the walk then searches the following bytes for
 *     a header of the direction's version whose length chains to the next header
 *     (TLSR_AFTER_GAP on the first record found; its index is then only a lower bound,
 *     and Python confirms the true sequence number by trial decryption: that record is
 *     copied whole so its tag can be checked);
 *   - nothing is decrypted or verified here.
 */
#include "engine.h"

#define OOO_MAX_SEGS 64
#define OOO_MAX_DIR (1u << 20)
#define OOO_MAX_ALL ((size_t)64 << 20)

typedef struct ooo_seg {
    struct ooo_seg *next;
    uint32_t rel, plen, cap;
    int64_t frame, ts;
    uint8_t data[];
} ooo_seg;

enum { FR_HDR = 0, FR_BODY = 1, FR_LOST = 2, FR_TUNNEL = 3 };

typedef struct {
    uint32_t expect;        /* offset of the next byte wanted, from the direction's first byte */
    uint32_t rec_start, rec_len, rec_got;
    uint32_t index;         /* records emitted so far */
    uint32_t head_lim;      /* body bytes of the current record to copy from its start */
    uint32_t head_n;        /* copied so far (contiguous from the start) */
    uint32_t tail_n;        /* valid bytes in tail[] (contiguous, ending at rec_got) */
    uint32_t buf_cap;
    uint8_t hdr[5], hdr_n, state, rflags;
    uint8_t ver_minor;      /* of the last good header: what a search after a gap looks for */
    uint8_t crlf;           /* FR_TUNNEL: bytes of "\r\n\r\n" matched so far */
    uint8_t pad[2];
    int64_t rec_frame, rec_ts, last_frame, last_ts;
    uint8_t *buf;
    uint8_t tail[TLS_TAIL];
    ooo_seg *ooo;
    uint32_t ooo_n, ooo_bytes;
} tlsdir_t;

struct tlsfr {
    tlsdir_t d[2];
    uint8_t whole;          /* every record whole (the client offered h2) */
    uint8_t session;        /* framed for a resumed session, not by its random */
    uint8_t tunnel;         /* an HTTP CONNECT: TLS starts after each direction's head */
    uint8_t client;         /* the direction of the ClientHello (or of the CONNECT) */
    uint8_t dead;           /* a tunnel whose ClientHello is not known: nothing more */
};

static int known_hello(Engine *e, const uint8_t *p, uint32_t n, int *session);
static int offers_h2(const uint8_t *m, uint32_t n);

static int plausible(const uint8_t *h) {
    uint8_t t = h[0];
    if (t < 20 || t > 24 || h[1] != 3 || h[2] > 4) return 0;
    uint32_t len = ((uint32_t)h[3] << 8) | h[4];
    return len > 0 && len <= TLS_MAX_BODY;
}

static int emit(Engine *e, int64_t stream, struct tlsfr *f, tlsdir_t *d, int dir, int partial) {
    if (f->tunnel && dir == f->client && d->index == 0) {
        /* the first record inside a CONNECT tunnel: framed only for a known ClientHello */
        uint8_t h[44];
        int session = 0;
        memcpy(h, d->hdr, 5);
        uint32_t n = d->head_n < 39 ? d->head_n : 39;
        memcpy(h + 5, d->buf, n);
        if (d->hdr[0] != 22 || !known_hello(e, h, 5 + n, &session)) {
            f->dead = 1;                      /* (every loop over this framer stops on dead) */
            d->state = FR_LOST; d->hdr_n = 0;
            return 0;
        }
        if (session) d->rflags |= TLSR_SESSION;
        f->whole = d->head_n > 4 && (uint8_t)offers_h2(d->buf + 4, d->head_n - 4);
        e->c_tls_streams++;
    }
    if (e->tlsrec_n == e->tlsrec_cap) {
        size_t ncap = e->tlsrec_cap ? e->tlsrec_cap * 2 : 4096;
        tlsrec_t *nr = realloc(e->tlsrec, ncap * sizeof(tlsrec_t));
        if (!nr) return -1;
        e->tlsrec = nr; e->tlsrec_cap = ncap;
    }
    uint32_t head = d->head_n;
    uint32_t tail = 0;
    if (!partial && head < d->rec_len) {
        tail = d->tail_n < TLS_TAIL ? d->tail_n : TLS_TAIL;
        if (tail > d->rec_len - head) tail = d->rec_len - head;
    }
    if (!e->tlsbuf || e->tlsbuf_n + head + tail > e->tlsbuf_cap) {
        /* (take_tls hands the buffer over and leaves its capacity as the size of the next) */
        size_t ncap = e->tlsbuf_cap ? e->tlsbuf_cap : 1 << 20;
        while (ncap < e->tlsbuf_n + head + tail) ncap *= 2;
        uint8_t *nb = realloc(e->tlsbuf, ncap);
        if (!nb) return -1;
        e->tlsbuf = nb; e->tlsbuf_cap = ncap;
    }
    tlsrec_t *r = &e->tlsrec[e->tlsrec_n++];
    memset(r, 0, sizeof *r);
    r->stream = stream; r->frame = d->rec_frame; r->ts = d->rec_ts;
    r->end_frame = d->last_frame; r->end_ts = d->last_ts;
    r->offset = d->rec_start; r->len = d->rec_len; r->index = d->index;
    r->off = (uint32_t)e->tlsbuf_n; r->head = head; r->tail = tail;
    r->version = (uint16_t)((d->hdr[1] << 8) | d->hdr[2]);
    r->dir = (uint8_t)dir; r->type = d->hdr[0];
    r->flags = (uint8_t)(d->rflags | (partial ? TLSR_PARTIAL : 0));
    if (head) memcpy(e->tlsbuf + e->tlsbuf_n, d->buf, head);
    if (tail) memcpy(e->tlsbuf + e->tlsbuf_n + head, d->tail + d->tail_n - tail, tail);
    e->tlsbuf_n += head + tail;
    e->c_tls_records++;
    d->index++;
    d->state = FR_HDR; d->hdr_n = 0; d->rflags = 0;
    if (d->buf_cap > 8192) { free(d->buf); d->buf = NULL; d->buf_cap = 0; }   /* (a whole big record's buffer) */
    return 0;
}

static void tail_push(tlsdir_t *d, const uint8_t *p, uint32_t k) {
    if (k >= TLS_TAIL) { memcpy(d->tail, p + k - TLS_TAIL, TLS_TAIL); d->tail_n = TLS_TAIL; return; }
    uint32_t keep = d->tail_n + k > TLS_TAIL ? TLS_TAIL - k : d->tail_n;
    memmove(d->tail, d->tail + d->tail_n - keep, keep);
    memcpy(d->tail + keep, p, k);
    d->tail_n = keep + k;
}

static int start_record(Engine *e, struct tlsfr *f, tlsdir_t *d) {
    d->rec_len = ((uint32_t)d->hdr[3] << 8) | d->hdr[4];
    d->rec_got = 0; d->head_n = 0; d->tail_n = 0;
    d->ver_minor = d->hdr[2];
    uint32_t lim = d->rec_len;
    if (d->hdr[0] == 23 && !f->whole && !(d->rflags & TLSR_AFTER_GAP) && d->rec_len > e->tls_whole &&
        d->rec_start >= e->tls_prefix)
        lim = e->tls_head < d->rec_len ? e->tls_head : d->rec_len;
    d->head_lim = lim;
    if (lim > d->buf_cap) {
        uint32_t ncap = lim < 2048 ? 2048 : lim;
        uint8_t *nb = realloc(d->buf, ncap);
        if (!nb) return -1;
        d->buf = nb; d->buf_cap = ncap;
    }
    d->state = FR_BODY;
    return 0;
}

/* the first header of the direction's version in p[0:n) whose record, when it ends
 * inside p, is followed by another plausible header; -1 if none */
static long search(const tlsdir_t *d, const uint8_t *p, uint32_t n) {
    for (uint32_t i = 0; i + 5 <= n; i++) {
        if ((p[i] != 23 && p[i] != 21) || p[i + 1] != 3 || p[i + 2] != d->ver_minor) continue;
        uint32_t len = ((uint32_t)p[i + 3] << 8) | p[i + 4];
        if (len < 17 || len > TLS_MAX_BODY) continue;
        if ((uint64_t)i + 10 + len <= n && !plausible(p + i + 5 + len)) continue;
        return (long)i;
    }
    return -1;
}

/* n present bytes at d->expect */
static int consume(Engine *e, int64_t st, struct tlsfr *f, int dir, const uint8_t *p, uint32_t n,
                   int64_t frame, int64_t ts) {
    tlsdir_t *d = &f->d[dir];
    while (n && !f->dead) {
        if (d->state == FR_TUNNEL) {                /* the CONNECT request or its answer: to its end */
            static const uint8_t want[4] = {'\r', '\n', '\r', '\n'};
            uint32_t i = 0;
            while (i < n && d->crlf < 4) {
                if (p[i] == want[d->crlf]) d->crlf++;
                else d->crlf = p[i] == '\r' ? 1 : 0;
                i++;
            }
            d->expect += i; p += i; n -= i;
            if (d->crlf == 4) { d->state = FR_HDR; d->hdr_n = 0; }
            continue;
        }
        if (d->state == FR_LOST) {
            long at = search(d, p, n);
            if (at < 0) { d->expect += n; return 0; }     /* (a header split by this segment's end is missed) */
            d->expect += (uint32_t)at; p += at; n -= (uint32_t)at;
            d->state = FR_HDR; d->hdr_n = 0; d->rflags |= TLSR_AFTER_GAP;
            e->c_tls_resyncs++;
            continue;
        }
        if (d->state == FR_HDR) {
            if (d->hdr_n == 0) { d->rec_start = d->expect; d->rec_frame = frame; d->rec_ts = ts; }
            uint32_t need = 5u - d->hdr_n, k = need < n ? need : n;
            memcpy(d->hdr + d->hdr_n, p, k);
            d->hdr_n += (uint8_t)k; d->expect += k; p += k; n -= k;
            d->last_frame = frame; d->last_ts = ts;
            if (d->hdr_n < 5) return 0;
            if (!plausible(d->hdr)) {               /* not (or no longer) TLS records */
                d->state = FR_LOST; d->hdr_n = 0; e->c_tls_gaps++;
                continue;
            }
            if (start_record(e, f, d) < 0) return -1;
            continue;
        }
        uint32_t k = d->rec_len - d->rec_got < n ? d->rec_len - d->rec_got : n;
        if (d->head_n == d->rec_got && d->head_n < d->head_lim) {
            uint32_t c = d->head_lim - d->head_n < k ? d->head_lim - d->head_n : k;
            memcpy(d->buf + d->head_n, p, c);
            d->head_n += c;
        }
        if (d->head_lim < d->rec_len) tail_push(d, p, k);
        d->rec_got += k; d->expect += k; p += k; n -= k;
        d->last_frame = frame; d->last_ts = ts;
        if (d->rec_got == d->rec_len && emit(e, st, f, d, dir, 0) < 0) return -1;
    }
    return 0;
}

/* m bytes at d->expect that are not in the capture (a hole, or cut by the snaplen) */
static int skip(Engine *e, int64_t st, struct tlsfr *f, int dir, uint32_t m) {
    tlsdir_t *d = &f->d[dir];
    while (m && !f->dead) {
        if (d->state == FR_BODY) {
            uint32_t k = d->rec_len - d->rec_got < m ? d->rec_len - d->rec_got : m;
            d->rec_got += k; d->expect += k; m -= k;
            d->rflags |= TLSR_MISSING; d->tail_n = 0;
            if (d->rec_got == d->rec_len && emit(e, st, f, d, dir, 0) < 0) return -1;
            continue;
        }
        if (d->state == FR_HDR || d->state == FR_TUNNEL) { d->state = FR_LOST; d->hdr_n = 0; e->c_tls_gaps++; }
        d->expect += m; m = 0;
    }
    return 0;
}

static int in_order(Engine *e, int64_t st, struct tlsfr *f, int dir, const uint8_t *p, uint32_t cap,
                    uint32_t plen, int64_t frame, int64_t ts) {
    if (cap && consume(e, st, f, dir, p, cap, frame, ts) < 0) return -1;
    return plen > cap ? skip(e, st, f, dir, plen - cap) : 0;
}

/* a segment [rel, rel+plen) whose first bytes may already be framed: the new part */
static int take(Engine *e, int64_t st, struct tlsfr *f, int dir, uint32_t rel, const uint8_t *p,
                uint32_t cap, uint32_t plen, int64_t frame, int64_t ts) {
    tlsdir_t *d = &f->d[dir];
    if (!seq_gt(rel + plen, d->expect)) return 0;
    if (seq_lt(rel, d->expect)) {
        uint32_t cut = d->expect - rel;
        p += cut < cap ? cut : cap; cap = cut < cap ? cap - cut : 0; plen -= cut;
    }
    return in_order(e, st, f, dir, p, cap, plen, frame, ts);
}

static void ooo_free_one(Engine *e, tlsdir_t *d, ooo_seg *g) {
    d->ooo_n--; d->ooo_bytes -= g->cap; e->tls_ooo_bytes -= g->cap;
    free(g);
}

/* the held segments that are now next in order */
static int drain(Engine *e, int64_t st, struct tlsfr *f, int dir) {
    tlsdir_t *d = &f->d[dir];
    while (d->ooo && !f->dead && !seq_gt(d->ooo->rel, d->expect)) {
        ooo_seg *g = d->ooo; d->ooo = g->next;
        int r = take(e, st, f, dir, g->rel, g->data, g->cap, g->plen, g->frame, g->ts);
        ooo_free_one(e, d, g);
        if (r < 0) return -1;
    }
    return 0;
}

/* give up waiting: the holes before the held segments are lost */
static int flush_ooo(Engine *e, int64_t st, struct tlsfr *f, int dir) {
    tlsdir_t *d = &f->d[dir];
    while (d->ooo) {
        ooo_seg *g = d->ooo; d->ooo = g->next;
        int r = 0;
        if (seq_gt(g->rel, d->expect)) r = skip(e, st, f, dir, g->rel - d->expect);
        if (r == 0) r = take(e, st, f, dir, g->rel, g->data, g->cap, g->plen, g->frame, g->ts);
        ooo_free_one(e, d, g);
        if (r < 0) return -1;
        if (drain(e, st, f, dir) < 0) return -1;
    }
    return 0;
}

static int hold(Engine *e, tlsdir_t *d, uint32_t rel, const uint8_t *p, uint32_t cap, uint32_t plen,
                int64_t frame, int64_t ts) {
    ooo_seg *g = malloc(sizeof(ooo_seg) + cap);
    if (!g) return -1;
    g->rel = rel; g->cap = cap; g->plen = plen; g->frame = frame; g->ts = ts;
    memcpy(g->data, p, cap);
    ooo_seg **at = &d->ooo;
    while (*at && seq_lt((*at)->rel, rel)) at = &(*at)->next;
    g->next = *at; *at = g;
    d->ooo_n++; d->ooo_bytes += cap; e->tls_ooo_bytes += cap;
    return 0;
}

static int cmp32(const void *a, const void *b) { return memcmp(a, b, 32); }
static int cmp33(const void *a, const void *b) { return memcmp(a, b, 33); }

/* The client offers h2 in ALPN: walk the ClientHello's extensions (bounds-checked; a
 * ClientHello cut by the segment is read as far as it goes). `m` is the handshake
 * message body (after its 4-byte header), n bytes of it present. */
static int offers_h2(const uint8_t *m, uint32_t n) {
    uint32_t pos = 2 + 32;
    if (pos + 1 > n) return 0;
    pos += 1 + m[pos];                                   /* session id */
    if (pos + 2 > n) return 0;
    pos += 2 + (((uint32_t)m[pos] << 8) | m[pos + 1]);   /* cipher suites */
    if (pos + 1 > n) return 0;
    pos += 1 + m[pos];                                   /* compression methods */
    if (pos + 2 > n) return 0;
    uint32_t end = pos + 2 + (((uint32_t)m[pos] << 8) | m[pos + 1]);
    pos += 2;
    if (end > n) end = n;
    while (pos + 4 <= end) {
        uint32_t type = ((uint32_t)m[pos] << 8) | m[pos + 1], len = ((uint32_t)m[pos + 2] << 8) | m[pos + 3];
        pos += 4;
        if (type == 16 && pos + 2 <= end) {
            uint32_t q = pos + 2, lend = pos + len < end ? pos + len : end;
            while (q < lend) {
                uint32_t l = m[q];
                if (q + 1 + l > lend) break;
                if (l == 2 && m[q + 1] == 'h' && m[q + 2] == '2') return 1;
                q += 1 + l;
            }
            return 0;
        }
        pos += len;
    }
    return 0;
}

/* Is this ClientHello record (header and body, n bytes of it here) one whose random is
 * in the key log, or that offers a known TLS 1.2 session id (*session set)? */
static int known_hello(Engine *e, const uint8_t *p, uint32_t n, int *session) {
    *session = 0;
    if (n < 5 + 4 + 2 + 32 + 1 || p[0] != 22 || p[1] != 3 || p[5] != 1) return 0;
    const uint8_t *random = p + 11;
    if (e->n_tls_randoms && bsearch(random, e->tls_randoms, e->n_tls_randoms, 32, cmp32)) return 1;
    uint8_t sid_len = p[43];
    if (e->n_tls_sessions && sid_len && sid_len <= 32 && n >= 44u + sid_len) {
        uint8_t key[33]; memset(key, 0, sizeof key);
        key[0] = sid_len; memcpy(key + 1, p + 44, sid_len);
        *session = bsearch(key, e->tls_sessions, e->n_tls_sessions, 33, cmp33) != NULL;
    }
    return *session;
}

/* The connection's first payload, sent by `dir`: a known ClientHello gets a framer; an
 * HTTP CONNECT gets one that skips each direction's head and looks at the ClientHello
 * that follows (emit); anything else none. */
static struct tlsfr *activate(Engine *e, const uint8_t *p, uint32_t n, int dir) {
    int session = 0, tunnel = n >= 8 && memcmp(p, "CONNECT ", 8) == 0;
    if (!tunnel && !known_hello(e, p, n, &session)) return NULL;
    struct tlsfr *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->client = (uint8_t)dir;
    f->tunnel = (uint8_t)tunnel;
    for (int d = 0; d < 2; d++) { f->d[d].ver_minor = 3; f->d[d].state = tunnel ? FR_TUNNEL : FR_HDR; }
    if (!tunnel) {
        uint32_t mlen = ((uint32_t)p[6] << 16) | ((uint32_t)p[7] << 8) | p[8];
        uint32_t have = n - 9 < mlen ? n - 9 : mlen;
        f->whole = (uint8_t)offers_h2(p + 9, have);
        f->session = (uint8_t)session;
        if (session) f->d[dir].rflags |= TLSR_SESSION;
        e->c_tls_streams++;
    } else {
        f->whole = 1;     /* (the ClientHello inside is not read before its records: copied whole) */
    }
    return f;
}

int eng_tls_segment(Engine *e, stream_t *s, dir_t *me, int dir, uint32_t seq, const uint8_t *pl,
                    uint32_t captured, uint32_t payload_len, int64_t frame, int64_t ts) {
    appst_t *as = &e->appst[s->stream];
    /* offset from the direction's first payload byte: its ISN is that of its first
     * packet, one before the data when that packet was a SYN or a SYN/ACK (as
     * app.facts.base_seq counts) */
    int syn_first = (me->first_syn_frame && me->first_syn_frame == me->first_frame) ||
                    (me->first_synack_frame && me->first_synack_frame == me->first_frame);
    uint32_t rel = seq - me->isn - (syn_first ? 1u : 0u);
    struct tlsfr *f = as->tls;
    if (!f) {
        /* decided once, at the connection's first payload (the pad_ byte of appst_t) */
        if (as->pad_) return 0;
        as->pad_ = 1;
        if (rel != 0 || !(f = activate(e, pl, captured, dir))) return 0;
        as->tls = f;
        /* (its ClientHello was copied as application bytes already, which says "TLS" to
         * the facts; the rest of a framed connection reaches Python as records only) */
        as->framed = !f->tunnel;
    }
    if (f->dead) return 0;
    tlsdir_t *d = &f->d[dir];
    if (!seq_gt(rel + payload_len, d->expect)) return 0;           /* nothing new */
    if (seq_gt(rel, d->expect)) {                                    /* a hole before it */
        if (d->ooo_n < OOO_MAX_SEGS && d->ooo_bytes + captured <= OOO_MAX_DIR &&
            e->tls_ooo_bytes + captured <= OOO_MAX_ALL)
            return hold(e, d, rel, pl, captured, payload_len, frame, ts);
        if (flush_ooo(e, s->stream, f, dir) < 0) return -1;
        if (seq_gt(rel, d->expect) && skip(e, s->stream, f, dir, rel - d->expect) < 0) return -1;
    }
    if (take(e, s->stream, f, dir, rel, pl, captured, payload_len, frame, ts) < 0) return -1;
    return drain(e, s->stream, f, dir);
}

/* The stream is handed over: held segments are framed past their holes, a record the
 * connection ended inside is emitted as partial, and the framer is freed. */
int eng_tls_flush(Engine *e, int64_t stream) {
    appst_t *as = &e->appst[stream];
    struct tlsfr *f = as->tls;
    if (!f) return 0;
    int r = 0;
    for (int dir = 0; dir < 2 && r == 0 && !f->dead; dir++) {
        r = flush_ooo(e, stream, f, dir);
        tlsdir_t *d = &f->d[dir];
        if (r == 0 && d->state == FR_BODY && d->rec_got) r = emit(e, stream, f, d, dir, 1);
    }
    eng_tls_free(e, as);
    return r;
}

void eng_tls_free(Engine *e, appst_t *as) {
    struct tlsfr *f = as->tls;
    if (!f) return;
    for (int dir = 0; dir < 2; dir++) {
        tlsdir_t *d = &f->d[dir];
        while (d->ooo) { ooo_seg *g = d->ooo; d->ooo = g->next; ooo_free_one(e, d, g); }
        free(d->buf);
    }
    free(f);
    as->tls = NULL;
}
