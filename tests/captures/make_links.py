#!/usr/bin/env python3
"""(Re)write tests/captures/crafted/links/: one capture per link layer or encapsulation
that tshark follows to TCP (issue "Readers"), each holding the same small HTTP exchange
(handshake, GET, response, FIN both ways) wrapped in that layer. The IP packets are
built by scapy; the link-layer bytes are written here, byte by byte, so each file holds
exactly the header the link type defines. tests/test_tshark_crosscheck.py compares every
file with tshark (streams, first frames, first FIN/RST frames); tests/test_links.py says
what each must decode to.

    python3 tests/captures/make_links.py          # deterministic: byte-identical files
"""

from __future__ import annotations

import os
import struct

from scapy.config import conf
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from make_crafted import pcap_bytes, write_bytes

conf.verb = 0
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crafted", "links")
# files tshark 4.0 refuses (link types it does not know, reserved bits): out of the
# tshark cross-check, tested by tests/test_links.py alone
BEYOND = os.path.join(os.path.dirname(os.path.abspath(__file__)), "links_beyond_tshark")
T0 = 1_700_000_000
CLI, SRV = "10.1.0.1", "10.1.0.2"
MAC_C, MAC_S = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"
GET = b"GET /links HTTP/1.1\r\nHost: links.example\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def conversation(v6: bool = False, cport: int = 41000) -> list[tuple[bool, bytes]]:
    """(from the client?, IP packet bytes) of one HTTP exchange, deterministic."""
    c, s = ("fd00::1", "fd00::2") if v6 else (CLI, SRV)
    cs, ss = 1000, 5000
    out = []

    def pkt(client, flags, seq, ack, data=b""):
        ipl = IPv6(src=c if client else s, dst=s if client else c) if v6 else \
            IP(src=c if client else s, dst=s if client else c, id=len(out) + 1, ttl=64)
        t = TCP(sport=cport if client else 80, dport=80 if client else cport, flags=flags, seq=seq, ack=ack,
                window=65000)
        out.append((client, bytes(ipl / t / data) if data else bytes(ipl / t)))
    pkt(True, "S", cs, 0)
    pkt(False, "SA", ss, cs + 1)
    pkt(True, "A", cs + 1, ss + 1)
    pkt(True, "PA", cs + 1, ss + 1, GET)
    pkt(False, "PA", ss + 1, cs + 1 + len(GET), OK)
    pkt(True, "FA", cs + 1 + len(GET), ss + 1 + len(OK))
    pkt(False, "FA", ss + 1 + len(OK), cs + 2 + len(GET))
    pkt(True, "A", cs + 2 + len(GET), ss + 2 + len(OK))
    return out


def ether(client: bool, etype: int) -> bytes:
    return (MAC_S + MAC_C if client else MAC_C + MAC_S) + struct.pack("!H", etype)


TSHARK_REFUSES = {"ppp_pppd.pcap", "chdlc_with_dir.pcap", "linktype_reserved_bits.pcap"}


