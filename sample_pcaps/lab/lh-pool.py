#!/usr/bin/env python3
"""Haystack lh-pool: cleartext HTTP/1.1 (~25 s) with a REAL urllib3 pool overflow among
normal traffic from the same client IP, plus injected failures.

Servers (server namespace of a veth pair, 10.203.0.2):
  * nginx :18080, keepalive_timeout 2s, keepalive_requests 1000: / , /big (300 KB),
    /reject (`return 444`), /work /api /upload proxied to an aiohttp backend on
    127.0.0.1:18090 inside the server namespace (that hop is not captured; /work sleeps
    ~0.1 s so that the pool's threads really overlap).
  * a plain asyncio HTTP/1.1 server :18081 (keep-alive): /stall waits 3 s then closes the
    connection without a response byte (server-timeout); other paths answer 200.
Clients (client namespace, 10.203.0.1, seven processes, one client IP):
  pool   one requests.Session with HTTPAdapter(pool_connections=1, pool_maxsize=2) shared
         by 10 threads hammering nginx /work for ~8 s: urllib3 logs "Connection pool is
         full, discarding connection"; HTTPConnectionPool._put_conn is wrapped to log the
         local port of every connection it discards (pool-overflow, client FIN right after a
         complete response). The 2 connections kept in the pool sit idle 2.6 s, nginx closes
         them (idle-close), then session.close().
  req    requests.Session: sessions of 2-4 requests that end (client FIN: graceful),
         downloads, uploads, idle gaps > 2 s (idle-close, urllib3 closes the dead socket at
         its next checkout / at session end), one-shot requests.get.
  httpx  httpx.Client, same shapes.
  aio    aiohttp.ClientSession, same shapes (TCPConnector subclass logs each local port).
  curl   curl one-shots and multi-URL runs (-w %{local_port}).
  hc     bare http.client: keep-alive runs, two keepalive-races (reuse 2.05 / 2.3 s after
         the last response; nginx closed at 2 s), one connection-leak (a connection the
         program keeps in a list and never closes: CLOSE_WAIT until the capture ends, while
         the process keeps making requests on new connections).
  fail   requests: GET /reject (request-rejected), GET :18081/stall (server-timeout), a
         stream=True response never read nor closed (connection-leak), normal sessions.
  Incomplete at the end: a requests session and an httpx client with an idle keep-alive
  connection (< 2 s idle), and a curl /stream response still flowing.

Labels: every client logs one JSON line per pattern (ports it used through a
socket.create_connection / urllib3 / aiohttp-connector hook or curl -w, what it saw, the
designed outcome, epoch times) and the pool process logs each discarded connection's
port.  Each captured stream is matched by client port + time.  Designed failures get their
cause when the log shows the failure and the packets show the evidence; the pool's
connections are pool-overflow when urllib3 discarded them (and the client FIN follows a
complete response); normal patterns are labelled from the packets (no FIN/RST ->
incomplete, client FIN first -> graceful, server FIN after >= 2 s idle -> idle-close).
Anything else would be "unknown" (none in the committed capture).

    python3 sample_pcaps/lab/lh-pool.py
"""
import os, time
import lh_common as C
L = C.L

SCEN = "lh-pool"
NGP, PYP, BACKP = 18080, 18081, 18090
DUR = 24.0
KA = 2.0

lab = L.Lab(SCEN, veth=True)
H = lab.ip_s
for v in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "SSLKEYLOGFILE",
          "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
    os.environ.pop(v, None)

BACKEND = (C.PATTERN_BACKEND + r'''
async def work(req):
    await asyncio.sleep(float(req.query.get("d", "0.1")))
    return web.Response(text="worked %s\n" % req.query_string)

class Raw(asyncio.Protocol):
    """minimal HTTP/1.1 keep-alive server; /stall: 3 s, then close without a response"""
    def connection_made(self, t):
        self.t, self.buf = t, b""
    def data_received(self, d):
        self.buf += d
        while b"\r\n\r\n" in self.buf:
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            path = head.split(b" ")[1]
            if path.startswith(b"/stall"):
                asyncio.get_running_loop().call_later(3.0, self.t.close)
                return
            body = b"raw asyncio server ok\n"
            self.t.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
async def main():
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.add_routes([web.get("/api", api), web.get("/work", work), web.post("/upload", upload), web.get("/stream", stream)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", __BACKP__).start()
    await asyncio.get_running_loop().create_server(Raw, host, __PYP__)
    await asyncio.Event().wait()
asyncio.run(main())
''').replace("__BACKP__", str(BACKP)).replace("__PYP__", str(PYP))

