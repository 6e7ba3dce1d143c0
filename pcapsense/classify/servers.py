"""Stage 5, across connections: what each connection's decision needs to know of
the others, per server ("ip|port"): its peak concurrency, reset bursts, the connections
opened while one was held, later connections, and its keep-alive timeout (the median
idle time of its idle closes). `context()` over the prepared table (out of core, the
same Sweeps and held_context over the passes' files: pcapsense/bounded_context.py),
`add_context()` puts the per-row columns in the table. Vectorised: every server's
times sorted in one array and searched at once (Sweeps), groupby, never a pair of
connections compared.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .columns import with_columns
from .rules import NS

RST_BURST_NS = 10_000_000     # server resets this close together: one event (a restart, a crash)


def server_pairs(ip: pd.Series, port: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's server (address `ip`, TCP `port`) as a code, 0.. in order of first
    appearance, and per code its address and port; a missing address is one of its own.
    Addresses are factorized as stored, then the (address, port) pairs as numbers: as
    Python objects, a million distinct addresses were 70 MB of strings made only to be
    compared."""
    ip_codes, ips = pd.factorize(ip, use_na_sentinel=False)
    codes, pairs = pd.factorize(ip_codes.astype(np.int64) * 65536 + np.asarray(port).astype(np.int64))
    return codes, np.asarray(ips, dtype=object)[pairs >> 16], pairs & 0xFFFF


