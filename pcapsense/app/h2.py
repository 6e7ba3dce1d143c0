"""Stage 4d: cleartext HTTP/2 (h2c prior knowledge or upgrade): frames, GOAWAY and
RST_STREAM. Frame headers are decoded by hyperframe (python-hyper, maintained); HPACK is
not needed for the disconnect question."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .segments import Piece

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ERRORS = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
          "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
          "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"]


@dataclass
class H2Side:
    frames: int = 0
    goaway: list[tuple[int, int, str, int]] = field(default_factory=list)   # (frame, ts, error, last_stream)
    rst_streams: list[tuple[int, int, str, int]] = field(default_factory=list)  # (frame, ts, error, stream)
    headers_frames: int = 0


def _error(code: int) -> str:
    return ERRORS[code] if code < len(ERRORS) else f"0x{code:x}"


def parse_direction(pieces: list[Piece], skip_preface: bool) -> H2Side:
    from hyperframe.frame import Frame

    side = H2Side()
    buf, start, marks = b"", 0, []
    for p in pieces:
        if p.tail or p.offset != start + len(buf):
            break
        buf += p.data
        marks.append((start + len(buf), p.frame, p.ts_ns))
    pos = len(PREFACE) if skip_preface and buf.startswith(PREFACE) else 0

    def at(off):
        for end, fr, ts in marks:
            if off < end:
                return fr, ts
        return (marks[-1][1], marks[-1][2]) if marks else (0, 0)

    def handle(ftype, flen, sid, payload, fr, ts):
        side.frames += 1
        if ftype == 0x7 and len(payload) >= 8:
            last, code = struct.unpack_from("!II", payload)
            side.goaway.append((fr, ts, _error(code), last & 0x7FFFFFFF))
        elif ftype == 0x3 and len(payload) >= 4:
            side.rst_streams.append((fr, ts, _error(struct.unpack_from("!I", payload)[0]), sid))
        elif ftype == 0x1:
            side.headers_frames += 1

    while pos + 9 <= len(buf):
        frame, flen = Frame.parse_frame_header(memoryview(buf[pos:pos + 9]))
        fr, ts = at(pos)
        handle(buf[pos + 3], flen, frame.stream_id, buf[pos + 9: pos + 9 + flen], fr, ts)
        pos += 9 + flen
    # a GOAWAY in the last bytes of the direction (after any gap)
    for p in pieces:
        if p.tail and len(p.data) >= 17:
            d = p.data
            for i in range(len(d) - 17, -1, -1):
                if d[i + 3] == 0x7 and d[i:i + 3] in (b"\x00\x00\x08", b"\x00\x00\x0c") and d[i + 5:i + 9] == b"\x00\x00\x00\x00":
                    flen = int.from_bytes(d[i:i + 3], "big")
                    if not any(g[0] == p.frame for g in side.goaway):
                        handle(0x7, flen, 0, d[i + 9:i + 9 + flen], p.frame, p.ts_ns)
                    break
    return side
