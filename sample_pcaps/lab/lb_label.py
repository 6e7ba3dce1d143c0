#!/usr/bin/env python3
"""Write <capture>.labels.json for the lab helper "lb" scenarios.

    python3 lb_label.py SCENARIO CAPTURE CLIENT_LOG

The packets are read with tshark (every TCP connection: client = SYN sender, first
frame, first FIN/RST and who sent it, TTLs, TLS alerts, HTTP/2 frame types). The client
log holds the JSON lines the scenario's client printed (exception text, local port).
The per-scenario function below turns packet facts + the scenario design into the
cause. closer/close_kind always come from the packets; a RST whose IP TTL differs from
every other packet of the side it claims to come from is attributed to "middlebox".
"""
import json
import os
import subprocess
import sys
from collections import defaultdict

FIELDS = ["frame.number", "frame.time_relative", "tcp.stream", "ip.src", "tcp.srcport",
          "ip.dst", "tcp.dstport", "tcp.flags", "tcp.len", "ip.ttl", "ip.id",
          "tls.alert_message.desc", "tls.handshake.type", "tls.record.content_type",
          "http.request.method", "http.response.code", "http2.type", "http2.goaway.error",
          "tcp.analysis.retransmission", "http.request.uri"]
TLS_ALERTS = {"10": "unexpected_message", "20": "bad_record_mac", "40": "handshake_failure",
              "42": "bad_certificate", "45": "certificate_expired", "46": "certificate_unknown",
              "48": "unknown_ca", "70": "protocol_version", "71": "insufficient_security",
              "80": "internal_error", "112": "unrecognized_name", "0": "close_notify"}
H2_TYPES = {"0": "DATA", "1": "HEADERS", "3": "RST_STREAM", "4": "SETTINGS", "6": "PING",
            "7": "GOAWAY", "8": "WINDOW_UPDATE"}


