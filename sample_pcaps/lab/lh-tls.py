#!/usr/bin/env python3
"""Haystack lh-tls: a mixed, mostly-HTTPS capture (~30 s) with 10 injected failures.

Servers (server namespace of a veth pair, 10.203.0.2):
  * nginx, one server block: TLS 1.2 + 1.3 on :18443 (self-signed certificate made per
    run with openssl, SAN IP:10.203.0.2; ssl_ciphers ECDHE+AESGCM:ECDHE+CHACHA20) and
    cleartext on :18080; keepalive_timeout 2s (idle close = close_notify alert, then FIN);
    /big (120 KB static file), /api, /upload, /slow (3 s), /stream (chunked) proxied to a
    local aiohttp backend on 127.0.0.1:18090 inside the server namespace (that hop is not
    captured); /reject = `return 444`.
  * an aiohttp TLS server on :18444 (keepalive_timeout 1.5 s).
  * nothing listens on :18445 (connection-refused).
Clients (client namespace, 10.203.0.1, six processes at once, all the same client IP):
  req   requests.Session(verify=cert), TLS 1.3; short sessions, downloads, uploads,
        idle gaps > 2 s (idle-close), one-shot requests.get, a few cleartext sessions.
  httpx httpx.Client(http2=False) with an ssl context maximum_version=TLSv1_2; same
        shapes + streaming responses; one client-timeout (timeout 1 s on /slow);
        one long stream still running when the capture stops (incomplete).
  aio   aiohttp.ClientSession (TLS 1.3) to nginx and to the aiohttp TLS server; one long
        stream still running at the end (incomplete).
  hc    bare http.client.HTTPSConnection / HTTPConnection: keep-alive runs, idle-close
        (close() after 2.5 s idle), two keepalive-races (reuse 2.05 s / 2.2 s after the
        last response, nginx has closed at 2 s), one request-rejected (/reject, 444).
  curl  curl --cacert (alternating --tlsv1.3 / --tls-max 1.2), 1-3 URLs per run, some
        cleartext; one curl without --cacert (tls-certificate-rejected, exit 60).
  fail  requests verify=True (tls-certificate-rejected), an ssl client offering only
        TLS 1.0/1.1 and one offering only the cipher AES256-SHA256 (tls-handshake-failure
        x2), requests timeout=1 on /slow (client-timeout), http.client to :18445
        (connection-refused), normal requests in between.
SSLKEYLOGFILE is set for every client (Python ssl, urllib3, httpx, aiohttp, curl); the
key log is kept as sample_pcaps/captures/lh-tls.keys (throwaway lab keys) so that
`tshark -o tls.keylog_file:sample_pcaps/captures/lh-tls.keys` decrypts the capture.

Labels: every client logs one JSON line per "pattern" (a session / a connection's work):
the local ports it used (socket.create_connection / urllib3 hook, resp.connection
transport sockname for aiohttp, -w %{local_port} for curl, an explicit source port for
the refused connect), what it saw, the designed outcome (plan) and epoch times.  Each
captured stream is matched to the pattern by client port + time.  Designed failures get
their cause when the client's log shows the failure and the (decrypted) packets show the
evidence; normal patterns (every request answered) are labelled from the packets:
no FIN/RST -> incomplete, client closed first -> graceful, nginx/aiohttp closed first
after >= its keep-alive timeout of idleness -> idle-close.  Any mismatch is reported as
"unknown" so that it gets fixed in the design (there is none in the committed capture).

    python3 sample_pcaps/lab/lh-tls.py
"""
import os, shutil, time
import lh_common as C
L = C.L

SCEN = "lh-tls"
TLSP, CLRP, PYTLSP, BACKP, REFP = 18443, 18080, 18444, 18090, 18445
DUR = 28.0          # seconds of client traffic
KA = 2.0            # nginx keepalive_timeout
PYKA = 1.5          # aiohttp server keepalive_timeout

