#!/usr/bin/env python3
"""Haystack lh-reverse-proxy: ~35 s of HTTP/1.1 through an nginx reverse proxy, BOTH legs
in one capture (everything in one private namespace on loopback, lo MTU 1500, tcpdump -i lo):

  clients 127.0.0.1  ->  nginx 127.0.0.2:8080   (client leg; keepalive_timeout 2s)
  nginx   127.0.0.3  ->  gunicorn 127.0.0.4:8001 (gthread, --keep-alive 2)    (backend leg,
                     ->  aiohttp  127.0.0.5:8002 (keepalive_timeout 2 s)       nginx is the
                     ->  127.0.0.6:8009 (nothing listens: /dead/)              client)
nginx: proxy_http_version 1.1 + `keepalive 16` upstreams (pooled backend connections,
proxy_bind 127.0.0.3), /blocked `return 444`, /ai/stall with proxy_read_timeout 2s (the
aiohttp handler takes 5 s), /ai/ticker unbuffered slow stream.
Client processes (one IP): requests, httpx, aiohttp, bare http.client, curl one-shots, an
"ingest" process (4 parallel http.client POSTs of 100 kB, then it SIGKILLs the gunicorn
worker while they are pending) and late streams still open when the capture stops.

Injected: server-abort on the backend leg (the gunicorn worker SIGKILLed with 4 requests
pending whose bodies it had not read: RST burst; the clients get complete 502 responses
from nginx, so their own connections are labelled by what happened on them), client-timeout
on the backend leg (nginx gives up on /ai/stall after proxy_read_timeout 2s: FIN to the
backend, 504 to the client), client-timeout on the client leg (aiohttp total=1 s vs /ai/slow,
3 s; nginx then closes that backend connection too: client-timeout there as well, propagated),
keepalive-race on the client leg (http.client reuse 2.3 s / 3.0 s after nginx's 2 s),
request-rejected (444: requests and curl), connection-refused on the backend leg (/dead/:
nginx's SYN answered by RST, 502 to the client), idle closes on both legs.

Labels.  Client leg: each client process logs its connections (local port, time, session)
and what each request saw; the cause is the session's role checked against the packets
(normal: server FIN after >= 1.5 s idle = idle-close, client FIN / server FIN right after a
Connection: close response = graceful, open = incomplete; a complete 502/504 answer is not a
disconnect).  Backend leg: the backends log every request (nginx's local port, X-Req-Id
set by the client, start, end); nginx's access and error logs are kept too.  A backend
connection is normal when every request logged on it ended (then by packets as above); the
ones carrying the killed ingest requests are server-abort, the ones nginx closed on a pending
request are client-timeout, the ones to 127.0.0.6:8009 connection-refused.

    python3 sample_pcaps/lab/lh-reverse-proxy.py
"""
import os, time
import lh_common as C
L = C.L

SCEN = "lh-reverse-proxy"
NGX, BIND, GUA, AIA, DEADA = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"
NGP, GUP, AIP, DEADP = 8080, 8001, 8002, 8009
L.DECODE_AS = ["tcp.port==%d,http" % GUP, "tcp.port==%d,http" % AIP]
lab = L.Lab(SCEN)
ns = lab.ns_c
L.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "mtu", "1500"])
L.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_local_port_range=20000 39999"])
BLOG = lab.path("backend.jsonl")
os.environ["BLOG"] = BLOG          # both backends append their request log here

