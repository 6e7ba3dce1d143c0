"""Out-of-core runs: the CLI's terminal, JSON, Markdown and HTML reports of a capture of
any size in a flat amount of memory, with exactly what `analyze()` would give.

`analyze()` returns every connection as DataFrames, so its memory grows with the
capture (about 2 KiB per connection). The reports do not need every row at once. A
bounded run reads the capture in `passes`, each one a hash shard of the 4-tuples as in
`--jobs` (pcapsense/parallel.py: every per-connection decision is the single-process
one):

1. **read** each pass: engine, application stage, connections table, `classify.prepare`;
   its rows go to a temporary file, their context inputs to another
   (`bounded_context.spill`), and the parent keeps a few numbers of the pass;
2. **number** the streams of all passes by first frame (Wireshark's order, as
   `parallel.merge` does: a k-way merge of the passes' first frames) and count the
   cross-connection context of every connection from the passes' files
   (`bounded_context.Context`: the servers' sorted times, classify.Sweeps, then each
   pass's per-row context to a file);
3. **decide** each pass's rows (fast path and rules), keeping the idle closes' idle
   times and the rows of the clients the pool-overflow pass reads;
4. the **pool-overflow pass** and the servers' **keep-alive timeouts**, then each
   pass's rows are **finished**, redacted and written as JSON lines to a temporary
   file, and the few columns the reports read are kept (`REPORT_COLUMNS` for the
   terminal and Markdown, `HTML_COLUMNS`, `MINIMAL_COLUMNS` for the JSON alone);
   steps 1, 3 and 4 run in the run's worker processes (`--jobs`, a pass each; one
   pool, forked while the parent is small, `_Workers`), the parent sending each
   pass its part of the context (`bounded_context.PassContext`);
5. the JSON document is the head and the passes' lines merged in stream order; the HTML
   report gets the transitions and HTTP exchanges of the connections its timeline
   draws, and reads its cards' whole rows back from the passes' files (`rows_of`).

What a pass spills goes through _FrameWriter: zstd-compressed 256 KiB frames when
pyarrow is there (a flood's rows and JSON lines shrink 24 and 80 times), object columns
that are None in every row left out of the pickles (_NoneColumns).

What stays in memory for every connection: its pass (2 bytes), the servers' sorted
start and end times while the context is counted (16 bytes), and the columns of the
reports asked for (about 11 bytes for the JSON alone, `MINIMAL_COLUMNS`). Everything
else lives for one pass. The price: every pass reads and decodes every
frame's headers (about 0.2 s per million frames), so a capture is read `passes` times;
`auto_passes` takes one pass per PASS_BYTES of capture, so a capture that fits one pass
is analysed in memory as before.

Written by hand because no library does this: the steps are classify's own, and the
merge is the one of parallel.py.
"""

from __future__ import annotations

import collections
import itertools
import math
import os
import pickle
import tempfile
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from . import bounded_context, classify, memory, parallel
from .analysis import (Capture, capture_facts, check_read, frame_limit, input_files, keylog_paths, options,
                       reread_options, table_of, time_window)
from .capture import layout, reader
from .render import jsonout
from .tcp import connections as conn_table

#: capture bytes per pass (auto_passes, 2.5 GiB): the 2M-packet benchmark (2.0 GiB) is
#: one pass, a 10M-packet capture (10.3 GiB) five: each pass then holds about as many
#: connections as the 2M-packet capture
PASS_BYTES = 5 << 29

#: connections a CLI run holds at once by default, in memory or in the passes read at
#: once (about 1.8 KiB each, plus the 2 bytes a run keeps of every connection, see
#: above): a capture seen to hold more is read again in passes (passes_for), so its
#: connection count does not set the peak: floods of 1M and 10M SYNs stay under 400 MB
#: (JSON) as an ordinary capture does
CONNECTION_BUDGET = 150_000

#: rows of a pass's JSON lines made at once (a flood's lines are 3.6 KB each, and the
#: writer's buffer and the block before it are alive together: 4096 rows put 50 MB on a
#: pass's peak, this 13)
SPILL_ROWS = 1024

#: the columns the terminal and Markdown reports and `--fail-on` read (not
#: wireshark_filter: "tcp.stream eq N", 28 bytes a connection, made from the stream
#: number for the one row the terminal shows it of)
REPORT_COLUMNS = ("stream", "client_ip", "client_port", "server_ip", "server_port", "start", "duration_s",
                  "client_bytes", "server_bytes", "close_kind", "closer", "close_frame", "closer_state",
                  "peer_state", "conn_state", "history", "packets", "phase", "cause", "confidence", "cause_detail", "python_error",
                  "fix_section", "fix", "fix_snippet", "abnormal", "inferred", "http_host", "tls_sni",
                  "server_keepalive_timeout_s", "server_keepalive_closes", "server_peak_concurrency",
                  "tls_decrypted")


