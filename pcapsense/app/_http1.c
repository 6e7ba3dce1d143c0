/* HTTP/1.x framing of one direction, compiled: the same decisions as
 * pcapsense/app/http1.py `_frame_py` (the reference, kept in Python), in C.
 *
 * Why by hand: the framing is pcapsense's own (streams with gaps, cut by a close,
 * resynchronised on the next message start: see http1.py); no library does it. Header
 * syntax of the messages that get reported is still parsed by httptools (llhttp) in
 * http1.py; this module only finds where messages start and end and reads the framing
 * fields of each head (first line, Content-Length, Transfer-Encoding, Connection, Host).
 *
 * Sans-IO: pieces in (http1.Piece objects: offset, data, length, frame, ts_ns, tail),
 * Message objects out. Whenever the input is outside what this port decides exactly the
 * way Python does (a Content-Length with a sign or underscores, a status with non-ASCII
 * digits or more than 9 digits, data that is not bytes), frame() returns None and the
 * caller runs the Python reference instead: the result is always the reference's.
 * tests/test_http1_c.py checks both agree on every direction of every repo capture and
 * on mutated ones.
 */
#define _GNU_SOURCE          /* memmem */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>        /* PyMemberDescrObject, T_OBJECT_EX: slot offsets */
#include <stdint.h>
#include <string.h>

#define MAX_HEAD (64 * 1024)

enum { M_HEAD, M_BODY, M_CHUNKED, M_LOST, M_CLOSE };

/* interned attribute / field names */
static PyObject *s_offset, *s_data, *s_length, *s_frame, *s_ts_ns, *s_tail;
static PyObject *k_kind, *k_offset, *k_frame, *k_ts_ns, *k_head_end, *k_method, *k_target, *k_status,
    *k_reason, *k_version, *k_headers, *k_content_length, *k_chunked, *k_body_end, *k_complete,
    *k_malformed, *k_raw_head, *k_hdict;
static PyObject *v_connection, *v_host, *v_empty;

typedef struct {
    int64_t offset, frame, ts_ns, head_end, status, content_length, body_end;
    int has_head_end, has_status, has_cl, has_body_end, chunked, complete;
    PyObject *frame_o, *ts_o;       /* the piece's own int objects (exact, shared) */
    PyObject *method, *target, *reason, *version, *headers, *malformed, *raw_head;   /* owned or NULL */
} msg_t;

typedef struct {
    int64_t offset, length, frame, ts;
    const char *data; Py_ssize_t n;
    int tail;
    PyObject *frame_o, *ts_o;       /* borrowed from the piece */
} piece_t;

static void msg_clear(msg_t *m) {
    Py_CLEAR(m->method); Py_CLEAR(m->target); Py_CLEAR(m->reason); Py_CLEAR(m->version);
    Py_CLEAR(m->headers); Py_CLEAR(m->malformed); Py_CLEAR(m->raw_head);
}

static int starts_message(int response, const char *d, Py_ssize_t n) {
    if (response) return n >= 7 && memcmp(d, "HTTP/1.", 7) == 0;
    static const char *tok[] = {"GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ", "PATCH ",
                                "CONNECT ", "TRACE ", NULL};
    for (int i = 0; tok[i]; i++) {
        size_t l = strlen(tok[i]);
        if ((size_t)n >= l && memcmp(d, tok[i], l) == 0) return 1;
    }
    return 0;
}

static const char *find2(const char *h, Py_ssize_t n, const char *pat, Py_ssize_t pl) {
    if (n < pl) return NULL;
    return memmem(h, (size_t)n, pat, (size_t)pl);
}

static PyObject *latin1(const char *p, Py_ssize_t n) { return PyUnicode_DecodeLatin1(p, n, NULL); }

/* str.removeprefix("HTTP/") on latin-1 text */
static PyObject *latin1_noprefix(const char *p, Py_ssize_t n) {
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) { p += 5; n -= 5; }
    return latin1(p, n);
}

/* _first_line(). Returns 0, -1 on a Python error, 1 when Python must decide (int() of a
 * status with non-ASCII "digits" or more than 9 digits). */
static int first_line(int response, const char *buf, Py_ssize_t n, msg_t *m) {
    const char *end = find2(buf, n, "\r\n", 2);
    if (!end) return 0;
    Py_ssize_t ln = end - buf;
    /* split(" ", 2) */
    const char *sp1 = memchr(buf, ' ', (size_t)ln);
    if (!sp1) return 0;                                   /* one part */
    const char *p1 = sp1 + 1;
    const char *sp2 = memchr(p1, ' ', (size_t)(buf + ln - p1));
    Py_ssize_t n0 = sp1 - buf, n1 = (sp2 ? sp2 : buf + ln) - p1;
    if (!response) {
        if (!sp2) return 0;
        const char *p2 = sp2 + 1; Py_ssize_t n2 = buf + ln - p2;
        PyObject *a = latin1(buf, n0), *b = latin1(p1, n1), *c = latin1_noprefix(p2, n2);
        if (!a || !b || !c) { Py_XDECREF(a); Py_XDECREF(b); Py_XDECREF(c); return -1; }
        Py_XSETREF(m->method, a); Py_XSETREF(m->target, b); Py_XSETREF(m->version, c);
        return 0;
    }
    /* parts[1].isdigit(): latin-1 digits are 0-9 and the superscripts B2 B3 B9 */
    if (n1 == 0) return 0;
    int ascii = 1;
    for (Py_ssize_t i = 0; i < n1; i++) {
        unsigned char ch = (unsigned char)p1[i];
        if (ch >= '0' && ch <= '9') continue;
        if (ch == 0xB2 || ch == 0xB3 || ch == 0xB9) { ascii = 0; continue; }
        return 0;                                         /* not isdigit(): nothing set */
    }
    if (!ascii || n1 > 9) return 1;
    int64_t st = 0;
    for (Py_ssize_t i = 0; i < n1; i++) st = st * 10 + (p1[i] - '0');
    PyObject *v = latin1_noprefix(buf, n0);
    PyObject *r = sp2 ? latin1(sp2 + 1, buf + ln - sp2 - 1) : (Py_INCREF(v_empty), v_empty);
    if (!v || !r) { Py_XDECREF(v); Py_XDECREF(r); return -1; }
    Py_XSETREF(m->version, v); Py_XSETREF(m->reason, r);
    m->status = st; m->has_status = 1;
    return 0;
}

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0x0b || c == 0x0c; }

static int ieq(const char *a, const char *lower, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
        if (c != (unsigned char)lower[i]) return 0;
    }
    return 1;
}

/* _fast_head(): the first line and the framing headers, like the regex
 * \r\n(content-length|transfer-encoding|connection|host)[ \t]*:[ \t]*([^\r\n]*) (ignore
 * case) found everywhere in the head. Returns like first_line(). */
static int fast_head(int response, const char *h, Py_ssize_t n, msg_t *m) {
    int r = first_line(response, h, n, m);
    if (r) return r;
    PyObject *hdrs = PyList_New(0);
    if (!hdrs) return -1;
    static const char *names[] = {"content-length", "transfer-encoding", "connection", "host"};
    for (Py_ssize_t i = 0; i + 1 < n; i++) {
        if (h[i] != '\r' || h[i + 1] != '\n') continue;
        Py_ssize_t j = i + 2;
        int which = -1; size_t nl = 0;
        for (int k = 0; k < 4; k++) {
            nl = strlen(names[k]);
            if ((size_t)(n - j) >= nl && ieq(h + j, names[k], nl)) { which = k; break; }
        }
        if (which < 0) continue;
        j += (Py_ssize_t)nl;
        while (j < n && (h[j] == ' ' || h[j] == '\t')) j++;
        if (j >= n || h[j] != ':') continue;
        j++;
        while (j < n && (h[j] == ' ' || h[j] == '\t')) j++;
        Py_ssize_t vs = j;
        while (j < n && h[j] != '\r' && h[j] != '\n') j++;
        Py_ssize_t ve = j;
        if (which == 0) {                       /* int(value.split(b",")[0].strip()) */
            Py_ssize_t a = vs, b = vs;
            while (b < ve && h[b] != ',') b++;
            while (a < b && is_ws((unsigned char)h[a])) a++;
            while (b > a && is_ws((unsigned char)h[b - 1])) b--;
            int digits = 1, special = 0;
            for (Py_ssize_t q = a; q < b; q++) {
                char c = h[q];
                if (c >= '0' && c <= '9') continue;
                digits = 0;
                if (c == '+' || c == '-' || c == '_') special = 1;
            }
            if (special || (digits && b - a > 18)) { Py_DECREF(hdrs); return 1; }
            if (digits && b > a) {
                int64_t v = 0;
                for (Py_ssize_t q = a; q < b; q++) v = v * 10 + (h[q] - '0');
                m->content_length = v; m->has_cl = 1;
            } else {
                PyObject *s = PyUnicode_FromString("bad Content-Length");
                if (!s) { Py_DECREF(hdrs); return -1; }
                Py_XSETREF(m->malformed, s);
            }
        } else if (which == 1) {                /* b"chunked" in value.lower() */
            for (Py_ssize_t q = vs; q + 7 <= ve && !m->chunked; q++)
                if (ieq(h + q, "chunked", 7)) m->chunked = 1;
        } else {
            Py_ssize_t a = vs, b = ve;
            while (a < b && is_ws((unsigned char)h[a])) a++;
            while (b > a && is_ws((unsigned char)h[b - 1])) b--;
            PyObject *v = latin1(h + a, b - a);
            PyObject *t = v ? PyTuple_Pack(2, which == 2 ? v_connection : v_host, v) : NULL;
            Py_XDECREF(v);
            if (!t || PyList_Append(hdrs, t) < 0) { Py_XDECREF(t); Py_DECREF(hdrs); return -1; }
            Py_DECREF(t);
        }
        i = ve - 1;                              /* (the loop's i++ lands on the value's end) */
    }
    Py_XSETREF(m->headers, hdrs);
    return 0;
}

