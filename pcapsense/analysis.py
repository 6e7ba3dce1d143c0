"""The public entry point: `pcapsense.analyze(path)` runs the pipeline and returns an
`Analysis` (connections DataFrame, capture facts, per-stream packets on request).

Pipeline: capture.reader (records -> compiled engine: decode + track) ->
tcp.connections (vectorised per-connection table) -> render.* (terminal, JSON).
"""

from __future__ import annotations

import decimal
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from .capture import layout, reader
from .capture.reader import CaptureError
from . import classify, memory, parallel
from .tcp import connections as conn_table
from .tcp.state import Kind

#: link-layer header types by their LINKTYPE_ names (tcpdump.org/linktypes.html); the
#: engine says which of a capture's it did not read (counters["unread_link_types"])
LINKTYPE_NAMES = {
    0: "NULL", 1: "EN10MB", 3: "AX25", 6: "IEEE802_5", 7: "ARCNET_BSD", 8: "SLIP", 9: "PPP", 10: "FDDI",
    12: "RAW", 14: "RAW", 50: "PPP_HDLC", 51: "PPP_ETHER", 100: "ATM_RFC1483", 101: "RAW", 104: "C_HDLC",
    105: "IEEE802_11", 107: "FRELAY", 108: "LOOP", 113: "LINUX_SLL", 114: "LTALK", 117: "PFLOG",
    119: "IEEE802_11_PRISM", 122: "IP_OVER_FC", 123: "SUNATM", 127: "IEEE802_11_RADIOTAP", 129: "ARCNET_LINUX",
    138: "APPLE_IP_OVER_IEEE1394", 139: "MTP2_WITH_PHDR", 140: "MTP2", 141: "MTP3", 142: "SCCP",
    143: "DOCSIS", 144: "LINUX_IRDA", **{147 + i: f"USER{i}" for i in range(16)}, 163: "IEEE802_11_AVS", 165: "BACNET_MS_TP",
    166: "PPP_PPPD", 169: "GPRS_LLC", 177: "LINUX_LAPD", 178: "JUNIPER_ETHER", 187: "BLUETOOTH_HCI_H4",
    189: "USB_LINUX", 192: "PPI", 195: "IEEE802_15_4_WITHFCS", 196: "SITA", 197: "ERF", 201: "BLUETOOTH_HCI_H4_WITH_PHDR",
    202: "AX25_KISS", 203: "LAPD", 204: "PPP_WITH_DIR", 205: "C_HDLC_WITH_DIR", 206: "FRELAY_WITH_DIR",
    209: "IPMB_LINUX", 215: "IEEE802_15_4_NONASK_PHY", 220: "USB_LINUX_MMAPPED", 224: "FC_2",
    225: "FC_2_WITH_FRAME_DELIMS", 226: "IPNET", 227: "CAN_SOCKETCAN", 228: "IPV4", 229: "IPV6",
    230: "IEEE802_15_4_NOFCS", 231: "DBUS", 235: "DVB_CI", 236: "MUX27010", 237: "STANAG_5066_D_PDU",
    239: "NFLOG", 240: "NETANALYZER", 241: "NETANALYZER_TRANSPARENT", 242: "IPOIB", 243: "MPEG_2_TS",
    244: "NG40", 245: "NFC_LLCP", 247: "INFINIBAND", 248: "SCTP", 249: "USBPCAP", 250: "RTAC_SERIAL",
    251: "BLUETOOTH_LE_LL", 252: "WIRESHARK_UPPER_PDU", 253: "NETLINK", 254: "BLUETOOTH_LINUX_MONITOR",
    255: "BLUETOOTH_BREDR_BB", 256: "BLUETOOTH_LE_LL_WITH_PHDR", 257: "PROFIBUS_DL", 258: "PKTAP",
    259: "EPON", 260: "IPMI_HPM_2", 261: "ZWAVE_R1_R2", 262: "ZWAVE_R3", 263: "WATTSTOPPER_DLM",
    264: "ISO_14443", 265: "RDS", 266: "USB_DARWIN", 268: "SDLC", 270: "LORATAP", 271: "VSOCK",
    272: "NORDIC_BLE", 273: "DOCSIS31_XRA31", 274: "ETHERNET_MPACKET", 275: "DISPLAYPORT_AUX",
    276: "LINUX_SLL2", 278: "OPENVIZSLA", 279: "EBHSCR", 280: "VPP_DISPATCH", 281: "DSA_TAG_BRCM",
    282: "DSA_TAG_BRCM_PREPEND", 283: "IEEE802_15_4_TAP", 284: "DSA_TAG_DSA", 285: "DSA_TAG_EDSA",
    286: "ELEE", 287: "Z_WAVE_SERIAL", 288: "USB_2_0", 289: "ATSC_ALP", 290: "ETW", 292: "ZBOSS_NCP",
    293: "USB_2_0_LOW_SPEED", 294: "USB_2_0_FULL_SPEED", 295: "USB_2_0_HIGH_SPEED", 296: "AUERSWALD_LOG",
    297: "ZWAVE_TAP", 298: "SILABS_DEBUG_CHANNEL", 299: "FIRA_UCI", 300: "MDB", 301: "DECT_NR",
}
ODD_HEADER = ((1, "its pcap version is not 2.4 (libpcap refuses it); read as 2.4"),
              (2, "a pcapng section's version is not 1.0 (libpcap refuses it); read as 1.0"),
              (4, "reserved bits are set in its pcap link-type field; the link type was read from the low 16 bits"),
              (8, "its pcap link-type field says every frame ends with an FCS (frame check sequence)"))


