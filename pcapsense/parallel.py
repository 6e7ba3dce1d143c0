"""Stages 1-4 on all cores or a Dask cluster: a capture read as shards of connections.

`read_shard(files, options, (k, n))` runs the read, decode, track and application
stages for the connections whose 4-tuple hashes to shard k of n. `run()` maps the shards
to worker processes (`jobs`) or to a `dask.distributed.Client`, and `merge()` reduces the
partial results into the one a single process would have produced; the parent then
builds the tables and classifies (the classifier needs every connection of a server at
once: concurrency, reset bursts, keep-alive timeout, pool overflow).

Why shards of connections, not byte ranges of the file: a TCP connection's state at a
byte-range boundary is unknown to the next range, and Wireshark's stream numbers depend
on everything before. With hash shards every packet of a 4-tuple goes to one worker, so
every per-connection decision (stream split on port reuse, states, sequence analysis,
HTTP framing, Zeek's timers) is exactly the single-process one; stream numbers are
restored by ranking the streams of all shards by their first frame, which is how
Wireshark numbers them. Several files (rotated captures) are read in order by every
worker, so connections that cross a file boundary stay whole too.

The price, and where it stops scaling: every worker reads and decodes every frame's
headers to find the 4-tuple (frame numbers and capture counters stay global), and the
parent's merge, classification and rendering are serial. bench/README.md measures both.

Written by hand because no library does this: multiprocessing / concurrent.futures and
Dask do the scheduling; this module only decides what a shard is and how to reduce.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import struct
import tempfile
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from . import memory
from .capture import layout, reader
from .capture.reader import CaptureError
from .app import facts as app_facts
from .app import keylog as app_keylog
from .app.stage import AppStage
from .tcp import connections as conn_table

if TYPE_CHECKING:
    from concurrent.futures import Executor

#: below this many capture bytes per job, one more process costs more than it saves
MIN_BYTES_PER_JOB = 256 << 20


@dataclass
class Options:
    verify_checksums: bool = False
    split: str = "wireshark"
    layers: str = "all"
    strict: bool = False
    tables: str = "all"            # "connections": no HTTP exchanges, and only the transitions
                                   # the connections table reads (connections.handshake_acks)
    window: tuple[int, int] = (reader.TS_MIN, reader.TS_MAX)    # frames read: from_ns <= time < to_ns
    max_frames: int = 0            # stop after this many frames (0: all)
    max_streams: int = 0           # a shard tracking more connections raises TooManyConnections (0: no limit)
    keylog: tuple = ()             # TLS key log files (app.keylog: each worker reads them itself)


class TooManyConnections(Exception):
    """A shard's engine passed `Options.max_streams` connections: `streams` of them after
    `fraction` of the input's bytes, in shard `shard` of `shards`. The reading stops
    there (no memory is spent on the rest); the CLI reads the capture again in more
    passes (bounded.passes_for)."""

    def __init__(self, streams: int, fraction: float, shards: int):
        super().__init__(streams, fraction, shards)      # (the args: it pickles from a worker)
        self.streams, self.fraction, self.shards = streams, fraction, shards

    def __str__(self) -> str:
        return (f"more than {self.streams - 1} connections in 1/{self.shards} of the capture after "
                f"{self.fraction:.0%} of it")

    def estimate(self) -> int:
        """The connections of the whole capture, were the rest like what was read."""
        return math.ceil(self.streams * self.shards / max(self.fraction, 1e-6))


@dataclass
class Partial:
    """What one shard hands back: the engine's stream rows and transitions (raw rows of
    layout.STREAM_DTYPE / TRANSITION_DTYPE in any object with the buffer protocol: the
    engine's Table, a bytearray, a merged numpy array; bytes once pickled), the
    application facts of its connections, and what the reader said of each file. Stream
    ids are the shard's own until `merge()`."""

    streams: object
    transitions: object
    app: pd.DataFrame          # application facts, indexed by stream (app.facts.COLUMNS)
    http: pd.DataFrame         # HTTP exchanges (app.facts.EXCHANGE_COLUMNS)
    counters: dict
    results: list
    formats: set = field(default_factory=set)
    notes: list = field(default_factory=list)     # for the capture's warnings
    keylog: dict | None = None     # the key log's summary (AppStage.keylog_summary), None without one


