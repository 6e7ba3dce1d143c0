#!/usr/bin/env bash
# tls-certificate-rejected: nginx with a self-signed certificate (TLS 1.2 only here, so the
# certificate flight is in clear). aiohttp (default ssl verification) raises
# ClientConnectorCertificateError and closes with FIN, no alert; httpx (verify=True) raises
# ConnectError CERTIFICATE_VERIFY_FAILED (OpenSSL sends an unknown_ca alert).
# Capture: tcpdump -i any (Linux cooked v2, SLL2) in the client's namespace (traffic on
# the veth 10.99.52.0/24, MTU 1500, offloads off), pcap.
LB_SCEN=lb-tls-cert-rejected-aiohttp
source "$(dirname "$0")/lb_lib.sh"
lb_pair 52
PORT=19052
CAP=$LB_OUT/$LB_SCEN.pcap
lb_selfsigned lab.test "$S_IP"
lb_nginx "$NS_S" tc2 "server { listen $S_IP:$PORT ssl; server_name lab.test;
    ssl_certificate $LB_WORK/cert.pem; ssl_certificate_key $LB_WORK/key.pem;
    ssl_protocols TLSv1.2; location / { return 200 'tls ok\n'; } }"
lb_wait_port "$NS_C" "$S_IP" $PORT
lb_capture_start "$NS_C" tcpdump "$CAP" -i any -s 0 tcp
timeout 20 ip netns exec "$NS_C" python3 - "$S_IP" $PORT >"$LB_WORK/client.jsonl" <<'PY' || lb_log "client exited with status $?"
import asyncio, json, socket, sys, time
import aiohttp, httpx
ip, port = sys.argv[1], int(sys.argv[2])
ports = []
_cc = socket.socket.connect
def sconnect(self, addr):
    r = _cc(self, addr); ports.append(self.getsockname()[1]); return r
socket.socket.connect = sconnect
async def main():
    # aiohttp connects via loop.sock_connect on a non-blocking socket: record the port at TLS time
    async with aiohttp.ClientSession() as s:
        try:
            await s.get(f"https://{ip}:{port}/")
        except Exception as e:
            print(json.dumps({"port": None, "saw": f"{type(e).__name__}: {e}", "client": "aiohttp"}), flush=True)
    await asyncio.sleep(0.3)
asyncio.run(main())
try:
    httpx.get(f"https://{ip}:{port}/", timeout=5)
except Exception as e:
    print(json.dumps({"port": ports[-1] if ports else None, "saw": f"{type(e).__name__}: {e}", "client": "httpx verify=True"}), flush=True)
PY
lb_capture_stop
lb_label "$LB_SCEN" "$CAP" "$LB_WORK/client.jsonl"
