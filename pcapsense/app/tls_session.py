"""Stage 4c, with keys: one TLS connection decrypted (sans-IO: the engine's record rows
in, plaintext pieces, handshake facts, alerts and HTTP/2 events out).

The engine (capture/engine/tls_frame.c) frames the records of the connections whose
ClientHello random is in the key log and hands over, per record, its header fields and
the bytes decryption needs (whole handshake and small records; the head and the tail of
large application-data records). Here, per direction:

- the cleartext handshake is read (ClientHello, ServerHello, HelloRetryRequest, TLS 1.2
  Certificate and NewSessionTicket), the suite and version chosen, the secrets looked up
  by the client random (TLS 1.2 resumption: by session id, from an earlier connection of
  the capture whose master secret is known);
- records are decrypted under the direction's current key: TLS 1.2 after its
  ChangeCipherSpec; TLS 1.3 by epoch (0-RTT early data, handshake, application data,
  each KeyUpdate), switching at Finished, EndOfEarlyData and KeyUpdate, and by trial (the
  next epoch's key at sequence 0) when a whole record does not verify under the current
  one, as Wireshark does for 0-RTT;
- after a hole in the capture (the framer's TLSR_AFTER_GAP), the record's sequence
  number is found by trial: the candidates from the last good one on, bounded by the
  bytes missing, confirmed by the record's tag (that record is copied whole); the
  records in between are counted as skipped. Wireshark stops decrypting the direction
  there; Zeek stops parsing the connection;
- application data becomes plaintext `Piece`s at plaintext offsets, the same sparse
  stream the cleartext HTTP/1 parser reads: the first 16 KiB of each direction, every
  record that starts an HTTP/1 message (and the records of a head still open), and the
  direction's last bytes; the bodies in between are counted, not kept. HTTP/2 (ALPN h2,
  or the client preface) goes to h2.H2Connection record by record.

What could not be decrypted is said (`status`): "yes", "no key" (its secrets are not in
the key log), "missing handshake" (no ServerHello: suite unknown), "gap" (records lost
or skipped), "failed" (the keys do not decrypt it: another session's keys), or
"unsupported" (TLS 1.0/1.1, an unknown suite).
"""

from __future__ import annotations

import struct

from ..capture.layout import TLSR_AFTER_GAP, TLSR_MISSING, TLSR_PARTIAL
from . import h2 as h2mod
from . import tls as tls_parse
from .keylog import KeyLog
from .segments import Piece
from .tls import certificate_facts
from cryptography.exceptions import InvalidTag

from .tls_crypto import _AAD12, _HDR, SUITES, RecordCipher, suite_name, tls12_keys, tls13_keys, tls13_next_secret

HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
#: most sequence numbers tried to find a record after a hole (about 4 us each)
MAX_TRIALS = 4096
#: plaintext bytes at the start of each direction always kept (the first messages)
KEEP_FIRST = 16384
#: bytes kept of the end of each direction (as the cleartext engine's APP_TAIL)
TAIL_KEEP = 512
#: at most this much of a record's plaintext is kept (an HTTP head is kept with 32
#: bytes after it, unless another message starts in the same record)
KEEP_COPY = 8192
#: records at least this long, inside an HTTP/1 body of known length, are counted by
#: their length and not decrypted (smaller ones may be alerts or KeyUpdates)
SKIP_MIN = 1024
HTTP_STARTS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ",
               b"TRACE ", b"HTTP/1.", b"PRI * HTTP/2")
T_CCS, T_ALERT, T_HANDSHAKE, T_APP = 20, 21, 22, 23
#: handshake messages nothing here reads: ServerKeyExchange, CertificateRequest,
#: ServerHelloDone, CertificateVerify, ClientKeyExchange (not CertificateRequest: see _handshake_msg)
_IGNORED = frozenset((12, 14, 15, 16))


class Registry:
    """What one connection of the capture tells the others: TLS 1.2 sessions whose
    master secret is known, by session id and by ticket (a resumed connection without a
    CLIENT_RANDOM line of its own is decrypted with them, as Wireshark does). `new_ids`:
    session ids learnt since the engine was last told (Engine.add_tls_sessions)."""

    def __init__(self):
        self.by_id: dict[bytes, bytes] = {}
        self.by_ticket: dict[bytes, bytes] = {}
        self.new_ids: list[bytes] = []

    def add_session(self, sid: bytes, master: bytes) -> None:
        if sid and sid not in self.by_id:
            self.by_id[sid] = master
            self.new_ids.append(bytes([len(sid)]) + sid.ljust(32, b"\0"))


