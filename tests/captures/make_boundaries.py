#!/usr/bin/env python3
"""Crafted captures (scapy) on both sides of each line the classifier draws in mixed
traffic (issue "Right on real traffic"), written to tests/captures/boundaries/<name>.pcap.
Each scenario is a few connections; EXPECT names the cause every connection must get,
by client port. Deterministic (fixed times, ISNs).

The recorded haystacks (sample_pcaps/captures/lh-*) show the lines are right on real
traffic; these pin where each line is:

- pool-overflow: a full pool (the client's other connections idle and used again at each
  discard, three discards within a second) vs the same closes while those connections
  are busy, with only two discards, or with the idle connections of another client
  (User-Agent); the pool's last discard (kept connections idle, not used again) 0.3 s vs
  1.6 s after the others; the end of a burst with two discards vs one;
- connection-leak: a dead connection held 40 s while the client opens new connections
  vs one closed 2 s later (its next checkout); CLOSE_WAIT at the end longer vs shorter
  than the client's own lazy closes;
- server-abort: three awaiting connections reset within a millisecond vs one (server-
  timeout);
- keepalive-race vs request-rejected: a request crossing an idle FIN vs a FIN 5 ms after a
  request on a busy connection;
- TLS without keys: the idle time measured to the server's close_notify (idle-close), a
  close_notify right after the response (graceful), a request after the close_notify
  (keepalive-race), a close_notify 0.3 ms after a request (request-rejected);
- a response whose head the snaplen cut: complete when the server stopped before the
  client's FIN, flowing when it went on sending; an upload whose head the snaplen cut:
  too large when the server closed while it was arriving, not when it was answered and
  the connection closed idle later.

    python3 tests/captures/make_boundaries.py
"""

from __future__ import annotations

import importlib.util
import os
import struct


HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "boundaries")
_spec = importlib.util.spec_from_file_location("make_causes", os.path.join(HERE, "make_causes.py"))
mc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mc)
Conn, _tls_record, _client_hello = mc.Conn, mc._tls_record, mc._client_hello


def get(agent=b"python-requests/2.32"):
    return b"GET /api/items HTTP/1.1\r\nHost: api.example\r\nUser-Agent: " + agent + b"\r\n\r\n"


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: nginx\r\n\r\nhello"


def _kept(p, port, first, agent=b"python-requests/2.32", n=20, period=0.1, busy=0.002, end=2.2):
    """A pooled connection reused every `period` s (request, response `busy` s later)."""
    c = Conn(p, cport=port)
    c.handshake(first - 0.005)
    for k in range(n):
        t = first + period * k
        c.send("c", t, get(agent))
        c.send("s", t + busy, OK)
    c.fin("c", end)
    c.fin("s", end + 0.0001)
    return c


def _discard(p, port, close, agent=b"python-requests/2.32"):
    """A connection opened for one request and closed right after its response."""
    c = Conn(p, cport=port)
    c.handshake(close - 0.010)
    c.send("c", close - 0.006, get(agent))
    c.send("s", close - 0.004, OK)
    c.fin("c", close - 0.0035)
    c.fin("s", close - 0.0034)


def _pool(p, discard_at, kept_agent=b"python-requests/2.32"):
    _kept(p, 45000, 0.01, kept_agent)            # idle in (0.012 + 0.1k, 0.11 + 0.1k)
    _kept(p, 45001, 0.06, kept_agent)            # idle in (0.062 + 0.1k, 0.16 + 0.1k)
    for i, t in enumerate(discard_at):
        _discard(p, 45010 + i, t)


def pool_full(p):
    """Both kept connections idle at each of four discards (at 0.08 + 0.1k s), and used
    again afterwards: the pool was full."""
    _pool(p, [0.3835, 0.5835, 0.7835, 0.9835])


def pool_busy(p):
    """The same discards while one kept connection is busy (mid exchange): the pool had
    room, so the client closed them for its own reasons."""
    _pool(p, [0.3645, 0.5645, 0.7645, 0.9645])


def pool_two_discards(p):
    """Only two such closes: two sessions ending by chance, not a pattern."""
    _pool(p, [0.3835, 0.5835])


