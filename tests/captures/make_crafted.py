#!/usr/bin/env python3
"""(Re)write the crafted test captures in tests/captures/crafted/.

Deterministic: fixed timestamps, fixed ISNs, fixed IP IDs, fixed MACs, gzip
mtime 0. Running the script twice yields byte-identical files.

    python3 tests/captures/make_crafted.py            # writes ./crafted next to this file
    python3 tests/captures/make_crafted.py --out DIR

Every crafted connection carries an HTTP/1.1 GET and a response, so the
payloads look like something a real analyzer would meet.

Ordinary pcaps are written with scapy's PcapWriter / wrpcap. Files scapy cannot
produce exactly (two-IDB pcapng with if_tsresol, big-endian pcap, nanosecond
pcap, snaplen cut records, truncated/corrupt files) are written with struct.
"""
from __future__ import annotations

import argparse
import gzip
import io
import os
import struct
import sys
from decimal import Decimal

import logging

from scapy.config import conf

conf.verb = 0
# PcapWriter warns when the linktype we force differs from the one it would guess
# from the scapy class (e.g. raw IP with linktype 101); that is intended here.
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.contrib.mpls import MPLS  # noqa: E402
from scapy.layers.inet import GRE, IP, TCP, UDP  # noqa: E402
from scapy.layers.inet6 import IPv6  # noqa: E402
from scapy.layers.l2 import (  # noqa: E402
    CookedLinux,
    CookedLinuxV2,
    Dot1AD,
    Dot1Q,
    Ether,
    Loopback,
)
from scapy.layers.ppp import PPP, PPPoE  # noqa: E402
from scapy.layers.vxlan import VXLAN  # noqa: E402
from scapy.utils import PcapWriter  # noqa: E402

# ---------------------------------------------------------------------------
# constants
# ---------------------------------------------------------------------------
T0_NS = 1_700_000_000 * 10**9          # 2023-11-14T22:13:20Z
CLI_MAC = "02:00:00:00:00:01"
SRV_MAC = "02:00:00:00:00:02"
CLI4, SRV4 = "10.0.0.1", "10.0.0.2"
CLI6, SRV6 = "fd00::1", "fd00::2"
CPORT, SPORT = 40000, 80
C_ISN, S_ISN = 1_000_000, 5_000_000

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_12 = 12      # DLT_RAW as written by some BSDs
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276

HTTP_REQ = (b"GET /index.html HTTP/1.1\r\nHost: example.test\r\n"
            b"User-Agent: pcapsense-crafted/1\r\nAccept: */*\r\n\r\n")


def http_resp(body_len: int = 120, close: bool = False) -> bytes:
    body = (b"<html><body>" + b"pcapsense " * 200)[: body_len - 15] + b"</body></html>\n"
    body = body[:body_len]
    hdr = (b"HTTP/1.1 200 OK\r\nServer: crafted\r\nContent-Type: text/html\r\n"
           b"Content-Length: %d\r\n" % len(body))
    if close:
        hdr += b"Connection: close\r\n"
    return hdr + b"\r\n" + body


