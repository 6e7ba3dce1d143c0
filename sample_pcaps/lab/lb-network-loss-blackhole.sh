#!/usr/bin/env bash
# network-loss: client - router - server namespaces. requests (timeout=(3, 4)) makes one
# request on a keep-alive Session (HTTP 200), then the router starts dropping every
# forwarded packet (iptables -I FORWARD -j DROP: a black hole, not a reset). The second
# request on the same connection is retransmitted with RTO backoff until requests raises
# ReadTimeout after 4 s and closes; its FIN is retransmitted too and never answered.
# A second client (curl --connect-timeout 3) then tries a new connection: SYN
# retransmissions, "Connection timed out after 3001 milliseconds" (exit 28).
# Capture: tcpdump on the client-side veth (MTU 1500, offloads off), pcap.
LB_SCEN=lb-network-loss-blackhole
source "$(dirname "$0")/lb_lib.sh"
lb_router 81
PORT=19081
CAP=$LB_OUT/$LB_SCEN.pcap
lb_nginx "$NS_S" nl "server { listen $S_IP:$PORT; keepalive_timeout 60s; location / { return 200 'hello\n'; } }"
lb_wait_port "$NS_C" "$S_IP" $PORT
lb_capture_start "$NS_C" tcpdump "$CAP" -i "$C_DEV" -s 0 tcp
lb_bg "$NS_C" "$LB_WORK/client.jsonl" timeout 25 python3 -u - "$S_IP" $PORT <<'PY'
import json, socket, sys, time, requests
ip, port = sys.argv[1], int(sys.argv[2])
ports = []
_cc = socket.socket.connect
def sconnect(self, addr):
    r = _cc(self, addr); ports.append(self.getsockname()[1]); return r
socket.socket.connect = sconnect
s = requests.Session()
r = s.get(f"http://{ip}:{port}/one", timeout=(3, 4)); st = r.status_code
print(json.dumps({"event": "first_done"}), flush=True)
time.sleep(1.0)     # the router starts dropping now
t0 = time.time()
try:
    s.get(f"http://{ip}:{port}/two", timeout=(3, 4))
except Exception as e:
    print(json.dumps({"port": ports[0], "saw": f"HTTP {st}, then {type(e).__name__}: {e}", "waited": round(time.time() - t0, 3)}), flush=True)
s.close()
time.sleep(2.5)
print(json.dumps({"event": "done"}), flush=True)
PY
CLIENT=$LB_PID
for _ in $(seq 1 50); do grep -q first_done "$LB_WORK/client.jsonl" && break; sleep 0.1; done
sleep 0.3
ip netns exec "$NS_R" iptables -I FORWARD -j DROP
lb_log "router: FORWARD DROP inserted"
for _ in $(seq 1 120); do grep -q '"done"' "$LB_WORK/client.jsonl" && break; sleep 0.1; done
set +e
timeout 10 ip netns exec "$NS_C" curl -sS -o /dev/null --connect-timeout 3 "http://$S_IP:$PORT/three" 2>"$LB_WORK/curl.err"
rc=$?
set -e
python3 -c 'import json,sys; print(json.dumps({"port": None, "client": "curl", "saw": "curl exit %s: %s" % (sys.argv[1], sys.argv[2].strip())}))' "$rc" "$(cat "$LB_WORK/curl.err")" >>"$LB_WORK/client.jsonl"
sleep 1
lb_capture_stop
lb_label "$LB_SCEN" "$CAP" "$LB_WORK/client.jsonl"
