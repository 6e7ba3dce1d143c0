"""matplotlib figures of an analysis (the HTML report inlines the same figures as SVG).

Every function takes an `Analysis` (or, where only the connections are needed, its
`connections` DataFrame) and returns a `matplotlib.figure.Figure`, built on the Agg
backend without touching pyplot's global state, so it works in scripts, servers and
notebooks alike (a notebook displays a returned Figure by itself)::

    import pcapsense, pcapsense.plots as pp
    a = pcapsense.analyze("capture.pcap")
    pp.timeline(a)                 # every connection as a bar, grouped by server, coloured by cause
    pp.time_sequence(a, stream=3)  # Stevens graph of one connection, FIN/RST marked
    pp.concurrency(a)              # open connections per server over time
    pp.idle_gaps(a)                # idle gaps and the inferred keep-alive timeout
    pp.to_svg(fig)                 # an inline <svg> string (what the HTML report embeds)

Strings from the capture (SNI, Host) only appear as plain text: mathtext is switched off
for them and the SVG writer escapes them.
"""

from __future__ import annotations

import io
import re
from typing import Iterable

import numpy as np
import pandas as pd

from matplotlib.figure import Figure
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .classify import keepalive_servers
from .memory import only_columns
from .render.server_table import Servers
from .render.server_table import host as _host

#: colour per cause: the benign endings muted, the abnormal ones saturated
CAUSE_COLORS = {
    "graceful": "#9cc9a4", "idle-close": "#a9c4df", "incomplete": "#d3d3d3", "unknown": "#8c8c8c",
    "keepalive-race": "#d62728", "request-rejected": "#ff7f0e", "server-timeout": "#8c564b",
    "body-too-large": "#e377c2", "rate-limited": "#bcbd22", "pool-overflow": "#9467bd",
    "connection-leak": "#17becf", "proxy-disconnect": "#7f3c8d", "tls-handshake-failure": "#1f77b4",
    "tls-certificate-rejected": "#3969ac", "middlebox-reset": "#000000", "server-abort": "#b2182b",
    "connection-refused": "#f2b701", "network-loss": "#525252", "client-timeout": "#e68310",
    "client-abort": "#11a579", "http2-goaway": "#80ba5a",
}
SIDE_COLORS = {"client": "#1f4e9c", "server": "#c0392b", "middlebox": "#6a1b9a", "none": "#555555"}

#: connections drawn one bar each; beyond this the timeline samples (and says so)
TIMELINE_LIMIT = 300

#: points of a server's concurrency line drawn at most (a flood of a million
#: connections is two million steps; the plot is about a thousand pixels wide)
STEP_POINTS = 8192
_CTRL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def cause_color(cause) -> str:
    return CAUSE_COLORS.get(str(cause), "#8c8c8c")


def _text(s, maxlen: int = 60) -> str:
    """Capture text as a plain matplotlib label: no control characters, bounded."""
    s = _CTRL.sub("?", "" if s is None else str(s))
    return s if len(s) <= maxlen else s[:maxlen - 1] + "…"


def _figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _conns(x) -> pd.DataFrame:
    return x.connections if hasattr(x, "connections") else x


def _t0(df: pd.DataFrame, analysis=None) -> pd.Timestamp | None:
    cap = getattr(analysis, "capture", None)
    if cap is not None and cap.first_time is not None:
        return cap.first_time
    return df["start"].min() if len(df) else None


def _secs(ts, t0) -> np.ndarray:
    """Seconds since t0 for datetimes or int nanoseconds (NaN where missing)."""
    s = pd.Series(ts)
    if pd.api.types.is_datetime64_any_dtype(s):
        return ((s - t0).dt.total_seconds()).to_numpy(dtype=float, na_value=np.nan)
    ns = pd.to_numeric(s, errors="coerce").astype("float64")
    return ((ns - t0.value) / 1e9).to_numpy(dtype=float, na_value=np.nan)


