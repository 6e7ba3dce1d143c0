"""Stage 5, across connections: what each connection's decision needs to know of
the others, per server ("ip|port"): its peak concurrency, reset bursts, the connections
opened while one was held, later connections, and its keep-alive timeout (the median
idle time of its idle closes). `context()` over the prepared table (or, out of core,
over its CONTEXT_COLUMNS of every connection: pcapsense/bounded.py), `add_context()`
puts the per-row columns in the table. Vectorised: sorted sweeps and groupby, never a
pair of connections compared.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .columns import with_columns
from .rules import NS

RST_BURST_NS = 10_000_000     # server resets this close together: one event (a restart, a crash)


def server_keys(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each connection's server as "ip|port" (one string object per distinct server,
    none made per row) and as a code (0..servers-1)."""
    # (factorized as stored: as Python objects, a million distinct clients' addresses
    # were 70 MB of strings made only to be compared)
    ip_codes, ips = pd.factorize(df["server_ip"])
    ips = np.asarray(ips, dtype=object)
    pair = ip_codes.astype(np.int64) * 65536 + df["server_port"].to_numpy().astype(np.int64)
    codes, pairs = pd.factorize(pair)
    names = np.array([f"{ips[p >> 16]}|{p & 0xFFFF}" for p in pairs.tolist()] + [None], dtype=object)
    return names[codes], codes


def _server_context(df: pd.DataFrame, keys: np.ndarray, codes: np.ndarray) \
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


def _held_context(df: pd.DataFrame, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each connection the server closed first (FIN) and the client kept in
    CLOSE_WAIT: how many new connections the same client opened to the same server while
    it held this one (until its own FIN, or the capture's end), and the longest delay
    with which that client closed its other connections after the server's FIN (a pool
    that closes dead connections lazily, at its next checkout)."""
    n = len(df)
    opened = np.zeros(n, dtype=np.int64)
    lazy = np.zeros(n)
    held = (df["first_fin_by"] == "server").to_numpy(dtype=bool) & (df["_fin_ts"].to_numpy() > 0) \
        & (df["close_kind"] == "FIN").to_numpy(dtype=bool)
    if not held.any():
        return opened, lazy
    fin = df["_fin_ts"].to_numpy()
    delay = df["_client_fin_delay_s"].to_numpy()
    end_ns = df["_end_ns"].max()
    until = np.where(np.isnan(delay), end_ns, fin + np.nan_to_num(delay) * NS)
    start = df["_start_ns"].to_numpy()
    lazy_close = np.where(held & (delay >= 0.1), delay, 0.0)
    client = df["client_ip"].to_numpy()
    groups = pd.Series(np.arange(n)).groupby([keys, client], sort=False, dropna=False).indices
    for idx in groups.values():
        h = idx[held[idx]]
        if not len(h):
            continue
        st = np.sort(start[idx])
        opened[h] = np.searchsorted(st, until[h], side="right") - np.searchsorted(st, fin[h], side="right")
        # the longest lazy close among the group's other connections: the longest, or
        # for the one that has it the second longest
        top = np.sort(lazy_close[idx])[::-1][:2]
        if top[0] > 0:
            second = top[1] if len(top) > 1 else 0.0
            lazy[h] = np.where(lazy_close[h] == top[0], second, top[0])
    return opened, lazy


def keepalive_servers(df: pd.DataFrame) -> pd.DataFrame:
    """One row per server that showed a keep-alive timeout (its first connection in
    table order): server_ip, server_port, server_keepalive_timeout_s,
    server_keepalive_closes."""
    ka = df[["server_ip", "server_port", "server_keepalive_timeout_s", "server_keepalive_closes"]]
    return ka.dropna(subset=["server_keepalive_timeout_s"]).drop_duplicates(["server_ip", "server_port"])


#: the columns the cross-connection context reads (context(), pool.claims()):
#: about 80 bytes a connection, all an out-of-core run keeps of every connection
CONTEXT_COLUMNS = ("stream", "first_frame", "server_ip", "server_port", "client_ip", "_start_ns", "_end_ns",
                   "_close_ns", "_server_last_data_ns", "_last_data_ns", "http_requests", "close_kind", "closer",
                   "http_server_keep_alive", "http_client_keep_alive", "closer_state", "first_fin_by", "_fin_ts",
                   "_client_fin_delay_s", "http_user_agent", "_exchange_times")


class Context:
    """What each connection's decision needs to know of the others (context()):
    `keys` (per row, its server as "ip|port"), `servers` (per server key: peak
    concurrency, reset burst, connections, reused connections), per row
    `conc_at_close`, `later`, `reused_open`, `rst_burst`, `opened_while_held`,
    `lazy_close_s` (rows() names them as columns), and the capture's end in seconds."""

    def __init__(self, keys, servers, conc_at_close, later, reused_open, capture_end_s, rst_burst,
                 opened_while_held, lazy_close_s):
        self.keys, self.servers = keys, servers
        self.conc_at_close, self.later, self.reused_open = conc_at_close, later, reused_open
        self.rst_burst, self.opened_while_held, self.lazy_close_s = rst_burst, opened_while_held, lazy_close_s
        self.capture_end_s = capture_end_s

    def rows(self, g=slice(None)) -> dict:
        """The per-row context columns of rows `g` (add_context() writes them)."""
        return {"reused_open_at_close": self.reused_open[g], "concurrent_at_close": self.conc_at_close[g],
                "later_conns_to_server": self.later[g], "server_rst_burst": self.rst_burst[g],
                "_client_opened_while_held": self.opened_while_held[g], "_client_lazy_close_s": self.lazy_close_s[g]}

    def peak_concurrency(self) -> list:
        """Per row, its server's peak concurrency."""
        return [self.servers.get(k, {}).get("peak_concurrency", 0) for k in self.keys]


def context(df: pd.DataFrame) -> Context:
    """The cross-connection context of every row of `df` (the prepared table of every
    connection, or its CONTEXT_COLUMNS in table order)."""
    keys, key_codes = server_keys(df)
    ctx, conc, later, reused_open, rst_burst = _server_context(df, keys, key_codes)
    opened, lazy = _held_context(df, keys)
    return Context(keys, ctx, conc, later, reused_open, df["_end_ns"].max() / NS, rst_burst, opened, lazy)


def add_context(df: pd.DataFrame, columns: dict) -> pd.DataFrame:
    """`df` with the context's per-row columns (Context.rows()), in the table's column
    order."""
    return with_columns(df, columns)


def keepalive_timeouts(keys: np.ndarray, idle_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, its server's keep-alive timeout (the median of the idle closes' idle
    times, decide()'s `_idle_s`) and how many idle closes it rests on."""
    ka = pd.Series(idle_s).groupby(keys).agg(["median", "std", "count"])
    return ka["median"].reindex(keys).to_numpy(), ka["count"].reindex(keys).fillna(0).astype(np.int64).to_numpy()
