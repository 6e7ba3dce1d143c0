/* The connections of the JSON report, written from the table's columns.
 *
 * jsonrows.rows(columns, n, sep) -> bytes: rows 0..n-1 of `columns` as compact JSON
 * objects (the bytes orjson.dumps(dict) writes for each row), joined by `sep`.
 * `columns` is a list of (key, kind, values, extra) tuples, one per column in output
 * order, `key` the JSON text of the name with its colon (b'"stream":'):
 *
 *   INT    values: int64 buffer; extra: uint8 mask buffer (1 = missing) or None
 *   FLOAT  values: float64 buffer; NaN and infinities -> null; extra: None (written as
 *          they are) or True (rounded to 6 decimals first, as Python's round(x, 6):
 *          round6)
 *   BOOL   values: uint8 buffer; extra: mask or None
 *   CAT    values: int32 codes buffer (-1 = missing); extra: tuple of the categories'
 *          JSON texts (bytes)
 *   TIME   values: int64 nanoseconds since the epoch (INT64_MIN = NaT), written as
 *          "YYYY-MM-DDTHH:MM:SS.ffffffZ" (microseconds, truncated as numpy does)
 *   OBJ    values: object ndarray (contiguous); None, str, bool, int and float written
 *          here, anything else by extra(value) -> bytes (the Python fallback: orjson
 *          with the renderer's default)
 *   STR    text in Arrow's layout, without a Python str per value: values: int64
 *          buffer of n+1 offsets into the UTF-8 bytes; extra: (bytes buffer, uint8
 *          mask buffer (1 = missing) or None). Arrow text is valid UTF-8, so it is
 *          escaped as a str's UTF-8 is (put_str)
 *
 * Why by hand: orjson (what the renderer used per row) needs a dict per row, which for a
 * connection-heavy capture costs more than the whole analysis (130 keys, 1M rows: 12 s in
 * dict building alone). No library writes JSON objects from columns in orjson's exact
 * bytes; this does, so the report is byte-identical to the per-row writer (tested in
 * tests/test_jsonrows.py against orjson on every kind of value). Floats: the shortest
 * repr that round-trips (Python's repr digits, which orjson's also are), in orjson's
 * layout: decimal from 1e-5 up to below 1e16, else "de[+-]x" without exponent padding.
 * Strings: orjson's escaping (", \, \b \t \n \f \r, other controls as \u00XX); a str
 * that is not valid UTF-8 (a lone surrogate) goes to the fallback, which raises as
 * orjson does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

enum { K_INT = 0, K_FLOAT = 1, K_BOOL = 2, K_CAT = 3, K_TIME = 4, K_OBJ = 5, K_STR = 6 };

typedef struct {
    char *p;
    Py_ssize_t len, cap;
} buf_t;

static int grow(buf_t *b, Py_ssize_t need) {
    if (b->len + need <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->len + need) cap *= 2;
    char *p = PyMem_Realloc(b->p, cap);
    if (!p) { PyErr_NoMemory(); return -1; }
    b->p = p; b->cap = cap;
    return 0;
}

static inline int put(buf_t *b, const char *s, Py_ssize_t n) {
    if (grow(b, n) < 0) return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

static inline int put_null(buf_t *b) { return put(b, "null", 4); }

static int put_i64(buf_t *b, int64_t v) {
    char tmp[24];
    int i = 24;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do { tmp[--i] = (char)('0' + u % 10); u /= 10; } while (u);
    if (v < 0) tmp[--i] = '-';
    return put(b, tmp + i, 24 - i);
}

static inline void digits(char *o, int64_t v, int width) {
    for (int i = width - 1; i >= 0; i--) { o[i] = (char)('0' + v % 10); v /= 10; }
}

/* A value that is k / 10^6 for an integer |k| < 10^15 (what the renderer's rounding to
 * 6 decimals gives): its shortest repr is that decimal with the trailing zeros dropped
 * (two decimals of at most 15 digits never make the same double), written here
 * without Python's formatter. Returns 0 when the value is not such a one. */
