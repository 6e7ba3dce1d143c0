"""The compiled accumulator (pcapsense/app/_segments.c) against its Python reference
(segments.Accumulator): the same pieces, field for field, for every connection of every
repo capture, and for rows shuffled, duplicated and overlapping on purpose."""

import random

import numpy as np
import pytest

import pcapsense
from conftest import repo_captures
from pcapsense.app import segments, stage
from pcapsense.capture import layout

_segments = pytest.importorskip("pcapsense.app._segments")
COMPILED = segments.accumulator


def as_tuples(pieces: dict) -> dict:
    return {k: [(p.offset, p.data, p.length, p.frame, p.ts_ns, p.tail) for p in v] for k, v in pieces.items()}


class Both:
    """Both accumulators fed the same rows; every answer compared."""

    def __init__(self):
        self.c, self.py, self.takes = COMPILED(), segments.Accumulator(), 0
        assert type(self.c).__module__ == "pcapsense.app._segments"

    def add(self, rows, data):
        self.c.add(rows, data)
        self.py.add(rows, data)

    def streams(self):
        s = self.c.streams()
        assert s == self.py.streams()
        return s

    def take(self, ids, base):
        got, want = self.c.take(ids, base), self.py.take(ids, base)
        assert as_tuples(got) == as_tuples(want)
        assert all(type(p) is segments.Piece and type(p.tail) is bool for v in got.values() for p in v)
        self.takes += len(got)
        return got


def test_every_connection_of_the_repo_captures(monkeypatch):
    made = []

    def both():
        made.append(Both())
        return made[-1]
    monkeypatch.setattr(stage.app_segments, "accumulator", both)
    for path in repo_captures():
        pcapsense.analyze(str(path), jobs=1)
    assert sum(b.takes for b in made) > 300


def _row(stream, dirn, seq, data_off, cap, length, frame, tail=0):
    r = np.zeros(1, dtype=layout.APP_DTYPE)
    r["stream"], r["dir"], r["seq"], r["off"], r["cap"], r["len"] = stream, dirn, seq, data_off, cap, length
    r["frame"], r["ts"], r["tail"] = frame, frame * 1000, tail
    return r


def test_shuffled_overlapping_rows():
    """Retransmissions with other boundaries, a tail copy over the last segment, rows
    before the base (a SYN-less start) and across the 2^32 wrap, late rows of a taken
    stream: both keep the first copy the same way."""
    rng = random.Random(3)
    for trial in range(300):
        data = bytes(rng.randrange(256) for _ in range(4000))
        rows, base = [], np.zeros((6, 2), dtype=np.int64)
        for st in range(6):
            for d in (0, 1):
                b = rng.choice([0, 1000, 2**32 - 300, rng.randrange(2**32)])
                base[st, d] = b
                for _ in range(rng.randint(0, 12)):
                    off = rng.randint(-20, 600)
                    cap = rng.randint(0, 200)
                    at = rng.randrange(0, len(data) - cap)
                    rows.append(_row(st, d, (b + off) % 2**32, at, cap, cap + rng.choice([0, 0, 50]),
                                     rng.randint(1, 40), tail=int(rng.random() < 0.2)))
        rng.shuffle(rows)
        c, py = COMPILED(), segments.Accumulator()
        half = len(rows) // 2
        for chunk in (rows[:half], rows[half:]):
            raw = np.concatenate(chunk).tobytes() if chunk else b""
            c.add(raw, data)
            py.add(raw, data)
            assert c.streams() == py.streams()
        ids = sorted(rng.sample(range(6), 3))
        b = np.ascontiguousarray(base[ids])
        assert as_tuples(c.take(ids, b)) == as_tuples(py.take(ids, b))
        late = np.concatenate(rows[:5]).tobytes() if rows else b""
        c.add(late, data)
        py.add(late, data)
        assert c.streams() == py.streams()
        rest = sorted(set(range(6)) - set(ids))
        b = np.ascontiguousarray(base[rest])
        assert as_tuples(c.take(rest, b)) == as_tuples(py.take(rest, b))
        assert c.streams() == py.streams() == set()


def test_bad_rows_are_refused_not_read():
    acc = COMPILED()
    with pytest.raises(ValueError):
        acc.add(b"\0" * (layout.APP_DTYPE.itemsize - 1), b"")
    with pytest.raises(ValueError):
        acc.add(_row(0, 0, 0, 10, 100, 100, 1).tobytes(), b"short")
    with pytest.raises(ValueError):
        acc.take([0], np.zeros(1, dtype=np.int64))
