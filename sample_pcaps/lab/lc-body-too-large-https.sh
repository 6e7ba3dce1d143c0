#!/usr/bin/env bash
# body-too-large over HTTPS: nginx (TLS 1.2 + 1.3) client_max_body_size 1k; 2 MB POSTs.
# nginx answers 413 as soon as it has the request head (Content-Length 2097152 > 1k) and
# then reads and discards the declared body before closing (close_notify + FIN), for at
# most lingering_time.
#  * port 443, lingering_time 1s: requests (TLS 1.3) streams its 2 MB body slowly (a
#    file-like object, so Content-Length is set; 8 KiB every 40 ms, ~200 KB/s) and does not
#    read while it sends: nginx gives up discarding after ~1 s and closes with the body
#    still arriving; its kernel resets the connection and requests sees the reset / broken
#    pipe (or, if it gets there first, the 413). curl --tls-max 1.2 reads the early 413
#    and stops sending at once (close_notify, FIN).
#  * port 8443, nginx defaults (lingering_time 30s): curl (TLS 1.3) the same way.
# (An unthrottled requests upload pushes all 2 MB into the socket buffers in ~10 ms and
# nginx reads them all: the capture would hold 2.2 MB of ciphertext.)
# A small POST (200 bytes) succeeds (graceful).
# Capture: tcpdump on the client's veth (10.98.4.0/24, MTU 1500, offloads off), pcap
# gzipped (.pcap.gz; ciphertext hardly compresses, but the size varies from run to run).
LC_SCEN=lc-body-too-large-https
source "$(dirname "$0")/lc_lib.sh"
lc_pair 4
PORT=443
CAP=$LB_OUT/$LC_SCEN.pcap
lc_certs "$S_IP"
lb_nginx "$NS_S" bt "server { listen $S_IP:$PORT ssl; server_name lc.test; $(lc_ssl ec)
    keepalive_timeout 10s; client_max_body_size 1k; lingering_time 1s;
    location / { return 200 'body accepted\n'; } }
  server { listen $S_IP:8443 ssl; server_name lc.test; $(lc_ssl ec)
    keepalive_timeout 10s; client_max_body_size 1k;
    location / { return 200 'body accepted\n'; } }"
lb_wait_port "$NS_C" "$S_IP" $PORT
head -c 2097152 /dev/urandom >"$LB_WORK/big.bin"
lb_capture_start "$NS_C" tcpdump "$CAP" -i "$C_DEV" -s 0 tcp
lc_run "$NS_C" 30 python3 - "$S_IP" $PORT >"$LB_WORK/client.jsonl" 2>"$LB_WORK/client.err" <<'PY' || lc_log "client exited with status $?"
import sys, time, requests
from lc_common import *
ip, port = sys.argv[1], int(sys.argv[2])
base = f"https://{ip}:{port}"
SIZE = 2097152
class SlowBody:   # a 2 MB file-like body, read 8 KiB every 40 ms (~200 KB/s)
    def __init__(self):
        self.left = SIZE
    def __len__(self):          # requests sets Content-Length from this (no chunked encoding)
        return SIZE
    def read(self, n=-1):
        n = min(self.left, 8192 if n is None or n < 0 else n)
        self.left -= n
        time.sleep(0.04)
        return b"u" * n
for path, data in (("/upload/small", b"x" * 200), ("/upload/big-requests", SlowBody())):
    ps = track()
    n = 200 if isinstance(data, bytes) else SIZE
    with requests.Session() as s:
        try:
            r = s.post(base + path, data=data, verify=CA, timeout=10)
            saw = f"POST {path} ({n} B) HTTP {r.status_code}"
        except Exception as e:
            saw = f"POST {path} ({n} B): {err(e)}"
    emit(port=ps[-1], saw=saw, client="requests (TLS 1.3)" + (", 2 MB file-like body with Content-Length, read at ~200 KB/s" if n == SIZE else ""))
    time.sleep(0.3)
PY
sleep 0.3
set +e
lc_run "$NS_C" 20 curl -sS --cacert "$LC_PKI/ca.pem" --tls-max 1.2 -o /dev/null -H 'Expect:' \
    --data-binary @"$LB_WORK/big.bin" -w '%{local_port} %{http_version} %{http_code}\n' \
    "https://$S_IP:$PORT/upload/big-curl-tls12" >"$LB_WORK/curl.out" 2>"$LB_WORK/curl.err"
rc=$?
lc_curl_event "curl --tls-max 1.2 --data-binary (2 MB, no Expect), lingering_time 1s" "$rc" "$LB_WORK/curl.out" "$LB_WORK/curl.err" >>"$LB_WORK/client.jsonl"
sleep 0.3
lc_run "$NS_C" 20 curl -sS --cacert "$LC_PKI/ca.pem" -o /dev/null -H 'Expect:' \
    --data-binary @"$LB_WORK/big.bin" -w '%{local_port} %{http_version} %{http_code}\n' \
    "https://$S_IP:8443/upload/big-curl-tls13" >"$LB_WORK/curl.out" 2>"$LB_WORK/curl.err"
rc=$?
lc_curl_event "curl (TLS 1.3) --data-binary (2 MB, no Expect), default lingering close" "$rc" "$LB_WORK/curl.out" "$LB_WORK/curl.err" >>"$LB_WORK/client.jsonl"
set -e
lb_capture_stop
lc_log "capture $(stat -c %s "$CAP") bytes"
rm -f "$CAP.gz"
gzip -9n "$CAP"; CAP=$CAP.gz      # always .pcap.gz, so the file name does not depend on the run
lc_finish "$CAP" "$LB_WORK/client.jsonl"