/* ---- the framing loop (http1._frame_py) ---- */

typedef struct {
    msg_t *v; Py_ssize_t n, cap;
} msgs_t;

static msg_t *new_msg(msgs_t *ms, int64_t offset, const piece_t *p) {
    if (ms->n == ms->cap) {
        Py_ssize_t nc = ms->cap ? ms->cap * 2 : 8;
        msg_t *nv = PyMem_Realloc(ms->v, (size_t)nc * sizeof(msg_t));
        if (!nv) { PyErr_NoMemory(); return NULL; }
        ms->v = nv; ms->cap = nc;
    }
    msg_t *m = &ms->v[ms->n++];
    memset(m, 0, sizeof *m);
    m->offset = offset; m->frame = p->frame; m->ts_ns = p->ts;
    m->frame_o = p->frame_o; m->ts_o = p->ts_o;
    return m;
}

typedef struct { char *b; Py_ssize_t n, cap; } buf_t;

static int buf_put(buf_t *b, const char *p, Py_ssize_t n) {
    if (n <= 0) return 0;
    if (b->n + n > b->cap) {
        Py_ssize_t nc = b->cap ? b->cap : 1024;
        while (nc < b->n + n) nc *= 2;
        char *nb = PyMem_Realloc(b->b, (size_t)nc);
        if (!nb) { PyErr_NoMemory(); return -1; }
        b->b = nb; b->cap = nc;
    }
    memcpy(b->b + b->n, p, (size_t)n);
    b->n += n;
    return 0;
}

static int set_malformed_if_none(msg_t *m, const char *text) {
    if (m->malformed) return 0;
    m->malformed = PyUnicode_FromString(text);
    return m->malformed ? 0 : -1;
}

static int set_malformed(msg_t *m, const char *text) {
    PyObject *s = PyUnicode_FromString(text);
    if (!s) return -1;
    Py_XSETREF(m->malformed, s);
    return 0;
}

static int64_t i64_of(PyObject *o, int *err) {
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) { *err = 1; }
    return (int64_t)v;
}

/* 0 ok, 1 fall back to Python, -1 error */
static int run(int response, piece_t *ps, Py_ssize_t np_, int64_t total, const char **methods,
               Py_ssize_t n_methods, msgs_t *ms) {
    int64_t expect = 0, body_end = 0;
    int mode = M_HEAD;
    buf_t hb = {0};
    msg_t *cur = NULL;
    Py_ssize_t cur_i = -1, n_resp = 0;
    const char *method = NULL;
    int rc = 0;
#define CUR (cur_i >= 0 ? &ms->v[cur_i] : NULL)
    for (Py_ssize_t k = 0; k < np_; k++) {
        piece_t *p = &ps[k];
        if (p->tail && p->offset < expect) continue;
        int64_t pos = p->offset;
        const char *data = p->data; Py_ssize_t dn = p->n;
        int64_t data_end = p->offset + dn, p_end = p->offset + p->length;
        for (;;) {
            cur = CUR;
            if (mode == M_BODY) {
                if (body_end >= p_end) break;
                mode = M_HEAD; expect = body_end;
                if (cur) cur->complete = 1;
                continue;
            }
            if (mode == M_CLOSE) break;
            if (mode == M_LOST || mode == M_CHUNKED) {
                if (pos == p->offset && starts_message(response, data, dn) && (!cur || p->offset > cur->offset)) {
                    if (mode == M_CHUNKED && cur) { cur->complete = 1; cur->body_end = p->offset; cur->has_body_end = 1; }
                    mode = M_HEAD; expect = p->offset; hb.n = 0;
                    continue;
                }
                if (mode == M_CHUNKED && cur && dn >= 5 && memcmp(data + dn - 5, "0\r\n\r\n", 5) == 0) {
                    cur->complete = 1; cur->body_end = p->offset + dn; cur->has_body_end = 1;
                    mode = M_HEAD; expect = p->offset + dn;
                }
                break;
            }
            /* mode == head */
            if (hb.n == 0) {
                if (expect < p->offset) {
                    if (starts_message(response, data, dn) && pos == p->offset) expect = p->offset;
                    else { mode = M_LOST; continue; }
                }
                int64_t start = expect - p->offset;
                if (start >= dn) break;
                if (!starts_message(response, data + start, dn - start)) { mode = M_LOST; continue; }
                cur = new_msg(ms, expect, p);
                if (!cur) { rc = -1; goto done; }
                cur_i = ms->n - 1;
                if (buf_put(&hb, data + start, dn - start) < 0) { rc = -1; goto done; }
            } else {
                if (p->offset > expect + hb.n) {
                    if (set_malformed_if_none(cur, "head cut by a gap") < 0) { rc = -1; goto done; }
                    int r = first_line(response, hb.b, hb.n, cur);
                    if (r) { rc = r; goto done; }
                    hb.n = 0; mode = M_LOST;
                    continue;
                }
                int64_t from = expect + hb.n - p->offset;
                if (from < dn && buf_put(&hb, data + from, dn - from) < 0) { rc = -1; goto done; }
            }
            const char *crlf = find2(hb.b, hb.n, "\r\n\r\n", 4);
            if (!crlf) {
                if (hb.n > MAX_HEAD) {
                    if (set_malformed(cur, "head too long") < 0) { rc = -1; goto done; }
                    hb.n = 0; mode = M_LOST;
                } else if (dn < p->length || (response && !cur->has_status)) {
                    int r = first_line(response, hb.b, hb.n, cur);
                    if (r) { rc = r; goto done; }
                    if (dn < p->length) {
                        if (set_malformed(cur, "head cut by the snaplen") < 0) { rc = -1; goto done; }
                        hb.n = 0; mode = M_LOST;
                    }
                }
                break;
            }
            Py_ssize_t idx = crlf - hb.b;
            cur->head_end = expect + idx + 4; cur->has_head_end = 1;
            {
                int r = fast_head(response, hb.b, idx + 4, cur);
                if (r) { rc = r; goto done; }
                PyObject *raw = PyBytes_FromStringAndSize(hb.b, idx + 4);
                if (!raw) { rc = -1; goto done; }
                Py_XSETREF(cur->raw_head, raw);
            }
            hb.n = 0;
            int no_body = 0;
            if (response) {
                method = n_resp < n_methods ? methods[n_resp] : "GET";
                if (cur->has_status && cur->status >= 200) n_resp++;
                int64_t st = cur->has_status ? cur->status : 0;
                no_body = strcmp(method, "HEAD") == 0 || st < 200 || (cur->has_status && (st == 204 || st == 304))
                    || (strcmp(method, "CONNECT") == 0 && 200 <= st && st < 300);
            }
            if (cur->malformed && !cur->has_cl && !cur->chunked && !response) no_body = 1;
            if (no_body || (!response && !cur->has_cl && !cur->chunked)) {
                cur->body_end = cur->head_end; cur->has_body_end = 1; cur->complete = 1;
                expect = cur->head_end;
                int64_t st = cur->has_status ? cur->status : 0;
                if (response && strcmp(method, "CONNECT") == 0 && 200 <= st && st < 300) { mode = M_CLOSE; break; }
                if (!response && cur->method && PyUnicode_CompareWithASCIIString(cur->method, "CONNECT") == 0) {
                    mode = M_CLOSE; break;
                }
                pos = expect;
                if (expect >= data_end) break;
                continue;
            }
            if (cur->has_cl && !cur->chunked) {
                body_end = cur->head_end + cur->content_length;
                cur->body_end = body_end; cur->has_body_end = 1;
                mode = M_BODY; pos = cur->head_end;
                continue;
            }
            if (cur->chunked) {
                mode = M_CHUNKED;
                if (cur->head_end >= p->offset) {
                    int64_t from = cur->head_end - p->offset;
                    if (from < dn && dn - from >= 5 && memcmp(data + dn - 5, "0\r\n\r\n", 5) == 0) {
                        cur->complete = 1; cur->body_end = p->offset + dn; cur->has_body_end = 1;
                        mode = M_HEAD; expect = p->offset + dn;
                    }
                }
                break;
            }
            mode = M_CLOSE;
            break;
        }
    }
    cur = CUR;
    if (mode == M_BODY && cur && body_end <= total) cur->complete = 1;
    if (mode == M_CHUNKED && cur && !cur->complete) {
        piece_t *last = NULL;
        for (Py_ssize_t k = 0; k < np_; k++) if (ps[k].tail) last = &ps[k];
        if (last && last->n >= 5 && memcmp(last->data + last->n - 5, "0\r\n\r\n", 5) == 0 &&
                last->offset + last->length >= total) {
            cur->complete = 1; cur->body_end = total; cur->has_body_end = 1;
        }
    }
    if (mode == M_CLOSE && cur && !cur->has_body_end) { cur->body_end = total; cur->has_body_end = 1; }
done:
    PyMem_Free(hb.b);
    return rc;
#undef CUR
}

