#!/usr/bin/env bash
# connection-leak: a helper that creates a new requests.Session() for every call and never
# closes it (the sessions are kept in a list). Each session's pooled connection stays in
# urllib3's pool; the aiohttp server (keepalive_timeout=1) closes it with FIN after 1 s
# idle and the client sits in CLOSE_WAIT (kernel ACK only, no FIN) until the capture ends
# more than 3 s later. One call uses "with requests.Session()" (graceful, client FIN).
# Capture: tcpdump (converted to pcapng with editcap) on the client's veth (10.99.12.0/24, MTU 1500, offloads off), pcapng.
LB_SCEN=lb-connection-leak-sessions
source "$(dirname "$0")/lb_lib.sh"
lb_pair 12
PORT=19012
CAP=$LB_OUT/$LB_SCEN.pcapng
cat > "$LB_WORK/srv.py" <<'PY'
import sys
from aiohttp import web
async def h(req):
    return web.Response(text="ok from aiohttp\n")
app = web.Application(); app.router.add_get("/{tail:.*}", h)
web.run_app(app, host=sys.argv[1], port=int(sys.argv[2]), keepalive_timeout=1, print=None)
PY
lb_bg "$NS_S" "$LB_WORK/srv.log" timeout 50 python3 "$LB_WORK/srv.py" "$S_IP" $PORT
lb_wait_port "$NS_C" "$S_IP" $PORT
lb_capture_start "$NS_C" pcapng "$CAP" -i "$C_DEV" -s 0 tcp
lb_bg "$NS_C" "$LB_WORK/client.jsonl" timeout 30 python3 -u - "$S_IP" $PORT <<'PY'
import json, sys, time, requests
import urllib3.connection
ip, port = sys.argv[1], int(sys.argv[2])
ports = []
_orig_connect = urllib3.connection.HTTPConnection.connect
def connect(self):
    _orig_connect(self)
    ports.append(self.sock.getsockname()[1])
urllib3.connection.HTTPConnection.connect = connect
leaked = []
def fetch_leaky(path):
    s = requests.Session()          # never closed: the leak
    leaked.append(s)
    r = s.get(f"http://{ip}:{port}{path}", timeout=5)
    return r, s
for i in range(3):
    r, s = fetch_leaky(f"/leak/{i}")
    # local port of the pooled connection
    print(json.dumps({"port": ports[-1], "saw": f"HTTP {r.status_code}; Session never closed, connection left in the pool"}), flush=True)
    time.sleep(0.3)
with requests.Session() as s:
    r = s.get(f"http://{ip}:{port}/closed", timeout=5)
    status = r.status_code
    r.close(); del r    # drop the response's file object too, or the socket stays open
print(json.dumps({"port": ports[-1], "saw": f"HTTP {status}; response and Session closed ('with')"}), flush=True)
time.sleep(25)
PY
CLIENT=$LB_PID
sleep 6.0
ip netns exec "$NS_C" ss -tn state close-wait >&2 || true
lb_capture_stop
lb_stop_pid "$CLIENT"
lb_label "$LB_SCEN" "$CAP" "$LB_WORK/client.jsonl"
