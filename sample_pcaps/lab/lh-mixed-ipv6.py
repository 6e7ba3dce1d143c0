#!/usr/bin/env python3
"""Haystack lh-mixed-ipv6: ~35 s of mixed cleartext HTTP over IPv6 on a veth pair
(client namespace fd00:203::1, server namespace fd00:203::2, MTU 1500, offloads off).

Servers (server namespace):
  * nginx  [fd00:203::2]:8080  keepalive_timeout 2s; static pages, a 30 kB script and a
    300 kB file; /blocked `return 444`; /search limit_req 1 r/s (nodelay, 429);
    /upload client_max_body_size 16k (413 above).
  * gunicorn gthread (1 worker, 6 threads, --keep-alive 2) [fd00:203::2]:8081: JSON API,
    upload, 150 kB report, chunked stream, /api/slow (3 s), /api/ticker (slow stream).
  * aiohttp web (keepalive_timeout 2 s) [fd00:203::2]:8082: /fast, /slow (3 s), /stream,
    /upload, /ticker.
Clients (client namespace, one IP, six processes started at once):
  req1   requests.Session / one-shot requests.get   (nginx, gunicorn)
  httpx1 httpx.Client                               (aiohttp, gunicorn, nginx)
  aio1   aiohttp.ClientSession                      (aiohttp, gunicorn, nginx)
  hc1    bare http.client                           (nginx, gunicorn, aiohttp)
  curl1  curl one-shots (own --local-port each)     (all three)
  strm1  long downloads started near the end        (still open when the capture stops)
Normal shapes: short keep-alive sessions ended by the client, idle pooled connections
closed by the servers' 2 s keep-alive timeouts (idle gaps are either < 1 s or > 4 s so a
pooled client never races), one-shots, Connection: close, downloads, uploads, streams.
Injected failures: keepalive-race (http.client reuse 2.3 s / 3.0 s after nginx's 2 s
timeout), request-rejected (444: requests and curl), rate-limited (httpx sequential burst,
parallel curl burst), body-too-large (requests 200 kB POST, 413), client-timeout (aiohttp
total=1 s vs aiohttp /slow, httpx timeout=1 s vs gunicorn /api/slow), connection-refused
(curl and http.client to the closed port 8089), connection-leak (http.client connections
to nginx and to aiohttp kept open and never closed: CLOSE_WAIT until the capture stops).

Labels: every client process logs JSON lines: each new TCP connection (local port, server
port, time, the session it belongs to; socket.create_connection / urllib3 hooks, an
aiohttp TCPConnector subclass, curl --local-port, http.client sock), each session's role
(normal or the injected failure) and what each request saw.  A connection's cause is its
session's role, checked against the packets (tshark): for normal sessions whose requests
all succeeded, server FIN after >= 1.5 s idle = idle-close, client FIN or server FIN
right after a Connection: close response = graceful, no FIN/RST = incomplete.  Anything
that does not fit its design is reported (and labelled by what happened).

    python3 sample_pcaps/lab/lh-mixed-ipv6.py
"""
import os, time
import lh_common as C
L = C.L

SCEN = "lh-mixed-ipv6"
NGP, GUP, AIP, DEADP = 8080, 8081, 8082, 8089
L.DECODE_AS = ["tcp.port==%d,http" % GUP, "tcp.port==%d,http" % AIP]
lab = L.Lab(SCEN, veth=True, ipv6=True)
# ephemeral ports below 40000: curl and the refused http.client use fixed ports 45000+
L.run(["ip", "netns", "exec", lab.ns_c, "sysctl", "-qw", "net.ipv4.ip_local_port_range=20000 39999"])

# ------------------------------------------------------------------ servers
html = lab.path("nginx/html")
os.makedirs(os.path.join(html, "static"), exist_ok=True)
os.makedirs(os.path.join(html, "files"), exist_ok=True)
lab.write("nginx/html/index.html", "<html><body>" + "welcome " * 200 + "</body></html>\n")
lab.write("nginx/html/static/app.js", "console.log('x');\n" * 1700)
lab.write("nginx/html/search.json", '{"results": []}\n')
with open(os.path.join(html, "files", "big.bin"), "wb") as f:
    f.write(os.urandom(300000))
