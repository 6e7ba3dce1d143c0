#!/usr/bin/env bash
# client-abort over HTTPS: nginx (TLS 1.2 + 1.3, limit_rate 120k so the download lasts)
# serves a 20 MB file. curl --max-time 1 (TLS 1.3) gives up mid-download (exit 28);
# requests stream=True (TLS 1.2 forced) reads 64 KiB and closes the response with unread
# data (RST) while nginx is still sending. The snaplen is NOT cut (decryption needs whole
# records); the short rate-limited downloads keep the capture small.
# Capture: tcpdump on the client's veth (10.98.8.0/24, MTU 1500, offloads off), pcap
# gzipped (.pcap.gz; ciphertext hardly compresses, but the size varies from run to run).
LC_SCEN=lc-client-abort-https
source "$(dirname "$0")/lc_lib.sh"
lc_pair 8
PORT=443
CAP=$LB_OUT/$LC_SCEN.pcap
lc_certs "$S_IP"
head -c 20971520 /dev/zero | tr '\0' 'z' >"$LB_WORK/big.bin"
lb_nginx "$NS_S" ca "server { listen $S_IP:$PORT ssl; server_name lc.test; $(lc_ssl ec)
    keepalive_timeout 10s; location / { root $LB_WORK; limit_rate 120k; } }"
lb_wait_port "$NS_C" "$S_IP" $PORT
lb_capture_start "$NS_C" tcpdump "$CAP" -i "$C_DEV" -s 0 tcp
set +e
lc_run "$NS_C" 10 curl -sS --cacert "$LC_PKI/ca.pem" --max-time 1 -o /dev/null \
    -w '%{local_port} %{http_version} %{http_code} %{size_download}\n' "https://$S_IP:$PORT/big.bin" >"$LB_WORK/curl.out" 2>"$LB_WORK/curl.err"
rc=$?
set -e
python3 - "$rc" "$LB_WORK/curl.out" "$LB_WORK/curl.err" >"$LB_WORK/client.jsonl" <<'PY'
import json, sys
rc, out, err = sys.argv[1], open(sys.argv[2]).read().split(), open(sys.argv[3]).read().strip()
print(json.dumps({"port": int(out[0]), "client": "curl --max-time 1 (TLS 1.3)",
                  "saw": f"curl: HTTP/{out[1]} {out[2]}, {out[3]} of 20971520 body bytes, then exit {rc}: {err}"}))
PY
sleep 0.3
lc_run "$NS_C" 20 python3 - "$S_IP" $PORT >>"$LB_WORK/client.jsonl" 2>"$LB_WORK/client.err" <<'PY' || lc_log "client exited with status $?"
import sys, time, requests
from lc_common import *
ip, port = sys.argv[1], int(sys.argv[2])
class TLS12(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *a, **kw):
        kw["ssl_context"] = ctx(maxv="TLSv1_2")
        return super().init_poolmanager(*a, **kw)
ps = track()
with requests.Session() as s:
    s.mount("https://", TLS12())
    r = s.get(f"https://{ip}:{port}/big.bin", verify=CA, timeout=5, stream=True)
    got = 0
    for b in r.iter_content(16384):
        got += len(b)
        if got >= 65536:
            break
    r.close()
    emit(port=ps[-1], saw=f"GET /big.bin HTTP {r.status_code}; read {got} of 20971520 body bytes, then response.close() (abandoned)", client="requests stream=True (TLS 1.2)")
time.sleep(0.5)
PY
lb_capture_stop
lc_log "capture $(stat -c %s "$CAP") bytes"
rm -f "$CAP.gz"
gzip -9n "$CAP"; CAP=$CAP.gz      # always .pcap.gz, so the file name does not depend on the run
lc_finish "$CAP" "$LB_WORK/client.jsonl"
