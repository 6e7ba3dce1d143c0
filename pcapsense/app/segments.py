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
    of the direction's first payload byte. Returns {(stream, dir): [Piece by offset]}."""
    out: dict[tuple[int, int], list[Piece]] = {}
    for rows, data in batches:
        mv = memoryview(data)
        rel = (rows["seq"].astype(np.int64) - base_seq[rows["stream"], rows["dir"]]) & 0xFFFFFFFF
        for r, off in zip(rows.tolist(), rel.tolist()):
            stream, frame, ts, _seq, length, cap, o, d, tail = r[:9]
            if off >= 0x80000000:        # before the base (a retransmitted SYN's data): skip
                continue
            if tail:
                length = cap             # the tail copy holds the segment's last bytes
            out.setdefault((stream, d), []).append(
                Piece(off, bytes(mv[o:o + cap]), length, frame, ts, bool(tail)))
    for key, pieces in out.items():
        pieces.sort(key=lambda p: (p.offset, p.tail, p.frame))
        merged: list[Piece] = []
        for p in pieces:
            if merged and p.offset < merged[-1].offset + len(merged[-1].data):
                last = merged[-1]
                covered = last.offset + len(last.data)
                if p.offset + len(p.data) <= covered:
                    continue                             # retransmission / already have it
                cut = covered - p.offset                 # keep only the new bytes
                p = Piece(covered, p.data[cut:], max(p.length - cut, 0), p.frame, p.ts_ns, p.tail)
            merged.append(p)
        out[key] = merged
    return out
