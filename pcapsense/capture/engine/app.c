/* app.c: the application bytes handed to Python (see app_t in engine.h). */
#include "engine.h"


/* One whole TLS alert record and nothing else: type 21 (cleartext, or TLS <= 1.2
 * encrypted: 26 bytes for AES-GCM, 32-80 for CBC, the IV, padding and a MAC of up to
 * 48 bytes included) or TLS 1.3's encrypted alert, an application-data record of 19
 * bytes (2 alert bytes, the inner type, a 16-byte tag) or 11 (AES-CCM_8's 8-byte tag). */
int eng_is_tls_alert_segment(const uint8_t *p, uint32_t captured, uint32_t payload_len) {
    if (captured < 5 || payload_len < 7 || payload_len > 5 + 128) return 0;
    if (p[1] != 3 || p[2] > 4) return 0;
    uint32_t len = ((uint32_t)p[3] << 8) | p[4];
    if (len + 5 != payload_len) return 0;
    if (p[0] == 21) return 1;
    return p[0] == 23 && (len == 19 || len == 11);
}

/* Whether a segment is exactly one TLS application-data record of the size of an HTTP/2
 * control frame, which a client sends after a response (SETTINGS ack, WINDOW_UPDATE,
 * RST_STREAM: 9 to 13 bytes) and which is too short for any request (an HTTP/2 HEADERS
 * frame is a 9-byte header and at least 6 bytes of HPACK; an HTTP/1 request at least 16
 * bytes). Without keys such records are not requests (rules.tls_exchange_view).
 *   1: at most 30 bytes: a control frame in TLS 1.3 (17 bytes of type and tag) and in
 *      TLS 1.2 with ChaCha20 (16), or in TLS 1.2 AES-GCM (24);
 *   2: 31 to 37 bytes: a control frame only in TLS 1.2 AES-GCM, whose 8-byte explicit
 *      nonce makes the smallest HEADERS 39 bytes (in TLS 1.3 it may be a HEADERS frame);
 *   0: anything else. */
int eng_tls_control_segment(const uint8_t *p, uint32_t captured, uint32_t payload_len) {
    if (captured < 5 || payload_len > 5 + 37 || p[0] != 23 || p[1] != 3) return 0;
    uint32_t len = ((uint32_t)p[3] << 8) | p[4];
    if (len + 5 != payload_len) return 0;
    return len <= 30 ? 1 : 2;
}

static int starts_http_message(const uint8_t *p, uint32_t n) {
    static const struct { const char *t; uint32_t l; } tok[] = {
        {"GET ", 4}, {"POST ", 5}, {"PUT ", 4}, {"HEAD ", 5}, {"DELETE ", 7}, {"OPTIONS ", 8},
        {"PATCH ", 6}, {"CONNECT ", 8}, {"TRACE ", 6}, {"HTTP/1.", 7}, {"PRI * HTTP/2", 12}};
    if (n < 4) return 0;
    switch (p[0]) {                      /* (most segments start with none of the letters) */
    case 'G': case 'P': case 'H': case 'D': case 'O': case 'C': case 'T': break;
    default: return 0;
    }
    for (size_t i = 0; i < sizeof tok / sizeof tok[0]; i++)
        if (n >= tok[i].l && memcmp(p, tok[i].t, tok[i].l) == 0) return 1;
    return 0;
}

static int push_app(Engine *e, int64_t stream, int64_t frame, int64_t ts, uint32_t seq, uint32_t len,
                    const uint8_t *data, uint32_t cap, int dir, int tail, int flags) {
    if (e->app_n == e->app_cap) {
        size_t ncap = e->app_cap ? e->app_cap * 2 : 4096;
        app_t *na = realloc(e->app, ncap * sizeof(app_t));
        if (!na) return -1;
        e->app = na; e->app_cap = ncap;
    }
    if (e->appbuf_n + cap > e->appbuf_cap) {
        size_t ncap = e->appbuf_cap ? e->appbuf_cap : 1 << 20;
        while (ncap < e->appbuf_n + cap) ncap *= 2;
        uint8_t *nb = realloc(e->appbuf, ncap);
        if (!nb) return -1;
        e->appbuf = nb; e->appbuf_cap = ncap;
    }
    app_t *a = &e->app[e->app_n++];
    a->stream = stream; a->frame = frame; a->ts = ts; a->seq = seq; a->len = len; a->cap = cap;
    a->off = (uint32_t)e->appbuf_n; a->dir = (uint8_t)dir; a->tail = (uint8_t)tail;
    a->flags = (uint8_t)flags; memset(a->pad, 0, sizeof a->pad);
    memcpy(e->appbuf + e->appbuf_n, data, cap);
    e->appbuf_n += cap;
    return 0;
}

