"""The program's errors beside the capture: the Python exceptions in a log (or in the
stderr `pcapsense record` kept) matched to the connections that explain them.

    logscan.py   lines in, exceptions out (tracebacks, log lines, urllib3 warnings)
    match.py     each exception to the connection that explains it (time, cause, server)

`attach(analysis, logs)` adds `analysis.exceptions` (one row per exception: docs/schema.md)
and the connections' `exceptions` column.
"""

from __future__ import annotations

import datetime as dt
import os

import pandas as pd

from .logscan import LogException, Scanner, scan_text  # noqa: F401
from .match import COLUMNS, KIND_CAUSES, correlate  # noqa: F401


class LogError(Exception):
    """A log that cannot be read (one line: path and why)."""


def parse_tz(text: str | None) -> dt.tzinfo | None:
    """`--log-tz`: 'UTC', '+02:00', '-0500' (None: this machine's local zone)."""
    if not text:
        return None
    t = text.strip()
    if t.upper() in ("UTC", "Z", "GMT"):
        return dt.timezone.utc
    sign = -1 if t.startswith("-") else 1
    t = t.lstrip("+-").replace(":", "")
    if not (t.isdigit() and len(t) in (2, 4)):
        raise ValueError(f"not a UTC offset: {text!r} (UTC, +02:00, -0500)")
    return dt.timezone(sign * dt.timedelta(hours=int(t[:2]), minutes=int(t[2:] or 0)))


def read_log(path, tz: dt.tzinfo | None = None) -> list[LogException]:
    """The exceptions in a log file (read as UTF-8, undecodable bytes replaced), line
    by line: a log of any size is read in constant memory (only its events are kept)."""
    sc = Scanner(tz)
    try:
        with open(path, "r", encoding="utf-8", errors="replace", newline="") as fh:
            for line in fh:
                sc.feed(line)
    except OSError as exc:
        raise LogError(f"{path}: cannot read the log: {exc.strerror or exc}") from None
    sc.close()
    return sc.events


def attach(analysis, logs: list[tuple[str, list[LogException]]], tz: dt.tzinfo | None = None) -> None:
    """Match every log's exceptions to `analysis.connections`: sets `analysis.exceptions`
    and the connections' `exceptions` column (text: "HH:MM:SS.mmm Name; ...")."""
    df = analysis.connections
    cap = analysis.capture
    first = cap.first_time.value if cap.first_time is not None else None
    last = cap.last_time.value if cap.last_time is not None else None
    tables, col = [], None
    for source, events in logs:
        t, c = correlate(df, events, source=source, first_ns=first, last_ns=last, tz=tz)
        tables.append(t)
        col = c if col is None else col.combine(c, lambda a, b: "; ".join(x for x in (a, b) if x) or None)
    analysis.exceptions = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=list(COLUMNS))
    if col is not None:
        df["exceptions"] = col.to_numpy()
    analysis.log_sources = [os.fspath(s) for s, _ in logs]
