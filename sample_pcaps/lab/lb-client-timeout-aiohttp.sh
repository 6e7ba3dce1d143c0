#!/usr/bin/env bash
# client-timeout: an aiohttp server whose handler sleeps 3 s before answering (slow, not
# broken). Clients with 1 s budgets: aiohttp ClientTimeout(total=1), aiohttp
# ClientTimeout(sock_read=1) and httpx timeout=1. Each gives up ~1 s after its request and
# closes the connection; the late response is answered by the client's RST.
# Capture: tcpdump on the client's veth (10.99.22.0/24, MTU 1500, offloads off), pcap.
LB_SCEN=lb-client-timeout-aiohttp
source "$(dirname "$0")/lb_lib.sh"
lb_pair 22
PORT=19022
CAP=$LB_OUT/$LB_SCEN.pcap
cat > "$LB_WORK/srv.py" <<'PY'
import asyncio, sys
from aiohttp import web
async def h(req):
    await asyncio.sleep(3.0)
    return web.Response(text="finally\n")
app = web.Application(); app.router.add_get("/{tail:.*}", h)
web.run_app(app, host=sys.argv[1], port=int(sys.argv[2]), print=None)
PY
lb_bg "$NS_S" "$LB_WORK/srv.log" timeout 50 python3 "$LB_WORK/srv.py" "$S_IP" $PORT
lb_wait_port "$NS_C" "$S_IP" $PORT
lb_capture_start "$NS_C" tcpdump "$CAP" -i "$C_DEV" -s 0 tcp
timeout 30 ip netns exec "$NS_C" python3 - "$S_IP" $PORT >"$LB_WORK/client.jsonl" <<'PY' || lb_log "client exited with status $?"
import asyncio, json, sys, time, socket
import aiohttp, httpx
ip, port = sys.argv[1], int(sys.argv[2])
def lport_of(resp_or_trace):
    return None
async def one(label, timeout):
    ports = []
    async def on_conn(session, ctx, params):
        pass
    trace = aiohttp.TraceConfig()
    conn = aiohttp.TCPConnector(force_close=False)
    async with aiohttp.ClientSession(timeout=timeout, connector=conn) as s:
        t0 = time.time()
        req = s.get(f"http://{ip}:{port}/{label}")
        task = asyncio.ensure_future(req.__aenter__())
        # find our socket's local port while the request is pending
        await asyncio.sleep(0.2)
        for proto in list(conn._acquired):
            ports.append(proto.transport.get_extra_info("sockname")[1])
        try:
            await task
        except BaseException as e:
            return {"port": ports[0] if ports else None, "saw": f"{type(e).__name__}: {e}", "waited": round(time.time() - t0, 3), "client": "aiohttp " + label}
async def main():
    for label, to in (("total", aiohttp.ClientTimeout(total=1)), ("sock_read", aiohttp.ClientTimeout(sock_read=1))):
        print(json.dumps(await one(label, to)), flush=True)
    ports = []
    def hook(req):
        pass
    async with httpx.AsyncClient(timeout=1) as c:
        t0 = time.time()
        task = asyncio.ensure_future(c.get(f"http://{ip}:{port}/httpx"))
        await asyncio.sleep(0.2)
        try:
            await task
        except Exception as e:
            print(json.dumps({"port": None, "saw": f"{type(e).__name__}: {e!r}", "waited": round(time.time() - t0, 3), "client": "httpx"}), flush=True)
    await asyncio.sleep(3.5)
asyncio.run(main())
PY
lb_capture_stop
lb_label "$LB_SCEN" "$CAP" "$LB_WORK/client.jsonl"
