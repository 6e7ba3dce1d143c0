#!/usr/bin/env python3
"""Crafted captures for the cause classifier's boundaries (scapy), written to
tests/captures/causes/<cause>__<variant>.pcap. Deterministic (fixed times, ISNs).

Real recordings of each cause live in sample_pcaps/captures/ (the lab); these crafted
ones pin the edges between neighbouring causes that real stacks will not produce on
demand (request-rejected vs server-timeout, keepalive-race vs idle-close, server-abort
vs middlebox-reset, client-timeout vs network-loss) and protocols the lab cannot record
(cleartext HTTP/2 GOAWAY).

    python3 tests/captures/make_causes.py
"""

from __future__ import annotations

import os
import struct

from scapy.all import IP, TCP, Ether, Raw, wrpcap  # noqa: F401

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "causes")
T0 = 1_700_000_000.0


class Conn:
    """A TCP conversation builder that keeps seq/ack right."""

    def __init__(self, pkts, cport=40000, sport=80, cip="10.0.0.1", sip="10.0.0.2", ttl_c=64, ttl_s=64):
        self.p = pkts
        self.ep = {"c": [cip, cport, 1000, ttl_c, 0x100], "s": [sip, sport, 5000, ttl_s, 0x900]}
        self.ack = {"c": 0, "s": 0}

    def _pkt(self, side, t, flags, data=b"", seq=None, ttl=None, ipid=None, ack=True):
        me, peer = self.ep[side], self.ep["s" if side == "c" else "c"]
        me[4] += 1
        tcp = TCP(sport=me[1], dport=peer[1], flags=flags, seq=me[2] if seq is None else seq,
                  ack=peer[2] if ack and "A" in flags else 0, window=65000)
        pkt = Ether(src="02:00:00:00:00:01" if side == "c" else "02:00:00:00:00:02",
                    dst="02:00:00:00:00:02" if side == "c" else "02:00:00:00:00:01") / \
            IP(src=me[0], dst=peer[0], ttl=me[3] if ttl is None else ttl,
               id=me[4] if ipid is None else ipid) / tcp
        if data:
            pkt = pkt / Raw(data)
        pkt.time = T0 + t
        self.p.append(pkt)
        return pkt

    def handshake(self, t, rtt=0.0002):
        self._pkt("c", t, "S", ack=False)
        self.ep["c"][2] += 1
        self._pkt("s", t + rtt / 2, "SA")
        self.ep["s"][2] += 1
        self._pkt("c", t + rtt, "A")
        return t + rtt

    def send(self, side, t, data, push_ack=True):
        self._pkt(side, t, "PA", data)
        self.ep[side][2] += len(data)
        if push_ack:
            self._pkt("s" if side == "c" else "c", t + 0.0001, "A")

    def fin(self, side, t, ack=True):
        self._pkt(side, t, "FA")
        self.ep[side][2] += 1
        if ack:
            self._pkt("s" if side == "c" else "c", t + 0.0001, "A")

    def rst(self, side, t, **kw):
        self._pkt(side, t, "RA", **kw)


GET = b"GET /api/items?api_key=SECRET123 HTTP/1.1\r\nHost: api.example\r\nUser-Agent: python-requests/2.32\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: nginx\r\n\r\nhello"


def keepalive_race(p):
    c = Conn(p)
    t = c.handshake(0)
    c.send("c", t + 0.001, GET)
    c.send("s", t + 0.002, OK)
    c.send("c", t + 0.010, GET)
    c.send("s", t + 0.011, OK)
    c.fin("s", 5.011, ack=False)            # nginx keepalive_timeout 5s
    c.send("c", 5.0112, GET, push_ack=False)  # the client had not seen the FIN
    c._pkt("c", 5.0113, "A")                 # acks the FIN
    c.rst("s", 5.0114, ack=False, seq=c.ep["s"][2])
    c.rst("s", 5.0115, ack=False, seq=c.ep["s"][2])


def idle_close(p):
    c = Conn(p)
    t = c.handshake(0)
    c.send("c", t + 0.001, GET)
    c.send("s", t + 0.002, OK)
    c.fin("s", 5.002)
    c.fin("c", 5.0025)


