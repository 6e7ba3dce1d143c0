"""Stage 4e: per-connection application facts (one row per connection that carried
payload), the input of the classifier next to the TCP columns.

Columns (all prefixed by protocol): see docs/schema.md, section "Application facts".
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from . import h2, http1, tls
from .segments import Piece

NS = 1_000_000_000

# every application column, with its kind, so the table has the same columns whatever
# the capture holds (documented in docs/schema.md)
COLUMNS = {
    "app_protocol": "str", "app_error": "str",
    "http_requests": "int", "http_responses": "int", "http_statuses": "str", "http_unanswered": "int",
    "http_100_continue": "bool", "http_last_method": "str", "http_last_target": "str",
    "http_last_request_frame": "int", "http_last_request_ts": "int", "http_last_request_complete": "bool",
    "http_last_request_body_declared": "int", "http_last_request_body_sent": "int",
    "http_last_request_expect_continue": "bool", "http_last_request_answered": "bool",
    "http_client_keep_alive": "bool", "http_absolute_form": "bool", "http_host": "str",
    "http_user_agent": "str", "http_prev_request_ts": "int", "http_last_status": "int",
    "http_last_response_frame": "int", "http_last_response_ts": "int", "http_last_response_complete": "bool",
    "http_server_keep_alive": "bool", "http_retry_after": "str", "http_server": "str", "http_malformed": "bool",
    "proxy_connect_status": "int",
    "tls": "bool", "tls_sni": "str", "tls_versions_offered": "str", "tls_version": "str",
    "tls_alpn_offered": "str", "tls_alpn": "str", "tls_client_hello_frame": "int",
    "tls_server_hello_frame": "int", "tls_certificate": "obj", "tls_handshake_complete": "bool",
    "tls_client_app_data_frame": "int", "tls_alert": "str", "tls_alert_level": "int", "tls_alert_by": "str",
    "tls_alert_frame": "int", "tls_client_records": "int", "tls_server_records": "int",
    "tls_client_request_frame": "int", "tls_client_request_ts": "int",
    "tls_cipher_suite": "str", "tls_decrypted": "str", "tls_records_skipped": "int", "tls_early_data": "str",
    "h2_frames": "int", "h2_goaway_frame": "int", "h2_goaway_by": "str", "h2_goaway_error": "str",
    "h2_goaway_last_stream": "int", "h2_rst_stream_frame": "int", "h2_rst_stream_error": "str",
    "h2_rst_streams": "int",
    # (internal, not in the table: each exchange's request and response time, int64 pairs,
    # for connections of two requests or more; classify.pool reads when they were idle)
    "_exchange_times": "obj",
}


# the compiled path's HTTP facts come as a tuple in this order (_http1.c: HTTP_FACTS)
_HTTP_FACTS = http1._http1.HTTP_FACTS if http1._http1 is not None else ()
_HTTP_ABSOLUTE = _HTTP_FACTS.index("http_absolute_form") if _HTTP_FACTS else -1
assert set(_HTTP_FACTS) <= set(COLUMNS)


def base_seq(streams: np.ndarray) -> np.ndarray:
    """Sequence number of each direction's first payload byte: int64 [len(rows), 2]."""
    d = streams["d"]
    syn_first = ((d["first_syn_frame"] == d["first_frame"]) & (d["first_syn_frame"] > 0)) | \
                ((d["first_synack_frame"] == d["first_frame"]) & (d["first_synack_frame"] > 0))
    return (d["isn"].astype(np.int64) + syn_first.astype(np.int64)) & 0xFFFFFFFF


def _payload_total(streams: np.ndarray) -> np.ndarray:
    d = streams["d"]
    b = d["seq_hi"] - ((d["syn_pkts"] + d["synack_pkts"]) > 0) - (d["fin_pkts"] > 0)
    return np.maximum(b, 0)


def _kind(first: bytes) -> str | None:
    if first.startswith(h2.PREFACE[:16]):
        return "h2c"
    if first.startswith(b"HTTP/1.") or http1._starts_message("request", first):
        return "http1"
    if tls.looks_like_tls(first):
        return "tls"
    return None


