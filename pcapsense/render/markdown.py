"""Markdown summary for a ticket comment (`pcapsense analyze CAPTURE --format markdown`):
the verdict, the per-server table and the top abnormal disconnects.

Strings from the capture are escaped for Markdown and for the HTML that Markdown
renderers let through (`<`, `>`, `&`, `|`, backticks, emphasis characters), and
credentials are redacted unless redact=False.
"""

from __future__ import annotations

import re

import pandas as pd

from ..classify import all_inferred
from ..memory import only_columns
from .redact import redact_frame, redact_text
from .server_table import Servers
from .server_table import host as _host

_CTRL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MD = re.compile(r"([\\`*_\[\]|~])")  # enough to keep text inert: no links, emphasis, code, cells


def esc(v, redact: bool = True, maxlen: int = 200) -> str:
    """Capture text as inert Markdown: one line, HTML entities, Markdown characters escaped."""
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return ""
    s = str(v)
    if redact:
        s = redact_text(s)
    s = _CTRL.sub(" ", s)
    if len(s) > maxlen:
        s = s[:maxlen - 1] + "…"
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD.sub(r"\\\1", s)


def code(v, redact: bool = True, maxlen: int = 200) -> str:
    """Inline code span (backticks inside are dropped; nothing is interpreted in code)."""
    s = "" if v is None or v is pd.NA or (isinstance(v, float) and v != v) else str(v)
    if redact:
        s = redact_text(s)
    s = _CTRL.sub(" ", s).replace("`", "'").replace("|", "¦")
    if len(s) > maxlen:
        s = s[:maxlen - 1] + "…"
    return f"`{s}`" if s else ""


