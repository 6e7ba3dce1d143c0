#!/usr/bin/env python3
"""idle-close with nginx keepalive_timeout 1s and pooling clients that check
the socket before reuse (requests/urllib3, httpx): the server closes the idle
connection with FIN, the client notices it at the next request (or at
close()), closes its side and, if it has more to send, opens a new
connection.  No request is lost.  Capture: -i any with LINUX_SLL2 in the
client namespace of a veth pair (MTU 1500, offloads off).

    python3 sample_pcaps/lab/la-idle-close.py
"""
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("la_lib", os.path.join(os.path.dirname(os.path.abspath(__file__)), "la-lib.py"))
L = importlib.util.module_from_spec(spec); spec.loader.exec_module(L)

SCEN = "la-idle-close"
PORT = 18082
lab = L.Lab(SCEN, veth=True)
lab.nginx(lab.ns_s, """
        listen %s:%d;
        keepalive_timeout 1s;
        location / { return 200 "hello from nginx, idle timeout 1s\\n"; }
""" % (lab.ip_s, PORT))
lab.wait_listen(lab.ns_s, PORT)

CLIENT = r'''
import json, sys, time, socket
import requests, httpx
base = "http://%s:%s" % (sys.argv[1], sys.argv[2])
PORTS = []
# record the local port of every new connection (urllib3 and httpcore both use socket.create_connection)
_orig = socket.create_connection
def cc(*a, **kw):
    s = _orig(*a, **kw); PORTS.append(s.getsockname()[1]); return s
socket.create_connection = cc
import urllib3.util.connection as uc
_uorig = uc.create_connection
def ucc(*a, **kw):
    s = _uorig(*a, **kw); PORTS.append(s.getsockname()[1]); return s
uc.create_connection = ucc

def case(name, fn):
    del PORTS[:]
    seen = fn()
    print(json.dumps({"who": name, "ports": list(PORTS), "saw": seen}))
    time.sleep(0.3)

def requests_two():
    s = requests.Session(); seen = []
    seen.append("HTTP %d" % s.get(base + "/a").status_code)
    time.sleep(2.0)
    seen.append("HTTP %d" % s.get(base + "/b").status_code)
    s.close(); return "; ".join(seen)
def requests_then_close():
    s = requests.Session()
    r = s.get(base + "/c"); time.sleep(1.6); s.close()
    return "HTTP %d" % r.status_code
def httpx_two():
    seen = []
    with httpx.Client() as c:
        seen.append("HTTP %d" % c.get(base + "/d").status_code)
        time.sleep(1.5)
        seen.append("HTTP %d" % c.get(base + "/e").status_code)
    return "; ".join(seen)
case("requests-session-2s-gap", requests_two)
case("requests-session-idle-then-close", requests_then_close)
case("httpx-client-1.5s-gap", httpx_two)
'''

lab.start_capture(SCEN + ".pcap", iface="any", linktype="LINUX_SLL2")
logs = lab.client(CLIENT, [lab.ip_s, PORT])
lab.stop_capture()
for d in logs:
    L.log(d)
V = L.versions()

def label(c, logs):
    for d in logs:
        if c["client_port"] in d["ports"]:
            first = d["ports"][0] == c["client_port"]
            if first:
                return {"cause": "idle-close", "client_saw": "HTTP 200 (all requests: %s)" % d["saw"],
                        "how": "Design (%s): after a complete exchange the connection sat idle longer than nginx's keepalive_timeout 1s; nginx closed it with FIN, the client closed its side when it next looked at the pool; nothing was lost." % d["who"]}
            return {"cause": "graceful", "client_saw": "HTTP 200",
                    "how": "Design (%s): new connection the client opened after noticing the idle close; complete response, then the client closed the pool." % d["who"]}
    return {"cause": "unknown", "client_saw": "", "how": "not matched to a client log"}

L.write_labels(lab, "nginx keepalive_timeout 1s closes idle keep-alive connections of requests.Session and httpx.Client (idle-close), the clients reconnect",
               [V["nginx"], V["requests"], V["urllib3"], V["httpx"]], label, logs,
               expect={"idle-close": 3, "graceful": 2})
