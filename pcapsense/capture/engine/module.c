/* module.c: the Python glue: the Engine and Table types (see engine.h). */
#include "engine.h"

/* ------------------------------------------------------------------ Python glue */

static int Engine_init(Engine *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"rfc_table", "zeek_table", "verify_checksums", "emit_packets", "zeek_mode", "app_head_bytes", "app_copy_max", "shard_k", "shard_n",
                             "ts_from", "ts_to", "max_frames", "only_keys", "tls_head", "tls_whole",
                             "tls_prefix", NULL};
    Py_buffer rfc, zeek, keys = {0}; int verify = 0, emit = 0, zmode = 0;
    unsigned int head_bytes = 0, copy_max = 4096, shard_k = 0, shard_n = 1;
    unsigned int tls_head = 2048, tls_whole = TLS_MAX_BODY, tls_prefix = 32768;
    long long ts_from = INT64_MIN, ts_to = INT64_MAX, max_frames = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*y*|pppIIIILLLy*III", kwlist, &rfc, &zeek, &verify, &emit,
                                     &zmode, &head_bytes, &copy_max, &shard_k, &shard_n,
                                     &ts_from, &ts_to, &max_frames, &keys, &tls_head, &tls_whole,
                                     &tls_prefix))
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
        qsort(self->only_keys, self->n_only_keys, 40, eng_cmp_key40);
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
    self->tls_head = tls_head > TLS_MAX_BODY ? TLS_MAX_BODY : tls_head;
    self->tls_whole = tls_whole; self->tls_prefix = tls_prefix;
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
        for (size_t i = 0; i < self->stream_n; i++) {
            free(self->appst[i].tail[0]); free(self->appst[i].tail[1]);
            eng_tls_free(self, &self->appst[i]);
        }
    free(self->appst); free(self->app); free(self->appbuf);
    free(self->tls_randoms); free(self->tls_sessions); free(self->tlsrec); free(self->tlsbuf); free(self->dsb);
    eng_frag_free(self);
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
    eng_feed(self, (const uint8_t *)data.buf, data.len, base, (pkt_t *)out.buf, cap, &r);
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
    PyObject *r = Py_BuildValue("(y#y#)", self->app ? (const char *)self->app : "",
                                (Py_ssize_t)(self->app_n * sizeof(app_t)),
                                self->appbuf ? (const char *)self->appbuf : "", (Py_ssize_t)self->appbuf_n);
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
        for (Py_ssize_t k = 0; k < buf.len / 8; k++)
            if (eng_app_tails(self, ix[k]) < 0) { PyBuffer_Release(&buf); return PyErr_NoMemory(); }
    }
    PyBuffer_Release(&buf);
    return Engine_take_app(self, NULL);
}

/* sorted, de-duplicated copy of `buf` (entries of `size` bytes) into *dst */
static int set_sorted(PyObject *arg, size_t size, uint8_t **dst, size_t *n, int merge,
                      int (*cmp)(const void *, const void *)) {
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) return -1;
    if (b.len % (Py_ssize_t)size) {
        PyBuffer_Release(&b);
        PyErr_Format(PyExc_ValueError, "entries of %zu bytes expected", size);
        return -1;
    }
    size_t add = (size_t)b.len / size, old = merge ? *n : 0;
    uint8_t *all = malloc((old + add) * size + 1);
    if (!all) { PyBuffer_Release(&b); PyErr_NoMemory(); return -1; }
    if (old) memcpy(all, *dst, old * size);
    memcpy(all + old * size, b.buf, add * size);
    PyBuffer_Release(&b);
    size_t total = old + add, k = 0;
    qsort(all, total, size, cmp);
    for (size_t i = 0; i < total; i++)
        if (!k || memcmp(all + (k - 1) * size, all + i * size, size) != 0) {
            if (k != i) memcpy(all + k * size, all + i * size, size);
            k++;
        }
    free(*dst);
    *dst = all; *n = k;
    return 0;
}

static int cmp32b(const void *a, const void *b) { return memcmp(a, b, 32); }
static int cmp33b(const void *a, const void *b) { return memcmp(a, b, 33); }

/* set_tls_randoms(bytes): the ClientHello randoms (32 bytes each) whose keys are known:
 * connections that start with one are framed into TLS records (take_tls) */
static PyObject *Engine_set_tls_randoms(Engine *self, PyObject *arg) {
    if (set_sorted(arg, 32, &self->tls_randoms, &self->n_tls_randoms, 0, cmp32b) < 0) return NULL;
    Py_RETURN_NONE;
}

/* add_tls_sessions(bytes): TLS 1.2 session ids (33 bytes each: the length, then the id
 * padded with zeros) of sessions whose master secret is known: a ClientHello that offers
 * one to resume is framed too */
