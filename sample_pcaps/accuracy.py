#!/usr/bin/env python3
"""Accuracy of pcapsense on the labelled lab captures (sample_pcaps/captures/*.labels.json).

For every labelled connection: is the cause right, the closer, the close kind? Prints the
totals, the confusion table (label -> pcapsense) as Markdown, and every miss.

    python3 sample_pcaps/accuracy.py            # Markdown report on stdout
    python3 sample_pcaps/accuracy.py --json     # machine-readable
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import pcapsense  # noqa: E402
from pcapsense.classify.advice import CAUSES  # noqa: E402


def _split(ep: str) -> tuple[str, int]:
    host, _, port = ep.rpartition(":")
    return host.strip("[]"), int(port)


def evaluate(label_dir: pathlib.Path = HERE / "captures") -> dict:
    rows = []
    for lab in sorted(label_dir.glob("*.labels.json")):
        spec = json.loads(lab.read_text())
        cap = label_dir / spec["capture"]
        df = pcapsense.analyze(cap).connections
        for c in spec["connections"]:
            cip, cport = _split(c["client"])
            sip, sport = _split(c["server"])
            m = df[(df.client_ip == cip) & (df.client_port == cport) & (df.server_ip == sip) & (df.server_port == sport)]
            if "first_frame" in c and len(m) > 1:
                m = m[m.first_frame == c["first_frame"]]
            if not len(m):
                m = df[(df.client_ip == sip) & (df.client_port == sport) & (df.server_ip == cip) & (df.server_port == cport)]
            got = m.iloc[0] if len(m) else None
            rows.append({
                "capture": spec["capture"], "client": c["client"], "stream": None if got is None else int(got.stream),
                "label": c["cause"], "got": "missing" if got is None else str(got.cause),
                "closer": c["closer"], "got_closer": None if got is None else str(got.closer),
                "close_kind": c["close_kind"], "got_close_kind": None if got is None else str(got.close_kind),
                "detail": None if got is None else got.cause_detail,
            })
    n = len(rows)
    ok_cause = sum(r["label"] == r["got"] for r in rows)
    ok_closer = sum(r["closer"] == r["got_closer"] for r in rows)
    ok_kind = sum(r["close_kind"] == r["got_close_kind"] for r in rows)
    return {"connections": n, "cause_ok": ok_cause, "closer_ok": ok_closer, "close_kind_ok": ok_kind,
            "rows": rows}


def markdown(res: dict) -> str:
    n = res["connections"] or 1
    out = [f"{res['connections']} labelled connections: cause {res['cause_ok']}/{res['connections']} "
           f"({100 * res['cause_ok'] / n:.1f} %), closer {res['closer_ok']} ({100 * res['closer_ok'] / n:.1f} %), "
           f"close kind {res['close_kind_ok']} ({100 * res['close_kind_ok'] / n:.1f} %)", ""]
    conf = collections.Counter((r["label"], r["got"]) for r in res["rows"])
    labels = [c for c in CAUSES if any(r["label"] == c for r in res["rows"])]
    got = [c for c in CAUSES + ["missing"] if any(r["got"] == c for r in res["rows"])]
    out.append("| label \\ pcapsense | " + " | ".join(got) + " |")
    out.append("|---|" + "---:|" * len(got))
    for lab in labels:
        out.append(f"| {lab} | " + " | ".join(str(conf.get((lab, g), "")) for g in got) + " |")
    misses = [r for r in res["rows"] if r["label"] != r["got"] or r["closer"] != r["got_closer"]
              or r["close_kind"] != r["got_close_kind"]]
    if misses:
        out += ["", "Misses:", ""]
        for r in misses:
            out.append(f"- {r['capture']} stream {r['stream']} ({r['client']}): label {r['label']} "
                       f"{r['closer']}/{r['close_kind']}, got {r['got']} {r['got_closer']}/{r['got_close_kind']}: "
                       f"{r['detail']}")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = evaluate()
    print(json.dumps(res, indent=1) if args.json else markdown(res))


if __name__ == "__main__":
    main()
