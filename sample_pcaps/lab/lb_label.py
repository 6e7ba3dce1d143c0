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


def read_packets(cap, decode_as=()):
    cmd = ["tshark", "-n", "-r", cap, "-Y", "tcp", "-T", "fields", "-E", "separator=\t",
           "-E", "occurrence=a", "-E", "aggregator=,",
           "-o", "tcp.desegment_tcp_streams:TRUE"]
    for d in decode_as:
        cmd += ["-d", d]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    pkts = []
    for line in out.splitlines():
        v = line.split("\t")
        v += [""] * (len(FIELDS) - len(v))
        d = dict(zip(FIELDS, v))
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
        SCEN[name] = dict(f=f, desc=desc, software=software, decode_as=decode_as)
        return f
    return deco


def saw(ctx, c, default="?"):
    evs = ctx["ports"].get(c.cport, [])
    txt = [e.get("saw") for e in evs if e.get("saw")]
    return "; ".join(txt) if txt else default


@scenario("lb-pool-overflow-requests",
          "requests.Session with HTTPAdapter(pool_maxsize=2) used by 8 threads against nginx keep-alive: urllib3 discards (closes) the connections it cannot pool; the 2 pooled ones are closed idle by nginx keepalive_timeout 1s",
          ["nginx", "python", "requests", "urllib3"])
def _po1(c, ctx):
    disc = {e["port"] for e in ctx["events"] if e.get("event") == "discarded"}
    nwarn = sum(1 for e in ctx["events"] if e.get("event") == "warning")
    peak = ctx["peak"]
    if c.closer == "client" and c.close_kind == "FIN" and c.cport in disc:
        return ("pool-overflow", f"HTTP 200 x{len(c.codes)}; urllib3 WARNING Connection pool is full, discarding connection: 127.0.0.1. Connection pool size: 2",
                f"Design: 8 threads share one pool of size 2; urllib3 logged 'Connection pool is full' {nwarn} times and the client log shows it discarded this connection (local port {c.cport}) right after a complete 200; the server offered keep-alive (HTTP/1.1, no Connection: close); peak {peak} connections open at once to the server")
    if c.closer == "server" and c.close_kind == "FIN":
        gap = c.close["frame.time_relative"] - c.last_data("server")["frame.time_relative"]
        return ("idle-close", f"HTTP 200 x{len(c.codes)}",
                f"Design: one of the 2 connections kept in the pool, left idle after the last request; nginx keepalive_timeout 1s closed it with FIN {gap:.3f} s after its last response byte; session.close() followed")
    return ("unknown", "?", "not expected by the design")


def peak_concurrency(conns):
    ev = []
    for c in conns:
        ev.append((c.t0, 1))
        ev.append(((c.close or c.pkts[-1])["frame.time_relative"], -1))
    n = m = 0
    for _, d in sorted(ev, key=lambda x: (x[0], x[1])):
        n += d; m = max(m, n)
    return m


def main():
    name, cap, log = sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None
    sc = SCEN[name]
    conns = connections(cap, sc["decode_as"])
    events = load_log(log)
    ctx = {"events": events, "ports": by_port(events), "conns": conns,
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
