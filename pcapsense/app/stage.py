"""Stage 4, streaming: the engine's application bytes -> per-connection facts and HTTP
exchanges while the capture is read (pcapsense/parallel.py runs it for each shard).

A connection's pieces are collected (segments.Accumulator), parsed once the connection
has closed and stayed closed for one more chunk (facts.rows_for: HTTP/1, TLS, h2), then
dropped; the fact rows become typed columns in batches. With a key log, the TLS records
the engine frames for the connections whose keys are known are decrypted as they come
(tls_session.Session, one per connection), so only their plaintext heads wait for the
connection to close, as cleartext heads do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..capture import layout
from . import facts as app_facts
from . import segments as app_segments
from .keylog import KeyLog


class AppStage:
    """Application bytes from the engine -> facts, streaming: a connection's pieces are
    parsed once it has closed (both FINs or a RST) and stayed closed for one more chunk,
    then dropped, so memory holds only the bytes of connections still open. The fact
    rows are turned into typed columns every BATCH rows."""

    BATCH = 4096

    def __init__(self, eng, exchanges: bool = True, keys: KeyLog | None = None):
        """`exchanges`: keep the HTTP exchange rows (False: only the facts). `keys`: the
        key log (None: none given; the capture's secrets blocks may still bring one)."""
        self.eng = eng
        self.keep_exchanges = exchanges
        self.keys = keys
        self.sessions: dict = {}
        self.registry = None
        self.secret_blocks = 0
        self.record_counts = [0, 0, 0]          # decrypted, counted by length (HTTP/1 bodies), lost to holes
        if keys is not None:
            self._set_keys()
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

    def _set_keys(self) -> None:
        from .tls_session import Registry
        if self.registry is None:
            self.registry = Registry()
        self.eng.set_tls_randoms(self.keys.randoms())

    def add_secrets(self, secrets_type: int, data: bytes) -> None:
        """A Decryption Secrets Block of the capture (reader.run's on_secrets): its keys
        are used from the next packet on."""
        self.secret_blocks += 1
        if self.keys is None:
            self.keys = KeyLog()
        self.keys.add_block(secrets_type, data, self.secret_blocks)
        self._set_keys()

    def keylog_summary(self) -> dict | None:
        """What the capture facts say of the key log (never a secret): its sources, how
        many secrets it held, the secrets blocks read, its warnings. None without one."""
        if self.keys is None:
            return None
        return {"sources": list(self.keys.sources), "secrets": len(self.keys),
                "secrets_blocks": self.secret_blocks, "warnings": list(self.keys.warnings),
                "records_decrypted": self.record_counts[0], "records_by_length": self.record_counts[1],
                "records_lost": self.record_counts[2]}

    def _records(self) -> None:
        """The TLS records framed since the last call, fed to their sessions."""
        rows, data = self.eng.take_tls()
        if not rows:
            return
        from ..capture.layout import TLSREC_DTYPE
        from .tls_session import Session
        t = np.frombuffer(rows, dtype=TLSREC_DTYPE)
        # each connection's records together, in their order (a stable sort by stream), as
        # the columns Session.feed zips: no list made per record
        order = np.argsort(t["stream"], kind="stable")
        t = t[order]
        streams = t["stream"]
        cuts = np.flatnonzero(streams[1:] != streams[:-1]) + 1
        starts = [0] + cuts.tolist()
        ends = cuts.tolist() + [len(t)]
        cols = [t[f].tolist() for f in ("dir", "type", "version", "len", "index", "offset", "flags", "frame", "ts",
                                        "end_frame", "end_ts", "off", "head", "tail")]
        mv = memoryview(data)
        sessions = self.sessions
        for st, a, b in zip(streams[starts].tolist(), starts, ends):
            s = sessions.get(st)
            if s is None:
                s = sessions[st] = Session(st, self.keys, self.registry)
            try:
                s.feed(zip(*[c[a:b] for c in cols]), mv)
            except Exception as exc:  # noqa: BLE001 - hostile bytes must not stop the analysis
                s.broken(exc)
        if self.registry.new_ids:
            self.eng.add_tls_sessions(b"".join(self.registry.new_ids))
            self.registry.new_ids.clear()

    def step(self) -> None:
        r, d = self.eng.take_app()
        if r:
            self.acc.add(r, d)
        if self.keys is not None:
            self._records()
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
        sessions = None
        if self.keys is not None:
            self._records()
            sessions = {st: self.sessions.pop(st) for st in ids if st in self.sessions}
            for sess in sessions.values():
                for side in sess.sides:
                    self.record_counts[0] += side.decrypted
                    self.record_counts[1] += side.by_length
                    self.record_counts[2] += side.skipped
        rows = np.frombuffer(self.eng.stream_rows(ix), dtype=layout.STREAM_DTYPE)
        pieces = self.acc.take(ids, np.ascontiguousarray(app_facts.base_seq(rows), dtype=np.int64))
        out, ex = app_facts.rows_for(rows, pieces, sessions, self.keys is not None)
        self.rows += out
        if self.keep_exchanges:
            self.exchanges += ex
        if len(self.rows) >= self.BATCH or len(self.exchanges) >= 4 * self.BATCH:
            self._flush()