# ------------------------------------------------------------------ servers
html = lab.path("nginx/html")
os.makedirs(os.path.join(html, "static"), exist_ok=True)
lab.write("nginx/html/static/app.js", "console.log('x');\n" * 1700)
lab.write("nginx/html/index.html", "<html><body>" + "welcome " * 200 + "</body></html>\n")
lab.nginx(ns, """
        listen %(ngx)s:%(ngp)d;
        keepalive_timeout 2s;
        root %(html)s;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_bind %(bind)s;
        location = /blocked { return 444; }
        location = /ai/stall { proxy_pass http://ai/stall; proxy_read_timeout 2s; }
        location = /ai/ticker { proxy_pass http://ai/ticker; proxy_buffering off; }
        location /gu/ { proxy_pass http://gu/; }
        location /ai/ { proxy_pass http://ai/; }
        location /dead/ { proxy_pass http://%(dead)s:%(deadp)d/; }
        location / { try_files $uri $uri/index.html =404; }
""" % {"ngx": NGX, "ngp": NGP, "html": html, "bind": BIND, "dead": DEADA, "deadp": DEADP},
    http_extra="""
    upstream gu { server %s:%d; keepalive 16; }
    upstream ai { server %s:%d; keepalive 16; }
    log_format rp '$remote_port "$request" $status rid=$http_x_req_id up=$upstream_addr upst=$upstream_status rt=$request_time';
    access_log %s rp;
""" % (GUA, GUP, AIA, AIP, lab.path("nginx/access-rp.log")))

lab.write("app.py", r'''
import json, os, time, threading
LOG = os.environ["BLOG"]
def blog(**d):
    d["t"] = time.time(); d["srv"] = "gunicorn"; d["pid"] = os.getpid()
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (json.dumps(d) + "\n").encode()); os.close(fd)
def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    rid = environ.get("HTTP_X_REQ_ID", "-")
    peer = int(environ.get("REMOTE_PORT") or 0)
    blog(ev="start", rid=rid, peer=peer, path=path)
    if path == "/api/ingest":
        time.sleep(4)          # "queue wait" before the body is read: the body stays unread
        n = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(n)
        out = json.dumps({"ingested": len(body)}).encode()
    elif path == "/api/upload":
        n = int(environ.get("CONTENT_LENGTH") or 0)
        out = json.dumps({"stored": len(environ["wsgi.input"].read(n))}).encode()
    elif path == "/api/report":
        out = b"r" * 150000
    elif path == "/api/ticker":
        def gen():
            for i in range(240):
                yield (b"%06d " % i) * 500
                time.sleep(0.5)
            blog(ev="end", rid=rid, peer=peer, path=path, status=200)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return gen()
    else:
        out = json.dumps({"path": path, "items": [{"id": i, "name": "item%d" % i} for i in range(40)]}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    blog(ev="end", rid=rid, peer=peer, path=path, status=200)
    return [out]
''')
gunicorn = lab.spawn(ns, [L.PY, "-m", "gunicorn", "--chdir", lab.work, "-w", "1", "-k", "gthread", "--threads", "8",
                          "--keep-alive", "2", "--control-socket", lab.path("gunicorn.ctl"),
                          "-b", "%s:%d" % (GUA, GUP), "app:app"], "gunicorn", env=dict(os.environ, BLOG=BLOG))

lab.pyserver(ns, r'''
import asyncio, json, os, sys, time
from aiohttp import web
LOG = os.environ["BLOG"]
def blog(**d):
    d["t"] = time.time(); d["srv"] = "aiohttp"
    with open(LOG, "a") as f:
        f.write(json.dumps(d) + "\n")
@web.middleware
async def logmw(request, handler):
    peer = request.transport.get_extra_info("peername")[1] if request.transport else 0
    rid = request.headers.get("X-Req-Id", "-")
    blog(ev="start", rid=rid, peer=peer, path=request.path)
    try:
        resp = await handler(request)
    except BaseException as e:
        blog(ev="error", rid=rid, peer=peer, path=request.path, err=repr(e)); raise
    blog(ev="end", rid=rid, peer=peer, path=request.path, status=resp.status)
    return resp
async def fast(r):
    return web.json_response({"ok": True, "items": list(range(60))})
async def slow(r):
    await asyncio.sleep(3); return web.json_response({"ok": "late"})
async def stall(r):
    await asyncio.sleep(5); return web.json_response({"ok": "very late"})
async def streamed(r, n, gap):
    resp = web.StreamResponse(); resp.content_type = "application/octet-stream"
    await resp.prepare(r)
    for i in range(n):
        await resp.write(b"s" * 4096); await asyncio.sleep(gap)
    await resp.write_eof(); return resp
async def stream(r):
    return await streamed(r, 16, 0.02)
async def ticker(r):
    return await streamed(r, 240, 0.5)
async def upload(r):
    return web.json_response({"stored": len(await r.read())})
app = web.Application(middlewares=[logmw], client_max_size=4 * 1024 * 1024)
for p, h in (("/fast", fast), ("/slow", slow), ("/stall", stall), ("/stream", stream), ("/ticker", ticker)):
    app.router.add_get(p, h)
app.router.add_post("/upload", upload)
web.run_app(app, host=sys.argv[1], port=int(sys.argv[2]), keepalive_timeout=2.0, print=None, access_log=None)
''', [AIA, AIP], name="aioserver")
for p in (NGP, GUP, AIP):
    lab.wait_listen(ns, p)

