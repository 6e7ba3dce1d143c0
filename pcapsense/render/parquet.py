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
    conns = analysis.connections[[c for c in analysis.connections.columns if not c.startswith("_")]]
    if "tls_certificate" in conns:      # nested dicts: as JSON text, so the column has one type
        conns = conns.assign(tls_certificate=conns["tls_certificate"].map(
            lambda v: json.dumps(v) if isinstance(v, dict) else None))
    for name, df in (("connections", conns), ("http", getattr(analysis, "http", None)),
                     ("tls", analysis.tls), ("transitions", getattr(analysis, "transitions", None))):
        if df is None:
            continue
        path = os.path.join(directory, f"{name}.parquet")
        _write_table(df.reset_index(drop=True), path)
        written.append(path)
    return written


#: rows converted to Arrow and written at a time (one row group each): memory follows
#: the batch, not the table (the whole table in Arrow was a second copy of it)
ROW_GROUP = 65536


def _write_table(df, path: str) -> None:
    """A text column that happens to be empty in this capture (no TLS, no HTTP) would be
    written with Parquet's NULL type, and a fleet's files would then disagree on its type
    (DuckDB and Spark refuse to combine them): such columns are written as strings.
    Every file of a table has the same schema whatever the capture held.

    The schema is inferred from the whole table, then the rows are converted and
    written ROW_GROUP at a time with it."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    schema = pa.Schema.from_pandas(df, preserve_index=False)
    # (and pandas' text columns come as string or large_string depending on how they
    # were built: always string)
    fields = [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) or pa.types.is_large_string(f.type)
              else f for f in schema]
    schema = pa.schema(fields, metadata=schema.metadata)
    with pq.ParquetWriter(path, schema) as out:
        for lo in range(0, max(len(df), 1), ROW_GROUP):
            part = df.iloc[lo:lo + ROW_GROUP]
            out.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False),
                            row_group_size=ROW_GROUP)