def _server_label(df: pd.DataFrame, key: str, rows: np.ndarray) -> str:
    """`ip:port` (`key`), plus the SNI or Host most seen on it (`rows`: its positions
    in `df`)."""
    g = only_columns(df, ("tls_sni", "http_host")).iloc[rows]
    name = None
    for col in ("tls_sni", "http_host"):
        if col in g:
            v = g[col].dropna()
            v = v[v.astype(str) != ""]
            if len(v):
                name = v.astype(str).value_counts().index[0]
                break
    if not name or name in (key, key.rsplit(":", 1)[0]):
        return _text(key, 48)
    return _text(f"{name} ({key})", 48)


def sample_connections(df: pd.DataFrame, limit: int = TIMELINE_LIMIT) -> tuple[pd.DataFrame, str | None]:
    """At most `limit` connections: every abnormal one first (earliest first), then an
    evenly spaced sample of the others. Returns the rows and a note when it sampled.
    The choice is made on the `abnormal` and `start` columns alone and only the rows
    chosen are taken from `df` (filtering and sorting `df` itself copied all of it)."""
    pos, note = _sample(df, limit)
    return (df if pos is None else df.iloc[pos]), note


def _sample(df: pd.DataFrame, limit: int) -> tuple[np.ndarray | None, str | None]:
    """sample_connections() as positions in `df` (None: every row) and the note."""
    if len(df) <= limit:
        return None, None
    # (positions, not labels: a million rows' labels dropped and sorted took 185 MB)
    start = df["start"].reset_index(drop=True)
    abnormal = df["abnormal"].to_numpy(dtype=bool) if "abnormal" in df else np.zeros(len(df), dtype=bool)
    abn, rest = np.flatnonzero(abnormal), np.flatnonzero(~abnormal)
    abn = start.iloc[abn].sort_values().index.to_numpy()[:limit]
    room = limit - len(abn)
    if room > 0 and len(rest):
        idx = np.linspace(0, len(rest) - 1, num=min(room, len(rest))).round().astype(int)
        rest = start.iloc[rest].sort_values().index.to_numpy()[np.unique(idx)]
    else:
        rest = rest[:0]
    n_abn_all = int(abnormal.sum())
    note = (f"showing {len(abn) + len(rest)} of {len(df)} connections: "
            + (f"all {len(abn)} abnormal" if len(abn) == n_abn_all else f"{len(abn)} of {n_abn_all} abnormal")
            + f" and an evenly spaced sample of {len(rest)} of the {len(df) - n_abn_all} others")
    return np.concatenate([abn, rest]), note


def _close_events(analysis, streams: Iterable[int]) -> pd.DataFrame:
    """First FIN and first RST sent by each side of each stream: stream, endpoint, kind, time."""
    tr = getattr(analysis, "transitions", None)
    if tr is None or not len(tr) or "endpoint" not in tr:
        return pd.DataFrame(columns=["stream", "endpoint", "what", "time"])
    t = tr[tr["stream"].isin(list(streams)) & tr["kind"].isin(["FIN_OUT", "FIN_CROSS_OUT", "RST_OUT"])]
    t = t.assign(what=np.where(t["kind"].astype(str) == "RST_OUT", "RST", "FIN"))
    return t.sort_values("frame").drop_duplicates(["stream", "endpoint", "what"])[["stream", "endpoint", "what", "time"]]


