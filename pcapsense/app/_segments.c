/* Stage 4a compiled: the engine's application rows -> per-direction pieces in sequence
 * order, overlaps resolved (first copy wins). The same decisions as
 * pcapsense/app/segments.py `Accumulator`, which stays as the reference
 * (tests/test_segments_c.py runs both on every repo capture and on shuffled,
 * overlapping rows).
 *
 * Why by hand and in C: this is pcapsense's own bookkeeping between its engine and its
 * parsers (no library keeps sparse TCP byte streams this way), and it touches every
 * application row: in Python it was a tenth of the whole analysis.
 *
 * Sans-IO: rows (raw app_t records, layout.APP_DTYPE) and their byte buffer in,
 * {(stream, dir): [Piece, ...]} out. Memory holds the pieces of open connections only.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {                /* the engine's app_t (checked against layout.APP_DTYPE) */
    int64_t stream, frame, ts;
    uint32_t seq, len, cap, off;
    uint8_t dir, tail, flags, pad[5];
} app_t;

typedef struct {
    uint32_t seq;
    int64_t length, frame, ts;  /* length: cap for a tail copy, else the wire length */
    int tail;
    PyObject *data;             /* bytes, owned */
} ent_t;

typedef struct { ent_t *v; Py_ssize_t n, cap; } vec_t;

typedef struct {
    PyObject_HEAD
    PyObject *piece_cls;
    vec_t *pend;                /* [stream * 2 + dir] */
    Py_ssize_t n_slots;         /* streams covered by pend / done */
    uint8_t *done;              /* finalised streams: their late rows are ignored */
    int64_t *active;            /* streams with pending rows (may repeat; checked on use) */
    Py_ssize_t n_active, cap_active;
} Acc;

static void vec_clear(vec_t *v) {
    for (Py_ssize_t i = 0; i < v->n; i++) Py_XDECREF(v->v[i].data);
    PyMem_Free(v->v);
    v->v = NULL; v->n = v->cap = 0;
}

static int grow_slots(Acc *a, int64_t stream) {
    if (stream < a->n_slots) return 0;
    Py_ssize_t n = a->n_slots ? a->n_slots : 1024;
    while (n <= stream) n *= 2;
    vec_t *p = PyMem_Realloc(a->pend, (size_t)n * 2 * sizeof(vec_t));
    if (!p) { PyErr_NoMemory(); return -1; }
    memset(p + a->n_slots * 2, 0, (size_t)(n - a->n_slots) * 2 * sizeof(vec_t));
    a->pend = p;
    uint8_t *d = PyMem_Realloc(a->done, (size_t)n);
    if (!d) { PyErr_NoMemory(); return -1; }
    memset(d + a->n_slots, 0, (size_t)(n - a->n_slots));
    a->done = d;
    a->n_slots = n;
    return 0;
}

static int Acc_init(Acc *self, PyObject *args, PyObject *kw) {
    PyObject *cls;
    if (!PyArg_ParseTuple(args, "O", &cls)) return -1;
    Py_INCREF(cls);
    Py_XSETREF(self->piece_cls, cls);
    return 0;
}

