"""Bounded, deterministic fuzz tests for the compiled engine (pcapsense/capture/engine/).

Input is hostile, so malformed captures may only ever end in `pcapsense.CaptureError`
(or a clean analysis): never a segfault, a hang, or another exception.

(a) test_fuzz_regressions: every file in tests/captures/fuzz/ (minimised inputs that once
    crashed the engine; see tests/captures/fuzz/README.md) is analysed in a child process,
    so a segfault fails the test instead of killing pytest.
(b) test_random_mutations: ~300 seeded random mutations (bit flips, byte overwrites,
    truncations, duplicated/removed chunks, hostile pcap/pcapng header fields) of a few
    crafted captures, all in ONE child process that must exit 0 and print "ok N". Every
    sixth case goes through pcapsense.analyze() (+ packets()); the others drive the
    engine directly through capture.reader, which is ~20x faster.

The children import the pcapsense of this checkout (the normal build, no sanitizers).
To hunt for new bugs, run the same kind of mutations against an AddressSanitizer build
(see tests/captures/fuzz/README.md).
"""

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import CAPTURES, ROOT, crafted

FUZZ_DIR = CAPTURES / "fuzz"
FUZZ_FILES = sorted(p for p in FUZZ_DIR.iterdir() if p.is_file() and p.name != "README.md") \
    if FUZZ_DIR.exists() else []

MUTATION_SEED = 20240611
MUTATION_CASES = 300
MUTATION_SEEDS = ["gre.pcap", "vxlan.pcap", "mpls.pcap", "pppoe.pcap", "ipv6.pcap", "sll2.pcap",
                  "null_loopback.pcap", "vlan_qinq.pcap", "pcapng_two_interfaces.pcapng",
                  "big_endian.pcap", "nanosecond.pcap"]

# Runs in the child: analyse each file named on the command line, announcing it first so
# the parent knows which one killed the process.
REGRESSION_CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    import pcapsense
    for path in sys.argv[2:]:
        print("BEGIN", path, flush=True)
        for kw in ({}, {"split": "zeek", "verify_checksums": True}):
            try:
                a = pcapsense.analyze(path, **kw)
                repr(a)
                if len(a.connections):
                    a.packets(0)
            except pcapsense.CaptureError:
                pass
        print("DONE", path, flush=True)
