#!/usr/bin/env bash
# graceful HTTPS over every cipher suite the decryption must handle. nginx (TLS 1.2 + 1.3,
# an ECDSA P-256 and an RSA 2048 certificate from the lab CA, ssl_prefer_server_ciphers off
# so the client's single offered suite wins, TLS 1.3 CCM suites enabled with
# ssl_conf_command Ciphersuites). One connection per suite, the path names the suite
# (/suite-<name>...), so each connection's requests and suite can be checked; clients send
# SNI lc.test (curl --resolve, a getaddrinfo override in Python):
#   TLS 1.3: TLS_AES_128_GCM_SHA256 (curl: 3 requests on one connection: plain, chunked
#            gzip, a 40 KB response spanning several TLS records; and curl --http2 with 2
#            streams), TLS_AES_256_GCM_SHA384 (requests: plain + chunked),
#            TLS_CHACHA20_POLY1305_SHA256 (curl: plain + 40 KB), TLS_AES_128_CCM_SHA256,
#            TLS_AES_128_CCM_8_SHA256 (curl)
#   TLS 1.2: ECDHE-RSA-AES128-GCM-SHA256 (requests, 2 requests), ECDHE-RSA-AES256-GCM-SHA384
#            (curl), ECDHE-RSA-CHACHA20-POLY1305 (httpx: plain + 40 KB),
#            ECDHE-ECDSA-AES128-GCM-SHA256 (curl), ECDHE-ECDSA-AES256-GCM-SHA384 (aiohttp),
#            ECDHE-ECDSA-CHACHA20-POLY1305 (curl), ECDHE-RSA-AES128-SHA with Encrypt-then-MAC
#            (curl: plain, chunked, 40 KB), the same suite with EtM off (openssl s_client
#            -no_etm, 2 requests), ECDHE-RSA-AES256-SHA384 (CBC + SHA-384, curl),
#            ECDHE-ECDSA-AES128-SHA (http.client), AES128-GCM-SHA256 and AES256-SHA256 (RSA
#            key exchange, curl / s_client)
# Capture: tcpdump on the client's veth (10.98.14.0/24, MTU 1500, offloads off), pcapng.
# lc-dsb.sh derives lc-tls-suites-dsb.pcapng (key log embedded) from this capture.
LC_SCEN=lc-tls-suites
source "$(dirname "$0")/lc_lib.sh"
lc_pair 14
CAP=$LB_OUT/$LC_SCEN.pcapng
lc_certs "$S_IP"
head -c 30000 /dev/urandom | base64 -w 76 >"$LB_WORK/big.txt"          # ~40 KB
for i in $(seq 1 300); do echo "line $i of a response that nginx gzips and sends chunked"; done >"$LB_WORK/chunk.txt"
CIPHERS="ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA:AES128-GCM-SHA256:AES256-SHA256"
lb_nginx "$NS_S" su "server { listen $S_IP:443 ssl http2; server_name lc.test; $(lc_ssl both)
    ssl_ciphers $CIPHERS; ssl_prefer_server_ciphers off;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_CCM_SHA256:TLS_AES_128_CCM_8_SHA256;
    keepalive_timeout 10s;
    location ~ /big\$ { root $LB_WORK; try_files /big.txt =404; }
    location ~ /chunked\$ { root $LB_WORK; gzip on; gzip_types text/plain; gzip_min_length 0; try_files /chunk.txt =404; }
    location / { return 200 'suite ok\n'; } }"