lab = L.Lab(SCEN, veth=True)
H = lab.ip_s
CERT, KEY = lab.path("cert.pem"), lab.path("key.pem")
L.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", KEY, "-out", CERT,
       "-days", "2", "-subj", "/CN=lh-tls.test",
       "-addext", "subjectAltName=IP:%s,DNS:lh-tls.test" % H])
KEYLOG = lab.path("keys.log")
open(KEYLOG, "w").close()
os.environ["SSLKEYLOGFILE"] = KEYLOG
# the host's CA-bundle variables would override requests.Session.verify (REQUESTS_CA_BUNDLE
# wins over a session-level verify= path) and curl's defaults: clients use only the lab cert
for v in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
    os.environ.pop(v, None)

BACKEND = (C.PATTERN_BACKEND + r'''
import ssl
async def slow(req):
    await asyncio.sleep(3.0)
    return web.Response(text="slow answer\n")
async def hello(req):
    return web.Response(text="hello from aiohttp tls\n")
async def main():
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.add_routes([web.get("/api", api), web.post("/upload", upload), web.get("/slow", slow),
                    web.get("/stream", stream), web.get("/", hello)])
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=__PYKA__)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", __BACKP__).start()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    await web.TCPSite(runner, host, __PYTLSP__, ssl_context=ctx).start()
    await asyncio.Event().wait()
asyncio.run(main())
''').replace("__PYKA__", str(PYKA)).replace("__BACKP__", str(BACKP)).replace("__PYTLSP__", str(PYTLSP))

PROXY = "proxy_pass http://127.0.0.1:%d; proxy_buffering off;" % BACKP
lab.nginx(lab.ns_s, """
        listen %(h)s:%(tls)d ssl;
        listen %(h)s:%(clr)d;
        server_name lh-tls.test;
        ssl_certificate %(cert)s;
        ssl_certificate_key %(key)s;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers ECDHE+AESGCM:ECDHE+CHACHA20;
        keepalive_timeout %(ka)ds;
        %(site)s
        location /upload { %(px)s }
        location /slow { %(px)s }
        location /stream { %(px)s }
""" % {"h": H, "tls": TLSP, "clr": CLRP, "cert": CERT, "key": KEY, "ka": KA,
       "site": C.nginx_site(lab, 120, PROXY), "px": PROXY})
lab.pyserver(lab.ns_s, BACKEND, [H, CERT, KEY], name="backend")
for p in (TLSP, CLRP):
    lab.wait_listen(lab.ns_s, p)
lab.wait_listen(lab.ns_s, BACKP)
lab.wait_listen(lab.ns_s, PYTLSP)

# ---------------------------------------------------------------- clients
# argv: server address, certificate, T0 (epoch start of the traffic), DUR, process name
COMMON = r'''
import ssl, sys
HOST, CERT, T0, DUR, NAME = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
TLS = "https://%s:18443" % HOST
CLEAR = "http://%s:18080" % HOST
PYTLS = "https://%s:18444" % HOST
''' + C.PATTERN_CLIENT

