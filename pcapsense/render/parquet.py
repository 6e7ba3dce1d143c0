"""Parquet export for downstream engines (DuckDB, Spark, pandas): one file per table in a
directory, types preserved (tz-aware timestamps, nullable integers, categoricals as
dictionary columns), via pyarrow (optional extra: `pip install pcapsense[parquet]`).

    DIR/capture.json       the capture object of the JSON output
    DIR/connections.parquet  one row per TCP connection (docs/schema.md)
    DIR/http.parquet         one row per HTTP request/response
    DIR/tls.parquet          one row per TLS handshake (Analysis.tls)
    DIR/transitions.parquet  every endpoint state change
"""

from __future__ import annotations

import json
import os

from . import jsonout


def write(analysis, directory: str) -> list[str]:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise RuntimeError("Parquet output needs pyarrow: pip install 'pcapsense[parquet]'") from None
    os.makedirs(directory, exist_ok=True)
    written = []
    cap = os.path.join(directory, "capture.json")
    with open(cap, "w", encoding="utf-8") as fh:
        json.dump(jsonout.capture_dict(analysis), fh, indent=1, ensure_ascii=False)
    written.append(cap)
    conns = analysis.connections[[c for c in analysis.connections.columns if not c.startswith("_")]].copy()
    if "tls_certificate" in conns:      # nested dicts: as JSON text, so the column has one type
        conns["tls_certificate"] = conns["tls_certificate"].map(
            lambda v: json.dumps(v) if isinstance(v, dict) else None)
    for name, df in (("connections", conns), ("http", getattr(analysis, "http", None)),
                     ("tls", analysis.tls), ("transitions", analysis.transitions)):
        if df is None:
            continue
        path = os.path.join(directory, f"{name}.parquet")
        _write_table(df.reset_index(drop=True), path)
        written.append(path)
    return written


def _write_table(df, path: str) -> None:
    """A text column that happens to be empty in this capture (no TLS, no HTTP) would be
    written with Parquet's NULL type, and a fleet's files would then disagree on its type
    (DuckDB and Spark refuse to combine them): such columns are written as strings.
    Every file of a table has the same schema whatever the capture held."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.Table.from_pandas(df, preserve_index=False)
    # (and pandas' text columns come as string or large_string depending on how they
    # were built: always string)
    odd = [pa.types.is_null(f.type) or pa.types.is_large_string(f.type) for f in table.schema]
    if any(odd):
        fields = [pa.field(f.name, pa.string()) if o else f for f, o in zip(table.schema, odd)]
        table = table.cast(pa.schema(fields, metadata=table.schema.metadata))
    pq.write_table(table, path)