# ------------------------------------------------------------------ clients
# argv: process name, stop file, T0 (epoch start of the traffic), seconds of traffic, epoch of the worker kill
COMMON = r'''
import sys
PROC, STOPFILE, T0, DEADLINE, KILL_T = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
NG = "http://127.0.0.2:8080"
END = T0 + DEADLINE
''' + C.SESSION_CLIENT + r'''
_rids = itertools.count(1)
def rid():
    return "%s-r%d" % (PROC, next(_rids))
def gu_ok():
    """normal traffic keeps away from gunicorn around the planned worker kill"""
    return abs(time.time() - KILL_T) > 2.5
'''

W_REQ = COMMON + r'''
import requests
def do(s, sess, method, path, **kw):
    sess.use(); r_id = rid()
    try:
        r = s.request(method, NG + path, timeout=10, headers={"X-Req-Id": r_id}, **kw)
        sess.rec(method, path, "HTTP %d (%d B)" % (r.status_code, len(r.content)), r.ok, rid=r_id)
    except Exception as e:
        sess.rec(method, path, ename(e), False, rid=r_id)
A = Sess("requests.Session"); sa = requests.Session()
step = 0
while left() > 1.5:
    step += 1
    do(sa, A, "GET", "/"); do(sa, A, "GET", "/static/app.js"); do(sa, A, "GET", "/ai/fast?s=%d" % step)
    if gu_ok():
        do(sa, A, "GET", "/gu/api/items?page=%d" % step)
        if step % 2:
            do(sa, A, "POST", "/gu/api/upload", data=b"u" * 30000)
        else:
            do(sa, A, "GET", "/gu/api/report")
    if step == 1:
        for i in range(3):
            x = Sess("requests.get"); do(requests, x, "GET", "/ai/fast?one=%d" % i); x.end(); gap("short")
    if step == 2:
        x = Sess("requests.get", "request-rejected", "nginx location /blocked: return 444")
        do(requests, x, "GET", "/blocked"); x.end()
    if step == 3:
        x = Sess("requests.get", "proxied-504", "/ai/stall: nginx proxy_read_timeout 2s < the 5 s handler: complete 504 from nginx")
        do(requests, x, "GET", "/ai/stall"); x.end()
    if step == 5:
        sa.close(); A.end(); A = Sess("requests.Session"); sa = requests.Session()
    gap("long" if step % 2 else "short")
sa.close(); A.end()
emit(type="exit")
'''

