#!/usr/bin/env python3
"""graceful: normal keep-alive traffic to nginx.  requests.Session makes 4
requests on one connection then session.close() (client FIN first);
http.client sends `Connection: close` (nginx closes first); curl fetches two
URLs over one connection.  Capture: -i lo in a private namespace, classic
pcap gzip-compressed.

    python3 sample_pcaps/lab/la-graceful-nginx.py
"""
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("la_lib", os.path.join(os.path.dirname(os.path.abspath(__file__)), "la-lib.py"))
L = importlib.util.module_from_spec(spec); spec.loader.exec_module(L)

SCEN = "la-graceful-nginx"
PORT = 18097
lab = L.Lab(SCEN)
lab.nginx(lab.ns_s, """
        listen %s:%d;
        keepalive_timeout 30s;
        location / { return 200 "item $uri\\n"; }
""" % (lab.ip_s, PORT))
lab.wait_listen(lab.ns_s, PORT)
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
    time.sleep(0.2)
def sess():
    s = requests.Session(); out = []
    for i in range(4):
        out.append("HTTP %d" % s.get("http://%s:%d/items/%d" % (host, port, i)).status_code); time.sleep(0.1)
    s.close(); return "; ".join(out)
def hc_close():
    c = http.client.HTTPConnection(host, port, timeout=5)
    c.request("GET", "/items/last", headers={"Connection": "close"})
    r = c.getresponse(); r.read(); time.sleep(0.1); c.close(); return "HTTP %d" % r.status
case("requests-Session-4-requests", sess)
case("http.client-Connection-close", hc_close)
'''
lab.start_capture(SCEN + ".pcap.gz")
logs = lab.client(CLIENT, [lab.ip_s, PORT])
logs.append(lab.curl(["http://%s:%d/a" % (lab.ip_s, PORT), "http://%s:%d/b" % (lab.ip_s, PORT)], "curl-two-URLs"))
lab.stop_capture()
for d in logs:
    if "ports" in d:
        d["lport"] = d["ports"][0] if d["ports"] else None
    L.log(d)
V = L.versions()
def label(c, logs):
    d = L.by_port(logs, c["client_port"]) or {"who": "?", "saw": "?"}
    how = {"requests-Session-4-requests": "Design: 4 requests on one keep-alive connection, all complete, then session.close() (client FIN).",
           "http.client-Connection-close": "Design: one request with Connection: close; nginx answered completely and closed first (server FIN).",
           "curl-two-URLs": "Design: curl fetched two URLs over one keep-alive connection and closed it at exit."}.get(d["who"], "?")
    return {"cause": "graceful", "client_saw": d["saw"], "how": how}
L.write_labels(lab, "normal keep-alive traffic to nginx: requests.Session x4 then close, http.client with Connection: close, curl with two URLs",
               [V["nginx"], V["requests"], V["http.client"], V["curl"]], label, logs, expect={"graceful": 3})