static int put_micro(buf_t *b, double v) {
    if (!(fabs(v) < 1e9)) return 0;
    double kd = rint(v * 1e6);
    int64_t k = (int64_t)kd;
    if ((double)k / 1e6 != v) return 0;
    char out[40];
    int n = 0;
    if (signbit(v)) out[n++] = '-';
    uint64_t u = k < 0 ? (uint64_t)(-k) : (uint64_t)k;
    if (u > 0 && u < 10) {                           /* 1e-6 .. 9e-6: orjson's "Ne-6" */
        out[n++] = (char)('0' + u);
        memcpy(out + n, "e-6", 3);
        return put(b, out, n + 3) < 0 ? -1 : 1;
    }
    uint64_t ip = u / 1000000, fp = u % 1000000;
    char tmp[24];
    int i = 24;
    do { tmp[--i] = (char)('0' + ip % 10); ip /= 10; } while (ip);
    memcpy(out + n, tmp + i, 24 - i);
    n += 24 - i;
    out[n++] = '.';
    if (!fp) {
        out[n++] = '0';
    } else {
        int w = 6;
        while (fp % 10 == 0) { fp /= 10; w--; }
        digits(out + n, (int64_t)fp, w);
        n += w;
    }
    return put(b, out, n) < 0 ? -1 : 1;
}

/* round(v, 6) as Python computes it (correctly rounded), the way jsonout._rounded_array
 * does it over arrays: rint(v * 1e6) / 1e6, except where v * 1e6 lies within its
 * rounding error of a half or is too large to hold the units exactly: those few get
 * Python's own decimal rounding (the "%.6f" digits, which round() reads back). */
static int round6(double v, double *out) {
    if (!isfinite(v)) { *out = v; return 0; }
    double y = v * 1e6;
    double frac = fabs(y - floor(y) - 0.5);
    if ((frac > fmax(1.0, fabs(y)) * 0x1p-40) && (fabs(y) < 0x1p52)) {
        *out = rint(y) / 1e6;
        return 0;
    }
    char *s = PyOS_double_to_string(v, 'f', 6, 0, NULL);
    if (!s) return -1;
    double r = PyOS_string_to_double(s, NULL, NULL);
    PyMem_Free(s);
    if (r == -1.0 && PyErr_Occurred()) return -1;
    *out = r;
    return 0;
}

/* orjson's float layout from Python's shortest repr. */
static int put_f64(buf_t *b, double v) {
    if (!isfinite(v)) return put_null(b);
    int fast = put_micro(b, v);
    if (fast) return fast < 0 ? -1 : 0;
    char *r = PyOS_double_to_string(v, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (!r) return -1;
    int rc;
    char *e = strchr(r, 'e');
    if (!e) {
        rc = put(b, r, (Py_ssize_t)strlen(r));
    } else {
        int exp = atoi(e + 1);
        if (exp == -5) {
            /* d[.ddd]e-05 -> 0.0000dddd */
            char out[40];
            int k = 0;
            const char *s = r;
            if (*s == '-') { out[k++] = '-'; s++; }
            memcpy(out + k, "0.0000", 6); k += 6;
            for (; s < e; s++) if (*s != '.') out[k++] = *s;
            rc = put(b, out, k);
        } else {
            /* mantissa, then e, the sign ('+' kept), the exponent without padding */
            char out[40];
            int k = (int)(e - r);
            memcpy(out, r, k);
            out[k++] = 'e';
            const char *s = e + 1;
            if (*s == '+' || *s == '-') out[k++] = *s++;
            while (*s == '0' && s[1]) s++;
            while (*s) out[k++] = *s++;
            rc = put(b, out, k);
        }
    }
    PyMem_Free(r);
    return rc;
}

static const char HEX[] = "0123456789abcdef";

static int put_str(buf_t *b, const char *s, Py_ssize_t n) {
    if (grow(b, n * 6 + 2) < 0) return -1;
    char *o = b->p + b->len;
    *o++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') { *o++ = (char)c; continue; }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\t': *o++ = 't'; break;
        case '\n': *o++ = 'n'; break;
        case '\f': *o++ = 'f'; break;
        case '\r': *o++ = 'r'; break;
        default:
            *o++ = 'u'; *o++ = '0'; *o++ = '0';
            *o++ = HEX[c >> 4]; *o++ = HEX[c & 15];
        }
    }
    *o++ = '"';
    b->len = o - b->p;
    return 0;
}

static inline void digits(char *o, int64_t v, int width);

/* days since 1970-01-01 -> civil date (Howard Hinnant's algorithm) */
static void civil(int64_t z, int *y, unsigned *m, unsigned *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)(yy + (*m <= 2));
}