REQ = COMMON + r'''
import requests
def S():
    s = requests.Session(); s.verify = CERT; return s
def quick(saw):
    with S() as s:
        for i in range(rng.randint(2, 4)):
            r = s.get(TLS + "/api?i=%d" % i, timeout=5); saw.append("GET /api HTTP %d" % r.status_code)
            time.sleep(rng.uniform(0.05, 0.3))
def download(saw):
    with S() as s:
        r = s.get(TLS + "/big", timeout=5); saw.append("GET /big HTTP %d %d B" % (r.status_code, len(r.content)))
        r = s.get(TLS + "/", timeout=5); saw.append("GET / HTTP %d" % r.status_code)
def upload(saw):
    with S() as s:
        body = os.urandom(rng.randint(30, 150) * 1024)
        r = s.post(TLS + "/upload", data=body, timeout=5); saw.append("POST /upload %d B HTTP %d" % (len(body), r.status_code))
def idle_reuse(saw):
    with S() as s:
        r = s.get(TLS + "/api?a", timeout=5); saw.append("GET HTTP %d" % r.status_code)
        time.sleep(rng.uniform(2.4, 3.0))
        r = s.get(TLS + "/api?b", timeout=5); saw.append("GET (after idle) HTTP %d" % r.status_code)
def idle_end(saw):
    s = S()
    r = s.get(TLS + "/", timeout=5); saw.append("GET HTTP %d" % r.status_code)
    time.sleep(rng.uniform(2.3, 2.9)); s.close()
def oneshot(saw):
    r = requests.get(TLS + "/", verify=CERT, timeout=5); saw.append("GET HTTP %d" % r.status_code)
def clear(saw):
    with requests.Session() as s:
        for i in range(rng.randint(1, 3)):
            r = s.get(CLEAR + "/api?c=%d" % i, timeout=5); saw.append("GET http:// HTTP %d" % r.status_code)
pool = weighted([(quick, 4), (download, 1), (upload, 1), (idle_reuse, 1), (idle_end, 1), (oneshot, 2), (clear, 1)])
run_patterns(3.5, (0.05, 0.3), lambda: one_of("requests ", pool))
# last one: a session that stays open past the end of the capture
def last(saw):
    s = S(); r = s.get(TLS + "/api?last", timeout=5); saw.append("GET HTTP %d" % r.status_code)
    globals()["KEEP"] = s
sleep_until_left(0.8)
pattern("normal", "requests session left open at the end", last)
hold()
'''

HTTPX = COMMON + r'''
import httpx
ctx = ssl.create_default_context(cafile=CERT)
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
def C(**kw):
    return httpx.Client(verify=ctx, http2=False, **kw)
def quick(saw):
    with C() as c:
        for i in range(rng.randint(2, 4)):
            r = c.get(TLS + "/api?x=%d" % i); saw.append("GET HTTP %d" % r.status_code)
            time.sleep(rng.uniform(0.05, 0.3))
def streamed(saw):
    with C() as c:
        with c.stream("GET", TLS + "/stream?n=6&d=0.1") as r:
            n = sum(len(b) for b in r.iter_bytes())
        saw.append("GET /stream HTTP %d %d B" % (r.status_code, n))
def download(saw):
    with C() as c:
        r = c.get(TLS + "/big"); saw.append("GET /big HTTP %d %d B" % (r.status_code, len(r.content)))
def upload(saw):
    with C() as c:
        r = c.post(TLS + "/upload", content=os.urandom(rng.randint(20, 100) * 1024)); saw.append("POST HTTP %d" % r.status_code)
        r = c.get(TLS + "/api?after-upload"); saw.append("GET HTTP %d" % r.status_code)
def idle_reuse(saw):
    with C() as c:
        r = c.get(TLS + "/"); saw.append("GET HTTP %d" % r.status_code)
        time.sleep(rng.uniform(2.4, 3.0))
        r = c.get(TLS + "/"); saw.append("GET (after idle) HTTP %d" % r.status_code)
def clear(saw):
    with httpx.Client() as c:
        r = c.get(CLEAR + "/"); saw.append("GET http:// HTTP %d" % r.status_code)
        r = c.get(CLEAR + "/api?c"); saw.append("GET http:// HTTP %d" % r.status_code)
def timeout(saw):
    with C(timeout=httpx.Timeout(5.0, read=1.0)) as c:
        r = c.get(TLS + "/api?before-slow"); saw.append("GET HTTP %d" % r.status_code)
        c.get(TLS + "/slow")
pool = weighted([(quick, 4), (streamed, 2), (download, 1), (upload, 1), (idle_reuse, 1), (clear, 1)])
run_patterns(5.0, (0.05, 0.3), lambda: one_of("httpx ", pool),
             {11.0: ("client-timeout", "httpx read timeout 1 s on /slow (3 s)", timeout)})
def endless(saw):
    c = C(timeout=30)
    r = c.send(c.build_request("GET", TLS + "/stream?n=600&d=0.25"), stream=True)
    saw.append("GET /stream HTTP %d (streaming, still reading when the capture ended)" % r.status_code)
    emit(ev="pattern", plan="incomplete", desc="httpx long stream", ports=list(PORTS), t0=time.time(), t1=time.time(), saw=saw, ok=True)
    for b in r.iter_bytes():
        pass
sleep_until_left(3.0)
del PORTS[:]
endless([])
hold()
'''

