"""JSON renderer: `{"pcapsense": version, "capture": {...}, "connections": [...]}`.

The schema is a public interface, documented in docs/schema.md. Times are ISO 8601
UTC strings; missing values are `null`; numbers carry their unit in the key name.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
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


def _json_ready(arr):
    """One column's values in the types pandas' JSON writer is fastest with: timestamps
    as ISO 8601 text (numpy's vectorised formatting), nullable integers as objects."""
    if isinstance(arr.dtype, pd.DatetimeTZDtype):
        v = arr.tz_convert("UTC").tz_localize(None).to_numpy().astype("datetime64[us]")
        text = np.char.add(np.datetime_as_string(v, unit="us"), "Z").astype(object)
        text[np.isnat(v)] = None
        return text
    if isinstance(arr.dtype, pd.Int64Dtype):
        return arr.to_numpy(dtype=object, na_value=None)
    return arr


def write(analysis, fh, chunk_rows: int = 500) -> None:
    """Write the whole document to `fh`. Connections go through pandas' C JSON writer in
    chunks (one object per line), so memory stays bounded by the chunk, not the capture
    (the writer needs about 36 KiB per row while it works: 18 MiB for 500 rows)."""
    conns = analysis.connections
    cols = [c for c in conns.columns if not c.startswith("_")]
    arrays = {c: conns[c].array for c in cols}          # references: chunks are slices
    head = json.dumps({"pcapsense": SCHEMA_VERSION, "capture": capture_dict(analysis)},
                      indent=1, ensure_ascii=False)
    fh.write(head[:-2] + ',\n "connections": [')
    sep = "\n  "
    for lo in range(0, len(conns), chunk_rows):
        chunk = pd.DataFrame({c: _json_ready(a[lo:lo + chunk_rows]) for c, a in arrays.items()}, copy=False)
        body = chunk.to_json(orient="records", lines=True, date_format="iso", date_unit="us",
                             double_precision=6, force_ascii=False)
        # one object per line; JSON text has no raw newline inside a value
        fh.write(sep + body.rstrip("\n").replace("\n", ",\n  "))
        sep = ",\n  "
    fh.write("\n ]\n}\n" if len(conns) else "]\n}\n")


def render(analysis) -> str:
    import io
    buf = io.StringIO()
    write(analysis, buf)
    return buf.getvalue()