# ---------------------------------------------------------------------------
# connection builder
# ---------------------------------------------------------------------------
class Conn:
    """Tracks both sides' sequence numbers and produces IP/TCP packets.

    side 'c' = client (active opener), 's' = server.
    Each packet gets attribute ``ts_ns`` (int, ns since epoch).
    """

    def __init__(self, *, v6=False, cli=(CLI4, CPORT), srv=(SRV4, SPORT),
                 c_isn=C_ISN, s_isn=S_ISN, t0_ns=T0_NS, ttl=64,
                 c_ipid=0x1000, s_ipid=0x2000, c_win=64240, s_win=65160):
        self.v6 = v6
        if v6 and cli[0] == CLI4:
            cli, srv = (CLI6, cli[1]), (SRV6, srv[1])
        self.addr = {"c": cli, "s": srv}
        self.isn = {"c": c_isn, "s": s_isn}
        self.nxt = {"c": c_isn, "s": s_isn}
        self.ipid = {"c": c_ipid, "s": s_ipid}
        self.win = {"c": c_win, "s": s_win}
        self.ttl = ttl
        self.t = t0_ns
        self.pkts: list = []

    @staticmethod
    def other(side):
        return "s" if side == "c" else "c"

    def pkt(self, side, flags, payload=b"", *, dt_us=1000, seq=None, ack=None,
            win=None, options=None, advance=True, ttl=None, ipid=None, emit=True):
        self.t += dt_us * 1000
        o = self.other(side)
        src, sport = self.addr[side]
        dst, dport = self.addr[o]
        if seq is None:
            seq = self.nxt[side]
        if ack is None:
            ack = self.nxt[o] if "A" in flags else 0
        if win is None:
            win = self.win[side]
        if options is None:
            options = []
            if "S" in flags:
                options = [("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]
        tcp = TCP(sport=sport, dport=dport, seq=seq & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF,
                  flags=flags, window=win, options=options)
        if self.v6:
            ip = IPv6(src=src, dst=dst, hlim=ttl or self.ttl)
        else:
            if ipid is None:
                ipid = self.ipid[side]
                self.ipid[side] += 1
            ip = IP(src=src, dst=dst, ttl=ttl or self.ttl, id=ipid, flags="DF")
        p = ip / tcp
        if payload:
            p = p / payload
        p = p.__class__(bytes(p))  # freeze checksums/lengths
        p.ts_ns = self.t
        p.side = side
        if advance:
            adv = len(payload) + (1 if "S" in flags else 0) + (1 if "F" in flags else 0)
            self.nxt[side] = seq + adv
        if emit:
            self.pkts.append(p)
        return p

    # -- common sequences ---------------------------------------------------
    def handshake(self, rtt_us=300):
        self.pkt("c", "S", dt_us=1000)
        self.pkt("s", "SA", dt_us=rtt_us // 2)
        self.pkt("c", "A", dt_us=rtt_us // 2)

    def http(self, resp=None, rtt_us=300, seg=1448):
        resp = resp if resp is not None else http_resp()
        self.pkt("c", "PA", HTTP_REQ, dt_us=200)
        self.pkt("s", "A", dt_us=rtt_us // 2)
        chunks = [resp[i:i + seg] for i in range(0, len(resp), seg)]
        for i, ch in enumerate(chunks):
            self.pkt("s", "PA" if i == len(chunks) - 1 else "A", ch, dt_us=400)
        self.pkt("c", "A", dt_us=rtt_us // 2)

    def fin_close(self, first="c", rtt_us=300):
        o = self.other(first)
        self.pkt(first, "FA", dt_us=5000)
        self.pkt(o, "A", dt_us=rtt_us // 2)
        self.pkt(o, "FA", dt_us=100)
        self.pkt(first, "A", dt_us=rtt_us // 2)

    def full(self, first_close="c"):
        self.handshake()
        self.http()
        self.fin_close(first_close)
        return self.pkts


# ---------------------------------------------------------------------------
# link-layer wrappers (pkt -> bytes-able scapy packet)
# ---------------------------------------------------------------------------
def _macs(p):
    return (CLI_MAC, SRV_MAC) if p.side == "c" else (SRV_MAC, CLI_MAC)


def eth(p):
    s, d = _macs(p)
    return Ether(src=s, dst=d, type=0x86DD if IPv6 in p else 0x0800) / p


def vlan(p):
    s, d = _macs(p)
    return Ether(src=s, dst=d, type=0x8100) / Dot1Q(prio=0, vlan=100, type=0x0800) / p


def qinq(p):
    s, d = _macs(p)
    return (Ether(src=s, dst=d, type=0x88A8) / Dot1AD(vlan=200, type=0x8100)
            / Dot1Q(vlan=100, type=0x0800) / p)


def sll(p):
    # captured on the client host: client->server = outgoing (4), else host (0)
    s, _ = _macs(p)
    return CookedLinux(pkttype=4 if p.side == "c" else 0, lladdrtype=1, lladdrlen=6,
                       src=bytes.fromhex(s.replace(":", "")) + b"\0\0", proto=0x0800) / p


def sll2(p):
    s, _ = _macs(p)
    return CookedLinuxV2(proto=0x0800, ifindex=2, lladdrtype=1,
                         pkttype=4 if p.side == "c" else 0, lladdrlen=6,
                         src=bytes.fromhex(s.replace(":", "")) + b"\0\0") / p


def null_lo(p):
    return Loopback(type=2) / p   # AF_INET, little-endian host order


def raw(p):
    return p


OUTER_CLI, OUTER_SRV = "192.0.2.1", "192.0.2.2"   # tunnel endpoints
VTEP_MAC_A, VTEP_MAC_B = "02:00:00:00:0a:01", "02:00:00:00:0a:02"


def vxlan(p):
    s, d = _macs(p)
    a, b = (OUTER_CLI, OUTER_SRV) if p.side == "c" else (OUTER_SRV, OUTER_CLI)
    ma, mb = (VTEP_MAC_A, VTEP_MAC_B) if p.side == "c" else (VTEP_MAC_B, VTEP_MAC_A)
    return (Ether(src=ma, dst=mb) / IP(src=a, dst=b, id=0, ttl=64, flags="DF")
            / UDP(sport=49152 if p.side == "c" else 49153, dport=4789, chksum=0)
            / VXLAN(flags=0x08, vni=4242) / Ether(src=s, dst=d) / p)


def gre(p):
    a, b = (OUTER_CLI, OUTER_SRV) if p.side == "c" else (OUTER_SRV, OUTER_CLI)
    ma, mb = (VTEP_MAC_A, VTEP_MAC_B) if p.side == "c" else (VTEP_MAC_B, VTEP_MAC_A)
    return (Ether(src=ma, dst=mb) / IP(src=a, dst=b, id=0, ttl=64, proto=47)
            / GRE(proto=0x0800) / p)


def mpls(p):
    s, d = _macs(p)
    return Ether(src=s, dst=d, type=0x8847) / MPLS(label=1000, cos=0, s=1, ttl=64) / p


def pppoe(p):
    s, d = _macs(p)
    return (Ether(src=s, dst=d, type=0x8864) / PPPoE(version=1, type=1, code=0, sessionid=0x1234)
            / PPP(proto=0x0021) / p)


# ---------------------------------------------------------------------------
# writers
# ---------------------------------------------------------------------------
def _dec_time(ns):
    return Decimal(ns) / Decimal(10**9)


def write_scapy(path, pkts, wrap=eth, linktype=LINKTYPE_ETHERNET):
    """Write with scapy's PcapWriter (microsecond pcap, little-endian)."""
    w = PcapWriter(path, linktype=linktype, sync=False)
    for p in pkts:
        f = wrap(p)
        f = f.__class__(bytes(f))
        f.time = _dec_time(p.ts_ns)
        w.write(f)
    w.close()


def pcap_bytes(records, linktype=LINKTYPE_ETHERNET, *, nano=False, big_endian=False,
               snaplen=262144, version=(2, 4)):
    """records: iterable of (ts_ns, data_bytes, orig_len). Returns pcap file bytes.
    `linktype`: the header's whole link-type field (FCS and reserved bits included)."""
    e = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = io.BytesIO()
    out.write(struct.pack(e + "IHHiIII", magic, version[0], version[1], 0, 0, snaplen, linktype))
    for ts_ns, data, orig in records:
        sec, frac_ns = divmod(ts_ns, 10**9)
        frac = frac_ns if nano else frac_ns // 1000
        data = data[:snaplen]
        out.write(struct.pack(e + "IIII", sec, frac, len(data), orig))
        out.write(data)
    return out.getvalue()


def records(pkts, wrap=eth):
    for p in pkts:
        b = bytes(wrap(p))
        yield p.ts_ns, b, len(b)


def write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)


# -- pcapng (two IDBs) --------------------------------------------------------
def _ng_opt(code, value: bytes):
    pad = (-len(value)) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


def _ng_block(btype, body: bytes):
    body += b"\0" * ((-len(body)) % 4)
    total = len(body) + 12
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


def pcapng_two_idb(conn_pkts, comment=b"pcapsense crafted: two interfaces"):
    shb = _ng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
                    + _ng_opt(1, comment)
                    + _ng_opt(4, b"pcapsense make_crafted.py") + _ng_opt(0, b""))
    # IDB 0: Ethernet, default resolution (microseconds), no if_tsresol option
    idb0 = _ng_block(1, struct.pack("<HHI", LINKTYPE_ETHERNET, 0, 262144)
                     + _ng_opt(2, b"eth0") + _ng_opt(0, b""))
    # IDB 1: raw IP, nanosecond resolution (if_tsresol = 9)
    idb1 = _ng_block(1, struct.pack("<HHI", LINKTYPE_RAW, 0, 262144)
                     + _ng_opt(2, b"tun0") + _ng_opt(9, b"\x09") + _ng_opt(0, b""))
    out = [shb, idb0, idb1]
    for i, p in enumerate(conn_pkts):
        # first half of the connection seen on eth0, second half on tun0
        ifid = 0 if i < len(conn_pkts) // 2 else 1
        if ifid == 0:
            data = bytes(eth(p))
            ts = p.ts_ns // 1000              # microseconds
        else:
            data = bytes(p)
            ts = p.ts_ns + 123 + i            # nanoseconds, with sub-microsecond digits
        hi, lo = ts >> 32, ts & 0xFFFFFFFF
        body = struct.pack("<IIIII", ifid, hi, lo, len(data), len(data)) + data
        body += b"\0" * ((-len(data)) % 4)
        out.append(_ng_block(6, body))
    return b"".join(out)


# ---------------------------------------------------------------------------
# scenarios
# ---------------------------------------------------------------------------
def sc_basic(**kw):
    return Conn(**kw).full()


def sc_handshake_missing():
    # capture starts mid-stream: no SYN seen. Request/response, server closes first.
    c = Conn(c_isn=C_ISN + 7331, s_isn=S_ISN + 99021)
    c.pkt("c", "PA", HTTP_REQ, dt_us=1000)
    c.pkt("s", "A", dt_us=150)
    c.pkt("s", "PA", http_resp(300, close=True), dt_us=400)
    c.pkt("c", "A", dt_us=150)
    c.fin_close(first="s")
    return c.pkts


def sc_fin_retransmitted():
    c = Conn()
    c.handshake()
    c.http()
    fin = c.pkt("c", "FA", dt_us=5000)                 # lost on the way to the server
    c.pkt("c", "FA", dt_us=204000, seq=fin[TCP].seq)   # RTO retransmission, same seq
    c.pkt("s", "A", dt_us=150)
    c.pkt("s", "FA", dt_us=100)
    c.pkt("c", "A", dt_us=150)
    return c.pkts


def sc_fin_and_rst():
    c = Conn()
    c.handshake()
    c.http()
    c.pkt("c", "FRA", dt_us=5000)       # one segment carrying both FIN and RST
    return c.pkts


def sc_rst_after_fin():
    c = Conn()
    c.handshake()
    c.http()
    c.pkt("c", "FA", dt_us=5000)
    c.pkt("s", "A", dt_us=150)
    c.pkt("c", "R", dt_us=2000)         # seq = FIN seq + 1 (nxt already advanced)
    return c.pkts


def sc_simultaneous_open():
    c = Conn(cli=(CLI4, 45000), srv=(SRV4, 46000))
    c.pkt("c", "S", dt_us=1000)
    c.pkt("s", "S", dt_us=10)           # crosses the first SYN on the wire
    c.pkt("c", "SA", dt_us=200, seq=c.isn["c"], advance=False)
    c.pkt("s", "SA", dt_us=10, seq=c.isn["s"], advance=False)
    c.pkt("c", "PA", HTTP_REQ, dt_us=300)
    c.pkt("s", "PA", http_resp(200), dt_us=300)
    c.pkt("c", "A", dt_us=150)
    c.fin_close("c")
    return c.pkts


def sc_simultaneous_close():
    c = Conn()
    c.handshake()
    c.http()
    s_fin_ack = c.nxt["c"]               # server has not seen the client's FIN yet
    c.pkt("c", "FA", dt_us=5000)
    c.pkt("s", "FA", dt_us=10, ack=s_fin_ack)
    c.pkt("c", "A", dt_us=140)
    c.pkt("s", "A", dt_us=10)
    return c.pkts


def sc_port_reuse():
    # same 4-tuple three times
    c1 = Conn(c_isn=1_000_000, s_isn=5_000_000)
    c1.full("c")                                         # #1: closed by FIN (client first)
    c2 = Conn(c_isn=900_000_000, s_isn=2_500_000_000, t0_ns=c1.t + 2 * 10**9,
              c_ipid=c1.ipid["c"], s_ipid=c1.ipid["s"])
    c2.handshake()
    c2.http()
    c2.pkt("c", "RA", dt_us=3000)                        # #2: closed by client RST
    c3 = Conn(c_isn=900_000_000, s_isn=3_100_000_000, t0_ns=c2.t + 1 * 10**9,
              c_ipid=c2.ipid["c"], s_ipid=c2.ipid["s"])  # #3: SAME client ISN as #2
    c3.handshake()
    c3.http()
    c3.fin_close("s")                                    # closed by FIN (server first)
    return c1.pkts + c2.pkts + c3.pkts


def sc_out_of_order():
    c = Conn()
    c.handshake()
    resp = http_resp(2 * 1000 + 500 - 120)  # headers+body
    # split so that segments are 1000/1000/rest bytes
    a, b, rest = resp[:1000], resp[1000:2000], resp[2000:]
    s0 = c.nxt["s"]
    c.pkt("c", "PA", HTTP_REQ, dt_us=200)
    c.pkt("s", "A", dt_us=150)
    c.pkt("s", "A", b, dt_us=400, seq=s0 + 1000, advance=False)   # B arrives first
    c.pkt("c", "A", dt_us=50, ack=s0)                               # dup ACK
    c.pkt("s", "A", a, dt_us=100, seq=s0, advance=False)          # A fills the hole
    c.nxt["s"] = s0 + 2000
    c.pkt("c", "A", dt_us=50)                                       # ACK s0+2000
    c.pkt("s", "A", a, dt_us=30000, seq=s0, advance=False)        # spurious retransmission of A
    c.pkt("c", "A", dt_us=50)                                       # dup ACK
    c.pkt("c", "A", dt_us=1000, win=0)                              # zero window advert
    c.pkt("s", "A", rest[:1], dt_us=200000, advance=False)        # zero-window probe (1 byte)
    c.pkt("c", "A", dt_us=50, win=0)                                # probe ACK, still zero
    c.pkt("c", "A", dt_us=100000)                                   # window update
    c.pkt("s", "PA", rest, dt_us=100)
    c.pkt("c", "A", dt_us=150)
    # idle, then TCP keep-alive probe from the client: seq = snd.nxt - 1, no data
    c.pkt("c", "A", dt_us=10 * 10**6, seq=c.nxt["c"] - 1, advance=False)
    c.pkt("s", "A", dt_us=150)                                      # keep-alive ACK
    c.fin_close("c")
    return c.pkts


def sc_refused():
    c = Conn(srv=(SRV4, 8081))
    c.pkt("c", "S", dt_us=1000)
    c.pkt("s", "RA", dt_us=100, seq=0)
    return c.pkts


def sc_syn_retries():
    c = Conn(srv=(SRV4, 8082))
    c.pkt("c", "S", dt_us=1000)
    for rto in (1, 2, 4):                       # 3 retransmissions, RTO doubling
        c.pkt("c", "S", dt_us=rto * 10**6, seq=c.isn["c"], advance=False)
    return c.pkts


def sc_rst_injected():
    c = Conn(s_ipid=0x5A00)
    c.handshake()
    resp = http_resp(3000)
    c.pkt("c", "PA", HTTP_REQ, dt_us=200)
    c.pkt("s", "A", dt_us=5000)
    c.pkt("s", "A", resp[:1448], dt_us=20000)
    # injected by a middlebox: claims to be the server, in-window seq, but
    # TTL 250 (server uses 64) and IP ID 0 (server's IDs count up from 0x5A00)
    c.pkt("s", "RA", dt_us=1000, ttl=250, ipid=0, advance=False)
    # genuine server data keeps arriving; the client, having torn down, answers RST
    c.pkt("s", "PA", resp[1448:], dt_us=19000)
    c.pkt("c", "R", dt_us=50, ack=0)
    return c.pkts


# ---------------------------------------------------------------------------
def build(out):
    os.makedirs(out, exist_ok=True)
    P = lambda name: os.path.join(out, name)  # noqa: E731
    made = []

    def scapy_file(name, pkts, wrap=eth, lt=LINKTYPE_ETHERNET):
        write_scapy(P(name), pkts, wrap, lt)
        made.append(name)

    def raw_file(name, data):
        write_bytes(P(name), data)
        made.append(name)

    scapy_file("handshake_missing.pcap", sc_handshake_missing())
    scapy_file("fin_retransmitted.pcap", sc_fin_retransmitted())
    scapy_file("fin_and_rst.pcap", sc_fin_and_rst())
    scapy_file("rst_after_fin.pcap", sc_rst_after_fin())
    scapy_file("simultaneous_open.pcap", sc_simultaneous_open())
    scapy_file("simultaneous_close.pcap", sc_simultaneous_close())
    scapy_file("port_reuse.pcap", sc_port_reuse())
    scapy_file("out_of_order.pcap", sc_out_of_order())
    scapy_file("ipv6.pcap", sc_basic(v6=True))
    scapy_file("vlan_8021q.pcap", sc_basic(), vlan)
    scapy_file("vlan_qinq.pcap", sc_basic(), qinq)
    scapy_file("sll2.pcap", sc_basic(), sll2, LINKTYPE_LINUX_SLL2)
    scapy_file("sll.pcap", sc_basic(), sll, LINKTYPE_LINUX_SLL)
    scapy_file("null_loopback.pcap", sc_basic(), null_lo, LINKTYPE_NULL)
    scapy_file("raw_ip.pcap", sc_basic(), raw, LINKTYPE_RAW)
    raw_file("raw_ip_linktype12.pcap", pcap_bytes(records(sc_basic(), raw), LINKTYPE_RAW_12))
    raw_file("pcapng_two_interfaces.pcapng", pcapng_two_idb(sc_basic()))
    # nanosecond pcap: timestamps with sub-microsecond digits
    nano_pkts = sc_basic(t0_ns=T0_NS + 123_456_789)
    for i, p in enumerate(nano_pkts):
        p.ts_ns += 7 * i + 1           # never a multiple of 1000 ns
    raw_file("nanosecond.pcap", pcap_bytes(records(nano_pkts), nano=True))
    raw_file("big_endian.pcap", pcap_bytes(records(sc_basic()), big_endian=True))
    normal = pcap_bytes(records(sc_basic()))
    last_len = len(bytes(eth(sc_basic()[-1])))
    raw_file("truncated.pcap", normal[: len(normal) - last_len // 2])   # cut mid last record
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=0) as g:
        g.write(normal)
    raw_file("gzip.pcap.gz", gz.getvalue())
    big = Conn()
    big.handshake()
    big.http(resp=http_resp(4000))
    big.fin_close("s")
    raw_file("snaplen96.pcap", pcap_bytes(records(big.pkts), snaplen=96))
    scapy_file("refused.pcap", sc_refused())
    scapy_file("syn_retries.pcap", sc_syn_retries())
    scapy_file("rst_injected.pcap", sc_rst_injected())
    scapy_file("vxlan.pcap", sc_basic(), vxlan)
    scapy_file("gre.pcap", sc_basic(), gre)
    scapy_file("mpls.pcap", sc_basic(), mpls)
    scapy_file("pppoe.pcap", sc_basic(), pppoe)

    # -- hostile / bad inputs ----------------------------------------------
    raw_file("not_a_capture.pcap",
             b"This is not a capture file.\nIt is plain text that happens to be named .pcap.\n")
    recs = list(records(sc_basic()))
    hdr = pcap_bytes([])
    body = b""
    for i, (ts, data, orig) in enumerate(recs[:5]):
        sec, frac = divmod(ts, 10**9)
        if i == 2:   # 3rd record header claims caplen 0x7fffffff
            body += struct.pack("<IIII", sec, frac // 1000, 0x7FFFFFFF, 0x7FFFFFFF) + data
        else:
            body += struct.pack("<IIII", sec, frac // 1000, len(data), orig) + data
    raw_file("corrupt_record.pcap", hdr + body)
    raw_file("empty.pcap", pcap_bytes([]))
    raw_file("zero_bytes.pcap", b"")
    return made


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "crafted"))
    a = ap.parse_args(argv)
    for n in build(a.out):
        print(os.path.join(a.out, n), os.path.getsize(os.path.join(a.out, n)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
