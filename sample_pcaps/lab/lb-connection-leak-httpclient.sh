#!/usr/bin/env bash
# connection-leak: nginx keepalive_timeout 1s closes idle keep-alive connections with FIN;
# the client (bare http.client) made 3 requests on 3 connections, read the responses and
# never closed the connections: the kernel ACKs nginx's FIN and the sockets sit in
# CLOSE_WAIT until the capture ends (> 3 s later). A 4th connection is closed properly
# right after its response (graceful, for contrast).
# Capture: tcpdump -i lo inside a private namespace, pcap.
LB_SCEN=lb-connection-leak-httpclient
source "$(dirname "$0")/lb_lib.sh"
NS=lb-cl1-$LB_TAG
PORT=19011
CAP=$LB_OUT/$LB_SCEN.pcap
lb_ns "$NS"
lb_nginx "$NS" cl "server { listen 127.0.0.1:$PORT; keepalive_timeout 1s;
    location / { return 200 'hello from nginx\n'; } }"
lb_wait_port "$NS" 127.0.0.1 $PORT
lb_capture_start "$NS" tcpdump "$CAP" -i lo -s 0 tcp
lb_bg "$NS" "$LB_WORK/client.jsonl" timeout 30 python3 -u - $PORT <<'PY'
import http.client, json, sys, time, subprocess
port = int(sys.argv[1])
held = []
for i in range(4):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", f"/item/{i}")
    r = c.getresponse(); body = r.read()
    lport = c.sock.getsockname()[1]
    if i == 3:
        c.close()
        print(json.dumps({"port": lport, "saw": f"HTTP {r.status}; connection closed by the application", "closed": True}), flush=True)
    else:
        held.append(c)   # the leak: never closed, never reused
        print(json.dumps({"port": lport, "saw": f"HTTP {r.status}; connection object kept, never closed (ResourceWarning at exit)", "closed": False}), flush=True)
    time.sleep(0.2)
time.sleep(1.5)
ss = subprocess.run(["ss", "-tn", "state", "close-wait"], capture_output=True, text=True).stdout
print(json.dumps({"event": "ss_close_wait", "text": ss}), flush=True)
time.sleep(20)
PY
CLIENT=$LB_PID
sleep 6.0     # nginx FINs come ~1 s after each response; hold CLOSE_WAIT > 3 s more
lb_capture_stop
lb_stop_pid "$CLIENT"
lb_label "$LB_SCEN" "$CAP" "$LB_WORK/client.jsonl"
grep -q "ss_close_wait" "$LB_WORK/client.jsonl" && lb_log "$(grep ss_close_wait "$LB_WORK/client.jsonl")" || true
