"""Stage 5, per connection: each row's cause before the pool-overflow pass.
`decide()` takes the clean endings on a vectorised fast path, sends the rest to the
rules over columns (vector.py), and keeps rules.py's per-row rules for the keyless TLS
rows (their exchange view rewrites a row's facts first) and as the reference the tests
compare the columns against (`per_row=True`). The phase a connection ended in, the
TLS-closed rows (the side whose alert came first ended it) are here too.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from . import vector
from .rules import RULES, Facts, Match, idle_threshold_s, tls_exchange_view

#: the phase a connection ended in (the `phase` column's categories)
PHASES = ["tcp-handshake", "tls-handshake", "request", "awaiting-response", "response", "idle", "tunnel",
          "data", "open"]


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
