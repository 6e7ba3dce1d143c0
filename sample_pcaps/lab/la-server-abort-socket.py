#!/usr/bin/env python3
"""server-abort from a plain-socket Python server that aborts in the middle of
its response: SO_LINGER 0 + close (RST) after part of a chunked stream
(requests) and after 30 kB of a 200 kB Content-Length download (http.client);
and a second server process that reads only the first 64 bytes of the
request, sends part of a response and crashes (os._exit): the kernel resets
because request bytes were left unread (curl).
Capture: veth pair (MTU 1500, offloads off), classic pcap.

    python3 sample_pcaps/lab/la-server-abort-socket.py
"""
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("la_lib", os.path.join(os.path.dirname(os.path.abspath(__file__)), "la-lib.py"))
L = importlib.util.module_from_spec(spec); spec.loader.exec_module(L)

SCEN = "la-server-abort-socket"
PORT, PORT2 = 18091, 18092
lab = L.Lab(SCEN, veth=True)
SERVER = r'''
import socket, struct, sys, threading, time
def serve(c):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = c.recv(65536)
        if not d: c.close(); return
        buf += d
    path = buf.split(b" ")[1]
    if path.startswith(b"/stream"):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(3):
            line = b"event %d\n" % i
            c.sendall(b"%x\r\n%s\r\n" % (len(line), line)); time.sleep(0.1)
    else:
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 200000\r\n\r\n")
        c.sendall(b"D" * 30000); time.sleep(0.1)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()                                   # abort: RST
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''
CRASHER = r'''
import os, socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
c, _ = s.accept()
c.recv(64)                                      # reads only part of the request
time.sleep(0.05)
c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 5000)
time.sleep(0.1)
os._exit(3)                                     # crash
'''
lab.pyserver(lab.ns_s, SERVER, [lab.ip_s, PORT])
lab.pyserver(lab.ns_s, CRASHER, [lab.ip_s, PORT2], name="crasher")
lab.wait_listen(lab.ns_s, PORT); lab.wait_listen(lab.ns_s, PORT2)

CLIENT = L.PORT_HOOK + r'''
import json, sys, time, http.client, requests
host, port = sys.argv[1], int(sys.argv[2])
def case(name, fn):
    del PORTS[:]
    try:
        saw = fn()
    except Exception as e:
        saw = "%s: %s" % (type(e).__name__, e)
    print(json.dumps({"who": name, "ports": list(PORTS), "saw": saw}), flush=True)
    time.sleep(0.3)
def req_stream():
    r = requests.get("http://%s:%d/stream/events" % (host, port), timeout=5); return "HTTP %d, %d bytes" % (r.status_code, len(r.content))
def hc_download():
    c = http.client.HTTPConnection(host, port, timeout=5)
    c.request("GET", "/files/archive.bin"); r = c.getresponse(); data = r.read(); c.close()
    return "HTTP %d, %d bytes" % (r.status, len(data))
case("requests-GET-chunked-stream", req_stream)
case("http.client-GET-200kB", hc_download)
'''

lab.start_capture(SCEN + ".pcap")
logs = lab.client(CLIENT, [lab.ip_s, PORT])
c = lab.curl(["-H", "X-Trace: " + "t" * 200, "http://%s:%d/export" % (lab.ip_s, PORT2)], "curl-GET-crashing-server")
lab.stop_capture()
for d in logs:
    d["lport"] = d["ports"][0] if d["ports"] else None
logs.append(c)
for d in logs:
    L.log(d)
V = L.versions()

def label(c, logs):
    d = L.by_port(logs, c["client_port"]) or {"who": "?", "saw": "?"}
    if d["who"].startswith("curl"):
        how = "Design: the server process read only 64 bytes of the request, sent headers and 5000 of 100000 body bytes, then crashed (os._exit); the kernel reset the connection because request bytes were unread."
    elif "stream" in d["who"]:
        how = "Design: the server sent the headers and 3 chunks of a chunked response, then closed with SO_LINGER 0 (RST) without the last chunk."
    else:
        how = "Design: the server sent 30000 of 200000 Content-Length bytes, then closed with SO_LINGER 0 (RST)."
    return {"cause": "server-abort", "client_saw": d["saw"], "how": how + " (%s)" % d["who"]}

L.write_labels(lab, "plain-socket servers abort mid-response: SO_LINGER 0 RST during a chunked stream (requests) and a download (http.client), process crash with unread request bytes (curl)",
               [V["socket"] + " server", V["requests"], V["http.client"], V["curl"]], label, logs, expect={"server-abort": 3})
