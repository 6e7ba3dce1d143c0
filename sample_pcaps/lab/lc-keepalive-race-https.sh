#!/usr/bin/env bash
# keepalive-race over HTTPS: nginx (TLS 1.3 only, keepalive_timeout 1s) closes an idle
# keep-alive connection with close_notify + FIN 1 s after its last response. Bare
# http.client HTTPSConnection (ssl.create_default_context, so it writes SSLKEYLOGFILE) does
# not check the socket before reuse: after a complete exchange it waits 1.5 / 1.2 / 1.05 /
# 1.0 s and sends its next request on the same connection; the request crosses (or follows)
# nginx's FIN, gets no response (RemoteDisconnected or ConnectionResetError), and nginx's
# kernel answers it with RST. One more connection makes 3 requests 0.3 s apart and closes
# (graceful).
# Capture: tcpdump on the client's veth (10.98.1.0/24, MTU 1500, offloads off), pcap.
LC_SCEN=lc-keepalive-race-https
source "$(dirname "$0")/lc_lib.sh"
lc_pair 1
PORT=443
CAP=$LB_OUT/$LC_SCEN.pcap
lc_certs "$S_IP"
lb_nginx "$NS_S" kr "server { listen $S_IP:$PORT ssl; server_name lc.test; $(lc_ssl ec TLSv1.3)
    keepalive_timeout 1s;
    location / { return 200 'hello from nginx over tls\n'; } }"
lb_wait_port "$NS_C" "$S_IP" $PORT
lb_capture_start "$NS_C" tcpdump "$CAP" -i "$C_DEV" -s 0 tcp
lc_run "$NS_C" 40 python3 - "$S_IP" $PORT >"$LB_WORK/client.jsonl" 2>"$LB_WORK/client.err" <<'PY' || lc_log "client exited with status $?"
import http.client, sys, time
from lc_common import *
ip, port = sys.argv[1], int(sys.argv[2])
def one(name, gaps):
    c = http.client.HTTPSConnection(ip, port, timeout=5, context=ctx())
    c.connect()
    lport = c.sock.getsockname()[1]
    seen = []
    for i, gap in enumerate([0] + gaps):
        time.sleep(gap)
        try:
            c.request("GET", f"/{name}/r{i}")
            r = c.getresponse(); r.read()
            seen.append(f"GET /{name}/r{i} HTTP {r.status}")
        except Exception as e:
            seen.append(f"GET /{name}/r{i} after {gap} s idle: {err(e)}")
            emit(port=lport, saw="; ".join(seen), client="http.client HTTPSConnection", gap=gap, failed=True)
            c.close()
            return
    c.close()
    emit(port=lport, saw="; ".join(seen), client="http.client HTTPSConnection", failed=False)
one("reuse-after-1.5s", [1.5])
one("reuse-after-1.2s", [1.2])
one("reuse-after-1.05s", [1.05])
one("reuse-after-1.0s", [1.0])
one("three-quick", [0.3, 0.3])
PY
sleep 0.3
lb_capture_stop
lc_finish "$CAP" "$LB_WORK/client.jsonl"
