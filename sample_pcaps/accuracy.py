#!/usr/bin/env python3
"""Accuracy of pcapsense on the labelled lab captures (sample_pcaps/captures/*.labels.json).

For every labelled connection: is the cause right, the closer, the close kind? Prints the
totals; the false-alarm rate (normal connections, labelled graceful / idle-close /
incomplete, given an abnormal cause), the missed failures (abnormal connections given a
normal cause) and the macro recall over causes, for every capture and for the haystacks
(`lh-*`: mixed traffic of many clients around a few failures) alone; how well the
confidence is calibrated (per confidence band, how often the cause was right); the
confusion table (label -> pcapsense) as Markdown, and every miss.

A capture recorded with its TLS key log beside it (NAME.keys) is measured twice: with the
key log (decrypted; `mode` "keys") and without it (`mode` "no keys": what pcapsense says
of the same traffic when nobody saved the keys). The haystack and per-scenario figures
are those without keys; the HTTPS lab (`lc-*`) and the haystacks with their keys get
rows of their own.

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


def keylog_of(cap: pathlib.Path) -> pathlib.Path | None:
    """NAME.keys beside NAME.pcap[ng][.gz], or None."""
    name = cap.name
    for suffix in (".gz", ".pcapng", ".pcap"):
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    k = cap.with_name(name + ".keys")
    return k if k.exists() else None


def evaluate(label_dir: pathlib.Path = HERE / "captures") -> dict:
    rows = []
    for lab in sorted(label_dir.glob("*.labels.json")):
        spec = json.loads(lab.read_text())
        cap = label_dir / spec["capture"]
        keys = keylog_of(cap)
        for mode, keylog in ((("no keys", None), ("keys", keys)) if keys else (("-", None),)):
            rows += _rows(spec, pcapsense.analyze(cap, keylog=keylog).connections, mode)
    return summary(rows)


def _rows(spec: dict, df, mode: str) -> list[dict]:
    rows = []
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
            "confidence": None if got is None else float(got.confidence),
            "inferred": None if got is None else bool(got.get("inferred", False)),
            "mode": mode, "decrypted": None if got is None else got.get("tls_decrypted"),
        })
    return rows


def summary(rows: list[dict]) -> dict:
    """The figures of evaluate() from its rows."""
    plain = [r for r in rows if r["mode"] != "keys"]
    keyed = [r for r in rows if r["mode"] != "no keys"]
    n = len(plain)
    rows_all = rows
    rows = plain
    ok_cause = sum(r["label"] == r["got"] for r in rows)
    ok_closer = sum(r["closer"] == r["got_closer"] for r in rows)
    ok_kind = sum(r["close_kind"] == r["got_close_kind"] for r in rows)
    return {"connections": n, "cause_ok": ok_cause, "closer_ok": ok_closer, "close_kind_ok": ok_kind,
            "overall": rates(rows), "haystacks": rates([r for r in rows if is_haystack(r["capture"])]),
            "scenarios": rates([r for r in rows if not is_haystack(r["capture"]) and not is_https_lab(r["capture"])]),
            "https_lab_keys": rates([r for r in keyed if is_https_lab(r["capture"])]),
            "https_lab_no_keys": rates([r for r in plain if is_https_lab(r["capture"])]),
            "haystacks_keys": rates([r for r in keyed if is_haystack(r["capture"])]),
            "calibration": calibration(rows), "by_cause": by_cause(rows),
            "by_cause_haystacks": by_cause([r for r in rows if is_haystack(r["capture"])]),
            "by_cause_keys": by_cause(keyed), "rows": rows_all}


NORMAL = ("graceful", "idle-close", "incomplete")


def is_haystack(capture: str) -> bool:
    return capture.startswith("lh-")


def is_https_lab(capture: str) -> bool:
    """The HTTPS scenarios recorded with their key logs (sample_pcaps/lab/lc-*)."""
    return capture.startswith("lc-")


def rates(rows: list[dict]) -> dict:
    """Right cause, false alarms, missed failures and macro recall over `rows`."""
    normal = [r for r in rows if r["label"] in NORMAL]
    failures = [r for r in rows if r["label"] not in NORMAL]
    false_alarms = [r for r in normal if r["got"] not in NORMAL]
    missed = [r for r in failures if r["got"] in NORMAL or r["got"] == "missing"]
    per_cause = collections.defaultdict(lambda: [0, 0])
    for r in rows:
        per_cause[r["label"]][0] += r["label"] == r["got"]
        per_cause[r["label"]][1] += 1
    recall = {c: ok / n for c, (ok, n) in per_cause.items()}
    return {"connections": len(rows), "cause_ok": sum(r["label"] == r["got"] for r in rows),
            "normal": len(normal), "false_alarms": len(false_alarms), "failures": len(failures),
            "failures_right": sum(r["label"] == r["got"] for r in failures), "missed": len(missed),
            "macro_recall": sum(recall.values()) / len(recall) if recall else None, "recall": recall}


BANDS = ((0.0, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.01))


def calibration(rows: list[dict]) -> list[dict]:
    """Per confidence band of the abnormal verdicts: how many, how many right, and how
    many of them were inferences."""
    out = []
    for lo, hi in BANDS:
        band = [r for r in rows if r["got"] not in NORMAL and r["confidence"] is not None
                and lo <= r["confidence"] < hi]
        out.append({"band": f"{lo:.1f}-{min(hi, 1.0):.1f}", "verdicts": len(band),
                    "right": sum(r["label"] == r["got"] for r in band),
                    "inferred": sum(bool(r["inferred"]) for r in band)})
    return out


def wilson_low(right: int, n: int, z: float = 1.96) -> float:
    """The lower end of the 95 % Wilson interval of right/n: what a confidence can claim
    from n verdicts."""
    if not n:
        return 0.0
    p = right / n
    d = 1 + z * z / n
    return (p + z * z / (2 * n) - z * ((p * (1 - p) + z * z / (4 * n)) / n) ** 0.5) / d


def by_cause(rows: list[dict]) -> list[dict]:
    """Per abnormal cause pcapsense gave: verdicts, right, the confidences it gave, and
    the precision's lower bound (a calibrated confidence should not be far above it)."""
    out = []
    for cause in sorted({r["got"] for r in rows if r["got"] not in NORMAL and r["got"] != "missing"}):
        v = [r for r in rows if r["got"] == cause]
        right = sum(r["label"] == cause for r in v)
        conf = sorted({round(r["confidence"], 2) for r in v if r["confidence"] is not None})
        out.append({"cause": cause, "verdicts": len(v), "right": right, "confidences": conf,
                    "precision_low": round(wilson_low(right, len(v)), 2)})
    return out


