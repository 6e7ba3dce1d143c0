#!/usr/bin/env bash
# server-timeout over HTTPS: a Python asyncio TLS server (TLS 1.2 + 1.3, lab CA cert) reads
# the request for /stall..., stalls 3 s and closes without answering: a worker that gave
# up. asyncio's SSL transport sends close_notify and waits for the peer, so at the TCP level
# the client's FIN usually comes first, right after the server's close_notify. Clients,
# all with SSLKEYLOGFILE: requests (TLS 1.3) -> ConnectionError(RemoteDisconnected);
# aiohttp (TLS 1.3) retries the GET once on a new connection, then ServerDisconnectedError;
# http.client with TLS 1.2 -> RemoteDisconnected. One GET /fast is answered at once.
# Capture: tcpdump on the client's veth (10.98.5.0/24, MTU 1500, offloads off), pcap.
LC_SCEN=lc-server-timeout-https
source "$(dirname "$0")/lc_lib.sh"
lc_pair 5
PORT=8443
CAP=$LB_OUT/$LC_SCEN.pcap
lc_certs "$S_IP"
lb_bg "$NS_S" "$LB_WORK/srv.log" timeout 60 python3 "$LB_WORK/lc_tls_server.py" "$S_IP" $PORT "$LC_PKI/ec.crt" "$LC_PKI/ec.key" --delay 3
lb_wait_port "$NS_C" "$S_IP" $PORT
lb_capture_start "$NS_C" tcpdump "$CAP" -i "$C_DEV" -s 0 tcp
lc_run "$NS_C" 40 python3 - "$S_IP" $PORT >"$LB_WORK/client.jsonl" 2>"$LB_WORK/client.err" <<'PY' || lc_log "client exited with status $?"
import asyncio, http.client, sys, time, aiohttp, requests
from lc_common import *
ip, port = sys.argv[1], int(sys.argv[2])
base = f"https://{ip}:{port}"
def rq(path):
    ps = track(); t0 = time.time()
    with requests.Session() as s:
        try:
            r = s.get(base + path, verify=CA, timeout=10)
            saw = f"GET {path} HTTP {r.status_code}"
        except Exception as e:
            saw = f"GET {path}: {err(e)}"
    emit(port=ps[-1], saw=saw, client="requests (TLS 1.3)", waited=round(time.time() - t0, 3))
rq("/fast")
time.sleep(0.2)
rq("/stall/requests")
async def ah():
    ps = track(); t0 = time.time()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        try:
            async with s.get(base + "/stall/aiohttp", ssl=ctx()) as r:
                await r.read(); saw = f"GET /stall/aiohttp HTTP {r.status}"
        except Exception as e:
            saw = f"GET /stall/aiohttp: {err(e)}"
    for i, p in enumerate(ps):   # aiohttp retries the idempotent GET once on a new connection
        emit(port=p, saw=(f"attempt {i + 1} of {len(ps)}: " if len(ps) > 1 else "") + saw, client="aiohttp (TLS 1.3)", waited=round(time.time() - t0, 3))
asyncio.run(ah())
c = http.client.HTTPSConnection(ip, port, timeout=10, context=ctx(maxv="TLSv1_2"))
t0 = time.time()
try:
    c.request("GET", "/stall/http.client"); r = c.getresponse(); r.read()
    saw = f"GET /stall/http.client HTTP {r.status}"
except Exception as e:
    saw = f"GET /stall/http.client: {err(e)}"
lp = c.sock.getsockname()[1] if c.sock else PORTS[-1]
c.close()
emit(port=lp, saw=saw, client="http.client (TLS 1.2)", waited=round(time.time() - t0, 3))
PY
sleep 0.3
lb_capture_stop
lc_finish "$CAP" "$LB_WORK/client.jsonl"