def pool_other_agent(p):
    """The idle, reused connections belong to another client behind the same address
    (curl): not the pool of the requests connections that closed."""
    _pool(p, [0.3835, 0.5835, 0.7835, 0.9835], kept_agent=b"curl/8.0")


def _pool_then_idle(p, last_discard):
    """Three discards of a full pool, then the load ends: the kept connections go idle and
    the server closes them 2 s later; one more discard at `last_discard`, while both sit
    idle and are not used again."""
    for k, first in enumerate((0.01, 0.06)):
        c = Conn(p, cport=45000 + k)
        c.handshake(first - 0.005)
        for i in range(10):
            c.send("c", first + 0.1 * i, get())
            c.send("s", first + 0.1 * i + 0.002, OK)
        c.fin("s", first + 0.9 + 2.002)
        c.fin("c", first + 0.9 + 2.0025)
    for i, t in enumerate([0.3835, 0.5835, 0.7835, last_discard]):
        _discard(p, 45010 + i, t)


def pool_last_discard(p):
    """The last discard comes 0.3 s after the others: the pool's last one."""
    _pool_then_idle(p, 1.0835)


def pool_late_close(p):
    """The same close 1.6 s after the pool's discards ended: no longer that pattern."""
    _pool_then_idle(p, 2.3835)


def _burst(p, discards):
    """`discards` connections and one survivor go idle together; the discards are closed
    by the client right after their responses, the survivor stays until the server's idle
    close 2 s later: the workers finished and the full pool kept one."""
    for i in range(discards):
        c = Conn(p, cport=46000 + i)
        c.handshake(0.001 * i)
        c.send("c", 0.01, get())
        c.send("s", 0.011, OK)
        c.send("c", 0.05 + 0.001 * i, get())
        c.send("s", 0.051 + 0.001 * i, OK)
        c.fin("c", 0.0515 + 0.001 * i)
        c.fin("s", 0.0516 + 0.001 * i)
    b = Conn(p, cport=46100)
    b.handshake(0.0005)
    b.send("c", 0.02, get())
    b.send("s", 0.021, OK)
    b.send("c", 0.06, get())
    b.send("s", 0.061, OK)
    b.fin("s", 2.061)
    b.fin("c", 2.0612)


def burst_two(p):
    _burst(p, 2)


def burst_one(p):
    _burst(p, 1)


def _dead(p, port, fin_at, client_close=None):
    """A keep-alive connection the server closes after 1 s idle; the client closes its
    end at `client_close` (None: never, CLOSE_WAIT until the capture ends)."""
    c = Conn(p, cport=port)
    t = c.handshake(fin_at - 1.01)
    c.send("c", t + 0.001, get())
    c.send("s", t + 0.002, OK)
    c.fin("s", fin_at)
    if client_close is not None:
        c.fin("c", client_close)


def _oneshots(p, times, base=47000):
    for i, t in enumerate(times):
        c = Conn(p, cport=base + i)
        c.handshake(t)
        c.send("c", t + 0.001, get())
        c.send("s", t + 0.002, OK)
        c.fin("c", t + 0.003)
        c.fin("s", t + 0.0031)


def leak_held_while_busy(p):
    """Held 40 s in CLOSE_WAIT while the client opened new connections: leaked."""
    _dead(p, 45500, 1.0, client_close=41.0)
    _oneshots(p, [5.0, 10.0, 20.0, 30.0])


def leak_closed_at_checkout(p):
    """Closed 2 s after the server's FIN (the pool's next checkout): an idle close."""
    _dead(p, 45500, 1.0, client_close=3.0)
    _oneshots(p, [1.5, 2.5, 3.0])


def leak_pending_at_end(p):
    """The client closes its dead connections 3 s late; the capture ends 1 s after the
    server closed another: not yet looked at, an idle close."""
    _dead(p, 45500, 1.0, client_close=4.0)
    _dead(p, 45501, 9.0)
    _oneshots(p, [10.0])


