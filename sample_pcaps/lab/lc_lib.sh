# Shared helpers for the lab helper "lc" scenario scripts (sample_pcaps/lab/lc-*.sh):
# HTTPS captures recorded together with the TLS key log the clients wrote (SSLKEYLOGFILE),
# for pcapsense's TLS decryption. Sourced, never run. Builds on lb_lib.sh (same rules:
# namespaces made per scenario and deleted on exit, every process recorded and stopped by
# PID, `timeout` on every step, veth MTU 1500 with offloads off) and adds:
#   * lc_pair / lc_chain : namespaces named lc-* (client-server, client-middle-server);
#   * lc_pki / lc_cert   : a private CA (EC P-256) and server certificates signed by it
#                          (EC or RSA, SAN DNS:lc.test + the server IP, any validity window);
#   * lc_ssl             : the nginx ssl_* directives for those certificates;
#   * lc_run / lc_run_nokeys / lc_bg_keys : run a client with SSLKEYLOGFILE=$LC_KEYS (one key
#                          log per scenario, every client appends) or explicitly without it;
#   * $LB_WORK/lc_common.py (on PYTHONPATH of the clients): local-port tracking, JSON events;
#   * lc_finish          : copy the key log next to the capture, write the labels
#                          (lc_label.py) and check that tshark decrypts the capture.
LB_SCEN=${LC_SCEN:?set LC_SCEN before sourcing lc_lib.sh}
source "$(dirname "${BASH_SOURCE[0]}")/lb_lib.sh"
LC_LAB=$LB_LAB
LC_KEYS=$LB_WORK/keys
LC_PKI=$LB_WORK/pki
: >"$LC_KEYS"
chmod 755 "$LB_WORK"
export PYTHONPATH=$LB_WORK${PYTHONPATH:+:$PYTHONPATH}
export PYTHONDONTWRITEBYTECODE=1
unset SSLKEYLOGFILE

lc_log() { lb_log "$@"; }

# lc_pair N : NS_C (10.98.N.1/24, dev C_DEV) <-veth-> NS_S (10.98.N.2/24, dev S_DEV)
lc_pair() {
    local n=$1
    NS_C=lc-c$n-$LB_TAG; NS_S=lc-s$n-$LB_TAG
    C_DEV=$(echo "lc-c$n-$LB_TAG" | cut -c1-15); S_DEV=$(echo "lc-s$n-$LB_TAG" | cut -c1-15)
    C_IP=10.98.$n.1; S_IP=10.98.$n.2
    lb_ns "$NS_C"; lb_ns "$NS_S"
    lb_veth "$NS_C" "$C_DEV" "$C_IP/24" "$NS_S" "$S_DEV" "$S_IP/24"
}

# lc_chain N : client - middle - server, no IP forwarding in the middle (a proxy runs there).
#   NS_C 10.98.N.1/24 on C_DEV  <->  NS_M 10.98.N.254/24 on MC_DEV
#   NS_M 10.98.(N+100).254/24 on MS_DEV  <->  NS_S 10.98.(N+100).2/24 on S_DEV
lc_chain() {
    local n=$1 m=$(( $1 + 100 ))
    NS_C=lc-c$n-$LB_TAG; NS_M=lc-m$n-$LB_TAG; NS_S=lc-s$n-$LB_TAG
    C_DEV=$(echo "lc-c$n-$LB_TAG" | cut -c1-15); MC_DEV=$(echo "lc-mc$n-$LB_TAG" | cut -c1-15)
    MS_DEV=$(echo "lc-ms$n-$LB_TAG" | cut -c1-15); S_DEV=$(echo "lc-s$n-$LB_TAG" | cut -c1-15)
    C_IP=10.98.$n.1; M_IP=10.98.$n.254; MS_IP=10.98.$m.254; S_IP=10.98.$m.2
    lb_ns "$NS_C"; lb_ns "$NS_M"; lb_ns "$NS_S"
    lb_veth "$NS_C" "$C_DEV" "$C_IP/24" "$NS_M" "$MC_DEV" "$M_IP/24"
    lb_veth "$NS_S" "$S_DEV" "$S_IP/24" "$NS_M" "$MS_DEV" "$MS_IP/24"
}

