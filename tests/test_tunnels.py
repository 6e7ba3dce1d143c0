"""Encapsulations built in the test with scapy: the inner TCP connection is analysed."""

import pytest
from scapy.all import GRE, IP, TCP, UDP, Ether, Raw, wrpcap
from scapy.contrib.erspan import ERSPAN_II
from scapy.contrib.geneve import GENEVE
from scapy.contrib.gtp import GTP_U_Header
from scapy.layers.inet6 import IPv6

import pcapsense

T0 = 1_700_000_000.0


def inner_connection():
    c, s = ("10.0.0.1", 40000, 1000), ("10.0.0.2", 80, 5000)
    pk = []

    def p(src, dst, flags, seq, ack, data=b""):
        x = IP(src=src[0], dst=dst[0]) / TCP(sport=src[1], dport=dst[1], flags=flags, seq=seq, ack=ack)
        return x / Raw(data) if data else x
    pk.append(p(c, s, "S", 1000, 0))
    pk.append(p(s, c, "SA", 5000, 1001))
    pk.append(p(c, s, "A", 1001, 5001))
    pk.append(p(c, s, "PA", 1001, 5001, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    pk.append(p(s, c, "PA", 5001, 1028, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    pk.append(p(c, s, "FA", 1028, 5039))
    pk.append(p(s, c, "FA", 5039, 1029))
    pk.append(p(c, s, "A", 1029, 5040))
    return pk


MAC = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")   # explicit: scapy would ARP for it
OUTER = Ether(**MAC) / IP(src="192.0.2.1", dst="192.0.2.2")
WRAPS = {
    "geneve": lambda inner: OUTER / UDP(sport=5555, dport=6081) / GENEVE(proto=0x6558) / Ether(**MAC) / inner,
    "erspan2": lambda inner: OUTER / GRE(proto=0x88BE, seqnum_present=1, seqence_number=1) / ERSPAN_II() / Ether(**MAC) / inner,
    "gtpu": lambda inner: OUTER / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=7) / inner,
    "ipip": lambda inner: OUTER / inner,
    "6in4": lambda inner: OUTER / IPv6(src="fd00::" + inner[IP].src[-1], dst="fd00::" + inner[IP].dst[-1]) / inner[TCP],
    "gre_eth": lambda inner: OUTER / GRE(proto=0x6558) / Ether(**MAC) / inner,
}


@pytest.mark.parametrize("kind", sorted(WRAPS))
def test_inner_tcp_through(kind, tmp_path):
    pkts = []
    for i, inner in enumerate(inner_connection()):
        x = WRAPS[kind](inner)
        x.time = T0 + i * 0.001
        pkts.append(x)
    path = tmp_path / f"{kind}.pcap"
    wrpcap(str(path), pkts)
    df = pcapsense.analyze(path).connections
    assert len(df) == 1, kind
    r = df.iloc[0]
    assert r.tunnelled and r.server_port == 80 and r.client_port == 40000
    assert (r.closer, r.close_kind, r.conn_state, r.cause) == ("client", "FIN", "SF", "graceful")
    assert r.http_requests == 1 and r.http_statuses == "200"