static PyObject *Engine_add_tls_sessions(Engine *self, PyObject *arg) {
    if (set_sorted(arg, 33, &self->tls_sessions, &self->n_tls_sessions, 1, cmp33b) < 0) return NULL;
    Py_RETURN_NONE;
}

/* take_tls() -> (rows bytes, data): the TLS records framed so far (drained). Their
 * bytes (whole records: about the capture's size on an HTTPS download) are handed over
 * as a Table without a copy; the engine starts a new buffer of the same capacity. */
static PyObject *Engine_take_tls(Engine *self, PyObject *noargs) {
    Table *t = PyObject_New(Table, &TableType);
    if (!t) return NULL;
    t->data = self->tlsbuf; t->len = (Py_ssize_t)self->tlsbuf_n;
    self->tlsbuf = NULL; self->tlsbuf_n = 0;
    PyObject *r = Py_BuildValue("(y#N)", self->tlsrec ? (const char *)self->tlsrec : "",
                                (Py_ssize_t)(self->tlsrec_n * sizeof(tlsrec_t)), (PyObject *)t);
    self->tlsrec_n = 0;
    return r;
}

/* take_secrets() -> (secrets type, bytes): the Decryption Secrets Block that made feed()
 * return R_SECRETS */
static PyObject *Engine_take_secrets(Engine *self, PyObject *noargs) {
    PyObject *r = Py_BuildValue("(Iy#)", self->dsb_type, self->dsb ? (const char *)self->dsb : "",
                                (Py_ssize_t)self->dsb_n);
    free(self->dsb); self->dsb = NULL; self->dsb_n = 0;
    return r;
}

/* the link types of a bitmap of the first 512, and `other` (0: none), as a list */
static PyObject *linktype_list(const uint64_t *bits, int64_t other) {
    PyObject *lts = PyList_New(0);
    for (int i = 0; i < 512; i++)
        if (bits[i / 64] & (1ULL << (i % 64))) {
            PyObject *v = PyLong_FromLong(i); PyList_Append(lts, v); Py_DECREF(v);
        }
    if (other) { PyObject *v = PyLong_FromLongLong(other); PyList_Append(lts, v); Py_DECREF(v); }
    return lts;
}

static PyObject *Engine_counters(Engine *self, PyObject *noargs) {
    PyObject *lts = linktype_list(self->linktypes_seen, self->other_linktype);
    PyObject *unread = linktype_list(self->linktypes_unread, self->other_unread ? self->other_linktype : 0);
    return Py_BuildValue(
        "{s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:N,s:N,s:i,s:i,s:L,s:L,s:L,s:L,s:L,s:i,s:L,s:L}",
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
        "link_types", lts, "unread_link_types", unread, "format", self->fmt, "pcap_nano", self->pcap_nano,
        "tls_framed_streams", (long long)self->c_tls_streams, "tls_records", (long long)self->c_tls_records,
        "tls_framing_lost", (long long)self->c_tls_gaps, "tls_framing_resynced", (long long)self->c_tls_resyncs,
        "opaque_ipsec_packets", (long long)self->c_opaque, "odd_header", self->odd_header,
        "ip_datagrams_reassembled", (long long)self->c_frag_reassembled,
        "ip_datagrams_incomplete", (long long)(self->c_frag_incomplete + self->frag_used));
}

static PyObject *sizes(PyObject *m, PyObject *noargs) {
    return Py_BuildValue("{s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n}",
        "stream", (Py_ssize_t)sizeof(stream_t), "dir", (Py_ssize_t)sizeof(dir_t),
        "pkt", (Py_ssize_t)sizeof(pkt_t), "trans", (Py_ssize_t)sizeof(trans_t),
        "stream.d", (Py_ssize_t)offsetof(stream_t, d), "app", (Py_ssize_t)sizeof(app_t),
        "stream.history", (Py_ssize_t)offsetof(stream_t, history),
        "dir.state", (Py_ssize_t)offsetof(dir_t, state), "tlsrec", (Py_ssize_t)sizeof(tlsrec_t));
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
    {"set_tls_randoms", (PyCFunction)Engine_set_tls_randoms, METH_O, "ClientHello randoms whose keys are known"},
    {"add_tls_sessions", (PyCFunction)Engine_add_tls_sessions, METH_O, "TLS 1.2 session ids whose master secret is known"},
    {"take_tls", (PyCFunction)Engine_take_tls, METH_NOARGS, "TLS records framed so far (drained)"},
    {"take_secrets", (PyCFunction)Engine_take_secrets, METH_NOARGS, "the Decryption Secrets Block feed() stopped at"},
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