def _shift(pieces: list[Piece], at: int) -> list[Piece]:
    out = []
    for p in pieces:
        if p.end <= at:
            continue
        if p.offset < at:
            cut = at - p.offset
            p = Piece(at, p.data[cut:], p.length - cut, p.frame, p.ts_ns, p.tail)
        out.append(Piece(p.offset - at, p.data, p.length, p.frame, p.ts_ns, p.tail))
    return out


def _tls_facts(row: dict, cl: list[Piece], sv: list[Piece], prefix="tls") -> None:
    c, s = tls.parse_direction(cl, client=True), tls.parse_direction(sv, client=False)
    row["tls"] = True
    row["tls_sni"] = c.sni
    row["tls_versions_offered"] = ",".join(c.versions) or None
    row["tls_version"] = s.versions[0] if s.versions else None
    row["tls_alpn_offered"] = ",".join(c.alpn) or None
    row["tls_alpn"] = s.alpn[0] if s.alpn else None
    row["tls_client_hello_frame"] = c.hello_frame
    row["tls_server_hello_frame"] = s.hello_frame
    row["tls_certificate"] = s.certificate
    if s.suite is not None:
        from .tls_crypto import suite_name      # (cryptography: imported when TLS is seen)
        row["tls_cipher_suite"] = suite_name(s.suite)
    # handshake complete: TLS 1.2 both ChangeCipherSpec; TLS 1.3: the client sent
    # application data after the server's flight (its Finished, then data)
    if row["tls_version"] == "TLS 1.3":
        row["tls_handshake_complete"] = c.first_app_data_frame is not None and c.records >= 2 and \
            s.hello_frame is not None and (c.ccs_frame is not None or c.records >= 3)
    else:
        row["tls_handshake_complete"] = c.ccs_frame is not None and s.ccs_frame is not None
    row["tls_client_app_data_frame"] = c.first_app_data_frame
    # the client's first request: its first application-data record, but in TLS 1.3 the
    # first one is the client's encrypted Finished
    first_request = c.app_data[1 if row["tls_version"] == "TLS 1.3" else 0:][:1]
    if first_request and row["tls_handshake_complete"]:
        row["tls_client_request_frame"], row["tls_client_request_ts"] = first_request[0]
    alerts = [(a, "client") for a in c.alerts] + [(a, "server") for a in s.alerts]
    alerts.sort(key=lambda x: x[0].frame)
    fatal = [x for x in alerts if x[0].level == 2] or [x for x in alerts if x[0].description != "close_notify"]
    first = fatal[0] if fatal else (alerts[0] if alerts else None)
    row["tls_alert"] = first[0].description if first else None
    row["tls_alert_level"] = first[0].level if first else None
    row["tls_alert_by"] = first[1] if first else None
    row["tls_alert_frame"] = first[0].frame if first else None
    row["tls_client_records"] = c.records
    row["tls_server_records"] = s.records


def rows_for(stream_rows: np.ndarray, pieces: dict, sessions: dict | None = None,
             keyed: bool = False) -> tuple[list[dict], list[tuple]]:
    """Facts of the streams in `stream_rows` (STREAM_DTYPE rows of finalised streams)
    from their pieces and, for the TLS connections decrypted with a key log, their
    `sessions` (stream -> tls_session.Session): (fact rows, exchange rows). `keyed`: a
    key log was given (a TLS connection without a session then says why)."""
    from ..tcp.connections import client_direction
    cdir, _, _ = client_direction(stream_rows)
    totals = _payload_total(stream_rows)
    ids = stream_rows["stream"].tolist()
    client_dir = dict(zip(ids, cdir.tolist()))
    tot = {(st, d): int(totals[i, d]) for i, st in enumerate(ids) for d in (0, 1)}
    out = []
    for st in ids:
        if not any((st, d) in pieces for d in (0, 1)):
            continue
        try:
            out.append(_one(st, pieces, client_dir, tot, (sessions or {}).get(st), keyed))
        except Exception as exc:  # noqa: BLE001 - hostile bytes must not stop the analysis
            out.append({"stream": st, "app_protocol": "unknown", "app_error": f"{type(exc).__name__}: {exc}"[:200]})
    req_ts, resp_ts = EXCHANGE_COLUMNS.index("request_time"), EXCHANGE_COLUMNS.index("response_time")
    for row in out:                  # the times a pooled connection was idle (classify.pool)
        ex = row.get("_exchanges")
        if ex and len(ex) >= 2:
            row["_exchange_times"] = np.array([(x[req_ts] or 0, x[resp_ts] or 0) for x in ex],
                                              dtype=np.int64).tobytes()
    exchanges = [x for row in out for x in row.pop("_exchanges", [])]
    return out, exchanges


