#!/usr/bin/env bash
# tls-handshake-failure, two ways, over a veth pair:
#  1. openssl s_server accepting only TLS 1.2 with the single cipher ECDHE-RSA-AES256-GCM-SHA384;
#     a python client offering only AES128-SHA (TLS <= 1.2) gets a handshake_failure alert
#     (SSLV3_ALERT_HANDSHAKE_FAILURE); curl --tls-max 1.2 --ciphers AES128-SHA the same.
#  2. an HTTPS client (python ssl) talking to nginx's plain-HTTP port: nginx answers the
#     ClientHello with "400 Bad Request" and FIN; python raises WRONG_VERSION_NUMBER.
# Capture: tcpdump (converted to pcapng with editcap) on the client's veth (10.99.42.0/24, MTU 1500, offloads off), pcapng.
LB_SCEN=lb-tls-handshake-failure-openssl
source "$(dirname "$0")/lb_lib.sh"
lb_pair 42
PORT=19042
HPORT=19043
CAP=$LB_OUT/$LB_SCEN.pcapng
lb_selfsigned lab.test "$S_IP"
lb_bg "$NS_S" "$LB_WORK/s_server.log" timeout 40 openssl s_server -accept "$S_IP:$PORT" -cert "$LB_WORK/cert.pem" \
    -key "$LB_WORK/key.pem" -tls1_2 -cipher ECDHE-RSA-AES256-GCM-SHA384 -www
lb_nginx "$NS_S" th2 "server { listen $S_IP:$HPORT; location / { return 200 'plain http\n'; } }"
lb_wait_port "$NS_C" "$S_IP" $HPORT
sleep 0.5
lb_capture_start "$NS_C" pcapng "$CAP" -i "$C_DEV" -s 0 tcp
timeout 20 ip netns exec "$NS_C" python3 - "$S_IP" $PORT $HPORT >"$LB_WORK/client.jsonl" <<'PY' || lb_log "client exited with status $?"
import json, socket, ssl, sys, time
ip, port, hport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def attempt(p, ciphers, label):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    if ciphers:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(ciphers)
    s = socket.create_connection((ip, p), timeout=5)
    lport = s.getsockname()[1]
    try:
        t = ctx.wrap_socket(s, server_hostname="lab.test")
        saw = f"handshake ok {t.version()}"; t.close()
    except Exception as e:
        saw = f"{type(e).__name__}: {e}"; s.close()
    print(json.dumps({"port": lport, "saw": saw, "client": label}), flush=True)
attempt(port, "AES128-SHA", "python ssl, ciphers AES128-SHA, TLS<=1.2")
time.sleep(0.3)
attempt(hport, None, "python ssl to a plain-HTTP port")
PY
sleep 0.3
set +e
timeout 10 ip netns exec "$NS_C" curl -sS -k --tls-max 1.2 --ciphers AES128-SHA -o /dev/null "https://$S_IP:$PORT/" 2>"$LB_WORK/curl.err"
rc=$?
set -e
python3 -c 'import json,sys; print(json.dumps({"port": None, "client": "curl", "saw": "curl exit %s: %s" % (sys.argv[1], sys.argv[2].strip())}))' "$rc" "$(cat "$LB_WORK/curl.err")" >>"$LB_WORK/client.jsonl"
lb_capture_stop
lb_label "$LB_SCEN" "$CAP" "$LB_WORK/client.jsonl"