def linktype_name(x: int) -> str:
    return LINKTYPE_NAMES.get(x, f"LINKTYPE_{x}")


@dataclass
class Capture:
    """Facts about the input file (the `capture` object of the JSON output)."""

    path: str
    format: str
    compressed: bool
    file_bytes: int | None
    link_types: list[str]
    frames: int
    tcp_packets: int
    non_tcp_packets: int
    connections: int
    first_time: pd.Timestamp | None
    last_time: pd.Timestamp | None
    truncated: bool
    warnings: list[str]
    error: str | None
    counters: dict = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    tls_keys: dict | None = None     # a key log was used: where the secrets came from, what they framed

    @property
    def duration_s(self) -> float:
        if self.first_time is None or self.last_time is None:
            return 0.0
        return (self.last_time - self.first_time).total_seconds()


class Analysis:
    """Result of `analyze()`. `.connections`: one row per TCP connection (docs/schema.md);
    `.http`: one row per HTTP/1 request and its response; `.transitions`: every endpoint
    state change; `.capture`: file facts; `.packets(stream)`: that connection's packets,
    read again from the file."""

    def __init__(self, capture: Capture, connections: pd.DataFrame, transitions, options: dict,
                 http: pd.DataFrame | None = None):
        """`transitions`: the DataFrame, or the engine's transition rows (a numpy array
        of layout.TRANSITION_DTYPE), turned into the DataFrame on first use: a report
        that does not show them never builds them. `transitions`/`http` None: left out
        (`analyze(..., tables="connections")`)."""
        self.capture = capture
        self.connections = connections
        self._transitions = transitions
        self._http = http
        self._client_dir = connections["_client_dir"].to_numpy()
        self._options = options
        #: the program's exceptions matched to connections (analyze(log=...); None without a log)
        self.exceptions: pd.DataFrame | None = None
        self.log_sources: list[str] = []

    @property
    def transitions(self) -> pd.DataFrame:
        """Every endpoint state change, one row each (docs/schema.md)."""
        if self._transitions is None:
            raise AttributeError(_LEFT_OUT.format("transitions"))
        if not isinstance(self._transitions, pd.DataFrame):
            self._transitions = _transitions_frame(self._transitions, self._client_dir)
        return self._transitions

    @property
    def http(self) -> pd.DataFrame:
        """One row per HTTP/1 request and its response (docs/schema.md)."""
        if self._http is None:
            raise AttributeError(_LEFT_OUT.format("http"))
        return self._http

    def __repr__(self) -> str:
        c = self.capture
        return (f"<pcapsense.Analysis {c.path!r}: {c.frames} frames, {len(self.connections)} TCP "
                f"connections, {int(self.connections['abnormal'].sum()) if len(self.connections) else 0} abnormal>")

    @property
    def abnormal(self) -> pd.DataFrame:
        return self.connections[self.connections["abnormal"]]

    @property
    def tls(self) -> pd.DataFrame:
        """One row per TLS handshake (a connection, or a CONNECT tunnel, that carried a
        ClientHello or ServerHello): the TLS columns of `connections` without their
        prefix, the certificate flattened (`cert_*`), and the connection's cause."""
        return tls_frame(self.connections)

    def packets(self, stream: int) -> pd.DataFrame:
        """Every packet of one connection (its `stream` in `connections`: Wireshark's
        tcp.stream, or the Zeek record with split="zeek"), one row per packet, with the
        analysis flags and both endpoints' states after it. Read again from the file."""
        if self._options["path"] == "-":
            raise ValueError("packets() needs a file: standard input cannot be read twice")
        got = self.packets_of([stream])
        return got[int(stream)] if int(stream) in got else packets_frame(np.empty(0, dtype=layout.PACKET_DTYPE))

    def packets_of(self, streams) -> dict[int, pd.DataFrame]:
        """`packets()` of several connections, in one pass over the file(s); {} for
        standard input. Only their 4-tuples are tracked (as a `--jobs` shard tracks its
        own, so every packet's flags and states are those of the full analysis): memory
        and time do not grow with the capture's other connections. A connection's
        packets are its 4-tuple's from its first to its last frame."""
        if self._options["path"] == "-":
            return {}
        c = self.connections
        rows = c.loc[c["stream"].isin([int(s) for s in streams]),
                     ["stream", "client_ip", "client_port", "server_ip", "server_port", "first_frame", "last_frame"]]
        by_key: dict[bytes, list] = {}
        for r in rows.itertuples(index=False):
            by_key.setdefault(reader.flow_key(r.client_ip, r.client_port, r.server_ip, r.server_port), []).append(r)
        if not by_key:
            return {}
        eng = reader.new_engine(verify_checksums=self._options["verify_checksums"], emit_packets=True,
                                window=self._options.get("window", (reader.TS_MIN, reader.TS_MAX)),
                                max_frames=self._options.get("max_frames", 0), only_keys=b"".join(sorted(by_key)))
        chunks: list[np.ndarray] = []
        for f in self._options.get("files", [self._options["path"]]):
            eng.new_file()
            # (the transitions the engine records are not needed here: dropped as they come)
            reader.run(f, eng, on_rows=chunks.append, progress=lambda _pos: eng.take_transitions())
        arr = np.concatenate(chunks) if chunks else np.empty(0, dtype=layout.PACKET_DTYPE)
        local = np.frombuffer(eng.take_streams(), dtype=layout.STREAM_DTYPE)
        alen = np.where(local["ipver"] == 4, 4, 16)
        local_key = [reader.flow_key(bytes(local["addr"][i, 0][:alen[i]]), int(local["port"][i, 0]),
                                     bytes(local["addr"][i, 1][:alen[i]]), int(local["port"][i, 1]))
                     for i in range(len(local))]
        out: dict[int, pd.DataFrame] = {}
        for key, conns in by_key.items():
            of_key = np.isin(arr["stream"], [i for i, k in enumerate(local_key) if k == key])
            for r in conns:
                part = arr[of_key & (arr["frame"] >= r.first_frame) & (arr["frame"] <= r.last_frame)]
                if len(part):
                    part["stream"] = r.stream
                    out[int(r.stream)] = packets_frame(part)
        return out