static void Acc_dealloc(Acc *self) {
    for (Py_ssize_t i = 0; i < self->n_slots * 2; i++) vec_clear(&self->pend[i]);
    PyMem_Free(self->pend); PyMem_Free(self->done); PyMem_Free(self->active);
    Py_XDECREF(self->piece_cls);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* add(rows, data): the engine's rows (bytes-like, app_t records) and its byte buffer */
static PyObject *Acc_add(Acc *self, PyObject *args) {
    Py_buffer rb, db;
    if (!PyArg_ParseTuple(args, "y*y*", &rb, &db)) return NULL;
    PyObject *ret = NULL;
    if (rb.len % (Py_ssize_t)sizeof(app_t)) {
        PyErr_SetString(PyExc_ValueError, "rows are not whole app_t records");
        goto end;
    }
    Py_ssize_t n = rb.len / (Py_ssize_t)sizeof(app_t);
    for (Py_ssize_t i = 0; i < n; i++) {
        app_t r;
        memcpy(&r, (const char *)rb.buf + i * (Py_ssize_t)sizeof(app_t), sizeof r);
        if (r.stream < 0 || r.dir > 1 || (Py_ssize_t)r.off + (Py_ssize_t)r.cap > db.len) {
            PyErr_SetString(PyExc_ValueError, "an application row points outside its data");
            goto end;
        }
        if (grow_slots(self, r.stream) < 0) goto end;
        if (self->done[r.stream]) continue;           /* late bytes of a finalised stream */
        vec_t *v = &self->pend[r.stream * 2 + r.dir];
        if (v->n == v->cap) {
            Py_ssize_t nc = v->cap ? v->cap * 2 : 4;
            ent_t *nv = PyMem_Realloc(v->v, (size_t)nc * sizeof(ent_t));
            if (!nv) { PyErr_NoMemory(); goto end; }
            v->v = nv; v->cap = nc;
        }
        PyObject *b = PyBytes_FromStringAndSize((const char *)db.buf + r.off, r.cap);
        if (!b) goto end;
        if (self->pend[r.stream * 2].n + self->pend[r.stream * 2 + 1].n == 0) {
            if (self->n_active == self->cap_active) {
                Py_ssize_t nc = self->cap_active ? self->cap_active * 2 : 1024;
                int64_t *na = PyMem_Realloc(self->active, (size_t)nc * sizeof(int64_t));
                if (!na) { Py_DECREF(b); PyErr_NoMemory(); goto end; }
                self->active = na; self->cap_active = nc;
            }
            self->active[self->n_active++] = r.stream;
        }
        ent_t *e = &v->v[v->n++];
        e->seq = r.seq; e->length = r.tail ? r.cap : r.len; e->frame = r.frame; e->ts = r.ts;
        e->tail = r.tail != 0; e->data = b;
    }
    ret = Py_None; Py_INCREF(ret);
end:
    PyBuffer_Release(&rb); PyBuffer_Release(&db);
    return ret;
}

static int has_pending(Acc *a, int64_t st) {
    return st >= 0 && st < a->n_slots && (a->pend[st * 2].n || a->pend[st * 2 + 1].n);
}

/* streams() -> set of the streams with pending rows (and compacts the active list) */
static PyObject *Acc_streams(Acc *self, PyObject *noargs) {
    PyObject *s = PySet_New(NULL);
    if (!s) return NULL;
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < self->n_active; i++) {
        int64_t st = self->active[i];
        if (!has_pending(self, st)) continue;
        self->active[k++] = st;
        PyObject *o = PyLong_FromLongLong(st);
        if (!o || PySet_Add(s, o) < 0) { Py_XDECREF(o); Py_DECREF(s); return NULL; }
        Py_DECREF(o);
    }
    self->n_active = k;
    return s;
}

typedef struct { int64_t off; int tail; int64_t frame; Py_ssize_t i; } sortkey_t;

static int key_cmp(const void *x, const void *y) {
    const sortkey_t *a = x, *b = y;
    if (a->off != b->off) return a->off < b->off ? -1 : 1;
    if (a->tail != b->tail) return a->tail < b->tail ? -1 : 1;
    if (a->frame != b->frame) return a->frame < b->frame ? -1 : 1;
    return a->i < b->i ? -1 : (a->i > b->i);           /* stable, like list.sort */
}

/* take(ids, base) -> {(stream, dir): [Piece]}: ids a sequence of ints; base the
 * sequence number of each one's first payload byte per direction (int64 buffer,
 * len(ids) x 2). The streams are forgotten: their later rows are ignored. */
