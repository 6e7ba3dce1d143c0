"""Shared helpers for the la-*.py lab scenarios (lab helper "la").

Loaded by each scenario with importlib (the file name has a dash on purpose:
every file of this helper starts with "la-").  Nothing here touches the host's
network: every scenario creates its own network namespaces (names "la-..."),
starts its servers/clients/capturer inside them, remembers every PID it
started, and on exit stops exactly those PIDs and deletes its namespaces.

Labels: the *cause* of each connection comes from the scenario's design and
from what its clients logged; closer / close_kind / first_frame always come
from the packets (tshark), so the labels describe what actually happened.
"""
import atexit
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LAB = os.path.join(REPO, "sample_pcaps", "lab")
CAPDIR = os.path.join(REPO, "sample_pcaps", "captures")
PY = sys.executable


def log(*a):
    print("[la]", *a, file=sys.stderr, flush=True)


def run(cmd, timeout=30, check=True, **kw):
    return subprocess.run(cmd, timeout=timeout, check=check, text=True,
                          capture_output=True, **kw)


def versions():
    """Software versions, for the labels' "software" field."""
    out = {}
    try:
        v = run(["nginx", "-v"]).stderr.strip().split("/")[-1]
        out["nginx"] = "nginx " + v
    except Exception:
        pass
    try:
        out["curl"] = "curl " + run(["curl", "--version"]).stdout.split()[1]
    except Exception:
        pass
    pyv = "python3 %d.%d.%d" % sys.version_info[:3]
    out["python"] = pyv
    for mod in ("requests", "urllib3", "aiohttp", "httpx", "gunicorn"):
        try:
            m = __import__(mod)
            out[mod] = "python3 %s %s" % (mod, m.__version__)
        except Exception:
            pass
    out["http.client"] = pyv + " http.client"
    out["asyncio"] = pyv + " asyncio"
    out["socket"] = pyv + " socket"
    return out


