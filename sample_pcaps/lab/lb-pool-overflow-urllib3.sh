#!/usr/bin/env bash
# pool-overflow: urllib3.PoolManager(maxsize=2) (no requests) shared by 6 threads, each making
# 3 GETs to an aiohttp server (keep-alive, handler sleeps 50 ms so requests overlap). When
# more than 2 connections are out at once, urllib3 opens extra ones and, on release, logs
# "Connection pool is full, discarding connection" and closes them (client FIN) right
# after a complete 200. The 2 pooled connections are closed idle by the aiohttp server
# (keepalive_timeout=1) before pm.clear().
# Capture: tcpdump on the client's veth (10.99.2.0/24, MTU 1500, offloads off), pcap.
LB_SCEN=lb-pool-overflow-urllib3
source "$(dirname "$0")/lb_lib.sh"
lb_pair 2
PORT=19002
CAP=$LB_OUT/$LB_SCEN.pcap
cat > "$LB_WORK/srv.py" <<'PY'
import asyncio, sys
from aiohttp import web
async def h(req):
    await asyncio.sleep(0.05)
    return web.Response(text="pooled?\n" * 50)
app = web.Application(); app.router.add_get("/{tail:.*}", h)
web.run_app(app, host=sys.argv[1], port=int(sys.argv[2]), keepalive_timeout=1, print=None)
PY
lb_bg "$NS_S" "$LB_WORK/srv.log" timeout 50 python3 "$LB_WORK/srv.py" "$S_IP" $PORT
lb_wait_port "$NS_C" "$S_IP" $PORT
lb_capture_start "$NS_C" tcpdump "$CAP" -i "$C_DEV" -s 0 tcp
timeout 30 ip netns exec "$NS_C" python3 - "$S_IP" $PORT >"$LB_WORK/client.jsonl" 2>"$LB_WORK/client.err" <<'PY' || lb_log "client exited with status $?"
import json, logging, sys, threading, time, urllib3
from urllib3.connectionpool import HTTPConnectionPool
ip, port = sys.argv[1], int(sys.argv[2])
lock = threading.Lock()
def emit(**kw):
    with lock:
        print(json.dumps(kw), flush=True)
orig_put = HTTPConnectionPool._put_conn
def put_conn(self, conn):
    lport = None
    try:
        lport = conn.sock.getsockname()[1] if conn and conn.sock else None
    except OSError:
        pass
    orig_put(self, conn)
    if lport and conn.sock is None:
        emit(event="discarded", port=lport)
HTTPConnectionPool._put_conn = put_conn
class H(logging.Handler):
    def emit(self, rec):
        if "pool is full" in rec.getMessage():
            emit(event="warning", text=rec.getMessage())
logging.getLogger("urllib3.connectionpool").addHandler(H())
pm = urllib3.PoolManager(maxsize=2)
def worker(i):
    for j in range(3):
        r = pm.request("GET", f"http://{ip}:{port}/t{i}/{j}", timeout=10)
        emit(event="response", status=r.status)
ts = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
[t.start() for t in ts]; [t.join() for t in ts]
time.sleep(1.4)
pm.clear()
PY
sleep 0.3
lb_capture_stop
lb_label "$LB_SCEN" "$CAP" "$LB_WORK/client.jsonl"
