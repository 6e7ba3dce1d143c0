"""Stage 5, the table the rules read: `prepare()` adds to the connections table what
each decision reads of the engine's times (close, last data, FIN delays, idle before the
close, who ended TLS) and the application facts as typed columns, per row (no other
connection looked at). `stream_times()` keeps the only fields of the engine's stream
rows it needs; `with_columns()` adds columns in one concat.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..memory import release, shared_strings
from .rules import NS


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


def with_columns(df: pd.DataFrame, columns: dict) -> pd.DataFrame:
    """`df` with `columns` (name -> array, list or Series on df's index): a column it
    has is replaced in its place, a new one is added at the end, in `columns`' order.
    One concat instead of a __setitem__ per column: pandas copies every value set and
    reorganises its blocks each time (0.4 ms a column on a 6-connection capture, 6 ms
    at a million connections); concat copies neither `df`'s columns nor the new ones."""
    new = {}
    for name, values in columns.items():
        if name in df.columns:
            df[name] = values
        else:
            new[name] = values
    if not new:
        return df
    return pd.concat([df, pd.DataFrame(new, index=df.index, copy=False)], axis=1)


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
