#!/usr/bin/env bash
# proxy-disconnect with squid 5 (proxy and a slow upstream in the "server" namespace,
# clients in the "client" namespace, one veth pair):
#  1. requests https:// to a dead upstream through squid: CONNECT answered 503 ->
#     ProxyError('Unable to connect to proxy', OSError('Tunnel connection failed: 503 ...'));
#     who sends the first FIN after the 503 varies between runs (squid or the client; both seen).
#  2. requests http:// to the dead upstream through squid: HTTP 503 response, no exception;
#     squid keeps this connection open (keep-alive);
#     the Session is closed by the client afterwards.
#  3. http.client through a CONNECT tunnel to a slow streaming server; the squid process
#     (started here with -N, by PID) is killed with SIGKILL mid-response.
# Capture: tcpdump on the client's veth (10.99.62.0/24, MTU 1500, offloads off), pcap.
LB_SCEN=lb-proxy-disconnect-squid
source "$(dirname "$0")/lb_lib.sh"
lb_pair 62
PPORT=19063
UPORT=19064
CAP=$LB_OUT/$LB_SCEN.pcap
chmod 777 "$LB_WORK"
cat > "$LB_WORK/squid.conf" <<EOF2
http_port $S_IP:$PPORT
acl SSL_ports port 1-65535
acl CONNECT method CONNECT
http_access allow all
cache deny all
cache_mem 8 MB
access_log none
cache_log $LB_WORK/cache.log
cache_store_log none
pid_filename $LB_WORK/squid.pid
coredump_dir $LB_WORK
shutdown_lifetime 1 seconds
connect_timeout 5 seconds
forward_max_tries 1
connect_retries 0
EOF2
cat > "$LB_WORK/slow.py" <<'PY'
import asyncio, sys
async def handle(r, w):
    try:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nContent-Type: text/plain\r\n\r\n")
        for i in range(100):
            w.write(b"z" * 999 + b"\n"); await w.drain(); await asyncio.sleep(0.1)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        w.close()
async def main():
    srv = await asyncio.start_server(handle, sys.argv[1], int(sys.argv[2]))
    async with srv:
        await asyncio.sleep(50)
asyncio.run(main())
PY
lb_bg "$NS_S" "$LB_WORK/slow.log" timeout 55 python3 "$LB_WORK/slow.py" "$S_IP" $UPORT
lb_bg "$NS_S" "$LB_WORK/squid.out" squid -N -f "$LB_WORK/squid.conf"
SQ=$LB_PID
lb_wait_port "$NS_C" "$S_IP" $PPORT
lb_wait_port "$NS_C" "$S_IP" $UPORT
lb_capture_start "$NS_C" tcpdump "$CAP" -i "$C_DEV" -s 0 tcp
lb_bg "$NS_C" "$LB_WORK/client.jsonl" timeout 25 python3 -u - "$S_IP" $PPORT $UPORT <<'PY'
import http.client, json, socket, sys, time, requests
ip, pport, uport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ports = []
_cc = socket.socket.connect
def sconnect(self, addr):
    r = _cc(self, addr)
    if addr[1] == pport: ports.append(self.getsockname()[1])
    return r
socket.socket.connect = sconnect
proxy = f"http://{ip}:{pport}"
try:
    requests.get(f"https://{ip}:19069/", proxies={"https": proxy}, timeout=8)
except Exception as e:
    print(json.dumps({"port": ports[-1], "saw": f"{type(e).__name__}: {e}", "client": "requests https via squid"}), flush=True)
time.sleep(0.3)
with requests.Session() as s:
    r = s.get(f"http://{ip}:19069/", proxies={"http": proxy}, timeout=8)
    saw = f"HTTP {r.status_code} {r.reason}"; r.close(); del r
    time.sleep(0.3)
print(json.dumps({"port": ports[-1], "saw": saw, "client": "requests http via squid"}), flush=True)
time.sleep(0.3)
c = http.client.HTTPConnection(ip, pport, timeout=5)
c.set_tunnel(ip, uport)
c.request("GET", "/stream")
resp = c.getresponse()
got = 0
try:
    while True:
        d = resp.read(1000)
        if not d:
            raise http.client.IncompleteRead(b"", 100000 - got)
        got += len(d)
        if got == 3000:
            print(json.dumps({"event": "kill_now"}), flush=True)
except Exception as e:
    print(json.dumps({"port": ports[-1], "saw": f"HTTP 200 via CONNECT tunnel, then {type(e).__name__}: {e!r} after {got} of 100000 body bytes", "client": "http.client set_tunnel"}), flush=True)
PY
CLIENT=$LB_PID
for _ in $(seq 1 150); do grep -q kill_now "$LB_WORK/client.jsonl" && break; sleep 0.1; done
kill -KILL "$SQ"; lb_log "squid (pid $SQ) killed with SIGKILL mid-tunnel"
for _ in $(seq 1 50); do kill -0 "$CLIENT" 2>/dev/null || break; sleep 0.1; done
lb_capture_stop
lb_label "$LB_SCEN" "$CAP" "$LB_WORK/client.jsonl"
