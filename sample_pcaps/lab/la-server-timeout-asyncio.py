#!/usr/bin/env python3
"""server-timeout with an overloaded asyncio backend: it reads the whole
request, "works" for 3 s (its own handler deadline), then gives up and closes
the connection (FIN) without a response byte.  Three clients wait in
parallel: requests (RemoteDisconnected), aiohttp POST (ServerDisconnectedError),
curl (exit 52).  Capture: -i any (LINUX_SLL, cooked v1) in a private
namespace whose traffic is all on lo.

    python3 sample_pcaps/lab/la-server-timeout-asyncio.py
"""
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location("la_lib", os.path.join(os.path.dirname(os.path.abspath(__file__)), "la-lib.py"))
L = importlib.util.module_from_spec(spec); spec.loader.exec_module(L)

SCEN = "la-server-timeout-asyncio"
PORT = 18085
lab = L.Lab(SCEN)
SERVER = r'''
import asyncio, sys
async def handle(reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        for l in head.split(b"\r\n"):
            if l.lower().startswith(b"content-length:"):
                await reader.readexactly(int(l.split(b":")[1]))
        await asyncio.sleep(3.0)          # the backend never finishes in time
    except Exception:
        pass
    writer.close()                        # give up: FIN, no response
async def main():
    srv = await asyncio.start_server(handle, sys.argv[1], int(sys.argv[2]))
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
'''
lab.pyserver(lab.ns_s, SERVER, [lab.ip_s, PORT])
lab.wait_listen(lab.ns_s, PORT)

CLIENT = L.PORT_HOOK + r'''
import asyncio, json, sys, time, threading, requests, aiohttp
base = "http://%s:%s" % (sys.argv[1], sys.argv[2])
def out(name, ports, saw, t0):
    print(json.dumps({"who": name, "ports": ports, "saw": saw, "waited": round(time.time() - t0, 3)}), flush=True)
def req():
    t0 = time.time()
    try:
        r = requests.get(base + "/report?year=2024", timeout=10); saw = "HTTP %d" % r.status_code
    except Exception as e:
        saw = "%s: %s" % (type(e).__name__, e)
    out("requests-GET", [p for p in PORTS if p not in AIO], saw, t0)
AIO = []
def aio():
    class Conn(aiohttp.TCPConnector):
        async def _create_connection(self, *a, **kw):
            proto = await super()._create_connection(*a, **kw)
            AIO.append(proto.transport.get_extra_info("sockname")[1]); return proto
    async def go():
        t0 = time.time()
        try:
            async with aiohttp.ClientSession(connector=Conn(), timeout=aiohttp.ClientTimeout(total=10)) as s:
                async with s.post(base + "/jobs", json={"n": 1}) as r:
                    await r.read(); saw = "HTTP %d" % r.status
        except Exception as e:
            saw = "%s: %s" % (type(e).__name__, e)
        out("aiohttp-POST", AIO, saw, t0)
    asyncio.run(go())
t = threading.Thread(target=aio); t.start()
time.sleep(0.1)
req()
t.join()
'''

lab.start_capture(SCEN + ".pcap", iface="any", linktype="LINUX_SLL")
pr = lab.client(CLIENT, [lab.ip_s, PORT], background=True)
time.sleep(0.3)
t0 = time.time()
c = lab.curl(["http://%s:%d/export.csv" % (lab.ip_s, PORT)], "curl-GET")
c["waited"] = round(time.time() - t0, 3)
logs = lab.collect(pr)
lab.stop_capture()
for d in logs:
    d["lport"] = d["ports"][0] if d["ports"] else None
logs.append(c)
for d in logs:
    L.log(d)
V = L.versions()

def label(c, logs):
    d = L.by_port(logs, c["client_port"]) or {"who": "?", "saw": "?", "waited": 0}
    return {"cause": "server-timeout", "client_saw": d["saw"],
            "how": "Design: the asyncio backend read the complete request, waited 3 s (its handler deadline) and closed the connection without any response byte; the client (%s) waited %.1f s." % (d["who"], d["waited"])}

L.write_labels(lab, "asyncio backend reads the request, stalls 3 s, then closes without responding (requests, aiohttp POST, curl in parallel)",
               [V["asyncio"] + " server", V["requests"], V["aiohttp"], V["curl"]], label, logs,
               expect={"server-timeout": 3})
