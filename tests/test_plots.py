"""pcapsense.plots: each function returns a matplotlib Figure (Agg, no pyplot state)."""

from pathlib import Path

import pytest
from matplotlib.figure import Figure

from conftest import ROOT
import pcapsense
from pcapsense import plots

SAMPLE = ROOT / "sample_pcaps" / "captures" / "la-keepalive-race-httpclient.pcap"
BENCH_SMALL = Path("/tmp/pcapsense-bench/bench-small.pcap")


@pytest.fixture(scope="module")
def a():
    return pcapsense.analyze(SAMPLE)


def _texts(fig):
    return " ".join(t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_text")))


def test_timeline(a):
    fig = plots.timeline(a)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.patches) == 4                      # one bar per connection
    assert "127.0.0.1:18080" in _texts(fig)
    assert "keepalive-race" in _texts(fig) and "FIN by server" in _texts(fig)
    assert plots.timeline(a.connections).axes        # a DataFrame works too


def test_timeline_samples_beyond_limit(a):
    fig = plots.timeline(a, limit=2)
    assert len(fig.axes[0].patches) == 2
    assert "showing 2 of 4 connections" in _texts(fig)


def test_time_sequence_marks_fin_and_rst(a):
    fig = plots.time_sequence(a, 0)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    labels = _texts(fig)
    assert "FIN by server" in labels and "RST by server" in labels and "SYN by client" in labels


def test_concurrency_and_idle_gaps(a):
    fig = plots.concurrency(a)
    assert "peak 1" in _texts(fig)
    series = plots.concurrency_series(a.connections)
    assert max(y.max() for _, y in series.values()) == 1
    fig = plots.idle_gaps(a)
    assert "keep-alive timeout 1.001 s" in _texts(fig)


def test_svg_is_inline_and_escaped(a):
    svg = plots.to_svg(plots.timeline(a), prefix="t1")
    assert svg.startswith("<svg") and "<?xml" not in svg and "<metadata" not in svg
    assert 'id="t1-' in svg


def test_empty_inputs(a):
    empty = a.connections.iloc[:0]
    for fn in (plots.timeline, plots.concurrency, plots.idle_gaps):
        assert isinstance(fn(empty), Figure)


@pytest.mark.skipif(not BENCH_SMALL.exists(), reason="benchmark corpus not generated")
def test_big_capture_concurrency():
    big = pcapsense.analyze(BENCH_SMALL)
    series = plots.concurrency_series(big.connections)
    peak = int(big.connections["server_peak_concurrency"].max())
    assert max(int(y.max()) for _, y in series.values()) >= peak - 1
    assert len(plots.timeline(big).axes[0].patches) == plots.TIMELINE_LIMIT


def _sample_by_labels(df, limit):
    """sample_connections as it was written on labels (the reference)."""
    import numpy as np
    import pandas as pd
    if len(df) <= limit:
        return df
    key = df[["start"]].assign(_abn=df["abnormal"].astype(bool))
    abn = key[key["_abn"]]
    rest = key.drop(abn.index)
    abn = abn.sort_values("start").head(limit)
    room = limit - len(abn)
    if room > 0 and len(rest):
        idx = np.linspace(0, len(rest) - 1, num=min(room, len(rest))).round().astype(int)
        rest = rest.sort_values("start").iloc[np.unique(idx)]
    else:
        rest = rest.iloc[:0]
    return pd.concat([df.loc[abn.index], df.loc[rest.index]])


@pytest.mark.parametrize("seed", range(5))
def test_sample_is_the_label_based_one(seed):
    """The sample is chosen by positions; it is the rows the label-based code chose,
    ties in start time included."""
    import numpy as np
    import pandas as pd
    rng = np.random.default_rng(seed)
    for n in (1, 40, 3000):
        df = pd.DataFrame({"start": pd.to_datetime(rng.integers(0, 30, n) * 10**9, utc=True),
                           "abnormal": rng.random(n) < rng.random(), "x": np.arange(n)}, index=np.arange(n) + 9)
        for limit in (1, 10, 300):
            got, _ = plots.sample_connections(df, limit)
            pd.testing.assert_frame_equal(got, _sample_by_labels(df, limit))


def test_timeline_of_a_table_with_repeated_labels(a):
    """Two analyses' tables put together without a new index still draw (the sample
    and the servers are found by position)."""
    import pandas as pd
    both = pd.concat([a.connections, a.connections])
    fig = plots.timeline(both, limit=5)
    assert len(fig.axes[0].patches) == 5
