"""What the haystack recordings sample_pcaps/lab/lh-*.py share (lab helper "lh").

The four haystacks come in two families that log their clients differently, and each
family's scripts share its client code and its labelling code; every script ends with the
same report.  Kept here once, so that a fix to how a connection is logged or matched
reaches every recording the family makes.
  * pattern family, lh-pool and lh-tls: a client process logs one "pattern" line per unit
    of work (the local ports it used, what it saw, the designed outcome); a captured
    connection is matched to a pattern by client port and time.
  * session family, lh-mixed-ipv6 and lh-reverse-proxy: a client process logs "session"
    lines (a client object's role and requests) and a "conn" line per new connection; a
    captured connection is matched to its conn line, hence to its session.

Client side.  The clients are separate interpreters: la-lib's Lab.client writes a client's
code into the scenario's work folder and runs it in the client namespace.  So their shared
code is source text here, which a script puts in front of each client's own code (as
la-lib.py does with PORT_HOOK), after a short header of its own that reads the client's
arguments and names its servers:
  PATTERN_CLIENT       the header sets NAME, T0 (epoch start) and DUR (seconds of traffic).
                       emit(), connection hooks that fill PORTS, now(), left(), pattern(),
                       run_patterns(), run_curl(), ...; at its end it waits for T0.
  PATTERN_AIOHTTP      after PATTERN_CLIENT, for an aiohttp client: Conn, CS(), apattern().
  PATTERN_HTTP_CLIENT  after PATTERN_CLIENT, for an http.client client: do(), race().
  SESSION_CLIENT       the header sets PROC, STOPFILE and END (epoch end of the traffic).
                       emit(), connection hooks that log conn lines, Sess, gap(), ...
  SESSION_AIOHTTP      after SESSION_CLIENT, for an aiohttp client: LogConnector, rounds().
Server side (pattern family): PATTERN_BACKEND, the start of the aiohttp backend, and
nginx_site(), the nginx root and locations both haystacks serve.

Host side, for the recording script itself (it imports this module: the script's folder
is first on sys.path): L (la-lib.py, loaded once), reading the clients' logs, matching a
connection to its pattern or session, packet facts, and report().
"""
import importlib.util
import json
import math
import os

_spec = importlib.util.spec_from_file_location(
    "la_lib", os.path.join(os.path.dirname(os.path.abspath(__file__)), "la-lib.py"))
L = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(L)

# ------------------------------------------------------------------ client side
# socket.create_connection (http.client, httpx/httpcore) and urllib3's own
# create_connection (requests) call _on_connect(sock) for every new connection.
_CONNECT_HOOKS = r'''
def _hook(mod):
    orig = mod.create_connection
    def create_connection(*a, **kw):
        s = orig(*a, **kw); _on_connect(s); return s
    mod.create_connection = create_connection
_hook(socket)
try:
    import urllib3.util.connection as _uc
    _hook(_uc)
except ImportError:
    pass
'''

PATTERN_CLIENT = r'''
import json, os, random, socket, subprocess, sys, threading, time
rng = random.Random(NAME)
_lock = threading.Lock()
def emit(**d):
    d.setdefault("proc", NAME); d.setdefault("t", time.time())
    with _lock:
        print(json.dumps(d), flush=True)
PORTS = []
def _on_connect(s):
    PORTS.append(s.getsockname()[1]); emit(ev="conn", lport=s.getsockname()[1])
''' + _CONNECT_HOOKS + r'''
def now():
    return time.time() - T0
def left():
    return DUR - now()
def err(e):
    return "%s: %s" % (type(e).__name__, e)
def pattern(plan, desc, fn):
    del PORTS[:]
    saw = []
    t0 = time.time(); ok = True
    try:
        fn(saw)
    except Exception as e:
        saw.append(err(e)); ok = False
    emit(ev="pattern", plan=plan, desc=desc, ports=list(PORTS), t0=t0, t1=time.time(), saw=saw, ok=ok)
    return ok
def hold():
    while True:
        time.sleep(10)
def sleep_until_left(s):
    """sleep until only s seconds of the traffic are left"""
    while left() > s:
        time.sleep(0.05)
def weighted(choices):
    """[(fn, weight)] -> a list in which each fn stands weight times (for rng.choice)"""
    return [f for f, w in choices for _ in range(w)]
def one_of(prefix, pool):
    """a normal pattern: a function drawn from pool, logged as prefix + its name"""
    f = rng.choice(pool)
    pattern("normal", prefix + f.__name__, f)
def run_patterns(until, pause, normal, plan=None):
    """Until only `until` seconds are left: each planned pattern (plan: {seconds after T0:
    (plan, desc, fn)}) once its time has come, otherwise normal() and a pause of
    rng.uniform(*pause) seconds."""
    plan = dict(plan or {})
    while left() > until:
        due = [k for k in plan if now() >= k]
        if due:
            k = min(due); p, d, f = plan.pop(k)
            pattern(p, d, f)
            continue
        normal()
        time.sleep(rng.uniform(*pause))
def run_curl(args):
    """curl -o /dev/null with args (one or more URLs) -> (its local ports, what it saw, ok)"""
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "--max-time", "5",
                        "-w", '{"code":%{http_code},"lport":%{local_port},"size":%{size_download}}\n'] + args,
                       capture_output=True, text=True)
    ports, codes = [], []
    for line in r.stdout.splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        codes.append("HTTP %s %s B" % (d["code"], d["size"]))
        if d["lport"] and d["lport"] not in ports:
            ports.append(d["lport"])
    if "--local-port" in args and not ports:
        ports.append(int(args[args.index("--local-port") + 1]))
    saw = codes if r.returncode == 0 else codes + ["curl exit %d: %s" % (r.returncode, r.stderr.strip())]
    return ports, saw, r.returncode == 0
while time.time() < T0:
    time.sleep(0.01)
'''