def write(name: str, linktype_field: int, frames: list[bytes], version=(2, 4)) -> None:
    # ten frames a second, 1 ms apart
    recs = [((T0 + i // 10) * 10**9 + ((i % 10) * 1000 + 1) * 1000, f, len(f)) for i, f in enumerate(frames)]
    write_bytes(os.path.join(BEYOND if name in TSHARK_REFUSES else OUT, name),
                pcap_bytes(recs, linktype_field, snaplen=65535, version=version))


def wrap(fn, v6=False) -> list[bytes]:
    return [fn(c, p) for c, p in conversation(v6)]


def l80211(client: bool, ip: bytes, qos: bool = False) -> bytes:
    fc = bytes([0x88 if qos else 0x08, 0x01 if client else 0x02])        # data (QoS data), To/From DS
    addrs = MAC_S + MAC_C + MAC_S if client else MAC_C + MAC_S + MAC_S
    hdr = fc + b"\x00\x00" + addrs + b"\x10\x00" + (b"\x00\x00" if qos else b"")
    return hdr + b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + ip


CASES = {
    # link types
    "ppp.pcap": (9, lambda c, ip: b"\xff\x03\x00\x21" + ip),
    "ppp_pfc.pcap": (9, lambda c, ip: b"\x21" + ip),                          # no address, 1-byte protocol
    "ppp_mpls.pcap": (9, lambda c, ip: b"\xff\x03\x02\x81" + b"\x00\x01\x01\x40" + ip),
    "ppp_hdlc.pcap": (50, lambda c, ip: b"\xff\x03\x00\x21" + ip),
    "ppp_pppd.pcap": (166, lambda c, ip: (b"\x01" if c else b"\x00") + b"\x03\x00\x21" + ip),
    "ppp_with_dir.pcap": (204, lambda c, ip: (b"\x01" if c else b"\x00") + b"\xff\x03\x00\x21" + ip),
    "chdlc.pcap": (104, lambda c, ip: b"\x0f\x00\x08\x00" + ip),
    "chdlc_with_dir.pcap": (205, lambda c, ip: (b"\x01" if c else b"\x00") + b"\x0f\x00\x08\x00" + ip),
    # ARCNET: BSD (RFC 1201 type 212, split flag 0, sequence), Linux (offset, then the same)
    "arcnet_bsd.pcap": (7, lambda c, ip: (b"\x01\x02" if c else b"\x02\x01") + b"\xd4\x00\x00\x01" + ip),
    "arcnet_linux.pcap": (129, lambda c, ip: (b"\x01\x02" if c else b"\x02\x01") + b"\x00\x00" + b"\xd4\x00\x00\x01"
                          + ip),
    "arcnet_linux_rfc1051.pcap": (129, lambda c, ip: (b"\x01\x02" if c else b"\x02\x01") + b"\x00\x00\xf0" + ip),
    # Juniper Ethernet: "MGC", flags (extensions present), their length, one TLV; then Ethernet
    "juniper_ether.pcap": (178, lambda c, ip: b"MGC" + (b"\x81" if c else b"\x80") + b"\x00\x03" + b"\x01\x01\x05"
                           + ether(c, 0x0800) + ip),
    "ipoib.pcap": (242, lambda c, ip: b"\x00" * 40 + b"\x08\x00\x00\x00" + ip),   # pseudo-header, then RFC 4391
    "ieee80211.pcap": (105, lambda c, ip: l80211(c, ip)),
    "ieee80211_qos.pcap": (105, lambda c, ip: l80211(c, ip, qos=True)),
    "radiotap.pcap": (127, lambda c, ip: b"\x00\x00\x08\x00\x00\x00\x00\x00" + l80211(c, ip)),
    "ppi_80211.pcap": (192, lambda c, ip: b"\x00\x00\x08\x00" + struct.pack("<I", 105) + l80211(c, ip)),
    # Ethernet whose frames end with a 4-byte FCS, said in the link-type field's FCS bits
    "ether_fcs.pcap": (0x04000001 | (2 << 28), lambda c, ip: ether(c, 0x0800) + ip + b"\xde\xad\xbe\xef"),
    # encapsulations
    "etag.pcap": (1, lambda c, ip: ether(c, 0x893F) + b"\x00\x00\x10\x01\x00\x00" + b"\x08\x00" + ip),
    "pppoe_pfc.pcap": (1, lambda c, ip: ether(c, 0x8864) + b"\x11\x00\x00\x01" + struct.pack("!H", len(ip) + 1)
                       + b"\x21" + ip),
}


def gre_wccp(c: bool, ip: bytes) -> bytes:
    inner = b"\x00\x00\x00\x00" + ip                                 # WCCP redirect header (v2), then IP
    gre = b"\x00\x00\x88\x3e" + inner
    outer = bytes(IP(src="192.0.2.1" if c else "192.0.2.2", dst="192.0.2.2" if c else "192.0.2.1", proto=47,
                     id=7, ttl=64) / gre)
    return ether(c, 0x0800) + outer


def ah_ipip(c: bool, ip: bytes) -> bytes:
    ah = bytes([4, 4]) + b"\x00\x00" + b"\x00\x00\x10\x00" + b"\x00\x00\x00\x01" + b"\x00" * 12   # 24 bytes
    outer = bytes(IP(src="192.0.2.1" if c else "192.0.2.2", dst="192.0.2.2" if c else "192.0.2.1", proto=51,
                     id=9, ttl=64) / (ah + ip))
    return ether(c, 0x0800) + outer


def l2tp(c: bool, ip: bytes) -> bytes:
    from scapy.layers.inet import UDP
    l2 = b"\x00\x02" + b"\x00\x01\x00\x02" + b"\xff\x03\x00\x21" + ip      # data, tunnel 1, session 2, PPP
    outer = bytes(IP(src="192.0.2.1" if c else "192.0.2.2", dst="192.0.2.2" if c else "192.0.2.1", id=11,
                     ttl=64) / UDP(sport=1701, dport=1701) / l2)
    return ether(c, 0x0800) + outer


CASES.update({"gre_wccp.pcap": (1, gre_wccp), "ah_ipip.pcap": (1, ah_ipip), "l2tp.pcap": (1, l2tp)})


def frag4(ip: bytes, size: int, order=None, overlap: bool = False, drop: int | None = None) -> list[bytes]:
    """An IPv4 packet cut into fragments of `size` payload bytes (a multiple of 8), in
    `order` (indices; default as cut); `overlap`: the second fragment sent again over the
    first's last 8 bytes with other data (the first bytes must win); `drop`: leave one out."""
    pkt = IP(ip)
    from scapy.layers.inet import fragment
    frs = [bytes(f) for f in fragment(pkt, fragsize=size)]
    if overlap and len(frs) > 1:
        f1 = IP(frs[1])
        bad = IP(bytes(f1))
        bad.frag = f1.frag - 1
        raw = bytes(bad.payload)
        bad.remove_payload()
        bad.add_payload(b"\xee" * 8 + raw)
        bad.len = None
        bad.chksum = None
        frs.insert(1, bytes(bad))
    if drop is not None:
        frs.pop(drop)
    return frs[::-1] if order == "reverse" else frs


def frag6(ip: bytes, size: int, order=None) -> list[bytes]:
    """An IPv6 packet cut into fragments (a fragment header, id 0x1234) of `size` bytes."""
    from scapy.layers.inet6 import IPv6ExtHdrFragment
    pkt = IPv6(ip)
    payload = bytes(pkt.payload)
    out = []
    for off in range(0, len(payload), size):
        part = payload[off:off + size]
        h = IPv6(src=pkt.src, dst=pkt.dst, hlim=64) / IPv6ExtHdrFragment(
            nh=pkt.nh, offset=off // 8, m=1 if off + size < len(payload) else 0, id=0x1234) / part
        out.append(bytes(h))
    return out[::-1] if order == "reverse" else out


def fragmented(link, which: dict, v6: bool = False, wrap_link=None) -> list[bytes]:
    """The conversation with packet i replaced by which[i](ip) -> fragments."""
    frames = []
    for i, (c, ip) in enumerate(conversation(v6)):
        for part in (which[i](ip) if i in which else [ip]):
            frames.append(link(c, part))
    return frames


def fragments() -> None:
    """IP fragments, reassembled as tshark does (the TCP packet at the frame that completes
    its datagram): a SYN whose TCP header is split, a request cut in three and sent last
    first, a response whose fragments overlap, over Ethernet, VLAN and PPP; IPv6; and a
    datagram that never completes (its TCP packet is not there, for tshark either)."""
    eth = lambda c, ip: ether(c, 0x0800) + ip
    eth6 = lambda c, ip: ether(c, 0x86DD) + ip
    vlan = lambda c, ip: ether(c, 0x8100) + b"\x00\x64\x08\x00" + ip
    ppp = lambda c, ip: b"\xff\x03\x00\x21" + ip
    syn_split = lambda ip: frag4(ip, 8)                                  # 20-byte TCP header in 3 pieces
    req = lambda ip: frag4(ip, 16, order="reverse")
    resp = lambda ip: frag4(ip, 24, overlap=True)
    write("frag_ipv4.pcap", 1, fragmented(eth, {0: syn_split, 3: req, 4: resp}))
    write("frag_vlan.pcap", 1, fragmented(vlan, {0: syn_split, 3: req}))
    write("frag_ppp.pcap", 9, fragmented(ppp, {0: syn_split, 4: resp}))
    write("frag_ipv6.pcap", 1, fragmented(eth6, {0: lambda ip: frag6(ip, 8), 3: lambda ip: frag6(ip, 16, "reverse")},
                                          v6=True))
    write("frag_missing.pcap", 1, fragmented(eth, {3: lambda ip: frag4(ip, 16, drop=1)}))
    # the request's first fragment cut short (its last 4 bytes not captured): as tshark, no
    # reassembly for it; its TCP header is read as it is, the other fragments wait in vain
    write("frag_first_cut.pcap", 1, fragmented(eth, {3: lambda ip: [f[:-4] if k == 0 else f
                                                                   for k, f in enumerate(frag4(ip, 32))]}))


def source_route() -> None:
    """IPv4 loose and strict source routes not yet completed: the connection is keyed by
    the route's last address (the datagram's destination; tshark's ip.dst), not by the
    header's next hop; the TCP checksums are computed over that final destination."""
    from scapy.layers.inet import IPOption_LSRR, IPOption_SSRR
    frames = []
    for cport, opt in ((41001, IPOption_LSRR), (41002, IPOption_SSRR)):
        for c, ip in conversation(cport=cport):
            pkt = IP(ip)
            final = "10.9.9.9"
            if c:
                routed = IP(src=pkt.src, dst="10.5.5.5", id=pkt.id, ttl=64,
                            options=[opt(routers=["10.5.5.5", final], pointer=4)]) / pkt[TCP]
            else:
                routed = IP(src=final, dst=pkt.dst, id=pkt.id, ttl=64) / pkt[TCP]
            routed[TCP].chksum = None
            raw = IP(bytes(routed))
            # the client's checksum over the final destination, as the sender computes it
            if c:
                t = raw[TCP].copy()
                t.chksum = None
                pseudo_src = IP(src=pkt.src, dst=final) / t
                raw[TCP].chksum = IP(bytes(pseudo_src))[TCP].chksum
            frames.append(ether(c, 0x0800) + bytes(raw))
    write("ip_source_route.pcap", 1, frames)


def odd_headers() -> None:
    """Files libpcap refuses or flags, read anyway (tests/test_links.py: the warnings)."""
    frames = wrap(lambda c, ip: ether(c, 0x0800) + ip)
    write("pcap_version_2_3.pcap", 1, frames, version=(2, 3))
    write("linktype_reserved_bits.pcap", 0x00010001, frames)


def esp() -> None:
    """ESP: encrypted, its TCP unreadable: counted and said (tshark sees no TCP either);
    then one clear connection (a capture without any TCP writes a Parquet schema of its
    own: see the issue note)."""
    frames = []
    for c, _ip in conversation():
        outer = bytes(IP(src=CLI if c else SRV, dst=SRV if c else CLI, proto=50, id=3, ttl=64) /
                      (b"\x00\x00\x10\x00" + b"\x00\x00\x00\x01" + b"\x5a" * 48))
        frames.append(ether(c, 0x0800) + outer)
    frames += [ether(c, 0x0800) + ip for c, ip in conversation(cport=41003)]
    write("esp.pcap", 1, frames)


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(BEYOND, exist_ok=True)
    for name, (lt, fn) in CASES.items():
        write(name, lt, wrap(fn))
    odd_headers()
    esp()
    fragments()
    source_route()
    print(f"wrote {len(CASES) + 9} captures to {OUT}")


if __name__ == "__main__":
    main()
