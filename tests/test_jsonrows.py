"""The C writer of the JSON report's connections (pcapsense/render/_jsonrows.c) against
orjson.dumps of the same rows as dicts, on every kind of column and awkward values."""

import math
import random

import numpy as np
import orjson
import pandas as pd
import pytest

from pcapsense.render import jsonout


def _per_row(df: pd.DataFrame) -> bytes:
    """What the renderer wrote before the C writer: a dict per row, orjson."""
    rows = []
    for i in range(len(df)):
        d = {}
        for c in df.columns:
            v = df[c].iloc[i]
            if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
                d[c] = None
            elif isinstance(v, pd.Timestamp):
                d[c] = v.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            elif isinstance(v, (float, np.floating)):
                d[c] = round(float(v), 6) if math.isfinite(v) else None
            elif isinstance(v, np.generic):
                d[c] = v.item()
            else:
                d[c] = v
        rows.append(orjson.dumps(d, default=jsonout._other))
    return b"\n".join(rows)


def test_every_kind_of_column_as_orjson_writes_it():
    rng = random.Random(3)
    n = 400
    floats = [rng.uniform(-1e3, 1e3) for _ in range(n - 40)]
    floats += [0.0, -0.0, 1e-6, 1.5e-5, 2.5e-5, 1e-5, 9.9999e-5, 1e-4, 1e16, 1.25e16, 123456789012345.6,
               5e-324, 1.7976931348623157e308, float("nan"), float("inf"), -float("inf"), 1e-7, 3e22, 0.1, 1.0]
    floats += [k / 2e6 for k in range(20)]
    texts = ["", "plain", 'quote " back \\ slash', "\x00\x01\x1f\x7f\b\t\n\f\r", "é\u2028\U0001F600", None]
    ts = pd.to_datetime([1_795_516_663_493_179_123 + k * 86_400_000_000_321 for k in range(n)], unit="ns", utc=True)
    df = pd.DataFrame({
        "i64": np.arange(n, dtype=np.int64) * -12345678901,
        "i16": (np.arange(n) % 300).astype(np.int16),
        "u32": (np.arange(n) * 7919).astype(np.uint32),
        "nullable": pd.array([None if k % 3 == 0 else k * 10**15 for k in range(n)], dtype="Int64"),
        "f": floats[:n],
        "ff": pd.array([None if k % 5 == 0 else floats[k] for k in range(n)], dtype="Float64"),
        "b": np.arange(n) % 2 == 0,
        "nb": pd.array([None if k % 4 == 0 else k % 3 == 0 for k in range(n)], dtype="boolean"),
        "cat": pd.Categorical([None if k % 7 == 0 else ["FIN", "RST", 'o"dd'][k % 3] for k in range(n)]),
        "t": ts.where(np.arange(n) % 6 != 0),
        "s": pd.array([texts[k % len(texts)] for k in range(n)], dtype="str"),
        "o": pd.Series([[None, "x", 1, True, 2.5, 2**63 + 5, np.int64(7), {"k": 1}, texts[k % 6]][k % 9]
                        for k in range(n)], dtype=object),
    })
    got = b"\n".join(jsonout.record_blocks(df, b"\n", chunk_rows=37))
    assert got.split(b"\n") == _per_row(df).split(b"\n")


def test_lone_surrogate_raises_as_orjson_does():
    df = pd.DataFrame({"s": pd.Series(["ok", "\ud800"], dtype=object)})
    with pytest.raises(TypeError):
        b"".join(jsonout.record_blocks(df))


def test_document_is_chunk_independent():
    df = pd.DataFrame({"a": np.arange(10), "b": pd.array([None] * 10, dtype="Int64")})
    blocks = [b"".join(jsonout.record_blocks(df, jsonout.RECORD_SEP, k)) for k in (1, 3, 10, 4096)]
    joined = [jsonout.RECORD_SEP.join(jsonout.record_blocks(df, jsonout.RECORD_SEP, k)) for k in (1, 3, 10)]
    assert len(set(joined)) == 1 and joined[0] == blocks[-1]


