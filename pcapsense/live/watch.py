"""`pcapsense watch`: the abnormal endings of a running capture, every interval.

The packets come from a capture tool pcapsense starts (`tcpdump -w - -U`, as `record`
does) or from a pcap/pcapng stream on standard input (`tcpdump -w - -U | pcapsense
watch -`). A reader thread splits the stream into records (`StreamSplitter`: the pcap
global header, or the pcapng blocks that are not packets, kept to start each window's
file); every `every_s` the main thread analyses one window with the full pipeline
(`pcapsense.analyze` on a small temporary file):

- a connection that has **finished** (RST, or both FINs) is reported in the window it
  finished in, counted into the run's totals by server and cause, and forgotten;
- a connection still open is **carried**: its packets are put in front of the next
  window's, so it is analysed whole when it ends (its handshake, its requests, its
  idle time). Memory stays bounded however long the watch runs: a connection carries
  at most `carry_packets` packets (its first 16 and its latest; a long-lived connection
  then shows a hole in the middle, which does not change how it ended), all carried
  connections at most `carry_bytes`, and one idle longer than `stale_s` is reported as
  still open and dropped;
- the run keeps counters only (server x cause, the keep-alive timeouts inferred), so
  its memory does not grow with its length.

Ctrl-C (or the end of the input, or `duration_s`) prints the summary of the whole run.
"""

from __future__ import annotations

import collections
import os
import queue
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field

import numpy as np

PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"


class StreamError(Exception):
    pass


