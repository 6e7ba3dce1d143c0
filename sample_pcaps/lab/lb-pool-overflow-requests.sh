#!/usr/bin/env bash
# pool-overflow: requests.Session with HTTPAdapter(pool_maxsize=2) shared by 8 threads
# against nginx (HTTP/1.1 keep-alive). urllib3 logs "Connection pool is full, discarding
# connection" and closes (client FIN) every connection it cannot put back, right after a
# complete 200 response. The 2 pooled connections are left idle; nginx's
# keepalive_timeout 1s closes them (idle-close, server FIN) before session.close().
# Capture: tcpdump on the loopback of a private namespace (pcap, DLT_EN10MB).
LB_SCEN=lb-pool-overflow-requests
source "$(dirname "$0")/lb_lib.sh"
NS=lb-po1-$LB_TAG
PORT=19001
CAP=$LB_OUT/$LB_SCEN.pcap
lb_ns "$NS"
head -c 12000 /dev/urandom | base64 -w 100 > "$LB_WORK/body.txt"
lb_nginx "$NS" po "server { listen 127.0.0.1:$PORT; keepalive_timeout 1s; keepalive_requests 1000;
    location / { root $LB_WORK; limit_rate 80k; } }"
lb_wait_port "$NS" 127.0.0.1 $PORT
lb_capture_start "$NS" tcpdump "$CAP" -i lo -s 0 tcp
timeout 40 ip netns exec "$NS" python3 - $PORT >"$LB_WORK/client.jsonl" <<'PY' || lb_log "client exited with status $?"
import json, logging, sys, threading, time, warnings
import requests, urllib3
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool
port = int(sys.argv[1])
out_lock = threading.Lock()
def emit(**kw):
    with out_lock:
        print(json.dumps(kw), flush=True)
# record which connections urllib3 discards because the pool is full
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
        m = rec.getMessage()
        if "pool is full" in m:
            emit(event="warning", text=m)
logging.getLogger("urllib3.connectionpool").addHandler(H())
s = requests.Session()
s.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=2))
def worker(i):
    for j in range(4):
        try:
            r = s.get(f"http://127.0.0.1:{port}/body.txt", timeout=10)
            emit(event="response", thread=i, status=r.status_code, bytes=len(r.content))
        except Exception as e:
            emit(event="error", thread=i, error=f"{type(e).__name__}: {e}")
ts = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
time.sleep(1.4)   # nginx keepalive_timeout 1s closes the two pooled connections first
s.close()
emit(event="session_closed")
PY
sleep 0.5
lb_capture_stop
lb_label "$LB_SCEN" "$CAP" "$LB_WORK/client.jsonl"