#: what `--fail-on` and the JSON document's head read (not even the stream numbers: a
#: byte each, 3 bytes a connection)
MINIMAL_COLUMNS = ("close_kind", "cause", "abnormal")

#: what the HTML report reads of every connection (its verdict and server table,
#: html._VERDICT_COLUMNS and _SERVER_COLUMNS; its figures; the choice of its cards;
#: Analysis.packets_of); a card's row is read whole from its pass's file
HTML_COLUMNS = ("stream", "abnormal", "cause", "inferred", "confidence", "start", "end", "close_time", "close_kind", "closer", "conn_state",
                "history", "packets", "server_ip",
                "server_port", "client_ip", "client_port", "http_host", "tls_sni", "server_keepalive_timeout_s",
                "server_keepalive_closes", "server_peak_concurrency", "cause_detail", "python_error", "fix",
                "fix_section", "fix_snippet", "idle_before_close_s", "max_idle_s", "first_frame", "last_frame",
                "_client_dir", "tls_decrypted")


@dataclass
class Result:
    """What a bounded run gives the reports: `capture` as `Analysis.capture`, and
    `connections`: every connection's `columns` (REPORT_COLUMNS or fewer), in table
    order."""

    capture: Capture
    connections: pd.DataFrame


def auto_passes(files: list[str]) -> int:
    """One pass per PASS_BYTES of capture; one for standard input (it cannot be read
    twice)."""
    if "-" in files:
        return 1
    return max(1, math.ceil(reader.input_bytes(files) / PASS_BYTES))


def passes_for(exc: parallel.TooManyConnections, budget: int, jobs: int) -> int:
    """The passes for a capture whose reading stopped at `exc` (more connections than
    its share of `budget`), read `jobs` at once, each pass then holding at most its
    share of `budget` were the rest of the capture like what was read (15 % spare; a
    pass that still holds more stops the same way and is read again in more)."""
    return max(2, math.ceil(exc.estimate() * 1.15 * max(1, jobs) / budget))