PATTERN_AIOHTTP = r'''
import asyncio, aiohttp
class Conn(aiohttp.TCPConnector):
    """records the local port of every new connection"""
    async def _create_connection(self, req, traces, timeout):
        proto = await super()._create_connection(req, traces, timeout)
        p = proto.transport.get_extra_info("sockname")[1]
        PORTS.append(p); emit(ev="conn", lport=p)
        return proto
def CS():
    return aiohttp.ClientSession(connector=Conn())
async def apattern(plan, desc, fn):
    del PORTS[:]
    saw = []; t0 = time.time(); ok = True
    try:
        await fn(saw)
    except Exception as e:
        saw.append(err(e)); ok = False
    emit(ev="pattern", plan=plan, desc=desc, ports=list(PORTS), t0=t0, t1=time.time(), saw=saw, ok=ok)
async def apatterns(until, pause, pool):
    """until only `until` seconds are left: normal patterns drawn from pool, pauses of rng.uniform(*pause)"""
    while left() > until:
        f = rng.choice(pool)
        await apattern("normal", "aiohttp " + f.__name__, f)
        await asyncio.sleep(rng.uniform(*pause))
'''

PATTERN_HTTP_CLIENT = r'''
import http.client
def do(c, path, saw, method="GET", body=None):
    """one request and its whole response on the http.client connection c"""
    c.request(method, path, body=body)
    r = c.getresponse(); r.read(); saw.append("%s %s HTTP %d" % (method, path, r.status))
def race(conn, gap):
    """a keepalive-race pattern: two requests on a connection from conn(), gap seconds idle
    (past nginx's keepalive_timeout 2s), then a third request, which bare http.client sends
    on the connection nginx has closed"""
    def f(saw):
        c = conn(); do(c, "/api?r=1", saw); time.sleep(0.2); do(c, "/api?r=2", saw)
        time.sleep(gap)
        try:
            do(c, "/api?r=3", saw)
        finally:
            c.close()
    return f
'''

SESSION_CLIENT = r'''
import json, os, sys, time, socket, random, itertools
RND = random.Random(PROC)
CUR = {"sid": None}
def emit(**d):
    d.setdefault("proc", PROC); d.setdefault("t", time.time())
    print(json.dumps(d), flush=True)
def _on_connect(s):
    try:
        emit(type="conn", sid=CUR["sid"], lport=s.getsockname()[1], rport=s.getpeername()[1])
    except Exception as e:
        emit(type="hook-error", sid=CUR["sid"], err=repr(e))
''' + _CONNECT_HOOKS + r'''
_ids = itertools.count(1)
class Sess:
    """One client object's life: its role, the requests it made and what they saw."""
    def __init__(self, lib, role="normal", note=""):
        self.sid = "%s-%d" % (PROC, next(_ids)); self.lib, self.role, self.note = lib, role, note
        self.reqs = []; CUR["sid"] = self.sid
        emit(type="session-start", sid=self.sid, lib=lib, role=role, note=note)
    def use(self):
        CUR["sid"] = self.sid; return self
    def rec(self, method, url, saw, ok, **kw):
        d = dict(m=method, url=url, saw=saw, ok=ok, t=time.time()); d.update(kw); self.reqs.append(d)
    def end(self):
        emit(type="session", sid=self.sid, lib=self.lib, role=self.role, note=self.note, reqs=self.reqs,
             all_ok=all(r["ok"] for r in self.reqs))
def ename(e):
    return "%s: %s" % (type(e).__name__, e)
def sleep(d):
    """sleep d seconds, at most until END"""
    time.sleep(max(0, min(d, END - time.time())))
def gap(kind=None):
    """idle gaps are either short (< 1 s) or long (> 4.2 s, past every server's 2 s keep-alive)"""
    if kind is None:
        kind = "long" if RND.random() < 0.25 else "short"
    sleep(RND.uniform(0.1, 0.9) if kind == "short" else RND.uniform(4.2, 5.5))
def left():
    return END - time.time()
def wait_stop():
    """until the script has stopped the capture (it then creates STOPFILE), 90 s at most"""
    t = time.time()
    while not os.path.exists(STOPFILE) and time.time() - t < 90:
        time.sleep(0.2)
'''