/* Message and Piece are slots dataclasses (http1.py, segments.py): their fields are
 * read and written here at the slot offsets their member descriptors give, with no
 * attribute lookup or instance dict (a message's 18 fields are set in a few ns each).
 * A class laid out otherwise (not slots) makes frame() decline: the Python path runs. */
enum { MF_KIND, MF_OFFSET, MF_FRAME, MF_TS, MF_HEAD_END, MF_METHOD, MF_TARGET, MF_STATUS, MF_REASON,
       MF_VERSION, MF_HEADERS, MF_CL, MF_CHUNKED, MF_BODY_END, MF_COMPLETE, MF_MALFORMED, MF_RAW_HEAD,
       MF_HDICT, MF_N };
static PyObject *mf_key[MF_N];
static Py_ssize_t mf_off[MF_N];
static PyTypeObject *mf_cls;
enum { PF_OFFSET, PF_DATA, PF_LENGTH, PF_FRAME, PF_TS, PF_TAIL, PF_N };
static PyObject *pf_key[PF_N];
static Py_ssize_t pf_off[PF_N];
static PyTypeObject *pf_cls;

static int slot_offsets(PyTypeObject *cls, PyObject **keys, Py_ssize_t *offs, int n) {
    for (int i = 0; i < n; i++) {
        PyObject *d = PyObject_GetAttr((PyObject *)cls, keys[i]);
        if (!d) { PyErr_Clear(); return 1; }
        int ok = Py_IS_TYPE(d, &PyMemberDescr_Type) &&
                 ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
        if (ok) offs[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_DECREF(d);
        if (!ok) return 1;
    }
    return 0;
}

static int msg_layout(PyTypeObject *cls) {          /* 0 ready, 1 not slots */
    if (cls == mf_cls) return 0;
    if (slot_offsets(cls, mf_key, mf_off, MF_N)) return 1;
    mf_cls = cls;
    return 0;
}

static int piece_layout(PyTypeObject *cls) {
    if (cls == pf_cls) return 0;
    if (slot_offsets(cls, pf_key, pf_off, PF_N)) return 1;
    pf_cls = cls;
    return 0;
}

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

/* a Message field (MF_*): borrowed, never NULL (None) */
static PyObject *mget(PyObject *m, int f) {
    PyObject *v = SLOT(m, mf_off[f]);
    return v ? v : Py_None;
}

/* set a Message field (MF_*); steals v (NULL v: error) */
static int put(PyObject *m, int f, PyObject *v) {
    if (!v) return -1;
    Py_XSETREF(SLOT(m, mf_off[f]), v);
    return 0;
}

static int mset(PyObject *m, int f, PyObject *v) {     /* borrows v */
    Py_INCREF(v);
    return put(m, f, v);
}

#define MSG_REF(x) (Py_INCREF(x), (x))


static PyObject *opt_i64(int has, int64_t v) {
    if (!has) Py_RETURN_NONE;
    return PyLong_FromLongLong(v);
}

static PyObject *own_or_none(PyObject *o) {
    if (!o) Py_RETURN_NONE;
    Py_INCREF(o);
    return o;
}

static PyObject *to_message(PyTypeObject *cls, PyObject *kind, msg_t *m) {
    PyObject *obj = cls->tp_alloc(cls, 0);
    if (!obj) return NULL;
    PyObject *d = obj;
    PyObject *hdrs = m->headers ? (Py_INCREF(m->headers), m->headers) : PyList_New(0);
    int bad =
        put(d, MF_KIND, (Py_INCREF(kind), kind)) ||
        put(d, MF_OFFSET, PyLong_FromLongLong(m->offset)) ||
        put(d, MF_FRAME, (Py_INCREF(m->frame_o), m->frame_o)) ||
        put(d, MF_TS, (Py_INCREF(m->ts_o), m->ts_o)) ||
        put(d, MF_HEAD_END, opt_i64(m->has_head_end, m->head_end)) ||
        put(d, MF_METHOD, own_or_none(m->method)) ||
        put(d, MF_TARGET, own_or_none(m->target)) ||
        put(d, MF_STATUS, opt_i64(m->has_status, m->status)) ||
        put(d, MF_REASON, own_or_none(m->reason)) ||
        put(d, MF_VERSION, own_or_none(m->version)) ||
        put(d, MF_HEADERS, hdrs) ||
        put(d, MF_CL, opt_i64(m->has_cl, m->content_length)) ||
        put(d, MF_CHUNKED, PyBool_FromLong(m->chunked)) ||
        put(d, MF_BODY_END, opt_i64(m->has_body_end, m->body_end)) ||
        put(d, MF_COMPLETE, PyBool_FromLong(m->complete)) ||
        put(d, MF_MALFORMED, own_or_none(m->malformed)) ||
        put(d, MF_RAW_HEAD, own_or_none(m->raw_head)) ||
        put(d, MF_HDICT, own_or_none(NULL));
    if (bad) { Py_DECREF(obj); return NULL; }
    return obj;
}

/* frame() without its argument parsing: list[Message], None (Python decides) or NULL */
static PyObject *frame_impl(PyObject *kind, PyObject *pieces, long long total, PyObject *methods_o,
                            PyObject *cls_o) {
    int response = PyUnicode_CompareWithASCIIString(kind, "response") == 0;
    Py_ssize_t np_ = PyList_GET_SIZE(pieces);
    piece_t *ps = PyMem_Calloc((size_t)(np_ ? np_ : 1), sizeof(piece_t));
    const char **methods = NULL;
    Py_ssize_t n_methods = 0;
    PyObject *keep = NULL;                   /* (pieces' fields are borrowed: the list owns them) */
    msgs_t ms = {0};
    PyObject *out = NULL;
    int rc = 0;
    if (!ps) { PyErr_NoMemory(); goto end; }
    if (msg_layout((PyTypeObject *)cls_o)) rc = 1;
    for (Py_ssize_t i = 0; i < np_ && rc == 0; i++) {
        PyObject *p = PyList_GET_ITEM(pieces, i);
        if (piece_layout(Py_TYPE(p))) { rc = 1; break; }
        PyObject *o[6];
        int unset = 0;
        for (int j = 0; j < 6; j++) if (!(o[j] = SLOT(p, pf_off[j]))) unset = 1;
        if (unset) { rc = 1; break; }
        if (!PyBytes_CheckExact(o[1]) || !PyLong_CheckExact(o[0]) || !PyLong_CheckExact(o[2]) ||
                !PyLong_CheckExact(o[3]) || !PyLong_CheckExact(o[4])) { rc = 1; break; }
        int err = 0;
        ps[i].offset = i64_of(o[0], &err); ps[i].length = i64_of(o[2], &err);
        ps[i].frame = i64_of(o[3], &err); ps[i].ts = i64_of(o[4], &err);
        if (err) { PyErr_Clear(); rc = 1; break; }
        ps[i].frame_o = o[3]; ps[i].ts_o = o[4];
        ps[i].data = PyBytes_AS_STRING(o[1]); ps[i].n = PyBytes_GET_SIZE(o[1]);
        int t = PyObject_IsTrue(o[5]);
        if (t < 0) goto end;
        ps[i].tail = t;
        /* offsets beyond +-2^62 could overflow the arithmetic: Python's ints do not */
        if (ps[i].offset > ((int64_t)1 << 62) || ps[i].offset < -((int64_t)1 << 62) ||
                ps[i].length > ((int64_t)1 << 62) || ps[i].length < 0) { rc = 1; break; }
    }
    if (rc == 0 && (total > ((long long)1 << 62) || total < -((long long)1 << 62))) rc = 1;
    if (rc == 0 && methods_o != Py_None) {
        if (!PyList_Check(methods_o)) { rc = 1; }
        else {
            n_methods = PyList_GET_SIZE(methods_o);
            methods = PyMem_Calloc((size_t)(n_methods ? n_methods : 1), sizeof(char *));
            if (!methods) { PyErr_NoMemory(); goto end; }
            for (Py_ssize_t i = 0; i < n_methods; i++) {
                PyObject *s = PyList_GET_ITEM(methods_o, i);
                /* a method with a NUL or outside ASCII cannot be compared as C text: Python */
                if (!PyUnicode_Check(s) || !PyUnicode_IS_ASCII(s) ||
                        (Py_ssize_t)strlen(PyUnicode_AsUTF8(s)) != PyUnicode_GET_LENGTH(s)) { rc = 1; break; }
                methods[i] = PyUnicode_AsUTF8(s);
            }
        }
    }
    if (rc == 0) rc = run(response, ps, np_, total, methods, n_methods, &ms);
    if (rc < 0) goto end;
    if (rc == 1) { out = Py_None; Py_INCREF(out); goto end; }
    out = PyList_New(ms.n);
    if (!out) goto end;
    for (Py_ssize_t i = 0; i < ms.n; i++) {
        PyObject *m = to_message((PyTypeObject *)cls_o, kind, &ms.v[i]);
        if (!m) { Py_CLEAR(out); goto end; }
        PyList_SET_ITEM(out, i, m);
    }
end:
    for (Py_ssize_t i = 0; i < ms.n; i++) msg_clear(&ms.v[i]);
    PyMem_Free(ms.v);
    PyMem_Free(ps);
    PyMem_Free(methods);
    Py_XDECREF(keep);
    return out;
}

/* frame(kind, pieces, total_bytes, request_methods, Message) -> list[Message] | None */
static PyObject *frame(PyObject *self, PyObject *args) {
    PyObject *kind, *pieces, *methods_o, *cls_o;
    long long total;
    if (!PyArg_ParseTuple(args, "UO!LOO!", &kind, &PyList_Type, &pieces, &total, &methods_o,
                          &PyType_Type, &cls_o))
        return NULL;
    return frame_impl(kind, pieces, total, methods_o, cls_o);
}

/* ---- one HTTP/1 connection: both directions, the reported heads, facts, exchanges ----
 * The same as facts._one's HTTP/1 branch up to its proxy and upgrade cases:
 * http1.parse_direction (requests, then responses framed with the requests' methods),
 * facts._http_facts and facts._exchange_rows. The reported heads are still parsed by
 * httptools, through the Python `parse_head` given. */

static PyObject *s_request, *s_response;


/* Message.header(name): repeated ones joined with ", ". New reference, or Py_None
 * (new reference too); NULL on error. */
static PyObject *header(PyObject *d, const char *name) {
    PyObject *hs = mget(d, MF_HEADERS);
    if (!PyList_Check(hs)) Py_RETURN_NONE;
    PyObject *acc = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(hs); i++) {
        PyObject *t = PyList_GET_ITEM(hs, i);
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 2) continue;
        PyObject *n = PyTuple_GET_ITEM(t, 0), *v = PyTuple_GET_ITEM(t, 1);
        if (!PyUnicode_Check(n) || PyUnicode_CompareWithASCIIString(n, name) != 0) continue;
        if (!acc) { Py_INCREF(v); acc = v; continue; }
        PyObject *j = PyUnicode_FromFormat("%U, %U", acc, v);
        Py_DECREF(acc);
        if (!j) return NULL;
        acc = j;
    }
    if (!acc) Py_RETURN_NONE;
    return acc;
}

