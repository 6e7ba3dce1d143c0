#!/usr/bin/env python3
"""request-rejected with nginx `return 444` (close without any response):
on a blocked path, and for requests without a User-Agent (an anti-bot rule;
bare http.client sends none).  Clients: curl, requests, http.client; one
allowed curl request for contrast (graceful).  Capture: veth pair (MTU 1500,
offloads off), classic pcap, gzip-compressed.

    python3 sample_pcaps/lab/la-request-rejected-nginx444.py
"""
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("la_lib", os.path.join(os.path.dirname(os.path.abspath(__file__)), "la-lib.py"))
L = importlib.util.module_from_spec(spec); spec.loader.exec_module(L)

SCEN = "la-request-rejected-nginx444"
PORT = 18083
lab = L.Lab(SCEN, veth=True)
lab.nginx(lab.ns_s, """
        listen %s:%d;
        keepalive_timeout 10s;
        location /blocked { return 444; }
        location / {
            if ($http_user_agent = "") { return 444; }
            return 200 "welcome\\n";
        }
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
    print(json.dumps({"who": name, "ports": list(PORTS), "saw": saw}))
    time.sleep(0.3)
def req_blocked():
    r = requests.get("http://%s:%d/blocked" % (host, port), timeout=5)
    return "HTTP %d" % r.status_code
def httpclient_no_ua():
    c = http.client.HTTPConnection(host, port, timeout=5)
    c.request("GET", "/api/items")       # http.client sends no User-Agent
    r = c.getresponse(); r.read(); c.close()
    return "HTTP %d" % r.status
case("requests-GET-/blocked", req_blocked)
case("http.client-GET-no-User-Agent", httpclient_no_ua)
'''

lab.start_capture(SCEN + ".pcap.gz")
curl1 = lab.curl(["http://%s:%d/blocked" % (lab.ip_s, PORT)], "curl-GET-/blocked")
logs = lab.client(CLIENT, [lab.ip_s, PORT])
curl2 = lab.curl(["http://%s:%d/ok" % (lab.ip_s, PORT)], "curl-GET-/ok")
lab.stop_capture()
for d in logs:
    d["lport"] = d["ports"][0] if d["ports"] else None
logs += [curl1, curl2]
for d in logs:
    L.log(d)
V = L.versions()

def label(c, logs):
    d = L.by_port(logs, c["client_port"]) or {"who": "?", "saw": "?"}
    if d["who"] == "curl-GET-/ok":
        return {"cause": "graceful", "client_saw": d["saw"], "how": "Design: allowed path with curl's User-Agent; complete 200 response, curl closed."}
    why = "a blocked path (location /blocked { return 444; })" if "blocked" in d["who"] else "a request without User-Agent (if ($http_user_agent = \"\") { return 444; })"
    return {"cause": "request-rejected", "client_saw": d["saw"],
            "how": "Design: nginx return 444 for %s closes the connection right after the complete request without any response byte (%s)." % (why, d["who"])}

L.write_labels(lab, "nginx `return 444` closes right after the request, no response: blocked path and missing User-Agent (curl, requests, http.client)",
               [V["nginx"], V["curl"], V["requests"], V["http.client"]], label, logs,
               expect={"request-rejected": 3, "graceful": 1})