static void *find_crlfcrlf(const uint8_t *p, size_t n) {
    return memmem(p, n, "\r\n\r\n", 4);
}

/* One data segment of stream `s`, direction `dir` (sender state `me`): copied when parsing
 * needs it (the first bytes of the direction, an HTTP/1 head), and kept as the
 * direction's newest data (its tail) until the stream is handed over. */
int eng_app_segment(Engine *e, stream_t *s, dir_t *me, int dir, uint32_t seq, const uint8_t *pl,
                    uint32_t captured, uint32_t payload_len, int64_t frame, int64_t ts, int flags) {
    appst_t *as = &e->appst[s->stream];
    uint32_t rel = seq - me->isn - ((me->flags & DF_SYN_SEEN) ? 1u : 0u);
    int msg = starts_http_message(pl, captured);
    if (msg && rel == 0) as->http[dir] = 1;   /* HTTP/1: heads are enough, not the first KiB */
    if ((rel < e->app_head_bytes && !as->http[dir]) || msg || as->head_open[dir]) {
        uint32_t n = captured < e->app_copy_max ? captured : e->app_copy_max;
        if (msg || as->head_open[dir]) {
            const uint8_t *end = find_crlfcrlf(pl, n);
            if (msg) as->head_segs[dir] = 0;
            as->head_open[dir] = !end && ++as->head_segs[dir] < 32;
            /* an HTTP head: copy it and a few bytes of what follows, not the body */
            if (end) {
                uint32_t after = (uint32_t)((const uint8_t *)end - pl) + 4;
                /* unless another message follows in the same segment (pipelined
                 * requests, coalesced responses): then the whole copy is kept */
                if (!(after < n && memmem(pl + after, n - after, "HTTP/1.", 7) != NULL)) {
                    uint32_t keep = after + 32;
                    if (keep < n) n = keep;
                }
            }
        }
        if (push_app(e, s->stream, frame, ts, seq, payload_len, pl, n, dir, 0, flags) < 0) return -1;
    }
    /* the newest data of this direction, by sequence number */
    uint32_t end = seq + payload_len;
    if (!as->tail_frame[dir] || !seq_lt(end, as->tail_seq[dir] + as->tail_len[dir])) {
        uint32_t n = captured < APP_TAIL ? captured : APP_TAIL;
        if (!as->tail[dir] && !(as->tail[dir] = malloc(APP_TAIL))) return -1;
        memcpy(as->tail[dir], pl + (captured - n), n);
        as->tail_len[dir] = n; as->tail_seq[dir] = seq + (captured - n);
        as->tail_plen[dir] = payload_len; as->tail_frame[dir] = frame; as->tail_ts[dir] = ts;
    }
    return 0;
}

/* The stream is handed over (app_tails_for): its direction tails become application
 * rows, and nothing more is copied for it. */
int eng_app_tails(Engine *e, int64_t stream) {
    appst_t *as = &e->appst[stream];
    as->done = 1;
    if (eng_tls_flush(e, stream) < 0) return -1;
    for (int d = 0; d < 2; d++) {
        if (!as->tail_frame[d] || !as->tail[d]) continue;
        if (push_app(e, stream, as->tail_frame[d], as->tail_ts[d], as->tail_seq[d],
                     as->tail_plen[d], as->tail[d], as->tail_len[d], d, 1, 0) < 0) return -1;
        free(as->tail[d]); as->tail[d] = NULL;
    }
    return 0;
}
