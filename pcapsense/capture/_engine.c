/*
 * pcapsense._engine: the per-packet stages, compiled.
 *
 * Why hand-written C: captures of millions of packets are normal input and every
 * per-packet Python step costs 0.4-3 us; no maintained library walks pcap/pcapng records,
 * strips link layers and tunnels, and keeps TCP per-connection accounting at wire speed
 * (dpkt and scapy build a Python object per packet, libpcap bindings stop at records).
 * So this one file does, for each record, in one pass and without allocating:
 *
 *   1. records   walk classic pcap (both byte orders, us/ns) and pcapng (SHB/IDB/EPB/
 *                SPB/OPB, per-interface link type and if_tsresol/if_tsoffset);
 *   2. decode    link layer (Ethernet + VLAN/QinQ/MPLS/PPPoE/PBB/FabricPath, SLL, SLL2,
 *                NULL/LOOP, raw IP) -> IPv4/IPv6 (+extension headers) -> tunnels
 *                (VXLAN, Geneve, GRE/ERSPAN, Teredo, GTP-U, AYIYA, IP-in-IP) -> TCP;
 *   3. track     Wireshark-compatible tcp.stream numbering (port reuse on SYN), per
 *                direction sequence analysis (retransmission, out-of-order, lost segment,
 *                keep-alive, zero window, dup ACK), counters, Zeek history letters, and
 *                both endpoints' state machines by table lookup.
 *
 * It decides nothing itself about TCP states: the transition tables come from
 * pcapsense/tcp/state.py (uint8[state][peer_state][kind]). Results leave as flat C
 * structs whose numpy dtypes are declared in pcapsense/capture/layout.py; an
 * import-time check compares sizes and offsets.
 *
 * Input is hostile: every read is bounds-checked; malformed headers make the packet
 * "undecodable" (counted), a malformed record or block stops the walk with an error
 * naming the byte offset.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <stddef.h>

/* ------------------------------------------------------------------ layouts */

#define N_KINDS 12   /* pcapsense/tcp/state.py: Kind */
enum { K_SYN_OUT, K_SYNACK_OUT, K_SEG_OUT, K_FIN_OUT, K_FIN_CROSS_OUT, K_RST_OUT,
       K_SYN_IN, K_SYNACK_IN, K_SEG_IN, K_ACK_OF_FIN_IN, K_FIN_IN, K_RST_IN };

#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_PSH 0x08
#define TH_ACK 0x10

/* analysis bits, Wireshark's values */
#define A_RETRANS   0x0001
#define A_LOST      0x0002
#define A_ACKUNSEEN 0x0004
#define A_KEEPALIVE 0x0008
#define A_DUPACK    0x0010
#define A_ZEROWIN   0x0020
#define A_OOO       0x0200
#define A_REUSED    0x2000

#define HIST_MAX 48

typedef struct {
    int64_t packets;
    int64_t payload_bytes;        /* sum of TCP segment lengths (retransmissions included) */
    int64_t captured_payload_bytes;
    int64_t seq_hi;               /* sequence space used, from the ISN (unwrapped) */
    int64_t ip_bytes;
    int64_t first_frame, last_frame, first_ts, last_ts;
    int64_t first_data_frame, last_data_frame, first_data_ts, last_data_ts;
    int64_t first_syn_frame, first_synack_frame, first_fin_frame, first_rst_frame;
    int64_t first_fin_ts, first_rst_ts;
    int64_t last_seg_ts;          /* last segment carrying data/SYN/FIN (for OOO) */
    int64_t last_syn_ts, first_synack_ts;
    int64_t first_alert_frame, first_alert_ts;   /* first segment that is one TLS alert record */
    uint32_t isn, nextseq, last_ack, fin_seq;
    uint32_t retransmissions, out_of_order, lost_segments, ack_unseen, keepalives,
             zero_windows, dup_acks, syn_pkts, synack_pkts, fin_pkts, rst_pkts,
             syn_retransmits, bad_checksums, unverified_checksums, cut_packets;
    uint16_t last_win, ipid_first, ipid_last, ttl_changes, mac_changes, ipid_zero;
    uint8_t ttl_first, ttl_last, ttl_min, ttl_max;
    uint8_t mac_first[6];
    uint8_t mac_last[6];
    uint8_t head[8];              /* first 8 payload bytes sent (request-or-response hint) */
    uint8_t head_len;
    uint8_t flags;                /* DF_* */
    uint8_t state, zstate;        /* RFC and Zeek endpoint states at the end */
    uint8_t hist_t, hist_g, hist_w, hist_c;   /* log10 thresholds reached */
    uint8_t hflags;               /* HF_*: S/F/R letters recorded */
    uint8_t pad[1];
    uint32_t h_syn_seq, h_fin_seq, h_rst_seq;
    uint32_t pad2;
} dir_t;
#define HF_SYN 1
#define HF_FIN 2
#define HF_RST 4

