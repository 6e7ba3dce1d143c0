#!/usr/bin/env bash
# http2-goaway: nginx h2c ("listen PORT http2" on a plain port) with keepalive_timeout 1s:
# an idle HTTP/2 connection gets GOAWAY (NO_ERROR) then FIN after 1 s. httpx (http2 prior
# knowledge) makes one request, waits 1.5 s, and makes another: the first connection is
# the GOAWAY one; the second request goes on a new connection (or is retried there).
# curl --http2-prior-knowledge with a 2nd URL after --rate-limited pause is not possible,
# so a raw h2 client (python h2 library) opens a connection, makes one request and
# stays idle until nginx's GOAWAY + FIN, then closes.
# Capture: tcpdump -i lo in a private namespace, pcap.
LB_SCEN=lb-http2-goaway-idle
source "$(dirname "$0")/lb_lib.sh"
NS=lb-h2b-$LB_TAG
PORT=19092
CAP=$LB_OUT/$LB_SCEN.pcap
lb_ns "$NS"
lb_nginx "$NS" h2b "server { listen 127.0.0.1:$PORT http2; keepalive_timeout 1s;
    location / { return 200 'h2 hello\n'; } }"
lb_wait_port "$NS" 127.0.0.1 $PORT
lb_capture_start "$NS" tcpdump "$CAP" -i lo -s 0 tcp
timeout 20 ip netns exec "$NS" python3 - $PORT >"$LB_WORK/client.jsonl" 2>"$LB_WORK/client.err" <<'PY' || lb_log "client exited with status $?"
import json, socket, sys, time, httpx, h2.connection, h2.events, h2.config
port = int(sys.argv[1])
ports = []
_cc = socket.socket.connect
def sconnect(self, addr):
    r = _cc(self, addr); ports.append(self.getsockname()[1]); return r
socket.socket.connect = sconnect
res = {}
with httpx.Client(http1=False, http2=True, timeout=5) as c:
    for i, pause in enumerate((0, 1.5)):
        time.sleep(pause)
        try:
            r = c.get(f"http://127.0.0.1:{port}/x{i}")
            res.setdefault(ports[-1], []).append(f"{r.http_version} {r.status_code}")
        except Exception as e:
            res.setdefault(ports[-1], []).append(f"{type(e).__name__}: {e}")
for p, v in res.items():
    print(json.dumps({"port": p, "saw": "; ".join(v), "client": "httpx http2"}), flush=True)
# raw h2 client: one request, then idle until nginx's GOAWAY
s = socket.create_connection(("127.0.0.1", port), timeout=5)
conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
conn.initiate_connection()
conn.send_headers(1, [(":method", "GET"), (":path", "/raw"), (":authority", "127.0.0.1"), (":scheme", "http")], end_stream=True)
s.sendall(conn.data_to_send())
seen = []
while True:
    d = s.recv(65535)
    if not d:
        seen.append("EOF"); break
    for ev in conn.receive_data(d):
        if isinstance(ev, h2.events.ResponseReceived):
            seen.append("HTTP/2 " + dict(ev.headers)[b":status"].decode())
        elif isinstance(ev, h2.events.ConnectionTerminated):
            seen.append(f"GOAWAY error_code={ev.error_code!s} last_stream_id={ev.last_stream_id}")
    s.sendall(conn.data_to_send())
lp = s.getsockname()[1]; s.close()
print(json.dumps({"port": lp, "saw": "; ".join(seen), "client": "python h2"}), flush=True)
PY
sleep 0.3
lb_capture_stop
lb_label "$LB_SCEN" "$CAP" "$LB_WORK/client.jsonl"
