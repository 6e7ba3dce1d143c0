"""The rules of rules.py evaluated over columns: each cause's predicate as numpy masks
over the connection table, the evidence frames and detail text built for the matching
rows only. Same order (most specific first), same results: tests/test_vector_rules.py
decides every repo and public capture both ways and compares every output column.

`decide(df, rows, servers_of, cap_end)` decides the rows `rows` of the prepared table
(classify.decide() sends here every row the fast path leaves, except the keyless TLS
rows whose exchange view rewrites their facts first: those stay on rules.py's per-row
path, which remains the reference). Reading guide: `Cols` is the columnar `Facts` (a
name the table lacks reads as missing, like Facts' None); each `_rule_*` function
mirrors the rules.py rule of the same name line for line and returns its branches as
`Branch` (mask, confidence, evidence columns, detail builder, closer override).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from . import rules
from .rules import LEAK_HOLD_S, NS, RST_BURST, _n, idle_threshold_s


class Cols:
    """Columnar Facts over rows `ix` of `df` (all arrays have len(ix))."""

    def __init__(self, df: pd.DataFrame, ix: np.ndarray, cap_end: float):
        self.df, self.ix, self.n, self.capture_end_s = df, ix, len(ix), cap_end
        self._num: dict = {}
        self._str: dict = {}

    def has(self, name: str) -> bool:
        return name in self.df.columns

    def num(self, name: str) -> np.ndarray:
        """float64, NaN where missing (bools as 0/1, times as ns: exact below 2**53 only
        for differences, which is how the rules use them)."""
        a = self._num.get(name)
        if a is None:
            if not self.has(name):
                a = np.full(self.n, np.nan)
            else:
                col = self.df[name].array.take(self.ix)
                if isinstance(col.dtype, pd.DatetimeTZDtype):
                    i8 = col.asi8
                    a = np.where(i8 == np.iinfo(np.int64).min, np.nan, i8.astype(np.float64))
                elif isinstance(col, (pd.arrays.IntegerArray, pd.arrays.BooleanArray, pd.arrays.FloatingArray)):
                    a = col.to_numpy(dtype=np.float64, na_value=np.nan)
                else:
                    a = np.asarray(col).astype(np.float64)
            self._num[name] = a
        return a

    def i64(self, name: str) -> np.ndarray:
        """int64 (0 where missing) for exact nanosecond arithmetic."""
        if not self.has(name):
            return np.zeros(self.n, dtype=np.int64)
        col = self.df[name].array.take(self.ix)
        if isinstance(col.dtype, pd.DatetimeTZDtype):
            i8 = col.asi8
            return np.where(i8 == np.iinfo(np.int64).min, 0, i8)
        if isinstance(col, pd.arrays.IntegerArray):
            return col.to_numpy(dtype=np.int64, na_value=0)
        return np.asarray(col).astype(np.int64)

    def na(self, name: str) -> np.ndarray:
        if not self.has(name):
            return np.ones(self.n, dtype=bool)
        col = self.df[name].array.take(self.ix)
        return np.asarray(pd.isna(col), dtype=bool)

    def z(self, name: str) -> np.ndarray:
        """`(f.name or 0)`."""
        return np.nan_to_num(self.num(name), nan=0.0)

    def t(self, name: str) -> np.ndarray:
        """`bool(f.name)` for numbers and booleans."""
        v = self.num(name)
        return ~np.isnan(v) & (v != 0)

    def false(self, name: str) -> np.ndarray:
        """`f.name is False`."""
        v = self.num(name)
        return v == 0

    def true(self, name: str) -> np.ndarray:
        """`f.name is True` (a boolean column)."""
        v = self.num(name)
        return v == 1

    def s(self, name: str) -> np.ndarray:
        """Text as an object array, None where missing."""
        a = self._str.get(name)
        if a is None:
            if not self.has(name):
                a = np.full(self.n, None, dtype=object)
            else:
                col = self.df[name].array.take(self.ix)
                a = np.asarray(col.astype(object), dtype=object) if not isinstance(col, np.ndarray) else col
                a = np.where(pd.isna(a), None, a).astype(object)
            self._str[name] = a
        return a

    def eq(self, name: str, value: str) -> np.ndarray:
        return self.isin(name, (value,))

    def isin(self, name: str, values) -> np.ndarray:
        """`f.name in values` (text; a missing value is in none)."""
        key = (name, tuple(values))
        a = self._str.get(key)
        if a is None:
            col = self.df[name].array if self.has(name) else None
            if isinstance(col, pd.Categorical):
                want = col.categories.get_indexer(list(values))
                a = np.isin(col.codes.take(self.ix), want[want >= 0])
            else:
                s = self.s(name)
                a = np.zeros(self.n, dtype=bool)
                for v in values:
                    a |= s == v
            self._str[key] = a
        return a

    def py(self, name: str, where: np.ndarray) -> list:
        """The values of the rows `where` (a mask) as the per-row rules see them."""
        if not self.has(name):
            return [None] * int(where.sum())
        col = self.df[name].array.take(self.ix[where])
        vals = (col.astype(object) if isinstance(col.dtype, pd.Int64Dtype) else col.to_numpy()).tolist()
        for k in np.flatnonzero(pd.isna(col)).tolist():
            vals[k] = None
        return vals

    # ---- derived facts (rules.Facts' properties)
    def cache(self, key: str, fn):
        a = self._num.get(key)
        if a is None:
            a = self._num[key] = fn()
        return a

    @property
    def rtt_s(self):
        return self.cache("@rtt_s", lambda: np.where(self.t("rtt_ms"), self.num("rtt_ms"), 1.0) / 1000.0)

    @property
    def soon_s(self):
        return np.maximum(1.0, 10 * self.rtt_s)

    @property
    def http(self):
        return self.cache("@http", lambda: self.z("http_requests") > 0)

    @property
    def close_ts(self):
        return self.num("close_time")

    @property
    def awaiting_response(self):
        def f():
            rts, cts = self.num("http_last_response_ts"), self.close_ts
            later = ~np.isnan(rts) & ~np.isnan(cts) & (self.i64("http_last_response_ts") > self.i64("close_time"))
            return self.http & self.t("http_last_request_complete") & (~self.t("http_last_request_answered") | later)
        return self.cache("@awaiting", f)

    @property
    def response_complete_false(self):
        """`f.response_complete is False`."""
        def f():
            done_false = self.false("http_last_response_complete")
            cut = self.z("snaplen_cut_packets") > 0
            last, close = self.z("_server_last_data_ns"), self.close_ts
            by_packets = (last != 0) & ~np.isnan(close) & (close != 0) & \
                (self.i64("_server_last_data_ns") <= self.i64("close_time"))
            return done_false & ~(cut & by_packets)
        return self.cache("@rc_false", f)

    @property
    def response_flowing(self):
        return self.http & self.t("http_last_request_answered") & self.response_complete_false

    @property
    def all_answered(self):
        return self.cache("@all", lambda: self.http & (self.z("http_unanswered") == 0) & ~self.response_complete_false)


@dataclass
class Branch:
    cause: str
    mask: np.ndarray
    confidence: float | np.ndarray
    evidence: tuple                      # column names
    why: Callable[[np.ndarray], list] | str
    closer: str | None = None
    idle_s: np.ndarray | None = None


def _fmt(fmt: Callable, c: Cols, *names):
    """A detail builder: fmt(*values) for each matching row, the values as the per-row
    rules see them."""
    return lambda m: [fmt(*vals) for vals in zip(*(c.py(n, m) for n in names))] if names else [fmt()] * int(m.sum())


def _rule_connection_refused(c: Cols):
    m = c.eq("conn_state", "REJ") | (c.eq("close_kind", "RST") & c.eq("closer", "server")
                                     & c.isin("closer_state", ("LISTEN", "NONE")) & c.eq("peer_state", "SYN_SENT"))
    return [Branch("connection-refused", m, 0.95, ("first_frame", "close_frame"),
                   "the SYN was answered by RST: nothing listening (or backlog full)")]


def _rule_middlebox_reset(c: Cols):
    base = c.eq("close_kind", "RST") & ~c.na("first_rst_frame")
    stable = np.where(c.eq("first_rst_by", "server"), c.z("server_ttl_changes"), c.z("client_ttl_changes"))
    ttl, prev = c.num("rst_ttl"), c.num("rst_prev_ttl")
    r1 = base & ~np.isnan(ttl) & ~np.isnan(prev) & (ttl != prev) & (stable <= 2)
    r2 = base & c.t("rst_mac_differs")

    def why(m):
        out = []
        for a, b, t, p in zip(r1[m].tolist(), r2[m].tolist(), c.py("rst_ttl", m), c.py("rst_prev_ttl", m)):
            reasons = ([f"IP TTL {t} where its sender's packets had {p}"] if a else []) + \
                ([ "link-layer source differs from its sender's packets"] if b else [])
            out.append("RST not sent by the endpoint it claims: " + "; ".join(reasons))
        return out
    return [Branch("middlebox-reset", r1 | r2, np.where(r1 & r2, 0.95, 0.85), ("first_rst_frame",), why,
                   closer="middlebox")]


def _rule_network_loss(c: Cols):
    b1 = c.eq("conn_state", "S0") & (c.z("syn_retransmits") >= 1)
    retr = c.z("retransmissions")
    b2 = (retr >= 3) & ~c.all_answered & (c.isin("close_kind", ("none", "RST")) | (c.z("max_idle_s") >= 1.0))
    return [Branch("network-loss", b1, 0.8, ("first_frame",),
                   _fmt(lambda n: f"{n} SYN retransmissions, never answered", c, "syn_retransmits")),
            Branch("network-loss", b2, 0.7, ("max_idle_frame", "close_frame"),
                   _fmt(lambda r, i: f"{r or 0} retransmissions, longest silence {i or 0:.2f} s, before the "
                        f"connection died", c, "retransmissions", "max_idle_s"))]


def _tls_open(c: Cols):
    return c.t("tls") & ~c.t("tls_handshake_complete") & ~c.eq("close_kind", "none")


_CLIENT_HS_ALERTS = ("protocol_version", "handshake_failure", "insufficient_security", "illegal_parameter",
                     "decode_error")
_CLIENT_CERT_ALERTS = ("unknown_ca", "bad_certificate", "certificate_expired", "certificate_unknown",
                       "unsupported_certificate", "certificate_revoked", "decrypt_error", "access_denied")


def _rule_tls_handshake_failure(c: Cols):
    base = _tls_open(c)
    alert = c.s("tls_alert")
    b1 = base & c.eq("tls_alert_by", "server") & ((c.num("tls_alert_level") == 2)
                                                 | ((alert != None) & (alert != "close_notify")))  # noqa: E711
    b2 = base & c.eq("closer", "server") & c.na("tls_server_hello_frame") & ~c.eq("tls_alert_by", "client")
    b3 = base & c.eq("tls_alert_by", "client") & c.isin("tls_alert", _CLIENT_HS_ALERTS)

    def what(sp, rec):
        return "sent no TLS (not a TLS port?)" if (sp or 0) and not rec else "closed right after the ClientHello"
    return [Branch("tls-handshake-failure", b1, 0.95, ("tls_client_hello_frame", "tls_alert_frame", "close_frame"),
                   _fmt(lambda a, v, s: f"server alert {a} during the handshake (offered {v}, SNI {s})", c,
                        "tls_alert", "tls_versions_offered", "tls_sni")),
            Branch("tls-handshake-failure", b2, 0.8, ("tls_client_hello_frame", "close_frame"),
                   _fmt(lambda sp, rec: f"server {what(sp, rec)}", c, "server_payload_bytes", "tls_server_records")),
            Branch("tls-handshake-failure", b3, 0.75, ("tls_alert_frame", "close_frame"),
                   _fmt(lambda a: f"client alert {a}: no common TLS parameters", c, "tls_alert"))]


def _rule_tls_certificate_rejected(c: Cols):
    base = _tls_open(c)
    b1 = base & c.eq("tls_alert_by", "client") & c.isin("tls_alert", _CLIENT_CERT_ALERTS)
    b2 = base & c.eq("closer", "client") & ~c.na("tls_server_hello_frame") & c.na("tls_client_app_data_frame")
    alert = c.s("tls_alert")
    cert = (np.asarray(c.df["tls_certificate"].array.take(c.ix), dtype=object) if c.has("tls_certificate")
            else np.full(c.n, None, dtype=object))
    return [Branch("tls-certificate-rejected", b1, 0.95, ("tls_alert_frame", "close_frame"),
                   lambda m: [f"client alert {a} after the server's certificate" + rules.cert_note(x)
                              for a, x in zip(alert[m], cert[m])]),
            Branch("tls-certificate-rejected", b2, 0.7, ("tls_server_hello_frame", "close_frame"),
                   lambda m: ["client closed after the server's flight without sending application data"
                              + rules.cert_note(x) for x in cert[m]])]


def _rule_http2_goaway(c: Cols):
    g = ~c.na("h2_goaway_frame")
    r = ~g & ~c.na("h2_rst_stream_frame")
    return [Branch("http2-goaway", g, 0.9, ("h2_goaway_frame", "close_frame"),
                   _fmt(lambda e, s, b: f"GOAWAY {e} last stream {s} from the {b}", c,
                        "h2_goaway_error", "h2_goaway_last_stream", "h2_goaway_by")),
            Branch("http2-goaway", r, 0.7, ("h2_rst_stream_frame", "close_frame"),
                   _fmt(lambda e: f"RST_STREAM {e}", c, "h2_rst_stream_error"))]


def _rule_proxy_disconnect(c: Cols):
    proxy = c.isin("app_protocol", ("http-proxy", "http-proxy-tunnel"))
    status = np.where(c.t("proxy_connect_status"), c.num("proxy_connect_status"), c.num("http_last_status"))
    b1 = proxy & np.isin(status, (407, 500, 502, 503, 504))
    server_closed = c.eq("closer", "server") & ~c.eq("close_kind", "none")
    b2 = proxy & server_closed & ~c.all_answered
    alert = c.s("tls_alert")
    encrypted = np.array([isinstance(a, str) and a.startswith("encrypted") for a in alert.tolist()], dtype=bool) \
        if proxy.any() else np.zeros(c.n, dtype=bool)
    b3 = proxy & server_closed & c.eq("app_protocol", "http-proxy-tunnel") & (alert != "close_notify") & ~encrypted

    def answered(m):
        return [f"the proxy answered {s}" for s in
                [p or h for p, h in zip(c.py("proxy_connect_status", m), c.py("http_last_status", m))]]
    return [Branch("proxy-disconnect", b1, 0.9, ("http_last_response_frame", "close_frame"), answered),
            Branch("proxy-disconnect", b2, 0.8, ("close_frame",), "the proxy closed the connection"),
            Branch("proxy-disconnect", b3, 0.6, ("close_frame",),
                   _fmt(lambda k: f"the proxy ended the tunnel ({k}) before the client did, with no TLS "
                        f"close_notify from the origin inside", c, "close_kind"))]


def _status_in(c: Cols, code: str) -> np.ndarray:
    s = c.s("http_statuses")
    has = s != None  # noqa: E711
    out = np.zeros(c.n, dtype=bool)
    if has.any():
        out[has] = pd.Series(s[has]).str.contains(rf"(?:^|,){code}(?:,|$)", regex=True).to_numpy(dtype=bool)
    return out


def _rule_body_too_large(c: Cols):
    http = c.http
    b1 = http & _status_in(c, "413")
    declared, sent = c.num("http_last_request_body_declared"), c.num("http_last_request_body_sent")
    server_closed = c.eq("closer", "server") & ~c.eq("close_kind", "none")
    b2 = http & c.t("http_last_request_body_declared") & ~np.isnan(sent) & (sent < declared) & server_closed
    cl_last, close = c.num("_client_last_data_ns"), c.close_ts
    with np.errstate(invalid="ignore"):
        sending = (np.nan_to_num(cl_last) != 0) & ~np.isnan(close) & (close != 0) \
            & (cl_last >= close - np.maximum(0.05, 10 * c.rtt_s) * NS)
    b3 = http & c.isin("http_last_method", ("POST", "PUT", "PATCH")) & c.false("http_last_request_complete") \
        & sending & server_closed & (c.z("client_payload_bytes") >= 65536)
    names = ("http_last_request_body_sent", "http_last_request_body_declared")
    return [Branch("body-too-large", b1, 0.9, ("http_last_response_frame", "close_frame"),
                   _fmt(lambda s, d: f"HTTP 413; body sent {_n(s)} of {_n(d)} bytes", c, *names)),
            Branch("body-too-large", b2, np.where(declared > 1_000_000, 0.8, 0.6),
                   ("http_last_request_frame", "close_frame"),
                   _fmt(lambda s, d: f"server closed while the body was arriving: {_n(s)} of {_n(d)} bytes sent",
                        c, *names)),
            Branch("body-too-large", b3, 0.55, ("http_last_request_frame", "close_frame"),
                   _fmt(lambda meth, n: f"server closed while a {meth} body was still arriving ({n} bytes sent; "
                        f"the declared length was not captured)", c, "http_last_method", "client_payload_bytes"))]


def _rule_rate_limited(c: Cols, peaks: Callable[[np.ndarray], list]):
    s429 = _status_in(c, "429")
    m = s429 | (_status_in(c, "503") & np.array([bool(x) for x in c.s("http_retry_after").tolist()], dtype=bool))

    def why(mm):
        return [f"HTTP {'429' if a else '503 with Retry-After'}; {p} concurrent connections to this server at peak"
                for a, p in zip(s429[mm].tolist(), peaks(mm))]
    return [Branch("rate-limited", m, 0.9, ("http_last_response_frame", "close_frame"), why)]


def _rule_keepalive_race(c: Cols):
    base = c.http & c.eq("closer", "server") & c.eq("close_kind", "FIN") & (c.z("http_requests") >= 2) \
        & ~c.t("http_last_request_answered") & c.eq("first_fin_by", "server") & ~c.na("http_last_request_ts")
    fin = c.i64("_fin_ts")
    req = c.i64("http_last_request_ts")
    window = (1.2 * c.rtt_s + 0.001) * NS
    sv_last = c.i64("_server_last_data_ns")
    idle_ok = (sv_last == 0) | ((fin - sv_last) >= idle_threshold_s(c.rtt_s) * NS)
    m = base & (req >= fin - window) & idle_ok
    idle = np.nan_to_num(c.num("idle_before_close_s"))

    def why(mm):
        return [f"the server closed the idle connection after {i:.3f} s and the client sent "
                f"{meth or 'an encrypted request'} {(r - f) / 1e6:+.1f} ms after that FIN; no response"
                for i, meth, r, f in zip([x or 0.0 for x in c.py("idle_before_close_s", mm)],
                                         c.py("http_last_method", mm), req[mm].tolist(), fin[mm].tolist())]
    return [Branch("keepalive-race", m, 0.9, ("close_frame", "http_last_request_frame", "first_rst_frame"), why,
                   idle_s=idle)]


def _no_response_wait(c: Cols):
    def f():
        base = c.http & c.eq("closer", "server") & ~c.eq("close_kind", "none") & c.awaiting_response
        burst = c.eq("close_kind", "RST") & (c.z("server_rst_burst") >= RST_BURST)
        ok = base & ~burst & ~c.na("http_last_request_ts") & ~c.na("close_time")
        req, close = c.i64("http_last_request_ts"), c.i64("close_time")
        ok &= close >= req
        return np.where(ok, (close - req) / NS, np.nan)
    return c.cache("@wait", f)


def _rule_request_rejected(c: Cols):
    wait = _no_response_wait(c)
    m = ~np.isnan(wait) & (wait <= c.soon_s)
    return [Branch("request-rejected", m, 0.85, ("http_last_request_frame", "close_frame"),
                   lambda mm: [f"the server closed {w * 1000:.1f} ms after a complete {meth or 'encrypted'} "
                               f"request, without a response byte"
                               for w, meth in zip(wait[mm].tolist(), c.py("http_last_method", mm))])]


def _rule_server_timeout(c: Cols):
    wait = _no_response_wait(c)
    m = ~np.isnan(wait) & (wait > c.soon_s)
    return [Branch("server-timeout", m, 0.8, ("http_last_request_frame", "close_frame"),
                   lambda mm: [f"the server closed {w:.2f} s after the request, without a response byte"
                               for w in wait[mm].tolist()])]


def _rule_client_timeout(c: Cols):
    base = c.eq("closer", "client") & ~c.eq("close_kind", "none") & c.awaiting_response
    wait = (c.i64("close_time") - c.i64("http_last_request_ts")) / NS
    soon = wait < np.maximum(0.2, 20 * c.rtt_s)
    ev = ("http_last_request_frame", "close_frame")
    return [Branch("client-abort", base & soon, 0.6, ev,
                   lambda mm: [f"the client gave up {w * 1000:.1f} ms after its request, before any response "
                               f"byte: too soon for a read timeout, the request was cancelled"
                               for w in wait[mm].tolist()]),
            Branch("client-timeout", base & ~soon, 0.85, ev,
                   lambda mm: [f"the client closed {w:.2f} s after its request, before any response byte "
                               f"(its read timeout)" for w in wait[mm].tolist()])]


def _rule_client_abort(c: Cols):
    client = c.eq("closer", "client")
    b1 = client & ~c.eq("close_kind", "none") & c.response_flowing
    b2 = client & c.eq("close_kind", "RST") & c.eq("closer_state", "ESTABLISHED") & c.http \
        & c.t("http_last_request_answered") & (~c.true("http_last_response_complete") | c.eq("app_protocol", "tls"))
    ev = ("http_last_response_frame", "close_frame")
    return [Branch("client-abort", b1, 0.8, ev, "the client closed while the response was still flowing"),
            Branch("client-abort", b2, 0.6, ev,
                   "the client reset the connection after the response arrived (closed with unread data)")]


def _rule_connection_leak(c: Cols):
    base = c.eq("closer", "server") & c.eq("close_kind", "FIN") & c.all_answered
    delay = c.num("_client_fin_delay_s")
    opened = c.z("_client_opened_while_held")
    close = c.close_ts
    has_close = ~np.isnan(close) & (close != 0)
    held = c.capture_end_s - c.i64("close_time") / NS
    lazy = c.z("_client_lazy_close_s")
    b1 = base & c.eq("client_state", "CLOSE_WAIT") & has_close & (held >= np.maximum(0.02, 10 * c.rtt_s)) \
        & (held > lazy)
    b2 = base & ~b1 & ~np.isnan(delay) & (delay >= LEAK_HOLD_S) & (opened != 0)
    op = opened.astype(np.int64)

    def why1(m):
        return [f"the server closed; the client acknowledged but never closed its end (CLOSE_WAIT for {h:.2f} s, "
                f"until the capture ended{f', while it opened {o} new connection(s) to the server' if o else ''})"
                for h, o in zip(held[m].tolist(), op[m].tolist())]
    return [Branch("connection-leak", b1, np.where(opened != 0, 0.75, 0.6), ("close_frame",), why1),
            Branch("connection-leak", b2, 0.65, ("close_frame",),
                   lambda m: [f"the server closed; the client held the connection in CLOSE_WAIT for {d:.1f} s "
                              f"while it opened {o} new connection(s) to the server"
                              for d, o in zip(delay[m].tolist(), op[m].tolist())])]


def _rule_server_abort(c: Cols):
    state = c.s("closer_state")
    m = c.eq("closer", "server") & c.eq("close_kind", "RST") & (state != None) \
        & ~c.isin("closer_state", ("LISTEN", "NONE"))  # noqa: E711
    burst = c.z("server_rst_burst").astype(np.int64)
    waiting = c.awaiting_response

    def why(mm):
        return ["the server reset an established connection" + (" with a request pending" if w else "")
                + (f" ({b} connections to it reset within 10 ms of this one: a crash or a restart)"
                   if b >= RST_BURST else "") for w, b in zip(waiting[mm].tolist(), burst[mm].tolist())]
    return [Branch("server-abort", m, 0.7, ("close_frame",), why)]


def _rule_idle_close(c: Cols):
    idle = np.nan_to_num(c.num("idle_before_close_s"))
    m = c.eq("closer", "server") & c.eq("close_kind", "FIN") & c.all_answered \
        & ~c.false("http_client_keep_alive") & ~c.false("http_server_keep_alive") & (idle >= idle_threshold_s(c.rtt_s))
    delay = c.num("_client_fin_delay_s")
    late = ~np.isnan(delay) & (delay >= 0.1)
    wait = c.eq("client_state", "CLOSE_WAIT")

    def why(mm):
        out = []
        for i, lt, d, w in zip(idle[mm].tolist(), late[mm].tolist(), delay[mm].tolist(), wait[mm].tolist()):
            s = f"the server closed the connection after {i:.3f} s idle (its keep-alive timeout)"
            if lt:
                s += f"; the client closed its end {d:.2f} s later, at its next use of the connection"
            elif w:
                s += "; the client had not closed its end yet when the capture ended"
            out.append(s)
        return out
    return [Branch("idle-close", m, 0.85, ("close_frame",), why, idle_s=idle)]


def _rule_graceful(c: Cols):
    fin = c.eq("close_kind", "FIN")
    answered = ~c.http | c.all_answered
    b1 = fin & c.eq("conn_state", "SF") & answered
    b2 = fin & c.t("rst_after_close") & answered
    b3 = c.t("_tls_closed") & answered               # (TLS read with its keys: decision._tls_closed_rows)
    b4 = c.eq("closer", "client") & c.eq("close_kind", "RST") & c.http & c.all_answered \
        & c.true("http_last_response_complete") & ~c.eq("app_protocol", "tls")
    closer = c.s("closer")
    return [Branch("graceful", b1, 0.9, ("close_frame",), "FIN exchange, every request answered"),
            Branch("graceful", b2, 0.8, ("close_frame",), "FIN exchange, then a RST after both FINs"),
            Branch("graceful", b3, 0.8, ("close_frame",),
                   lambda m: [f"the {x} ended TLS (close_notify) after the last response" for x in closer[m]]),
            Branch("graceful", b4, 0.7, ("close_frame",),
                   "the client reset the connection after every response had arrived whole (an abortive "
                   "close, SO_LINGER 0: haproxy closes its server connections so)")]


def _rule_incomplete(c: Cols):
    return [Branch("incomplete", c.eq("close_kind", "none"), 0.9, ("last_frame",),
                   "the capture ended with the connection open")]


def _phase(c: Cols) -> np.ndarray:
    """decision._phase over columns."""
    none = c.eq("close_kind", "none")
    hs_state = c.isin("conn_state", ("S0", "SH", "SHR", "RSTOS0"))
    tunnel_ok = c.eq("app_protocol", "http-proxy-tunnel") & ~c.na("proxy_connect_status") \
        & (c.z("proxy_connect_status") >= 200) & (c.z("proxy_connect_status") < 300) & ~c.t("tls")
    conds = [none & hs_state, none,
             c.isin("closer_state", ("SYN_SENT", "SYN_RECEIVED", "LISTEN", "NONE"))
             & c.isin("conn_state", ("REJ", "S0", "RSTOS0", "SH")),
             c.isin("peer_state", ("SYN_SENT", "LISTEN")),
             tunnel_ok,
             c.t("tls") & ~c.t("tls_handshake_complete"),
             c.http & c.false("http_last_request_complete"),
             c.http & c.awaiting_response,
             c.http & c.response_flowing,
             c.http,
             c.eq("app_protocol", "http-proxy-tunnel")]
    choices = ["tcp-handshake", "open", "tcp-handshake", "tcp-handshake", "tunnel", "tls-handshake", "request",
               "awaiting-response", "response", "idle", "tunnel"]
    return np.select(conds, choices, default="data").astype(object)


def _rules(peaks):
    """The rules of rules.RULES, in its order, as column functions."""
    return [("connection-refused", _rule_connection_refused), ("middlebox-reset", _rule_middlebox_reset),
            ("network-loss", _rule_network_loss), ("tls-handshake-failure", _rule_tls_handshake_failure),
            ("tls-certificate-rejected", _rule_tls_certificate_rejected), ("http2-goaway", _rule_http2_goaway),
            ("proxy-disconnect", _rule_proxy_disconnect), ("body-too-large", _rule_body_too_large),
            ("rate-limited", lambda c: _rule_rate_limited(c, peaks)), ("keepalive-race", _rule_keepalive_race),
            ("request-rejected", _rule_request_rejected), ("server-timeout", _rule_server_timeout),
            ("client-timeout", _rule_client_timeout), ("client-abort", _rule_client_abort),
            ("connection-leak", _rule_connection_leak), ("server-abort", _rule_server_abort),
            ("idle-close", _rule_idle_close), ("graceful", _rule_graceful), ("incomplete", _rule_incomplete)]


def _evidence(c: Cols, names: tuple, m: np.ndarray) -> list:
    """The sorted distinct frame numbers of the columns `names` for the rows `m`, as
    the per-row Match's evidence text."""
    if len(names) == 1:
        v = c.num(names[0])[m]
        out = np.full(len(v), "", dtype=object)
        ok = ~np.isnan(v)
        out[ok] = v[ok].astype(np.int64).astype(str).astype(object)
        return out.tolist()
    cols = [c.py(n, m) for n in names]
    return [",".join(str(x) for x in sorted({int(x) for x in xs if x is not None and x == x})) for xs in zip(*cols)]


