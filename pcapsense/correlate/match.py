"""Each exception of the program's log matched to the connection that explains it.

A connection explains an exception when three things agree (each a factor of the
score; numpy over all connections per exception, so a million connections cost a few
ms per exception):

- **time**: the exception is raised when the client notices the ending: at or just
  after the last packet it saw (`end`) or the first FIN/RST (`close_time`), whichever is
  nearer; a client that times out raises first and closes after. Accepted from
  `BEFORE_S` before to `AFTER_S` after; the score falls with the distance (half at
  0.5 s);
- **cause**: the exception's kind (logscan.KINDS) names the causes that produce it
  (`KIND_CAUSES`: a `RemoteDisconnected` is a keep-alive race, a rejected request, a
  server timeout…, never a refused connection); a connection whose cause is not among
  them can only be the `nearest`, never `explained`;
- **server**: the host and port the message names, against the connection's server
  address, TLS SNI or HTTP Host (a proxy error names the target, not the proxy: not
  compared).

Greedy assignment: the events with the best scores choose first, and a connection
already chosen counts half for the next, so N identical exceptions go to N connections
when there are N.
"""

from __future__ import annotations

import datetime as dt
import ipaddress

import numpy as np
import pandas as pd

from .logscan import LogException

#: exception kind -> the causes that produce it, most likely first (docs/schema.md)
KIND_CAUSES: dict[str, tuple[str, ...]] = {
    "remote-disconnected": ("keepalive-race", "request-rejected", "server-timeout", "http2-goaway",
                            "proxy-disconnect", "server-abort", "idle-close", "connection-leak"),
    "connection-reset": ("server-abort", "middlebox-reset", "keepalive-race", "body-too-large", "network-loss",
                         "request-rejected", "proxy-disconnect", "tls-handshake-failure", "server-timeout"),
    "broken-pipe": ("body-too-large", "request-rejected", "server-abort", "keepalive-race", "server-timeout"),
    "read-timeout": ("client-timeout", "network-loss", "server-timeout"),
    "connect-timeout": ("network-loss", "incomplete", "middlebox-reset"),
    "connection-refused": ("connection-refused",),
    "ssl-certificate": ("tls-certificate-rejected",),
    "ssl-error": ("tls-handshake-failure", "tls-certificate-rejected", "middlebox-reset", "server-abort",
                  "server-timeout", "request-rejected"),
    "proxy-error": ("proxy-disconnect",),
    "pool-full": ("pool-overflow",),
    "incomplete-response": ("server-abort", "network-loss", "proxy-disconnect", "middlebox-reset",
                            "client-timeout", "server-timeout"),
    "http2-terminated": ("http2-goaway",),
    "rate-limited": ("rate-limited",),
    "body-too-large": ("body-too-large",),
    "other": (),
}

BEFORE_S = 2.0       # an exception logged up to this long before the connection's end (the client closes after)
AFTER_S = 10.0       # ... or this long after it (the program noticed, then logged)
MIN_SCORE = 0.05

NS = 1_000_000_000

#: the columns of Analysis.exceptions, in order (docs/schema.md)
COLUMNS = ("ts", "ts_from", "source", "line", "exception", "kind", "message", "host", "port", "match",
           "stream", "cause", "confidence", "delta_s", "explanation")


def _ns(col: pd.Series) -> np.ndarray:
    """Datetimes as int64 ns (NaT: min)."""
    return col.to_numpy(dtype="datetime64[ns]").view(np.int64) if len(col) else np.zeros(0, np.int64)


def _names(df: pd.DataFrame) -> np.ndarray:
    """Per connection, the server's name when the capture shows one (SNI, else Host
    without its port), lower case; '' when none."""
    out = np.full(len(df), "", dtype=object)
    for col in ("http_host", "tls_sni"):               # (SNI wins: written last)
        if col in df:
            v = df[col].astype("string").str.lower().str.replace(r":\d+$", "", regex=True)
            have = v.notna().to_numpy(bool)
            out[have] = v[have].to_numpy(dtype=object)
    return out


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _resolve_clock(ev: LogException, first_ns: int | None, tz: dt.tzinfo | None) -> int | None:
    """A bare clock time (no date in the log): on the capture's first day in `tz`, the
    day after when that is nearer the capture."""
    if ev.ts_ns is None or first_ns is None:
        return None
    zone = tz or dt.datetime.now().astimezone().tzinfo
    midnight = pd.Timestamp(first_ns, tz="UTC").tz_convert(zone).normalize()
    cands = [(midnight + pd.Timedelta(days=d, microseconds=ev.ts_ns / 1000)).value for d in (-1, 0, 1)]
    return min(cands, key=lambda v: abs(v - first_ns))


def display_name(ev: LogException) -> str:
    """The exception as a developer names it: the last one's short name, with the first
    of its chain when that says more (`ConnectionError (RemoteDisconnected)`)."""
    if ev.exception.startswith("urllib3 warning"):
        return "Connection pool is full"
    last = ev.exception.rsplit(".", 1)[-1]
    first = ev.chain[0].rsplit(".", 1)[-1] if ev.chain else last
    return last if first == last else f"{last} ({first})"