# lc_pki : a private CA in $LC_PKI (ca.pem = the trust anchor the clients use)
lc_pki() {
    mkdir -p "$LC_PKI/db"
    : >"$LC_PKI/db/index.txt"; echo 1000 >"$LC_PKI/db/serial"
    cat >"$LC_PKI/ca.cnf" <<EOF
[ ca ]
default_ca = lc
[ lc ]
dir = $LC_PKI/db
database = \$dir/index.txt
serial = \$dir/serial
new_certs_dir = \$dir
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
email_in_dn = no
[ any ]
commonName = supplied
EOF
    timeout 20 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/CN=pcapsense lc lab CA" -keyout "$LC_PKI/ca.key" -out "$LC_PKI/ca.pem" >/dev/null 2>&1
}

# lc_cert NAME ec|rsa IP [STARTDATE ENDDATE] : $LC_PKI/NAME.crt/.key signed by the CA,
#   CN=lc.test, SAN DNS:lc.test,IP:IP; dates as YYYYMMDDHHMMSSZ (default: now-1h .. +2 days)
lc_cert() {
    local name=$1 kind=$2 ip=$3
    local start=${4:-$(date -u -d '-1 hour' +%Y%m%d%H%M%SZ)} end=${5:-$(date -u -d '+2 days' +%Y%m%d%H%M%SZ)}
    local kopt=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
    [ "$kind" = rsa ] && kopt=(-newkey rsa:2048)
    timeout 20 openssl req -new "${kopt[@]}" -nodes -subj "/CN=lc.test" \
        -addext "subjectAltName=DNS:lc.test,IP:$ip" -addext "extendedKeyUsage=serverAuth" \
        -keyout "$LC_PKI/$name.key" -out "$LC_PKI/$name.csr" >/dev/null 2>&1
    timeout 20 openssl ca -batch -notext -config "$LC_PKI/ca.cnf" -cert "$LC_PKI/ca.pem" -keyfile "$LC_PKI/ca.key" \
        -startdate "$start" -enddate "$end" -in "$LC_PKI/$name.csr" -out "$LC_PKI/$name.crt" >/dev/null 2>&1
}

# lc_certs IP : the usual pair, ec.crt and rsa.crt, valid now
lc_certs() { lc_pki; lc_cert ec ec "$1"; lc_cert rsa rsa "$1"; }

# lc_ssl [ec|rsa|both] [protocols] : nginx ssl directives for the certificates above
lc_ssl() {
    local which=${1:-ec} protos=${2:-TLSv1.2 TLSv1.3} s=""
    case $which in
        ec|both) s+="ssl_certificate $LC_PKI/ec.crt; ssl_certificate_key $LC_PKI/ec.key; " ;;
    esac
    case $which in
        rsa|both) s+="ssl_certificate $LC_PKI/rsa.crt; ssl_certificate_key $LC_PKI/rsa.key; " ;;
    esac
    echo "$s ssl_protocols $protos;"
}

# lc_run NS SECONDS cmd... : a client with SSLKEYLOGFILE=$LC_KEYS (set before the process
#   starts: aiohttp and requests build their SSL contexts early), bounded by timeout
lc_run() {
    local ns=$1 t=$2; shift 2
    SSLKEYLOGFILE=$LC_KEYS LC_CA=$LC_PKI/ca.pem timeout "$t" ip netns exec "$ns" "$@"
}
# lc_run_nokeys NS SECONDS cmd... : the same client without a key log
lc_run_nokeys() {
    local ns=$1 t=$2; shift 2
    env -u SSLKEYLOGFILE LC_CA=$LC_PKI/ca.pem timeout "$t" ip netns exec "$ns" "$@"
}
# lc_bg_keys NS LOGFILE cmd... : background client with the key log (PID in LB_PID)
lc_bg_keys() {
    local ns=$1 logf=$2; shift 2
    SSLKEYLOGFILE=$LC_KEYS LC_CA=$LC_PKI/ca.pem lb_bg "$ns" "$logf" "$@"
}