AIO = COMMON + C.PATTERN_AIOHTTP + r'''
ctx = ssl.create_default_context(cafile=CERT)
async def get(s, url, saw):
    async with s.get(url, ssl=ctx) as r:
        b = await r.read(); saw.append("GET %s HTTP %d %d B" % (url.split(":", 2)[2], r.status, len(b)))
async def burst(saw):
    async with CS() as s:
        for i in range(rng.randint(2, 5)):
            await get(s, TLS + "/api?aio=%d" % i, saw)
            await asyncio.sleep(rng.uniform(0.05, 0.3))
async def pyburst(saw):
    async with CS() as s:
        for i in range(rng.randint(1, 3)):
            await get(s, PYTLS + "/", saw)
            await asyncio.sleep(rng.uniform(0.05, 0.3))
async def pyidle(saw):
    async with CS() as s:
        await get(s, PYTLS + "/", saw)
        await asyncio.sleep(rng.uniform(2.0, 2.6))
        await get(s, PYTLS + "/", saw)
async def idle(saw):
    async with CS() as s:
        await get(s, TLS + "/api?idle", saw)
        await asyncio.sleep(rng.uniform(2.4, 3.0))
        await get(s, TLS + "/api?after-idle", saw)
async def parallel(saw):
    async with CS() as s:
        await asyncio.gather(*[get(s, TLS + "/api?par=%d" % i, saw) for i in range(3)])
        await get(s, TLS + "/big", saw)
async def endless():
    s = CS()
    del PORTS[:]
    r = await s.get(TLS + "/stream?n=600&d=0.3", ssl=ctx)
    emit(ev="pattern", plan="incomplete", desc="aiohttp long stream", ports=list(PORTS), t0=time.time(), t1=time.time(),
         saw=["GET /stream HTTP %d (streaming, still reading when the capture ended)" % r.status], ok=True)
    async for chunk in r.content.iter_any():
        pass
async def main():
    await apatterns(4.0, (0.1, 0.4), weighted([(burst, 3), (pyburst, 2), (pyidle, 1), (idle, 1), (parallel, 1)]))
    while left() > 2.5:
        await asyncio.sleep(0.05)
    await endless()
asyncio.run(main())
hold()
'''

HC = COMMON + C.PATTERN_HTTP_CLIENT + r'''
ctx = ssl.create_default_context(cafile=CERT)
def conn(tls=True):
    if tls:
        return http.client.HTTPSConnection(HOST, 18443, context=ctx, timeout=5)
    return http.client.HTTPConnection(HOST, 18080, timeout=5)
def run(saw, tls=True):
    c = conn(tls)
    for i in range(rng.randint(2, 5)):
        do(c, "/api?hc=%d" % i, saw); time.sleep(rng.uniform(0.05, 0.4))
    c.close()
def run_clear(saw):
    run(saw, tls=False)
def post(saw):
    c = conn(); do(c, "/upload", saw, "POST", os.urandom(40000)); do(c, "/", saw); c.close()
def idle_end(saw):
    c = conn(); do(c, "/", saw); time.sleep(rng.uniform(2.3, 2.8)); c.close()
def reject(saw):
    c = conn(); do(c, "/", saw)
    try:
        do(c, "/reject", saw)
    finally:
        c.close()
plan = {5.0: ("keepalive-race", "http.client reuse 2.05 s after the last response", race(conn, 2.05)),
        10.0: ("request-rejected", "http.client GET /reject (nginx return 444)", reject),
        16.0: ("keepalive-race", "http.client reuse 2.2 s after the last response", race(conn, 2.2))}
pool = weighted([(run, 4), (run_clear, 1), (post, 1), (idle_end, 1)])
run_patterns(3.0, (0.1, 0.4), lambda: one_of("http.client ", pool), plan)
hold()
'''

