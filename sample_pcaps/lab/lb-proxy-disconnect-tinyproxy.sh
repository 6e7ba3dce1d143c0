#!/usr/bin/env bash
# proxy-disconnect with tinyproxy on loopback (private namespace):
#  1. requests, proxies={'http': proxy}, to a dead upstream (nothing listens on 19069):
#     tinyproxy answers "500 Unable to connect" and closes (server FIN).
#  2. requests, proxies={'https': proxy}, https:// dead upstream: CONNECT answered 500 ->
#     ProxyError('Unable to connect to proxy', OSError('Tunnel connection failed: 500 ...')).
#  3. http.client through a CONNECT tunnel (set_tunnel) to a slow streaming server; the
#     tinyproxy process (started here, by PID) is killed with SIGKILL mid-response:
#     the kernel closes the client's proxy connection (FIN or RST) -> IncompleteRead.
# The proxy->upstream legs (127.0.0.1:19062) are in the same capture; they are labelled too.
# Capture: tcpdump -i lo in a private namespace, pcap.
LB_SCEN=lb-proxy-disconnect-tinyproxy
source "$(dirname "$0")/lb_lib.sh"
NS=lb-px1-$LB_TAG
PPORT=19061
UPORT=19062
CAP=$LB_OUT/$LB_SCEN.pcap
lb_ns "$NS"
cat > "$LB_WORK/tinyproxy.conf" <<EOF2
Port $PPORT
Listen 127.0.0.1
Timeout 30
MaxClients 20
LogLevel Info
LogFile "$LB_WORK/tinyproxy.log"
PidFile "$LB_WORK/tinyproxy.pid"
Allow 127.0.0.1
DisableViaHeader Yes
EOF2
chmod 777 "$LB_WORK"
cat > "$LB_WORK/slow.py" <<'PY'
import asyncio, sys
async def handle(r, w):
    try:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nContent-Type: text/plain\r\n\r\n")
        for i in range(100):           # 1000 bytes every 0.1 s: a 10 s response
            w.write(b"z" * 999 + b"\n"); await w.drain(); await asyncio.sleep(0.1)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        w.close()
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    async with srv:
        await asyncio.sleep(40)
asyncio.run(main())
PY
lb_bg "$NS" "$LB_WORK/slow.log" timeout 45 python3 "$LB_WORK/slow.py" $UPORT
lb_bg "$NS" "$LB_WORK/tp.out" tinyproxy -d -c "$LB_WORK/tinyproxy.conf"
TP=$LB_PID
lb_wait_port "$NS" 127.0.0.1 $PPORT
lb_wait_port "$NS" 127.0.0.1 $UPORT
lb_capture_start "$NS" tcpdump "$CAP" -i lo -s 0 tcp
lb_bg "$NS" "$LB_WORK/client.jsonl" timeout 20 python3 -u - $PPORT $UPORT <<'PY'
import http.client, json, socket, sys, time, requests
pport, uport = int(sys.argv[1]), int(sys.argv[2])
ports = []
_cc = socket.socket.connect
def sconnect(self, addr):
    r = _cc(self, addr)
    if addr[1] == pport: ports.append(self.getsockname()[1])
    return r
socket.socket.connect = sconnect
proxy = f"http://127.0.0.1:{pport}"
try:
    r = requests.get("http://127.0.0.1:19069/", proxies={"http": proxy}, timeout=5)
    saw = f"HTTP {r.status_code} {r.reason}"
    r.close(); del r
except Exception as e:
    saw = f"{type(e).__name__}: {e}"
print(json.dumps({"port": ports[-1], "saw": saw, "client": "requests http via proxy"}), flush=True)
time.sleep(0.3)
try:
    requests.get("https://127.0.0.1:19069/", proxies={"https": proxy}, timeout=5)
except Exception as e:
    print(json.dumps({"port": ports[-1], "saw": f"{type(e).__name__}: {e}", "client": "requests https via proxy"}), flush=True)
time.sleep(0.3)
c = http.client.HTTPConnection("127.0.0.1", pport, timeout=5)
c.set_tunnel("127.0.0.1", uport)
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
    print(json.dumps({"port": c.sock.getsockname()[1] if c.sock else ports[-1], "saw": f"HTTP 200 via CONNECT tunnel, then {type(e).__name__}: {e!r} after {got} of 100000 body bytes", "client": "http.client set_tunnel"}), flush=True)
PY
CLIENT=$LB_PID
for _ in $(seq 1 100); do grep -q kill_now "$LB_WORK/client.jsonl" && break; sleep 0.1; done
kill -KILL "$TP"; lb_log "tinyproxy (pid $TP) killed with SIGKILL mid-tunnel"
for _ in $(seq 1 50); do kill -0 "$CLIENT" 2>/dev/null || break; sleep 0.1; done
lb_capture_stop
lb_label "$LB_SCEN" "$CAP" "$LB_WORK/client.jsonl"