W_HTTPX = COMMON + r'''
import httpx
def do(c, sess, method, path, stream=False, **kw):
    sess.use(); r_id = rid()
    try:
        if stream:
            with c.stream(method, NG + path, headers={"X-Req-Id": r_id}, **kw) as r:
                n = sum(len(b) for b in r.iter_bytes())
        else:
            r = c.request(method, NG + path, headers={"X-Req-Id": r_id}, **kw); n = len(r.content)
        sess.rec(method, path, "HTTP %d (%d B)" % (r.status_code, n), r.is_success, rid=r_id)
    except Exception as e:
        sess.rec(method, path, ename(e), False, rid=r_id)
C = Sess("httpx.Client"); c = httpx.Client(timeout=10)
step = 0
while left() > 1.5:
    step += 1
    do(c, C, "GET", "/ai/fast"); do(c, C, "GET", "/ai/stream", stream=True)
    do(c, C, "POST", "/ai/upload", content=b"h" * 20000)
    gap("short")
    if gu_ok():
        do(c, C, "GET", "/gu/api/items?q=%d" % step)
    if step == 4:
        c.close(); C.end(); C = Sess("httpx.Client"); c = httpx.Client(timeout=10)
    x = Sess("httpx.get"); do(httpx, x, "GET", "/static/app.js?s=%d" % step); x.end()
    gap()
c.close(); C.end()
emit(type="exit")
'''

W_AIO = COMMON + C.SESSION_AIOHTTP + r'''
async def do(s, sess, method, path, **kw):
    r_id = rid()
    try:
        async with s.request(method, NG + path, headers={"X-Req-Id": r_id}, **kw) as r:
            n = len(await r.read())
            sess.rec(method, path, "HTTP %d (%d B)" % (r.status, n), r.status < 400, rid=r_id)
    except Exception as e:
        sess.rec(method, path, ename(e), False, rid=r_id)
async def one_round(s, S, step):
    await asyncio.gather(*[do(s, S, "GET", "/ai/fast?i=%d" % i) for i in range(3)])
    await do(s, S, "GET", "/ai/stream")
    if gu_ok():
        await asyncio.gather(do(s, S, "GET", "/gu/api/items?a=%d" % step), do(s, S, "GET", "/static/app.js"))
    if step == 2:
        T = Sess("aiohttp.ClientSession", "client-timeout", "ClientTimeout(total=1) vs /ai/slow (3 s) through nginx")
        async with aiohttp.ClientSession(connector=LogConnector(T), timeout=aiohttp.ClientTimeout(total=1)) as t:
            await do(t, T, "GET", "/ai/slow")
        T.end()
    if step == 3:
        X = Sess("aiohttp.ClientSession")
        async with aiohttp.ClientSession(connector=LogConnector(X)) as x:
            await do(x, X, "GET", "/ai/fast?short=1"); await do(x, X, "GET", "/")
        X.end()
asyncio.run(rounds(one_round))
emit(type="exit")
'''

W_HC = COMMON + r'''
import http.client
PATHS = ["/", "/ai/fast", "/gu/api/items", "/static/app.js", "/ai/fast?x=1"]
def conn(sess):
    sess.use(); c = http.client.HTTPConnection("127.0.0.2", 8080, timeout=10); c.connect(); return c
def req(c, sess, path, headers=None):
    r_id = rid(); h = {"X-Req-Id": r_id}; h.update(headers or {})
    try:
        c.request("GET", path, headers=h); r = c.getresponse(); b = r.read()
        sess.rec("GET", path, "HTTP %d (%d B)" % (r.status, len(b)), r.status < 400, lport=c.sock.getsockname()[1] if c.sock else None, rid=r_id)
    except Exception as e:
        sess.rec("GET", path, ename(e), False, rid=r_id)
i = 0
while left() > 1.5:
    i += 1
    if i in (4, 12):
        g = 2.3 if i == 4 else 3.0
        S = Sess("http.client", "keepalive-race", "GET, idle %.1f s (nginx keepalive_timeout 2s), GET on the same connection" % g)
        c = conn(S); req(c, S, "/ai/fast"); time.sleep(g); req(c, S, "/ai/fast?again=1"); c.close(); S.end()
        continue
    path = PATHS[i % len(PATHS)]
    if path.startswith("/gu/") and not gu_ok():
        path = "/ai/fast?instead=1"
    S = Sess("http.client"); c = conn(S)
    n = RND.choice([1, 2, 3])
    for k in range(n):
        last = k == n - 1
        req(c, S, path + ("&" if "?" in path else "?") + "k=%d" % k, headers={"Connection": "close"} if (last and i % 4 == 0) else {})
        if not last:
            time.sleep(RND.uniform(0.05, 0.4))
    c.close(); S.end()
    gap("short")
emit(type="exit")
'''

