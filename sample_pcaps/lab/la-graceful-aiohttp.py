#!/usr/bin/env python3
"""graceful: an aiohttp server (keepalive 75 s default) and pooled clients:
aiohttp ClientSession (3 requests incl. a POST, then session close), httpx
Client (2 requests, then close), and a small chunked download with requests
(stream=True, fully read).  Capture: veth pair (MTU 1500, offloads off),
pcapng written by dumpcap.

    python3 sample_pcaps/lab/la-graceful-aiohttp.py
"""
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("la_lib", os.path.join(os.path.dirname(os.path.abspath(__file__)), "la-lib.py"))
L = importlib.util.module_from_spec(spec); spec.loader.exec_module(L)

SCEN = "la-graceful-aiohttp"
PORT = 18098
lab = L.Lab(SCEN, veth=True)
SERVER = r'''
import asyncio, sys
from aiohttp import web
async def h(request):
    await request.read()
    if request.path.startswith("/feed"):
        r = web.StreamResponse(); await r.prepare(request)
        for i in range(5):
            await r.write(b"line %d\n" % i); await asyncio.sleep(0.05)
        await r.write_eof(); return r
    return web.json_response({"path": request.path, "method": request.method})
app = web.Application(); app.router.add_route("*", "/{tail:.*}", h)
web.run_app(app, host=sys.argv[1], port=int(sys.argv[2]), print=None)
'''
lab.pyserver(lab.ns_s, SERVER, [lab.ip_s, PORT])
lab.wait_listen(lab.ns_s, PORT)
CLIENT = L.PORT_HOOK + r'''
import asyncio, json, sys, time, aiohttp, httpx, requests
base = "http://%s:%s" % (sys.argv[1], sys.argv[2])
AIO = []
def case(name, fn):
    del PORTS[:]; del AIO[:]
    try:
        saw = fn()
    except Exception as e:
        saw = "%s: %s" % (type(e).__name__, e)
    print(json.dumps({"who": name, "ports": list(PORTS) + list(AIO), "saw": saw}), flush=True)
    time.sleep(0.2)
def aio():
    class Conn(aiohttp.TCPConnector):
        async def _create_connection(self, *a, **kw):
            proto = await super()._create_connection(*a, **kw)
            AIO.append(proto.transport.get_extra_info("sockname")[1]); return proto
    async def go():
        out = []
        async with aiohttp.ClientSession(connector=Conn()) as s:
            for m, p in (("GET", "/users"), ("POST", "/users"), ("GET", "/users/1")):
                async with s.request(m, base + p, json={"n": 1} if m == "POST" else None) as r:
                    await r.read(); out.append("HTTP %d" % r.status)
        return "; ".join(out)
    return asyncio.run(go())
def hx():
    with httpx.Client() as c:
        return "; ".join("HTTP %d" % c.get(base + p).status_code for p in ("/a", "/b"))
def req_stream():
    with requests.Session() as s:
        r = s.get(base + "/feed", stream=True); n = sum(len(x) for x in r.iter_content(64)); r.close()
        return "HTTP %d, %d bytes" % (r.status_code, n)
case("aiohttp-ClientSession-3", aio)
case("httpx-Client-2", hx)
case("requests-stream-chunked", req_stream)
'''
lab.start_capture(SCEN + ".pcapng", tool="dumpcap")
logs = lab.client(CLIENT, [lab.ip_s, PORT])
lab.stop_capture()
for d in logs:
    d["lport"] = d["ports"][0] if d["ports"] else None
    L.log(d)
V = L.versions()
def label(c, logs):
    d = L.by_port(logs, c["client_port"]) or {"who": "?", "saw": "?"}
    return {"cause": "graceful", "client_saw": d["saw"],
            "how": "Design: %s against an aiohttp server with its default 75 s keep-alive: every response complete, then the client closed its pool." % d["who"]}
L.write_labels(lab, "normal keep-alive traffic to an aiohttp server: aiohttp ClientSession, httpx Client, requests streaming a chunked response",
               [V["aiohttp"] + " (server and client)", V["httpx"], V["requests"]], label, logs, expect={"graceful": 3})
