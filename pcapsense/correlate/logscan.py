"""The Python exceptions in a program's output or log, as events (sans-IO: lines in,
`LogException`s out; no file or clock is touched here).

What it recognises, and why by hand: no library parses *other programs'* tracebacks and
log lines (the stdlib's `traceback` formats exceptions of this process; log parsers
such as `logparser` learn templates, they do not know what a `RemoteDisconnected` is).
The scanner knows three shapes:

- a traceback: `Traceback (most recent call last):`, indented frames, then the
  exception line `module.Name: message`; chained tracebacks ("During handling of the
  above exception…", "The above exception was the direct cause…") are one event whose
  `chain` lists every exception, the last being what the program saw;
- a log line naming a known network exception without a traceback (`logging.error(exc)`,
  requests' `Max retries exceeded … (Caused by ProtocolError('Connection aborted.',
  RemoteDisconnected(…)))`, aiohttp's `Cannot connect to host …`);
- urllib3's warnings: `Connection pool is full, discarding connection: HOST`, and
  `Retrying (Retry(…)) after connection broken by 'RemoteDisconnected(…)'`.

Each event gets a `kind` (a stable ID, docs/schema.md "exceptions") from the names and
messages in it, the host and port it names, and a time: the timestamp at the start of
its line (logging's default `2026-12-07 14:02:03,120`, ISO 8601 with or without an
offset, epoch seconds, or a bare `14:02:03.120`), else the last timestamp seen before it
(a traceback logged by `logging.exception` follows its record's line), else the time
the line arrived (`pcapsense record` stamps every line of the command's stderr).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

#: kind -> the patterns (over the exception names and messages of an event) that make it;
#: the first kind whose pattern matches wins, so the specific ones come first
KINDS: list[tuple[str, re.Pattern]] = [(k, re.compile(p, re.I)) for k, p in (
    ("pool-full", r"Connection pool is full"),
    ("proxy-error", r"ProxyError|Tunnel connection failed|ClientProxyConnectionError|ProxyConnectionError|"
                    r"Unable to connect to proxy"),
    ("ssl-certificate", r"CERTIFICATE_VERIFY_FAILED|SSLCertVerificationError|certificate verify failed|"
                        r"ClientConnectorCertificateError|hostname .* doesn't match"),
    ("http2-terminated", r"ConnectionTerminated|GOAWAY|StreamReset|ConnectionInputs\.RECV_HEADERS|"
                         r"LocalProtocolError: Invalid input ConnectionInputs"),
    ("rate-limited", r"\b429\b|Too Many Requests|too many 429 error|\b503 Server Error"),
    ("body-too-large", r"\b413\b|Request Entity Too Large|Payload Too Large"),
    ("connection-refused", r"ConnectionRefusedError|Connection refused|Errno 111\b|NewConnectionError.*refused|Connect call failed"),
    ("connect-timeout", r"ConnectTimeout|Connection to .* timed out|connect timeout|ServerTimeoutError.*connect|"
                        r"ConnectionTimeoutError"),
    ("incomplete-response", r"ChunkedEncodingError|IncompleteRead|ClientPayloadError|ContentLengthError|"
                            r"Response ended prematurely|peer closed connection without sending complete message|"
                            r"ProtocolError\('Connection broken"),
    ("remote-disconnected", r"RemoteDisconnected|Remote end closed connection without response|"
                            r"ServerDisconnectedError|Server disconnected|RemoteProtocolError|"
                            r"ConnectionClosedError|EOF occurred in violation of protocol|UNEXPECTED_EOF"),
    ("connection-reset", r"ConnectionResetError|Connection reset by peer|Errno 104\b|ECONNRESET|"
                         r"ConnectionAbortedError"),
    ("broken-pipe", r"BrokenPipeError|Broken pipe|Errno 32\b|EPIPE"),
    ("read-timeout", r"ReadTimeout|Read timed out|ReadTimeoutError|asyncio\.TimeoutError|TimeoutError|"
                     r"ServerTimeoutError|socket\.timeout|timed out"),
    ("ssl-error", r"SSLError|SSLEOFError|SSLZeroReturnError|ssl\.SSL|sslv3 alert|tlsv1 alert|"
                  r"WRONG_VERSION_NUMBER|HANDSHAKE_FAILURE"),
)]

#: a log line that names one of these is an event even without a traceback
_MARKER = re.compile(
    r"RemoteDisconnected|Remote end closed connection|ServerDisconnectedError|Server disconnected|"
    r"RemoteProtocolError|ConnectionResetError|Connection reset by peer|BrokenPipeError|Broken pipe|"
    r"ConnectionRefusedError|Connection refused|ReadTimeout|Read timed out|ConnectTimeout|"
    r"SSLError|SSLCertVerificationError|CERTIFICATE_VERIFY_FAILED|ProxyError|Tunnel connection failed|"
    r"Connection pool is full|ChunkedEncodingError|IncompleteRead|ClientPayloadError|"
    r"ClientConnectorError|ClientOSError|ConnectionError|Max retries exceeded|after connection broken by|"
    r"ServerTimeoutError|ConnectionTerminated|Too Many Requests")

_TB_START = "Traceback (most recent call last):"
_CHAIN = ("During handling of the above exception, another exception occurred:",
          "The above exception was the direct cause of the following exception:")
# `pkg.mod.Name: message` or `Name` alone (an exception line after the frames)
_EXC_LINE = re.compile(r"^((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*)(?::\s?(.*))?$")
_EXC_NAME = re.compile(r"\b((?:[a-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Disconnected|Timeout|Reset|Refused|"
                       r"Terminated|Warning))\b")

# timestamps at the start of a line (after an optional '[' or level prefix)
_ISO = re.compile(r"^\W{0,3}(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
                  r"\s*(Z|[+-]\d{2}:?\d{2}|UTC)?")
_EPOCH = re.compile(r"^\W{0,3}(1[5-9]\d{8}|2\d{9})(?:\.(\d{1,9}))?\b")
# a whole-line prefix stamp: an ISO 8601 time with its zone, then one space
_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2}) ")
_CLOCK = re.compile(r"^\W{0,3}(\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?\b")

_HOST_PORT = [re.compile(p) for p in (
    r"host='([^']+)',\s*port=(\d+)",                                   # urllib3 pools
    r"[Cc]annot connect to host ([\w.\-:\[\]]+?):(\d+)",             # aiohttp
    r"https?://(\[[0-9a-fA-F:]+\]|[\w.\-]+)(?::(\d+))?",              # URLs
    r"discarding connection: ([\w.\-]+)",                            # urllib3 pool full
    r"\bto ([\w.\-]+):(\d+)\b",                                       # 'Connection to host:port'
)]


@dataclass
class LogException:
    """One exception the program reported."""

    line: int                        # 1-based line of the event's last exception line
    ts_ns: int | None                # UTC epoch ns (None: no time known)
    ts_kind: str                     # "utc" (zone known or arrival), "local" (naive), "clock" (no date), "none"
    exception: str                   # the last exception's name (what the program saw)
    message: str                     # its message
    chain: list[str] = field(default_factory=list)   # every exception name in the chain, first to last
    kind: str = "other"
    host: str | None = None
    port: int | None = None
    text: str = ""                   # the lines the kind and host were read from (not rendered)


def _frac_ns(frac: str | None) -> int:
    return int((frac or "0").ljust(9, "0")[:9])


def line_time(line: str, tz: dt.tzinfo | None) -> tuple[int | None, str]:
    """The timestamp at the start of `line`: (UTC epoch ns, kind) or (None, "none").
    A naive date and time is read in `tz` (None: this machine's local zone); a bare
    clock time (no date) is returned as ns since midnight with kind "clock"."""
    m = _ISO.match(line)
    if m:
        y, mo, d, h, mi, s, frac, zone = m.groups()
        try:
            base = dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s))
        except ValueError:
            return None, "none"
        kind = "utc"
        if zone in ("Z", "UTC"):
            base = base.replace(tzinfo=dt.timezone.utc)
        elif zone:
            z = zone.replace(":", "")
            off = dt.timedelta(hours=int(z[1:3]), minutes=int(z[3:5]))
            base = base.replace(tzinfo=dt.timezone(off if z[0] == "+" else -off))
        elif tz is not None:
            base = base.replace(tzinfo=tz)
            kind = "local"
        else:
            base = base.astimezone()          # this machine's zone
            kind = "local"
        return int(base.timestamp()) * 1_000_000_000 + _frac_ns(frac), kind
    m = _EPOCH.match(line)
    if m:
        return int(m.group(1)) * 1_000_000_000 + _frac_ns(m.group(2)), "utc"
    m = _CLOCK.match(line)
    if m:
        h, mi, s, frac = m.groups()
        if int(h) < 24 and int(mi) < 60 and int(s) < 61:
            return ((int(h) * 60 + int(mi)) * 60 + int(s)) * 1_000_000_000 + _frac_ns(frac), "clock"
    return None, "none"


def kind_of(text: str) -> str:
    for kind, pat in KINDS:
        if pat.search(text):
            return kind
    return "other"


def host_port(text: str) -> tuple[str | None, int | None]:
    for pat in _HOST_PORT:
        m = pat.search(text)
        if m:
            host = m.group(1).strip("[]").rstrip(".")
            port = int(m.group(2)) if m.lastindex and m.lastindex >= 2 and m.group(2) else None
            if pat.pattern.startswith("https?"):
                port = port or (443 if m.group(0).startswith("https") else 80)
            return host, port
    return None, None


class Scanner:
    """Feed lines (with the time each arrived, when known), collect `events`.

        sc = Scanner(tz=None)
        for n, line in enumerate(text.splitlines(), 1):
            sc.feed(line, arrival_ns=None)
        sc.close()
        sc.events   # [LogException, ...]
    """

    def __init__(self, tz: dt.tzinfo | None = None, prefer_arrival: bool = False):
        """`prefer_arrival`: a line's arrival time wins over the time written in it
        (`pcapsense record` stamps lines on this machine's clock, the capture's)."""
        self.tz = tz
        self.prefer_arrival = prefer_arrival
        self.events: list[LogException] = []
        self.lineno = 0
        self._ts: tuple[int | None, str] = (None, "none")     # last timestamp seen
        self._tb: list[str] | None = None                      # open traceback: its lines
        self._tb_ts: tuple[int | None, str] = (None, "none")
        self._tb_excs: list[tuple[str, str]] = []              # (name, message) so far
        self._in_frames = False

    def feed(self, line: str, arrival_ns: int | None = None) -> None:
        self.lineno += 1
        line = line.rstrip("\r\n")
        ts = (None, "none") if self.prefer_arrival and arrival_ns is not None else line_time(line, self.tz)
        m = _STAMP.match(line)
        if m:
            # a time stamp before the line (`pcapsense record`'s stderr.log, `ts`, `moreutils`):
            # the line's own indentation is what follows it
            line = line[m.end():]
        if ts[0] is not None:
            self._ts = ts
        elif arrival_ns is not None:
            ts = (arrival_ns, "utc")
            if self._ts[0] is None or self._tb is None:
                self._ts = ts
        stripped = line.strip()
        if _TB_START in line:
            if self._tb is not None and self._tb_excs and not self._chained:
                self._flush()
            if self._tb is None:
                # (a log line naming the exception just before: the traceback is the same
                # event, told again; dropped when the traceback's kind is the same)
                self._intro = self.events[-1] if self.events and self.events[-1].line == self.lineno - 1 \
                    and self._marker_event else None
                self._tb, self._tb_ts, self._tb_excs = [], self._ts, []
            self._in_frames, self._chained = True, False
            self._tb.append(line)
            return
        if self._tb is not None:
            if self._in_frames:
                if line.startswith((" ", "\t")) or not stripped:
                    self._tb.append(line)
                    return
                m = _EXC_LINE.match(stripped)
                if m and (m.group(2) is not None or "." in m.group(1) or _EXC_NAME.search(m.group(1))):
                    self._tb_excs.append((m.group(1), m.group(2) or ""))
                    self._tb.append(line)
                    self._in_frames = False
                    self._exc_line = self.lineno
                    return
                self._flush()                 # (not a traceback after all, or cut short)
            else:
                if not stripped or (line.startswith((" ", "\t")) and self._tb_excs):
                    # a blank line, or the exception's message going on (indented)
                    if stripped:
                        name, msg = self._tb_excs[-1]
                        self._tb_excs[-1] = (name, msg + " " + stripped)
                    self._tb.append(line)
                    return
                if stripped in _CHAIN:
                    self._chained = True
                    self._tb.append(line)
                    return
                self._flush()
        if _MARKER.search(line):
            names = _EXC_NAME.findall(line)
            exc = names[-1] if names else _first_marker(line)
            if not names and "pool is full" in exc:
                exc = "urllib3 warning: Connection pool is full"
            self._emit([(n, "") for n in names] or [(exc, "")], line, self.lineno, ts if ts[0] is not None else self._ts,
                       message=line.strip())
            self._marker_event = True

    _chained = False
    _exc_line = 0
    _marker_event = False
    _intro = None

    def _flush(self) -> None:
        if self._tb is not None and self._tb_excs:
            text = "\n".join(self._tb)
            name, msg = self._tb_excs[-1]
            self._emit(self._tb_excs, text, self._exc_line, self._tb_ts, message=msg, exc=name)
            if self._intro is not None and self._intro.kind == self.events[-1].kind:
                self.events.remove(self._intro)
            self._marker_event = False
        self._intro = None
        self._tb, self._tb_excs, self._in_frames, self._chained = None, [], False, False

    def _emit(self, excs, text, lineno, ts, *, message: str, exc: str | None = None) -> None:
        names = [n for n, _ in excs]
        full = text + "\n" + "\n".join(f"{n}: {m}" for n, m in excs)
        # the host and port from what the exceptions say, not from the frames' source lines
        said = "\n".join(f"{n}: {m}" for n, m in excs) if excs and any(m for _, m in excs) else text
        host, port = host_port(said)
        self.events.append(LogException(
            line=lineno, ts_ns=ts[0], ts_kind=ts[1], exception=exc or names[-1], message=message[:500],
            chain=names, kind=kind_of(full), host=host, port=port, text=full[-4000:]))

    def close(self) -> None:
        if self._tb is not None:
            self._flush()


def _first_marker(line: str) -> str:
    m = _MARKER.search(line)
    return m.group(0) if m else "?"


def scan_text(text: str, tz: dt.tzinfo | None = None) -> list[LogException]:
    sc = Scanner(tz)
    for line in text.splitlines():
        sc.feed(line)
    sc.close()
    return sc.events
