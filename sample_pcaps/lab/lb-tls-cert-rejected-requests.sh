#!/usr/bin/env bash
# tls-certificate-rejected: nginx (TLS 1.2 + 1.3) with a self-signed certificate made in a
# temp dir. requests (verify=True, TLS 1.3) raises SSLError(SSLCertVerificationError
# ... self-signed certificate) and OpenSSL sends an unencrypted unknown_ca alert; curl
# (default verification, TLS 1.2 forced with --tls-max 1.2) fails the same way (exit 60).
# A third client that trusts the certificate (verify=cert.pem) gets HTTP 200 (graceful).
# Capture: tcpdump -i lo in a private namespace, pcap.
LB_SCEN=lb-tls-cert-rejected-requests
source "$(dirname "$0")/lb_lib.sh"
NS=lb-tc1-$LB_TAG
PORT=19051
CAP=$LB_OUT/$LB_SCEN.pcap
lb_ns "$NS"
lb_selfsigned localhost
lb_nginx "$NS" tc "server { listen 127.0.0.1:$PORT ssl; server_name localhost;
    ssl_certificate $LB_WORK/cert.pem; ssl_certificate_key $LB_WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3; keepalive_timeout 5s;
    location / { return 200 'tls ok\n'; } }"
lb_wait_port "$NS" 127.0.0.1 $PORT
lb_capture_start "$NS" tcpdump "$CAP" -i lo -s 0 tcp
timeout 20 ip netns exec "$NS" python3 - $PORT "$LB_WORK/cert.pem" >"$LB_WORK/client.jsonl" <<'PY' || lb_log "client exited with status $?"
import json, sys, time, requests, urllib3.connection
port, cafile = int(sys.argv[1]), sys.argv[2]
ports = []
_c = urllib3.connection.HTTPSConnection.connect
def connect(self):
    try:
        _c(self)
    finally:
        if self.sock is not None:
            ports.append(self.sock.getsockname()[1])
import socket
_cc = socket.socket.connect
def sconnect(self, addr):
    r = _cc(self, addr); ports.append(self.getsockname()[1]); return r
socket.socket.connect = sconnect
try:
    requests.get(f"https://localhost:{port}/", timeout=5)
except Exception as e:
    print(json.dumps({"port": ports[-1], "saw": f"{type(e).__name__}: {e}", "client": "requests verify=True"}), flush=True)
time.sleep(0.3)
with requests.Session() as s:
    r = s.get(f"https://localhost:{port}/", timeout=5, verify=cafile)
    st = r.status_code; r.close(); del r
print(json.dumps({"port": ports[-1], "saw": f"HTTP {st}", "client": "requests verify=cert.pem"}), flush=True)
PY
sleep 0.3
set +e
timeout 10 ip netns exec "$NS" curl -sS --tls-max 1.2 -o /dev/null "https://localhost:$PORT/" 2>"$LB_WORK/curl.err"
rc=$?
set -e
python3 -c 'import json,sys; print(json.dumps({"port": None, "client": "curl", "saw": "curl exit %s: %s" % (sys.argv[1], sys.argv[2].strip())}))' "$rc" "$(cat "$LB_WORK/curl.err")" >>"$LB_WORK/client.jsonl"
lb_capture_stop
lb_label "$LB_SCEN" "$CAP" "$LB_WORK/client.jsonl"