PROXY = "proxy_pass http://127.0.0.1:%d;" % BACKP
lab.nginx(lab.ns_s, """
        listen %(h)s:%(p)d;
        keepalive_timeout %(ka)ds;
        keepalive_requests 1000;
        %(site)s
        location /work { %(px)s }
        location /upload { %(px)s }
        location /stream { %(px)s proxy_buffering off; }
""" % {"h": H, "p": NGP, "ka": KA, "site": C.nginx_site(lab, 300, PROXY), "px": PROXY},
          http_extra="")
lab.pyserver(lab.ns_s, BACKEND, [H], name="backend")
lab.wait_listen(lab.ns_s, NGP)
lab.wait_listen(lab.ns_s, BACKP)
lab.wait_listen(lab.ns_s, PYP)

# ---------------------------------------------------------------- clients
# argv: server address, T0 (epoch start of the traffic), DUR, process name
COMMON = r'''
import sys
HOST, T0, DUR, NAME = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
NG = "http://%s:18080" % HOST
RAW = "http://%s:18081" % HOST
''' + C.PATTERN_CLIENT

POOL = COMMON + r'''
import logging, requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool
_put = HTTPConnectionPool._put_conn
def put_conn(self, conn):
    lport = None
    try:
        lport = conn.sock.getsockname()[1] if conn is not None and conn.sock is not None else None
    except OSError:
        pass
    _put(self, conn)
    if lport and conn.sock is None:
        emit(ev="discard", lport=lport)
HTTPConnectionPool._put_conn = put_conn
WARN = []
class W(logging.Handler):
    def emit(self, rec):
        if "pool is full" in rec.getMessage():
            WARN.append(rec.getMessage())
logging.getLogger("urllib3.connectionpool").addHandler(W())
while now() < 4.0:
    time.sleep(0.05)
s = requests.Session()
s.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=2))
saw, errors = [], []
def worker(i):
    r_ = random.Random(i)
    while now() < 12.0:
        try:
            r = s.get(NG + "/work?d=%.2f&t=%d" % (r_.uniform(0.05, 0.15), i), timeout=5)
            saw.append(r.status_code)
        except Exception as e:
            errors.append(err(e))
        time.sleep(r_.uniform(0.15, 0.5))
del PORTS[:]
t0 = time.time()
ts = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
[t.start() for t in ts]; [t.join() for t in ts]
time.sleep(2.6)       # the 2 pooled connections idle past nginx's keepalive_timeout 2s
s.close()
emit(ev="pattern", plan="pool", desc="requests.Session pool_maxsize=2 shared by 10 threads", ports=list(PORTS), t0=t0,
     t1=time.time(), saw=["%d responses %s" % (len(saw), sorted(set(saw))), "%d 'Connection pool is full' warnings" % len(WARN)] + errors,
     ok=not errors)
hold()
'''

REQ = COMMON + r'''
import requests
def quick(saw):
    with requests.Session() as s:
        for i in range(rng.randint(2, 4)):
            r = s.get(NG + "/api?i=%d" % i, timeout=5); saw.append("GET /api HTTP %d" % r.status_code)
            time.sleep(rng.uniform(0.05, 0.3))
def download(saw):
    with requests.Session() as s:
        r = s.get(NG + "/big", timeout=5); saw.append("GET /big HTTP %d %d B" % (r.status_code, len(r.content)))
        r = s.get(NG + "/", timeout=5); saw.append("GET / HTTP %d" % r.status_code)
def upload(saw):
    with requests.Session() as s:
        body = os.urandom(rng.randint(30, 200) * 1024)
        r = s.post(NG + "/upload", data=body, timeout=5); saw.append("POST /upload %d B HTTP %d" % (len(body), r.status_code))
def idle_reuse(saw):
    with requests.Session() as s:
        r = s.get(NG + "/api?a", timeout=5); saw.append("GET HTTP %d" % r.status_code)
        time.sleep(rng.uniform(2.4, 3.0))
        r = s.get(NG + "/api?b", timeout=5); saw.append("GET (after idle) HTTP %d" % r.status_code)
def idle_end(saw):
    s = requests.Session()
    r = s.get(NG + "/", timeout=5); saw.append("GET HTTP %d" % r.status_code)
    time.sleep(rng.uniform(2.3, 2.9)); s.close()
def oneshot(saw):
    r = requests.get(NG + "/api?oneshot", timeout=5); saw.append("GET HTTP %d" % r.status_code)
pool = weighted([(quick, 4), (download, 1), (upload, 1), (idle_reuse, 1), (idle_end, 1), (oneshot, 2)])
run_patterns(3.5, (0.1, 0.4), lambda: one_of("requests ", pool))
def last(saw):
    s = requests.Session(); r = s.get(NG + "/api?last", timeout=5); saw.append("GET HTTP %d" % r.status_code)
    globals()["KEEP"] = s
sleep_until_left(0.8)
pattern("normal", "requests session left open at the end", last)
hold()
'''

