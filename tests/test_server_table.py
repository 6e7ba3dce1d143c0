"""The reports' per-server counting (pcapsense/render/server_table.py) against the pandas
groupby and value_counts it replaced, on random tables with many ties, IPv6 and
missing addresses; the Markdown and HTML server tables of a table with a server per
connection (an address scan) against the per-group code; the concurrency line's
thinning (plots._step_points)."""

import numpy as np
import pandas as pd
import pytest

from pcapsense import plots
from pcapsense.render import html
from pcapsense.render.server_table import Servers, host


def _table(rng, n, k, dtype, missing=False):
    ips = np.array([f"10.0.{i // 256}.{i % 256}" if i % 7 else f"2001:db8::{i:x}" for i in range(k)], dtype=object)
    ip = ips[rng.integers(0, k, n)]
    if missing:
        ip[rng.integers(0, n, 5)] = None
    return pd.DataFrame({"server_ip": pd.Series(ip, dtype=dtype),
                         "server_port": rng.choice([80, 443, 8080], n).astype(np.int32),
                         "abnormal": rng.random(n) < 0.3})


def _keys(df):
    """The "host:port" text of each row, as the reports made it before."""
    return df["server_ip"].astype(str).map(host) + ":" + df["server_port"].astype(str)


@pytest.mark.parametrize("dtype", [object, "str"])
@pytest.mark.parametrize("seed", range(12))
def test_servers_are_the_groupby_they_replace(seed, dtype):
    rng = np.random.default_rng(seed)
    df = _table(rng, int(rng.integers(1, 3000)), int(rng.integers(1, 400)), dtype, missing=seed % 3 == 0)
    keys = _keys(df)
    sv = Servers.of(df)
    groups = [(key, g.index.to_numpy()) for key, g in df.groupby(keys, sort=False)]
    assert sv.keys() == [key for key, _ in groups]
    for code, (_, rows) in enumerate(groups):
        np.testing.assert_array_equal(sv.rows(code), rows)
    assert sv.keys(sv.busiest()) == list(keys.value_counts().index)
    abn = df["abnormal"].to_numpy()
    ranked = sorted(((int(abn[r].sum()), len(r), key) for key, r in groups), key=lambda t: (-t[0], -t[1]))
    assert sv.keys(sv.ranked(abn, 20)) == [key for *_, key in ranked[:20]]
    ranked.sort(key=lambda t: (-t[0], -t[1], t[2]))
    assert sv.keys(sv.ranked(abn, 30, by_key=True)) == [key for *_, key in ranked[:30]]


def test_a_missing_address_is_a_server_of_its_own():
    df = pd.DataFrame({"server_ip": ["10.0.0.1", None, "2001:db8::1", "10.0.0.1"],
                       "server_port": np.array([80, 80, 443, 80], dtype=np.int32)})
    sv = Servers.of(df)
    assert sv.keys() == ["10.0.0.1:80", "nan:80", "[2001:db8::1]:443"] == list(dict.fromkeys(_keys(df)))
    assert sv.count.tolist() == [2, 1, 1]


def _sweep(n):
    """A table of `n` connections, one per server, a few abnormal, as an address scan."""
    rng = np.random.default_rng(1)
    ip = pd.Series([f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(n)], dtype="str")
    return pd.DataFrame({"server_ip": ip, "server_port": np.full(n, 443, dtype=np.int32),
                         "abnormal": rng.random(n) < 0.01, "cause": "incomplete",
                         "http_host": None, "tls_sni": None, "client_ip": "198.51.100.7",
                         "server_keepalive_timeout_s": np.nan, "server_keepalive_closes": 0,
                         "server_peak_concurrency": 1})


def test_the_html_server_table_of_a_sweep_is_the_per_group_one():
    df = _sweep(3000)
    got, more = html._servers(df, True)
    keys = _keys(df)
    want = sorted(({"server": k, "connections": len(g), "abnormal": int(g["abnormal"].sum())}
                   for k, g in df.groupby(keys, sort=False)),
                  key=lambda r: (-r["abnormal"], -r["connections"], r["server"]))
    assert [{k: r[k] for k in ("server", "connections", "abnormal")} for r in got] == want[:30]
    assert more == 3000 - 30


def test_the_concurrency_line_is_thinned_and_keeps_its_peak():
    rng = np.random.default_rng(3)
    x = np.sort(rng.random(200_000) * 60)
    y = np.cumsum(rng.choice([1, -1], len(x)))
    tx, ty = plots._step_points(x, y)
    assert len(tx) <= plots.STEP_POINTS and ty.max() == y.max() and ty.min() == y.min()
    assert tx[0] == x[0] and tx[-1] == x[-1] and np.all(np.diff(tx) >= 0)
    assert set(zip(tx.tolist(), ty.tolist())) <= set(zip(x.tolist(), y.tolist()))
    sx, sy = plots._step_points(x[:100], y[:100])
    np.testing.assert_array_equal(sx, x[:100])
    np.testing.assert_array_equal(sy, y[:100])
