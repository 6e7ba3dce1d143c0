#!/usr/bin/env bash
# http2-goaway: nginx with "listen PORT http2" on a plain port (h2c, prior knowledge) and
# keepalive_requests 2: after the 2nd stream nginx sends GOAWAY (NO_ERROR, last stream id 3)
# and closes the connection. httpx (http1=False, http2=True) makes 5 sequential GETs and
# opens a new connection after each GOAWAY; curl --http2-prior-knowledge fetches 3 URLs.
# Capture: tcpdump on the client's veth (10.99.91.0/24, MTU 1500, offloads off), pcapng.
LB_SCEN=lb-http2-goaway-maxreq
source "$(dirname "$0")/lb_lib.sh"
lb_pair 91
PORT=19091
CAP=$LB_OUT/$LB_SCEN.pcapng
lb_nginx "$NS_S" h2a "server { listen $S_IP:$PORT http2; keepalive_requests 2; keepalive_timeout 10s;
    location / { return 200 'h2 hello\n'; } }"
lb_wait_port "$NS_C" "$S_IP" $PORT
lb_capture_start "$NS_C" pcapng "$CAP" -i "$C_DEV" -s 0 tcp
timeout 20 ip netns exec "$NS_C" python3 - "$S_IP" $PORT >"$LB_WORK/client.jsonl" 2>"$LB_WORK/client.err" <<'PY' || lb_log "client exited with status $?"
import json, socket, sys, time, httpx
ip, port = sys.argv[1], int(sys.argv[2])
ports = []
_cc = socket.socket.connect
def sconnect(self, addr):
    r = _cc(self, addr); ports.append(self.getsockname()[1]); return r
socket.socket.connect = sconnect
res = {}
with httpx.Client(http1=False, http2=True, timeout=5) as c:
    for i in range(5):
        try:
            r = c.get(f"http://{ip}:{port}/r{i}")
            res.setdefault(ports[-1], []).append(f"{r.http_version} {r.status_code}")
        except Exception as e:
            res.setdefault(ports[-1], []).append(f"{type(e).__name__}: {e}")
        time.sleep(0.1)
for p, v in res.items():
    print(json.dumps({"port": p, "saw": "; ".join(v), "client": "httpx http2"}), flush=True)
PY
sleep 0.3
set +e
timeout 10 ip netns exec "$NS_C" curl -sS --http2-prior-knowledge -o /dev/null -o /dev/null -o /dev/null \
    -w '%{local_port} %{http_version} %{http_code}\n' "http://$S_IP:$PORT/c1" "http://$S_IP:$PORT/c2" "http://$S_IP:$PORT/c3" >"$LB_WORK/curl.out" 2>"$LB_WORK/curl.err"
rc=$?
set -e
python3 - "$rc" "$LB_WORK/curl.out" "$LB_WORK/curl.err" >>"$LB_WORK/client.jsonl" <<'PY'
import json, sys
rc, out, err = sys.argv[1], open(sys.argv[2]).read().split("\n"), open(sys.argv[3]).read().strip()
res = {}
for l in out:
    if l.strip():
        p, v, c = l.split()
        res.setdefault(int(p), []).append(f"HTTP/{v} {c}")
for p, v in res.items():
    print(json.dumps({"port": p, "saw": "curl: " + "; ".join(v) + (f"; exit {rc} {err}" if rc != "0" else ""), "client": "curl --http2-prior-knowledge"}))
PY
lb_capture_stop
lb_label "$LB_SCEN" "$CAP" "$LB_WORK/client.jsonl"