def run(path, *, passes: int, json_out=None, html_out=None, html_options: dict | None = None,
        columns=REPORT_COLUMNS, redact: bool = True, jobs: int = 1,
        progress: Callable[[int], None] | None = None, verify_checksums: bool = False, strict: bool = False,
        split: str = "wireshark", layers: str = "all", max_packets: int | None = None,
        since=None, until=None, tmpdir: str | None = None, connection_budget: int = 0, keylog=None) -> Result:
    """Analyse `path` (as `analyze()`) in `passes` passes, reading up to `jobs` of them
    at once in worker processes; write the JSON document to the text file `json_out`
    and the HTML report (render.html.write, with `html_options`) to `html_out` when
    given, credentials redacted unless `redact=False` (as the CLI does); keep `columns`
    of every connection in the result (MINIMAL_COLUMNS when only the JSON is wanted).
    `connection_budget`: the connections the passes read at once may hold together
    (0: no limit); a pass that holds more raises parallel.TooManyConnections (see
    passes_for). Raises as `analyze()`."""
    window = time_window(since, until)
    max_frames = frame_limit(max_packets)
    files, unopened = input_files(path, window)
    opts = options(verify_checksums=verify_checksums, split=split, layers=layers, strict=strict,
                   tables="all" if html_out is not None else "connections", window=window,
                   max_frames=max_frames, keylog=keylog_paths(keylog))
    if "-" in files:
        passes = 1
    if html_out is not None:
        columns = tuple(dict.fromkeys(tuple(columns) + HTML_COLUMNS))
    try:
        spool = tempfile.TemporaryDirectory(prefix="pcapsense-", dir=tmpdir)
    except OSError as exc:
        raise SpillError(f"cannot make a temporary directory in {tmpdir or tempfile.gettempdir()}: "
                         f"{exc.strerror or exc} (--passes keeps each pass's rows there; set TMPDIR)") from None
    if connection_budget:
        opts.max_streams = max(1, connection_budget // (min(jobs, passes) if jobs > 1 and passes > 1 else 1))
    with memory.no_cyclic_gc(), spool as tmp:
        with _Workers(min(jobs, passes)) as workers:
            if workers.pool is not None:
                summaries, first_part = _read_in_workers(files, opts, passes, tmp, progress, workers)
            else:
                summaries, first_part = _read_here(files, opts, passes, tmp, progress)
            r = _Run(files, unopened, opts, passes, tmp, summaries, first_part)
            del summaries, first_part
            res = r.classify(json_out is not None, columns, redact, keep_rows=html_out is not None, workers=workers)
        if json_out is not None:
            r.write_json(res, json_out)
        if html_out is not None:
            r.write_html(res, html_out, redact, html_options or {})
        return res


def _read_here(files, opts, passes, tmp, progress, jobs=1):
    """Step 1 in this process, pass after pass: every pass's summary
    (bounded_context.PassSummary) and the first pass's Partial (what was read: results,
    formats, counters)."""
    total = reader.input_bytes(files)
    summaries, first_part, counters, keylogs = [], None, [], []
    for k in range(passes):
        part = parallel.read_shard(files, opts, (k, passes),
                                   progress=(lambda pos, k=k: progress(k * total + pos)) if progress else None)
        if first_part is None:
            check_read(part)
            first_part = part
        counters.append(part.counters)
        keylogs.append(part.keylog)
        summaries.append(_read_pass(part, tmp, k, opts.tables == "all"))
        memory.release()
    first_part.counters = parallel.merged_counters(counters, 0)
    first_part.keylog = parallel.merged_keylog(keylogs)
    return summaries, first_part


def _read_in_workers(files, opts, passes, tmp, progress, workers: _Workers):
    """Step 1 in the run's worker processes, each leaving its pass's rows in `tmp` and
    returning its summary; a worker that dies costs time: the passes are then read
    here."""
    from concurrent.futures.process import BrokenProcessPool
    total = reader.input_bytes(files)
    try:
        futures = [workers.pool.submit(_read_pass_in_worker, files, opts, k, passes, tmp) for k in range(passes)]
        got = []
        for k, f in enumerate(futures):
            got.append(f.result())
            if progress:
                progress((k + 1) * total)
    except BrokenProcessPool:
        workers.pool = None
        summaries, first_part = _read_here(files, opts, passes, tmp, progress)
        first_part.notes.append(parallel.worker_died(workers.jobs, "the passes were read again in one process"))
        return summaries, first_part
    first_part = got[0][1]
    check_read(first_part)
    first_part.counters = parallel.merged_counters([p.counters for _, p in got], 0)
    first_part.keylog = parallel.merged_keylog([p.keylog for _, p in got])
    return [c for c, _ in got], first_part


def _read_pass_in_worker(files, opts, k: int, passes: int, tmp: str):
    with memory.no_cyclic_gc():
        part = parallel.read_shard(files, opts, (k, passes))
        if not part.formats:                  # (the parent raises it: check_read)
            return None, part
        ctx = _read_pass(part, tmp, k, opts.tables == "all")
    return ctx, part


def _read_pass(part: parallel.Partial, tmp: str, k: int, extra: bool) -> bounded_context.PassSummary:
    """Step 1 for one pass: its prepared rows to a file in `tmp`, their context inputs to
    another (bounded_context.spill), and with `extra`, for the HTML report, its
    transitions and HTTP exchanges to a third; returns the pass's summary."""
    conns, times, trans = table_of(part)
    if extra:
        _dump((trans.tobytes(), part.http), _path(tmp, "extra", k))
    part.transitions = None
    del trans
    app_df, part.app, part.http = part.app, None, None
    df = classify.prepare(conns, app_df, times)
    del conns, app_df, times
    with _spilling(tmp):
        summary = bounded_context.spill(df, bounded_context.spill_path(tmp, "ctx", k))
    _dump(df, _path(tmp, "pass", k))
    return summary


def _path(tmp: str, what: str, k: int) -> str:
    return os.path.join(tmp, f"{what}-{k}.pkl")


class _Workers:
    """The run's worker processes (parallel.worker_pool), started once and shared by its
    steps, or none (`pool` None: one job, or a worker died). They are forked when the
    first pass is read, while this process is still small (a forked worker's memory
    starts at its parent's)."""

    def __init__(self, jobs: int):
        self.jobs, self.pool, self.died = jobs, None, False
        self._cm = parallel.worker_pool(jobs) if jobs > 1 else None

    def __enter__(self) -> _Workers:
        if self._cm is not None:
            self.pool = self._cm.__enter__()
        return self

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc) if self._cm is not None else False

    def map(self, fn, tasks):
        """fn(*task) for each of `tasks` (made as they are sent), in order: in the
        workers, at most two tasks a worker sent ahead (a task's arguments are a pass's
        stream numbers: 8 bytes a connection of the pass), or here when there are none.
        A worker that dies costs time: the tasks whose results are missing, and the rest,
        are run here (`died`)."""
        from concurrent.futures.process import BrokenProcessPool
        tasks = iter(tasks)
        if self.pool is None:
            yield from (fn(*t) for t in tasks)
            return
        ahead: collections.deque = collections.deque()
        while True:
            while len(ahead) < 2 * self.jobs:
                t = next(tasks, None)
                if t is None:
                    break
                ahead.append((t, self.pool.submit(fn, *t)))
            if not ahead:
                return
            t, f = ahead.popleft()
            try:
                got = f.result()
            except BrokenProcessPool:
                self.pool, self.died = None, True
                rest = [t] + [t for t, _ in ahead]
                ahead.clear()
                yield from (fn(*t) for t in itertools.chain(rest, tasks))
                return
            yield got


