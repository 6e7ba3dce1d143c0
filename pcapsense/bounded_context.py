"""The cross-connection steps of an out-of-core run (pcapsense/bounded.py) with no column
of every connection in memory: stream numbers, the context (classify/servers.py), the
pool-overflow pass and the keep-alive timeouts, from what each pass leaves in a file.

Why: keeping the context columns of every connection (about 200 bytes each) put a
10M-connection SYN flood at 3.4 GB, where a pass holds 150,000 connections. Here a
connection costs the parent 2 bytes (its pass, `owners`) plus, while the context is
counted, 16 (its start and end in the servers' sorted times, classify.Sweeps):

1. each pass writes its rows' context inputs to a file (`spill`: first frames, server,
   times, the flags Sweeps and held_context read, the client as text and the hashes of
   its groups) and gives the parent a `PassSummary`: its servers' names, time range,
   counts, and the groups (server and client) in which a connection was held in
   CLOSE_WAIT or closed as a pool's candidate;
2. `owners`: the stream order, a k-way merge of the passes' first frames;
3. `Context.build`: one sweep over the files fills the servers' sorted times and takes
   the rows of the held groups (held_context is counted on them alone); a second writes
   each pass's per-row context (`PassContext.rows`) next to its rows; the sorted times
   are then freed;
4. each pass is decided with its `PassContext` (its servers' part of the context:
   small, for a worker process), and `Claims` keeps the rows of the clients that have
   a pool candidate (pool.claims reads nothing else) and `Timeouts` the idle closes'
   idle times per server.

On disk, in the run's temporary directory: about 140 bytes a connection, uncompressed
(the inputs, 90; the first frames, 8; the per-row context, 41): 1.4 GB for 10M.

Groups are found by a 64-bit hash of their text (pandas' hash_pandas_object) and then
told apart by the text itself, so a collision costs a row read, never a wrong count.
Written by hand: these are classify's own steps, split the way the passes are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .classify import pool, servers
from .classify.rules import NS

#: first frames read from each pass's file at once by `owners`, and the frame numbers
#: it puts in order at once
MERGE_BLOCK = 1 << 14
MERGE_WINDOW = 1 << 22

#: what pool.claims reads of a row
POOL_COLUMNS = ("_close_ns", "_server_last_data_ns", "closer", "close_kind", "http_server_keep_alive",
                "http_client_keep_alive", "_start_ns", "_end_ns", "_last_data_ns", "client_ip", "http_user_agent",
                "_exchange_times")


@dataclass
class PassSummary:
    """What the parent keeps of a pass after step 1: its connections (`n`), its servers
    (`names`, by the pass's own codes), the range of the times Sweeps counts
    (`lo`, `hi`), the last packet's time (`end_ns`), how many connections carried
    several requests and how many the server reset, and the hashes of the groups
    held_context and pool.claims need whole."""

    n: int
    names: list = field(default_factory=list)
    lo: int = 0
    hi: int = 0
    end_ns: int | None = None
    multi: int = 0
    resets: int = 0
    held_groups: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))
    pool_groups: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))


#: odd 64-bit multiplier that mixes one hash into the next (Fibonacci hashing)
_MIX = np.uint64(0x9E3779B97F4A7C15)


def _group_hashes(names: np.ndarray, codes: np.ndarray, client: np.ndarray, agent: np.ndarray):
    """64-bit hashes of each row's (server, client) and (server, client, user agent)
    group, the same text giving the same hash in every pass: the servers' names and the
    user agents are hashed once per distinct value (a pass has few), the clients once
    per row, and the three combined as numbers (hashing the three text columns row by
    row was a third of spill())."""
    hk = pd.util.hash_array(np.asarray(names, dtype=object))[codes]
    ha_codes, agents = pd.factorize(agent)
    ha = pd.util.hash_array(np.asarray(agents, dtype=object))[ha_codes]
    with np.errstate(over="ignore"):
        hgrp = pd.util.hash_array(hk * _MIX + pd.util.hash_array(client))
        pgrp = pd.util.hash_array(hgrp * _MIX + ha)
    return hgrp, pgrp


def spill(df: pd.DataFrame, path: str) -> PassSummary:
    """Step 1 for a pass's prepared rows `df`: their context inputs to `path` (.npz) and
    first frames to `path`.ff (raw int64, read in blocks by owners())."""
    n = len(df)
    if not n:
        return PassSummary(0)
    names, codes = servers.server_names(df)
    start, end, close_ns, multi, server_rst = servers.server_rows(df)
    held, fin, delay = servers.held_rows(df)
    client = df["client_ip"].to_numpy(dtype=object)
    agent = df["http_user_agent"].to_numpy(dtype=object) if "http_user_agent" in df else np.full(n, None, object)
    agent = np.where(pd.isna(agent), "", agent)
    pre = pool.precandidates(df)
    hgrp, pgrp = _group_hashes(names, codes, client, agent)
    lo, hi = servers.Sweeps.time_range(start, end, close_ns, server_rst)
    np.asarray(df["first_frame"].to_numpy(), dtype=np.int64).tofile(path + ".ff")
    with open(path, "wb") as fh:
        np.savez(fh, code=codes.astype(np.int32), start=start, end=end, close_ns=close_ns, multi=multi,
                 server_rst=server_rst, held=held, fin=fin, delay=delay, hgrp=hgrp, pgrp=pgrp,
                 client=client.astype("S"))
    return PassSummary(n, names.tolist(), lo, hi, df["_end_ns"].max(), int(multi.sum()), int(server_rst.sum()),
                       np.unique(hgrp[held]), np.unique(pgrp[pre]))


def owners(paths: list[str], sizes: list[int]) -> np.ndarray:
    """Each connection's pass, in stream order (Wireshark's: by first frame), from the
    passes' first frames (each pass's in order; `sizes`: their counts): a frame starts
    at most one connection, so each window of MERGE_WINDOW frame numbers is an array in
    which every pass marks its connections' first frames (read MERGE_BLOCK at a time),
    read in order. Memory: the window and a block per pass, whatever the count."""
    n = sum(sizes)
    dtype = np.int16 if len(paths) < (1 << 15) else np.int32
    out = np.empty(n, dtype=dtype)
    bufs = [np.empty(0, dtype=np.int64) for _ in paths]
    read = [0] * len(paths)
    mark = np.empty(MERGE_WINDOW, dtype=dtype)
    filled, lo = 0, None

    def refill(k: int) -> None:                       # (pass k's next block, if it has one)
        count = min(MERGE_BLOCK, sizes[k] - read[k])
        bufs[k] = np.fromfile(paths[k], dtype=np.int64, count=count, offset=8 * read[k])
        read[k] += count
        if len(bufs[k]) < count:
            raise OSError(f"{paths[k]}: a pass's first frames end early")

    while filled < n:
        for k in range(len(paths)):                   # (a block of each pass that has none)
            if not len(bufs[k]) and read[k] < sizes[k]:
                refill(k)
        heads = [int(b[0]) for b in bufs if len(b)]
        lo = min(heads) if lo is None or min(heads) >= lo + MERGE_WINDOW else lo
        hi = lo + MERGE_WINDOW
        mark.fill(-1)
        for k in range(len(paths)):
            while len(bufs[k]):
                m = int(np.searchsorted(bufs[k], hi, side="left"))
                mark[bufs[k][:m] - lo] = k
                bufs[k] = bufs[k][m:]
                if len(bufs[k]) or read[k] >= sizes[k]:
                    break
                refill(k)
        got = mark[mark >= 0]
        out[filled:filled + len(got)] = got
        filled += len(got)
        lo = hi
    return out


class Context:
    """The context of every connection of an out-of-core run, built from the passes'
    files (build()): `names` (server key by global code), `servers` (as
    classify.Context.servers), `capture_end_s`, `peak` (per global code); per pass, its
    rows' global server codes (`codes_of`) and what deciding it needs (`of_pass`)."""

    def __init__(self, tmp: str, summaries: list[PassSummary]):
        self.tmp, self.summaries = tmp, summaries
        index: dict = {}
        self.maps = []                                  # per pass: its codes -> global codes
        for s in summaries:
            self.maps.append(np.array([index.setdefault(name, len(index)) for name in s.names], dtype=np.int64))
        self.names = np.array(list(index) + [None], dtype=object)[:len(index)]
        ends = [s.end_ns for s in summaries if s.n]
        self.end_ns = max(ends) if ends else 0
        self.capture_end_s = self.end_ns / NS
        self.peak = np.zeros(len(index), dtype=np.int64)
        self.servers: dict = {}
        self.pool_groups = np.unique(np.concatenate([s.pool_groups for s in summaries] or [np.empty(0, np.uint64)]))

    def inputs(self, k: int):
        """Pass k's context inputs (spill()'s file: an NpzFile, to be closed)."""
        return np.load(spill_path(self.tmp, "ctx", k))

    def codes_of(self, k: int, inputs=None) -> np.ndarray:
        """Pass k's rows' global server codes (`inputs`: its file, open)."""
        if inputs is None:
            with self.inputs(k) as z:
                return self.maps[k][z["code"]]
        return self.maps[k][inputs["code"]]

    def build(self) -> None:
        """Step 3: the servers' figures, and every pass's per-row context to its file."""
        sm = [s for s in self.summaries if s.n]
        ncodes = len(self.names)
        kr = servers.keyer(ncodes, min(s.lo for s in sm), max(s.hi for s in sm))
        n, n_multi, n_rst = (sum(getattr(s, a) for s in sm) for a in ("n", "multi", "resets"))
        held_groups = np.unique(np.concatenate([s.held_groups for s in sm]))
        parts = {name: _Filler(size, kr) for name, size in
                 (("start", n), ("end", n), ("mstart", n_multi), ("mend", n_multi), ("rst", n_rst))}
        held_rows = []
        for k, s in enumerate(self.summaries):
            if not s.n:
                continue
            with self.inputs(k) as z:
                code = self.codes_of(k, z)
                start, end, multi, rst = z["start"], z["end"], z["multi"], z["server_rst"]
                parts["start"].add(code, start)
                parts["end"].add(code, end)
                parts["mstart"].add(code[multi], start[multi])
                parts["mend"].add(code[multi], end[multi])
                parts["rst"].add(code[rst], z["close_ns"][rst])
                if len(held_groups):
                    mine = np.flatnonzero(np.isin(z["hgrp"], held_groups))
                    if len(mine):
                        held_rows.append((k, mine, code[mine], z["client"][mine], z["held"][mine], z["fin"][mine],
                                          z["delay"][mine], start[mine]))
        sw = servers.Sweeps(*(parts[p].done(ncodes) for p in ("start", "end", "mstart", "mend", "rst")))
        del parts
        figures = sw.servers()
        self.peak = figures["peak_concurrency"]
        self.servers = servers.server_dict(self.names, figures)
        held = self._held(held_rows)
        del held_rows
        for k, s in enumerate(self.summaries):
            if not s.n:
                continue
            with self.inputs(k) as z:
                code = self.codes_of(k, z)
                conc, later, reused_open, rst_burst = sw.rows(code, z["start"], z["end"], z["close_ns"], z["multi"],
                                                              z["server_rst"])
            opened, lazy = np.zeros(s.n, dtype=np.int64), np.zeros(s.n)
            if k in held:
                rows, o, lz = held[k]
                opened[rows], lazy[rows] = o, lz
            with open(spill_path(self.tmp, "ctxrows", k), "wb") as fh:
                np.savez(fh, **servers.context_columns(conc, later, reused_open, rst_burst, opened, lazy))
        del sw

    def _held(self, found: list) -> dict:
        """held_context() over the rows of the groups where a connection was held, by
        pass: (its rows, opened while held, lazy close) of the held ones."""
        if not found:
            return {}
        cols = [np.concatenate([f[i] for f in found]) for i in range(1, 8)]
        rows, code, client, held, fin, delay, start = cols
        which = np.concatenate([np.full(len(f[1]), f[0]) for f in found])
        opened, lazy = servers.held_context(held, fin, delay, start, self.end_ns, [code, client])
        out = {}
        for k in np.unique(which[held]).tolist():
            m = (which == k) & held
            out[k] = (rows[m], opened[m], lazy[m])
        return out

    def of_pass(self, k: int) -> PassContext:
        """What deciding and finishing pass k needs of this context (after build())."""
        names = self.names[self.maps[k]]
        return PassContext(self.tmp, k, self.maps[k], names,
                           {name: self.servers[name] for name in names.tolist() if name in self.servers},
                           self.pool_groups, self.capture_end_s)


