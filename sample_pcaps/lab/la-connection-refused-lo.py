#!/usr/bin/env python3
"""connection-refused: nothing listens on 127.0.0.1:18094; the kernel answers
each SYN with RST/ACK.  Clients: requests, http.client, curl.
Capture: -i lo in a private namespace, classic pcap.

    python3 sample_pcaps/lab/la-connection-refused-lo.py
"""
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("la_lib", os.path.join(os.path.dirname(os.path.abspath(__file__)), "la-lib.py"))
L = importlib.util.module_from_spec(spec); spec.loader.exec_module(L)

SCEN = "la-connection-refused-lo"
PORT = 18094
lab = L.Lab(SCEN)
CLIENT = r'''
import json, sys, time, http.client, requests
host, port = sys.argv[1], int(sys.argv[2])
def case(name, lport, fn):
    try:
        saw = fn(lport)
    except Exception as e:
        saw = "%s: %s" % (type(e).__name__, e)
    print(json.dumps({"who": name, "lport": lport, "saw": saw}), flush=True)
    time.sleep(0.2)
def req(lport):
    s = requests.Session()
    a = requests.adapters.HTTPAdapter(); a.init_poolmanager(1, 1, source_address=("127.0.0.1", lport))
    s.mount("http://", a)
    return "HTTP %d" % s.get("http://%s:%d/health" % (host, port), timeout=3).status_code
def hc(lport):
    c = http.client.HTTPConnection(host, port, timeout=3, source_address=("127.0.0.1", lport))
    c.request("GET", "/health"); return "HTTP %d" % c.getresponse().status
case("requests-GET", 43001, req)
case("http.client-GET", 43002, hc)
'''
lab.start_capture(SCEN + ".pcap")
logs = lab.client(CLIENT, [lab.ip_s, PORT])
logs.append(lab.curl(["http://%s:%d/health" % (lab.ip_s, PORT)], "curl-GET"))
lab.stop_capture()
V = L.versions()
def label(c, logs):
    d = L.by_port(logs, c["client_port"]) or {"who": "?", "saw": "?"}
    return {"cause": "connection-refused", "client_saw": d["saw"],
            "how": "Design: no process listens on port %d in this namespace; the kernel answered the SYN with RST/ACK (%s)." % (PORT, d["who"])}
L.write_labels(lab, "connect to a closed loopback port: SYN answered by RST/ACK (requests, http.client, curl)",
               [V["requests"], V["http.client"], V["curl"]], label, logs, expect={"connection-refused": 3})