class Lab:
    """Namespaces, processes, capture and labelling for one scenario."""

    def __init__(self, scenario, veth=False, ipv6=False):
        if os.geteuid() != 0:
            sys.exit("must run as root")
        self.scenario = scenario
        self.tag = "%05d" % (os.getpid() % 100000)
        self.work = tempfile.mkdtemp(prefix="la-%s." % scenario)
        self.procs = []          # Popen objects we started (by PID)
        self.netns = []
        self.capture_proc = None
        self.capture_file = None
        self.veth = veth
        self.ipv6 = ipv6
        self._cleaned = False
        atexit.register(self.cleanup)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, self._sig)
        os.makedirs(CAPDIR, exist_ok=True)
        # client namespace (always); server namespace only with a veth pair
        self.ns_c = "la-%s-c" % self.tag
        self._mkns(self.ns_c)
        if veth:
            self.ns_s = "la-%s-s" % self.tag
            self._mkns(self.ns_s)
            self.dev_c = "la%sc" % self.tag
            self.dev_s = "la%ss" % self.tag
            self.ip_c, self.ip_s = "10.203.0.1", "10.203.0.2"
            run(["ip", "link", "add", self.dev_c, "netns", self.ns_c, "type",
                 "veth", "peer", "name", self.dev_s, "netns", self.ns_s])
            for ns, dev, ip in ((self.ns_c, self.dev_c, self.ip_c),
                                (self.ns_s, self.dev_s, self.ip_s)):
                run(["ip", "netns", "exec", ns, "ip", "addr", "add", ip + "/24", "dev", dev])
                run(["ip", "netns", "exec", ns, "ip", "link", "set", dev, "mtu", "1500", "up"])
                run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off",
                     "gso", "off", "gro", "off", "tx", "off"], check=False)
            self.dev = self.dev_c
            if ipv6:
                # optional IPv6 on the same veth pair (nodad: usable at once);
                # ip_c/ip_s become the IPv6 addresses, the IPv4 ones stay in ip4_c/ip4_s
                self.ip4_c, self.ip4_s = self.ip_c, self.ip_s
                self.ip_c, self.ip_s = "fd00:203::1", "fd00:203::2"
                for ns, dev, ip in ((self.ns_c, self.dev_c, self.ip_c),
                                    (self.ns_s, self.dev_s, self.ip_s)):
                    run(["ip", "netns", "exec", ns, "ip", "-6", "addr", "add", ip + "/64",
                         "dev", dev, "nodad"])
        elif ipv6:
            self.ns_s = self.ns_c
            self.ip4_c = self.ip4_s = "127.0.0.1"
            self.ip_c = self.ip_s = "::1"
            self.dev = "lo"
        else:
            self.ns_s = self.ns_c
            self.ip_c = self.ip_s = "127.0.0.1"
            self.dev = "lo"

    # ------------------------------------------------------------------ infra
    def _mkns(self, ns):
        run(["ip", "netns", "add", ns])
        self.netns.append(ns)
        run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"])

    def _sig(self, signum, frame):
        raise SystemExit(128 + signum)

    def cleanup(self):
        if self._cleaned:
            return
        self._cleaned = True
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in reversed(self.procs):
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                try:
                    p.kill()
                    p.wait(timeout=3)
                except Exception:
                    pass
        for ns in self.netns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if os.environ.get("LA_KEEP_WORK"):
            log("kept", self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.work, name)

    def write(self, name, text):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def spawn(self, ns, cmd, name, **kw):
        """Start a long-running process inside namespace ns; remember its PID."""
        out = open(self.path(name + ".out"), "w")
        err = open(self.path(name + ".err"), "w")
        p = subprocess.Popen(["ip", "netns", "exec", ns] + cmd, stdout=out,
                             stderr=err, stdin=subprocess.DEVNULL, **kw)
        self.procs.append(p)
        return p

    def wait_listen(self, ns, port, timeout=10):
        """Wait until something listens on port (checked with ss: no probe
        connection, so nothing extra gets captured)."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            r = run(["ip", "netns", "exec", ns, "ss", "-Hltn", "sport", "= :%d" % port], check=False)
            if r.stdout.strip():
                return
            time.sleep(0.05)
        raise RuntimeError("nothing listens on %s:%d" % (ns, port))

    def nginx(self, ns, server_block, http_extra="", name="nginx"):
        """Own nginx instance (own prefix, pid file, logs), foreground, by PID."""
        d = self.path(name)
        os.makedirs(os.path.join(d, "html"), exist_ok=True)
        conf = """
