/*
 * pcapsense._engine: the per-packet stages, compiled. This header holds what the units
 * share: the output structs (their numpy twins are pcapsense/capture/layout.py), the
 * per-connection state, the Engine object, byte-order helpers and the functions one unit
 * calls in another.
 *
 * Why hand-written C: captures of millions of packets are normal input and every
 * per-packet Python step costs 0.4-3 us; no maintained library walks pcap/pcapng records,
 * strips link layers and tunnels, and keeps TCP per-connection accounting at wire speed
 * (dpkt and scapy build a Python object per packet, libpcap bindings stop at records).
 * So the engine does, for each record, in one pass and without allocating:
 *
 *   records.c    walk classic pcap (both byte orders, us/ns) and pcapng (SHB/IDB/EPB/
 *                SPB/OPB, per-interface link type and if_tsresol/if_tsoffset);
 *   layers.c     link layer (Ethernet + VLAN/QinQ/MPLS/PPPoE/PBB/FabricPath, SLL, SLL2,
 *                NULL/LOOP, raw IP) -> IPv4/IPv6 (+extension headers) -> tunnels
 *                (VXLAN, Geneve, GRE/ERSPAN, Teredo, GTP-U, AYIYA, IP-in-IP) -> TCP;
 *   tcp.c        Wireshark-compatible tcp.stream numbering (port reuse on SYN), per
 *                direction sequence analysis (retransmission, out-of-order, lost segment,
 *                keep-alive, zero window, dup ACK), counters, Zeek history letters, and
 *                both endpoints' state machines by table lookup;
 *   app.c        the application bytes parsing needs (HTTP heads, first bytes, tails);
 *   module.c     the Python glue (Engine and Table types).
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
#ifndef PCAPSENSE_ENGINE_H
#define PCAPSENSE_ENGINE_H
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

/* Engine.odd_header bits: what libpcap refuses or flags, read anyway and said */
#define ODD_PCAP_VERSION   1   /* a pcap version other than 2.4 */
#define ODD_PCAPNG_VERSION 2   /* a pcapng section version other than 1.0 */
#define ODD_LT_RESERVED    4   /* reserved bits set in the pcap link-type field */
#define ODD_LT_FCS         8   /* the link-type field says frames end with an FCS */

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
    int64_t last_msg_frame, last_msg_ts;         /* last data segment that is neither an alert nor one
                                                  * control-sized TLS record (eng_tls_control_segment: 1) */
    int64_t last_msg12_frame, last_msg12_ts;     /* the same with TLS 1.2 AES-GCM's sizes (2) */
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
    struct tlsfr *tls;      /* the TLS record framer of a connection whose keys are known (tls_frame.c) */
    uint8_t framed;         /* TLS framed from its ClientHello: its records go to Python, no other copy */
    uint8_t pad2[7];
} appst_t;

/* TLS records handed to Python (tls_frame.c), for the connections whose ClientHello
 * random is in the key log (Engine.set_tls_randoms) or that resume a session of one:
 * one row per record, in order per direction, with the bytes decryption needs. By
 * default every record is copied whole (`tls_whole` = TLS_MAX_BODY): decrypting a whole
 * 16 KiB AES-GCM record and checking its tag costs 2.7 us in Python, where decrypting
 * only its first bytes in counter mode costs 12 us (the cipher object made per record);
 * see tls_frame.c. With a smaller `tls_whole`, an application-data record longer than
 * it (and not in the first `tls_prefix` bytes of its direction, nor after a gap) is
 * copied as the first `tls_head` bytes of its body and its last TLS_TAIL bytes. A record
 * some of whose bytes are not in the capture is copied as the bytes before the hole
 * (head) and after it (tail). */
typedef struct {
    int64_t stream, frame, ts;      /* frame and time of the record's first byte */
    int64_t end_frame, end_ts;      /* ... and of its last byte */
    uint32_t offset;                /* of its header, from the direction's first payload byte */
    uint32_t len;                   /* body length, from the header */
    uint32_t index;                 /* records before it in its direction */
    uint32_t off;                   /* its bytes in the data buffer: head, then tail */
    uint32_t head, tail;            /* body bytes copied from the start (head == len: whole) and the end */
    uint16_t version;
    uint8_t dir, type, flags, pad[3];
} tlsrec_t;

#define TLSR_AFTER_GAP 0x01         /* bytes before it were lost: its index is a lower bound */
#define TLSR_MISSING   0x02         /* some of its own bytes were not captured */
#define TLSR_PARTIAL   0x04         /* the capture (or the connection) ended inside it */
#define TLSR_SESSION   0x08         /* (on the first record) framed for resuming a known session */

