"""Stage 4, streaming: the engine's application bytes -> per-connection facts and HTTP
exchanges while the capture is read (pcapsense/parallel.py runs it for each shard).

A connection's pieces are collected (segments.Accumulator), parsed once the connection
has closed and stayed closed for one more chunk (facts.rows_for: HTTP/1, TLS, h2), then
dropped; the fact rows become typed columns in batches.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..capture import layout
from . import facts as app_facts
from . import segments as app_segments


class AppStage:
    """Application bytes from the engine -> facts, streaming: a connection's pieces are
    parsed once it has closed (both FINs or a RST) and stayed closed for one more chunk,
    then dropped, so memory holds only the bytes of connections still open. The fact
    rows are turned into typed columns every BATCH rows."""

    BATCH = 4096

    def __init__(self, eng, exchanges: bool = True):
        """`exchanges`: keep the HTTP exchange rows (False: only the facts)."""
        self.eng = eng
        self.keep_exchanges = exchanges
        self.acc = app_segments.accumulator()
        self.rows: list[dict] = []
        self.exchanges: list[tuple] = []
        self.app_frames: list[pd.DataFrame] = []
        self.http_frames: list[pd.DataFrame] = []
        self.candidates: set[int] = set()

    def _flush(self) -> None:
        if self.rows:
            self.app_frames.append(app_facts.facts_frame(self.rows))
            self.rows = []
        if self.exchanges:
            self.http_frames.append(app_facts.exchanges_frame(self.exchanges))
            self.exchanges = []

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        self._flush()
        return (app_facts.concat(self.app_frames, app_facts.facts_frame([])),
                app_facts.concat(self.http_frames, app_facts.exchanges_frame([])))

    def step(self) -> None:
        r, d = self.eng.take_app()
        if r:
            self.acc.add(r, d)
        pending = self.acc.streams()
        if not pending:
            return
        ids = np.fromiter(pending, dtype=np.int64, count=len(pending))
        closed = np.frombuffer(self.eng.closed_of(ids), dtype=np.uint8)
        now = set(ids[closed != 0].tolist())
        ready = now & self.candidates
        self.candidates = now - ready
        if ready:
            self._finalise(sorted(ready))

    def finish(self) -> None:
        self._finalise(sorted(self.acc.streams()))

    def _finalise(self, ids: list[int]) -> None:
        if not ids:
            return
        ix = np.asarray(ids, dtype=np.int64).tobytes()
        r, d = self.eng.app_tails_for(ix)
        if r:
            self.acc.add(r, d)
        rows = np.frombuffer(self.eng.stream_rows(ix), dtype=layout.STREAM_DTYPE)
        pieces = self.acc.take(ids, np.ascontiguousarray(app_facts.base_seq(rows), dtype=np.int64))
        out, ex = app_facts.rows_for(rows, pieces)
        self.rows += out
        if self.keep_exchanges:
            self.exchanges += ex
        if len(self.rows) >= self.BATCH or len(self.exchanges) >= 4 * self.BATCH:
            self._flush()
