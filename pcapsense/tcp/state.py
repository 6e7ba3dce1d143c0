"""TCP endpoint state machines, as data.

Rule 1: every TCP state transition pcapsense makes lives in this file, in the two
tables below. Rule 2: nothing here looks at bytes; the compiled engine
(`pcapsense/capture/engine/tcp.c`) classifies each segment into the `Kind`s below and looks
the next state up in the arrays built from these tables. Change a transition here, not
in C.

Two machines run side by side on every endpoint of every connection:

* `TRANSITIONS`: RFC 9293 states as an *observer* on the wire sees them. The observer
  assumes every segment it saw was delivered, so an endpoint's state changes when it
  sends a segment (`*_OUT` kinds) or when a segment addressed to it passes by (`*_IN`).
  An endpoint first seen mid-stream (no handshake captured) is put in ESTABLISHED and the
  connection is marked `handshake_inferred`.
* `ZEEK_TRANSITIONS`: Zeek's coarser endpoint states (INACTIVE, SYN_SENT, SYN_ACK_SENT,
  PARTIAL, ESTABLISHED, CLOSED, RESET), from which `conn_state` is derived exactly as
  Zeek's `conn/main.zeek` does (see `pcapsense/tcp/zeek.py`).

A segment that a table has no entry for does not raise (captures are lossy and stacks
are odd): the state is kept and the connection's `anomalies` counter goes up, with the
frame of the first one, the way Zeek records a "weird".

Tables are keyed `(state, peer_state, kind)`; `ANY` as the peer state matches every
peer state that has no more specific entry. Several kinds can come from one segment;
the engine applies them in the order of `Kind` (e.g. a FIN+ACK that acknowledges our
FIN is ACK_OF_FIN_IN, then FIN_IN: FIN_WAIT_1 -> FIN_WAIT_2 -> TIME_WAIT).
"""

from __future__ import annotations

import enum

import numpy as np


class State(enum.IntEnum):
    """RFC 9293 endpoint states (plus NONE: nothing seen of this endpoint yet)."""

    NONE = 0
    LISTEN = 1
    SYN_SENT = 2
    SYN_RECEIVED = 3
    ESTABLISHED = 4
    FIN_WAIT_1 = 5
    FIN_WAIT_2 = 6
    CLOSING = 7
    TIME_WAIT = 8
    CLOSE_WAIT = 9
    LAST_ACK = 10
    CLOSED = 11


class Kind(enum.IntEnum):
    """What one segment means for one endpoint, in the order the engine applies them.

    `_OUT`: the endpoint sent it. `_IN`: it was addressed to the endpoint.
    SEG is any segment without SYN or RST (data, pure ACK, or the ACK part of a FIN).
    ACK_OF_FIN_IN replaces SEG_IN when the segment acknowledges the endpoint's FIN.
    FIN_CROSS_OUT replaces FIN_OUT when the endpoint's FIN does not acknowledge the FIN
    its peer already sent: the two FINs crossed on the wire (simultaneous close), so the
    endpoint had not received the peer's FIN when it closed.
    """

    SYN_OUT = 0
    SYNACK_OUT = 1
    SEG_OUT = 2
    FIN_OUT = 3
    FIN_CROSS_OUT = 4
    RST_OUT = 5
    SYN_IN = 6
    SYNACK_IN = 7
    SEG_IN = 8
    ACK_OF_FIN_IN = 9
    FIN_IN = 10
    RST_IN = 11


ANY = None
S, K = State, Kind

# (state, peer_state or ANY, kind) -> next state.  Absent = anomaly, state kept.
TRANSITIONS: dict[tuple[State, State | None, Kind], State] = {}


def _rules(table, rows):
    for state, peer, kinds, nxt in rows:
        for kind in kinds if isinstance(kinds, tuple) else (kinds,):
            table[(state, peer, kind)] = nxt


_ALL_KINDS = tuple(Kind)
_SEGS = (K.SEG_OUT, K.SEG_IN, K.ACK_OF_FIN_IN)