/* (s or "").lower() contains / equals an ASCII lower-case needle: 1 / 0, -1 error */
static int lower_has(PyObject *s, const char *needle, int whole) {
    if (s == Py_None) return whole ? needle[0] == 0 : needle[0] == 0;
    PyObject *low = PyObject_CallMethod(s, "lower", NULL);
    if (!low) return -1;
    PyObject *nd = PyUnicode_FromString(needle);
    if (!nd) { Py_DECREF(low); return -1; }
    int r = whole ? PyUnicode_Compare(low, nd) == 0 : PySequence_Contains(low, nd);
    if (whole && PyErr_Occurred()) r = -1;
    Py_DECREF(low); Py_DECREF(nd);
    return r;
}

/* Message.keep_alive: 1 / 0, -1 error */
static int keep_alive(PyObject *d) {
    PyObject *conn = header(d, "connection");
    if (!conn) return -1;
    int r = lower_has(conn, "close", 0);
    if (r == 1) { Py_DECREF(conn); return 0; }
    if (r < 0) { Py_DECREF(conn); return -1; }
    PyObject *ver = mget(d, MF_VERSION);
    if (PyUnicode_Check(ver) && PyUnicode_CompareWithASCIIString(ver, "1.0") == 0) {
        r = lower_has(conn, "keep-alive", 0);
        Py_DECREF(conn);
        return r;
    }
    Py_DECREF(conn);
    return 1;
}

static int is_final(PyObject *d) {          /* status is not None and >= 200 and != 101 */
    PyObject *st = mget(d, MF_STATUS);
    if (st == Py_None || !PyLong_Check(st)) return 0;
    long v = PyLong_AsLong(st);
    if (v == -1 && PyErr_Occurred()) { PyErr_Clear(); return 1; }   /* huge: >= 200 */
    return v >= 200 && v != 101;
}

static int status_is(PyObject *d, long want) {
    PyObject *st = mget(d, MF_STATUS);
    if (st == Py_None || !PyLong_Check(st)) return 0;
    long v = PyLong_AsLong(st);
    if (v == -1 && PyErr_Occurred()) { PyErr_Clear(); return 0; }
    return v == want;
}

/* the loop of parse_direction after the framing: httptools for the reported heads */
static PyObject *ph_req_cls;                 /* (defined with parse_head_c below) */
static int parse_head_c(PyObject *kind, PyObject *head, PyObject *msg);