def facts_frame(rows: list[dict]) -> pd.DataFrame:
    """Fact rows -> a typed table indexed by stream with the columns of COLUMNS
    (nullable Int64 and boolean, object for text): compact, and exact for nanosecond
    times (no float round trip). Built in batches while the capture is read, so the
    per-row dicts do not pile up. A column no row of the batch has is left out (half
    of them on plain HTTP traffic: TLS, h2; 12 MiB of peak at 10M packets): concat() and the
    classifier treat a missing column as all missing. No rows: every column."""
    idx = pd.Index([r["stream"] for r in rows], dtype="int64", name="stream")
    n = len(rows)
    given: dict[str, list] = {}         # the columns some row has a value for
    http: list[tuple] = []              # (row, the compiled path's HTTP facts: see _one)
    for i, r in enumerate(rows):        # (one pass over the rows' items: a row holds
        for k, v in r.items():          # about half of the columns)
            if v is not None:
                if k == "_http":
                    http.append((i, v))
                    continue
                c = given.get(k)
                if c is None:
                    c = given[k] = [None] * n
                c[i] = v
    if http:                            # HTTP facts: transposed at once, not row by row
        pos = [i for i, _ in http]
        dense = len(pos) == n
        for name, vals in zip(_HTTP_FACTS, zip(*[t for _, t in http])):
            if vals.count(None) == len(vals):
                continue
            c = given.get(name)
            if c is None and dense:
                given[name] = list(vals)
                continue
            if c is None:
                c = given[name] = [None] * n
            for i, v in zip(pos, vals):
                c[i] = v
    data = {}
    for col, kind in COLUMNS.items():
        vals = given.get(col)
        if vals is None:
            if rows:
                continue
            vals = []
        if kind == "bool":
            data[col] = pd.array(vals, dtype="boolean")
        elif kind == "int":
            try:
                data[col] = pd.array(vals, dtype="Int64")
            except (TypeError, ValueError):
                data[col] = pd.to_numeric(pd.Series(vals, dtype=object), errors="coerce").astype("Int64").array
        else:
            data[col] = _objects(vals)
    return pd.DataFrame(data, index=idx, copy=False)     # one block per column: see concat()


def _objects(vals) -> np.ndarray:
    arr = np.empty(len(vals), dtype=object)
    arr[:] = vals
    return arr


def concat(frames: list[pd.DataFrame], empty: pd.DataFrame) -> pd.DataFrame:
    """`pd.concat(frames)`, built column by column while emptying `frames`: the peak is
    the result plus one column, not the result plus every input (pd.concat holds all of
    its inputs until it is done). Frames made
    by facts_frame / exchanges_frame hold one block per column, so a column taken out
    of them is freed at once."""
    keep = [f for f in frames if len(f)]
    frames.clear()
    if not keep:
        return empty
    if len(keep) == 1:
        return keep[0]
    index = keep[0].index.append([f.index for f in keep[1:]])
    sizes = [len(f) for f in keep]
    # each frame as a dict of its columns' Series, the frames themselves dropped: a column
    # popped from the dict is freed at once (DataFrame.pop would do the same at
    # O(columns) a call: 2.6 s of 12 on the 2M-packet --short capture)
    cols = [{c: fr[c] for c in fr.columns} for fr in keep]
    keep.clear()
    data = {}
    for col in dict.fromkeys(c for f in cols for c in f):     # a column some frames lack
        dtype = next(f[col].dtype for f in cols if col in f)  # (facts_frame) is all missing there
        data[col] = pd.concat([f.pop(col) if col in f else _missing(n, dtype) for f, n in zip(cols, sizes)],
                              ignore_index=True)
        data[col].index = index                  # (a Series keeps its dtype: object stays object)
    return pd.DataFrame(data, index=index, copy=False)


def _missing(n: int, dtype) -> pd.Series:
    if isinstance(dtype, pd.api.extensions.ExtensionDtype):
        return pd.Series(pd.array([None] * n, dtype=dtype))
    return pd.Series(np.full(n, None, dtype=object), dtype=object)