def read_shard(files: list[str], opts: Options, shard: tuple[int, int] = (0, 1),
               progress: Callable[[int], None] | None = None) -> Partial:
    """Read `files` in order as one capture, tracking the connections of `shard`;
    `progress(bytes)` gets the bytes read so far over all the files.
    Raises CaptureError when a single file cannot be read at all, or on any error with
    `opts.strict`; otherwise an unreadable file is recorded in `results` and skipped."""
    eng = reader.new_engine(verify_checksums=opts.verify_checksums, zeek_split=opts.split == "zeek",
                            app=opts.layers == "all", shard=shard, window=opts.window,
                            max_frames=opts.max_frames)
    transitions = bytearray()          # grown in place: no second copy when reading ends
    keep = opts.tables == "all"
    keys = app_keylog.load(list(opts.keylog)) if opts.keylog and opts.layers == "all" else None
    app = AppStage(eng, exchanges=keep, keys=keys) if opts.layers == "all" else None

    def drain():
        new = eng.take_transitions()
        if keep:
            transitions.extend(new)
        else:                          # 10 rows a connection, of which the table reads one
            t = np.frombuffer(new, dtype=layout.TRANSITION_DTYPE)
            transitions.extend(t[conn_table.handshake_acks(t)].tobytes())
        if app is not None:
            app.step()

    results = []
    formats = set()
    before = 0                      # bytes of the files already read (progress is cumulative)
    total = reader.input_bytes(files) if opts.max_streams and "-" not in files else 0

    def step(pos: int) -> None:
        drain()
        if progress:
            progress(before + pos)
        if opts.max_streams:
            n = eng.counters()["streams"]
            if n > opts.max_streams:
                raise TooManyConnections(n, min(1.0, (before + pos) / total) if total else 1.0, shard[1])

    for f in files:
        eng.new_file()
        try:
            res = reader.run(f, eng, progress=step, on_secrets=app.add_secrets if app is not None else None)
        except CaptureError as exc:
            if len(files) == 1 or opts.strict:
                raise
            results.append(reader.ReadResult(path=f, compressed=False, file_bytes=None, error=exc))
            continue
        drain()
        if res.error is not None and opts.strict:
            raise res.error
        before += res.file_bytes or 0
        c = eng.counters()
        if c["format"]:
            formats.add(reader.FORMAT_NAMES[c["format"]] + ("-nanosecond" if c["pcap_nano"] else ""))
        results.append(res)
        if res.limited:                # max_frames reached: the later files are not read
            break
    if app is not None:
        app.finish()
        app_df, http = app.tables()
    else:
        app_df, http = app_facts.facts_frame([]), app_facts.exchanges_frame([])
    counters = eng.counters()
    return Partial(streams=eng.take_streams(), transitions=transitions, app=app_df, http=http,
                   counters=counters, results=results, formats=formats,
                   keylog=app.keylog_summary() if app is not None else None)