_rules(TRANSITIONS, [
    # ---- nothing seen yet of this endpoint
    (S.NONE, ANY, K.SYN_OUT, S.SYN_SENT),
    (S.NONE, ANY, K.SYN_IN, S.LISTEN),
    (S.NONE, ANY, K.SYNACK_OUT, S.SYN_RECEIVED),       # its SYN was not captured
    (S.NONE, ANY, K.SYNACK_IN, S.ESTABLISHED),         # we missed its SYN
    (S.NONE, ANY, _SEGS, S.ESTABLISHED),               # mid-stream: inferred
    (S.NONE, ANY, K.FIN_OUT, S.FIN_WAIT_1),
    (S.NONE, ANY, K.FIN_IN, S.CLOSE_WAIT),
    (S.NONE, ANY, (K.RST_OUT, K.RST_IN), S.CLOSED),
    # ---- LISTEN: a SYN arrived, the endpoint has not answered
    (S.LISTEN, ANY, (K.SYN_IN, K.SEG_IN), S.LISTEN),
    (S.LISTEN, ANY, K.SYNACK_OUT, S.SYN_RECEIVED),
    (S.LISTEN, ANY, K.RST_OUT, S.CLOSED),              # refused
    (S.LISTEN, ANY, K.RST_IN, S.LISTEN),               # attempt abandoned
    (S.LISTEN, ANY, K.SYN_OUT, S.SYN_SENT),            # simultaneous open
    (S.LISTEN, ANY, K.SEG_OUT, S.ESTABLISHED),         # answered without a visible SYN/ACK
    (S.LISTEN, ANY, K.FIN_OUT, S.FIN_WAIT_1),
    (S.LISTEN, ANY, K.FIN_IN, S.LISTEN),
    # ---- SYN_SENT
    (S.SYN_SENT, ANY, (K.SYN_OUT, K.SEG_OUT), S.SYN_SENT),
    (S.SYN_SENT, ANY, K.SYNACK_IN, S.ESTABLISHED),
    (S.SYN_SENT, ANY, K.SYN_IN, S.SYN_RECEIVED),       # simultaneous open
    (S.SYN_SENT, ANY, K.SYNACK_OUT, S.SYN_RECEIVED),   # simultaneous open, its SYN/ACK
    (S.SYN_SENT, ANY, (K.RST_IN, K.RST_OUT), S.CLOSED),
    (S.SYN_SENT, ANY, K.FIN_OUT, S.FIN_WAIT_1),        # SYN then FIN (Zeek's SH)
    (S.SYN_SENT, ANY, (K.SEG_IN, K.ACK_OF_FIN_IN), S.SYN_SENT),
    (S.SYN_SENT, ANY, K.FIN_IN, S.CLOSE_WAIT),
    # ---- SYN_RECEIVED
    (S.SYN_RECEIVED, ANY, (K.SYNACK_OUT, K.SYN_IN), S.SYN_RECEIVED),
    (S.SYN_RECEIVED, ANY, (K.SEG_IN, K.ACK_OF_FIN_IN, K.SYNACK_IN, K.SEG_OUT), S.ESTABLISHED),
    (S.SYN_RECEIVED, ANY, K.FIN_OUT, S.FIN_WAIT_1),
    (S.SYN_RECEIVED, ANY, K.FIN_IN, S.CLOSE_WAIT),
    (S.SYN_RECEIVED, ANY, (K.RST_IN, K.RST_OUT), S.CLOSED),
    # ---- ESTABLISHED
    (S.ESTABLISHED, ANY, (K.SEG_OUT, K.SEG_IN, K.ACK_OF_FIN_IN, K.SYN_IN, K.SYN_OUT,
                          K.SYNACK_IN, K.SYNACK_OUT), S.ESTABLISHED),
    (S.ESTABLISHED, ANY, K.FIN_OUT, S.FIN_WAIT_1),
    (S.ESTABLISHED, ANY, K.FIN_IN, S.CLOSE_WAIT),
    (S.ESTABLISHED, ANY, (K.RST_OUT, K.RST_IN), S.CLOSED),
    # ---- FIN_WAIT_1: our FIN is out, not yet acknowledged
    (S.FIN_WAIT_1, ANY, (K.SEG_OUT, K.SEG_IN, K.FIN_OUT, K.SYNACK_IN), S.FIN_WAIT_1),
    (S.FIN_WAIT_1, ANY, K.ACK_OF_FIN_IN, S.FIN_WAIT_2),
    (S.FIN_WAIT_1, ANY, K.FIN_IN, S.CLOSING),          # simultaneous close
    (S.FIN_WAIT_1, ANY, (K.RST_OUT, K.RST_IN), S.CLOSED),
    # ---- FIN_WAIT_2: our FIN acknowledged, waiting for the peer's
    (S.FIN_WAIT_2, ANY, (K.SEG_OUT, K.SEG_IN, K.ACK_OF_FIN_IN, K.FIN_OUT), S.FIN_WAIT_2),
    (S.FIN_WAIT_2, ANY, K.FIN_IN, S.TIME_WAIT),
    (S.FIN_WAIT_2, ANY, (K.RST_OUT, K.RST_IN), S.CLOSED),
    # ---- CLOSING: both FINs out, ours not yet acknowledged
    (S.CLOSING, ANY, (K.SEG_OUT, K.SEG_IN, K.FIN_IN, K.FIN_OUT), S.CLOSING),
    (S.CLOSING, ANY, K.ACK_OF_FIN_IN, S.TIME_WAIT),
    (S.CLOSING, ANY, (K.RST_OUT, K.RST_IN), S.CLOSED),
    # ---- TIME_WAIT
    (S.TIME_WAIT, ANY, (K.SEG_OUT, K.SEG_IN, K.ACK_OF_FIN_IN, K.FIN_IN, K.FIN_OUT), S.TIME_WAIT),
    (S.TIME_WAIT, ANY, (K.RST_IN, K.RST_OUT), S.CLOSED),
    # ---- CLOSE_WAIT: the peer's FIN arrived, we have not closed
    (S.CLOSE_WAIT, ANY, (K.SEG_OUT, K.SEG_IN, K.ACK_OF_FIN_IN, K.FIN_IN), S.CLOSE_WAIT),
    (S.CLOSE_WAIT, ANY, K.FIN_OUT, S.LAST_ACK),
    (S.CLOSE_WAIT, ANY, K.FIN_CROSS_OUT, S.CLOSING),   # it sent FIN before the peer's arrived
    (S.CLOSE_WAIT, ANY, (K.RST_OUT, K.RST_IN), S.CLOSED),
    # ---- LAST_ACK
    (S.LAST_ACK, ANY, (K.SEG_OUT, K.SEG_IN, K.FIN_IN, K.FIN_OUT), S.LAST_ACK),
    (S.LAST_ACK, ANY, K.ACK_OF_FIN_IN, S.CLOSED),
    (S.LAST_ACK, ANY, (K.RST_OUT, K.RST_IN), S.CLOSED),
    # ---- CLOSED: stray segments after the end (RST answers, retransmitted FINs)
    (S.CLOSED, ANY, (K.SEG_OUT, K.SEG_IN, K.ACK_OF_FIN_IN, K.FIN_IN, K.FIN_OUT,
                     K.RST_OUT, K.RST_IN), S.CLOSED),
])