lab.nginx(lab.ns_s, """
        listen [%s]:%d;
        keepalive_timeout 2s;
        root %s;
        location = /blocked { return 444; }
        location = /search { limit_req zone=perip nodelay; limit_req_status 429; try_files /search.json =404; }
        location = /upload { client_max_body_size 16k; return 200 "stored\\n"; }
        location /api/ { default_type application/json; return 200 '{"pong": true}\\n'; }
        location / { try_files $uri $uri/index.html =404; }
""" % (lab.ip_s, NGP, html), http_extra="limit_req_zone $binary_remote_addr zone=perip:1m rate=1r/s;")

lab.write("app.py", r'''
import json, time
def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/api/upload":
        n = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(n)
        out = json.dumps({"stored": len(body)}).encode()
    elif path == "/api/report":
        out = b"r" * 150000
    elif path == "/api/slow":
        time.sleep(3)
        out = b'{"late": true}'
    elif path in ("/api/stream", "/api/ticker"):
        n, gap = (12, 0.03) if path == "/api/stream" else (240, 0.5)
        def gen():
            for i in range(n):
                yield (b"%06d " % i) * 500
                time.sleep(gap)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return gen()
    else:
        out = json.dumps({"path": path, "items": [{"id": i, "name": "item%d" % i} for i in range(40)]}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]
''')
lab.spawn(lab.ns_s, [L.PY, "-m", "gunicorn", "--chdir", lab.work, "-w", "1", "-k", "gthread", "--threads", "6",
                     "--keep-alive", "2", "--control-socket", lab.path("gunicorn.ctl"), "-b", "[%s]:%d" % (lab.ip_s, GUP), "app:app"], "gunicorn")

lab.pyserver(lab.ns_s, r'''
import asyncio, sys
from aiohttp import web
async def fast(r):
    return web.json_response({"ok": True, "items": list(range(60))})
async def slow(r):
    await asyncio.sleep(3)
    return web.json_response({"ok": "late"})
async def streamed(r, n, gap):
    resp = web.StreamResponse()
    resp.content_type = "application/octet-stream"
    await resp.prepare(r)
    for i in range(n):
        await resp.write(b"s" * 4096)
        await asyncio.sleep(gap)
    await resp.write_eof()
    return resp
async def stream(r):
    return await streamed(r, 16, 0.02)
async def ticker(r):
    return await streamed(r, 240, 0.5)
async def upload(r):
    data = await r.read()
    return web.json_response({"stored": len(data)})
app = web.Application(client_max_size=4 * 1024 * 1024)
app.router.add_get("/fast", fast); app.router.add_get("/slow", slow)
app.router.add_get("/stream", stream); app.router.add_get("/ticker", ticker)
app.router.add_post("/upload", upload)
web.run_app(app, host=sys.argv[1], port=int(sys.argv[2]), keepalive_timeout=2.0, print=None, access_log=None)
''', [lab.ip_s, AIP], name="aioserver")
for p in (NGP, GUP, AIP):
    lab.wait_listen(lab.ns_s, p)

# ------------------------------------------------------------------ clients
# argv: server address, process name, stop file, seconds of traffic
COMMON = r'''
import sys, time
HOST, PROC, STOPFILE, DEADLINE = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
NG = "http://[%s]:8080" % HOST; GU = "http://[%s]:8081" % HOST; AI = "http://[%s]:8082" % HOST
T0 = time.time(); END = T0 + DEADLINE
''' + C.SESSION_CLIENT

W_REQ = COMMON + r'''
import requests
def get(s, sess, url, **kw):
    sess.use()
    try:
        r = s.get(url, timeout=10, **kw); sess.rec("GET", url, "HTTP %d (%d B)" % (r.status_code, len(r.content)), r.ok)
    except Exception as e:
        sess.rec("GET", url, ename(e), False)
def post(s, sess, url, n):
    sess.use()
    try:
        r = s.post(url, data=b"u" * n, timeout=10); sess.rec("POST", url, "HTTP %d" % r.status_code, r.ok, body=n)
    except Exception as e:
        sess.rec("POST", url, ename(e), False, body=n)
# nginx session and gunicorn session used side by side
A = Sess("requests.Session"); sa = requests.Session()
B = Sess("requests.Session"); sb = requests.Session()
step = 0
while left() > 1.5:
    step += 1
    get(sa, A, NG + "/"); gap("short"); get(sa, A, NG + "/static/app.js"); get(sa, A, NG + "/api/ping")
    get(sb, B, GU + "/api/items?page=%d" % step)
    if step % 2:
        post(sb, B, GU + "/api/upload", 40000)
    else:
        get(sb, B, GU + "/api/report")
    if step == 1:
        # one-shots: a new session per request
        for i in range(3):
            x = Sess("requests.get"); get(requests, x, GU + "/api/items?one=%d" % i); x.end(); gap("short")
    if step == 2:
        x = Sess("requests.get", "request-rejected", "nginx location /blocked: return 444")
        get(requests, x, NG + "/blocked"); x.end()
        get(sa, A, NG + "/files/big.bin")
    if step == 3:
        x = Sess("requests.post", "body-too-large", "200000-byte POST vs client_max_body_size 16k")
        post(requests, x, NG + "/upload", 200000); x.end()
        x = Sess("requests.post"); post(requests, x, NG + "/upload", 8000); x.end()
    if step == 4:
        # the nginx session ends its work: client closes while the gunicorn one goes on
        sa.close(); A.end(); A = Sess("requests.Session"); sa = requests.Session()
    gap("long" if step % 2 else "short")
sa.close(); A.end(); sb.close(); B.end()
emit(type="exit")
'''

