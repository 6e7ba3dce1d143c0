#!/usr/bin/env bash
# A mixed HTTPS capture where only SOME client processes write the key log, so some
# connections decrypt and some do not. nginx (TLS 1.2 + 1.3, keepalive_timeout 1s,
# /blocked -> `return 444`). Six client processes run at the same time:
#   WITH SSLKEYLOGFILE:    requests (6 connections, TLS 1.3, one GET /blocked -> 444),
#                          curl (4 invocations, 2 with --tls-max 1.2),
#                          aiohttp (5 concurrent requests -> 5 connections, TLS 1.3)
#   WITHOUT SSLKEYLOGFILE: httpx (5 connections, TLS 1.2, one GET /blocked -> 444),
#                          curl (4 invocations, TLS 1.3),
#                          http.client (3 connections, TLS 1.3; one left idle 1.5 s: nginx
#                          closes it first -> idle-close)
# The labels say per connection whether the key log holds its ClientHello random
# ("has_key"), computed from the capture and the key log, and which process made it.
# Capture: tcpdump on the client's veth (10.98.17.0/24, MTU 1500, offloads off), pcap.
LC_SCEN=lc-keys-partial
source "$(dirname "$0")/lc_lib.sh"
lc_pair 17
CAP=$LB_OUT/$LC_SCEN.pcap
lc_certs "$S_IP"
lb_nginx "$NS_S" kp "server { listen $S_IP:443 ssl; server_name lc.test; $(lc_ssl ec)
    keepalive_timeout 1s;
    location /blocked { return 444; }
    location / { return 200 'mixed ok\n'; } }"
lb_wait_port "$NS_C" "$S_IP" 443
lb_capture_start "$NS_C" tcpdump "$CAP" -i "$C_DEV" -s 0 tcp
W=$LB_WORK
cat >"$W/rq.py" <<'PY'
import sys, time, requests
from lc_common import *
ip = sys.argv[1]
for i, path in enumerate(["/a/requests-0", "/a/requests-1", "/blocked/requests", "/a/requests-3", "/a/requests-4", "/a/requests-5"]):
    ps = track()
    with requests.Session() as s:
        try:
            r = s.get(f"https://{ip}{path}", verify=CA, timeout=5); saw = f"GET {path} HTTP {r.status_code}"
        except Exception as e:
            saw = f"GET {path}: {err(e)}"
    emit(port=ps[-1], saw=saw, client="requests (TLS 1.3)", keylog=True)
    time.sleep(0.25)
PY
cat >"$W/hx.py" <<'PY'
import sys, time, httpx
from lc_common import *
ip = sys.argv[1]
for path in ["/a/httpx-0", "/blocked/httpx", "/a/httpx-2", "/a/httpx-3", "/a/httpx-4"]:
    ps = track()
    with httpx.Client(verify=ctx(maxv="TLSv1_2"), timeout=5) as c:
        try:
            r = c.get(f"https://{ip}{path}"); saw = f"GET {path} HTTP {r.status_code}"
        except Exception as e:
            saw = f"GET {path}: {err(e)}"
    emit(port=ps[-1], saw=saw, client="httpx (TLS 1.2)", keylog=False)
    time.sleep(0.3)
PY
cat >"$W/ah.py" <<'PY'
import asyncio, sys, aiohttp
from lc_common import *
ip = sys.argv[1]
async def one(s, i):
    ps = track()
    try:
        async with s.get(f"https://{ip}/a/aiohttp-{i}", ssl=ctx()) as r:
            await r.read(); saw = f"GET /a/aiohttp-{i} HTTP {r.status}"
    except Exception as e:
        saw = f"GET /a/aiohttp-{i}: {err(e)}"
    return ps, saw
async def main():
    await asyncio.sleep(0.4)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        res = await asyncio.gather(*(one(s, i) for i in range(5)))
    for ps, saw in res:
        emit(port=ps[-1], saw=saw, client="aiohttp (TLS 1.3)", keylog=True)