class _Side:
    """One direction of the connection (a plain class with slots: two are made per
    connection, and a dataclass with list defaults costs five times as much)."""

    __slots__ = ("cipher", "seq", "epoch", "secret", "later", "hs_buf", "next_offset", "records", "decrypted",
                 "skipped", "undecrypted", "nokey", "failed", "missing", "partial", "pt_off", "pieces", "early",
                 "head_open", "head_segs", "tail", "lost", "steady", "first_app", "app_records", "lazy",
                 "body_left", "expect_start", "by_length")

    def __init__(self):
        self.cipher: RecordCipher | None = None
        self.seq = 0                    # sequence number of the next record under `cipher`
        self.epoch = "plain"            # plain, early, handshake, app
        self.secret: bytes | None = None   # TLS 1.3: the current traffic secret (KeyUpdate)
        self.later: list = []           # TLS 1.3: the epochs after this one [(name, secret)]
        self.hs_buf = b""
        self.next_offset = 0            # where the framer's next record should start
        self.records = 0
        self.decrypted = 0
        self.skipped = 0                # records lost before a record found again by trial
        self.undecrypted = 0            # records that could not be decrypted (after a loss)
        self.nokey = 0                  # records whose key is not in the key log
        self.failed = 0                 # records that did not verify under a key that should fit
        self.missing = 0                # records with bytes missing from the capture
        self.partial = 0                # a record the connection (or the capture) ended inside
        self.pt_off = 0                 # plaintext bytes of application data so far
        self.pieces: list = []
        self.early: list = []           # plaintext of 0-RTT records, until accepted
        self.head_open = False
        self.head_segs = 0
        self.tail: tuple | None = None  # the direction's last bytes: (offset, bytes, frame, ts)
        self.lost = False               # the framing or the keys were lost for good
        self.steady = False             # past the handshake, keyed, HTTP/1, AEAD: feed() takes its short path
        self.first_app: tuple | None = None   # (frame, ts) of the first application data decrypted
        self.app_records: list = []     # (frame, ts) of its first two type-23 records
        self.lazy = False               # TLS 1.3 client: its handshake key is made only if needed (_encrypted)
        self.body_left = 0              # plaintext bytes of the current HTTP/1 body still to come (0: unknown)
        self.expect_start = False       # the body ended on a record's end: the next record starts a message
        self.by_length = 0              # body records counted by their length, not decrypted (feed)