lb_wait_port "$NS_C" "$S_IP" 443
lb_capture_start "$NS_C" pcapng "$CAP" -i "$C_DEV" -s 0 tcp
J=$LB_WORK/client.jsonl
: >"$J"
# curl_suite NAME "curl options" PATH... : one curl process, one connection, several URLs
curl_suite() {
    local name=$1 opts=$2; shift 2
    local urls=() outs=() p
    for p in "$@"; do urls+=("https://lc.test/suite-$name$p"); outs+=(-o /dev/null); done
    set +e
    # shellcheck disable=SC2086
    lc_run "$NS_C" 10 curl -sS --cacert "$LC_PKI/ca.pem" --resolve "lc.test:443:$S_IP" --compressed $opts "${outs[@]}" \
        -w '%{local_port} %{http_version} %{http_code}\n' "${urls[@]}" >"$LB_WORK/curl.out" 2>"$LB_WORK/curl.err"
    local rc=$?
    set -e
    lc_curl_event "curl $opts" "$rc" "$LB_WORK/curl.out" "$LB_WORK/curl.err" >>"$J"
    sleep 0.1
}
# sclient_suite NAME "s_client options" PATH... : openssl s_client, keep-alive requests
sclient_suite() {
    local name=$1 opts=$2; shift 2
    local kl=$LB_WORK/sc-$name.keys n=$# i=0 p
    {
        for p in "$@"; do
            i=$((i + 1))
            if [ $i -eq $n ]; then
                printf 'GET /suite-%s%s HTTP/1.1\r\nHost: lc.test\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n' "$name" "$p"
            else
                printf 'GET /suite-%s%s HTTP/1.1\r\nHost: lc.test\r\nAccept-Encoding: gzip\r\n\r\n' "$name" "$p"
            fi
            sleep 0.3
        done
        sleep 0.5
    } | lc_run "$NS_C" 10 openssl s_client -connect "$S_IP:443" -servername lc.test -CAfile "$LC_PKI/ca.pem" \
        -keylogfile "$kl" -nocommands $opts >"$LB_WORK/sc-$name.out" 2>&1 || true
    lc_sclient_event "openssl s_client $opts" "$kl" "$LB_WORK/sc-$name.out" >>"$J"
    sleep 0.1
}
# TLS 1.3
curl_suite tls13-aes128gcm "--tlsv1.3 --http1.1 --tls13-ciphers TLS_AES_128_GCM_SHA256" "" /chunked /big
curl_suite tls13-aes128gcm-h2 "--tlsv1.3 --http2 --tls13-ciphers TLS_AES_128_GCM_SHA256" "" /chunked
curl_suite tls13-chacha20 "--tlsv1.3 --http1.1 --tls13-ciphers TLS_CHACHA20_POLY1305_SHA256" "" /big
curl_suite tls13-aes128ccm "--tlsv1.3 --http1.1 --tls13-ciphers TLS_AES_128_CCM_SHA256" ""
curl_suite tls13-aes128ccm8 "--tlsv1.3 --http1.1 --tls13-ciphers TLS_AES_128_CCM_8_SHA256" ""
# TLS 1.2
curl_suite ecdhe-rsa-aes256gcm "--tls-max 1.2 --http1.1 --ciphers ECDHE-RSA-AES256-GCM-SHA384" ""
curl_suite ecdhe-ecdsa-aes128gcm "--tls-max 1.2 --http1.1 --ciphers ECDHE-ECDSA-AES128-GCM-SHA256" ""
curl_suite ecdhe-ecdsa-chacha20 "--tls-max 1.2 --http1.1 --ciphers ECDHE-ECDSA-CHACHA20-POLY1305" ""
curl_suite ecdhe-rsa-aes128sha-etm "--tls-max 1.2 --http1.1 --ciphers ECDHE-RSA-AES128-SHA" "" /chunked /big
curl_suite ecdhe-rsa-aes256sha384 "--tls-max 1.2 --http1.1 --ciphers ECDHE-RSA-AES256-SHA384" ""
curl_suite rsa-aes128gcm "--tls-max 1.2 --http1.1 --ciphers AES128-GCM-SHA256" ""
sclient_suite ecdhe-rsa-aes128sha-noetm "-tls1_2 -cipher ECDHE-RSA-AES128-SHA -no_etm" "" /chunked
sclient_suite rsa-aes256sha256-noetm "-tls1_2 -cipher AES256-SHA256 -no_etm" ""
lc_run "$NS_C" 30 python3 - "$S_IP" >>"$J" 2>"$LB_WORK/client.err" <<'PY' || lc_log "python clients exited with status $?"
import asyncio, http.client, sys, aiohttp, httpx, requests
from lc_common import *
ip = sys.argv[1]
resolve("lc.test", ip)
base = "https://lc.test"
class Adapter(requests.adapters.HTTPAdapter):
    def __init__(self, c):
        self.c = c; super().__init__()
    def init_poolmanager(self, *a, **kw):
        kw["ssl_context"] = self.c
        return super().init_poolmanager(*a, **kw)
def rq(name, c, paths):
    ps = track(); seen = []
    with requests.Session() as s:
        s.mount("https://", Adapter(c))
        for p in paths:
            r = s.get(f"{base}/suite-{name}{p}", verify=CA, timeout=5)
            seen.append(f"GET /suite-{name}{p} HTTP {r.status_code} {r.headers.get('Transfer-Encoding', '')} {len(r.content)} B".replace("  ", " "))
    emit(port=ps[-1], saw="; ".join(seen), client="requests")
rq("tls13-aes256gcm", ctx(), ["", "/chunked"])
rq("ecdhe-rsa-aes128gcm", ctx(maxv="TLSv1_2", ciphers="ECDHE-RSA-AES128-GCM-SHA256"), ["", "/big"])
ps = track(); seen = []
with httpx.Client(verify=ctx(maxv="TLSv1_2", ciphers="ECDHE-RSA-CHACHA20-POLY1305"), timeout=5) as cl:
    for p in ("", "/big"):
        r = cl.get(f"{base}/suite-ecdhe-rsa-chacha20{p}")
        seen.append(f"GET /suite-ecdhe-rsa-chacha20{p} HTTP {r.status_code} {len(r.content)} B")
emit(port=ps[-1], saw="; ".join(seen), client="httpx")
async def ah():
    ps = track()
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/suite-ecdhe-ecdsa-aes256gcm", ssl=ctx(maxv="TLSv1_2", ciphers="ECDHE-ECDSA-AES256-GCM-SHA384")) as r:
            b = await r.read()
            emit(port=ps[-1], saw=f"GET /suite-ecdhe-ecdsa-aes256gcm HTTP {r.status} {len(b)} B", client="aiohttp")
asyncio.run(ah())
c = http.client.HTTPSConnection("lc.test", 443, timeout=5, context=ctx(maxv="TLSv1_2", ciphers="ECDHE-ECDSA-AES128-SHA"))
seen = []
for p in ("", "/chunked"):
    c.request("GET", f"/suite-ecdhe-ecdsa-aes128sha{p}", headers={"Accept-Encoding": "gzip"})
    r = c.getresponse(); b = r.read()
    seen.append(f"GET /suite-ecdhe-ecdsa-aes128sha{p} HTTP {r.status} {r.getheader('Transfer-Encoding') or ''} {len(b)} B".replace("  ", " "))
lp = c.sock.getsockname()[1]; c.close()
emit(port=lp, saw="; ".join(seen), client="http.client")
PY
sleep 0.3
lb_capture_stop
lc_finish "$CAP" "$J"