class ZeekState(enum.IntEnum):
    """Zeek's TCP_Endpoint states, plus RESET_AFTER_FIN (Zeek's RESET reached from
    CLOSED, which a later FIN from the peer turns back into CLOSED)."""

    INACTIVE = 0
    SYN_SENT = 1
    SYN_ACK_SENT = 2
    PARTIAL = 3
    ESTABLISHED = 4
    CLOSED = 5
    RESET = 6
    RESET_AFTER_FIN = 7


Z = ZeekState
ZEEK_TRANSITIONS: dict[tuple[ZeekState, ZeekState | None, Kind], ZeekState] = {}
_OUT_DATA = (K.SEG_OUT,)
_rules(ZEEK_TRANSITIONS, [
    (Z.INACTIVE, ANY, K.SYN_OUT, Z.SYN_SENT),
    (Z.INACTIVE, ANY, K.SYNACK_OUT, Z.SYN_ACK_SENT),
    (Z.INACTIVE, ANY, _OUT_DATA, Z.PARTIAL),
    (Z.INACTIVE, ANY, K.FIN_OUT, Z.CLOSED),
    (Z.INACTIVE, ANY, K.RST_OUT, Z.RESET),
    # the responder's SYN or SYN/ACK establishes both ends (Zeek does not wait for the ACK)
    (Z.INACTIVE, Z.SYN_SENT, (K.SYNACK_OUT, K.SYN_OUT), Z.ESTABLISHED),
    (Z.INACTIVE, Z.SYN_ACK_SENT, (K.SYNACK_OUT, K.SYN_OUT), Z.ESTABLISHED),
    (Z.SYN_SENT, ANY, (K.SYN_OUT, K.SEG_OUT, K.SYNACK_OUT), Z.SYN_SENT),
    (Z.SYN_SENT, ANY, (K.SYNACK_IN, K.SYN_IN), Z.ESTABLISHED),
    (Z.SYN_ACK_SENT, ANY, (K.SYNACK_IN, K.SYN_IN), Z.ESTABLISHED),
    (Z.SYN_SENT, ANY, K.FIN_OUT, Z.CLOSED),
    (Z.SYN_SENT, ANY, K.RST_OUT, Z.RESET),
    (Z.SYN_ACK_SENT, ANY, (K.SYNACK_OUT, K.SEG_OUT), Z.SYN_ACK_SENT),
    (Z.SYN_ACK_SENT, ANY, K.FIN_OUT, Z.CLOSED),
    (Z.SYN_ACK_SENT, ANY, K.RST_OUT, Z.RESET),
    (Z.PARTIAL, ANY, (K.SEG_OUT, K.SYN_OUT, K.SYNACK_OUT), Z.PARTIAL),
    (Z.PARTIAL, ANY, K.FIN_OUT, Z.CLOSED),
    (Z.PARTIAL, ANY, K.RST_OUT, Z.RESET),
    (Z.ESTABLISHED, ANY, (K.SEG_OUT, K.SYN_OUT, K.SYNACK_OUT), Z.ESTABLISHED),
    (Z.ESTABLISHED, ANY, K.FIN_OUT, Z.CLOSED),
    (Z.ESTABLISHED, ANY, K.RST_OUT, Z.RESET),
    (Z.CLOSED, ANY, (K.SEG_OUT, K.FIN_OUT, K.SYN_OUT, K.SYNACK_OUT), Z.CLOSED),
    # RST after our FIN: RESET, unless the peer has closed too (then it is ignored)
    (Z.CLOSED, ANY, K.RST_OUT, Z.RESET_AFTER_FIN),
    (Z.CLOSED, Z.CLOSED, K.RST_OUT, Z.CLOSED),
    (Z.RESET, ANY, (K.SEG_OUT, K.RST_OUT, K.FIN_OUT, K.SYN_OUT, K.SYNACK_OUT), Z.RESET),
    (Z.RESET_AFTER_FIN, ANY, (K.SEG_OUT, K.RST_OUT, K.FIN_OUT, K.SYN_OUT, K.SYNACK_OUT),
     Z.RESET_AFTER_FIN),
    # "The peer sent a FIN followed by a RST. Turn it back into CLOSED state."
    (Z.RESET_AFTER_FIN, ANY, K.FIN_IN, Z.CLOSED),
])
# Zeek's endpoint states change only on what the endpoint itself sends, except the one
# rule above; every other *_IN kind keeps the state (not an anomaly).
for _z in ZeekState:
    for _k in (K.SYN_IN, K.SYNACK_IN, K.SEG_IN, K.ACK_OF_FIN_IN, K.FIN_IN, K.RST_IN):
        ZEEK_TRANSITIONS.setdefault((_z, ANY, _k), _z)