_LEFT_OUT = ("the {} table was left out: analyze(..., tables=\"connections\") keeps only the "
             "connections; use tables=\"all\" (the default)")


TLS_COLUMNS = ["sni", "versions_offered", "version", "alpn_offered", "alpn", "client_hello_frame",
               "server_hello_frame", "handshake_complete", "client_app_data_frame", "alert", "alert_level",
               "alert_by", "alert_frame", "client_records", "server_records", "cipher_suite", "decrypted",
               "records_skipped", "early_data"]
CERT_FIELDS = ["subject", "issuer", "not_before", "not_after", "self_signed", "san", "days_to_expiry", "expired"]


def tls_frame(conns: pd.DataFrame) -> pd.DataFrame:
    keep = ["stream", "client_ip", "client_port", "server_ip", "server_port", "start"]
    if "tls" not in conns:
        return pd.DataFrame(columns=keep + TLS_COLUMNS + [f"cert_{f}" for f in CERT_FIELDS] + ["cause"])
    df = conns[conns["tls"].fillna(False).astype(bool)]
    out = df[[c for c in keep if c in df]].copy()
    for c in TLS_COLUMNS:
        out[c] = df[f"tls_{c}"] if f"tls_{c}" in df else None
    certs = df["tls_certificate"].tolist()
    for f in CERT_FIELDS:
        vals = [c.get(f) if isinstance(c, dict) else None for c in certs]
        if f in ("not_before", "not_after"):
            out[f"cert_{f}"] = pd.to_datetime(pd.Series(vals, index=df.index, dtype=object),
                                              utc=True).astype("datetime64[us, UTC]")
        elif f in ("self_signed", "expired"):
            out[f"cert_{f}"] = pd.array(vals, dtype="boolean")
        elif f == "days_to_expiry":
            out[f"cert_{f}"] = pd.array(vals, dtype="Float64")
        elif f == "san":
            out[f"cert_{f}"] = pd.Series([",".join(v) if v else None for v in vals], index=df.index, dtype=object)
        else:
            out[f"cert_{f}"] = pd.Series(vals, index=df.index, dtype=object)
    out["cause"] = df["cause"]
    return out.reset_index(drop=True)