def leak_longer_than_lazy(p):
    """The client closes its dead connections 1 s late; another sits 6 s in CLOSE_WAIT
    until the capture ends: leaked."""
    _dead(p, 45500, 1.0, client_close=2.0)
    _dead(p, 45501, 4.0)
    _oneshots(p, [10.0])


def _awaiting_reset(p, port, reset_at):
    c = Conn(p, cport=port)
    t = c.handshake(0.0)
    c.send("c", t + 0.001, get())
    c.rst("s", reset_at)


def abort_burst(p):
    """Three requests pending 5 s, reset within a millisecond: the server crashed."""
    for i in range(3):
        _awaiting_reset(p, 45600 + i, 5.0 + 0.0003 * i)


def abort_single(p):
    """One request pending 5 s, then reset: a server timeout."""
    _awaiting_reset(p, 45600, 5.0)


def race_crossing(p):
    """The server's idle FIN (1 s after the last response) and the client's next request
    cross: a keep-alive race."""
    c = Conn(p, cport=45700)
    t = c.handshake(0.0)
    c.send("c", t + 0.001, get())
    c.send("s", t + 0.002, OK)
    c.send("c", 1.0021, get(), push_ack=False)
    c.fin("s", 1.0022, ack=False)
    c.rst("s", 1.0023, ack=False, seq=c.ep["s"][2])


def race_rejected(p):
    """A second request right after the first response, and the server's FIN 5 ms after
    it: it had time to read it, so it rejected it."""
    c = Conn(p, cport=45700)
    t = c.handshake(0.0)
    c.send("c", t + 0.001, get())
    c.send("s", t + 0.002, OK)
    c.send("c", t + 0.004, get())
    c.fin("s", t + 0.009)
    c.fin("c", t + 0.0095)


def _tls12(c, t, alpn: bytes = b""):
    """A TLS 1.2 handshake (ClientHello, ServerHello flight, both ChangeCipherSpec and
    Finished) ending at t + 0.004; returns that time. `alpn`: the protocol the ServerHello
    names (in clear in TLS 1.2), none by default."""
    c.send("c", t + 0.001, _client_hello())
    ext = b"\x00\x10" + (len(alpn) + 3).to_bytes(2, "big") + (len(alpn) + 1).to_bytes(2, "big") + \
        bytes([len(alpn)]) + alpn if alpn else b""
    sh = b"\x03\x03" + b"\x22" * 32 + b"\x00" + b"\xc0\x2f" + b"\x00" + \
        (len(ext).to_bytes(2, "big") + ext if alpn else b"\x00\x00")
    c.send("s", t + 0.002, _tls_record(22, b"\x02" + len(sh).to_bytes(3, "big") + sh) +
           _tls_record(22, b"\x0e\x00\x00\x00"))
    c.send("c", t + 0.003, _tls_record(20, b"\x01") + _tls_record(22, b"\x00" * 40))
    c.send("s", t + 0.004, _tls_record(20, b"\x01") + _tls_record(22, b"\x00" * 40))
    return t + 0.004


def _app(n):
    return _tls_record(23, b"\xab" * n)


ALERT = _tls_record(21, b"\xcd" * 26)          # an encrypted alert (AES-GCM): close_notify


def tls_idle(p):
    """nginx: close_notify 2 s after the last response, then FIN; the Python client
    answers with RST (unread TLS data in its buffer) before the server's FIN."""
    c = Conn(p, sport=443, cport=45800)
    t = _tls12(c, c.handshake(0.0))
    c.send("c", t + 0.001, _app(120))
    c.send("s", t + 0.003, _app(400))
    c.send("s", t + 2.003, ALERT)
    c.rst("c", t + 2.0031)
    c._pkt("s", t + 2.0032, "FA")


def tls_close_after_response(p):
    """close_notify right after the response (Connection: close): graceful."""
    c = Conn(p, sport=443, cport=45800)
    t = _tls12(c, c.handshake(0.0))
    c.send("c", t + 0.001, _app(120))
    c.send("s", t + 0.003, _app(400))
    c.send("s", t + 0.0031, ALERT)
    c.fin("s", t + 0.0032)
    c.fin("c", t + 0.0035)


