"""The JSON document against the tables it renders: every value of every connection of
every repo capture is the DataFrame's value in JSON terms (null for every kind of
missing, ISO 8601 UTC text for times, fractions correctly rounded to 6 decimals,
booleans and integers exact, nested certificate dicts as objects)."""

import io
import json
import math

import numpy as np
import pandas as pd

import pcapsense
from conftest import repo_captures
from pcapsense.render import jsonout


def expected(v):
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, pd.Timestamp):
        return v.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(v) else round(float(v), 6)
    if isinstance(v, np.generic):
        return v.item()
    return v


def test_every_value_of_every_repo_capture():
    checked = 0
    for path in repo_captures():
        a = pcapsense.analyze(str(path), jobs=1)
        doc = json.loads(jsonout.render(a))
        conns = a.connections
        cols = [c for c in conns.columns if not c.startswith("_")]
        assert len(doc["connections"]) == len(conns)
        for rec, (_, row) in zip(doc["connections"], conns[cols].iterrows()):
            assert list(rec) == cols
            for c in cols:
                assert rec[c] == expected(row[c]), (path.name, c, rec[c], row[c])
                checked += 1
    assert checked > 20_000


def test_rounding_and_missing_values_by_hand():
    """1.0039145 is above the half in binary: 1.003915 (np.round says 1.003914); NaN and
    infinities are null; Int64 and boolean gaps are null; category and str gaps too."""
    a = pcapsense.analyze(str(repo_captures()[0]), jobs=1)
    n = len(a.connections)
    c = a.connections.iloc[[0] * 4].reset_index(drop=True)
    c["duration_s"] = [1.0039145, float("nan"), float("inf"), 2e-7]
    c["rtt_ms"] = pd.array([0.0000015, None, 3.5, -0.0], dtype="Float64")
    c["client_port"] = pd.array([1, None, 3, None], dtype="Int64")
    c["abnormal"] = pd.array([True, None, False, None], dtype="boolean")
    c["cause"] = pd.Categorical(["a", None, "b", "a"])
    c["fix"] = pd.array(["x/y", None, "\u2028\"\\", "é"], dtype="str")
    a.connections = c
    doc = json.loads(jsonout.render(a))["connections"]
    assert [r["duration_s"] for r in doc] == [1.003915, None, None, 0.0]
    assert [r["rtt_ms"] for r in doc] == [0.000002, None, 3.5, 0.0]
    assert [r["client_port"] for r in doc] == [1, None, 3, None]
    assert [r["abnormal"] for r in doc] == [True, None, False, None]
    assert [r["cause"] for r in doc] == ["a", None, "b", "a"]
    assert [r["fix"] for r in doc] == ["x/y", None, "\u2028\"\\", "é"]
    assert n >= 1
    buf = io.StringIO()
    jsonout.write(a, buf, chunk_rows=3)
    assert buf.getvalue() == jsonout.render(a)


def test_fast_rounding_is_pythons_round():
    """jsonout._rounded (vectorised, round() only near a half) against round(x, 6) on
    random values, every half-microsecond tie up to 0.2 s, huge and tiny values."""
    import random
    rng = random.Random(5)
    xs = [rng.uniform(0, 1e4) for _ in range(50000)] + [rng.uniform(-2, 2) for _ in range(50000)]
    xs += [k / 2e6 for k in range(0, 400000, 3)] + [rng.randrange(10**9) / 1e6 + 5e-7 for _ in range(50000)]
    xs += [1.0039145, 0.0000005, 0.0000015, 2.5e20, 1e16, -0.0, -1.2345675, 5e-324, 9e15, 4503599627.3704995]
    got = jsonout._rounded(np.array(xs))
    want = [round(x, 6) for x in xs]
    assert got == want
    assert [math.copysign(1, g) for g in got] == [math.copysign(1, w) for w in want]
    special = jsonout._rounded(np.array([float("nan"), float("inf"), -float("inf")]))
    assert math.isnan(special[0]) and special[1:] == [float("inf"), -float("inf")]