W_HTTPX = COMMON + r'''
import httpx
def do(c, sess, method, url, stream=False, **kw):
    sess.use()
    try:
        if stream:
            with c.stream(method, url, **kw) as r:
                n = sum(len(b) for b in r.iter_bytes())
        else:
            r = c.request(method, url, **kw); n = len(r.content)
        sess.rec(method, url, "HTTP %d (%d B)" % (r.status_code, n), r.is_success)
    except Exception as e:
        sess.rec(method, url, ename(e), False)
C1 = Sess("httpx.Client"); c1 = httpx.Client(timeout=10)
C2 = Sess("httpx.Client"); c2 = httpx.Client(timeout=10)
step = 0
while left() > 1.5:
    step += 1
    do(c1, C1, "GET", AI + "/fast"); do(c1, C1, "GET", AI + "/stream", stream=True)
    do(c1, C1, "POST", AI + "/upload", content=b"h" * 20000)
    gap("short")
    do(c2, C2, "GET", GU + "/api/items?q=%d" % step)
    if step % 2 == 0:
        do(c2, C2, "GET", GU + "/api/stream", stream=True)
    if step == 2:
        R = Sess("httpx.Client", "rate-limited", "6 back-to-back GETs on one connection vs limit_req 1 r/s")
        with httpx.Client(timeout=10) as r:
            for i in range(6):
                do(r, R, "GET", NG + "/search?q=%d" % i)
        R.end()
    if step == 3:
        T = Sess("httpx.Client", "client-timeout", "httpx timeout=1.0 vs gunicorn /api/slow (3 s)")
        with httpx.Client(timeout=1.0) as t:
            do(t, T, "GET", GU + "/api/slow")
        T.end()
    if step == 4:
        c2.close(); C2.end(); C2 = Sess("httpx.Client"); c2 = httpx.Client(timeout=10)
    x = Sess("httpx.get"); do(httpx, x, "GET", NG + "/api/ping?s=%d" % step); x.end()
    gap()
c1.close(); C1.end(); c2.close(); C2.end()
emit(type="exit")
'''

W_AIO = COMMON + C.SESSION_AIOHTTP + r'''
async def do(s, sess, method, url, **kw):
    try:
        async with s.request(method, url, **kw) as r:
            n = len(await r.read())
            sess.rec(method, url, "HTTP %d (%d B)" % (r.status, n), r.status < 400)
    except Exception as e:
        sess.rec(method, url, ename(e), False)
async def one_round(s, S, step):
    await asyncio.gather(*[do(s, S, "GET", AI + "/fast?i=%d" % i) for i in range(3)])
    await do(s, S, "GET", AI + "/stream")
    await asyncio.gather(do(s, S, "GET", GU + "/api/items?a=%d" % step), do(s, S, "GET", NG + "/static/app.js"))
    if step % 3 == 0:
        await do(s, S, "POST", GU + "/api/upload", data=b"a" * 30000)
    if step == 2:
        T = Sess("aiohttp.ClientSession", "client-timeout", "ClientTimeout(total=1) vs aiohttp /slow (3 s)")
        async with aiohttp.ClientSession(connector=LogConnector(T), timeout=aiohttp.ClientTimeout(total=1)) as t:
            await do(t, T, "GET", AI + "/slow")
        T.end()
    if step == 3:
        # a short-lived session that does its work and closes (client FIN)
        X = Sess("aiohttp.ClientSession")
        async with aiohttp.ClientSession(connector=LogConnector(X)) as x:
            await do(x, X, "GET", AI + "/fast?short=1"); await do(x, X, "GET", GU + "/api/report")
        X.end()
asyncio.run(rounds(one_round))
emit(type="exit")
'''