static int reparse(PyObject *kind, PyObject *msgs, PyObject *parse_head) {
    Py_ssize_t n = PyList_GET_SIZE(msgs);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *m = PyList_GET_ITEM(msgs, i);
        PyObject *d = MSG_REF(m);
        if (!d) return -1;
        PyObject *raw = mget(d, MF_RAW_HEAD);
        if (raw == Py_None) { Py_DECREF(d); continue; }
        int report = i == n - 1;
        PyObject *meth = mget(d, MF_METHOD), *tgt = mget(d, MF_TARGET), *st = mget(d, MF_STATUS);
        if (!report && PyUnicode_Check(meth) && PyUnicode_CompareWithASCIIString(meth, "CONNECT") == 0) report = 1;
        if (!report && PyUnicode_Check(tgt)) {
            PyObject *sep = PyUnicode_FromString("://");
            if (!sep) { Py_DECREF(d); return -1; }
            Py_ssize_t f = PyUnicode_Find(tgt, sep, 0, PY_SSIZE_T_MAX, 1);
            Py_DECREF(sep);
            if (f == -2) { Py_DECREF(d); return -1; }
            report = f >= 0;
        }
        if (!report && st != Py_None) {
            long v = PyLong_AsLong(st);
            if (v == -1 && PyErr_Occurred()) { PyErr_Clear(); report = 1; }
            else report = !(v == 200 || v == 204 || v == 206 || v == 301 || v == 302 || v == 304);
        }
        if (report) {
            PyObject *keep[4] = {mget(d, MF_CL), mget(d, MF_CHUNKED), mget(d, MF_BODY_END), mget(d, MF_COMPLETE)};
            int ks[4] = {MF_CL, MF_CHUNKED, MF_BODY_END, MF_COMPLETE};
            for (int j = 0; j < 4; j++) Py_INCREF(keep[j]);
            Py_INCREF(raw);
            int bad = mset(d, MF_MALFORMED, Py_None) < 0;
            if (!bad && ph_req_cls) bad = parse_head_c(kind, raw, m) < 0;
            else if (!bad) {
                PyObject *r = PyObject_CallFunctionObjArgs(parse_head, kind, raw, m, NULL);
                bad = !r;
                Py_XDECREF(r);
            }
            Py_DECREF(raw);
            for (int j = 0; j < 4; j++) {
                if (!bad && mset(d, ks[j], keep[j]) < 0) bad = 1;
                Py_DECREF(keep[j]);
            }
            if (bad) { Py_DECREF(d); return -1; }
        }
        int r2 = mset(d, MF_RAW_HEAD, Py_None);
        Py_DECREF(d);
        if (r2 < 0) return -1;
    }
    return 0;
}

static PyObject *intern_or_none(PyObject *s) {        /* facts._interned; new reference */
    if (s == Py_None) Py_RETURN_NONE;
    Py_INCREF(s);
    if (PyUnicode_CheckExact(s)) PyUnicode_InternInPlace(&s);
    return s;
}

static PyObject *interned(PyObject *s) {              /* steals s; NULL passes through */
    if (s && PyUnicode_CheckExact(s)) PyUnicode_InternInPlace(&s);
    return s;
}

static PyObject *bool_of(PyObject *o) {                  /* bool(o); NULL on error */
    int t = PyObject_IsTrue(o);
    if (t < 0) return NULL;
    return PyBool_FromLong(t);
}


static PyObject *inc(PyObject *o) { Py_INCREF(o); return o; }

/* complete or (body_end is not None and body_end <= total) */
static PyObject *done_by(PyObject *d, long long total) {
    int c = PyObject_IsTrue(mget(d, MF_COMPLETE));
    if (c < 0) return NULL;
    if (c) Py_RETURN_TRUE;
    PyObject *be = mget(d, MF_BODY_END);
    if (be == Py_None) Py_RETURN_FALSE;
    PyObject *t = PyLong_FromLongLong(total);
    if (!t) return NULL;
    int le = PyObject_RichCompareBool(be, t, Py_LE);
    Py_DECREF(t);
    if (le < 0) return NULL;
    return PyBool_FromLong(le);
}

/* The HTTP facts of one connection, in the order of HTTP_FACTS (a module attribute):
 * facts.py turns rows of them into columns without a dict per connection. */
enum { HF_REQUESTS, HF_RESPONSES, HF_STATUSES, HF_UNANSWERED, HF_100_CONTINUE, HF_LAST_METHOD, HF_LAST_TARGET, HF_LAST_REQUEST_FRAME, HF_LAST_REQUEST_TS, HF_LAST_REQUEST_COMPLETE, HF_LAST_REQUEST_BODY_DECLARED, HF_LAST_REQUEST_BODY_SENT, HF_LAST_REQUEST_EXPECT_CONTINUE, HF_LAST_REQUEST_ANSWERED, HF_CLIENT_KEEP_ALIVE, HF_ABSOLUTE_FORM, HF_HOST, HF_USER_AGENT, HF_PREV_REQUEST_TS, HF_LAST_STATUS, HF_LAST_RESPONSE_FRAME, HF_LAST_RESPONSE_TS, HF_LAST_RESPONSE_COMPLETE, HF_SERVER_KEEP_ALIVE, HF_RETRY_AFTER, HF_SERVER, HF_MALFORMED, HF_N };
static const char *hf_names[HF_N] = {"http_requests", "http_responses", "http_statuses", "http_unanswered", "http_100_continue", "http_last_method", "http_last_target", "http_last_request_frame", "http_last_request_ts", "http_last_request_complete", "http_last_request_body_declared", "http_last_request_body_sent", "http_last_request_expect_continue", "http_last_request_answered", "http_client_keep_alive", "http_absolute_form", "http_host", "http_user_agent", "http_prev_request_ts", "http_last_status", "http_last_response_frame", "http_last_response_ts", "http_last_response_complete", "http_server_keep_alive", "http_retry_after", "http_server", "http_malformed"};

static int setf(PyObject **vals, int i, PyObject *v) {       /* steals v; NULL v: error */
    if (!v) return -1;
    Py_XSETREF(vals[i], v);
    return 0;
}