#define DF_SEEN       0x01
#define DF_SEQ        0x02   /* nextseq valid */
#define DF_FIN_SENT   0x04
#define DF_HIST_A     0x08
#define DF_HIST_D     0x10
#define DF_HIST_I     0x20
#define DF_HIST_Q     0x40
#define DF_SYN_SEEN   0x80

typedef struct {
    int64_t stream;
    int64_t first_frame, last_frame, first_ts, last_ts;
    int64_t max_idle_ns, max_idle_frame;
    /* the first FIN and the first RST: who, when, both states just before */
    int64_t fin_frame, fin_ts, rst_frame, rst_ts;
    int64_t anomaly_frame;
    uint32_t anomalies, rst_seq, rst_expected_seq, rst_ack;
    uint8_t fin_dir, fin_sender_state, fin_peer_state, rst_dir;
    uint8_t rst_sender_state, rst_peer_state, rst_ttl, rst_prev_ttl;
    uint16_t rst_ipid, rst_prev_ipid;
    uint8_t rst_flags, rst_mac_differs, ipver, reused;
    uint8_t addr[2][16];          /* [0] = sender of the stream's first packet */
    uint16_t port[2];
    uint8_t vlan_or_tunnel, simultaneous_close;
    uint8_t rst_after_close, fin_rst_same_packet;
    char history[HIST_MAX];       /* Zeek letters, upper case = dir 0 */
    dir_t d[2];
} stream_t;

/* one row per packet handed back to Python ("all" mode or one stream) */
typedef struct {
    int64_t frame, ts, stream, rec_off;
    uint32_t seq, ack, payload_len, captured_len, nextseq_before;
    uint16_t flags, win, ipid, analysis, payload_off;
    uint8_t dir, ttl, csum, iface, state0, state1;
    uint8_t mac[6];
    uint8_t pad[2];
} pkt_t;

/* one row per state change */
typedef struct {
    int64_t stream, frame, ts;
    uint8_t endpoint, old_state, new_state, kind;
    uint8_t pad[4];
} trans_t;

/* ------------------------------------------------------------------ flow table */

typedef struct {
    uint8_t key[40];     /* canonical: lower (addr,port) first, ipver */
    int64_t stream;      /* current stream index for this 4-tuple */
} flow_t;

/* application bytes handed to Python (app_mode): the segments that parsing needs, not
 * whole bodies. A segment is emitted when it lies in the first `app_head_bytes` of its
 * direction (TLS handshakes, the first HTTP message), when it starts with an HTTP/1
 * message token, or while an HTTP head that started earlier is still open. At most
 * `app_copy_max` bytes of each are copied. The last data segment of each direction is
 * kept too (its last APP_TAIL bytes: close_notify alerts, GOAWAY frames, the request
 * that crossed a FIN) and handed over at the end. */
typedef struct {
    int64_t stream, frame, ts;
    uint32_t seq, len, cap, off;    /* off: into the byte buffer; cap: bytes copied */
    uint8_t dir, tail, flags, pad[5];
} app_t;

#define APP_TAIL 512
typedef struct {
    uint8_t head_open[2], head_segs[2], http[2], done, pad_;
    uint32_t tail_len[2], tail_seq[2], tail_plen[2];
    int64_t tail_frame[2], tail_ts[2];
    uint8_t *tail[2];       /* APP_TAIL bytes, allocated at the first data, freed once handed over */
} appst_t;

/* Zeek-compatible record splitting (zeek_mode only; see docs/conformance.md): the
 * timers Zeek uses to remove a connection record, evaluated when the next packet of the
 * 4-tuple arrives, as Zeek does offline. */