def packets_frame(arr: np.ndarray) -> pd.DataFrame:
    flags = arr["flags"].astype(np.int32)
    letters = ["F", "S", "R", "P", "A", "U", "E", "C", "N"]
    flag_str = np.array(["".join(l for b, l in enumerate(letters) if f >> b & 1) for f in flags], dtype=object)
    a = arr["analysis"]
    return pd.DataFrame({
        "frame": arr["frame"],
        "time": pd.to_datetime(arr["ts"], unit="ns", utc=True),
        "stream": arr["stream"],
        "dir": arr["dir"],
        "flags": flag_str,
        "seq": arr["seq"].astype(np.int64),
        "ack": arr["ack"].astype(np.int64),
        "len": arr["payload_len"].astype(np.int64),
        "captured_len": arr["captured_len"].astype(np.int64),
        "win": arr["win"].astype(np.int32),
        "ttl": arr["ttl"].astype(np.int16),
        "ip_id": arr["ipid"].astype(np.int32),
        "checksum": pd.Categorical(np.array(["unverified", "good", "bad"])[arr["csum"]],
                                   categories=["unverified", "good", "bad"]),
        "retransmission": (a & layout.A_RETRANSMISSION) != 0,
        "out_of_order": (a & layout.A_OUT_OF_ORDER) != 0,
        "lost_segment": (a & layout.A_LOST_SEGMENT) != 0,
        "keep_alive": (a & layout.A_KEEP_ALIVE) != 0,
        "zero_window": (a & layout.A_ZERO_WINDOW) != 0,
        "dup_ack": (a & layout.A_DUP_ACK) != 0,
        "port_reused": (a & layout.A_REUSED_PORTS) != 0,
        "state_0_after": conn_table.state_categorical(arr["state0"]),
        "state_1_after": conn_table.state_categorical(arr["state1"]),
        "record_offset": arr["rec_off"],
    })


def _transitions_frame(arr: np.ndarray, client_dir: np.ndarray) -> pd.DataFrame:
    """The engine's transition rows -> the public table; `client_dir`: per stream, which
    direction is the client (connections' `_client_dir`)."""
    kinds = [k.name for k in Kind]            # Kind values are their positions
    df = pd.DataFrame({
        "stream": arr["stream"].copy(), "frame": arr["frame"].copy(),
        "time": pd.to_datetime(arr["ts"], unit="ns", utc=True),
        "endpoint_dir": arr["endpoint"].astype(np.int8),
        "old_state": conn_table.state_categorical(arr["old_state"]),
        "new_state": conn_table.state_categorical(arr["new_state"]),
        "kind": pd.Categorical.from_codes(arr["kind"].astype(np.int8), categories=kinds),
    }, copy=False)
    # endpoint_dir is relative to the stream's first sender; name the side
    side = (df["endpoint_dir"].to_numpy() != client_dir[df["stream"].to_numpy()]).astype(np.int8)
    df["endpoint"] = pd.Categorical.from_codes(side, categories=["client", "server"])
    return df


