"""Self-contained HTML report: one file to attach to an incident ticket.

No external scripts, styles, fonts or images: the CSS is inline and the charts are the
figures of `pcapsense.plots` inlined as SVG; the ladder diagrams are SVG drawn by the
template. Jinja2 with autoescape: every string from the capture (URLs, Host, SNI,
certificate names, details) is escaped, and credentials are redacted (redact=True, the
default; the CLI's --no-redact turns it off).

    from pcapsense.render import html
    html.write(pcapsense.analyze("capture.pcap"), "report.html")
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from types import SimpleNamespace
from typing import IO

import numpy as np
import pandas as pd

from .. import __version__
from ..classify import all_inferred
from ..memory import only_columns, release
from .redact import redact_frame, redact_text
from .server_table import Servers
from .server_table import host as _host

TEMPLATES = Path(__file__).with_name("templates")
#: abnormal disconnects that get a card; the rest are counted
MAX_CARDS = 50
#: packets in each card's ladder diagram
LADDER_PACKETS = 12
_TEXT_COLUMNS = ("cause_detail", "http_last_target", "http_host", "tls_sni", "tls_certificate", "http_user_agent",
                 "http_server", "app_error", "alternatives")


def _env():
    import jinja2
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=True,  # every template, whatever its extension
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _num
    return env


def _num(v, digits: int = 3, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
        return "-"
    try:
        if pd.isna(v):
            return "-"
    except (TypeError, ValueError):
        pass
    if isinstance(v, (int, np.integer)):
        return f"{int(v)}{unit}"
    return f"{float(v):.{digits}f}{unit}"


def _s(v, redact: bool = True) -> str:
    """A capture string for the template (escaped there): missing -> '', redacted."""
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return ""
    s = str(v)
    return redact_text(s) if redact else s


def _fmt_bytes(n) -> str:
    if n is None or pd.isna(n):
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _ladder(pk: pd.DataFrame, client_dir: int, close_frame, evidence: set[int], n: int = LADDER_PACKETS) -> dict:
    """Rows of the ladder diagram: the last `n` packets, relative seq/ack, direction."""
    from ..plots import relative_seq
    if not len(pk):
        return {"rows": [], "skipped": 0, "height": 0}
    rel = relative_seq(pk)
    tail = rel.tail(n)
    t0 = tail["time"].iloc[0]
    rows = []
    for r in tail.itertuples(index=False):
        flags = str(r.flags)
        kind = "rst" if "R" in flags else "fin" if "F" in flags else "syn" if "S" in flags else \
            "data" if r.len > 0 else "ack"
        rows.append({
            "frame": int(r.frame), "from_client": int(r.dir) == client_dir,
            "t": f"+{(r.time - t0).total_seconds() * 1000:.3f} ms",
            "label": f"{flags} seq={int(r.rseq)}" + (f" ack={int(r.rack)}" if "A" in flags else "")
                     + f" len={int(r.len)}" + (" (retransmission)" if r.retransmission else ""),
            "states": f"{getattr(r, f'state_{client_dir}_after')} / {getattr(r, f'state_{1 - client_dir}_after')}",
            "kind": kind, "close": close_frame is not None and not pd.isna(close_frame) and int(r.frame) == int(close_frame),
            "evidence": int(r.frame) in evidence,
        })
    return {"rows": rows, "skipped": len(pk) - len(tail), "height": 40 + 30 * len(rows),
            "start": f"{t0:%H:%M:%S.%f} UTC"}


def _pick_cards(bad: pd.DataFrame, limit: int) -> pd.DataFrame:
    """At most `limit` abnormal connections, taken round-robin across causes (ranked by
    count) so that a rare cause is not crowded out by a frequent one. `bad` needs only
    the `cause` and `start` columns; the rows picked are returned (their labels are
    those of the connections table)."""
    if len(bad) <= limit:
        return bad
    counts = bad["cause"].astype(str).value_counts()
    groups = {c: bad[bad["cause"].astype(str) == c].sort_values("start") for c in counts.index}
    picked, i = [], 0
    while len(picked) < limit:
        added = False
        for c in counts.index:
            g = groups[c]
            if i < len(g) and len(picked) < limit:
                picked.append(g.index[i])
                added = True
        if not added:
            break
        i += 1
    return bad.loc[picked]


#: the columns _verdict and _servers read (they group, and a groupby copies every column
#: of what it groups: the whole table, at 10M packets 100 MiB a time)
_VERDICT_COLUMNS = ("abnormal", "cause", "inferred", "confidence", "start", "stream", "server_ip", "server_port",
                    "server_keepalive_timeout_s",
                    "server_keepalive_closes", "cause_detail", "python_error", "fix", "fix_section", "fix_snippet")
_SERVER_COLUMNS = ("server_ip", "server_port", "client_ip", "http_host", "tls_sni", "server_keepalive_timeout_s",
                   "server_keepalive_closes", "abnormal", "cause", "server_peak_concurrency")


def _verdict(df: pd.DataFrame, red: bool, mass=None) -> list[dict]:
    """The verdict's (cause) groups; the connections of `mass` (floods and scans, told
    in one line each by _mass) are left out."""
    df = only_columns(df, _VERDICT_COLUMNS)
    abnormal = df["abnormal"].to_numpy(dtype=bool)
    if mass:
        abnormal = abnormal & ~mass.rows
    bad = df[abnormal]
    out = []
    for cause, g in sorted(bad.groupby(bad["cause"].astype(str)),
                           key=lambda kv: (all_inferred(kv[1]), -len(kv[1]), kv[0])):
        first = g.sort_values("start").iloc[0]
        sv = Servers.of(g)
        busiest = sv.busiest()
        ka = first.get("server_keepalive_timeout_s")
        streams = g["stream"].sort_values().tolist()
        shown = streams[:30]
        out.append({
            "cause": cause, "count": len(g), "total": len(df), "inferred": all_inferred(g),
            "confidence": float(first.confidence) if "confidence" in g else None,
            "servers": [{"name": s, "count": int(c)} for s, c in zip(sv.keys(busiest[:5]), sv.count[busiest[:5]])],
            "more_servers": max(0, len(sv) - 5),
            "detail": _s(first.cause_detail, red), "example": int(first.stream),
            "python_error": _s(first.python_error, red), "fix": _s(first.fix, red),
            "fix_section": "" if _s(first.fix_section) in ("", "-") else _s(first.fix_section),
            "snippet": _s(first.fix_snippet, red),
            "keepalive": None if ka is None or pd.isna(ka) else float(ka),
            "keepalive_closes": int(first.server_keepalive_closes) if ka is not None and not pd.isna(ka) else 0,
            "filter": "tcp.stream in {" + " ".join(str(s) for s in shown) + "}",
            "filter_more": len(streams) - len(shown),
        })
    return out


def _mass(mass) -> dict:
    """Floods and scans for the template, one line each (pcapsense/render/findings.py)."""
    from .findings import ROWS_NOTE
    return {"findings": [{"kind": f.kind, "count": f.count, "head": f.head(), "what": f.what, "note": ROWS_NOTE,
                          "filter": f.wireshark} for f in mass.findings] if mass else [],
            "more": mass.more if mass else 0}


def _names(s: pd.Series, red: bool, k: int = 3) -> tuple[list[str], int]:
    v = s.dropna().astype(str)
    v = v[v != ""].value_counts()
    return [_s(x, red) for x in v.index[:k]], max(0, len(v) - k)


def _servers(df: pd.DataFrame, red: bool, limit: int = 30) -> tuple[list[dict], int]:
    df = only_columns(df, _SERVER_COLUMNS)
    sv = Servers.of(df)
    shown = sv.ranked(df["abnormal"].to_numpy(dtype=bool), limit, by_key=True)
    out = []
    for server, key in zip(shown.tolist(), sv.keys(shown)):
        g = df.iloc[sv.rows(server)]
        hosts, more_h = _names(g["http_host"], red) if "http_host" in g else ([], 0)
        snis, more_s = _names(g["tls_sni"], red) if "tls_sni" in g else ([], 0)
        ka = g["server_keepalive_timeout_s"].dropna() if "server_keepalive_timeout_s" in g else pd.Series([])
        causes = g.loc[g["abnormal"].astype(bool), "cause"].astype(str).value_counts()
        out.append({
            "server": key, "hosts": hosts, "more_hosts": more_h, "snis": snis, "more_snis": more_s,
            "connections": len(g), "abnormal": int(g["abnormal"].sum()),
            "causes": [{"cause": c, "count": int(n)} for c, n in causes.head(4).items()],
            "keepalive": float(ka.iloc[0]) if len(ka) else None,
            "keepalive_closes": int(g["server_keepalive_closes"].dropna().iloc[0]) if len(ka) else 0,
            "peak": int(g["server_peak_concurrency"].max()) if "server_peak_concurrency" in g and
            g["server_peak_concurrency"].notna().any() else None,
            "clients": int(g["client_ip"].nunique()),
        })
    return out, max(0, len(sv) - limit)


def _card(r, pk: pd.DataFrame | None, red: bool) -> dict:
    ev = [int(x) for x in str(r.evidence_frames or "").replace(" ", "").split(",") if x.isdigit()]
    cdir = int(getattr(r, "_client_dir", 0) or 0)
    ladder = _ladder(pk, cdir, r.close_frame, set(ev)) if pk is not None else None
    http = None
    nreq = getattr(r, "http_requests", None)
    if nreq is not None and not pd.isna(nreq) and int(nreq) > 0:
        http = {"method": _s(r.http_last_method, red), "target": _s(r.http_last_target, red),
                "host": _s(r.http_host, red), "statuses": _s(r.http_statuses, red),
                "requests": int(r.http_requests), "unanswered": _num(getattr(r, "http_unanswered", None))}
    return {
        "stream": int(r.stream), "cause": str(r.cause), "confidence": _num(r.confidence, 2),
        "client": f"{_host(r.client_ip)}:{r.client_port}", "server": f"{_host(r.server_ip)}:{r.server_port}",
        "closer": str(r.closer), "close_kind": str(r.close_kind), "close_frame": _num(r.close_frame),
        "closer_state": _s(r.closer_state) or "-", "peer_state": _s(r.peer_state) or "-",
        "client_state": _s(r.client_state) or "-", "server_state": _s(r.server_state) or "-",
        "phase": _s(r.phase), "conn_state": _s(r.conn_state), "history": _s(r.history, red),
        "start": f"{r.start:%Y-%m-%d %H:%M:%S.%f} UTC", "duration": _num(r.duration_s, 3, " s"),
        "bytes": f"{_fmt_bytes(r.client_bytes)} / {_fmt_bytes(r.server_bytes)}",
        "rtt": _num(r.rtt_ms, 3, " ms"),
        "detail": _s(r.cause_detail, red), "python_error": _s(r.python_error, red), "fix": _s(r.fix, red),
        "fix_section": "" if _s(r.fix_section) in ("", "-") else _s(r.fix_section),
        "snippet": _s(r.fix_snippet, red), "alternatives": _s(r.alternatives, red),
        "evidence": ev, "filter": _s(r.wireshark_filter) or f"tcp.stream eq {int(r.stream)}",
        "sni": _s(getattr(r, "tls_sni", None), red), "tls_alert": _s(getattr(r, "tls_alert", None), red),
        "http": http, "ladder": ladder,
    }


def context(analysis, *, redact: bool = True, max_cards: int = MAX_CARDS, charts: bool = True) -> dict:
    """Everything the template shows, as plain values (strings are escaped by Jinja2)."""
    from .. import plots
    cap = analysis.capture
    df = analysis.connections
    if redact:
        df = redact_frame(df, _TEXT_COLUMNS)
    n_abn = int(df["abnormal"].sum()) if len(df) else 0
    kinds = df["close_kind"].astype(str).value_counts() if len(df) else pd.Series(dtype=int)
    causes_all = df["cause"].astype(str).value_counts() if len(df) else pd.Series(dtype=int)
    facts = [
        ("file", _s(cap.path, redact)),
        ("format", f"{cap.format}{' (gzip)' if cap.compressed else ''}"),
        ("size", _fmt_bytes(cap.file_bytes) if cap.file_bytes is not None else "-"),
        ("link types", ", ".join(cap.link_types) or "-"),
        ("frames", f"{cap.frames} ({cap.tcp_packets} TCP, {cap.non_tcp_packets} other)"),
        ("span", "-" if cap.first_time is None else
         f"{cap.first_time:%Y-%m-%d %H:%M:%S.%f} → {cap.last_time:%H:%M:%S.%f} UTC ({cap.duration_s:.3f} s)"),
        ("TCP connections", f"{len(df)}: {int(kinds.get('FIN', 0))} closed by FIN, {int(kinds.get('RST', 0))} by RST, "
                            f"{int(kinds.get('none', 0))} not closed in the capture; {n_abn} abnormal"),
    ]
    if cap.truncated:
        facts.append(("truncated", "yes: the last record was cut; everything before it was analysed"))
    from .tlskeys import keys_line
    keys = keys_line(cap, df)
    if keys:
        facts.append(("TLS keys", _s(keys, redact)))
    charts_ctx = {}
    note = None
    if charts and len(df):
        view = analysis if df is analysis.connections else _View(analysis, df)
        _, note = plots.sample_connections(df, plots.TIMELINE_LIMIT)
        charts_ctx = {
            "timeline": plots.to_svg(plots.timeline(view), prefix="tl"),
            "concurrency": plots.to_svg(plots.concurrency(view), prefix="cc"),
            "idle": plots.to_svg(plots.idle_gaps(view), prefix="ig"),
        }
        release()              # (the figures' memory, freed once they are SVG text)
    abnormal = df["abnormal"].astype(bool) if len(df) else df["abnormal"]
    bad = df.loc[abnormal, ["cause", "start"]] if len(df) else df
    chosen = _rows(analysis, df, _pick_cards(bad, max_cards).index, redact) if len(bad) else bad
    chosen = chosen.sort_values(["start", "stream"]) if len(chosen) else chosen
    # the cards' packets, read again in one pass ({} for standard input)
    pks = analysis.packets_of(chosen["stream"].tolist()) if len(chosen) else {}
    # records, not itertuples: itertuples renames columns that start with '_' (_client_dir)
    cards = [_card(SimpleNamespace(**r), pks.get(int(r["stream"])) if pks else None, redact)
             for r in chosen.to_dict("records")]
    servers, more_servers = _servers(df, redact) if len(df) else ([], 0)
    from .findings import mass_findings
    mass = mass_findings(df) if len(df) else None
    return {
        "title": os.path.basename(_s(cap.path, redact)) or "capture",
        "version": __version__,
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "facts": facts, "warnings": [_s(w, redact) for w in cap.warnings],
        "error": _s(cap.error, redact) if cap.error else "",
        "connections": len(df), "abnormal": n_abn,
        "verdict": _verdict(df, redact, mass) if len(df) else [],
        "mass": _mass(mass),
        "all_causes": [{"cause": c, "count": int(n), "abnormal": c not in ("graceful", "idle-close", "incomplete")}
                       for c, n in causes_all.items() if n],
        "keepalive": [s for s in servers if s["keepalive"] is not None][:5],
        "servers": servers, "more_servers": more_servers,
        "charts": charts_ctx, "timeline_note": note,
        "cards": cards, "cards_left_out": len(bad) - len(chosen), "max_cards": max_cards,
        "ladder_unavailable": bool(len(chosen)) and not pks,
        "redacted": redact, "colors": plots.CAUSE_COLORS,
        "exceptions": _exceptions(analysis, df, redact),
    }


def _exceptions(analysis, df, redact: bool):
    """The program's exceptions (--log, record): None without a log."""
    ex = getattr(analysis, "exceptions", None)
    if ex is None:
        return None
    from .exceptions import lines, redacted, summary
    if redact:
        ex = redacted(ex)
    return {"summary": _s(summary(ex, getattr(analysis, "log_sources", [])), redact),
            "lines": [{"match": m, "text": _s(t, redact)} for m, t in lines(ex, df)]}


