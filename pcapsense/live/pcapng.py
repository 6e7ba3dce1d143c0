"""A pcap file rewritten as pcapng with the TLS key log inside (a Decryption Secrets
Block), the one file `pcapsense record` leaves: Wireshark, tshark and pcapsense decrypt
it with no key log beside it (what `editcap --inject-secrets tls,KEYS` writes).

Written by hand, in a streaming copy (constant memory, about 1 µs a packet): no Python
library writes a Decryption Secrets Block (scapy's pcapng writer has none), and editcap,
which does, is part of Wireshark, not of tcpdump: a machine with tcpdump alone still gets
the same file. The block layouts are those of the pcapng specification (draft-ietf-opsawg-
pcapng): Section Header, Interface Description (link type, snap length, `if_tsresol` 9
for a nanosecond pcap), Decryption Secrets (type 0x544c534b "TLSK"), Enhanced Packet.
"""

from __future__ import annotations

import struct

PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", False), b"\xa1\xb2\xc3\xd4": (">", False),
              b"\x4d\x3c\xb2\xa1": ("<", True), b"\xa1\xb2\x3c\x4d": (">", True)}
TLS_KEY_LOG = 0x544C534B
_CHUNK = 1 << 20


class PcapError(Exception):
    pass


def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def _block(btype: int, body: bytes) -> bytes:
    body = _pad4(body)
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def shb() -> bytes:
    opt = _pad4(b"pcapsense record")
    body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + struct.pack("<HH", 4, 16) + opt + b"\0\0\0\0"
    return _block(0x0A0D0D0A, body)


def idb(linktype: int, snaplen: int, nano: bool) -> bytes:
    body = struct.pack("<HHI", linktype, 0, snaplen)
    if nano:
        body += struct.pack("<HHB", 9, 1, 9) + b"\0\0\0" + b"\0\0\0\0"
    return _block(0x00000001, body)


def dsb(keylog: bytes) -> bytes:
    return _block(0x0000000A, struct.pack("<II", TLS_KEY_LOG, len(keylog)) + keylog)


def pcap_to_pcapng(src: str, dst: str, keylog: bytes | None) -> int:
    """Copy the pcap `src` to the pcapng `dst`, the key log (if any) in a Decryption
    Secrets Block before the first packet; returns the packets copied. A record cut at
    the end of `src` (the capture stopped mid-write) is left out, as readers do."""
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        head = fi.read(24)
        if len(head) < 24 or head[:4] not in PCAP_MAGIC:
            raise PcapError(f"{src}: offset 0: not a pcap file")
        end, nano = PCAP_MAGIC[head[:4]]
        snaplen, linktype = struct.unpack(end + "II", head[16:24])
        fo.write(shb())
        fo.write(idb(linktype & 0x0FFFFFFF, snaplen, nano))
        if keylog:
            fo.write(dsb(keylog))
        rec = struct.Struct(end + "IIII")
        buf, pos, n = fi.read(_CHUNK), 0, 0
        out = []
        while True:
            if len(buf) - pos < 16 or len(buf) - pos < 16 + rec.unpack_from(buf, pos)[2]:
                more = fi.read(_CHUNK)
                if not more:
                    break
                buf, pos = buf[pos:] + more, 0
                continue
            sec, frac, incl, orig = rec.unpack_from(buf, pos)
            ts = sec * (1_000_000_000 if nano else 1_000_000) + frac
            data = buf[pos + 16:pos + 16 + incl]
            blen = 32 + incl + (-incl % 4)
            out.append(struct.pack("<IIIIIII", 6, blen, 0, ts >> 32, ts & 0xFFFFFFFF, incl, orig))
            out.append(data)
            out.append(b"\0" * (-incl % 4) + struct.pack("<I", blen))
            pos += 16 + incl
            n += 1
            if len(out) > 3000:
                fo.write(b"".join(out))
                out.clear()
        fo.write(b"".join(out))
    return n
