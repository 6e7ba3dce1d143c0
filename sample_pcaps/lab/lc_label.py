#!/usr/bin/env python3
"""Write <capture>.labels.json for the lab helper "lc" scenarios (HTTPS with key logs).

    python3 lc_label.py SCENARIO CAPTURE CLIENT_LOG KEYLOG

Same format as lb_label.py (per TCP connection: client, server, first_frame, cause,
closer, close_kind, client_saw, how_known) plus the TLS facts of each connection, all
read with tshark 4.0 and the scenario's own key log (-o tls.keylog_file:KEYLOG), never
with pcapsense:
  tls_version      "TLSv1.3" / "TLSv1.2" (ServerHello supported_versions, else its
                   legacy version), null when no ServerHello was captured
  cipher_suite     the ServerHello's suite, hex ("0x1301"); cipher_suite_name its IANA name
  client_random    the ClientHello random (hex), the key log's lookup key
  has_key          true when the key log holds a line for that random; key_log_labels
                   lists which labels (CLIENT_RANDOM, *_TRAFFIC_SECRET_0, ...)
  tls_events       HelloRetryRequest, resumed (session ID / ticket / PSK), 0-RTT offered /
                   accepted / rejected, KeyUpdate, as tshark decodes them
  tls_alerts       alerts tshark sees after decryption: [{"side","frame","level","desc"}]
  http             the exchanges tshark decodes on the connection after decryption:
                   HTTP/1 [{"method","target","status"}] (status null: no response),
                   HTTP/2 [{"stream","method","target","status"}] (+"rst_stream_error");
                   read with http.desegment_body off, so a request whose body never
                   completed still shows (tshark's default waits for the whole body)
  h2_goaway        {"error": N, "last_stream": M, "side", "frame"} or null
  first_close      the first closing act of either side, TLS-aware: a close_notify or fatal
                   alert counts, as does a FIN/RST ({"side", "kind", "frame", "t"}); closer /
                   close_kind stay TCP-only as in the lb labels
The cause comes from the scenario design (the rule below) and the client's own log (its
exception or status, keyed by its local port or, for openssl s_client, by the
ClientHello random it logged); closer/close_kind always come from the packets.
A keylog "-" (or a pcapng with a Decryption Secrets Block) uses the secrets in the file.
"""
import json
import os
import struct
import subprocess
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lb_label as LB  # noqa: E402  (Conn: closer, close_kind, FINs/RSTs, summaries)

TLS_FIELDS = ["tls.handshake.type", "tls.handshake.random", "tls.handshake.ciphersuite",
              "tls.handshake.extensions.supported_version", "tls.handshake.version",
              "tls.handshake.extension.type", "tls.handshake.extension.len",
              "tls.handshake.session_id", "tls.alert_message.level", "http.request_in",
              "http.transfer_encoding", "http.content_length_header"]
FIELDS = LB.FIELDS + TLS_FIELDS
HRR_RANDOM = "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
SUITES = {
    "0x1301": "TLS_AES_128_GCM_SHA256", "0x1302": "TLS_AES_256_GCM_SHA384",
    "0x1303": "TLS_CHACHA20_POLY1305_SHA256", "0x1304": "TLS_AES_128_CCM_SHA256",
    "0x1305": "TLS_AES_128_CCM_8_SHA256",
    "0xc02f": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "0xc030": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "0xc02b": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "0xc02c": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "0xcca8": "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "0xcca9": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "0xc013": "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "0xc014": "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "0xc009": "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "0xc00a": "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "0xc027": "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "0xc028": "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    "0xc023": "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "0xc024": "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    "0x009c": "TLS_RSA_WITH_AES_128_GCM_SHA256", "0x009d": "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "0x002f": "TLS_RSA_WITH_AES_128_CBC_SHA", "0x0035": "TLS_RSA_WITH_AES_256_CBC_SHA",
    "0x003c": "TLS_RSA_WITH_AES_128_CBC_SHA256", "0x003d": "TLS_RSA_WITH_AES_256_CBC_SHA256",
    "0xc0ac": "TLS_ECDHE_ECDSA_WITH_AES_128_CCM", "0xc09c": "TLS_RSA_WITH_AES_128_CCM",
}
VERSIONS = {"0x0304": "TLSv1.3", "0x0303": "TLSv1.2", "0x0302": "TLSv1.1", "0x0301": "TLSv1.0"}
ALERTS = dict(LB.TLS_ALERTS, **{"50": "decode_error", "51": "decrypt_error", "44": "certificate_revoked",
                                 "43": "unsupported_certificate", "47": "illegal_parameter",
                                 "86": "inappropriate_fallback", "90": "user_canceled",
                                 "109": "missing_extension", "110": "unsupported_extension",
                                 "116": "certificate_required", "120": "no_application_protocol"})
LB.TLS_ALERTS.update(ALERTS)   # lb's packet summaries name these alerts too
H2_ERRORS = {"0": "NO_ERROR", "1": "PROTOCOL_ERROR", "2": "INTERNAL_ERROR", "3": "FLOW_CONTROL_ERROR",
             "5": "STREAM_CLOSED", "6": "FRAME_SIZE_ERROR", "7": "REFUSED_STREAM", "8": "CANCEL",
             "9": "COMPRESSION_ERROR", "11": "ENHANCE_YOUR_CALM"}


def vals(p, f):
    return [x for x in p.get(f, "").split(",") if x]


def tshark_base(cap, keys, decode_as):
    cmd = ["tshark", "-n", "-r", cap, "-o", "tcp.desegment_tcp_streams:TRUE",
           "-o", "tls.desegment_ssl_records:TRUE", "-o", "tls.desegment_ssl_application_data:TRUE",
           "-o", "http.desegment_body:FALSE"]
    if keys and keys != "-":
        cmd += ["-o", f"tls.keylog_file:{keys}"]
    for d in decode_as:
        cmd += ["-d", d]
    return cmd


def read_packets(cap, keys, decode_as=()):
    return LB.read_packets(cap, fields=FIELDS, cmd=tshark_base(cap, keys, decode_as))


def _pairs(pairs):
    return pairs


def _walk(node, key=None):
    """yield (key, value) for every leaf / subtree of a tshark JSON tree kept as pairs"""
    if isinstance(node, list):
        for k, v in node:
            yield k, v
            if isinstance(v, list):
                yield from _walk(v, k)


