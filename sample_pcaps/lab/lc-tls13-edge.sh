#!/usr/bin/env bash
# TLS handshake edge cases that a key-log decryptor must handle, each on its own connection
# (the path names the case: /edge/<case>...). One nginx, four TLS servers:
#   :443  TLS 1.3, ssl_early_data on, shared session cache, ticket key file K
#   :4443 TLS 1.3, ssl_ecdh_curve prime256v1 (a client whose first key share is X25519 gets a
#         HelloRetryRequest)
#   :8443 TLS 1.3, ssl_early_data off, the same ticket key file K (tickets from :443 resume
#         here, but 0-RTT is refused)
#   :4433 TLS 1.2 only, shared session cache and session tickets
# Connections (openssl s_client with -keylogfile, Python ssl with SSLKEYLOGFILE):
#   1. s_client full TLS 1.3 handshake on :443, -sess_out            (full-handshake)
#   2. s_client -sess_in -early_data: GET in 0-RTT, accepted         (0rtt-accepted)
#   3. s_client -sess_in (no early data): PSK resumption             (psk-resumed)
#   4. s_client -sess_in -early_data against :8443: 0-RTT rejected, the GET is then sent
#      again after the handshake                                      (0rtt-rejected)
#   5. s_client on :443: GET, then `K` (KeyUpdate, update_requested), GET  (keyupdate)
#   6. s_client -groups X25519:P-256 on :4443: HelloRetryRequest     (hrr-sclient)
#   7. Python requests on :4443 (X25519 first by default): HRR       (hrr-requests)
#   8-9. Python ssl TLS 1.3 full handshake, then resumption with session= (PSK)  (py13-*)
#   10-11. Python ssl TLS 1.2 with OP_NO_TICKET: full, then resumed by session ID (tls12-sid-*)
#   12-13. Python ssl TLS 1.2 with tickets: full, then resumed by session ticket (tls12-ticket-*)
# Capture: tcpdump on the client's veth (10.98.15.0/24, MTU 1500, offloads off), pcap.
LC_SCEN=lc-tls13-edge
source "$(dirname "$0")/lc_lib.sh"
lc_pair 15
CAP=$LB_OUT/$LC_SCEN.pcap
lc_certs "$S_IP"
openssl rand 80 >"$LB_WORK/ticket.key"
LOC="location / { return 200 'edge ok\n'; }"
lb_nginx "$NS_S" ed "server { listen $S_IP:443 ssl; server_name lc.test; $(lc_ssl ec TLSv1.3)
    ssl_early_data on; ssl_session_ticket_key $LB_WORK/ticket.key; keepalive_timeout 10s; $LOC }
  server { listen $S_IP:4443 ssl; server_name lc.test; $(lc_ssl ec TLSv1.3)
    ssl_ecdh_curve prime256v1; keepalive_timeout 10s; $LOC }
  server { listen $S_IP:8443 ssl; server_name lc.test; $(lc_ssl ec TLSv1.3)
    ssl_early_data off; ssl_session_ticket_key $LB_WORK/ticket.key; keepalive_timeout 10s; $LOC }
  server { listen $S_IP:4433 ssl; server_name lc.test; $(lc_ssl ec TLSv1.2)
    ssl_session_tickets on; keepalive_timeout 10s; $LOC }" \
    "ssl_session_cache shared:lc:1m;"
