#!/usr/bin/env python3
"""pcapsense against tshark on public test suites nobody on the project made (issue
"Readers"): tcpdump's, libpcap's, scapy's, dpkt's and suricata-verify's captures, many of
them deliberately malformed.

    bench/suites_check.py DIR [DIR ...] [--json out.json] [--jobs 2]

For every capture file under the directories: tshark's TCP streams (tests/captures/
tshark_truth.py: first frame, first FIN and first RST frame of each `tcp.stream`) and
pcapsense's (`pcapsense.analyze` in a child process, with a timeout: a crash or a hang is
counted, never fatal). A tshark stream agrees when pcapsense has the same stream number
with the same first frame, first FIN frame and first RST frame. Prints the agreement, the
files pcapsense refused (and whether tshark refused them too), crashes and hangs, and the
files with the most disagreements.

Get the suites with the tool library's `fetch` (github:the-tcpdump-group/tcpdump, ...) and
extract their `*.pcap*` files (`git --git-dir=... show HEAD:path`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "captures"))
from tshark_truth import run_tshark, streams_from_rows  # noqa: E402

CHILD = r"""
import json, sys
import pcapsense
from pcapsense.capture.reader import CaptureError
try:
    a = pcapsense.analyze(sys.argv[1], jobs=1, tables="connections")
except CaptureError as e:
    print(json.dumps({"refused": str(e)})); sys.exit(0)
import pandas as pd
c = a.connections
out = {}
for r in c[["stream", "first_frame", "first_fin_frame", "first_rst_frame"]].itertuples(index=False):
    out[int(r.stream)] = [None if pd.isna(x) else int(x) for x in (r.first_frame, r.first_fin_frame, r.first_rst_frame)]
print(json.dumps({"streams": out, "warnings": a.capture.warnings[:5]}))
"""


def one(path: str, timeout: float) -> dict:
    res = {"file": path}
    try:
        rows, rc, err = run_tshark(path)
        t = streams_from_rows(rows)
        res["tshark"] = {k: [v["first_frame"], v["first_fin_frame"], v["first_rst_frame"]] for k, v in t.items()}
        res["tshark_refused"] = rc != 0 and not rows
    except Exception as exc:  # noqa: BLE001 (tshark's own failure on a file)
        res["tshark"], res["tshark_refused"] = {}, True
        res["tshark_error"] = str(exc)[:200]
    try:
        p = subprocess.run([sys.executable, "-c", CHILD, path], capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            res["crash"] = (p.stderr.strip().splitlines() or ["?"])[-1][:300]
        else:
            out = json.loads(p.stdout)
            if "refused" in out:
                res["refused"] = out["refused"][:300]
            else:
                res["ours"] = {int(k): v for k, v in out["streams"].items()}
    except subprocess.TimeoutExpired:
        res["hang"] = True
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--json")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    files = sorted(os.path.join(d, f) for d in a.dirs for f in os.listdir(d)
                   if os.path.isfile(os.path.join(d, f)))
    results = []
    with concurrent.futures.ThreadPoolExecutor(a.jobs) as ex:
        for r in ex.map(lambda f: one(f, a.timeout), files):
            results.append(r)
    total = agree = 0
    worst = []
    for r in results:
        t, o = r.get("tshark", {}), r.get("ours", {})
        ok = sum(1 for k, v in t.items() if o.get(k) == v)
        total += len(t)
        agree += ok
        if len(t) != ok or (o and len(o) != len(t)):
            worst.append((len(t) - ok, len(o) - len(t), r["file"]))
    refused = [r for r in results if "refused" in r]
    refused_alone = [r for r in refused if not r.get("tshark_refused") and r.get("tshark")]
    crashes = [r for r in results if "crash" in r]
    hangs = [r for r in results if r.get("hang")]
    print(f"{len(files)} files; tshark streams {total}; pcapsense agrees on {agree} "
          f"({100 * agree / max(total, 1):.2f} %) (same number, first frame, first FIN and first RST frame)")
    print(f"refused by pcapsense: {len(refused)} ({len(refused_alone)} of them with TCP streams tshark reads); "
          f"crashes: {len(crashes)}; hangs: {len(hangs)}")
    for miss, extra, f in sorted(worst, reverse=True)[:25]:
        print(f"  {miss:4d} tshark streams not matched, {extra:+d} streams: {f}")
    for r in (crashes + hangs + refused_alone)[:20]:
        print("  !", r["file"], r.get("crash") or ("hang" if r.get("hang") else r.get("refused")))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"files": len(files), "tshark_streams": total, "agree": agree, "results": results}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
