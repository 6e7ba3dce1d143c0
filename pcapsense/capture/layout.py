"""numpy dtypes of the compiled engine's output structs (`engine/engine.h`).

These mirror the C structs field for field (natural alignment, `align=True`);
`check_layout()` runs at import and refuses to go on if a size or offset differs, so a
change on one side cannot silently garble the columns.
"""

from __future__ import annotations

import numpy as np

_I8 = np.int64
_U4 = np.uint32
_U2 = np.uint16
_U1 = np.uint8

DIR_DTYPE = np.dtype(
    [(n, _I8) for n in (
        "packets", "payload_bytes", "captured_payload_bytes", "seq_hi", "ip_bytes",
        "first_frame", "last_frame", "first_ts", "last_ts",
        "first_data_frame", "last_data_frame", "first_data_ts", "last_data_ts",
        "first_syn_frame", "first_synack_frame", "first_fin_frame", "first_rst_frame",
        "first_fin_ts", "first_rst_ts", "last_seg_ts", "last_syn_ts", "first_synack_ts",
        "first_alert_frame", "first_alert_ts", "last_msg_frame", "last_msg_ts",
        "last_msg12_frame", "last_msg12_ts")]
    + [(n, _U4) for n in (
        "isn", "nextseq", "last_ack", "fin_seq",
        "retransmissions", "out_of_order", "lost_segments", "ack_unseen", "keepalives",
        "zero_windows", "dup_acks", "syn_pkts", "synack_pkts", "fin_pkts", "rst_pkts",
        "syn_retransmits", "bad_checksums", "unverified_checksums", "cut_packets")]
    + [(n, _U2) for n in ("last_win", "ipid_first", "ipid_last", "ttl_changes", "mac_changes", "ipid_zero")]
    + [(n, _U1) for n in ("ttl_first", "ttl_last", "ttl_min", "ttl_max")]
    + [("mac_first", _U1, (6,)), ("mac_last", _U1, (6,)), ("head", _U1, (8,))]
    + [(n, _U1) for n in ("head_len", "flags", "state", "zstate", "hist_t", "hist_g", "hist_w",
                          "hist_c", "hflags", "pad")]
    + [(n, _U4) for n in ("h_syn_seq", "h_fin_seq", "h_rst_seq", "pad2")],
    align=True,
)

HIST_MAX = 48

STREAM_DTYPE = np.dtype(
    [(n, _I8) for n in (
        "stream", "first_frame", "last_frame", "first_ts", "last_ts", "max_idle_ns",
        "max_idle_frame", "fin_frame", "fin_ts", "rst_frame", "rst_ts", "anomaly_frame")]
    + [(n, _U4) for n in ("anomalies", "rst_seq", "rst_expected_seq", "rst_ack")]
    + [(n, _U1) for n in ("fin_dir", "fin_sender_state", "fin_peer_state", "rst_dir",
                          "rst_sender_state", "rst_peer_state", "rst_ttl", "rst_prev_ttl")]
    + [("rst_ipid", _U2), ("rst_prev_ipid", _U2)]
    + [(n, _U1) for n in ("rst_flags", "rst_mac_differs", "ipver", "reused")]
    + [("addr", _U1, (2, 16)), ("port", _U2, (2,))]
    + [(n, _U1) for n in ("vlan_or_tunnel", "simultaneous_close", "rst_after_close",
                          "fin_rst_same_packet")]
    + [("history", f"S{HIST_MAX}"), ("d", DIR_DTYPE, (2,))],
    align=True,
)

PACKET_DTYPE = np.dtype(
    [(n, _I8) for n in ("frame", "ts", "stream", "rec_off")]
    + [(n, _U4) for n in ("seq", "ack", "payload_len", "captured_len", "nextseq_before")]
    + [(n, _U2) for n in ("flags", "win", "ipid", "analysis", "payload_off")]
    + [(n, _U1) for n in ("dir", "ttl", "csum", "iface", "state0", "state1")]
    + [("mac", _U1, (6,)), ("pad", _U1, (2,))],
    align=True,
)

TRANSITION_DTYPE = np.dtype(
    [("stream", _I8), ("frame", _I8), ("ts", _I8), ("endpoint", _U1), ("old_state", _U1),
     ("new_state", _U1), ("kind", _U1), ("pad", _U1, (4,))],
    align=True,
)

APP_DTYPE = np.dtype(
    [("stream", _I8), ("frame", _I8), ("ts", _I8), ("seq", _U4), ("len", _U4), ("cap", _U4),
     ("off", _U4), ("dir", _U1), ("tail", _U1), ("flags", _U1), ("pad", _U1, (5,))],
    align=True,
)

# one TLS record of a connection whose keys are known (tls_frame.c; engine.h: tlsrec_t):
# its bytes are data[off:off+head] (the body's first `head` bytes; head == len: whole)
# then data[off+head:off+head+tail] (its last `tail` bytes)
TLSREC_DTYPE = np.dtype(
    [(n, _I8) for n in ("stream", "frame", "ts", "end_frame", "end_ts")]
    + [(n, _U4) for n in ("offset", "len", "index", "off", "head", "tail")]
    + [("version", _U2), ("dir", _U1), ("type", _U1), ("flags", _U1), ("pad", _U1, (3,))],
    align=True,
)
TLSR_AFTER_GAP, TLSR_MISSING, TLSR_PARTIAL, TLSR_SESSION = 0x01, 0x02, 0x04, 0x08

# Wireshark's tcp.analysis bits as the engine sets them in PACKET_DTYPE["analysis"]
A_RETRANSMISSION = 0x0001
A_LOST_SEGMENT = 0x0002
A_ACK_UNSEEN = 0x0004
A_KEEP_ALIVE = 0x0008
A_DUP_ACK = 0x0010
A_ZERO_WINDOW = 0x0020
A_OUT_OF_ORDER = 0x0200
A_REUSED_PORTS = 0x2000


def check_layout(sizes: dict) -> None:
    expected = {
        "stream": STREAM_DTYPE.itemsize, "dir": DIR_DTYPE.itemsize,
        "pkt": PACKET_DTYPE.itemsize, "trans": TRANSITION_DTYPE.itemsize,
        "stream.d": STREAM_DTYPE.fields["d"][1],
        "stream.history": STREAM_DTYPE.fields["history"][1],
        "dir.state": DIR_DTYPE.fields["state"][1],
        "app": APP_DTYPE.itemsize,
        "tlsrec": TLSREC_DTYPE.itemsize,
    }
    bad = {k: (sizes[k], v) for k, v in expected.items() if sizes[k] != v}
    if bad:
        raise ImportError(f"pcapsense engine layout mismatch (C, numpy): {bad}; rebuild the package")
