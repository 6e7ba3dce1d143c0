"""Stage 5: classify every connection with a cause from ../shared/taxonomy.md.

`run()` merges the TCP columns with the application facts, adds the cross-connection
context of each server (concurrency, reset bursts, inferred keep-alive timeout), and
applies the rules of `rules.py` in order; the first match is the `cause`, the others are
`alternatives`. What the Python client saw and the fix come from `advice.py`.

The stages, one module each (run() chains them; pcapsense/bounded.py runs them out of
core):

- columns.py: `prepare()`, the table the rules read (engine times, application facts);
- servers.py: `context()`, what a connection's decision needs of the others;
- decision.py: `decide()`, each row's cause (fast path, rules over columns, per-row rules);
- pool.py: the pool-overflow pass, across connections;
- outcome.py: `finish()`, the output columns (advice, abnormal, inferred).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..memory import release
from . import advice, pool, vector  # noqa: F401 - the package's modules, as classify.<module>
from .columns import TIMES_DTYPE, prepare, stream_times, with_columns  # noqa: F401
from .decision import PHASES, SLOW_CHUNK, decide  # noqa: F401
from .outcome import INFERRED_BELOW, INFERRED_CAUSES, RESULT_COLUMNS, all_inferred, finish, inferred  # noqa: F401
from .rules import NS  # noqa: F401
from .servers import (RST_BURST_NS, Context, add_context, context,  # noqa: F401
                      keepalive_servers, keepalive_timeouts, server_keys)


def run(conns: pd.DataFrame, app: pd.DataFrame, streams: np.ndarray) -> pd.DataFrame:
    """`app`: the application facts, indexed by stream (its columns are taken out as
    they are added); `streams`: the engine's stream rows, or just their `stream_times()`.
    The steps, each usable on its own by an out-of-core run (pcapsense/bounded.py):
    prepare() the rows, context() across connections, decide() each row, the pool
    overflow pass across connections, finish() each row."""
    df = prepare(conns, app, streams)
    if not len(df):            # (no TCP: the same steps, so the same columns and types;
        df = df.copy()         # one block per dtype, as a table of rows has)
    c = context(df)
    df = add_context(df, c.rows())
    out = decide(df, c.keys, c.servers, c.capture_end_s)
    release()                  # (the rules' inputs, made and freed a chunk at a time)
    pool.apply(out, pool.claims(df, out["cause"], c.keys))
    timeout, closes = keepalive_timeouts(c.keys, out["_idle_s"])
    df = finish(df, out, timeout, closes, c.peak_concurrency())
    if not len(df):
        for col in EMPTY_TYPES:
            df[col] = df[col].astype(EMPTY_TYPES[col])
    return df


#: the columns whose type an empty table would infer otherwise (float64 from no values)
EMPTY_TYPES = {"client_ip": "str", "server_ip": "str", "evidence_frames": "str", "alternatives": "str",
               "cause_detail": "str", "python_error": "str", "fix_section": "str", "fix": "str",
               "fix_snippet": "str", "server_peak_concurrency": "int64"}
