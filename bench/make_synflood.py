#!/usr/bin/env python3
"""Write a SYN flood capture: N connections, one SYN each from N distinct sources
(spoofed 10.0.0.0/8 and 100.64.0.0/10 addresses, random ports and sequence numbers) to
one server, nothing answered (Zeek S0), over --seconds of capture time. Classic pcap,
Ethernet, 70 bytes a packet (16-byte record header + 54-byte frame), valid IP and TCP
checksums. This is the "1M-connection SYN flood" of bench/README: a capture whose cost
is all per connection.

    bench/make_synflood.py /tmp/pcapsense-bench/synflood-1m.pcap               # 1M
    bench/make_synflood.py /tmp/pcapsense-bench/synflood-10m.pcap -n 10000000  # 700 MB

Written with numpy, a million packets per chunk (a few seconds for 10M); the same seed
gives the same bytes. `--sweep`: the other connection-heavy case, an address scan (one
scanner, 198.51.100.7, sends one SYN to port 443 of each of N hosts, the same
10.0.0.0/8 and 100.64.0.0/10 addresses): N connections to N servers.

    bench/make_synflood.py /tmp/pcapsense-bench/sweep-1m.pcap --sweep

Hand-written because it is a fixed-layout array job: scapy takes
about 50 µs per packet to build and write one (most of an hour for 10M).
"""

from __future__ import annotations

import argparse
import struct
import sys

import numpy as np

CHUNK = 1_000_000
SERVER_IP = bytes([192, 0, 2, 80])          # TEST-NET-1
SERVER_PORT = 443


def _csum_fold(total: np.ndarray) -> np.ndarray:
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def _sum16(buf: np.ndarray) -> np.ndarray:
    """One's-complement sum (unfolded) of each row of a uint8 array of even width."""
    words = buf[:, 0::2].astype(np.uint32) << 8 | buf[:, 1::2].astype(np.uint32)
    return words.sum(axis=1, dtype=np.uint64)


SCANNER_IP = bytes([198, 51, 100, 7])       # TEST-NET-2


def chunk(rng: np.random.Generator, first: int, n: int, total: int, seconds: float, t0: int,
          sweep: bool = False) -> bytes:
    rec = np.zeros((n, 70), dtype=np.uint8)
    k = np.arange(first, first + n, dtype=np.int64)
    ts_us = t0 * 1_000_000 + (k * int(seconds * 1_000_000)) // max(total, 1)
    hdr = np.empty((n, 4), dtype="<u4")
    hdr[:, 0] = ts_us // 1_000_000
    hdr[:, 1] = ts_us % 1_000_000
    hdr[:, 2] = 54
    hdr[:, 3] = 54
    rec[:, :16] = hdr.view(np.uint8).reshape(n, 16)
    f = rec[:, 16:]
    f[:, 0:6] = [0x02, 0, 0, 0, 0, 0x01]             # dst MAC
    f[:, 6:12] = [0x02, 0, 0, 0, 0, 0x02]            # src MAC (the router)
    f[:, 12:14] = [0x08, 0x00]
    ip = f[:, 14:34]
    ip[:, 0] = 0x45
    ip[:, 3] = 40                                    # total length
    ident = rng.integers(0, 65536, n, dtype=np.uint32)
    ip[:, 4], ip[:, 5] = ident >> 8, ident & 0xFF
    ip[:, 6] = 0x40                                  # DF
    ip[:, 8] = rng.integers(32, 128, n, dtype=np.uint8)   # TTL
    ip[:, 9] = 6
    # distinct sources: k-th source from a permutation-free mapping (k -> address)
    src = np.where(k < (1 << 24), (10 << 24) + k, (100 << 24) + (64 << 16) + (k - (1 << 24)))
    src = src.astype(np.uint32)
    at, fixed = (16, SCANNER_IP) if sweep else (12, SERVER_IP)     # (a sweep: these are the targets)
    for b in range(4):
        ip[:, at + b] = (src >> (24 - 8 * b)) & 0xFF
    ip[:, 28 - at:32 - at] = list(fixed)
    s = _csum_fold(_sum16(ip))
    ip[:, 10], ip[:, 11] = s >> 8, s & 0xFF
    tcp = f[:, 34:54]
    sport = rng.integers(1024, 65536, n, dtype=np.uint32)
    tcp[:, 0], tcp[:, 1] = sport >> 8, sport & 0xFF
    tcp[:, 2], tcp[:, 3] = SERVER_PORT >> 8, SERVER_PORT & 0xFF
    seq = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    for b in range(4):
        tcp[:, 4 + b] = (seq >> (24 - 8 * b)) & 0xFF
    tcp[:, 12] = 0x50                                # data offset 5
    tcp[:, 13] = 0x02                                # SYN
    tcp[:, 14], tcp[:, 15] = 0x72, 0x10              # window 29200
    pseudo = np.zeros((n, 12), dtype=np.uint8)
    pseudo[:, 0:8] = ip[:, 12:20]
    pseudo[:, 9] = 6
    pseudo[:, 11] = 20
    s = _csum_fold(_sum16(pseudo) + _sum16(tcp))
    tcp[:, 16], tcp[:, 17] = s >> 8, s & 0xFF
    return rec.tobytes()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("-n", "--connections", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=60.0, help="capture time the SYNs spread over")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sweep", action="store_true", help="one scanner, one SYN to each of N hosts (not N sources to one)")
    a = ap.parse_args()
    if a.connections > (1 << 24) + (1 << 22):
        ap.error("at most 20,971,520 connections (the two source ranges)")
    rng = np.random.default_rng(a.seed)
    t0 = 1_795_000_000
    with open(a.out, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for first in range(0, a.connections, CHUNK):
            fh.write(chunk(rng, first, min(CHUNK, a.connections - first), a.connections, a.seconds, t0, a.sweep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
