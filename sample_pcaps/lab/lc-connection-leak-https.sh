#!/usr/bin/env bash
# connection-leak over HTTPS: bare http.client HTTPSConnection (TLS 1.3 and TLS 1.2, with
# SSLKEYLOGFILE) makes one request per connection and keeps the connection objects without
# ever closing them. nginx keepalive_timeout 1s closes each idle connection (close_notify +
# FIN); the client's kernel only ACKs, the sockets sit in CLOSE_WAIT (ss output in the
# client log) until the capture ends > 4 s later. A 4th connection is closed properly right
# after its response (graceful), and a 5th, 3.5 s after the last leak began, marks how long
# they were held (a capture file ends with its last packet).
# Capture: tcpdump on the client's veth (10.98.11.0/24, MTU 1500, offloads off), pcapng.
LC_SCEN=lc-connection-leak-https
source "$(dirname "$0")/lc_lib.sh"
lc_pair 11
PORT=443
CAP=$LB_OUT/$LC_SCEN.pcapng
lc_certs "$S_IP"
lb_nginx "$NS_S" cl "server { listen $S_IP:$PORT ssl; server_name lc.test; $(lc_ssl ec)
    keepalive_timeout 1s;
    location / { return 200 'hello from nginx\n'; } }"
lb_wait_port "$NS_C" "$S_IP" $PORT
lb_capture_start "$NS_C" pcapng "$CAP" -i "$C_DEV" -s 0 tcp
lc_bg_keys "$NS_C" "$LB_WORK/client.jsonl" timeout 30 python3 -u - "$S_IP" $PORT <<'PY'
import http.client, subprocess, sys, time
from lc_common import *
ip, port = sys.argv[1], int(sys.argv[2])
held = []
for i in range(4):
    c = http.client.HTTPSConnection(ip, port, timeout=5, context=ctx(maxv="TLSv1_2" if i == 1 else None))
    c.request("GET", f"/item/{i}")
    r = c.getresponse(); r.read()
    lport = c.sock.getsockname()[1]
    v = c.sock.version()
    if i == 3:
        c.close()
        emit(port=lport, saw=f"GET /item/{i} HTTP {r.status} ({v}); connection closed by the application", closed=True, client="http.client HTTPSConnection")
    else:
        held.append(c)   # the leak: never closed, never reused
        emit(port=lport, saw=f"GET /item/{i} HTTP {r.status} ({v}); connection object kept, never closed", closed=False, client="http.client HTTPSConnection")
    time.sleep(0.2)
time.sleep(1.5)
ss = subprocess.run(["ss", "-tn", "state", "close-wait"], capture_output=True, text=True).stdout
emit(event="ss_close_wait", text=ss)
time.sleep(2.0)
# one more request, closed properly, seconds after the leaks: a packet capture ends with its
# last packet (tcpdump writes no end time), so this is what shows the leaks still held
c = http.client.HTTPSConnection(ip, port, timeout=5, context=ctx())
c.request("GET", "/item/last")
r = c.getresponse(); r.read()
lport = c.sock.getsockname()[1]
v = c.sock.version()
c.close()
emit(port=lport, saw=f"GET /item/last HTTP {r.status} ({v}); connection closed by the application", closed=True, client="http.client HTTPSConnection")
time.sleep(20)
PY
CLIENT=$LB_PID
sleep 6.0     # nginx closes ~1 s after each response; the client holds CLOSE_WAIT > 4 s more
lb_capture_stop
lb_stop_pid "$CLIENT"
lc_finish "$CAP" "$LB_WORK/client.jsonl"
grep -q "ss_close_wait" "$LB_WORK/client.jsonl" && lc_log "$(grep ss_close_wait "$LB_WORK/client.jsonl")" || true
