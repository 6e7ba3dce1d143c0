#!/usr/bin/env bash
# haproxy 2.6 terminating TLS (TLS 1.2 + 1.3, ALPN h2,http/1.1) in front of a gunicorn
# backend (sync worker, plain HTTP): client - haproxy - backend namespaces.
#   1. requests GET /ok (TLS 1.3)                     -> 200
#   2. requests GET /slow (backend sleeps 3 s)        -> haproxy `timeout server 1s`: 504
#   3. curl --http1.1 --tls-max 1.2 GET /crash (the worker os._exits before answering) -> 502
#   4. httpx http2=True GET /crash/h2 (h2 over TLS 1.3): the same crash, but over HTTP/2
#      haproxy answers with RST_STREAM(REFUSED_STREAM) instead of a 502 (the request was
#      not processed, the client may retry; curl --http2 does retry, 5 times), then GET /ok
#      on the same connection -> 200 (gunicorn has respawned a worker)
#   5. the script SIGKILLs the gunicorn master and worker (by PID): httpx h2 GET /ok and
#      requests GET /ok -> haproxy cannot connect (RST to its SYNs): 503
# The client legs end after complete responses (haproxy's 5xx are complete responses):
# labelled graceful at the TCP level, the status and the backend failure in how_known.
# (gunicorn has one sync worker: /slow keeps it busy for 3 s although haproxy gave up
# after 1 s, so the script waits before /crash.)
# The haproxy->gunicorn legs carry the backend causes (client-timeout for haproxy's 1 s
# server timeout, the crashed worker's FIN without a response, connection-refused).
# Capture: one tcpdump per veth of the haproxy namespace (client leg 10.98.13.0/24 with TLS,
# backend leg 10.98.113.0/24 plain HTTP on 8080), merged with mergecap, pcapng.
LC_SCEN=lc-haproxy-https
source "$(dirname "$0")/lc_lib.sh"
lc_chain 13
CAP=$LB_OUT/$LC_SCEN.pcapng
lc_certs "$M_IP"
cat "$LC_PKI/ec.crt" "$LC_PKI/ec.key" >"$LC_PKI/ec-haproxy.pem"
cat >"$LB_WORK/app.py" <<'PY'
import os, time
def app(environ, start_response):
    p = environ["PATH_INFO"]
    if p.startswith("/slow"):
        time.sleep(3)
    if p.startswith("/crash"):
        os._exit(1)          # the worker dies before answering
    body = f"backend ok {p}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
PY
lb_bg "$NS_S" "$LB_WORK/gunicorn.log" timeout 60 python3 -m gunicorn --chdir "$LB_WORK" -w 1 -b "$S_IP:8080" \
    --timeout 30 -p "$LB_WORK/gunicorn.pid" app:app
GU=$LB_PID
cat >"$LB_WORK/haproxy.cfg" <<EOF2
global
    log stdout format raw local0 info
    pidfile $LB_WORK/haproxy.pid
    maxconn 100
defaults
    mode http
    log global
    option httplog
    timeout connect 1s
    timeout client 10s
    timeout server 1s
    timeout http-keep-alive 3s
    retries 1
frontend fe
    bind $M_IP:443 ssl crt $LC_PKI/ec-haproxy.pem alpn h2,http/1.1
    default_backend be
backend be
    server app $S_IP:8080
EOF2
lb_bg "$NS_M" "$LB_WORK/haproxy.log" timeout 60 haproxy -db -f "$LB_WORK/haproxy.cfg"
lb_wait_port "$NS_M" "$S_IP" 8080
lb_wait_port "$NS_C" "$M_IP" 443
lb_capture_start "$NS_M" tcpdump "$LB_WORK/leg-client.pcap" -i "$MC_DEV" -s 0 tcp
CAP1=$CAP_PID
lb_capture_start "$NS_M" tcpdump "$LB_WORK/leg-backend.pcap" -i "$MS_DEV" -s 0 tcp
CAP2=$CAP_PID
run_requests() {  # run_requests PATH...
    lc_run "$NS_C" 20 python3 - "$M_IP" "$@" >>"$LB_WORK/client.jsonl" 2>>"$LB_WORK/client.err" <<'PY' || lc_log "client exited with status $?"
import sys, time, requests
from lc_common import *
ip = sys.argv[1]
for path in sys.argv[2:]:
    ps = track(); t0 = time.time()
    with requests.Session() as s:
        try:
            r = s.get(f"https://{ip}{path}", verify=CA, timeout=10)
            saw = f"GET {path} HTTP {r.status_code} {r.reason}"
        except Exception as e:
            saw = f"GET {path}: {err(e)}"
    emit(port=ps[-1], saw=saw, client="requests (TLS 1.3) via haproxy", waited=round(time.time() - t0, 3))
    time.sleep(0.3)
PY
}
run_httpx() {
    lc_run "$NS_C" 20 python3 - "$M_IP" "$@" >>"$LB_WORK/client.jsonl" 2>>"$LB_WORK/client.err" <<'PY' || lc_log "client exited with status $?"
import sys, time, httpx
from lc_common import *
ip = sys.argv[1]
ps = track()
with httpx.Client(http1=False, http2=True, verify=ctx(), timeout=10) as c:
    for path in sys.argv[2:]:
        try:
            r = c.get(f"https://{ip}{path}")
            saw = f"GET {path} {r.http_version} {r.status_code}"
        except Exception as e:
            saw = f"GET {path}: {err(e)}"
        emit(port=ps[-1], saw=saw, client="httpx http2=True (TLS 1.3) via haproxy")
        if path.startswith("/crash"):
            time.sleep(1.5)   # gunicorn's master respawns the crashed worker
PY
}
run_requests /ok /slow
sleep 2.5     # the single sync worker is still sleeping in /slow: let it finish first
set +e
lc_run "$NS_C" 10 curl -sS --http1.1 --tls-max 1.2 --cacert "$LC_PKI/ca.pem" -o /dev/null \
    -w '%{local_port} %{http_version} %{http_code}\n' "https://$M_IP/crash" >"$LB_WORK/curl.out" 2>"$LB_WORK/curl.err"
rc=$?
set -e
lc_curl_event "curl --http1.1 --tls-max 1.2 via haproxy" "$rc" "$LB_WORK/curl.out" "$LB_WORK/curl.err" >>"$LB_WORK/client.jsonl"
sleep 1.5     # gunicorn's master respawns the crashed worker
run_httpx /crash/h2 /ok
WORKERS=$(ps -o pid= --ppid "$(cat "$LB_WORK/gunicorn.pid")" | tr -d ' ')
kill -KILL "$(cat "$LB_WORK/gunicorn.pid")" $WORKERS 2>/dev/null || true
{ wait "$GU"; } 2>/dev/null || true
lc_log "gunicorn master $(cat "$LB_WORK/gunicorn.pid") and worker(s) $WORKERS killed with SIGKILL"
sleep 0.3
run_httpx /ok/after-kill
run_requests /ok/after-kill
sleep 0.5
CAP_PID=$CAP1; lb_capture_stop
CAP_PID=$CAP2; lb_capture_stop
mergecap -F pcapng -w "$CAP" "$LB_WORK/leg-client.pcap" "$LB_WORK/leg-backend.pcap"
lc_finish "$CAP" "$LB_WORK/client.jsonl"
