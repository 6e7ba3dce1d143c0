"""Terminal renderer (rich): capture summary, then the connections table with abnormal
endings first. Every string that came from the capture is passed as plain `Text`, never
as rich markup, so a hostile capture cannot inject markup or escape sequences.
"""

from __future__ import annotations

import re

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

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
    for w in cap.warnings:
        console.print(Text("  warning: ", style="yellow") + safe(w), soft_wrap=True)
    if not len(df):
        return
    order = df.assign(_abn=~df["abnormal"]).sort_values(["_abn", "stream"])
    shown = order.head(limit)
    t = Table(show_lines=False, header_style="bold", pad_edge=False, box=None)
    for col, just in (("stream", "right"), ("client -> server", "left"), ("ended by", "left"),
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
            ended,
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
        first = order.iloc[0]
        console.print(Text(f"  Inspect in Wireshark: {first.wireshark_filter}", style="dim"))


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip
