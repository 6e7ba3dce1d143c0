#!/usr/bin/env bash
# client-timeout: a plain asyncio HTTP server that answers /slow after 3 s (it is just slow).
# requests (timeout=1) raises ReadTimeout and closes (client FIN) ~1 s after the request;
# bare http.client (socket timeout 1.5 s) raises TimeoutError and closes. The server's late
# response then hits the closed socket and the client's kernel answers RST.
# One /fast request on a keep-alive requests.Session is closed normally (graceful).
# Capture: tcpdump -i lo in a private namespace, then gzip (pcap.gz).
LB_SCEN=lb-client-timeout-requests
source "$(dirname "$0")/lb_lib.sh"
NS=lb-ct1-$LB_TAG
PORT=19021
CAP=$LB_OUT/$LB_SCEN.pcap
lb_ns "$NS"
cat > "$LB_WORK/srv.py" <<'PY'
import asyncio, sys
async def handle(r, w):
    try:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            path = head.split(b" ")[1]
            if path.startswith(b"/slow"):
                await asyncio.sleep(3.0)
            body = b"done\n"
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s" % (len(body), body))
            await w.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        w.close()
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    async with srv:
        await asyncio.sleep(40)
asyncio.run(main())
PY
lb_bg "$NS" "$LB_WORK/srv.log" timeout 45 python3 "$LB_WORK/srv.py" $PORT
lb_wait_port "$NS" 127.0.0.1 $PORT
lb_capture_start "$NS" tcpdump "$CAP" -i lo -s 0 tcp
timeout 30 ip netns exec "$NS" python3 - $PORT >"$LB_WORK/client.jsonl" <<'PY' || lb_log "client exited with status $?"
import http.client, json, sys, time, requests, urllib3.connection
port = int(sys.argv[1])
ports = []
_c = urllib3.connection.HTTPConnection.connect
def connect(self):
    _c(self); ports.append(self.sock.getsockname()[1])
urllib3.connection.HTTPConnection.connect = connect
with requests.Session() as s:
    r = s.get(f"http://127.0.0.1:{port}/fast", timeout=5)
    st = r.status_code; r.close(); del r
print(json.dumps({"port": ports[-1], "saw": f"HTTP {st}"}), flush=True)
t0 = time.time()
try:
    requests.get(f"http://127.0.0.1:{port}/slow", timeout=1)
except Exception as e:
    print(json.dumps({"port": ports[-1], "saw": f"{type(e).__name__}: {e}", "waited": round(time.time() - t0, 3)}), flush=True)
c = http.client.HTTPConnection("127.0.0.1", port, timeout=1.5)
t0 = time.time()
try:
    c.request("GET", "/slow/2"); c.getresponse()
except Exception as e:
    lp = c.sock.getsockname()[1]
    c.close()
    print(json.dumps({"port": lp, "saw": f"{type(e).__name__}: {e}", "waited": round(time.time() - t0, 3)}), flush=True)
time.sleep(3.5)   # the late responses arrive while we wait
PY
lb_capture_stop
rm -f "$CAP.gz"; gzip -9n "$CAP"
lb_label "$LB_SCEN" "$CAP.gz" "$LB_WORK/client.jsonl"