def test_rounded_floats_as_orjson_writes_them():
    """The writer's own layout of values with 6 decimals (no Python formatter) against
    orjson, over every magnitude, signs and the smallest steps."""
    rng = np.random.default_rng(11)
    xs = np.concatenate([rng.uniform(-1, 1, 20000) * 10.0 ** rng.integers(-7, 10, 20000),
                         np.arange(-30, 30) / 1e6, [0.0, -0.0, 1e9 - 1e-6, 999999999.999999, 123.1, 0.1 + 0.2]])
    r = jsonout._rounded_array(xs)
    df = pd.DataFrame({"x": r})
    got = b"\n".join(jsonout.record_blocks(df, b"\n")).split(b"\n")
    assert got == [orjson.dumps({"x": v}) for v in r.tolist()]


def test_arrow_text_is_read_from_its_buffers_as_orjson_writes_it():
    """pandas' str columns go to the writer as Arrow's bytes and offsets (STR), not as
    Python strs: sliced, chunked, string and large_string arrays, missing values, one
    value in every row (the row template) and no value at all."""
    pa = pytest.importorskip("pyarrow")
    texts = ["", "plain", 'quote " back \\ slash', "\x00\x01\x1f\x7f\b\t\n\f\r", "é\u2028\U0001F600", None]
    vals = [texts[k % len(texts)] for k in range(300)]
    base = pd.Series(vals, dtype="str")
    chunked = pd.concat([base.iloc[:100], base.iloc[100:]], ignore_index=True)
    sliced = base.iloc[7:207].reset_index(drop=True)
    small = pd.Series(pd.arrays.ArrowStringArray(pa.array(vals[:200], pa.string())))
    df = pd.DataFrame({"chunked": chunked.iloc[50:250].reset_index(drop=True).array, "sliced": sliced.array,
                       "small": small.array,
                       "same": pd.Series(["FIN exchange, every request answered"] * 200, dtype="str").array,
                       "none": pd.Series([None] * 199 + ["x"], dtype="str").array})
    assert all(isinstance(df[c].array, pd.arrays.ArrowStringArray) for c in df)
    for rows in (1, 7, 200):
        got = b"\n".join(jsonout.record_blocks(df, b"\n", chunk_rows=rows))
        assert got.split(b"\n") == _per_row(df).split(b"\n")


def test_arrow_text_offsets_outside_the_text_are_refused():
    from pcapsense.render import _jsonrows
    spec = [(b'"s":', _jsonrows.STR, np.array([0, 3, 99], dtype=np.int64), (np.zeros(5, np.uint8), None))]
    with pytest.raises(ValueError, match="offsets"):
        _jsonrows.rows(spec, 2, b"\n")
    short = [(b'"s":', _jsonrows.STR, np.array([0], dtype=np.int64), (np.zeros(5, np.uint8), None))]
    with pytest.raises(ValueError, match="offsets"):
        _jsonrows.rows(short, 1, b"\n")


def test_floats_are_rounded_by_the_writer_as_round_does():
    """Float columns go to the writer unrounded; it rounds each value to 6 decimals
    as Python's round(x, 6) (and _rounded_array) does, halves and huge values too."""
    rng = np.random.default_rng(5)
    xs = np.concatenate([rng.uniform(-1, 1, 20000) * 10.0 ** rng.integers(-7, 12, 20000),
                         (np.arange(-3000, 3000) + 0.5) / 1e6, [1.0039145, 2.0000005, -0.0000005, 1e300, -1e17,
                                                               2.0 ** 60 + 0.5, float("nan"), float("inf")]])
    want = [orjson.dumps({"x": round(v, 6) if math.isfinite(v) else None, "y": None}) for v in xs.tolist()]
    df = pd.DataFrame({"x": xs, "y": pd.array([None] * len(xs), dtype="Float64")})
    assert b"\n".join(jsonout.record_blocks(df, b"\n")).split(b"\n") == want
    r = jsonout._rounded_array(xs)
    assert [orjson.dumps(v) for v in r[np.isfinite(r)].tolist()] == \
        [orjson.dumps(round(v, 6)) for v in xs[np.isfinite(xs)].tolist()]
