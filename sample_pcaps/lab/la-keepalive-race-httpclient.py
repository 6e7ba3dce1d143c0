#!/usr/bin/env python3
"""keepalive-race (+ graceful) with nginx keepalive_timeout 1s and bare
http.client: after a complete exchange the client waits ~1.0-1.2 s and sends
its 2nd request on the same connection; nginx has already closed it (FIN) and
the server kernel answers the request with RST.  http.client does not check
the socket before reuse, so it races on every request after the timeout.
Capture: -i lo inside a private namespace, classic pcap (EN10MB/loopback).

    python3 sample_pcaps/lab/la-keepalive-race-httpclient.py
"""
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("la_lib", os.path.join(os.path.dirname(os.path.abspath(__file__)), "la-lib.py"))
L = importlib.util.module_from_spec(spec); spec.loader.exec_module(L)

SCEN = "la-keepalive-race-httpclient"
PORT = 18080
lab = L.Lab(SCEN)
lab.nginx(lab.ns_s, """
        listen 127.0.0.1:%d;
        keepalive_timeout 1s;
        location / { return 200 "hello from nginx\\n"; }
""" % PORT)
lab.wait_listen(lab.ns_s, PORT)

CLIENT = r'''
import http.client, json, sys, time
host, port = sys.argv[1], int(sys.argv[2])
def one(name, gaps):
    c = http.client.HTTPConnection(host, port, timeout=5)
    c.connect()
    lport = c.sock.getsockname()[1]
    seen = []
    for i, gap in enumerate([0] + gaps):
        time.sleep(gap)
        try:
            c.request("GET", "/r%d" % i)
            r = c.getresponse(); r.read()
            seen.append("HTTP %d" % r.status)
        except Exception as e:
            seen.append("%s: %s" % (type(e).__name__, e))
            print(json.dumps({"who": name, "lport": lport, "gap": gap, "saw": "; ".join(seen), "failed": True}))
            c.close()
            return
    c.close()
    print(json.dumps({"who": name, "lport": lport, "saw": "; ".join(seen), "failed": False}))
one("reuse-after-1.2s", [1.2])
one("reuse-after-1.05s", [1.05])
one("reuse-after-1.0s", [1.0])
one("three-quick-then-close", [0.3, 0.3])
'''

lab.start_capture(SCEN + ".pcap")
logs = lab.client(CLIENT, [lab.ip_s, PORT])
lab.stop_capture()
for d in logs:
    L.log(d)
V = L.versions()

def label(c, logs):
    d = L.by_port(logs, c["client_port"]) or {}
    saw = d.get("saw", "")
    if d.get("failed"):
        return {"cause": "keepalive-race", "client_saw": saw,
                "how": "Design: http.client reused the keep-alive connection %.2f s after a complete exchange, nginx keepalive_timeout 1s had already closed it; the request got no response (client logged %s)." % (d["gap"], saw)}
    return {"cause": "graceful", "client_saw": saw,
            "how": "Design: requests 0.3 s apart (inside nginx's 1 s keep-alive), every response complete, then conn.close() by the client."}

L.write_labels(lab, "nginx keepalive_timeout 1s; bare http.client reuses the connection after ~1.0-1.2 s idle (keepalive-race), plus one normal keep-alive connection",
               [V["nginx"], V["http.client"]], label, logs, expect={"keepalive-race": 2, "graceful": 1})
