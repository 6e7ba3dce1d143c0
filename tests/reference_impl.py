"""A straightforward reference implementation of pcapsense's TCP core, for tests only.

Per packet, in Python, with scapy doing all the decoding: obviously correct and slow.
It shares nothing with the compiled engine but the transition table itself (the
specification, `pcapsense/tcp/state.py`), which it applies step by step with
`next_state()`. `tests/test_reference.py` asserts that the fast path agrees with it on
every TCP field it computes, for every capture in the repo that scapy can decode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import scapy.contrib.mpls  # noqa: F401  (binds MPLS to its Ethernet type)
from scapy.all import IP, TCP, IPv6, PcapReader
from scapy.utils import PcapNgReader

from pcapsense.tcp.state import Kind as K
from pcapsense.tcp.state import State, next_state

MOD = 1 << 32


def _lt(a, b):
    return ((a - b) % MOD) >= (1 << 31)


@dataclass
class Side:
    addr: tuple
    packets: int = 0
    payload: int = 0
    first_seq: int | None = None
    state: State = State.NONE
    fin_seq: int | None = None
    fin_frame: int = 0
    syn_frame: int = 0


@dataclass
class Conn:
    stream: int
    sides: list = field(default_factory=list)
    first_frame: int = 0
    last_frame: int = 0
    fin_frame: int = 0
    fin_dir: int = -1
    rst_frame: int = 0
    rst_dir: int = -1
    fin_states: tuple = ()
    rst_states: tuple = ()


def _reader(path):
    with open(path, "rb") as fh:
        magic = fh.read(4)
    return PcapNgReader(str(path)) if magic == b"\x0a\x0d\x0d\x0a" else PcapReader(str(path))


def _ip_under(tcp):
    u = tcp.underlayer if tcp is not None else None
    while u is not None and not isinstance(u, (IP, IPv6)):
        u = u.underlayer
    return u


def analyse(path) -> list[Conn]:
    conns: list[Conn] = []
    current: dict = {}
    for frame, pkt in enumerate(_reader(path), start=1):
        tcp = pkt.getlayer(TCP)
        ip = _ip_under(tcp)          # the IP header right under TCP: the inner one of a tunnel
        if ip is None:
            continue
        src, dst = (ip.src, tcp.sport), (ip.dst, tcp.dport)
        key = frozenset((src, dst)) if src != dst else (src, dst)
        flags = int(tcp.flags)
        syn, fin, rst, ack = flags & 2, flags & 1, flags & 4, flags & 16
        seq, ackn = tcp.seq, tcp.ack
        if isinstance(ip, IP):
            plen = max(ip.len - ip.ihl * 4 - tcp.dataofs * 4, 0)
        else:
            plen = max(ip.plen - tcp.dataofs * 4, 0)
        c = current.get(key)
        d = 0
        if c is not None:
            d = 0 if c.sides[0].addr == src else 1
            me = c.sides[d]
            # Wireshark 4.0: a pure SYN with another ISN than its direction began with
            if syn and not ack and me.first_seq is not None and seq != me.first_seq:
                c = None
        if c is None:
            c = Conn(len(conns), [Side(src), Side(dst)], first_frame=frame)
            conns.append(c)
            current[key] = c
            d = 0
        me, peer = c.sides[d], c.sides[1 - d]
        c.last_frame = frame
        me.packets += 1
        me.payload += plen
        if me.first_seq is None:
            me.first_seq = seq
        if syn and not ack and not me.syn_frame:
            me.syn_frame = frame
        before = (me.state, peer.state)
        if fin and not c.fin_frame:
            c.fin_frame, c.fin_dir, c.fin_states = frame, d, before
        if rst and not c.rst_frame:
            c.rst_frame, c.rst_dir, c.rst_states = frame, d, before
        # the kinds of this segment for both ends, in the table's order
        steps = []
        if syn:
            steps.append((d, K.SYNACK_OUT if ack else K.SYN_OUT))
        if not syn and not rst:
            steps.append((d, K.SEG_OUT))
        if fin and not syn:
            crossed = peer.fin_seq is not None and peer.fin_frame < frame and \
                (not ack or _lt(ackn, (peer.fin_seq + 1) % MOD))
            steps.append((d, K.FIN_CROSS_OUT if crossed else K.FIN_OUT))
        if rst:
            steps.append((d, K.RST_OUT))
        if syn:
            steps.append((1 - d, K.SYNACK_IN if ack else K.SYN_IN))
        if not syn and not rst:
            acks_fin = ack and peer.fin_seq is not None and not _lt(ackn, (peer.fin_seq + 1) % MOD)
            steps.append((1 - d, K.ACK_OF_FIN_IN if acks_fin else K.SEG_IN))
        if fin and not syn:
            steps.append((1 - d, K.FIN_IN))
        if rst:
            steps.append((1 - d, K.RST_IN))
        if fin and me.fin_seq is None:
            me.fin_seq = (seq + plen + (1 if syn else 0)) % MOD
            me.fin_frame = frame
        for who, kind in steps:
            s, o = c.sides[who], c.sides[1 - who]
            nxt = next_state(s.state, o.state, kind)
            if nxt is not None:
                s.state = nxt
    return conns


def summary(path) -> dict[int, dict]:
    """Per stream: the fields the test compares, named as in pcapsense's connections."""
    out = {}
    for c in analyse(path):
        syn0, syn1 = c.sides[0].syn_frame, c.sides[1].syn_frame
        cl = 1 if (syn1 and (not syn0 or syn1 < syn0)) else 0
        row = {"first_frame": c.first_frame, "last_frame": c.last_frame,
               "packets": c.sides[0].packets + c.sides[1].packets,
               "first_fin_frame": c.fin_frame or None, "first_rst_frame": c.rst_frame or None}
        if syn0 or syn1:     # the client is known without inference: compare the sides too
            cs, ss = c.sides[cl], c.sides[1 - cl]
            row.update({"client_packets": cs.packets, "server_packets": ss.packets,
                        "client_payload_bytes": cs.payload, "server_payload_bytes": ss.payload,
                        "client_state": cs.state.name, "server_state": ss.state.name})
            rst_first = c.rst_frame and (not c.fin_frame or c.rst_frame <= c.fin_frame)
            if rst_first or c.fin_frame:
                who = c.rst_dir if rst_first else c.fin_dir
                states = c.rst_states if rst_first else c.fin_states
                row.update({"close_kind": "RST" if rst_first else "FIN",
                            "closer_state": states[0].name, "peer_state": states[1].name,
                            "tcp_closer": "client" if who == cl else "server"})
            else:
                row["close_kind"] = "none"
        out[c.stream] = row
    return out
