"""Stage 3b: the engine's per-stream table -> the public `connections` DataFrame.

Everything here is vectorised over connections (numpy/pandas): no Python loop per
connection except where a string must be built (addresses, history re-casing).

Column reference: docs/schema.md (a public interface: keep names and meanings stable).
"""

from __future__ import annotations

import ipaddress

import numpy as np
import pandas as pd

from . import zeek
from .state import Kind, State

STATE_NAMES = [s.name for s in State]
CLOSERS = ["client", "server", "middlebox", "none"]
CLOSE_KINDS = ["FIN", "RST", "none"]

# bytes that open a request (client) or a response (server): for telling sides apart
# when the handshake was not captured
_METHODS = (b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"CONN", b"TRAC",
            b"PRI ")


def _looks_like(head: bytes) -> int:
    """+1 request-like, -1 response-like, 0 unknown."""
    if head.startswith(_METHODS):
        return 1
    if head.startswith(b"HTTP/"):
        return -1
    if len(head) >= 6 and head[0] == 0x16 and head[1] == 0x03:
        return 1 if head[5] == 1 else -1 if head[5] == 2 else 0
    return 0


_OCTETS = np.array([str(i) for i in range(256)], dtype="U3")


def _ipv4_text(addrs: np.ndarray) -> np.ndarray:
    """Distinct IPv4 addresses (uint32) as dotted-quad text (what ipaddress prints),
    with numpy's string ufuncs: a SYN flood has a distinct source per connection."""
    out = _OCTETS[addrs >> 24]
    for shift in (16, 8, 0):
        out = np.strings.add(np.strings.add(out, "."), _OCTETS[(addrs >> shift) & 255])
    return out.astype(object)


def _addr_strings(addr: np.ndarray, ipver: np.ndarray) -> np.ndarray:
    """The engine's 16-byte addresses as text, one string object per distinct address
    (a connection's rows share it)."""
    out = np.empty(len(addr), dtype=object)
    v4 = ipver == 4
    if v4.any():
        raw = np.ascontiguousarray(addr[v4][:, :4])
        ints = raw.view(">u4").ravel().astype(np.uint32)
        uniq, inverse = np.unique(ints, return_inverse=True)
        out[v4] = _ipv4_text(uniq)[inverse.ravel()]
    if (~v4).any():
        raw = np.ascontiguousarray(addr[~v4]).view("V16").ravel()
        uniq, inverse = np.unique(raw, return_inverse=True)
        text = np.array([str(ipaddress.IPv6Address(u.tobytes())) for u in uniq], dtype=object)
        out[~v4] = text[inverse.ravel()]
    return out


def _text_array(codes: np.ndarray, texts: list[str]):
    """pd.array(texts[codes], dtype="str") without a Python string per row (pyarrow's
    dictionary decoding when the str dtype is pyarrow's)."""
    want = pd.StringDtype(na_value=np.nan)
    if want.storage == "pyarrow":
        import pyarrow as pa
        arr = pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(texts, pa.large_string()))
        return pd.array(arr.dictionary_decode(), dtype="str")
    return pd.array(np.array(texts, dtype=object)[codes], dtype="str")


def _pick(cond: np.ndarray, a, b):
    return np.where(cond, a, b)