def timeline(analysis, *, limit: int | None = None, width: float = 11.0) -> Figure:
    """Every connection as a bar from its first to its last packet, grouped by server,
    coloured by cause; FIN (|) and RST (x) markers coloured by who sent them (from
    `analysis.transitions`, or the first FIN/RST only when given a DataFrame); ticks for
    every request (grey) and response (black). Over `limit` connections, all
    abnormal ones and a sample of the rest are drawn and the title says so (default:
    TIMELINE_LIMIT)."""
    limit = TIMELINE_LIMIT if limit is None else limit
    df_all = _conns(analysis)
    fig = _figure(width, 2.5)
    ax = fig.add_subplot()
    if not len(df_all):
        ax.text(0.5, 0.5, "no TCP connections", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    t0 = _t0(df_all, analysis if hasattr(analysis, "capture") else None)
    pos, note = _sample(df_all, limit)
    df = df_all if pos is None else df_all.iloc[pos]
    # (the servers of every connection counted once: a sweep has one per connection)
    sv = Servers.of(df_all)
    rank = np.empty(len(sv), dtype=np.int64)
    rank[sv.busiest()] = np.arange(len(sv))
    server = sv.codes if pos is None else sv.codes[pos]
    df = df.assign(_server=server, _srank=rank[server]).sort_values(["_srank", "start", "stream"])
    y, ypos, labels, centers, gap = 0.0, [], [], [], 1.0
    last = None
    for srv in df["_server"]:
        if last is not None and srv != last:
            y += gap
        ypos.append(y)
        last = srv
        y += 1
    df["_y"] = ypos
    for srv, g in df.groupby("_server", sort=False):
        centers.append(g["_y"].mean())
        labels.append(_server_label(df_all, sv.keys([srv])[0], sv.rows(srv)))
    n = len(df)
    fig.set_size_inches(width, min(max(2.2, 0.9 + 0.16 * (n + gap * len(centers))), 10))
    start = _secs(df["start"], t0)
    end = _secs(df["end"], t0)
    span = max(np.nanmax(end) if len(end) else 0, 1e-6)
    width_s = np.maximum(end - start, span / 800)
    ax.barh(df["_y"], width_s, left=start, height=0.7, color=[cause_color(c) for c in df["cause"]],
            edgecolor="none")
    # FIN / RST markers by who sent them
    if hasattr(analysis, "transitions"):
        ev = _close_events(analysis, df["stream"])
    else:
        ev = df[df["close_kind"].isin(["FIN", "RST"])].assign(
            endpoint=df["closer"].astype(str), what=df["close_kind"].astype(str), time=df["close_time"])
        ev = ev[["stream", "endpoint", "what", "time"]]
    if "closer" in df:  # the classifier may name a middlebox as the sender of the first RST
        mb = set(df.loc[df["closer"].astype(str) == "middlebox", "stream"])
    else:
        mb = set()
    if len(ev):
        ev = ev.merge(df[["stream", "_y"]], on="stream")
        ev["endpoint"] = ev["endpoint"].astype(str)
        ev.loc[(ev["what"] == "RST") & ev["stream"].isin(mb), "endpoint"] = "middlebox"
        ex = _secs(ev["time"], t0)
        for what, marker, size in (("FIN", "|", 9), ("RST", "x", 6)):
            m = (ev["what"] == what).to_numpy()
            ax.scatter(ex[m], ev["_y"].to_numpy()[m], marker=marker, s=size * (6 if n <= 100 else 3), linewidths=1.3,
                       c=[SIDE_COLORS.get(e, "#555") for e in ev["endpoint"][m]], zorder=3)
    ex_tab = getattr(analysis, "http", None)
    if n <= 120 and ex_tab is not None and len(ex_tab):
        # a tick for every request (grey) and response (black) on the connection's bar
        ex_tab = ex_tab.merge(df[["stream", "_y"]], on="stream")
        for col, colour in (("request_time", "#777777"), ("response_time", "#111111")):
            tx = _secs(ex_tab[col], t0)
            ok = ~np.isnan(tx)
            ax.scatter(tx[ok], ex_tab["_y"].to_numpy()[ok] - 0.42, marker="^", s=10, c=colour, zorder=3,
                       linewidths=0)
    if n <= 40:
        for yy, s, x in zip(df["_y"], df["stream"], start):
            ax.text(x, yy, f" {s}", va="center", ha="right", fontsize=6, color="#444", parse_math=False)
    ax.set_yticks(centers, labels, fontsize=8)
    for tl in ax.get_yticklabels():
        tl.set_parse_math(False)
    ax.set_ylim(max(ypos) + 0.8 if ypos else 1, -0.8)
    ax.set_xlabel(f"seconds since {t0:%Y-%m-%d %H:%M:%S} UTC")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"{len(df_all)} TCP connections" + (f"\n{note}" if note else ""), fontsize=9, loc="left")
    causes = [c for c in CAUSE_COLORS if c in set(df["cause"].astype(str))]
    handles = [Patch(color=cause_color(c), label=c) for c in causes]
    handles += [Line2D([], [], marker="|", ls="", color=SIDE_COLORS["client"], label="FIN by client"),
                Line2D([], [], marker="|", ls="", color=SIDE_COLORS["server"], label="FIN by server"),
                Line2D([], [], marker="x", ls="", color=SIDE_COLORS["client"], label="RST by client"),
                Line2D([], [], marker="x", ls="", color=SIDE_COLORS["server"], label="RST by server")]
    if mb:
        handles.append(Line2D([], [], marker="x", ls="", color=SIDE_COLORS["middlebox"], label="RST injected"))
    if n <= 120:
        handles += [Line2D([], [], marker="^", ls="", color="#777777", label="request"),
                    Line2D([], [], marker="^", ls="", color="#111111", label="response")]
    fig.legend(handles=handles, loc="outside right upper", fontsize=7, frameon=False)
    return fig


