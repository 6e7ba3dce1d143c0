#!/usr/bin/env bash
# Record the "real" core-TCP test captures into tests/captures/real/.
#
#   sudo bash sample_pcaps/lab/record_core.sh            # (re)record everything
#   OUT=/tmp/x bash sample_pcaps/lab/record_core.sh      # write elsewhere
#
# Needs: root, iproute2 (ip netns, veth), ethtool, nginx, tcpdump, dumpcap,
# python3, curl (optional). No external network is used: everything happens in
# two private network namespaces created here:
#
#   NS_C (client ns): lo (127.0.0.1) with its own nginx on 127.0.0.1:8080
#                     veth vc-<pid> 10.77.0.1/24, MTU 1500, offloads off
#   NS_S (server ns): veth vs-<pid> 10.77.0.2/24, nginx on 0.0.0.0:8080
#
# Running the loopback captures inside NS_C (instead of the host's lo) keeps
# foreign traffic out of the files. Every process started here is recorded by
# PID and stopped by PID on exit (trap EXIT); the namespaces are deleted.
# Each step is bounded with `timeout`.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${OUT:-$REPO/tests/captures/real}
TAG=$$
NS_C=pscore-cli-$TAG
NS_S=pscore-srv-$TAG
VC=vc-$TAG
VS=vs-$TAG
IP_C=10.77.0.1
IP_S=10.77.0.2
PORT=8080
CLOSED_PORT=8081
WORK=$(mktemp -d /tmp/pcapsense-lab.XXXXXX)
PIDS=()
NETNS_MADE=()

log() { printf '[record_core] %s\n' "$*" >&2; }

cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    for ns in "${NETNS_MADE[@]}"; do
        ip netns del "$ns" 2>/dev/null
    done
    if [ -n "${KEEP_WORK:-}" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" -eq 0 ] || { echo "must run as root" >&2; exit 1; }
mkdir -p "$OUT"

inc() { ip netns exec "$NS_C" "$@"; }
ins() { ip netns exec "$NS_S" "$@"; }

# ---------------------------------------------------------------------------
# namespaces + veth
# ---------------------------------------------------------------------------
ip netns add "$NS_C"; NETNS_MADE+=("$NS_C")
ip netns add "$NS_S"; NETNS_MADE+=("$NS_S")
ip link add "$VC" netns "$NS_C" type veth peer name "$VS" netns "$NS_S"
inc ip link set lo up
ins ip link set lo up
inc ip addr add "$IP_C/24" dev "$VC"
ins ip addr add "$IP_S/24" dev "$VS"
inc ip link set "$VC" mtu 1500 up
ins ip link set "$VS" mtu 1500 up
for side in C S; do
    if [ $side = C ]; then ns=$NS_C dev=$VC; else ns=$NS_S dev=$VS; fi
    ip netns exec "$ns" ethtool -K "$dev" tso off gso off gro off tx off rx off >/dev/null 2>&1 \
        || ip netns exec "$ns" ethtool -K "$dev" tso off gso off gro off tx off >/dev/null
done

# ---------------------------------------------------------------------------
# content + nginx
# ---------------------------------------------------------------------------
WWW=$WORK/www
mkdir -p "$WWW"
printf '<html><body><h1>pcapsense lab</h1><p>small index page</p></body></html>\n' > "$WWW/index.html"
printf 'small text file for pcapsense\n' > "$WWW/small.txt"
python3 - "$WWW" <<'EOF'
import sys, os
d = sys.argv[1]
line = b"pcapsense lab payload line %06d abcdefghijklmnopqrstuvwxyz0123456789\n"
def make(name, size):
    buf = b"".join(line % i for i in range(size // len(line % 0) + 1))[:size]
    open(os.path.join(d, name), "wb").write(buf)
make("file50k.bin", 50 * 1024)
make("file200k.bin", 200 * 1024)
EOF

start_nginx() {   # $1 = netns, $2 = listen address, $3 = name
    local ns=$1 listen=$2 name=$3 pfx=$WORK/nginx-$3
    mkdir -p "$pfx/logs" "$pfx/tmp"
    cat > "$pfx/nginx.conf" <<EOF
user root;
worker_processes 1;
daemon off;
pid $pfx/nginx.pid;
error_log $pfx/logs/error.log info;
events { worker_connections 64; }
http {
    access_log $pfx/logs/access.log;
    client_body_temp_path $pfx/tmp/body;
    proxy_temp_path $pfx/tmp/proxy;
    fastcgi_temp_path $pfx/tmp/fastcgi;
    uwsgi_temp_path $pfx/tmp/uwsgi;
    scgi_temp_path $pfx/tmp/scgi;
    default_type application/octet-stream;
    keepalive_timeout 1s;
    sendfile off;
    server {
        listen $listen;
        root $WWW;
        location = /close { return 444; }
    }
}
EOF
    ip netns exec "$ns" nginx -p "$pfx" -c "$pfx/nginx.conf" -e "$pfx/logs/error.log" \
        >"$pfx/stdout" 2>&1 &
    PIDS+=($!)
    # wait until it answers
    for _ in $(seq 50); do
        if ip netns exec "$ns" timeout 2 curl -s -o /dev/null "http://${listen/0.0.0.0/127.0.0.1}/small.txt"; then
            return 0
        fi
        sleep 0.1
    done
    log "nginx $name did not come up"; cat "$pfx/logs/error.log" >&2; return 1
}

start_nginx "$NS_S" "0.0.0.0:$PORT" srv
start_nginx "$NS_C" "127.0.0.1:$PORT" lo

# ---------------------------------------------------------------------------
# capture helpers
# ---------------------------------------------------------------------------
CAP_PID=
cap_start() {  # $1 = netns, $2.. = capture command (must print "listening on"/"Capturing on")
    local ns=$1; shift
    local errf=$WORK/cap.$RANDOM.err
    ip netns exec "$ns" "$@" 2>"$errf" &
    CAP_PID=$!
    PIDS+=("$CAP_PID")
    for _ in $(seq 100); do
        grep -qiE 'listening on|capturing on' "$errf" 2>/dev/null && { sleep 0.3; return 0; }
        kill -0 "$CAP_PID" 2>/dev/null || { cat "$errf" >&2; return 1; }
        sleep 0.1
    done
    log "capture did not start: $*"; cat "$errf" >&2; return 1
}
cap_stop() {
    # linger > keepalive_timeout (1s) so nginx's own FINs of idle connections are in
    sleep "${1:-1.5}"
    kill -INT "$CAP_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$CAP_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$CAP_PID" 2>/dev/null || true
    wait "$CAP_PID" 2>/dev/null || true
    local keep=() pid          # reaped: forget it so cleanup never signals a reused PID
    for pid in "${PIDS[@]}"; do [ "$pid" = "$CAP_PID" ] || keep+=("$pid"); done
    PIDS=("${keep[@]}")
}
py() { timeout 30 ip netns exec "$NS_C" python3 -c "$1"; }

FILTER="tcp port $PORT or tcp port $CLOSED_PORT"

# ---------------------------------------------------------------------------
# 1. lo_keepalive.pcap
# ---------------------------------------------------------------------------
log "lo_keepalive.pcap"
cap_start "$NS_C" tcpdump -U --immediate-mode -n -i lo -w "$WORK/lo_keepalive.pcap" "$FILTER"
py "
import http.client, socket, time
c = http.client.HTTPConnection('127.0.0.1', $PORT, timeout=5)
for path in ('/index.html', '/small.txt'):          # 2 requests, one connection
    c.request('GET', path); r = c.getresponse(); r.read()
time.sleep(1.5)                                      # nginx keepalive_timeout 1s -> server FIN
c.close()                                            # client FIN afterwards
c = http.client.HTTPConnection('127.0.0.1', $PORT, timeout=5)
c.request('GET', '/index.html', headers={'Connection': 'close'})
r = c.getresponse(); r.read(); c.close()             # server closes first (FIN)
try:
    socket.create_connection(('127.0.0.1', $CLOSED_PORT), timeout=2).close()
except ConnectionRefusedError:
    pass                                             # SYN -> RST/ACK
"
cap_stop

# ---------------------------------------------------------------------------
# 2. veth_mtu1500.pcap (client veth)
# ---------------------------------------------------------------------------
log "veth_mtu1500.pcap"
cap_start "$NS_C" tcpdump -U --immediate-mode -n -i "$VC" -w "$WORK/veth_mtu1500.pcap" "$FILTER"
py "
import urllib.request
with urllib.request.urlopen('http://$IP_S:$PORT/file200k.bin', timeout=10) as r:
    assert len(r.read()) == 200 * 1024
"
if command -v curl >/dev/null; then
    # return 444: nginx closes without a response (curl: 'Empty reply from server')
    timeout 10 ip netns exec "$NS_C" curl -s -o /dev/null "http://$IP_S:$PORT/close" || true
else
    py "
import http.client
c = http.client.HTTPConnection('$IP_S', $PORT, timeout=5)
c.request('GET', '/close')
try: c.getresponse()
except Exception: pass
c.close()
"
fi
cap_stop

# ---------------------------------------------------------------------------
# 3. any_sll2.pcap (tcpdump -i any -> LINUX_SLL2 with this libpcap)
# ---------------------------------------------------------------------------
log "any_sll2.pcap"
cap_start "$NS_C" tcpdump -U --immediate-mode -n -i any -w "$WORK/any_sll2.pcap" "$FILTER"
py "
import urllib.request
for p in ('/index.html', '/small.txt'):
    urllib.request.urlopen('http://127.0.0.1:$PORT' + p, timeout=5).read()
"
cap_stop

# ---------------------------------------------------------------------------
# 4. dumpcap_two_ifaces.pcapng (lo + veth at once)
# ---------------------------------------------------------------------------
log "dumpcap_two_ifaces.pcapng"
cap_start "$NS_C" dumpcap -q -i lo -f "tcp port $PORT" -i "$VC" -f "tcp port $PORT" \
    -w "$WORK/dumpcap_two_ifaces.pcapng"
py "
import urllib.request
urllib.request.urlopen('http://127.0.0.1:$PORT/index.html', timeout=5).read()
urllib.request.urlopen('http://$IP_S:$PORT/small.txt', timeout=5).read()
urllib.request.urlopen('http://$IP_S:$PORT/file50k.bin', timeout=5).read()
urllib.request.urlopen('http://127.0.0.1:$PORT/small.txt', timeout=5).read()
"
cap_stop

# ---------------------------------------------------------------------------
# 5. nano.pcap
# ---------------------------------------------------------------------------
log "nano.pcap"
cap_start "$NS_C" tcpdump -U --immediate-mode -n --time-stamp-precision nano -i lo -w "$WORK/nano.pcap" "$FILTER"
py "
import http.client
c = http.client.HTTPConnection('127.0.0.1', $PORT, timeout=5)
c.request('GET', '/index.html', headers={'Connection': 'close'}); c.getresponse().read(); c.close()
c = http.client.HTTPConnection('127.0.0.1', $PORT, timeout=5)
c.request('GET', '/small.txt'); c.getresponse().read(); c.close()   # client closes first
"
cap_stop

# ---------------------------------------------------------------------------
# 6. snaplen96.pcap
# ---------------------------------------------------------------------------
log "snaplen96.pcap"
cap_start "$NS_C" tcpdump -U --immediate-mode -n -s 96 -i lo -w "$WORK/snaplen96.pcap" "$FILTER"
py "
import urllib.request
with urllib.request.urlopen('http://127.0.0.1:$PORT/file50k.bin', timeout=5) as r:
    assert len(r.read()) == 50 * 1024
"
cap_stop

# ---------------------------------------------------------------------------
# 7. killed_mid_write.pcap: copy of lo_keepalive.pcap, last record cut in half
# ---------------------------------------------------------------------------
log "killed_mid_write.pcap"
python3 - "$WORK/lo_keepalive.pcap" "$WORK/killed_mid_write.pcap" <<'EOF'
import struct, sys
data = open(sys.argv[1], "rb").read()
off, last = 24, None
while off + 16 <= len(data):
    caplen = struct.unpack("<I", data[off + 8:off + 12])[0]
    last = (off, caplen)
    off += 16 + caplen
rec_off, caplen = last
cut = rec_off + 16 + caplen // 2          # mid-way through the last packet's data
open(sys.argv[2], "wb").write(data[:cut])
EOF

# ---------------------------------------------------------------------------
# 8. gzip copies
# ---------------------------------------------------------------------------
gzip -n -9 -c "$WORK/lo_keepalive.pcap" > "$WORK/lo_keepalive.pcap.gz"
gzip -n -9 -c "$WORK/dumpcap_two_ifaces.pcapng" > "$WORK/dumpcap_two_ifaces.pcapng.gz"

# ---------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------
for f in lo_keepalive.pcap veth_mtu1500.pcap any_sll2.pcap dumpcap_two_ifaces.pcapng \
         nano.pcap snaplen96.pcap killed_mid_write.pcap lo_keepalive.pcap.gz \
         dumpcap_two_ifaces.pcapng.gz; do
    size=$(stat -c %s "$WORK/$f")
    [ "$size" -lt 307200 ] || log "WARNING: $f is $size bytes (>= 300 KB)"
    install -m 0644 "$WORK/$f" "$OUT/$f"
    log "$(printf '%-32s %8d bytes' "$f" "$size")"
done
log "done; regenerate expectations with: python3 tests/captures/tshark_truth.py"