# lc_curl_event LABEL RC OUTFILE ERRFILE : turn curl -w '%{local_port} %{http_version}
#   %{http_code} %{ssl_verify_result}\n' lines into one JSON event per local port
lc_curl_event() {
    python3 - "$@" <<'PY'
import json, sys
label, rc, out, err = sys.argv[1], sys.argv[2], open(sys.argv[3]).read().split("\n"), open(sys.argv[4]).read().strip()
err = err.split("\n")[0]   # curl's first error line (the rest is advice text)
res = {}
order = []
for l in out:
    f = l.split()
    if len(f) < 3:
        continue
    p = int(f[0])
    if p not in res:
        order.append(p)
    res.setdefault(p, []).append(f"HTTP/{f[1]} {f[2]}" if f[2] != "000" else "no response")
if not order:
    print(json.dumps({"port": None, "saw": f"curl exit {rc}: {err}", "client": label}))
for i, p in enumerate(order):
    tail = f"; curl exit {rc}: {err}" if rc != "0" and i == len(order) - 1 else ""
    print(json.dumps({"port": p or None, "saw": "curl: " + "; ".join(res[p]) + tail, "client": label}))
PY
}

# lc_sclient_event LABEL SCLIENT_KEYLOG OUTFILE [extra text] : one JSON event keyed by the
#   ClientHello random that s_client logged (-keylogfile), with the lines of its -brief/
#   session output that matter; the per-run key log is appended to $LC_KEYS
lc_sclient_event() {
    cat "$2" >>"$LC_KEYS"
    python3 - "$@" <<'PY'
import json, re, sys
label, kl, out = sys.argv[1], sys.argv[2], sys.argv[3]
extra = sys.argv[4] if len(sys.argv) > 4 else ""
rnd = None
for l in open(kl):
    f = l.split()
    if len(f) == 3 and (f[0] == "CLIENT_RANDOM" or f[0].endswith("_SECRET")):
        rnd = f[1].lower(); break
txt = open(out, errors="replace").read()
keep = []
for l in txt.splitlines():
    l = l.strip()
    if re.match(r"^(HTTP/1\.1 \d+|Protocol *:|Cipher *:|New, |Reused, |Early data|Verification|Max Early Data|KEYUPDATE|Protocol version|Ciphersuite|Server Temp Key|Negotiated TLS1.3 group)", l) and l not in keep:
        keep.append(l)
print(json.dumps({"random": rnd, "saw": "openssl s_client: " + "; ".join(keep) + (f"; {extra}" if extra else ""), "client": label}))
PY
}

# lc_finish CAP CLIENTLOG : keys -> captures/lc-NAME.keys, labels, tshark decryption check
lc_finish() {
    local cap=$1 log=$2 base=$1
    for ext in .pcap.gz .pcapng .pcap; do base=${base%"$ext"}; done
    cp "$LC_KEYS" "$base.keys"
    python3 "$LC_LAB/lc_label.py" "$LB_SCEN" "$cap" "$log" "$base.keys"
    lc_check "$cap" "$base.keys"
}

# lc_check CAP KEYS : how many HTTP/1 and HTTP/2 messages tshark decrypts with the key log
lc_check() {
    local n1 n2
    n1=$(timeout 120 tshark -n -r "$1" -o "tls.keylog_file:$2" -Y 'http.request or http.response' 2>/dev/null | wc -l)
    n2=$(timeout 120 tshark -n -r "$1" -o "tls.keylog_file:$2" -Y 'http2.type == 1' 2>/dev/null | wc -l)
    lc_log "tshark check: $(basename "$1") with $(basename "$2"): $n1 HTTP/1 messages, $n2 frames with HTTP/2 HEADERS decrypted"
}

# Python helpers imported by the clients (PYTHONPATH=$LB_WORK): `from lc_common import *`
cat >"$LB_WORK/lc_common.py" <<'PY'
"""Client-side helpers for the lc scenarios: remember the local port of every connect()
(per thread and per asyncio task), print JSON events, TLS contexts that trust the lab CA."""
import contextvars, json, os, socket, ssl, sys, threading

CA = os.environ.get("LC_CA")
PORTS = []
_lock = threading.Lock()
_tl = threading.local()
_cv = contextvars.ContextVar("lc_ports", default=None)
_connect = socket.socket.connect


