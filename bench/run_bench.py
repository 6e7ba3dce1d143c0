#!/usr/bin/env python3
"""run_bench.py - paired benchmark of pcapsense against tshark and scapy.

Usage:
    bench/run_bench.py [FILE ...] [--runs N] [--json out.json]
                       [--pcapsense-cmd 'pcapsense analyze {f} --format json --quiet --output /dev/null']
                       [--tools pcapsense,pcapsense-j1,tshark,scapy,tcptrace,dpkt] [--all]

Default FILEs: bench-small.pcap, bench-large.pcap and bench-large.pcapng (made by
/work/shared/bench/make-corpus), bench-short.pcap (make-corpus --short: connection
heavy) and synflood-1m.pcap (bench/make_synflood.py: 1M one-SYN connections) in --dir
(default /tmp/pcapsense-bench), whichever are present.

For each file the tools run in the SAME invocation, interleaved: one run of
every tool in a fixed order (pcapsense, tshark, scapy, tcptrace, dpkt), and
that round is repeated --runs times (default 3), after --warmup unrecorded
rounds (default 1) and a read of the file into the page cache. Each round is
a "pair": ratios are computed per round (tool time / tshark time of the same
round) and the median of those per-round ratios is reported, which cancels
most of the drift of a noisy machine.

Tools:
    pcapsense  the --pcapsense-cmd template ({f} = capture path), run as given
               (default --jobs: the machine's cores, one per 256 MiB of capture)
    pcapsense-j1   the same with --jobs 1 (one process)
    pcapsense-tcp  the same with --jobs 1 --tcp-only (not in the default --tools)
    pcapsense-keys the --pcapsense-cmd with --keylog K, K the capture's key log (F with
               .keys for .pcap/.pcapng); none for a pcapng whose keys are embedded
               (a Decryption Secrets Block). Not in the default --tools
    tshark-http    tshark -r F -o tls.keylog_file:K -q -z http,tree (decrypting; no -o
               for a pcapng with embedded keys): what pcapsense-keys is held to
    tshark     tshark -r F -q -z conv,tcp                 (the yardstick)
    scapy      scapy PcapReader streaming loop that reads the TCP flags of
               every packet (same work as the shared anchors/scapy_flags.py:
               per-connection client + first FIN/RST), in a child interpreter
    tcptrace   tcptrace -n -l F                           (optional)
    dpkt       the same loop with dpkt.pcap.UniversalReader (optional)

scapy is slow (~10-30k packets/s): on a file of more than --scapy-max-packets
(200,000) packets it runs, unless --all, on a slice of the first
--slice-packets (100,000) packets made with `editcap -r -F <same format> FILE
SLICE 1-100000`; its packets/s is measured on the slice and its whole-file
time is EXTRAPOLATED (packets / slice packets/s; start-up included, so a bit
pessimistic for scapy). Such rows are marked '*'.

Measurements per run (whole process, start-up included):
    wall       time.monotonic() around the child process
    peak RSS   ru_maxrss of the child from os.wait4. Caveats: it counts
               file-backed mapped pages too (a tool that mmap()s the capture
               shows the touched part of the file as RSS); for a tool that
               forks, it is the largest single process, not the sum; and it
               is never below the runner's own peak RSS (~20 MiB), which a
               forked child inherits: values at that floor are shown '<=N'.
    anon       peak RssAnon of the top process sampled from /proc every
               --sample-interval s (0.02): heap only, no floor, may miss a
               peak shorter than the interval.
    all anon   the same summed over the tool's process group (its forked
               workers too: pcapsense --jobs), sampled at the same time.
    cpu        user+system CPU seconds (>wall means several threads)
Packets are counted with capinfos (or by walking the pcap/pcapng records).
scapy/dpkt runs also print their packet count, which is checked.

Columns: 'x tshark' = median over rounds of (tool wall / tshark wall), and
'x scapy' = median over rounds of (tool wall / scapy wall, extrapolated to
the whole file when scapy ran on a slice); below 1 means faster than it.

Exit status: 0 all fine; 1 a run failed or a check did not match; 2 a
required tool (pcapsense, tshark, scapy) is missing or no capture was found.
Missing tools are skipped with a message, never a crash. Python for the
scapy/dpkt children: --python, else this interpreter if it has the module,
else /tmp/anchors-venv/bin/python (made by run-anchors --setup).

Only the standard library is imported by the runner itself.
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

DEFAULT_DIR = "/tmp/pcapsense-bench"
DEFAULT_FILES = ("bench-small.pcap", "bench-large.pcap", "bench-large.pcapng", "bench-short.pcap", "synflood-1m.pcap")
# the HTTPS benchmark (make-corpus --tls): bench/run_bench.py --tls
TLS_FILES = ("bench-tls.pcap", "bench-tls.pcapng")
TLS_TOOLS = ("pcapsense", "pcapsense-keys", "tshark", "tshark-http")
DEFAULT_PCAPSENSE = "pcapsense analyze {f} --format json --quiet --output /dev/null"
ANCHOR_VENV_PY = "/tmp/anchors-venv/bin/python"
ALL_TOOLS = ("pcapsense", "pcapsense-j1", "pcapsense-tcp", "pcapsense-keys", "pcapsense-base", "tshark",
             "tshark-http", "scapy", "tcptrace", "dpkt")
DEFAULT_TOOLS = ("pcapsense", "pcapsense-j1", "tshark", "scapy", "tcptrace", "dpkt")
# the pcapsense variants: --pcapsense-cmd plus these arguments
PCAPSENSE_VARIANTS = {"pcapsense": "", "pcapsense-j1": " --jobs 1", "pcapsense-tcp": " --jobs 1 --tcp-only",
                      "pcapsense-keys": " --keylog {keys}"}
REQUIRED = ("pcapsense", "tshark", "scapy")
HERE = os.path.abspath(__file__)
FLOOR_SLACK_MIB = 1.0  # a peak within this of the inherited floor counts as 'at the floor'


# --------------------------------------------------------------------------
# worker mode: the scapy / dpkt loops, run in a child interpreter
# --------------------------------------------------------------------------

def _report(n, ntcp, conns):
    from collections import Counter
    hist = Counter()
    for client, close in conns.values():
        if close is None:
            hist["open"] += 1
        else:
            who = "unknown" if client is None else ("client" if close[0] == client else "server")
            hist[f"{who}-{close[1]}"] += 1
    print(f"packets={n} tcp={ntcp} connections={len(conns)}")
    for label, count in sorted(hist.items()):
        print(f"  {label:15s} {count}")


def _track(conns, a, b, f):
    key = (a, b) if a < b else (b, a)
    c = conns.get(key)
    if c is None:
        c = conns[key] = [None, None]
    if f & 0x12 == 0x02 and c[0] is None:  # SYN without ACK: client
        c[0] = a
    if f & 0x05 and c[1] is None:  # first FIN or RST
        c[1] = (a, "rst" if f & 0x04 else "fin")


def worker_scapy(path):
    from scapy.layers.inet import IP, TCP
    from scapy.utils import PcapReader
    conns, n, ntcp = {}, 0, 0
    with PcapReader(path) as reader:  # streams; pcap and pcapng
        for pkt in reader:
            n += 1
            if TCP not in pkt or IP not in pkt:
                continue
            ntcp += 1
            ip = pkt[IP]
            tcp = ip[TCP]
            _track(conns, (ip.src, tcp.sport), (ip.dst, tcp.dport), int(tcp.flags))
    _report(n, ntcp, conns)


def worker_dpkt(path):
    import dpkt
    conns, n, ntcp = {}, 0, 0
    IP, TCP, Ethernet = dpkt.ip.IP, dpkt.tcp.TCP, dpkt.ethernet.Ethernet
    with open(path, "rb") as fh:
        for _ts, buf in dpkt.pcap.UniversalReader(fh):
            n += 1
            ip = Ethernet(buf).data
            if not isinstance(ip, IP):
                continue
            tcp = ip.data
            if not isinstance(tcp, TCP):
                continue
            ntcp += 1
            _track(conns, (ip.src, tcp.sport), (ip.dst, tcp.dport), tcp.flags)
    _report(n, ntcp, conns)


WORKERS = {"scapy": worker_scapy, "dpkt": worker_dpkt}


# --------------------------------------------------------------------------
# capture files: format, packet count, slices
# --------------------------------------------------------------------------

PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<",
               b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


def capture_format(path):
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic in PCAP_MAGICS:
        return "pcap"
    if magic == PCAPNG_MAGIC:
        return "pcapng"
    return "unknown"


def count_packets_python(path):
    """Count packet records by walking the headers (streaming, small memory)."""
    fmt = capture_format(path)
    n = 0
    with open(path, "rb") as f:
        if fmt == "pcap":
            end = PCAP_MAGICS[f.read(24)[:4]]
            rec = struct.Struct(end + "IIII")
            while True:
                h = f.read(16)
                if len(h) < 16:
                    break
                f.seek(rec.unpack(h)[2], 1)
                n += 1
        elif fmt == "pcapng":
            end = "<"
            while True:
                h = f.read(12)
                if len(h) < 8:
                    break
                btype = struct.unpack(end + "I", h[:4])[0]
                if h[:4] == PCAPNG_MAGIC:  # section header: byte-order magic decides
                    end = "<" if h[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
                blen = struct.unpack(end + "I", h[4:8])[0]
                if blen < 12:
                    raise ValueError(f"{path}: corrupt pcapng block")
                if btype in (2, 3, 6):  # packet, simple packet, enhanced packet
                    n += 1
                f.seek(blen - 12, 1)
        else:
            raise ValueError(f"{path}: not a pcap or pcapng file")
    return n


def count_packets(path):
    if shutil.which("capinfos"):
        r = subprocess.run(["capinfos", "-M", "-c", "-T", "-r", path],
                           capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.split():
            try:
                return int(r.stdout.split()[-1]), "capinfos"
            except ValueError:
                pass
    return count_packets_python(path), "python"


def warm_page_cache(path):
    """Read the file once so every tool starts from a warm page cache."""
    t0 = time.monotonic()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(4 << 20)  # small: the runner's peak RSS is every child's floor
        while f.readinto(buf):
            pass
    return time.monotonic() - t0


def make_slice(path, npk, slice_dir):
    """First npk packets of path, same format, made with editcap -r; cached."""
    fmt = capture_format(path)
    stem, ext = os.path.splitext(os.path.basename(path))
    out_dir = slice_dir or os.path.dirname(path)
    if not os.access(out_dir, os.W_OK):
        out_dir = tempfile.gettempdir()
    out = os.path.join(out_dir, f"{stem}.first{npk}{ext}")
    if (os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(path)
            and count_packets(out)[0] == npk):
        return out
    if not shutil.which("editcap"):
        raise RuntimeError("editcap not found (apt-get install tshark), cannot slice")
    cmd = ["editcap", "-r", "-F", fmt, path, out, f"1-{npk}"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out


# --------------------------------------------------------------------------
# running one measured child process
# --------------------------------------------------------------------------

def _proc_status_kib(pid):
    vals = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmHWM:", "RssAnon:", "RssFile:")):
                    k, v = line.split(":", 1)
                    vals[k] = int(v.split()[0])
    except OSError:
        pass
    return vals


def _group_anon_kib(pgid):
    """RssAnon summed over the processes of process group `pgid` (the tool and any
    workers it forked: pcapsense --jobs)."""
    total = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            if int(st[st.rindex(")") + 2:].split()[2]) != pgid:
                continue
        except (OSError, ValueError, IndexError):
            continue
        total += _proc_status_kib(d).get("RssAnon", 0)
    return total


def run_once(argv, timeout, sample_interval, stdout_path):
    """Run argv once; return a dict with wall, rss and cpu figures."""
    err_fd, err_path = tempfile.mkstemp(prefix="run_bench-", suffix=".err")
    # the child inherits this process's peak RSS at fork/exec: its ru_maxrss floor
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(stdout_path, "wb") as out, os.fdopen(err_fd, "wb") as err:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                             start_new_session=True)
    pid = p.pid
    lock = threading.Lock()
    state = {"done": False, "timed_out": False, "anon": 0, "hwm": 0}

    def sampler():
        while True:
            with lock:
                if state["done"]:
                    return
                v = _proc_status_kib(pid)  # pid not reaped yet: cannot be reused
                g = _group_anon_kib(pid)    # its own session and group (start_new_session)
            state["anon"] = max(state["anon"], v.get("RssAnon", 0))
            state["group_anon"] = max(state.get("group_anon", 0), g)
            state["hwm"] = max(state["hwm"], v.get("VmHWM", 0))
            time.sleep(sample_interval)

    def on_timeout():
        with lock:
            if not state["done"]:
                state["timed_out"] = True
                try:
                    os.killpg(pid, signal.SIGKILL)  # our child's own session/group
                except OSError:
                    pass

    th = threading.Thread(target=sampler, daemon=True)
    if sample_interval > 0:
        th.start()
    timer = threading.Timer(timeout, on_timeout)
    timer.daemon = True
    timer.start()
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped yet
    wall = time.monotonic() - t0
    with lock:
        state["done"] = True
    timer.cancel()
    _, status, ru = os.wait4(pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if sample_interval > 0:
        th.join()
    # a tool may leave children of its own behind in its process group
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    with open(err_path, "rb") as f:
        err_tail = f.read()[-2000:].decode("utf-8", "replace")
    os.unlink(err_path)
    return {
        "wall_s": wall,
        "rc": p.returncode,
        "timed_out": state["timed_out"],
        "maxrss_mib": ru.ru_maxrss / 1024,
        "rss_floor_mib": floor,
        "anon_peak_mib": state["anon"] / 1024 if sample_interval > 0 else None,
        "group_anon_peak_mib": state.get("group_anon", 0) / 1024 if sample_interval > 0 else None,
        "vmhwm_sampled_mib": state["hwm"] / 1024 if sample_interval > 0 else None,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "stderr_tail": err_tail if p.returncode != 0 else "",
    }


# --------------------------------------------------------------------------
# tool discovery
# --------------------------------------------------------------------------

def python_with(module, preferred):
    cands = [preferred] if preferred else [sys.executable, ANCHOR_VENV_PY]
    for py in cands:
        if not py or not (shutil.which(py) or os.access(py, os.X_OK)):
            continue
        r = subprocess.run([py, "-c", f"import {module}, sys; "
                            f"sys.stdout.write(getattr({module}, '__version__', '') or "
                            f"getattr({module}, 'VERSION', '?'))"],
                           capture_output=True, text=True)
        if r.returncode == 0:
            return py, r.stdout.strip()
    return None, None


def first_line(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (r.stdout + r.stderr).strip().splitlines()
    return lines[0].strip() if lines else None


def discover(a):
    """name -> {'argv': template list, 'version': str} or {'missing': why}."""
    tools = {}
    want = [t.strip() for t in a.tools.split(",") if t.strip()]
    for t in want:
        if t not in ALL_TOOLS:
            sys.exit(f"run_bench: unknown tool '{t}' (choose from {','.join(ALL_TOOLS)})")
    for name in want:
        if name in PCAPSENSE_VARIANTS:
            argv = shlex.split(a.pcapsense_cmd + PCAPSENSE_VARIANTS[name])
            if not argv:
                tools[name] = {"missing": "--pcapsense-cmd is empty"}
            elif not shutil.which(argv[0]):
                tools[name] = {"missing": f"'{argv[0]}' not found on PATH "
                                          f"(install the package: pip install -e /work/main)"}
            else:
                if not any("{f}" in x for x in argv):
                    print(f"run_bench: note: --pcapsense-cmd has no {{f}}; running "
                          f"'{a.pcapsense_cmd}' as given", file=sys.stderr)
                ver = first_line([argv[0], "--version"]) if os.path.basename(argv[0]) == "pcapsense" else None
                tools[name] = {"argv": argv, "version": ver or shutil.which(argv[0])}
        elif name == "pcapsense-base":
            # the same job from another build (--baseline-cmd), interleaved in the same
            # rounds: a change's cost as a ratio measured in one run
            argv = shlex.split(a.baseline_cmd or "")
            if not argv:
                tools[name] = {"missing": "--baseline-cmd not given"}
            elif not shutil.which(argv[0]):
                tools[name] = {"missing": f"'{argv[0]}' not found"}
            else:
                tools[name] = {"argv": argv, "version": a.baseline_cmd}
        elif name == "tshark":
            if shutil.which("tshark"):
                tools[name] = {"argv": ["tshark", "-r", "{f}", "-q", "-z", "conv,tcp"],
                               "version": first_line(["tshark", "-v"])}
            else:
                tools[name] = {"missing": "tshark not found (apt-get install tshark)"}
        elif name == "tshark-http":
            if shutil.which("tshark"):
                tools[name] = {"argv": ["tshark", "-r", "{f}", "-o", "tls.keylog_file:{keys}", "-q", "-z", "http,tree"],
                               "version": first_line(["tshark", "-v"])}
            else:
                tools[name] = {"missing": "tshark not found (apt-get install tshark)"}
        elif name == "tcptrace":
            if shutil.which("tcptrace"):
                ver = first_line(["tcptrace", "-v"])
                tools[name] = {"argv": ["tcptrace", "-n", "-l", "{f}"], "version": ver}
            else:
                tools[name] = {"missing": "tcptrace not found (apt-get install tcptrace)"}
        else:  # scapy, dpkt: a child interpreter running this file in worker mode
            py, ver = python_with(name, a.python)
            if py:
                tools[name] = {"argv": [py, HERE, "--worker", name, "{f}"],
                               "version": f"{name} {ver} ({py})"}
            else:
                hint = ("pip install scapy" if name == "scapy" else "pip install dpkt")
                tools[name] = {"missing": f"python module '{name}' not importable by "
                                          f"{a.python or sys.executable + ' or ' + ANCHOR_VENV_PY}"
                                          f" ({hint}, or /work/shared/bench/run-anchors --setup)"}
    return want, tools


# --------------------------------------------------------------------------
# benchmark
# --------------------------------------------------------------------------

def keylog_of(path):
    """The key log beside a capture (NAME.keys for NAME.pcap / NAME.pcapng), or None."""
    stem = re.sub(r"\.(pcapng|pcap)$", "", path)
    return stem + ".keys" if os.path.exists(stem + ".keys") else None


def fill(argv, path):
    """The command for `path`: {f} the capture, {keys} its key log; an option whose value
    is {keys} is left out when the capture has no key log beside it (a pcapng carrying
    its keys in a Decryption Secrets Block)."""
    keys = keylog_of(path) if path.endswith(".pcap") or not path.endswith(".pcapng") else None
    out = []
    for x in argv:
        if "{keys}" in x:
            if keys is None:
                if out and out[-1] in ("--keylog", "-o"):
                    out.pop()
                continue
            x = x.replace("{keys}", keys)
        out.append(x.replace("{f}", path))
    return out


def fmt_peak(row):
    if row["peak_rss_at_floor"]:
        return f"<={row['rss_floor_mib'] + FLOOR_SLACK_MIB:.0f}"
    return f"{row['peak_rss_mib']:.1f}"


def bench_file(path, a, order, tools, problems):
    npk, how = count_packets(path)
    info = {"path": path, "packets": npk, "counted_with": how,
            "bytes": os.path.getsize(path), "format": capture_format(path)}
    print(f"\n## {path}: {npk:,} packets ({info['bytes'] / 2**20:,.0f} MiB, {info['format']}, "
          f"counted with {how})", flush=True)
    info["cache_read_s"] = round(warm_page_cache(path), 3)

    # what each tool runs on
    plan = []
    for name in order:
        t = tools[name]
        if "missing" in t:
            continue
        target, tnpk, sliced = path, npk, False
        if name == "scapy" and npk > a.scapy_max_packets and not a.all:
            try:
                target = make_slice(path, a.slice_packets, a.slice_dir)
            except (RuntimeError, subprocess.CalledProcessError) as e:
                problems.append(f"scapy skipped on {path}: {e}")
                print(f"   scapy skipped: {e}", flush=True)
                continue
            tnpk, sliced = count_packets(target)[0], True
            print(f"   scapy runs on a slice: {target} ({tnpk:,} packets); "
                  f"its whole-file time is extrapolated", flush=True)
        plan.append({"tool": name, "target": target, "packets": tnpk, "sliced": sliced,
                     "argv": fill(t["argv"], target), "runs": [], "failed": None})

    out_fd, out_path = tempfile.mkstemp(prefix="run_bench-", suffix=".out")
    os.close(out_fd)
    try:
        total = a.warmup + a.runs
        for rnd in range(total):
            label = f"warm-up {rnd + 1}/{a.warmup}" if rnd < a.warmup else f"round {rnd - a.warmup + 1}/{a.runs}"
            for item in plan:
                if item["failed"]:
                    continue
                r = run_once(item["argv"], a.timeout, a.sample_interval, out_path)
                msg = f"   {label:14s} {item['tool']:10s} {r['wall_s']:8.2f} s  {r['maxrss_mib']:7.1f} MiB"
                if r["rc"] != 0 or r["timed_out"]:
                    why = "timed out" if r["timed_out"] else f"exit {r['rc']}"
                    item["failed"] = f"{why}: {shlex.join(item['argv'])}\n{r['stderr_tail'].strip()}"
                    problems.append(f"{item['tool']} failed on {path}: {item['failed']}")
                    print(msg + f"  FAILED ({why})", flush=True)
                    continue
                if item["tool"] in WORKERS:  # cross-check the packet count
                    with open(out_path, errors="replace") as f:
                        m = re.search(r"packets=(\d+)", f.read(4096))
                    seen = int(m.group(1)) if m else None
                    if seen != item["packets"]:
                        problems.append(f"{item['tool']} on {item['target']} read {seen} packets, "
                                        f"expected {item['packets']}")
                print(msg, flush=True)
                if rnd >= a.warmup:
                    r["round"] = rnd - a.warmup
                    item["runs"].append(r)
    finally:
        os.unlink(out_path)

    # per-round whole-file times (extrapolated for slices) for the paired ratios
    def full_time(item, r):
        return r["wall_s"] * npk / item["packets"] if item["sliced"] else r["wall_s"]

    by_tool = {it["tool"]: it for it in plan}
    rows = []
    for item in plan:
        row = {"tool": item["tool"], "file": path, "file_packets": npk,
               "measured_on": item["target"], "measured_packets": item["packets"],
               "extrapolated": item["sliced"], "argv": item["argv"],
               "version": tools[item["tool"]].get("version"),
               "failed": item["failed"], "runs": item["runs"]}
        runs = item["runs"]
        if runs and not item["failed"]:
            wall = statistics.median(r["wall_s"] for r in runs)
            pps = item["packets"] / wall
            row.update({
                "median_wall_s": wall,
                "wall_s_full_file": npk / pps,
                "packets_per_s": pps,
                "peak_rss_mib": statistics.median(r["maxrss_mib"] for r in runs),
                "peak_rss_mib_max": max(r["maxrss_mib"] for r in runs),
                "rss_floor_mib": max(r["rss_floor_mib"] for r in runs),
                "peak_rss_at_floor": statistics.median(r["maxrss_mib"] for r in runs)
                                     <= max(r["rss_floor_mib"] for r in runs) + FLOOR_SLACK_MIB,
                "anon_peak_mib": (statistics.median(r["anon_peak_mib"] for r in runs)
                                  if a.sample_interval > 0 else None),
                "group_anon_peak_mib": (statistics.median(r["group_anon_peak_mib"] for r in runs)
                                        if a.sample_interval > 0 else None),
                "cpu_s": statistics.median(r["cpu_s"] for r in runs),
                "cpu_s_full_file": statistics.median(r["cpu_s"] for r in runs) * npk / item["packets"],
            })
            for ref in ("tshark", "scapy", "tshark-http", "pcapsense"):
                ri = by_tool.get(ref)
                if not ri or ri["failed"] or not ri["runs"]:
                    continue
                refs = {r["round"]: full_time(ri, r) for r in ri["runs"]}
                ratios = [full_time(item, r) / refs[r["round"]] for r in runs if r["round"] in refs]
                if ratios:
                    row[f"x_{ref}"] = statistics.median(ratios)
                    row[f"x_{ref}_per_round"] = ratios
        rows.append(row)
    return info, rows


def print_table(rows, runs):
    hdr = (f"{'tool':13s} {'file':20s} {'packets':>9s} {'wall s':>8s} {'pkts/s':>10s} "
           f"{'peak MiB':>9s} {'anon MiB':>9s} {'all MiB':>8s} {'cpu s':>7s} {'x tshark':>8s} {'x scapy':>8s}")
    print(f"\n# median of {runs} paired rounds; {os.cpu_count()} CPUs; {platform.node()}; "
          f"kernel {os.uname().release}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        name = r["tool"] + ("*" if r["extrapolated"] else "")
        base = os.path.basename(r["file"])
        if r.get("failed") or "median_wall_s" not in r:
            print(f"{name:13s} {base:20s} {r['file_packets']:9d}  FAILED - see messages below")
            continue
        xt = f"{r['x_tshark']:8.2f}" if "x_tshark" in r else f"{'-':>8s}"
        xs = f"{r['x_scapy']:8.3f}" if "x_scapy" in r else f"{'-':>8s}"
        anon = f"{r['anon_peak_mib']:.1f}" if r.get("anon_peak_mib") is not None else "-"
        group = f"{r['group_anon_peak_mib']:.1f}" if r.get("group_anon_peak_mib") is not None else "-"
        print(f"{name:13s} {base:20s} {r['file_packets']:9d} {r['wall_s_full_file']:8.2f} "
              f"{r['packets_per_s']:10.0f} {fmt_peak(r):>9s} {anon:>9s} {group:>8s} "
              f"{r['cpu_s_full_file']:7.2f} {xt} {xs}")
    print("-" * len(hdr))
    extra = [r for r in rows if "x_tshark-http" in r or ("x_pcapsense" in r and r["tool"] != "pcapsense")]
    if any("x_tshark-http" in r for r in rows):
        print("against tshark-http (decrypting) and pcapsense (the same capture without keys), "
              "medians of the per-round ratios:")
        for r in extra:
            xh = f"{r['x_tshark-http']:.3f}" if "x_tshark-http" in r else "-"
            xp = f"{r['x_pcapsense']:.3f}" if "x_pcapsense" in r else "-"
            print(f"  {r['tool']:14s} {os.path.basename(r['file']):20s} x tshark-http {xh:>7s}  x pcapsense {xp:>7s}")
    print("wall s: median whole-process wall time; pkts/s = packets / wall. "
          "x tshark / x scapy: median over rounds of (tool wall / that tool's wall in the "
          "same round); < 1 = faster.")
    print("peak MiB: median ru_maxrss from wait4 (includes file-backed mapped pages; "
          "'<=N' = at the floor inherited from this runner, the tool's own peak is at most N). "
          "anon MiB: sampled peak RssAnon of the top process (heap only); all MiB: the same "
          "summed over all the tool's processes (pcapsense --jobs workers).")
    if any(r["extrapolated"] for r in rows):
        print("* measured on a slice of the first packets (see 'measured_on' in the JSON); "
              "pkts/s is the slice's; wall s, cpu s and x ratios are extrapolated to the "
              "whole file; peak and anon MiB are the slice's.")


def main():
    ap = argparse.ArgumentParser(
        description="paired benchmark: pcapsense vs tshark vs scapy (see module docstring)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", help=f"captures (default: {', '.join(DEFAULT_FILES)} in --dir)")
    ap.add_argument("--dir", default=DEFAULT_DIR, help="corpus directory for the default files")
    ap.add_argument("--runs", type=int, default=3, help="measured rounds per file (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="unrecorded rounds first (default 1)")
    ap.add_argument("--pcapsense-cmd", default=DEFAULT_PCAPSENSE,
                    help="pcapsense command template, {f} = capture (default: %(default)s)")
    ap.add_argument("--baseline-cmd", help="tool pcapsense-base: the same job from another build "
                    "(e.g. a checkout of the previous commit), {f} = the capture")
    ap.add_argument("--tools", help="comma list, run in this order each round (default: "
                    f"{','.join(DEFAULT_TOOLS)}; with --tls {','.join(TLS_TOOLS)})")
    ap.add_argument("--python", help="interpreter for the scapy/dpkt children")
    ap.add_argument("--all", action="store_true", help="run scapy on whole big files too")
    ap.add_argument("--scapy-max-packets", type=int, default=200_000)
    ap.add_argument("--slice-packets", type=int, default=100_000)
    ap.add_argument("--slice-dir", help="where slices go (default: next to the capture)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per run before kill")
    ap.add_argument("--sample-interval", type=float, default=0.02,
                    help="/proc sampling period for anon RSS, 0 = off")
    ap.add_argument("--json", help="write all results and raw runs to this file")
    ap.add_argument("--tls", action="store_true", help="the HTTPS benchmark: default files "
                    f"{', '.join(TLS_FILES)}, default tools {','.join(TLS_TOOLS)}")
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.worker:
        if len(a.files) != 1:
            sys.exit("--worker takes one capture")
        WORKERS[a.worker](a.files[0])
        return 0
    if a.runs < 1:
        sys.exit("run_bench: --runs must be >= 1")

    files = a.files or [os.path.join(a.dir, f) for f in (TLS_FILES if a.tls else DEFAULT_FILES)
                        if os.path.exists(os.path.join(a.dir, f))]
    missing_files = [f for f in files if not os.path.isfile(f)]
    files = [f for f in files if os.path.isfile(f)]
    for f in missing_files:
        print(f"run_bench: capture not found, skipped: {f}", file=sys.stderr)
    if not files:
        print(f"run_bench: no capture to benchmark. Make the corpus first:\n"
              f"    /work/shared/bench/make-corpus {a.dir}", file=sys.stderr)
        return 2

    if not a.tools:
        a.tools = ",".join(TLS_TOOLS if a.tls else DEFAULT_TOOLS)
    order, tools = discover(a)
    missing = {n: t["missing"] for n, t in tools.items() if "missing" in t}
    for n, why in missing.items():
        kind = "REQUIRED" if n in REQUIRED else "optional"
        print(f"run_bench: {kind} tool '{n}' missing, skipped: {why}", file=sys.stderr)
    if all("missing" in t for t in tools.values()):
        print("run_bench: no tool available to run", file=sys.stderr)
        return 2

    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"# run_bench {started:%Y-%m-%d %H:%M:%S} UTC; order per round: "
          f"{', '.join(n for n in order if 'missing' not in tools[n])}; "
          f"{a.warmup} warm-up + {a.runs} rounds; runner peak RSS (children's floor) {floor:.1f} MiB")
    for n in order:
        if "missing" not in tools[n]:
            print(f"#   {n:10s} {shlex.join(tools[n]['argv'])}   [{tools[n].get('version')}]")

    problems, infos, rows = [], [], []
    for path in files:
        info, frows = bench_file(os.path.abspath(path), a, order, tools, problems)
        infos.append(info)
        rows.extend(frows)

    print_table(rows, a.runs)
    if a.json:
        doc = {
            "started_utc": started.isoformat(timespec="seconds"),
            "machine": {"host": platform.node(), "cpus": os.cpu_count(),
                        "kernel": os.uname().release, "python": sys.version.split()[0]},
            "settings": {"runs": a.runs, "warmup": a.warmup, "order": order,
                         "pcapsense_cmd": a.pcapsense_cmd, "all": a.all,
                         "scapy_max_packets": a.scapy_max_packets,
                         "slice_packets": a.slice_packets,
                         "sample_interval_s": a.sample_interval},
            "tools": {n: ({"missing": t["missing"]} if "missing" in t else
                          {"argv": t["argv"], "version": t.get("version")})
                      for n, t in tools.items()},
            "files": infos,
            "results": rows,
            "problems": problems,
        }
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"\nresults written to {a.json}")

    rc = 0
    if problems:
        print("\nPROBLEMS:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        rc = 1
    req_missing = [n for n in missing if n in REQUIRED]
    if req_missing:
        print(f"\nrun_bench: required tool(s) missing, their rows are absent: "
              f"{', '.join(req_missing)}", file=sys.stderr)
        for n in req_missing:
            print(f"  - {n}: {missing[n]}", file=sys.stderr)
        rc = 2
    return rc


if __name__ == "__main__":
    sys.exit(main())
