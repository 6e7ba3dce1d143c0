#!/usr/bin/env bash
# tls-handshake-failure: nginx with ssl_protocols TLSv1.3 only. A python ssl client whose
# context has maximum_version TLSv1_2, and curl --tls-max 1.2, offer TLS 1.2 at most: nginx
# (OpenSSL 3.0) answers the ClientHello with a fatal protocol_version alert and closes.
# A third client (python, default context) negotiates TLS 1.3 and gets HTTP 200 (graceful).
# Capture: tcpdump -i lo in a private namespace, pcap.
LB_SCEN=lb-tls-handshake-failure-version
source "$(dirname "$0")/lb_lib.sh"
NS=lb-th1-$LB_TAG
PORT=19041
CAP=$LB_OUT/$LB_SCEN.pcap
lb_ns "$NS"
lb_selfsigned lab.test
lb_nginx "$NS" th "server { listen 127.0.0.1:$PORT ssl; server_name lab.test;
    ssl_certificate $LB_WORK/cert.pem; ssl_certificate_key $LB_WORK/key.pem;
    ssl_protocols TLSv1.3; keepalive_timeout 5s;
    location / { return 200 'tls ok\n'; } }"
lb_wait_port "$NS" 127.0.0.1 $PORT
lb_capture_start "$NS" tcpdump "$CAP" -i lo -s 0 tcp
timeout 20 ip netns exec "$NS" python3 - $PORT >"$LB_WORK/client.jsonl" <<'PY' || lb_log "client exited with status $?"
import json, socket, ssl, sys, time
port = int(sys.argv[1])
def attempt(maxv, label):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    if maxv: ctx.maximum_version = maxv
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    lport = s.getsockname()[1]
    try:
        t = ctx.wrap_socket(s, server_hostname="lab.test")
        t.sendall(b"GET / HTTP/1.1\r\nHost: lab.test\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            d = t.recv(4096)
            if not d: break
            data += d
        saw = f"{t.version()} HTTP " + data.split(b" ")[1].decode()
        t.close()
    except Exception as e:
        saw = f"{type(e).__name__}: {e}"
        s.close()
    print(json.dumps({"port": lport, "saw": saw, "client": label}), flush=True)
attempt(ssl.TLSVersion.TLSv1_2, "python ssl maximum_version=TLSv1_2")
time.sleep(0.3)
attempt(None, "python ssl default")
PY
sleep 0.3
set +e
timeout 10 ip netns exec "$NS" curl -sS -k --tls-max 1.2 -o /dev/null -w '%{local_port}\n' "https://127.0.0.1:$PORT/" >"$LB_WORK/curl.out" 2>"$LB_WORK/curl.err"
rc=$?
set -e
python3 -c 'import json,sys; print(json.dumps({"port": None, "client": "curl", "saw": "curl exit %s: %s" % (sys.argv[1], sys.argv[2].strip())}))' "$rc" "$(cat "$LB_WORK/curl.err")" >>"$LB_WORK/client.jsonl"
lb_capture_stop
lb_label "$LB_SCEN" "$CAP" "$LB_WORK/client.jsonl"
