"""Zeek-compatible `conn_state` and `history`, computed from the engine's per-endpoint
Zeek states (see `ZEEK_TRANSITIONS` in `state.py`) and its history letters.

`conn_state` follows `function conn_state()` of Zeek's `base/protocols/conn/main.zeek`
rule for rule (vectorised over all connections):

1. responder RESET: REJ if the originator is SYN_SENT/SYN_ACK_SENT, or also RESET with no
   payload either way; RSTRH if the originator is inactive; else RSTR.
2. originator RESET: if the responder is inactive, RSTOS0 when history matches
   `^?S[^HAFGIQ]*R.*`, else OTH; otherwise RSTO.
3. both CLOSED: SF.  4. originator CLOSED: SH (responder inactive) or S2.
5. responder CLOSED: SHR (originator inactive) or S3.
6. originator SYN_SENT and responder INACTIVE: S0.  7. both ESTABLISHED: S1.  8. OTH.

Direction: Zeek's originator is the sender of the first packet when that is a SYN;
otherwise Zeek flips the roles (history gets `^`) when only the source port looks like
a server port, or both do and the source port is the lower (not for a SYN/ACK). A
leading SYN/ACK followed by anything makes the SYN/ACK sender the responder (`^h`).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .state import ZeekState as Z

CONN_STATES = ["S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH",
               "SHR", "OTH"]

# Ports Zeek's default analyzers register (the "likely server ports" of its heuristic).
LIKELY_SERVER_PORTS = frozenset({
    21, 22, 23, 25, 53, 80, 81, 88, 110, 111, 135, 137, 139, 143, 389, 443, 445, 465, 502,
    514, 563, 585, 587, 614, 636, 989, 990, 992, 993, 994, 995, 1080, 1194, 1433, 1521, 1812,
    2049, 3128, 3306, 3389, 5060, 5222, 5223, 5269, 5432, 5672, 5900, 6379, 6666, 6667, 6668,
    6669, 8000, 8080, 8081, 8443, 8888, 9200, 11211, 27017,
})

_RSTOS0 = re.compile(r"^\^?S[^HAFGIQ]*R.*")


def _norm(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.int16)
    return np.where(z == Z.RESET_AFTER_FIN, Z.RESET, z)


def originator_is_dir1(first_is_syn, first_is_synack, n_packets, port0, port1) -> np.ndarray:
    """True where Zeek would take the stream's second side (dir 1) as the originator."""
    likely0 = np.isin(port0, list(LIKELY_SERVER_PORTS))
    likely1 = np.isin(port1, list(LIKELY_SERVER_PORTS))
    flip_ports = (likely0 & ~likely1) | (likely0 & likely1 & (port0 < port1) & ~first_is_synack)
    synack_then_more = first_is_synack & (n_packets > 1)
    return np.where(first_is_syn, False, synack_then_more | flip_ports)


def conn_state(z_orig, z_resp, orig_bytes, resp_bytes, history: tuple[np.ndarray, list[str]]) -> np.ndarray:
    """Zeek's conn_state of each row; `history`: history()'s (codes, texts)."""
    o, r = _norm(np.asarray(z_orig)), _norm(np.asarray(z_resp))
    inactive_o = (o == Z.INACTIVE) | (o == Z.PARTIAL)
    inactive_r = (r == Z.INACTIVE) | (r == Z.PARTIAL)
    no_bytes = (np.asarray(orig_bytes) == 0) & (np.asarray(resp_bytes) == 0)
    r_reset, o_reset = r == Z.RESET, o == Z.RESET
    o_closed, r_closed = o == Z.CLOSED, r == Z.CLOSED
    codes, texts = history
    rstos0 = np.array([bool(_RSTOS0.match(h)) for h in texts] + [False], dtype=bool)[codes]
    conds = [
        r_reset & ((o == Z.SYN_SENT) | (o == Z.SYN_ACK_SENT) | (o_reset & no_bytes)),
        r_reset & inactive_o,
        r_reset,
        o_reset & inactive_r & rstos0,
        o_reset & inactive_r,
        o_reset,
        o_closed & r_closed,
        o_closed & inactive_r,
        o_closed,
        r_closed & inactive_o,
        r_closed,
        (o == Z.SYN_SENT) & (r == Z.INACTIVE),
        (o == Z.ESTABLISHED) & (r == Z.ESTABLISHED),
    ]
    choices = ["REJ", "RSTRH", "RSTR", "RSTOS0", "OTH", "RSTO", "SF", "SH", "S2", "SHR", "S3",
               "S0", "S1"]
    return np.select(conds, choices, default="OTH")


def history(raw: np.ndarray, flipped: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Engine letters (`raw`: the stream rows' bytes) are upper case for the stream's
    first sender; re-case for Zeek's originator and mark a flip with `^`. Returns
    (codes, texts): row i's history is texts[codes[i]], each distinct one made once (a
    flood's million rows have a few)."""
    raw = np.ascontiguousarray(raw)
    n = len(raw)
    if not n:
        return np.zeros(0, dtype=np.int32), []
    # distinct (letters, flipped) by hashing the letters' 8-byte words, one at a time
    # (sorting a million 48-byte strings took 0.5 s)
    width = raw.dtype.itemsize
    words = np.zeros((n, -(-width // 8) * 8), dtype=np.uint8)
    words[:, :width] = raw.view(np.uint8).reshape(n, width)
    codes = np.asarray(flipped, dtype=np.int64)
    for w in words.view(np.uint64).T:
        if not w.any():
            continue                     # (the letters of every row end before this word)
        k, u = pd.factorize(w)
        codes, _ = pd.factorize(codes * len(u) + k)
    # (numbered 0..m-1 in order of first appearance, also when no word had a letter: a
    # lone stream with an empty history whose first sender is not the originator)
    codes, _ = pd.factorize(codes)
    codes, first = _first_of(codes)
    texts = []
    for i in first.tolist():
        h = raw[i].decode("ascii", "replace")
        texts.append("^" + h.swapcase() if flipped[i] else h)
    return codes, texts


def _first_of(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`codes` (pd.factorize's: 0..m-1 numbered in order of first appearance) as int32,
    and the first row of each: where a code exceeds every one before it."""
    before = np.maximum.accumulate(np.concatenate(([-1], codes[:-1])))
    return codes.astype(np.int32), np.flatnonzero(codes > before)