W_HC = COMMON + r'''
import http.client
HOSTPORTS = [(8080, "/"), (8080, "/api/ping"), (8081, "/api/items"), (8082, "/fast")]
def conn(port, sess):
    sess.use(); c = http.client.HTTPConnection(HOST, port, timeout=10); c.connect(); return c
def req(c, sess, path, method="GET", headers=None):
    try:
        c.request(method, path, headers=headers or {}); r = c.getresponse(); b = r.read()
        sess.rec(method, path, "HTTP %d (%d B)" % (r.status, len(b)), r.status < 400, lport=c.sock.getsockname()[1] if c.sock else None)
        return True
    except Exception as e:
        sess.rec(method, path, ename(e), False); return False
leaks = []
# connection-leak: request, keep the object, never close it (nginx and aiohttp close it idle)
for port, path in ((8080, "/api/ping"), (8082, "/fast")):
    S = Sess("http.client", "connection-leak", "HTTPConnection kept in a list and never closed, port %d" % port)
    c = conn(port, S); req(c, S, path); leaks.append(c); S.end()
i = 0
while left() > 1.5:
    i += 1
    port, path = HOSTPORTS[i % len(HOSTPORTS)]
    if i == 3 or i == 9:
        # keepalive-race: bare http.client reuses the connection after nginx's 2 s timeout
        g = 2.3 if i == 3 else 3.0
        S = Sess("http.client", "keepalive-race", "GET, idle %.1f s (nginx keepalive_timeout 2s), GET on the same connection" % g)
        c = conn(8080, S); req(c, S, "/api/ping"); time.sleep(g); req(c, S, "/?again=1"); c.close(); S.end()
        continue
    if i == 6:
        S = Sess("http.client", "connection-refused", "port %d: nothing listens" % 8089)
        lp = 46001
        CUR["sid"] = S.sid
        emit(type="conn", sid=S.sid, lport=lp, rport=8089)
        try:
            c = http.client.HTTPConnection(HOST, 8089, timeout=5, source_address=("::", lp)); c.request("GET", "/")
            S.rec("GET", "/", "connected?!", False)
        except Exception as e:
            S.rec("GET", "/", ename(e), False)
        S.end(); continue
    S = Sess("http.client")
    c = conn(port, S)
    n = RND.choice([1, 2, 3])
    for k in range(n):
        last = k == n - 1
        hdr = {"Connection": "close"} if (last and i % 4 == 0) else {}
        req(c, S, path + ("?k=%d" % k), headers=hdr)
        if not last:
            time.sleep(RND.uniform(0.05, 0.4))
    c.close(); S.end()
    gap("short")
emit(type="done")
wait_stop()       # the leaked connections stay referenced until the capture has stopped
emit(type="exit", leaked=len(leaks))
'''

W_CURL = COMMON + r'''
import subprocess
PORT = [45000]
def curl(sess, urls, extra=(), wait=True):
    PORT[0] += 1; lp = PORT[0]
    sess.use(); emit(type="conn", sid=sess.sid, lport=lp, rport=int(urls[0].split("]:")[1].split("/")[0]))
    cmd = ["curl", "-gsS", "--local-port", str(lp), "--max-time", "10",
           "-w", "%{http_code}\\n"] + list(extra)
    for u in urls:
        cmd += ["-o", "/dev/null", u]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    def fin():
        out, err = p.communicate(timeout=20)
        codes = out.split()
        if p.returncode == 0:
            for u, cd in zip(urls, codes):
                sess.rec("POST" if "--data-binary" in extra else "GET", u, "HTTP %s" % cd, cd.startswith("2"), lport=lp, code=int(cd))
        else:
            sess.rec("GET", urls[0], "curl exit %d: %s" % (p.returncode, err.strip()), False, lport=lp, codes=codes)
    if wait:
        fin(); return None
    return fin
up = os.path.join(os.path.dirname(STOPFILE), "curl-upload.bin")
with open(up, "wb") as f:
    f.write(b"c" * 8000)
with open(up + ".big", "wb") as f:
    f.write(b"C" * 100000)
TARGETS = [[NG + "/"], [NG + "/files/big.bin"], [GU + "/api/items?c=1"], [AI + "/fast"],
           [NG + "/static/app.js", NG + "/api/ping"], [GU + "/api/report"], [AI + "/stream"]]
i = 0
while left() > 1.0:
    i += 1
    if i == 5:
        S = Sess("curl", "request-rejected", "nginx /blocked: return 444"); curl(S, [NG + "/blocked"]); S.end(); continue
    if i == 12:
        S = Sess("curl", "connection-refused", "port 8089: nothing listens"); curl(S, ["http://[%s]:8089/" % HOST]); S.end(); continue
    if i == 30:
        S = Sess("curl", "body-too-large", "100000-byte POST (--data-binary) vs client_max_body_size 16k")
        curl(S, [NG + "/upload"], extra=["--data-binary", "@" + up + ".big"]); S.end(); continue
    if i == 20:
        S = Sess("curl", "rate-limited", "5 parallel one-shot GETs vs limit_req 1 r/s")
        fins = [curl(S, [NG + "/search?p=%d" % k], wait=False) for k in range(5)]
        for f in fins:
            f()
        S.end(); continue
    S = Sess("curl")
    if i % 6 == 0:
        curl(S, [AI + "/upload"], extra=["--data-binary", "@" + up])
    else:
        curl(S, TARGETS[i % len(TARGETS)])
    S.end()
    time.sleep(max(0, min(RND.uniform(0.1, 0.4), left())))
emit(type="exit")
'''

W_STREAM = COMMON + r'''
import threading, subprocess, requests, http.client
time.sleep(max(0, DEADLINE - 4.0))
def req_stream():
    S = Sess("requests.get(stream=True)", "incomplete", "gunicorn /api/ticker (0.5 s per chunk, 2 min), open at capture stop")
    try:
        r = requests.get(GU + "/api/ticker", stream=True, timeout=30)
        for chunk in r.iter_content(4096):
            pass
    except Exception as e:
        pass
def hc_stream():
    S = Sess("http.client", "incomplete", "aiohttp /ticker (0.5 s per chunk, 2 min), open at capture stop")
    c = http.client.HTTPConnection(HOST, 8082, timeout=30); c.connect()
    c.request("GET", "/ticker"); r = c.getresponse()
    while r.read(4096):
        pass
def curl_slow():
    S = Sess("curl", "incomplete", "aiohttp /ticker (0.5 s per chunk, 2 min), open at capture stop")
    emit(type="conn", sid=S.sid, lport=45900, rport=8082)
    subprocess.run(["curl", "-gsS", "-o", "/dev/null", "--local-port", "45900",
                    "--max-time", "60", AI + "/ticker"], capture_output=True)
ts = []
for fn in (req_stream, hc_stream, curl_slow):
    t = threading.Thread(target=fn, daemon=True); t.start(); ts.append(t); time.sleep(0.3)
emit(type="streams-started")
wait_stop()
emit(type="exit")
'''

DUR = 32.0
stopfile = lab.path("stop")
lab.start_capture(SCEN + ".pcap.gz", iface=lab.dev_c, snaplen=256)
workers = {}
for name, code in (("req1", W_REQ), ("httpx1", W_HTTPX), ("aio1", W_AIO), ("hc1", W_HC),
                   ("curl1", W_CURL), ("strm1", W_STREAM)):
    workers[name] = lab.client(code, [lab.ip_s, name, stopfile, DUR], name=name, background=True)
t0 = time.time()
for name in ("req1", "httpx1", "aio1", "curl1"):
    workers[name].wait(timeout=DUR + 30)
while time.time() - t0 < DUR + 30 and not (C.logged(lab, "hc1", "done") and C.logged(lab, "strm1", "streams-started")):
    time.sleep(0.2)
time.sleep(2.0)
lab.stop_capture(settle=0.2)
open(stopfile, "w").close()
for name in ("hc1", "strm1"):
    try:
        workers[name].wait(timeout=10)
    except Exception:
        pass
logs = C.worker_logs(lab, workers)
V = L.versions()

# ------------------------------------------------------------------ labels
SESS, CONNS = C.sessions(logs)
unexpected = []


