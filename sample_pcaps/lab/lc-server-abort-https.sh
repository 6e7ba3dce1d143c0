#!/usr/bin/env bash
# server-abort over HTTPS: a Python asyncio TLS server answers /abort... with a response head
# (Content-Length 100000) and 20000 body bytes, waits 0.2 s, then sets SO_LINGER 0 and
# aborts the transport: RST in the middle of the response, no close_notify. Clients with
# SSLKEYLOGFILE: httpx (TLS 1.3), curl --tls-max 1.2, requests stream=True (TLS 1.3). One
# GET /ok on httpx is answered normally first (graceful).
# Capture: tcpdump on the client's veth (10.98.6.0/24, MTU 1500, offloads off), pcapng.
LC_SCEN=lc-server-abort-https
source "$(dirname "$0")/lc_lib.sh"
lc_pair 6
PORT=8443
CAP=$LB_OUT/$LC_SCEN.pcapng
lc_certs "$S_IP"
lb_bg "$NS_S" "$LB_WORK/srv.log" timeout 60 python3 "$LB_WORK/lc_tls_server.py" "$S_IP" $PORT "$LC_PKI/ec.crt" "$LC_PKI/ec.key"
lb_wait_port "$NS_C" "$S_IP" $PORT
lb_capture_start "$NS_C" pcapng "$CAP" -i "$C_DEV" -s 0 tcp
lc_run "$NS_C" 30 python3 - "$S_IP" $PORT >"$LB_WORK/client.jsonl" 2>"$LB_WORK/client.err" <<'PY' || lc_log "client exited with status $?"
import sys, time, httpx, requests
from lc_common import *
ip, port = sys.argv[1], int(sys.argv[2])
base = f"https://{ip}:{port}"
ps = track()
with httpx.Client(verify=ctx(), timeout=5) as c:
    r = c.get(base + "/ok")
    emit(port=ps[-1], saw=f"GET /ok HTTP {r.status_code}", client="httpx (TLS 1.3)")
time.sleep(0.2)
ps = track()
with httpx.Client(verify=ctx(), timeout=5) as c:
    got = 0
    try:
        with c.stream("GET", base + "/abort/httpx") as r:
            for b in r.iter_bytes():
                got += len(b)
        saw = f"GET /abort/httpx HTTP {r.status_code}, {got} bytes"
    except Exception as e:
        saw = f"GET /abort/httpx: HTTP 200 head, then {err(e)} after {got} of 100000 body bytes"
emit(port=ps[-1], saw=saw, client="httpx (TLS 1.3)")
time.sleep(0.2)
ps = track()
got = 0
try:
    with requests.get(base + "/abort/requests", verify=CA, timeout=5, stream=True) as r:
        for b in r.iter_content(4096):
            got += len(b)
    saw = f"GET /abort/requests HTTP {r.status_code}, {got} bytes"
except Exception as e:
    saw = f"GET /abort/requests: HTTP 200 head, then {err(e)} after {got} of 100000 body bytes"
emit(port=ps[-1], saw=saw, client="requests stream=True (TLS 1.3)")
PY
sleep 0.3
set +e
lc_run "$NS_C" 10 curl -sS --cacert "$LC_PKI/ca.pem" --tls-max 1.2 -o /dev/null \
    -w '%{local_port} %{http_version} %{http_code} %{size_download}\n' "https://$S_IP:$PORT/abort/curl" >"$LB_WORK/curl.out" 2>"$LB_WORK/curl.err"
rc=$?
set -e
lc_curl_event "curl --tls-max 1.2" "$rc" "$LB_WORK/curl.out" "$LB_WORK/curl.err" >>"$LB_WORK/client.jsonl"
lb_capture_stop
lc_finish "$CAP" "$LB_WORK/client.jsonl"