def analyze(path, *, verify_checksums: bool = False,
            progress: Callable[[int], None] | None = None, strict: bool = False,
            split: str = "wireshark", layers: str = "all", jobs: int | None = None,
            client=None, tables: str = "all", max_packets: int | None = None,
            since=None, until=None, connection_budget: int = 0, keylog=None, log=None,
            log_tz=None) -> Analysis:
    """Analyse one capture (pcap, pcapng, optionally gzip-compressed; '-' = stdin), or
    several as one: a list of paths, a directory or a glob pattern (rotated captures,
    `tcpdump -C/-G/-W`). Several files are read in the order of their first timestamp
    into one analysis, so connections that cross a file boundary are stitched and frame
    numbers run on as in `mergecap -a`; a file that cannot be read is reported and the
    others are still analysed.

    Raises `CaptureError` when the input cannot be read at all; a corrupt record later in
    the file is reported in `capture.error` and `capture.warnings` (everything before it is
    analysed) unless `strict=True`, which raises instead.

    `layers="all"` (default) parses HTTP/1.x, TLS and HTTP/2 and classifies with them;
    `layers="tcp"` skips the application layer (about twice as fast on large captures):
    the causes then rest on TCP evidence alone, and the application columns are empty.

    `split="wireshark"` (default): one row per Wireshark tcp.stream. `split="zeek"`: one
    row per Zeek conn.log record (Zeek's expiry timers and port-reuse rule; used for the
    Zeek conformance suite, see docs/conformance.md).

    `jobs`: processes to use (default: the machine's cores, one per 256 MiB of capture at
    most; one with `layers="tcp"`, where shards do not pay); `client`: a
    `dask.distributed.Client` to run the shards on instead (the files must be readable at
    the same paths on its workers). Every mode gives the same result: see
    pcapsense/parallel.py.

    `tables="connections"` keeps only the connections table (and `capture`, `tls`,
    `packets()`): `http` and `transitions` are never built, which saves time and about
    600 bytes per connection (the CLI's terminal, JSON and Markdown reports use it);
    `tables="all"` (default) keeps all of them.

    `max_packets`: analyse only the first that many frames (`tshark -c`); the rest of the
    capture is not read. `since`/`until`: analyse only the frames with since <= time <
    until: ISO 8601 text (UTC unless it names an offset), epoch seconds, or a datetime.
    The result is exactly that of the capture cut by `editcap -r` / `editcap -A -B`
    (frame and stream numbers count only the frames kept); `capture.warnings` says what
    was left out.

    Memory: about 1.8 KiB per connection at peak, plus about 130 MiB (measured on a
    SYN flood: 200k connections 478 MiB, 1M 1.8 GiB, with `tables="connections"`; every
    table adds the HTTP exchanges and transitions, 60 bytes a connection there, more on
    traffic with payload).
    `connection_budget`: raise `pcapsense.parallel.TooManyConnections` as soon as the
    capture is seen to hold more connections than that (its `estimate()`: how many in
    all), instead of spending the memory; the CLI then reads it out of core, in passes
    (pcapsense/bounded.py). 0 (default): no limit.

    `keylog`: a TLS key log file (the NSS `SSLKEYLOGFILE` format), or a list of them:
    the TLS connections whose secrets it holds are decrypted, and their HTTP/1 and
    HTTP/2 exchanges, alerts and certificates read as cleartext ones are (the
    `tls_decrypted` column says, per connection, what could not be). Secrets in the
    capture's own pcapng Decryption Secrets Blocks are used whether or not a key log
    is given. The environment's `$SSLKEYLOGFILE` is not read here (the CLI reads it).

    `log`: the program's log or stderr (a path, or a list of them): the Python
    exceptions in it (tracebacks, logged `RemoteDisconnected`s, urllib3's warnings) are
    matched to the connections that explain them: `.exceptions` (one row each, with its
    match and confidence) and the connections' `exceptions` column (see
    pcapsense/correlate). `log_tz`: the zone of the log's timestamps that carry none
    (a `datetime.tzinfo`, or text: 'UTC', '+02:00'; default: this machine's).
    """
    window = time_window(since, until)
    max_frames = frame_limit(max_packets)
    logs = [log] if isinstance(log, (str, os.PathLike)) else list(log or ())
    if logs:
        from . import correlate
        tz = correlate.parse_tz(log_tz) if isinstance(log_tz, str) or log_tz is None else log_tz
        events = [(os.fspath(p), correlate.read_log(p, tz)) for p in logs]
    with memory.no_cyclic_gc():
        result = _analyze(path, verify_checksums=verify_checksums, progress=progress, strict=strict,
                          split=split, layers=layers, jobs=jobs, client=client, tables=tables,
                          window=window, max_frames=max_frames, connection_budget=connection_budget,
                          keylog=keylog)
    if logs:
        correlate.attach(result, events, tz)
    return result