def decide(df: pd.DataFrame, rows: np.ndarray, out: dict, peak_of: Callable[[np.ndarray], list],
           cap_end: float) -> None:
    """Decide the rows `rows` of `df` into decide()'s output arrays `out` (classify.
    decide). `peak_of(ix)`: the peak concurrency of the servers of table rows ix (the
    rate-limited detail)."""
    if not len(rows):
        return
    quiet = _quiet(Cols(df, rows, cap_end))
    if quiet.any():
        # (the rules of the others would each read their columns for every row)
        _decide(df, rows[quiet], out, [("incomplete", _rule_incomplete)], cap_end)
        rows = rows[~quiet]
        if not len(rows):
            return
    _decide(df, rows, out, _rules(lambda m: peak_of(rows[m])), cap_end)


def _quiet(c: Cols) -> np.ndarray:
    """The connections only `incomplete` can claim: still open when the capture ended,
    no RST, not a byte of payload either way, no retransmission. Each other rule needs
    a FIN or a RST, payload (HTTP, TLS, a proxy) or retransmitted segments (a flood's
    or a scan's million unanswered SYNs are such rows; tests/test_vector_rules.py
    compares them with every per-row rule)."""
    return c.eq("close_kind", "none") & c.na("first_rst_frame") & c.eq("app_protocol", "none") \
        & (c.z("client_payload_bytes") == 0) & (c.z("server_payload_bytes") == 0) \
        & (c.z("retransmissions") == 0) & (c.z("syn_retransmits") == 0)


