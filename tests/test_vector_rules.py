"""The rules over columns (pcapsense/classify/vector.py) against the per-row rules of
rules.py (the reference): every repo capture (and the public corpus when ../shared is
there) is classified both ways, and every output column of decide() must be equal."""

from pathlib import Path

import numpy as np
import pytest

import pcapsense
import pcapsense.classify as classify

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = ROOT.parent / "shared" / "corpus" / "public" / "pcaps"
SUFFIXES = (".pcap", ".pcapng", ".pcap.gz", ".pcapng.gz")
BROKEN = {"not_a_capture.pcap", "zero_bytes.pcap"}


def _captures():
    found = []
    for base in (ROOT / "sample_pcaps", ROOT / "tests" / "captures", PUBLIC):
        if base.exists():
            found += sorted(p for p in base.rglob("*") if p.name.endswith(SUFFIXES) and p.name not in BROKEN)
    return found


def _differences(a: dict, b: dict) -> list:
    bad = []
    for k in a:
        x, y = a[k], b[k]
        if x.dtype.kind == "f":
            same = (x == y) | (np.isnan(x) & np.isnan(y))
        else:
            same = np.array([p == q for p, q in zip(x.tolist(), y.tolist())], dtype=bool)
        bad += [(k, int(i), x[i], y[i]) for i in np.flatnonzero(~same)[:3]]
    return bad


def test_columns_decide_as_the_per_row_rules(monkeypatch):
    decide = classify.decide
    seen = {"rows": 0, "vector_rows": 0, "differences": []}
    vector_decide = classify.vector.decide

    def counting(df, rows, *args):
        seen["vector_rows"] += len(rows)
        return vector_decide(df, rows, *args)

    def both(df, keys, servers, cap_end, per_row=False):
        got = decide(df, keys, servers, cap_end)
        want = decide(df, keys, servers, cap_end, per_row=True)
        seen["rows"] += len(df)
        seen["differences"] += [(df.attrs.get("path"), *d) for d in _differences(got, want)]
        return got

    monkeypatch.setattr(classify, "decide", both)
    monkeypatch.setattr(classify.vector, "decide", counting)
    caps = _captures()
    assert len(caps) >= 80
    for p in caps:
        pcapsense.analyze(str(p))
    assert seen["differences"] == []
    assert seen["vector_rows"] >= 300          # the columns decided a real share of the rows


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_tables(n):
    """No rows, one row: the column path is not bothered by empty masks."""
    from pcapsense.classify import vector
    import pandas as pd
    out = {k: np.empty(n, dtype=object) for k in ("cause", "evidence_frames", "alternatives", "cause_detail",
                                                  "phase", "closer")}
    out["confidence"], out["_idle_s"] = np.empty(n), np.full(n, np.nan)
    df = pd.DataFrame({"close_kind": pd.Categorical(["none"] * n, categories=["FIN", "RST", "none"]),
                       "conn_state": pd.Categorical(["S0"] * n), "closer": pd.Categorical(["none"] * n),
                       "last_frame": np.arange(1, n + 1), "abnormal": np.zeros(n, dtype=bool)})
    vector.decide(df, np.arange(n), out, lambda ix: [0] * len(ix), 1.0)
    assert out["cause"].tolist() == ["incomplete"] * n
    assert out["evidence_frames"].tolist() == ["1"] * n
