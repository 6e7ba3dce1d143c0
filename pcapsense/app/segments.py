"""Stage 4a: the engine's application segments -> per-direction sparse byte streams.

The engine hands over only the segments parsing needs (see `app_t` in capture/engine/engine.h): the
first bytes of each direction, every segment that starts an HTTP/1 message, the rest of
an open HTTP head, and the last bytes of each direction. Here they are put in sequence
order per (stream, direction), retransmissions and overlaps resolved (first copy wins,
as a receiver keeps it), and given offsets relative to the direction's first byte.
Streaming: `Accumulator` keeps the pieces of open connections only; a closed connection's
pieces are handed to the parsers and forgotten. What lies between two pieces is a *gap*: bytes that were sent (sequence numbers say so)
but are not needed or not captured. Gaps are reported, never invented.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np



@dataclass(slots=True)
class Piece:
    offset: int          # from the direction's first payload byte
    data: bytes          # bytes present (may be shorter than length: copy cap / snaplen)
    length: int          # bytes the segment carried on the wire
    frame: int
    ts_ns: int
    tail: bool = False   # the engine's end-of-direction copy

    @property
    def end(self) -> int:
        return self.offset + self.length


def accumulator():
    """The compiled Accumulator (_segments.c) when it is built, else the Python one."""
    try:
        from ._segments import Accumulator as Compiled
    except ImportError:           # pragma: no cover - a source tree without the build
        return Accumulator()
    from ..capture.layout import APP_DTYPE
    if Compiled.row_size() != APP_DTYPE.itemsize:
        raise ImportError("pcapsense._segments row layout mismatch; rebuild the package")
    return Compiled(Piece)


class Accumulator:
    """Application rows collected while the capture is read, kept per (stream, direction)
    with raw sequence numbers until the stream is finalised (its base sequence number is
    known then). `take()` hands over one batch of streams and forgets them, so memory
    holds only the connections still open. _segments.c does the same, compiled; this is
    its reference (tests/test_segments_c.py)."""

    def __init__(self):
        self.pending: dict[tuple[int, int], list[tuple]] = {}
        self.done: set[int] = set()

    def add(self, rows, data: bytes) -> None:
        """rows: the engine's application rows (layout.APP_DTYPE, raw or as an array)."""
        if not isinstance(rows, np.ndarray):
            from ..capture.layout import APP_DTYPE
            rows = np.frombuffer(rows, dtype=APP_DTYPE)
        if not len(rows):
            return
        mv = memoryview(data)
        for st, fr, ts, seq, ln, cap, o, d, tl in zip(
                rows["stream"].tolist(), rows["frame"].tolist(), rows["ts"].tolist(), rows["seq"].tolist(),
                rows["len"].tolist(), rows["cap"].tolist(), rows["off"].tolist(), rows["dir"].tolist(),
                rows["tail"].tolist()):
            if st in self.done:
                continue                  # late bytes of a finalised stream: ignored
            self.pending.setdefault((st, d), []).append(
                (seq, bytes(mv[o:o + cap]), cap if tl else ln, fr, ts, bool(tl)))

    def streams(self) -> set[int]:
        return {k[0] for k in self.pending}

    def take(self, ids, base) -> dict[tuple[int, int], list[Piece]]:
        """Pieces of streams `ids`, in offset order, overlaps resolved (first copy wins).
        base[i, dir] (int64, one row per id): sequence number of the direction's first
        payload byte."""
        base = np.frombuffer(base, dtype=np.int64).reshape(-1, 2)
        base_seq = {(st, d): int(base[i, d]) for i, st in enumerate(ids) for d in (0, 1)}
        out: dict[tuple[int, int], list[Piece]] = {}
        for st in ids:
            self.done.add(st)
            for d in (0, 1):
                raw = self.pending.pop((st, d), None)
                if not raw:
                    continue
                base = base_seq[(st, d)]
                items = []
                for seq, data, ln, fr, ts, tl in raw:
                    off = (seq - base) & 0xFFFFFFFF
                    if off < 0x80000000:
                        items.append((off, tl, fr, data, ln, ts))
                items.sort(key=lambda x: (x[0], x[1], x[2]))
                merged: list[Piece] = []
                covered = -1
                for off, tl, fr, data, ln, ts in items:
                    if off < covered:
                        if off + len(data) <= covered:
                            continue
                        cut = covered - off
                        data, ln, off = data[cut:], max(ln - cut, 0), covered
                    merged.append(Piece(off, data, ln, fr, ts, tl))
                    covered = off + len(data)
                out[(st, d)] = merged
        return out