CURL = COMMON + r'''
def curl(args, plan="normal", desc="curl"):
    t0 = time.time(); ports, saw, ok = run_curl(args)
    emit(ev="pattern", plan=plan, desc=desc + " " + " ".join(args).replace(CERT, "cert.pem"), ports=ports, t0=t0, t1=time.time(),
         saw=saw, ok=ok)
did_reject = False
i = 0
while left() > 3.0:
    i += 1
    if not did_reject and now() > 13:
        curl(["--local-port", "45124", "--tls-max", "1.2", TLS + "/"], "tls-certificate-rejected", "curl without --cacert")
        did_reject = True
        continue
    ver = ["--tlsv1.3"] if i % 2 else ["--tlsv1.2", "--tls-max", "1.2"]
    k = rng.random()
    if k < 0.15:
        curl([CLEAR + "/", CLEAR + "/api?curl"])
    elif k < 0.25:
        curl(["--cacert", CERT] + ver + [TLS + "/big"])
    elif k < 0.35:
        curl(["--cacert", CERT] + ver + ["-X", "POST", "--data-binary", "@" + CERT, TLS + "/upload"])
    elif k < 0.6:
        curl(["--cacert", CERT] + ver + [TLS + "/", TLS + "/api?curl=1", TLS + "/api?curl=2"])
    else:
        curl(["--cacert", CERT] + ver + [TLS + "/api?curl"])
    time.sleep(rng.uniform(0.2, 0.6))
hold()
'''

FAIL = COMMON + r'''
import http.client, requests
def normal(saw):
    with requests.Session() as s:
        s.verify = CERT
        for i in range(rng.randint(1, 3)):
            r = s.get(TLS + "/api?f=%d" % i, timeout=5); saw.append("GET HTTP %d" % r.status_code)
def cert_rejected(saw):
    requests.get(TLS + "/", timeout=5)          # verify=True: self-signed cert not trusted
def hs(minv, maxv, ciphers):
    def f(saw):
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); c.load_verify_locations(CERT)
        c.minimum_version, c.maximum_version = minv, maxv
        c.set_ciphers(ciphers)
        c.keylog_filename = os.environ.get("SSLKEYLOGFILE")
        s = socket.create_connection((HOST, 18443), timeout=5)
        try:
            t = c.wrap_socket(s, server_hostname=HOST)
            t.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); saw.append(repr(t.recv(100)))
        finally:
            s.close()
    return f
def slow(saw):
    with requests.Session() as s:
        s.verify = CERT
        s.get(TLS + "/slow", timeout=(5, 1.0))
def refused(saw):
    PORTS.append(45123)
    c = http.client.HTTPSConnection(HOST, 18445, context=ssl.create_default_context(cafile=CERT), timeout=5,
                                    source_address=("0.0.0.0", 45123))
    try:
        c.request("GET", "/")
    finally:
        c.close()
plan = {3.0: ("tls-certificate-rejected", "requests verify=True against the self-signed cert", cert_rejected),
        7.0: ("tls-handshake-failure", "python ssl offering only TLS 1.0/1.1",
              hs(ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1, "DEFAULT:@SECLEVEL=0")),
        12.0: ("connection-refused", "http.client to closed port 18445", refused),
        18.0: ("tls-handshake-failure", "python ssl TLS 1.2 offering only cipher AES256-SHA256",
               hs(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2, "AES256-SHA256")),
        21.0: ("client-timeout", "requests read timeout 1 s on /slow (3 s)", slow)}
run_patterns(3.0, (0.3, 0.8), lambda: pattern("normal", "requests normal", normal), plan)
hold()
'''