asyncio.run(main())
PY
cat >"$W/hc.py" <<'PY'
import http.client, sys, time
from lc_common import *
ip = sys.argv[1]
for i, idle in enumerate([0, 1.5, 0]):
    c = http.client.HTTPSConnection(ip, 443, timeout=5, context=ctx())
    c.request("GET", f"/a/httpclient-{i}"); r = c.getresponse(); r.read()
    lp = c.sock.getsockname()[1]
    time.sleep(idle)          # idle past nginx's keepalive_timeout 1s: nginx closes first
    c.close()
    emit(port=lp, saw=f"GET /a/httpclient-{i} HTTP {r.status}" + (f"; then idle {idle} s before close()" if idle else ""),
         client="http.client (TLS 1.3)", keylog=False, idle=idle)
    time.sleep(0.3)
PY
cat >"$W/curls.sh" <<'EOF2'
# curls.sh IP CA LOG LABEL PAUSE OPTS... : 4 curl invocations, one JSON event line each
ip=$1 ca=$2 log=$3 label=$4 pause=$5; shift 5
for i in 0 1 2 3; do
    extra=()
    [ "$label" = keys ] && [ $i -ge 2 ] && extra=(--tls-max 1.2)
    out=$(timeout 10 curl -sS --cacert "$ca" "${extra[@]}" -o /dev/null -w '%{local_port} %{http_version} %{http_code}' "https://$ip/a/curl-$label-$i" 2>&1)
    set -- $out
    printf '{"port": %s, "saw": "curl%s: GET /a/curl-%s-%s HTTP/%s %s", "client": "curl (%s SSLKEYLOGFILE)", "keylog": %s}\n' \
        "$1" "${extra:+ ${extra[*]}}" "$label" "$i" "$2" "$3" "$([ "$label" = keys ] && echo with || echo without)" \
        "$([ "$label" = keys ] && echo true || echo false)" >>"$log"
    sleep "$pause"
done
EOF2
lc_bg_keys "$NS_C" "$W/rq.jsonl" timeout 30 python3 "$W/rq.py" "$S_IP"; P1=$LB_PID
lb_bg "$NS_C" "$W/hx.jsonl" env LC_CA="$LC_PKI/ca.pem" timeout 30 python3 "$W/hx.py" "$S_IP"; P2=$LB_PID
lc_bg_keys "$NS_C" "$W/ah.jsonl" timeout 30 python3 "$W/ah.py" "$S_IP"; P3=$LB_PID
lb_bg "$NS_C" "$W/hc.jsonl" env LC_CA="$LC_PKI/ca.pem" timeout 30 python3 "$W/hc.py" "$S_IP"; P4=$LB_PID
: >"$W/curl-keys.jsonl"; : >"$W/curl-nokeys.jsonl"
lc_bg_keys "$NS_C" "$W/curl-keys.out" timeout 30 bash "$W/curls.sh" "$S_IP" "$LC_PKI/ca.pem" "$W/curl-keys.jsonl" keys 0.35; P5=$LB_PID
lb_bg "$NS_C" "$W/curl-nokeys.out" timeout 30 bash "$W/curls.sh" "$S_IP" "$LC_PKI/ca.pem" "$W/curl-nokeys.jsonl" nokeys 0.45; P6=$LB_PID
for p in $P1 $P2 $P3 $P4 $P5 $P6; do wait "$p" || lc_log "client pid $p exited with status $?"; done
sleep 1.3     # let nginx's 1 s keep-alive timer close what is still open
lb_capture_stop
cat "$W"/rq.jsonl "$W"/hx.jsonl "$W"/ah.jsonl "$W"/hc.jsonl "$W"/curl-keys.jsonl "$W"/curl-nokeys.jsonl | grep '^{' >"$W/client.jsonl"
lc_finish "$CAP" "$W/client.jsonl"