def _decide(df: pd.DataFrame, rows: np.ndarray, out: dict, rules: list, cap_end: float) -> None:
    """decide() of `rows` with `rules` (name, column function) in their order."""
    c = Cols(df, rows, cap_end)
    branches = [b for _, fn in rules for b in fn(c)]
    n = len(rows)
    chosen = np.full(n, -1, dtype=np.int64)
    for k, b in enumerate(branches):
        free = (chosen < 0) & b.mask
        chosen[free] = k
    matched = np.stack([b.mask for b in branches], axis=1)
    _alternatives(out, rows, matched, branches, chosen)
    cause = out["cause"]
    conf = out["confidence"]
    ev = out["evidence_frames"]
    why = out["cause_detail"]
    closer = out["closer"]
    wire_closer = c.s("closer")
    for k, b in enumerate(branches):
        m = chosen == k
        if not m.any():
            continue
        ix = rows[m]
        cause[ix] = b.cause
        conf[ix] = np.round(b.confidence[m] if isinstance(b.confidence, np.ndarray) else b.confidence, 2)
        ev[ix] = _evidence(c, b.evidence, m)
        why[ix] = b.why(m) if callable(b.why) else b.why
        closer[ix] = b.closer if b.closer else wire_closer[m]
        if b.idle_s is not None:
            out["_idle_s"][ix] = b.idle_s[m]
    rest = chosen < 0
    if rest.any():
        fin_ok = rest & c.eq("close_kind", "FIN") & ~c.t("abnormal")
        other = rest & ~fin_ok
        ix = rows[fin_ok]
        cause[ix], conf[ix], why[ix] = "graceful", 0.6, "closed by FIN, nothing abnormal seen"
        ev[ix] = _evidence(c, ("close_frame",), fin_ok)
        closer[ix] = wire_closer[fin_ok]
        ix = rows[other]
        cause[ix], conf[ix] = "unknown", 0.3
        ev[ix] = _evidence(c, ("close_frame",), other)
        why[ix] = [f"{k} from the {w} in {s}; no rule matched" for k, w, s in
                   zip(c.py("close_kind", other), c.py("closer", other), c.py("closer_state", other))]
        closer[ix] = wire_closer[other]
    out["phase"][rows] = _phase(c)


def _alternatives(out: dict, rows: np.ndarray, matched: np.ndarray, branches: list, chosen: np.ndarray) -> None:
    """The `alternatives` text: the causes of the other rules that matched, in rule
    order, without repeats and without the chosen cause; one text per distinct pattern
    of matches (a few), not per row."""
    causes = np.array([b.cause for b in branches] + [""], dtype=object)
    n = len(rows)
    assert matched.shape[1] <= 56, "alternatives: the match pattern must fit an int64 key"
    if not matched.shape[1]:
        out["alternatives"][rows] = ""
        return
    weights = np.left_shift(np.int64(1), np.arange(matched.shape[1], dtype=np.int64))
    keyed = (matched.astype(np.int64) @ weights) * 64 + (chosen + 1)        # (< 63 branches)
    uniq, first, inverse = np.unique(keyed, return_index=True, return_inverse=True)
    texts = []
    for i in first.tolist():
        mine = causes[chosen[i]] if chosen[i] >= 0 else None
        hits = [causes[k] for k in np.flatnonzero(matched[i]).tolist() if k != chosen[i]]
        texts.append(",".join(dict.fromkeys(x for x in hits if x != mine)))
    out["alternatives"][rows] = np.array(texts, dtype=object)[inverse.ravel()]