class StreamSplitter:
    """Bytes of a pcap or pcapng stream in, (header, records) out (sans-IO): `feed(data)`
    returns the complete records it completed, `header` is what every window's file
    starts with. A record longer than 256 MiB is an error (a broken stream)."""

    MAX_RECORD = 256 << 20

    def __init__(self):
        self.buf = bytearray()
        self.kind: str | None = None      # "pcap" | "pcapng"
        self.end = "<"
        self.header = b""
        self.offset = 0                   # stream offset of buf[0]

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        out = []
        if self.kind is None:
            if len(self.buf) < 24:
                return out
            magic = bytes(self.buf[:4])
            if magic in PCAP_MAGICS:
                self.kind, self.end = "pcap", PCAP_MAGICS[magic]
                self.header = bytes(self.buf[:24])
                self._drop(24)
            elif magic == PCAPNG_SHB:
                self.kind = "pcapng"
                self.end = "<" if self.buf[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
            else:
                raise StreamError(f"offset 0: not a pcap or pcapng stream (magic {magic.hex()})")
        pos = 0
        if self.kind == "pcap":
            while len(self.buf) - pos >= 16:
                incl = struct.unpack_from(self.end + "I", self.buf, pos + 8)[0]
                if incl > self.MAX_RECORD:
                    raise StreamError(f"offset {self.offset + pos}: record of {incl} bytes")
                if len(self.buf) - pos < 16 + incl:
                    break
                out.append(bytes(self.buf[pos:pos + 16 + incl]))
                pos += 16 + incl
        else:
            while len(self.buf) - pos >= 12:
                btype, blen = struct.unpack_from(self.end + "II", self.buf, pos)
                if btype == 0x0A0D0D0A and len(self.buf) - pos >= 12:
                    self.end = "<" if self.buf[pos + 8:pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
                    blen = struct.unpack_from(self.end + "I", self.buf, pos + 4)[0]
                if blen < 12 or blen % 4 or blen > self.MAX_RECORD:
                    raise StreamError(f"offset {self.offset + pos}: block of {blen} bytes")
                if len(self.buf) - pos < blen:
                    break
                block = bytes(self.buf[pos:pos + blen])
                if btype in (6, 3, 2):                        # packets
                    out.append(block)
                elif btype == 0x0A0D0D0A:
                    self.header = block                       # (a new section starts over)
                else:
                    self.header += block                      # IDBs, secrets, name resolution
                pos += blen
        self._drop(pos)
        return out

    def _drop(self, n: int) -> None:
        del self.buf[:n]
        self.offset += n


@dataclass
class Totals:
    """The run so far: counters only."""

    windows: int = 0
    packets: int = 0
    finished: int = 0
    abnormal: int = 0
    stale: int = 0
    by_server_cause: collections.Counter = field(default_factory=collections.Counter)
    keepalive_s: dict = field(default_factory=dict)           # server -> the latest inferred timeout


@dataclass
class Window:
    """One interval's report."""

    start_s: float
    end_s: float
    packets: int
    finished: int
    abnormal_rows: list          # (server, cause, count, one detail, one stream's filter)
    keepalive: dict
    carried: int
    causes: set
    rst: bool = False
    still_open: int = 0


def _server(ip: str, port) -> str:
    return f"[{ip}]:{port}" if ":" in str(ip) else f"{ip}:{port}"


class Watcher:
    """Windows of records in, `Window`s out (`window(records)`), with the carry between
    them; the packets are analysed by pcapsense.analyze on a temporary file."""

    def __init__(self, *, carry_packets: int = 2000, carry_bytes: int = 256 << 20, stale_s: float = 300.0,
                 tmpdir: str | None = None, keylog=None):
        self.carry_packets, self.carry_bytes, self.stale_s = carry_packets, carry_bytes, stale_s
        self.carry: list[bytes] = []
        self.totals = Totals()
        self.tmpdir = tmpdir or tempfile.mkdtemp(prefix="pcapsense-watch-")
        self.keylog = keylog

    def window(self, header: bytes, records: list[bytes], kind: str, final: bool = False) -> Window:
        """Analyse the carried packets and `records`; `final`: report every connection
        (the run ends: those still open are said so)."""
        from ..analysis import analyze
        t0 = time.time()
        recs = self.carry + records
        self.totals.windows += 1
        self.totals.packets += len(records)
        if not recs:
            return Window(t0, t0, 0, 0, [], {}, 0, set())
        path = os.path.join(self.tmpdir, f"window.{kind}")
        with open(path, "wb") as fh:
            fh.write(header)
            for r in recs:
                fh.write(r)
        a = analyze(path, tables="connections", jobs=1, keylog=self.keylog)
        df = a.connections
        if not len(df):
            self.carry = []
            return Window(t0, time.time(), len(records), 0, [], {}, 0, set())
        rst = (df["close_kind"] == "RST").to_numpy(bool)
        both = df["client_state"].isin(["CLOSED", "TIME_WAIT"]).to_numpy(bool) & \
            df["server_state"].isin(["CLOSED", "TIME_WAIT"]).to_numpy(bool)
        refused = df["cause"].isin(["connection-refused"]).to_numpy(bool)
        finished = rst | both | refused
        end_ns = df["end"].to_numpy(dtype="datetime64[ns]").view(np.int64)
        last_ns = int(end_ns.max()) if len(end_ns) else 0
        stale = ~finished & ((end_ns < last_ns - int(self.stale_s * 1e9)) | final)
        report = finished | stale
        self.totals.finished += int(finished.sum())
        self.totals.stale += int(stale.sum())
        rows = df[report & df["abnormal"].to_numpy(bool)]
        self.totals.abnormal += len(rows)
        abn = []
        for (srv, cause), g in rows.groupby([rows["server_ip"].astype(str).str.cat(
                rows["server_port"].astype(str), sep="|"), rows["cause"].astype(str)], sort=False):
            ip, port = srv.split("|")
            key = _server(ip, port)
            self.totals.by_server_cause[(key, cause)] += len(g)
            first = g.iloc[0]
            abn.append((key, cause, len(g), str(first.get("cause_detail", "")), str(first.get("wireshark_filter", ""))))
        ka = {}
        if "server_keepalive_timeout_s" in df:
            k = df.dropna(subset=["server_keepalive_timeout_s"])
            for r in k[["server_ip", "server_port", "server_keepalive_timeout_s"]].drop_duplicates(
                    ["server_ip", "server_port"]).itertuples(index=False):
                ka[_server(r.server_ip, r.server_port)] = float(r.server_keepalive_timeout_s)
        self.totals.keepalive_s.update(ka)
        # what goes on: the packets of the connections still open, by their frames
        keep = np.flatnonzero(~report)
        self.carry = self._carry(a, df, keep, recs)
        return Window(t0, time.time(), len(records), int(finished.sum()), abn, ka, len(keep),
                      set(rows["cause"].astype(str)), bool((rows["close_kind"] == "RST").any()),
                      int(stale.sum()))

    def _carry(self, a, df, keep: np.ndarray, recs: list[bytes]) -> list[bytes]:
        if not len(keep):
            return []
        streams = df["stream"].to_numpy()[keep].tolist()
        pk = a.packets_of(streams)
        frames: list[int] = []
        # the most recently active connections first, until the byte budget is spent
        order = sorted(pk, key=lambda s: -int(pk[s]["frame"].max()) if len(pk[s]) else 0)
        budget = self.carry_bytes
        for s in order:
            f = pk[s]["frame"].to_numpy()
            if len(f) > self.carry_packets:
                f = np.concatenate([f[:16], f[-(self.carry_packets - 16):]])
            size = sum(len(recs[i - 1]) for i in f)
            if size > budget:
                self.totals.stale += 1
                continue
            budget -= size
            frames.extend(int(x) for x in f)
        frames.sort()
        return [recs[i - 1] for i in frames]


def read_stream(fh, q: "queue.Queue", splitter: StreamSplitter, stop: threading.Event) -> None:
    """The reader thread: records of `fh` into `q` as lists; None at the end, an
    exception object on a broken stream."""
    try:
        while not stop.is_set():
            data = fh.read1(1 << 16) if hasattr(fh, "read1") else fh.read(1 << 16)
            if not data:
                break
            recs = splitter.feed(data)
            if recs:
                q.put(recs)
    except StreamError as exc:
        q.put(exc)
        return
    except (OSError, ValueError):
        pass
    q.put(None)
