#!/usr/bin/env bash
# client-abort: nginx serves a 20 MB file; the clients abandon the download mid-stream:
# requests (stream=True) reads 256 KiB then closes the response; bare http.client reads
# 128 KiB then closes the connection. Both close with response bytes still unread
# (Linux then sends RST instead of FIN) while nginx is still sending.
# Capture: tcpdump -i lo -s 256 (small snaplen: payloads truncated) in a private namespace, pcap.
LB_SCEN=lb-client-abort-requests
source "$(dirname "$0")/lb_lib.sh"
NS=lb-ca1-$LB_TAG
PORT=19031
CAP=$LB_OUT/$LB_SCEN.pcap
lb_ns "$NS"
head -c 20000000 /dev/zero | tr '\0' 'x' > "$LB_WORK/big.bin"
lb_nginx "$NS" ca "server { listen 127.0.0.1:$PORT; location / { root $LB_WORK; limit_rate 4m; } }"
lb_wait_port "$NS" 127.0.0.1 $PORT
lb_capture_start "$NS" tcpdump "$CAP" -i lo -s 256 tcp
timeout 30 ip netns exec "$NS" python3 - $PORT >"$LB_WORK/client.jsonl" <<'PY' || lb_log "client exited with status $?"
import http.client, json, sys, time, requests
port = int(sys.argv[1])
r = requests.get(f"http://127.0.0.1:{port}/big.bin", stream=True, timeout=5)
lport = r.raw._connection.sock.getsockname()[1]
got = 0
for chunk in r.iter_content(65536):
    got += len(chunk)
    if got >= 262144:
        break
r.close()
print(json.dumps({"port": lport, "saw": f"HTTP {r.status_code}; stream abandoned after {got} of {r.headers['Content-Length']} bytes, response closed"}), flush=True)
time.sleep(0.5)
c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
c.request("GET", "/big.bin")
resp = c.getresponse()
data = resp.read(131072)
lport = c.sock.getsockname()[1]
c.close()
print(json.dumps({"port": lport, "saw": f"HTTP {resp.status}; read {len(data)} of {resp.getheader('Content-Length')} bytes, connection closed"}), flush=True)
time.sleep(0.5)
PY
lb_capture_stop
lb_label "$LB_SCEN" "$CAP" "$LB_WORK/client.jsonl"