typedef struct {
    int64_t last_time;          /* advances while not both sides closed */
    int64_t close_deadline;     /* ConnDeleteTimer / ResetTimer: close + 5 s */
    int64_t attempt_deadline;   /* AttemptTimer: first SYN + 5 s */
    int64_t inactivity_ns;      /* 60 s during the handshake, then 300 s (3600 s for some ports) */
    uint8_t did_close[2];
    uint8_t pad[6];
} zk_t;

#define NS 1000000000LL

/* ------------------------------------------------------------------ decoder object */

enum { FMT_UNKNOWN = 0, FMT_PCAP = 1, FMT_PCAPNG = 2 };

#define MAX_IFACES 256

typedef struct {
    int linktype;
    uint32_t snaplen;
    int tsres_pow2;       /* 1: 2^-v, 0: 10^-v */
    int tsres;            /* v */
    int64_t tsoffset_s;
} iface_t;

typedef struct {
    PyObject_HEAD
    int fmt;
    int swapped;          /* classic pcap or current pcapng section in other byte order */
    int pcap_nano;
    uint32_t pcap_snaplen;
    int pcap_linktype;
    int n_ifaces;
    iface_t ifaces[MAX_IFACES];
    int verify_checksums;
    int zeek_mode;
    zk_t *zk;
    int app_mode;
    uint32_t app_head_bytes, app_copy_max;
    appst_t *appst;
    app_t *app; size_t app_n, app_cap;
    uint8_t *appbuf; size_t appbuf_n, appbuf_cap;
    uint8_t *only_keys; size_t n_only_keys;   /* sorted 40-byte flow keys: track only these (0: all) */
    uint32_t shard_k, shard_n;  /* track only the connections whose key hashes to shard k of n */
    int emit_packets;     /* fill pkt rows */
    uint8_t rfc[12 * 12 * N_KINDS];
    uint8_t zeek[8 * 8 * N_KINDS];
    int64_t frame;        /* frames seen so far */
    int64_t last_ts;
    /* counters */
    int64_t c_tcp, c_ipv4, c_ipv6, c_non_ip, c_non_tcp, c_undecodable, c_fragments,
            c_tunnelled, c_bad_csum, c_unverified_csum, c_cut, c_unknown_blocks,
            c_unsupported_link, c_sections, c_bytes;
    int64_t first_ts_seen, last_ts_seen;
    /* what to read: frames with ts_from <= ts < ts_to (the others are skipped and not
     * numbered, as if cut out by `editcap -A -B`), at most max_frames of them (0: all) */
    int64_t ts_from, ts_to, max_frames;
    int64_t c_outside;    /* frames skipped outside that window */
    int64_t prev_ts;      /* the previous record's time, read or skipped (an SPB has none) */
    uint64_t linktypes_seen[8];   /* bitmap of first 512 link types */
    int64_t other_linktype;
    /* flows and streams */
    flow_t *flows; size_t flow_cap, flow_n;
    stream_t *streams; size_t stream_cap, stream_n;
    int streams_taken;    /* take_streams() handed the table to Python: no more packets */
    /* transitions (grown, drained by Python) */
    trans_t *trans; size_t trans_cap, trans_n;
    /* current packet scratch */
    int64_t cur_rec_off;
    const uint8_t *cur_mac;
    const uint8_t *cur_rec_data;
    int cur_iface;
    int tunnel_depth;
    int cur_tunnelled;
} Engine;

/* ------------------------------------------------------------------ helpers */

