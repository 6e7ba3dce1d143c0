#!/usr/bin/env python3
"""server-abort from a crashed/restarted process: a threaded socket service streams
slow chunked responses to 3 uploads without reading their bodies; the script
kills it with SIGKILL while all three responses are flowing.  The kernel
resets all three connections within a millisecond (request bytes unread) -
the restart signature.  Clients: httpx (streaming), aiohttp, curl.
Capture: -i lo in a private namespace, snaplen 256, pcapng by dumpcap.

    python3 sample_pcaps/lab/la-server-abort-restart.py
"""
import importlib.util, os, sys, time, signal
spec = importlib.util.spec_from_file_location("la_lib", os.path.join(os.path.dirname(os.path.abspath(__file__)), "la-lib.py"))
L = importlib.util.module_from_spec(spec); spec.loader.exec_module(L)

SCEN = "la-server-abort-restart"
PORT = 18093
lab = L.Lab(SCEN)
SERVER = r'''
import socket, sys, threading, time
def serve(c):
    head = b""
    while b"\r\n\r\n" not in head:
        head += c.recv(64)                         # head only: the body stays unread in the kernel
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
    for i in range(100):
        line = b"progress %d%%\n" % i
        c.sendall(b"%x\r\n%s\r\n" % (len(line), line))
        time.sleep(0.2)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''
srv = lab.pyserver(lab.ns_s, SERVER, [lab.ip_s, PORT])
lab.wait_listen(lab.ns_s, PORT)

CLIENT = L.PORT_HOOK + r'''
import asyncio, json, sys, time, threading, httpx, aiohttp
base = "http://%s:%s" % (sys.argv[1], sys.argv[2])
BODY = b"u" * 60000
RES = []
def hx():
    n = 0
    try:
        with httpx.Client(timeout=10) as c:
            with c.stream("POST", base + "/import", content=BODY) as r:
                for chunk in r.iter_bytes():
                    n += len(chunk)
        saw = "HTTP %d complete" % r.status_code
    except Exception as e:
        saw = "%s: %s (after %d body bytes)" % (type(e).__name__, e, n)
    RES.append({"who": "httpx-stream-POST", "saw": saw, "ports": list(PORTS)})
AIO = []
def aio():
    class Conn(aiohttp.TCPConnector):
        async def _create_connection(self, *a, **kw):
            proto = await super()._create_connection(*a, **kw)
            AIO.append(proto.transport.get_extra_info("sockname")[1]); return proto
    async def go():
        n = 0
        try:
            async with aiohttp.ClientSession(connector=Conn()) as s:
                async with s.post(base + "/import", data=BODY) as r:
                    async for chunk in r.content.iter_any():
                        n += len(chunk)
            return "HTTP %d complete" % r.status
        except Exception as e:
            return "%s: %s (after %d body bytes)" % (type(e).__name__, e, n)
    RES.append({"who": "aiohttp-POST", "saw": asyncio.run(go()), "ports": AIO})
t1 = threading.Thread(target=hx); t1.start()
time.sleep(0.2)
t2 = threading.Thread(target=aio); t2.start()
t1.join(); t2.join()
for r in RES: print(json.dumps(r))
'''

lab.start_capture(SCEN + ".pcapng", tool="dumpcap", snaplen=256)
pr = lab.client(CLIENT, [lab.ip_s, PORT], background=True)
import subprocess, json as _j
body = lab.write("body.txt", "c" * 60000)
cu = subprocess.Popen(["ip", "netns", "exec", lab.ns_c, "curl", "-sS", "-o", "/dev/null", "--local-port", "41001",
                       "--max-time", "15", "--data-binary", "@" + body, "http://%s:%d/import" % (lab.ip_s, PORT)],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
lab.procs.append(cu)
t0 = time.time()
while time.time() - t0 < 10:                      # wait until all 3 responses are flowing
    n = L.run(["ip", "netns", "exec", lab.ns_s, "ss", "-Htn", "state", "established", "sport", "= :%d" % PORT]).stdout.strip().splitlines()
    if len(n) >= 3:
        break
    time.sleep(0.05)
time.sleep(0.6)
srv.send_signal(signal.SIGKILL)                   # the crash / hard restart
out, err = cu.communicate(timeout=15)
logs = lab.collect(pr)
lab.stop_capture()
for d in logs:
    d["lport"] = d["ports"][0] if d["ports"] else None
logs.append({"who": "curl-POST", "lport": 41001, "saw": "curl exit %d: %s" % (cu.returncode, err.strip())})
for d in logs:
    L.log(d)
V = L.versions()

def label(c, logs):
    d = L.by_port(logs, c["client_port"]) or {"who": "?", "saw": "?"}
    return {"cause": "server-abort", "client_saw": d["saw"],
            "how": "Design: the threaded socket service was streaming a chunked response to this upload (%s) without having read the 60 kB request body (it reads the request head in 64-byte steps and never the body); the script SIGKILLed the server process, and its kernel reset every connection that still had unread request bytes (all resets within about a millisecond: a crash/restart)." % d["who"]}

L.write_labels(lab, "threaded socket streaming service SIGKILLed mid-response with unread request bodies: the kernel resets 3 connections at once (httpx, aiohttp, curl)",
               [V["socket"] + " server (threads)", V["httpx"], V["aiohttp"], V["curl"]], label, logs, expect={"server-abort": 3})