def correlate(df: pd.DataFrame, events: list[LogException], *, source: str, first_ns: int | None = None,
              last_ns: int | None = None, tz: dt.tzinfo | None = None) -> tuple[pd.DataFrame, pd.Series]:
    """(the exceptions table, the per-connection `exceptions` column) for `events`
    read from `source` (a path, or "stderr of COMMAND") against the connections `df`."""
    n = len(df)
    end = _ns(df["end"]) if n else np.zeros(0, np.int64)
    close = _ns(df["close_time"]) if n else np.zeros(0, np.int64)
    close = np.where(close < 0, end, close)             # (NaT: never closed)
    causes = df["cause"].astype(str).to_numpy() if n else np.zeros(0, dtype=object)
    abnormal = df["abnormal"].to_numpy(bool) if n else np.zeros(0, bool)
    server_ip = df["server_ip"].astype(str).to_numpy() if n else np.zeros(0, dtype=object)
    server_port = df["server_port"].to_numpy(np.int64) if n else np.zeros(0, np.int64)
    names = _names(df) if n else np.zeros(0, dtype=object)
    streams = df["stream"].to_numpy(np.int64) if n else np.zeros(0, np.int64)

    rows, scores = [], []
    for ev in events:
        ts = _resolve_clock(ev, first_ns, tz) if ev.ts_kind == "clock" else ev.ts_ns
        rows.append({"ev": ev, "ts": ts})
        if not n:
            scores.append(None)
            continue
        expected = KIND_CAUSES.get(ev.kind, ())
        cause_s = np.where(abnormal, 0.25, 0.05)
        for rank, c in enumerate(expected):
            cause_s = np.where(causes == c, max(1.0 - 0.05 * rank, 0.6), cause_s)
        if ts is not None:
            d_end, d_close = (ts - end) / NS, (ts - close) / NS
            delta = np.where(np.abs(d_end) <= np.abs(d_close), d_end, d_close)
            ok = (delta >= -BEFORE_S) & (delta <= AFTER_S)
            time_s = np.where(ok, 1.0 / (1.0 + np.abs(delta) / 0.5), 0.0)
        else:
            delta = np.full(n, np.nan)
            time_s = np.full(n, 0.5)
        host_s = np.full(n, 0.9)              # (the message names no server: nothing contradicts)
        if ev.host and ev.kind != "proxy-error":
            h = ev.host.lower()
            if _is_ip(h):
                host_s = np.where(server_ip == h, 1.0, 0.05)
            else:
                host_s = np.where(names == h, 1.0, np.where(names == "", 0.8, 0.1))
        if ev.port and ev.kind != "proxy-error":
            host_s = host_s * np.where(server_port == ev.port, 1.0, 0.2)
        scores.append((cause_s * time_s * host_s, delta, expected))

    # greedy: the best (event, connection) pairs first; a chosen connection counts half
    used = np.zeros(n, dtype=np.int64)
    order = sorted(range(len(events)), key=lambda i: -(scores[i][0].max() if scores[i] is not None and n else 0))
    picks: dict[int, tuple[int, float, float]] = {}
    for i in order:
        if scores[i] is None:
            continue
        s, delta, _ = scores[i]
        s = s * np.power(0.5, used)
        j = int(np.argmax(s))
        if s[j] >= MIN_SCORE:
            # confidence: the score, lowered when another connection scores nearly as well
            second = float(np.partition(s, -2)[-2]) if n > 1 else 0.0
            conf = float(s[j]) * min(1.0, 2 * float(s[j]) / (float(s[j]) + second))
            picks[i] = (j, conf, float(delta[j]))
            used[j] += 1

    per_conn: dict[int, list[str]] = {}
    out = []
    for i, r in enumerate(rows):
        ev, ts = r["ev"], r["ts"]
        short = display_name(ev)
        when = pd.Timestamp(ts, tz="UTC") if ts is not None else pd.NaT
        rec = {"ts": when, "ts_from": {"utc": "log", "local": "log (local time)", "clock": "log (time of day)"}
               .get(ev.ts_kind, "none"), "source": source, "line": ev.line, "exception": ev.exception,
               "kind": ev.kind, "message": ev.message, "host": ev.host, "port": ev.port,
               "match": "none", "stream": None, "cause": None, "confidence": 0.0, "delta_s": None,
               "explanation": ""}
        pick = picks.get(i)
        outside = ts is not None and first_ns is not None and last_ns is not None and \
            (ts < first_ns - BEFORE_S * NS or ts > last_ns + AFTER_S * NS)
        if pick is not None:
            j, s, delta = pick
            explained = causes[j] in scores[i][2]
            rec.update(match="explained" if explained else "nearest", stream=int(streams[j]), cause=causes[j],
                       confidence=round(min(s, 0.95), 2), delta_s=None if np.isnan(delta) else round(delta, 6))
            at = "" if np.isnan(delta) else f" ({delta:.3f} s after its last packet)" if delta >= 0 else \
                f" ({-delta:.3f} s before its last packet)"
            if explained:
                rec["explanation"] = f"{short} → stream {int(streams[j])}, {causes[j]}{at}"
            else:
                rec["explanation"] = (f"{short}: no connection ending explains it; the nearest is stream "
                                      f"{int(streams[j])} ({causes[j]}){at}")
            per_conn.setdefault(j, []).append(
                (f"{when:%H:%M:%S.%f}"[:-3] + " " if ts is not None else "") + short)
        elif outside:
            rec["explanation"] = f"{short}: outside the capture's time span (the capture did not run then)"
        else:
            rec["explanation"] = (f"{short}: no connection in the capture explains it (the capture missed it: "
                                  f"interface, filter, time span; or it was not a network event)")
        out.append(rec)
    table = pd.DataFrame(out, columns=list(COLUMNS))
    if len(table):
        table["ts"] = pd.to_datetime(table["ts"], utc=True)
        table["stream"] = table["stream"].astype("Int64")
        table["port"] = table["port"].astype("Int64")
        table["line"] = table["line"].astype("Int64")
        table["delta_s"] = table["delta_s"].astype("float64")
    col = np.full(n, None, dtype=object)
    for j, labels in per_conn.items():
        col[j] = "; ".join(labels)
    return table, pd.Series(col, index=df.index, name="exceptions", dtype=object)
