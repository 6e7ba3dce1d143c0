"""JSON renderer: `{"pcapsense": version, "capture": {...}, "connections": [...]}`.

The schema is a public interface, documented in docs/schema.md. Times are ISO 8601
UTC strings; missing values are `null`; numbers carry their unit in the key name;
fractional numbers are rounded to 6 decimals.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

import numpy as np
import orjson
import pandas as pd

from . import _jsonrows

SCHEMA_VERSION = 1


def capture_dict(analysis) -> dict[str, Any]:
    c = analysis.capture
    conns = analysis.connections
    return {
        "path": c.path,
        "files": c.files,
        "format": c.format,
        "compressed": c.compressed,
        "file_bytes": c.file_bytes,
        "link_types": c.link_types,
        "frames": c.frames,
        "tcp_packets": c.tcp_packets,
        "non_tcp_packets": c.non_tcp_packets,
        "connections": c.connections,
        "abnormal_connections": int(conns["abnormal"].sum()) if len(conns) else 0,
        "first_time": _iso(c.first_time),
        "last_time": _iso(c.last_time),
        "duration_s": round(c.duration_s, 6),
        "truncated": c.truncated,
        "error": c.error,
        "warnings": c.warnings,
        "counters": {k: v for k, v in c.counters.items() if k not in ("format", "link_types", "pcap_nano",
                                                                       "odd_header", "unread_link_types")},
        **({"tls_keys": c.tls_keys} if getattr(c, "tls_keys", None) is not None else {}),
    }


def _iso(ts) -> str | None:
    if ts is None or ts is pd.NaT or (isinstance(ts, float) and math.isnan(ts)):
        return None
    return pd.Timestamp(ts).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _rounded_array(a: np.ndarray) -> np.ndarray:
    """Floats rounded to 6 decimals exactly as Python's round() does (correctly
    rounded: 1.0039145 -> 1.003915, where np.round says 1.003914). rint(x * 1e6) / 1e6
    is the same value except where x * 1e6 lies within its rounding error of a half
    (or is too large to hold the units exactly): those few go through round(). NaN
    and infinities stay (JSON writes them as null)."""
    a = np.asarray(a, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        y = a * 1e6
        out = np.rint(y) / 1e6
        frac = np.abs(y - np.floor(y) - 0.5)
        odd = ~(frac > np.maximum(1.0, np.abs(y)) * 2.0 ** -40) | ~(np.abs(y) < 2.0 ** 52)
    finite = np.isfinite(a)
    for i in np.flatnonzero(odd & finite).tolist():
        out[i] = round(float(a[i]), 6)
    out[~finite] = a[~finite]
    return out


def _rounded(a: np.ndarray) -> list:
    """_rounded_array() as Python floats."""
    return _rounded_array(a).tolist()


def _other(v):
    """orjson's fallback for values that are not JSON types (numpy scalars, pandas'
    missing markers, timestamps) in object columns."""
    if v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (pd.Timestamp, np.datetime64)):
        return _iso(v)
    return str(v)


def _dump_other(v) -> bytes:
    """One value of an object column that _jsonrows does not write itself, as orjson
    writes it (and raises where orjson raises: a str with a lone surrogate)."""
    return orjson.dumps(v, default=_other)


def _objects(values) -> np.ndarray:
    """Python values as a contiguous object array (tuples and lists stay single items)."""
    return np.fromiter(values, dtype=object, count=len(values))


def _column(arr) -> Callable[[int, int], tuple]:
    """`f(lo, hi)`: rows lo..hi of one column as a _jsonrows spec (kind, values,
    extra): contiguous arrays, missing values masked (or NaN, NaT, None), floats to be
    rounded to 6 decimals by the writer (microseconds for seconds, nanoseconds for
    milliseconds; round(x, 6)'s values, as _rounded_array gives them), times as
    nanoseconds. Built once per column; each call converts only its slice, so memory
    follows the chunk, not the capture."""
    if isinstance(arr, pd.arrays.FloatingArray):
        data, mask = arr._data, arr._mask
        return lambda lo, hi: (_jsonrows.FLOAT, np.where(mask[lo:hi], np.nan, data[lo:hi]), True)
    if isinstance(arr, pd.arrays.IntegerArray):
        data, mask = arr._data, arr._mask
        if data.dtype.kind == "u" and data.dtype.itemsize == 8:
            return lambda lo, hi: (_jsonrows.OBJ, _objects([None if m else v for v, m in
                                                            zip(data[lo:hi].tolist(), mask[lo:hi].tolist())]),
                                   _dump_other)
        return lambda lo, hi: (_jsonrows.INT, np.ascontiguousarray(data[lo:hi], dtype=np.int64),
                               np.ascontiguousarray(mask[lo:hi]).view(np.uint8))
    if isinstance(arr, pd.arrays.BooleanArray):
        data, mask = arr._data, arr._mask
        return lambda lo, hi: (_jsonrows.BOOL, np.ascontiguousarray(data[lo:hi]).view(np.uint8),
                               np.ascontiguousarray(mask[lo:hi]).view(np.uint8))
    if isinstance(arr, pd.Categorical):
        cats = tuple(_dump_other(v) for v in arr.categories.to_numpy(dtype=object, na_value=None).tolist())
        codes = arr.codes
        return lambda lo, hi: (_jsonrows.CAT, np.ascontiguousarray(codes[lo:hi], dtype=np.int32), cats)
    if isinstance(arr.dtype, pd.DatetimeTZDtype):
        ns = arr.tz_convert("UTC").asi8
        return lambda lo, hi: (_jsonrows.TIME, np.ascontiguousarray(ns[lo:hi]), None)
    if isinstance(arr, pd.arrays.ArrowStringArray):
        return _arrow_text(arr)
    if isinstance(arr.dtype, pd.StringDtype):
        return lambda lo, hi: (_jsonrows.OBJ, np.ascontiguousarray(arr[lo:hi].to_numpy(dtype=object, na_value=None)),
                               _dump_other)
    nd = np.asarray(arr)
    kind = nd.dtype.kind
    if kind == "f":
        return lambda lo, hi: (_jsonrows.FLOAT, np.ascontiguousarray(nd[lo:hi], dtype=np.float64), True)
    if kind == "b":
        return lambda lo, hi: (_jsonrows.BOOL, np.ascontiguousarray(nd[lo:hi]).view(np.uint8), None)
    if kind == "i" or (kind == "u" and nd.dtype.itemsize < 8):
        return lambda lo, hi: (_jsonrows.INT, np.ascontiguousarray(nd[lo:hi], dtype=np.int64), None)
    if kind == "O":
        return lambda lo, hi: (_jsonrows.OBJ, np.ascontiguousarray(nd[lo:hi]), _dump_other)
    return lambda lo, hi: (_jsonrows.OBJ, _objects(nd[lo:hi].tolist()), _dump_other)


def _arrow_text(arr) -> Callable[[int, int], tuple]:
    """_column() for text held by pyarrow (pandas' str dtype): the C writer reads the
    UTF-8 bytes and offsets themselves (STR), no Python str made per value (making them
    was a fifth of a million-connection report's time)."""
    import pyarrow as pa
    col = arr.__arrow_array__()
    if isinstance(col, pa.ChunkedArray):          # (one chunk, as a rule: read in place)
        col = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    validity, offsets, data = col.buffers()       # (string or large_string: pandas' str dtype)
    width = np.int64 if pa.types.is_large_string(col.type) else np.int32
    offs = np.frombuffer(offsets, dtype=width)[col.offset:col.offset + len(col) + 1] \
        if offsets is not None else np.zeros(len(col) + 1, dtype=width)
    text = np.frombuffer(data, dtype=np.uint8) if data is not None and data.size else np.zeros(1, np.uint8)
    mask = None
    if col.null_count:                            # (Arrow's validity bits, 1 = present, as a mask)
        bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
        mask = (bits[col.offset:col.offset + len(col)] == 0).view(np.uint8)
    return lambda lo, hi: (_jsonrows.STR, offs[lo:hi + 1].astype(np.int64),
                           (text, None if mask is None else mask[lo:hi]))


#: rows per call of the C writer: a chunk's converted columns stay a few MB
CHUNK_ROWS = 4096


def write(analysis, fh, chunk_rows: int = CHUNK_ROWS) -> None:
    """Write the whole document to `fh`. Connections are written one JSON object per
    line, in orjson's compact bytes, from the columns by the C writer _jsonrows (no dict
    per row: see _jsonrows.c), `chunk_rows` rows at a time: memory follows the chunk,
    not the capture."""
    write_head(analysis, fh)
    ex = getattr(analysis, "exceptions", None)
    if ex is not None:
        from .exceptions import records
        ex = records(ex)
    write_records(fh, record_blocks(analysis.connections, RECORD_SEP, chunk_rows), ex)


def write_head(analysis, fh) -> None:
    """The document up to the first connection (`analysis`: .capture, and
    .connections' `abnormal` column for the count)."""
    head = json.dumps({"pcapsense": SCHEMA_VERSION, "capture": capture_dict(analysis)},
                      indent=1, ensure_ascii=False)
    fh.write(head[:-2] + ',\n "connections": [')


#: between two connections' objects in the document
RECORD_SEP = b",\n  "


def _write_block(fh, sep: bytes, block: bytes) -> None:
    """`sep` then `block` (not their concatenation: a block is MBs, copied once more)."""
    buffer = getattr(fh, "buffer", None)
    if buffer is not None:
        fh.flush()
        buffer.write(sep)
        buffer.write(block)
    else:
        fh.write(sep.decode() + block.decode())


def write_records(fh, blocks, exceptions: list | None = None) -> None:
    """The rest of the document after write_head: the connections' JSON objects
    (`blocks`: bytes of one or more objects joined by RECORD_SEP, in table order), the
    program's `exceptions` when a log was read (render/exceptions.records), then the end."""
    first = True
    for block in blocks:
        if block:
            _write_block(fh, b"\n  " if first else RECORD_SEP, block)
            first = False
    fh.write("]" if first else "\n ]")
    if exceptions is not None:
        body = ",\n  ".join(json.dumps(e, ensure_ascii=False) for e in exceptions)
        fh.write(',\n "exceptions": [' + (f"\n  {body}\n ]" if exceptions else "]"))
    fh.write("\n}\n")


def record_blocks(conns: pd.DataFrame, sep: bytes = b"\n", chunk_rows: int = CHUNK_ROWS):
    """The connections' JSON objects (bytes; one line each: JSON text has no raw
    newline inside a value) joined by `sep`, a block per `chunk_rows` rows."""
    cols = [c for c in conns.columns if not c.startswith("_")]
    keys = [orjson.dumps(c) + b":" for c in cols]
    getters = [_column(conns[c].array) for c in cols]
    for lo in range(0, len(conns), chunk_rows):
        hi = min(lo + chunk_rows, len(conns))
        spec = [(k, *g(lo, hi)) for k, g in zip(keys, getters)]
        yield _jsonrows.rows(spec, hi - lo, sep)


def render(analysis) -> str:
    import io
    buf = io.StringIO()
    write(analysis, buf)
    return buf.getvalue()