static int put_time(buf_t *b, int64_t ns) {
    if (ns == INT64_MIN) return put_null(b);
    int64_t us = ns >= 0 ? ns / 1000 : -((-ns + 999) / 1000);      /* floor, as numpy */
    int64_t sec = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
    int64_t frac = us - sec * 1000000;
    int64_t days = sec >= 0 ? sec / 86400 : -((-sec + 86399) / 86400);
    int64_t sod = sec - days * 86400;
    int y; unsigned m, d;
    civil(days, &y, &m, &d);
    if (y < 0 || y > 9999) return put_null(b);     /* (not reached by capture times) */
    char o[29] = "\"0000-00-00T00:00:00.000000Z\"";
    digits(o + 1, y, 4); digits(o + 6, m, 2); digits(o + 9, d, 2);
    digits(o + 12, sod / 3600, 2); digits(o + 15, sod / 60 % 60, 2); digits(o + 18, sod % 60, 2);
    digits(o + 21, frac, 6);
    return put(b, o, 29);
}

typedef struct {
    const char *key;
    Py_ssize_t key_len;
    int kind;
    Py_buffer values, mask, text;
    int has_values, has_mask, has_text;
    PyObject *cats;          /* CAT: tuple of bytes */
    PyObject **objs;         /* OBJ: the array's items */
    PyObject *fallback;      /* OBJ: callable */
    int round6;              /* FLOAT: rounded to 6 decimals when written */
} col_t;

static int put_obj(buf_t *b, PyObject *v, PyObject *fallback) {
    if (v == Py_None) return put_null(b);
    if (PyUnicode_CheckExact(v)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(v, &n);
        if (s) return put_str(b, s, n);
        PyErr_Clear();                 /* (surrogates: the fallback raises as orjson does) */
    } else if (v == Py_True) {
        return put(b, "true", 4);
    } else if (v == Py_False) {
        return put(b, "false", 5);
    } else if (PyLong_CheckExact(v)) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (!overflow && !(x == -1 && PyErr_Occurred())) return put_i64(b, x);
        PyErr_Clear();
    } else if (PyFloat_CheckExact(v)) {
        return put_f64(b, PyFloat_AS_DOUBLE(v));
    }
    PyObject *r = PyObject_CallOneArg(fallback, v);
    if (!r) return -1;
    if (!PyBytes_Check(r)) {
        Py_DECREF(r);
        PyErr_SetString(PyExc_TypeError, "jsonrows: the fallback must return bytes");
        return -1;
    }
    int rc = put(b, PyBytes_AS_STRING(r), PyBytes_GET_SIZE(r));
    Py_DECREF(r);
    return rc;
}

static void release_cols(col_t *cols, Py_ssize_t k) {
    for (Py_ssize_t i = 0; i < k; i++) {
        if (cols[i].has_values) PyBuffer_Release(&cols[i].values);
        if (cols[i].has_mask) PyBuffer_Release(&cols[i].mask);
        if (cols[i].has_text) PyBuffer_Release(&cols[i].text);
    }
    PyMem_Free(cols);
}

/* Column i of row r: its comma (unless the first), key and value. */
static int put_col(buf_t *b, const col_t *c, Py_ssize_t r, int first) {
    if (!first && put(b, ",", 1) < 0) return -1;
    if (put(b, c->key, c->key_len) < 0) return -1;
    const uint8_t *mask = c->has_mask ? (const uint8_t *)c->mask.buf : NULL;
    switch (c->kind) {
    case K_INT:
        return (mask && mask[r]) ? put_null(b) : put_i64(b, ((const int64_t *)c->values.buf)[r]);
    case K_FLOAT: {
        double v = ((const double *)c->values.buf)[r];
        if (c->round6 && round6(v, &v) < 0) return -1;
        return put_f64(b, v);
    }
    case K_BOOL:
        return (mask && mask[r]) ? put_null(b)
               : ((const uint8_t *)c->values.buf)[r] ? put(b, "true", 4) : put(b, "false", 5);
    case K_CAT: {
        int32_t code = ((const int32_t *)c->values.buf)[r];
        if (code < 0 || code >= PyTuple_GET_SIZE(c->cats)) return put_null(b);
        PyObject *t = PyTuple_GET_ITEM(c->cats, code);
        return put(b, PyBytes_AS_STRING(t), PyBytes_GET_SIZE(t));
    }
    case K_TIME:
        return put_time(b, ((const int64_t *)c->values.buf)[r]);
    case K_STR: {
        if (mask && mask[r]) return put_null(b);
        const int64_t *off = (const int64_t *)c->values.buf;
        return put_str(b, (const char *)c->text.buf + off[r], off[r + 1] - off[r]);
    }
    default:
        return put_obj(b, c->objs[r], c->fallback);
    }
}