W_CURL = COMMON + r'''
import subprocess
PORT = [45000]
def curl(sess, paths, extra=()):
    PORT[0] += 1; lp = PORT[0]
    sess.use(); emit(type="conn", sid=sess.sid, lport=lp, rport=8080)
    cmd = ["curl", "-sS", "--local-port", str(lp), "--max-time", "10", "-w", "%{http_code}\\n"] + list(extra)
    for p in paths:
        cmd += ["-H", "X-Req-Id: %s" % rid(), "-o", "/dev/null", NG + p]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    codes = p.stdout.split()
    if p.returncode == 0:
        for u, cd in zip(paths, codes):
            sess.rec("GET", u, "HTTP %s" % cd, cd.startswith("2"), lport=lp, code=int(cd))
    else:
        sess.rec("GET", paths[0], "curl exit %d: %s" % (p.returncode, p.stderr.strip()), False, lport=lp, codes=codes)
TARGETS = [["/"], ["/static/app.js"], ["/gu/api/items?c=1"], ["/ai/fast"], ["/ai/fast", "/ai/stream"],
           ["/gu/api/report"], ["/ai/stream"], ["/index.html", "/static/app.js"]]
i = 0
while left() > 1.0:
    i += 1
    if i == 6:
        S = Sess("curl", "request-rejected", "nginx /blocked: return 444"); curl(S, ["/blocked"]); S.end(); continue
    if i in (10, 25):
        S = Sess("curl", "proxied-502", "/dead/: nginx cannot connect to 127.0.0.6:8009 (refused) and answers a complete 502")
        curl(S, ["/dead/x%d" % i]); S.end(); continue
    t = TARGETS[i % len(TARGETS)]
    if any(p.startswith("/gu/") for p in t) and not gu_ok():
        t = ["/ai/fast?instead=1"]
    S = Sess("curl"); curl(S, t); S.end()
    sleep(RND.uniform(0.1, 0.4))
emit(type="exit")
'''

W_KILL = COMMON + r'''
import threading, http.client, signal
MASTER = int(sys.argv[6])
time.sleep(max(0, KILL_T - 1.0 - time.time()))
LOCK = threading.Lock()
def ingest(k):
    with LOCK:     # the socket hook logs the connection under CUR["sid"]
        S = Sess("http.client", "proxied-502", "POST /gu/api/ingest (100 kB) pending when the gunicorn worker was SIGKILLed")
        c = http.client.HTTPConnection("127.0.0.2", 8080, timeout=15); c.connect()
    r_id = rid()
    try:
        c.request("POST", "/gu/api/ingest", body=b"i" * 100000, headers={"X-Req-Id": r_id, "Content-Type": "application/octet-stream"})
        r = c.getresponse(); b = r.read()
        S.rec("POST", "/gu/api/ingest", "HTTP %d (%d B)" % (r.status, len(b)), r.status < 400, lport=c.sock.getsockname()[1], rid=r_id)
    except Exception as e:
        S.rec("POST", "/gu/api/ingest", ename(e), False, rid=r_id)
    time.sleep(0.3)
    c.close(); S.end()
ts = [threading.Thread(target=ingest, args=(k,)) for k in range(4)]
for t in ts:
    t.start(); time.sleep(0.05)
time.sleep(max(0, KILL_T - time.time()))
kids = open("/proc/%d/task/%d/children" % (MASTER, MASTER)).read().split()
workers = [int(k) for k in kids if b"gunicorn" in open("/proc/%s/cmdline" % k, "rb").read()]
for w in workers:
    os.kill(w, signal.SIGKILL)
emit(type="killed", workers=workers)
for t in ts:
    t.join()
# the master boots a new worker: later requests work again
time.sleep(2.5)
S = Sess("http.client")
c = http.client.HTTPConnection("127.0.0.2", 8080, timeout=10); c.connect()
for k in range(2):
    r_id = rid(); c.request("GET", "/gu/api/items?after-kill=%d" % k, headers={"X-Req-Id": r_id}); r = c.getresponse(); r.read()
    S.rec("GET", "/gu/api/items", "HTTP %d" % r.status, r.status < 400, lport=c.sock.getsockname()[1], rid=r_id)
c.close(); S.end()
emit(type="exit")
'''

