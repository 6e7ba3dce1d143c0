"""The servers of a connections table, counted at once: each row's server as a code,
each server's "host:port" text, and the rankings the reports show (Markdown's
"Servers", the HTML report's server table, the concurrency plot's busiest servers).

Why: those reports grouped the whole table server by server, pandas per group, and the
concurrency plot compared every row with every server. That is nothing on ordinary
traffic (a few servers), and hours on an address scan, where every connection has a
server of its own: the Markdown report of a 200,000-host sweep took 464 s, its HTML
report more. Here the servers are classify's server_pairs (one factorize of the
addresses, one of the (address, port) pairs) and a bincount; only the servers a
report shows are read row by row, and "host:port" is written once per server, not per
row.

Hand-written: it is pandas' `groupby(keys, sort=False)` with the per-group work cut
to the groups shown.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..classify.servers import server_pairs


def host(ip) -> str:
    """An address as the reports show it: IPv6 in brackets (before ":port")."""
    ip = str(ip)
    return f"[{ip}]" if ":" in ip else ip


@dataclass
class Servers:
    """`codes`: each row's server, numbered 0.. in order of first appearance (the order
    of `groupby(keys, sort=False)` on the "host:port" texts, with `keys` those
    texts); `count`: each server's connections."""

    codes: np.ndarray
    count: np.ndarray
    _ips: np.ndarray
    _ports: np.ndarray
    _members: tuple | None = None

    @classmethod
    def of(cls, df: pd.DataFrame) -> Servers:
        """The servers of `df` (its server_ip and server_port columns, the addresses as
        `astype(str)` gives them: a missing one is shown "nan"), by classify's
        server_pairs."""
        codes, ips, ports = server_pairs(df["server_ip"].astype(str), df["server_port"].to_numpy())
        codes = codes.astype(np.int64, copy=False)
        return cls(codes, np.bincount(codes, minlength=len(ips)), ips, ports)

    def __len__(self) -> int:
        return len(self.count)

    def keys(self, servers=None) -> list[str]:
        """The "host:port" texts of `servers` (codes; default: all)."""
        pick = slice(None) if servers is None else np.asarray(servers, dtype=np.int64)
        return [f"{host(ip)}:{port}" for ip, port in zip(self._ips[pick].tolist(), self._ports[pick].tolist())]

    def rows(self, server: int) -> np.ndarray:
        """Positions of the rows of `server`, in table order (one stable sort of the
        codes, made at the first call, serves every server)."""
        if self._members is None:
            self._members = (np.argsort(self.codes, kind="stable"),
                             np.concatenate([[0], np.cumsum(self.count)]))
        perm, bounds = self._members
        return perm[bounds[server]:bounds[server + 1]]

    def total(self, values: np.ndarray) -> np.ndarray:
        """Per server, the sum of `values` (a number or flag per row)."""
        return np.bincount(self.codes, weights=values, minlength=len(self)).astype(np.int64)

    def ranked(self, abnormal: np.ndarray, limit: int, by_key: bool = False) -> np.ndarray:
        """The `limit` servers with the most abnormal connections (`abnormal`: per row),
        then the most connections; ties in order of first appearance, or of their
        "host:port" text (`by_key`). Their codes, in that order."""
        abn = self.total(abnormal.astype(np.int64))
        order = np.lexsort((np.arange(len(self)), -self.count, -abn))
        if not by_key or len(order) == 0:
            return order[:limit]
        # only the servers tied with the last one shown need their text compared
        last = order[min(limit, len(order)) - 1]
        ahead = (abn > abn[last]) | ((abn == abn[last]) & (self.count >= self.count[last]))
        cand = np.flatnonzero(ahead)
        keyed = sorted(zip((-abn[cand]).tolist(), (-self.count[cand]).tolist(), self.keys(cand), cand.tolist()))
        return np.array([c for *_, c in keyed[:limit]], dtype=np.int64)

    def busiest(self) -> np.ndarray:
        """All servers, the most connections first, as `Series.value_counts()` orders
        the "host:port" texts (a stable sort: ties in order of first appearance)."""
        return pd.Series(self.count).sort_values(ascending=False, kind="stable").index.to_numpy()
