#!/usr/bin/env bash
# pool-overflow + idle-close over HTTPS: a requests.Session with HTTPAdapter(pool_maxsize=2)
# mounted for https:// is shared by 6 threads (4 GETs each) against nginx (TLS 1.3,
# keepalive_timeout 1s, limit_rate 100k on a 6 KB body so the requests overlap). urllib3
# logs "Connection pool is full, discarding connection" and closes (client FIN, no
# close_notify) every connection it cannot put back, right after a complete 200; the client
# log records which local port was discarded. The 2 pooled connections are left idle and
# nginx closes them after 1 s (close_notify + FIN: idle-close) before session.close().
# Capture: tcpdump on the client's veth (10.98.10.0/24, MTU 1500, offloads off), pcap.
LC_SCEN=lc-pool-idle-https
source "$(dirname "$0")/lc_lib.sh"
lc_pair 10
PORT=443
CAP=$LB_OUT/$LC_SCEN.pcap
lc_certs "$S_IP"
head -c 4500 /dev/urandom | base64 -w 100 >"$LB_WORK/body.txt"     # ~6 KB
lb_nginx "$NS_S" po "server { listen $S_IP:$PORT ssl; server_name lc.test; $(lc_ssl ec TLSv1.3)
    keepalive_timeout 1s; keepalive_requests 1000;
    location / { root $LB_WORK; limit_rate 100k; } }"
lb_wait_port "$NS_C" "$S_IP" $PORT
lb_capture_start "$NS_C" tcpdump "$CAP" -i "$C_DEV" -s 0 tcp
lc_run "$NS_C" 40 python3 - "$S_IP" $PORT >"$LB_WORK/client.jsonl" 2>"$LB_WORK/client.err" <<'PY' || lc_log "client exited with status $?"
import logging, sys, threading, time
import requests, urllib3
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool
from lc_common import *
ip, port = sys.argv[1], int(sys.argv[2])
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
        with lock:
            discarded.add(lport)
HTTPConnectionPool._put_conn = put_conn
class H(logging.Handler):
    def emit(self, rec):
        m = rec.getMessage()
        if "pool is full" in m:
            warn.append(m)
            emit(event="warning", text=m)
logging.getLogger("urllib3.connectionpool").addHandler(H())
s = requests.Session()
s.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=2))
discarded = set()
lock = threading.Lock()
warn = []
def worker(i):
    for j in range(4):
        try:
            r = s.get(f"https://{ip}:{port}/body.txt", verify=CA, timeout=10)
            emit(event="response", thread=i, status=r.status_code, bytes=len(r.content))
        except Exception as e:
            emit(event="error", thread=i, error=err(e))
ts = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
[t.start() for t in ts]; [t.join() for t in ts]
time.sleep(1.4)   # nginx keepalive_timeout 1s closes the two pooled connections first
s.close()
emit(event="session_closed")
w = warn[0] if warn else "Connection pool is full, discarding connection"
for p in dict.fromkeys(PORTS):   # one summary line per connection (local port)
    if p in discarded:
        emit(port=p, saw=f"HTTP 200; urllib3 WARNING {w}: this connection was the one discarded (closed) after its response", client="requests Session, HTTPAdapter(pool_maxsize=2), 6 threads")
    else:
        emit(port=p, saw="HTTP 200 responses; connection kept in the pool, idle until session.close()", client="requests Session, HTTPAdapter(pool_maxsize=2), 6 threads")
PY
sleep 0.5
lb_capture_stop
lc_finish "$CAP" "$LB_WORK/client.jsonl"