/* Whether every one of the n rows of the column writes the same text as row 0: the
 * same value (bit for bit; a missing one where the mask says so), the same code, the
 * same object. */
static int col_const(const col_t *c, Py_ssize_t n) {
    const uint8_t *mask = c->has_mask ? (const uint8_t *)c->mask.buf : NULL;
    if (mask) {
        for (Py_ssize_t r = 1; r < n; r++) if (mask[r] != mask[0]) return 0;
        if (mask[0]) return 1;                       /* missing in every row */
    }
    switch (c->kind) {
    case K_BOOL: {
        const uint8_t *v = (const uint8_t *)c->values.buf;
        for (Py_ssize_t r = 1; r < n; r++) if ((v[r] != 0) != (v[0] != 0)) return 0;
        return 1;
    }
    case K_CAT: {
        const int32_t *v = (const int32_t *)c->values.buf;
        for (Py_ssize_t r = 1; r < n; r++) if (v[r] != v[0]) return 0;
        return 1;
    }
    case K_OBJ:
        for (Py_ssize_t r = 1; r < n; r++) if (c->objs[r] != c->objs[0]) return 0;
        return 1;
    case K_STR: {
        const int64_t *off = (const int64_t *)c->values.buf;
        const char *t = (const char *)c->text.buf;
        int64_t len0 = off[1] - off[0];
        for (Py_ssize_t r = 1; r < n; r++)
            if (off[r + 1] - off[r] != len0 || memcmp(t + off[r], t + off[0], (size_t)len0)) return 0;
        return 1;
    }
    default: {                                       /* INT, FLOAT, TIME: 8 bytes */
        const uint64_t *v = (const uint64_t *)c->values.buf;
        for (Py_ssize_t r = 1; r < n; r++) if (v[r] != v[0]) return 0;
        return 1;
    }
    }
}

