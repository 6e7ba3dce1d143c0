"""The cross-connection context counted two ways against a reference: classify's
Sweeps (every server's sorted times, searched at once, or server by server when the
keys would not fit), and an out-of-core run's (pcapsense/bounded_context.py: passes'
files, k-way merged stream order). The reference is the per-server loop the context
was first written as (kept here, for tests only; the held connections' counts, the
same code in and out of core, are the in-memory ones); the tables are random, with many
ties (times on a coarse grid), resets, several requests, held connections."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pcapsense import bounded_context
from pcapsense.classify import servers
from pcapsense.classify.rules import NS
from pcapsense.classify.servers import RST_BURST_NS


def server_context(df: pd.DataFrame, keys: np.ndarray, codes: np.ndarray) \
        -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """Per server (`keys`/`codes`: server_keys()): peak concurrency, largest burst of
    server resets within 10 ms; per connection: connections open to its server when it
    closed, whether the client opened more connections to that server afterwards, and
    the connections carrying several requests open when it closed."""
    ctx: dict = {}
    conc_at_close = np.zeros(len(df), dtype=np.int64)
    reused_open = np.zeros(len(df), dtype=np.int64)
    later = np.zeros(len(df), dtype=bool)
    rst_burst = np.zeros(len(df), dtype=np.int64)
    if not len(df):
        return ctx, conc_at_close, later, reused_open, rst_burst
    start = df["_start_ns"].to_numpy()
    end = df["_end_ns"].to_numpy()
    close = df["_close_ns"].to_numpy()
    close = np.where(close > 0, close, end)
    # the few columns read per server, as arrays (a row slice of the table per server
    # copied every column: the whole table, for a capture with one busy server)
    requests = df["http_requests"].fillna(0).to_numpy() if "http_requests" in df else np.zeros(len(df))
    # resets of established connections (not refused SYNs)
    server_rst = ((df["close_kind"] == "RST") & (df["closer"] == "server")
                  & ~df["closer_state"].isin(["LISTEN", "NONE", "SYN_RECEIVED"])).to_numpy(dtype=bool)
    close_ns = df["_close_ns"].to_numpy()
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    for ii in np.split(order, bounds):
        key = keys[ii[0]]
        s, e = np.sort(start[ii]), np.sort(end[ii])
        # concurrency when each connection closed: started before, ended at/after
        c_at = np.searchsorted(s, close[ii], side="right") - np.searchsorted(e, close[ii], side="left")
        conc_at_close[ii] = c_at
        later[ii] = np.searchsorted(s, close[ii], side="right") < len(s)
        # peak: the most open at once, a start counted before an end at the same time;
        # reached at a start: the starts up to it minus the ends before it
        peak = int((np.searchsorted(s, s, side="right") - np.searchsorted(e, s, side="left")).max())
        multi = requests[ii] >= 2
        reused = int(multi.sum())
        if reused:
            # connections carrying several requests that were open when each one closed
            rs, re_ = np.sort(start[ii][multi]), np.sort(end[ii][multi])
            reused_open[ii] = np.searchsorted(rs, close[ii], side="right") - np.searchsorted(re_, close[ii], side="left")
            reused_open[ii] -= multi & (start[ii] <= close[ii])      # not itself
        rst_t = np.sort(close_ns[ii][server_rst[ii]])
        burst = 0
        if len(rst_t):
            j = np.searchsorted(rst_t, rst_t + RST_BURST_NS, side="right")
            burst = int((j - np.arange(len(rst_t))).max())
            mine = ii[server_rst[ii]]
            t = close_ns[mine]
            rst_burst[mine] = np.searchsorted(rst_t, t + RST_BURST_NS, side="right") \
                - np.searchsorted(rst_t, t - RST_BURST_NS, side="left")
        ctx[key] = {"peak_concurrency": peak, "rst_burst": burst, "connections": len(ii),
                    "reused_connections": reused}
    return ctx, conc_at_close, later, reused_open, rst_burst


def _table(rng, n: int, servers_n: int = 4, clients: int = 5, grid: int = 5_000_000) -> pd.DataFrame:
    t0 = 1_700_000_000 * NS
    start = t0 + rng.integers(0, 400, n) * grid
    end = start + rng.integers(0, 60, n) * grid
    close = np.where(rng.random(n) < 0.2, 0, np.minimum(end, start + rng.integers(0, 60, n) * grid))
    fin = np.where(rng.random(n) < 0.5, start + rng.integers(0, 30, n) * grid, 0)
    delay = np.where(rng.random(n) < 0.3, np.nan, rng.choice([0.0, 0.05, 0.1, 0.3, 2.0], n))
    req = pd.array(np.where(rng.random(n) < 0.2, None, rng.integers(0, 4, n)).tolist(), dtype="Int64")
    df = pd.DataFrame({
        "stream": np.arange(n), "first_frame": np.sort(rng.choice(10 * n, n, replace=False)) + 1,
        "server_ip": rng.choice([f"10.0.0.{i}" for i in range(servers_n)], n),
        "server_port": rng.choice([80, 443], n).astype(np.int32),
        "client_ip": rng.choice([f"192.168.1.{i}" for i in range(clients)], n),
        "_start_ns": start, "_end_ns": end, "_close_ns": close, "http_requests": req,
        "close_kind": rng.choice(["FIN", "RST", "none"], n), "closer": rng.choice(["client", "server", "none"], n),
        "closer_state": rng.choice(["ESTABLISHED", "LISTEN", "SYN_RECEIVED", "CLOSE_WAIT"], n),
        "first_fin_by": rng.choice(["client", "server", "none"], n), "_fin_ts": fin, "_client_fin_delay_s": delay,
        "_server_last_data_ns": close - rng.integers(0, 3, n) * 20_000_000, "_last_data_ns": close,
        "http_server_keep_alive": pd.array(rng.random(n) < 0.7, dtype="boolean"),
        "http_client_keep_alive": pd.array(rng.random(n) < 0.7, dtype="boolean"),
        "http_user_agent": rng.choice(["curl", "python-requests", None], n), "_exchange_times": [None] * n,
    })
    df.loc[df["close_kind"] != "none", "_close_ns"] = np.maximum(df["_close_ns"], df["_start_ns"])  # (closed: a time)
    return df


def _reference(df):
    keys, codes = servers.server_keys(df)
    ctx, conc, later, reused, burst = server_context(df, keys, codes)
    opened, lazy = servers._held_context(df, keys)      # (the held counts are not Sweeps': as they were)
    return keys, ctx, {"concurrent_at_close": conc, "later_conns_to_server": later, "reused_open_at_close": reused,
                       "server_rst_burst": burst, "_client_opened_while_held": opened, "_client_lazy_close_s": lazy}


def _same(got: dict, want: dict):
    for name, w in want.items():
        np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(w), err_msg=name)
        assert np.asarray(got[name]).dtype == np.asarray(w).dtype, name


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("keyed", [True, False])
def test_sweeps_count_as_the_per_server_loop(seed, keyed, monkeypatch):
    made = []
    real = servers.keyer
    monkeypatch.setattr(servers, "keyer", lambda *a: made.append(real(*a) if keyed else None) or made[-1])
    rng = np.random.default_rng(seed)
    df = _table(rng, int(rng.integers(1, 400)), servers_n=int(rng.integers(1, 6)))
    keys, ctx, want = _reference(df)
    c = servers.context(df)
    assert c.servers == ctx
    assert list(c.keys) == list(keys)
    _same(c.rows(), want)
    assert c.capture_end_s == df["_end_ns"].max() / NS
    assert made and all((k is not None) == keyed for k in made)


def test_keys_that_would_not_fit_are_counted_server_by_server():
    assert servers.keyer(3, 0, 10 ** 9) is not None
    assert servers.keyer(10 ** 6, 0, 10 ** 16) is None          # (a million servers over four months)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("passes", [2, 5])
def test_the_out_of_core_context_is_the_in_memory_one(seed, passes, tmp_path):
    rng = np.random.default_rng(100 + seed)
    df = _table(rng, int(rng.integers(passes, 500)), servers_n=int(rng.integers(1, 6)))
    keys, ctx, want = _reference(df)
    shard = rng.integers(0, passes, len(df))
    shard[:passes] = np.arange(passes)                # (no pass empty)
    summaries = []
    for k in range(passes):
        part = df[shard == k].reset_index(drop=True)
        summaries.append(bounded_context.spill(part, bounded_context.spill_path(str(tmp_path), "ctx", k)))
    owners = bounded_context.owners([bounded_context.spill_path(str(tmp_path), "ctx", k) + ".ff" for k in range(passes)],
                                    [s.n for s in summaries])
    np.testing.assert_array_equal(owners, shard)
    c = bounded_context.Context(str(tmp_path), summaries)
    c.build()
    assert c.servers == ctx
    assert c.capture_end_s == df["_end_ns"].max() / NS
    for k in range(passes):
        mine = np.flatnonzero(shard == k)
        pc = c.of_pass(k)
        with pc.inputs() as z:
            assert list(pc.names[z["code"]]) == list(keys[mine])
        _same(pc.rows(), {name: w[mine] for name, w in want.items()})
        np.testing.assert_array_equal(c.peak[c.codes_of(k)], [ctx[key]["peak_concurrency"] for key in keys[mine]])


def test_the_merge_of_first_frames_reads_in_blocks_and_windows(tmp_path, monkeypatch):
    monkeypatch.setattr(bounded_context, "MERGE_BLOCK", 3)
    monkeypatch.setattr(bounded_context, "MERGE_WINDOW", 50)
    rng = np.random.default_rng(7)
    frames = rng.choice(1000, 200, replace=False) + np.repeat([1, 10 ** 6], 100)    # (a gap of windows)
    shard = rng.integers(0, 4, 200)
    paths = []
    for k in range(4):
        p = str(tmp_path / f"{k}.ff")
        np.sort(frames[shard == k]).astype(np.int64).tofile(p)
        paths.append(p)
    got = bounded_context.owners(paths, [int((shard == k).sum()) for k in range(4)])
    np.testing.assert_array_equal(got, shard[np.argsort(frames)])
