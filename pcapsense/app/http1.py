"""Stage 4b: HTTP/1.x framing over sparse byte streams (sans-IO: pieces in, messages out).

Header syntax is parsed by httptools (llhttp, maintained, C). The framing around it is
written here because no maintained parser accepts what a capture gives: streams with
gaps (bodies the engine did not copy, segments the capture lost), cut by a close in the
middle of a message, resynchronised on the next message start. So: a head is collected
from contiguous bytes up to CRLFCRLF and handed to httptools; bodies are skipped by
offset arithmetic (Content-Length), followed chunk by chunk while bytes are contiguous,
and otherwise found again at the next segment that starts an HTTP message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import httptools

from .segments import Piece

try:
    from . import _http1          # the framing, compiled (pcapsense/app/_http1.c)
except ImportError:               # pragma: no cover - a source tree without the build
    _http1 = None

MAX_HEAD = 64 * 1024


@dataclass(slots=True)             # (_http1.c sets and reads the fields at their slots)
class Message:
    kind: str                       # "request" | "response"
    offset: int                     # first byte, from the direction's first payload byte
    frame: int                      # frame of its first byte
    ts_ns: int
    head_end: int | None = None     # offset just past CRLFCRLF (None: head incomplete)
    method: str | None = None
    target: str | None = None
    status: int | None = None
    reason: str | None = None
    version: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_length: int | None = None
    chunked: bool = False
    body_end: int | None = None     # offset just past the body, when the framing says
    complete: bool = False          # whole message (head and body) was sent
    malformed: str | None = None
    raw_head: bytes | None = None   # kept until httptools has parsed it (see parse_direction)
    _hdict: dict | None = field(default=None, repr=False, compare=False)   # header() cache

    def header(self, name: str) -> str | None:
        """Value of a header (lower-case name), repeated ones joined with ', '."""
        d = self._hdict
        if d is None:
            d = {}
            for k, v in self.headers:
                d[k] = f"{d[k]}, {v}" if k in d else v
            self._hdict = d
        return d.get(name)

    @property
    def keep_alive(self) -> bool:
        conn = (self.header("connection") or "").lower()
        if "close" in conn:
            return False
        if self.version == "1.0":
            return "keep-alive" in conn
        return True

    @property
    def expect_continue(self) -> bool:
        return (self.header("expect") or "").lower() == "100-continue"

    @property
    def absolute_form(self) -> bool:
        return bool(self.target) and "://" in self.target[:12]


class _Collect:
    def __init__(self):
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.status = b""

    def on_url(self, url):
        self.url += url

    def on_status(self, status):
        self.status += status

    def on_header(self, name, value):
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    # (one callback per header: httptools' API; _http1.c's Collector is the compiled twin)


def _parse_head(kind: str, head: bytes, msg: Message) -> None:
    """httptools' full parse of a reported head: first line, version, every header, and
    its verdict (`malformed`). The framing fields (Content-Length, chunked, where the
    body ends) stay the framer's: a Content-Length is only checked here."""
    cb = _Collect()
    parser = httptools.HttpRequestParser(cb) if kind == "request" else httptools.HttpResponseParser(cb)
    try:
        parser.feed_data(head)
    except httptools.HttpParserUpgrade:
        pass
    except httptools.HttpParserError as exc:
        msg.malformed = str(exc) or "malformed head"
        first = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
        parts = first.split(" ", 2)
        if kind == "request" and len(parts) >= 2:
            msg.method, msg.target = parts[0], parts[1]
        elif kind == "response" and len(parts) >= 2 and parts[1].isascii() and parts[1].isdigit():
            msg.status = int(parts[1])
        return
    try:
        msg.version = parser.get_http_version()
    except Exception:  # noqa: BLE001 - httptools raises on incomplete heads
        msg.version = None
    msg.headers = cb.headers
    msg._hdict = None
    if kind == "request":
        msg.method = parser.get_method().decode("latin-1")
        msg.target = cb.url.decode("latin-1")
    else:
        msg.status = parser.get_status_code()
        msg.reason = cb.status.decode("latin-1")
    cls = [v for k, v in cb.headers if k == "content-length"]
    if cls:
        cl = ", ".join(cls)                     # (as header() joins repeated ones)
        try:
            int(cl.split(",")[0].strip())
        except ValueError:
            msg.malformed = f"bad Content-Length {cl!r}"