def _client_dir(analysis, stream: int) -> int:
    c = analysis.connections
    row = c[c["stream"] == stream]
    if len(row) and "_client_dir" in row:
        return int(row["_client_dir"].iloc[0])
    return 0


def relative_seq(pk: pd.DataFrame) -> pd.DataFrame:
    """Wireshark-style relative sequence and acknowledgement numbers (`rseq`, `rack`):
    each direction's numbers relative to its first sequence number (its ISN when the SYN
    was captured), mod 2**32."""
    isn = {}
    for d in (0, 1):
        s = pk.loc[pk["dir"] == d, "seq"]
        isn[d] = int(s.iloc[0]) if len(s) else 0
    d = pk["dir"].to_numpy()
    seq0 = np.where(d == 0, isn[0], isn[1])
    ack0 = np.where(d == 0, isn[1], isn[0])
    rseq = (pk["seq"].to_numpy() - seq0) % (1 << 32)
    rack = np.where(pk["flags"].str.contains("A").to_numpy(), (pk["ack"].to_numpy() - ack0) % (1 << 32), 0)
    return pk.assign(rseq=rseq, rack=rack)


def time_sequence(analysis, stream: int, packets: pd.DataFrame | None = None) -> Figure:
    """Time-sequence (Stevens) graph of one connection: one panel per direction, each
    segment as a vertical bar from its relative sequence number to seq+len (red when
    retransmitted), the peer's acknowledgements as a step line, FIN and RST marked."""
    pk = analysis.packets(stream) if packets is None else packets
    fig = _figure(10, 5.5)
    axes = fig.subplots(2, 1, sharex=True)
    if not len(pk):
        axes[0].text(0.5, 0.5, f"no packets in stream {stream}", ha="center", transform=axes[0].transAxes)
        return fig
    pk = relative_seq(pk)
    t0 = pk["time"].iloc[0]
    t = (pk["time"] - t0).dt.total_seconds().to_numpy()
    cdir = _client_dir(analysis, stream)
    for ax, side in zip(axes, ("client", "server")):
        d = cdir if side == "client" else 1 - cdir
        mine = (pk["dir"] == d).to_numpy()
        peer = ~mine
        seq = pk["rseq"].to_numpy()
        ln = pk["len"].to_numpy()
        data = mine & (ln > 0)
        rtx = data & pk["retransmission"].to_numpy()
        ok = data & ~rtx
        ax.vlines(t[ok], seq[ok], seq[ok] + ln[ok], color="#1f4e9c", lw=1.5, label="data")
        if rtx.any():
            ax.vlines(t[rtx], seq[rtx], seq[rtx] + ln[rtx], color="#d62728", lw=1.5, label="retransmission")
        acks = peer & pk["flags"].str.contains("A").to_numpy()
        if acks.any():
            ax.step(t[acks], pk["rack"].to_numpy()[acks], where="post", color="#2ca02c", lw=0.9,
                    label=f"{'server' if side == 'client' else 'client'} ACK")
        fl = pk["flags"].to_numpy()
        for letter, marker, colour, name in (("S", "o", "#555555", "SYN"), ("F", "|", "#ff7f0e", "FIN"),
                                             ("R", "X", "#d62728", "RST")):
            m = mine & np.array([letter in f for f in fl], dtype=bool)
            if m.any():
                ax.scatter(t[m], seq[m], marker=marker, s=80, c=colour, zorder=4, label=f"{name} by {side}",
                           linewidths=2)
        ax.set_ylabel(f"{side} → {'server' if side == 'client' else 'client'}\nrelative seq", fontsize=8)
        ax.grid(alpha=0.3)
        h, lab = ax.get_legend_handles_labels()
        if h:
            ax.legend(fontsize=7, loc="upper left", frameon=False)
    axes[-1].set_xlabel(f"seconds since the first packet of stream {stream} ({t0:%H:%M:%S.%f} UTC)")
    axes[0].set_title(f"time-sequence graph, tcp.stream eq {stream}", fontsize=9, loc="left")
    return fig