@dataclass
class PassContext:
    """What deciding and finishing pass `k` needs of the run's context
    (Context.of_pass), small enough to send to a worker process: the map from the
    pass's server codes to the run's (`gmap`), its servers' keys by its codes (`names`)
    and their figures (`servers`, as classify.Context.servers), the groups pool.claims
    reads and the capture's end; the per-row inputs and context are read from the
    pass's files in `tmp`."""

    tmp: str
    k: int
    gmap: np.ndarray
    names: np.ndarray
    servers: dict
    pool_groups: np.ndarray
    capture_end_s: float

    def inputs(self):
        """The pass's context inputs (spill()'s file: an NpzFile, to be closed)."""
        return np.load(spill_path(self.tmp, "ctx", self.k))

    def rows(self) -> dict:
        """The pass's rows' context columns (classify.Context.rows)."""
        with np.load(spill_path(self.tmp, "ctxrows", self.k)) as z:
            return {name: z[name] for name in z.files}

    def pool_rows(self, inputs) -> np.ndarray:
        """The pass's rows that pool.claims may read (their client has a candidate;
        `inputs`: its file, open)."""
        if not len(self.pool_groups):
            return np.empty(0, dtype=np.int64)
        return np.flatnonzero(np.isin(inputs["pgrp"], self.pool_groups))