def tls_race(p):
    """A request sent after the server's idle close_notify: a keep-alive race."""
    c = Conn(p, sport=443, cport=45800)
    t = _tls12(c, c.handshake(0.0))
    c.send("c", t + 0.001, _app(120))
    c.send("s", t + 0.003, _app(400))
    c.send("s", t + 2.003, ALERT, push_ack=False)
    c.fin("s", t + 2.0031, ack=False)
    c.send("c", t + 2.0032, _app(120), push_ack=False)
    c.rst("s", t + 2.0033, ack=False, seq=c.ep["s"][2])


def tls_rejected(p):
    """close_notify and FIN 0.3 ms after a request, no response record: rejected."""
    c = Conn(p, sport=443, cport=45800)
    t = _tls12(c, c.handshake(0.0))
    c.send("c", t + 0.001, _app(120))
    c.send("s", t + 0.0013, ALERT)
    c.fin("s", t + 0.0014)
    c.fin("c", t + 0.0016)


def tls_h2_control_after_response(p):
    """Without keys: an HTTP/2 client acknowledges the server's SETTINGS and opens its
    window after the response (one small record each: 26 and 30 bytes in TLS 1.3 sizes;
    33 and 37 in TLS 1.2 AES-GCM with ALPN h2), then closes 100 ms later: those records
    are not requests, the close is graceful (httpx and curl in lc-http2-goaway-tls).
    A request of 40 bytes, then the client's close 100 ms later with no answer, is still
    a client abort."""
    def one(cport, start, alpn, after_response, close_at):
        c = Conn(p, sport=443, cport=cport)
        t = _tls12(c, c.handshake(start), alpn)
        c.send("c", t + 0.001, _app(120))
        c.send("s", t + 0.003, _app(400))
        for dt, n in after_response:
            c.send("c", t + dt, _app(n))
        c.fin("c", t + close_at)
        c.fin("s", t + close_at + 0.0005)
    one(46000, 0.0, b"", [(0.0035, 26), (0.0040, 30)], 0.104)
    one(46001, 1.0, b"h2", [(0.0035, 33), (0.0040, 37)], 0.104)
    one(46002, 2.0, b"", [(0.005, 40)], 0.105)


BIG_HEAD = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/octet-stream\r\n" + \
    b"X-Padding: " + b"p" * 200 + b"\r\nContent-Length: 3000\r\n\r\n"


def _cut_response(p, server_goes_on: bool):
    c = Conn(p, cport=45900)
    t = c.handshake(0.0)
    c.send("c", t + 0.001, get())
    c.send("s", t + 0.002, BIG_HEAD + b"x" * 1000)
    c.send("s", t + 0.003, b"x" * 1400)
    if server_goes_on:
        c.fin("c", t + 0.0035, ack=False)
        c.send("s", t + 0.004, b"x" * 600)
        c.rst("c", t + 0.0041, ack=False)
    else:
        c.send("s", t + 0.004, b"x" * 600)
        c.fin("c", t + 0.005)
        c.fin("s", t + 0.0051)


def snaplen_complete(p):
    _cut_response(p, False)


def snaplen_flowing(p):
    _cut_response(p, True)


POST_HEAD = b"POST /upload HTTP/1.1\r\nHost: api.example\r\nUser-Agent: python-requests/2.32\r\n" + \
    b"X-Padding: " + b"p" * 200 + b"\r\nContent-Length: 100000\r\n\r\n"


def _cut_upload(p, server_closes_while_sending: bool):
    """A 100 kB POST whose head the snaplen cut (its Content-Length not captured)."""
    c = Conn(p, cport=45950)
    t = c.handshake(0.0)
    c.send("c", t + 0.001, POST_HEAD + b"u" * 1000, push_ack=False)
    for k in range(50):
        c.send("c", t + 0.002 + 0.0001 * k, b"u" * 1400, push_ack=False)
    if server_closes_while_sending:           # nginx 413-style: closes mid-body
        c.rst("s", t + 0.0045)
    else:                                     # answered, then idle 2 s, the server's idle close
        c.send("s", t + 0.010, OK)
        c.fin("s", t + 2.010)
        c.fin("c", t + 2.0105)


