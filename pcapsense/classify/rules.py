"""One rule per cause (../shared/taxonomy.md). Each rule reads a connection's facts
(`Facts`: the TCP columns, the application facts, the server context) and returns a
`Match` or None. `RULES` is ordered most specific first: the first match is the cause,
the later matches are listed as alternatives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from typing import Callable

NS = 1_000_000_000


@dataclass
class Match:
    cause: str
    confidence: float
    evidence: list[int]
    why: str
    closer: str | None = None          # override (middlebox)
    extra: dict = field(default_factory=dict)


class Facts:
    """Attribute access over the merged row (missing values already None: see
    classify.decision._row_dicts); a name the row does not have reads as None. The row's
    values are the instance's attributes, so reading one is a plain attribute lookup
    (the rules read about 70 per connection)."""

    def __init__(self, row: dict, server: dict):
        d = self.__dict__
        d.update(row)
        d["server"] = server

    def __getattr__(self, name):         # only for names the row does not have
        if name.startswith("__"):
            raise AttributeError(name)
        return None

    # ---- derived facts
    @property
    def rtt_s(self) -> float:
        return (self.rtt_ms or 1.0) / 1000.0

    @property
    def soon_s(self) -> float:
        """taxonomy: 'soon' = within about max(1 s, 10 x handshake RTT)."""
        return max(1.0, 10 * self.rtt_s)

    @property
    def close_ts(self) -> int | None:
        t = self.close_time
        return None if t is None else t.value

    @property
    def server_fin_ts(self) -> int | None:
        if self.first_fin_by == "server":
            return self._fin_ts
        return None

    @property
    def http(self) -> bool:
        return (self.http_requests or 0) > 0

    @property
    def awaiting_response(self) -> bool:
        """At the close: the last request was complete and no response byte had come
        (a response that started only after the close does not count)."""
        if not (self.http and self.http_last_request_complete):
            return False
        if not self.http_last_request_answered:
            return True
        rts, cts = self.http_last_response_ts, self.close_ts
        return rts is not None and cts is not None and rts > cts

    @property
    def response_complete(self) -> bool | None:
        """The last response arrived whole. When the snaplen cut packets of the connection
        (a cut head hides where the body starts, cut chunks hide the chunk sizes), the
        parser cannot tell, and the packets decide: the server had stopped sending before
        the connection was closed."""
        done = self.http_last_response_complete
        if done is False and (self.snaplen_cut_packets or 0) > 0:
            last, close = self._server_last_data_ns, self.close_ts
            return bool(last and close and last <= close)
        return done

    @property
    def response_flowing(self) -> bool:
        return self.http and self.http_last_request_answered and self.response_complete is False

    @property
    def all_answered(self) -> bool:
        return self.http and (self.http_unanswered or 0) == 0 and self.response_complete is not False


def tls_exchange_view(row: dict) -> None:
    """The exchange model of a TLS connection whose bytes pcapsense cannot read (no key
    log): the client's application-data records are its requests, the server's records
    its responses, and the TLS close decides who ended it. Writes into `row` (a rule
    input row, see classify.decide) the HTTP facts the rules read, from the times the
    engine keeps of each direction's last data (alert records excluded) and the client's
    first request record:

    - a request is the client's data after the handshake; the last one was answered when
      the server sent data after it; there was an earlier exchange when the server sent
      data after the first request and before the client's last data;
    - the side whose alert (close_notify) came first closed the connection, even when the
      other side's FIN or RST reached the wire first (Python clients answer a close_notify
      within a millisecond, often with RST); the wire's `closer` and `close_kind` stay in
      the table, only the rules see this view;
    - a client segment that is one TLS record of at most 30 bytes is not a request: it is
      an HTTP/2 control frame (SETTINGS ack, WINDOW_UPDATE after the response), too short
      for any request (the engine's `last_msg_*`, eng_is_tls_control_segment).
    """
    req, cl, sv = row.get("tls_client_request_ts"), row.get("_client_last_data_ns"), row.get("_server_last_data_ns")
    by, close_ns = row.get("tls_close_by"), row.get("_tls_close_ns") or 0
    if by is not None and close_ns > 0:
        wire = row.get("close_time")
        wire_ns = None if wire is None else wire.value
        if wire_ns is None or close_ns <= wire_ns + 1:
            row["closer"], row["close_kind"] = by, "FIN"
            row["close_time"] = pd.Timestamp(close_ns, tz="UTC")
            row["close_frame"] = row.get("tls_close_frame") or row.get("close_frame")
            row["first_fin_by"], row["_fin_ts"] = by, close_ns
            row["_tls_closed"] = True
    if req is None or not cl:
        return
    msg = row.get("_client_last_msg_ns")
    if msg and msg < cl:                 # (the client's last data was a control frame)
        cl, frame = msg, row.get("_client_last_msg_frame")
    else:
        frame = row.get("_client_last_data_frame")
    cl = max(cl, req)
    answered = bool(sv) and sv > cl
    row["http_requests"] = 2 if (sv and req < sv < cl) else 1
    row["http_last_request_ts"] = cl
    row["http_last_request_frame"] = frame or row.get("tls_client_request_frame")
    row["http_last_request_complete"] = True
    row["http_last_request_answered"] = answered
    row["http_unanswered"] = 0 if answered else 1
    row["http_last_response_ts"] = sv if answered else None
    row["http_last_response_complete"] = True if answered else None


def _frames(*xs) -> list[int]:
    out = []
    for x in xs:
        if x is None:
            continue
        try:
            if isinstance(x, float) and math.isnan(x):
                continue
            out.append(int(x))
        except (TypeError, ValueError):
            continue
    return sorted(set(out))


def idle_threshold_s(rtt_s):
    """Silence before a server FIN that makes it an idle close (not the end of an
    exchange): 50 ms or 5 handshake RTTs. Works on scalars and numpy arrays."""
    return np.maximum(0.05, 5 * rtt_s)


def _n(x) -> str:
    return "?" if x is None else str(int(x))


RULES: list[tuple[str, Callable[[Facts], Match | None]]] = []


def rule(cause: str):
    def deco(fn):
        RULES.append((cause, fn))
        return fn
    return deco


@rule("connection-refused")
def connection_refused(f: Facts):
    if f.conn_state == "REJ" or (f.close_kind == "RST" and f.closer == "server" and f.closer_state in ("LISTEN", "NONE")
                                 and f.peer_state == "SYN_SENT"):
        return Match("connection-refused", 0.95, _frames(f.first_frame, f.close_frame),
                     "the SYN was answered by RST: nothing listening (or backlog full)")


@rule("middlebox-reset")
def middlebox_reset(f: Facts):
    if f.close_kind != "RST" or f.first_rst_frame is None:
        return None
    reasons = []
    sender_ttl_stable = (f.server_ttl_changes if f.first_rst_by == "server" else f.client_ttl_changes) or 0
    if f.rst_ttl is not None and f.rst_prev_ttl is not None and f.rst_ttl != f.rst_prev_ttl and sender_ttl_stable <= 2:
        reasons.append(f"IP TTL {f.rst_ttl} where its sender's packets had {f.rst_prev_ttl}")
    if f.rst_mac_differs:
        reasons.append("link-layer source differs from its sender's packets")
    if not reasons:
        return None
    return Match("middlebox-reset", 0.85 if len(reasons) == 1 else 0.95,
                 _frames(f.first_rst_frame), "RST not sent by the endpoint it claims: " + "; ".join(reasons),
                 closer="middlebox", extra={"betrayed_by": reasons})


@rule("network-loss")
def network_loss(f: Facts):
    if f.conn_state == "S0" and (f.syn_retransmits or 0) >= 1:
        return Match("network-loss", 0.8, _frames(f.first_frame),
                     f"{f.syn_retransmits} SYN retransmissions, never answered")
    retr = f.retransmissions or 0
    if retr >= 3 and not f.all_answered and (f.close_kind in ("none", "RST") or (f.max_idle_s or 0) >= 1.0):
        return Match("network-loss", 0.7, _frames(f.max_idle_frame, f.close_frame),
                     f"{retr} retransmissions, longest silence {f.max_idle_s or 0:.2f} s, before the connection died")


@rule("tls-handshake-failure")
def tls_handshake_failure(f: Facts):
    if not f.tls or f.tls_handshake_complete or f.close_kind == "none":
        return None
    if f.tls_alert_by == "server" and (f.tls_alert_level == 2 or f.tls_alert not in ("close_notify", None)):
        return Match("tls-handshake-failure", 0.95, _frames(f.tls_client_hello_frame, f.tls_alert_frame, f.close_frame),
                     f"server alert {f.tls_alert} during the handshake (offered {f.tls_versions_offered}, "
                     f"SNI {f.tls_sni})")
    if f.closer == "server" and f.tls_server_hello_frame is None and f.tls_alert_by != "client":
        what = "sent no TLS (not a TLS port?)" if (f.server_payload_bytes or 0) and not f.tls_server_records else \
            "closed right after the ClientHello"
        return Match("tls-handshake-failure", 0.8, _frames(f.tls_client_hello_frame, f.close_frame),
                     f"server {what}")
    if f.tls_alert_by == "client" and f.tls_alert in ("protocol_version", "handshake_failure", "insufficient_security",
                                                      "illegal_parameter", "decode_error"):
        return Match("tls-handshake-failure", 0.75, _frames(f.tls_alert_frame, f.close_frame),
                     f"client alert {f.tls_alert}: no common TLS parameters")


@rule("tls-certificate-rejected")
def tls_certificate_rejected(f: Facts):
    if not f.tls or f.tls_handshake_complete or f.close_kind == "none":
        return None
    if f.tls_alert_by == "client" and f.tls_alert in ("unknown_ca", "bad_certificate", "certificate_expired",
                                                      "certificate_unknown", "unsupported_certificate",
                                                      "certificate_revoked", "decrypt_error", "access_denied"):
        return Match("tls-certificate-rejected", 0.95, _frames(f.tls_alert_frame, f.close_frame),
                     f"client alert {f.tls_alert} after the server's certificate" + cert_note(f.tls_certificate))
    if f.closer == "client" and f.tls_server_hello_frame is not None and f.tls_client_app_data_frame is None:
        return Match("tls-certificate-rejected", 0.7, _frames(f.tls_server_hello_frame, f.close_frame),
                     "client closed after the server's flight without sending application data"
                     + cert_note(f.tls_certificate))


def cert_note(cert) -> str:
    """What the verdict says of a certificate that was expired or not yet valid at the
    handshake (tls_certificate: TLS 1.2's in clear, TLS 1.3's read with the keys)."""
    if not isinstance(cert, dict):
        return ""
    days = cert.get("days_to_expiry")
    if cert.get("expired"):
        return f"; the server's certificate had expired {abs(days or 0):.1f} days before (not after {cert.get('not_after')})"
    if cert.get("not_yet_valid"):
        return f"; the server's certificate was not yet valid (not before {cert.get('not_before')})"
    return ""


@rule("http2-goaway")
def http2_goaway(f: Facts):
    if f.h2_goaway_frame is not None or f.h2_rst_stream_frame is not None:
        if f.h2_goaway_frame is not None:
            return Match("http2-goaway", 0.9, _frames(f.h2_goaway_frame, f.close_frame),
                         f"GOAWAY {f.h2_goaway_error} last stream {f.h2_goaway_last_stream} from the {f.h2_goaway_by}")
        return Match("http2-goaway", 0.7, _frames(f.h2_rst_stream_frame, f.close_frame),
                     f"RST_STREAM {f.h2_rst_stream_error}")


@rule("proxy-disconnect")
def proxy_disconnect(f: Facts):
    if f.app_protocol not in ("http-proxy", "http-proxy-tunnel"):
        return None
    status = f.proxy_connect_status or f.http_last_status
    if status in (407, 500, 502, 503, 504):
        return Match("proxy-disconnect", 0.9, _frames(f.http_last_response_frame, f.close_frame),
                     f"the proxy answered {status}")
    if f.closer == "server" and f.close_kind != "none" and not f.all_answered:
        return Match("proxy-disconnect", 0.8, _frames(f.close_frame), "the proxy closed the connection")
    if f.closer == "server" and f.app_protocol == "http-proxy-tunnel" and f.close_kind != "none" \
            and f.tls_alert != "close_notify" and not (f.tls_alert or "").startswith("encrypted"):
        return Match("proxy-disconnect", 0.6, _frames(f.close_frame),
                     f"the proxy ended the tunnel ({f.close_kind}) before the client did, with no TLS "
                     f"close_notify from the origin inside")


@rule("body-too-large")
def body_too_large(f: Facts):
    if not f.http:
        return None
    statuses = (f.http_statuses or "").split(",")
    declared, sent = f.http_last_request_body_declared, f.http_last_request_body_sent
    if "413" in statuses:
        return Match("body-too-large", 0.9, _frames(f.http_last_response_frame, f.close_frame),
                     f"HTTP 413; body sent {_n(sent)} of {_n(declared)} bytes")
    if declared and sent is not None and sent < declared and f.closer == "server" and f.close_kind != "none":
        return Match("body-too-large", 0.8 if declared > 1_000_000 else 0.6,
                     _frames(f.http_last_request_frame, f.close_frame),
                     f"server closed while the body was arriving: {_n(sent)} of {_n(declared)} bytes sent")
    # (the declared length unknown: the client must still have been sending when the
    # server closed; a head cut by the snaplen leaves a finished request looking cut too)
    cl_last, close = f._client_last_data_ns, f.close_ts
    sending = bool(cl_last and close and cl_last >= close - max(0.05, 10 * f.rtt_s) * NS)
    if f.http_last_method in ("POST", "PUT", "PATCH") and f.http_last_request_complete is False and sending \
            and f.closer == "server" and f.close_kind != "none" and (f.client_payload_bytes or 0) >= 65536:
        return Match("body-too-large", 0.55, _frames(f.http_last_request_frame, f.close_frame),
                     f"server closed while a {f.http_last_method} body was still arriving "
                     f"({f.client_payload_bytes} bytes sent; the declared length was not captured)")


@rule("rate-limited")
def rate_limited(f: Facts):
    statuses = (f.http_statuses or "").split(",")
    if "429" in statuses or ("503" in statuses and f.http_retry_after):
        return Match("rate-limited", 0.9, _frames(f.http_last_response_frame, f.close_frame),
                     f"HTTP {'429' if '429' in statuses else '503 with Retry-After'}; "
                     f"{f.server.get('peak_concurrency', '?')} concurrent connections to this server at peak")


@rule("keepalive-race")
def keepalive_race(f: Facts):
    if not f.http or f.closer != "server" or f.close_kind != "FIN":
        return None
    if (f.http_requests or 0) < 2 or f.http_last_request_answered:
        return None
    fin = f.server_fin_ts
    req = f.http_last_request_ts
    if fin is None or req is None:
        return None
    # the request crossed the FIN: sent after it, or before it by less than about one
    # round trip (a FIN that follows a request by more had time to answer it: a rejection)
    window = (1.2 * f.rtt_s + 0.001) * NS
    # and the server was idle before its FIN (its keep-alive timeout), not answering
    sv_last = f._server_last_data_ns or 0
    idle_ok = not sv_last or (fin - sv_last) >= idle_threshold_s(f.rtt_s) * NS
    if req >= fin - window and idle_ok:
        idle = f.idle_before_close_s or 0.0
        return Match("keepalive-race", 0.9, _frames(f.close_frame, f.http_last_request_frame, f.first_rst_frame),
                     f"the server closed the idle connection after {idle:.3f} s and the client sent "
                     f"{f.http_last_method or 'an encrypted request'} {(req - fin) / 1e6:+.1f} ms after that FIN; "
                     f"no response",
                     extra={"idle_s": idle, "request_minus_fin_ms": (req - fin) / 1e6})


#: server resets of established connections within 10 ms of each other that make a
#: crash or a restart (server-abort), stronger evidence than one connection's wait
RST_BURST = 3


def _no_response_close(f: Facts):
    if not f.http or f.closer != "server" or f.close_kind == "none" or not f.awaiting_response:
        return None
    if f.close_kind == "RST" and (f.server_rst_burst or 0) >= RST_BURST:
        return None                      # one of a burst of resets: server-abort
    req, close = f.http_last_request_ts, f.close_ts
    if req is None or close is None or close < req:
        return None
    return (close - req) / NS


@rule("request-rejected")
def request_rejected(f: Facts):
    wait = _no_response_close(f)
    if wait is not None and wait <= f.soon_s:
        return Match("request-rejected", 0.85, _frames(f.http_last_request_frame, f.close_frame),
                     f"the server closed {wait * 1000:.1f} ms after a complete {f.http_last_method or 'encrypted'} "
                     f"request, without a response byte")


@rule("server-timeout")
def server_timeout(f: Facts):
    wait = _no_response_close(f)
    if wait is not None and wait > f.soon_s:
        return Match("server-timeout", 0.8, _frames(f.http_last_request_frame, f.close_frame),
                     f"the server closed {wait:.2f} s after the request, without a response byte",
                     extra={"wait_s": wait})


@rule("client-timeout")
def client_timeout(f: Facts):
    if f.closer == "client" and f.close_kind != "none" and f.awaiting_response:
        wait = (f.close_ts - f.http_last_request_ts) / NS
        if wait < max(0.2, 20 * f.rtt_s):
            # far below any read timeout: the client cancelled the request
            return Match("client-abort", 0.6, _frames(f.http_last_request_frame, f.close_frame),
                         f"the client gave up {wait * 1000:.1f} ms after its request, before any response "
                         f"byte: too soon for a read timeout, the request was cancelled",
                         extra={"wait_s": wait})
        return Match("client-timeout", 0.85, _frames(f.http_last_request_frame, f.close_frame),
                     f"the client closed {wait:.2f} s after its request, before any response byte "
                     f"(its read timeout)", extra={"wait_s": wait})


@rule("client-abort")
def client_abort(f: Facts):
    if f.closer == "client" and f.close_kind != "none" and f.response_flowing:
        return Match("client-abort", 0.8, _frames(f.http_last_response_frame, f.close_frame),
                     "the client closed while the response was still flowing")
    if f.closer == "client" and f.close_kind == "RST" and f.closer_state == "ESTABLISHED" and f.http \
            and f.http_last_request_answered and (f.http_last_response_complete is not True
                                                  or f.app_protocol == "tls"):
        # a close with unread data makes the kernel send RST: the client abandoned the
        # response (one the parser saw whole was not abandoned: see graceful)
        return Match("client-abort", 0.6, _frames(f.http_last_response_frame, f.close_frame),
                     "the client reset the connection after the response arrived (closed with unread data)")


#: a connection the client closes this long after the server's FIN, while it opens new
#: connections to that server, was leaked (a pool closes a dead connection at its next
#: checkout or when the session ends: within a second or two of its next request)
LEAK_HOLD_S = 30.0


@rule("connection-leak")
def connection_leak(f: Facts):
    """The server closed; the client acknowledged and then sat in CLOSE_WAIT: until the
    capture ended, or for LEAK_HOLD_S or more while it opened new connections to that
    server (it kept working but never released this one). A pool that closes its dead
    connections at the next checkout or at the session's end (urllib3, httpx: often one
    or two seconds later) is an idle close; so is a connection still in CLOSE_WAIT at the
    end of the capture when the same client closed its other dead connections after a
    longer delay (it had not looked at this one yet)."""
    if not (f.closer == "server" and f.close_kind == "FIN" and f.all_answered is not False):
        return None
    delay = f._client_fin_delay_s
    opened = f._client_opened_while_held or 0
    if f.client_state == "CLOSE_WAIT" and f.close_ts:
        held = f.capture_end_s - f.close_ts / NS
        lazy = f._client_lazy_close_s or 0.0
        if held >= max(0.02, 10 * f.rtt_s) and held > lazy:
            also = f", while it opened {opened} new connection(s) to the server" if opened else ""
            return Match("connection-leak", 0.75 if opened else 0.6, _frames(f.close_frame),
                         f"the server closed; the client acknowledged but never closed its end "
                         f"(CLOSE_WAIT for {held:.2f} s, until the capture ended{also})", extra={"held_s": held})
    if delay is not None and delay >= LEAK_HOLD_S and opened:
        return Match("connection-leak", 0.65, _frames(f.close_frame),
                     f"the server closed; the client held the connection in CLOSE_WAIT for {delay:.1f} s "
                     f"while it opened {opened} new connection(s) to the server", extra={"held_s": delay})


@rule("server-abort")
def server_abort(f: Facts):
    if f.closer == "server" and f.close_kind == "RST" and f.closer_state not in ("LISTEN", "NONE", None):
        burst = f.server_rst_burst or 0
        why = "the server reset an established connection"
        if f.awaiting_response:
            why += " with a request pending"
        if burst >= RST_BURST:
            why += f" ({burst} connections to it reset within 10 ms of this one: a crash or a restart)"
        return Match("server-abort", 0.7, _frames(f.close_frame), why)


@rule("idle-close")
def idle_close(f: Facts):
    if f.closer == "server" and f.close_kind == "FIN" and f.all_answered and f.http_client_keep_alive is not False \
            and f.http_server_keep_alive is not False and (f.idle_before_close_s or 0) >= idle_threshold_s(f.rtt_s):
        idle = f.idle_before_close_s or 0.0
        why = f"the server closed the connection after {idle:.3f} s idle (its keep-alive timeout)"
        delay = f._client_fin_delay_s
        if delay is not None and delay >= 0.1:
            why += f"; the client closed its end {delay:.2f} s later, at its next use of the connection"
        elif f.client_state == "CLOSE_WAIT":
            why += "; the client had not closed its end yet when the capture ended"
        return Match("idle-close", 0.85, _frames(f.close_frame), why, extra={"idle_s": idle})


@rule("graceful")
def graceful(f: Facts):
    if f.close_kind == "FIN" and f.conn_state == "SF" and (not f.http or f.all_answered):
        return Match("graceful", 0.9, _frames(f.close_frame), "FIN exchange, every request answered")
    if f.close_kind == "FIN" and f.rst_after_close and (not f.http or f.all_answered):
        return Match("graceful", 0.8, _frames(f.close_frame), "FIN exchange, then a RST after both FINs")
    if f._tls_closed and (not f.http or f.all_answered):
        return Match("graceful", 0.8, _frames(f.close_frame),
                     f"the {f.closer} ended TLS (close_notify) after the last response")
    if f.closer == "client" and f.close_kind == "RST" and f.http and f.all_answered \
            and f.http_last_response_complete is True and f.app_protocol != "tls":
        return Match("graceful", 0.7, _frames(f.close_frame),
                     "the client reset the connection after every response had arrived whole (an abortive "
                     "close, SO_LINGER 0: haproxy closes its server connections so)")


@rule("incomplete")
def incomplete(f: Facts):
    if f.close_kind == "none":
        return Match("incomplete", 0.9, _frames(f.last_frame), "the capture ended with the connection open")