EXCHANGE_COLUMNS = ["stream", "depth", "method", "target", "host", "request_frame", "request_time",
                    "request_complete", "request_body_declared", "status", "reason", "response_frame",
                    "response_time", "response_complete", "response_body_declared", "client_keep_alive",
                    "server_keep_alive"]


def exchanges_frame(rows: list[tuple]) -> pd.DataFrame:
    """One row per HTTP/1 request (and its response, if any), Zeek http.log style."""
    # each column built on its own from the tuples (ints stay exact: ns times), one block
    # per column; a 2-D object table first would keep every cell's object alive
    columns = list(zip(*rows)) if rows else [()] * len(EXCHANGE_COLUMNS)
    data = {}
    for col, vals in zip(EXCHANGE_COLUMNS, columns):
        if col == "stream":
            data[col] = np.array(vals, dtype=np.int64)
        elif col in ("request_time", "response_time"):
            ns = pd.Series(pd.array(list(vals), dtype="Int64"))
            data[col] = pd.to_datetime(ns.fillna(0).astype("int64"), unit="ns", utc=True).where(
                ns.notna(), pd.NaT).array
        elif col in _EXCHANGE_INTS:
            data[col] = _nullable(vals, np.int64, pd.arrays.IntegerArray, "Int64")
        elif col in _EXCHANGE_BOOLS:
            data[col] = _nullable(vals, np.bool_, pd.arrays.BooleanArray, "boolean")
        else:
            data[col] = pd.Series(_objects(vals), dtype=object)    # text stays object, not str
    return pd.DataFrame(data, index=pd.RangeIndex(len(rows)), copy=False)


def _nullable(vals, np_type, array_type, dtype: str):
    """pd.array(vals, dtype) for a sequence of ints (or bools) and None, built from a
    mask (pandas' own path converts element by element: 3x slower); anything else
    (a float, a huge int) goes through pandas."""
    a = np.array(vals, dtype=object)
    mask = np.equal(a, None)
    try:
        a[mask] = 0
        data = a.astype(np_type)
        if {type(v) for v in a[~mask].tolist()} - {int if np_type is np.int64 else bool}:
            raise TypeError                     # (a float, a bool among ints: pandas' rules)
    except (TypeError, ValueError, OverflowError):
        return pd.array(list(vals), dtype=dtype)
    return array_type(data, mask)


_EXCHANGE_INTS = ("depth", "request_frame", "request_body_declared", "status", "response_frame",
                  "response_body_declared")
_EXCHANGE_BOOLS = ("request_complete", "response_complete", "client_keep_alive", "server_keep_alive")


def _interned(v: str | None) -> str | None:
    return None if v is None else sys.intern(v)


def _exchange_rows(st: int, reqs, finals) -> list[tuple]:
    # methods, hosts and reasons repeat: one string object each (memory of the http table)
    rows = []
    for i, q in enumerate(reqs):
        r = finals[i] if i < len(finals) else None
        rows.append((st, i + 1, _interned(q.method), q.target,
                     _interned(q.header("host")) if q.headers else None, q.frame, q.ts_ns,
                     bool(q.complete), q.content_length,
                     None if r is None else r.status, None if r is None else _interned(r.reason),
                     None if r is None else r.frame, None if r is None else r.ts_ns,
                     None if r is None else bool(r.complete), None if r is None else r.content_length,
                     q.keep_alive, None if r is None else r.keep_alive))
    return rows