static PyObject *rows(PyObject *self, PyObject *args) {
    PyObject *spec;
    Py_ssize_t n;
    const char *sep;
    Py_ssize_t sep_len;
    if (!PyArg_ParseTuple(args, "O!ny#", &PyList_Type, &spec, &n, &sep, &sep_len)) return NULL;
    Py_ssize_t k = PyList_GET_SIZE(spec);
    col_t *cols = PyMem_Calloc(k ? k : 1, sizeof(col_t));
    if (!cols) return PyErr_NoMemory();
    Py_ssize_t filled = 0;
    for (; filled < k; filled++) {
        col_t *c = &cols[filled];
        PyObject *t = PyList_GET_ITEM(spec, filled), *key, *values, *extra;
        if (!PyArg_ParseTuple(t, "SiOO", &key, &c->kind, &values, &extra)) goto fail;
        c->key = PyBytes_AS_STRING(key);
        c->key_len = PyBytes_GET_SIZE(key);
        if (c->kind == K_OBJ) {
            if (PyObject_GetBuffer(values, &c->values, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto fail;
            c->has_values = 1;
            if (c->values.itemsize != sizeof(PyObject *) || !c->values.format || strcmp(c->values.format, "O")) {
                PyErr_SetString(PyExc_TypeError, "jsonrows: OBJ values must be an object array");
                goto fail;
            }
            c->objs = (PyObject **)c->values.buf;
            c->fallback = extra;
        } else if (c->kind == K_STR) {
            PyObject *text, *mask;
            if (!PyArg_ParseTuple(extra, "OO", &text, &mask)) goto fail;
            if (PyObject_GetBuffer(values, &c->values, PyBUF_C_CONTIGUOUS) < 0) goto fail;
            c->has_values = 1;
            if (PyObject_GetBuffer(text, &c->text, PyBUF_C_CONTIGUOUS) < 0) goto fail;
            c->has_text = 1;
            if (mask != Py_None) {
                if (PyObject_GetBuffer(mask, &c->mask, PyBUF_C_CONTIGUOUS) < 0) goto fail;
                c->has_mask = 1;
                if (c->mask.len < n) { PyErr_SetString(PyExc_ValueError, "jsonrows: mask too short"); goto fail; }
            }
            if (c->values.itemsize != 8 || c->values.len / 8 < n + 1) {
                PyErr_Format(PyExc_ValueError, "jsonrows: column %zd: STR needs %zd int64 offsets", filled, n + 1);
                goto fail;
            }
            const int64_t *off = (const int64_t *)c->values.buf;
            for (Py_ssize_t r = 0; r < n; r++)          /* (every span inside the text) */
                if (off[r] < 0 || off[r + 1] < off[r] || off[r + 1] > c->text.len) {
                    PyErr_Format(PyExc_ValueError, "jsonrows: column %zd: offsets out of the text", filled);
                    goto fail;
                }
            continue;
        } else {
            if (PyObject_GetBuffer(values, &c->values, PyBUF_C_CONTIGUOUS) < 0) goto fail;
            c->has_values = 1;
            Py_ssize_t want = (c->kind == K_BOOL) ? 1 : (c->kind == K_CAT) ? 4 : 8;
            if (c->values.itemsize != want) {
                PyErr_Format(PyExc_TypeError, "jsonrows: column %zd: item size %zd, want %zd", filled,
                             c->values.itemsize, want);
                goto fail;
            }
            if (c->kind == K_CAT) {
                if (!PyTuple_Check(extra)) { PyErr_SetString(PyExc_TypeError, "jsonrows: CAT needs a tuple"); goto fail; }
                c->cats = extra;
            } else if (c->kind == K_FLOAT) {
                c->round6 = extra == Py_True;
            } else if (extra != Py_None) {
                if (PyObject_GetBuffer(extra, &c->mask, PyBUF_C_CONTIGUOUS) < 0) goto fail;
                c->has_mask = 1;
                if (c->mask.len < n) { PyErr_SetString(PyExc_ValueError, "jsonrows: mask too short"); goto fail; }
            }
        }
        if (c->values.len / c->values.itemsize < n) {
            PyErr_Format(PyExc_ValueError, "jsonrows: column %zd has fewer than %zd rows", filled, n);
            goto fail;
        }
    }
    /* A column of one value in every row of the call (a flood's hundred empty
     * application columns, one state, one cause) is written once into `tmpl`, with
     * its neighbours of one value: each row then copies those spans whole. */
    buf_t b = {0}, tmpl = {0};
    Py_ssize_t *seg = PyMem_Calloc(2 * (k ? k : 1), sizeof(Py_ssize_t));  /* (column or -1-span start, span end) */
    if (!seg) { PyErr_NoMemory(); goto fail; }
    Py_ssize_t nseg = 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        if (n > 1 && col_const(&cols[i], n)) {
            Py_ssize_t at = tmpl.len;
            if (put_col(&tmpl, &cols[i], 0, i == 0) < 0) goto fail_seg;
            if (nseg && seg[2 * (nseg - 1)] < 0 && seg[2 * (nseg - 1) + 1] == at) {
                seg[2 * (nseg - 1) + 1] = tmpl.len;          /* (extends the span before) */
            } else {
                seg[2 * nseg] = -1 - at; seg[2 * nseg + 1] = tmpl.len; nseg++;
            }
        } else {
            seg[2 * nseg] = i; seg[2 * nseg + 1] = 0; nseg++;
        }
    }
    for (Py_ssize_t r = 0; r < n; r++) {
        if (r && put(&b, sep, sep_len) < 0) goto fail_seg;
        if (put(&b, "{", 1) < 0) goto fail_seg;
        for (Py_ssize_t j = 0; j < nseg; j++) {
            Py_ssize_t i = seg[2 * j];
            if (i < 0) {
                Py_ssize_t at = -1 - i;
                if (put(&b, tmpl.p + at, seg[2 * j + 1] - at) < 0) goto fail_seg;
            } else if (put_col(&b, &cols[i], r, i == 0) < 0) {
                goto fail_seg;
            }
        }
        if (put(&b, "}", 1) < 0) goto fail_seg;
    }
    PyMem_Free(seg);
    PyMem_Free(tmpl.p);
    release_cols(cols, k);
    PyObject *out = PyBytes_FromStringAndSize(b.p ? b.p : "", b.len);
    PyMem_Free(b.p);
    return out;
fail_seg:
    PyMem_Free(seg);
    PyMem_Free(tmpl.p);
    PyMem_Free(b.p);
fail:
    release_cols(cols, k);
    return NULL;
}

/* interleave(part, bufs, starts, sep) -> (bytes, ends): the lines of several files put in one
 * order (an out-of-core run's passes, each holding its connections' lines in stream
 * order: bounded.py). `part`: int32 buffer, the pass of each output line in turn;
 * `bufs`: per pass, bytes whose next lines (each ending in '\n') start at `starts`;
 * the lines are joined by `sep` without their '\n'. `ends`: where each buffer's lines
 * not taken start. A ValueError when a buffer holds fewer lines than `part` asks. */
static PyObject *interleave(PyObject *self, PyObject *args) {
    Py_buffer part;
    PyObject *bufs, *starts;
    const char *sep;
    Py_ssize_t sep_len;
    if (!PyArg_ParseTuple(args, "y*O!O!y#", &part, &PyList_Type, &bufs, &PyList_Type, &starts, &sep, &sep_len))
        return NULL;
    Py_ssize_t k = PyList_GET_SIZE(bufs), n = part.len / (Py_ssize_t)sizeof(int32_t);
    Py_ssize_t *at = PyMem_Calloc(k ? k : 1, sizeof(Py_ssize_t));
    buf_t b = {0};
    PyObject *out = NULL, *used = NULL;
    if (!at) { PyErr_NoMemory(); goto done; }
    if (PyList_GET_SIZE(starts) != k) { PyErr_SetString(PyExc_ValueError, "interleave: one start per buffer"); goto done; }
    for (Py_ssize_t i = 0; i < k; i++) {
        if (!PyBytes_Check(PyList_GET_ITEM(bufs, i))) { PyErr_SetString(PyExc_TypeError, "interleave: bytes"); goto done; }
        at[i] = PyLong_AsSsize_t(PyList_GET_ITEM(starts, i));
        if (at[i] < 0) { if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "interleave: start"); goto done; }
    }
    const int32_t *pp = (const int32_t *)part.buf;
    for (Py_ssize_t r = 0; r < n; r++) {
        int32_t j = pp[r];
        if (j < 0 || j >= k) { PyErr_SetString(PyExc_ValueError, "interleave: no such buffer"); goto done; }
        PyObject *o = PyList_GET_ITEM(bufs, j);
        const char *base = PyBytes_AS_STRING(o);
        Py_ssize_t len = PyBytes_GET_SIZE(o);
        const char *nl = at[j] < len ? memchr(base + at[j], '\n', (size_t)(len - at[j])) : NULL;
        if (!nl) { PyErr_Format(PyExc_ValueError, "interleave: buffer %d has too few lines", (int)j); goto done; }
        if (r && put(&b, sep, sep_len) < 0) goto done;
        if (put(&b, base + at[j], nl - (base + at[j])) < 0) goto done;
        at[j] = nl - base + 1;
    }
    used = PyList_New(k);
    if (!used) goto done;
    for (Py_ssize_t i = 0; i < k; i++) PyList_SET_ITEM(used, i, PyLong_FromSsize_t(at[i]));
    out = Py_BuildValue("(y#N)", b.p ? b.p : "", b.len, used);
    used = NULL;
done:
    Py_XDECREF(used);
    PyMem_Free(at);
    PyMem_Free(b.p);
    PyBuffer_Release(&part);
    return out;
}