def server_names(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The servers ("ip|port", by code, in order of appearance) and each connection's
    server code (0..servers-1)."""
    codes, ips, ports = server_pairs(df["server_ip"], df["server_port"].to_numpy())
    names = np.array([f"{ip}|{port}" for ip, port in zip(ips.tolist(), ports.tolist())] + [None], dtype=object)[:-1]
    return names, codes


def server_keys(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each connection's server as "ip|port" (one string object per distinct server,
    none made per row) and as a code (0..servers-1)."""
    names, codes = server_names(df)
    return names[codes], codes


class Keyer:
    """Times of many servers as one sortable int64 key: server code * `span` + the time
    less `lo` (clipped to -1 .. span-1 for a query outside lo .. lo+span-2), so that one
    np.searchsorted over every server's sorted keys counts within each server. Made by
    keyer() when the codes times the span fit in an int64 (any capture shorter than a
    day with fewer than 100,000 servers, or a year with 300)."""

    def __init__(self, lo: int, span: int):
        self.lo, self.span = lo, span

    def key(self, codes: np.ndarray, t: np.ndarray) -> np.ndarray:
        return codes.astype(np.int64) * self.span + np.clip(np.asarray(t, dtype=np.int64) - self.lo, -1, self.span - 1)

    def code(self, keys: np.ndarray) -> np.ndarray:
        return keys // self.span


def keyer(ncodes: int, lo: int, hi: int) -> Keyer | None:
    """The Keyer of `ncodes` servers whose times lie in lo .. hi, or None if their keys
    would not fit in an int64."""
    span = int(hi) - int(lo) + 2
    return Keyer(int(lo), span) if (ncodes + 1) * span < (1 << 62) else None


class PerServer:
    """Times of connections sorted by server, then time: `count(codes, t, side)` says,
    per query, how many times of its server are <= t (side "right") or < t ("left"), as
    np.searchsorted over that server's sorted times would. Keyed (one search for all
    servers) when a Keyer is given, else server by server."""

    def __init__(self, codes: np.ndarray, times: np.ndarray, ncodes: int, kr: Keyer | None, keys=None):
        self.kr, self.ncodes = kr, ncodes
        if kr is not None:
            if keys is None:
                keys = kr.key(codes, times)
            keys.sort()
            self.keys = keys
            self.seg = np.searchsorted(keys, np.arange(ncodes + 1, dtype=np.int64) * kr.span, side="left")
        else:
            order = np.lexsort((times, codes))
            self.times = np.asarray(times, dtype=np.int64)[order]
            self.seg = np.searchsorted(np.asarray(codes)[order], np.arange(ncodes + 1), side="left")

    def sizes(self) -> np.ndarray:
        return np.diff(self.seg)

    def count(self, codes: np.ndarray, t: np.ndarray, side: str) -> np.ndarray:
        if self.kr is not None:
            return np.searchsorted(self.keys, self.kr.key(codes, t), side=side) - self.seg[codes]
        out = np.zeros(len(codes), dtype=np.int64)
        order = np.argsort(codes, kind="stable")
        bounds = np.flatnonzero(np.diff(codes[order])) + 1
        t = np.asarray(t)
        for ii in np.split(order, bounds) if len(order) else ():
            c = int(codes[ii[0]])
            out[ii] = np.searchsorted(self.times[self.seg[c]:self.seg[c + 1]], t[ii], side=side)
        return out

    def segments(self):
        """(code, that server's sorted times) for every server with times (unkeyed)."""
        for c in np.flatnonzero(self.sizes()).tolist():
            yield c, self.times[self.seg[c]:self.seg[c + 1]]


class Sweeps:
    """What context() counts in, per server: every connection's start and end, those of
    the connections that carried several requests (`multi`), and the close times of the
    server's resets of established connections. Built from the rows of one table
    (context()) or of every pass of an out-of-core run (pcapsense/bounded_context.py);
    `servers()` gives the per-server figures, `rows()` each connection's."""

    #: the starts of this many connections are swept at once for the peak
    CHUNK = 1 << 20

    def __init__(self, starts: PerServer, ends: PerServer, multi_starts: PerServer, multi_ends: PerServer,
                 resets: PerServer):
        self.starts, self.ends, self.multi_starts, self.multi_ends = starts, ends, multi_starts, multi_ends
        self.resets = resets

    @staticmethod
    def time_range(start, end, close_ns, server_rst) -> tuple[int, int]:
        """The first and last of the times Sweeps holds and searches for (starts, ends,
        closes or ends, resets), what keyer() needs."""
        vals = [start, end, np.where(close_ns > 0, close_ns, end), close_ns[server_rst]]
        return (min((int(v.min()) for v in vals if len(v)), default=0),
                max((int(v.max()) for v in vals if len(v)), default=0))

    @classmethod
    def of(cls, codes, start, end, close_ns, multi, server_rst, ncodes: int) -> "Sweeps":
        """The Sweeps of one table's rows (`close_ns`: _close_ns, 0 when not closed)."""
        kr = keyer(ncodes, *cls.time_range(start, end, close_ns, server_rst))
        return cls(PerServer(codes, start, ncodes, kr), PerServer(codes, end, ncodes, kr),
                   PerServer(codes[multi], start[multi], ncodes, kr), PerServer(codes[multi], end[multi], ncodes, kr),
                   PerServer(codes[server_rst], close_ns[server_rst], ncodes, kr))

    def servers(self) -> dict[str, np.ndarray]:
        """Per server code: connections, peak_concurrency (the most open at once, a start
        counted before an end at the same time: reached at a start, the starts up to it
        minus the ends before it), reused_connections, rst_burst (the most server resets
        within RST_BURST_NS)."""
        s, e, r = self.starts, self.ends, self.resets
        n = s.ncodes
        peak = np.zeros(n, dtype=np.int64)
        burst = np.zeros(n, dtype=np.int64)
        if s.kr is not None:
            kr = s.kr
            for lo in range(0, len(s.keys), self.CHUNK):
                k = s.keys[lo:lo + self.CHUNK]
                c = kr.code(k)
                open_ = (np.searchsorted(s.keys, k, side="right") - s.seg[c]) \
                    - (np.searchsorted(e.keys, k, side="left") - e.seg[c])
                np.maximum.at(peak, c, open_)
            for lo in range(0, len(r.keys), self.CHUNK):
                k = r.keys[lo:lo + self.CHUNK]
                c = kr.code(k)
                t = k - c * kr.span + kr.lo
                j = np.searchsorted(r.keys, kr.key(c, t + RST_BURST_NS), side="right")
                np.maximum.at(burst, c, j - np.arange(lo, lo + len(k)))
        else:
            ends = dict(e.segments())
            for c, st in s.segments():
                peak[c] = int((np.searchsorted(st, st, side="right") - np.searchsorted(ends[c], st, side="left")).max())
            for c, rst_t in r.segments():
                j = np.searchsorted(rst_t, rst_t + RST_BURST_NS, side="right")
                burst[c] = int((j - np.arange(len(rst_t))).max())
        return {"connections": s.sizes(), "peak_concurrency": peak, "reused_connections": self.multi_starts.sizes(),
                "rst_burst": burst}

    def rows(self, codes, start, end, close_ns, multi, server_rst) -> tuple[np.ndarray, ...]:
        """Per connection: connections open to its server when it closed (started
        before, ended at/after), whether more were opened to that server afterwards,
        the connections carrying several requests open then (not itself), and for a
        server reset, the server's resets within RST_BURST_NS of it."""
        close = np.where(close_ns > 0, close_ns, end)
        started = self.starts.count(codes, close, "right")
        conc = started - self.ends.count(codes, close, "left")
        later = started < self.starts.sizes()[codes]
        del started
        reused_open = self.multi_starts.count(codes, close, "right") - self.multi_ends.count(codes, close, "left")
        reused_open -= multi & (start <= close)
        rst_burst = np.zeros(len(codes), dtype=np.int64)
        if server_rst.any():
            c, t = codes[server_rst], close_ns[server_rst]
            rst_burst[server_rst] = self.resets.count(c, t + RST_BURST_NS, "right") \
                - self.resets.count(c, t - RST_BURST_NS, "left")
        return conc, later, reused_open, rst_burst


def server_rows(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The columns Sweeps reads of each row: start, end, _close_ns, whether it carried
    several requests, whether the server reset it when established (not a refused SYN)."""
    requests = df["http_requests"].fillna(0).to_numpy() if "http_requests" in df else np.zeros(len(df))
    server_rst = ((df["close_kind"] == "RST") & (df["closer"] == "server")
                  & ~df["closer_state"].isin(["LISTEN", "NONE", "SYN_RECEIVED"])).to_numpy(dtype=bool)
    return (df["_start_ns"].to_numpy(), df["_end_ns"].to_numpy(), df["_close_ns"].to_numpy(),
            np.asarray(requests >= 2, dtype=bool), server_rst)


def _server_context(df: pd.DataFrame, names: np.ndarray, codes: np.ndarray) \
        -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per server (`names`/`codes`: server_names()): peak concurrency, largest burst of
    server resets within 10 ms; per connection: connections open to its server when it
    closed, whether the client opened more connections to that server afterwards, the
    connections carrying several requests open when it closed, its reset burst."""
    n = len(df)
    if not n:
        z = np.zeros(0, dtype=np.int64)
        return {}, z, np.zeros(0, dtype=bool), z.copy(), z.copy()
    start, end, close_ns, multi, server_rst = server_rows(df)
    codes = np.asarray(codes, dtype=np.int64)
    sw = Sweeps.of(codes, start, end, close_ns, multi, server_rst, len(names))
    conc, later, reused_open, rst_burst = sw.rows(codes, start, end, close_ns, multi, server_rst)
    return server_dict(names, sw.servers()), conc, later, reused_open, rst_burst


def server_dict(names, figures: dict[str, np.ndarray]) -> dict:
    """Context.servers: per server key (`names`, by code), its figures (Sweeps.servers)."""
    cols = [(k, figures[k].tolist()) for k in ("peak_concurrency", "rst_burst", "connections", "reused_connections")]
    return {name: {k: v[c] for k, v in cols} for c, name in enumerate(list(names)) if cols[2][1][c]}


def _held_context(df: pd.DataFrame, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """held_context() of the table's rows, grouped by server and client address."""
    return held_context(*held_rows(df), df["_start_ns"].to_numpy(), df["_end_ns"].max(), [keys, df["client_ip"].to_numpy()])


def held_rows(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: whether the server closed first (FIN) and the client kept the connection
    in CLOSE_WAIT, the server's FIN time, and the client's FIN delay (s; NaN: none)."""
    held = (df["first_fin_by"] == "server").to_numpy(dtype=bool) & (df["_fin_ts"].to_numpy() > 0) \
        & (df["close_kind"] == "FIN").to_numpy(dtype=bool)
    return held, df["_fin_ts"].to_numpy(), df["_client_fin_delay_s"].to_numpy()


def held_context(held, fin, delay, start, end_ns, by: list) -> tuple[np.ndarray, np.ndarray]:
    """For each connection the server closed first (FIN) and the client kept in
    CLOSE_WAIT (`held`, held_rows()): how many new connections the same client opened to
    the same server (the rows grouped `by` those two) while it held this one (until its
    own FIN, or the capture's end `end_ns`), and the longest delay with which that
    client closed its other connections after the server's FIN (a pool that closes dead
    connections lazily, at its next checkout)."""
    n = len(held)
    opened = np.zeros(n, dtype=np.int64)
    lazy = np.zeros(n)
    if not held.any():
        return opened, lazy
    until = np.where(np.isnan(delay), end_ns, fin + np.nan_to_num(delay) * NS)
    lazy_close = np.where(held & (delay >= 0.1), delay, 0.0)
    groups = pd.Series(np.arange(n)).groupby(by, sort=False, dropna=False).indices
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
        return context_columns(self.conc_at_close[g], self.later[g], self.reused_open[g], self.rst_burst[g],
                               self.opened_while_held[g], self.lazy_close_s[g])

    def peak_concurrency(self) -> list:
        """Per row, its server's peak concurrency."""
        return [self.servers.get(k, {}).get("peak_concurrency", 0) for k in self.keys]


def context_columns(conc, later, reused_open, rst_burst, opened, lazy) -> dict:
    """The per-row context columns, by name (Sweeps.rows() and held_context()'s
    results, in their order)."""
    return {"reused_open_at_close": reused_open, "concurrent_at_close": conc, "later_conns_to_server": later,
            "server_rst_burst": rst_burst, "_client_opened_while_held": opened, "_client_lazy_close_s": lazy}


def context(df: pd.DataFrame) -> Context:
    """The cross-connection context of every row of `df` (the prepared table of every
    connection; an out-of-core run counts it from its passes' files:
    pcapsense/bounded_context.py)."""
    names, key_codes = server_names(df)
    keys = names[key_codes]
    ctx, conc, later, reused_open, rst_burst = _server_context(df, names, key_codes)
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
