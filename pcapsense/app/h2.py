"""Stage 4d: HTTP/2. Cleartext h2c (prior knowledge or upgrade): frames, GOAWAY and
RST_STREAM (`parse_direction`). Over TLS with its keys (`H2Connection`, fed record by
record by tls_session.Session): every frame, the header blocks decoded with hpack
(python-hyper, maintained; HPACK's dynamic table needs every block of a direction, in
order), so each stream's request (:method, :path, :authority) and response (:status)
are known, as HTTP/1's are. Frame headers are decoded by hyperframe (python-hyper)."""

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


@dataclass
class H2Stream:
    """One HTTP/2 stream: its request and its final response."""

    sid: int
    method: str | None = None
    path: str | None = None
    authority: str | None = None
    user_agent: str | None = None
    request_length: int | None = None
    request_frame: int | None = None
    request_ts: int | None = None
    request_end: bool = False
    status: int | None = None
    server: str | None = None
    retry_after: str | None = None
    response_length: int | None = None
    response_frame: int | None = None
    response_ts: int | None = None
    response_end: bool = False
    reset: str | None = None


class H2Connection:
    """HTTP/2 of one connection, streaming (sans-IO): each direction's plaintext in
    order (`feed`), or word that some of it is missing (`lost`: the direction is not
    parsed further, HPACK's state being unknown). `client_dir`: the direction of the
    client (the engine's 0 or 1)."""

    def __init__(self, client_dir: int):
        self.client_dir = client_dir
        self.buf = [b"", b""]
        self.skip = [0, 0]              # DATA payload bytes still to pass over
        self.preface = [True, False]    # (the client's preface is skipped)
        self.dead = [False, False]
        self.block: list = [None, None]  # a header block waiting for CONTINUATION
        from hpack import Decoder
        self.decoders = [Decoder(), Decoder()]
        self.streams: dict[int, H2Stream] = {}
        self.goaway: list[tuple] = []   # (frame, ts, error, last_stream, by)
        self.rst: list[tuple] = []      # (frame, ts, error, stream, by)
        self.frames = 0
        self.gaps = 0
        self.bad_headers = 0

    def _who(self, d: int) -> str:
        return "client" if d == self.client_dir else "server"

    def lost(self, d: int) -> None:
        if not self.dead[d]:
            self.dead[d] = True
            self.gaps += 1

    def feed(self, d: int, data: bytes, frame: int, ts: int) -> None:
        if self.dead[d] or not data:
            return
        client = d == self.client_dir
        if self.skip[d]:
            k = min(self.skip[d], len(data))
            self.skip[d] -= k
            data = data[k:]
        buf = self.buf[d] + data if self.buf[d] else bytes(data)
        pos = 0
        if client and self.preface[0]:
            if len(buf) < len(PREFACE):
                self.buf[d] = buf
                return
            if buf.startswith(PREFACE):
                pos = len(PREFACE)
            self.preface[0] = False
        while pos + 9 <= len(buf):
            flen = int.from_bytes(buf[pos:pos + 3], "big")
            ftype, flags = buf[pos + 3], buf[pos + 4]
            sid = int.from_bytes(buf[pos + 5:pos + 9], "big") & 0x7FFFFFFF
            if ftype == 0x0:                                   # DATA: only END_STREAM matters
                self.frames += 1
                if flags & 0x1:
                    self._end(sid, client)
                have = len(buf) - pos - 9
                if have < flen:
                    self.skip[d] = flen - have
                    pos = len(buf)
                    break
                pos += 9 + flen
                continue
            if pos + 9 + flen > len(buf):
                break
            payload = buf[pos + 9:pos + 9 + flen]
            pos += 9 + flen
            self.frames += 1
            try:
                self._frame(d, client, ftype, flags, sid, payload, frame, ts)
            except Exception:  # noqa: BLE001 - hostile bytes end the parsing of the direction
                self.lost(d)
                return
            if self.dead[d]:
                return
        self.buf[d] = buf[pos:]

    def _frame(self, d, client, ftype, flags, sid, payload, frame, ts) -> None:
        if ftype in (0x1, 0x5, 0x9):                           # HEADERS, PUSH_PROMISE, CONTINUATION
            if ftype == 0x9:
                pending = self.block[d]
                if pending is None:
                    return
                pending[2] += payload
            else:
                p = 0
                pad = 0
                if flags & 0x8:
                    pad, p = payload[0], 1
                if ftype == 0x1 and flags & 0x20:
                    p += 5
                if ftype == 0x5:
                    p += 4
                pending = [sid, ftype, payload[p:len(payload) - pad], frame, ts, bool(flags & 0x1)]
                self.block[d] = pending
            if flags & 0x4:                                    # END_HEADERS
                self.block[d] = None
                self._headers(d, client, *pending)
        elif ftype == 0x3 and len(payload) >= 4:               # RST_STREAM
            err = _error(struct.unpack_from("!I", payload)[0])
            self.rst.append((frame, ts, err, sid, self._who(d)))
            st = self.streams.get(sid)
            if st is not None and st.reset is None:
                st.reset = err
        elif ftype == 0x4 and not flags & 0x1:                 # SETTINGS (not an ACK)
            for i in range(0, len(payload) - 5, 6):
                ident, value = struct.unpack_from("!HI", payload, i)
                if ident == 0x1:                               # HEADER_TABLE_SIZE: the peer's encoder may use this much
                    self.decoders[1 - d].max_allowed_table_size = value
        elif ftype == 0x7 and len(payload) >= 8:               # GOAWAY
            last, code = struct.unpack_from("!II", payload)
            self.goaway.append((frame, ts, _error(code), last & 0x7FFFFFFF, self._who(d)))

    def _headers(self, d, client, sid, ftype, block, frame, ts, end_stream) -> None:
        try:
            fields = self.decoders[d].decode(bytes(block), raw=True)
        except Exception:  # noqa: BLE001 - HPACK state unknown from here on
            self.bad_headers += 1
            self.lost(d)
            return
        if ftype == 0x5:                                       # (a pushed request: its state kept, not counted)
            return
        h = {}
        for name, value in fields:
            h.setdefault(name.decode("latin-1").lower(), value.decode("latin-1", "replace"))
        st = self.streams.get(sid)
        if client:
            if st is None:
                st = self.streams[sid] = H2Stream(sid)
            if st.method is None and ":method" in h:
                st.method, st.path, st.authority = h.get(":method"), h.get(":path"), h.get(":authority")
                st.user_agent = h.get("user-agent")
                st.request_length = _int(h.get("content-length"))
                st.request_frame, st.request_ts = frame, ts
            if end_stream:
                st.request_end = True
            return
        if st is None:
            st = self.streams[sid] = H2Stream(sid)
        status = _int(h.get(":status"))
        if status is not None and status >= 200 and st.status is None:
            st.status, st.server, st.retry_after = status, h.get("server"), h.get("retry-after")
            st.response_length = _int(h.get("content-length"))
            st.response_frame, st.response_ts = frame, ts
        if end_stream:
            st.response_end = True

    def _end(self, sid: int, client: bool) -> None:
        st = self.streams.get(sid)
        if st is None:
            return
        if client:
            st.request_end = True
        else:
            st.response_end = True

    def requests(self) -> list[H2Stream]:
        return [s for _, s in sorted(self.streams.items()) if s.method is not None]

    def facts(self, row: dict, stream: int) -> list[tuple]:
        """The h2_* columns and the HTTP columns (HTTP/2 streams counted as HTTP
        requests: docs/schema.md) into `row`; returns the exchange rows of the streams
        (app.facts.EXCHANGE_COLUMNS order)."""
        goaway, rst = sorted(self.goaway), sorted(self.rst)
        row["h2_frames"] = self.frames
        row["h2_goaway_frame"] = goaway[0][0] if goaway else None
        row["h2_goaway_by"] = goaway[0][4] if goaway else None
        row["h2_goaway_error"] = goaway[0][2] if goaway else None
        row["h2_goaway_last_stream"] = goaway[0][3] if goaway else None
        row["h2_rst_stream_frame"] = rst[0][0] if rst else None
        row["h2_rst_stream_error"] = rst[0][2] if rst else None
        row["h2_rst_streams"] = len(rst)
        reqs = self.requests()
        finals = [s for s in reqs if s.status is not None]
        row["http_requests"] = len(reqs)
        row["http_responses"] = len(finals)
        row["http_statuses"] = ",".join(str(s.status) for s in finals) or None
        row["http_unanswered"] = len(reqs) - len(finals)
        row["http_100_continue"] = False
        if reqs:
            last = max(reqs, key=lambda s: (s.request_ts or 0, s.sid))
            row["http_last_method"], row["http_last_target"] = last.method, last.path
            row["http_last_request_frame"], row["http_last_request_ts"] = last.request_frame, last.request_ts
            row["http_last_request_complete"] = last.request_end
            row["http_last_request_body_declared"] = last.request_length
            row["http_last_request_answered"] = last.status is not None
            row["http_client_keep_alive"] = True
            row["http_absolute_form"] = False
            row["http_host"], row["http_user_agent"] = last.authority, last.user_agent
            if len(reqs) >= 2:
                row["http_prev_request_ts"] = sorted(s.request_ts or 0 for s in reqs)[-2]
        if finals:
            lr = max(finals, key=lambda s: (s.response_ts or 0, s.sid))
            row["http_last_status"], row["http_last_response_frame"] = lr.status, lr.response_frame
            row["http_last_response_ts"] = lr.response_ts
            row["http_last_response_complete"] = lr.response_end
            row["http_server_keep_alive"] = not goaway
            row["http_retry_after"], row["http_server"] = lr.retry_after, lr.server
        row["http_malformed"] = self.bad_headers > 0
        return [(stream, i + 1, s.method, s.path, s.authority, s.request_frame, s.request_ts, s.request_end,
                 s.request_length, s.status, None, s.response_frame, s.response_ts,
                 None if s.status is None else s.response_end, s.response_length, True,
                 None if s.status is None else not goaway)
                for i, s in enumerate(reqs)]


def _int(v) -> int | None:
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None