static inline uint16_t rd16be(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t rd32be(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint16_t rd16(const uint8_t *p, int sw) {
    uint16_t v; memcpy(&v, p, 2); return sw ? (uint16_t)((v >> 8) | (v << 8)) : v;
}
static inline uint32_t rd32(const uint8_t *p, int sw) {
    uint32_t v; memcpy(&v, p, 4); return sw ? __builtin_bswap32(v) : v;
}
static inline int seq_lt(uint32_t a, uint32_t b) { return (int32_t)(a - b) < 0; }
static inline int seq_gt(uint32_t a, uint32_t b) { return (int32_t)(a - b) > 0; }

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

static int cmp_key40(const void *a, const void *b) { return memcmp(a, b, 40); }

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

/* ------------------------------------------------------------------ TCP tracking */

typedef struct {
    const uint8_t *src, *dst;   /* 4 or 16 bytes */
    int ipver;
    uint8_t ttl;
    uint16_t ipid;
    uint32_t ip_len;            /* IP total length (v4) or 40+payload (v6) */
    const uint8_t *tcp;         /* TCP header */
    uint32_t tcp_avail;         /* captured bytes from tcp header on */
    uint32_t tcp_len;           /* TCP header+payload length per IP header */
    int fragment;
} ippkt_t;

/* One whole TLS alert record and nothing else: type 21 (cleartext, or TLS <= 1.2
 * encrypted: 26 bytes for AES-GCM, 32-48 for CBC) or TLS 1.3's encrypted alert, an
 * application-data record of 19 bytes (2 alert bytes, the inner type, a 16-byte tag). */
static int is_tls_alert_segment(const uint8_t *p, uint32_t captured, uint32_t payload_len) {
    if (captured < 5 || payload_len < 7 || payload_len > 5 + 64) return 0;
    if (p[1] != 3 || p[2] > 4) return 0;
    uint32_t len = ((uint32_t)p[3] << 8) | p[4];
    if (len + 5 != payload_len) return 0;
    if (p[0] == 21) return 1;
    return p[0] == 23 && len == 19;
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

static int track_tcp(Engine *e, ippkt_t *ip, int64_t ts, pkt_t *out, int *emitted) {
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
    if (e->n_only_keys && !bsearch(key, e->only_keys, e->n_only_keys, 40, cmp_key40)) return 0;
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
        if (is_tls_alert_segment(t + doff, captured, payload_len)) {
            if (!me->first_alert_frame) { me->first_alert_frame = frame; me->first_alert_ts = ts; }
        } else {
            me->last_data_frame = frame; me->last_data_ts = ts;
        }
    }
    /* (a stream already handed over by app_tails_for gets nothing more: its late
     * bytes would not be parsed) */
    if (e->app_mode && payload_len && captured && !rst && !(analysis & A_KEEPALIVE) &&
        !e->appst[s->stream].done) {
        appst_t *as = &e->appst[s->stream];
        const uint8_t *pl = t + doff;
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
        return track_tcp(e, &ip, ts, out, emitted);
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

static int decode_link(Engine *e, int linktype, const uint8_t *p, size_t n, int64_t ts,
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

/* ------------------------------------------------------------------ records */

/* Timestamps are clamped to +-(2^62 - 1) ns (1823..2116 CE; every classic pcap timestamp
 * fits), not to the whole int64 range: track_tcp subtracts two timestamps (idle gap,
 * out-of-order threshold) and adds timeouts to them (Zeek timers), and with INT64_MIN /
 * INT64_MAX those overflow (ts_span fuzz input). INT64_MIN would also become NaT. */
#define TS_LIMIT (((int64_t)1 << 62) - 1)

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

/* result codes of feed() */
#define R_NEED_MORE 0
#define R_OUT_FULL 1
#define R_ERROR 2
#define R_LIMIT 3         /* max_frames reached: the rest of the input is not read */

typedef struct { int code; Py_ssize_t consumed; Py_ssize_t rows; int64_t err_off; char msg[200]; } feed_res_t;

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
static void feed_impl(Engine *e, const uint8_t *buf, Py_ssize_t n, int64_t base, pkt_t *rows,
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
            e->pcap_linktype = (int)(rd32(p + 20, e->swapped) & 0x0fffffff);
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
            if (decode_link(e, e->pcap_linktype, p + 16, caplen, ts, &rows[r->rows], &emitted) < 0) {
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
            if (decode_link(e, ifc->linktype, data, caplen, ts, &rows[r->rows], &emitted) < 0) {
                r->code = R_ERROR; r->err_off = base + pos; snprintf(r->msg, sizeof r->msg, "out of memory"); break;
            }
            if (emitted) r->rows++;
        } else {
            e->c_unknown_blocks++;
        }
        pos += blen;
        continue;
    bad_block:
        r->code = R_ERROR; r->err_off = base + pos;
        snprintf(r->msg, sizeof r->msg, "corrupt pcapng packet block (type %u, length %u)", btype, blen);
        break;
    }
    r->consumed = pos;
}

/* ------------------------------------------------------------------ Python glue */

static int Engine_init(Engine *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"rfc_table", "zeek_table", "verify_checksums", "emit_packets", "zeek_mode", "app_head_bytes", "app_copy_max", "shard_k", "shard_n",
                             "ts_from", "ts_to", "max_frames", "only_keys", NULL};
    Py_buffer rfc, zeek, keys = {0}; int verify = 0, emit = 0, zmode = 0;
    unsigned int head_bytes = 0, copy_max = 4096, shard_k = 0, shard_n = 1;
    long long ts_from = INT64_MIN, ts_to = INT64_MAX, max_frames = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*y*|pppIIIILLLy*", kwlist, &rfc, &zeek, &verify, &emit,
                                     &zmode, &head_bytes, &copy_max, &shard_k, &shard_n,
                                     &ts_from, &ts_to, &max_frames, &keys))
        return -1;
    const char *bad = max_frames < 0 ? "max_frames must be 0 (no limit) or more"
        : (shard_n == 0 || shard_k >= shard_n) ? "shard_k must be below shard_n"
        : keys.len % 40 ? "only_keys must be 40-byte flow keys" : NULL;
    if (bad) {
        PyBuffer_Release(&rfc); PyBuffer_Release(&zeek);
        if (keys.obj) PyBuffer_Release(&keys);
        PyErr_SetString(PyExc_ValueError, bad);
        return -1;
    }
    free(self->only_keys); self->only_keys = NULL; self->n_only_keys = 0;
    if (keys.len > 0) {
        self->only_keys = malloc((size_t)keys.len);
        if (!self->only_keys) {
            PyBuffer_Release(&rfc); PyBuffer_Release(&zeek); PyBuffer_Release(&keys);
            PyErr_NoMemory();
            return -1;
        }
        memcpy(self->only_keys, keys.buf, (size_t)keys.len);
        self->n_only_keys = (size_t)keys.len / 40;
        qsort(self->only_keys, self->n_only_keys, 40, cmp_key40);
    }
    if (keys.obj) PyBuffer_Release(&keys);
    if (rfc.len != (Py_ssize_t)sizeof self->rfc || zeek.len != (Py_ssize_t)sizeof self->zeek) {
        PyBuffer_Release(&rfc); PyBuffer_Release(&zeek);
        PyErr_SetString(PyExc_ValueError, "transition tables have the wrong shape");
        return -1;
    }
    memcpy(self->rfc, rfc.buf, sizeof self->rfc);
    memcpy(self->zeek, zeek.buf, sizeof self->zeek);
    PyBuffer_Release(&rfc); PyBuffer_Release(&zeek);
    self->verify_checksums = verify; self->emit_packets = emit;
    self->zeek_mode = zmode;
    self->shard_k = shard_k; self->shard_n = shard_n;
    self->ts_from = ts_from; self->ts_to = ts_to; self->max_frames = max_frames;
    self->app_mode = head_bytes > 0;
    self->app_head_bytes = head_bytes; self->app_copy_max = copy_max;
    return 0;
}

static int check_streams(Engine *self) {
    if (self->streams_taken) {
        PyErr_SetString(PyExc_RuntimeError, "the stream table was handed over by take_streams()");
        return -1;
    }
    return 0;
}

static void Engine_dealloc(Engine *self) {
    free(self->flows); free(self->streams); free(self->trans); free(self->zk); free(self->only_keys);
    if (self->appst)
        for (size_t i = 0; i < self->stream_n; i++) { free(self->appst[i].tail[0]); free(self->appst[i].tail[1]); }
    free(self->appst); free(self->app); free(self->appbuf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* feed(data, base_offset, rows_out) -> (consumed, rows, code, err_offset, message) */
static PyObject *Engine_feed(Engine *self, PyObject *args) {
    Py_buffer data, out; long long base;
    if (check_streams(self) < 0) return NULL;
    if (!PyArg_ParseTuple(args, "y*Lw*", &data, &base, &out)) return NULL;
    Py_ssize_t cap = out.len / (Py_ssize_t)sizeof(pkt_t);
    feed_res_t r;
    Py_BEGIN_ALLOW_THREADS
    feed_impl(self, (const uint8_t *)data.buf, data.len, base, (pkt_t *)out.buf, cap, &r);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data); PyBuffer_Release(&out);
    return Py_BuildValue("(nniLs)", r.consumed, r.rows, r.code, (long long)r.err_off, r.msg);
}

static PyObject *Engine_streams(Engine *self, PyObject *noargs) {
    if (check_streams(self) < 0) return NULL;
    return PyBytes_FromStringAndSize((const char *)self->streams, (Py_ssize_t)(self->stream_n * sizeof(stream_t)));
}

/* ------------------------------------------------------------------ Table: rows handed over */

/* A block of rows malloc'd by the engine and handed to Python without a copy (the
 * stream table is the largest thing the engine holds: 856 bytes per connection, 70 MiB
 * at 10M packets; copying it into bytes held it twice at the end of reading). Exposes
 * the buffer protocol (read-only: numpy.frombuffer), pickles as bytes (--jobs, Dask),
 * frees the block when the last view is gone. */
typedef struct {
    PyObject_HEAD
    void *data;
    Py_ssize_t len;
} Table;

static void Table_dealloc(Table *self) {
    free(self->data);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Table_getbuffer(Table *self, Py_buffer *view, int flags) {
    return PyBuffer_FillInfo(view, (PyObject *)self, self->data ? self->data : (void *)"", self->len, 1, flags);
}

static Py_ssize_t Table_len(Table *self) { return self->len; }

static PyObject *Table_reduce(Table *self, PyObject *noargs) {
    return Py_BuildValue("(O(y#))", (PyObject *)&PyBytes_Type, self->data ? (const char *)self->data : "", self->len);
}

static PyBufferProcs Table_as_buffer = { (getbufferproc)Table_getbuffer, NULL };
static PySequenceMethods Table_as_sequence = { .sq_length = (lenfunc)Table_len };
static PyMethodDef Table_methods[] = {
    {"__reduce__", (PyCFunction)Table_reduce, METH_NOARGS, "pickled as bytes"},
    {NULL}
};

static PyTypeObject TableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pcapsense._engine.Table",
    .tp_basicsize = sizeof(Table),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)Table_dealloc,
    .tp_as_buffer = &Table_as_buffer,
    .tp_as_sequence = &Table_as_sequence,
    .tp_methods = Table_methods,
    .tp_doc = "Rows handed over by the engine without a copy (buffer protocol; pickles as bytes).",
};

/* take_streams() -> Table: the stream table itself, without a copy; the engine takes
 * no more packets afterwards (end of reading) */
static PyObject *Engine_take_streams(Engine *self, PyObject *noargs) {
    if (check_streams(self) < 0) return NULL;
    Table *t = PyObject_New(Table, &TableType);
    if (!t) return NULL;
    size_t n = self->stream_n * sizeof(stream_t);
    void *data = NULL;
    if (n) {
        data = realloc(self->streams, n);                  /* give back the spare capacity */
        if (!data) data = self->streams;                  /* (a failed shrink keeps the block) */
    } else {
        free(self->streams);
    }
    t->data = data; t->len = (Py_ssize_t)n;
    self->streams = NULL; self->stream_cap = 0; self->streams_taken = 1;
    return (PyObject *)t;
}

static PyObject *Engine_take_transitions(Engine *self, PyObject *noargs) {
    PyObject *b = PyBytes_FromStringAndSize((const char *)self->trans, (Py_ssize_t)(self->trans_n * sizeof(trans_t)));
    self->trans_n = 0;
    return b;
}

/* new_file(): the next bytes start another capture file (rotated captures analysed as
 * one): forget the file format, keep connections, streams and the frame counter */
static PyObject *Engine_new_file(Engine *self, PyObject *noargs) {
    self->fmt = FMT_UNKNOWN; self->swapped = 0; self->n_ifaces = 0;
    Py_RETURN_NONE;
}

/* take_app() -> (rows bytes, data bytes): application segments so far (drained) */
static PyObject *Engine_take_app(Engine *self, PyObject *noargs) {
    PyObject *r = Py_BuildValue("(y#y#)", (const char *)self->app, (Py_ssize_t)(self->app_n * sizeof(app_t)),
                                (const char *)self->appbuf, (Py_ssize_t)self->appbuf_n);
    self->app_n = 0; self->appbuf_n = 0;
    return r;
}

/* closed_of(int64 ids) -> bytes: one flag per given stream, 1 when both sides sent FIN
 * or a RST was seen (its application bytes can be finalised soon), 0 for an id past
 * the table. The application stage asks only for the streams it still holds (scanning
 * every stream at each chunk grew as streams x chunks). */
static PyObject *Engine_closed_of(Engine *self, PyObject *arg) {
    if (check_streams(self) < 0) return NULL;
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t n = b.len / (Py_ssize_t)sizeof(int64_t);
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out) {
        char *o = PyBytes_AS_STRING(out);
        for (Py_ssize_t k = 0; k < n; k++) {
            int64_t i;
            memcpy(&i, (const char *)b.buf + k * (Py_ssize_t)sizeof i, sizeof i);
            if (i < 0 || (size_t)i >= self->stream_n) { o[k] = 0; continue; }
            stream_t *st = &self->streams[i];
            o[k] = (char)((st->d[0].first_fin_frame && st->d[1].first_fin_frame) || st->rst_frame);
        }
    }
    PyBuffer_Release(&b);
    return out;
}

