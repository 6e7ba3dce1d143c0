"""Stage 4a: the engine's application segments -> per-direction sparse byte streams.

The engine hands over only the segments parsing needs (see `app_t` in _engine.c): the
first bytes of each direction, every segment that starts an HTTP/1 message, the rest of
an open HTTP head, and the last bytes of each direction. Here they are put in sequence
order per (stream, direction), retransmissions and overlaps resolved (first copy wins,
as a receiver keeps it), and given offsets relative to the direction's first byte.
What lies between two pieces is a *gap*: bytes that were sent (sequence numbers say so)
but are not needed or not captured. Gaps are reported, never invented.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..capture import layout


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


def group(batches: list, base_seq: np.ndarray) -> dict[tuple[int, int], list[Piece]]:
    """batches: [(APP_DTYPE rows, their bytes)]; base_seq[stream, dir]: sequence number
    of the direction's first payload byte. Returns {(stream, dir): [Piece by offset]}.

    Sorting and offset arithmetic are vectorised over all rows; Python touches each row
    once, to cut its bytes and resolve overlaps."""
    out: dict[tuple[int, int], list[Piece]] = {}
    batches = [(r, d) for r, d in batches if len(r)]
    if not batches:
        return out
    rows = np.concatenate([r for r, _ in batches])
    bases = np.cumsum([0] + [len(d) for _, d in batches[:-1]])
    goff = np.concatenate([r["off"].astype(np.int64) + b for (r, _), b in zip(batches, bases)])
    data = memoryview(b"".join(d for _, d in batches))
    stream = rows["stream"]
    d = rows["dir"].astype(np.int64)
    rel = (rows["seq"].astype(np.int64) - base_seq[stream, d]) & 0xFFFFFFFF
    keep = rel < 0x80000000               # data before the base (a retransmitted SYN's): drop
    tail = rows["tail"].astype(bool)
    length = np.where(tail, rows["cap"], rows["len"]).astype(np.int64)   # a tail holds the last bytes
    order = np.lexsort((rows["frame"], tail, rel, d, stream))
    order = order[keep[order]]
    cols = zip(stream[order].tolist(), d[order].tolist(), rel[order].tolist(), goff[order].tolist(),
               rows["cap"][order].tolist(), length[order].tolist(), rows["frame"][order].tolist(),
               rows["ts"][order].tolist(), tail[order].tolist())
    key = None
    merged: list[Piece] = []
    covered = -1
    for st, dd, off, o, cap, ln, fr, ts, tl in cols:
        if (st, dd) != key:
            key = (st, dd)
            merged = out[key] = []
            covered = -1
        end = off + cap
        if off < covered:
            if end <= covered:
                continue                  # retransmission / already have it
            cut = covered - off           # keep only the new bytes
            o, cap, ln, off = o + cut, cap - cut, max(ln - cut, 0), covered
        merged.append(Piece(off, bytes(data[o:o + cap]), ln, fr, ts, tl))
        covered = off + cap
    return out
