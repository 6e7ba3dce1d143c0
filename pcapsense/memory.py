"""Give memory that Python has freed back to the operating system, between stages.

A stage frees most of what it built once its successor exists (the engine's stream
rows once the connections table is built, the batches of facts once concatenated...),
but the allocators keep freed memory for reuse: glibc's malloc keeps freed heap
chunks, and pyarrow (pandas' string columns) keeps its own pool. The next stage's
large arrays often come from another of them (numpy's big arrays from fresh mmaps, text
from pyarrow), so the kept memory only adds to the peak. On the 10M-packet benchmark
capture 120 MiB of the RSS after analyze() was such kept memory; `release()` returns it
in a few milliseconds. Dask's workers do the same ("trim memory", malloc_trim).

Hand-written because it is two calls: glibc's malloc_trim(0) (through ctypes; a no-op
elsewhere) and pyarrow's MemoryPool.release_unused() when pandas has loaded pyarrow.

Also here: `shared_strings()`, text columns with one string object per distinct value
(the classifier's text columns, the redacted URLs), `only_columns()`, the columns a
report groups or sorts by, and `no_cyclic_gc()`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import sys
from typing import Callable, Iterator

import numpy as np
import pandas as pd

_libc = None
try:
    _name = ctypes.util.find_library("c")
    _libc = ctypes.CDLL(_name) if _name else None
    if _libc is not None and not hasattr(_libc, "malloc_trim"):    # musl, macOS
        _libc = None
except OSError:
    _libc = None


def release() -> None:
    """Return freed memory to the OS (glibc heap, pyarrow's pool). About 10 ms."""
    pa = sys.modules.get("pyarrow")
    if pa is not None:
        try:
            pa.default_memory_pool().release_unused()
        except Exception:       # noqa: BLE001 - an old pyarrow without it: nothing to release
            pass
    if _libc is not None:
        _libc.malloc_trim(0)


def only_columns(df: pd.DataFrame, names) -> pd.DataFrame:
    """The columns of `df` among `names` (those it has), to filter, group or sort by:
    a groupby, a mask or a sort copies every column of what it works on, and a report
    that did so on the connections table (146 columns) copied all of it."""
    return df[[c for c in names if c in df.columns]]


def shared_strings(s: pd.Series, fn: Callable[[str], str] | None = None) -> np.ndarray:
    """The text of `s` as an object array of Python strings, None for missing, with one
    string object per distinct value (user agents, hosts, servers repeat on every
    connection: one object per row was 60 bytes a row per column); `fn`, when given, is
    applied once per distinct value."""
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    out = np.full(len(s), None, dtype=object)
    if len(uniques):
        values = np.asarray(uniques, dtype=object)
        if fn is not None:
            values = np.asarray([fn(v) for v in values], dtype=object)
        present = codes >= 0
        out[present] = values[codes[present]]
    return out


@contextlib.contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Python's cycle collector paused for a block, restored after. The analysis makes
    millions of small containers (messages, fact rows, exchange tuples, rule inputs)
    that hold no reference cycles, and every 700 of them woke the collector, which then
    walked the ever larger set of live ones: 0.12 s of 2.3 s on the 2M-packet benchmark.
    Reference counting still frees everything as before (the peak RSS at 10M packets
    is unchanged, see bench/README.md)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