def read_packets(cap, decode_as=(), fields=FIELDS, cmd=None):
    """One dict per TCP packet of `cap`, the tshark `fields` by name (frame number, time,
    length and flags as numbers). `cmd`: the tshark command up to its field options
    (lc_label.py's decrypts with a key log); by default this one."""
    if cmd is None:
        cmd = ["tshark", "-n", "-r", cap, "-o", "tcp.desegment_tcp_streams:TRUE"]
        for d in decode_as:
            cmd += ["-d", d]
    cmd = cmd + ["-Y", "tcp", "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    pkts = []
    for line in out.splitlines():
        v = line.split("\t")
        v += [""] * (len(fields) - len(v))
        d = dict(zip(fields, v))
        d["frame.number"] = int(d["frame.number"])
        d["frame.time_relative"] = float(d["frame.time_relative"])
        d["tcp.len"] = int(d["tcp.len"] or 0)
        d["flags"] = int(d["tcp.flags"], 16)
        pkts.append(d)
    return pkts


class Conn:
    def __init__(self, sid):
        self.sid = sid
        self.pkts = []

    def finish(self):
        p0 = self.pkts[0]
        syn = next((p for p in self.pkts if p["flags"] & 0x02 and not p["flags"] & 0x10), None)
        if syn:
            c = (syn["ip.src"], syn["tcp.srcport"])
            s = (syn["ip.dst"], syn["tcp.dstport"])
        else:
            a = (p0["ip.src"], p0["tcp.srcport"]); b = (p0["ip.dst"], p0["tcp.dstport"])
            c, s = (a, b) if int(a[1]) > int(b[1]) else (b, a)
        self.c, self.s = c, s
        self.client = f"{c[0]}:{c[1]}"
        self.server = f"{s[0]}:{s[1]}"
        self.cport = int(c[1])
        self.first_frame = p0["frame.number"]
        self.syn = syn
        for p in self.pkts:
            p["side"] = "client" if (p["ip.src"], p["tcp.srcport"]) == c else "server"
        self.fins = [p for p in self.pkts if p["flags"] & 0x01 and not p["flags"] & 0x04]
        self.rsts = [p for p in self.pkts if p["flags"] & 0x04]
        first = next((p for p in self.pkts if p["flags"] & 0x05), None)
        self.close = first
        if first is None:
            self.closer, self.close_kind = "none", "none"
        else:
            self.close_kind = "RST" if first["flags"] & 0x04 else "FIN"
            self.closer = first["side"]
            if self.close_kind == "RST" and self.is_forged(first):
                self.closer = "middlebox"
        self.data = [p for p in self.pkts if p["tcp.len"] > 0]
        self.cdata = sum(p["tcp.len"] for p in self.pkts if p["side"] == "client")
        self.sdata = sum(p["tcp.len"] for p in self.pkts if p["side"] == "server")
        self.alerts = [(p["frame.number"], p["side"], TLS_ALERTS.get(a, a))
                       for p in self.pkts for a in p["tls.alert_message.desc"].split(",") if a]
        self.h2 = [(p["frame.number"], p["side"], H2_TYPES.get(t, t))
                   for p in self.pkts for t in p["http2.type"].split(",") if t]
        self.goaway_err = [e for p in self.pkts for e in p["http2.goaway.error"].split(",") if e]
        self.methods = [m for p in self.pkts for m in p["http.request.method"].split(",") if m]
        self.codes = [m for p in self.pkts for m in p["http.response.code"].split(",") if m]
        self.uris = [m for p in self.pkts for m in p["http.request.uri"].split(",") if m]
        self.retrans = [p for p in self.pkts if p["tcp.analysis.retransmission"]]
        self.t0 = p0["frame.time_relative"]
        self.tend = self.pkts[-1]["frame.time_relative"]

    def ttls(self, side, exclude=None):
        return {p["ip.ttl"] for p in self.pkts if p["side"] == side and p is not exclude}

    def is_forged(self, rst):
        own = self.ttls(rst["side"], exclude=rst)
        return bool(own) and rst["ip.ttl"] not in own

    def t(self, frame):
        return next(p["frame.time_relative"] for p in self.pkts if p["frame.number"] == frame)

    def last_data(self, side, before=None):
        ps = [p for p in self.pkts if p["side"] == side and p["tcp.len"] > 0
              and (before is None or p["frame.number"] < before)]
        return ps[-1] if ps else None

    def summary(self):
        s = [f"stream {self.sid}: first frame {self.first_frame}"]
        if self.syn is None:
            s.append("no SYN captured")
        if self.methods:
            s.append("requests " + ",".join(self.methods))
        if self.codes:
            s.append("responses " + ",".join(self.codes))
        if self.alerts:
            s.append("TLS alerts " + ",".join(f"{a}({sd}, frame {f})" for f, sd, a in self.alerts))
        if self.h2:
            gs = [f"GOAWAY({sd}, frame {f})" for f, sd, t in self.h2 if t == "GOAWAY"]
            if gs:
                s.append("HTTP/2 " + ",".join(gs) + (f" error {','.join(self.goaway_err)}" if self.goaway_err else ""))
        s.append(f"client->server {self.cdata} B, server->client {self.sdata} B")
        if self.retrans:
            s.append(f"{len(self.retrans)} retransmissions ({','.join(sorted({p['side'] for p in self.retrans}))})")
        if self.close:
            extra = ""
            if self.closer == "middlebox":
                own = ",".join(sorted(self.ttls(self.close["side"], exclude=self.close)))
                extra = (f" claiming to be the {self.close['side']} but with IP TTL {self.close['ip.ttl']}"
                         f" (the {self.close['side']}'s own packets: TTL {own}), IP ID {self.close['ip.id']}")
            s.append(f"first close: {self.closer} {self.close_kind} at frame {self.close['frame.number']}"
                     f" (t={self.close['frame.time_relative'] - self.t0:.3f} s after the first packet){extra}")
        else:
            s.append("no FIN or RST in the capture")
        if self.fins:
            s.append("FINs " + ",".join(f"{p['frame.number']}({p['side']})" for p in self.fins))
        if self.rsts:
            s.append("RSTs " + ",".join(f"{p['frame.number']}({p['side']})" for p in self.rsts))
        return "; ".join(s)


def connections(cap, decode_as=()):
    by = defaultdict(lambda: None)
    conns = {}
    for p in read_packets(cap, decode_as):
        sid = int(p["tcp.stream"])
        conns.setdefault(sid, Conn(sid)).pkts.append(p)
    for c in conns.values():
        c.finish()
    return [conns[k] for k in sorted(conns)]


def load_log(path):
    ev = []
    if path and os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line.startswith("{"):
                try:
                    ev.append(json.loads(line))
                except ValueError:
                    pass
    return ev


def by_port(events, key="port"):
    d = defaultdict(list)
    for e in events:
        if e.get(key):
            d[int(e[key])].append(e)
    return d


def sw_versions():
    v = {}
    def run(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip()
        except Exception:
            return ""
    v["nginx"] = "nginx " + run(["nginx", "-v"]).split("/")[-1]
    v["python"] = "python3 " + sys.version.split()[0]
    for mod in ("requests", "urllib3", "aiohttp", "httpx", "h2"):
        try:
            m = __import__(mod)
            v[mod] = f"{mod} {m.__version__}"
        except Exception:
            pass
    v["curl"] = " ".join(run(["curl", "-V"]).split()[:2])
    v["openssl"] = run(["openssl", "version"]).split(" (")[0].replace("OpenSSL", "OpenSSL")
    v["tinyproxy"] = run(["tinyproxy", "-v"]).split("\n")[0]
    v["squid"] = "squid " + run(["squid", "-v"]).split("Version ")[-1].split("\n")[0]
    v["iptables"] = run(["iptables", "-V"]).split("\n")[0]
    return v


# ---------------------------------------------------------------------------------------
# per-scenario classification: f(conn, ctx) -> (cause, client_saw, design sentence)
# ctx: {"events": [...], "ports": {port: [events]}, "conns": [...]}
# ---------------------------------------------------------------------------------------
SCEN = {}


def scenario(name, desc, software, decode_as=()):
    def deco(f):
        SCEN[name] = dict(f=f, desc=desc, software=software, decode_as=decode_as, server_ports=None)
        return f
    return deco


def saw(ctx, c, default="?"):
    evs = ctx["ports"].get(c.cport, [])
    txt = [e.get("saw") for e in evs if e.get("saw")]
    if not txt and c.sid in ctx["by_order"]:
        txt = [ctx["by_order"][c.sid]]
    return "; ".join(txt) if txt else default


def awaiting(c):
    """True when the first close came after a client request and before any response byte."""
    if not c.close:
        return False
    lc = c.last_data("client", before=c.close["frame.number"])
    ls = c.last_data("server", before=c.close["frame.number"])
    return lc is not None and (ls is None or ls["frame.number"] < lc["frame.number"])


def wait_s(c):
    lc = c.last_data("client", before=c.close["frame.number"])
    return c.close["frame.time_relative"] - lc["frame.time_relative"]


def generic(desc, software, rule, decode_as=(), server_ports=None):
    """rule(c, ctx) -> (cause, design sentence); client_saw comes from the client log."""
    def f(c, ctx):
        cause, design = rule(c, ctx)
        return cause, saw(ctx, c, "nothing logged (not a client of this scenario's scripts)"), design
    return dict(f=f, desc=desc, software=software, decode_as=decode_as, server_ports=server_ports)


@scenario("lb-pool-overflow-requests",
          "requests.Session with HTTPAdapter(pool_maxsize=2) used by 8 threads against nginx keep-alive: urllib3 discards (closes) the connections it cannot pool; the 2 pooled ones are closed idle by nginx keepalive_timeout 1s",
          ["nginx", "python", "requests", "urllib3"])
def _po1(c, ctx):
    disc = {e["port"] for e in ctx["events"] if e.get("event") == "discarded"}
    nwarn = sum(1 for e in ctx["events"] if e.get("event") == "warning")
    peak = ctx["peak"]
    if c.closer == "client" and c.close_kind == "FIN" and c.cport in disc:
        return ("pool-overflow", f"HTTP 200 x{len(c.codes)}; urllib3 WARNING Connection pool is full, discarding connection: {c.s[0]}. Connection pool size: 2",
                f"Design: 8 threads share one pool of size 2; urllib3 logged 'Connection pool is full' {nwarn} times and the client log shows it discarded this connection (local port {c.cport}) right after a complete 200; the server offered keep-alive (HTTP/1.1, no Connection: close); peak {peak} connections open at once to the server")
    if c.closer == "server" and c.close_kind == "FIN":
        gap = c.close["frame.time_relative"] - c.last_data("server")["frame.time_relative"]
        return ("idle-close", f"HTTP 200 x{len(c.codes)}",
                f"Design: one of the 2 connections kept in the pool, left idle after the last request; the server's 1 s keep-alive timeout closed it with FIN {gap:.3f} s after its last response byte; session.close() followed")
    return ("unknown", "?", "not expected by the design")


SCEN["lb-pool-overflow-urllib3"] = dict(SCEN["lb-pool-overflow-requests"],
    desc="urllib3.PoolManager(maxsize=2) shared by 6 threads against an aiohttp keep-alive server: urllib3 discards (closes) the connections it cannot pool; the 2 pooled ones are closed idle by the server (keepalive_timeout=1)",
    software=["aiohttp", "python", "urllib3"])


def peak_concurrency(conns):
    ev = []
    for c in conns:
        ev.append((c.t0, 1))
        ev.append(((c.close or c.pkts[-1])["frame.time_relative"], -1))
    n = m = 0
    for _, d in sorted(ev, key=lambda x: (x[0], x[1])):
        n += d; m = max(m, n)
    return m


# ---------------------------------------------------------------------------------------
def _leak(c, ctx):
    if c.closer == "server" and c.close_kind == "FIN" and not any(p["side"] == "client" for p in c.fins):
        last = c.pkts[-1]["frame.time_relative"]
        gap = c.close["frame.time_relative"] - c.last_data("server")["frame.time_relative"]
        return "connection-leak", (f"Design: the application kept the connection object and never closed it; the server closed it idle with FIN {gap:.3f} s after its response, "
                                   f"the client kernel only ACKed it (CLOSE_WAIT) and no client FIN/RST followed in the remaining {last - c.close['frame.time_relative']:.2f} s of the capture")
    if c.closer == "client" and c.close_kind == "FIN":
        return "graceful", "Design: the contrast connection, closed by the application right after its complete response; both FINs, no RST"
    return "unknown", "not expected by the design"

SCEN["lb-connection-leak-httpclient"] = generic(
    "bare http.client connections left open after their responses (never closed): nginx keepalive_timeout 1s closes them with FIN and the client sits in CLOSE_WAIT until the capture ends; one connection closed properly",
    ["nginx", "python"], _leak)
SCEN["lb-connection-leak-sessions"] = generic(
    "a new requests.Session per call, never closed: aiohttp server (keepalive_timeout=1) closes the pooled connections with FIN, the client stays in CLOSE_WAIT; one Session closed with 'with'",
    ["aiohttp", "python", "requests", "urllib3"], _leak)


def _timeout(c, ctx):
    if c.closer == "client" and awaiting(c):
        late = [p for p in c.pkts if p["side"] == "server" and p["tcp.len"] > 0 and p["frame.number"] > c.close["frame.number"]]
        rst = [p for p in c.rsts if p["side"] == "client"]
        extra = ""
        if late:
            extra = f"; the server's late response (frame {late[0]['frame.number']}, {late[0]['frame.time_relative'] - c.last_data('client', before=c.close['frame.number'])['frame.time_relative']:.3f} s after the request) was answered by the client's RST (frame {rst[0]['frame.number'] if rst else '-'})"
        return "client-timeout", (f"Design: the server answers only after 3 s (slow, not broken); the client's 1 s timeout fired and it closed {wait_s(c):.3f} s after its complete request, before any response byte" + extra)
    if c.closer == "client" and c.close_kind == "FIN" and c.codes:
        return "graceful", "Design: the fast request on a Session closed by the application after a complete response"
    return "unknown", "not expected by the design"

SCEN["lb-client-timeout-requests"] = generic(
    "plain asyncio server answering /slow after 3 s; requests timeout=1 (ReadTimeout) and http.client timeout 1.5 s give up and close; late responses get the client's RST; one fast graceful request",
    ["python", "requests", "urllib3"], _timeout)
SCEN["lb-client-timeout-aiohttp"] = generic(
    "aiohttp server handler sleeping 3 s; aiohttp ClientTimeout(total=1), ClientTimeout(sock_read=1) and httpx timeout=1 give up after 1 s and close (aiohttp server then closes too, no late response)",
    ["aiohttp", "httpx", "python"], _timeout)


def _abort(c, ctx):
    if c.closer == "client" and c.close_kind in ("FIN", "RST") and not awaiting(c) and c.sdata > 100000:
        more = [p for p in c.pkts if p["side"] == "server" and p["tcp.len"] > 0 and p["frame.number"] > c.close["frame.number"]]
        return "client-abort", (f"Design: a 20 MB download abandoned by the client; it closed ({c.close_kind}) after {c.sdata} response bytes were on the wire while nginx was still sending"
                                + (f"; {len(more)} more server data segments after the close" if more else ""))
    return "unknown", "not expected by the design"

SCEN["lb-client-abort-requests"] = generic(
    "nginx serves a 20 MB file; requests stream=True reads 256 KiB and closes the response, http.client reads 128 KiB and closes: both RST (unread data) mid-download; snaplen 256",
    ["nginx", "python", "requests", "urllib3"], _abort)
SCEN["lb-client-abort-curl"] = generic(
    "nginx (limit_rate 400k) serves a 20 MB file; curl --max-time 1 gives up mid-download, an aiohttp download task is cancelled after 150 KB",
    ["nginx", "curl", "aiohttp", "python"], _abort)


def _tls_hs(c, ctx):
    sal = [a for a in c.alerts if a[1] == "server"]
    txt = saw(ctx, c, "")
    if sal:
        return "tls-handshake-failure", f"Design: the server rejects the client's offer; it answered the ClientHello with a fatal {sal[0][2]} alert (frame {sal[0][0]}); no application data; the {c.closer} sent the first {c.close_kind}"
    if "WRONG_VERSION_NUMBER" in txt:
        return "tls-handshake-failure", "Design: a TLS client talking to nginx's plain-HTTP port; nginx answered the ClientHello with an HTTP '400 Bad Request' and FIN right away; the client reported WRONG_VERSION_NUMBER"
    if "HTTP 200" in txt:
        return "graceful", "Design: the contrast client (TLS 1.3), complete response, nginx closed after 'Connection: close'"
    return "unknown", "not expected by the design"

SCEN["lb-tls-handshake-failure-version"] = generic(
    "nginx ssl_protocols TLSv1.3 only; python ssl with maximum_version TLSv1_2 and curl --tls-max 1.2 get a protocol_version alert; one TLS 1.3 client succeeds",
    ["nginx", "python", "curl", "openssl"], _tls_hs, decode_as=("tcp.port==19041,tls",))
SCEN["lb-tls-handshake-failure-openssl"] = generic(
    "openssl s_server TLS 1.2 with one cipher; python and curl offering only AES128-SHA get handshake_failure; a TLS client on nginx's plain-HTTP port gets 400 + FIN (WRONG_VERSION_NUMBER)",
    ["openssl", "nginx", "python", "curl"], _tls_hs, decode_as=("tcp.port==19042,tls", "tcp.port==19043,http"))


def _tls_cert(c, ctx):
    cal = [a for a in c.alerts if a[1] == "client" and a[2] != "close_notify"]
    txt = saw(ctx, c, "")
    if "HTTP 200" in txt:
        return "graceful", "Design: the contrast client trusts the self-signed certificate (verify=cert.pem), complete response"
    if cal:
        return "tls-certificate-rejected", f"Design: self-signed server certificate, client verification on; the client sent a fatal {cal[0][2]} alert (frame {cal[0][0]}) after the server's certificate flight; the {c.closer} sent the first {c.close_kind}"
    if c.closer == "client":
        return "tls-certificate-rejected", "Design: self-signed server certificate, client verification on; the client closed (no alert) right after the server's certificate flight, no application data"
    return "unknown", "not expected by the design"

SCEN["lb-tls-cert-rejected-requests"] = generic(
    "nginx with a self-signed certificate; requests verify=True (TLS 1.3) and curl (TLS 1.2) reject it with an unknown_ca alert; requests verify=cert.pem succeeds",
    ["nginx", "python", "requests", "urllib3", "curl", "openssl"], _tls_cert, decode_as=("tcp.port==19051,tls",))
SCEN["lb-tls-cert-rejected-aiohttp"] = generic(
    "nginx (TLS 1.2) with a self-signed certificate; aiohttp rejects it with no alert (FIN), httpx verify=True with an unknown_ca alert",
    ["nginx", "aiohttp", "httpx", "python", "openssl"], _tls_cert, decode_as=("tcp.port==19052,tls",))


def _proxy(pport, upstream_ports):
    def rule(c, ctx):
        sport = int(c.s[1])
        if sport == pport:
            if "CONNECT" in c.methods and c.codes[:1] == ["200"]:
                return "proxy-disconnect", f"Design: CONNECT tunnel through the proxy to a slow streaming server; the proxy process (started by the script) was killed with SIGKILL mid-response; its kernel closed the client's connection ({c.closer} {c.close_kind}) with the response incomplete"
            code = ",".join(c.codes) or "none"
            return "proxy-disconnect", f"Design: request through the proxy to a dead upstream (nothing listening); the proxy answered {code}; the {c.closer} sent the first {c.close_kind}"
        if sport in upstream_ports and c.syn and c.close_kind == "RST" and c.cdata == 0 and c.sdata == 0:
            return "connection-refused", "Design: the proxy's own attempt to reach the dead upstream (nothing listening): SYN answered by RST"
        if sport in upstream_ports:
            return "client-abort", "Design: the proxy's upstream leg of the CONNECT tunnel; the proxy (the client of this leg) was SIGKILLed while the response was flowing, so its kernel closed this connection (FIN, later RSTs for data still arriving)"
        return "unknown", "not expected by the design"
    return rule

SCEN["lb-proxy-disconnect-tinyproxy"] = generic(
    "tinyproxy on loopback: 500 for a dead upstream (plain GET and CONNECT -> ProxyError), and a CONNECT tunnel whose proxy process is killed with SIGKILL mid-response; proxy->upstream legs included",
    ["tinyproxy", "python", "requests", "urllib3"], _proxy(19061, {19062, 19069}), server_ports={19061})
SCEN["lb-proxy-disconnect-squid"] = generic(
    "squid 5: CONNECT to a dead upstream answered 503 (ProxyError), plain GET answered 503, and a CONNECT tunnel whose squid process is killed with SIGKILL mid-response",
    ["squid", "python", "requests", "urllib3"], _proxy(19063, set()), server_ports={19063})


def _mbox(c, ctx):
    if c.closer == "middlebox":
        r = c.close
        return "middlebox-reset", f"Design: the router's iptables REJECT --reject-with tcp-reset answered the client's request in the server's name; the RST (frame {r['frame.number']}) has IP TTL {r['ip.ttl']} and IP ID {r['ip.id']} while the server's own packets arrive with TTL {','.join(sorted(c.ttls('server', exclude=r)))}; the server never saw the request"
    if c.close_kind == "FIN" and c.codes:
        return "graceful", "Design: the contrast request (no match in the router's rule), complete response, FIN exchange"
    return "unknown", "not expected by the design"

SCEN["lb-middlebox-reset-string"] = generic(
    "client-router-server namespaces; the router's iptables string match (BLOCKME) + REJECT --reject-with tcp-reset resets requests (requests, curl) in the server's name; one clean request",
    ["nginx", "python", "requests", "urllib3", "curl", "iptables"], _mbox)
SCEN["lb-middlebox-reset-conntrack"] = generic(
    "client-router-server namespaces; the router's conntrack forgets idle flows after 2 s (tcp_loose=0) and REJECTs INVALID packets with tcp-reset: a request after 3.5 s idle (http.client GET, aiohttp POST) is reset by the router",
    ["nginx", "python", "aiohttp", "iptables"], _mbox)


def _loss(c, ctx):
    if c.retrans:
        gaps = []
        rt = [p for p in c.pkts if p["tcp.len"] > 0 or p["flags"] & 0x03]
        side = c.retrans[0]["side"]
        seq = [p["frame.time_relative"] for p in c.pkts if p["side"] == side and (p["tcp.analysis.retransmission"] or p is c.retrans[0])]
        first_orig = None
        gaps = [round(b - a, 3) for a, b in zip(seq, seq[1:])]
        return "network-loss", (f"Design: the router drops packets (iptables DROP inserted mid-connection, a black hole, no reset); the {side} retransmitted {len(c.retrans)} times"
                                + (f" with gaps {gaps} s (RTO backoff)" if gaps else "")
                                + (f"; the connection ended with the {c.closer}'s {c.close_kind}" if c.close else "; no FIN or RST ever got through"))
    return "unknown", "not expected by the design"

SCEN["lb-network-loss-blackhole"] = generic(
    "client-router-server; after one good exchange the router drops everything: requests ReadTimeout after 4 s with RTO-backoff retransmissions and no FIN on the wire; then curl's SYN retransmissions (connect timeout 3 s)",
    ["nginx", "python", "requests", "urllib3", "curl", "iptables"], _loss)
SCEN["lb-network-loss-download"] = generic(
    "client-router-server; an aiohttp download from nginx stalls when the router drops the server->client direction; the server's retransmissions with RTO backoff are seen on the server-side veth; aiohttp sock_read timeout",
    ["nginx", "aiohttp", "python", "iptables"], _loss)


def _h2(port):
    def rule(c, ctx):
        g = [h for h in c.h2 if h[2] == "GOAWAY"]
        if g:
            return "http2-goaway", f"Design: nginx h2c (listen ... http2 on a plain port) sent GOAWAY (frame {g[0][0]}, error code {','.join(c.goaway_err) or '?'}) then FIN; the {c.closer} sent the first {c.close_kind}"
        if c.close_kind == "FIN":
            return "graceful", "Design: HTTP/2 connection closed by the client after complete responses (client exit), no GOAWAY before the close"
        return "unknown", "not expected by the design"
    return rule

SCEN["lb-http2-goaway-maxreq"] = generic(
    "nginx h2c with keepalive_requests 2: GOAWAY after the 2nd stream; httpx (http2 prior knowledge) makes 5 sequential GETs; curl --http2-prior-knowledge with 3 URLs",
    ["nginx", "httpx", "h2", "python", "curl"], _h2(19091), decode_as=("tcp.port==19091,http2",))
SCEN["lb-http2-goaway-idle"] = generic(
    "nginx h2c with keepalive_timeout 1s: idle HTTP/2 connections get GOAWAY + FIN after 1 s; httpx makes a 2nd request after 1.5 s idle; a raw python-h2 client waits for the GOAWAY",
    ["nginx", "httpx", "h2", "python"], _h2(19092), decode_as=("tcp.port==19092,http2",))


def main():
    name, cap, log = sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None
    sc = SCEN[name]
    conns = connections(cap, sc["decode_as"])
    events = load_log(log)
    ports = by_port(events)
    # log lines without a local port (curl, some async clients) go to the connections
    # that no port-keyed line matched, in order of appearance
    anon = [e["saw"] for e in events if e.get("saw") and not e.get("port")]
    by_order = {}
    sp = sc.get("server_ports")
    for c in conns:
        if c.cport in ports or (sp and int(c.s[1]) not in sp):
            continue
        if anon:
            by_order[c.sid] = anon.pop(0)
    ctx = {"events": events, "ports": ports, "conns": conns, "by_order": by_order,
           "peak": peak_concurrency(conns)}
    vers = sw_versions()
    labels = []
    for c in conns:
        cause, client_saw, design = sc["f"](c, ctx)
        labels.append({
            "client": c.client, "server": c.server, "first_frame": c.first_frame,
            "cause": cause, "closer": c.closer, "close_kind": c.close_kind,
            "client_saw": client_saw,
            "how_known": design + ". Packets: " + c.summary() + ".",
        })
    software = [vers.get(s, s) for s in sc["software"]]
    doc = {"capture": os.path.basename(cap), "scenario": sc["desc"], "software": software,
           "record_command": f"bash sample_pcaps/lab/{name}.sh", "connections": labels}
    base = cap
    for ext in (".pcap.gz", ".pcapng", ".pcap"):
        if base.endswith(ext):
            base = base[: -len(ext)]
            break
    with open(base + ".labels.json", "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    for l in labels:
        print(f"  {l['first_frame']:>5} {l['client']:>22} -> {l['server']:<20} {l['cause']:<26} {l['closer']}/{l['close_kind']}", file=sys.stderr)


if __name__ == "__main__":
    main()