@dataclass(frozen=True)
class _Finish:
    """How step 4 writes a pass: its JSON lines (`lines`), the `columns` it keeps of
    every connection, credentials redacted (`redact`), its whole rows kept for the HTML
    cards (`keep_rows`)."""

    lines: bool
    columns: tuple
    redact: bool
    keep_rows: bool


def _pass_rows(pc: bounded_context.PassContext, gids: np.ndarray) -> pd.DataFrame:
    """Pass pc.k's prepared rows (step 1's file) with their stream numbers `gids` and
    their cross-connection context."""
    df = _load(_path(pc.tmp, "pass", pc.k))
    conn_table.renumber(df, gids)
    return classify.add_context(df, pc.rows())


def _decide_pass(pc: bounded_context.PassContext, gids: np.ndarray):
    """Step 3 for one pass (in a worker, or here): its rows decided (classify.decide,
    kept in a file for step 4); returns its idle closes (their servers' codes in the
    run and idle times, s) and the rows the pool-overflow pass reads (Claims.piece)."""
    with memory.no_cyclic_gc():
        with pc.inputs() as z:
            local, pool_rows = z["code"], pc.pool_rows(z)
        keys = pc.names[local]
        df = _pass_rows(pc, gids)
        out = classify.decide(df, keys, pc.servers, pc.capture_end_s)
        idle_s = np.asarray(out["_idle_s"], dtype=float)
        idle = ~np.isnan(idle_s)
        piece = bounded_context.Claims.piece(pc.k, df, pool_rows, gids, keys, out["cause"])
        _dump(out, _path(pc.tmp, "out", pc.k))
        del df, out
    memory.release()
    return pc.gmap[local[idle]], idle_s[idle], piece


def _finish_pass(pc: bounded_context.PassContext, gids: np.ndarray, claimed: list, timeout: np.ndarray,
                 closes: np.ndarray, peak: np.ndarray, how: _Finish) -> dict:
    """Step 4 for one pass (in a worker, or here): its decided rows given the pool
    overflow's `claimed` rows and its servers' keep-alive `timeout`, idle `closes` and
    `peak` concurrency (by the pass's server codes), finished, redacted, written as
    JSON lines and whole rows as `how` says; returns the columns kept of its rows
    (copies of their own: a column of the pass's table is a view that keeps the whole
    block of its type alive)."""
    with memory.no_cyclic_gc():
        with pc.inputs() as z:
            local = z["code"]
        df, out = _pass_rows(pc, gids), _load(_path(pc.tmp, "out", pc.k))
        classify.pool.apply(out, claimed)
        df = classify.finish(df, out, timeout[local], closes[local], peak[local])
        del out
        if how.redact:
            from .render.redact import redact_frame
            df = redact_frame(df)
        if how.keep_rows:
            _dump(df, _path(pc.tmp, "final", pc.k))
        if how.lines:
            path = _path(pc.tmp, "lines", pc.k)
            with _spilling(path), open(path, "wb") as fh:
                spill = _FrameWriter(fh, lines=True)
                for block in jsonout.record_blocks(df, chunk_rows=SPILL_ROWS):
                    spill.write(block)
                    spill.write(b"\n")
                spill.close()
        shared = SHARED_TEXT if how.keep_rows else SHARED_TEXT + REPORT_TEXT
        cols = {col: (df[col].astype("category") if col in shared else df[col]).copy(deep=True)
                for col in how.columns if col in df}
        del df
    memory.release()
    return cols


