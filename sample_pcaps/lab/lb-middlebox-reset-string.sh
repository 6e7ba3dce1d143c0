#!/usr/bin/env bash
# middlebox-reset: client - router - server namespaces joined by veth pairs; the router
# forwards and has
#   iptables -A FORWARD -p tcp --dport 19071 -m string --string BLOCKME --algo bm -j REJECT --reject-with tcp-reset
# A request whose URL contains BLOCKME is dropped by the router, which sends the client an
# RST in the server's name (router TTL 64, the server's own packets arrive with TTL 63).
# Clients: requests (ConnectionResetError), curl (exit 56, Recv failure). One clean request
# (graceful) for contrast. Server: nginx.
# Capture: tcpdump on the client-side veth (client namespace, MTU 1500, offloads off), pcap.
LB_SCEN=lb-middlebox-reset-string
source "$(dirname "$0")/lb_lib.sh"
lb_router 71
PORT=19071
CAP=$LB_OUT/$LB_SCEN.pcap
ip netns exec "$NS_R" iptables -A FORWARD -p tcp --dport $PORT -m string --string "BLOCKME" --algo bm -j REJECT --reject-with tcp-reset
lb_nginx "$NS_S" mb "server { listen $S_IP:$PORT; keepalive_timeout 5s; location / { return 200 'hello\n'; } }"
lb_wait_port "$NS_C" "$S_IP" $PORT
lb_capture_start "$NS_C" tcpdump "$CAP" -i "$C_DEV" -s 0 tcp
timeout 20 ip netns exec "$NS_C" python3 - "$S_IP" $PORT >"$LB_WORK/client.jsonl" <<'PY' || lb_log "client exited with status $?"
import json, socket, sys, time, requests
ip, port = sys.argv[1], int(sys.argv[2])
ports = []
_cc = socket.socket.connect
def sconnect(self, addr):
    r = _cc(self, addr); ports.append(self.getsockname()[1]); return r
socket.socket.connect = sconnect
with requests.Session() as s:
    r = s.get(f"http://{ip}:{port}/ok", timeout=5)
    st = r.status_code; r.close(); del r
print(json.dumps({"port": ports[-1], "saw": f"HTTP {st}"}), flush=True)
time.sleep(0.3)
try:
    requests.get(f"http://{ip}:{port}/search?q=BLOCKME", timeout=5)
except Exception as e:
    print(json.dumps({"port": ports[-1], "saw": f"{type(e).__name__}: {e}"}), flush=True)
PY
sleep 0.3
set +e
timeout 10 ip netns exec "$NS_C" curl -sS -o /dev/null -w '%{local_port}\n' "http://$S_IP:$PORT/download/BLOCKME.zip" >"$LB_WORK/curl.out" 2>"$LB_WORK/curl.err"
rc=$?
set -e
python3 -c 'import json,sys; print(json.dumps({"port": None, "client": "curl", "saw": "curl exit %s: %s" % (sys.argv[1], sys.argv[2].strip())}))' "$rc" "$(cat "$LB_WORK/curl.err")" >>"$LB_WORK/client.jsonl"
sleep 0.5
lb_capture_stop
lb_label "$LB_SCEN" "$CAP" "$LB_WORK/client.jsonl"