def request_rejected(p):
    c = Conn(p)
    t = c.handshake(0)
    c.send("c", t + 0.001, GET)
    c.fin("s", t + 0.0012)                   # nginx return 444
    c.fin("c", t + 0.0015)


def server_timeout(p):
    c = Conn(p)
    t = c.handshake(0)
    c.send("c", t + 0.001, GET)
    c.fin("s", t + 30.0)                     # a worker killed after 30 s
    c.fin("c", t + 30.0005)


def client_timeout(p):
    c = Conn(p)
    t = c.handshake(0)
    c.send("c", t + 0.001, GET)
    c.fin("c", t + 5.001)                    # requests timeout=5
    c.send("s", t + 7.0, OK, push_ack=False)  # the late answer
    c.rst("c", t + 7.0001, seq=c.ep["c"][2])


def network_loss(p):
    c = Conn(p)
    t = c.handshake(0)
    c.send("c", t + 0.001, GET)
    body = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000
    seq = c.ep["s"][2]
    gap, at = 0.2, t + 0.002
    for _ in range(6):                       # RTO backoff, never acknowledged
        c._pkt("s", at, "PA", body, seq=seq)
        at += gap
        gap *= 2
    c.ep["s"][2] += len(body)
    c.rst("s", at, seq=c.ep["s"][2])


def server_abort(p):
    c = Conn(p)
    t = c.handshake(0)
    c.send("c", t + 0.001, GET)
    c.send("s", t + 0.002, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1200)
    c.rst("s", t + 0.003, seq=c.ep["s"][2])  # crashed mid-response (same TTL, its own IP IDs)


def middlebox_reset(p):
    c = Conn(p, ttl_s=57)
    t = c.handshake(0)
    c.send("c", t + 0.001, GET)
    c.send("s", t + 0.05, OK)
    c.rst("s", t + 20.0, ttl=64, ipid=0, seq=c.ep["s"][2])  # the firewall's idle reset


def client_abort(p):
    c = Conn(p)
    t = c.handshake(0)
    c.send("c", t + 0.001, GET)
    c.send("s", t + 0.002, b"HTTP/1.1 200 OK\r\nContent-Length: 9000000\r\n\r\n" + b"x" * 1400)
    c.send("s", t + 0.003, b"x" * 1400)
    c.rst("c", t + 0.004, seq=c.ep["c"][2])


def client_cancelled(p):
    c = Conn(p)
    t = c.handshake(0)
    c.send("c", t + 0.001, GET)
    c.rst("c", t + 0.006, seq=c.ep["c"][2])  # the task was cancelled 5 ms later