def _one(st, pieces, client_dir, totals, session=None, keyed: bool = False) -> dict:
    if True:
        cd = int(client_dir[st])
        cl = pieces.get((st, cd), [])
        sv = pieces.get((st, 1 - cd), [])
        if isinstance(totals, dict):
            ctot, stot = totals[(st, cd)], totals[(st, 1 - cd)]
        else:
            ctot, stot = int(totals[st, cd]), int(totals[st, 1 - cd])
        row: dict = {"stream": st}
        first_c = cl[0].data if cl and cl[0].offset == 0 else b""
        first_s = sv[0].data if sv and sv[0].offset == 0 else b""
        kind = _kind(first_c) or ("http1" if first_s.startswith(b"HTTP/1.") else None) or \
            ("tls" if tls.looks_like_tls(first_s) else None)
        row["app_protocol"] = kind or "unknown"
        if kind == "http1":
            done = None
            if http1._http1 is not None and type(cl) is list and type(sv) is list:
                # framing, reported heads, facts and exchanges in C (_http1.c: connection)
                done = http1._http1.connection(st, cl, sv, ctot, stot, http1.Message, http1._parse_head)
            if done is not None:
                reqs, resps, row["_http"], row["_exchanges"], i_conn, i_up = done
                conn = reqs[i_conn] if i_conn >= 0 else None
                up = resps[i_up] if i_up >= 0 else None
                absolute = bool(row["_http"][_HTTP_ABSOLUTE])
            else:
                reqs = http1.parse_direction("request", cl, ctot)
                resps = http1.parse_direction("response", sv, stot, [r.method or "GET" for r in reqs])
                _http_facts(row, reqs, resps, ctot, stot)
                finals = [r for r in resps if r.status is not None and r.status >= 200 and r.status != 101]
                row["_exchanges"] = _exchange_rows(st, reqs, finals)
                conn = next((r for r in reqs if r.method == "CONNECT"), None)
                up = next((r for r in resps if r.status == 101), None)
                absolute = any(r.absolute_form for r in reqs)
            if conn is not None:
                row["app_protocol"] = "http-proxy-tunnel"
                ok = next((r for r in resps if r.status and r.status >= 200), None)
                row["proxy_connect_status"] = ok.status if ok else None
                if ok is not None and 200 <= ok.status < 300 and conn.head_end is not None and ok.head_end is not None:
                    tc, ts_ = _shift(cl, conn.head_end), _shift(sv, ok.head_end)
                    if tc and tls.looks_like_tls(tc[0].data):
                        _tls_facts(row, tc, ts_)
                        if keyed and session is None:
                            row["tls_decrypted"] = "no key"
                    if session is not None:
                        _decrypted(row, st, cd, session, tunnel=True)
            elif absolute:
                row["app_protocol"] = "http-proxy"
            if up is not None and "h2c" in (up.header("upgrade") or ""):
                row["app_protocol"] = "h2c"
                _h2_facts(row, _shift(cl, reqs[0].body_end or 0), _shift(sv, up.head_end or 0), True)
        elif kind == "tls":
            if session is not None:
                row.update(session.handshake_facts())    # (what it read of every record, not the first KiB)
                _decrypted(row, st, cd, session)
            else:
                _tls_facts(row, cl, sv)
            if session is None and keyed:
                row["tls_decrypted"] = "missing handshake" if row.get("tls_client_hello_frame") is None else "no key"
        elif kind == "h2c":
            _h2_facts(row, cl, sv, True)
        return row


def _decrypted(row: dict, st: int, cd: int, session, tunnel: bool = False) -> None:
    """What decryption adds to a TLS connection's facts: the decryption's own columns,
    the alerts as they really were (TLS 1.3 encrypts them), the certificate TLS 1.3
    encrypts, and the HTTP/1 or HTTP/2 facts of the plaintext. In a CONNECT `tunnel`
    the HTTP columns become those of the requests inside it (proxy_connect_status keeps
    the CONNECT's answer) and its exchanges follow the CONNECT's."""
    outer = row.get("_exchanges") or [] if tunnel else []
    if not row.get("tls"):
        row.update(session.handshake_facts())
    row.update(session.facts())
    if session.alerts:
        alerts = sorted(zip(session.alerts, session.alert_by), key=lambda x: x[0].frame)
        fatal = [x for x in alerts if x[0].level == 2] or [x for x in alerts if x[0].description != "close_notify"]
        first = fatal[0] if fatal else alerts[0]
        row["tls_alert"], row["tls_alert_level"] = first[0].description, first[0].level
        row["tls_alert_by"], row["tls_alert_frame"] = first[1], first[0].frame
    if session.h2 is not None:
        if not tunnel:
            row["app_protocol"] = "h2"
        row.pop("_http", None)
        row["_exchanges"] = _after(outer, session.h2.facts(row, st))
        return
    cl, ctot = session.plaintext(cd)
    sv, stot = session.plaintext(1 - cd)
    first_c = cl[0].data if cl and cl[0].offset == 0 else b""
    first_s = sv[0].data if sv and sv[0].offset == 0 else b""
    if not (first_c.startswith(b"HTTP/1.") or http1._starts_message("request", first_c)
            or first_s.startswith(b"HTTP/1.")):
        return
    if not tunnel:
        row["app_protocol"] = "https"
    done = None
    if http1._http1 is not None:
        done = http1._http1.connection(st, cl, sv, ctot, stot, http1.Message, http1._parse_head)
    if done is not None:
        _reqs, _resps, row["_http"], inner, _i_conn, _i_up = done
    else:
        row.pop("_http", None)
        reqs = http1.parse_direction("request", cl, ctot)
        resps = http1.parse_direction("response", sv, stot, [r.method or "GET" for r in reqs])
        _http_facts(row, reqs, resps, ctot, stot)
        finals = [r for r in resps if r.status is not None and r.status >= 200 and r.status != 101]
        inner = _exchange_rows(st, reqs, finals)
    row["_exchanges"] = _after(outer, inner)


