"""Mass findings: a flood or a scan is one finding, not a verdict per connection.

A million unanswered SYNs from a million sources, or 50,000 refused connections, is an
event on the network, not a million disconnects to explain one by one. The reports'
verdicts (terminal, Markdown, HTML) ask `mass_findings(df)` for such events first, print
each in one line with a compact Wireshark display filter, and leave its connections out
of their per-(server, cause) groups; the per-connection rows stay in the JSON and Parquet
outputs, untouched.

Which connections: those whose handshake never completed, by Zeek's `conn_state` and
`history` (docs/conformance.md): `S0` (SYNs, no answer), `REJ` (the SYN answered with a
RST), `RSTOS0` (SYN, then the client's own RST, no answer), and, when the history shows
no ACK of the SYN/ACK, no data and no FIN (no `A a D d F f`), `S1` with history `Sh` (a
SYN/ACK the client never acknowledged: the classic SYN flood answered by a live server)
and `RSTO` with `ShR` (the client reset right after the SYN/ACK: a half-open probe, what a
SYN scan leaves on an open port). Without a `history` column (an out-of-core run keeps
fewer columns) `S1` and `RSTO` are left out; the others are decided by `conn_state`.

The thresholds, checked in this order (a connection belongs to one finding at most):

* a port scan: one client, one server host, one cause, failed connections to at least
  `PORT_SCAN_PORTS` = 15 distinct server ports. Zeek's `Scan::port_scan_threshold`
  (policy/misc/scan.zeek: 15 unique ports of one victim host; Zeek counts them within
  its 5-minute `port_scan_interval`, this counts them over the whole capture).
* an address scan (a sweep): one client, one server port, one cause, failed connections
  to at least `ADDRESS_SCAN_HOSTS` = 25 distinct hosts. Zeek's `Scan::addr_scan_threshold`.
* a flood of a port: at least `MASS_CONNECTIONS` = 1000 failed connections to one server
  address and port with one cause and one pattern (the `conn_state`; each of the states
  above has one history up to retransmissions: `S`, `Sr`, `SR`, `Sh`, `ShR`): more
  than a client's retry loop or connection pool gives in a capture of an application
  failure (sample_pcaps/, lab failures and haystacks: at most 12 failed handshakes to
  one server port, and 2 ports of one host per client), and a SYN flood gives that many
  in well under a second.
* a flood of a host: what is left, at least `MASS_CONNECTIONS` to one server address
  (many ports), one cause, one pattern.

A flood from at least `SPOOFED_SHARE` (half) as many distinct sources as connections,
most sources seen once, is read as a SYN flood from spoofed (or very many) sources; one
from few sources is worded as what it also may be: clients retrying a port that never
answers, or one where nothing listens.

Everything is vectorised (factorised keys, bincounts, hash uniques): no Python loop per
connection; the cost on a 1M-connection SYN flood is a fraction of a second, most of it
hashing a million client addresses once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from .. import memory
from .server_table import host as _host

#: failed connections to one server address and port (one cause, one pattern) that make a flood
MASS_CONNECTIONS = 1000
#: distinct ports of one host that one client failed to connect to: a port scan (Zeek's threshold)
PORT_SCAN_PORTS = 15
#: distinct hosts on one port that one client failed to connect to: an address scan (Zeek's threshold)
ADDRESS_SCAN_HOSTS = 25
#: distinct sources per connection from which a flood reads as spoofed (most sources seen once)
SPOOFED_SHARE = 0.5
#: at most this many mass findings are printed; the rest are counted
MAX_SHOWN = 8
#: the end of every mass finding's line
ROWS_NOTE = "the per-connection rows are in the JSON/Parquet output"

#: the handshake-failure states a mass finding is made of
STATES = ("S0", "REJ", "RSTOS0", "S1", "RSTO")
#: states counted only when the history shows the handshake never completed
_NEEDS_HISTORY = ("S1", "RSTO")
#: history letters of a completed handshake, data or a FIN: not a failed attempt
_COMPLETED = set("AaDdFf")

#: the compact display filters: the client's SYNs (one per connection), or for refused
#: connections the server's RSTs (one per connection)
_SYN = "tcp.flags.syn==1 && tcp.flags.ack==0"
_RST = "tcp.flags.reset==1"


def _ipf(ip: str) -> str:
    return "ipv6" if ":" in ip else "ip"


def _span(s: float) -> str:
    return f"{s:,.1f} s" if s >= 10 else f"{s:.3f} s"


def _rate(n: int, s: float) -> str:
    """n connections whose starts span s seconds: n - 1 intervals."""
    r = (n - 1) / s
    return f"{r:,.0f}/s" if r >= 10 else f"{r:.1f}/s"


@dataclass(frozen=True)
class MassFinding:
    """One flood or scan. `kind`: `port-flood`, `host-flood`, `port-scan`, `address-scan`."""

    kind: str
    cause: str
    conn_state: str
    history: str | None
    count: int
    sources: int                 # distinct clients
    hosts: int                   # distinct server addresses
    ports: int                   # distinct server ports
    server_ip: str
    server_port: int
    client_ip: str
    span_s: float                # first to last connection's start
    packets: int | None          # packets of these connections (None: not known)
    max_packets: int | None

    # -- wording ---------------------------------------------------------------------
    def _verb(self) -> str:
        st = self.conn_state
        if st == "S0":
            if self.max_packets == 1:
                return "ended unanswered after one SYN each"
            if self.packets is not None:
                return f"ended unanswered ({self.packets:,} SYNs in all, retransmissions included)"
            return "ended unanswered"
        if st == "REJ":
            return "were refused (a RST to the SYN)"
        if st == "RSTOS0":
            return "were reset by the client before any answer (SYN, then RST)"
        if st == "S1":
            return "got a SYN/ACK that the client never acknowledged"
        if st == "RSTO":
            return "were reset by the client right after the SYN/ACK (half-open)"
        return f"ended in Zeek state {st}"

    def _when(self) -> str:
        if self.span_s <= 0:
            return "at one instant"
        return f"over {_span(self.span_s)} ({_rate(self.count, self.span_s)})"

    def _from(self, addr: Callable[[str], str]) -> str:
        if self.sources == 1:
            return f"from one source, {addr(_host(self.client_ip))}"
        return f"from {self.sources:,} distinct sources"

    @property
    def spoofed(self) -> bool:
        return self.sources >= max(2, SPOOFED_SHARE * self.count)

    def head(self, addr: Callable[[str], str] = str) -> str:
        """What happened, counted; `addr` formats (escapes) each address from the capture."""
        n = f"{self.count:,} connections"
        if self.kind == "port-scan":
            return (f"{n} from {addr(_host(self.client_ip))} to {self.ports:,} ports of "
                    f"{addr(_host(self.server_ip))} {self._verb()} {self._when()}")
        if self.kind == "address-scan":
            return (f"{n} from {addr(_host(self.client_ip))} to port {self.server_port} of {self.hosts:,} hosts "
                    f"{self._verb()} {self._when()}")
        if self.kind == "host-flood":
            to = f"{self.ports:,} ports of {addr(_host(self.server_ip))}"
        else:
            to = addr(f"{_host(self.server_ip)}:{self.server_port}")
        return f"{n} to {to} {self._verb()}, {self._from(addr)} {self._when()}"

    @property
    def what(self) -> str:
        """What it is, in a few words."""
        if self.kind == "port-scan":
            return "a port scan"
        if self.kind == "address-scan":
            return f"an address scan (a sweep of port {self.server_port})"
        st = self.conn_state
        if st == "RSTO":
            return "a SYN scan (or a flood)"
        if self.spoofed or st in ("S1", "RSTOS0"):
            return "a SYN flood against a closed port (or a scan)" if st == "REJ" else "a SYN flood (or a scan)"
        if st == "REJ":
            return "nothing listens on the port: clients retrying a stopped service, or a flood"
        return "a flood, or clients retrying a port that never answers (filtered, or the host is down)"

    def line(self, addr: Callable[[str], str] = str) -> str:
        return f"{self.head(addr)}: {self.what}; {ROWS_NOTE}"

    @property
    def wireshark(self) -> str:
        """A display filter that selects these connections compactly (one packet each:
        the client's SYN, or the server's RST when refused), never a list of streams."""
        rej = self.conn_state == "REJ"
        flags = _RST if rej else _SYN
        srv, cli = self.server_ip, self.client_ip
        s_ip, c_ip = _ipf(srv), _ipf(cli)
        # the server's side of a refused connection is the source of its RSTs
        s_dir, c_dir, p_dir = ("src", "dst", "srcport") if rej else ("dst", "src", "dstport")
        if self.kind == "port-scan":
            return f"{c_ip}.{c_dir}=={cli} && {s_ip}.{s_dir}=={srv} && {flags}"
        if self.kind == "address-scan":
            return f"{c_ip}.{c_dir}=={cli} && tcp.{p_dir}=={self.server_port} && {flags}"
        if self.kind == "host-flood":
            return f"{s_ip}.{s_dir}=={srv} && {flags}"
        return f"{s_ip}.{s_dir}=={srv} && tcp.{p_dir}=={self.server_port} && {flags}"


@dataclass
class Mass:
    """The mass findings of a connections table: the largest `MAX_SHOWN` (`findings`,
    largest first), how many there are in all (`total`), and `rows`: a boolean mask over
    the table's positions, True for every connection of any finding (shown or not)."""

    findings: list[MassFinding] = field(default_factory=list)
    total: int = 0
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __bool__(self) -> bool:
        return self.total > 0

    @property
    def more(self) -> int:
        return self.total - len(self.findings)


