#!/usr/bin/env python3
"""incomplete: the capture stops while connections are still open: curl is
in the middle of a rate-limited download (nginx limit_rate 40k of a 1 MB
file) and a requests.Session holds an idle keep-alive connection (nginx
keepalive_timeout 60s).  One short curl request completes normally before
(graceful).  tcpdump is stopped ~2.5 s in; the clients are stopped only
afterwards.  Capture: veth pair (MTU 1500, offloads off), classic pcap.

    python3 sample_pcaps/lab/la-incomplete-download.py
"""
import importlib.util, os, sys, time, subprocess
spec = importlib.util.spec_from_file_location("la_lib", os.path.join(os.path.dirname(os.path.abspath(__file__)), "la-lib.py"))
L = importlib.util.module_from_spec(spec); spec.loader.exec_module(L)

SCEN = "la-incomplete-download"
PORT = 18099
lab = L.Lab(SCEN, veth=True)
html = lab.path("nginx/html")
os.makedirs(html, exist_ok=True)
with open(os.path.join(html, "big.bin"), "wb") as f:
    f.write(os.urandom(1024 * 1024))
lab.nginx(lab.ns_s, """
        listen %s:%d;
        keepalive_timeout 60s;
        root %s;
        location /big.bin { limit_rate 40k; }
        location /ping { return 200 "pong\\n"; }
""" % (lab.ip_s, PORT, html))
lab.wait_listen(lab.ns_s, PORT)
CLIENT = L.PORT_HOOK + r'''
import json, sys, time, requests
s = requests.Session()
r = s.get("http://%s:%s/ping" % (sys.argv[1], sys.argv[2]))
print(json.dumps({"who": "requests-Session-idle", "ports": list(PORTS), "saw": "HTTP %d" % r.status_code}), flush=True)
time.sleep(30)          # keeps the pooled connection open; killed by the script after the capture stops
'''
lab.start_capture(SCEN + ".pcap")
logs = [lab.curl(["http://%s:%d/ping" % (lab.ip_s, PORT)], "curl-GET-/ping")]
dl = subprocess.Popen(["ip", "netns", "exec", lab.ns_c, "curl", "-sS", "-o", "/dev/null", "--local-port", "41100",
                       "--max-time", "30", "http://%s:%d/big.bin" % (lab.ip_s, PORT)])
lab.procs.append(dl)
pr = lab.client(CLIENT, [lab.ip_s, PORT], background=True, name="idle")
time.sleep(2.5)
lab.stop_capture(settle=0)
time.sleep(0.3)
with open(lab.path("idle.out")) as f:
    for d in L.parse_jsonl(f.read()):
        d["lport"] = d["ports"][0]; logs.append(d)
logs.append({"who": "curl-download-1MB", "lport": 41100, "saw": "(still downloading at 40 kB/s when the capture stopped)"})
for d in logs:
    L.log(d)
V = L.versions()
def label(c, logs):
    d = L.by_port(logs, c["client_port"]) or {"who": "?", "saw": "?"}
    if d["who"] == "curl-GET-/ping":
        return {"cause": "graceful", "client_saw": d["saw"], "how": "Design: short request before the others; complete, curl closed."}
    if d["who"] == "requests-Session-idle":
        return {"cause": "incomplete", "client_saw": d["saw"] + " (connection still pooled)",
                "how": "Design: requests.Session kept the connection after a complete exchange; nginx keepalive_timeout 60s; the capture stopped ~2 s later with the connection idle and open."}
    return {"cause": "incomplete", "client_saw": d["saw"],
            "how": "Design: curl downloading a 1 MB file that nginx sends at limit_rate 40k; the capture stopped after ~2.5 s, mid-response."}
L.write_labels(lab, "capture stopped while a rate-limited curl download and an idle requests keep-alive connection are still open",
               [V["nginx"], V["curl"], V["requests"]], label, logs, expect={"incomplete": 2, "graceful": 1})