/* newlines(buffer) -> int: how many '\n' bytes it holds (memchr from one to the next:
 * lines of KBs are skipped at memchr's speed, where bytes.count looks at every byte). */
static PyObject *newlines(PyObject *self, PyObject *arg) {
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) return NULL;
    const char *p = b.buf, *end = p + b.len;
    Py_ssize_t n = 0;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) { n++; p++; }
    PyBuffer_Release(&b);
    return PyLong_FromSsize_t(n);
}

static PyMethodDef methods[] = {
    {"newlines", newlines, METH_O, "newlines(buffer) -> int: the '\\n' bytes in it"},
    {"rows", rows, METH_VARARGS, "rows(columns, n, sep) -> bytes: the rows as compact JSON objects"},
    {"interleave", interleave, METH_VARARGS, "interleave(part, bufs, sep) -> (bytes, used): lines of several buffers in one order"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_jsonrows", NULL, -1, methods};

PyMODINIT_FUNC PyInit__jsonrows(void) {
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    PyModule_AddIntConstant(m, "INT", K_INT);
    PyModule_AddIntConstant(m, "FLOAT", K_FLOAT);
    PyModule_AddIntConstant(m, "BOOL", K_BOOL);
    PyModule_AddIntConstant(m, "CAT", K_CAT);
    PyModule_AddIntConstant(m, "TIME", K_TIME);
    PyModule_AddIntConstant(m, "OBJ", K_OBJ);
    PyModule_AddIntConstant(m, "STR", K_STR);
    return m;
}
