#!/usr/bin/env bash
# client-timeout over HTTPS: a Python asyncio TLS server answers /slow... after 3 s (slow,
# not broken). requests (timeout=1, TLS 1.3) raises ReadTimeout, aiohttp
# ClientTimeout(sock_read=1) (TLS 1.3) raises a timeout, httpx (timeout=1, TLS 1.2 forced)
# raises ReadTimeout: each closes ~1 s after its request (requests/httpx: FIN without
# close_notify; aiohttp: close_notify first). The asyncio SSL server closes its side as soon
# as it sees the client's close, so no late response follows. One GET /fast on requests is
# answered at once (graceful).
# Capture: tcpdump on the client's veth (10.98.7.0/24, MTU 1500, offloads off), pcap.
LC_SCEN=lc-client-timeout-https
source "$(dirname "$0")/lc_lib.sh"
lc_pair 7
PORT=8443
CAP=$LB_OUT/$LC_SCEN.pcap
lc_certs "$S_IP"
lb_bg "$NS_S" "$LB_WORK/srv.log" timeout 60 python3 "$LB_WORK/lc_tls_server.py" "$S_IP" $PORT "$LC_PKI/ec.crt" "$LC_PKI/ec.key" --delay 3
lb_wait_port "$NS_C" "$S_IP" $PORT
lb_capture_start "$NS_C" tcpdump "$CAP" -i "$C_DEV" -s 0 tcp
lc_run "$NS_C" 40 python3 - "$S_IP" $PORT >"$LB_WORK/client.jsonl" 2>"$LB_WORK/client.err" <<'PY' || lc_log "client exited with status $?"
import asyncio, sys, time, aiohttp, httpx, requests
from lc_common import *
ip, port = sys.argv[1], int(sys.argv[2])
base = f"https://{ip}:{port}"
for path in ("/fast", "/slow/requests"):
    ps = track(); t0 = time.time()
    with requests.Session() as s:
        try:
            r = s.get(base + path, verify=CA, timeout=1)
            saw = f"GET {path} HTTP {r.status_code}"
        except Exception as e:
            saw = f"GET {path}: {err(e)}"
    emit(port=ps[-1], saw=saw, client="requests timeout=1 (TLS 1.3)", waited=round(time.time() - t0, 3))
async def ah():
    ps = track(); t0 = time.time()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10, sock_read=1)) as s:
        try:
            async with s.get(base + "/slow/aiohttp", ssl=ctx()) as r:
                await r.read(); saw = f"GET /slow/aiohttp HTTP {r.status}"
        except Exception as e:
            saw = f"GET /slow/aiohttp: {err(e) or type(e).__name__}"
    for i, p in enumerate(ps):
        emit(port=p, saw=(f"attempt {i + 1} of {len(ps)}: " if len(ps) > 1 else "") + saw, client="aiohttp ClientTimeout(sock_read=1) (TLS 1.3)", waited=round(time.time() - t0, 3))
asyncio.run(ah())
ps = track(); t0 = time.time()
with httpx.Client(verify=ctx(maxv="TLSv1_2"), timeout=1) as c:
    try:
        r = c.get(base + "/slow/httpx"); saw = f"GET /slow/httpx HTTP {r.status_code}"
    except Exception as e:
        saw = f"GET /slow/httpx: {err(e)}"
emit(port=ps[-1], saw=saw, client="httpx timeout=1 (TLS 1.2)", waited=round(time.time() - t0, 3))
time.sleep(2.5)   # a late response would arrive while we wait
PY
sleep 0.3
lb_capture_stop
lc_finish "$CAP" "$LB_WORK/client.jsonl"