def concurrency_series(df: pd.DataFrame, t0=None, limit: int | None = None
                       ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per server: (seconds, open connections) step series, busiest servers first (the
    `limit` busiest; default: all)."""
    if not len(df):
        return {}
    return _series(df, df["start"].min() if t0 is None else t0, Servers.of(df), limit)


def _series(df: pd.DataFrame, t0, sv: Servers, limit: int | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    order = sv.busiest()[:limit]
    start, end = _secs(df["start"], t0), _secs(df["end"], t0)
    out = {}
    for srv, key in zip(order.tolist(), sv.keys(order)):
        rows = sv.rows(srv)
        s, e = start[rows], end[rows]
        times = np.concatenate([s, e])
        delta = np.concatenate([np.ones(len(s)), -np.ones(len(e))])
        order_ = np.lexsort((-delta, times))  # opens before closes at the same instant
        out[key] = (times[order_], np.cumsum(delta[order_]))
    return out


def _step_points(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A step series (`x` sorted) thinned for drawing to at most STEP_POINTS points: in
    each of STEP_POINTS / 4 equal spans of time, its first, lowest, highest and last
    points, in time order. At the plot's width the line looks the same, and its peak
    stays."""
    if len(x) <= STEP_POINTS or not np.isfinite(x).all():
        return x, y
    nb = STEP_POINTS // 4
    span = max(float(x[-1] - x[0]), 1e-12)
    bucket = np.minimum(((x - x[0]) / span * nb).astype(np.int64), nb - 1)
    firsts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    lasts = np.r_[firsts[1:], len(x)] - 1
    which = np.cumsum(np.r_[True, bucket[1:] != bucket[:-1]]) - 1       # each point's bucket, 0..
    keep = [firsts, lasts]
    for reduce in (np.maximum, np.minimum):
        at = np.flatnonzero(y == reduce.reduceat(y, firsts)[which])
        keep.append(at[np.unique(which[at], return_index=True)[1]])    # (the first such point of each)
    keep = np.unique(np.concatenate(keep))
    return x[keep], y[keep]


def concurrency(analysis, *, servers: int = 8) -> Figure:
    """Open connections per server over time (a connection is open from its first to its
    last packet), with each server's peak; the busiest `servers` servers."""
    df = _conns(analysis)
    fig = _figure(11, 3.2)
    ax = fig.add_subplot()
    if not len(df):
        ax.text(0.5, 0.5, "no TCP connections", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    t0 = _t0(df, analysis if hasattr(analysis, "capture") else None)
    sv = Servers.of(df)
    series = _series(df, t0, sv, servers)
    for srv, (key, (x, y)) in zip(sv.busiest()[:servers].tolist(), series.items()):
        peak = int(y.max()) if len(y) else 0
        x, y = _step_points(x, y)
        ax.step(x, y, where="post", lw=1.2, label=_text(f"{_server_label(df, key, sv.rows(srv))}: peak {peak}", 70))
    ax.set_xlabel(f"seconds since {t0:%Y-%m-%d %H:%M:%S} UTC")
    ax.set_ylabel("open connections")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    more = f" (busiest {servers} of {len(sv)} servers)" if len(sv) > servers else ""
    ax.set_title("concurrency per server" + more, fontsize=9, loc="left")
    leg = ax.legend(fontsize=7, loc="upper left", frameon=False)
    for t in leg.get_texts():
        t.set_parse_math(False)
    return fig


def idle_gaps(analysis, *, bins: int = 40) -> Figure:
    """Histogram of idle gaps: each connection's longest silence (`max_idle_s`) and the
    silence before a server's FIN (`idle_before_close_s`), with each server's inferred
    keep-alive timeout as a dashed line (that number is what to set the pool below)."""
    df = _conns(analysis)
    fig = _figure(11, 3.2)
    ax = fig.add_subplot()
    gaps = pd.to_numeric(df.get("max_idle_s", pd.Series(dtype=float)), errors="coerce").dropna()
    gaps = gaps[gaps > 0]
    before = pd.to_numeric(df.get("idle_before_close_s", pd.Series(dtype=float)), errors="coerce")
    if "closer" in df:
        before = before[(df["closer"].astype(str) == "server") & (df["close_kind"].astype(str) == "FIN")]
    before = before.dropna()
    before = before[before > 0]
    if not len(gaps) and not len(before):
        ax.text(0.5, 0.5, "no idle gaps", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    allv = np.concatenate([gaps.to_numpy(float), before.to_numpy(float)])
    lo, hi = max(allv.min(), 1e-4), max(allv.max(), 1e-3)
    log = hi / lo > 100
    edges = np.geomspace(lo, hi * 1.01, bins + 1) if log else np.linspace(0, hi * 1.01, bins + 1)
    ax.hist(gaps, bins=edges, color="#a9c4df", label="longest idle gap per connection")
    if len(before):
        ax.hist(before, bins=edges, color="#d62728", alpha=0.6, label="idle before the server's FIN")
    if log:
        ax.set_xscale("log")
    if "server_keepalive_timeout_s" in df:
        ka = keepalive_servers(df)
        styles = ["--", ":", "-.", (0, (5, 1)), (0, (1, 3)), (0, (3, 1, 1, 1))]
        for i, r in enumerate(ka.head(6).itertuples(index=False)):
            v = float(r.server_keepalive_timeout_s)
            ax.axvline(v, color="#333", ls=styles[i], lw=1.2,
                       label=_text(f"keep-alive timeout {v:.3f} s: {_host(r.server_ip)}:{r.server_port} "
                                   f"({int(r.server_keepalive_closes)} idle closes)", 90))
    ax.set_xlabel("seconds")
    ax.set_ylabel("connections")
    ax.set_title("idle gaps", fontsize=9, loc="left")
    leg = ax.legend(fontsize=7, loc="best", frameon=True, framealpha=0.9)
    for t in leg.get_texts():
        t.set_parse_math(False)
    return fig


_ID = re.compile(r'\bid="([^"]+)"')


def to_svg(fig: Figure, *, prefix: str = "f") -> str:
    """The figure as an inline `<svg>` element: no XML prologue, no metadata, scalable
    (width 100 %), element ids prefixed so several figures can share one HTML page.
    Closes nothing: figures made here are not registered with pyplot."""
    import matplotlib
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "pcapsense"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    s = buf.getvalue()
    s = s[s.index("<svg"):]
    s = re.sub(r"<metadata>.*?</metadata>", "", s, flags=re.S)
    ids = set(_ID.findall(s))
    if ids:
        s = re.sub(r'(\bid="|url\(#|href="#)([^")]+)',
                   lambda m: m.group(1) + (f"{prefix}-{m.group(2)}" if m.group(2) in ids else m.group(2)), s)
    s = re.sub(r'^<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 class="chart" role="img"', s, count=1)
    return s
