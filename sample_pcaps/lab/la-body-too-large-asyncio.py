#!/usr/bin/env python3
"""body-too-large with a small asyncio upload service (limit 64 KiB): on a
larger Content-Length it answers 413 + Connection: close and closes without
reading the body (the kernel resets: unread data), or, on /raw, closes
without answering at all.  Clients: httpx and aiohttp uploading 3 MB, one
small httpx upload (graceful).  Capture: -i lo in a private namespace,
snaplen 256, classic pcap gzip-compressed.

    python3 sample_pcaps/lab/la-body-too-large-asyncio.py
"""
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("la_lib", os.path.join(os.path.dirname(os.path.abspath(__file__)), "la-lib.py"))
L = importlib.util.module_from_spec(spec); spec.loader.exec_module(L)

SCEN = "la-body-too-large-asyncio"
PORT = 18088
lab = L.Lab(SCEN)
SERVER = r'''
import asyncio, sys
LIMIT = 65536
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ")[1]
            n = 0
            for l in head.split(b"\r\n"):
                if l.lower().startswith(b"content-length:"):
                    n = int(l.split(b":")[1])
            if n > LIMIT:
                if not path.startswith(b"/raw"):
                    msg = b"upload limit is 64 KiB\n"
                    writer.write(b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(msg), msg))
                    await writer.drain()
                writer.close()            # body left unread
                return
            await reader.readexactly(n)
            writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nok\n")
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
import asyncio, json, sys, time, httpx, aiohttp
base = "http://%s:%s" % (sys.argv[1], sys.argv[2])
BODY = b"B" * (3 * 1024 * 1024)
def case(name, fn):
    del PORTS[:]
    try:
        saw = fn()
    except Exception as e:
        saw = "%s: %s" % (type(e).__name__, e)
    print(json.dumps({"who": name, "ports": list(PORTS), "saw": saw}), flush=True)
    time.sleep(0.3)
def hx(path, body):
    def f():
        with httpx.Client(timeout=10) as c:
            return "HTTP %d" % c.post(base + path, content=body).status_code
    return f
def aio(path):
    class Conn(aiohttp.TCPConnector):
        async def _create_connection(self, *a, **kw):
            proto = await super()._create_connection(*a, **kw)
            PORTS.append(proto.transport.get_extra_info("sockname")[1]); return proto
    async def go():
        async with aiohttp.ClientSession(connector=Conn(), timeout=aiohttp.ClientTimeout(total=10)) as s:
            async with s.post(base + path, data=BODY) as r:
                await r.read(); return "HTTP %d" % r.status
    return lambda: asyncio.run(go())
case("httpx-POST-3MB", hx("/upload", BODY))
case("aiohttp-POST-3MB", aio("/upload"))
case("httpx-POST-3MB-/raw", hx("/raw/upload", BODY))
case("aiohttp-POST-3MB-/raw", aio("/raw/upload"))
case("httpx-POST-1KB", hx("/upload", b"s" * 1024))
'''

lab.start_capture(SCEN + ".pcap.gz", snaplen=256)
logs = lab.client(CLIENT, [lab.ip_s, PORT])
lab.stop_capture()
for d in logs:
    d["lport"] = d["ports"][0] if d["ports"] else None
for d in logs:
    L.log(d)
V = L.versions()

def label(c, logs):
    for d in logs:
        if c["client_port"] in d["ports"]:
            if d["who"] == "httpx-POST-1KB":
                return {"cause": "graceful", "client_saw": d["saw"], "how": "Design: 1 KiB upload under the limit; 201, client closed."}
            how = ("Design: %s declared Content-Length 3145728 (limit 64 KiB); the server %s and closed without reading the body, so its kernel reset the connection; "
                   "the client had sent %d bytes (headers+body) of 3 MB."
                   % (d["who"], "answered nothing" if "/raw" in d["who"] else "answered 413 Connection: close", c["client_data"]))
            if len(d["ports"]) > 1:
                how += " The client opened %d connections for this upload." % len(d["ports"])
            return {"cause": "body-too-large", "client_saw": d["saw"], "how": how}
    return {"cause": "unknown", "client_saw": "", "how": "not matched"}

L.write_labels(lab, "asyncio upload service with a 64 KiB limit answers 413 (or nothing) and closes without reading 3 MB bodies: kernel RST (httpx, aiohttp)",
               [V["asyncio"] + " server", V["httpx"], V["aiohttp"]], label, logs,
               expect={"body-too-large": 4, "graceful": 1})
