#!/usr/bin/env bash
# tls-certificate-rejected: nginx (TLS 1.2 + 1.3) serves certificates signed by the lab CA
# whose validity is clearly wrong (made with `openssl ca -startdate/-enddate`):
#   :443  EXPIRED      notBefore 2024-01-01, notAfter 2024-02-01
#   :8443 NOT YET VALID notBefore 2035-01-01, notAfter 2036-01-01
# Clients verify against the lab CA (SSLKEYLOGFILE set: for a failed TLS 1.3 handshake
# OpenSSL logs only the handshake secrets):
#   requests (TLS 1.3), httpx (TLS 1.2 forced), aiohttp (TLS 1.3), curl (TLS 1.3) and curl
#   --tls-max 1.2 against the expired certificate -> "certificate has expired";
#   requests (TLS 1.3) and curl --tls-max 1.2 against the not-yet-valid one -> "certificate
#   is not yet valid";
#   requests verify=False against the expired certificate -> 200 (graceful contrast).
# Capture: tcpdump on the client's veth (10.98.16.0/24, MTU 1500, offloads off), pcapng.
LC_SCEN=lc-tls-cert-expired
source "$(dirname "$0")/lc_lib.sh"
lc_pair 16
CAP=$LB_OUT/$LC_SCEN.pcapng
lc_pki
lc_cert expired ec "$S_IP" 20240101000000Z 20240201000000Z
lc_cert notyet ec "$S_IP" 20350101000000Z 20360101000000Z
lc_log "$(openssl x509 -in "$LC_PKI/expired.crt" -noout -dates | tr '\n' ' ') / not yet valid: $(openssl x509 -in "$LC_PKI/notyet.crt" -noout -dates | tr '\n' ' ')"
lb_nginx "$NS_S" ce "server { listen $S_IP:443 ssl; server_name lc.test;
    ssl_certificate $LC_PKI/expired.crt; ssl_certificate_key $LC_PKI/expired.key; ssl_protocols TLSv1.2 TLSv1.3;
    keepalive_timeout 10s; location / { return 200 'expired but served\n'; } }
  server { listen $S_IP:8443 ssl; server_name lc.test;
    ssl_certificate $LC_PKI/notyet.crt; ssl_certificate_key $LC_PKI/notyet.key; ssl_protocols TLSv1.2 TLSv1.3;
    keepalive_timeout 10s; location / { return 200 'not yet valid but served\n'; } }"
lb_wait_port "$NS_C" "$S_IP" 443
lb_wait_port "$NS_C" "$S_IP" 8443
lb_capture_start "$NS_C" pcapng "$CAP" -i "$C_DEV" -s 0 tcp
J=$LB_WORK/client.jsonl
lc_run "$NS_C" 30 python3 - "$S_IP" >"$J" 2>"$LB_WORK/client.err" <<'PY' || lc_log "client exited with status $?"
import asyncio, sys, time, aiohttp, httpx, requests
from lc_common import *
ip = sys.argv[1]
def rq(port, path, verify, label):
    ps = track()
    try:
        r = requests.get(f"https://{ip}:{port}{path}", verify=verify, timeout=5)
        saw = f"GET {path} HTTP {r.status_code}"
    except Exception as e:
        saw = f"GET {path}: {err(e)}"
    emit(port=ps[-1], saw=saw, client=label)
    time.sleep(0.2)
rq(443, "/expired/requests", CA, "requests verify=lab CA (TLS 1.3)")
ps = track()
with httpx.Client(verify=ctx(maxv="TLSv1_2"), timeout=5) as c:
    try:
        r = c.get(f"https://{ip}/expired/httpx"); saw = f"GET /expired/httpx HTTP {r.status_code}"
    except Exception as e:
        saw = f"GET /expired/httpx: {err(e)}"
emit(port=ps[-1], saw=saw, client="httpx verify=lab CA (TLS 1.2)")
time.sleep(0.2)
async def ah():
    ps = track()
    async with aiohttp.ClientSession() as s:
        try:
            async with s.get(f"https://{ip}/expired/aiohttp", ssl=ctx()) as r:
                saw = f"GET /expired/aiohttp HTTP {r.status}"
        except Exception as e:
            saw = f"GET /expired/aiohttp: {err(e)}"
    emit(port=ps[-1], saw=saw, client="aiohttp ssl=lab CA context (TLS 1.3)")
asyncio.run(ah())
time.sleep(0.2)
rq(8443, "/notyet/requests", CA, "requests verify=lab CA (TLS 1.3)")
rq(443, "/expired/verify-false", False, "requests verify=False (TLS 1.3)")
PY
for spec in "443 /expired/curl-tls13 --tlsv1.3" "443 /expired/curl-tls12 --tls-max 1.2" "8443 /notyet/curl-tls12 --tls-max 1.2"; do
    set -- $spec
    port=$1 path=$2; shift 2
    set +e
    lc_run "$NS_C" 10 curl -sS --cacert "$LC_PKI/ca.pem" "$@" -o /dev/null -w '%{local_port} %{http_version} %{http_code}\n' \
        "https://$S_IP:$port$path" >"$LB_WORK/curl.out" 2>"$LB_WORK/curl.err"
    rc=$?
    set -e
    lc_curl_event "curl $* ($path)" "$rc" "$LB_WORK/curl.out" "$LB_WORK/curl.err" >>"$J"
    sleep 0.2
done
lb_capture_stop
lc_finish "$CAP" "$J"