HTTPX = COMMON + r'''
import httpx
def quick(saw):
    with httpx.Client() as c:
        for i in range(rng.randint(2, 4)):
            r = c.get(NG + "/api?x=%d" % i); saw.append("GET HTTP %d" % r.status_code)
            time.sleep(rng.uniform(0.05, 0.3))
def download(saw):
    with httpx.Client() as c:
        with c.stream("GET", NG + "/big") as r:
            n = sum(len(b) for b in r.iter_bytes())
        saw.append("GET /big (streamed) HTTP %d %d B" % (r.status_code, n))
def upload(saw):
    with httpx.Client() as c:
        r = c.post(NG + "/upload", content=os.urandom(rng.randint(20, 100) * 1024)); saw.append("POST HTTP %d" % r.status_code)
        r = c.get(NG + "/api?after-upload"); saw.append("GET HTTP %d" % r.status_code)
def idle_reuse(saw):
    with httpx.Client() as c:
        r = c.get(NG + "/"); saw.append("GET HTTP %d" % r.status_code)
        time.sleep(rng.uniform(2.4, 3.0))
        r = c.get(NG + "/"); saw.append("GET (after idle) HTTP %d" % r.status_code)
def raw(saw):
    with httpx.Client() as c:
        for i in range(2):
            r = c.get(RAW + "/hello"); saw.append("GET :18081 HTTP %d" % r.status_code)
pool = weighted([(quick, 4), (download, 1), (upload, 1), (idle_reuse, 1), (raw, 1)])
run_patterns(3.0, (0.1, 0.4), lambda: one_of("httpx ", pool))
sleep_until_left(1.2)
def last(saw):
    c = httpx.Client(); r = c.get(NG + "/api?httpx-last"); saw.append("GET HTTP %d" % r.status_code)
    globals()["KEEP"] = c
pattern("normal", "httpx client left open at the end", last)
hold()
'''

AIO = COMMON + C.PATTERN_AIOHTTP + r'''
async def get(s, url, saw):
    async with s.get(url) as r:
        b = await r.read(); saw.append("GET %s HTTP %d %d B" % (url.split(":", 2)[2], r.status, len(b)))
async def burst(saw):
    async with CS() as s:
        for i in range(rng.randint(2, 5)):
            await get(s, NG + "/api?aio=%d" % i, saw)
            await asyncio.sleep(rng.uniform(0.05, 0.3))
async def idle(saw):
    async with CS() as s:
        await get(s, NG + "/api?idle", saw)
        await asyncio.sleep(rng.uniform(2.4, 3.0))
        await get(s, NG + "/api?after-idle", saw)
async def parallel(saw):
    async with CS() as s:
        await asyncio.gather(*[get(s, NG + "/work?d=0.05&par=%d" % i, saw) for i in range(4)])
        await get(s, NG + "/", saw)
asyncio.run(apatterns(3.0, (0.1, 0.4), weighted([(burst, 3), (idle, 1), (parallel, 2)])))
hold()
'''

CURL = COMMON + r'''
def curl(args):
    t0 = time.time(); ports, saw, ok = run_curl(args)
    emit(ev="pattern", plan="normal", desc="curl " + " ".join(args), ports=ports, t0=t0, t1=time.time(), saw=saw, ok=ok)
while left() > 3.0:
    k = rng.random()
    if k < 0.2:
        curl([NG + "/big"])
    elif k < 0.5:
        curl([NG + "/", NG + "/api?curl=1", NG + "/work?d=0.05"])
    elif k < 0.6:
        curl(["-H", "Connection: close", NG + "/api?close"])
    else:
        curl([NG + "/api?curl"])
    time.sleep(rng.uniform(0.3, 0.8))
sleep_until_left(2.2)
# a slowly generated streaming response still flowing when the capture stops
t0 = time.time()
slow = subprocess.Popen(["curl", "-sS", "-o", "/dev/null", "--local-port", "46001", "--max-time", "60",
                         NG + "/stream?n=400&d=0.25"])
emit(ev="pattern", plan="incomplete", desc="curl /stream (a chunk every 0.25 s for 100 s), still streaming when the capture stops",
     ports=[46001], t0=t0, t1=time.time() + 1, saw=["(download in progress)"], ok=True)
hold()
'''

