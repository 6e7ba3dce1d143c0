"""Out-of-core runs: the CLI's terminal, JSON, Markdown and HTML reports of a capture of
any size in a flat amount of memory, with exactly what `analyze()` would give.

`analyze()` returns every connection as DataFrames, so its memory grows with the
capture (about 2 KiB per connection). The reports do not need every row at once. A
bounded run reads the capture in `passes`, each one a hash shard of the 4-tuples as in
`--jobs` (pcapsense/parallel.py: every per-connection decision is the single-process
one):

1. **read** each pass: engine, application stage, connections table, `classify.prepare`;
   its rows go to a temporary file and only `classify.CONTEXT_COLUMNS` stay (about 110
   bytes per connection);
2. **number** the streams of all passes by first frame (Wireshark's order, as
   `parallel.merge` does) and compute the cross-connection context over every
   connection in table order (`classify.context`);
3. **decide** each pass's rows (fast path and rules), keeping only every row's cause and
   idle time;
4. the **pool-overflow pass** and the servers' **keep-alive timeouts** over every
   connection, then each pass's rows are **finished**, redacted and written as JSON
   lines to a temporary file, and the few columns the reports read are kept
   (`REPORT_COLUMNS` for the terminal and Markdown, `HTML_COLUMNS`, `MINIMAL_COLUMNS`
   for the JSON alone);
5. the JSON document is the head and the passes' lines merged in stream order; the HTML
   report gets the transitions and HTTP exchanges of the connections its timeline
   draws, and reads its cards' whole rows back from the passes' files (`rows_of`).

What a pass spills goes through _FrameWriter: zstd-compressed 1 MiB frames when
pyarrow is there (a flood's rows and JSON lines shrink 24 and 80 times), object columns
that are None in every row left out of the pickles (_NoneColumns).

What stays in memory for every connection: the context columns, its cause and idle
time, its pass and position, and the columns of the reports asked for.
Everything else lives for one pass. The price: every pass reads and decodes every
frame's headers (about 0.2 s per million frames), so a capture is read `passes` times;
`auto_passes` takes one pass per PASS_BYTES of capture, so a capture that fits one pass
is analysed in memory as before.

Written by hand because no library does this: the steps are classify's own, and the
merge is the one of parallel.py.
"""

from __future__ import annotations

import math
import os
import pickle
import tempfile
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from . import classify, memory, parallel
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
#: once (about 1.8 KiB each, plus what every pass keeps of each, see below): a capture
#: seen to hold more is read again in passes (passes_for), so its connection count does
#: not set the peak: a million-SYN flood stays near 500 MB as an ordinary capture does
CONNECTION_BUDGET = 150_000

#: the columns the terminal and Markdown reports and `--fail-on` read
REPORT_COLUMNS = ("stream", "client_ip", "client_port", "server_ip", "server_port", "start", "duration_s",
                  "client_bytes", "server_bytes", "close_kind", "closer", "close_frame", "closer_state",
                  "peer_state", "conn_state", "history", "packets", "phase", "cause", "confidence", "cause_detail", "python_error",
                  "fix_section", "fix", "fix_snippet", "abnormal", "inferred", "wireshark_filter", "http_host", "tls_sni",
                  "server_keepalive_timeout_s", "server_keepalive_closes", "server_peak_concurrency",
                  "tls_decrypted")


#: what `--fail-on` and the JSON document's head read
MINIMAL_COLUMNS = ("stream", "close_kind", "cause", "abnormal")

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
        read = _read_in_workers if jobs > 1 and passes > 1 else _read_here
        contexts, first_part = read(files, opts, passes, tmp, progress, min(jobs, passes))
        r = _Run(files, unopened, opts, passes, tmp, contexts, first_part)
        del contexts, first_part
        res = r.classify(json_out is not None, columns, redact, keep_rows=html_out is not None)
        if json_out is not None:
            r.write_json(res, json_out)
        if html_out is not None:
            r.write_html(res, html_out, redact, html_options or {})
        return res


def _read_here(files, opts, passes, tmp, progress, jobs=1):
    """Step 1 in this process, pass after pass: every pass's context columns and the
    first pass's Partial (what was read: results, formats, counters)."""
    total = reader.input_bytes(files)
    contexts, first_part, counters, keylogs = [], None, [], []
    for k in range(passes):
        part = parallel.read_shard(files, opts, (k, passes),
                                   progress=(lambda pos, k=k: progress(k * total + pos)) if progress else None)
        if first_part is None:
            check_read(part)
            first_part = part
        counters.append(part.counters)
        keylogs.append(part.keylog)
        contexts.append(_read_pass(part, tmp, k, opts.tables == "all"))
        memory.release()
    first_part.counters = parallel.merged_counters(counters, 0)
    first_part.keylog = parallel.merged_keylog(keylogs)
    return contexts, first_part