static int http_facts(PyObject **row, PyObject *reqs, PyObject *resps, PyObject *finals, long long ctot,
                      long long stot) {
    Py_ssize_t nq = PyList_GET_SIZE(reqs), nf = PyList_GET_SIZE(finals), nr = PyList_GET_SIZE(resps);
    if (setf(row, HF_REQUESTS, PyLong_FromSsize_t(nq)) < 0) return -1;
    if (setf(row, HF_RESPONSES, PyLong_FromSsize_t(nf)) < 0) return -1;
    if (nf) {
        PyObject *parts = PyList_New(nf);
        if (!parts) return -1;
        for (Py_ssize_t i = 0; i < nf; i++) {
            PyObject *d = MSG_REF(PyList_GET_ITEM(finals, i));
            PyObject *s = d ? PyObject_Str(mget(d, MF_STATUS)) : NULL;
            Py_XDECREF(d);
            if (!s) { Py_DECREF(parts); return -1; }
            PyList_SET_ITEM(parts, i, s);
        }
        PyObject *sep = PyUnicode_FromString(",");
        PyObject *j = sep ? PyUnicode_Join(sep, parts) : NULL;
        Py_XDECREF(sep); Py_DECREF(parts);
        if (setf(row, HF_STATUSES, j) < 0) return -1;
    } else if (setf(row, HF_STATUSES, inc(Py_None)) < 0) return -1;
    if (setf(row, HF_UNANSWERED, PyLong_FromSsize_t(nq > nf ? nq - nf : 0)) < 0) return -1;
    int c100 = 0;
    for (Py_ssize_t i = 0; i < nr && !c100; i++) {
        PyObject *d = MSG_REF(PyList_GET_ITEM(resps, i));
        if (!d) return -1;
        c100 = status_is(d, 100);
        Py_DECREF(d);
    }
    if (setf(row, HF_100_CONTINUE, PyBool_FromLong(c100)) < 0) return -1;
    PyObject *d = NULL;
    if (nq) {
        d = MSG_REF(PyList_GET_ITEM(reqs, nq - 1));
        if (!d) return -1;
        PyObject *he = mget(d, MF_HEAD_END), *cl = mget(d, MF_CL);
        if (setf(row, HF_LAST_METHOD, inc(mget(d, MF_METHOD))) < 0 ||
            setf(row, HF_LAST_TARGET, interned(inc(mget(d, MF_TARGET)))) < 0 ||
            setf(row, HF_LAST_REQUEST_FRAME, inc(mget(d, MF_FRAME))) < 0 ||
            setf(row, HF_LAST_REQUEST_TS, inc(mget(d, MF_TS))) < 0 ||
            setf(row, HF_LAST_REQUEST_COMPLETE, done_by(d, ctot)) < 0 ||
            setf(row, HF_LAST_REQUEST_BODY_DECLARED, inc(cl)) < 0) goto fail;
        if (he != Py_None && cl != Py_None) {
            /* max(min(ctot, head_end + content_length) - head_end, 0), in Python ints */
            PyObject *t = PyLong_FromLongLong(ctot), *sum = PyNumber_Add(he, cl), *mn = NULL, *df = NULL, *zero = NULL;
            PyObject *res = NULL;
            if (t && sum) {
                int lt = PyObject_RichCompareBool(t, sum, Py_LE);
                mn = lt < 0 ? NULL : inc(lt ? t : sum);
            }
            if (mn) df = PyNumber_Subtract(mn, he);
            if (df) zero = PyLong_FromLong(0);
            if (zero) {
                int ge = PyObject_RichCompareBool(df, zero, Py_GE);
                res = ge < 0 ? NULL : inc(ge ? df : zero);
            }
            Py_XDECREF(t); Py_XDECREF(sum); Py_XDECREF(mn); Py_XDECREF(df); Py_XDECREF(zero);
            if (setf(row, HF_LAST_REQUEST_BODY_SENT, res) < 0) goto fail;
        } else if (setf(row, HF_LAST_REQUEST_BODY_SENT, inc(Py_None)) < 0) goto fail;
        PyObject *ex = header(d, "expect");
        if (!ex) goto fail;
        int ec = lower_has(ex, "100-continue", 1);
        Py_DECREF(ex);
        if (ec < 0 || setf(row, HF_LAST_REQUEST_EXPECT_CONTINUE, PyBool_FromLong(ec)) < 0) goto fail;
        if (setf(row, HF_LAST_REQUEST_ANSWERED, PyBool_FromLong(nf >= nq)) < 0) goto fail;
        int ka = keep_alive(d);
        if (ka < 0 || setf(row, HF_CLIENT_KEEP_ALIVE, PyBool_FromLong(ka)) < 0) goto fail;
        int absf = 0;
        for (Py_ssize_t i = 0; i < nq && !absf; i++) {
            PyObject *qd = MSG_REF(PyList_GET_ITEM(reqs, i));
            if (!qd) goto fail;
            PyObject *tg = mget(qd, MF_TARGET);
            if (PyUnicode_Check(tg) && PyUnicode_GET_LENGTH(tg)) {
                PyObject *head = PyUnicode_Substring(tg, 0, 12), *sep = PyUnicode_FromString("://");
                int has = (head && sep) ? PySequence_Contains(head, sep) : -1;
                Py_XDECREF(head); Py_XDECREF(sep);
                if (has < 0) { Py_DECREF(qd); goto fail; }
                absf = has;
            }
            Py_DECREF(qd);
        }
        if (setf(row, HF_ABSOLUTE_FORM, PyBool_FromLong(absf)) < 0) goto fail;
        /* (interned: hosts, user agents and servers repeat on almost every connection;
         * one string each instead of one per row, 20 MiB at 10M packets) */
        if (setf(row, HF_HOST, interned(header(d, "host"))) < 0) goto fail;
        if (setf(row, HF_USER_AGENT, interned(header(d, "user-agent"))) < 0) goto fail;
        if (nq >= 2) {
            PyObject *pd_ = MSG_REF(PyList_GET_ITEM(reqs, nq - 2));
            if (!pd_) goto fail;
            int r = setf(row, HF_PREV_REQUEST_TS, inc(mget(pd_, MF_TS)));
            Py_DECREF(pd_);
            if (r < 0) goto fail;
        }
        Py_CLEAR(d);
    }
    if (nf) {
        d = MSG_REF(PyList_GET_ITEM(finals, nf - 1));
        if (!d) return -1;
        if (setf(row, HF_LAST_STATUS, inc(mget(d, MF_STATUS))) < 0 ||
            setf(row, HF_LAST_RESPONSE_FRAME, inc(mget(d, MF_FRAME))) < 0 ||
            setf(row, HF_LAST_RESPONSE_TS, inc(mget(d, MF_TS))) < 0 ||
            setf(row, HF_LAST_RESPONSE_COMPLETE, done_by(d, stot)) < 0) goto fail;
        int ka = keep_alive(d);
        if (ka < 0) goto fail;
        PyObject *ver = mget(d, MF_VERSION);
        int v11 = PyUnicode_Check(ver) && PyUnicode_CompareWithASCIIString(ver, "1.1") == 0;
        if (setf(row, HF_SERVER_KEEP_ALIVE, PyBool_FromLong(ka && v11)) < 0) goto fail;
        if (setf(row, HF_RETRY_AFTER, interned(header(d, "retry-after"))) < 0) goto fail;
        if (setf(row, HF_SERVER, interned(header(d, "server"))) < 0) goto fail;
        Py_CLEAR(d);
    }
    int mal = 0;
    PyObject *lists[2] = {reqs, resps};
    for (int l = 0; l < 2 && !mal; l++)
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lists[l]) && !mal; i++) {
            PyObject *md = MSG_REF(PyList_GET_ITEM(lists[l], i));
            if (!md) return -1;
            int t = PyObject_IsTrue(mget(md, MF_MALFORMED));
            Py_DECREF(md);
            if (t < 0) return -1;
            mal = t;
        }
    return setf(row, HF_MALFORMED, PyBool_FromLong(mal));
fail:
    Py_XDECREF(d);
    return -1;
}

static PyObject *exchange_rows(PyObject *st, PyObject *reqs, PyObject *finals) {
    Py_ssize_t nq = PyList_GET_SIZE(reqs), nf = PyList_GET_SIZE(finals);
    PyObject *out = PyList_New(nq);
    if (!out) return NULL;
    for (Py_ssize_t i = 0; i < nq; i++) {
        PyObject *q = MSG_REF(PyList_GET_ITEM(reqs, i));
        PyObject *r = (q && i < nf) ? MSG_REF(PyList_GET_ITEM(finals, i)) : NULL;
        if (!q || (i < nf && !r)) { Py_XDECREF(q); Py_DECREF(out); return NULL; }
        PyObject *hs = mget(q, MF_HEADERS);
        int has_h = PyObject_IsTrue(hs);
        PyObject *host = has_h > 0 ? header(q, "host") : (has_h == 0 ? inc(Py_None) : NULL);
        PyObject *hosti = host ? intern_or_none(host) : NULL;
        Py_XDECREF(host);
        int qka = keep_alive(q), rka = r ? keep_alive(r) : 0;
        PyObject *t = NULL;
        if (hosti && qka >= 0 && rka >= 0) {
            PyObject *v[17] = {
                inc(st), PyLong_FromSsize_t(i + 1), intern_or_none(mget(q, MF_METHOD)), intern_or_none(mget(q, MF_TARGET)),
                inc(hosti), inc(mget(q, MF_FRAME)), inc(mget(q, MF_TS)), bool_of(mget(q, MF_COMPLETE)),
                inc(mget(q, MF_CL)),
                r ? inc(mget(r, MF_STATUS)) : inc(Py_None), r ? intern_or_none(mget(r, MF_REASON)) : inc(Py_None),
                r ? inc(mget(r, MF_FRAME)) : inc(Py_None), r ? inc(mget(r, MF_TS)) : inc(Py_None),
                r ? bool_of(mget(r, MF_COMPLETE)) : inc(Py_None), r ? inc(mget(r, MF_CL)) : inc(Py_None),
                PyBool_FromLong(qka), r ? PyBool_FromLong(rka) : inc(Py_None)};
            int ok = 1;
            for (int j = 0; j < 17; j++) if (!v[j]) ok = 0;
            t = ok ? PyTuple_New(17) : NULL;
            for (int j = 0; j < 17; j++) {
                if (t) PyTuple_SET_ITEM(t, j, v[j]);
                else Py_XDECREF(v[j]);
            }
        }
        Py_XDECREF(hosti); Py_DECREF(q); Py_XDECREF(r);
        if (!t) { Py_DECREF(out); return NULL; }
        PyList_SET_ITEM(out, i, t);
    }
    return out;
}

