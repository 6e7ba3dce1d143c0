#!/usr/bin/env python3
"""Write pcapsense's JSON report of every repo and public capture into a directory, to
compare two builds byte for byte (the "byte-identical JSON" check of a speed change):

    bench/json_snapshot.py /tmp/before            # with the old build installed
    bench/json_snapshot.py /tmp/after             # with the new one
    bench/json_snapshot.py --compare /tmp/before /tmp/after

The captures: every pcap/pcapng (compressed too) under sample_pcaps/ and tests/, and
../shared/corpus/public/pcaps/ when it exists. `--cmd` runs another build (a command
template with {f} for the capture, {o} for the output file).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import filecmp
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = ROOT.parent / "shared" / "corpus" / "public" / "pcaps"
SUFFIXES = (".pcap", ".pcapng", ".pcap.gz", ".pcapng.gz", ".cap", ".cap.gz")


def captures() -> list[Path]:
    found = []
    for base in (ROOT / "sample_pcaps", ROOT / "tests", PUBLIC):
        if base.exists():
            found += [p for p in base.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES)]
    return sorted(found)


def name_of(p: Path) -> str:
    try:
        rel = p.relative_to(ROOT)
    except ValueError:
        rel = Path("public") / p.relative_to(PUBLIC)
    return str(rel).replace("/", "__") + ".json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="+")
    ap.add_argument("--compare", action="store_true", help="compare two snapshot directories")
    ap.add_argument("--cmd", default=f"{sys.executable} -m pcapsense analyze {{f}} -f json -q -o {{o}}")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    if a.compare:
        old, new = map(Path, a.out)
        names = sorted({p.name for p in old.iterdir()} | {p.name for p in new.iterdir()})
        differ = [n for n in names if not ((old / n).exists() and (new / n).exists()
                                           and filecmp.cmp(old / n, new / n, shallow=False))]
        for n in differ:
            print("differs:", n)
        print(f"{len(names) - len(differ)} of {len(names)} reports identical")
        return 1 if differ else 0
    out = Path(a.out[0])
    out.mkdir(parents=True, exist_ok=True)
    caps = captures()

    def one(p: Path) -> str | None:
        o = out / name_of(p)
        cmd = a.cmd.format(f=str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p), o=str(o))
        r = subprocess.run(cmd, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=600)
        if not o.exists():
            o.write_text(f"no report: exit {r.returncode}\n{r.stderr[-2000:]}")
        return None

    with concurrent.futures.ThreadPoolExecutor(a.jobs) as ex:
        list(ex.map(one, caps))
    print(f"{len(caps)} reports in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
