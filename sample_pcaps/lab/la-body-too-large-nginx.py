#!/usr/bin/env python3
"""body-too-large with nginx client_max_body_size 1k: 2 MB POST uploads from
requests and http.client (body sent without waiting), curl (sends
`Expect: 100-continue` for large bodies, gets 413 before the body), and a
small allowed POST (graceful).  Capture: veth pair (MTU 1500, offloads off),
snaplen 256 (bodies truncated), classic pcap.

    python3 sample_pcaps/lab/la-body-too-large-nginx.py
"""
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("la_lib", os.path.join(os.path.dirname(os.path.abspath(__file__)), "la-lib.py"))
L = importlib.util.module_from_spec(spec); spec.loader.exec_module(L)

SCEN = "la-body-too-large-nginx"
PORT = 18087
lab = L.Lab(SCEN, veth=True)
lab.nginx(lab.ns_s, """
        listen %s:%d;
        client_max_body_size 1k;
        keepalive_timeout 10s;
        location / { return 200 "stored\\n"; }
""" % (lab.ip_s, PORT))
lab.wait_listen(lab.ns_s, PORT)
body = lab.path("body.bin")
with open(body, "wb") as f:
    f.write(b"A" * (2 * 1024 * 1024))

CLIENT = L.PORT_HOOK + r'''
import json, sys, time, http.client, requests
host, port = sys.argv[1], int(sys.argv[2])
BODY = b"A" * (2 * 1024 * 1024)
def case(name, fn):
    del PORTS[:]
    try:
        saw = fn()
    except Exception as e:
        saw = "%s: %s" % (type(e).__name__, e)
    print(json.dumps({"who": name, "ports": list(PORTS), "saw": saw}), flush=True)
    time.sleep(0.3)
def req_big():
    r = requests.post("http://%s:%d/upload" % (host, port), data=BODY, timeout=10)
    return "HTTP %d" % r.status_code
def hc_big():
    c = http.client.HTTPConnection(host, port, timeout=10)
    c.request("PUT", "/files/blob.bin", body=BODY, headers={"Content-Type": "application/octet-stream"})
    r = c.getresponse(); r.read(); c.close(); return "HTTP %d" % r.status
def req_small():
    s = requests.Session()
    r = s.post("http://%s:%d/upload" % (host, port), data=b"x" * 200, timeout=10); s.close()
    return "HTTP %d" % r.status_code
case("requests-POST-2MB", req_big)
case("http.client-PUT-2MB", hc_big)
case("requests-POST-200B", req_small)
'''

lab.start_capture(SCEN + ".pcap", snaplen=256)
logs = lab.client(CLIENT, [lab.ip_s, PORT])
c = lab.curl(["-X", "POST", "--data-binary", "@" + body, "http://%s:%d/upload" % (lab.ip_s, PORT)], "curl-POST-2MB")
lab.stop_capture()
for d in logs:
    d["lport"] = d["ports"][0] if d["ports"] else None
logs.append(c)
for d in logs:
    L.log(d)
V = L.versions()

def label(c, logs):
    d = L.by_port(logs, c["client_port"]) or {"who": "?", "saw": "?"}
    if d["who"] == "requests-POST-200B":
        return {"cause": "graceful", "client_saw": d["saw"], "how": "Design: 200-byte POST under the 1k limit; complete 200, client closed the session."}
    return {"cause": "body-too-large", "client_saw": d["saw"],
            "how": "Design: %s with Content-Length 2097152 against client_max_body_size 1k; nginx answered 413 as soon as it saw the header and closed (the client had sent %d body+header bytes of the 2 MB when the connection ended)." % (d["who"], c["client_data"])}

L.write_labels(lab, "nginx client_max_body_size 1k rejects 2 MB uploads with 413 and closes (requests, http.client, curl with Expect: 100-continue), plus one small POST",
               [V["nginx"], V["requests"], V["http.client"], V["curl"]], label, logs,
               expect={"body-too-large": 3, "graceful": 1})
