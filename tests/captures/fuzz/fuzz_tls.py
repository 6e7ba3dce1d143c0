#!/usr/bin/env python3
"""Fuzz the engine's TLS record framer (pcapsense/capture/engine/tls_frame.c) and the
pcapng secrets-block walk, for an AddressSanitizer + UBSan build (see README.md here).

    LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \\
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \\
        python3 tests/captures/fuzz/fuzz_tls.py --iterations 2000 --out /tmp/tls-fuzz

Mutates the repo's captures recorded with their key logs (sample_pcaps/captures/lc-*),
at the level of what a framer sees: packets dropped, duplicated, swapped (holes,
retransmissions, reordering: the hold of segments ahead of a hole, its flush, the
resynchronisation), bytes of TCP payloads flipped (record headers that lie about their
type, version, length), captures cut short, and for pcapng the secrets block's lengths.
Each case is read by the engine with the key log's randoms set, records taken as
AppStage takes them and every stream handed over (the flush); then decrypted by the
Python sessions. Every input is written to --out before it is read: after a crash, the
last file there is the one (kept in this folder when minimised). Only the standard
library and pcapsense are imported.
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from pcapsense.app import keylog as keylog_mod  # noqa: E402
from pcapsense.app.stage import AppStage  # noqa: E402
from pcapsense.capture import reader  # noqa: E402

LAB = ROOT / "sample_pcaps" / "captures"


def classic(path: Path) -> bytes:
    """The capture as classic pcap bytes (pcapng converted by editcap; gz opened)."""
    import gzip
    import subprocess
    import tempfile
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if raw[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4"):
        return raw
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "in.pcapng", Path(d) / "out.pcap"
        src.write_bytes(raw)
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}     # (not editcap under ASan)
        subprocess.run(["editcap", "-F", "pcap", str(src), str(dst)], check=True, capture_output=True, env=env)
        return dst.read_bytes()


def records(raw: bytes) -> tuple[bytes, list[bytes]]:
    head, recs, pos = raw[:24], [], 24
    while pos + 16 <= len(raw):
        cap = struct.unpack_from("<I", raw, pos + 8)[0]
        recs.append(raw[pos:pos + 16 + cap])
        pos += 16 + cap
    return head, recs


def mutate(rng: random.Random, head: bytes, recs: list[bytes]) -> bytes:
    recs = list(recs)
    for _ in range(rng.randrange(1, 8)):
        op = rng.randrange(6)
        if not recs:
            break
        i = rng.randrange(len(recs))
        if op == 0:                                    # a hole
            del recs[i]
        elif op == 1:                                  # a retransmission
            recs.insert(rng.randrange(i, len(recs) + 1), recs[i])
        elif op == 2 and i + 1 < len(recs):            # reordered
            j = min(len(recs) - 1, i + rng.randrange(1, 6))
            recs[i], recs[j] = recs[j], recs[i]
        elif op == 3 and len(recs[i]) > 16 + 54:       # payload bytes: record headers that lie
            b = bytearray(recs[i])
            for _ in range(rng.randrange(1, 6)):
                b[rng.randrange(16 + 54, len(b))] = rng.getrandbits(8)
            recs[i] = bytes(b)
        elif op == 4:                                  # a packet cut by a snaplen
            b = bytearray(recs[i])
            cut = rng.randrange(16, len(b) + 1)
            struct.pack_into("<I", b, 8, cut - 16)
            recs[i] = bytes(b[:cut])
        else:                                          # the capture cut short
            del recs[rng.randrange(len(recs)):]
    out = head + b"".join(recs)
    if rng.random() < 0.1:
        out = out[:rng.randrange(24, len(out) + 1)]
    return out


def run_one(path: str, keys: keylog_mod.KeyLog) -> int:
    from pcapsense.app import tls_session
    eng = reader.new_engine(app=True)
    app = AppStage(eng, keys=keys)

    def broken(self, exc):        # (AppStage's guard would hide a Python bug: the fuzz reports it)
        raise exc
    tls_session.Session.broken = broken
    reader.run(path, eng, progress=lambda _pos: app.step(), on_secrets=app.add_secrets)
    app.finish()
    app.tables()
    return eng.counters()["tls_records"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="/tmp/tls-fuzz")
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="seconds one case may take: longer is a hang, reported with its file (exit 1)")
    a = ap.parse_args()
    import signal

    class Hang(Exception):
        pass

    def on_alarm(_sig, _frame):
        raise Hang()
    signal.signal(signal.SIGALRM, on_alarm)
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(a.seed)
    seeds = []
    for p in sorted(LAB.glob("lc-*")):
        k = LAB / (p.name.split(".")[0] + ".keys")
        if p.suffix in (".pcap", ".pcapng", ".gz") and k.exists():
            seeds.append((records(classic(p)), keylog_mod.load(str(k))))
    dsb = (LAB / "lc-tls-suites-dsb.pcapng").read_bytes()
    framed = 0
    for i in range(a.iterations):
        target = os.path.join(a.out, f"case-{i % 50}.pcap")
        if i % 10 == 9:                                # the pcapng secrets block's own fields
            b = bytearray(dsb)
            shb = struct.unpack_from("<I", b, 4)[0]
            for _ in range(rng.randrange(1, 4)):
                b[shb + rng.randrange(4, 16)] = rng.getrandbits(8)
            data, keys = bytes(b), None
            target = target[:-5] + ".pcapng"
        else:
            (head, recs), keys = rng.choice(seeds)
            data = mutate(rng, head, recs)
        with open(target, "wb") as fh:
            fh.write(data)
        signal.setitimer(signal.ITIMER_REAL, a.timeout)
        try:
            framed += run_one(target, keys)
        except reader.CaptureError:
            pass
        except Hang:
            keep = os.path.join(a.out, f"hang-{i}" + os.path.splitext(target)[1])
            os.replace(target, keep)
            print(f"HANG: case {i} took more than {a.timeout} s: {keep}")
            return 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    print(f"ok {a.iterations} cases, {framed} TLS records framed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