#: a grouping key with at most this many possible values is made dense with a table
#: (no hashing); a sparser one is factorised
_TABLE = 1 << 22


def _codes(s: pd.Series):
    """Integer codes (-1: missing) and the values they stand for (an array-like indexed
    by code, not converted: a million distinct addresses as Python strings cost more
    than hashing them); a categorical's own codes."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return s.cat.codes.to_numpy().astype(np.int32), s.cat.categories
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    return codes.astype(_ids(len(uniques))), uniques


def _ids(count: int):
    """The dtype of ids 0..count-1 (and -1): int32 (4 MB a million rows), or int64 for
    more than int32 holds. Arithmetic on ids (_combine, _distinct) is done in int64."""
    return np.int32 if count < (1 << 31) - 1 else np.int64


def _dense(key: np.ndarray, width: int) -> tuple[np.ndarray, int]:
    """Dense ids 0..k-1 of the values of `key` (0 <= key < width), in value order; k."""
    present = np.zeros(width, dtype=bool)
    present[key] = True
    lut = np.cumsum(present, dtype=_ids(width)) - 1
    return lut[key], int(lut[-1]) + 1 if width else 0


def _combine(*codes: np.ndarray) -> tuple[np.ndarray, int]:
    """One dense group id per distinct tuple of non-negative codes, and how many: by
    arithmetic and a table while the tuples have few possible values, by factorising
    (hashing) when they have many, so the intermediate keys never overflow."""
    key, width = codes[0].astype(np.int64), int(codes[0].max(initial=-1)) + 1
    hashed = False
    for c in codes[1:]:
        cw = int(c.max(initial=-1)) + 1
        key = key * cw + c
        if width * cw > _TABLE:
            ids, uniq = pd.factorize(key)
            key, width, hashed = ids.astype(np.int64, copy=False), len(uniq), True
        else:
            width, hashed = width * cw, False
    return (key.astype(_ids(width)), width) if hashed else _dense(key, width)


def _distinct(g: np.ndarray, ng: int, v: np.ndarray) -> np.ndarray:
    """Per group id (0..ng-1; -1 is no group), how many distinct values of `v` (>= 0)."""
    ok = g >= 0
    width = int(v.max(initial=-1)) + 1
    pairs = g[ok].astype(np.int64) * width + v[ok]
    if ng * width <= _TABLE:
        present = np.zeros(ng * width, dtype=bool)
        present[pairs] = True
        return present.reshape(ng, width).sum(axis=1)
    return np.bincount(pd.unique(pairs) // width, minlength=ng)


def _select(mask: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
    return [a[mask] for a in arrays]


def mass_findings(df: pd.DataFrame) -> Mass:
    """The floods and scans of `df` (a connections table, or the columns of it a report
    keeps). Empty, at the cost of one `isin`, for a capture without enough failed
    handshakes to make one."""
    n = len(df)
    none = Mass(rows=np.zeros(n, dtype=bool))
    least = min(PORT_SCAN_PORTS, ADDRESS_SCAN_HOSTS, MASS_CONNECTIONS)
    need = ("conn_state", "client_ip", "server_ip", "server_port", "cause", "start")
    if n < least or any(c not in df.columns for c in need):
        return none
    has_history = "history" in df.columns
    states = STATES if has_history else tuple(s for s in STATES if s not in _NEEDS_HISTORY)
    pos = np.flatnonzero(df["conn_state"].isin(states).to_numpy(dtype=bool))
    if len(pos) < least:
        return none
    st, st_u = _codes(df["conn_state"].iloc[pos])
    if has_history:
        # S1 and RSTO only when the handshake never completed (the other states say so)
        check = np.flatnonzero(np.isin(st, [i for i, v in enumerate(st_u) if v in _NEEDS_HISTORY]))
        if len(check):
            hi, hi_u = _codes(df["history"].iloc[pos[check]])
            clean = np.array([isinstance(h, str) and not (set(h) & _COMPLETED) for h in hi_u] + [False])
            keep = np.ones(len(pos), dtype=bool)
            keep[check[~clean[hi]]] = False            # (a missing history, -1: the False at the end)
            pos, st = pos[keep], st[keep]
            if len(pos) < least:
                return none
    # (memory: a million rows make each code array 8 MB, each further group id array
    # as much; those not read again are dropped as soon as they are done)
    port, _ = _dense(df["server_port"].to_numpy()[pos].astype(np.int64) & 0xFFFF, 65536)
    cause, cause_u = _codes(df["cause"].iloc[pos])
    sv, sv_u = _codes(df["server_ip"].iloc[pos])
    ok = (sv >= 0) & (cause >= 0) & (st >= 0)
    if not ok.all():
        pos, st, port, cause, sv = _select(ok, pos, st, port, cause, sv)
    del ok
    # which rows can be in a scan: in a (server, cause) with enough distinct ports, or a
    # (port, cause) with enough distinct hosts; in a flood: a (server, cause, pattern)
    # with enough connections (the pattern: the conn_state, whose history is one of a
    # few: S, Sr, SR, Sh, ShR, up to retransmissions)
    by_server, n_bs = _combine(sv, cause)
    scan_may = _distinct(by_server, n_bs, port)[by_server] >= PORT_SCAN_PORTS
    del by_server
    by_port, n_bp = _combine(port, cause)
    scan_may |= _distinct(by_port, n_bp, sv)[by_port] >= ADDRESS_SCAN_HOSTS
    del by_port
    fl_host, n_fh = _combine(sv, cause, st)
    flood_may = np.bincount(fl_host, minlength=n_fh)[fl_host] >= MASS_CONNECTIONS
    if not (scan_may.any() or flood_may.any()):
        return none

    free = np.ones(len(pos), dtype=bool)                 # not yet in a finding
    picked: list[tuple[str, np.ndarray, np.ndarray]] = []  # (kind, group of each row or -1, its groups)

    def take(kind: str, g: np.ndarray, ng: int, values: np.ndarray | None, threshold: int) -> None:
        g = np.where(free, g, -1)
        counts = np.bincount(g[g >= 0], minlength=ng) if values is None else _distinct(g, ng, values)
        groups = np.flatnonzero(counts >= threshold)
        if len(groups):
            hit = np.zeros(ng + 1, dtype=bool)           # (the last: no group)
            hit[groups] = True
            rows = hit[g]
            free[rows] = False
            picked.append((kind, np.where(rows, g, -1).astype(_ids(ng)), groups))

    # the client's address is hashed once, only for the rows that can be in a finding
    # (most of the cost, on a million spoofed sources)
    wanted = np.flatnonzero(scan_may | flood_may)
    codes, cl_u = _codes(df["client_ip"].iloc[pos[wanted]])
    cl = np.full(len(pos), -1, dtype=_ids(len(cl_u) + 1))
    cl[wanted] = np.where(codes < 0, len(cl_u), codes)   # (a missing client: a source of its own)
    del codes, wanted
    memory.release()          # (the hash table of a million addresses, kept by pyarrow's pool)
    # scans first, by client: only clients with enough such rows can have scanned
    per_client = np.bincount(cl[scan_may], minlength=len(cl_u) + 1)
    scan_rows = np.flatnonzero(scan_may & (per_client[np.maximum(cl, 0)] >=
                                           min(PORT_SCAN_PORTS, ADDRESS_SCAN_HOSTS)))
    if len(scan_rows):
        for kind, others, values, threshold in (("port-scan", sv, port, PORT_SCAN_PORTS),
                                                ("address-scan", port, sv, ADDRESS_SCAN_HOSTS)):
            sub, n_sub = _combine(cl[scan_rows], others[scan_rows], cause[scan_rows])
            g = np.full(len(pos), -1, dtype=_ids(n_sub))
            g[scan_rows] = sub
            take(kind, g, n_sub, values, threshold)
    fl_port, n_fp = _combine(sv, port, cause, st)
    take("port-flood", np.where(flood_may, fl_port, -1), n_fp, None, MASS_CONNECTIONS)
    del fl_port
    take("host-flood", np.where(flood_may, fl_host, -1), n_fh, None, MASS_CONNECTIONS)
    del fl_host, flood_may, scan_may
    if not picked:
        return none

    mask = np.zeros(n, dtype=bool)
    mask[pos[~free]] = True
    # the largest first; equal sizes in the order of the checks, then by group id
    rank = np.concatenate([
        np.column_stack([np.bincount(g[g >= 0], minlength=int(groups.max()) + 1)[groups],
                         np.full(len(groups), ki), groups])
        for ki, (_, g, groups) in enumerate(picked)])
    order = np.lexsort((rank[:, 2], rank[:, 1], -rank[:, 0]))
    start = df["start"]
    ns = {"s": 10**9, "ms": 10**6, "us": 10**3}.get(getattr(start.dtype, "unit", "ns"), 1)
    hist = df["history"] if has_history else None
    pk = df["packets"] if "packets" in df.columns else None
    shown = []
    for cnt, ki, grp in rank[order[:MAX_SHOWN]].tolist():
        kind, g, _ = picked[ki]
        rows = np.flatnonzero(g == grp)
        at = pos[rows]                                    # positions in the table
        r0 = rows[0]
        tt = start.array.asi8[at]
        n_src = len(pd.unique(cl[rows]))
        p = None if pk is None else pk.to_numpy()[at]
        shown.append(MassFinding(
            kind=kind, cause=str(cause_u[cause[r0]]), conn_state=str(st_u[st[r0]]),
            history=None if hist is None else str(hist.iloc[at[0]]),
            count=int(cnt), sources=n_src, hosts=len(pd.unique(sv[rows])), ports=len(pd.unique(port[rows])),
            server_ip=str(sv_u[sv[r0]]), server_port=int(df["server_port"].iat[at[0]]),
            client_ip=str(cl_u[cl[r0]]) if cl[r0] < len(cl_u) else "",
            span_s=float(int(tt.max()) - int(tt.min())) * ns / 1e9,
            packets=None if p is None else int(p.sum()), max_packets=None if p is None else int(p.max())))
    return Mass(findings=shown, total=len(rank), rows=mask)