def render(analysis, *, redact: bool = True, top: int = 10) -> str:
    cap, df = analysis.capture, analysis.connections
    if redact:
        df = redact_frame(df)
    out: list[str] = []
    n_abn = int(df["abnormal"].sum()) if len(df) else 0
    out.append(f"### pcapsense: {esc(cap.path.rsplit('/', 1)[-1], redact)}")
    out.append("")
    span = f", {cap.duration_s:.3f} s from {cap.first_time:%Y-%m-%d %H:%M:%S} UTC" if cap.first_time is not None else ""
    out.append(f"{cap.frames} frames ({cap.format}{span}), {len(df)} TCP connections, **{n_abn} abnormal**.")
    from .tlskeys import keys_line
    keys = keys_line(cap, df)
    if keys:
        out.append(f"{esc(keys, redact)}.")
    for w in cap.warnings:
        out.append(f"> warning: {esc(w, redact)}")
    out.append("")
    if not len(df):
        return "\n".join(out) + "\n"
    # the abnormal rows by the few columns that group, rank and sort them; the other
    # columns are read only for the rows shown (df.loc)
    cols = ("cause", "start", "stream", "server_ip", "server_port", "confidence") + \
        (("inferred",) if "inferred" in df else ())
    from .findings import ROWS_NOTE, mass_findings
    abnormal = df["abnormal"].to_numpy(dtype=bool)
    bad = only_columns(df, cols)
    bad = bad[abnormal]
    mass = mass_findings(df)
    out.append("#### Verdict")
    out.append("")
    if not len(bad) and not mass:
        out.append(f"No abnormal disconnect: {len(df)} connections ended normally or are still open.")
    # floods and scans first, one line each; their connections are left out of the causes
    for f in mass.findings:
        out.append(f"- **{f.head(lambda a: esc(a))}: {f.what}**; {ROWS_NOTE}")
        out.append(f"  - Wireshark: {code(f.wireshark, False, 300)}")
    if mass.more:
        out.append(f"- … and {mass.more} more floods or scans")
    grouped = bad[~mass.rows[abnormal]] if mass else bad
    rest = len(df) - int(mass.rows.sum())
    if mass and not len(grouped) and rest:
        out.append(f"- no other abnormal disconnect: the other {rest} connections ended normally or are still open")
    # what the packets show first, then the inferences; the largest first
    groups = sorted(grouped.groupby(grouped["cause"].astype(str)),
                    key=lambda kv: (all_inferred(kv[1]), -len(kv[1]), kv[0]))
    for cause, g in groups:
        first = df.loc[g.sort_values("start").index[0]]
        sv = Servers.of(g)
        busiest = sv.busiest()[:3]
        srv = ", ".join(f"{esc(s)} ({n})" for s, n in zip(sv.keys(busiest), sv.count[busiest].tolist()))
        if len(sv) > 3:
            srv += f" and {len(sv) - 3} more"
        if all_inferred(g):
            out.append(f"- **{len(g)} of {len(df)}** connections probably ended in **{cause}** (to {srv}; "
                       f"inferred, confidence {float(g['confidence'].iloc[0]):.2f})")
        else:
            out.append(f"- **{len(g)} of {len(df)}** connections ended in **{cause}** (to {srv})")
        out.append(f"  - {esc(first.cause_detail, redact, 300)} (e.g. stream {int(first.stream)})")
        ka = first.get("server_keepalive_timeout_s")
        if cause in ("keepalive-race", "idle-close") and ka is not None and not pd.isna(ka):
            out.append(f"  - the server closes idle connections after **{float(ka):.3f} s**: keep the pool's idle "
                       f"timeout below that")
        out.append(f"  - Python saw: {code(first.python_error, redact, 300)}")
        sect = "" if str(first.fix_section) in ("", "-", "None") else f" (article {esc(first.fix_section)})"
        out.append(f"  - Fix{sect}: {esc(first.fix, redact, 300)}")
        if first.fix_snippet and not pd.isna(first.fix_snippet):
            for ln in str(first.fix_snippet).splitlines():
                out.append(f"    {code(ln, redact, 300)}")
        streams = " ".join(str(s) for s in g["stream"].sort_values().head(20))
        out.append(f"  - Wireshark: `tcp.stream in {{{streams}}}`" + (" (first 20)" if len(g) > 20 else ""))
    out.append("")
    ex = getattr(analysis, "exceptions", None)
    if ex is not None:
        from .exceptions import lines, redacted, summary
        if redact:
            ex = redacted(ex)
        out.append("#### Your program's errors")
        out.append("")
        out.append(esc(summary(ex, getattr(analysis, "log_sources", [])), redact, 400) + ".")
        out.append("")
        for match, text in lines(ex, df):
            out.append(f"- {'**' if match == 'explained' else ''}{esc(text, redact, 500)}"
                       f"{'**' if match == 'explained' else ''}")
        out.append("")
    out.append("#### Servers")
    out.append("")
    out.append("| server | host / SNI | connections | abnormal | causes | keep-alive timeout | peak concurrency |")
    out.append("|---|---|--:|--:|---|--:|--:|")
    servers_df = only_columns(df, ("server_ip", "server_port", "http_host", "tls_sni", "abnormal", "cause",
                                   "server_keepalive_timeout_s", "server_peak_concurrency"))
    sv = Servers.of(servers_df)
    shown = sv.ranked(servers_df["abnormal"].to_numpy(dtype=bool), 20)
    rows = []
    for server, key in zip(shown.tolist(), sv.keys(shown)):
        g = servers_df.iloc[sv.rows(server)]
        names = []
        for col in ("http_host", "tls_sni"):
            if col in g:
                v = g[col].dropna().astype(str)
                names += [x for x in v[v != ""].value_counts().index[:2] if x not in names]
        causes = g.loc[g["abnormal"].astype(bool), "cause"].astype(str).value_counts()
        ka = g["server_keepalive_timeout_s"].dropna() if "server_keepalive_timeout_s" in g else pd.Series([])
        peak = g["server_peak_concurrency"].max() if "server_peak_concurrency" in g else None
        rows.append("| " + " | ".join([
            code(key), ", ".join(esc(n, redact, 60) for n in names[:3]) or "-", str(len(g)),
            str(int(g["abnormal"].sum())), ", ".join(f"{c} {n}" for c, n in causes.head(4).items()) or "-",
            f"{float(ka.iloc[0]):.3f} s" if len(ka) else "-",
            "-" if peak is None or pd.isna(peak) else str(int(peak))]) + " |")
    out += rows
    if len(sv) > 20:
        out.append(f"| … {len(sv) - 20} more servers | | | | | | |")
    out.append("")
    if len(bad):
        out.append(f"#### Top disconnects ({min(top, len(bad))} of {len(bad)})")
        out.append("")
        out.append("| stream | client → server | cause | ended by | frame | closer / peer state | Python saw |")
        out.append("|--:|---|---|---|--:|---|---|")
        # the most confident first, one per cause before repeats
        pick = bad.sort_values(["confidence", "start"], ascending=[False, True])
        pick = pd.concat([pick.drop_duplicates("cause"), pick]).drop_duplicates("stream").head(top)
        for r in df.loc[pick.index].to_dict("records"):
            frame = "-" if pd.isna(r["close_frame"]) else str(int(r["close_frame"]))
            out.append("| " + " | ".join([
                str(int(r["stream"])),
                code(f"{_host(r['client_ip'])}:{r['client_port']} → {_host(r['server_ip'])}:{r['server_port']}"),
                str(r["cause"]), f"{r['closer']} {r['close_kind']}", frame,
                f"{r['closer_state']} / {r['peer_state']}" if not pd.isna(r["closer_state"]) else "-",
                esc(r["python_error"], redact, 120)]) + " |")
        out.append("")
    out.append(f"<sub>pcapsense · frame and stream numbers are Wireshark's"
               f"{' · credentials redacted' if redact else ''}</sub>")
    return "\n".join(out) + "\n"