W_STREAM = COMMON + r'''
import threading, subprocess, requests
time.sleep(max(0, END - 4.0 - time.time()))
def req_stream():
    S = Sess("requests.get(stream=True)", "incomplete", "/gu/api/ticker (0.5 s per chunk), open at capture stop")
    try:
        r = requests.get(NG + "/gu/api/ticker", stream=True, timeout=30, headers={"X-Req-Id": rid()})
        for chunk in r.iter_content(4096):
            pass
    except Exception:
        pass
def curl_stream():
    S = Sess("curl", "incomplete", "/ai/ticker (unbuffered, 0.5 s per chunk), open at capture stop")
    emit(type="conn", sid=S.sid, lport=45900, rport=8080)
    subprocess.run(["curl", "-sS", "-N", "-o", "/dev/null", "--local-port", "45900", "-H", "X-Req-Id: %s" % rid(),
                    "--max-time", "60", NG + "/ai/ticker"], capture_output=True)
for fn in (req_stream, curl_stream):
    threading.Thread(target=fn, daemon=True).start(); time.sleep(0.3)
emit(type="streams-started")
wait_stop()
emit(type="exit")
'''

DUR = 32.0
stopfile = lab.path("stop")
lab.start_capture(SCEN + ".pcap.gz", iface="lo", snaplen=256)
T0 = time.time() + 1.0
KILL_T = T0 + 14.0
workers = {}
for name, code, extra in (("req1", W_REQ, []), ("httpx1", W_HTTPX, []), ("aio1", W_AIO, []), ("hc1", W_HC, []),
                          ("curl1", W_CURL, []), ("ingest1", W_KILL, [gunicorn.pid]), ("strm1", W_STREAM, [])):
    workers[name] = lab.client(code, [name, stopfile, T0, DUR, KILL_T] + extra, name=name, background=True)
for name in ("req1", "httpx1", "aio1", "hc1", "curl1", "ingest1"):
    workers[name].wait(timeout=DUR + 40)
while time.time() - T0 < DUR + 30 and not C.logged(lab, "strm1", "streams-started"):
    time.sleep(0.2)
time.sleep(2.0)
lab.stop_capture(settle=0.2)
open(stopfile, "w").close()
try:
    workers["strm1"].wait(timeout=10)
except Exception:
    pass
logs = C.worker_logs(lab, workers)
with open(BLOG) as f:
    BACK = L.parse_jsonl(f.read())
with open(lab.path("nginx/error.log")) as f:
    NGERR = [l for l in f.read().splitlines() if "upstream" in l or "connect()" in l]
for l in NGERR:
    L.log("nginx:", l[:250])
KILLED = [d for d in logs if d["type"] == "killed"]
kill_epoch = KILLED[0]["t"] if KILLED else None
V = L.versions()

# ------------------------------------------------------------------ labels
SESS, CONNS = C.sessions(logs)
RIDS = {}
for s in SESS.values():
    for r in s.get("reqs", []):
        if r.get("rid"):
            RIDS[r["rid"]] = (s, r)
unexpected = []


def epoch(c, t):
    return c["t0_epoch"] - c["t0"] + t


