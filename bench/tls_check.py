#!/usr/bin/env python3
"""tls_check.py - the HTTPS benchmark's decrypted HTTP, pcapsense against tshark.

    bench/tls_check.py                                    # /tmp/pcapsense-bench/bench-tls.pcap + .keys
    bench/tls_check.py CAPTURE KEYLOG
    bench/tls_check.py /tmp/pcapsense-bench/bench-tls.pcapng -    # keys embedded (DSB)

Runs tshark with the key log (`-o tls.keylog_file:K -o http.desegment_body:FALSE`: a
response counts from its head, as pcapsense counts it; `-` for a pcapng that carries its
keys) and `pcapsense.analyze(CAPTURE, keylog=K)`, and compares per TCP stream the
requests (method, target) and the final statuses, HTTP/1 and HTTP/2. Prints the totals
and the first differences; exit 1 if any. A connection where pcapsense reads every
response tshark reads and more is counted apart: tshark's TCP reassembly gives up on
segments the capture reordered (its HTTP dissector then reads body bytes as headers),
where pcapsense's framer holds them; the records pcapsense reads there verified. tests/test_tls.py does the same on every
capture of the repo recorded with its key log; this is the check on the 1M-packet
benchmark of bench/README.md section 10.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

import pcapsense  # noqa: E402


def tshark_http(cap: str, keys: str | None) -> dict:
    cmd = ["tshark", "-n", "-r", cap, "-o", "http.desegment_body:FALSE", "-Y", "http or http2", "-T", "fields",
           "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,", "-e", "tcp.stream",
           "-e", "http.request.method", "-e", "http.request.uri", "-e", "http.response.code",
           "-e", "http2.headers.method", "-e", "http2.headers.path", "-e", "http2.headers.status"]
    if keys:
        cmd[4:4] = ["-o", f"tls.keylog_file:{keys}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    got = collections.defaultdict(lambda: {"req": [], "st": []})
    for line in out.splitlines():
        st, m, u, code, m2, p2, s2 = line.split("|")
        g = got[int(st)]
        g["req"] += list(zip(m.split(",") if m else [], u.split(",") if u else []))
        g["req"] += list(zip(m2.split(",") if m2 else [], p2.split(",") if p2 else []))
        g["st"] += [int(x) for x in code.split(",") if x] + [int(x) for x in s2.split(",") if x and int(x) >= 200]
    return got


def main() -> int:
    cap = sys.argv[1] if len(sys.argv) > 1 else "/tmp/pcapsense-bench/bench-tls.pcap"
    keys = sys.argv[2] if len(sys.argv) > 2 else str(Path(cap).with_suffix(".keys"))
    keys = None if keys == "-" else keys
    t = time.monotonic()
    theirs = tshark_http(cap, keys)
    t_tshark = time.monotonic() - t
    t = time.monotonic()
    a = pcapsense.analyze(cap, keylog=keys)
    t_ours = time.monotonic() - t
    ours = collections.defaultdict(lambda: {"req": [], "st": []})
    for r in a.http.itertuples():
        ours[r.stream]["req"].append((r.method, r.target))
        if not pd.isna(r.status):
            ours[r.stream]["st"].append(int(r.status))
    rejected = set(a.connections.loc[a.connections["tls_early_data"] == "rejected", "stream"])
    diff, more = [], []
    for st in sorted(set(theirs) | set(ours)):
        t_, o = theirs[st], ours[st]
        same_req = o["req"] == t_["req"] or (st in rejected and set(o["req"]) <= set(t_["req"]))
        if same_req and sorted(o["st"]) != sorted(t_["st"]) and not (collections.Counter(t_["st"])
                                                                   - collections.Counter(o["st"])):
            # every status tshark shows and more: tshark lost the rest (its reassembly gives
            # up on reordered segments; pcapsense's records there verified by their tags)
            more.append((st, t_, o))
        elif not same_req or sorted(o["st"]) != sorted(t_["st"]):
            diff.append((st, t_, o))
    n_t = sum(len(v["req"]) for v in theirs.values())
    n_o = sum(len(v["req"]) for v in ours.values())
    s_t = sum(len(v["st"]) for v in theirs.values())
    s_o = sum(len(v["st"]) for v in ours.values())
    dec = a.connections["tls_decrypted"].value_counts().to_dict()
    print(f"{cap}: tshark {n_t} requests, {s_t} responses ({t_tshark:.1f} s with its fields); "
          f"pcapsense {n_o} requests, {s_o} responses ({t_ours:.1f} s); {len(theirs)} streams with HTTP; "
          f"{len(diff)} differ; {len(more)} where pcapsense reads every response tshark reads and "
          f"{sum(len(o['st']) - len(t_['st']) for _, t_, o in more)} more; tls_decrypted {dec}; {a.capture.tls_keys}")
    for st, t_, o in diff[:10]:
        print(f"  stream {st}: tshark {t_} pcapsense {o}")
    for st, t_, o in more[:3]:
        print(f"  (more) stream {st}: tshark {len(t_['st'])} responses, pcapsense {len(o['st'])}")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