class _Filler:
    """A PerServer's times gathered pass by pass: into one preallocated array of keys
    when keyed, else as lists."""

    def __init__(self, size: int, kr):
        self.kr, self.at = kr, 0
        self.keys = np.empty(size, dtype=np.int64) if kr is not None else None
        self.codes, self.times = [], []

    def add(self, codes, times) -> None:
        if self.kr is not None:
            self.keys[self.at:self.at + len(codes)] = self.kr.key(codes, times)
            self.at += len(codes)
        else:
            self.codes.append(np.asarray(codes, dtype=np.int64))
            self.times.append(np.asarray(times, dtype=np.int64))

    def done(self, ncodes: int) -> servers.PerServer:
        if self.kr is not None:
            return servers.PerServer(None, None, ncodes, self.kr, keys=self.keys)
        cat = (lambda xs: np.concatenate(xs) if xs else np.empty(0, dtype=np.int64))
        return servers.PerServer(cat(self.codes), cat(self.times), ncodes, None)


class Claims:
    """The rows pool.claims reads, gathered while the passes are decided (`add` a pass's
    `piece`), then claimed at once (`claimed`): per pass, (row, claim) pairs."""

    def __init__(self):
        self.frames: list[pd.DataFrame] = []

    @staticmethod
    def piece(k: int, df: pd.DataFrame, rows: np.ndarray, gids: np.ndarray, keys: np.ndarray, cause):
        """Pass k's `rows` (its decided rows `df`, their stream numbers `gids`, server
        keys and causes) as claimed() reads them; None when there are none."""
        if not len(rows):
            return None
        sub = df.iloc[rows][[c for c in POOL_COLUMNS if c in df]].reset_index(drop=True)
        sub["_gid"], sub["_key"] = gids[rows], keys[rows]
        sub["_cause"] = np.asarray(cause, dtype=object)[rows]
        sub["_pass"], sub["_row"] = k, rows
        return sub

    def add(self, piece) -> None:
        if piece is not None:
            self.frames.append(piece)

    def claimed(self, passes: int) -> list[list]:
        out: list[list] = [[] for _ in range(passes)]
        if not self.frames:
            return out
        sub = pd.concat(self.frames, ignore_index=True)
        self.frames = []
        sub = sub.sort_values("_gid", kind="stable").reset_index(drop=True)   # (table order, as claims() sees it)
        for i, kept in pool.claims(sub, sub["_cause"].to_numpy(), sub["_key"].to_numpy(dtype=object)):
            out[int(sub["_pass"].iat[i])].append((int(sub["_row"].iat[i]), kept))
        return out


class Timeouts:
    """The servers' keep-alive timeouts (classify.keepalive_timeouts) from the idle
    closes of every pass (`add`: their server codes and idle times)."""

    def __init__(self):
        self.codes, self.idle = [], []

    def add(self, codes: np.ndarray, idle_s: np.ndarray) -> None:
        idle_s = np.asarray(idle_s, dtype=float)
        m = ~np.isnan(idle_s)
        self.codes.append(codes[m])
        self.idle.append(idle_s[m])

    def table(self, ncodes: int) -> tuple[np.ndarray, np.ndarray]:
        """Per server code: the median idle time (NaN: none) and how many closes."""
        codes = np.concatenate(self.codes) if self.codes else np.empty(0, np.int64)
        ka = pd.Series(np.concatenate(self.idle) if self.idle else np.empty(0)).groupby(codes).agg(["median", "count"])
        median = ka["median"].reindex(range(ncodes)).to_numpy()
        count = ka["count"].reindex(range(ncodes)).fillna(0).astype(np.int64).to_numpy()
        return median, count


def spill_path(tmp: str, what: str, k: int) -> str:
    """Where pass k's `what` (ctx: context inputs, ctxrows: per-row context) is kept."""
    return os.path.join(tmp, f"{what}-{k}.npz")
