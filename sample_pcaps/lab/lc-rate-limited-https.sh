#!/usr/bin/env bash
# rate-limited over HTTPS: nginx (TLS 1.2 + 1.3) limit_req 1 r/s per client address,
# no burst, limit_req_status 429. A burst of 7 parallel clients starts at once: 4 aiohttp
# requests (one ClientSession, so 4 connections, TLS 1.3) and 3 requests threads (one
# Session each, TLS 1.2 forced on two of them). The first request nginx sees gets 200, the
# rest get 429 on their own connections; every client closes after its response. (The
# location serves a file: `return` would answer before limit_req's phase runs.)
# Capture: tcpdump on the client's veth (10.98.3.0/24, MTU 1500, offloads off), pcapng.
LC_SCEN=lc-rate-limited-https
source "$(dirname "$0")/lc_lib.sh"
lc_pair 3
PORT=443
CAP=$LB_OUT/$LC_SCEN.pcapng
lc_certs "$S_IP"
echo 'you got through' >"$LB_WORK/hello.txt"
lb_nginx "$NS_S" rl "server { listen $S_IP:$PORT ssl; server_name lc.test; $(lc_ssl ec)
    keepalive_timeout 10s; limit_req zone=one; limit_req_status 429;
    location / { root $LB_WORK; try_files /hello.txt =404; } }" \
    "limit_req_zone \$binary_remote_addr zone=one:1m rate=1r/s;"
lb_wait_port "$NS_C" "$S_IP" $PORT
sleep 1.1    # the probe above does not count (no request), but let the bucket be full
lb_capture_start "$NS_C" pcapng "$CAP" -i "$C_DEV" -s 0 tcp
lc_run "$NS_C" 30 python3 - "$S_IP" $PORT >"$LB_WORK/client.jsonl" 2>"$LB_WORK/client.err" <<'PY' || lc_log "client exited with status $?"
import asyncio, sys, threading, aiohttp, requests, urllib3.connection
from lc_common import *
ip, port = sys.argv[1], int(sys.argv[2])
base = f"https://{ip}:{port}"
go = threading.Event()
class TLS12(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *a, **kw):
        kw["ssl_context"] = ctx(maxv="TLSv1_2")
        return super().init_poolmanager(*a, **kw)
def rq(i):
    ps = track()
    go.wait()
    with requests.Session() as s:
        if i > 0:
            s.mount("https://", TLS12())
        try:
            r = s.get(f"{base}/burst/requests-{i}", verify=CA, timeout=5)
            saw = f"GET /burst/requests-{i} HTTP {r.status_code}"
        except Exception as e:
            saw = f"GET /burst/requests-{i}: {err(e)}"
    emit(port=ps[-1], saw=saw, client="requests (TLS 1.3)" if i == 0 else "requests (TLS 1.2)")
async def ah(session, i):
    ps = track()
    try:
        async with session.get(f"{base}/burst/aiohttp-{i}", ssl=ctx()) as r:
            await r.read()
            saw = f"GET /burst/aiohttp-{i} HTTP {r.status}"
    except Exception as e:
        saw = f"GET /burst/aiohttp-{i}: {err(e)}"
    return ps, saw
async def main():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        go.set()
        res = await asyncio.gather(*(ah(s, i) for i in range(4)))
    for ps, saw in res:
        emit(port=ps[-1], saw=saw, client="aiohttp (TLS 1.3)")
ts = [threading.Thread(target=rq, args=(i,)) for i in range(3)]
[t.start() for t in ts]
asyncio.run(main())
[t.join() for t in ts]
PY
sleep 0.3
lb_capture_stop
lc_finish "$CAP" "$LB_WORK/client.jsonl"
