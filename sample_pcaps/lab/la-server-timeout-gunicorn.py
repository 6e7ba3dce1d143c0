#!/usr/bin/env python3
"""server-timeout with gunicorn (sync workers, --timeout 2): the /slow handler
blocks the worker for 20 s with SIGABRT masked (like a worker stuck in C code
that cannot run Python signal handlers), so gunicorn's SIGABRT does nothing
and the arbiter SIGKILLs the worker; the kernel closes the connection (FIN,
the request was read completely) without a response byte.  A /fast request
is answered normally (gunicorn sync closes after each response: server FIN).
Clients: requests and httpx (in parallel on /slow), curl (/fast).
Capture: veth pair (MTU 1500, offloads off), pcapng written by dumpcap.

    python3 sample_pcaps/lab/la-server-timeout-gunicorn.py
"""
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location("la_lib", os.path.join(os.path.dirname(os.path.abspath(__file__)), "la-lib.py"))
L = importlib.util.module_from_spec(spec); spec.loader.exec_module(L)

SCEN = "la-server-timeout-gunicorn"
PORT = 18086
lab = L.Lab(SCEN, veth=True)
lab.write("app.py", r'''
import signal, time
def app(environ, start_response):
    if environ["PATH_INFO"].startswith("/slow"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGABRT, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})
        time.sleep(20)
    body = b"fast answer\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
''')
lab.spawn(lab.ns_s, [L.PY, "-m", "gunicorn", "--chdir", lab.work, "-w", "3", "-k", "sync", "--timeout", "2",
                     "--graceful-timeout", "1", "-b", "%s:%d" % (lab.ip_s, PORT), "app:app"], "gunicorn")
lab.wait_listen(lab.ns_s, PORT)
time.sleep(1.0)      # let all workers boot

CLIENT = L.PORT_HOOK + r'''
import json, sys, time, threading, requests, httpx
base = "http://%s:%s" % (sys.argv[1], sys.argv[2])
def run(name, fn):
    t0 = time.time()
    try:
        saw = fn()
    except Exception as e:
        saw = "%s: %s" % (type(e).__name__, e)
    RES[name] = {"who": name, "saw": saw, "waited": round(time.time() - t0, 3)}
RES = {}
MINE = {"requests-GET": [], "httpx-GET": []}
def req():
    import urllib3.util.connection as uc
    return "HTTP %d" % requests.get(base + "/slow/report", timeout=15).status_code
def hx():
    with httpx.Client(timeout=15) as c:
        return "HTTP %d" % c.get(base + "/slow/export").status_code
t = threading.Thread(target=run, args=("requests-GET", req)); t.start()
time.sleep(0.2); MINE["requests-GET"] = list(PORTS)
t2 = threading.Thread(target=run, args=("httpx-GET", hx)); t2.start()
time.sleep(0.2); MINE["httpx-GET"] = [p for p in PORTS if p not in MINE["requests-GET"]]
t.join(); t2.join()
MINE["httpx-GET"] = [p for p in PORTS if p not in MINE["requests-GET"]]
for k, v in RES.items():
    v["ports"] = MINE[k]; print(json.dumps(v), flush=True)
'''

lab.start_capture(SCEN + ".pcapng", tool="dumpcap")
pr = lab.client(CLIENT, [lab.ip_s, PORT], background=True)
time.sleep(0.6)
c = lab.curl(["http://%s:%d/fast" % (lab.ip_s, PORT)], "curl-GET-/fast")
logs = lab.collect(pr)
lab.stop_capture()
for d in logs:
    d["lport"] = d["ports"][0] if d["ports"] else None
logs.append(c)
for d in logs:
    L.log(d)
with open(lab.path("gunicorn.err")) as f:
    glog = [l.strip() for l in f if "WORKER TIMEOUT" in l or "SIGKILL" in l or "killed" in l.lower()]
L.log("gunicorn:", glog)
V = L.versions()

def label(c, logs):
    d = L.by_port(logs, c["client_port"]) or {"who": "?", "saw": "?", "waited": 0}
    if d["who"] == "curl-GET-/fast":
        return {"cause": "graceful", "client_saw": d["saw"], "how": "Design: /fast answered at once by another sync worker (Content-Length), gunicorn closed after the response; complete."}
    return {"cause": "server-timeout", "client_saw": d["saw"],
            "how": "Design: the gunicorn sync worker handling %s blocked with SIGABRT masked; after --timeout 2 the arbiter's SIGABRT had no effect and it SIGKILLed the worker (gunicorn log: %s); the kernel closed the fully-read connection with FIN and no response byte; the client waited %.1f s." % (d["who"], "; ".join(glog)[:200], d["waited"])}

L.write_labels(lab, "gunicorn sync worker stuck past --timeout 2 (SIGABRT masked) is SIGKILLed: connection closed without a response (requests, httpx); one normal request (curl)",
               [V["gunicorn"], V["requests"], V["httpx"], V["curl"]], label, logs,
               expect={"server-timeout": 2, "graceful": 1})