if _http1 is not None:      # the compiled parse_head calls the same httptools, and this
    _http1.set_parse_head(httptools.HttpRequestParser, httptools.HttpResponseParser,
                          httptools.HttpParserUpgrade, _parse_head)     # for rejected heads


def _first_line(kind: str, buf: bytes, msg: Message) -> None:
    """Request line or status line alone (a head whose rest was not captured)."""
    end = buf.find(b"\r\n")
    if end < 0:
        return
    parts = buf[:end].decode("latin-1", "replace").split(" ", 2)
    if kind == "request" and len(parts) == 3:
        msg.method, msg.target, msg.version = parts[0], parts[1], parts[2].removeprefix("HTTP/")
    elif kind == "response" and len(parts) >= 2 and parts[1].isascii() and parts[1].isdigit():
        msg.version, msg.status = parts[0].removeprefix("HTTP/"), int(parts[1])
        msg.reason = parts[2] if len(parts) > 2 else ""


_FRAMING = re.compile(rb"\r\n(content-length|transfer-encoding|connection|host)[ \t]*:[ \t]*([^\r\n]*)",
                      re.IGNORECASE)


def _fast_head(kind: str, head: bytes, msg: Message) -> None:
    """Framing fields only (first line, Content-Length, Transfer-Encoding, Connection,
    Host), one regex pass, for the messages in the middle of a connection; httptools
    parses the ones that get reported."""
    _first_line(kind, head, msg)
    hdrs = []
    for name, value in _FRAMING.findall(head):
        name = name.lower()
        if name == b"content-length":
            try:
                msg.content_length = int(value.split(b",")[0].strip())
            except ValueError:
                msg.malformed = "bad Content-Length"
        elif name == b"transfer-encoding":
            msg.chunked = msg.chunked or b"chunked" in value.lower()
        else:
            hdrs.append((name.decode(), value.strip().decode("latin-1")))
    msg.headers = hdrs


def _starts_message(kind: str, data: bytes) -> bool:
    if kind == "response":
        return data.startswith(b"HTTP/1.")
    head = data[:8]
    return head.startswith((b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ",
                            b"CONNECT ", b"TRACE "))


def parse_direction(kind: str, pieces: list[Piece], total_bytes: int,
                    request_methods: list[str] | None = None) -> list[Message]:
    """All HTTP messages of one direction. `kind`: what this direction sends. For
    responses, `request_methods` (in order) tells which had no body (HEAD, CONNECT 2xx).
    The framing runs compiled (_http1.c) and falls back to `_frame_py`, its reference,
    for the inputs only Python decides exactly; then httptools parses the heads that get
    reported."""
    msgs = None
    if _http1 is not None and type(pieces) is list:
        msgs = _http1.frame(kind, pieces, total_bytes, request_methods, Message)
    if msgs is None:
        msgs = _frame_py(kind, pieces, total_bytes, request_methods)
    # full parse (httptools) of the messages that get reported: the last one, proxy
    # requests and the responses whose status matters to the classifier
    for i, m in enumerate(msgs):
        if m.raw_head is None:
            continue
        if i == len(msgs) - 1 or m.method == "CONNECT" or (m.target or "").find("://") >= 0 \
                or (m.status is not None and m.status not in (200, 204, 206, 301, 302, 304)):
            keep = (m.content_length, m.chunked, m.body_end, m.complete)
            m.malformed = None
            _parse_head(kind, m.raw_head, m)
            m.content_length, m.chunked, m.body_end, m.complete = keep
        m.raw_head = None
    return msgs


