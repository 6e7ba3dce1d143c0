"""Stage 1: bytes from a file, a gzip file or standard input, fed to the engine in chunks.

Streaming: one reusable buffer (default 8 MiB), never the whole file in memory and never
a Python object per packet. Compression is detected by magic bytes, not by name.
Problems are reported the way a user can act on them:

* `CaptureError` (fatal, exit code 2): not a capture, an unsupported format, a corrupt
  record or block. Its message is one line naming the file and the byte offset. Packets
  before the corrupt record have been analysed and are still returned.
* warnings (a list of one-line strings): a truncated last record (tcpdump killed
  mid-write) or a truncated gzip stream. Everything before it is analysed.
"""

from __future__ import annotations

import gzip
import io
import ipaddress
import os
import sys
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Callable

import numpy as np

from . import _engine, layout
from ..tcp.state import RFC_TABLE, ZEEK_TABLE

layout.check_layout(_engine.sizes())

CHUNK_BYTES = 8 << 20
ROWS_PER_CALL = 1 << 16

FORMAT_NAMES = {0: "unknown", 1: "pcap", 2: "pcapng"}
R_NEED_MORE, R_OUT_FULL, R_ERROR, R_LIMIT, R_SECRETS = 0, 1, 2, 3, 4
TS_MIN, TS_MAX = -(1 << 63), (1 << 63) - 1          # no time window


class CaptureError(Exception):
    """A capture that cannot be read (further). `str(err)` is a one-line message."""

    def __init__(self, message: str, *, path: str = "", offset: int | None = None):
        self.path, self.offset, self.reason = path, offset, message
        where = f"{path}: " if path else ""
        at = f" at byte offset {offset}" if offset is not None else ""
        super().__init__(f"{where}{message}{at}")

    def __reduce__(self):            # keeps path and offset across processes (--jobs, Dask)
        return (_capture_error, (self.reason, self.path, self.offset))


def _capture_error(message: str, path: str, offset: int | None) -> CaptureError:
    return CaptureError(message, path=path, offset=offset)


@dataclass
class ReadResult:
    """What the read stage says about the input, besides the packets."""

    path: str
    compressed: bool
    file_bytes: int | None
    bytes_read: int = 0
    truncated: bool = False
    limited: bool = False          # stopped at the engine's max_frames: the rest was not read
    warnings: list[str] = field(default_factory=list)
    error: CaptureError | None = None


