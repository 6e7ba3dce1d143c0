"""Stage 5, the output columns: `finish()` turns decide()'s arrays (after the
pool-overflow pass) and the per-server facts into the table's cause, confidence,
evidence, phase and closer columns, the Python error and the fix (advice.py, per
distinct cause, User-Agent and method), `abnormal` and `inferred`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import advice
from .columns import with_columns
from .decision import PHASES


RESULT_COLUMNS = ("cause", "confidence", "evidence_frames", "alternatives", "python_error", "fix", "fix_section",
                  "fix_snippet", "cause_detail", "server_keepalive_timeout_s")


#: causes that rest on timing or on a pattern across connections, not on what the packets
#: show (an alert, a status, a GOAWAY, a RST to a SYN or to a request that crossed a FIN,
#: a forged TTL, retransmissions, a reset or a close while a response flowed): why the
#: server closed without answering (a rule or a timeout), why the client gave up, a
#: pool, a leak, an idle timeout
INFERRED_CAUSES = ("idle-close", "request-rejected", "server-timeout", "pool-overflow", "connection-leak",
                   "client-timeout", "unknown")
#: a match less sure than this is an inference whatever its cause
INFERRED_BELOW = 0.75


def inferred(cause: np.ndarray, confidence: np.ndarray, tls_view: np.ndarray) -> np.ndarray:
    """Per row: the cause is an inference (the `inferred` column; the verdict says what
    is certain first and words an inference as one). A TLS connection read without its
    keys (`tls_view`) is decided from its records' timing: every cause is inferred."""
    out = np.isin(cause, INFERRED_CAUSES) | (confidence < INFERRED_BELOW) | tls_view
    return out & (cause != "graceful") & (cause != "incomplete")


def all_inferred(group: pd.DataFrame) -> bool:
    """Every connection of a verdict's group is an inference (the reports word it so)."""
    return "inferred" in group and bool(group["inferred"].astype(bool).all())


def finish(df: pd.DataFrame, out: dict, keepalive_timeout_s, keepalive_closes, peak_concurrency) -> pd.DataFrame:
    """The output columns from decide()'s `out` (after the pool-overflow pass) and the
    per-row server facts; the working columns (`_*`) dropped."""
    for k in ("cause", "evidence_frames", "alternatives", "cause_detail", "phase", "closer"):
        out[k] = out[k].tolist()         # (lists: the columns' dtypes as before)
    cause = pd.Categorical(out["cause"], categories=advice.CAUSES)
    cols = {"cause": cause, "confidence": out["confidence"], "evidence_frames": out["evidence_frames"],
            "alternatives": out["alternatives"], "cause_detail": out["cause_detail"],
            "phase": pd.Categorical(out["phase"], categories=PHASES),
            "closer": pd.Categorical(out["closer"], categories=["client", "server", "middlebox", "none"])}
    # the advice per distinct (cause, User-Agent, method), not per row
    ua = df["http_user_agent"].to_numpy(dtype=object)
    meth = df["http_last_method"].to_numpy(dtype=object)
    cause_codes = cause.codes
    ua_codes, ua_vals = pd.factorize(ua, use_na_sentinel=True)
    meth_codes, meth_vals = pd.factorize(meth, use_na_sentinel=True)
    triple = (cause_codes.astype(np.int64) * (len(ua_vals) + 1) + ua_codes + 1) * (len(meth_vals) + 1) \
        + meth_codes + 1
    uniq, first, inverse = np.unique(triple, return_index=True, return_inverse=True)
    texts = np.array([advice.python_error(out["cause"][i], u if isinstance(u, str) else None,
                                          m if isinstance(m, str) else None)
                      for i, u, m in zip(first.tolist(), ua[first].tolist(), meth[first].tolist())], dtype=object)
    cols["python_error"] = texts[inverse.ravel()].tolist()
    for k, col in enumerate(("fix_section", "fix", "fix_snippet")):
        per_cause = np.array([advice.FIX[c][k] for c in advice.CAUSES], dtype=object)
        cols[col] = per_cause[cause_codes].tolist()
    cols["server_keepalive_timeout_s"] = keepalive_timeout_s
    cols["server_keepalive_closes"] = keepalive_closes
    cols["server_peak_concurrency"] = peak_concurrency
    cols["abnormal"] = ~np.isin(cause_codes, [advice.CAUSES.index(c) for c in ("graceful", "idle-close", "incomplete")])
    cols["inferred"] = inferred(np.asarray(out["cause"], dtype=object), np.asarray(out["confidence"]),
                                out["_tls_view"])
    df = with_columns(df, cols)
    drop = [c for c in df.columns if c.startswith("_") and c not in ("_client_dir",)]
    return df.drop(columns=drop)