def _fin_cross_defaults(table):
    """FIN_CROSS_OUT behaves as FIN_OUT wherever no rule says otherwise."""
    for (state, peer, kind), nxt in list(table.items()):
        if kind == K.FIN_OUT:
            table.setdefault((state, peer, K.FIN_CROSS_OUT), nxt)


_fin_cross_defaults(TRANSITIONS)
_fin_cross_defaults(ZEEK_TRANSITIONS)

NO_TRANSITION = 255


def compile_table(table, n_states: int) -> np.ndarray:
    """Dense `uint8[state, peer_state, kind]` array for the engine (255 = anomaly)."""
    arr = np.full((n_states, n_states, len(Kind)), NO_TRANSITION, dtype=np.uint8)
    for (state, peer, kind), nxt in table.items():
        if peer is ANY:
            arr[state, :, kind] = nxt
    for (state, peer, kind), nxt in table.items():  # specific peer states win
        if peer is not ANY:
            arr[state, peer, kind] = nxt
    return arr


def _specific(table):
    # normalise IntEnum peer keys so `in` lookups above match plain ints
    return {(int(s), None if p is None else int(p), int(k)): int(n) for (s, p, k), n in table.items()}


RFC_TABLE = compile_table(_specific(TRANSITIONS), len(State))
ZEEK_TABLE = compile_table(_specific(ZEEK_TRANSITIONS), len(ZeekState))


def next_state(state: State, peer: State, kind: Kind) -> State | None:
    """The table's answer for one step (None: no transition defined, an anomaly)."""
    nxt = int(RFC_TABLE[state, peer, kind])
    return None if nxt == NO_TRANSITION else State(nxt)
