"""The pool-overflow rule: it is decided across connections, so it lives here and not in
rules.py (whose rules read one connection at a time).

urllib3 keeps at most `maxsize` idle connections per pool. A connection it cannot put
back into a full pool is discarded ("Connection pool is full, discarding connection"):
the client closes (FIN) a keep-alive connection right after a complete response although
the server offered to keep it. One such close alone looks exactly like a client that
ended its work (a session closed after its last response, a one-shot `requests.get`), and
a capture of several client processes behind one address is full of those. What a full
pool adds is a pattern across the client's connections to that server; either of:

- **a full pool under load** (the pool is too small for the client's concurrency):
  when urllib3 discards a connection its pool is full, so at that moment the client has
  other keep-alive connections to the server sitting idle between exchanges that it
  reuses afterwards (the pool's kept ones). A client ending its work has none (its
  session's connections close with it); a second process or session of the same client
  address has its own connections, busy or idle at random. So a discard is claimed when
  at least POOL_IDLE_MIN other connections of the same client (address and User-Agent)
  to that server were idle at its close and carried a request later, and this happened
  again and again: at least MIN_DISCARDS such closes within CHURN_PERIOD_NS of each other.
  Within CHURN_PERIOD_NS of those, the pool's last discards count too: at them the kept
  connections sat idle and were not used again (the load ended; the server later closed
  them as idle, or they were still open at the end).
- **the end of a burst** (the workers finish together): several connections of the
  client go idle within POOL_WINDOW_NS of each other; at least two are closed by the
  client right after their responses, and at least one that went idle with them is kept
  open (the pool kept it: the server later closes it as idle, or it is still open when
  the capture ends) while none of the client's connections is still busy.

`claims()` returns (row, (detail, confidence)) pairs; `apply()` writes them into classify.decide()'s
output. Every threshold is a module constant, documented in README "Accuracy".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

POOL_WINDOW_NS = 50_000_000    # "right after the response", "went idle together"
POOL_BUSY_NS = 50_000_000      # still carrying data this long after the close: busy
POOL_IDLE_MIN = 2              # the pool's kept connections idle at a discard (maxsize >= 2)
MIN_DISCARDS = 3               # discards that make a pattern
CHURN_PERIOD_NS = 1_000_000_000  # the discards of one sustained overflow are this close together
SURVIVORS = ("idle-close", "keepalive-race", "connection-leak", "incomplete")
CONFIDENCE_FULL = 0.8
CONFIDENCE_BURST = 0.7


def precandidates(df: pd.DataFrame) -> np.ndarray:
    """Rows the client closed (FIN) right after a complete response on a connection both
    sides wanted to keep: the candidates, whatever their cause (an out-of-core run keeps
    the rows of their clients for claims(): pcapsense/bounded_context.py)."""
    close = df["_close_ns"].to_numpy()
    after_response = close - df["_server_last_data_ns"].to_numpy()
    return (df["closer"].to_numpy() == "client") & (df["close_kind"].to_numpy() == "FIN") \
        & df["http_server_keep_alive"].fillna(False).to_numpy().astype(bool) \
        & df["http_client_keep_alive"].fillna(False).to_numpy().astype(bool) \
        & (close > 0) & (after_response >= 0) & (after_response <= POOL_WINDOW_NS)


def _candidates(df: pd.DataFrame, cause: np.ndarray) -> np.ndarray:
    """precandidates() classified graceful before this pass."""
    return precandidates(df) & (cause == "graceful")


def claims(df: pd.DataFrame, cause, keys: np.ndarray) -> list[tuple[int, tuple[str, float]]]:
    """`df`: the table (or the rows of the clients with a candidate, their columns
    bounded_context.POOL_COLUMNS, in table order), `cause`: their causes before this pass,
    `keys`: classify.server_keys(). Each row is claimed at most once."""
    cause = np.asarray(cause, dtype=object)
    cand = _candidates(df, cause)
    if not cand.any():
        return []
    start = df["_start_ns"].to_numpy()
    close = df["_close_ns"].to_numpy()
    close = np.where(close > 0, close, df["_end_ns"].to_numpy())
    sv_last = df["_server_last_data_ns"].to_numpy()
    last_data = df["_last_data_ns"].to_numpy()
    survivor = np.isin(cause, SURVIVORS)
    client = df["client_ip"].to_numpy()
    agent = df["http_user_agent"].to_numpy(dtype=object)
    times = df["_exchange_times"].to_numpy(dtype=object)
    out: list[tuple[int, tuple[str, float]]] = []
    # one client: an address and a User-Agent (curl, httpx and requests processes behind
    # one address are different clients; urllib3's pool is one library's)
    agent = np.where(pd.isna(agent), "", agent)
    groups = pd.Series(np.arange(len(df))).groupby([keys, client, agent], sort=False, dropna=False).indices
    for idx in groups.values():
        q = idx[cand[idx]]
        if not len(q):
            continue
        st = np.sort(start[idx])
        claimed: dict[int, tuple[str, float]] = {}
        # --- a full pool under load
        n_reused, n_kept = _idle_and_reused(q, idx, close, times, survivor)
        full = n_reused >= POOL_IDLE_MIN
        if full.sum() >= MIN_DISCARDS:
            t_full = np.sort(close[q][full])
            t_dense = t_full[(np.searchsorted(t_full, t_full + CHURN_PERIOD_NS, side="right")
                              - np.searchsorted(t_full, t_full - CHURN_PERIOD_NS, side="left")) >= MIN_DISCARDS]
            near = (np.searchsorted(t_dense, close[q] + CHURN_PERIOD_NS, side="right")
                    - np.searchsorted(t_dense, close[q] - CHURN_PERIOD_NS, side="left")) > 0
            # within such a period, the pool's last discards: its kept connections sat idle
            # and were not used again (the load ended; the server closed them as idle)
            dense = near & (n_kept >= POOL_IDLE_MIN)
            for i, k in zip(q[dense].tolist(), n_kept[dense].tolist()):
                claimed[i] = (f"inferred: the client closed this keep-alive connection right after a complete "
                              f"response while {int(k)} other connection(s) of it to the server sat idle in its "
                              f"pool, as at {int(dense.sum())} such closes: its pool was full and discarded them",
                              CONFIDENCE_FULL)
        # --- the end of a burst
        sv = idx[survivor[idx]]
        rest = q[[i not in claimed for i in q.tolist()]] if claimed else q
        if len(sv) and len(rest):
            order = np.argsort(start[idx], kind="stable")
            latest = np.maximum.accumulate(last_data[idx][order])
            k = np.searchsorted(st, close[rest], side="right") - 1
            busy = (k >= 0) & (latest[np.maximum(k, 0)] > close[rest] + POOL_BUSY_NS)
            rest = rest[~busy]
            for lo_ in range(0, len(rest), 128):        # bounded matrices (128 x group)
                qq = rest[lo_:lo_ + 128]
                alive = (start[sv][None, :] <= close[qq][:, None]) & (close[sv][None, :] > close[qq][:, None]) \
                    & (np.abs(sv_last[sv][None, :] - sv_last[qq][:, None]) <= POOL_WINDOW_NS)
                peers = (np.abs(close[q][None, :] - close[qq][:, None]) <= POOL_WINDOW_NS) \
                    & (q[None, :] != qq[:, None])
                n_alive, n_peers = alive.sum(axis=1), peers.sum(axis=1)
                for i, a, p in zip(qq.tolist(), n_alive.tolist(), n_peers.tolist()):
                    if a and p:
                        claimed[i] = (f"inferred: the client closed this keep-alive connection right after a "
                                      f"complete response, together with {p} other(s), while it kept {a} "
                                      f"connection(s) to the server open and idle: its pool was full and "
                                      f"discarded the rest", CONFIDENCE_BURST)
        out += [(i, claimed[i]) for i in sorted(claimed)]
    return out


def _idle_and_reused(q: np.ndarray, idx: np.ndarray, close, times, survivor) -> tuple[np.ndarray, np.ndarray]:
    """For each row of `q`: how many other connections of the group `idx` sat idle
    between two of their exchanges when it closed (a response before, a request after:
    reused), and how many sat idle and were kept (reused, or never used again and left
    to the server's idle close or the capture's end). A connection's idle gaps do not
    overlap, so counting the gaps that hold a time counts the connections; the gaps of
    the whole group are swept at once (no loop over its connections)."""
    have = [j for j in idx.tolist() if isinstance(times[j], bytes)]     # (missing: None or NaN)
    tq = close[q]
    if not have:
        return np.zeros(len(q), dtype=np.int64), np.zeros(len(q), dtype=np.int64)
    blobs = [times[j] for j in have]
    n_ex = np.fromiter((len(b) // 16 for b in blobs), dtype=np.int64, count=len(blobs))
    ex = np.frombuffer(b"".join(blobs), dtype=np.int64).reshape(-1, 2)
    owner = np.repeat(np.arange(len(have)), n_ex)
    req, resp = ex[:, 0], ex[:, 1]
    # reused: [a response, the same connection's next request)
    nxt = np.flatnonzero(owner[1:] == owner[:-1])
    r_start, r_end = resp[nxt], req[nxt + 1]
    ok = (r_start > 0) & (r_start < r_end)
    r_start, r_end = r_start[ok], r_end[ok]
    # kept and never used again: [its last response, its close), for the group's survivors
    last = np.cumsum(n_ex) - 1
    surv = np.array([bool(survivor[j]) for j in have])
    k_start = resp[last][surv]
    k_end = close[np.asarray(have)[surv]]
    ok = (k_start > 0) & (k_start < k_end)
    k_start, k_end = k_start[ok], k_end[ok]

    def holding(starts, ends):
        return np.searchsorted(np.sort(starts), tq, side="right") - np.searchsorted(np.sort(ends), tq, side="right")

    reused = holding(r_start, r_end)
    return reused, reused + holding(k_start, k_end)


def apply(out: dict, found) -> None:
    """Write claims() into classify.decide()'s `out` (rows: its positions)."""
    for i, (detail, confidence) in found:
        out["cause"][i] = "pool-overflow"
        out["confidence"][i] = confidence
        out["alternatives"][i] = ",".join(x for x in ("graceful", out["alternatives"][i]) if x)
        out["cause_detail"][i] = detail
