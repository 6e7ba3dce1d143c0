#!/usr/bin/env bash
# http2-goaway over TLS (h2 by ALPN): nginx `listen 443 ssl http2` with keepalive_requests 2
# sends GOAWAY (NO_ERROR, last stream 3) after the 2nd stream and closes. httpx
# (http2=True, TLS 1.3) makes 5 sequential GETs; curl --http2 (TLS 1.2) fetches 3 URLs.
# Also an HTTP/2 upload over the limit: port 8443 (same nginx, http2, client_max_body_size
# 1k): httpx http2=True POSTs 64 KB; nginx answers 413 and resets the stream
# (RST_STREAM) because it will not read the rest of the body.
# Capture: tcpdump on the client's veth (10.98.9.0/24, MTU 1500, offloads off), pcapng.
LC_SCEN=lc-http2-goaway-tls
source "$(dirname "$0")/lc_lib.sh"
lc_pair 9
PORT=443
CAP=$LB_OUT/$LC_SCEN.pcapng
lc_certs "$S_IP"
lb_nginx "$NS_S" h2 "server { listen $S_IP:$PORT ssl http2; server_name lc.test; $(lc_ssl ec)
    keepalive_requests 2; keepalive_timeout 10s;
    location / { return 200 'h2 hello\n'; } }
  server { listen $S_IP:8443 ssl http2; server_name lc.test; $(lc_ssl ec)
    keepalive_timeout 10s; client_max_body_size 1k;
    location / { return 200 'h2 upload ok\n'; } }"
lb_wait_port "$NS_C" "$S_IP" $PORT
lb_capture_start "$NS_C" pcapng "$CAP" -i "$C_DEV" -s 0 tcp
lc_run "$NS_C" 30 python3 - "$S_IP" $PORT >"$LB_WORK/client.jsonl" 2>"$LB_WORK/client.err" <<'PY' || lc_log "client exited with status $?"
import sys, time, httpx
from lc_common import *
ip, port = sys.argv[1], int(sys.argv[2])
res = {}
ps = track()
with httpx.Client(http1=False, http2=True, verify=ctx(), timeout=5) as c:
    for i in range(5):
        try:
            r = c.get(f"https://{ip}:{port}/r{i}")
            res.setdefault(ps[-1], []).append(f"GET /r{i} {r.http_version} {r.status_code}")
        except Exception as e:
            res.setdefault(ps[-1], []).append(f"GET /r{i}: {err(e)}")
        time.sleep(0.1)
for p, v in res.items():
    emit(port=p, saw="; ".join(v), client="httpx http2=True (TLS 1.3)")
time.sleep(0.2)
ps = track()
with httpx.Client(http1=False, http2=True, verify=ctx(), timeout=5) as c:
    try:
        r = c.get(f"https://{ip}:8443/upload/before")
        saw = f"GET /upload/before {r.http_version} {r.status_code}"
        r = c.post(f"https://{ip}:8443/upload/too-big", content=b"p" * 65536)
        saw += f"; POST /upload/too-big (65536 B) {r.http_version} {r.status_code}"
        r = c.get(f"https://{ip}:8443/upload/after")
        saw += f"; GET /upload/after {r.http_version} {r.status_code}"
    except Exception as e:
        saw += f"; {err(e)}"
emit(port=ps[-1], saw=saw, client="httpx http2=True (TLS 1.3), client_max_body_size 1k")
PY
sleep 0.3
set +e
lc_run "$NS_C" 10 curl -sS --http2 --tls-max 1.2 --cacert "$LC_PKI/ca.pem" -o /dev/null -o /dev/null -o /dev/null \
    -w '%{local_port} %{http_version} %{http_code}\n' "https://$S_IP:$PORT/c1" "https://$S_IP:$PORT/c2" "https://$S_IP:$PORT/c3" >"$LB_WORK/curl.out" 2>"$LB_WORK/curl.err"
rc=$?
set -e
lc_curl_event "curl --http2 --tls-max 1.2" "$rc" "$LB_WORK/curl.out" "$LB_WORK/curl.err" >>"$LB_WORK/client.jsonl"
lb_capture_stop
lc_finish "$CAP" "$LB_WORK/client.jsonl"
