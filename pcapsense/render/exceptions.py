"""The program's exceptions beside the verdict (pcapsense/correlate): the same lines for
the terminal, Markdown and HTML reports, and the JSON array. The messages come from the
program's log: hostile text like the capture's, escaped by each renderer and redacted
(redact_log_text) unless --no-redact."""

from __future__ import annotations

import math

import pandas as pd

from .redact import redact_log_text

#: at most this many exceptions listed in the terminal and Markdown reports (all in JSON)
SHOWN = 20


def _when(ts) -> str:
    return "--:--:--.---" if ts is None or ts is pd.NaT or pd.isna(ts) else f"{ts:%H:%M:%S.%f}"[:-3]


def summary(ex: pd.DataFrame, sources: list[str]) -> str:
    n = len(ex)
    m = ex["match"].value_counts() if n else {}
    src = ", ".join(sources) or "the log"
    return (f"{n} exception{'s' if n != 1 else ''} in {src}: {int(m.get('explained', 0))} explained by a "
            f"connection, {int(m.get('nearest', 0))} with only a nearby one, {int(m.get('none', 0))} with none")


def lines(ex: pd.DataFrame, df: pd.DataFrame | None = None) -> list[tuple[str, str]]:
    """(match, text) per exception, explained first, then in time order: "14:02:03.120
    ConnectionError (RemoteDisconnected) → stream 17, keepalive-race: <its detail>"."""
    if ex is None or not len(ex):
        return []
    detail = {}
    if df is not None and len(df) and "cause_detail" in df:
        detail = dict(zip(df["stream"].tolist(), df["cause_detail"].tolist()))
    rank = ex["match"].map({"explained": 0, "nearest": 1, "none": 2}).fillna(3)
    order = ex.assign(_r=rank, _t=ex["ts"]).sort_values(["_r", "_t"], kind="stable").index
    out = []
    for i in order[:SHOWN]:
        r = ex.loc[i]
        text = f"{_when(r['ts'])} {r['explanation']}"
        if r["match"] == "explained" and not pd.isna(r["stream"]):
            d = detail.get(int(r["stream"]))
            if d and not (isinstance(d, float) and math.isnan(d)):
                text += f": {d}"
            text += f" (confidence {r['confidence']:.2f})"
        out.append((str(r["match"]), text))
    if len(ex) > SHOWN:
        out.append(("more", f"... {len(ex) - SHOWN} more exceptions (--format json lists every one)"))
    return out


def redacted(ex: pd.DataFrame | None) -> pd.DataFrame | None:
    if ex is None or not len(ex):
        return ex
    ex = ex.copy()
    for col in ("message", "explanation"):
        ex[col] = ex[col].map(redact_log_text)
    return ex


def records(ex: pd.DataFrame | None) -> list[dict]:
    """The JSON array (docs/schema.md "exceptions")."""
    if ex is None:
        return []
    out = []
    for r in ex.to_dict("records"):
        rec = {}
        for k, v in r.items():
            if v is None or v is pd.NaT or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
                v = None
            elif isinstance(v, pd.Timestamp):
                v = v.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            elif hasattr(v, "item"):
                v = v.item()
            rec[k] = v
        out.append(rec)
    return out