static int index_list(PyObject *arg, Py_buffer *buf, Engine *self) {
    if (PyObject_GetBuffer(arg, buf, PyBUF_SIMPLE) < 0) return -1;
    if (buf->len % 8) { PyBuffer_Release(buf); PyErr_SetString(PyExc_ValueError, "int64 indices expected"); return -1; }
    const int64_t *ix = buf->buf;
    for (Py_ssize_t i = 0; i < buf->len / 8; i++)
        if (ix[i] < 0 || (size_t)ix[i] >= self->stream_n) {
            PyBuffer_Release(buf); PyErr_SetString(PyExc_IndexError, "stream index out of range"); return -1;
        }
    return 0;
}

/* stream_rows(int64 indices) -> bytes of those streams' rows */
static PyObject *Engine_stream_rows(Engine *self, PyObject *arg) {
    Py_buffer buf;
    if (check_streams(self) < 0) return NULL;
    if (index_list(arg, &buf, self) < 0) return NULL;
    Py_ssize_t n = buf.len / 8;
    PyObject *b = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(stream_t));
    if (b) {
        const int64_t *ix = buf.buf;
        for (Py_ssize_t i = 0; i < n; i++)
            memcpy(PyBytes_AS_STRING(b) + i * sizeof(stream_t), &self->streams[ix[i]], sizeof(stream_t));
    }
    PyBuffer_Release(&buf);
    return b;
}

