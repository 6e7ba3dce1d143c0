#!/usr/bin/env python3
"""connection-refused across a veth pair: the server namespace has nothing on
port 18095 (its nginx listens on 18096 only); its kernel answers each SYN
with RST/ACK.  Clients: aiohttp, httpx, curl; one successful curl to the
open port for contrast (graceful).  Capture: -i any with LINUX_SLL2 in the
client namespace, gzip-compressed pcap.

    python3 sample_pcaps/lab/la-connection-refused-veth.py
"""
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("la_lib", os.path.join(os.path.dirname(os.path.abspath(__file__)), "la-lib.py"))
L = importlib.util.module_from_spec(spec); spec.loader.exec_module(L)

SCEN = "la-connection-refused-veth"
PORT, OPEN = 18095, 18096
lab = L.Lab(SCEN, veth=True)
lab.nginx(lab.ns_s, 'listen %s:%d; location / { return 200 "up\\n"; }' % (lab.ip_s, OPEN))
lab.wait_listen(lab.ns_s, OPEN)
CLIENT = r'''
import asyncio, json, sys, time, httpx, aiohttp
host, port = sys.argv[1], int(sys.argv[2])
def case(name, lport, fn):
    try:
        saw = fn(lport)
    except Exception as e:
        saw = "%s: %s" % (type(e).__name__, e)
    print(json.dumps({"who": name, "lport": lport, "saw": saw}), flush=True)
    time.sleep(0.2)
def aio(lport):
    async def go():
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("10.203.0.1", lport))) as s:
            async with s.get("http://%s:%d/api" % (host, port)) as r:
                return "HTTP %d" % r.status
    return asyncio.run(go())
def hx(lport):
    import socket
    orig = socket.create_connection
    def cc(addr, timeout=None, source_address=None, **kw):
        return orig(addr, timeout, ("10.203.0.1", lport), **kw)
    socket.create_connection = cc
    try:
        return "HTTP %d" % httpx.get("http://%s:%d/api" % (host, port), timeout=3).status_code
    finally:
        socket.create_connection = orig
case("aiohttp-GET", 43011, aio)
case("httpx-GET", 43012, hx)
'''
lab.start_capture(SCEN + ".pcap.gz", iface="any", linktype="LINUX_SLL2")
logs = lab.client(CLIENT, [lab.ip_s, PORT])
logs.append(lab.curl(["http://%s:%d/api" % (lab.ip_s, PORT)], "curl-GET"))
logs.append(lab.curl(["http://%s:%d/" % (lab.ip_s, OPEN)], "curl-GET-open-port"))
lab.stop_capture()
for d in logs:
    L.log(d)
V = L.versions()
def label(c, logs):
    d = L.by_port(logs, c["client_port"]) or {"who": "?", "saw": "?"}
    if d["who"] == "curl-GET-open-port":
        return {"cause": "graceful", "client_saw": d["saw"], "how": "Design: the open port (nginx); complete 200, curl closed."}
    return {"cause": "connection-refused", "client_saw": d["saw"],
            "how": "Design: nothing listens on %s:%d; the server namespace's kernel answered the SYN with RST/ACK (%s)." % (lab.ip_s, PORT, d["who"])}
L.write_labels(lab, "connect across a veth pair to a closed port: SYN answered by RST/ACK (aiohttp, httpx, curl), plus one request to the open port",
               [V["aiohttp"], V["httpx"], V["curl"], V["nginx"]], label, logs, expect={"connection-refused": 3, "graceful": 1})