def _ts(ns: np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(ns, unit="ns", utc=True)


def _nullable(arr: np.ndarray, missing: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(np.where(missing, 0, arr).astype(np.int64), np.asarray(missing, dtype=bool))


def _cat(values, categories) -> pd.Categorical:
    """Text values (a numpy str array) as a categorical of `categories`, the codes
    found by a sorted search (numpy's string compares; pandas would hash every row)."""
    values = np.asarray(values)
    cats = np.asarray(categories, dtype=values.dtype if values.dtype.kind == "U" else None)
    if values.dtype.kind != "U" or not len(values):
        return pd.Categorical(values, categories=categories)
    order = np.argsort(cats)
    pos = np.minimum(np.searchsorted(cats[order], values), len(cats) - 1)
    codes = np.where(cats[order][pos] == values, order[pos], -1)
    return pd.Categorical.from_codes(codes, categories=categories)


def state_categorical(codes: np.ndarray) -> pd.Categorical:
    """Endpoint states (the engine's State values; -1 = none) as a categorical of their
    names, without a string per row."""
    return pd.Categorical.from_codes(np.asarray(codes).astype(np.int8), STATE_NAMES)


class _Side:
    """One side's fields (client or server) of every connection, picked when asked for
    and not kept (the engine has ~60 per side, the table needs ~20; a field that only
    feeds a sum is freed at once instead of living until the table is built)."""

    def __init__(self, take_a: np.ndarray, a: np.ndarray, b: np.ndarray):
        self._take_a, self._a, self._b = take_a, a, b

    def __getitem__(self, field: str) -> np.ndarray:
        return _pick(self._take_a, self._a[field], self._b[field])


def client_direction(streams: np.ndarray):
    """Which side of each stream is the client (0 = the stream's first sender): the SYN
    sender; else the peer of the SYN/ACK sender; else the side whose first bytes look
    like a request (HTTP method, TLS ClientHello) or not like a response; else the first
    data sender; else the higher port. Returns (client_dir, rule, handshake_seen)."""
    d0, d1 = streams["d"][:, 0], streams["d"][:, 1]
    syn0, syn1 = d0["first_syn_frame"], d1["first_syn_frame"]
    sa0, sa1 = d0["first_synack_frame"], d1["first_synack_frame"]
    port0, port1 = streams["port"][:, 0], streams["port"][:, 1]
    data0, data1 = d0["first_data_frame"], d1["first_data_frame"]
    by_syn = (syn0 > 0) | (syn1 > 0)
    client1_syn = (syn1 > 0) & ((syn0 == 0) | (syn1 < syn0))
    by_synack = ~by_syn & ((sa0 > 0) | (sa1 > 0))
    # the first bytes are looked at only where no handshake packet decides
    look0, look1 = np.zeros(len(streams), dtype=np.int8), np.zeros(len(streams), dtype=np.int8)
    for i in np.flatnonzero(~by_syn & ~by_synack).tolist():
        look0[i] = _looks_like(bytes(d0["head"][i][: int(d0["head_len"][i])]))
        look1[i] = _looks_like(bytes(d1["head"][i][: int(d1["head_len"][i])]))
    client1_synack = (sa0 > 0) & ((sa1 == 0) | (sa0 < sa1))
    by_look = ~by_syn & ~by_synack & ((look0 != 0) | (look1 != 0))
    client1_look = (look1 > 0) | ((look1 == 0) & (look0 < 0))
    by_data = ~by_syn & ~by_synack & ~by_look & ((data0 > 0) | (data1 > 0))
    client1_data = (data1 > 0) & ((data0 == 0) | (data1 < data0))
    client1_port = port1 > port0
    client_dir = np.select([by_syn, by_synack, by_look, by_data],
                           [client1_syn, client1_synack, client1_look, client1_data],
                           default=client1_port).astype(np.int8)
    client_rule = np.select([by_syn, by_synack, by_look, by_data],
                            ["syn", "syn-ack", "payload", "first-data"], default="port")
    return client_dir, client_rule, by_syn


def handshake_acks(transitions: np.ndarray) -> np.ndarray:
    """The transition rows `build()` reads (a mask): the client's handshake ACK arriving
    at the server (SYN_RECEIVED -> ESTABLISHED on a segment in)."""
    t = transitions
    return (t["old_state"] == State.SYN_RECEIVED) & (t["new_state"] == State.ESTABLISHED) & (t["kind"] == Kind.SEG_IN)


def build(streams: np.ndarray, transitions: np.ndarray) -> pd.DataFrame:
    """One row per TCP connection (Wireshark tcp.stream), columns as in docs/schema.md.
    `transitions`: the engine's transition rows, all of them or only `handshake_acks()`."""
    n = len(streams)
    d0, d1 = streams["d"][:, 0], streams["d"][:, 1]

    # ---- who is the client
    client_dir, client_rule, by_syn = client_direction(streams)
    # text columns become categoricals as soon as they exist (memory: the text arrays
    # would otherwise all live until the table is built)
    client_rule = _cat(client_rule, ["syn", "syn-ack", "payload", "first-data", "port"])
    port0, port1 = streams["port"][:, 0], streams["port"][:, 1]
    c1 = client_dir == 1
    c, s = _Side(c1, d1, d0), _Side(c1, d0, d1)

    ipver = streams["ipver"]
    addr0 = _addr_strings(streams["addr"][:, 0], ipver)
    addr1 = _addr_strings(streams["addr"][:, 1], ipver)

    # ---- first FIN / first RST and the close
    fin_frame, rst_frame = streams["fin_frame"], streams["rst_frame"]
    has_fin, has_rst = fin_frame > 0, rst_frame > 0
    rst_first = has_rst & (~has_fin | (rst_frame <= fin_frame))   # FIN+RST: the RST decides
    fin_first = has_fin & ~rst_first
    fin_by_client = streams["fin_dir"] == client_dir
    rst_by_client = streams["rst_dir"] == client_dir
    side = lambda by_client, present: np.where(~present, "none", np.where(by_client, "client", "server"))  # noqa: E731
    closer = _cat(np.where(rst_first, side(rst_by_client, has_rst), side(fin_by_client, has_fin)), CLOSERS)
    close_kind = _cat(np.select([rst_first, fin_first], ["RST", "FIN"], default="none"), CLOSE_KINDS)
    close_frame = np.where(rst_first, rst_frame, np.where(fin_first, fin_frame, 0))
    close_ts = np.where(rst_first, streams["rst_ts"], np.where(fin_first, streams["fin_ts"], 0))
    closer_state = np.where(rst_first, streams["rst_sender_state"], streams["fin_sender_state"])
    peer_state = np.where(rst_first, streams["rst_peer_state"], streams["fin_peer_state"])
    closed = rst_first | fin_first

    # ---- handshake RTT: SYN -> SYN/ACK -> the client's ACK (Wireshark's iRTT)
    rtt_ms = np.full(n, np.nan)
    if len(transitions):
        est = transitions[handshake_acks(transitions)]     # the client's ACK arrived at the server
        if len(est):
            idx, first = np.unique(est["stream"], return_index=True)
            ack_ts = np.zeros(n, dtype=np.int64)
            ack_ts[idx] = est["ts"][first]
            ok = (ack_ts > 0) & (c["last_syn_ts"] > 0) & (s["first_synack_ts"] > 0) & \
                (c["last_syn_ts"] <= s["first_synack_ts"])
            rtt_ms = np.where(ok, (ack_ts - c["last_syn_ts"]) / 1e6, np.nan)
            rtt_ms = np.where(ok & (ack_ts < c["last_syn_ts"]), np.nan, rtt_ms)

    # ---- Zeek view
    first_is_syn = (d0["first_syn_frame"] == streams["first_frame"]) & (d0["first_syn_frame"] > 0)
    first_is_synack = (d0["first_synack_frame"] == streams["first_frame"]) & (d0["first_synack_frame"] > 0)
    n_pk = d0["packets"] + d1["packets"]
    flipped = zeek.originator_is_dir1(first_is_syn, first_is_synack, n_pk, port0, port1)
    hist = zeek.history(streams["history"], flipped)
    zo = np.where(flipped, d1["zstate"], d0["zstate"])
    zr = np.where(flipped, d0["zstate"], d1["zstate"])

    def seq_bytes(d):
        b = d["seq_hi"] - (d["syn_pkts"] + d["synack_pkts"] > 0) - (d["fin_pkts"] > 0)
        return np.maximum(b, 0)

    bytes0, bytes1 = seq_bytes(d0), seq_bytes(d1)
    zb_o = np.where(flipped, bytes1, bytes0)
    zb_r = np.where(flipped, bytes0, bytes1)
    conn_state = _cat(zeek.conn_state(zo, zr, zb_o, zb_r, hist), zeek.CONN_STATES)
    del zo, zr, zb_o, zb_r
    hist = _text_array(*hist)

    start_ns, end_ns = streams["first_ts"], streams["last_ts"]
    handshake_seen = by_syn

    df = pd.DataFrame({
        "stream": streams["stream"].astype(np.int64),
        "client_ip": _pick(c1, addr1, addr0),
        "client_port": _pick(c1, port1, port0).astype(np.int32),
        "server_ip": _pick(c1, addr0, addr1),
        "server_port": _pick(c1, port0, port1).astype(np.int32),
        "ip_version": ipver.astype(np.int8),
        "client_inferred": ~handshake_seen,
        "client_rule": client_rule,
        "first_frame": streams["first_frame"].copy(),     # (not views of the engine's rows)
        "last_frame": streams["last_frame"].copy(),
        "start": _ts(start_ns),
        "end": _ts(end_ns),
        "duration_s": (end_ns - start_ns) / 1e9,
        "packets": n_pk.astype(np.int64),
        "client_packets": c["packets"],
        "server_packets": s["packets"],
        "client_bytes": _pick(c1, bytes1, bytes0).astype(np.int64),
        "server_bytes": _pick(c1, bytes0, bytes1).astype(np.int64),
        "client_payload_bytes": c["payload_bytes"],
        "server_payload_bytes": s["payload_bytes"],
        "conn_state": conn_state,
        "history": hist,
        "closer": closer,
        "close_kind": close_kind,
        "close_frame": _nullable(close_frame, ~closed),
        "close_time": pd.Series(_ts(close_ts)).where(closed, pd.NaT).array,
        "closer_state": state_categorical(np.where(closed, closer_state, -1)),
        "peer_state": state_categorical(np.where(closed, peer_state, -1)),
        "first_fin_frame": _nullable(fin_frame, ~has_fin),
        "first_fin_by": _cat(side(fin_by_client, has_fin), ["client", "server", "none"]),
        "first_rst_frame": _nullable(rst_frame, ~has_rst),
        "first_rst_by": _cat(side(rst_by_client, has_rst), ["client", "server", "none"]),
        "client_state": state_categorical(c["state"]),
        "server_state": state_categorical(s["state"]),
        "rtt_ms": rtt_ms,
        "retransmissions": (c["retransmissions"] + s["retransmissions"]).astype(np.int64),
        "client_retransmissions": c["retransmissions"].astype(np.int64),
        "server_retransmissions": s["retransmissions"].astype(np.int64),
        "out_of_order": (c["out_of_order"] + s["out_of_order"]).astype(np.int64),
        "lost_segments": (c["lost_segments"] + s["lost_segments"]).astype(np.int64),
        "zero_windows": (c["zero_windows"] + s["zero_windows"]).astype(np.int64),
        "keepalives": (c["keepalives"] + s["keepalives"]).astype(np.int64),
        "dup_acks": (c["dup_acks"] + s["dup_acks"]).astype(np.int64),
        "syn_retransmits": c["syn_retransmits"].astype(np.int64),
        "max_idle_s": streams["max_idle_ns"] / 1e9,
        "max_idle_frame": _nullable(streams["max_idle_frame"], streams["max_idle_frame"] == 0),
        "rst_after_close": streams["rst_after_close"].astype(bool),
        "simultaneous_close": streams["simultaneous_close"].astype(bool),
        "fin_rst_same_packet": streams["fin_rst_same_packet"].astype(bool),
        "port_reused": streams["reused"].astype(bool),
        "tunnelled": streams["vlan_or_tunnel"].astype(bool),
        "client_ttl_first": c["ttl_first"].astype(np.int16),
        "client_ttl_last": c["ttl_last"].astype(np.int16),
        "client_ttl_changes": c["ttl_changes"].astype(np.int32),
        "server_ttl_first": s["ttl_first"].astype(np.int16),
        "server_ttl_last": s["ttl_last"].astype(np.int16),
        "server_ttl_changes": s["ttl_changes"].astype(np.int32),
        "client_ipid_first": c["ipid_first"].astype(np.int32),
        "client_ipid_last": c["ipid_last"].astype(np.int32),
        "server_ipid_first": s["ipid_first"].astype(np.int32),
        "server_ipid_last": s["ipid_last"].astype(np.int32),
        "rst_ttl": _nullable(streams["rst_ttl"], ~has_rst),
        "rst_prev_ttl": _nullable(streams["rst_prev_ttl"], ~has_rst),
        "rst_ipid": _nullable(streams["rst_ipid"], ~has_rst),
        "rst_seq_expected": _nullable((streams["rst_seq"] == streams["rst_expected_seq"]).astype(np.int64), ~has_rst).astype("boolean"),
        "rst_mac_differs": streams["rst_mac_differs"].astype(bool),
        "client_bad_checksums": c["bad_checksums"].astype(np.int64),
        "server_bad_checksums": s["bad_checksums"].astype(np.int64),
        "snaplen_cut_packets": (c["cut_packets"] + s["cut_packets"]).astype(np.int64),
        "anomalies": streams["anomalies"].astype(np.int64),
        "first_anomaly_frame": _nullable(streams["anomaly_frame"], streams["anomaly_frame"] == 0),
    }, copy=False)     # every column is a new array: no second, consolidated copy of the table
    # abnormal (until the classifier says more): ended by a RST, or never answered/refused
    df["abnormal"] = (df["close_kind"] == "RST").to_numpy() | \
        df["conn_state"].isin(["S0", "REJ", "RSTOS0", "RSTRH", "SH", "SHR"]).to_numpy()
    df["wireshark_filter"] = wireshark_filter(df["stream"])
    df["_client_dir"] = client_dir
    return df


def renumber(df: pd.DataFrame, streams: np.ndarray) -> None:
    """Give the rows of `df` (built from a shard's own stream numbers) the stream
    numbers `streams`, and everything derived from them."""
    df["stream"] = streams
    df["wireshark_filter"] = wireshark_filter(df["stream"])


def wireshark_filter(stream: pd.Series) -> pd.Series:
    """The display filter that selects each stream in Wireshark (the connections
    table's wireshark_filter column)."""
    return "tcp.stream eq " + stream.astype(str)