daemon off;
master_process on;
worker_processes 1;
user root;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log info;
events { worker_connections 256; }
http {
    access_log %(d)s/access.log;
    client_body_temp_path %(d)s/cbt;
    proxy_temp_path %(d)s/pt;
    fastcgi_temp_path %(d)s/ft;
    uwsgi_temp_path %(d)s/ut;
    scgi_temp_path %(d)s/st;
    default_type text/plain;
    %(extra)s
    server {
        %(server)s
    }
}
""" % {"d": d, "server": server_block, "extra": http_extra}
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(conf)
        return self.spawn(ns, ["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf"),
                               "-e", os.path.join(d, "error.log")], name)

    def pyserver(self, ns, code, args=(), name="server"):
        p = self.write(name + ".py", code)
        return self.spawn(ns, [PY, "-u", p] + [str(a) for a in args], name)

    # ---------------------------------------------------------------- capture
    def start_capture(self, fname, tool="tcpdump", iface=None, snaplen=None, linktype=None):
        """fname: final file name in sample_pcaps/captures (.pcap, .pcapng,
        .pcap.gz).  tool: tcpdump or dumpcap (pcapng)."""
        iface = iface or self.dev
        self.capture_file = fname
        raw = self.path("raw." + ("pcapng" if tool == "dumpcap" else "pcap"))
        self.capture_raw = raw
        if tool == "dumpcap":
            cmd = ["dumpcap", "-q", "-i", iface, "-w", raw, "-f", "tcp"]
            if snaplen:
                cmd += ["-s", str(snaplen)]
        else:
            cmd = ["tcpdump", "-U", "--immediate-mode", "-n", "-i", iface, "-w", raw]
            if snaplen:
                cmd += ["-s", str(snaplen)]
            if linktype:
                cmd += ["-y", linktype]
            cmd += ["tcp"]
        self.capture_proc = self.spawn(self.ns_c, cmd, "capture")
        errf = self.path("capture.err")
        t0 = time.time()
        while time.time() - t0 < 10:
            with open(errf) as f:
                e = f.read()
            if "listening on" in e or "Capturing on" in e:
                break
            if self.capture_proc.poll() is not None:
                raise RuntimeError("capture failed: " + e)
            time.sleep(0.05)
        time.sleep(0.3)
        self.capture_cmd = " ".join(cmd)
        log("capture:", self.capture_cmd)

    def stop_capture(self, settle=0.5):
        time.sleep(settle)
        p = self.capture_proc
        p.send_signal(signal.SIGINT)
        p.wait(timeout=10)
        dst = os.path.join(CAPDIR, self.capture_file)
        if dst.endswith(".pcapng") and self.capture_raw.endswith(".pcap"):
            run(["editcap", "-F", "pcapng", self.capture_raw, dst])
            self.capture_cmd += " && editcap -F pcapng"
        elif dst.endswith(".gz"):
            with open(self.capture_raw, "rb") as f, gzip.open(dst, "wb") as g:
                shutil.copyfileobj(f, g)
            self.capture_cmd += " && gzip"
        else:
            shutil.copy(self.capture_raw, dst)
        log("wrote", dst, os.path.getsize(dst), "bytes")
        return dst

    # ---------------------------------------------------------------- clients
    def client(self, code, args=(), name="client", timeout=40, ns=None, background=False):
        """Run a python client in the client namespace; its stdout is JSON
        lines (one per request: what the application saw).  Returns the list
        of dicts (or the Popen when background)."""
        p = self.write(name + ".py", code)
        cmd = ["ip", "netns", "exec", ns or self.ns_c, PY, "-u", p] + [str(a) for a in args]
        if background:
            out = open(self.path(name + ".out"), "w")
            pr = subprocess.Popen(cmd, stdout=out, stderr=open(self.path(name + ".err"), "w"))
            self.procs.append(pr)
            return pr
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if r.stderr.strip():
            log(name, "stderr:", r.stderr.strip()[-2000:])
        return parse_jsonl(r.stdout)

    def collect(self, pr, name="client", timeout=40):
        pr.wait(timeout=timeout)
        with open(self.path(name + ".out")) as f:
            return parse_jsonl(f.read())

    def curl(self, args, tag, timeout=20, ns=None):
        """Run curl; log one JSON line like the python clients do."""
        fmt = '{"code":%{http_code},"size":%{size_download}}\n'
        self._curl_port = getattr(self, "_curl_port", 41000) + 1
        cmd = ["ip", "netns", "exec", ns or self.ns_c, "curl", "-sS", "-o", "/dev/null",
               "--local-port", str(self._curl_port),
               "-w", fmt, "--max-time", "15"] + args
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        lines = parse_jsonl(r.stdout)
        d = lines[0] if lines else {}
        d.update({"lport": self._curl_port, "who": tag, "client": "curl", "rc": r.returncode,
                  "saw": "; ".join("HTTP %s" % x.get("code") for x in lines) if r.returncode == 0 else
                  "curl exit %d: %s" % (r.returncode, r.stderr.strip())})
        log("curl", d)
        return d


def parse_jsonl(text):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


# ------------------------------------------------------------------ packets
FIELDS = ["frame.number", "frame.time_relative", "ip.src", "tcp.srcport", "ip.dst",
          "tcp.dstport", "tcp.stream", "tcp.flags.syn", "tcp.flags.ack",
          "tcp.flags.fin", "tcp.flags.reset", "tcp.len", "http.response.code",
          "http.request.method", "tcp.seq", "tcp.ack"]
# queried after FIELDS (so FIELDS keeps its meaning): IPv6 addresses, absolute time
EXTRA_FIELDS = ["ipv6.src", "ipv6.dst", "frame.time_epoch"]
# extra tshark "decode as" rules, e.g. ["tcp.port==8081,http"]; empty by default
DECODE_AS = []


def conversations(capfile):
    """Per TCP stream facts, from tshark."""
    cmd = ["tshark", "-n", "-r", capfile, "-o", "tcp.relative_sequence_numbers:TRUE",
           "-Y", "tcp", "-T", "fields", "-E", "separator=|", "-E", "occurrence=f"]
    for f in FIELDS + EXTRA_FIELDS:
        cmd += ["-e", f]
    for d in DECODE_AS:
        cmd += ["-d", d]
    r = run(cmd, timeout=60)
    conns = {}
    for line in r.stdout.splitlines():
        v = dict(zip(FIELDS + EXTRA_FIELDS, line.split("|")))
        if not v["ip.src"] and v.get("ipv6.src"):      # IPv6: "[addr]:port"
            v["ip.src"], v["ip.dst"] = "[%s]" % v["ipv6.src"], "[%s]" % v["ipv6.dst"]
        st = int(v["tcp.stream"])
        fr = int(v["frame.number"])
        t = float(v["frame.time_relative"])
        src = "%s:%s" % (v["ip.src"], v["tcp.srcport"])
        dst = "%s:%s" % (v["ip.dst"], v["tcp.dstport"])
        c = conns.get(st)
        if c is None:
            c = conns[st] = {"stream": st, "first_frame": fr, "t0": t, "frames": [],
                             "client": None, "server": None, "first": (src, dst)}
            try:
                c["t0_epoch"] = float(v.get("frame.time_epoch") or "nan")
            except ValueError:
                c["t0_epoch"] = float("nan")
        syn, ack = v["tcp.flags.syn"] in ("1", "True"), v["tcp.flags.ack"] in ("1", "True")
        fin, rst = v["tcp.flags.fin"] in ("1", "True"), v["tcp.flags.reset"] in ("1", "True")
        if syn and not ack and c["client"] is None:
            c["client"], c["server"] = src, dst
        c["frames"].append({"n": fr, "t": t, "src": src, "syn": syn, "ack": ack, "fin": fin,
                            "rst": rst, "len": int(v["tcp.len"] or 0),
                            "code": v["http.response.code"], "method": v["http.request.method"]})
    for c in conns.values():
        if c["client"] is None:          # no handshake seen: first sender of data
            c["client"], c["server"] = c["first"]
        c["closer"], c["close_kind"], c["close_frame"], c["close_t"] = "none", "none", None, None
        for f in c["frames"]:
            if f["fin"] or f["rst"]:
                c["closer"] = "client" if f["src"] == c["client"] else "server"
                c["close_kind"] = "RST" if f["rst"] else "FIN"
                c["close_frame"], c["close_t"] = f["n"], f["t"]
                break
        c["codes"] = [f["code"] for f in c["frames"] if f["code"]]
        c["methods"] = [f["method"] for f in c["frames"] if f["method"]]
        c["client_port"] = int(c["client"].rsplit(":", 1)[1])
        c["server_data"] = sum(f["len"] for f in c["frames"] if f["src"] == c["server"])
        c["client_data"] = sum(f["len"] for f in c["frames"] if f["src"] == c["client"])
        c["rst_frames"] = [f["n"] for f in c["frames"] if f["rst"]]
        c["fin_frames"] = [(f["n"], "client" if f["src"] == c["client"] else "server")
                           for f in c["frames"] if f["fin"]]
    return [conns[k] for k in sorted(conns, key=lambda s: conns[s]["first_frame"])]


def last_data_before(c, side, frame):
    """time of the last payload segment from side ('client'/'server') before frame."""
    addr = c[side]
    t = None
    for f in c["frames"]:
        if f["n"] >= frame:
            break
        if f["src"] == addr and f["len"] > 0:
            t = f["t"]
    return t


def packet_facts(c):
    parts = ["stream %d: SYN frame %d" % (c["stream"], c["first_frame"])]
    if c["methods"]:
        parts.append("requests %s" % ",".join(c["methods"]))
    parts.append("responses %s" % (",".join(c["codes"]) if c["codes"] else "none"))
    parts.append("client->server %d B, server->client %d B" % (c["client_data"], c["server_data"]))
    if c["close_frame"]:
        s = "first close: %s %s at frame %d" % (c["closer"], c["close_kind"], c["close_frame"])
        lt = last_data_before(c, "server", c["close_frame"])
        lc = last_data_before(c, "client", c["close_frame"])
        if lt is not None:
            s += " (%.3f s after the server's last data" % (c["close_t"] - lt)
            s += ", %.3f s after the client's last data)" % (c["close_t"] - lc) if lc is not None else ")"
        parts.append(s)
        if c["fin_frames"]:
            parts.append("FINs " + ",".join("%d(%s)" % x for x in c["fin_frames"]))
        if c["rst_frames"]:
            parts.append("RSTs " + ",".join(map(str, c["rst_frames"])))
    else:
        parts.append("no FIN/RST before the capture ended")
    return "; ".join(parts)


def pcapsense_view(capfile):
    r = run(["pcapsense", "analyze", capfile, "-f", "json", "-q"], check=False, timeout=120)
    try:
        data = json.loads(r.stdout)
    except ValueError:
        log("pcapsense output not JSON:", r.stdout[:300], r.stderr[:300])
        return {}
    rows = data if isinstance(data, list) else data.get("connections", data.get("rows", []))
    out = {}
    for row in rows:
        try:
            out[int(row["first_frame"])] = row
        except (KeyError, TypeError, ValueError):
            pass
    return out


def write_labels(lab, scenario_text, software, label_fn, logs, expect=None):
    """label_fn(conn, logs) -> dict(cause=..., client_saw=..., how=...)."""
    capfile = os.path.join(CAPDIR, lab.capture_file)
    conns = conversations(capfile)
    ps = pcapsense_view(capfile)
    out = []
    for c in conns:
        lab_ = label_fn(c, logs)
        how = lab_["how"] + " Packets: " + packet_facts(c) + "."
        out.append({"client": c["client"], "server": c["server"], "first_frame": c["first_frame"],
                    "cause": lab_["cause"], "closer": c["closer"], "close_kind": c["close_kind"],
                    "client_saw": lab_.get("client_saw", ""), "how_known": how})
        p = ps.get(c["first_frame"], {})
        agree = (p.get("closer"), p.get("close_kind")) == (c["closer"], c["close_kind"])
        log("conn f%-4d %-21s %-8s %s/%s  saw=%s  pcapsense=%s/%s/%s%s" % (
            c["first_frame"], c["client"], lab_["cause"], c["closer"], c["close_kind"],
            lab_.get("client_saw", "")[:60], p.get("closer"), p.get("close_kind"),
            p.get("cause", "-"), "" if agree or not p else "  <-- closer/kind differ"))
    doc = {"capture": lab.capture_file, "scenario": scenario_text, "software": software,
           "record_command": "python3 sample_pcaps/lab/%s.py" % lab.scenario,
           "capture_command": lab.capture_cmd, "connections": out}
    base = lab.capture_file.split(".")[0]
    with open(os.path.join(CAPDIR, base + ".labels.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    if expect is not None:
        got = {}
        for o in out:
            got[o["cause"]] = got.get(o["cause"], 0) + 1
        missing = {k: v for k, v in expect.items() if got.get(k, 0) < v}
        if missing:
            log("WARNING: expected causes not reproduced:", missing, "got", got)
    log("labels:", os.path.join(CAPDIR, base + ".labels.json"), "%d connections" % len(out))
    return out


def by_port(logs, port):
    for d in logs:
        if d.get("lport") == port:
            return d
    return None


# Prepended to python clients: remembers the local port of every new TCP
# connection made through socket.create_connection (http.client, httpx/httpcore)
# or urllib3 (requests) in the list PORTS.
PORT_HOOK = r'''
import socket as _s
PORTS = []
_orig_cc = _s.create_connection
def _cc(*a, **kw):
    s = _orig_cc(*a, **kw); PORTS.append(s.getsockname()[1]); return s
_s.create_connection = _cc
try:
    import urllib3.util.connection as _uc
    _uorig = _uc.create_connection
    def _ucc(*a, **kw):
        s = _uorig(*a, **kw); PORTS.append(s.getsockname()[1]); return s
    _uc.create_connection = _ucc
except ImportError:
    pass
'''