def _pct(a: int, b: int) -> str:
    return f"{100 * a / b:.1f} %" if b else "-"


def rates_table(res: dict) -> list[str]:
    out = ["| captures | connections | right cause | false alarms (of normal) | failures right | missed failures "
           "| macro recall |", "|---|--:|--:|--:|--:|--:|--:|"]
    for name, key in (("all, without keys", "overall"), ("haystacks (lh-*), without keys", "haystacks"),
                      ("haystacks, lh-tls with its key log", "haystacks_keys"),
                      ("per-scenario (la-*, lb-*)", "scenarios"), ("HTTPS lab (lc-*) with keys", "https_lab_keys"),
                      ("HTTPS lab (lc-*) without keys", "https_lab_no_keys")):
        r = res[key]
        if not r["connections"]:
            continue
        mr = "-" if r["macro_recall"] is None else f"{100 * r['macro_recall']:.1f} %"
        out.append(f"| {name} | {r['connections']} | {r['cause_ok']} ({_pct(r['cause_ok'], r['connections'])}) "
                   f"| {r['false_alarms']} of {r['normal']} ({_pct(r['false_alarms'], r['normal'])}) "
                   f"| {r['failures_right']} of {r['failures']} ({_pct(r['failures_right'], r['failures'])}) "
                   f"| {r['missed']} | {mr} |")
    out += ["", "| confidence | abnormal verdicts | right | of them inferred |", "|---|--:|--:|--:|"]
    for b in res["calibration"]:
        if b["verdicts"]:
            out.append(f"| {b['band']} | {b['verdicts']} | {b['right']} ({_pct(b['right'], b['verdicts'])}) "
                       f"| {b['inferred']} |")
    out += ["", "| cause given (all captures) | verdicts | right | confidence given | precision, 95 % lower bound |",
            "|---|--:|--:|---|--:|"]
    for c in res["by_cause"]:
        out.append(f"| {c['cause']} | {c['verdicts']} | {c['right']} | "
                   f"{', '.join(f'{x:.2f}' for x in c['confidences'])} | {c['precision_low']:.2f} |")
    return out


def markdown(res: dict) -> str:
    n = res["connections"] or 1
    out = [f"{res['connections']} labelled connections: cause {res['cause_ok']}/{res['connections']} "
           f"({100 * res['cause_ok'] / n:.1f} %), closer {res['closer_ok']} ({100 * res['closer_ok'] / n:.1f} %), "
           f"close kind {res['close_kind_ok']} ({100 * res['close_kind_ok'] / n:.1f} %)", ""]
    out += rates_table(res) + [""]
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
            out.append(f"- {r['capture']}{' (' + r['mode'] + ')' if r['mode'] != '-' else ''} "
                       f"stream {r['stream']} ({r['client']}): label {r['label']} "
                       f"{r['closer']}/{r['close_kind']}, got {r['got']} {r['got_closer']}/{r['got_close_kind']}: "
                       f"{r['detail']}")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--dir", type=pathlib.Path, default=HERE / "captures",
                    help="folder of captures and their .labels.json (default: the lab's); e.g. a second "
                         "recording of the haystacks made with the same scripts in a copy of the repo")
    args = ap.parse_args()
    res = evaluate(args.dir)
    print(json.dumps(res, indent=1) if args.json else markdown(res))


if __name__ == "__main__":
    main()