def read_h2(cap, keys, decode_as=()):
    """HTTP/2 frames per frame number: [(type, streamid, {field: value}, [(hname, hvalue)])]"""
    cmd = tshark_base(cap, keys, decode_as) + ["-Y", "http2", "-T", "json", "-J", "frame tcp http2"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    if not out.strip():
        return {}
    res = defaultdict(list)
    for pkt in json.loads(out, object_pairs_hook=_pairs):
        layers = dict(dict(pkt)["_source"])["layers"]
        frame = None
        for k, v in layers:
            if k == "frame":
                frame = int(dict(v)["frame.number"])
        for k, v in layers:
            if k != "http2":
                continue
            for k2, st in _walk(v):
                if k2 != "http2.stream" or not isinstance(st, list):
                    continue
                d = {}
                hdrs = []
                for k3, v3 in _walk(st):
                    if k3 == "http2.header" and isinstance(v3, list):
                        h = dict(v3)
                        hdrs.append((h.get("http2.header.name"), h.get("http2.header.value")))
                    elif isinstance(v3, str) and k3 not in d:
                        d[k3] = v3
                res[frame].append((d.get("http2.type"), d.get("http2.streamid"), d, hdrs))
    return res


def load_keylog(path, cap):
    """{client_random: set(labels)} from a key log file, or from the capture's DSBs"""
    text = ""
    if path and path != "-" and os.path.exists(path):
        text = open(path, errors="replace").read()
    elif cap.endswith(".pcapng"):
        text = dsb_secrets(cap)
    keys = defaultdict(set)
    for line in text.splitlines():
        f = line.strip().split()
        if len(f) == 3 and not f[0].startswith("#"):
            keys[f[1].lower()].add(f[0])
    return keys


def dsb_secrets(cap):
    """the TLS key log text of every Decryption Secrets Block (type 0x0A, TLSK) in a pcapng"""
    data = open(cap, "rb").read()
    out, off, bo = [], 0, "<"
    while off + 12 <= len(data):
        btype = struct.unpack_from(bo + "I", data, off)[0]
        if btype == 0x0A0D0D0A:
            magic = data[off + 8:off + 12]
            bo = "<" if magic == b"\x4d\x3c\x2b\x1a" else ">"
        blen = struct.unpack_from(bo + "I", data, off + 4)[0]
        if btype == 0x0A:
            stype, slen = struct.unpack_from(bo + "II", data, off + 8)
            if stype == 0x544C534B:
                out.append(data[off + 16:off + 16 + slen].decode("ascii", "replace"))
        if blen < 12:
            break
        off += blen
    return "".join(out)


class TConn(LB.Conn):
    """an lb Conn plus the TLS / decrypted-HTTP facts of the connection"""

    def tls_facts(self, keylog, h2frames):
        cp = [p for p in self.pkts if p["side"] == "client"]
        sp = [p for p in self.pkts if p["side"] == "server"]
        self.client_random = None
        self.ch_exts = []
        ch_ext_len = []
        for p in cp:
            if "1" in vals(p, "tls.handshake.type") and vals(p, "tls.handshake.random"):
                if self.client_random is None:
                    self.client_random = vals(p, "tls.handshake.random")[0].lower()
                    self.ch_exts = vals(p, "tls.handshake.extension.type")
                    ch_ext_len = vals(p, "tls.handshake.extension.len")
                    self.ch_sid = vals(p, "tls.handshake.session_id")
        self.version = self.suite = None
        self.events = []
        sh_exts, s_types, s_types_all = [], [], []
        self.sh_frame = None
        for p in sp:
            t = vals(p, "tls.handshake.type")
            s_types_all += t
            if "2" in t:
                rnd = vals(p, "tls.handshake.random")
                suite = vals(p, "tls.handshake.ciphersuite")
                sv = vals(p, "tls.handshake.extensions.supported_version")
                lv = vals(p, "tls.handshake.version")
                if rnd and rnd[0].lower() == HRR_RANDOM:
                    self.events.append(f"HelloRetryRequest (server, frame {p['frame.number']})")
                    continue
                self.sh_frame = p["frame.number"]
                self.suite = suite[0] if suite else None
                self.version = VERSIONS.get(sv[0] if sv else (lv[0] if lv else ""), None)
                sh_exts = vals(p, "tls.handshake.extension.type")
                self.sh_sid = vals(p, "tls.handshake.session_id")
        c_types = [t for p in cp for t in vals(p, "tls.handshake.type")]
        if self.version == "TLSv1.3":
            if "41" in sh_exts:
                self.events.append("resumed (TLS 1.3 PSK: pre_shared_key in the ServerHello, no Certificate)")
        elif self.version and self.sh_frame and "11" not in s_types_all:
            how = "session ID"
            if "35" in self.ch_exts:
                i = self.ch_exts.index("35")
                if i < len(ch_ext_len) and ch_ext_len[i] not in ("", "0"):
                    how = "session ticket"
            self.events.append(f"resumed (TLS 1.2 abbreviated handshake by {how}, no Certificate)")
        cbc = self.suite and self.version == "TLSv1.2" and "CBC" in SUITES.get(self.suite, "")
        if cbc:
            self.events.append("Encrypt-then-MAC negotiated (encrypt_then_mac in the ServerHello)" if "22" in sh_exts
                               else "MAC-then-encrypt (no encrypt_then_mac in the ServerHello)")
        if self.version == "TLSv1.2" and self.sh_frame:
            if "23" not in sh_exts:
                self.events.append("no extended_master_secret")
            if "35" in sh_exts and "4" in s_types_all:
                self.events.append("NewSessionTicket issued (TLS 1.2)")
        if "42" in self.ch_exts:
            if "5" in c_types:
                self.events.append("0-RTT offered and accepted (early_data in the ClientHello, EndOfEarlyData from the client)")
            elif self.version == "TLSv1.3":
                self.events.append("0-RTT offered and rejected (early_data in the ClientHello, no EndOfEarlyData)")
        for p in self.pkts:
            if "24" in vals(p, "tls.handshake.type"):
                self.events.append(f"KeyUpdate ({p['side']}, frame {p['frame.number']})")
        self.key_labels = sorted(keylog.get(self.client_random, ())) if self.client_random else []
        self.has_key = bool(self.key_labels)
        self.tls_alerts = []
        for p in self.pkts:
            for d, lv in zip(vals(p, "tls.alert_message.desc"), vals(p, "tls.alert_message.level") + [""] * 9):
                self.tls_alerts.append({"side": p["side"], "frame": p["frame.number"],
                                        "level": {"1": "warning", "2": "fatal"}.get(lv, lv),
                                        "desc": ALERTS.get(d, d)})
        # HTTP/1: requests in order, responses paired by http.request_in
        reqs, ex_by_frame = [], {}
        for p in self.pkts:
            ms, us = vals(p, "http.request.method"), vals(p, "http.request.uri")
            for i, m in enumerate(ms):
                e = {"method": m, "target": us[i] if i < len(us) else None, "status": None}
                reqs.append(e)
                ex_by_frame.setdefault(p["frame.number"], e)
        for p in self.pkts:
            codes, rin = vals(p, "http.response.code"), vals(p, "http.request_in")
            for i, code in enumerate(codes):
                e = ex_by_frame.get(int(rin[i])) if i < len(rin) else None
                if e is None:
                    e = next((x for x in reqs if x["status"] is None), None)
                if e is None:
                    e = {"method": None, "target": None, "status": None}
                    reqs.append(e)
                e["status"] = int(code)
        self.http = reqs
        # HTTP/2: one entry per stream with HEADERS
        streams, self.goaway, rst = {}, None, []
        for p in self.pkts:
            for typ, sid, d, hdrs in h2frames.get(p["frame.number"], []):
                if typ == "1":
                    st = streams.setdefault(sid, {"stream": int(sid), "method": None, "target": None, "status": None})
                    h = dict(hdrs)
                    if ":method" in h:
                        st["method"], st["target"] = h[":method"], h.get(":path")
                    if ":status" in h and st["status"] is None:
                        st["status"] = int(h[":status"])
                elif typ == "3":
                    st = streams.setdefault(sid, {"stream": int(sid), "method": None, "target": None, "status": None})
                    e = d.get("http2.rst_stream.error")
                    st["rst_stream_error"] = int(e) if e is not None else None
                    st["rst_stream_by"] = p["side"]
                    rst.append((p["frame.number"], p["side"], sid, e))
                elif typ == "7" and self.goaway is None:
                    e, ls = d.get("http2.goaway.error"), d.get("http2.goaway.last_stream_id")
                    self.goaway = {"error": int(e) if e is not None else None,
                                   "last_stream": int(ls) if ls is not None else None,
                                   "side": p["side"], "frame": p["frame.number"]}
        self.h2_streams = [streams[k] for k in sorted(streams, key=int)]
        self.h2_rst = rst
        if self.h2_streams:
            self.http = self.h2_streams

    def tls_summary(self):
        s = []
        if self.client_random:
            s.append(f"ClientHello random {self.client_random[:16]}... "
                     + (f"found in the key log ({','.join(self.key_labels)})" if self.has_key else "not in the key log"))
        if self.version:
            s.append(f"{self.version} {SUITES.get(self.suite, self.suite)} ({self.suite}) in the ServerHello (frame {self.sh_frame})")
        elif self.client_random:
            s.append("no ServerHello captured")
        if self.events:
            s.append("TLS: " + ", ".join(self.events))
        if self.tls_alerts:
            s.append("TLS alerts " + ", ".join(f"{a['desc']}({a['side']} {a['level']}, frame {a['frame']})" for a in self.tls_alerts))
        if self.http:
            s.append("decrypted HTTP: " + ", ".join(ex_txt(e) for e in self.http))
        if self.goaway:
            g = self.goaway
            s.append(f"HTTP/2 GOAWAY from the {g['side']} (frame {g['frame']}, error {g['error']} {H2_ERRORS.get(str(g['error']), '')}, last stream {g['last_stream']})")
        for f, side, sid, e in self.h2_rst:
            s.append(f"HTTP/2 RST_STREAM stream {sid} from the {side} (frame {f}, error {e} {H2_ERRORS.get(str(e), '')})")
        return "; ".join(s)


def ex_txt(e):
    t = f"{e.get('method')} {e.get('target')} -> {e.get('status') if e.get('status') is not None else 'no response'}"
    if "stream" in e:
        t = f"[h2 stream {e['stream']}] " + t
    if e.get("rst_stream_error") is not None:
        t += f" (RST_STREAM {e['rst_stream_error']} by the {e.get('rst_stream_by')})"
    return t


def connections(cap, keys, decode_as=()):
    conns = {}
    for p in read_packets(cap, keys, decode_as):
        sid = int(p["tcp.stream"])
        conns.setdefault(sid, TConn(sid)).pkts.append(p)
    keylog = load_keylog(keys, cap)
    h2 = read_h2(cap, keys, decode_as)
    for c in conns.values():
        c.finish()
        c.tls_facts(keylog, h2)
    return [conns[k] for k in sorted(conns)], keylog


def sw_versions():
    v = LB.sw_versions()
    def run(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip()
        except Exception:
            return ""
    v["haproxy"] = " ".join(run(["haproxy", "-v"]).split()[:3]).replace("HAProxy version", "haproxy")
    v["gunicorn"] = "gunicorn " + run(["gunicorn", "--version"]).split()[-1].strip("()") if run(["gunicorn", "--version"]) else "gunicorn"
    tv = run(["tshark", "-v"]).split("\n")[0].split()
    v["tshark"] = "tshark " + (tv[2] if len(tv) > 2 else "?")
    v["http.client"] = "python3 " + sys.version.split()[0] + " http.client"
    v["ssl"] = "python3 ssl (" + __import__("ssl").OPENSSL_VERSION + ")"
    v["s_client"] = run(["openssl", "version"]).split(" (")[0] + " s_client"
    return v


# ---------------------------------------------------------------------------------------
# per-scenario rules: rule(c, ctx) -> (cause, design sentence) or (cause, design, alternative)
# ---------------------------------------------------------------------------------------
SCEN = {}


def scen(name, desc, software, rule, decode_as=(), server_ports=None):
    SCEN[name] = dict(desc=desc, software=software, rule=rule, decode_as=decode_as, server_ports=server_ports)


def saw_of(c, ctx):
    evs = ctx["assigned"].get(c.sid, [])
    txt = [e.get("saw") for e in evs if e.get("saw")]
    return "; ".join(txt)


def client_of(c, ctx):
    evs = ctx["assigned"].get(c.sid, [])
    return next((e.get("client") for e in evs if e.get("client")), None)


def assign_events(conns, events, server_ports=None):
    """events -> connections: by ClientHello random, else by local port (several connections
    from the same port, after reuse, take the port's events in order), else in order"""
    by_rnd = {c.client_random: c for c in conns if c.client_random}
    by_port = defaultdict(list)
    for c in conns:
        if server_ports and int(c.s[1]) not in server_ports:
            continue
        by_port[c.cport].append(c)
    out = defaultdict(list)
    anon = []
    port_evs = defaultdict(list)
    for e in events:
        if e.get("random") and e["random"].lower() in by_rnd:
            out[by_rnd[e["random"].lower()].sid].append(e)
        elif e.get("port") and int(e["port"]) in by_port:
            port_evs[int(e["port"])].append(e)
        elif e.get("saw") and not e.get("port") and not e.get("random"):
            anon.append(e)
    for port, evs in port_evs.items():
        cs = by_port[port]
        if len(cs) == 1:
            out[cs[0].sid] += evs
        else:   # the port was reused: the port's events in order, one per connection
            for i, e in enumerate(evs):
                out[cs[min(i, len(cs) - 1)].sid].append(e)
    for c in conns:
        if c.sid in out or (server_ports and int(c.s[1]) not in server_ports):
            continue
        if anon:
            out[c.sid].append(anon.pop(0))
    return out


def awaiting(c, frame=None):
    """True when the close (first_close, or `frame`) came after a client request and before
    any response byte (TLS alerts and post-handshake messages do not count as data)"""
    if frame is None:
        fc = first_close(c)
        if fc is None:
            return False
        frame = fc["frame"]
    lc = last_app(c, "client", before=frame)
    ls = last_app(c, "server", before=frame)
    return lc is not None and (ls is None or ls["frame.number"] < lc["frame.number"])


def is_alert_only(p):
    """a data segment that carries only TLS alerts / handshake messages (after decryption:
    close_notify, NewSessionTicket, KeyUpdate), no application data"""
    ct = vals(p, "tls.record.content_type")
    return bool(ct) and "23" not in ct and all(x in ("21", "22", "20") for x in ct)


def last_app(c, side, before=None):
    """the side's last data segment before frame `before` that carries application data
    (or undecrypted records), not just TLS alerts / post-handshake messages"""
    ps = [p for p in c.pkts if p["side"] == side and p["tcp.len"] > 0 and not is_alert_only(p)
          and (before is None or p["frame.number"] < before)]
    return ps[-1] if ps else None


def app_bytes_after(c, side, frame):
    return [p for p in c.pkts if p["side"] == side and p["tcp.len"] > 0 and p["frame.number"] > frame]


def rtt(c):
    """SYN -> SYN/ACK time"""
    syn = c.syn
    sa = next((p for p in c.pkts if p["flags"] & 0x12 == 0x12), None)
    return (sa["frame.time_relative"] - syn["frame.time_relative"]) if syn and sa else 0.0


def last_req_frame(c, before=None):
    """frame of the client's last data segment before `before` that carried an HTTP request"""
    fr = [p for p in c.pkts if p["side"] == "client" and vals(p, "http.request.method")
          and (before is None or p["frame.number"] < before)]
    return fr[-1] if fr else None


def first_close(c):
    """the first closing act of either side: a TLS alert (close_notify or fatal) or a FIN/RST,
    whichever comes first: {"side", "kind", "frame", "t"} or None"""
    cands = []
    for a in c.tls_alerts:
        if a["desc"] == "close_notify" or a["level"] == "fatal":
            p = next(p for p in c.pkts if p["frame.number"] == a["frame"])
            cands.append({"side": a["side"], "kind": a["desc"] if a["desc"] == "close_notify" else f"fatal {a['desc']} alert",
                          "frame": a["frame"], "t": p["frame.time_relative"]})
            break
    if c.close:
        cands.append({"side": c.closer, "kind": c.close_kind, "frame": c.close["frame.number"], "t": c.close["frame.time_relative"]})
    return min(cands, key=lambda x: x["frame"]) if cands else None


def close_notify(c, side):
    a = [x for x in c.tls_alerts if x["side"] == side and x["desc"] == "close_notify"]
    return a[0] if a else None


def closing_txt(c):
    """who sent close_notify / other alerts and FIN/RST, for how_known"""
    parts = []
    for a in c.tls_alerts:
        parts.append(f"{a['side']} {a['level']} {a['desc']} alert (frame {a['frame']})")
    return ("; TLS close: " + ", ".join(parts)) if parts else "; no TLS alert (no close_notify) from either side"


def ok_all(c):
    return bool(c.http) and all(e.get("status") is not None for e in c.http)


# ---- 1 keepalive race ----------------------------------------------------------------
def _race(c, ctx):
    saw = saw_of(c, ctx)
    if c.closer == "server" and c.close_kind == "FIN":
        fin = c.close
        lasts = last_app(c, "server", before=fin["frame.number"])
        idle = fin["frame.time_relative"] - lasts["frame.time_relative"] if lasts else 0
        late = [e for e in c.http if e["status"] is None]
        req = next((p for p in c.pkts if p["side"] == "client" and vals(p, "http.request.method")
                    and p["frame.number"] > (lasts["frame.number"] if lasts else 0)), None)
        cn = close_notify(c, "server")
        if late and req:
            dt = req["frame.time_relative"] - fin["frame.time_relative"]
            rsts = [p for p in c.rsts if p["side"] == "server"]
            return ("keepalive-race",
                    f"Design: bare http.client (TLS 1.3) reused its keep-alive connection after a complete exchange; nginx keepalive_timeout 1s had closed it {idle:.3f} s after its last response byte "
                    f"({'close_notify (frame %d) + ' % cn['frame'] if cn else ''}FIN, frame {fin['frame.number']}); the client only ACKed that FIN and its next request {late[0]['method']} {late[0]['target']} (frame {req['frame.number']}) left {dt*1000:+.1f} ms relative to it "
                    f"and got no response" + (f"; the server kernel answered with RST (frames {','.join(str(p['frame.number']) for p in rsts)})" if rsts else ""))
        return ("idle-close", f"Design: the connection idled past nginx keepalive_timeout 1s; nginx closed it {idle:.3f} s after its last response, no request was lost")
    if c.closer == "client" and ok_all(c):
        ev = ctx["assigned"].get(c.sid, [{}])[0]
        if "reuse-after" in (c.http[0].get("target") or ""):
            gap = c.http[-1]["target"].split("reuse-after-")[1].split("s/")[0]
            return ("graceful", f"Design: a reuse after {gap} s idle that won the race: the request reached nginx just before its 1 s keep-alive timer fired, so it was answered (200) and the client closed; the same setting raced on the other connections")
        return ("graceful", "Design: the contrast connection: requests 0.3 s apart (inside the 1 s keep-alive), every response complete, then conn.close() by the client")
    return ("unknown", "not expected by the design")


scen("lc-keepalive-race-https",
     "nginx TLS 1.3 keepalive_timeout 1s; bare http.client HTTPSConnection reuses its connection after 1.0-1.5 s idle (keepalive-race: the request crosses nginx's close_notify + FIN); one normal keep-alive connection",
     ["nginx", "http.client", "ssl"], _race)


# ---- 2 request rejected ----------------------------------------------------------------
def _rejected(c, ctx):
    saw = saw_of(c, ctx)
    if any(e["status"] is None for e in c.http) and c.closer == "server":
        req = last_req_frame(c, c.close["frame.number"])
        dt = c.close["frame.time_relative"] - req["frame.time_relative"]
        e = next(e for e in c.http if e["status"] is None)
        return ("request-rejected",
                f"Design: nginx `return 444` for {e['target']}: it closed the connection ({c.close_kind}, frame {c.close['frame.number']}) {dt*1000:.2f} ms after the complete request (frame {req['frame.number']}) without a response byte and without close_notify"
                + closing_txt(c))
    if ok_all(c) and c.close_kind == "FIN":
        return ("graceful", "Design: the contrast request GET /ok, complete 200, the client closed the connection (Session closed)" + closing_txt(c))
    return ("unknown", "not expected by the design")


scen("lc-request-rejected-https",
     "nginx TLS (1.2+1.3) `return 444` for /blocked: requests (TLS 1.3), httpx (TLS 1.3) and curl --tls-max 1.2 get no response; one GET /ok gets 200",
     ["nginx", "requests", "urllib3", "httpx", "curl", "ssl"], _rejected)


# ---- 3 rate limited -------------------------------------------------------------------------
def _rate(c, ctx):
    codes = [e["status"] for e in c.http]
    if 429 in codes:
        return ("rate-limited", f"Design: a burst of 7 parallel HTTPS clients against nginx limit_req 1 r/s (no burst, limit_req_status 429); "
                f"this connection's request got 429 while {ctx['peak']} connections to the server were open at once; the {c.closer} closed ({c.close_kind}) after the complete response" + closing_txt(c))
    if codes and all(x == 200 for x in codes):
        return ("graceful", "Design: the one request of the burst that nginx's limit_req let through (200); closed by the client after the complete response" + closing_txt(c))
    return ("unknown", "not expected by the design")


scen("lc-rate-limited-https",
     "nginx TLS limit_req 1 r/s (no burst, 429): 7 parallel clients (4 aiohttp TLS 1.3, 1 requests TLS 1.3, 2 requests TLS 1.2); one 200, six 429",
     ["nginx", "aiohttp", "requests", "urllib3", "ssl"], _rate)


# ---- 4 body too large ------------------------------------------------------------------------
def _body(c, ctx):
    saw = saw_of(c, ctx)
    posts = [e for e in c.http if e["method"] == "POST"]
    big = "big" in " ".join(e["target"] or "" for e in posts) or c.cdata > 100000
    if big:
        r413 = [e for e in c.http if e["status"] == 413]
        first = c.close
        return ("body-too-large",
                f"Design: a 2 MB POST against client_max_body_size 1k; the client had sent {c.cdata} bytes (TLS records included) of its 2097152-byte body when the connection ended; "
                + (f"nginx answered 413 before the body was complete; " if r413 else "no 413 was decoded; ")
                + f"the {c.closer} closed first ({c.close_kind}, frame {first['frame.number'] if first else '-'})"
                + (f"; {len([p for p in c.rsts if p['side'] == 'server'])} RSTs from the server" if any(p['side'] == 'server' for p in c.rsts) else "")
                + closing_txt(c))
    if ok_all(c):
        return ("graceful", "Design: the contrast POST of 200 bytes, answered 200; the client closed after the complete response" + closing_txt(c))
    return ("unknown", "not expected by the design")


scen("lc-body-too-large-https",
     "nginx TLS client_max_body_size 1k: a 2 MB POST with requests (TLS 1.3) and curl --tls-max 1.2 -> 413 while the body is still being sent, then the close; a 200-byte POST succeeds",
     ["nginx", "requests", "urllib3", "curl", "ssl"], _body)


# ---- 5 server timeout ------------------------------------------------------------------------
def _stimeout(c, ctx):
    fc = first_close(c)
    if fc and fc["side"] == "server" and any(e["status"] is None for e in c.http):
        req = last_req_frame(c, fc["frame"])
        wait = fc["t"] - req["frame.time_relative"]
        tcp = "" if c.closer == "server" else (f"; at the TCP level the client's FIN (frame {c.close['frame.number']}) came first: the asyncio SSL transport sends close_notify and waits for the peer before its own FIN"
                                                 if c.close else "")
        return ("server-timeout",
                f"Design: the Python asyncio TLS server read the request, stalled 3 s and closed without answering: {fc['kind']} (frame {fc['frame']}) {wait:.3f} s after the complete request (frame {req['frame.number']}), no response byte"
                + tcp + closing_txt(c))
    if ok_all(c):
        return ("graceful", "Design: the contrast GET /fast, answered at once; the client closed after the complete response" + closing_txt(c))
    return ("unknown", "not expected by the design")


scen("lc-server-timeout-https",
     "Python asyncio TLS server stalls 3 s on /stall and closes without a response (close_notify + FIN): requests and aiohttp (TLS 1.3), http.client (TLS 1.2); one fast request answered",
     ["python", "requests", "urllib3", "aiohttp", "http.client", "ssl"], _stimeout)


# ---- 6 server abort --------------------------------------------------------------------------
def _sabort(c, ctx):
    if c.closer == "server" and c.close_kind == "RST":
        lasts = last_app(c, "server", c.close["frame.number"])
        return ("server-abort",
                f"Design: the Python TLS server sent a response head (Content-Length 100000) and 20000 body bytes, then SO_LINGER 0 + abort: RST (frame {c.close['frame.number']}) "
                f"{c.close['frame.time_relative'] - lasts['frame.time_relative']:.3f} s after its last data, mid-response, with no close_notify; {c.sdata} bytes from the server on the wire in all"
                + closing_txt(c))
    if ok_all(c) and c.close_kind == "FIN":
        return ("graceful", "Design: the contrast GET /ok, complete response, closed by the client" + closing_txt(c))
    return ("unknown", "not expected by the design")


scen("lc-server-abort-https",
     "Python asyncio TLS server sends half a response (20000 of 100000 body bytes) then aborts with SO_LINGER 0 (RST, no close_notify): httpx (TLS 1.3), requests stream=True (TLS 1.3), curl --tls-max 1.2; one normal request",
     ["python", "httpx", "requests", "urllib3", "curl", "ssl"], _sabort)


# ---- 7 client timeout ------------------------------------------------------------------------
def _ctimeout(c, ctx):
    fc = first_close(c)
    if fc and fc["side"] == "client" and any(e["status"] is None for e in c.http):
        req = last_req_frame(c, fc["frame"])
        ls = last_app(c, "server", fc["frame"])
        if ls is None or ls["frame.number"] < req["frame.number"]:
            wait = fc["t"] - req["frame.time_relative"]
            late = [p for p in c.pkts if p["side"] == "server" and p["tcp.len"] > 0 and p["frame.number"] > fc["frame"] and not is_alert_only(p)]
            rst = [p for p in c.rsts if p["side"] == "client"]
            extra = ""
            if late:
                extra = (f"; the server's late response (frame {late[0]['frame.number']}, {late[0]['frame.time_relative'] - req['frame.time_relative']:.3f} s after the request) "
                         f"was answered by the client's RST (frame {rst[0]['frame.number'] if rst else '-'})")
            else:
                extra = "; no late response: the asyncio SSL server closed its side as soon as it saw the client's close"
            if c.closer == "server":
                extra += f"; at the TCP level the server's FIN (frame {c.close['frame.number']}) came first, in answer to the client's close_notify"
            return ("client-timeout",
                    f"Design: the server answers /slow only after 3 s (slow, not broken); the client's 1 s read timeout fired and it closed "
                    f"({fc['kind']}, frame {fc['frame']}) {wait:.3f} s after its complete request, before any response byte" + extra + closing_txt(c))
    if ok_all(c) and c.close_kind == "FIN":
        return ("graceful", "Design: the contrast GET /fast, answered at once, Session closed by the client" + closing_txt(c))
    return ("unknown", "not expected by the design")


scen("lc-client-timeout-https",
     "Python asyncio TLS server answers /slow after 3 s; requests timeout=1 (TLS 1.3), aiohttp sock_read=1 (TLS 1.3) and httpx timeout=1 (TLS 1.2) give up and close ~1 s after the request (the asyncio server then closes too, no late response); one fast request",
     ["python", "requests", "urllib3", "aiohttp", "httpx", "ssl"], _ctimeout)


# ---- 8 client abort --------------------------------------------------------------------------
def _cabort(c, ctx):
    fc = first_close(c)
    if fc and fc["side"] == "client" and c.http and c.http[0]["status"] == 200 and not awaiting(c):
        more = [p for p in c.pkts if p["side"] == "server" and p["tcp.len"] > 0 and p["frame.number"] > fc["frame"]]
        rst = [p for p in c.rsts if p["side"] == "client"]
        return ("client-abort",
                f"Design: a 20 MB download (nginx limit_rate 120k) abandoned by the client mid-response: it closed ({fc['kind']}, frame {fc['frame']}) "
                f"{fc['t'] - c.t0:.3f} s into the connection after {c.sdata} bytes from the server were on the wire"
                + (f"; {len(more)} more server data segments after the close" if more else "")
                + (f"; the client's RST (frame {rst[0]['frame.number']}) for data still arriving / unread" if rst else "")
                + closing_txt(c))
    return ("unknown", "not expected by the design")


scen("lc-client-abort-https",
     "nginx TLS serves a 20 MB file at 120 KB/s; curl --max-time 1 (TLS 1.3) gives up mid-download, requests stream=True (TLS 1.2) reads 64 KiB and closes the response",
     ["nginx", "curl", "requests", "urllib3", "ssl"], _cabort)


# ---- 9 http2 goaway over TLS -----------------------------------------------------------------
def _h2(c, ctx):
    g = c.goaway
    rst = [r for r in c.h2_rst if r[1] == "server"]
    if rst:
        f, side, sid, e = rst[0]
        st = next((x for x in c.http if str(x["stream"]) == str(sid)), {})
        return ("http2-goaway",
                f"Design: an HTTP/2 upload over client_max_body_size 1k: nginx answered stream {sid} with {st.get('status')} and reset it (RST_STREAM error {e} {H2_ERRORS.get(str(e), '')}, frame {f}) instead of reading the rest of the body; "
                f"the connection itself stayed usable (later streams answered) and the {c.closer} closed it ({c.close_kind})",
                "body-too-large (the reset stream was an upload over client_max_body_size, answered 413)")
    if g and g["side"] == "server":
        return ("http2-goaway",
                f"Design: nginx keepalive_requests 2 over h2 (ALPN): after the 2nd stream it sent GOAWAY (frame {g['frame']}, error {g['error']} {H2_ERRORS.get(str(g['error']), '')}, last stream {g['last_stream']}) and then closed; the {c.closer} sent the first {c.close_kind}"
                + closing_txt(c))
    if c.close_kind == "FIN" and ok_all(c):
        return ("graceful", "Design: HTTP/2 connection with fewer streams than keepalive_requests, closed by the client after complete responses (client exit), no GOAWAY from the server before the close" + closing_txt(c))
    return ("unknown", "not expected by the design")


scen("lc-http2-goaway-tls",
     "nginx h2 over TLS (ALPN) with keepalive_requests 2: GOAWAY after the 2nd stream; httpx http2=True 5 sequential GETs (TLS 1.3), curl --http2 3 URLs (TLS 1.2); plus an h2 POST of 64 KB over client_max_body_size 1k (413 + RST_STREAM)",
     ["nginx", "httpx", "h2", "curl", "ssl"], _h2)


# ---- 10 pool overflow / idle close ------------------------------------------------------------
def _pool(c, ctx):
    disc = {e["port"] for e in ctx["events"] if e.get("event") == "discarded"}
    nwarn = sum(1 for e in ctx["events"] if e.get("event") == "warning")
    fc = first_close(c)
    if fc and fc["side"] == "client" and c.cport in disc and ok_all(c):
        return ("pool-overflow",
                f"Design: 6 threads share one requests pool of size 2 (HTTPAdapter pool_maxsize=2); urllib3 logged 'Connection pool is full' {nwarn} times and the client log shows it discarded this connection (local port {c.cport}) right after a complete 200 "
                f"({len(c.http)} request(s) on it); the server offered keep-alive (HTTP/1.1, no Connection: close); peak {ctx['peak']} connections open at once to the server; the client's close is {fc['kind']} (frame {fc['frame']})"
                + closing_txt(c))
    if fc and fc["side"] == "server" and ok_all(c):
        ls = last_app(c, "server", fc["frame"])
        gap = fc["t"] - ls["frame.time_relative"]
        return ("idle-close",
                f"Design: one of the 2 connections kept in the pool, left idle after its last request; nginx keepalive_timeout 1s closed it ({fc['kind']}, frame {fc['frame']}) {gap:.3f} s after its last response byte; session.close() came later"
                + closing_txt(c))
    return ("unknown", "not expected by the design")


scen("lc-pool-idle-https",
     "requests.Session with HTTPAdapter(pool_maxsize=2) shared by 6 threads against nginx TLS 1.3 (keepalive_timeout 1s): urllib3 discards the connections it cannot pool (client FIN right after a 200); the 2 pooled ones are closed idle by nginx (close_notify + FIN)",
     ["nginx", "requests", "urllib3", "ssl"], _pool)


# ---- 11 connection leak ----------------------------------------------------------------------
def _leak(c, ctx):
    fc = first_close(c)
    if fc and fc["side"] == "server" and not any(p["side"] == "client" for p in c.fins + c.rsts):
        last = c.pkts[-1]["frame.time_relative"]
        ls = last_app(c, "server", fc["frame"])
        gap = fc["t"] - ls["frame.time_relative"]
        return ("connection-leak",
                f"Design: the application kept the HTTPSConnection object and never closed it; nginx closed it idle ({fc['kind']}, frame {fc['frame']}; FIN frame {c.close['frame.number']}) {gap:.3f} s after its response; "
                f"the client kernel only ACKed (CLOSE_WAIT, ss output in the client log) and no client close_notify/FIN/RST followed in the remaining {last - fc['t']:.2f} s of the capture" + closing_txt(c))
    if fc and fc["side"] == "client" and ok_all(c):
        return ("graceful", "Design: the contrast connection, closed by the application right after its complete response" + closing_txt(c))
    return ("unknown", "not expected by the design")


scen("lc-connection-leak-https",
     "bare http.client HTTPSConnection objects (TLS 1.3, one TLS 1.2) kept after their responses and never closed: nginx keepalive_timeout 1s closes them (close_notify + FIN), the client sits in CLOSE_WAIT until the capture ends; one connection closed properly",
     ["nginx", "http.client", "ssl"], _leak)


# ---- 12 proxy CONNECT with TLS inside ---------------------------------------------------------
def _proxy(c, ctx):
    sport = int(c.s[1])
    fc = first_close(c)
    if sport == 3128:
        tun = "CONNECT" in c.methods and "200" in c.codes
        inner = [e for e in c.http if e["method"] != "CONNECT"]
        if tun and inner and all(e["status"] for e in inner) and fc and fc["side"] == "client":
            return ("graceful", f"Design: CONNECT tunnel through tinyproxy, the TLS request inside it answered completely ({ex_txt(inner[-1])}); the client closed the tunnel" + closing_txt(c))
        if tun:
            return ("proxy-disconnect",
                    f"Design: CONNECT tunnel through tinyproxy to nginx serving 100 KB at 20 KB/s; the tinyproxy process (started by the script) was killed with SIGKILL mid-response; "
                    f"its kernel closed the client's connection ({c.closer} {c.close_kind}, frame {c.close['frame.number'] if c.close else '-'}) with the response incomplete ({c.sdata} bytes from the proxy on this leg)"
                    + closing_txt(c))
    if sport == 443:
        if fc and fc["side"] == "client" and c.http and c.http[0]["status"] == 200 and not ok_all_body(c):
            return ("client-abort",
                    "Design: the proxy's upstream leg of the killed tunnel: the proxy (the client of this leg) was SIGKILLed while the response was flowing, so its kernel closed this connection "
                    f"({c.closer} {c.close_kind}, frame {c.close['frame.number']}) mid-response" + closing_txt(c), None, LEG_SAW)
        if ok_all(c):
            return ("graceful", "Design: the proxy's upstream leg of the complete tunnel: the TLS request relayed inside it was answered completely; the proxy closed it when the client closed the tunnel" + closing_txt(c), None, LEG_SAW)
    return ("unknown", "not expected by the design")


LEG_SAW = "not a client program's connection: tinyproxy's own upstream leg of the tunnel (the client program's view is on the matching client->proxy connection)"


def ok_all_body(c):
    return ok_all(c) and "slow.bin" not in " ".join(e["target"] or "" for e in c.http)


scen("lc-proxy-connect-tls",
     "requests through tinyproxy CONNECT tunnels to nginx TLS: one complete tunnel (TLS 1.3 inside), one whose proxy is SIGKILLed mid-response (TLS 1.2 inside); client->proxy and proxy->server legs in one capture, the TLS inside both legs decryptable with the key log",
     ["tinyproxy", "nginx", "requests", "urllib3", "ssl"], _proxy)


# ---- 13 haproxy ------------------------------------------------------------------------------
HAPROXY_WHY = {502: "haproxy's 502 Bad Gateway: the backend worker crashed (os._exit) after reading the request and closed the backend connection without a response",
               503: "haproxy's 503 Service Unavailable: the gunicorn processes had been SIGKILLed, haproxy's connection attempts to the backend were refused (RST to its SYN), one retry, then 503",
               504: "haproxy's 504 Gateway Time-out: the backend (sleeping 3 s) did not answer within haproxy's `timeout server 1s`",
               200: "a normal 200 relayed from the backend"}


def _haproxy(c, ctx):
    sport = int(c.s[1])
    fc = first_close(c)
    if sport == 443:
        rst = [r for r in c.h2_rst if r[1] == "server"]
        if rst:
            f, side, sid, e = rst[0]
            return ("http2-goaway",
                    f"Design: the backend worker crashed (os._exit) on GET /crash/h2; over HTTP/2 haproxy did not answer 502 but reset the stream: RST_STREAM stream {sid} error {e} {H2_ERRORS.get(str(e), '')} (frame {f}), "
                    f"telling the client the request was not processed; the connection stayed open and the next stream was answered ({', '.join(ex_txt(x) for x in c.http)}); the {c.closer} closed first ({c.close_kind})",
                    "graceful at the TCP level (the connection itself ended normally after complete later streams)")
        if ok_all(c):
            st = [e["status"] for e in c.http]
            why = "; ".join(f"{ex_txt(e)}: {HAPROXY_WHY.get(e['status'], '')}" for e in c.http)
            h2 = " over HTTP/2" if c.h2_streams else ""
            return ("graceful",
                    f"Design: haproxy terminating TLS answered every request on this connection with a complete response{h2} ({why}); a complete 5xx is not a disconnect, so at the TCP level this connection is graceful; "
                    + (f"the client closed first ({fc['kind']}, frame {fc['frame']}) and haproxy answered with its own close_notify and FIN (a client that had already closed its socket answered them with RST)"
                       if fc["side"] == "client" else f"haproxy closed first after the error response ({fc['kind']}, frame {fc['frame']})") + closing_txt(c),
                    None)
        return ("unknown", "not expected by the design")
    if sport == 8080:
        r = tuple(_haproxy_backend(c, ctx, fc))
        r = r + (None,) * (3 - len(r))
        return r[:3] + ("not a client program's connection: haproxy's own plain-HTTP connection to the gunicorn backend",)
    return ("unknown", "not expected by the design")


def _haproxy_backend(c, ctx, fc):
    if True:   # noqa: SIM108 (kept indented like the other rules)
        if c.syn and c.close_kind == "RST" and c.closer == "server" and c.cdata == 0 and c.sdata == 0:
            return ("connection-refused", "Design: haproxy's attempt to reach the SIGKILLed gunicorn (nothing listening on 8080 any more): SYN answered by RST")
        if fc and fc["side"] == "client" and awaiting(c):
            req = last_req_frame(c, fc["frame"])
            return ("client-timeout",
                    f"Design: haproxy (the client of this backend leg) gave up on the sleeping backend after its `timeout server 1s`: it reset the connection (frame {fc['frame']}) {fc['t'] - req['frame.time_relative']:.3f} s after the request, before any response byte, and answered the user 504")
        if fc and fc["side"] == "server" and awaiting(c):
            req = last_req_frame(c, fc["frame"])
            return ("request-rejected",
                    f"Design: the gunicorn worker crashed (os._exit) right after reading the request; its kernel closed the connection ({c.close_kind}, frame {fc['frame']}) {(fc['t'] - req['frame.time_relative'])*1000:.1f} ms after the request without a response byte; haproxy answered the user 502. "
                    "By the packets alone (a close within milliseconds of a complete request, no response) this is request-rejected",
                    "server-abort (the real cause: the backend process crashed before answering)")
        if ok_all(c):
            rst = [p for p in c.rsts if p["side"] == "client"]
            return ("graceful",
                    f"Design: backend leg of a normal request: gunicorn answered 200 with Connection: close and closed (FIN frame {c.close['frame.number']})"
                    + (f"; haproxy answered that FIN with RST (frame {rst[0]['frame.number']}) instead of its own FIN (haproxy's abortive close of server connections, no TIME_WAIT): no request was lost" if rst else ""),
                    None)
    return ("unknown", "not expected by the design")


scen("lc-haproxy-https",
     "haproxy 2.6 terminating TLS (ALPN h2,http/1.1) in front of gunicorn: 200, 504 (timeout server 1s on a 3 s backend), 502 (backend worker os._exit), 503 (backend SIGKILLed) over TLS 1.3 / 1.2, HTTP/1.1 and h2; client legs and plain-HTTP backend legs in one capture",
     ["haproxy", "gunicorn", "requests", "urllib3", "httpx", "h2", "curl", "ssl"], _haproxy)


# ---- 14 cipher suites ------------------------------------------------------------------------
SUITE_OF_NAME = {
    "tls13-aes128gcm": "0x1301", "tls13-aes128gcm-h2": "0x1301", "tls13-aes256gcm": "0x1302",
    "tls13-chacha20": "0x1303", "tls13-aes128ccm": "0x1304", "tls13-aes128ccm8": "0x1305",
    "ecdhe-rsa-aes128gcm": "0xc02f", "ecdhe-rsa-aes256gcm": "0xc030", "ecdhe-rsa-chacha20": "0xcca8",
    "ecdhe-ecdsa-aes128gcm": "0xc02b", "ecdhe-ecdsa-aes256gcm": "0xc02c", "ecdhe-ecdsa-chacha20": "0xcca9",
    "ecdhe-rsa-aes128sha-etm": "0xc013", "ecdhe-rsa-aes128sha-noetm": "0xc013", "ecdhe-rsa-aes256sha384": "0xc028",
    "ecdhe-ecdsa-aes128sha": "0xc009", "rsa-aes128gcm": "0x009c", "rsa-aes256sha256-noetm": "0x003d",
}


def _suites(c, ctx):
    name = next(((e["target"] or "").split("/")[1][len("suite-"):] for e in c.http if (e["target"] or "").startswith("/suite-")), None)
    want = SUITE_OF_NAME.get(name)
    fc = first_close(c)
    if ok_all(c) and fc and want == c.suite:
        te = [e for e in c.http if (e["target"] or "").endswith("/chunked")]
        big = [e for e in c.http if (e["target"] or "").endswith("/big")]
        extra = ""
        if te:
            extra += "; /chunked is a gzip-encoded, chunked response"
        if big:
            extra += "; /big is a 40 KB response spanning several TLS records"
        return ("graceful",
                f"Design: the client offered only {SUITES.get(want, want)} ({want}) and the ServerHello chose it; {len(c.http)} request(s) on the connection, every response complete{extra}; "
                f"the {fc['side']} closed first ({fc['kind']}, frame {fc['frame']})" + closing_txt(c))
    if want and want != c.suite:
        return ("unknown", f"the path asks for {want} but the ServerHello chose {c.suite}")
    return ("unknown", "not expected by the design")


scen("lc-tls-suites",
     "graceful HTTPS over 18 cipher suites (TLS 1.3: AES-128/256-GCM, CHACHA20, AES-128-CCM, AES-128-CCM-8; TLS 1.2: ECDHE-RSA/ECDSA AES-GCM and CHACHA20, CBC with and without Encrypt-then-MAC, CBC-SHA384, RSA key exchange), nginx with ECDSA + RSA certificates; curl, requests, httpx, aiohttp, http.client and openssl s_client; keep-alive, chunked gzip and 40 KB responses, one h2 connection",
     ["nginx", "curl", "requests", "urllib3", "httpx", "aiohttp", "http.client", "s_client", "ssl"], _suites)
SCEN["lc-tls-suites-dsb"] = dict(SCEN["lc-tls-suites"], script="lc-dsb",
     desc="lc-tls-suites.pcapng with its key log embedded as a pcapng Decryption Secrets Block (editcap --inject-secrets tls,KEYS): the same packets and connections; tshark decrypts it without -o tls.keylog_file")


# ---- 15 TLS 1.3 edge cases -------------------------------------------------------------------
EDGE = {
    "full-handshake": "a full TLS 1.3 handshake whose session (ticket) the next connections reuse",
    "0rtt-accepted": "0-RTT: the GET was sent as early data with a resumed PSK and nginx (ssl_early_data on) accepted and answered it",
    "psk-resumed": "TLS 1.3 PSK resumption (ticket from the previous connection), no early data",
    "0rtt-rejected": "0-RTT offered to the :8443 server (same ticket key, ssl_early_data off): the early GET was rejected (never processed) and sent again after the handshake",
    "keyupdate": "a GET, then a KeyUpdate (s_client 'K': update_requested, so both sides change keys), then a second GET under the new keys",
    "hrr-sclient": "HelloRetryRequest: the client's first key share was X25519, the server (ssl_ecdh_curve prime256v1) asked for P-256",
    "hrr-requests": "HelloRetryRequest: requests/OpenSSL's default first key share X25519 against a P-256-only server",
    "py13-full": "a full TLS 1.3 handshake by Python ssl whose session the next connection reuses",
    "py13-psk-resumed": "TLS 1.3 PSK resumption by Python ssl (wrap_socket(session=...))",
    "tls12-sid-full": "a full TLS 1.2 handshake (client OP_NO_TICKET, so the server's session cache is used)",
    "tls12-sid-resumed": "TLS 1.2 resumption by session ID (abbreviated handshake, no Certificate)",
    "tls12-ticket-full": "a full TLS 1.2 handshake that gets a NewSessionTicket",
    "tls12-ticket-resumed": "TLS 1.2 resumption by session ticket (abbreviated handshake, no Certificate)",
}


def _edge(c, ctx):
    tg = [(e["target"] or "") for e in c.http]
    case = next((t.split("/")[2] for t in tg if t.startswith("/edge/")), None)
    fc = first_close(c)
    if case in EDGE:
        ok = ok_all(c) or (case == "0rtt-rejected" and c.http and c.http[-1]["status"] == 200)
        if ok and fc:
            return ("graceful",
                    f"Design: {EDGE[case]}; every request that reached the HTTP layer was answered; the {fc['side']} closed first ({fc['kind']}, frame {fc['frame']}); "
                    f"tshark's view: {', '.join(c.events) or 'plain full handshake'}" + closing_txt(c))
    return ("unknown", "not expected by the design")


scen("lc-tls13-edge",
     "TLS edge cases on nginx: HelloRetryRequest (s_client and requests), KeyUpdate, 0-RTT accepted and rejected, TLS 1.3 PSK resumption (s_client, Python), TLS 1.2 resumption by session ID and by session ticket (Python ssl)",
     ["nginx", "s_client", "requests", "urllib3", "ssl"], _edge)


# ---- 16 expired / not yet valid certificate --------------------------------------------------
def _certexp(c, ctx):
    saw = saw_of(c, ctx)
    cal = [a for a in c.tls_alerts if a["side"] == "client" and a["level"] == "fatal"]
    srv = c.s[1]
    what = "an EXPIRED certificate (notAfter 2024-02-01)" if srv == "443" else "a NOT YET VALID certificate (notBefore 2035-01-01)"
    if ok_all(c) and c.http:
        return ("graceful", f"Design: the contrast client with verification off (requests verify=False) accepts {what} and gets 200" + closing_txt(c))
    appdata = [e for e in c.http if e.get("method")]
    if not appdata and (cal or c.closer == "client" or "verify failed" in saw):
        how = (f"the client sent a fatal {cal[0]['desc']} alert (frame {cal[0]['frame']}, {'in cleartext although the connection is TLS 1.3' if c.version == 'TLSv1.3' else 'in cleartext, before ChangeCipherSpec'}) right after the server's certificate flight"
               if cal else "the client closed (no alert) right after the server's certificate flight")
        keys = ",".join(c.key_labels) or "none"
        return ("tls-certificate-rejected",
                f"Design: nginx serves {what} signed by the lab CA the client trusts; certificate verification failed: {how}; the {c.closer} sent the first {c.close_kind}; no application data; "
                f"key log lines for this handshake: {keys}" + closing_txt(c))
    return ("unknown", "not expected by the design")


scen("lc-tls-cert-expired",
     "nginx (TLS 1.2 + 1.3) with an expired certificate (:443) and a not-yet-valid one (:8443) from the lab CA: requests, httpx (TLS 1.2), aiohttp and curl (TLS 1.3 / 1.2) reject them (certificate verify failed); requests verify=False succeeds",
     ["nginx", "requests", "urllib3", "httpx", "aiohttp", "curl", "ssl"], _certexp)


# ---- 17 keys for some processes only ---------------------------------------------------------
def _partial(c, ctx):
    evs = ctx["assigned"].get(c.sid, [])
    saw = saw_of(c, ctx)
    env = next((e.get("keylog") for e in evs if "keylog" in e), None)
    envs = ("the process ran WITH SSLKEYLOGFILE" if env else "the process ran WITHOUT SSLKEYLOGFILE") if env is not None else "process unknown"
    keytxt = (f"its ClientHello random is in the key log ({','.join(c.key_labels)}), so it decrypts" if c.has_key
              else "its ClientHello random is not in the key log: it cannot be decrypted")
    fc = first_close(c)
    idle = next((e.get("idle") for e in evs if e.get("idle")), None)
    if "/blocked" in saw and "HTTP 200" not in saw and fc and fc["side"] == "server":
        lc = last_app(c, "client", fc["frame"])
        return ("request-rejected",
                f"Design: GET /blocked hits nginx `return 444`: nginx closed ({fc['kind']}, frame {fc['frame']}) {(fc['t'] - lc['frame.time_relative']) * 1000:.2f} ms after the client's last data (the request), no response byte; "
                f"the client logged: {saw}; {envs}; {keytxt}" + (closing_txt(c) if c.has_key else ""))
    if idle and fc and fc["side"] == "server":
        ls = last_app(c, "server", fc["frame"])
        return ("idle-close",
                f"Design: http.client kept the connection idle {idle} s after a complete 200; nginx keepalive_timeout 1s closed it first ({fc['kind']}, frame {fc['frame']}) {fc['t'] - ls['frame.time_relative']:.3f} s after its last data; no request lost; "
                f"{envs}; {keytxt}")
    if "HTTP 200" in saw or "HTTP/1.1 200" in saw or "HTTP/2 200" in saw:
        return ("graceful",
                f"Design: a normal request, complete 200 per the client's log; the {fc['side'] if fc else '?'} closed first ({fc['kind'] if fc else '-'}); {envs}; {keytxt}"
                + (closing_txt(c) if c.has_key else ""))
    return ("unknown", f"not expected by the design; {envs}; {keytxt}")


scen("lc-keys-partial",
     "mixed HTTPS from six concurrent client processes against nginx (TLS 1.2+1.3, keepalive_timeout 1s, /blocked -> 444); only requests, aiohttp and one curl loop ran with SSLKEYLOGFILE, httpx, http.client and another curl loop did not: per-connection has_key from the ClientHello random; injected: two 444s (one with keys, one without) and one idle close (without keys)",
     ["nginx", "requests", "urllib3", "httpx", "aiohttp", "http.client", "curl", "ssl"], _partial)


# ---------------------------------------------------------------------------------------
def main():
    name, cap, log = sys.argv[1], sys.argv[2], sys.argv[3]
    keys = sys.argv[4] if len(sys.argv) > 4 else "-"
    sc = SCEN[name]
    conns, keylog = connections(cap, keys, sc["decode_as"])
    events = LB.load_log(log)
    ctx = {"events": events, "conns": conns, "peak": LB.peak_concurrency(conns),
           "assigned": assign_events(conns, events, sc.get("server_ports")), "keylog": keylog}
    vers = sw_versions()
    labels = []
    for c in conns:
        r = sc["rule"](c, ctx)
        cause, design = r[0], r[1]
        saw = saw_of(c, ctx) or (r[3] if len(r) > 3 and r[3] else "nothing logged (no client of this scenario logged this connection)")
        lab = {
            "client": c.client, "server": c.server, "first_frame": c.first_frame,
            "cause": cause, "closer": c.closer, "close_kind": c.close_kind,
            "client_saw": saw,
            "how_known": design + ". Packets: " + c.summary() + (("; " + c.tls_summary()) if c.client_random else "") + ".",
        }
        if len(r) > 2 and r[2]:
            lab["alternative"] = r[2]
        who = client_of(c, ctx)
        if who:
            lab["client_program"] = who
        lab.update({
            "tls_version": c.version, "cipher_suite": c.suite,
            "cipher_suite_name": SUITES.get(c.suite) if c.suite else None,
            "client_random": c.client_random, "has_key": c.has_key, "key_log_labels": c.key_labels,
            "tls_events": c.events, "tls_alerts": c.tls_alerts,
            "first_close": first_close(c),
            "http": c.http, "h2_goaway": ({k: c.goaway[k] for k in ("error", "last_stream", "side", "frame")} if c.goaway else None),
        })
        labels.append(lab)
    software = [vers.get(s, s) for s in sc["software"]] + [vers["tshark"] + " (labels' TLS/HTTP facts)"]
    base = cap
    for ext in (".pcap.gz", ".pcapng", ".pcap"):
        if base.endswith(ext):
            base = base[: -len(ext)]
            break
    keyname = os.path.basename(keys) if keys and keys != "-" else None
    doc = {"capture": os.path.basename(cap), "scenario": sc["desc"], "software": software,
           "record_command": f"bash sample_pcaps/lab/{sc.get('script', name)}.sh",
           "key_log": keyname or "(Decryption Secrets Block inside the capture)",
           "decrypt_check": f"tshark -r {os.path.basename(cap)} " + (f"-o tls.keylog_file:{keyname} " if keyname else "") + "-Y 'http or http2'",
           "connections": labels}
    with open(base + ".labels.json", "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    for l in labels:
        print(f"  {l['first_frame']:>5} {l['client']:>20} -> {l['server']:<18} {l['cause']:<24} {l['closer']}/{l['close_kind']:<4} "
              f"{l['tls_version'] or '-':<7} {l['cipher_suite'] or '-':<6} key={'y' if l['has_key'] else 'n'} "
              f"{', '.join(ex_txt(e) for e in l['http'])[:90]}", file=sys.stderr)


if __name__ == "__main__":
    main()
