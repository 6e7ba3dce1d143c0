"""The TCP transition table (pcapsense/tcp/state.py), step by step, without packets."""

import pytest

from pcapsense.tcp.state import RFC_TABLE, ZEEK_TABLE, Kind as K, State as S, next_state


def run(steps, a=S.NONE, b=S.NONE):
    """steps: (endpoint 'a'|'b', kind) applied in order; returns both states."""
    st = {"a": a, "b": b}
    for who, kind in steps:
        other = "b" if who == "a" else "a"
        nxt = next_state(st[who], st[other], kind)
        assert nxt is not None, (who, st[who], kind)
        st[who] = nxt
    return st["a"], st["b"]


def segment(sender, *kinds_out, ack_of_fin=False, fin=False, syn=False, synack=False, rst=False):
    """The kinds one segment means for both ends, in the engine's order."""
    rcv = "b" if sender == "a" else "a"
    out = []
    if syn:
        out.append((sender, K.SYN_OUT))
    if synack:
        out.append((sender, K.SYNACK_OUT))
    if not (syn or synack or rst):
        out.append((sender, K.SEG_OUT))
    if fin:
        out.append((sender, K.FIN_OUT))
    if rst:
        out.append((sender, K.RST_OUT))
    if syn:
        out.append((rcv, K.SYN_IN))
    if synack:
        out.append((rcv, K.SYNACK_IN))
    if not (syn or synack or rst):
        out.append((rcv, K.ACK_OF_FIN_IN if ack_of_fin else K.SEG_IN))
    if fin:
        out.append((rcv, K.FIN_IN))
    if rst:
        out.append((rcv, K.RST_IN))
    return out


HANDSHAKE = segment("a", syn=True) + segment("b", synack=True) + segment("a")


def test_handshake():
    assert run(segment("a", syn=True)) == (S.SYN_SENT, S.LISTEN)
    assert run(segment("a", syn=True) + segment("b", synack=True)) == (S.ESTABLISHED, S.SYN_RECEIVED)
    assert run(HANDSHAKE) == (S.ESTABLISHED, S.ESTABLISHED)


def test_active_close_passive_close():
    steps = HANDSHAKE + segment("a", fin=True)
    assert run(steps) == (S.FIN_WAIT_1, S.CLOSE_WAIT)
    steps += segment("b", ack_of_fin=True)
    assert run(steps) == (S.FIN_WAIT_2, S.CLOSE_WAIT)
    steps += segment("b", fin=True)
    assert run(steps) == (S.TIME_WAIT, S.LAST_ACK)
    steps += segment("a", ack_of_fin=True)
    assert run(steps) == (S.TIME_WAIT, S.CLOSED)


def test_fin_ack_in_one_segment():
    steps = HANDSHAKE + segment("a", fin=True) + segment("b", ack_of_fin=True, fin=True)
    assert run(steps) == (S.TIME_WAIT, S.LAST_ACK)


def test_refused_and_reset():
    assert run(segment("a", syn=True) + segment("b", rst=True)) == (S.CLOSED, S.CLOSED)
    assert run(HANDSHAKE + segment("b", rst=True)) == (S.CLOSED, S.CLOSED)


def test_simultaneous_close_via_crossed_fins():
    steps = HANDSHAKE + segment("a", fin=True) + [("b", K.FIN_CROSS_OUT), ("a", K.FIN_IN)]
    assert run(steps) == (S.CLOSING, S.CLOSING)
    steps += segment("a", ack_of_fin=True) + segment("b", ack_of_fin=True)
    assert run(steps) == (S.TIME_WAIT, S.TIME_WAIT)


def test_mid_stream_start_is_established():
    assert run(segment("a")) == (S.ESTABLISHED, S.ESTABLISHED)


def test_unlisted_transition_is_an_anomaly_not_an_error():
    assert next_state(S.TIME_WAIT, S.CLOSED, K.SYN_OUT) is None


@pytest.mark.parametrize("table,n", [(RFC_TABLE, len(S)), (ZEEK_TABLE, 8)])
def test_tables_are_dense_arrays(table, n):
    assert table.shape == (n, n, len(K))
    assert table.dtype.name == "uint8"