static PyObject *Acc_take(Acc *self, PyObject *args) {
    PyObject *ids_o;
    Py_buffer bb;
    if (!PyArg_ParseTuple(args, "Oy*", &ids_o, &bb)) return NULL;
    PyObject *ids = PySequence_Fast(ids_o, "ids must be a sequence");
    PyObject *out = NULL;
    sortkey_t *keys = NULL;
    if (!ids) goto end;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(ids);
    if (bb.len != n * 2 * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "base must hold two int64 per stream");
        goto end;
    }
    const int64_t *base = bb.buf;
    out = PyDict_New();
    if (!out) goto end;
    for (Py_ssize_t k = 0; k < n; k++) {
        long long st = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(ids, k));
        if (st == -1 && PyErr_Occurred()) goto fail;
        if (st < 0) { PyErr_SetString(PyExc_ValueError, "a negative stream id"); goto fail; }
        if (grow_slots(self, st) < 0) goto fail;
        self->done[st] = 1;
        for (int d = 0; d < 2; d++) {
            vec_t *v = &self->pend[st * 2 + d];
            if (!v->n) continue;
            uint32_t b32 = (uint32_t)((uint64_t)base[k * 2 + d] & 0xFFFFFFFFu);
            PyMem_Free(keys);
            keys = PyMem_Malloc((size_t)v->n * sizeof(sortkey_t));
            if (!keys) { PyErr_NoMemory(); goto fail; }
            Py_ssize_t m = 0;
            for (Py_ssize_t i = 0; i < v->n; i++) {
                uint32_t off = v->v[i].seq - b32;            /* (seq - base) & 0xFFFFFFFF */
                if (off >= 0x80000000u) continue;
                keys[m].off = off; keys[m].tail = v->v[i].tail; keys[m].frame = v->v[i].frame; keys[m].i = i;
                m++;
            }
            qsort(keys, (size_t)m, sizeof(sortkey_t), key_cmp);
            PyObject *lst = PyList_New(0);
            if (!lst) goto fail;
            int64_t covered = -1;
            for (Py_ssize_t j = 0; j < m; j++) {
                ent_t *e = &v->v[keys[j].i];
                int64_t off = keys[j].off, ln = e->length;
                PyObject *data = e->data;
                Py_ssize_t dn = PyBytes_GET_SIZE(data);
                Py_INCREF(data);
                if (off < covered) {
                    if (off + dn <= covered) { Py_DECREF(data); continue; }
                    int64_t cut = covered - off;
                    PyObject *nd = PyBytes_FromStringAndSize(PyBytes_AS_STRING(data) + cut, dn - cut);
                    Py_DECREF(data);
                    if (!nd) { Py_DECREF(lst); goto fail; }
                    data = nd; dn -= cut;
                    ln = ln - cut > 0 ? ln - cut : 0;
                    off = covered;
                }
                PyObject *a[6] = {PyLong_FromLongLong(off), data, PyLong_FromLongLong(ln),
                                  PyLong_FromLongLong(e->frame), PyLong_FromLongLong(e->ts),
                                  PyBool_FromLong(e->tail)};
                PyObject *p = (a[0] && a[2] && a[3] && a[4]) ? PyObject_Vectorcall(self->piece_cls, a, 6, NULL) : NULL;
                for (int q = 0; q < 6; q++) Py_XDECREF(a[q]);
                if (!p || PyList_Append(lst, p) < 0) { Py_XDECREF(p); Py_DECREF(lst); goto fail; }
                Py_DECREF(p);
                covered = off + dn;
            }
            vec_clear(v);
            PyObject *key = Py_BuildValue("(Li)", st, d);
            int r = key ? PyDict_SetItem(out, key, lst) : -1;
            Py_XDECREF(key); Py_DECREF(lst);
            if (r < 0) goto fail;
        }
    }
    goto end;
fail:
    Py_CLEAR(out);
end:
    PyMem_Free(keys);
    Py_XDECREF(ids);
    PyBuffer_Release(&bb);
    return out;
}

static PyObject *Acc_row_size(PyObject *cls, PyObject *noargs) { return PyLong_FromSize_t(sizeof(app_t)); }

static PyMethodDef Acc_methods[] = {
    {"add", (PyCFunction)Acc_add, METH_VARARGS, "add(rows, data): the engine's application rows"},
    {"streams", (PyCFunction)Acc_streams, METH_NOARGS, "the streams with pending rows (a set)"},
    {"take", (PyCFunction)Acc_take, METH_VARARGS,
     "take(ids, base) -> {(stream, dir): [Piece]}, in offset order, overlaps resolved"},
    {"row_size", (PyCFunction)Acc_row_size, METH_NOARGS | METH_CLASS, "sizeof(app_t)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject AccType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pcapsense.app._segments.Accumulator",
    .tp_basicsize = sizeof(Acc),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "segments.Accumulator, compiled (see _segments.c)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Acc_init,
    .tp_dealloc = (destructor)Acc_dealloc,
    .tp_methods = Acc_methods,
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_segments", "stage 4a compiled (see _segments.c)", -1, NULL};

PyMODINIT_FUNC PyInit__segments(void) {
    if (PyType_Ready(&AccType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
    Py_INCREF(&AccType);
    if (PyModule_AddObject(m, "Accumulator", (PyObject *)&AccType) < 0) { Py_DECREF(&AccType); Py_DECREF(m); return NULL; }
    return m;
}
