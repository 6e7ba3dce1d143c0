#!/usr/bin/env python3
"""rate-limited with nginx limit_req (rate=1r/s, no burst, limit_req_status
429): 8 threads fire at once, each on its own connection (requests without a
session, and bare http.client); one is admitted (200), the rest get 429.
nginx keeps the connections open after the 429; the clients close them.
Capture: veth pair (MTU 1500, offloads off), tcpdump, converted to pcapng.

    python3 sample_pcaps/lab/la-rate-limited-nginx.py
"""
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("la_lib", os.path.join(os.path.dirname(os.path.abspath(__file__)), "la-lib.py"))
L = importlib.util.module_from_spec(spec); spec.loader.exec_module(L)

SCEN = "la-rate-limited-nginx"
PORT = 18089
lab = L.Lab(SCEN, veth=True)
lab.nginx(lab.ns_s, """
        listen %s:%d;
        keepalive_timeout 10s;
        location / {
            limit_req zone=perip;
            limit_req_status 429;
            root %s;
            try_files /index.html =404;
        }
""" % (lab.ip_s, PORT, lab.path("nginx/html")), http_extra="limit_req_zone $binary_remote_addr zone=perip:1m rate=1r/s;")
lab.wait_listen(lab.ns_s, PORT)
lab.write("nginx/html/index.html", "search results\n")

CLIENT = r'''
import json, sys, time, threading, http.client, requests
host, port = sys.argv[1], int(sys.argv[2])
go = threading.Event()
out = []
def with_requests(i):
    go.wait()
    # own source port so the label can be matched even on errors
    s = requests.Session()
    a = requests.adapters.HTTPAdapter(); a.init_poolmanager(1, 1, source_address=("0.0.0.0", 42000 + i))
    s.mount("http://", a)
    try:
        r = s.get("http://%s:%d/search?q=%d" % (host, port, i), timeout=5); saw = "HTTP %d" % r.status_code
    except Exception as e:
        saw = "%s: %s" % (type(e).__name__, e)
    s.close()
    out.append({"who": "requests-%d" % i, "lport": 42000 + i, "saw": saw})
def with_httpclient(i):
    go.wait()
    c = http.client.HTTPConnection(host, port, timeout=5, source_address=("0.0.0.0", 42000 + i))
    try:
        c.request("GET", "/search?q=%d" % i); r = c.getresponse(); r.read(); saw = "HTTP %d" % r.status
    except Exception as e:
        saw = "%s: %s" % (type(e).__name__, e)
    c.close()
    out.append({"who": "http.client-%d" % i, "lport": 42000 + i, "saw": saw})
ts = [threading.Thread(target=with_requests if i % 2 else with_httpclient, args=(i,)) for i in range(8)]
for t in ts: t.start()
time.sleep(0.3); go.set()
for t in ts: t.join()
for d in out: print(json.dumps(d))
'''

lab.start_capture(SCEN + ".pcapng")
logs = lab.client(CLIENT, [lab.ip_s, PORT])
lab.stop_capture()
for d in logs:
    L.log(d)
V = L.versions()

def label(c, logs):
    d = L.by_port(logs, c["client_port"]) or {"who": "?", "saw": "?"}
    if d["saw"] == "HTTP 200":
        return {"cause": "graceful", "client_saw": d["saw"], "how": "Design: the one request of the burst that nginx's limit_req (1 r/s) admitted; complete 200, client closed."}
    return {"cause": "rate-limited", "client_saw": d["saw"],
            "how": "Design: one of 8 simultaneous connections from the same client IP; nginx limit_req rate=1r/s (no burst) answered %s with limit_req_status 429; the client closed afterwards (%s)." % (d["saw"], d["who"])}

L.write_labels(lab, "nginx limit_req 1 r/s: a burst of 8 parallel connections (requests, http.client) gets 429 for all but one",
               [V["nginx"], V["requests"], V["http.client"]], label, logs, expect={"rate-limited": 6})