/* connection(stream, cl, sv, ctot, stot, Message, parse_head) */
static PyObject *connection(PyObject *self, PyObject *args) {
    PyObject *st, *cl, *sv, *cls_o, *parse_head;
    long long ctot, stot;
    if (!PyArg_ParseTuple(args, "OO!O!LLO!O", &st, &PyList_Type, &cl, &PyList_Type, &sv, &ctot, &stot,
                          &PyType_Type, &cls_o, &parse_head))
        return NULL;
    PyObject *reqs = NULL, *resps = NULL, *methods = NULL, *finals = NULL, *row = NULL, *ex = NULL;
    reqs = frame_impl(s_request, cl, ctot, Py_None, cls_o);
    if (!reqs || reqs == Py_None) goto out;
    if (reparse(s_request, reqs, parse_head) < 0) goto fail;
    Py_ssize_t nq = PyList_GET_SIZE(reqs);
    methods = PyList_New(nq);                         /* [r.method or "GET" for r in reqs] */
    if (!methods) goto fail;
    for (Py_ssize_t i = 0; i < nq; i++) {
        PyObject *d = MSG_REF(PyList_GET_ITEM(reqs, i));
        if (!d) goto fail;
        PyObject *mth = mget(d, MF_METHOD);
        int t = PyObject_IsTrue(mth);
        if (t < 0) { Py_DECREF(d); goto fail; }
        PyObject *v = t ? mth : NULL;
        if (!v) v = PyUnicode_FromString("GET"); else Py_INCREF(v);
        Py_DECREF(d);
        if (!v) goto fail;
        PyList_SET_ITEM(methods, i, v);
    }
    resps = frame_impl(s_response, sv, stot, methods, cls_o);
    if (!resps) goto fail;
    if (resps == Py_None) { Py_CLEAR(reqs); reqs = resps; resps = NULL; goto out; }   /* reqs := None */
    if (reparse(s_response, resps, parse_head) < 0) goto fail;
    finals = PyList_New(0);
    if (!finals) goto fail;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(resps); i++) {
        PyObject *m = PyList_GET_ITEM(resps, i);
        PyObject *d = MSG_REF(m);
        if (!d) goto fail;
        int f = is_final(d);
        Py_DECREF(d);
        if (f && PyList_Append(finals, m) < 0) goto fail;
    }
    {
        PyObject *vals[HF_N] = {NULL};
        int bad = http_facts(vals, reqs, resps, finals, ctot, stot) < 0;
        row = bad ? NULL : PyTuple_New(HF_N);
        for (int i = 0; i < HF_N; i++) {
            if (row) PyTuple_SET_ITEM(row, i, vals[i] ? vals[i] : (Py_INCREF(Py_None), Py_None));
            else Py_XDECREF(vals[i]);
        }
        if (!row) goto fail;
    }
    ex = exchange_rows(st, reqs, finals);
    if (!ex) goto fail;
    /* the first CONNECT request and the first 101 response (facts._one's proxy and
     * upgrade cases), as indices, -1 for none */
    Py_ssize_t i_connect = -1, i_101 = -1;
    for (Py_ssize_t i = 0; i < nq && i_connect < 0; i++) {
        PyObject *d = MSG_REF(PyList_GET_ITEM(reqs, i));
        if (!d) goto fail;
        PyObject *mth = mget(d, MF_METHOD);
        if (PyUnicode_Check(mth) && PyUnicode_CompareWithASCIIString(mth, "CONNECT") == 0) i_connect = i;
        Py_DECREF(d);
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(resps) && i_101 < 0; i++) {
        PyObject *d = MSG_REF(PyList_GET_ITEM(resps, i));
        if (!d) goto fail;
        if (status_is(d, 101)) i_101 = i;
        Py_DECREF(d);
    }
    PyObject *res = Py_BuildValue("(OOOOnn)", reqs, resps, row, ex, i_connect, i_101);
    Py_DECREF(reqs); Py_DECREF(resps); Py_DECREF(methods); Py_DECREF(finals); Py_DECREF(row); Py_DECREF(ex);
    return res;
fail:
    Py_XDECREF(reqs); Py_XDECREF(resps); Py_XDECREF(methods); Py_XDECREF(finals); Py_XDECREF(row); Py_XDECREF(ex);
    return NULL;
out:                                                  /* reqs is None (or NULL on error) */
    Py_XDECREF(resps); Py_XDECREF(methods);
    return reqs;
}

/* httptools' on_header callback, compiled: appends (name.decode("latin-1").lower(),
 * value.decode("latin-1")) to `list`, what http1._Collect.on_header does in Python, once
 * per header of every reported head (180k calls on the 2M-packet benchmark). str.lower()
 * of latin-1 text maps A-Z and U+00C0-U+00DE except U+00D7 up by 0x20 and nothing else
 * (tests/test_http1_c.py checks all 256). */
static PyObject *append_header(PyObject *list, PyObject *args) {
    Py_buffer n, v;
    if (!PyArg_ParseTuple(args, "y*y*", &n, &v)) return NULL;
    PyObject *name = NULL, *value = NULL, *t = NULL;
    char small[256];
    char *low = n.len <= (Py_ssize_t)sizeof small ? small : PyMem_Malloc((size_t)n.len);
    if (!low) { PyErr_NoMemory(); goto end; }
    for (Py_ssize_t i = 0; i < n.len; i++) {
        unsigned char c = ((const unsigned char *)n.buf)[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0xDE && c != 0xD7)) c = (unsigned char)(c + 0x20);
        low[i] = (char)c;
    }
    name = PyUnicode_DecodeLatin1(low, n.len, NULL);
    value = name ? PyUnicode_DecodeLatin1(v.buf, v.len, NULL) : NULL;
    t = value ? PyTuple_Pack(2, name, value) : NULL;
    if (t && PyList_Append(list, t) < 0) Py_CLEAR(t);
end:
    if (low && low != small) PyMem_Free(low);
    Py_XDECREF(name); Py_XDECREF(value);
    PyBuffer_Release(&n); PyBuffer_Release(&v);
    if (!t) return NULL;
    Py_DECREF(t);
    Py_RETURN_NONE;
}

/* ---- parse_head: http1._parse_head with the Python steps in C ----
 * The same calls into httptools (parser class, feed_data, get_http_version, get_method /
 * get_status_code) with a compiled collector for its callbacks. A head httptools
 * rejects is handed to the Python _parse_head from the start (nothing is written to
 * the message before that point), so the error path stays the reference's. */
typedef struct { PyObject_HEAD PyObject *url, *status, *headers; } Coll;