def _frame_py(kind: str, pieces: list[Piece], total_bytes: int,
              request_methods: list[str] | None = None) -> list[Message]:
    """The framing of one direction in Python: the reference that _http1.c reproduces
    (tests/test_http1_c.py), and the path for what the compiled one leaves to it.
    Messages keep `raw_head`; parse_direction() parses the reported ones."""
    msgs: list[Message] = []
    expect = 0                      # offset where the next message starts
    mode = "head"                   # head | body | chunked | close | lost
    body_end = 0
    head_buf = b""
    cur: Message | None = None
    methods = list(request_methods or [])
    n_resp = 0
    # contiguous bytes: iterate over pieces, each possibly holding several messages
    for p in pieces:
        if p.tail and p.offset < expect:
            continue
        pos = p.offset                      # absolute offset of p.data[0]
        data = p.data
        data_end = p.offset + len(data)
        while True:
            if mode == "body":
                if body_end >= p.end:
                    break                   # body covers the rest of this segment
                if body_end < pos:
                    mode, expect = "head", body_end
                    if cur:
                        cur.complete = True
                    continue
                mode, expect = "head", body_end
                if cur:
                    cur.complete = True
                continue
            if mode == "close":
                break
            if mode in ("lost", "chunked"):
                # a segment that starts a new message resynchronises
                if pos == p.offset and _starts_message(kind, data) and (cur is None or p.offset > cur.offset):
                    if mode == "chunked" and cur:
                        cur.complete = True
                        cur.body_end = p.offset
                    mode, expect, head_buf = "head", p.offset, b""
                    continue
                if mode == "chunked" and cur and data.endswith(b"0\r\n\r\n"):
                    cur.complete, cur.body_end = True, p.offset + len(data)
                    mode, expect = "head", p.offset + len(data)
                break
            # mode == "head"
            if not head_buf:
                if expect < p.offset:
                    # the start of the next message is not here: resync later
                    if _starts_message(kind, data) and pos == p.offset:
                        expect = p.offset
                    else:
                        mode = "lost"
                        continue
                start = expect - p.offset
                if start >= len(data):
                    break
                chunk = data[start:]
                if not _starts_message(kind, chunk):
                    mode = "lost"
                    continue
                cur = Message(kind, expect, p.frame, p.ts_ns)
                msgs.append(cur)
                head_buf = chunk
            else:
                if p.offset > expect + len(head_buf):
                    cur.malformed = cur.malformed or "head cut by a gap"
                    _first_line(kind, head_buf, cur)
                    head_buf, mode = b"", "lost"
                    continue
                head_buf += data[expect + len(head_buf) - p.offset:]
            idx = head_buf.find(b"\r\n\r\n")
            if idx < 0:
                if len(head_buf) > MAX_HEAD:
                    cur.malformed, head_buf, mode = "head too long", b"", "lost"
                elif len(data) < p.length or (kind == "response" and cur.status is None):
                    _first_line(kind, head_buf, cur)    # cut by the snaplen: keep what is there
                    if len(data) < p.length:
                        cur.malformed, head_buf, mode = "head cut by the snaplen", b"", "lost"
                break                                   # need the next piece
            head = head_buf[: idx + 4]
            head_buf = b""
            cur.head_end = expect + idx + 4
            _fast_head(kind, head, cur)
            cur.raw_head = head
            if kind == "response":
                method = methods[n_resp] if n_resp < len(methods) else "GET"
                if cur.status is not None and cur.status >= 200:
                    n_resp += 1
                no_body = method == "HEAD" or (cur.status or 0) < 200 or cur.status in (204, 304) \
                    or (method == "CONNECT" and 200 <= (cur.status or 0) < 300)
            else:
                no_body = False
            if cur.malformed and cur.content_length is None and not cur.chunked:
                no_body = True if kind == "request" else no_body
            if no_body or (kind == "request" and cur.content_length is None and not cur.chunked):
                cur.body_end, cur.complete = cur.head_end, True
                expect = cur.head_end
                if kind == "response" and method == "CONNECT" and 200 <= (cur.status or 0) < 300:
                    mode = "close"      # a tunnel follows
                    break
                if kind == "request" and cur.method == "CONNECT":
                    mode = "close"
                    break
                pos = expect
                if expect >= data_end:
                    break
                continue
            if cur.content_length is not None and not cur.chunked:
                body_end = cur.head_end + cur.content_length
                cur.body_end = body_end
                mode = "body"
                pos = cur.head_end
                continue
            if cur.chunked:
                mode = "chunked"
                rest = data[cur.head_end - p.offset:] if cur.head_end >= p.offset else b""
                if rest.endswith(b"0\r\n\r\n"):
                    cur.complete, cur.body_end = True, p.offset + len(data)
                    mode, expect = "head", p.offset + len(data)
                break
            mode = "close"                              # body until the connection closes
            break
    if mode == "body" and cur is not None and body_end <= total_bytes:
        cur.complete = True
    if mode == "chunked" and cur is not None and not cur.complete:
        # the direction's last bytes (the engine's tail copy) end the chunked body?
        last = [p for p in pieces if p.tail]
        if last and last[-1].data.endswith(b"0\r\n\r\n") and last[-1].end >= total_bytes:
            cur.complete, cur.body_end = True, total_bytes
    if mode == "close" and cur is not None and cur.body_end is None:
        cur.body_end = total_bytes
    return msgs