WORKERS = [("req", REQ), ("httpx", HTTPX), ("aio", AIO), ("hc", HC), ("curl", CURL), ("fail", FAIL)]

lab.start_capture(SCEN + ".pcap.gz", iface=lab.dev_c)
T0 = time.time() + 1.5
procs = [(n, lab.client(code, [H, CERT, "%.3f" % T0, DUR, n], name="w-" + n, background=True))
         for n, code in WORKERS]
while time.time() < T0 + DUR + 0.3:
    time.sleep(0.2)
lab.stop_capture(settle=0.2)
shutil.copy(KEYLOG, os.path.join(L.CAPDIR, SCEN + ".keys"))
logs = C.worker_logs(lab, [n for n, _ in procs], prefix="w-", tag="worker ")
pats = [d for d in logs if d.get("ev") == "pattern"]
L.log("%d patterns logged" % len(pats))

# ------------------------------------------------------------ packet facts (decrypted)
CAP = os.path.join(L.CAPDIR, SCEN + ".pcap.gz")
KEYS = os.path.join(L.CAPDIR, SCEN + ".keys")
first_epoch = C.first_epoch(CAP)
TF = ["frame.number", "tcp.stream", "tls.record.content_type", "tls.handshake.type", "tls.alert_message.desc",
      "http.request.method", "http.request.uri", "http.response.code"]
cmd = ["tshark", "-n", "-r", CAP, "-o", "tls.keylog_file:" + KEYS, "-o", "tls.desegment_ssl_records:TRUE",
       "-Y", "tcp", "-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"]
for f_ in TF:
    cmd += ["-e", f_]
TLSF = {}
for line in L.run(cmd, timeout=120).stdout.splitlines():
    v = dict(zip(TF, line.split("|")))
    TLSF[int(v["frame.number"])] = v


def tls_facts(c):
    """per stream: handshake done?, alerts by side, app-data frames by side, http (decrypted)."""
    out = {"alerts": [], "cli_app": [], "srv_app": [], "reqs": [], "codes": [], "hs_types": set(),
           "srv_hello": False}
    for fr in c["frames"]:
        v = TLSF.get(fr["n"], {})
        side = "client" if fr["src"] == c["client"] else "server"
        ct = [x for x in v.get("tls.record.content_type", "").split(",") if x]
        hst = [x for x in v.get("tls.handshake.type", "").split(",") if x]
        out["hs_types"].update(hst)
        if side == "server" and "2" in hst:
            out["srv_hello"] = True
        if "21" in ct:
            out["alerts"].append((fr["n"], side, v.get("tls.alert_message.desc", "")))
        if "23" in ct or (not ct and fr["len"] > 0 and not fr["syn"]):
            (out["cli_app"] if side == "client" else out["srv_app"]).append(fr)
        for m, u in zip([x for x in v.get("http.request.method", "").split(",") if x],
                        [x for x in v.get("http.request.uri", "").split(",") if x]):
            out["reqs"].append((fr["n"], "%s %s" % (m, u)))
        for code in [x for x in v.get("http.response.code", "").split(",") if x]:
            out["codes"].append((fr["n"], code))
    return out


def describe(tf):
    s = []
    if tf["reqs"]:
        s.append("decrypted/plain requests: " + ", ".join("%s (f%d)" % (r, n) for n, r in tf["reqs"]))
    if tf["codes"]:
        s.append("responses: " + ", ".join("%s (f%d)" % (x, n) for n, x in tf["codes"]))
    if tf["alerts"]:
        s.append("TLS alerts: " + ", ".join("%s %s (f%d)" % (side, desc or "encrypted", n) for n, side, desc in tf["alerts"]))
    return "; ".join(s)


PROBLEMS = []


