/* frag.c: IPv4 and IPv6 fragment reassembly (see engine.h).
 *
 * As tshark does by default, the fragments of a datagram are held until the datagram is
 * whole, and the TCP segment inside it is decoded then, at the frame of the fragment that
 * completed it (a fragment alone, even the first one with a whole TCP header, is no TCP
 * packet). Datagrams are keyed by (version, source, destination, identification,
 * protocol); data is kept in 8-byte blocks (fragment offsets are multiples of 8), and where
 * fragments overlap the bytes that came first are kept. Bounded: at most FRAG_SLOTS
 * datagrams under reassembly and FRAG_BYTES bytes held; past either, the datagram touched
 * longest ago is dropped (counted: never completed). A datagram that cannot complete (a
 * fragment cut by the snap length, a length over 65535) is dropped at once. */
#include "engine.h"

#define FRAG_SLOTS 1024
#define FRAG_BYTES (32u << 20)
#define FRAG_MAX 65535u

struct frag {
    uint8_t key[38];          /* version, protocol, id (4), src (16), dst (16) */
    int used;
    int64_t last_frame;
    uint8_t hdr[60];          /* the first fragment's IPv4 header, or IPv6's 40 bytes */
    uint32_t hdr_len;
    uint32_t total;           /* payload length, once the last fragment is seen (0: not yet) */
    uint32_t cap;
    uint8_t *buf;
    uint8_t have[FRAG_MAX / 8 / 8 + 1];    /* one bit per 8-byte block */
};

static int key_eq(const struct frag *f, const uint8_t *key) { return memcmp(f->key, key, sizeof f->key) == 0; }

static void frag_drop(Engine *e, struct frag *f, int completed) {
    if (!completed) e->c_frag_incomplete++;
    if (e->frag_bytes >= f->cap) e->frag_bytes -= f->cap; else e->frag_bytes = 0;
    free(f->buf);
    memset(f, 0, sizeof *f);
    e->frag_used--;
}

/* the datagram under reassembly touched longest ago, other than `keep` (NULL: none) */
static struct frag *frag_oldest(Engine *e, const struct frag *keep) {
    struct frag *oldest = NULL;
    for (int i = 0; i < FRAG_SLOTS; i++) {
        struct frag *f = &e->frags[i];
        if (f->used && f != keep && (!oldest || f->last_frame < oldest->last_frame)) oldest = f;
    }
    return oldest;
}

static struct frag *frag_slot(Engine *e, const uint8_t *key) {
    if (!e->frags) {
        e->frags = calloc(FRAG_SLOTS, sizeof(struct frag));
        if (!e->frags) return NULL;
    }
    struct frag *free_slot = NULL;
    for (int i = 0; i < FRAG_SLOTS; i++) {
        struct frag *f = &e->frags[i];
        if (f->used && key_eq(f, key)) return f;
        if (!f->used && !free_slot) free_slot = f;
    }
    if (!free_slot) { free_slot = frag_oldest(e, NULL); frag_drop(e, free_slot, 0); }
    memcpy(free_slot->key, key, sizeof free_slot->key);
    free_slot->used = 1;
    e->frag_used++;
    return free_slot;
}

static int block_have(const struct frag *f, uint32_t b) { return (f->have[b >> 3] >> (b & 7)) & 1; }

/* Add one fragment (`data`, `len` bytes of payload at byte `off` of the datagram; `last`:
 * no more fragments after it; `hdr`: the IP header to rebuild the datagram from, when this
 * is the first fragment). Returns the whole datagram's length in e->frag_out (an IP packet
 * to decode) when this fragment completed it, 0 while it is not whole, -1 on no memory. */