static void Coll_dealloc(Coll *self) {
    Py_XDECREF(self->url); Py_XDECREF(self->status); Py_XDECREF(self->headers);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *concat_bytes(PyObject **acc, PyObject *b) {
    if (!PyBytes_Check(b)) { PyErr_SetString(PyExc_TypeError, "bytes expected"); return NULL; }
    PyBytes_Concat(acc, b);
    if (!*acc) return NULL;
    Py_RETURN_NONE;
}
static PyObject *Coll_on_url(Coll *self, PyObject *b) { return concat_bytes(&self->url, b); }
static PyObject *Coll_on_status(Coll *self, PyObject *b) { return concat_bytes(&self->status, b); }

static PyObject *Coll_on_header(Coll *self, PyObject *args) { return append_header(self->headers, args); }

static PyMethodDef Coll_methods[] = {
    {"on_url", (PyCFunction)Coll_on_url, METH_O, NULL},
    {"on_status", (PyCFunction)Coll_on_status, METH_O, NULL},
    {"on_header", (PyCFunction)Coll_on_header, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Coll_members[] = {
    {"url", T_OBJECT_EX, offsetof(Coll, url), READONLY, NULL},
    {"status", T_OBJECT_EX, offsetof(Coll, status), READONLY, NULL},
    {"headers", T_OBJECT_EX, offsetof(Coll, headers), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyObject *Coll_new(PyTypeObject *type, PyObject *args, PyObject *kw);

static PyTypeObject CollType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pcapsense.app._http1.Collector",
    .tp_basicsize = sizeof(Coll),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Collector(): httptools callbacks (url, status, headers) collected in C",
    .tp_new = Coll_new,
    .tp_dealloc = (destructor)Coll_dealloc,
    .tp_methods = Coll_methods,
    .tp_members = Coll_members,
};

static Coll *new_coll(void) {
    Coll *c = PyObject_New(Coll, &CollType);
    if (!c) return NULL;
    c->url = PyBytes_FromStringAndSize(NULL, 0);
    c->status = PyBytes_FromStringAndSize(NULL, 0);
    c->headers = PyList_New(0);
    if (!c->url || !c->status || !c->headers) { Py_DECREF(c); return NULL; }
    return c;
}

static PyObject *Coll_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    if ((args && PyTuple_GET_SIZE(args)) || (kw && PyDict_GET_SIZE(kw))) {
        PyErr_SetString(PyExc_TypeError, "Collector() takes no arguments");
        return NULL;
    }
    return (PyObject *)new_coll();
}

/* what _parse_head needs from Python: set by set_parse_head() once (http1.py) */
static PyObject *ph_req_cls, *ph_resp_cls, *ph_upgrade, *ph_python;
static PyObject *s_feed_data, *s_get_http_version, *s_get_method, *s_get_status_code;

static PyObject *set_parse_head(PyObject *self, PyObject *args) {
    PyObject *a, *b, *c, *d;
    if (!PyArg_ParseTuple(args, "OOOO", &a, &b, &c, &d)) return NULL;
    Py_INCREF(a); Py_XSETREF(ph_req_cls, a);
    Py_INCREF(b); Py_XSETREF(ph_resp_cls, b);
    Py_INCREF(c); Py_XSETREF(ph_upgrade, c);
    Py_INCREF(d); Py_XSETREF(ph_python, d);
    Py_RETURN_NONE;
}

static PyObject *latin1_of(PyObject *b) {
    if (!PyBytes_Check(b)) { PyErr_SetString(PyExc_TypeError, "bytes expected"); return NULL; }
    return PyUnicode_DecodeLatin1(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), NULL);
}

/* parse_head(kind, head, msg): 0, -1 error. `msg` is a slots Message (msg_layout done). */
static int parse_head_c(PyObject *kind, PyObject *head, PyObject *msg) {
    int response = kind == s_response || PyUnicode_CompareWithASCIIString(kind, "response") == 0;
    Coll *cb = new_coll();
    if (!cb) return -1;
    PyObject *parser = PyObject_CallOneArg(response ? ph_resp_cls : ph_req_cls, (PyObject *)cb);
    if (!parser) { Py_DECREF(cb); return -1; }
    PyObject *r = PyObject_CallMethodOneArg(parser, s_feed_data, head);
    if (!r) {
        if (PyErr_ExceptionMatches(ph_upgrade)) PyErr_Clear();
        else if (PyErr_ExceptionMatches(PyExc_Exception)) {
            /* rejected (or anything else): the reference decides from the start */
            PyErr_Clear();
            Py_DECREF(parser); Py_DECREF(cb);
            PyObject *rr = PyObject_CallFunctionObjArgs(ph_python, kind, head, msg, NULL);
            Py_XDECREF(rr);
            return rr ? 0 : -1;
        } else { Py_DECREF(parser); Py_DECREF(cb); return -1; }
    } else Py_DECREF(r);
    int bad = 0;
    PyObject *ver = PyObject_CallMethodNoArgs(parser, s_get_http_version);
    if (!ver) {
        if (PyErr_ExceptionMatches(PyExc_Exception)) { PyErr_Clear(); ver = Py_None; Py_INCREF(ver); }
        else bad = 1;
    }
    if (!bad) bad = put(msg, MF_VERSION, ver);
    if (!bad) bad = mset(msg, MF_HEADERS, cb->headers) || mset(msg, MF_HDICT, Py_None);
    if (!bad && !response) {
        PyObject *m = PyObject_CallMethodNoArgs(parser, s_get_method);
        bad = m ? put(msg, MF_METHOD, latin1_of(m)) : -1;
        Py_XDECREF(m);
        if (!bad) bad = put(msg, MF_TARGET, latin1_of(cb->url));
    } else if (!bad) {
        bad = put(msg, MF_STATUS, PyObject_CallMethodNoArgs(parser, s_get_status_code));
        if (!bad) bad = put(msg, MF_REASON, latin1_of(cb->status));
    }
    /* Content-Length: only checked (int() of the first of the joined values) */
    if (!bad) {
        PyObject *joined = header(msg, "content-length");
        if (!joined) bad = 1;
        else if (joined != Py_None) {
            PyObject *sep = PyUnicode_FromString(","), *parts = sep ? PyUnicode_Split(joined, sep, 1) : NULL;
            PyObject *first = parts ? PyObject_CallMethod(PyList_GET_ITEM(parts, 0), "strip", NULL) : NULL;
            PyObject *v = first ? PyLong_FromUnicodeObject(first, 10) : NULL;
            if (!v && first && PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
                PyObject *txt = PyUnicode_FromFormat("bad Content-Length %R", joined);
                bad = txt ? put(msg, MF_MALFORMED, txt) : 1;
            } else if (!v) bad = 1;
            Py_XDECREF(v); Py_XDECREF(first); Py_XDECREF(parts); Py_XDECREF(sep);
        }
        Py_DECREF(joined);
    }
    Py_DECREF(parser); Py_DECREF(cb);
    return bad ? -1 : 0;
}

static PyObject *parse_head_py(PyObject *self, PyObject *args) {
    PyObject *kind, *head, *msg;
    if (!PyArg_ParseTuple(args, "UO!O", &kind, &PyBytes_Type, &head, &msg)) return NULL;
    if (msg_layout(Py_TYPE(msg))) { PyErr_SetString(PyExc_TypeError, "a slots Message expected"); return NULL; }
    if (!ph_req_cls) { PyErr_SetString(PyExc_RuntimeError, "set_parse_head() first"); return NULL; }
    if (parse_head_c(kind, head, msg) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods_def[] = {
    {"frame", frame, METH_VARARGS,
     "frame(kind, pieces, total_bytes, request_methods, Message) -> list[Message] | None:\n"
     "http1._frame_py in C; None when only the Python reference decides exactly."},
    {"connection", connection, METH_VARARGS,
     "connection(stream, client_pieces, server_pieces, client_bytes, server_bytes, Message, parse_head)\n"
     "-> (requests, responses, facts (a tuple in HTTP_FACTS order), exchanges, first CONNECT,\n"
     "first 101) | None:\n"
     "http1.parse_direction for both directions, then facts._http_facts and\n"
     "facts._exchange_rows, in C (indices -1: none); None: run the Python path."},
    {"set_parse_head", set_parse_head, METH_VARARGS,
     "set_parse_head(HttpRequestParser, HttpResponseParser, HttpParserUpgrade, python_parse_head)"},
    {"parse_head", parse_head_py, METH_VARARGS,
     "parse_head(kind, head, message): http1._parse_head, compiled (see _http1.c)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_http1", "HTTP/1 framing (see _http1.c)", -1, methods_def};

PyMODINIT_FUNC PyInit__http1(void) {
#define I(var, text) if (!(var = PyUnicode_InternFromString(text))) return NULL
    I(s_offset, "offset"); I(s_data, "data"); I(s_length, "length"); I(s_frame, "frame"); I(s_ts_ns, "ts_ns");
    I(s_tail, "tail");
    I(k_kind, "kind"); I(k_offset, "offset"); I(k_frame, "frame"); I(k_ts_ns, "ts_ns"); I(k_head_end, "head_end");
    I(k_method, "method"); I(k_target, "target"); I(k_status, "status"); I(k_reason, "reason");
    I(k_version, "version"); I(k_headers, "headers"); I(k_content_length, "content_length");
    I(k_chunked, "chunked"); I(k_body_end, "body_end"); I(k_complete, "complete"); I(k_malformed, "malformed");
    I(k_raw_head, "raw_head"); I(v_connection, "connection"); I(v_host, "host"); I(v_empty, "");
    I(s_request, "request"); I(s_response, "response"); I(k_hdict, "_hdict");
    {
        PyObject *mk[MF_N] = {k_kind, k_offset, k_frame, k_ts_ns, k_head_end, k_method, k_target, k_status,
                              k_reason, k_version, k_headers, k_content_length, k_chunked, k_body_end,
                              k_complete, k_malformed, k_raw_head, k_hdict};
        memcpy(mf_key, mk, sizeof mk);
        PyObject *pk[PF_N] = {s_offset, s_data, s_length, s_frame, s_ts_ns, s_tail};
        memcpy(pf_key, pk, sizeof pk);
    }
#undef I
    if (PyType_Ready(&CollType) < 0) return NULL;
    if (!(s_feed_data = PyUnicode_InternFromString("feed_data")) ||
        !(s_get_http_version = PyUnicode_InternFromString("get_http_version")) ||
        !(s_get_method = PyUnicode_InternFromString("get_method")) ||
        !(s_get_status_code = PyUnicode_InternFromString("get_status_code"))) return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
    Py_INCREF(&CollType);
    if (PyModule_AddObject(m, "Collector", (PyObject *)&CollType) < 0) {
        Py_DECREF(&CollType); Py_DECREF(m); return NULL;
    }
    PyObject *hf = PyTuple_New(HF_N);
    if (!hf) { Py_DECREF(m); return NULL; }
    for (int i = 0; i < HF_N; i++) {
        PyObject *t = PyUnicode_InternFromString(hf_names[i]);
        if (!t) { Py_DECREF(hf); Py_DECREF(m); return NULL; }
        PyTuple_SET_ITEM(hf, i, t);
    }
    if (PyModule_AddObject(m, "HTTP_FACTS", hf) < 0) { Py_DECREF(hf); Py_DECREF(m); return NULL; }
    return m;
}