def by_packets(c, who, what_ok):
    """normal shapes, from the packets"""
    idle = C.idle_before_close(c)
    if c["closer"] == "none":
        return "incomplete", "Design (%s): %s; the connection was still open when the capture stopped." % (who, what_ok)
    if c["close_kind"] == "RST":
        unexpected.append((c, "normal connection ended by RST"))
        return "unknown", "Design (%s): %s, but it ended with an RST (unexplained)." % (who, what_ok)
    if c["closer"] == "server" and idle is not None and idle >= 1.5:
        return "idle-close", ("Design (%s): %s; the connection then sat idle %.2f s and the server closed it at its "
                              "2 s keep-alive timeout (FIN); the client closed its side afterwards; nothing lost." % (who, what_ok, idle))
    if c["closer"] == "server":
        return "graceful", "Design (%s): %s; the server closed right after the complete response (Connection: close)." % (who, what_ok)
    return "graceful", "Design (%s): %s; the client closed when its work was done (FIN exchange)." % (who, what_ok)


def client_leg(c):
    d, s = C.find_session(c, CONNS, SESS)
    if d is None:
        unexpected.append((c, "no client log"))
        return {"cause": "unknown", "client_saw": "", "how": "client leg connection not matched to a client log (FAILED)"}
    saw, who, role = C.session_summary(c, d, s)
    who = "client leg, " + who
    ok = "every request answered"
    if role == "normal":
        if "all_ok" in s and not s["all_ok"]:
            unexpected.append((c, "normal session with a failed request: " + saw))
        cause, how = by_packets(c, who, ok)
    elif role == "incomplete":
        if c["closer"] == "none":
            cause, how = "incomplete", "Design (%s): %s; still streaming when the capture stopped." % (who, s["note"])
        else:
            unexpected.append((c, "stream closed")); cause, how = by_packets(c, who, ok)
    elif role in ("proxied-502", "proxied-504"):
        cause, how = by_packets(c, who, "%s; the client got that complete error response (%s), which is not a disconnect" % (s["note"], saw))
    elif role == "keepalive-race":
        if C.client_data_after_server_fin(c) and not s.get("all_ok", True):
            cause, how = "keepalive-race", ("Design (%s): %s; nginx had closed the idle connection (FIN) before the "
                                            "second request, which got no response (the client logged: %s)." % (who, s["note"], saw))
        else:
            unexpected.append((c, "race did not happen")); cause, how = by_packets(c, who, ok)
    elif role == "request-rejected":
        cause, how = "request-rejected", "Design (%s): %s; nginx closed right after the complete request without a response byte (client saw: %s)." % (who, s["note"], saw)
    elif role == "client-timeout":
        cause, how = "client-timeout", ("Design (%s): %s; the client gave up after 1 s and closed before any response "
                                        "byte; nginx and the backend were only slow (client saw: %s)." % (who, s["note"], saw))
        if c["closer"] != "client":
            unexpected.append((c, "timeout: closer is not the client"))
    else:
        unexpected.append((c, "role " + role)); cause, how = "unknown", "role " + role
    return {"cause": cause, "client_saw": saw, "how": how}


