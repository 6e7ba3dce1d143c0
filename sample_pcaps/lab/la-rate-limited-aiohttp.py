#!/usr/bin/env python3
"""rate-limited with an aiohttp server that admits at most 2 requests in
flight (handler takes 0.5 s) and sheds the rest with 503 + Retry-After: 1 +
Connection: close (server FIN after the 503).  Clients in parallel: an httpx
AsyncClient with 6 concurrent requests (one connection each) and 4 curl processes
started at once.  Capture: -i lo in a private namespace, classic pcap.

    python3 sample_pcaps/lab/la-rate-limited-aiohttp.py
"""
import importlib.util, os, sys, subprocess, time, json
spec = importlib.util.spec_from_file_location("la_lib", os.path.join(os.path.dirname(os.path.abspath(__file__)), "la-lib.py"))
L = importlib.util.module_from_spec(spec); spec.loader.exec_module(L)

SCEN = "la-rate-limited-aiohttp"
PORT = 18090
lab = L.Lab(SCEN)
SERVER = r'''
import asyncio, sys
from aiohttp import web
INFLIGHT = 0
@web.middleware
async def shed(request, handler):
    global INFLIGHT
    if INFLIGHT >= 2:
        return web.Response(status=503, text="busy, retry later\n",
                            headers={"Retry-After": "1", "Connection": "close"})
    INFLIGHT += 1
    try:
        return await handler(request)
    finally:
        INFLIGHT -= 1
async def h(request):
    await asyncio.sleep(0.5)
    return web.Response(text="report ready\n")
app = web.Application(middlewares=[shed])
app.router.add_get("/{tail:.*}", h)
web.run_app(app, host=sys.argv[1], port=int(sys.argv[2]), print=None)
'''
lab.pyserver(lab.ns_s, SERVER, [lab.ip_s, PORT])
lab.wait_listen(lab.ns_s, PORT)

CLIENT = L.PORT_HOOK + r'''
import asyncio, json, sys, httpx
base = "http://%s:%s" % (sys.argv[1], sys.argv[2])
async def main():
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=10, max_keepalive_connections=0), timeout=10) as c:
        async def one(i):
            try:
                r = await c.get(base + "/report/%d" % i); return "HTTP %d" % r.status_code
            except Exception as e:
                return "%s: %s" % (type(e).__name__, e)
        res = await asyncio.gather(*[one(i) for i in range(6)])
    print(json.dumps({"who": "httpx-async-x6", "ports": list(PORTS), "saw": res}))
asyncio.run(main())
'''

lab.start_capture(SCEN + ".pcap")
pr = lab.client(CLIENT, [lab.ip_s, PORT], background=True)
# 4 curl processes started at once, local ports 41001-41004 (one connection each)
url = "http://%s:%d/report/c%d"
fmt = '{"lport":%{local_port},"code":%{http_code}}\n'
cps = [subprocess.Popen(["ip", "netns", "exec", lab.ns_c, "curl", "-sS", "--local-port", str(41000 + i), "--max-time", "10",
                         "-o", "/dev/null", "-w", fmt, url % (lab.ip_s, PORT, i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
       for i in range(1, 5)]
lab.procs.extend(cps)
outs = [cp.communicate(timeout=20)[0] for cp in cps]
logs = lab.collect(pr)
lab.stop_capture()
curls = [dict(d, who="curl", saw="HTTP %d" % d["code"]) for o in outs for d in L.parse_jsonl(o)]
for d in logs + curls:
    L.log(d)
V = L.versions()
# httpx: one result per request, ports in connection order; the connection's own response code comes from the packets
def label(c, _):
    code = c["codes"][0] if c["codes"] else None
    who = "curl" if 41001 <= c["client_port"] <= 41004 else "httpx AsyncClient"
    saw = "HTTP %s" % code if code else "?"
    if code is None:
        return {"cause": "unknown", "client_saw": "?", "how": "No request seen on this connection (unexpected)."}
    if code == "200":
        return {"cause": "graceful", "client_saw": saw, "how": "Design: admitted by the aiohttp server's in-flight limit (2); complete 200 after 0.5 s (%s)." % who}
    return {"cause": "rate-limited", "client_saw": saw,
            "how": "Design: 10 connections (6 httpx + 4 curl) hit an aiohttp server that admits 2 requests in flight; it shed this one with 503 Retry-After: 1 and Connection: close; the client, told to close, sent the first FIN (%s)." % who}

L.write_labels(lab, "aiohttp server sheds load beyond 2 in-flight requests with 503 + Retry-After + Connection: close (httpx AsyncClient x6 and curl x4 in parallel)",
               [V["aiohttp"] + " server", V["httpx"], V["curl"]], label, logs, expect={"rate-limited": 5})