class _Run:
    """Steps 2 to 5 over the passes' files in `tmp`."""

    def __init__(self, files, unopened, opts, passes, tmp, summaries, first_part):
        self.files, self.opts, self.passes, self.tmp = files, opts, passes, tmp
        self.summaries = summaries
        self.n = n = sum(s.n for s in summaries)
        # 2. streams numbered by first frame across the passes, as parallel.merge does:
        # each connection's pass, in stream order (a pass's rows are in that order)
        with _spilling(tmp):
            self.shard_of = bounded_context.owners(
                [bounded_context.spill_path(tmp, "ctx", k) + ".ff" for k in range(passes)], [s.n for s in summaries])
        counters = dict(first_part.counters)
        counters["streams"] = n
        first_part.counters = counters
        self.cap = capture_facts(first_part, opts, files, unopened, n)

    def gids(self, k: int) -> np.ndarray:
        """Pass k's rows' stream numbers (global ids), in its rows' order."""
        return np.flatnonzero(self.shard_of == k)

    def classify(self, lines: bool, columns, redact: bool, keep_rows: bool, workers: _Workers | None = None) -> Result:
        """Steps 2-4: every pass's rows decided, then finished (in `workers` when the run
        has some, a pass each); their JSON lines (when `lines`) and whole rows (when
        `keep_rows`, for the HTML cards) to files; the `columns` of every connection
        returned, in table order."""
        n, gids, passes, tmp = self.n, self.gids, self.passes, self.tmp
        workers = workers or _Workers(1)
        if not n:
            self.empty = empty = classify.run(conn_table.build(     # (as analyze() makes it)
                np.empty(0, dtype=layout.STREAM_DTYPE), np.empty(0, dtype=layout.TRANSITION_DTYPE)),
                pd.DataFrame(), np.empty(0, dtype=classify.TIMES_DTYPE))
            return Result(self.cap, empty[[c for c in columns if c in empty]])
        # 2. the context of every connection, from the passes' files
        c = self.context = bounded_context.Context(tmp, self.summaries)
        with _spilling(tmp):
            c.build()
        memory.release()
        ks = [k for k in range(passes) if self.summaries[k].n]      # (a pass can hold no connection at all)
        # 3. each pass's rows decided; the rows the pool-overflow pass reads and the
        # idle closes' times kept
        claims, timeouts = bounded_context.Claims(), bounded_context.Timeouts()
        for codes, idle_s, piece in workers.map(_decide_pass, ((c.of_pass(k), gids(k)) for k in ks)):
            timeouts.add(codes, idle_s)
            claims.add(piece)
        # 4. across connections, then each pass finished and written
        claimed = claims.claimed(passes)
        del claims
        timeout, closes = timeouts.table(len(c.names))
        table = _Table(self.shard_of)
        how = _Finish(lines, tuple(columns), redact, keep_rows)

        def tasks():
            for k in ks:
                pc = c.of_pass(k)
                yield pc, gids(k), claimed[k], timeout[pc.gmap], closes[pc.gmap], c.peak[pc.gmap], how
        for k, cols in zip(ks, workers.map(_finish_pass, tasks())):
            if lines:
                os.remove(_path(tmp, "pass", k))       # (its lines replace the pass's rows)
            table.add(k, cols)
            del cols
        if workers.died:
            self.cap.warnings.append(parallel.worker_died(workers.jobs, "its passes were decided again here"))
        memory.release()
        return Result(self.cap, table.frame())

    def write_json(self, res: Result, fh) -> None:
        """Step 5: the document: the head, then every pass's lines in stream order (each
        pass's lines are already in that order)."""
        if not self.n:
            jsonout.write(Result(self.cap, self.empty), fh)
            return
        jsonout.write_head(res, fh)
        with _spilling(self.tmp):
            sources = [_FrameReader(open(_path(self.tmp, "lines", k), "rb")) if s.n else None   # (none: no rows)
                       for k, s in enumerate(self.summaries)]
        try:
            jsonout.write_records(fh, self._merged_lines(sources))
        finally:
            for s in sources:
                if s is not None:
                    s.close()

    def _merged_lines(self, sources, chunk: int = 2048, read_bytes: int = 1 << 18):
        """The passes' lines (`sources`: their files) in stream order, `chunk` lines a
        block (joined as write_records() wants them), put in order by the C writer
        (_jsonrows.interleave) from what is read of each pass's file: per pass, a
        buffer of its next lines and where they start."""
        from .render import _jsonrows
        order = self.shard_of
        bufs, starts = [b""] * len(sources), [0] * len(sources)
        avail = [0] * len(sources)               # (whole lines in each buffer from its start: counted once)
        for lo in range(0, len(order), chunk):
            part = np.ascontiguousarray(order[lo:lo + chunk], dtype=np.int32)
            counts = np.bincount(part, minlength=len(sources))
            wanted = np.flatnonzero(counts).tolist()
            for k in wanted:
                if avail[k] >= counts[k]:
                    continue
                pieces = [bufs[k][starts[k]:]]
                width = max(1, (len(bufs[k]) - starts[k]) // max(1, avail[k]))       # (bytes a line, so far)
                while avail[k] < counts[k]:
                    more, lines = sources[k].frames(max(read_bytes, int((counts[k] - avail[k]) * width * 1.25)))
                    if not more:
                        raise SpillError(f"{sources[k].name}: a pass's JSON lines end early")
                    avail[k] += lines
                    pieces.append(more)
                bufs[k], starts[k] = b"".join(pieces), 0
            block, starts = _jsonrows.interleave(part, bufs, starts, jsonout.RECORD_SEP)
            for k in wanted:
                avail[k] -= int(counts[k])
            yield block

    def write_html(self, res: Result, dest, redact: bool, html_options: dict) -> None:
        """The HTML report from `res` (its HTML_COLUMNS of every connection), the
        transitions and HTTP exchanges of the connections its timeline draws, and the
        whole rows of its cards (rows_of)."""
        from . import plots
        from .analysis import Analysis, _transitions_frame
        from .app import facts as app_facts
        from .render import html
        table = res.connections if self.n else self.empty
        wanted = np.sort(plots.sample_connections(table, plots.TIMELINE_LIMIT)[0]["stream"].to_numpy()) \
            if self.n else np.empty(0, np.int64)
        trans, https = [np.empty(0, dtype=layout.TRANSITION_DTYPE)], [app_facts.exchanges_frame([])]
        for k in range(self.passes):
            if not self.summaries[k].n or not os.path.exists(_path(self.tmp, "extra", k)):
                continue
            g = self.gids(k)
            raw, http = _load(_path(self.tmp, "extra", k))
            t = np.frombuffer(raw, dtype=layout.TRANSITION_DTYPE).copy()
            del raw
            t["stream"] = g[t["stream"]]
            trans.append(t[np.isin(t["stream"], wanted)])
            http["stream"] = g[http["stream"].to_numpy()]
            https.append(http[http["stream"].isin(wanted)])
        t = np.concatenate(trans)
        t = t[np.argsort(t["frame"], kind="stable")]      # (a frame's transitions are all of one pass)
        http = pd.concat(https, ignore_index=True).sort_values(["stream", "depth"], kind="stable") \
            .reset_index(drop=True)
        a = Analysis(self.cap, table, _transitions_frame(t, table["_client_dir"].to_numpy()),
                     reread_options(self.files, self.opts), http=http)
        a.rows_of = self.rows_of
        html.write(a, dest, redact=redact, **html_options)

    def rows_of(self, labels) -> pd.DataFrame:
        """The whole rows of the connections at table positions `labels` (their
        passes' files), indexed by those positions."""
        labels = np.asarray(labels, dtype=np.int64)
        parts = []
        for k in np.unique(self.shard_of[labels]).tolist():
            mine = labels[self.shard_of[labels] == k]
            df = _load(_path(self.tmp, "final", k))
            parts.append(df.iloc[np.searchsorted(self.gids(k), mine)].set_axis(mine))
            del df
        return pd.concat(parts).loc[labels]


#: what else the terminal and Markdown reports read as text, kept as categories (about
#: 8 bytes a connection each as objects): they only count and show them
REPORT_TEXT = ("http_host", "tls_sni", "tls_decrypted")

#: report columns whose values repeat (one per cause, or per cause and client): kept
#: as categories, one string per distinct value (as Arrow text, every row's copy of
#: the fix and the Python error took 35 MiB at 10M packets)
SHARED_TEXT = ("cause_detail", "python_error", "fix_section", "fix", "fix_snippet")


class _Table:
    """The columns kept of every connection, pass by pass (`add`), made one table in
    stream order (`frame`) a column at a time, each pass's piece freed as its column is
    done: numpy columns of one type and categories (the passes' categories, first seen
    first, as union_categoricals gives them) are written in place at the rows' stream
    numbers; any other column is concatenated and reordered. No copy of the whole table
    is made besides the result (the passes' tables, their concatenation and its
    reordered copy were three)."""

    def __init__(self, shard_of: np.ndarray):
        self.shard_of = shard_of                # (each connection's pass: _Run.shard_of)
        self.parts: list[tuple[int, dict]] = []

    def add(self, k: int, cols: dict) -> None:
        """Pass k's columns (copies of their own, not views of its table)."""
        self.parts.append((k, cols))

    def frame(self) -> pd.DataFrame:
        n = len(self.shard_of)
        # every pass's stream numbers at once, for the time the table is made (kept
        # with the passes, they were 8 bytes a connection): the passes' numbers sorted
        # stably; its inverse is where each row is in the passes' concatenation
        perm = np.argsort(self.shard_of, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(self.shard_of))])
        order = None
        names = list(dict.fromkeys(c for _, cols in self.parts for c in cols))
        data = {}
        for name in names:
            pieces = [(perm[bounds[k]:bounds[k + 1]], cols.pop(name)) for k, cols in self.parts if name in cols]
            dtypes = {str(p.dtype) for _, p in pieces}
            first = pieces[0][1].dtype
            if len(pieces) == len(self.parts) and all(isinstance(p.dtype, pd.CategoricalDtype) for _, p in pieces):
                # (a pass where the column is all missing has categories of another type)
                seen = [p.cat.categories for _, p in pieces if len(p.cat.categories)]
                cats = seen[0].append(seen[1:]).unique() if seen else pieces[0][1].cat.categories
                codes = np.empty(n, dtype=np.int32)
                for g, p in pieces:
                    codes[g] = np.append(cats.get_indexer(p.cat.categories), -1)[p.cat.codes.to_numpy()]
                data[name] = pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(cats))
            elif len(pieces) == len(self.parts) and len(dtypes) == 1 and isinstance(first, np.dtype) and first != object:
                col = np.empty(n, dtype=first)
                for g, p in pieces:
                    col[g] = p.to_numpy()
                data[name] = col
            else:
                if order is None:
                    order = np.empty(n, dtype=np.int64)
                    order[perm] = np.arange(n)
                data[name] = pd.concat([p for _, p in pieces], ignore_index=True).take(order).reset_index(drop=True)
            del pieces
            memory.release()            # (a text column's Arrow buffers, given back before the next column)
        self.parts = []
        return pd.DataFrame(data, copy=False)