def frame_limit(max_packets) -> int:
    """`max_packets` (None: all) -> the engine's frame limit (0: none); a ValueError
    unless it is a whole number of at least 1."""
    if max_packets is not None and (isinstance(max_packets, bool) or int(max_packets) != max_packets
                                    or max_packets < 1):
        raise ValueError(f"max_packets must be a whole number of at least 1, not {max_packets!r}")
    return int(max_packets or 0)


def time_window(since, until) -> tuple[int, int]:
    """`since`/`until` (see parse_time; None: open) -> (from_ns, to_ns); a ValueError
    when either cannot be read or the window is empty."""
    window = (parse_time(since, "since") if since is not None else reader.TS_MIN,
              parse_time(until, "until") if until is not None else reader.TS_MAX)
    if window[0] >= window[1]:
        raise ValueError(f"empty time window: since ({since}) is not before until ({until})")
    return window


def parse_time(value, name: str = "time") -> int:
    """A point in time -> nanoseconds since the epoch, UTC: ISO 8601 text (no offset:
    UTC), epoch seconds (number or text, exact to the nanosecond), a datetime or a
    pandas Timestamp (naive: UTC). A ValueError names what could not be read."""
    if isinstance(value, bool):
        raise ValueError(f"{name}: not a time: {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            sec = decimal.Decimal(text)
        except decimal.InvalidOperation:
            sec = None
        if sec is not None and sec.is_finite():
            ns = int((sec * 1_000_000_000).to_integral_value(decimal.ROUND_FLOOR))
            if not reader.TS_MIN < ns < reader.TS_MAX:
                raise ValueError(f"{name}: out of range: {value!r}")
            return ns
        try:
            ts = pd.Timestamp(text)
        except (ValueError, TypeError, OverflowError):
            raise ValueError(f"{name}: not a time: {value!r} (ISO 8601 such as 2026-11-30T14:02:00Z, "
                             f"or epoch seconds)") from None
    elif isinstance(value, (int, float, np.integer, np.floating)):     # epoch seconds
        if not np.isfinite(value):
            raise ValueError(f"{name}: not a time: {value!r}")
        return parse_time(repr(float(value)) if isinstance(value, (float, np.floating)) else str(int(value)), name)
    else:
        try:
            ts = pd.Timestamp(value)
        except (ValueError, TypeError, OverflowError):
            raise ValueError(f"{name}: not a time: {value!r}") from None
    if ts is pd.NaT:
        raise ValueError(f"{name}: not a time: {value!r}")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value)