def label(c, logs):
    d, s = C.find_session(c, CONNS, SESS)
    if d is None:
        unexpected.append((c, "no client log"))
        return {"cause": "unknown", "client_saw": "", "how": "not matched to a client log (FAILED)"}
    saw, who, role = C.session_summary(c, d, s)
    closer, kind = c["closer"], c["close_kind"]
    idle = C.idle_before_close(c)

    def normal(check_ok=True):
        if check_ok and not s.get("all_ok", True) and "all_ok" in s:
            unexpected.append((c, "normal session with a failed request: " + saw))
        if closer == "none":
            return "incomplete", "Design (%s): ordinary keep-alive traffic; the connection was still open when the capture stopped." % who
        if kind == "RST":
            unexpected.append((c, "normal session ended by RST"))
            return "unknown", "Design (%s): ordinary traffic, but the connection ended with an RST (unexplained)." % who
        if closer == "server" and idle is not None and idle >= 1.5:
            return "idle-close", ("Design (%s): every request answered; the connection then sat idle %.2f s and the server "
                                  "closed it at its 2 s keep-alive timeout (FIN); the client closed its dead socket later "
                                  "(next checkout or session end); nothing lost." % (who, idle))
        if closer == "server":
            return "graceful", ("Design (%s): every request answered; the last one carried Connection: close (or the "
                                "server ended the exchange with it) and the server closed right after the complete response." % who)
        return "graceful", "Design (%s): every request answered; the client closed when its work was done (FIN exchange)." % who

    if role == "normal":
        cause, how = normal()
    elif role == "incomplete":
        cause, how = ("incomplete", "Design (%s): %s." % (who, s.get("note"))) if closer == "none" else normal()
    elif role == "keepalive-race":
        if C.client_data_after_server_fin(c) and not s.get("all_ok", True):
            cause, how = "keepalive-race", ("Design (%s): %s; nginx had closed the idle connection (FIN) before the "
                                            "second request, which got no response (the client logged: %s)." % (who, s["note"], saw))
        else:
            unexpected.append((c, "race did not happen"))
            cause, how = normal()
    elif role == "connection-leak":
        if closer == "server" and kind == "FIN" and not any(f["src"] == c["client"] and (f["fin"] or f["rst"]) for f in c["frames"]):
            cause, how = "connection-leak", ("Design (%s): %s; the server closed it idle with FIN %.2f s after the "
                                             "response, the client kernel only ACKed it (CLOSE_WAIT) and no client FIN/RST "
                                             "followed until the capture stopped." % (who, s["note"], idle or -1))
        else:
            unexpected.append((c, "leak not as designed"))
            cause, how = normal()
    elif role == "request-rejected":
        cause, how = "request-rejected", "Design (%s): %s; nginx closed right after the complete request without a response byte (client saw: %s)." % (who, s["note"], saw)
        if c["server_data"]:
            unexpected.append((c, "444 with server data"))
    elif role == "body-too-large":
        cause, how = "body-too-large", "Design (%s): %s; nginx answered 413 while the body was arriving and closed (client saw: %s; client sent %d B)." % (who, s["note"], saw, c["client_data"])
    elif role == "rate-limited":
        if "429" in saw:
            cause, how = "rate-limited", "Design (%s): %s; this connection got HTTP 429 from nginx limit_req (same client IP as every other process)." % (who, s["note"])
        else:
            cause, how = normal(check_ok=False)
            how = "The request admitted by limit_req during the burst (%s). " % saw + how
    elif role == "client-timeout":
        cause, how = "client-timeout", "Design (%s): %s; the client gave up after its timeout and closed before any response byte; the server was only slow (client saw: %s)." % (who, s["note"], saw)
        if closer != "client":
            unexpected.append((c, "timeout: closer is not the client"))
    elif role == "connection-refused":
        cause, how = "connection-refused", "Design (%s): %s; the SYN was answered by RST (client saw: %s)." % (who, s["note"], saw)
    else:
        unexpected.append((c, "unknown role " + role))
        cause, how = "unknown", "role %s" % role
    return {"cause": cause, "client_saw": saw, "how": how}


out = L.write_labels(
    lab, "Haystack: ~35 s of mixed HTTP/1.1 over IPv6 (veth fd00:203::1 -> fd00:203::2): nginx (keepalive 2s, 444, limit_req, "
         "client_max_body_size), gunicorn gthread (keep-alive 2) and aiohttp (keepalive 2 s); six client processes "
         "(requests, httpx, aiohttp, http.client, curl, late streams) with injected keepalive-race, request-rejected, "
         "rate-limited, body-too-large, client-timeout, connection-refused and connection-leak",
    [V["nginx"], V["gunicorn"], V["aiohttp"], V["requests"], V["urllib3"], V["httpx"], V["http.client"], V["curl"]],
    label, logs)
C.report(out, os.path.join(L.CAPDIR, lab.capture_file), unexpected)