def label(c, logs_):
    d = C.find_pattern(c, pats, first_epoch)
    tf = tls_facts(c)
    facts = describe(tf)
    if d is None:
        return C.unmatched(c, PROBLEMS, facts)
    saw, who, plan = C.pattern_summary(d)
    srv = c["server"].rsplit(":", 1)[1]
    ka = PYKA if srv == str(PYTLSP) else KA
    fins = c["fin_frames"]
    srv_fin = next((n for n, s in fins if s == "server"), None)
    cli_fin = next((n for n, s in fins if s == "client"), None)

    def bad(why):
        return C.unconfirmed(c, PROBLEMS, d, why, facts)

    if plan == "connection-refused":
        if len(c["frames"]) <= 3 and c["rst_frames"] and c["closer"] == "server" and c["server_data"] == 0:
            return {"cause": plan, "client_saw": saw, "how": "Design (%s): nothing listens on :%s; SYN answered by RST; client logged %s." % (who, srv, saw)}
        return bad("not SYN->RST")
    if plan == "tls-certificate-rejected":
        cli_alert = [a for a in tf["alerts"] if a[1] == "client"]
        if not d["ok"] and tf["srv_hello"] and not tf["reqs"] and (cli_alert or c["closer"] == "client"):
            return {"cause": plan, "client_saw": saw,
                    "how": "Design (%s): the client does not trust the self-signed certificate; after the server's certificate flight the client %s; no HTTP request was sent. %s" % (
                        who, "sent alert %s" % cli_alert[0][2] if cli_alert else "closed", facts)}
        return bad("no client alert/close after ServerHello")
    if plan == "tls-handshake-failure":
        srv_alert = [a for a in tf["alerts"] if a[1] == "server"]
        if not d["ok"] and not tf["srv_hello"] and srv_alert:
            return {"cause": plan, "client_saw": saw,
                    "how": "Design (%s): nginx (ssl_protocols TLSv1.2 TLSv1.3, ssl_ciphers ECDHE+AESGCM:ECDHE+CHACHA20) refused the ClientHello with a fatal %s alert; no ServerHello. %s" % (who, srv_alert[0][2], facts)}
        return bad("no server alert before ServerHello")
    if plan == "client-timeout":
        last_req = tf["reqs"][-1] if tf["reqs"] else None
        if last_req and "/slow" in last_req[1]:
            got = any(n > last_req[0] and (c["close_frame"] is None or n < c["close_frame"]) for n, _ in tf["codes"])
            if not d["ok"] and c["closer"] == "client" and not got:
                t_req = next(f["t"] for f in c["frames"] if f["n"] == last_req[0])
                return {"cause": plan, "client_saw": saw,
                        "how": "Design (%s): GET /slow (the backend answers after 3 s), client read timeout 1 s; the client closed %.3f s after its request, before any response byte. %s" % (
                            who, c["close_t"] - t_req, facts)}
            return bad("no client close while awaiting /slow")
        # another connection of that pattern: normal shape below
    if plan == "keepalive-race":
        if not d["ok"] and srv_fin and any(f["n"] > srv_fin and f["len"] > 0 for f in tf["cli_app"] if f["src"] == c["client"]):
            gap = c["close_t"] - L.last_data_before(c, "client", c["close_frame"])
            return {"cause": plan, "client_saw": saw,
                    "how": "Design (%s): nginx keepalive_timeout %gs closed the idle connection (close_notify + FIN) %.3f s after the last request; http.client, which does not check the socket, then sent its next request on it; no response. %s" % (
                        who, KA, gap, facts)}
        # client won the race (ok) -> normal shape below; a failure here is caught below
    if plan == "request-rejected":
        last_req = tf["reqs"][-1] if tf["reqs"] else None
        if not d["ok"] and last_req and "/reject" in last_req[1] and c["closer"] == "server" and not any(n > last_req[0] for n, _ in tf["codes"]):
            t_req = next(f["t"] for f in c["frames"] if f["n"] == last_req[0])
            return {"cause": plan, "client_saw": saw,
                    "how": "Design (%s): nginx `return 444` closed the connection %.4f s after the request, without a response byte. %s" % (who, c["close_t"] - t_req, facts)}
        return bad("no server close after /reject")
    if plan not in ("normal", "incomplete", "keepalive-race", "client-timeout"):
        return bad("unknown plan")
    if not d["ok"] and plan in ("normal", "keepalive-race"):
        return bad("client logged a failure in a normal pattern: " + saw)
    # normal shapes, from the packets
    if c["closer"] == "none":
        return {"cause": "incomplete", "client_saw": saw,
                "how": "Design (%s): every request answered so far; the capture ended with the connection open. %s" % (who, facts)}
    if plan == "incomplete":
        return bad("expected the connection to be open at the end")
    rst_before_both = c["rst_frames"] and (srv_fin is None or cli_fin is None or min(c["rst_frames"]) < max(srv_fin, cli_fin))
    cli_alerts = [a for a in tf["alerts"] if a[1] == "client"]
    srv_alerts = [a for a in tf["alerts"] if a[1] == "server"]
    # who started the close: the first close_notify alert or FIN/RST, whichever came first
    evs = [(a[0], a[1], "close_notify") for a in tf["alerts"] if a[2] == "0"]
    evs.append((c["close_frame"], c["closer"], c["close_kind"]))
    init_frame, init_side, init_kind = min(evs)
    t_init = next(f["t"] for f in c["frames"] if f["n"] == init_frame)
    alert_frames = set(a[0] for a in tf["alerts"])
    app = [f for f in tf["cli_app"] + tf["srv_app"] if f["n"] not in alert_frames]
    last_app = max([f["t"] for f in app if f["n"] < init_frame] or [c["t0"]])
    idle = t_init - last_app
    def answer():
        a = []
        if cli_alerts:
            a.append("close_notify (frame %d)" % cli_alerts[0][0])
        if cli_fin:
            a.append("FIN (frame %d)" % cli_fin)
        if c["rst_frames"]:
            a.append("RST (frame %d)" % c["rst_frames"][0])
        return " + ".join(a) or "nothing"
    if init_side == "client" and c["close_kind"] in ("FIN", "RST") and not rst_before_both:
        return {"cause": "graceful", "client_saw": saw,
                "how": "Design (%s): every request answered; the client closed when its work ended (%s first, %.3f s after the last data). %s" % (
                    who, init_kind, idle, facts)}
    if init_side == "client":
        return bad("client close with RST before both FINs")
    cli_data_after = [f["n"] for f in tf["cli_app"] if f["n"] > init_frame and f["n"] not in alert_frames]
    rst_before = c["rst_frames"] and min(c["rst_frames"]) < init_frame
    if idle >= ka - 0.05 and not cli_data_after and not rst_before:
        return {"cause": "idle-close", "client_saw": saw,
                "how": "Design (%s): after complete exchanges the connection sat idle %.3f s; the server's keep-alive timeout (%gs) closed it (%s at frame %d); the client answered %s; nothing was lost. %s" % (
                    who, idle, ka, "close_notify, then FIN" if init_kind == "close_notify" else init_kind, init_frame, answer(), facts)}
    return bad("server closed after %.3f s idle (client data after: %s, rst before: %s)" % (idle, cli_data_after, rst_before))
    return bad("close %s/%s" % (c["closer"], c["close_kind"]))


V = L.versions()
out = L.write_labels(lab, "Haystack: mostly HTTPS (nginx TLS 1.2+1.3 keepalive_timeout 2s, an aiohttp TLS server, a few cleartext) from six client processes (requests, httpx TLS1.2, aiohttp, http.client, curl, a failure injector) on one client IP; 10 injected failures",
                     [V["nginx"], V["requests"], V["urllib3"], V["httpx"], V["aiohttp"], V["http.client"], V["curl"],
                      "OpenSSL " + L.run(["openssl", "version"]).stdout.split()[1]], label, logs)
C.report(out, CAP, PROBLEMS)
