"""Terminal renderer (rich): capture summary, then the connections table with abnormal
endings first. Every string that came from the capture is passed as plain `Text`, never
as rich markup, so a hostile capture cannot inject markup or escape sequences.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..classify import keepalive_servers
from ..memory import only_columns
from ..tcp.connections import wireshark_filter
from .tlskeys import keys_line
from .server_table import host as _host

_CTRL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def safe(s) -> Text:
    """Capture text for the terminal: control characters shown as '?', no markup."""
    return Text(_CTRL.sub("?", str(s)))


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _verdict(df: pd.DataFrame, console: Console) -> None:
    """The block a developer acts on: per server and cause, how many, why, the fix.
    Memory: only the three key columns of the abnormal rows are grouped, and only the
    rows shown are taken from the table (a groupby of the table itself copied every
    column of every group: 100 MiB at 10M packets). Floods and scans come first, one line
    each (findings.mass_findings), and their connections are left out of the groups."""
    if "cause" not in df or not len(df):
        return
    from .findings import mass_findings
    bad = np.flatnonzero(df["abnormal"].to_numpy(dtype=bool))
    mass = mass_findings(df)
    if not len(bad) and not mass:
        console.print(Text("Verdict: no abnormal disconnect. ", style="bold green") +
                      Text(f"{len(df)} connections ended normally or are still open."))
        _keepalive_note(df, console)
        return
    console.print(Text("Verdict", style="bold"))
    if mass:
        # floods and scans: one line each, and their connections out of the groups below
        _mass_lines(mass, console)
        bad = bad[~mass.rows[bad]]
        if not len(bad):
            rest = len(df) - int(mass.rows.sum())
            if rest:
                console.print(f"  no other abnormal disconnect: the other {rest} connections ended normally "
                              f"or are still open")
            _keepalive_note(df, console)
            return
    keys = ["server_ip", "server_port", "cause"]
    group = df[keys].iloc[bad].groupby(keys, observed=True, sort=False).ngroup().to_numpy()
    ok = group >= 0                            # (a missing key: no group, as groupby drops it)
    bad, group = bad[ok], group[ok].astype(np.int64)
    sizes = np.bincount(group)
    inferred = df["inferred"].to_numpy(dtype=bool)[bad] if "inferred" in df else np.zeros(len(bad), dtype=bool)
    certain = np.bincount(group, weights=~inferred, minlength=len(sizes)) > 0
    # what the packets show first, then the inferences; by size, the largest first; equal
    # sizes in order of first appearance
    ranked = sorted(range(len(sizes)), key=lambda k: (not certain[k], -sizes[k]))
    streams = df["stream"].to_numpy()
    for k in ranked[:8]:
        rows = bad[group == k]
        first = df.iloc[rows[0]]
        ip, port, cause = first.server_ip, first.server_port, first.cause
        total = int(((df["server_ip"] == ip) & (df["server_port"] == port)).sum())
        line = Text(f"  {len(rows)} of {total} connections to ", style="bold")
        line.append_text(safe(f"{_host(ip)}:{port}"))
        if certain[k]:
            line.append(f" ended in {cause}", style="bold red")
        else:
            line.append(f" probably ended in {cause}", style="bold red")
            line.append(f" (inferred, confidence {float(first.confidence):.2f})", style="dim")
        console.print(line)
        console.print(Text("    ") + safe(first.cause_detail) + Text(f" (e.g. stream {first.stream})"))
        ka = first.get("server_keepalive_timeout_s")
        if cause in ("keepalive-race", "idle-close") and ka == ka and ka is not None:
            console.print(f"    the server closes idle connections after {ka:.3f} s "
                          f"(median of {int(first.server_keepalive_closes)} idle closes): keep your pool's idle "
                          f"timeout below that")
        console.print(Text("    Python saw: ", style="dim") + Text(first.python_error))
        sect = "" if first.fix_section == "-" else f" (article {first.fix_section})"
        console.print(Text(f"    Fix{sect}: ", style="dim") + Text(first.fix))
        if first.fix_snippet:
            for ln in str(first.fix_snippet).splitlines():
                console.print(Text("      " + ln, style="cyan"))
        frames = ",".join(str(s) for s in streams[rows[:20]].tolist())
        console.print(Text(f"    Wireshark: tcp.stream in {{{frames.replace(',', ' ')}}}", style="dim"))
    if len(ranked) > 8:
        console.print(f"  ... and {len(ranked) - 8} more (server, cause) groups")
    _keepalive_note(df, console)


def _mass_lines(mass, console: Console) -> None:
    """A flood or a scan in one line (counted, timed, named), and the display filter that
    selects its connections (pcapsense/render/findings.py)."""
    from .findings import ROWS_NOTE
    for f in mass.findings:
        line = Text("  ") + safe(f.head())
        line.stylize("bold")
        line.append(": ")
        line.append(f.what, style="bold red")
        line.append(f"; {ROWS_NOTE}")
        console.print(line, soft_wrap=True)
        console.print(Text("    Wireshark: ", style="dim") + safe(f.wireshark), soft_wrap=True)
    if mass.more:
        console.print(f"  ... and {mass.more} more floods or scans", soft_wrap=True)


def _keepalive_note(df: pd.DataFrame, console: Console) -> None:
    if "server_keepalive_timeout_s" not in df:
        return
    for r in keepalive_servers(df).head(5).itertuples(index=False):
        console.print(Text("  keep-alive: ", style="dim") + safe(f"{_host(r.server_ip)}:{r.server_port}") +
                      Text(f" closes idle connections after {r.server_keepalive_timeout_s:.3f} s "
                           f"({r.server_keepalive_closes} idle closes seen)"))


def render(analysis, console: Console, *, limit: int = 50) -> None:
    cap, df = analysis.capture, analysis.connections
    n_abn = int(df["abnormal"].sum()) if len(df) else 0
    head = Text()
    head.append("pcapsense ", style="bold")
    head.append_text(safe(cap.path))
    console.print(head)
    size = f", {_fmt_bytes(cap.file_bytes)}" if cap.file_bytes is not None else ""
    console.print(f"  {cap.format}{' (gzip)' if cap.compressed else ''}{size}, link types: "
                  f"{', '.join(cap.link_types) or '-'}")
    span = ""
    if cap.first_time is not None:
        span = f" from {cap.first_time:%Y-%m-%d %H:%M:%S.%f} UTC over {cap.duration_s:.3f} s"
    console.print(f"  {cap.frames} frames ({cap.tcp_packets} TCP){span}")
    kinds = df["close_kind"].value_counts() if len(df) else pd.Series(dtype=int)
    console.print(f"  {len(df)} TCP connections: {int(kinds.get('FIN', 0))} closed by FIN, "
                  f"{int(kinds.get('RST', 0))} by RST, {int(kinds.get('none', 0))} not closed in the capture; "
                  f"[bold]{n_abn} abnormal[/bold]")
    keys = keys_line(cap, df)
    if keys:
        console.print(Text("  ") + safe(keys), soft_wrap=True)
    for w in cap.warnings:
        console.print(Text("  warning: ", style="yellow") + safe(w), soft_wrap=True)
    if not len(df):
        return
    _verdict(df, console)
    _exceptions(analysis, console)
    order = _row_order(df)
    # only the columns the table reads: itertuples makes every row of every column
    # (150), 20 ms for the table of a small capture
    shown = only_columns(df, _TABLE_COLUMNS).iloc[order[:limit]]
    t = Table(show_lines=False, header_style="bold", pad_edge=False, box=None)
    for col, just in (("stream", "right"), ("client -> server", "left"), ("cause", "left"), ("ended by", "left"),
                      ("frame", "right"), ("closer/peer state", "left"), ("phase", "left"),
                      ("zeek", "left"), ("duration", "right"), ("bytes c/s", "right")):
        t.add_column(col, justify=just, no_wrap=True)
    for r in shown.itertuples(index=False):
        style = "red" if r.abnormal else None
        ended = "-" if r.close_kind == "none" else f"{r.closer} {r.close_kind}"
        states = "" if pd.isna(r.closer_state) else f"{r.closer_state}/{r.peer_state}"
        t.add_row(
            str(r.stream),
            safe(f"{_host(r.client_ip)}:{r.client_port} -> {_host(r.server_ip)}:{r.server_port}"),
            str(getattr(r, "cause", "")), ended,
            "" if pd.isna(r.close_frame) else str(r.close_frame),
            states, str(r.phase), str(r.conn_state),
            f"{r.duration_s:.3f}s",
            f"{_fmt_bytes(r.client_bytes)}/{_fmt_bytes(r.server_bytes)}",
            style=style,
        )
    console.print(t)
    if len(order) > limit:
        console.print(f"  ... {len(order) - limit} more connections (use --limit, or --format json)")
    if n_abn:
        first = wireshark_filter(df["stream"].iloc[order[:1]]).iloc[0]
        console.print(Text(f"  Inspect in Wireshark: {first}", style="dim"))


def _exceptions(analysis, console: Console) -> None:
    """The program's exceptions and the connections that explain them (--log, record)."""
    ex = getattr(analysis, "exceptions", None)
    if ex is None:
        return
    from .exceptions import lines, summary
    console.print(Text("Your program's errors", style="bold") + Text(": ") +
                  safe(summary(ex, getattr(analysis, "log_sources", []))), soft_wrap=True)
    for match, text in lines(ex, analysis.connections):
        style = {"explained": "red", "nearest": "yellow"}.get(match)
        console.print(Text("  ") + Text(_CTRL.sub("?", text), style=style), soft_wrap=True)


#: the columns of the connections table's rows (render)
_TABLE_COLUMNS = ("stream", "client_ip", "client_port", "server_ip", "server_port", "cause", "abnormal", "close_kind",
                  "closer", "close_frame", "closer_state", "peer_state", "phase", "conn_state", "duration_s",
                  "client_bytes", "server_bytes")


def _row_order(df: pd.DataFrame) -> np.ndarray:
    """Positions of the rows in table order: abnormal first, then by cause (taxonomy
    order, missing last), then by stream. Sorting the table itself copied all of it."""
    abn = (~df["abnormal"].to_numpy(dtype=bool)).astype(np.int8)
    keys = [df["stream"].to_numpy()]
    if "cause" in df:
        cause = df["cause"]
        codes = cause.cat.codes.to_numpy().astype(np.int64) if isinstance(cause.dtype, pd.CategoricalDtype) \
            else pd.factorize(cause, sort=True)[0].astype(np.int64)
        keys.append(np.where(codes < 0, np.iinfo(np.int64).max, codes))
    keys.append(abn)
    return np.lexsort(keys)