def _hook(self, addr):
    try:
        return _connect(self, addr)
    finally:
        try:
            p = self.getsockname()[1]
        except OSError:
            p = None
        if p:
            with _lock:
                PORTS.append(p)
            for l in (getattr(_tl, "ports", None), _cv.get()):
                if l is not None:
                    l.append(p)


socket.socket.connect = _hook


def track():
    """start a fresh list of the local ports this thread / task connects from"""
    l = []
    _tl.ports = l
    _cv.set(l)
    return l


def emit(**kw):
    with _lock:
        print(json.dumps(kw), flush=True)


def err(e):
    s = f"{type(e).__name__}: {e}"
    c = e.__cause__ or e.__context__
    if c is not None and str(c) not in s:
        s += f" (from {type(c).__name__}: {c})"
    return s


def ctx(maxv=None, minv=None, ciphers=None, alpn=None):
    """ssl.create_default_context(cafile=CA): honours SSLKEYLOGFILE, verifies with the lab CA"""
    c = ssl.create_default_context(cafile=CA)
    if maxv:
        c.maximum_version = getattr(ssl.TLSVersion, maxv)
    if minv:
        c.minimum_version = getattr(ssl.TLSVersion, minv)
    if ciphers:
        c.set_ciphers(ciphers)
    if alpn:
        c.set_alpn_protocols(alpn)
    return c


def resolve(name, ip):
    """make NAME resolve to IP in this process (so clients send SNI lc.test)"""
    orig = socket.getaddrinfo
    def gai(host, *a, **kw):
        return orig(ip if host == name else host, *a, **kw)
    socket.getaddrinfo = gai
PY

# A small asyncio HTTPS/1.1 server for behaviours nginx cannot produce (started by the
# scenarios with lb_bg, never with a key log):
#   python3 $LB_WORK/lc_tls_server.py IP PORT CERT KEY [--max-tls 1.2] [--delay S]
# paths:  /stall...  read the request, wait --delay s (default 3), close without a response
#                    (close_notify + FIN)
#         /slow...   wait --delay s, then answer 200 (a slow but working server)
#         /abort...  send the head (Content-Length 100000) and 20000 body bytes, then
#                    SO_LINGER 0 + abort: RST, no close_notify
#         anything else: 200 at once; keep-alive until the client closes
cat >"$LB_WORK/lc_tls_server.py" <<'PY'
import argparse, asyncio, socket, ssl, struct, sys
ap = argparse.ArgumentParser()
ap.add_argument("ip"); ap.add_argument("port", type=int); ap.add_argument("cert"); ap.add_argument("key")
ap.add_argument("--max-tls"); ap.add_argument("--delay", type=float, default=3.0)
ap.add_argument("--lifetime", type=float, default=60.0)
a = ap.parse_args()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(a.cert, a.key)
if a.max_tls == "1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
def log(*x):
    print(*x, file=sys.stderr, flush=True)
async def handle(r, w):
    peer = w.get_extra_info("peername")
    try:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0].decode()
            path = line.split(" ")[1]
            cl = 0
            for h in head.split(b"\r\n")[1:]:
                if h.lower().startswith(b"content-length:"):
                    cl = int(h.split(b":")[1])
            if cl:
                await r.readexactly(cl)
            log(peer, line)
            if path.startswith("/stall"):
                await asyncio.sleep(a.delay)
                log(peer, "closing without a response")
                w.close()
                return
            if path.startswith("/slow"):
                await asyncio.sleep(a.delay)
            if path.startswith("/abort"):
                w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n")
                w.write(b"a" * 20000)
                await w.drain()
                await asyncio.sleep(0.2)
                sock = w.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                log(peer, "aborting (SO_LINGER 0)")
                w.transport.abort()
                return
            body = f"ok {path}\n".encode()
            w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await w.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as e:
        log(peer, "ended:", type(e).__name__, e)
    finally:
        if not w.is_closing():
            w.close()
async def main():
    srv = await asyncio.start_server(handle, a.ip, a.port, ssl=ctx)
    async with srv:
        await asyncio.sleep(a.lifetime)
asyncio.run(main())
PY