def backend_leg(c):
    sip, sport = c["server"].rsplit(":", 1)
    sport = int(sport)
    if sport == DEADP:
        return {"cause": "connection-refused", "client_saw": "nginx: connect() failed (111: Connection refused) -> 502 to its client",
                "how": "Design (backend leg, nginx is the client): /dead/ proxies to 127.0.0.6:8009 where nothing listens; nginx's SYN was answered by RST (nginx error log: connect() failed (111))."}
    srv = "gunicorn" if sport == GUP else "aiohttp"
    t_start = c["t0_epoch"] - 0.01
    t_stop = epoch(c, c["close_t"]) + 0.01 if c["close_t"] is not None else 1e18
    recs = [b for b in BACK if b["srv"] == srv and b["peer"] == c["client_port"] and t_start <= b["t"] <= t_stop + 6]
    starts = [b for b in recs if b["ev"] == "start" and b["t"] <= t_stop]
    ends = {b["rid"] for b in recs if b["ev"] == "end" and b["t"] <= t_stop}   # answered before the close
    pending = [b for b in starts if b["rid"] not in ends]
    who = "backend leg, nginx -> %s, %d request(s) logged by the backend" % (srv, len(starts))
    rids = ",".join(b["rid"] for b in starts)[:200]
    saw = "backend log: %d of %d request(s) answered before the close" % (len(starts) - len(pending), len(starts))
    if pending:
        saw += "; NOT answered: " + ", ".join("%s %s" % (b["rid"], b["path"]) for b in pending)
    saw = saw[:300]
    if not pending:
        cause, how = by_packets(c, who, "every proxied request on it was answered by the backend (%s)" % rids)
        return {"cause": cause, "client_saw": saw, "how": how}
    paths = {b["path"] for b in pending}
    if paths == {"/api/ingest"}:
        if c["close_kind"] == "RST" and c["closer"] == "server":
            dt = (epoch(c, c["close_t"]) - kill_epoch) if kill_epoch else float("nan")
            return {"cause": "server-abort", "client_saw": saw + "; nginx: recv() failed (104) -> 502",
                    "how": ("Design (%s): the POST /api/ingest (%s) was pending in the gunicorn worker, which had not read "
                            "its 100 kB body; the script SIGKILLed the worker and its kernel reset the connection "
                            "(%.3f s after the kill; every such connection reset within milliseconds)." % (who, rids, dt))}
        unexpected.append((c, "ingest not RST"))
    if paths <= {"/stall", "/slow"} and c["closer"] == "client":
        why = ("nginx's proxy_read_timeout 2s expired (error log: upstream timed out) and nginx closed the connection, then "
               "answered 504 to its client" if paths == {"/stall"} else
               "nginx's own client (aiohttp, total=1 s) gave up and nginx, seeing it go, closed this upstream connection too "
               "(499 in the access log): a client timeout propagated through the proxy")
        return {"cause": "client-timeout", "client_saw": saw,
                "how": "Design (%s): the backend handler for %s was only slow (3-5 s); %s, before any response byte." % (who, "/".join(sorted(paths)), why)}
    if paths <= {"/ticker", "/api/ticker"} and c["closer"] == "none":
        return {"cause": "incomplete", "client_saw": saw, "how": "Design (%s): slow stream still flowing when the capture stopped." % who}
    unexpected.append((c, "backend pending %s" % paths))
    return {"cause": "unknown", "client_saw": saw, "how": "backend leg with pending %s (unexplained)" % paths}


def label(c, logs):
    if c["server"] == "%s:%d" % (NGX, NGP):
        return client_leg(c)
    if c["client"].startswith(BIND + ":"):
        return backend_leg(c)
    unexpected.append((c, "unknown leg"))
    return {"cause": "unknown", "client_saw": "", "how": "neither leg (FAILED)"}


out = L.write_labels(
    lab, "Haystack: ~35 s through an nginx reverse proxy (upstream keepalive pools to a gunicorn gthread and an aiohttp "
         "backend), both legs captured on loopback; seven client processes (requests, httpx, aiohttp, http.client, curl, an "
         "ingest process, late streams); injected gunicorn worker SIGKILL with 4 pending requests (server-abort on the "
         "backend leg, 502s to the clients), proxy_read_timeout (client-timeout on the backend leg, 504), client-timeout, "
         "keepalive-race, request-rejected (444), connection-refused (dead upstream), idle closes on both legs",
    [V["nginx"], V["gunicorn"], V["aiohttp"], V["requests"], V["urllib3"], V["httpx"], V["http.client"], V["curl"]],
    label, logs)
C.report(out, os.path.join(L.CAPDIR, lab.capture_file), unexpected)