HC = COMMON + C.PATTERN_HTTP_CLIENT + r'''
def conn(port=18080):
    return http.client.HTTPConnection(HOST, port, timeout=5)
def run(saw):
    c = conn()
    for i in range(rng.randint(2, 5)):
        do(c, "/api?hc=%d" % i, saw); time.sleep(rng.uniform(0.05, 0.4))
    c.close()
LEAKED = []
def leak(saw):
    c = conn(); do(c, "/api?leak=1", saw); do(c, "/api?leak=2", saw)
    LEAKED.append(c)          # forgotten: never closed, never reused
plan = {3.0: ("connection-leak", "http.client connection kept in a list, never closed", leak),
        6.0: ("keepalive-race", "http.client reuse 2.05 s after the last response", race(conn, 2.05)),
        15.0: ("keepalive-race", "http.client reuse 2.3 s after the last response", race(conn, 2.3))}
run_patterns(3.0, (0.2, 0.6), lambda: pattern("normal", "http.client run", run), plan)
hold()
'''

FAIL = COMMON + r'''
import requests
KEEP = []
def normal(saw):
    with requests.Session() as s:
        for i in range(rng.randint(1, 3)):
            r = s.get(NG + "/api?f=%d" % i, timeout=5); saw.append("GET HTTP %d" % r.status_code)
def reject(saw):
    with requests.Session() as s:
        r = s.get(NG + "/api?before-reject", timeout=5); saw.append("GET HTTP %d" % r.status_code)
        s.get(NG + "/reject", timeout=5)
def stall(saw):
    with requests.Session() as s:
        r = s.get(RAW + "/hello", timeout=10); saw.append("GET :18081/hello HTTP %d" % r.status_code)
        s.get(RAW + "/stall", timeout=10)
def leak(saw):
    s = requests.Session()
    r = s.get(NG + "/api?leak", stream=True, timeout=5)     # never read, never closed
    saw.append("GET stream=True HTTP %d (body never read, response kept)" % r.status_code)
    KEEP.append((s, r))
plan = {5.0: ("request-rejected", "requests GET /reject (nginx return 444)", reject),
        8.0: ("connection-leak", "requests stream=True response never read nor closed", leak),
        11.0: ("server-timeout", "requests GET :18081/stall (server closes after 3 s, no response)", stall)}
run_patterns(3.0, (0.3, 0.8), lambda: pattern("normal", "requests normal", normal), plan)
hold()
'''

WORKERS = [("pool", POOL), ("req", REQ), ("httpx", HTTPX), ("aio", AIO), ("curl", CURL), ("hc", HC), ("fail", FAIL)]

lab.start_capture(SCEN + ".pcap.gz", iface=lab.dev_c, snaplen=256)
T0 = time.time() + 1.5
procs = [(n, lab.client(code, [H, "%.3f" % T0, DUR, n], name="w-" + n, background=True)) for n, code in WORKERS]
while time.time() < T0 + DUR + 0.3:
    time.sleep(0.2)
lab.stop_capture(settle=0.2)
logs = C.worker_logs(lab, [n for n, _ in procs], prefix="w-", tag="worker ")
pats = [d for d in logs if d.get("ev") == "pattern"]
discards = [d for d in logs if d.get("ev") == "discard"]
L.log("%d patterns, %d discards logged" % (len(pats), len(discards)))

CAP = os.path.join(L.CAPDIR, SCEN + ".pcap.gz")
CAP_END = float(L.run(["tshark", "-r", CAP, "-T", "fields", "-e", "frame.time_relative"], timeout=120).stdout.split()[-1])
first_epoch = C.first_epoch(CAP)
# request/response frames (all occurrences: pipelining-free HTTP/1.1, one per frame at most)
HTTPF = {}
r = L.run(["tshark", "-n", "-r", CAP, "-o", "tcp.desegment_tcp_streams:FALSE", "-d", "tcp.port==%d,http" % NGP,
           "-d", "tcp.port==%d,http" % PYP, "-Y", "http", "-T", "fields", "-E", "separator=|", "-e", "frame.number",
           "-e", "http.request.method", "-e", "http.request.uri", "-e", "http.response.code",
           "-e", "http.connection"], timeout=120)