SESSION_AIOHTTP = r'''
import asyncio, aiohttp
class LogConnector(aiohttp.TCPConnector):
    """logs every new connection (local and server port) under the session it was made for"""
    def __init__(self, sess, **kw):
        super().__init__(**kw); self.sess = sess
    async def _wrap_create_connection(self, *a, **kw):
        tr, pr = await super()._wrap_create_connection(*a, **kw)
        sn, pn = tr.get_extra_info("sockname"), tr.get_extra_info("peername")
        emit(type="conn", sid=self.sess.sid, lport=sn[1], rport=pn[1])
        return tr, pr
async def rounds(step):
    """The aiohttp client's traffic: one pooled session S (connector limit 10, total timeout
    15 s) for `await step(s, S, n)`, rounds n = 1, 2, ... until 1.5 s are left, with a pause
    after each (long, past the 2 s keep-alives, after odd rounds); then S is closed."""
    S = Sess("aiohttp.ClientSession")
    s = aiohttp.ClientSession(connector=LogConnector(S, limit=10), timeout=aiohttp.ClientTimeout(total=15))
    n = 0
    while left() > 1.5:
        n += 1
        await step(s, S, n)
        d = RND.uniform(4.2, 5.5) if n % 2 else RND.uniform(0.2, 0.8)
        await asyncio.sleep(max(0, min(d, left())))
    await s.close(); S.end()
'''

# ------------------------------------------------------------------ server side
# the start of the lh-pool and lh-tls aiohttp backends: host = argv[1]; /api, /upload, /stream
PATTERN_BACKEND = r'''
import asyncio, sys
from aiohttp import web
host = sys.argv[1]
async def api(req):
    return web.json_response({"ok": True, "q": req.query_string})
async def upload(req):
    body = await req.read()
    return web.Response(text="stored %d bytes\n" % len(body))
async def stream(req):
    n, d = int(req.query.get("n", "5")), float(req.query.get("d", "0.1"))
    r = web.StreamResponse(); r.content_type = "text/plain"
    await r.prepare(req)
    for i in range(n):
        await r.write(b"chunk %d %s\n" % (i, b"x" * 200))
        await asyncio.sleep(d)
    await r.write_eof()
    return r
'''


def nginx_site(lab, big_kb, proxy):
    """The server-block lines of the lh-pool and lh-tls nginx: its root (nginx/html in the
    work folder, made here with /big: big_kb kB of random bytes), / (hello), /big,
    /reject (`return 444`) and /api (proxy: the proxy_pass line to the backend)."""
    root = lab.path("nginx/html")
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "big"), "wb") as f:
        f.write(os.urandom(big_kb * 1024))
    return """client_max_body_size 4m;
        root %s;
        location = / { return 200 "hello from nginx\\n"; }
        location = /big { }
        location = /reject { return 444; }
        location /api { %s }""" % (root, proxy)


# ------------------------------------------------------------------ host side: logs
def worker_logs(lab, names, prefix="", tag=""):
    """The JSON lines the client processes printed (lab.client(..., name=prefix + n) for n
    in names, in that order); a client's stderr, if any, goes to the log as tag + n."""
    logs = []
    for n in names:
        with open(lab.path(prefix + n + ".out")) as f:
            logs += L.parse_jsonl(f.read())
        with open(lab.path(prefix + n + ".err")) as f:
            e = f.read().strip()
        if e:
            L.log(tag + n, "stderr:", e[-1500:])
    return logs


def logged(lab, name, typ):
    """whether client `name` has printed a line of that type yet"""
    with open(lab.path(name + ".out")) as f:
        return any(d.get("type") == typ for d in L.parse_jsonl(f.read()))


# ------------------------------------------------ host side: the pattern family
def first_epoch(cap):
    """epoch time of the capture's first frame (patterns are logged in epoch times)"""
    return float(L.run(["tshark", "-r", cap, "-c", "1", "-T", "fields", "-e", "frame.time_epoch"]).stdout.strip())


def find_pattern(c, pats, epoch0):
    """the pattern that used the connection's client port, closest in time to its SYN (0.3 s at most)"""
    syn = epoch0 + c["t0"]
    best, bd = None, 1e9
    for d in pats:
        if c["client_port"] in d["ports"]:
            dist = max(d["t0"] - syn, syn - d["t1"], 0)
            if dist < bd:
                best, bd = d, dist
    return best if bd <= 0.3 else None


