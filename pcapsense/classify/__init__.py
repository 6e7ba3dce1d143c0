"""Stage 5: classify every connection with a cause from ../shared/taxonomy.md.

`run()` merges the TCP columns with the application facts, adds the cross-connection
context of each server (concurrency, reset bursts, inferred keep-alive timeout), and
applies the rules of `rules.py` in order; the first match is the `cause`, the others are
`alternatives`. What the Python client saw and the fix come from `advice.py`.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..memory import release, shared_strings
from . import advice, pool, vector
from .rules import RULES, Facts, Match, idle_threshold_s, tls_exchange_view

NS = 1_000_000_000
RST_BURST_NS = 10_000_000     # server resets this close together: one event (a restart, a crash)
PHASES = ["tcp-handshake", "tls-handshake", "request", "awaiting-response", "response", "idle", "tunnel",
          "data", "open"]


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


def _phase(f: Facts) -> str:
    if f.close_kind == "none":
        return "tcp-handshake" if f.conn_state in ("S0", "SH", "SHR", "RSTOS0") else "open"
    if f.closer_state in ("SYN_SENT", "SYN_RECEIVED", "LISTEN", "NONE") and f.conn_state in ("REJ", "S0", "RSTOS0", "SH"):
        return "tcp-handshake"
    if f.peer_state in ("SYN_SENT", "LISTEN"):
        return "tcp-handshake"
    if f.app_protocol == "http-proxy-tunnel" and f.proxy_connect_status and 200 <= f.proxy_connect_status < 300 \
            and not f.tls:
        return "tunnel"
    if f.tls and not f.tls_handshake_complete:
        return "tls-handshake"
    if f.http:
        if f.http_last_request_complete is False:
            return "request"
        if f.awaiting_response:
            return "awaiting-response"
        if f.response_flowing:
            return "response"
        return "idle"
    if f.app_protocol == "http-proxy-tunnel":
        return "tunnel"
    return "data"


_ODD_STATUS = re.compile(r"(?:^|,)(?:4\d\d|5\d\d)")


def _fast_path(df: pd.DataFrame) -> np.ndarray:
    """Vectorised decision for the connections no specific rule can claim: a FIN
    exchange (Zeek SF, no RST), plain HTTP/1 or no payload, every request answered with
    an ordinary status, and the client closing or the server closing after the answer.
    Returns the cause ('graceful' / 'idle-close') or '' (= run the rules)."""
    n = len(df)
    sf = (df["conn_state"] == "SF").to_numpy() & (df["close_kind"] == "FIN").to_numpy() \
        & ~df["first_rst_frame"].notna().to_numpy()
    proto = df["app_protocol"].to_numpy()
    answered = (df["http_unanswered"].fillna(0).to_numpy() == 0) \
        & df["http_last_response_complete"].fillna(True).to_numpy().astype(bool) \
        & df["http_last_request_complete"].fillna(True).to_numpy().astype(bool)
    # (each distinct status list matched once: a flood's million rows have none)
    codes, lists = pd.factorize(df["http_statuses"].to_numpy(dtype=object), use_na_sentinel=True)
    odd_list = np.array([bool(_ODD_STATUS.search(str(x))) for x in lists] + [False], dtype=bool)
    odd_status = odd_list[codes]                 # (-1, no list: the appended False)
    plain = (proto == "http1") | (proto == "none")
    ok = sf & plain & answered & ~odd_status & (df["retransmissions"].to_numpy() < 3) \
        & ~(df["client_state"] == "CLOSE_WAIT").to_numpy()
    closer = df["closer"].to_numpy(dtype=object)
    idle = df["idle_before_close_s"].to_numpy()
    rtt = df["rtt_ms"].fillna(1.0).to_numpy() / 1000
    ka = df["http_server_keep_alive"].fillna(False).to_numpy().astype(bool) \
        & df["http_client_keep_alive"].fillna(True).to_numpy().astype(bool)
    cfin = df["_client_fin_delay_s"].to_numpy()
    prompt = ~(cfin >= 1.0)                      # NaN-safe: the client closed promptly
    out = np.full(n, "", dtype=object)
    client_first = ok & (closer == "client")
    out[client_first] = "graceful"               # (the pool-overflow pass may still claim some)
    server_first = ok & (closer == "server") & prompt
    idle_close = server_first & ka & (idle >= idle_threshold_s(rtt))
    out[idle_close] = "idle-close"
    out[server_first & ~idle_close & ~ka] = "graceful"
    return out


TIMES_DTYPE = np.dtype([("fin_ts", "<i8"), ("rst_ts", "<i8"), ("first_ts", "<i8"), ("last_ts", "<i8"),
                        ("d", [("last_data_ts", "<i8"), ("last_data_frame", "<i8"), ("first_fin_ts", "<i8"),
                               ("first_alert_frame", "<i8"),
                               ("first_alert_ts", "<i8"), ("last_msg_ts", "<i8"),
                               ("last_msg_frame", "<i8"), ("last_msg12_ts", "<i8"),
                               ("last_msg12_frame", "<i8")], (2,))])


def stream_times(streams: np.ndarray) -> np.ndarray:
    """The only fields of the engine's stream rows the classifier reads (so the caller
    can let the 856-byte rows go before classifying)."""
    out = np.empty(len(streams), dtype=TIMES_DTYPE)
    for f in ("fin_ts", "rst_ts", "first_ts", "last_ts"):
        out[f] = streams[f]
    for f in ("last_data_ts", "last_data_frame", "first_fin_ts", "first_alert_frame", "first_alert_ts",
              "last_msg_ts", "last_msg_frame", "last_msg12_ts", "last_msg12_frame"):
        out["d"][f] = streams["d"][f]
    return out


#: connections whose rule input rows (dicts of every column) exist at once: memory for
#: those dicts stays bounded however many connections need the rules
SLOW_CHUNK = 1024


def _row_dicts(arrays: dict, ix: np.ndarray) -> dict[int, dict]:
    """The rows `ix` of the columns `arrays` (name -> the column's array) as
    {row: {column: value}} for the rules, the values as Series.to_numpy() gives them
    and None for every missing one (what rules.Facts expects).
    Nullable integers become Python ints (NA -> None in Facts), not floats: frame
    numbers, TTLs and nanosecond times stay exact in the rules and in their text."""
    values = []
    for a in arrays.values():
        part = a.take(ix)
        vals = (part.astype(object) if isinstance(part.dtype, pd.Int64Dtype) else part.to_numpy()).tolist()
        missing = np.flatnonzero(pd.isna(part))
        for k in missing.tolist():       # every kind of missing (NaN, NaT, NA) as None,
            vals[k] = None               # once per column here, not per attribute read
        values.append(vals)
    cols = list(arrays)
    return dict(zip(ix.tolist(), (dict(zip(cols, row)) for row in zip(*values))))


def with_columns(df: pd.DataFrame, columns: dict) -> pd.DataFrame:
    """`df` with `columns` (name -> array, list or Series on df's index): a column it
    has is replaced in its place, a new one is added at the end, in `columns`' order.
    One concat instead of a __setitem__ per column: pandas copies every value set and
    reorganises its blocks each time (0.4 ms a column on a 6-connection capture, 6 ms
    at a million connections); concat copies neither `df`'s columns nor the new ones."""
    for name in [c for c in columns if c in df.columns]:
        df[name] = columns.pop(name)
    if not columns:
        return df
    return pd.concat([df, pd.DataFrame(columns, index=df.index, copy=False)], axis=1)


def _app_columns(df: pd.DataFrame, app: pd.DataFrame) -> dict:
    """The application facts (one row per stream that carried payload) as typed columns
    for `df`'s rows (a join would copy every TCP column too). Each column is taken out of
    `app` as it is made, so the facts are not held twice."""
    from ..app.facts import COLUMNS as APP_COLUMNS
    pos = app.index.get_indexer(df["stream"].to_numpy())          # -1: no payload
    missing = pos < 0
    none_present = bool(missing.all())
    cols = {}
    for col, kind in APP_COLUMNS.items():
        src = app.pop(col).array if col in app else None
        cols[col] = _app_column(src, pos, missing, none_present, kind, df.index)
        del src
    if "app_protocol" in cols:
        cols["app_protocol"] = cols["app_protocol"].fillna("none")
    return cols


def _app_column(src, pos: np.ndarray, missing: np.ndarray, none_present: bool, kind: str,
                index: pd.Index) -> pd.Series:
    """One application column of the table: `src` (the facts' array, None when no row
    has the column) taken at `pos` (-1: the connection has no facts), as its kind's
    dtype. Built from numpy arrays: a flood's million connections without payload take
    no per-element pandas conversion."""
    n = len(pos)
    if src is None or none_present:
        if kind == "bool":
            return pd.Series(pd.arrays.BooleanArray(np.zeros(n, bool), np.ones(n, bool)), index=index)
        if kind == "int":
            return pd.Series(pd.arrays.IntegerArray(np.zeros(n, np.int64), np.ones(n, bool)), index=index)
        # (text: None; an "obj" column's missing rows are NaN, as take() fills them)
        return pd.Series(np.full(n, None if kind == "str" else np.nan, dtype=object), index=index, dtype=object)
    at = np.where(missing, 0, pos)
    if kind == "bool" and isinstance(src, pd.arrays.BooleanArray):
        return pd.Series(pd.arrays.BooleanArray(src._data.take(at), src._mask.take(at) | missing), index=index)
    if kind == "int" and isinstance(src, pd.arrays.IntegerArray) and src.dtype == "Int64":
        return pd.Series(pd.arrays.IntegerArray(src._data.take(at), src._mask.take(at) | missing), index=index)
    s = pd.Series(src.take(pos, allow_fill=True), index=index)
    if kind == "bool":
        if not isinstance(s.dtype, pd.BooleanDtype):
            s = s.astype("boolean")
    elif kind == "int":
        if not isinstance(s.dtype, pd.Int64Dtype):      # (facts_frame's are already)
            s = pd.to_numeric(s, errors="coerce").astype("Int64")
    elif kind == "str":
        s = pd.Series(shared_strings(s), index=index, dtype=object)
    return s


#: the columns the cross-connection context reads (context(), pool.claims()):
#: about 80 bytes a connection, all an out-of-core run keeps of every connection
CONTEXT_COLUMNS = ("stream", "first_frame", "server_ip", "server_port", "client_ip", "_start_ns", "_end_ns",
                   "_close_ns", "_server_last_data_ns", "_last_data_ns", "http_requests", "close_kind", "closer",
                   "http_server_keep_alive", "http_client_keep_alive", "closer_state", "first_fin_by", "_fin_ts",
                   "_client_fin_delay_s", "http_user_agent", "_exchange_times")
RESULT_COLUMNS = ("cause", "confidence", "evidence_frames", "alternatives", "python_error", "fix", "fix_section",
                  "fix_snippet", "cause_detail", "server_keepalive_timeout_s")


def run(conns: pd.DataFrame, app: pd.DataFrame, streams: np.ndarray) -> pd.DataFrame:
    """`app`: the application facts, indexed by stream (its columns are taken out as
    they are added); `streams`: the engine's stream rows, or just their `stream_times()`.
    The steps, each usable on its own by an out-of-core run (pcapsense/bounded.py):
    prepare() the rows, context() across connections, decide() each row, the pool
    overflow pass across connections, finish() each row."""
    df = prepare(conns, app, streams)
    if not len(df):            # (no TCP: the same steps, so the same columns and types;
        df = df.copy()         # one block per dtype, as a table of rows has)
    c = context(df)
    df = add_context(df, c.rows())
    out = decide(df, c.keys, c.servers, c.capture_end_s)
    release()                  # (the rules' inputs, made and freed a chunk at a time)
    pool.apply(out, pool.claims(df, out["cause"], c.keys))
    timeout, closes = keepalive_timeouts(c.keys, out["_idle_s"])
    df = finish(df, out, timeout, closes, c.peak_concurrency())
    if not len(df):
        for col in EMPTY_TYPES:
            df[col] = df[col].astype(EMPTY_TYPES[col])
    return df


#: the columns whose type an empty table would infer otherwise (float64 from no values)
EMPTY_TYPES = {"client_ip": "str", "server_ip": "str", "evidence_frames": "str", "alternatives": "str",
               "cause_detail": "str", "python_error": "str", "fix_section": "str", "fix": "str",
               "fix_snippet": "str", "server_peak_concurrency": "int64"}


def prepare(conns: pd.DataFrame, app: pd.DataFrame, streams: np.ndarray) -> pd.DataFrame:
    """The table with what each connection's decision reads from the engine's times
    and the application facts (per row: no other connection is looked at)."""
    n = len(conns)
    d = streams["d"]
    cd = conns["_client_dir"].to_numpy()
    idx = np.arange(n)
    fin_ts = streams["fin_ts"]
    cols = {}                           # (added in one concat: with_columns)
    cols["_close_ns"] = np.where(conns["close_frame"].isna().to_numpy(), 0,
                                 np.where(conns["close_kind"].to_numpy() == "RST", streams["rst_ts"], fin_ts))
    cols["_start_ns"], cols["_end_ns"] = streams["first_ts"], streams["last_ts"]
    cols["_fin_ts"] = fin_ts
    sv_last = d["last_data_ts"][idx, 1 - cd]
    cols["_server_last_data_ns"] = sv_last
    cols["_last_data_ns"] = np.maximum(d["last_data_ts"][:, 0], d["last_data_ts"][:, 1])
    cfin = d["first_fin_ts"][idx, cd]
    cols["_client_fin_delay_s"] = np.where((cfin > 0) & (fin_ts > 0) & (conns["first_fin_by"].to_numpy() == "server"),
                                           (cfin - fin_ts) / NS, np.nan)
    cl_last = d["last_data_ts"][idx, cd]
    cl_last = np.where(cl_last > fin_ts, 0, cl_last)
    idle = (fin_ts - np.maximum(sv_last, cl_last)) / NS
    cols["idle_before_close_s"] = np.where((fin_ts > 0) & (np.maximum(sv_last, cl_last) > 0), idle, np.nan)
    cols["_client_last_data_ns"] = d["last_data_ts"][idx, cd]
    cols["_client_last_data_frame"] = d["last_data_frame"][idx, cd]
    cols.update(_app_columns(conns, app))
    # (the client's last data that is not an HTTP/2 control record: HTTP/2 over TLS 1.2
    # AES-GCM has larger ones, see eng_tls_control_segment; rules.tls_exchange_view)
    if {"tls_version", "tls_alpn", "tls_cipher_suite"} <= set(cols):
        suite = cols["tls_cipher_suite"].astype("string")
        h2_12 = ((cols["tls_version"] == "TLS 1.2") & (cols["tls_alpn"] == "h2")
                 & suite.str.contains("_GCM_", regex=False)).fillna(False).to_numpy(bool)
    else:
        h2_12 = np.zeros(n, dtype=bool)
    cols["_client_last_msg_ns"] = np.where(h2_12, d["last_msg12_ts"][idx, cd], d["last_msg_ts"][idx, cd])
    cols["_client_last_msg_frame"] = np.where(h2_12, d["last_msg12_frame"][idx, cd], d["last_msg_frame"][idx, cd])
    _tls_close(cols, d, cd, idx)
    df = with_columns(conns.copy(deep=False), cols)  # (conns' columns are only added to or replaced)
    release()                  # (the facts' columns, freed as they were taken, back to the OS)
    return df


def _tls_close(cols: dict, d: np.ndarray, cd: np.ndarray, idx: np.ndarray) -> None:
    """Who ended TLS (columns put in prepare()'s `cols`): the side whose alert record
    (close_notify, or any alert; the engine notes each direction's first segment that is
    one alert record) came first, on TLS connections. `tls_close_by`, `tls_close_frame`;
    the idle time of a TLS connection the
    server ended with an alert is measured up to that alert (nginx: close_notify, then
    FIN), not up to the FIN."""
    n = len(idx)
    tls = cols["tls"].fillna(False).to_numpy().astype(bool) if "tls" in cols else np.zeros(n, dtype=bool)
    a_ts = d["first_alert_ts"]
    c_ts, s_ts = a_ts[idx, cd], a_ts[idx, 1 - cd]
    c_fr, s_fr = d["first_alert_frame"][idx, cd], d["first_alert_frame"][idx, 1 - cd]
    server_first = tls & (s_ts > 0) & ((c_ts == 0) | (s_ts <= c_ts))
    client_first = tls & (c_ts > 0) & ~server_first
    by = np.full(n, None, dtype=object)
    by[server_first], by[client_first] = "server", "client"
    cols["tls_close_by"] = by
    frame = np.where(server_first, s_fr, np.where(client_first, c_fr, 0))
    cols["tls_close_frame"] = pd.arrays.IntegerArray(frame.astype(np.int64), frame <= 0)
    close_ns = np.where(server_first, s_ts, np.where(client_first, c_ts, 0))
    cols["_tls_close_ns"] = close_ns
    if server_first.any():
        sv_last = np.asarray(cols["_server_last_data_ns"])
        cl_last = np.asarray(cols["_client_last_data_ns"])
        cl_before = np.where(cl_last > close_ns, 0, cl_last)
        last = np.maximum(sv_last, cl_before)
        idle = np.array(cols["idle_before_close_s"])
        ok = server_first & (last > 0)
        idle[ok] = (close_ns[ok] - last[ok]) / NS
        cols["idle_before_close_s"] = idle


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
    return with_columns(df, dict(columns))


def _tls_view_rows(df: pd.DataFrame) -> np.ndarray:
    """The rows whose facts rules.tls_exchange_view() rewrites before the rules run: TLS
    connections past the handshake, no HTTP seen (no key log), app_protocol tls."""
    tls = df["tls"].fillna(False).to_numpy().astype(bool) if "tls" in df else np.zeros(len(df), dtype=bool)
    done = df["tls_handshake_complete"].fillna(False).to_numpy().astype(bool) \
        if "tls_handshake_complete" in df else np.zeros(len(df), dtype=bool)
    http = df["http_requests"].fillna(0).to_numpy() > 0 if "http_requests" in df else np.zeros(len(df), dtype=bool)
    return tls & done & ~http & (df["app_protocol"].to_numpy(dtype=object) == "tls")


def _tls_closed_rows(df: pd.DataFrame, view: np.ndarray) -> np.ndarray:
    """The TLS connections read with their keys (`tls_decrypted` set, not the exchange
    view's rows) that TLS closed first: the side whose alert (close_notify) came first
    ended the connection, even when the other side's FIN or RST reached the wire first
    (the rules read them so; rules.tls_exchange_view does the same for the rows read
    without keys)."""
    n = len(df)
    if "tls_decrypted" not in df or "tls_close_by" not in df:
        return np.zeros(n, dtype=bool)
    dec = df["tls_decrypted"].notna().to_numpy()
    if not dec.any():
        return np.zeros(n, dtype=bool)
    done = df["tls_handshake_complete"].fillna(False).to_numpy().astype(bool)
    by = df["tls_close_by"].notna().to_numpy()
    close_ns = df["_tls_close_ns"].to_numpy()
    wire = df["close_time"]
    wire_ns = np.where(wire.isna().to_numpy(), np.iinfo(np.int64).max - 2,
                       wire.to_numpy(dtype="datetime64[ns]").astype(np.int64))
    return dec & done & by & (close_ns > 0) & (close_ns <= wire_ns + 1) & ~view


def _with_tls_close(df: pd.DataFrame, m: np.ndarray) -> pd.DataFrame:
    """`df` (a shallow copy) with rows `m` closed as TLS closed them (_tls_closed_rows):
    closer, close kind FIN, close time and frame, first FIN sender and time."""
    d = df.copy(deep=False)
    by = df["tls_close_by"].to_numpy(dtype=object)
    close_ns = df["_tls_close_ns"].to_numpy()
    for col in ("closer", "first_fin_by", "close_kind"):
        vals = df[col].to_numpy(dtype=object).copy()
        vals[m] = "FIN" if col == "close_kind" else by[m]
        d[col] = pd.Categorical(vals, categories=df[col].cat.categories) \
            if isinstance(df[col].dtype, pd.CategoricalDtype) else vals
    t = df["close_time"].to_numpy(dtype="datetime64[ns]").copy()
    t[m] = close_ns[m].astype("datetime64[ns]")
    d["close_time"] = pd.DatetimeIndex(t).tz_localize("UTC")
    frame = df["close_frame"].copy()
    tls_frame = df["tls_close_frame"]
    pick = m & tls_frame.notna().to_numpy()
    frame[pick] = tls_frame[pick]
    d["close_frame"] = frame
    fin = df["_fin_ts"].to_numpy().copy()
    fin[m] = close_ns[m]
    d["_fin_ts"] = fin
    d["_tls_closed"] = m
    return d


def decide(df: pd.DataFrame, keys: np.ndarray, servers: dict, cap_end, per_row: bool = False) -> dict:
    """Each row's cause, before the pool-overflow pass: the vectorised fast path, then
    the rules over columns (vector.py) for the rest, and rules.py's per-row rules for
    the keyless TLS rows (their exchange view rewrites a row's facts first) or, with
    `per_row`, for every row the fast path leaves (the reference the tests compare the
    columns against). `keys`: the rows' server keys; `servers`: Context.servers.
    Returns the output columns as arrays of len(df)."""
    n = len(df)
    wire_closers = df["closer"].astype(str).to_numpy()
    tls_closed = _tls_closed_rows(df, _tls_view_rows(df))
    if tls_closed.any():
        df = _with_tls_close(df, tls_closed)
    fast = _fast_path(df)
    slow_idx = np.flatnonzero(fast == "")
    if not per_row and len(slow_idx):
        view = _tls_view_rows(df)
        vec_idx = slow_idx[~view[slow_idx]]
        slow_idx = slow_idx[view[slow_idx]]
    else:
        vec_idx = slow_idx[:0]
    arrays = {c: df[c].array for c in df.columns}
    recs: dict[int, dict] = {}
    next_slow = 0                        # rows for the rules are made SLOW_CHUNK at a time
    out = {k: np.empty(n, dtype=object) for k in ("cause", "evidence_frames", "alternatives", "cause_detail",
                                                  "phase", "closer")}
    out["confidence"] = np.empty(n)                   # (floats in arrays: no object per row)
    out["_idle_s"] = np.full(n, np.nan)
    out["_tls_view"] = np.zeros(n, dtype=bool)
    close_frame = df["close_frame"].to_numpy(dtype=object)
    closer_col = df["closer"].astype(str).to_numpy()
    idle_col = df["idle_before_close_s"].to_numpy()
    # the common, clean endings, decided without the per-connection rules (vectorised)
    fast_ix = np.flatnonzero(fast != "")
    graceful = fast[fast_ix] == "graceful"
    out["cause"][fast_ix] = fast[fast_ix]
    out["confidence"][fast_ix] = np.where(graceful, 0.9, 0.85)
    out["evidence_frames"][fast_ix] = [str(x) for x in close_frame[fast_ix].tolist()]
    out["alternatives"][fast_ix] = ""
    out["cause_detail"][fast_ix[graceful]] = "FIN exchange, every request answered"
    idle_ix = fast_ix[~graceful]
    out["cause_detail"][idle_ix] = [f"the server closed the connection after {x:.3f} s idle (its keep-alive timeout)"
                                    for x in idle_col[idle_ix].tolist()]
    out["_idle_s"][idle_ix] = idle_col[idle_ix]
    out["phase"][fast_ix] = "idle"
    out["closer"][fast_ix] = closer_col[fast_ix]
    vector.decide(df, vec_idx, out, lambda ix: [servers.get(keys[i], {}).get("peak_concurrency", "?")
                                                for i in ix.tolist()], cap_end)
    for i in slow_idx.tolist():
        if i not in recs:
            recs = _row_dicts(arrays, slow_idx[next_slow:next_slow + SLOW_CHUNK])
            next_slow += SLOW_CHUNK
        row = recs.pop(i)
        row["capture_end_s"] = cap_end
        wire_closer = row["closer"]
        if row.get("tls") and row.get("tls_handshake_complete") and not row.get("http_requests") \
                and row.get("app_protocol") == "tls":
            tls_exchange_view(row)
            out["_tls_view"][i] = True
        f = Facts(row, servers.get(keys[i], {}))
        matches: list[Match] = []
        for cause, fn in RULES:
            m = fn(f)
            if m is not None:
                matches.append(m)
        abnormal = bool(row["abnormal"])
        if matches:
            m = matches[0]
        elif row["close_kind"] == "FIN" and not abnormal:
            m = Match("graceful", 0.6, [int(row["close_frame"])], "closed by FIN, nothing abnormal seen")
        else:
            m = Match("unknown", 0.3, [x for x in (row.get("close_frame"),) if x is not None and x == x],
                      f"{row['close_kind']} from the {row['closer']} in {row['closer_state']}; no rule matched")
        out["cause"][i] = m.cause
        out["confidence"][i] = round(m.confidence, 2)
        out["evidence_frames"][i] = ",".join(str(x) for x in m.evidence)
        out["alternatives"][i] = ",".join(dict.fromkeys(x.cause for x in matches[1:] if x.cause != m.cause))
        out["cause_detail"][i] = m.why
        out["phase"][i] = _phase(f)
        out["closer"][i] = m.closer or wire_closer
        if m.cause in ("idle-close", "keepalive-race"):
            idle_s = m.extra.get("idle_s")
            out["_idle_s"][i] = np.nan if idle_s is None else idle_s
    if tls_closed.any():                 # (the table keeps the wire's first FIN/RST sender)
        ix = np.flatnonzero(tls_closed)
        out["closer"][ix] = np.where(out["closer"][ix] == "middlebox", "middlebox", wire_closers[ix])
    return out


#: causes that rest on timing or on a pattern across connections, not on what the packets
#: show (an alert, a status, a GOAWAY, a RST to a SYN or to a request that crossed a FIN,
#: a forged TTL, retransmissions, a reset or a close while a response flowed): why the
#: server closed without answering (a rule or a timeout), why the client gave up, a
#: pool, a leak, an idle timeout
INFERRED_CAUSES = ("idle-close", "request-rejected", "server-timeout", "pool-overflow", "connection-leak",
                   "client-timeout", "unknown")
#: a match less sure than this is an inference whatever its cause
INFERRED_BELOW = 0.75


def inferred(cause: np.ndarray, confidence: np.ndarray, tls_view: np.ndarray) -> np.ndarray:
    """Per row: the cause is an inference (the `inferred` column; the verdict says what
    is certain first and words an inference as one). A TLS connection read without its
    keys (`tls_view`) is decided from its records' timing: every cause is inferred."""
    out = np.isin(cause, INFERRED_CAUSES) | (confidence < INFERRED_BELOW) | tls_view
    return out & (cause != "graceful") & (cause != "incomplete")


def all_inferred(group: pd.DataFrame) -> bool:
    """Every connection of a verdict's group is an inference (the reports word it so)."""
    return "inferred" in group and bool(group["inferred"].astype(bool).all())


def keepalive_timeouts(keys: np.ndarray, idle_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, its server's keep-alive timeout (the median of the idle closes' idle
    times, decide()'s `_idle_s`) and how many idle closes it rests on."""
    ka = pd.Series(idle_s).groupby(keys).agg(["median", "std", "count"])
    return ka["median"].reindex(keys).to_numpy(), ka["count"].reindex(keys).fillna(0).astype(np.int64).to_numpy()


def finish(df: pd.DataFrame, out: dict, keepalive_timeout_s, keepalive_closes, peak_concurrency) -> pd.DataFrame:
    """The output columns from decide()'s `out` (after the pool-overflow pass) and the
    per-row server facts; the working columns (`_*`) dropped."""
    for k in ("cause", "evidence_frames", "alternatives", "cause_detail", "phase", "closer"):
        out[k] = out[k].tolist()         # (lists: the columns' dtypes as before)
    cause = pd.Categorical(out["cause"], categories=advice.CAUSES)
    cols = {"cause": cause, "confidence": out["confidence"], "evidence_frames": out["evidence_frames"],
            "alternatives": out["alternatives"], "cause_detail": out["cause_detail"],
            "phase": pd.Categorical(out["phase"], categories=PHASES),
            "closer": pd.Categorical(out["closer"], categories=["client", "server", "middlebox", "none"])}
    # the advice per distinct (cause, User-Agent, method), not per row
    ua = df["http_user_agent"].to_numpy(dtype=object)
    meth = df["http_last_method"].to_numpy(dtype=object)
    cause_codes = cause.codes
    ua_codes, ua_vals = pd.factorize(ua, use_na_sentinel=True)
    meth_codes, meth_vals = pd.factorize(meth, use_na_sentinel=True)
    triple = (cause_codes.astype(np.int64) * (len(ua_vals) + 1) + ua_codes + 1) * (len(meth_vals) + 1) \
        + meth_codes + 1
    uniq, first, inverse = np.unique(triple, return_index=True, return_inverse=True)
    texts = np.array([advice.python_error(out["cause"][i], u if isinstance(u, str) else None,
                                          m if isinstance(m, str) else None)
                      for i, u, m in zip(first.tolist(), ua[first].tolist(), meth[first].tolist())], dtype=object)
    cols["python_error"] = texts[inverse.ravel()].tolist()
    for k, col in enumerate(("fix_section", "fix", "fix_snippet")):
        per_cause = np.array([advice.FIX[c][k] for c in advice.CAUSES], dtype=object)
        cols[col] = per_cause[cause_codes].tolist()
    cols["server_keepalive_timeout_s"] = keepalive_timeout_s
    cols["server_keepalive_closes"] = keepalive_closes
    cols["server_peak_concurrency"] = peak_concurrency
    cols["abnormal"] = ~np.isin(cause_codes, [advice.CAUSES.index(c) for c in ("graceful", "idle-close", "incomplete")])
    cols["inferred"] = inferred(np.asarray(out["cause"], dtype=object), np.asarray(out["confidence"]),
                                out["_tls_view"])
    df = with_columns(df, cols)
    drop = [c for c in df.columns if c.startswith("_") and c not in ("_client_dir",)]
    return df.drop(columns=drop)