/* app_tails_for(int64 indices) -> (rows, data): whatever application rows were pending,
 * plus the last data of the given streams */
static PyObject *Engine_app_tails_for(Engine *self, PyObject *arg) {
    Py_buffer buf;
    if (index_list(arg, &buf, self) < 0) return NULL;
    if (self->app_mode) {
        const int64_t *ix = buf.buf;
        for (Py_ssize_t k = 0; k < buf.len / 8; k++) {
            appst_t *as = &self->appst[ix[k]];
            as->done = 1;
            for (int d = 0; d < 2; d++) {
                if (!as->tail_frame[d] || !as->tail[d]) continue;
                if (push_app(self, ix[k], as->tail_frame[d], as->tail_ts[d], as->tail_seq[d],
                             as->tail_plen[d], as->tail[d], as->tail_len[d], d, 1, 0) < 0) {
                    PyBuffer_Release(&buf); return PyErr_NoMemory();
                }
                free(as->tail[d]); as->tail[d] = NULL;
            }
        }
    }
    PyBuffer_Release(&buf);
    return Engine_take_app(self, NULL);
}

static PyObject *Engine_counters(Engine *self, PyObject *noargs) {
    PyObject *lts = PyList_New(0);
    for (int i = 0; i < 512; i++)
        if (self->linktypes_seen[i / 64] & (1ULL << (i % 64))) {
            PyObject *v = PyLong_FromLong(i); PyList_Append(lts, v); Py_DECREF(v);
        }
    if (self->other_linktype) { PyObject *v = PyLong_FromLongLong(self->other_linktype); PyList_Append(lts, v); Py_DECREF(v); }
    return Py_BuildValue(
        "{s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:N,s:i,s:i}",
        "frames", (long long)self->frame, "tcp_packets", (long long)self->c_tcp,
        "ipv4_packets", (long long)self->c_ipv4, "ipv6_packets", (long long)self->c_ipv6,
        "non_ip_packets", (long long)self->c_non_ip, "non_tcp_packets", (long long)self->c_non_tcp,
        "undecodable_packets", (long long)self->c_undecodable, "ip_fragments", (long long)self->c_fragments,
        "bad_checksums", (long long)self->c_bad_csum, "unverified_checksums", (long long)self->c_unverified_csum,
        "snaplen_cut_packets", (long long)self->c_cut, "unknown_blocks", (long long)self->c_unknown_blocks,
        "unsupported_link_packets", (long long)self->c_unsupported_link, "sections", (long long)self->c_sections,
        "captured_bytes", (long long)self->c_bytes, "first_ts_ns", (long long)self->first_ts_seen,
        "last_ts_ns", (long long)self->last_ts_seen, "streams", (long long)self->stream_n,
        "frames_outside_window", (long long)self->c_outside,
        "link_types", lts, "format", self->fmt, "pcap_nano", self->pcap_nano);
}

