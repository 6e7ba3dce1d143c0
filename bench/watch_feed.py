#!/usr/bin/env python3
"""Feed a capture as a live pcap stream, at a fixed packet rate, for a bounded time, and
measure `pcapsense watch` on it (its memory over time: bounded however long it runs?).

    bench/watch_feed.py /tmp/pcapsense-bench/bench-short.pcap --rate 20000 --seconds 300

writes the capture's records to `pcapsense watch - --every 5s --quiet-windows` (looping
over the capture, each loop's timestamps shifted after the previous one's, so time goes
on and the 4-tuples come back as new connections, as port reuse does), samples the
watcher's RSS (VmRSS of /proc/PID/status) every second, and prints the samples' summary
and the watcher's last lines. `--json F` keeps the samples.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pcapsense.live.watch import StreamSplitter  # noqa: E402


def rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture")
    ap.add_argument("--rate", type=int, default=20000, help="packets per second")
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--every", default="5s")
    ap.add_argument("--json")
    a = ap.parse_args()
    sp = StreamSplitter()
    with open(a.capture, "rb") as fh:
        recs = sp.feed(fh.read())
    if sp.kind != "pcap":
        print("watch_feed: a pcap capture please", file=sys.stderr)
        return 2
    end = "<" if sp.header[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = sp.header[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    unit = 1_000_000_000 if nano else 1_000_000
    first = struct.unpack_from(end + "II", recs[0])
    last = struct.unpack_from(end + "II", recs[-1])
    span = (last[0] * unit + last[1]) - (first[0] * unit + first[1]) + unit
    watcher = subprocess.Popen([sys.executable, "-m", "pcapsense", "watch", "-", "--every", a.every,
                                "--quiet-windows"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=False)
    lines: list[str] = []
    threading.Thread(target=lambda: [lines.append(x.decode("utf-8", "replace").rstrip())
                                     for x in watcher.stdout], daemon=True).start()
    samples = []
    stop = threading.Event()

    def sample():
        t0 = time.monotonic()
        while not stop.is_set():
            r = rss_mib(watcher.pid)
            if r is not None:
                samples.append((round(time.monotonic() - t0, 1), round(r, 1)))
            time.sleep(1.0)
    threading.Thread(target=sample, daemon=True).start()
    out = watcher.stdin
    out.write(sp.header)
    t0 = time.monotonic()
    sent, loop = 0, 0
    batch = max(1, a.rate // 50)
    try:
        while time.monotonic() - t0 < a.seconds:
            shift = loop * span
            for i in range(0, len(recs), batch):
                chunk = []
                for r in recs[i:i + batch]:
                    sec, frac = struct.unpack_from(end + "II", r)
                    ts = sec * unit + frac + shift
                    chunk.append(struct.pack(end + "II", ts // unit, ts % unit) + r[8:])
                out.write(b"".join(chunk))
                sent += len(chunk)
                ahead = sent / a.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
                if time.monotonic() - t0 >= a.seconds:
                    break
            loop += 1
        out.close()
    except BrokenPipeError:
        pass
    watcher.wait(600)
    stop.set()
    rss = [s[1] for s in samples]
    q = len(rss) // 4
    res = {"capture": a.capture, "rate": a.rate, "seconds": a.seconds, "packets": sent, "loops": loop,
           "rss_mib_first_quarter_max": max(rss[:q] or rss or [0]), "rss_mib_last_quarter_max": max(rss[-q:] or rss or [0]),
           "rss_mib_max": max(rss or [0]), "exit": watcher.returncode, "samples": samples}
    print(json.dumps({k: v for k, v in res.items() if k != "samples"}))
    print("\n".join(lines[-6:]))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
