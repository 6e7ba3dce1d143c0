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
        "counters": {k: v for k, v in c.counters.items() if k not in ("format", "link_types", "pcap_nano")},
    }


def _iso(ts) -> str | None:
    if ts is None or ts is pd.NaT or (isinstance(ts, float) and math.isnan(ts)):
        return None
    return pd.Timestamp(ts).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _iso_text(arr):
    """A timestamp column as ISO 8601 text (numpy's vectorised formatting), None for NaT."""
    v = arr.tz_convert("UTC").tz_localize(None).to_numpy().astype("datetime64[us]")
    text = np.char.add(np.datetime_as_string(v, unit="us"), "Z").astype(object)
    text[np.isnat(v)] = None
    return text


def _slicer(arr) -> Callable[[int, int], list]:
    """`f(lo, hi)`: rows lo..hi of one column as the Python values JSON writes: None for
    every missing value, ISO text for times, floats rounded to 6 decimals (microseconds
    for seconds, nanoseconds for milliseconds). Built once per column; each call
    converts only its slice, so memory follows the chunk, not the capture."""
    if isinstance(arr, (pd.arrays.IntegerArray, pd.arrays.BooleanArray, pd.arrays.FloatingArray)):
        data, mask = arr._data, arr._mask
        fractional = isinstance(arr, pd.arrays.FloatingArray)

        def masked(lo, hi):
            out = _rounded(data[lo:hi]) if fractional else data[lo:hi].tolist()
            m = mask[lo:hi]
            if m.any():
                for i in np.flatnonzero(m).tolist():
                    out[i] = None
            return out
        return masked
    if isinstance(arr, pd.Categorical):
        cats = np.empty(len(arr.categories) + 1, dtype=object)    # code -1 (missing) -> None
        cats[:-1] = arr.categories.to_numpy(dtype=object, na_value=None)
        codes = arr.codes
        return lambda lo, hi: cats.take(codes[lo:hi]).tolist()
    if isinstance(arr.dtype, pd.DatetimeTZDtype):
        return lambda lo, hi: _iso_text(arr[lo:hi]).tolist()
    if isinstance(arr, pd.arrays.ArrowStringArray) or isinstance(arr.dtype, pd.StringDtype):
        return lambda lo, hi: arr[lo:hi].to_numpy(dtype=object, na_value=None).tolist()
    nd = np.asarray(arr)
    if nd.dtype.kind == "f":
        return lambda lo, hi: _rounded(nd[lo:hi])
    return lambda lo, hi: nd[lo:hi].tolist()


def _rounded(a: np.ndarray) -> list:
    """Floats rounded to 6 decimals exactly as Python's round() does (correctly
    rounded: 1.0039145 -> 1.003915, where np.round says 1.003914). rint(x * 1e6) / 1e6
    is the same value except where x * 1e6 lies within its rounding error of a half
    (or is too large to hold the units exactly): those few go through round(). NaN
    and infinities stay, and orjson writes them as null."""
    a = np.asarray(a, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        y = a * 1e6
        out = np.rint(y) / 1e6
        frac = np.abs(y - np.floor(y) - 0.5)
        odd = ~(frac > np.maximum(1.0, np.abs(y)) * 2.0 ** -40) | ~(np.abs(y) < 2.0 ** 52)
    vals = out.tolist()
    for i in np.flatnonzero(odd & np.isfinite(a)).tolist():
        vals[i] = round(float(a[i]), 6)
    for i in np.flatnonzero(~np.isfinite(a)).tolist():
        vals[i] = float(a[i])
    return vals


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


def write(analysis, fh, chunk_rows: int = 200) -> None:
    """Write the whole document to `fh`. Connections are written one JSON object per
    line by orjson (a maintained Rust encoder: the 2.6 M values of the 2M-packet
    benchmark in 0.25 s, where pandas' to_json took 0.46 s), from the columns,
    `chunk_rows` rows at a time: memory follows the chunk, not the capture, and 200
    rows keep a chunk's values in the CPU caches (1,000 rows: 0.33 s)."""
    write_head(analysis, fh)
    write_records(fh, record_lines(analysis.connections, chunk_rows))


def write_head(analysis, fh) -> None:
    """The document up to the first connection (`analysis`: .capture, and
    .connections' `abnormal` column for the count)."""
    head = json.dumps({"pcapsense": SCHEMA_VERSION, "capture": capture_dict(analysis)},
                      indent=1, ensure_ascii=False)
    fh.write(head[:-2] + ',\n "connections": [')


def write_records(fh, chunks) -> None:
    """The rest of the document after write_head: the connections' JSON objects
    (`chunks`: lists of record_lines' lines, in table order), then the end."""
    sep, written = "\n  ", 0
    for lines in chunks:
        if lines:
            fh.write(sep + b",\n  ".join(lines).decode())
            sep, written = ",\n  ", written + len(lines)
    fh.write("\n ]\n}\n" if written else "]\n}\n")


def record_lines(conns: pd.DataFrame, chunk_rows: int = 200):
    """The connections' JSON objects (bytes, one line each: JSON text has no raw
    newline inside a value), a list per `chunk_rows` rows."""
    cols = [c for c in conns.columns if not c.startswith("_")]
    slicers = [_slicer(conns[c].array) for c in cols]
    dumps = orjson.dumps
    for lo in range(0, len(conns), chunk_rows):
        columns = [f(lo, lo + chunk_rows) for f in slicers]
        yield [dumps(dict(zip(cols, row)), default=_other) for row in zip(*columns)]


def render(analysis) -> str:
    import io
    buf = io.StringIO()
    write(analysis, buf)
    return buf.getvalue()