class SpillError(RuntimeError):
    """A temporary file of a bounded run could not be written or read (a full disk);
    `str(err)` is one line."""


class _spilling:
    """Turns an OSError on the temporary files into a one-line SpillError."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is not None and issubclass(kind, OSError) and not isinstance(exc, BrokenPipeError):
            raise SpillError(f"{self.path}: cannot write or read this temporary file: {exc.strerror or exc} "
                             f"(--passes keeps each pass's rows in the temporary directory; set TMPDIR, or "
                             f"--passes 1)") from None
        return False


class _FrameWriter:
    """What a bounded run spills (a pass's pickled rows, its JSON lines) into a
    temporary file, in frames of at most FRAME bytes, each compressed with zstd when
    pyarrow has it (as it does where pandas keeps its text in Arrow), else as it is. A
    frame: its stored size, its raw size and how many line ends it holds (8 bytes each,
    little endian; stored size = raw size: not compressed; line ends counted with
    `lines`, else 0), then its bytes. Why: the spill was most of an out-of-core run's
    time on a flood. A million SYNs spilled 0.8 GB of pickled rows and 3.6 GB of JSON
    lines (3.6 KB each, mostly the same keys and nulls), written at 400 MB/s here; zstd
    makes them 24 and 80 times smaller at 3 GB/s. A file-like `write`, for pickle."""

    #: raw bytes a frame (a reader holds whole frames: memory per file read, and the
    #: JSON merge reads every pass's file at once: 77 of them for 10M connections)
    FRAME = 1 << 18

    def __init__(self, fh, lines: bool = False):
        self.fh, self.lines = fh, lines
        self.codec, self.pool = _zstd()
        self.buf = bytearray()               # (the frame being filled)
        from .render import _jsonrows
        self.newlines = _jsonrows.newlines

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        at = 0
        while at < len(view):
            take = min(len(view) - at, self.FRAME - len(self.buf))
            self.buf += view[at:at + take]
            at += take
            if len(self.buf) == self.FRAME:
                self._frame()
        return len(view)

    def close(self) -> None:
        """The last, partial frame (the file itself is the caller's)."""
        if self.buf:
            self._frame()

    def _frame(self) -> None:
        raw, self.buf = self.buf, bytearray()
        packed = self.codec.compress(raw, asbytes=True, memory_pool=self.pool) if self.codec is not None else raw
        if len(packed) >= len(raw):
            packed = raw
        lines = self.newlines(raw) if self.lines else 0
        self.fh.write(len(packed).to_bytes(8, "little") + len(raw).to_bytes(8, "little")
                      + lines.to_bytes(8, "little"))
        self.fh.write(packed)


class _FrameReader:
    """_FrameWriter's file read back: `frames(n)` -> (at least `n` bytes, whole frames,
    unless the file ends; the line ends in them), (b"", 0) at its end; or as a file
    (`read`, `readline`, `readinto`), for pickle."""

    def __init__(self, fh):
        self.fh, self.name = fh, fh.name
        self.codec, self.pool = _zstd()
        self.buf, self.at = b"", 0

    def frames(self, n: int) -> tuple[bytes, int]:
        out, have, lines = [], 0, 0
        while have < n:
            head = self.fh.read(24)
            if not head:
                break
            packed_len, raw_len, count = (int.from_bytes(head[i:i + 8], "little") for i in (0, 8, 16))
            packed = self.fh.read(packed_len)
            if len(head) < 24 or len(packed) < packed_len:
                raise SpillError(f"{self.name}: a spilled file ends early")
            if packed_len != raw_len:
                if self.codec is None:
                    raise SpillError(f"{self.name}: compressed, and no zstd to read it")
                packed = self.codec.decompress(packed, decompressed_size=raw_len, asbytes=True, memory_pool=self.pool)
            out.append(packed)
            have += raw_len
            lines += count
        return (out[0] if len(out) == 1 else b"".join(out)), lines

    def _fill(self, n: int) -> None:
        """At least n bytes from `at` in `buf`, unless the file ends."""
        if len(self.buf) - self.at < n:
            more, _ = self.frames(n - (len(self.buf) - self.at))
            self.buf, self.at = self.buf[self.at:] + more, 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 62
        self._fill(n)
        out = self.buf[self.at:self.at + n]
        self.at += len(out)
        return out

    def readinto(self, b) -> int:
        view = memoryview(b).cast("B")
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)

    def readline(self) -> bytes:
        while True:
            end = self.buf.find(b"\n", self.at)
            if end >= 0:
                return self.read(end + 1 - self.at)
            before = len(self.buf) - self.at
            self._fill(before + 1)
            if len(self.buf) - self.at == before:
                return self.read()

    def close(self) -> None:
        self.fh.close()


def _zstd():
    """pyarrow's zstd codec and the memory pool for its buffers (the system allocator,
    whose freed memory memory.release() gives back: pyarrow's own pool keeps it), or
    (None, None): pyarrow is optional."""
    try:
        import pyarrow as pa
        return (pa.Codec("zstd"), pa.system_memory_pool()) if pa.Codec.is_available("zstd") else (None, None)
    except Exception:          # noqa: BLE001 - no pyarrow, or one without codecs: as they are
        return None, None


def _dump(obj, path: str) -> None:
    with _spilling(path), open(path, "wb") as fh:
        frames = _FrameWriter(fh)
        pickle.dump(_NoneColumns(obj) if isinstance(obj, pd.DataFrame) else obj, frames,
                    protocol=pickle.HIGHEST_PROTOCOL)
        frames.close()


def _load(path: str):
    with _spilling(path), open(path, "rb") as fh:
        obj = pickle.load(_FrameReader(fh))
    return obj.restore() if isinstance(obj, _NoneColumns) else obj


class _NoneColumns:
    """A DataFrame spilled without its object columns that hold None in every row,
    which restore() puts back in their places. A flood's two dozen application text
    columns are all None, and pickle writes and reads every None of every row: that
    was most of the time spent loading a pass's rows."""

    def __init__(self, df: pd.DataFrame):
        self.none = [(i, c) for i, c in enumerate(df.columns)
                     if df[c].dtype == object and bool(np.all(df[c].to_numpy() == None))]  # noqa: E711
        self.df = df.drop(columns=[c for _, c in self.none]) if self.none else df

    def restore(self) -> pd.DataFrame:
        df = self.df
        for i, c in self.none:
            df.insert(i, c, pd.Series(np.full(len(df), None, dtype=object), index=df.index, dtype=object))
        return df