class Session:
    """The decryption of one connection. Feed it its record rows in order
    (`record()`); then `facts()` and `plaintext()`."""

    def __init__(self, stream: int, keys: KeyLog, registry: Registry):
        self.stream = stream
        self.keys, self.registry = keys, registry
        self.sides = [_Side(), _Side()]
        self.client_dir: int | None = None
        self.client_random = self.server_random = None
        self.client_sid = b""
        self.server_sid = None
        self.ticket: bytes | None = None
        self.suite: int | None = None
        self.version: int | None = None
        self.hrr = False
        self.etm = False
        self.alpn_offered: list[str] = []
        self.alpn: str | None = None
        self.early_offered = False
        self.early_accepted: bool | None = None
        self.resumed = False
        self.master: bytes | None = None
        self.pending12: dict[int, RecordCipher] = {}
        self.queued: list = []          # records that came before the ServerHello
        self.problem: str | None = None
        self.certificate: dict | None = None
        self.alerts: list[tls_parse.Alert] = []
        self.alert_by: list[str] = []
        self.key_updates = 0
        self.h2: h2mod.H2Connection | None = None
        self.no_key = False
        self.sni: str | None = None
        self.versions_offered: list[str] = []
        self.hello_frames: dict[str, int] = {}      # "client" / "server" -> frame of the hello
        self.ccs = [False, False]
        self.finished = [False, False]
        self.cert_requested = False
        self.methods: list[bytes] = []      # request methods not yet answered (_body_after)
        self.skip_mismatch = 0

    # ------------------------------------------------------------------ records
    def feed(self, rows, data) -> None:
        """This connection's records of one engine chunk, in order: tuples (dir, type,
        version, length, index, offset, flags, frame, ts, end_frame, end_ts, off, head,
        tail) of layout.TLSREC_DTYPE's fields, the bytes in `data` (a memoryview). A whole
        application-data record of a direction past its handshake, in order, is taken
        here in a few steps (most of an HTTPS download's records are body bytes that
        are only counted); any other goes through record()."""
        sides = self.sides
        for d, rt, ver, ln, ix, ofs, fl, fr, ts, efr, ets, o, h, tl in rows:
            side = sides[d]
            if side.steady and rt == T_APP and not fl and h == ln and ofs == side.next_offset \
                    and ln > side.cipher.explicit + side.cipher.tag_len:
                c = side.cipher
                if side.body_left and ln >= SKIP_MIN:
                    # inside an HTTP/1 body of known length: the record is counted, not
                    # decrypted ("decrypt only what the parsers need"; see _body_after)
                    est = ln - c.explicit - c.tag_len - (1 if c.tls13 else 0)
                    if est <= side.body_left:
                        side.body_left -= est
                        side.expect_start = not side.body_left
                        side.records += 1
                        side.by_length += 1
                        side.seq += 1
                        side.next_offset = (ofs + 5 + ln) & 0xFFFFFFFF
                        side.pt_off += est
                        side.tail = None
                        continue
                try:                             # (RecordCipher.decrypt_whole for AEAD, inline)
                    if c.tls13:
                        pt = c.aead.decrypt((c.iv_int ^ side.seq).to_bytes(12, "big"), data[o:o + h],
                                            _HDR.pack(T_APP, ver, ln))
                    else:
                        pt = c.aead.decrypt(c._nonce(side.seq, data[o:o + 8]), data[o + c.explicit:o + h],
                                            _AAD12.pack(side.seq, T_APP, ver, ln - c.explicit - c.tag_len))
                except InvalidTag:
                    pt = None
                if pt is not None:
                    side.records += 1
                    side.next_offset = (ofs + 5 + ln) & 0xFFFFFFFF
                    side.seq += 1
                    side.decrypted += 1
                    if c.tls13:
                        n = len(pt) if pt[-1] else len(pt.rstrip(b"\0"))
                        if not n:
                            continue
                        itype, n = pt[n - 1], n - 1
                    else:
                        itype, n = T_APP, len(pt)
                    if itype == T_APP and side.pt_off >= KEEP_FIRST and not side.head_open \
                            and not side.expect_start and not side.body_left and not pt.startswith(HTTP_STARTS):
                        end = side.pt_off + n          # a body record: counted, its end kept
                        k = TAIL_KEEP if n > TAIL_KEEP else n
                        side.tail = (end - k, pt[n - k:n], efr, ets)
                        side.pt_off = end
                    elif itype == T_APP:
                        self._app_data(side, d, pt, n, fr, ts, efr, ets, None)
                    else:
                        self._content(side, d, itype, pt[:n], n, fr, ts, efr, ets, b"")
                    continue
            self.record(d, rt, ver, ln, ix, ofs, fl, fr, ts, efr, ets, data[o:o + h], data[o + h:o + h + tl])

    def record(self, d: int, rtype: int, version: int, length: int, index: int, offset: int, flags: int,
               frame: int, ts: int, end_frame: int, end_ts: int, head, tail) -> None:
        side = self.sides[d]
        side.records += 1
        if rtype == T_APP and len(side.app_records) < 2:
            side.app_records.append((frame, ts))
        whole = not flags & (TLSR_MISSING | TLSR_PARTIAL) and len(head) == length
        if flags & TLSR_MISSING:
            side.missing += 1
        elif flags & TLSR_PARTIAL:
            side.partial += 1
        gap = bool(flags & TLSR_AFTER_GAP) or (side.records > 1 and offset != side.next_offset)
        side.next_offset = (offset + 5 + length) & 0xFFFFFFFF
        if side.cipher is None and side.epoch == "plain":
            if rtype == T_HANDSHAKE:
                if whole:
                    self._handshake_data(d, head, frame, ts)
                else:
                    side.lost, self.problem = True, self.problem or "a handshake record was not captured whole"
                return
            if rtype == T_CCS:
                self._ccs(d)
                return
            if rtype == T_ALERT:
                if len(head) >= 2:
                    self._alert(d, head[0], head[1], frame, ts, False)
                return
            if self.version is None and rtype == T_APP:
                # 0-RTT data before the ServerHello: decrypted once the suite is known
                self.queued.append((side, d, rtype, version, length, offset, frame, ts, end_frame, end_ts,
                                    bytes(head), bytes(tail), gap, whole))
                return
            side.undecrypted += 1
            return
        if rtype == T_CCS:
            if self.version == 0x0303:             # (TLS 1.2 renegotiation is not followed)
                side.undecrypted += 1
            return                                 # (TLS 1.3: middlebox compatibility, not counted)
        if self.version == 0x0304 and rtype != T_APP:
            # TLS 1.3 protects every record as application data: an alert or handshake
            # record is in the clear (OpenSSL sends a client's unknown_ca so, with the
            # handshake keys already in place)
            if rtype == T_ALERT and len(head) >= 2:
                self._alert(d, head[0], head[1], frame, ts, False)
            elif rtype == T_HANDSHAKE and whole:
                self._handshake_data(d, head, frame, ts)
            return
        self._encrypted(side, d, rtype, version, length, offset, frame, ts, end_frame, end_ts, head, tail, gap,
                        whole)

    def _encrypted(self, side: _Side, d, rtype, version, length, offset, frame, ts, end_frame, end_ts, head, tail,
                   gap, whole) -> None:
        if side.lost:
            side.undecrypted += 1
            return
        pt = None
        if side.lazy:
            side.lazy = False
            hash_len = 48 if SUITES[self.suite].hash == "sha384" else 32
            if rtype == T_APP and length == 4 + hash_len + 1 + SUITES[self.suite].tag_len and not gap \
                    and not self.cert_requested and whole:
                # A TLS 1.3 client's one handshake record, its Finished (no 0-RTT, no client
                # certificate asked, the size of a Finished): its content is known, so it is
                # not decrypted (a third of a connection's key derivations, on HTTPS traffic
                # of short connections); the application key follows at sequence 0
                side.decrypted += 1
                self.finished[d] = True
                self._advance(side, "app")
                return
            side.cipher = self._cipher13(side.secret)
        if side.cipher is None:
            # no key for this epoch (a secret missing from the key log): a later epoch's key
            # may fit (TLS 1.3 handshake secret missing, application secret present)
            if whole and side.later:
                pt, seq = self._next_epoch(side, rtype, version, head)
            if pt is None:
                side.nokey += 1
                return
        else:
            seq = side.seq
        if whole:
            if pt is None:
                pt = side.cipher.decrypt_whole(seq, rtype, version, head)
                if pt is None:
                    if gap:
                        pt, seq = self._find_seq(side, rtype, version, head, length, offset)
                    else:
                        pt, seq = self._next_epoch(side, rtype, version, head)
            if pt is None:
                side.failed += 1
                side.seq += 1
                if side.decrypted == 0 and side.failed >= 2:
                    side.lost = True
                    self.problem = self.problem or "the key log's secrets do not decrypt this connection"
                return
            if gap and seq > side.seq:
                side.skipped += seq - side.seq
            side.seq = seq + 1
            side.decrypted += 1
            if side.cipher.tls13:
                n = len(pt.rstrip(b"\0")) if pt and not pt[-1] else len(pt)
                if not n:
                    return
                itype, n = pt[n - 1], n - 1
            else:
                itype, n = rtype, len(pt)
            if itype == T_APP:
                self._app_data(side, d, pt, n, frame, ts, end_frame, end_ts, None)
            else:
                self._content(side, d, itype, pt[:n], n, frame, ts, end_frame, end_ts, b"")
            return
        # the head and the tail of a record whose bytes the capture did not hold whole:
        # decrypted in counter mode, without verifying its tag
        if gap:
            # (the first record after a hole the framer saw is copied whole; this one
            # follows a hole it did not see: a record whose own bytes were missing)
            side.undecrypted += 1
            side.lost = side.cipher.tls13 or side.cipher.suite.cipher == "chacha"
            side.steady = side.steady and not side.lost
            return
        c = side.cipher
        head_pt = c.decrypt_head(seq, head, length)
        tail_pt = b""
        if c.suite.cipher == "cbc":
            pt_len = c.cbc_plaintext_len(tail, length) if tail else None
            itype = rtype
        else:
            tail_pt = c.decrypt_tail(seq, head, tail, length) if tail else b""
            ct_len = length - c.overhead()
            itype, pt_len = rtype, ct_len
            if c.tls13:
                stripped = tail_pt.rstrip(b"\0")
                if stripped:
                    itype = stripped[-1]
                    pt_len = ct_len - (len(tail_pt) - len(stripped)) - 1
                    tail_pt = stripped[:-1]
                else:
                    itype, pt_len, tail_pt = T_APP, ct_len - 1, b""     # (no tail: assumed unpadded data)
        if pt_len is None:
            pt_len = len(head_pt)
        side.seq += 1
        side.decrypted += 1
        head_pt = head_pt[:pt_len]
        if itype == T_APP:
            self._app_data(side, d, head_pt, pt_len, frame, ts, end_frame, end_ts, tail_pt)
        else:
            self._content(side, d, itype, head_pt, pt_len, frame, ts, end_frame, end_ts, tail_pt)

    def _next_epoch(self, side: _Side, rtype, version, body):
        """A whole record that does not verify under the current key: the key changed
        without the message that says so being read (a Finished lost, 0-RTT rejected):
        try each later epoch at sequence 0."""
        for i, (name, secret) in enumerate(side.later):
            if secret is None:
                continue
            c = self._cipher13(secret)
            pt = c.decrypt_whole(0, rtype, version, body)
            if pt is not None:
                side.cipher, side.secret, side.epoch, side.later = c, secret, name, side.later[i + 1:]
                return pt, 0
        return None, side.seq

    def _find_seq(self, side: _Side, rtype, version, body, length, offset):
        """A whole record after a hole: its sequence number by trial, from the next
        expected one to the most that the missing bytes could have held."""
        lo = side.seq
        span = max(64, min(MAX_TRIALS, (offset - side.next_offset) // 22 + 64)) if offset else 64
        for s in range(lo, lo + span):
            pt = side.cipher.decrypt_whole(s, rtype, version, body)
            if pt is not None:
                return pt, s
        return None, lo

    # ------------------------------------------------------------------ content
    def _content(self, side: _Side, d: int, itype: int, content: bytes, pt_len: int, frame, ts,
                 end_frame, end_ts, tail_pt: bytes) -> None:
        if itype == T_HANDSHAKE:
            self._handshake_data(d, content, frame, ts)
        elif itype == T_ALERT:
            if len(content) >= 2:
                self._alert(d, content[0], content[1], frame, ts, True)
        elif itype == T_APP:
            self._app_data(side, d, content, pt_len, frame, ts, end_frame, end_ts, tail_pt)

    def _alert(self, d: int, level: int, desc: int, frame: int, ts: int, decrypted: bool) -> None:
        self.alerts.append(tls_parse.Alert(frame, ts, level, tls_parse.ALERTS.get(desc, str(desc))))
        self.alert_by.append("client" if d == self.client_dir else "server")

    def _app_data(self, side: _Side, d: int, data: bytes, pt_len: int, frame, ts, end_frame, end_ts,
                  tail_pt: bytes | None) -> None:
        """Application data of `pt_len` bytes: `data` holds its first bytes (all of them
        when `tail_pt` is None: a whole record, whose `data` may run on past `pt_len`
        with TLS 1.3's inner type and padding); `tail_pt` its last bytes otherwise."""
        if side.first_app is None:
            side.first_app = (frame, ts)
        whole = tail_pt is None
        if side.epoch == "early" and self.early_accepted is not True:
            side.early.append((bytes(data[:pt_len]), pt_len, frame, ts))   # processed only if the server accepts it
            return
        if self.h2 is None and (self.alpn == "h2" or (d == self.client_dir and side.pt_off == 0
                                                       and data[:16] == h2mod.PREFACE[:16])):
            self.h2 = h2mod.H2Connection(self.client_dir)
            for sd in self.sides:
                sd.steady = False
        if self.h2 is not None:
            if whole:
                self.h2.feed(d, data[:pt_len] if len(data) != pt_len else data, frame, ts)
            else:
                self.h2.lost(d)
            side.pt_off += pt_len
            return
        start = data[:12].startswith(HTTP_STARTS)
        # the records of a body counted by their length (feed) must add up: the record
        # after such a body starts a message, and so does what follows the body's end in
        # the record it ends in. If not (TLS 1.3 padding made the plaintext shorter than
        # its record said), nothing more is counted so on this connection, and it says gap
        if side.expect_start:
            side.expect_start = False
            if not start:
                self._mismatch()
        elif side.body_left:
            left = side.body_left
            if left < pt_len:
                side.body_left = 0
                if whole and not data[left:left + 12].startswith(HTTP_STARTS):
                    self._mismatch()
            else:
                side.body_left = left - pt_len
                side.expect_start = not side.body_left
        if start and whole and self.skip_mismatch == 0 and side.steady:
            side.body_left = self._body_after(d, data, pt_len)
        if side.pt_off < KEEP_FIRST or start or side.head_open:
            keep = min(pt_len, len(data), KEEP_COPY)
            if start:
                side.head_segs = 0
            if start or side.head_open:
                side.head_segs += 1
                end = data.find(b"\r\n\r\n", 0, keep)
                side.head_open = end < 0 and side.head_segs < 32
                if end >= 0 and data.find(b"HTTP/1.", end + 4, keep) < 0:
                    keep = min(keep, end + 4 + 32)     # a head and a few bytes after it, as the engine keeps
            side.pieces.append(Piece(side.pt_off, bytes(data[:keep]), pt_len, frame, ts))
        end = side.pt_off + pt_len
        if tail_pt:
            side.tail = (end - len(tail_pt), tail_pt, end_frame, end_ts)
        elif whole and pt_len:
            k = min(TAIL_KEEP, pt_len)
            side.tail = (end - k, bytes(data[pt_len - k:pt_len]), end_frame, end_ts)
        side.pt_off = end

    def _mismatch(self) -> None:
        self.skip_mismatch += 1
        for sd in self.sides:
            sd.body_left = 0
            sd.expect_start = False

    def _body_after(self, d: int, data: bytes, n: int) -> int:
        """The HTTP/1 message that starts this record (its first `n` plaintext bytes):
        how many body bytes follow after the record, when that is certain; else 0 (every
        record is decrypted). Certain: the head is in the record, declares a
        Content-Length and no Transfer-Encoding, and is not a response without a body
        (1xx, 204, 304, or to a HEAD request). The request methods are paired with the
        responses in order (pipelining keeps the order)."""
        end = data.find(b"\r\n\r\n", 0, n)
        if end < 0:
            return 0
        head = bytes(data[:end]).lower()
        client = d == self.client_dir
        if client:
            self.methods.append(head[:head.find(b" ")])
        else:
            try:
                status = int(head[9:12])
            except ValueError:
                return 0
            if status < 200:
                return 0
            method = self.methods.pop(0) if self.methods else b"get"
            if method == b"head" or status in (204, 304):
                return 0
        if b"\r\ntransfer-encoding:" in head:
            return 0
        i = head.find(b"\r\ncontent-length:")
        if i < 0:
            return 0
        j = head.find(b"\r\n", i + 2)
        try:
            length = int(head[i + 17:j if j > 0 else len(head)].strip())
        except ValueError:
            return 0
        left = length - (n - end - 4)
        return left if left > 0 else 0

    # ------------------------------------------------------------------ handshake
    def _handshake_data(self, d: int, data: bytes, frame: int, ts: int) -> None:
        side = self.sides[d]
        buf = side.hs_buf + data if side.hs_buf else data
        pos, n = 0, len(buf)
        while pos + 4 <= n:
            ht = buf[pos]
            hl = (buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3]
            if pos + 4 + hl > n:
                break
            if ht not in _IGNORED:
                try:
                    self._handshake_msg(d, ht, buf[pos + 4:pos + 4 + hl], frame, ts)
                except (IndexError, struct.error, ValueError):
                    self.problem = self.problem or f"malformed handshake message (type {ht})"
            pos += 4 + hl
        side.hs_buf = bytes(buf[pos:]) if pos < n and n - pos <= 1 << 20 else b""

    def _handshake_msg(self, d: int, ht: int, msg: bytes, frame: int, ts: int) -> None:
        side = self.sides[d]
        if ht == 1:                                              # ClientHello
            self.client_dir = d
            self.client_random = bytes(msg[2:34])
            n = msg[34]
            self.client_sid = bytes(msg[35:35 + n])
            pos = 35 + n
            pos += 2 + struct.unpack_from("!H", msg, pos)[0]
            pos += 1 + msg[pos]
            self.hello_frames.setdefault("client", frame)
            self.versions_offered = [tls_parse.VERSIONS.get(struct.unpack_from("!H", msg, 0)[0], "?")]
            for et, body in _extensions(msg, pos):
                if et == 16:
                    self.alpn_offered = _alpn(body)
                elif et == 42:
                    self.early_offered = True
                elif et == 35 and body:
                    self.ticket = bytes(body)
                elif et == 0 and len(body) >= 5 and body[2] == 0:
                    n = struct.unpack_from("!H", body, 3)[0]
                    self.sni = bytes(body[5:5 + n]).decode("ascii", "replace")
                elif et == 43 and body:
                    vs = struct.unpack_from(f"!{body[0] // 2}H", body, 1)
                    self.versions_offered = [tls_parse.VERSIONS.get(v, hex(v)) for v in vs if (v & 0x0f0f) != 0x0a0a]
        elif ht == 2:                                            # ServerHello (or HelloRetryRequest)
            random = bytes(msg[2:34])
            n = msg[34]
            sid = bytes(msg[35:35 + n])
            pos = 35 + n
            suite = struct.unpack_from("!H", msg, pos)[0]
            pos += 3
            version = struct.unpack_from("!H", msg, 0)[0]
            etm = False
            for et, body in _extensions(msg, pos):
                if et == 43 and len(body) >= 2:
                    version = struct.unpack_from("!H", body)[0]
                elif et == 16:
                    a = _alpn(body)
                    self.alpn = a[0] if a else None
                elif et == 22:
                    etm = True
            if random == HRR_RANDOM:
                self.hrr = True
                return
            self.hello_frames["server"] = frame
            self.server_random, self.server_sid, self.suite, self.version, self.etm = random, sid, suite, version, etm
            self._keys()
            queued, self.queued = self.queued, []
            for rec in queued:
                self._encrypted(*rec)
        elif ht == 4 and self.version == 0x0303:                 # TLS 1.2 NewSessionTicket
            n = struct.unpack_from("!H", msg, 4)[0]
            if self.master is not None:
                self.registry.by_ticket[bytes(msg[6:6 + n])] = self.master
        elif ht == 8:                                            # EncryptedExtensions (TLS 1.3)
            accepted = False
            for et, body in _extensions(msg, 0):
                if et == 16:
                    a = _alpn(body)
                    self.alpn = a[0] if a else None
                elif et == 42:
                    accepted = True
            self.early_accepted = accepted if self.early_offered else None
            self._early_decided()
        elif ht == 13:                                           # CertificateRequest
            self.cert_requested = True
        elif ht == 11 and d != self.client_dir and self.certificate is None:   # Certificate
            if self.version == 0x0304:
                pos = 1 + msg[0]
            else:
                pos = 0
            pos += 3                                            # (the list length)
            n = int.from_bytes(msg[pos:pos + 3], "big")
            self.certificate = certificate_facts(bytes(msg[pos + 3:pos + 3 + n]), ts)
        elif ht == 5 and side.epoch == "early":                  # EndOfEarlyData
            self._advance(side, "handshake")
        elif ht == 20 and self.version == 0x0304 and side.epoch == "handshake":   # Finished
            self.finished[d] = True
            self._advance(side, "app")
        elif ht == 20:
            self.finished[d] = True
        elif ht == 24 and side.cipher is not None and side.cipher.tls13 and side.secret is not None:  # KeyUpdate
            self.key_updates += 1
            side.secret = tls13_next_secret(side.cipher.suite, side.secret)
            side.cipher, side.seq = self._cipher13(side.secret), 0

    def _early_decided(self) -> None:
        if self.client_dir is None:
            return
        side = self.sides[self.client_dir]
        early, side.early = side.early, []
        if self.early_accepted:
            for data, pt_len, frame, ts in early:
                self._app_data(side, self.client_dir, data, pt_len, frame, ts, frame, ts, b"")

    def _advance(self, side: _Side, to: str) -> None:
        """TLS 1.3: the direction's next epoch (`to` or the first after it that has a key)."""
        while side.later:
            name, secret = side.later.pop(0)
            if name == to or to == "handshake" and name == "app":
                side.epoch, side.secret, side.seq = name, secret, 0
                side.cipher = self._cipher13(secret) if secret is not None else None
                side.steady = name == "app" and side.cipher is not None and self.h2 is None
                if secret is None:
                    self.no_key = True
                return

    def _cipher13(self, secret: bytes) -> RecordCipher:
        suite = SUITES[self.suite]
        key, iv = tls13_keys(suite, secret)
        return RecordCipher(suite, key, iv)

    def _keys(self) -> None:
        """The suite is known (ServerHello): the keys of each direction."""
        suite = SUITES.get(self.suite)
        if self.client_dir is None:
            self.problem = "no ClientHello"
            return
        cdir, sdir = self.client_dir, 1 - self.client_dir
        if self.version == 0x0304:
            if suite is None or not suite.tls13:
                self.problem = f"unsupported TLS 1.3 suite {suite_name(self.suite)}"
                return
            get = lambda label: self.keys.get(label, self.client_random)  # noqa: E731
            s = self.sides
            s[sdir].later = [("handshake", get("SERVER_HANDSHAKE_TRAFFIC_SECRET")),
                             ("app", get("SERVER_TRAFFIC_SECRET_0"))]
            s[cdir].later = ([("early", get("CLIENT_EARLY_TRAFFIC_SECRET"))] if self.early_offered else []) + \
                [("handshake", get("CLIENT_HANDSHAKE_TRAFFIC_SECRET")), ("app", get("CLIENT_TRAFFIC_SECRET_0"))]
            if all(sec is None for side in s for _, sec in side.later):
                self.no_key = True
                return
            for side in s:
                name, secret = side.later.pop(0)
                side.epoch, side.secret, side.seq = name, secret, 0
                if side is s[cdir] and name == "handshake" and secret is not None:
                    side.lazy = True             # (see _encrypted: the client's Finished is not read)
                    continue
                side.cipher = self._cipher13(secret) if secret is not None else None
                if secret is None:
                    self.no_key = True
            return
        if self.version != 0x0303:
            self.problem = f"{tls_parse.VERSIONS.get(self.version, hex(self.version))} is not decrypted"
            return
        if suite is None or suite.tls13:
            self.problem = f"unsupported TLS 1.2 suite {suite_name(self.suite)}"
            return
        master = self.keys.get("CLIENT_RANDOM", self.client_random)
        if master is None and self.client_sid and self.client_sid == self.server_sid:
            master = self.registry.by_id.get(self.client_sid)
            self.resumed = master is not None
        if master is None and self.ticket:
            master = self.registry.by_ticket.get(self.ticket)
            self.resumed = master is not None
        if master is None:
            self.no_key = True
            return
        self.master = master
        if self.server_sid:
            self.registry.add_session(self.server_sid, master)
        kb = tls12_keys(suite, master, self.client_random, self.server_random)
        etm = self.etm and suite.cipher == "cbc"
        for d, who in ((cdir, "client"), (sdir, "server")):
            mac, key, iv = kb[who]
            self.pending12[d] = RecordCipher(suite, key, iv, mac, etm)

    def _ccs(self, d: int) -> None:
        side = self.sides[d]
        self.ccs[d] = True
        if self.version == 0x0303:
            c = self.pending12.get(d)
            side.epoch, side.seq = "app", 0
            side.cipher = c
            side.steady = c is not None and c.aead is not None and self.h2 is None
            if c is None:
                side.lost = True

    def broken(self, exc: Exception) -> None:
        """Records this code could not take (a bug met by hostile bytes): the connection
        is read no further, and says so (`gap`, and its problem), never an exception out
        of the analysis."""
        self.problem = self.problem or f"decryption stopped: {type(exc).__name__}: {exc}"[:200]
        for side in self.sides:
            side.lost, side.steady = True, False
            side.undecrypted += 1

    # ------------------------------------------------------------------ results
    def status(self) -> str:
        if self.suite is None:
            return "missing handshake"
        if self.problem and self.problem.startswith(("unsupported", "TLS 1.0", "TLS 1.1", "SSL")):
            return "unsupported"
        decrypted = any(s.decrypted for s in self.sides)
        if not decrypted and (self.no_key and not self.pending12 or any(s.nokey for s in self.sides)):
            return "no key"
        if any(s.failed and not s.decrypted for s in self.sides) or \
                (self.problem or "").startswith("the key log's secrets do not"):
            return "failed"
        if any(s.nokey for s in self.sides):
            return "no key"
        if any(s.skipped or s.missing or s.lost or s.undecrypted or s.failed for s in self.sides) or \
                (self.h2 is not None and self.h2.gaps) or self.skip_mismatch:
            return "gap"
        return "yes"

    def facts(self) -> dict:
        """The TLS columns this session decides (docs/schema.md, "TLS decryption")."""
        out = {"tls_decrypted": self.status(),
               "tls_records_skipped": sum(s.skipped for s in self.sides),
               "tls_cipher_suite": suite_name(self.suite),
               "tls_early_data": None if not self.early_offered else
               ("accepted" if self.early_accepted else "rejected" if self.early_accepted is False else "offered")}
        if self.alpn:
            out["tls_alpn"] = self.alpn
        if self.certificate is not None:
            out["tls_certificate"] = self.certificate
        return out

    def handshake_facts(self) -> dict:
        """The TLS handshake columns, from the records this session read (for a
        connection whose cleartext copies did not show them: inside a CONNECT tunnel)."""
        cd = self.client_dir if self.client_dir is not None else 0
        c, s = self.sides[cd], self.sides[1 - cd]
        tls13 = self.version == 0x0304
        # what the records show whether or not they decrypted (as tls.py reads them
        # without keys): the client's first application-data records; in TLS 1.3 the
        # first is its encrypted Finished
        recs = c.app_records
        done = all(self.finished) or (self.ccs[0] and self.ccs[1] if not tls13 else len(recs) >= 2)
        first = c.first_app or (recs[1 if tls13 else 0] if len(recs) > (1 if tls13 else 0) else None)
        return {"tls": True, "tls_sni": self.sni, "tls_versions_offered": ",".join(self.versions_offered) or None,
                "tls_version": tls_parse.VERSIONS.get(self.version) if self.version else None,
                "tls_alpn_offered": ",".join(self.alpn_offered) or None, "tls_alpn": self.alpn,
                "tls_client_hello_frame": self.hello_frames.get("client"),
                "tls_server_hello_frame": self.hello_frames.get("server"),
                "tls_handshake_complete": bool(done or c.first_app),
                "tls_client_app_data_frame": recs[0][0] if recs else None,
                "tls_client_records": c.records, "tls_server_records": s.records,
                "tls_client_request_frame": first[0] if first and done else None,
                "tls_client_request_ts": first[1] if first and done else None}

    def plaintext(self, d: int) -> tuple[list[Piece], int]:
        """Direction `d`'s plaintext pieces (offset order, the tail last) and its
        plaintext length."""
        side = self.sides[d]
        pieces = list(side.pieces)
        if side.tail is not None:
            at, tail, frame, ts = side.tail
            covered = pieces[-1].offset + len(pieces[-1].data) if pieces else 0
            if at + len(tail) > covered:
                if at < covered:
                    tail, at = tail[covered - at:], covered
                pieces.append(Piece(at, bytes(tail), len(tail), frame, ts, True))
        return pieces, side.pt_off


def _extensions(msg: bytes, pos: int):
    if pos + 2 > len(msg):
        return
    end = min(len(msg), pos + 2 + struct.unpack_from("!H", msg, pos)[0])
    pos += 2
    while pos + 4 <= end:
        et, el = struct.unpack_from("!HH", msg, pos)
        yield et, msg[pos + 4:pos + 4 + el]
        pos += 4 + el


def _alpn(body: bytes) -> list[str]:
    out, p = [], 2
    while p < len(body):
        n = body[p]
        out.append(bytes(body[p + 1:p + 1 + n]).decode("latin-1"))
        p += 1 + n
    return out
