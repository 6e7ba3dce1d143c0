#!/usr/bin/env python3
"""keepalive-race / idle-close with an aiohttp server (keepalive_timeout=1 s)
and an aiohttp ClientSession, over a veth pair between two namespaces
(MTU 1500, offloads off), pcapng written by dumpcap.

  1. POST, then the client's event loop is blocked 1.15 s (time.sleep: a busy
     loop, so the server's FIN is not processed), then POST on the pooled
     connection -> server kernel RST -> ServerDisconnectedError.
  2. Same with GET: aiohttp retries the idempotent GET on a new connection,
     the user sees 200, but the first connection is the same keepalive-race.
  3. GET, then asyncio.sleep(1.5): the loop sees the FIN, aiohttp drops the
     connection (client FIN at once): idle-close; the next request uses a new
     connection (graceful, closed by session.close()).

    python3 sample_pcaps/lab/la-keepalive-race-aiohttp.py
"""
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("la_lib", os.path.join(os.path.dirname(os.path.abspath(__file__)), "la-lib.py"))
L = importlib.util.module_from_spec(spec); spec.loader.exec_module(L)

SCEN = "la-keepalive-race-aiohttp"
PORT = 18081
lab = L.Lab(SCEN, veth=True)
SERVER = r'''
import sys
from aiohttp import web
async def h(request):
    await request.read()
    return web.Response(text="ok %s %s\n" % (request.method, request.path))
app = web.Application()
app.router.add_route("*", "/{tail:.*}", h)
web.run_app(app, host=sys.argv[1], port=int(sys.argv[2]), keepalive_timeout=1.0, print=None)
'''
lab.pyserver(lab.ns_s, SERVER, [lab.ip_s, PORT])
lab.wait_listen(lab.ns_s, PORT)

CLIENT = r'''
import asyncio, json, sys, time, aiohttp
base = "http://%s:%s" % (sys.argv[1], sys.argv[2])
PORTS = []
class Conn(aiohttp.TCPConnector):
    async def _create_connection(self, *a, **kw):
        proto = await super()._create_connection(*a, **kw)
        PORTS.append(proto.transport.get_extra_info("sockname")[1])
        return proto
async def req(s, method, path, seen):
    try:
        async with s.request(method, base + path, data=b"x" * 100 if method == "POST" else None) as r:
            await r.read()
            seen.append(("HTTP %d" % r.status, None))
    except Exception as e:
        seen.append(("%s: %s" % (type(e).__name__, e), None))
        return None
async def case(name, method, block, asleep):
    seen = []
    del PORTS[:]
    async with aiohttp.ClientSession(connector=Conn(limit=1)) as s:
        await req(s, method, "/first", seen)
        if block:
            time.sleep(block)          # event loop busy: FIN not noticed
        if asleep:
            await asyncio.sleep(asleep)
        await req(s, method, "/second", seen)
        await asyncio.sleep(0.2)
    print(json.dumps({"who": name, "lport": PORTS[0], "other_ports": PORTS[1:],
                      "saw": "; ".join(x for x, _ in seen), "method": method}))
    await asyncio.sleep(0.3)
async def main():
    await case("post-busy-loop", "POST", 1.15, 0)
    await case("get-busy-loop", "GET", 1.15, 0)
    await case("get-idle-sleep", "GET", 0, 1.5)
asyncio.run(main())
'''

lab.start_capture(SCEN + ".pcapng", tool="dumpcap")
logs = lab.client(CLIENT, [lab.ip_s, PORT])
lab.stop_capture()
for d in logs:
    L.log(d)
V = L.versions()

def label(c, logs):
    d = L.by_port(logs, c["client_port"])
    if d is not None:           # the first connection of a case
        if d["who"] == "get-idle-sleep":
            return {"cause": "idle-close", "client_saw": "HTTP 200 (next request went to a new connection)",
                    "how": "Design: after a complete GET the client awaited asyncio.sleep(1.5); the aiohttp server's keepalive_timeout (1 s) closed the idle connection with FIN, the client's loop saw it and closed too; no request was lost."}
        how = ("Design: after a complete %s the client's event loop was blocked 1.15 s (time.sleep), so the server's idle FIN "
               "(aiohttp keepalive_timeout 1 s) was not processed and the next %s was written on the closed connection; the server kernel answered RST. "
               % (d["method"], d["method"]))
        if d["method"] == "GET":
            how += "aiohttp retried the idempotent GET on a new connection, so the user saw only 200s (client log: %s)." % d["saw"]
            saw = d["saw"] + " (lost GET retried silently by aiohttp)"
        else:
            how += "The POST is not retried: client log: %s." % d["saw"]
            saw = d["saw"]
        return {"cause": "keepalive-race", "client_saw": saw, "how": how}
    for d in logs:
        if c["client_port"] in d.get("other_ports", []):
            return {"cause": "graceful", "client_saw": "HTTP 200",
                    "how": "Design: fresh connection opened by aiohttp for the request after the dead one (%s); complete response, closed when the ClientSession closed." % d["who"]}
    return {"cause": "graceful", "client_saw": "HTTP 200", "how": "Design: fresh connection for a retried/next request; complete response."}

L.write_labels(lab, "aiohttp server keepalive_timeout 1 s, aiohttp client: POST and GET sent on a connection the server closed while the client's event loop was blocked (keepalive-race; GET retried silently), and a plain idle close",
               [V["aiohttp"] + " (server and client)", V["python"]], label, logs,
               expect={"keepalive-race": 2, "idle-close": 1})