def body_too_large(p):
    c = Conn(p)
    t = c.handshake(0)
    head = b"POST /upload HTTP/1.1\r\nHost: api.example\r\nContent-Length: 5000000\r\n\r\n"
    c.send("c", t + 0.001, head + b"a" * 1000)
    for i in range(3):
        c.send("c", t + 0.002 + i * 0.0001, b"a" * 1400)
    c.send("s", t + 0.003, b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    c.fin("s", t + 0.0031, ack=False)
    c.rst("s", t + 0.0035, seq=c.ep["s"][2])


def rate_limited(p):
    for i in range(3):
        c = Conn(p, cport=41000 + i)
        t = c.handshake(0.001 * i)
        c.send("c", t + 0.001, GET)
        c.send("s", t + 0.002, b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n")
        c.fin("s", t + 0.003)
        c.fin("c", t + 0.0035)


def proxy_disconnect(p):
    c = Conn(p, sport=3128)
    t = c.handshake(0)
    c.send("c", t + 0.001, b"CONNECT api.example:443 HTTP/1.1\r\nHost: api.example:443\r\n\r\n")
    c.send("s", t + 0.5, b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    c.fin("s", t + 0.5001)
    c.fin("c", t + 0.5005)


def _tls_record(ctype, body, ver=0x0303):
    return struct.pack("!BHH", ctype, ver, len(body)) + body


def _client_hello(sni=b"api.example"):
    sni_ext = struct.pack("!HHHBH", 0, len(sni) + 5, len(sni) + 3, 0, len(sni)) + sni
    vers = struct.pack("!HHB", 43, 3, 2) + b"\x03\x03"             # TLS 1.2 only
    exts = sni_ext + vers
    body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + struct.pack("!H", 4) + b"\xc0\x2f\xc0\x30" + b"\x01\x00" + \
        struct.pack("!H", len(exts)) + exts
    return _tls_record(22, b"\x01" + len(body).to_bytes(3, "big") + body, ver=0x0301)


def tls_handshake_failure(p):
    c = Conn(p, sport=443)
    t = c.handshake(0)
    c.send("c", t + 0.001, _client_hello())
    c.send("s", t + 0.002, _tls_record(21, b"\x02\x46"))           # fatal protocol_version
    c.fin("s", t + 0.0021)
    c.fin("c", t + 0.0025)


def tls_certificate_rejected(p):
    c = Conn(p, sport=443)
    t = c.handshake(0)
    c.send("c", t + 0.001, _client_hello())
    sh = b"\x03\x03" + b"\x22" * 32 + b"\x00" + b"\xc0\x2f" + b"\x00" + b"\x00\x00"
    flight = _tls_record(22, b"\x02" + len(sh).to_bytes(3, "big") + sh) + \
        _tls_record(22, b"\x0b" + (3).to_bytes(3, "big") + b"\x00\x00\x00") + \
        _tls_record(22, b"\x0e\x00\x00\x00")
    c.send("s", t + 0.002, flight)
    c.send("c", t + 0.003, _tls_record(21, b"\x02\x30"))           # fatal unknown_ca
    c.fin("c", t + 0.0031)
    c.fin("s", t + 0.0035)


def http2_goaway(p):
    c = Conn(p, sport=8080)
    t = c.handshake(0)
    pre = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    c.send("c", t + 0.001, pre + b"\x00\x00\x05\x01\x05\x00\x00\x00\x01" + b"\x82\x86\x84\x41\x00")
    c.send("s", t + 0.002, b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" + b"\x00\x00\x01\x01\x05\x00\x00\x00\x01\x88")
    c.send("s", t + 3.0, b"\x00\x00\x08\x07\x00\x00\x00\x00\x00" + struct.pack("!II", 1, 0))   # GOAWAY NO_ERROR
    c.fin("s", t + 3.0001)
    c.fin("c", t + 3.0005)


def connection_leak(p):
    c = Conn(p)
    t = c.handshake(0)
    c.send("c", t + 0.001, GET)
    c.send("s", t + 0.002, OK)
    c.fin("s", 5.002)                        # the client acks but never closes
    d = Conn(p, cport=40001)
    t2 = d.handshake(40.0)                   # the capture goes on
    d.send("c", t2 + 0.001, GET)
    d.send("s", t2 + 0.002, OK)
    d.fin("c", t2 + 0.003)
    d.fin("s", t2 + 0.0035)


def pool_overflow(p):
    """A full urllib3 pool under load: two pooled connections reused every 100 ms, and
    three single-request connections closed by the client right after their responses
    while both pooled ones sat idle between requests (the pool was full)."""
    for k, first in enumerate((0.01, 0.06)):
        c = Conn(p, cport=42000 + k)
        c.handshake(first - 0.005)
        for i in range(12):
            c.send("c", first + 0.1 * i, GET)
            c.send("s", first + 0.1 * i + 0.002, OK)
        c.fin("c", 1.3)
        c.fin("s", 1.3001)
    for i, close in enumerate((0.3835, 0.5835, 0.7835)):
        d = Conn(p, cport=42010 + i)
        d.handshake(close - 0.010)
        d.send("c", close - 0.006, GET)
        d.send("s", close - 0.004, OK)
        d.fin("c", close - 0.0035)              # "Connection pool is full, discarding connection"
        d.fin("s", close - 0.0034)


def _pool_end_of_work(p, busy: bool):
    """Connections A and A2 (two requests each) are closed by the client right after their
    last responses, while B, which went idle at the same moment, stays open until the
    server's idle close: a pool that kept B and discarded A and A2, when the workers were
    done. With `busy`,
    a third connection C of the same client is still working after A closed: a client
    under steady load that closes connections by design, not a full pool."""
    a, b, a2 = Conn(p, cport=43000), Conn(p, cport=43001), Conn(p, cport=43003)
    a.handshake(0.0)
    b.handshake(0.0005)
    a2.handshake(0.0007)
    a.send("c", 0.01, GET)
    a.send("s", 0.011, OK)
    b.send("c", 0.02, GET)
    b.send("s", 0.021, OK)
    a2.send("c", 0.025, GET)
    a2.send("s", 0.026, OK)
    a.send("c", 0.05, GET)
    a.send("s", 0.051, OK)
    a2.send("c", 0.053, GET)
    a2.send("s", 0.054, OK)
    b.send("c", 0.06, GET)
    b.send("s", 0.061, OK)
    a.fin("c", 0.052)                        # right after its complete response
    a.fin("s", 0.0521)
    a2.fin("c", 0.0545)                      # and a second worker's connection
    a2.fin("s", 0.0546)
    b.fin("s", 2.061)                        # idle close by the server (keep-alive 2 s)
    b.fin("c", 2.0612)
    if busy:
        c = Conn(p, cport=43002)
        c.handshake(0.001)
        for k in range(6):                   # still requesting well after A closed
            c.send("c", 0.03 + 0.1 * k, GET)
            c.send("s", 0.031 + 0.1 * k, OK)
        c.fin("c", 0.6)
        c.fin("s", 0.6001)


def half_close_mid_response(p):
    """The pool-overflow scene, but the client's FIN (shutdown(SHUT_WR) after its request)
    arrives while the response is still flowing: the socket was not given back by a
    pool after a complete response, so it is not a discard."""
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\nServer: nginx\r\n\r\n"
    conns = [Conn(p, cport=44000 + i) for i in range(4)]
    for i, c in enumerate(conns[:3]):
        c.handshake(0.0001 * i)
    for i, c in enumerate(conns[1:3]):
        c.send("c", 0.01 + 0.0001 * i, GET)
        c.send("s", 0.011 + 0.0001 * i, OK)
    a = conns[0]
    a.send("c", 0.01, GET)
    a.send("s", 0.011, big + b"x" * 1000)
    a.fin("c", 0.0112, ack=False)            # while the second half is on its way
    a.send("s", 0.0114, b"y" * 1000)
    a.fin("s", 0.0115)
    conns[3].handshake(0.02)
    conns[3].send("c", 0.021, GET)
    conns[3].send("s", 0.022, OK)
    for i, c in enumerate(conns[1:3]):
        c.send("c", 0.5 + 0.001 * i, GET)
        c.send("s", 0.5005 + 0.001 * i, OK)
    for c in conns[1:]:
        c.fin("c", 1.0)
        c.fin("s", 1.0001)


def pool_end_of_work(p):
    _pool_end_of_work(p, busy=False)


def steady_load_not_pool(p):
    _pool_end_of_work(p, busy=True)


SCENARIOS = {
    "keepalive-race": keepalive_race, "idle-close": idle_close, "request-rejected": request_rejected,
    "server-timeout": server_timeout, "client-timeout": client_timeout, "network-loss": network_loss,
    "server-abort": server_abort, "middlebox-reset": middlebox_reset, "client-abort": client_abort,
    "body-too-large": body_too_large, "rate-limited": rate_limited, "proxy-disconnect": proxy_disconnect,
    "tls-handshake-failure": tls_handshake_failure, "tls-certificate-rejected": tls_certificate_rejected,
    "http2-goaway": http2_goaway, "connection-leak": connection_leak, "pool-overflow": pool_overflow,
}
VARIANTS = {"client-abort__cancelled": client_cancelled, "pool-overflow__workers-done": pool_end_of_work,
            "graceful__steady-load": steady_load_not_pool, "graceful__half-close-mid-response": half_close_mid_response}


def main():
    os.makedirs(OUT, exist_ok=True)
    for cause, fn in SCENARIOS.items():
        pkts = []
        fn(pkts)
        pkts.sort(key=lambda x: x.time)
        wrpcap(os.path.join(OUT, f"{cause}__crafted.pcap"), pkts)
    for name, fn in VARIANTS.items():
        pkts = []
        fn(pkts)
        pkts.sort(key=lambda x: x.time)
        wrpcap(os.path.join(OUT, f"{name}.pcap"), pkts)
    print(f"wrote {len(SCENARIOS) + len(VARIANTS)} captures to {OUT}")


if __name__ == "__main__":
    main()
