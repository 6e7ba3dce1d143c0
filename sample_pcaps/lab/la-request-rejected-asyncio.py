#!/usr/bin/env python3
"""request-rejected with a plain asyncio server acting like an API gateway /
WAF: it reads the request head and, when the X-Api-Key header is missing,
closes at once without answering (FIN); for paths under /admin it aborts
with SO_LINGER 0 (RST).  Clients: httpx, aiohttp, http.client (with the key:
200, graceful).  Capture: -i lo in a private namespace with snaplen 256,
converted to pcapng with editcap.

    python3 sample_pcaps/lab/la-request-rejected-asyncio.py
"""
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("la_lib", os.path.join(os.path.dirname(os.path.abspath(__file__)), "la-lib.py"))
L = importlib.util.module_from_spec(spec); spec.loader.exec_module(L)

SCEN = "la-request-rejected-asyncio"
PORT = 18084
lab = L.Lab(SCEN)
SERVER = r'''
import asyncio, socket, struct, sys
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split()[1]
            hdrs = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
            if path.startswith("/admin"):
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()          # RST, no response
                return
            if "x-api-key" not in hdrs:
                writer.close()                    # FIN, no response
                return
            body = b"ok\n"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    srv = await asyncio.start_server(handle, sys.argv[1], int(sys.argv[2]))
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
'''
lab.pyserver(lab.ns_s, SERVER, [lab.ip_s, PORT])
lab.wait_listen(lab.ns_s, PORT)

CLIENT = L.PORT_HOOK + r'''
import asyncio, json, sys, time, http.client, httpx, aiohttp
host, port = sys.argv[1], int(sys.argv[2])
base = "http://%s:%d" % (host, port)
def case(name, fn):
    del PORTS[:]
    try:
        saw = fn()
    except Exception as e:
        saw = "%s: %s" % (type(e).__name__, e)
    print(json.dumps({"who": name, "ports": list(PORTS), "saw": saw}), flush=True)
    time.sleep(0.3)
def httpx_get(path):
    def f():
        with httpx.Client() as c:
            return "HTTP %d" % c.get(base + path).status_code
    return f
def aiohttp_get():
    class Conn(aiohttp.TCPConnector):
        async def _create_connection(self, *a, **kw):
            proto = await super()._create_connection(*a, **kw)
            PORTS.append(proto.transport.get_extra_info("sockname")[1]); return proto
    async def go():
        async with aiohttp.ClientSession(connector=Conn()) as s:
            async with s.get(base + "/v1/orders") as r:
                await r.read(); return "HTTP %d" % r.status
    return asyncio.run(go())
def httpclient_key():
    c = http.client.HTTPConnection(host, port, timeout=5)
    out = []
    for i in range(2):
        c.request("GET", "/v1/orders/%d" % i, headers={"X-Api-Key": "secret"})
        r = c.getresponse(); r.read(); out.append("HTTP %d" % r.status)
    c.close(); return "; ".join(out)
case("httpx-GET-no-key", httpx_get("/v1/orders"))
case("aiohttp-GET-no-key", aiohttp_get)
case("httpx-GET-/admin-RST", httpx_get("/admin/users"))
case("http.client-with-key", httpclient_key)
'''

lab.start_capture(SCEN + ".pcapng", snaplen=256)
logs = lab.client(CLIENT, [lab.ip_s, PORT])
lab.stop_capture()
for d in logs:
    L.log(d)
V = L.versions()

def label(c, logs):
    for d in logs:
        if c["client_port"] in d["ports"]:
            if d["who"] == "http.client-with-key":
                return {"cause": "graceful", "client_saw": d["saw"], "how": "Design: requests carried X-Api-Key; two complete 200 responses, then the client closed."}
            how = ("Design: the asyncio gateway read the complete request head, found %s and %s at once without any response byte (%s)."
                   % ("an /admin path" if "admin" in d["who"] else "no X-Api-Key header",
                      "aborted with SO_LINGER 0 (RST)" if "admin" in d["who"] else "closed (FIN)", d["who"]))
            if len(d["ports"]) > 1:
                how += " The client opened %d connections for this request (retry)." % len(d["ports"])
            return {"cause": "request-rejected", "client_saw": d["saw"], "how": how}
    return {"cause": "unknown", "client_saw": "", "how": "not matched"}

L.write_labels(lab, "asyncio API gateway closes (FIN) or resets (SO_LINGER 0) right after a request that lacks X-Api-Key or targets /admin, without answering (httpx, aiohttp, http.client)",
               [V["asyncio"] + " server", V["httpx"], V["aiohttp"], V["http.client"]], label, logs,
               expect={"request-rejected": 3, "graceful": 1})
