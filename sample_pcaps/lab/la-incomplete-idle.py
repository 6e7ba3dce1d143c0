#!/usr/bin/env python3
"""incomplete: an aiohttp server (keepalive_timeout 60 s) with an endless
event stream; the capture stops while an aiohttp client is still reading the
stream and an httpx Client holds an idle keep-alive connection after one
complete request.  Capture: -i lo in a private namespace, snaplen 256,
classic pcap.

    python3 sample_pcaps/lab/la-incomplete-idle.py
"""
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location("la_lib", os.path.join(os.path.dirname(os.path.abspath(__file__)), "la-lib.py"))
L = importlib.util.module_from_spec(spec); spec.loader.exec_module(L)

SCEN = "la-incomplete-idle"
PORT = 18100
lab = L.Lab(SCEN)
SERVER = r'''
import asyncio, sys
from aiohttp import web
async def events(request):
    r = web.StreamResponse(headers={"Content-Type": "text/event-stream"}); await r.prepare(request)
    i = 0
    while True:
        await r.write(b"data: tick %d\n\n" % i); i += 1; await asyncio.sleep(0.25)
async def h(request):
    return web.Response(text="ok\n")
app = web.Application(); app.router.add_get("/events", events); app.router.add_get("/{tail:.*}", h)
web.run_app(app, host=sys.argv[1], port=int(sys.argv[2]), keepalive_timeout=60, print=None)
'''
lab.pyserver(lab.ns_s, SERVER, [lab.ip_s, PORT])
lab.wait_listen(lab.ns_s, PORT)
CLIENT = L.PORT_HOOK + r'''
import asyncio, json, sys, time, threading, aiohttp, httpx
base = "http://%s:%s" % (sys.argv[1], sys.argv[2])
def hx():
    c = httpx.Client()
    r = c.get(base + "/status")
    print(json.dumps({"who": "httpx-Client-idle", "ports": list(PORTS), "saw": "HTTP %d" % r.status_code}), flush=True)
    time.sleep(30)
AIO = []
def aio():
    class Conn(aiohttp.TCPConnector):
        async def _create_connection(self, *a, **kw):
            proto = await super()._create_connection(*a, **kw)
            AIO.append(proto.transport.get_extra_info("sockname")[1]); return proto
    async def go():
        async with aiohttp.ClientSession(connector=Conn()) as s:
            async with s.get(base + "/events") as r:
                print(json.dumps({"who": "aiohttp-event-stream", "ports": AIO, "saw": "HTTP %d, stream open" % r.status}), flush=True)
                async for _ in r.content:
                    pass
    asyncio.run(go())
threading.Thread(target=hx, daemon=True).start()
time.sleep(0.2)
aio()
'''
lab.start_capture(SCEN + ".pcap", snaplen=256)
pr = lab.client(CLIENT, [lab.ip_s, PORT], background=True)
time.sleep(3.0)
lab.stop_capture(settle=0)
time.sleep(0.2)
with open(lab.path("client.out")) as f:
    logs = L.parse_jsonl(f.read())
for d in logs:
    d["lport"] = d["ports"][0] if d["ports"] else None
    L.log(d)
V = L.versions()
def label(c, logs):
    d = L.by_port(logs, c["client_port"]) or {"who": "?", "saw": "?"}
    if d["who"] == "httpx-Client-idle":
        return {"cause": "incomplete", "client_saw": d["saw"] + " (connection still pooled)",
                "how": "Design: httpx Client kept the connection after one complete request; aiohttp server keepalive_timeout 60 s; the capture stopped with it idle and open."}
    return {"cause": "incomplete", "client_saw": d["saw"],
            "how": "Design: an endless text/event-stream response (one event every 0.25 s) still flowing when the capture stopped."}
L.write_labels(lab, "capture stopped while an aiohttp event stream is flowing and an httpx keep-alive connection is idle",
               [V["aiohttp"] + " (server and client)", V["httpx"]], label, logs, expect={"incomplete": 2})