def _read_in_workers(files, opts, passes, tmp, progress, jobs):
    """Step 1 in `jobs` worker processes (parallel.worker_pool), each leaving its pass's
    rows in `tmp` and returning the context columns; a worker that dies costs time:
    the passes are then read here."""
    from concurrent.futures.process import BrokenProcessPool
    total = reader.input_bytes(files)
    try:
        with parallel.worker_pool(jobs) as pool:          # (Ctrl-C: the passes not started are not read)
            futures = [pool.submit(_read_pass_in_worker, files, opts, k, passes, tmp) for k in range(passes)]
            got = []
            for k, f in enumerate(futures):
                got.append(f.result())
                if progress:
                    progress((k + 1) * total)
    except BrokenProcessPool:
        contexts, first_part = _read_here(files, opts, passes, tmp, progress)
        first_part.notes.append(parallel.worker_died(jobs, "the passes were read again in one process"))
        return contexts, first_part
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


def _read_pass(part: parallel.Partial, tmp: str, k: int, extra: bool) -> pd.DataFrame:
    """Step 1 for one pass: its prepared rows to a file in `tmp` (and with `extra`, for
    the HTML report, its transitions and HTTP exchanges); returns their context
    columns."""
    conns, times, trans = table_of(part)
    if extra:
        _dump((trans.tobytes(), part.http), _path(tmp, "extra", k))
    part.transitions = None
    del trans
    app_df, part.app, part.http = part.app, None, None
    df = classify.prepare(conns, app_df, times)
    del conns, app_df, times
    ctx = {c: _own(df[c]) for c in classify.CONTEXT_COLUMNS if c in df}
    _dump(df, _path(tmp, "pass", k))
    return ctx


def _own(col: pd.Series):
    """A column's values in a buffer of their own (a numpy or pandas extension array):
    a context column is freed as soon as _in_order has taken it, which a column of a
    DataFrame's 2-D block is not (the whole block stays, and taking a column out of it
    copies the rest: 270 MB held at a million connections)."""
    if isinstance(col.dtype, pd.api.extensions.ExtensionDtype):
        return col.array.copy()
    return col.to_numpy(copy=True)


def _path(tmp: str, what: str, k: int) -> str:
    return os.path.join(tmp, f"{what}-{k}.pkl")


class _Run:
    """Steps 2 to 5 over the passes' files in `tmp`."""

    def __init__(self, files, unopened, opts, passes, tmp, contexts, first_part):
        self.files, self.opts, self.passes, self.tmp = files, opts, passes, tmp
        self.n = n = sum(len(c["first_frame"]) for c in contexts)
        # 2. streams numbered by first frame across the passes, as parallel.merge does
        self.gids, order = parallel.rank_by_first_frame(                      # global id of each pass's rows
            [np.asarray(c["first_frame"], dtype=np.int64) for c in contexts])
        self.shard_of = np.empty(n, dtype=np.int32)                            # global id -> pass
        self.pos_of = np.empty(n, dtype=np.int64)                              # global id -> row in its pass
        for k, g in enumerate(self.gids):
            self.shard_of[g] = k
            self.pos_of[g] = np.arange(len(g))
        self.ctx_cols = _in_order(contexts, order) if n else None
        del order
        memory.release()
        counters = dict(first_part.counters)
        counters["streams"] = n
        first_part.counters = counters
        self.cap = capture_facts(first_part, opts, files, unopened, n)

    def classify(self, lines: bool, columns, redact: bool, keep_rows: bool) -> Result:
        """Steps 2-4: every pass's rows decided, then finished; their JSON lines (when
        `lines`) and whole rows (when `keep_rows`, for the HTML cards) to files; the
        `columns` of every connection returned, in table order."""
        n, gids, passes, tmp = self.n, self.gids, self.passes, self.tmp
        if not n:
            self.empty = empty = classify.run(conn_table.build(     # (as analyze() makes it)
                np.empty(0, dtype=layout.STREAM_DTYPE), np.empty(0, dtype=layout.TRANSITION_DTYPE)),
                pd.DataFrame(), np.empty(0, dtype=classify.TIMES_DTYPE))
            return Result(self.cap, empty[[c for c in columns if c in empty]])
        ctx_cols, self.ctx_cols = self.ctx_cols, None
        ctx_cols["stream"] = np.arange(n, dtype=np.int64)
        c = classify.context(ctx_cols)
        # 3. each pass's rows decided
        cause = np.empty(n, dtype=object)
        idle_s = np.empty(n)
        for k in range(passes):
            g = gids[k]
            if not len(g):                       # (a pass can hold no connection at all)
                continue
            df = self._pass_rows(k, c)
            out = classify.decide(df, c.keys[g], c.servers, c.capture_end_s)
            cause[g], idle_s[g] = out["cause"], out["_idle_s"]
            _dump(out, _path(tmp, "out", k))     # (the rows are made again from the pass's file)
            del df, out
            memory.release()
        # 4. across connections, then each pass finished and written
        claims = classify.pool.claims(ctx_cols, cause, c.keys)
        del ctx_cols, cause
        timeout, closes = classify.keepalive_timeouts(c.keys, idle_s)
        peak = np.array(c.peak_concurrency(), dtype=np.int64)
        claimed: list[list] = [[] for _ in range(passes)]
        for i, kept in claims:
            claimed[self.shard_of[i]].append((int(self.pos_of[i]), kept))
        reports = []
        for k in range(passes):
            g = gids[k]
            if not len(g):
                continue
            path = _path(tmp, "pass", k)
            df, out = self._pass_rows(k, c), _load(_path(tmp, "out", k))
            classify.pool.apply(out, claimed[k])
            df = classify.finish(df, out, timeout[g], closes[g], peak[g])
            del out
            if redact:
                from .render.redact import redact_frame
                df = redact_frame(df)
            if keep_rows:
                _dump(df, _path(tmp, "final", k))
            if lines:
                with _spilling(path), open(path, "wb") as fh:    # (the pass's rows are done: its lines replace them)
                    spill = _FrameWriter(fh, lines=True)
                    for block in jsonout.record_blocks(df):
                        spill.write(block)
                        spill.write(b"\n")
                    spill.close()
            report = pd.DataFrame({col: df[col] for col in columns if col in df})
            for col in SHARED_TEXT:
                if col in report:
                    report[col] = report[col].astype("category")
            reports.append(report)
            del df, report
            memory.release()
        table = _concat(reports).take(np.argsort(np.concatenate(gids), kind="stable")).reset_index(drop=True)
        return Result(self.cap, table)

    def _pass_rows(self, k: int, c) -> pd.DataFrame:
        """Pass k's prepared rows (step 1's file) with their global stream numbers and
        the cross-connection context `c` (classify.context)."""
        g = self.gids[k]
        df = _load(_path(self.tmp, "pass", k))
        conn_table.renumber(df, g)
        return classify.add_context(df, c.rows(g))

    def write_json(self, res: Result, fh) -> None:
        """Step 5: the document: the head, then every pass's lines in stream order (each
        pass's lines are already in that order)."""
        if not self.n:
            jsonout.write(Result(self.cap, self.empty), fh)
            return
        jsonout.write_head(res, fh)
        with _spilling(self.tmp):
            sources = [_FrameReader(open(_path(self.tmp, "pass", k), "rb")) for k in range(self.passes)]
        try:
            jsonout.write_records(fh, self._merged_lines(sources))
        finally:
            for s in sources:
                s.close()

    def _merged_lines(self, sources, chunk: int = 8192, read_bytes: int = 1 << 20):
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
            if not len(self.gids[k]) or not os.path.exists(_path(self.tmp, "extra", k)):
                continue
            raw, http = _load(_path(self.tmp, "extra", k))
            t = np.frombuffer(raw, dtype=layout.TRANSITION_DTYPE).copy()
            del raw
            t["stream"] = self.gids[k][t["stream"]]
            trans.append(t[np.isin(t["stream"], wanted)])
            http["stream"] = self.gids[k][http["stream"].to_numpy()]
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
            parts.append(df.iloc[self.pos_of[mine]].set_axis(mine))
            del df
        return pd.concat(parts).loc[labels]