def merge(parts: list[Partial]) -> Partial:
    """The shards' results as one: streams renumbered by first frame (Wireshark's
    order), every stream reference remapped, transitions in frame order. The parts are
    consumed: each one's rows are let go as soon as they are in the result, so the
    parent holds the merged tables plus one shard, not every copy at once."""
    if len(parts) == 1:
        return parts[0]
    arrays = [np.frombuffer(p.streams, dtype=layout.STREAM_DTYPE) for p in parts]
    new_ids, order = rank_by_first_frame([a["first_frame"] for a in arrays])
    streams = np.empty(len(order), dtype=layout.STREAM_DTYPE)
    del order
    maps = []
    for i, p in enumerate(parts):
        a = arrays[i]
        m = np.empty(len(a), dtype=np.int64)
        m[a["stream"]] = new_ids[i]                           # local ids are 0..len-1
        maps.append(m)
        streams[new_ids[i]] = a                               # each row straight to its new place
        arrays[i] = a = p.streams = None
    streams["stream"] = np.arange(len(streams), dtype=streams["stream"].dtype)

    counts = [len(p.transitions) // layout.TRANSITION_DTYPE.itemsize for p in parts]
    t = np.empty(sum(counts), dtype=layout.TRANSITION_DTYPE)
    at = 0
    for p, m, k in zip(parts, maps, counts):
        t[at:at + k] = np.frombuffer(p.transitions, dtype=layout.TRANSITION_DTYPE)
        t["stream"][at:at + k] = m[t["stream"][at:at + k]]
        p.transitions = None
        at += k
    # a frame's transitions all belong to one stream (one shard): a stable sort by frame
    # restores the single-process order
    t = t[np.argsort(t["frame"], kind="stable")]

    apps, https = [], []
    for p, m in zip(parts, maps):
        a, h = p.app, p.http                   # (consumed: concat takes their columns out)
        a.index = pd.Index(m[a.index.to_numpy()], dtype="int64", name="stream")
        apps.append(a)
        h["stream"] = m[h["stream"].to_numpy()]
        https.append(h)
    app_df = app_facts.concat(apps, app_facts.facts_frame([]))
    http = app_facts.concat(https, app_facts.exchanges_frame([]))
    first_part = parts[0]
    counters = merged_counters([p.counters for p in parts], len(streams))
    return Partial(streams=streams, transitions=t, app=app_df, http=http,
                   counters=counters, results=first_part.results, formats=first_part.formats,
                   notes=[n for p in parts for n in p.notes], keylog=merged_keylog([p.keylog for p in parts]))


#: counters each shard counts for its own connections only (summed when merged); the
#: others count frames, which every shard reads
SHARD_COUNTERS = ("tls_framed_streams", "tls_records", "tls_framing_lost", "tls_framing_resynced")


def merged_keylog(summaries: list) -> dict | None:
    """The key log summary of a capture from its shards' (or passes'): every shard read
    the same key log and secrets blocks; each decrypted its own connections' records."""
    if summaries[0] is None:
        return None
    out = dict(summaries[0])
    for k in ("records_decrypted", "records_by_length", "records_lost"):
        out[k] = sum(s[k] for s in summaries if s)
    return out


def merged_counters(counters: list[dict], streams: int) -> dict:
    """The capture's counters from its shards' (or passes')."""
    out = dict(counters[0])
    out["streams"] = streams
    for k in SHARD_COUNTERS:
        if k in out:
            out[k] = sum(c.get(k, 0) for c in counters)
    return out


def worker_died(jobs: int, then: str) -> str:
    """The capture's warning when a worker process was lost and its work redone."""
    return f"a worker process of --jobs {jobs} died (killed or out of memory); {then}"


def rank_by_first_frame(firsts: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """Wireshark's stream numbers for the streams of several shards (`firsts`: each
    shard's first frames, in its rows' order): their rank by first frame. A packet
    starts at most one stream, so first frames are distinct. Returns each shard's new
    ids, in its rows' order, and `order`: the positions of all shards' rows, concatenated,
    in new-id order."""
    first = np.concatenate(firsts) if firsts else np.empty(0, dtype=np.int64)
    order = np.argsort(first, kind="stable")
    del first
    new_id = np.empty(len(order), dtype=np.int64)
    new_id[order] = np.arange(len(order), dtype=np.int64)
    bounds = np.cumsum([0] + [len(f) for f in firsts])
    return [new_id[bounds[k]:bounds[k + 1]] for k in range(len(firsts))], order


def auto_jobs(files: list[str], layers: str = "all") -> int:
    """The default for `jobs`: the cores this process may use, but no more than one per
    MIN_BYTES_PER_JOB of capture (small captures run in one process), and one for stdin
    or the TCP layer alone: without the application stage a shard costs about as much as
    the whole (every shard still reads and decodes every frame: 0.40 s of the engine's
    0.44 s on 2M packets), so more processes only add their start and the merge."""
    if "-" in files or layers == "tcp":
        return 1
    return max(1, min(usable_cores(), reader.input_bytes(files) // MIN_BYTES_PER_JOB))


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity, and a cgroup CPU quota when one
    is set (a container limited to 2 CPUs on a 64-core host gets 2, not 64)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    for path, parse in (("/sys/fs/cgroup/cpu.max", _cgroup2_quota),
                        ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", _cgroup1_quota)):
        try:
            with open(path) as fh:
                quota = parse(fh.read())
        except (OSError, ValueError):
            continue
        if quota:
            cores = min(cores, max(1, int(quota + 0.5)))
    return cores


def _cgroup2_quota(text: str) -> float | None:
    q, period = text.split()[:2]
    return None if q == "max" else int(q) / int(period)


def _cgroup1_quota(text: str) -> float | None:
    q = int(text.strip())
    if q <= 0:
        return None
    with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as fh:
        return q / int(fh.read().strip())


def _executor(jobs: int) -> Executor:
    # (imported here: a capture read in one process, the usual small one, needs no pool)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    # fork is cheap (the parent's imports are inherited) and safe while the parent has
    # no other thread; otherwise a fresh forkserver with the package preloaded
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("fork")
    else:
        ctx = multiprocessing.get_context("forkserver" if os.name == "posix" else "spawn")
        if ctx.get_start_method() == "forkserver":
            ctx.set_forkserver_preload(["pcapsense.parallel"])
    return ProcessPoolExecutor(max_workers=jobs, mp_context=ctx)


@contextlib.contextmanager
def worker_pool(jobs: int):
    """`_executor(jobs)` for a with-block. When the block is left by an exception
    (Ctrl-C, a failed shard) the workers are stopped at once and the work not started
    is cancelled; an error of the pool's own shutdown (a pool interrupted while it
    starts its processes) does not replace the exception, and no worker is left behind
    waiting for work."""
    pool = _executor(jobs)
    try:
        yield pool
    except BaseException:
        # the workers are stopped (their shards are not wanted any more), then the pool
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            if proc.is_alive():
                proc.terminate()
        try:
            pool.shutdown(wait=True, cancel_futures=True)
        except BaseException:  # noqa: BLE001 - the first exception is the one to report
            pass
        raise
    pool.shutdown(wait=True)


_SIZES = struct.Struct("<qq")


def _shard_to_file(files: list[str], opts: Options, shard: tuple[int, int]) -> str:
    """A worker's side of `run()`: read one shard and leave it in a temporary file; the
    path is what goes back through the pool. Returning the Partial itself made the
    parent hold the whole pickled message and its unpickled copy at once (a 390 MiB
    peak at 10M packets, 362 MiB now); from a file the engine's two row tables are read
    straight into their final buffers and only the small pickle of the rest is
    unpickled."""
    with memory.no_cyclic_gc():         # (a forkserver's worker does not inherit it)
        part = read_shard(files, opts, shard)
    streams, trans = memoryview(part.streams), memoryview(part.transitions)
    part.streams = part.transitions = None
    fd, path = tempfile.mkstemp(prefix="pcapsense-shard-", suffix=".bin")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(_SIZES.pack(streams.nbytes, trans.nbytes))
            fh.write(streams)
            fh.write(trans)
            pickle.dump(part, fh, protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException:
        _unlink(path)
        raise
    return path


def _load_shard(path: str) -> Partial:
    """The Partial a worker left in `path` (see _shard_to_file); the file is removed."""
    try:
        with open(path, "rb") as fh:
            n_streams, n_trans = _SIZES.unpack(fh.read(_SIZES.size))
            streams, trans = bytearray(n_streams), bytearray(n_trans)
            if fh.readinto(streams) != n_streams or fh.readinto(trans) != n_trans:
                raise OSError(f"{path}: a worker's shard file is short")
            part = pickle.load(fh)
    finally:
        _unlink(path)
    part.streams, part.transitions = streams, trans
    return part


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class WorkerError(RuntimeError):
    """A Dask worker failed for another reason than the capture (killed, lost, an
    environment without pcapsense). `str(err)` is one line."""


def run(files: list[str], opts: Options, *, jobs: int = 1, client=None,
        progress: Callable[[int], None] | None = None) -> Partial:
    """Read `files` as one capture in `jobs` shards (local processes; the parent reads
    shard 0 itself, with `progress`), or in one shard per Dask worker thread when a
    `dask.distributed.Client` is given (the files must be readable at the same paths on
    the workers). Returns the merged result. A local worker that dies (killed, out of
    memory) costs time, not the result: the capture is then read again in this process,
    and `Partial.notes` says so."""
    if client is not None:
        n = max(1, sum(client.nthreads().values()))
        futures = [client.submit(read_shard, files, opts, (k, n), pure=False) for k in range(n)]
        try:
            return merge(client.gather(futures))
        except CaptureError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the cluster raises, one line
            msg = " ".join(str(exc).split())[:300]
            raise WorkerError(f"the Dask cluster failed: {type(exc).__name__}: {msg}") from None
    if jobs <= 1 or "-" in files:
        return read_shard(files, opts, (0, 1), progress)
    from concurrent.futures.process import BrokenProcessPool
    futures, loaded = [], set()
    try:
        with worker_pool(jobs - 1) as pool:
            futures = [pool.submit(_shard_to_file, files, opts, (k, jobs)) for k in range(1, jobs)]
            parts = [read_shard(files, opts, (0, jobs), progress)]
            for f in futures:
                path = f.result()
                loaded.add(path)
                parts.append(_load_shard(path))
        return merge(parts)
    except BrokenProcessPool:
        part = read_shard(files, opts, (0, 1))
        part.notes.append(worker_died(jobs, "the capture was read again in one process"))
        return part
    finally:                    # shards never loaded (another one failed): their files go
        for f in futures:       # (the pool has shut down: every future is done)
            if f.done() and not f.cancelled() and f.exception() is None and f.result() not in loaded:
                _unlink(f.result())