class _Gunzip(io.RawIOBase):
    """Streaming gzip reader (multi-member) that keeps the bytes decompressed before a
    cut: `GzipFile` raises EOFError and loses them. `truncated` is set at a cut."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.pending = b""
        self.truncated = False
        self.done = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self.pending and not self.done:
            chunk = self.raw.read(1 << 16)
            if not chunk:
                if not self.dec.eof:
                    self.truncated = True
                self.pending = self.dec.flush() if not self.dec.eof else b""
                self.done = True
                break
            try:
                self.pending = self.dec.decompress(chunk)
            except zlib.error as exc:
                raise gzip.BadGzipFile(str(exc)) from None
            while self.dec.eof and self.dec.unused_data:        # next member
                rest = self.dec.unused_data
                self.dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self.pending += self.dec.decompress(rest)
        n = min(len(b), len(self.pending))
        b[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def tell(self) -> int:
        return self.raw.tell()


def _open(path: str) -> tuple[BinaryIO, bool, int | None, list]:
    """Open `path` ('-' = stdin); unwrap gzip by magic. Returns (stream, gzipped, size, to_close)."""
    if path == "-":
        raw = sys.stdin.buffer
        size = None
        closers: list = []
    else:
        try:
            raw = open(path, "rb", buffering=0)
        except IsADirectoryError:
            raise CaptureError("is a directory, not a capture file", path=path) from None
        except FileNotFoundError:
            raise CaptureError("no such file", path=path) from None
        except PermissionError:
            raise CaptureError("permission denied", path=path) from None
        except OSError as exc:
            raise CaptureError(exc.strerror or str(exc), path=path) from None
        closers = [raw]
        try:
            size = os.fstat(raw.fileno()).st_size
        except OSError:
            size = None
    buffered = io.BufferedReader(raw, buffer_size=1 << 16) if not isinstance(raw, io.BufferedReader) else raw
    head = buffered.peek(2)[:2]
    if head == b"\x1f\x8b":
        gz = _Gunzip(buffered)
        return gz, True, size, closers
    return buffered, False, size, closers


def run(
    path: str,
    engine: "_engine.Engine",
    on_rows: Callable[[np.ndarray], None] | None = None,
    progress: Callable[[int], None] | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    on_secrets: Callable[[int, bytes], None] | None = None,
) -> ReadResult:
    """Feed the whole input to `engine`. Packet rows (when the engine emits them) go to
    `on_rows`; `progress(bytes_read_on_disk)` is called once per chunk; a pcapng
    Decryption Secrets Block goes to `on_secrets(secrets_type, data)` before the packets
    after it are read."""
    display = "<stdin>" if path == "-" else path
    stream, compressed, size, closers = _open(path)
    result = ReadResult(path=display, compressed=compressed, file_bytes=size)
    out = np.empty(ROWS_PER_CALL, dtype=layout.PACKET_DTYPE)
    buf = bytearray(chunk_bytes)
    filled = 0
    base = 0          # offset (in the decompressed byte stream) of buf[0]
    started = False
    try:
        while True:
            eof = False
            try:
                n = stream.readinto(memoryview(buf)[filled:])
            except EOFError:                      # gzip stream cut short
                n = 0
                result.truncated = True
                result.warnings.append(
                    f"{display}: compressed stream ends early (truncated gzip); "
                    f"analysed the {base + filled} bytes before that")
            except (gzip.BadGzipFile, zlib.error) as exc:
                raise CaptureError(f"corrupt gzip data ({exc})", path=display, offset=base + filled) from None
            except OSError as exc:
                raise CaptureError(f"read failed ({exc.strerror or exc})", path=display, offset=base + filled) from None
            if not n:
                eof = True
                if isinstance(stream, _Gunzip) and stream.truncated and not result.truncated:
                    result.truncated = True
                    result.warnings.append(
                        f"{display}: compressed stream ends early (truncated gzip); "
                        f"analysed the {base + filled} bytes before that")
            filled += n or 0
            if not started and filled == 0 and eof:
                raise CaptureError("empty file (0 bytes): not a capture", path=display)
            started = True
            pos = 0
            view = memoryview(buf)
            while True:
                consumed, rows, code, err_off, msg = engine.feed(view[pos:filled], base + pos, out)
                pos += consumed
                if rows and on_rows is not None:
                    on_rows(out[:rows].copy())
                if code == R_OUT_FULL:
                    continue
                if code == R_SECRETS:
                    stype, sdata = engine.take_secrets()
                    if on_secrets is not None:
                        on_secrets(stype, sdata)
                    continue
                break
            del view
            if code == R_ERROR:
                result.error = CaptureError(msg, path=display, offset=err_off)
                break
            if progress is not None:
                progress(_disk_pos(stream, base + pos))
            if code == R_LIMIT:
                result.limited = True
                break
            leftover = filled - pos
            if eof:
                if leftover:
                    c = engine.counters()
                    if c["format"] == 0:
                        raise CaptureError(
                            f"not a capture: only {leftover} bytes, shorter than a pcap/pcapng header",
                            path=display)
                    result.truncated = True
                    result.warnings.append(
                        f"{display}: capture truncated at byte offset {base + pos}: last record incomplete "
                        f"({leftover} bytes; tcpdump killed mid-write?); analysed the {c['frames']} frames before it")
                break
            if pos == 0 and filled == len(buf):
                buf.extend(bytes(len(buf)))       # one record larger than the buffer
            else:
                buf[:leftover] = buf[pos:filled]
                filled = leftover
                base += pos
        result.bytes_read = base + pos
    finally:
        for c in reversed(closers):
            try:
                c.close()
            except Exception:
                pass
    return result


def _disk_pos(stream, fallback: int) -> int:
    try:
        if isinstance(stream, _Gunzip):
            return stream.raw.tell()
        return stream.tell()
    except (OSError, AttributeError, ValueError):
        return fallback


APP_HEAD_BYTES = 6144     # first bytes of each direction handed to the app-layer parsers
APP_COPY_MAX = 2048       # bytes copied of each such segment


def new_engine(*, verify_checksums: bool = False, emit_packets: bool = False,
               zeek_split: bool = False, app: bool = False,
               shard: tuple[int, int] = (0, 1), window: tuple[int, int] = (TS_MIN, TS_MAX),
               max_frames: int = 0, only_keys: bytes = b"") -> "_engine.Engine":
    """`zeek_split`: split connections where Zeek ends a conn.log record (its timers and
    reuse rule) instead of where Wireshark starts a new tcp.stream. `app`: hand over the
    segments the application-layer parsers need (`Engine.take_app`). `shard=(k, n)`: track
    only the connections whose 4-tuple hashes to shard k of n (every frame is still read
    and counted; see pcapsense/parallel.py). `window=(from_ns, to_ns)`: read only the
    frames with from_ns <= time < to_ns, the others skipped and not numbered (as in the
    output of `editcap -A -B`); `max_frames`: stop after that many frames (0: no limit;
    `run()` then returns with `limited` set). `only_keys`: `flow_key()`s joined: track
    only those 4-tuples (as a shard does; streams are then numbered among them)."""
    return _engine.Engine(RFC_TABLE.tobytes(), ZEEK_TABLE.tobytes(), verify_checksums,
                          emit_packets, zeek_split,
                          APP_HEAD_BYTES if app else 0, APP_COPY_MAX, shard[0], shard[1],
                          window[0], window[1], max_frames, only_keys)


def flow_key(addr_a, port_a: int, addr_b, port_b: int) -> bytes:
    """The engine's 40-byte key of a 4-tuple, in either order: each (address padded to
    16 bytes, port big-endian), the lower first, then the IP version and a used mark.
    Addresses as text or as packed bytes (4 or 16)."""
    ends = []
    for addr, port in ((addr_a, port_a), (addr_b, port_b)):
        ip = ipaddress.ip_address(addr if isinstance(addr, str) else bytes(addr))
        ends.append(ip.packed.ljust(16, b"\0") + int(port).to_bytes(2, "big"))
    return min(ends) + max(ends) + bytes([ip.version, 0, 0, 1])


def input_bytes(files: list[str]) -> int:
    """Bytes on disk of the given files (those that can be stat'ed)."""
    total = 0
    for f in files:
        try:
            total += os.path.getsize(f)
        except OSError:
            pass
    return total


CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".dmp", ".gz")