#: report columns whose values repeat (one per cause, or per cause and client): kept
#: as categories, one string per distinct value (as Arrow text, every row's copy of
#: the fix and the Python error took 35 MiB at 10M packets)
SHARED_TEXT = ("cause_detail", "python_error", "fix_section", "fix", "fix_snippet")


def _in_order(parts: list[dict], order: np.ndarray) -> pd.DataFrame:
    """The passes' context columns (`parts`: each pass's {name: array}, see _own) as one
    table, rows in `order` (positions in the passes' concatenation): pd.concat then
    take, a column at a time, each column freed from `parts` as it is done (the whole
    concatenation and its reordered copy were twice the context columns of every
    connection at once: 300 MB at a million)."""
    keep = [p for p in parts if len(p.get("first_frame", ()))]    # (a pass without a connection)
    names = list(dict.fromkeys(c for p in keep for c in p))
    if any(len(p) != len(names) for p in keep):                   # (columns some passes lack)
        frames = [pd.DataFrame(p, copy=False) for p in keep]
        parts.clear()
        keep.clear()
        return pd.concat(frames, ignore_index=True).take(order).reset_index(drop=True)
    cols = {}
    for col in names:
        pieces = [pd.Series(p.pop(col), copy=False) for p in keep]
        cols[col] = pd.concat(pieces, ignore_index=True).take(order).reset_index(drop=True)
        del pieces
        memory.release()        # (the passes' copy of the column, given back before the next one)
    parts.clear()
    return pd.DataFrame(cols, copy=False)


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The passes' report rows as one table, categories merged (union_categoricals)."""
    from pandas.api.types import union_categoricals
    cols = {}
    for col in parts[0].columns:
        if all(isinstance(p[col].dtype, pd.CategoricalDtype) for p in parts):
            cols[col] = union_categoricals([p[col].array for p in parts], ignore_order=True)
        else:
            cols[col] = pd.concat([p[col] for p in parts], ignore_index=True)
    return pd.DataFrame(cols)


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

    #: raw bytes a frame (a reader holds whole frames: memory per file read)
    FRAME = 1 << 20

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