""")

MUTATION_CHILD = textwrap.dedent("""
    import os, random, struct, sys
    sys.path.insert(0, sys.argv[1])
    import pcapsense
    from pcapsense.capture import reader
    seed, cases, work = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    seeds = [open(p, "rb").read() for p in sys.argv[5:]]
    r = random.Random(seed)
    I32 = [0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x10000, 0x40001, 0x7fffffff, 0x80000000,
           0xfffffffe, 0xffffffff, 0x1000000, 0x1000001]

    def records(d):
        # (endianness, [(header offset, data offset, caplen, block type)]) of a pcap/pcapng
        out = []
        if d[:4] in (b"\\xd4\\xc3\\xb2\\xa1", b"\\x4d\\x3c\\xb2\\xa1", b"\\xa1\\xb2\\xc3\\xd4", b"\\xa1\\xb2\\x3c\\x4d"):
            e = "<" if d[0] in (0xd4, 0x4d) else ">"
            pos = 24
            while pos + 16 <= len(d):
                cl = struct.unpack_from(e + "I", d, pos + 8)[0]
                if pos + 16 + cl > len(d):
                    break
                out.append((pos, pos + 16, cl, None))
                pos += 16 + cl
            return e, out
        e = "<" if d[8:12] == b"\\x4d\\x3c\\x2b\\x1a" else ">"
        pos = 0
        while pos + 12 <= len(d):
            bt, bl = struct.unpack_from(e + "II", d, pos)
            if bl < 12 or pos + bl > len(d):
                break
            out.append((pos, pos + 28 if bt == 6 else pos + 8, max(0, bl - 32), bt))
            pos += bl
        return e, out

    def mutate(d):
        d = bytearray(d)
        for _ in range(r.choice([1, 1, 2, 3])):
            c = r.random()
            e, recs = records(bytes(d))
            if c < 0.35 and recs:
                # inside a packet, biased to its headers
                off, data, cl, bt = r.choice(recs)
                hi = min(len(d), data + max(1, min(cl, 96)))
                for _ in range(r.randint(1, 4)):
                    if data < hi:
                        i = r.randrange(data, hi)
                        d[i] = r.choice([0, 0xff, r.randrange(256), d[i] ^ (1 << r.randrange(8))])
            elif c < 0.55 and recs:
                # hostile length / interface / timestamp fields
                off, data, cl, bt = r.choice(recs)
                if bt is None:
                    field = off + r.choice([8, 12])
                elif bt == 6:
                    field = off + r.choice([4, 8, 12, 16, 20])
                elif bt == 1 and off + 20 <= len(d):
                    # if_tsresol / if_tsoffset option in place of the first option
                    opt = r.choice([struct.pack(e + "HHBxxx", 9, 1, r.choice([0, 0x3f, 0x7f, 0xff, 0x80 | 63])),
                                    struct.pack(e + "HHq", 14, 8, r.choice([-2**63, 2**63 - 1, 12345678901234567]))])
                    d[off + 16:off + 16] = opt
                    blen = struct.unpack_from(e + "I", d, off + 4)[0] + len(opt)
                    struct.pack_into(e + "I", d, off + 4, blen)
                    struct.pack_into(e + "I", d, off + blen - 4, blen)
                    continue
                else:
                    field = off + 4
                if field + 4 <= len(d):
                    struct.pack_into(e + "I", d, field, r.choice(I32))
            elif c < 0.65 and len(d) > 24:
                struct.pack_into(r.choice("<>") + "I", d, r.choice([16, 20]), r.choice(I32))
            elif c < 0.75 and d:
                for _ in range(r.randint(1, 8)):
                    i = r.randrange(len(d))
                    d[i] ^= 1 << r.randrange(8)
            elif c < 0.83 and len(d) > 1:
                del d[r.randrange(len(d)):]
            elif c < 0.92 and d:
                i = r.randrange(len(d)); n = r.randint(1, 256)
                j = r.randrange(len(d) + 1)
                d[j:j] = d[i:i + n]
            elif len(d) > 1:
                i = r.randrange(len(d)); n = r.randint(1, 256)
                del d[i:i + n]
        return bytes(d)

    path = os.path.join(work, "case.bin")
    for i in range(cases):
        data = mutate(r.choice(seeds))
        print("case", i, flush=True)
        with open(path, "wb") as f:
            f.write(data)
        try:
            if i % 6 == 0:
                # the whole pipeline (slow: DataFrames, app parsers, classification)
                kw = r.choice([{}, {"split": "zeek"}, {"verify_checksums": True}])
                a = pcapsense.analyze(path, **kw)
                if len(a.connections):
                    a.packets(len(a.connections) - 1)
            else:
                # the compiled engine alone, as analyze() and packets() drive it; small
                # chunks split records across feed() calls
                eng = reader.new_engine(verify_checksums=r.random() < 0.3, emit_packets=r.random() < 0.5,
                                        zeek_split=r.random() < 0.3, app=r.random() < 0.7)
                reader.run(path, eng, on_rows=lambda rows: None,
                           chunk_bytes=r.choice([64, 333, 4096, 1 << 20]))
                eng.counters(); eng.streams(); eng.take_transitions(); eng.take_app()
                n = eng.counters()["streams"]
                eng.app_tails_for(struct.pack(f"<{n}q", *range(n)))
        except pcapsense.CaptureError:
            pass
        except Exception as exc:
            print(f"case {i}: {type(exc).__name__}: {exc}", flush=True)
            raise
    print("ok", cases, flush=True)
""")


def _run(args, timeout):
    return subprocess.run([sys.executable, "-c", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=str(ROOT))


@pytest.mark.skipif(not FUZZ_FILES, reason="no files in tests/captures/fuzz")
def test_fuzz_regressions():
    """Each regression file ends cleanly (analysis or CaptureError). A child that dies is
    restarted after the file that killed it, so one run names every failing file."""
    todo = [str(p) for p in FUZZ_FILES]
    failures = []
    while todo:
        try:
            proc = _run([REGRESSION_CHILD, str(ROOT), *todo], timeout=120)
            out, rc, err = proc.stdout, proc.returncode, proc.stderr
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            rc, err = "timeout (hang)", ""
        begun = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("BEGIN ")]
        done = {line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("DONE ")}
        if rc == 0 and len(done) == len(todo):
            break
        culprit = begun[-1] if begun and begun[-1] not in done else None
        if culprit is None:             # died before the first file: nothing to attribute
            failures.append(f"child failed before any file (rc={rc}): {err[-2000:]}")
            break
        failures.append(f"{os.path.basename(culprit)}: rc={rc} {err.strip().splitlines()[-1:] if err else ''}")
        todo = todo[todo.index(culprit) + 1:]
    assert not failures, "malformed captures crashed the analyzer:\n  " + "\n  ".join(failures)


def test_random_mutations(tmp_path):
    seeds = [crafted(n) for n in MUTATION_SEEDS if os.path.exists(crafted(n))]
    assert seeds
    try:
        proc = _run([MUTATION_CHILD, str(ROOT), str(MUTATION_SEED), str(MUTATION_CASES), str(tmp_path), *seeds],
                    timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"mutation run hung; the last input is {tmp_path / 'case.bin'}")
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines and lines[-1] == f"ok {MUTATION_CASES}", (
        f"mutation run failed (rc={proc.returncode}); the failing input is {tmp_path / 'case.bin'}\n"
        f"stdout tail: {lines[-3:]}\nstderr tail: {proc.stderr[-3000:]}")