def expand_inputs(spec) -> list[str]:
    """A path, '-', a directory (its capture files), a glob pattern, or a list of those
    -> the list of files to read as one capture."""
    import glob as _glob
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    out: list[str] = []
    for sp in specs:
        sp = os.fspath(sp)
        if sp == "-":
            out.append(sp)
        elif os.path.isdir(sp):
            files = sorted(os.path.join(sp, f) for f in os.listdir(sp)
                           if os.path.isfile(os.path.join(sp, f)) and
                           (f.endswith(CAPTURE_SUFFIXES) or ".pcap" in f))
            if not files:
                raise CaptureError("directory holds no capture files (.pcap, .pcapng, .gz)", path=sp)
            out += files
        elif any(ch in sp for ch in "*?[") and not os.path.exists(sp):
            files = sorted(_glob.glob(sp))
            if not files:
                raise CaptureError("no file matches this pattern", path=sp)
            out += files
        else:
            out.append(sp)
    return out


def first_timestamp(path: str) -> int | None:
    """Timestamp (ns) of the first record, reading only the start of the file."""
    try:
        stream, _gz, _size, closers = _open(path)
    except CaptureError:
        return None
    try:
        data = stream.read(1 << 20) or b""
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error):
        data = b""
    finally:
        for c in closers:
            try:
                c.close()
            except Exception:
                pass
    eng = new_engine()
    out = np.empty(1, dtype=layout.PACKET_DTYPE)
    eng.feed(data, 0, out)
    c = eng.counters()
    return c["first_ts_ns"] if c["frames"] else None