def snaplen_upload_cut(p):
    _cut_upload(p, True)


def snaplen_upload_answered(p):
    _cut_upload(p, False)


SNAPLEN = 128                                   # the captures of the snaplen_* scenarios

#: scenario -> (function, {client port: expected cause})
EXPECT = {
    "pool-full": (pool_full, {45000: "graceful", 45001: "graceful", 45010: "pool-overflow",
                              45011: "pool-overflow", 45012: "pool-overflow", 45013: "pool-overflow"}),
    "pool-busy": (pool_busy, {45010: "graceful", 45011: "graceful", 45012: "graceful", 45013: "graceful"}),
    "pool-two-discards": (pool_two_discards, {45010: "graceful", 45011: "graceful"}),
    "pool-other-agent": (pool_other_agent, {45010: "graceful", 45011: "graceful", 45012: "graceful",
                                            45013: "graceful"}),
    "pool-last-discard": (pool_last_discard, {45000: "idle-close", 45001: "idle-close", 45010: "pool-overflow",
                                              45011: "pool-overflow", 45012: "pool-overflow",
                                              45013: "pool-overflow"}),
    "pool-late-close": (pool_late_close, {45010: "pool-overflow", 45011: "pool-overflow", 45012: "pool-overflow",
                                          45013: "graceful"}),
    "burst-two": (burst_two, {46000: "pool-overflow", 46001: "pool-overflow", 46100: "idle-close"}),
    "burst-one": (burst_one, {46000: "graceful", 46100: "idle-close"}),
    "leak-held-while-busy": (leak_held_while_busy, {45500: "connection-leak"}),
    "leak-closed-at-checkout": (leak_closed_at_checkout, {45500: "idle-close"}),
    "leak-pending-at-end": (leak_pending_at_end, {45500: "idle-close", 45501: "idle-close"}),
    "leak-longer-than-lazy": (leak_longer_than_lazy, {45500: "idle-close", 45501: "connection-leak"}),
    "abort-burst": (abort_burst, {45600: "server-abort", 45601: "server-abort", 45602: "server-abort"}),
    "abort-single": (abort_single, {45600: "server-timeout"}),
    "race-crossing": (race_crossing, {45700: "keepalive-race"}),
    "race-rejected": (race_rejected, {45700: "request-rejected"}),
    "tls-idle": (tls_idle, {45800: "idle-close"}),
    "tls-close-after-response": (tls_close_after_response, {45800: "graceful"}),
    "tls-race": (tls_race, {45800: "keepalive-race"}),
    "tls-rejected": (tls_rejected, {45800: "request-rejected"}),
    "tls-h2-control-after-response": (tls_h2_control_after_response,
                                      {46000: "graceful", 46001: "graceful", 46002: "client-abort"}),
    "snaplen-complete": (snaplen_complete, {45900: "graceful"}),
    "snaplen-flowing": (snaplen_flowing, {45900: "client-abort"}),
    "snaplen-upload-cut": (snaplen_upload_cut, {45950: "body-too-large"}),
    "snaplen-upload-answered": (snaplen_upload_answered, {45950: "idle-close"}),
}


def write_pcap(path: str, pkts, snaplen: int) -> None:
    """A classic pcap (Ethernet, microseconds) whose records keep at most `snaplen` bytes
    of each frame and its whole length on the wire, as tcpdump -s writes them."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1))
        for pk in pkts:
            raw = bytes(pk)
            cut = raw[:snaplen]
            us = int(round(float(pk.time) * 1e6))
            f.write(struct.pack("<IIII", us // 1_000_000, us % 1_000_000, len(cut), len(raw)) + cut)


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, (fn, _) in EXPECT.items():
        pkts = []
        fn(pkts)
        pkts.sort(key=lambda x: x.time)
        write_pcap(os.path.join(OUT, f"{name}.pcap"), pkts, SNAPLEN if name.startswith("snaplen") else 65535)
    print(f"wrote {len(EXPECT)} captures to {OUT}")


if __name__ == "__main__":
    main()
