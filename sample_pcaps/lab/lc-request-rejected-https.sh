#!/usr/bin/env bash
# request-rejected over HTTPS: nginx (TLS 1.2 + 1.3, EC certificate from the lab CA) answers
# /blocked with `return 444`: it closes the connection right after the complete request,
# without a response byte. Clients (all with SSLKEYLOGFILE, so every request decrypts):
#   requests (TLS 1.3)            -> ConnectionError(RemoteDisconnected)
#   curl --tls-max 1.2            -> exit 52 "Empty reply from server"
#   httpx (TLS 1.3)               -> RemoteProtocolError "Server disconnected without sending a response"
#   requests GET /ok              -> HTTP 200 (graceful contrast)
# Capture: tcpdump on the client's veth (10.98.2.0/24, MTU 1500, offloads off), pcap.
LC_SCEN=lc-request-rejected-https
source "$(dirname "$0")/lc_lib.sh"
lc_pair 2
PORT=443
CAP=$LB_OUT/$LC_SCEN.pcap
lc_certs "$S_IP"
lb_nginx "$NS_S" rr "server { listen $S_IP:$PORT ssl; server_name lc.test; $(lc_ssl ec)
    keepalive_timeout 10s;
    location /blocked { return 444; }
    location / { return 200 'hello over tls\n'; } }"
lb_wait_port "$NS_C" "$S_IP" $PORT
lb_capture_start "$NS_C" tcpdump "$CAP" -i "$C_DEV" -s 0 tcp
lc_run "$NS_C" 30 python3 - "$S_IP" $PORT >"$LB_WORK/client.jsonl" 2>"$LB_WORK/client.err" <<'PY' || lc_log "client exited with status $?"
import sys, time, requests, httpx
from lc_common import *
ip, port = sys.argv[1], int(sys.argv[2])
base = f"https://{ip}:{port}"
for path in ("/blocked/requests", "/ok"):
    ps = track()
    with requests.Session() as s:
        try:
            r = s.get(base + path, verify=CA, timeout=5)
            saw = f"GET {path} HTTP {r.status_code}"
        except Exception as e:
            saw = f"GET {path}: {err(e)}"
    emit(port=ps[-1], saw=saw, client="requests (TLS 1.3)")
    time.sleep(0.3)
ps = track()
with httpx.Client(verify=ctx(), timeout=5) as c:
    try:
        r = c.get(base + "/blocked/httpx")
        saw = f"GET /blocked/httpx HTTP {r.status_code}"
    except Exception as e:
        saw = f"GET /blocked/httpx: {err(e)}"
emit(port=ps[-1], saw=saw, client="httpx (TLS 1.3)")
PY
sleep 0.3
set +e
lc_run "$NS_C" 10 curl -sS --cacert "$LC_PKI/ca.pem" --tls-max 1.2 -o /dev/null \
    -w '%{local_port} %{http_version} %{http_code}\n' "https://$S_IP:$PORT/blocked/curl" >"$LB_WORK/curl.out" 2>"$LB_WORK/curl.err"
rc=$?
set -e
lc_curl_event "curl --tls-max 1.2" "$rc" "$LB_WORK/curl.out" "$LB_WORK/curl.err" >>"$LB_WORK/client.jsonl"
lb_capture_stop
lc_finish "$CAP" "$LB_WORK/client.jsonl"