def _rows(analysis, df: pd.DataFrame, labels, redact: bool) -> pd.DataFrame:
    """The rows `labels` of the connections table with every column (for the cards):
    from `df`, or, when the analysis keeps only some columns of every connection (an
    out-of-core run, pcapsense/bounded.py), from its `rows_of(labels)`."""
    rows_of = getattr(analysis, "rows_of", None)
    if rows_of is None:
        return df.loc[labels]
    rows = rows_of(labels)
    return redact_frame(rows, _TEXT_COLUMNS) if redact else rows


class _View:
    """An Analysis with redacted connections (the plots label servers with SNI/Host)."""

    def __init__(self, analysis, df):
        self.capture, self.connections = analysis.capture, df
        if hasattr(analysis, "transitions"):        # (left out by analyze(tables="connections"))
            self.transitions = analysis.transitions


def render(analysis, *, redact: bool = True, max_cards: int = MAX_CARDS, charts: bool = True) -> str:
    """The report as one HTML string."""
    ctx = context(analysis, redact=redact, max_cards=max_cards, charts=charts)
    return _env().get_template("report.html.j2").render(**ctx)


def write(analysis, dest: str | os.PathLike | IO[str], **kw) -> None:
    """Render to a path or an open text file."""
    text = render(analysis, **kw)
    if hasattr(dest, "write"):
        dest.write(text)
    else:
        Path(dest).write_text(text, encoding="utf-8")