for line in r.stdout.splitlines():
    n, m, u, code, conn = line.split("|")
    HTTPF[int(n)] = {"req": ("%s %s" % (m, u)) if m else None, "code": code or None, "conn": conn}


def http_facts(c):
    reqs = [(f["n"], HTTPF[f["n"]]["req"]) for f in c["frames"] if f["n"] in HTTPF and HTTPF[f["n"]]["req"]]
    codes = [(f["n"], HTTPF[f["n"]]["code"]) for f in c["frames"] if f["n"] in HTTPF and HTTPF[f["n"]]["code"]]
    close_hdr = any(HTTPF[f["n"]]["conn"].lower() == "close" for f in c["frames"] if f["n"] in HTTPF)
    return reqs, codes, close_hdr


def ftime(c, n):
    return next(f["t"] for f in c["frames"] if f["n"] == n)


PROBLEMS = []


def label(c, logs_):
    d = C.find_pattern(c, pats, first_epoch)
    reqs, codes, close_hdr = http_facts(c)
    facts = "requests: %s; responses: %s" % (", ".join("%s (f%d)" % (q, n) for n, q in reqs) or "none",
                                           ", ".join("%s (f%d)" % (x, n) for n, x in codes) or "none")
    if d is None:
        return C.unmatched(c, PROBLEMS, facts)
    saw, who, plan = C.pattern_summary(d)
    srv_fin = next((n for n, s in c["fin_frames"] if s == "server"), None)
    cli_fin = next((n for n, s in c["fin_frames"] if s == "client"), None)
    answered = len(codes) >= len(reqs) and (not reqs or codes[-1][0] > reqs[-1][0])
    end_t = c["frames"][-1]["t"]

    def bad(why):
        return C.unconfirmed(c, PROBLEMS, d, why, facts)

    if plan == "pool":
        disc = [x for x in discards if x["lport"] == c["client_port"] and
                first_epoch + c["t0"] - 0.1 <= x["t"] <= first_epoch + (c["close_t"] if c["close_t"] is not None else end_t) + 0.2]
        if disc:
            last_resp = L.last_data_before(c, "server", c["close_frame"]) if c["close_frame"] else None
            if c["closer"] == "client" and c["close_kind"] == "FIN" and answered and codes and not close_hdr:
                # peak concurrency of this client's connections to nginx at that moment
                return {"cause": "pool-overflow", "client_saw": "HTTP 200 (urllib3 warning: Connection pool is full, discarding connection: %s)" % H,
                        "how": "Design (%s): urllib3 logged the discard of this connection (local port %d) when it could not put it back into the full pool (maxsize 2); the client closed it (FIN) %.4f s after the complete %d response although nginx offered keep-alive; %d requests on it. %s" % (
                            who, c["client_port"], c["close_t"] - last_resp, len(codes), len(reqs), facts)}
            return bad("discarded but not a client FIN after a complete response")
        # pooled and kept: falls through to the normal shapes
    elif plan == "connection-leak":
        if srv_fin and cli_fin is None and not c["rst_frames"] and answered:
            idle = ftime(c, srv_fin) - (L.last_data_before(c, "server", srv_fin) or 0)
            return {"cause": "connection-leak", "client_saw": saw,
                    "how": "Design (%s): after complete exchanges the program kept the connection but never used nor closed it; nginx closed it after %.3f s idle (FIN, frame %d), the client's kernel acknowledged it and the socket sat in CLOSE_WAIT for the %.1f s left of the capture while the same process kept making requests on other connections. %s" % (
                        who, idle, srv_fin, CAP_END - ftime(c, srv_fin), facts)}
        return bad("no server FIN without a client FIN/RST")
    elif plan == "keepalive-race":
        if not d["ok"] and srv_fin and reqs and reqs[-1][0] > srv_fin and not answered:
            idle = ftime(c, srv_fin) - L.last_data_before(c, "server", srv_fin)
            return {"cause": "keepalive-race", "client_saw": saw,
                    "how": "Design (%s): nginx keepalive_timeout 2s closed the idle connection (FIN, frame %d, %.3f s after the last response); bare http.client, which does not check the socket, then sent %s (frame %d); no response%s. %s" % (
                        who, srv_fin, idle, reqs[-1][1], reqs[-1][0], ", the server's kernel answered with RST" if c["rst_frames"] else "", facts)}
        if not d["ok"]:
            return bad("no request after the server's FIN")
    elif plan == "request-rejected":
        if not d["ok"] and reqs and "/reject" in reqs[-1][1] and c["closer"] == "server" and not answered:
            return {"cause": plan, "client_saw": saw,
                    "how": "Design (%s): nginx `return 444` closed the connection (%s) %.4f s after the request, without a response byte. %s" % (
                        who, c["close_kind"], c["close_t"] - ftime(c, reqs[-1][0]), facts)}
        return bad("no server close after /reject")
    elif plan == "server-timeout":
        if not d["ok"] and reqs and "/stall" in reqs[-1][1] and c["closer"] == "server" and not answered:
            wait = c["close_t"] - ftime(c, reqs[-1][0])
            if wait > 1.0:
                return {"cause": plan, "client_saw": saw,
                        "how": "Design (%s): the asyncio server's /stall handler waited %.3f s after the complete request, then closed (%s) without a response byte. %s" % (
                            who, wait, c["close_kind"], facts)}
        return bad("no late server close after /stall")
    elif plan == "incomplete":
        if c["closer"] == "none" and reqs:
            return {"cause": "incomplete", "client_saw": saw,
                    "how": "Design (%s): the response (%d B received so far) was still flowing when the capture stopped; no FIN/RST. %s" % (
                        who, c["server_data"], facts)}
        return bad("expected an open connection at the end")
    elif plan != "normal":
        return bad("unknown plan")
    if not d["ok"] and plan in ("normal", "keepalive-race"):
        return bad("failure in a normal pattern: " + saw)
    # normal shapes
    if c["closer"] == "none":
        return {"cause": "incomplete", "client_saw": saw,
                "how": "Design (%s): every request answered; the capture ended with the connection open. %s" % (who, facts)}
    rst_before_both = c["rst_frames"] and (srv_fin is None or cli_fin is None or min(c["rst_frames"]) < max(srv_fin, cli_fin))
    if not answered:
        return bad("a request without response")
    if c["closer"] == "client" and c["close_kind"] == "FIN" and not rst_before_both:
        return {"cause": "graceful", "client_saw": saw,
                "how": "Design (%s): every request answered; the client closed (FIN) when its work ended, %.3f s after the last response%s. %s" % (
                    who, c["close_t"] - (L.last_data_before(c, "server", c["close_frame"]) or 0),
                    " (pooled connection kept by urllib3, closed at session.close())" if plan == "pool" else "", facts)}
    if c["closer"] == "server" and c["close_kind"] == "FIN":
        last = max(L.last_data_before(c, "server", c["close_frame"]) or 0, L.last_data_before(c, "client", c["close_frame"]) or 0)
        idle = c["close_t"] - last
        if close_hdr and idle < 0.5 and not rst_before_both:
            return {"cause": "graceful", "client_saw": saw,
                    "how": "Design (%s): Connection: close request; nginx closed after the complete response. %s" % (who, facts)}
        rst_before_fin = c["rst_frames"] and min(c["rst_frames"]) < c["close_frame"]
        if idle >= KA - 0.05 and not rst_before_fin and not any(f["src"] == c["client"] and f["len"] > 0 and f["n"] > c["close_frame"] for f in c["frames"]):
            cl = ftime(c, cli_fin) - c["close_t"] if cli_fin else None
            return {"cause": "idle-close", "client_saw": saw,
                    "how": "Design (%s): after complete exchanges the connection sat idle %.3f s; nginx's keepalive_timeout 2s closed it (FIN, frame %d); the client closed its side %s; nothing was lost. %s" % (
                        who, idle, c["close_frame"],
                        ("%.3f s later (its next checkout or session end)" % cl) if cl is not None else "with RST" if c["rst_frames"] else "not before the capture ended",
                        facts)}
        return bad("server FIN after %.3f s idle" % idle)
    return bad("close %s/%s" % (c["closer"], c["close_kind"]))


V = L.versions()
out = L.write_labels(lab, "Haystack: cleartext HTTP/1.1 to nginx (keepalive_timeout 2s) and a plain asyncio server from seven client processes on one client IP; a requests.Session with pool_maxsize=2 shared by 10 threads overflows its pool (urllib3 'Connection pool is full, discarding connection') while other sessions end normally; injected keepalive-race, request-rejected, server-timeout, connection-leak",
                     [V["nginx"], V["requests"], V["urllib3"], V["httpx"], V["aiohttp"], V["http.client"], V["curl"], V["asyncio"]],
                     label, logs)
C.report(out, CAP, PROBLEMS)
