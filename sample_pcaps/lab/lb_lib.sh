# Shared helpers for the lab helper "lb" scenario scripts (sample_pcaps/lab/lb-*.sh).
# Sourced, never run. Every scenario:
#   * creates its own network namespaces (names start with lb-), so loopback captures
#     contain only the scenario's own traffic;
#   * records each process it starts (PIDS) and each namespace (NSS) and stops/deletes
#     exactly those on exit (trap EXIT) - never by process name;
#   * bounds every step with `timeout`.
set -euo pipefail

LB_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LB_LAB=$LB_REPO/sample_pcaps/lab
LB_OUT=${OUT:-$LB_REPO/sample_pcaps/captures}
LB_TAG=$$
LB_WORK=$(mktemp -d /tmp/lb-lab.XXXXXX)
PIDS=()
NSS=()
mkdir -p "$LB_OUT"

lb_log() { printf '[%s] %s\n' "${LB_SCEN:-lb}" "$*" >&2; }

lb_cleanup() {
    local rc=$?
    set +e
    local i pid
    for ((i=${#PIDS[@]}-1; i>=0; i--)); do
        kill -TERM "${PIDS[$i]}" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    # nginx workers die with their master; anything left in a namespace we made
    # (started by this script) is killed by PID before the namespace goes away.
    for ns in "${NSS[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    if [ -n "${KEEP_WORK:-}" ]; then lb_log "kept $LB_WORK"; else rm -rf "$LB_WORK"; fi
    exit $rc
}
trap lb_cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" -eq 0 ] || { echo "must run as root" >&2; exit 1; }

lb_ns() {  # lb_ns NAME : create a namespace with lo up, IPv6 off
    ip netns add "$1"; NSS+=("$1")
    ip netns exec "$1" ip link set lo up
    ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

lb_offloads_off() {  # lb_offloads_off NS DEV
    ip netns exec "$1" ethtool -K "$2" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
}

lb_veth() {  # lb_veth NS_A DEV_A ADDR_A/len NS_B DEV_B ADDR_B/len
    ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
    ip netns exec "$1" ip addr add "$3" dev "$2"
    ip netns exec "$4" ip addr add "$6" dev "$5"
    ip netns exec "$1" ip link set "$2" mtu 1500 up
    ip netns exec "$4" ip link set "$5" mtu 1500 up
    lb_offloads_off "$1" "$2"; lb_offloads_off "$4" "$5"
}

lb_bg() {  # lb_bg NS LOGFILE cmd... : start a background process in NS, record its PID in LB_PID
    local ns=$1 logf=$2; shift 2
    local inf=/dev/null
    if [ ! -t 0 ]; then inf=$LB_WORK/stdin.$RANDOM$RANDOM; cat >"$inf"; fi
    ip netns exec "$ns" "$@" <"$inf" >"$logf" 2>&1 &
    LB_PID=$!
    PIDS+=("$LB_PID")
}

lb_wait_port() {  # lb_wait_port NS IP PORT
    for _ in $(seq 1 50); do
        if ip netns exec "$1" timeout 1 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    lb_log "port $2:$3 never opened"; return 1
}

# lb_capture_start NS TOOL FILE [extra args...]: TOOL is tcpdump or dumpcap. Sets CAP_PID.
lb_capture_start() {
    local ns=$1 tool=$2 file=$3; shift 3
    CAP_NG=
    local errf=$LB_WORK/capture.$RANDOM.err
    if [ "$tool" = dumpcap ]; then
        ip netns exec "$ns" dumpcap -q -P -w "$file" "$@" 2>"$errf" &
    elif [ "$tool" = pcapng ]; then
        # tcpdump, converted to pcapng with editcap when the capture stops
        CAP_NG=$file
        ip netns exec "$ns" tcpdump -U --immediate-mode -w "$file.raw.pcap" "$@" 2>"$errf" &
    else
        ip netns exec "$ns" tcpdump -U --immediate-mode -w "$file" "$@" 2>"$errf" &
    fi
    CAP_PID=$!
    PIDS+=("$CAP_PID")
    for _ in $(seq 1 50); do
        grep -qiE 'listening on|capturing on' "$errf" 2>/dev/null && break
        sleep 0.1
    done
    sleep 0.3
}

lb_capture_stop() {  # stop the capture by PID with SIGINT after a short sleep
    sleep 0.5
    kill -INT "$CAP_PID" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$CAP_PID" 2>/dev/null || break; sleep 0.1; done
    wait "$CAP_PID" 2>/dev/null || true
    if [ -n "${CAP_NG:-}" ]; then
        editcap -F pcapng "$CAP_NG.raw.pcap" "$CAP_NG"; rm -f "$CAP_NG.raw.pcap"; CAP_NG=
    fi
}

lb_stop_pid() {  # stop one process we started, by PID
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# lb_nginx NS NAME 'server-block text' ['http-level directives']: start nginx with its own prefix
lb_nginx() {
    local ns=$1 name=$2 server=$3 httpx=${4:-}
    local d=$LB_WORK/nginx-$name
    mkdir -p "$d/logs" "$d/html"
    cat >"$d/nginx.conf" <<EOF
user root;
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/logs/error.log info;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $d/tmp_body;
    proxy_temp_path $d/tmp_proxy;
    fastcgi_temp_path $d/tmp_fcgi;
    uwsgi_temp_path $d/tmp_uwsgi;
    scgi_temp_path $d/tmp_scgi;
    default_type text/plain;
    sendfile off;
    $httpx
    $server
}
EOF
    lb_bg "$ns" "$d/stdout.log" nginx -p "$d" -c "$d/nginx.conf"
    NGINX_DIR=$d
}

lb_label() {  # lb_label SCENARIO CAPTURE CLIENTLOG [extra json file]
    python3 "$LB_LAB/lb_label.py" "$@"
}

# lb_pair N : two namespaces joined by one veth pair.
#   NS_C (client) 10.99.N.1/24 on veth C_DEV ; NS_S (server) 10.99.N.2/24 on veth S_DEV
lb_pair() {
    local n=$1
    NS_C=lb-c$n-$LB_TAG; NS_S=lb-s$n-$LB_TAG
    C_DEV=lb-c$n-$LB_TAG; S_DEV=lb-s$n-$LB_TAG
    C_DEV=${C_DEV:0:15}; S_DEV=${S_DEV:0:15}
    C_IP=10.99.$n.1; S_IP=10.99.$n.2
    lb_ns "$NS_C"; lb_ns "$NS_S"
    lb_veth "$NS_C" "$C_DEV" "$C_IP/24" "$NS_S" "$S_DEV" "$S_IP/24"
}

# lb_router N : client - router - server. NS_C 10.99.N.1/24 (gw 10.99.N.254) on C_DEV;
# NS_R has 10.99.N.254 and 10.99.(N+100).254 with forwarding on; NS_S 10.99.(N+100).2/24.
lb_router() {
    local n=$1 m=$(( $1 + 100 ))
    NS_C=lb-cli$n-$LB_TAG; NS_R=lb-rtr$n-$LB_TAG; NS_S=lb-srv$n-$LB_TAG
    C_DEV=$(echo "lb-c$n-$LB_TAG" | cut -c1-15); RC_DEV=$(echo "lb-rc$n-$LB_TAG" | cut -c1-15)
    RS_DEV=$(echo "lb-rs$n-$LB_TAG" | cut -c1-15); S_DEV=$(echo "lb-s$n-$LB_TAG" | cut -c1-15)
    C_IP=10.99.$n.1; S_IP=10.99.$m.2
    lb_ns "$NS_C"; lb_ns "$NS_R"; lb_ns "$NS_S"
    lb_veth "$NS_C" "$C_DEV" "$C_IP/24" "$NS_R" "$RC_DEV" "10.99.$n.254/24"
    lb_veth "$NS_S" "$S_DEV" "$S_IP/24" "$NS_R" "$RS_DEV" "10.99.$m.254/24"
    ip netns exec "$NS_C" ip route add default via 10.99.$n.254
    ip netns exec "$NS_S" ip route add default via 10.99.$m.254
    ip netns exec "$NS_R" sysctl -qw net.ipv4.ip_forward=1
}

lb_selfsigned() {  # lb_selfsigned CN : writes $LB_WORK/cert.pem and $LB_WORK/key.pem (self-signed, 1 day)
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=$1" \
        -addext "subjectAltName=DNS:$1,IP:${2:-127.0.0.1}" \
        -keyout "$LB_WORK/key.pem" -out "$LB_WORK/cert.pem" >/dev/null 2>&1
}
