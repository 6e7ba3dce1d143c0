#!/usr/bin/env bash
# proxy-disconnect with TLS inside a CONNECT tunnel: client - proxy - server namespaces.
# tinyproxy (middle namespace, no IP forwarding) relays CONNECT tunnels to nginx (TLS 1.2 +
# 1.3) in the server namespace. requests (proxies={'https': ...}, SSLKEYLOGFILE set, so the
# TLS inside the tunnel is decryptable on both legs):
#   1. GET /ok through a tunnel: complete 200 (graceful on both legs);
#   2. GET /slow.bin (100 KB at 20 KB/s, stream=True, TLS 1.2 forced) through a tunnel; after
#      30 KB the script kills the tinyproxy process it started (SIGKILL, by PID): its kernel
#      closes both legs mid-response -> requests raises (proxy-disconnect on the client leg;
#      on the proxy->server leg the proxy, the client of that leg, vanished: client-abort).
# Capture: one tcpdump per veth of the proxy namespace (client leg 10.98.12.0/24, server leg
# 10.98.112.0/24, MTU 1500, offloads off), merged with mergecap into one pcap.
LC_SCEN=lc-proxy-connect-tls
source "$(dirname "$0")/lc_lib.sh"
lc_chain 12
PPORT=3128
CAP=$LB_OUT/$LC_SCEN.pcap
lc_certs "$S_IP"
chmod 777 "$LB_WORK"
head -c 102400 /dev/zero | tr '\0' 's' >"$LB_WORK/slow.bin"
lb_nginx "$NS_S" px "server { listen $S_IP:443 ssl; server_name lc.test; $(lc_ssl ec)
    keepalive_timeout 10s;
    location = /slow.bin { root $LB_WORK; limit_rate 20k; }
    location / { return 200 'through the tunnel\n'; } }"
cat >"$LB_WORK/tinyproxy.conf" <<EOF2
Port $PPORT
Listen $M_IP
Timeout 30
MaxClients 20
LogLevel Info
LogFile "$LB_WORK/tinyproxy.log"
PidFile "$LB_WORK/tinyproxy.pid"
Allow 10.98.12.0/24
ConnectPort 443
DisableViaHeader Yes
EOF2
lb_bg "$NS_M" "$LB_WORK/tp.out" tinyproxy -d -c "$LB_WORK/tinyproxy.conf"
TP=$LB_PID
lb_wait_port "$NS_M" "$S_IP" 443
lb_wait_port "$NS_C" "$M_IP" $PPORT
lb_capture_start "$NS_M" tcpdump "$LB_WORK/leg-client.pcap" -i "$MC_DEV" -s 0 tcp
CAP1=$CAP_PID
lb_capture_start "$NS_M" tcpdump "$LB_WORK/leg-server.pcap" -i "$MS_DEV" -s 0 tcp
CAP2=$CAP_PID
lc_bg_keys "$NS_C" "$LB_WORK/client.jsonl" timeout 30 python3 -u - "$M_IP" $PPORT "$S_IP" <<'PY'
import sys, time, requests
from lc_common import *
pip, pport, sip = sys.argv[1], int(sys.argv[2]), sys.argv[3]
proxies = {"https": f"http://{pip}:{pport}"}
class TLS12(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *a, **kw):
        kw["ssl_context"] = ctx(maxv="TLSv1_2")
        return super().init_poolmanager(*a, **kw)
    def proxy_manager_for(self, *a, **kw):
        kw["ssl_context"] = ctx(maxv="TLSv1_2")
        return super().proxy_manager_for(*a, **kw)
ps = track()
with requests.Session() as s:
    r = s.get(f"https://{sip}/ok", proxies=proxies, verify=CA, timeout=5)
    emit(port=ps[-1], saw=f"CONNECT {sip}:443 via proxy, GET /ok HTTP {r.status_code} (TLS 1.3 in the tunnel)", client="requests via tinyproxy")
time.sleep(0.3)
ps = track()
got = 0
with requests.Session() as s:
    s.mount("https://", TLS12())
    try:
        r = s.get(f"https://{sip}/slow.bin", proxies=proxies, verify=CA, timeout=5, stream=True)
        for b in r.iter_content(1024):
            got += len(b)
            if got == 30720:
                emit(event="kill_now")
        saw = f"GET /slow.bin HTTP {r.status_code}, {got} bytes"
    except Exception as e:
        saw = f"CONNECT {sip}:443 via proxy, GET /slow.bin HTTP 200 head (TLS 1.2 in the tunnel), then {err(e)} after {got} of 102400 body bytes"
emit(port=ps[-1], saw=saw, client="requests via tinyproxy, stream=True")
PY
CLIENT=$LB_PID
for _ in $(seq 1 100); do grep -qs kill_now "$LB_WORK/client.jsonl" && break; sleep 0.1; done
{ kill -KILL "$TP"; wait "$TP"; } 2>/dev/null || true; lc_log "tinyproxy (pid $TP) killed with SIGKILL mid-tunnel"
for _ in $(seq 1 50); do kill -0 "$CLIENT" 2>/dev/null || break; sleep 0.1; done
sleep 0.3
CAP_PID=$CAP1; lb_capture_stop
CAP_PID=$CAP2; lb_capture_stop
mergecap -F pcap -w "$CAP" "$LB_WORK/leg-client.pcap" "$LB_WORK/leg-server.pcap"
lc_finish "$CAP" "$LB_WORK/client.jsonl"