#define TLS_TAIL 96
#define TLS_MAX_BODY (16384 + 2048)

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
    /* TLS records of the connections whose keys are known (tls_frame.c) */
    uint8_t *tls_randoms; size_t n_tls_randoms;     /* sorted 32-byte ClientHello randoms */
    uint8_t *tls_sessions; size_t n_tls_sessions;   /* sorted 33-byte (length, id) TLS 1.2 session ids */
    uint32_t tls_head, tls_whole, tls_prefix;
    tlsrec_t *tlsrec; size_t tlsrec_n, tlsrec_cap;
    uint8_t *tlsbuf; size_t tlsbuf_n, tlsbuf_cap;
    size_t tls_ooo_bytes;                           /* out-of-order bytes held, all connections */
    int64_t c_tls_streams, c_tls_records, c_tls_gaps, c_tls_resyncs;
    /* a pcapng Decryption Secrets Block met by the record walk (feed() returns R_SECRETS) */
    uint8_t *dsb; size_t dsb_n; uint32_t dsb_type;
    uint32_t shard_k, shard_n;  /* track only the connections whose key hashes to shard k of n */
    int emit_packets;     /* fill pkt rows */
    uint8_t rfc[12 * 12 * N_KINDS];
    uint8_t zeek[8 * 8 * N_KINDS];
    int64_t frame;        /* frames seen so far */
    int64_t last_ts;
    /* counters */
    int64_t c_tcp, c_ipv4, c_ipv6, c_non_ip, c_non_tcp, c_undecodable, c_fragments,
            c_tunnelled, c_bad_csum, c_unverified_csum, c_cut, c_unknown_blocks,
            c_unsupported_link, c_sections, c_bytes,
            c_opaque;         /* ESP and IPComp packets (their TCP cannot be read) */
    int odd_header;       /* ODD_*: what libpcap would refuse or flag in the file's headers */
    int64_t first_ts_seen, last_ts_seen;
    /* what to read: frames with ts_from <= ts < ts_to (the others are skipped and not
     * numbered, as if cut out by `editcap -A -B`), at most max_frames of them (0: all) */
    int64_t ts_from, ts_to, max_frames;
    int64_t c_outside;    /* frames skipped outside that window */
    int64_t prev_ts;      /* the previous record's time, read or skipped (an SPB has none) */
    uint64_t linktypes_seen[8];   /* bitmap of first 512 link types */
    uint64_t linktypes_unread[8]; /* the same, of those eng_decode_link does not read */
    int64_t other_linktype;       /* one past 511 (its frames read or not: other_unread) */
    int other_unread;
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
    /* IP fragment reassembly (frag.c) */
    struct frag *frags; int frag_used; uint64_t frag_bytes;
    uint8_t *frag_out;    /* the datagram a fragment just completed */
    int in_frag;          /* decoding a reassembled datagram (its inner fragments are not held) */
    int64_t c_frag_reassembled, c_frag_incomplete;
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

/* one IP packet carrying TCP, as layers.c hands it to tcp.c */
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

/* ------------------------------------------------------------------ records */

/* Timestamps are clamped to +-(2^62 - 1) ns (1823..2116 CE; every classic pcap timestamp
 * fits), not to the whole int64 range: track_tcp subtracts two timestamps (idle gap,
 * out-of-order threshold) and adds timeouts to them (Zeek timers), and with INT64_MIN /
 * INT64_MAX those overflow (ts_span fuzz input). INT64_MIN would also become NaT. */
#define TS_LIMIT (((int64_t)1 << 62) - 1)

/* result codes of feed() */
#define R_NEED_MORE 0
#define R_OUT_FULL 1
#define R_ERROR 2
#define R_LIMIT 3         /* max_frames reached: the rest of the input is not read */
#define R_SECRETS 4       /* a Decryption Secrets Block: take_secrets(), then feed on */

typedef struct { int code; Py_ssize_t consumed; Py_ssize_t rows; int64_t err_off; char msg[200]; } feed_res_t;

/* ------------------------------------------------------------------ across units */

/* tcp.c */
int eng_track_tcp(Engine *e, ippkt_t *ip, int64_t ts, pkt_t *out, int *emitted);
int eng_cmp_key40(const void *a, const void *b);
/* app.c */
int eng_tls_control_segment(const uint8_t *p, uint32_t captured, uint32_t payload_len);
int eng_is_tls_alert_segment(const uint8_t *p, uint32_t captured, uint32_t payload_len);
int eng_app_segment(Engine *e, stream_t *s, dir_t *me, int dir, uint32_t seq, const uint8_t *pl,
                    uint32_t captured, uint32_t payload_len, int64_t frame, int64_t ts, int flags);
int eng_app_tails(Engine *e, int64_t stream);
/* tls_frame.c */
int eng_tls_segment(Engine *e, stream_t *s, dir_t *me, int dir, uint32_t seq, const uint8_t *pl,
                    uint32_t captured, uint32_t payload_len, int64_t frame, int64_t ts);
int eng_tls_flush(Engine *e, int64_t stream);
void eng_tls_free(Engine *e, appst_t *as);
/* layers.c */
int eng_frag_v4(Engine *e, const uint8_t *p, size_t n, uint32_t ihl, uint32_t tot);
int eng_frag_v6(Engine *e, const uint8_t *p, size_t n, size_t fh, uint32_t plen);
void eng_frag_free(Engine *e);
int eng_decode_link(Engine *e, int linktype, const uint8_t *p, size_t n, int64_t ts, pkt_t *out, int *emitted);
/* records.c */
void eng_feed(Engine *e, const uint8_t *buf, Py_ssize_t n, int64_t base, pkt_t *rows, Py_ssize_t cap,
              feed_res_t *r);

#endif