def pattern_summary(d):
    """(what the client saw, who: process/description, the designed outcome) of a pattern"""
    return "; ".join(d["saw"]), "%s/%s" % (d["proc"], d["desc"]), d["plan"]


def unmatched(c, problems, facts):
    """label of a connection no pattern matches (and a problem to report)"""
    problems.append((c, "no client log"))
    return {"cause": "unknown", "client_saw": "", "how": "no client log matched (port %d). %s" % (c["client_port"], facts)}


def unconfirmed(c, problems, d, why, facts):
    """label of a connection whose pattern's designed outcome the packets do not confirm"""
    saw, who, plan = pattern_summary(d)
    problems.append((c, "%s: %s (%s)" % (plan, why, who)))
    return {"cause": "unknown", "client_saw": saw, "how": "design %s not confirmed: %s. %s" % (plan, why, facts)}


# ------------------------------------------------ host side: the session family
def sessions(logs):
    """{sid: its session-start and session lines merged}, [every conn line]"""
    sess = {}
    for d in logs:
        if d["type"] in ("session-start", "session"):
            sess.setdefault(d["sid"], {}).update(d)
    return sess, [d for d in logs if d["type"] == "conn"]


def find_session(c, conns, sess):
    """(conn line, session) of connection c: the conn line of its client port and server
    port closest in time to its SYN; (None, None) when there is none"""
    sport = int(c["server"].rsplit(":", 1)[1])
    cands = [d for d in conns if d["lport"] == c["client_port"] and d["rport"] == sport]
    if not cands:
        return None, None
    d = min(cands, key=lambda d: abs(d["t"] - c["t0_epoch"]) if not math.isnan(c["t0_epoch"]) else 0)
    return d, sess.get(d["sid"], {})


def session_summary(c, d, s):
    """(what the session saw on connection c, who: process, library and session, its role)"""
    return saw_of(s, c), "%s %s session %s" % (d["proc"], s.get("lib", "?"), d["sid"]), s.get("role", "?")


def saw_of(s, c):
    """what the session's requests on this connection saw (at most 300 characters)"""
    reqs = s.get("reqs", [])
    if reqs and all(r.get("lport") is None for r in reqs) and len(reqs) > 1:
        # pooled client: the log has the session's requests, the packets say which were on this connection
        bad = [r for r in reqs if not r["ok"]]
        head = ("all %d requests of the session answered" % len(reqs)) if not bad else \
            "; ".join("%s %s -> %s" % (r["m"], r["url"].split("]", 1)[-1], r["saw"]) for r in bad)
        return ("%s (this connection: responses %s)" % (head, ",".join(c["codes"]) or "not decoded by tshark at snaplen 256"))[:300]
    mine = [r for r in reqs if r.get("lport") in (None, c["client_port"])]
    return "; ".join("%s %s -> %s" % (r["m"], r["url"].split("]", 1)[-1], r["saw"]) for r in mine)[:300]


def idle_before_close(c):
    """seconds between the last payload (either side) and the first FIN/RST; None if open or no payload"""
    if not c["close_frame"]:
        return None
    lt = L.last_data_before(c, "server", c["close_frame"])
    lc = L.last_data_before(c, "client", c["close_frame"])
    last = max([x for x in (lt, lc) if x is not None], default=None)
    return c["close_t"] - last if last is not None else None


def client_data_after_server_fin(c):
    """the client sent payload after the server's first FIN (a keep-alive race)"""
    sf = [f for f in c["frames"] if f["fin"] and f["src"] == c["server"]]
    if not sf:
        return False
    return any(f["len"] > 0 and f["src"] == c["client"] and f["n"] > sf[0]["n"] for f in c["frames"])


# ------------------------------------------------------------------ host side: report
def report(out, cap, problems):
    """Log the label counts per cause, the connections pcapsense labels otherwise, and the
    problems the labelling met: [(conn, why)]."""
    counts = {}
    for o in out:
        counts[o["cause"]] = counts.get(o["cause"], 0) + 1
    L.log("causes:", json.dumps(counts, sort_keys=True))
    ps = L.pcapsense_view(cap)
    dis = [(o, ps.get(o["first_frame"], {})) for o in out if ps.get(o["first_frame"], {}).get("cause") != o["cause"]]
    L.log("%d disagreements with pcapsense:" % len(dis))
    for o, p in dis:
        L.log("  f%d %s->%s label=%s pcapsense=%s (%s/%s) %s" % (o["first_frame"], o["client"], o["server"], o["cause"], p.get("cause"),
                                                              p.get("closer"), p.get("close_kind"), str(p.get("cause_detail", ""))[:150]))
    for c, why in problems:
        L.log("UNEXPECTED stream %d (%s -> %s): %s" % (c["stream"], c["client"], c["server"], why))