for p in 443 4443 8443 4433; do lb_wait_port "$NS_C" "$S_IP" $p; done
lb_capture_start "$NS_C" tcpdump "$CAP" -i "$C_DEV" -s 0 tcp
J=$LB_WORK/client.jsonl
: >"$J"
req() {  # req PATH [close]
    printf 'GET %s HTTP/1.1\r\nHost: lc.test\r\n%s\r\n' "$1" "${2:+Connection: close$'\r\n'}"
}
# sc NAME PORT "options" : run s_client, stdin from the caller; event keyed by its random
sc() {
    local name=$1 port=$2 opts=$3
    # shellcheck disable=SC2086
    lc_run "$NS_C" 15 openssl s_client -connect "$S_IP:$port" -servername lc.test -CAfile "$LC_PKI/ca.pem" \
        -keylogfile "$LB_WORK/sc-$name.keys" $opts >"$LB_WORK/sc-$name.out" 2>&1 || true
    lc_sclient_event "openssl s_client ($name) $opts" "$LB_WORK/sc-$name.keys" "$LB_WORK/sc-$name.out" >>"$J"
    sleep 0.2
}
{ req /edge/full-handshake; sleep 0.6; } | sc full-handshake 443 "-tls1_3 -nocommands -sess_out $LB_WORK/sessA.pem"
req /edge/0rtt-accepted >"$LB_WORK/early.txt"
{ sleep 0.6; } | sc 0rtt-accepted 443 "-tls1_3 -nocommands -sess_in $LB_WORK/sessA.pem -early_data $LB_WORK/early.txt -sess_out $LB_WORK/sessB.pem"
{ req /edge/psk-resumed; sleep 0.6; } | sc psk-resumed 443 "-tls1_3 -nocommands -sess_in $LB_WORK/sessB.pem"
req /edge/0rtt-rejected >"$LB_WORK/early2.txt"
{ sleep 0.3; req /edge/0rtt-rejected/sent-again; sleep 0.6; } | sc 0rtt-rejected 8443 "-tls1_3 -nocommands -sess_in $LB_WORK/sessB.pem -early_data $LB_WORK/early2.txt"
{ req /edge/keyupdate/before; sleep 0.4; printf 'K\n'; sleep 0.4; req /edge/keyupdate/after close; sleep 0.6; } | sc keyupdate 443 "-tls1_3"
{ req /edge/hrr-sclient; sleep 0.6; } | sc hrr-sclient 4443 "-tls1_3 -nocommands -groups X25519:P-256"
lc_run "$NS_C" 30 python3 - "$S_IP" >>"$J" 2>"$LB_WORK/client.err" <<'PY' || lc_log "python clients exited with status $?"
import socket, ssl, sys, time, requests
from lc_common import *
ip = sys.argv[1]
resolve("lc.test", ip)
ps = track()
r = requests.get("https://lc.test:4443/edge/hrr-requests", verify=CA, timeout=5)
emit(port=ps[-1], saw=f"GET /edge/hrr-requests HTTP {r.status_code} (X25519 key share first, server only P-256)", client="requests")
time.sleep(0.2)
def one(c, port, path, session=None):
    s = socket.create_connection((ip, port), timeout=5)
    t = c.wrap_socket(s, server_hostname="lc.test", session=session)
    t.sendall(f"GET {path} HTTP/1.1\r\nHost: lc.test\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        b = t.recv(65536)
        if not b:
            break
        data += b
    st = data.split(b" ", 2)[1].decode() if data else "?"
    emit(port=s.getsockname()[1] if False else t.getsockname()[1],
         saw=f"GET {path} HTTP {st}; {t.version()} {t.cipher()[0]}; session_reused={t.session_reused}",
         client="python ssl socket")
    sess = t.session
    t.close()
    time.sleep(0.2)
    return sess
c13 = ctx()
s1 = one(c13, 443, "/edge/py13-full")
one(c13, 443, "/edge/py13-psk-resumed", s1)
cid = ctx(maxv="TLSv1_2"); cid.options |= ssl.OP_NO_TICKET
s2 = one(cid, 4433, "/edge/tls12-sid-full")
one(cid, 4433, "/edge/tls12-sid-resumed", s2)
ct = ctx(maxv="TLSv1_2")
s3 = one(ct, 4433, "/edge/tls12-ticket-full")
one(ct, 4433, "/edge/tls12-ticket-resumed", s3)
PY
sleep 0.3
lb_capture_stop
lc_finish "$CAP" "$J"