def _after(outer: list, inner: list) -> list:
    """Exchange rows: the CONNECT's, then those inside the tunnel (depth continued)."""
    if not outer:
        return inner
    k = len(outer)
    return list(outer) + [(x[0], x[1] + k) + tuple(x[2:]) for x in inner]


def _h2_facts(row, cl, sv, preface):
    c, s = h2.parse_direction(cl, preface), h2.parse_direction(sv, False)
    goaway = sorted([(g, "server") for g in s.goaway] + [(g, "client") for g in c.goaway])
    rst = sorted([(r, "server") for r in s.rst_streams] + [(r, "client") for r in c.rst_streams])
    row["h2_frames"] = c.frames + s.frames
    row["h2_goaway_frame"] = goaway[0][0][0] if goaway else None
    row["h2_goaway_by"] = goaway[0][1] if goaway else None
    row["h2_goaway_error"] = goaway[0][0][2] if goaway else None
    row["h2_goaway_last_stream"] = goaway[0][0][3] if goaway else None
    row["h2_rst_stream_frame"] = rst[0][0][0] if rst else None
    row["h2_rst_stream_error"] = rst[0][0][2] if rst else None
    row["h2_rst_streams"] = len(rst)


def _http_facts(row, reqs, resps, ctot, stot):
    finals = [r for r in resps if r.status is not None and r.status >= 200 and r.status != 101]
    row["http_requests"] = len(reqs)
    row["http_responses"] = len(finals)
    row["http_statuses"] = ",".join(str(r.status) for r in finals) or None
    row["http_unanswered"] = max(len(reqs) - len(finals), 0)
    row["http_100_continue"] = any(r.status == 100 for r in resps)
    if reqs:
        last = reqs[-1]
        row["http_last_method"] = last.method
        row["http_last_target"] = last.target
        row["http_last_request_frame"] = last.frame
        row["http_last_request_ts"] = last.ts_ns
        row["http_last_request_complete"] = bool(last.complete or (last.body_end is not None and last.body_end <= ctot))
        row["http_last_request_body_declared"] = last.content_length
        if last.head_end is not None and last.content_length is not None:
            row["http_last_request_body_sent"] = max(min(ctot, last.head_end + last.content_length) - last.head_end, 0)
        else:
            row["http_last_request_body_sent"] = None
        row["http_last_request_expect_continue"] = last.expect_continue
        row["http_last_request_answered"] = len(finals) >= len(reqs)
        row["http_client_keep_alive"] = last.keep_alive
        row["http_absolute_form"] = any(r.absolute_form for r in reqs)
        row["http_host"] = last.header("host")
        row["http_user_agent"] = last.header("user-agent")
        if len(reqs) >= 2:
            row["http_prev_request_ts"] = reqs[-2].ts_ns
    if finals:
        lr = finals[-1]
        row["http_last_status"] = lr.status
        row["http_last_response_frame"] = lr.frame
        row["http_last_response_ts"] = lr.ts_ns
        row["http_last_response_complete"] = bool(lr.complete or (lr.body_end is not None and lr.body_end <= stot))
        row["http_server_keep_alive"] = lr.keep_alive and lr.version == "1.1"
        row["http_retry_after"] = lr.header("retry-after")
        row["http_server"] = lr.header("server")
    row["http_malformed"] = any(m.malformed for m in reqs + resps)