def _analyze(path, *, verify_checksums, progress, strict, split, layers, jobs, client, tables,
             window, max_frames, connection_budget=0, keylog=None) -> Analysis:
    files, unopened = input_files(path, window)
    opts = options(verify_checksums=verify_checksums, split=split, layers=layers, strict=strict, tables=tables,
                   window=window, max_frames=max_frames, keylog=keylog_paths(keylog))
    keep = tables == "all"
    if jobs is None:
        jobs = parallel.auto_jobs(files, layers)
    if connection_budget and client is None:     # (each shard's share: the parent merges them all)
        opts.max_streams = max(1, connection_budget // max(1, jobs if "-" not in files else 1))
    part = parallel.run(files, opts, jobs=jobs, client=client, progress=progress)
    memory.release()
    check_read(part)
    # memory: each input is let go as soon as its successor exists: the engine's stream
    # rows (856 bytes per connection) once the table and the few fields the classifier
    # reads are built, the exchanges once sorted; the classifier takes the facts out
    # column by column as it adds them to the table
    conns, times, trans = table_of(part)
    if not keep:
        part.transitions = trans = None
    app_df, part.app = part.app, None
    http = part.http.sort_values(["stream", "depth"], kind="stable").reset_index(drop=True) if keep else None
    part.http = None
    memory.release()
    conns = classify.run(conns, app_df, times)
    del app_df, times
    memory.release()
    cap = capture_facts(part, opts, files, unopened, len(conns))
    return Analysis(cap, conns, trans, reread_options(files, opts), http=http)


def table_of(part: parallel.Partial) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The connections table of a read (`part`), the fields of the engine's stream rows
    the classifier reads (classify.stream_times) and the transition rows. The stream
    rows themselves are let go."""
    streams = np.frombuffer(part.streams, dtype=layout.STREAM_DTYPE)
    trans = np.frombuffer(part.transitions, dtype=layout.TRANSITION_DTYPE)
    conns = conn_table.build(streams, trans)
    times = classify.stream_times(streams)
    part.streams = None
    return conns, times, trans


def reread_options(files: list[str], opts: parallel.Options) -> dict:
    """What Analysis.packets_of needs to read the same frames again."""
    return {"path": files[0], "files": files, "verify_checksums": opts.verify_checksums, "window": opts.window,
            "max_frames": opts.max_frames}


def input_files(path, window: tuple[int, int]) -> tuple[list[str], int]:
    """The files to read as one capture, in the order of their first timestamps, and
    how many rotated files the time window left unopened (files_in_window)."""
    files = reader.expand_inputs(path)
    unopened = 0
    if len(files) > 1:
        firsts = {f: reader.first_timestamp(f) for f in files}
        files.sort(key=lambda f: (firsts[f] is None, firsts[f] or 0))
        if window != (reader.TS_MIN, reader.TS_MAX):
            kept = files_in_window(files, firsts, window)
            unopened, files = len(files) - len(kept), kept
    return files, unopened


def keylog_paths(keylog) -> tuple:
    """`keylog` (None, a path, or a list of them) as the tuple parallel.Options holds."""
    if keylog is None:
        return ()
    if isinstance(keylog, (str, os.PathLike)):
        keylog = [keylog]
    return tuple(os.fspath(k) for k in keylog)


def options(*, split: str, layers: str, tables: str, **rest) -> parallel.Options:
    """The stages' options; a ValueError for a value out of its set."""
    if split not in ("wireshark", "zeek"):
        raise ValueError("split must be 'wireshark' or 'zeek'")
    if layers not in ("all", "tcp"):
        raise ValueError("layers must be 'all' or 'tcp'")
    if tables not in ("all", "connections"):
        raise ValueError("tables must be 'all' or 'connections'")
    return parallel.Options(split=split, layers=layers, tables=tables, **rest)


def check_read(part: parallel.Partial) -> None:
    """CaptureError when not one of the files read as a capture."""
    if not part.formats:
        raise part.results[0].error or CaptureError("not a capture", path=part.results[0].path)


def capture_facts(part: parallel.Partial, opts: parallel.Options, files: list[str], unopened: int,
                  connections: int) -> Capture:
    """The `capture` facts and warnings of a read (`part`: its results, formats,
    counters and notes)."""
    results, counters = part.results, part.counters
    window, max_frames = opts.window, opts.max_frames
    res = results[0] if len(results) == 1 else _merge_results(results)
    warnings = list(res.warnings) + list(part.notes) + _selection_notes(window, max_frames, counters, results,
                                                                          files, unopened)
    if res.error is not None:
        warnings.append(f"{res.error} (analysed the {counters['frames']} frames before it)")
    bad = counters["bad_checksums"]
    if bad and not opts.verify_checksums:
        warnings.append(f"{bad} TCP packets have bad checksums (usual for captures taken on the "
                        f"sending host with checksum offload); analysed anyway, --verify-checksums to drop them")
    if counters.get("unsupported_link_packets"):
        other = counters.get("unread_link_types", [])
        kind = (f"link type {linktype_name(other[0])} ({other[0]}), which pcapsense does not read,"
                if len(other) == 1 else "a link type pcapsense does not read" +
                (f" ({', '.join(f'{linktype_name(x)} ({x})' for x in other)})" if other else ""))
        warnings.append(f"{counters['unsupported_link_packets']} frames of {kind} were skipped")
    if counters.get("undecodable_packets"):
        warnings.append(f"{counters['undecodable_packets']} frames could not be decoded (malformed or cut headers)")
    if counters.get("ip_datagrams_incomplete"):
        warnings.append(f"{counters['ip_datagrams_incomplete']} fragmented IP datagrams never completed (a fragment "
                        f"missing or cut): the TCP packets inside them are not in the analysis")
    if counters.get("opaque_ipsec_packets"):
        warnings.append(f"{counters['opaque_ipsec_packets']} IPsec ESP or IPComp packets: encrypted or compressed, "
                        f"the TCP inside them is not read")
    for bit, what in ODD_HEADER:
        if counters.get("odd_header", 0) & bit:
            warnings.append(f"the capture is unusual: {what}")
    first = pd.Timestamp(counters["first_ts_ns"], unit="ns", tz="UTC") if counters["frames"] else None
    last = pd.Timestamp(counters["last_ts_ns"], unit="ns", tz="UTC") if counters["frames"] else None
    cap = Capture(
        path=res.path,
        format=",".join(sorted(part.formats)),
        compressed=res.compressed,
        file_bytes=res.file_bytes,
        link_types=[linktype_name(x) for x in counters["link_types"]],
        frames=counters["frames"],
        tcp_packets=counters["tcp_packets"],
        non_tcp_packets=counters["frames"] - counters["tcp_packets"],
        connections=connections,
        first_time=first, last_time=last,
        truncated=res.truncated,
        warnings=warnings,
        error=str(res.error) if res.error else None,
        counters=counters,
    )
    cap.files = [r.path for r in results]
    tls = {k: counters.pop(k) for k in TLS_COUNTERS if k in counters}
    if part.keylog is not None:
        cap.tls_keys = dict({k: v for k, v in part.keylog.items() if k != "warnings"},
                            framed_connections=tls.get("tls_framed_streams", 0),
                            records=tls.get("tls_records", 0), framing_lost=tls.get("tls_framing_lost", 0),
                            framing_resynced=tls.get("tls_framing_resynced", 0))
        cap.warnings = list(part.keylog["warnings"]) + cap.warnings
    return cap


#: the engine's counters of TLS framing (reported under capture.tls_keys, and only when
#: a key log or secrets block was there)
TLS_COUNTERS = ("tls_framed_streams", "tls_records", "tls_framing_lost", "tls_framing_resynced")


def files_in_window(files: list[str], firsts: dict, window: tuple[int, int]) -> list[str]:
    """Of rotated captures sorted by their first timestamps (`firsts`: ns or None), the
    ones that can hold frames in `window`: not a file that starts at or after its end,
    nor one whose successor starts before its beginning. That assumes each file's frames
    come before the next file's, as tcpdump -C/-G/-W writes them; a file whose first
    timestamp is unknown (empty, unreadable) is kept, so its problem is reported. At
    least the first file is kept (an empty window still reads as a capture)."""
    kept = []
    for i, f in enumerate(files):
        first = firsts.get(f)
        nxt = firsts.get(files[i + 1]) if i + 1 < len(files) else None
        if first is not None and first >= window[1]:
            continue
        if first is not None and nxt is not None and nxt < window[0]:
            continue
        kept.append(f)
    return kept or files[:1]


def _selection_notes(window, max_frames, counters, results, files, unopened: int) -> list[str]:
    """What `since`/`until`/`max_packets` left out, for the capture's warnings
    (`unopened`: rotated files outside the window, see files_in_window)."""
    notes = []
    if window != (reader.TS_MIN, reader.TS_MAX):
        ends = [_iso_ns(t) if t not in (reader.TS_MIN, reader.TS_MAX) else None for t in window]
        span = (f"from {ends[0]} " if ends[0] else "") + (f"until {ends[1]}" if ends[1] else "")
        notes.append(f"time window {span.strip()}: {counters.get('frames_outside_window', 0)} frames outside it "
                     f"were skipped; frame and stream numbers count only the frames inside, as in "
                     f"the output of editcap -A/-B")
    if any(getattr(r, "limited", False) for r in results):
        unread = len(files) - len(results)
        notes.append(f"stopped after {max_frames} frames (max packets); the rest of the capture was not read"
                     + (f" ({unread} later file{'s' if unread != 1 else ''} not opened)" if unread > 0 else ""))
    if unopened:
        notes.append(f"{unopened} of the {unopened + len(files)} files lie outside the time window by their "
                     f"first timestamps (rotated captures) and were not opened")
    return notes


def _iso_ns(ns: int) -> str:
    return pd.Timestamp(ns, unit="ns", tz="UTC").isoformat().replace("+00:00", "Z")


def _merge_results(results: list) -> "reader.ReadResult":
    merged = reader.ReadResult(path=f"{len(results)} files: " + ", ".join(os.path.basename(r.path) for r in results),
                               compressed=any(r.compressed for r in results),
                               file_bytes=sum(r.file_bytes or 0 for r in results))
    for r in results:
        merged.truncated |= r.truncated
        merged.warnings += r.warnings
        if r.error is not None:
            merged.warnings.append(f"{r.error} (the other files were analysed)")
    return merged