static int frag_add(Engine *e, const uint8_t *key, const uint8_t *hdr, uint32_t hdr_len, uint32_t off,
                    const uint8_t *data, uint32_t len, int last, int cut) {
    struct frag *f = frag_slot(e, key);
    if (!f) return -1;
    f->last_frame = e->frame;
    if (cut || off + len > FRAG_MAX || (last && f->total && f->total != off + len)) {
        frag_drop(e, f, 0);
        return 0;
    }
    if (off + len > f->cap) {
        uint32_t ncap = off + len + 1024 > FRAG_MAX ? FRAG_MAX : off + len + 1024;
        uint8_t *nb = realloc(f->buf, ncap);
        if (!nb) return -1;
        e->frag_bytes += ncap - f->cap;
        f->buf = nb; f->cap = ncap;
    }
    for (uint32_t b = off / 8; b * 8 < off + len; b++) {         /* the first bytes to come win */
        if (block_have(f, b)) continue;
        uint32_t lo = b * 8, hi = lo + 8 > off + len ? off + len : lo + 8;
        memcpy(f->buf + lo, data + (lo - off), hi - lo);
        f->have[b >> 3] |= (uint8_t)(1u << (b & 7));
    }
    if (hdr && !f->hdr_len) { memcpy(f->hdr, hdr, hdr_len); f->hdr_len = hdr_len; }
    if (last) f->total = off + len;
    int whole = f->total && f->hdr_len;
    for (uint32_t b = 0; whole && b * 8 < f->total; b++)
        if (!block_have(f, b)) whole = 0;
    if (!whole) {
        while (e->frag_bytes > FRAG_BYTES && e->frag_used > 1) {       /* the oldest go first */
            struct frag *oldest = frag_oldest(e, f);
            if (!oldest) break;
            frag_drop(e, oldest, 0);
        }
        return 0;
    }
    if (!e->frag_out) {
        e->frag_out = malloc(60 + FRAG_MAX);
        if (!e->frag_out) return -1;
    }
    uint32_t n = f->hdr_len + f->total;
    memcpy(e->frag_out, f->hdr, f->hdr_len);
    memcpy(e->frag_out + f->hdr_len, f->buf, f->total);
    if ((f->hdr[0] >> 4) == 4) {                 /* total length; no more fragments, offset 0 */
        e->frag_out[2] = (uint8_t)(n >> 8); e->frag_out[3] = (uint8_t)n;
        e->frag_out[6] &= 0x40; e->frag_out[7] = 0;
    } else {                                     /* payload length */
        e->frag_out[4] = (uint8_t)(f->total >> 8); e->frag_out[5] = (uint8_t)f->total;
    }
    frag_drop(e, f, 1);
    e->c_frag_reassembled++;
    return (int)n;
}

int eng_frag_v4(Engine *e, const uint8_t *p, size_t n, uint32_t ihl, uint32_t tot) {
    uint16_t frag = rd16be(p + 6);
    uint32_t off = (uint32_t)(frag & 0x1fff) * 8;
    int last = !(frag & 0x2000);
    uint8_t key[38] = {4, p[9]};
    memcpy(key + 2, p + 4, 2);
    memcpy(key + 6, p + 12, 4); memcpy(key + 22, p + 16, 4);
    uint32_t len = tot - ihl;
    int cut = n < tot;
    return frag_add(e, key, off == 0 ? p : NULL, ihl, off, p + ihl, cut ? 0 : len, last, cut);
}

int eng_frag_v6(Engine *e, const uint8_t *p, size_t n, size_t fh, uint32_t plen) {
    /* the fragment header at p + fh; the unfragmentable part is rebuilt as a bare 40-byte
     * IPv6 header whose next header is the fragment header's */
    uint16_t fo = rd16be(p + fh + 2);
    uint32_t off = fo & 0xfff8;
    int last = !(fo & 1);
    uint8_t key[38] = {6, p[fh]};
    memcpy(key + 2, p + fh + 4, 4);
    memcpy(key + 6, p + 8, 32);
    size_t start = fh + 8, end = 40 + (size_t)plen;
    if (end < start) return 0;
    int cut = n < end;
    uint8_t hdr[40];
    memcpy(hdr, p, 40);
    hdr[6] = p[fh];
    return frag_add(e, key, off == 0 ? hdr : NULL, 40, off, p + start, cut ? 0 : (uint32_t)(end - start), last, cut);
}

void eng_frag_free(Engine *e) {
    if (e->frags)
        for (int i = 0; i < FRAG_SLOTS; i++) free(e->frags[i].buf);
    free(e->frags); free(e->frag_out);
    e->frags = NULL; e->frag_out = NULL;
}