static PyObject *sizes(PyObject *m, PyObject *noargs) {
    return Py_BuildValue("{s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n}",
        "stream", (Py_ssize_t)sizeof(stream_t), "dir", (Py_ssize_t)sizeof(dir_t),
        "pkt", (Py_ssize_t)sizeof(pkt_t), "trans", (Py_ssize_t)sizeof(trans_t),
        "stream.d", (Py_ssize_t)offsetof(stream_t, d), "app", (Py_ssize_t)sizeof(app_t),
        "stream.history", (Py_ssize_t)offsetof(stream_t, history),
        "dir.state", (Py_ssize_t)offsetof(dir_t, state));
}

static PyMethodDef Engine_methods[] = {
    {"feed", (PyCFunction)Engine_feed, METH_VARARGS, "feed(data, base_offset, rows_out) -> (consumed, rows, code, err_offset, message)"},
    {"streams", (PyCFunction)Engine_streams, METH_NOARGS, "bytes of the stream table"},
    {"take_streams", (PyCFunction)Engine_take_streams, METH_NOARGS, "the stream table itself (no copy); ends the reading"},
    {"take_transitions", (PyCFunction)Engine_take_transitions, METH_NOARGS, "bytes of new transition rows (drained)"},
    {"counters", (PyCFunction)Engine_counters, METH_NOARGS, "capture-level counters"},
    {"take_app", (PyCFunction)Engine_take_app, METH_NOARGS, "application segments so far (drained)"},
    {"new_file", (PyCFunction)Engine_new_file, METH_NOARGS, "the next bytes start another capture file"},
    {"closed_of", (PyCFunction)Engine_closed_of, METH_O, "closed_of(int64 ids) -> the closed flag of each"},
    {"stream_rows", (PyCFunction)Engine_stream_rows, METH_O, "rows of the given streams (int64 indices)"},
    {"app_tails_for", (PyCFunction)Engine_app_tails_for, METH_O, "last data of the given streams"},
    {NULL}
};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pcapsense._engine.Engine",
    .tp_basicsize = sizeof(Engine),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Engine_init,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_methods = Engine_methods,
    .tp_doc = "Walks capture records, decodes to TCP and tracks connections (see module doc).",
};

static PyMethodDef module_methods[] = {
    {"sizes", sizes, METH_NOARGS, "struct sizes, for the layout check"},
    {NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_engine", "pcapsense compiled per-packet engine", -1, module_methods
};

PyMODINIT_FUNC PyInit__engine(void) {
    if (PyType_Ready(&EngineType) < 0 || PyType_Ready(&TableType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    Py_INCREF(&EngineType);
    PyModule_AddObject(m, "Engine", (PyObject *)&EngineType);
    Py_INCREF(&TableType);
    PyModule_AddObject(m, "Table", (PyObject *)&TableType);
    return m;
}
