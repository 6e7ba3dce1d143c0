"""Stage 4c: TLS record layer and handshake facts (sans-IO: pieces in, facts out).

Records and the few handshake messages pcapsense needs (ClientHello, ServerHello,
Certificate in TLS <= 1.2, cleartext alerts) are parsed here with `struct`: it is a
length-prefixed format of a dozen fields, and the maintained TLS libraries (OpenSSL,
tlslite) terminate connections rather than parse a passive copy. Certificates are
decoded with `cryptography` (certificate_facts; tls_session.py reads TLS 1.3's, which
only a key log shows).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .segments import Piece

ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 21: "decryption_failed",
          22: "record_overflow", 40: "handshake_failure", 42: "bad_certificate",
          43: "unsupported_certificate", 44: "certificate_revoked", 45: "certificate_expired",
          46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca", 49: "access_denied",
          50: "decode_error", 51: "decrypt_error", 70: "protocol_version", 71: "insufficient_security",
          80: "internal_error", 86: "inappropriate_fallback", 90: "user_canceled",
          109: "missing_extension", 110: "unsupported_extension", 112: "unrecognized_name",
          113: "bad_certificate_status_response", 115: "unknown_psk_identity",
          116: "certificate_required", 120: "no_application_protocol"}
VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}


@dataclass
class Alert:
    frame: int
    ts_ns: int
    level: int | None          # 1 warning, 2 fatal; None when encrypted (guessed by size)
    description: str
    encrypted: bool = False


@dataclass
class TlsSide:
    """What one direction showed."""

    records: int = 0
    hello: str | None = None                 # "client_hello" | "server_hello"
    hello_frame: int | None = None
    versions: list[str] = field(default_factory=list)   # offered (client) / chosen (server)
    sni: str | None = None
    alpn: list[str] = field(default_factory=list)
    ciphers: int = 0
    suite: int | None = None                 # the cipher suite the ServerHello chose
    certificate: dict | None = None
    ccs_frame: int | None = None
    app_data: list[tuple[int, int]] = field(default_factory=list)   # (frame, ts) of the first 2 records
    alerts: list[Alert] = field(default_factory=list)
    handshake_msgs: list[int] = field(default_factory=list)

    @property
    def first_app_data_frame(self) -> int | None:
        return self.app_data[0][0] if self.app_data else None


def looks_like_tls(data: bytes) -> bool:
    return len(data) >= 6 and data[0] == 0x16 and data[1] == 0x03 and data[2] <= 0x04


def _exts(buf: bytes, side: TlsSide, client: bool) -> None:
    pos = 0
    while pos + 4 <= len(buf):
        et, el = struct.unpack_from("!HH", buf, pos)
        body = buf[pos + 4: pos + 4 + el]
        pos += 4 + el
        if et == 0 and client and len(body) >= 5:          # server_name
            n = struct.unpack_from("!H", body, 3)[0]
            side.sni = body[5:5 + n].decode("ascii", "replace") if body[2] == 0 else None
        elif et == 16 and len(body) >= 2:                   # ALPN
            p = 2
            while p < len(body):
                n = body[p]
                side.alpn.append(body[p + 1:p + 1 + n].decode("latin-1"))
                p += 1 + n
        elif et == 43:                                      # supported_versions
            if client and body:
                n = body[0]
                side.versions = [VERSIONS.get(v, hex(v)) for v in
                                 struct.unpack_from(f"!{n // 2}H", body, 1) if (v & 0x0f0f) != 0x0a0a]
            elif len(body) >= 2:
                side.versions = [VERSIONS.get(struct.unpack_from("!H", body)[0], "?")]


def _hello(msg: bytes, side: TlsSide, client: bool) -> None:
    try:
        ver = struct.unpack_from("!H", msg, 0)[0]
        pos = 2 + 32
        sid = msg[pos]
        pos += 1 + sid
        if client:
            n = struct.unpack_from("!H", msg, pos)[0]
            side.ciphers = n // 2
            pos += 2 + n
            pos += 1 + msg[pos]
        else:
            side.suite = struct.unpack_from("!H", msg, pos)[0]
            pos += 2 + 1
        side.versions = [VERSIONS.get(ver, hex(ver))]
        if pos + 2 <= len(msg):
            n = struct.unpack_from("!H", msg, pos)[0]
            _exts(msg[pos + 2: pos + 2 + n], side, client)
    except (IndexError, struct.error):
        pass


def _certificate(msg: bytes, side: TlsSide, ts_ns: int) -> None:
    n = int.from_bytes(msg[3:6], "big")
    side.certificate = certificate_facts(bytes(msg[6:6 + n]), ts_ns)


_CERTS: dict[bytes, tuple | None] = {}     # DER -> (facts, not_before_s, not_after_s): one parse per certificate


def certificate_facts(der: bytes, at_ns: int | None = None) -> dict | None:
    """Subject, issuer, SAN, validity and days to expiry of a DER certificate (at the
    time of the handshake, `at_ns`), or None if it does not parse. A server's many
    connections show the same certificate: it is parsed once."""
    got = _CERTS.get(der, False)
    if got is False:
        got = _CERTS[der] = _parse_certificate(der)
        if len(_CERTS) > 4096:
            _CERTS.clear()
    if got is None:
        return None
    base, nb, na = got
    out = dict(base)
    if at_ns:
        at = at_ns / 1e9
        out["days_to_expiry"] = round((na - at) / 86400, 1)
        out["expired"] = at > na
        out["not_yet_valid"] = at < nb
    return out


def _parse_certificate(der: bytes) -> tuple | None:
    try:
        from cryptography import x509
        cert = x509.load_der_x509_certificate(der)
    except Exception:  # noqa: BLE001 - a cut or odd certificate is not an error
        return None
    out = {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
           "not_before": cert.not_valid_before_utc.isoformat(), "not_after": cert.not_valid_after_utc.isoformat(),
           "self_signed": cert.subject == cert.issuer}
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        out["san"] = [str(v.value) for v in san]
    except Exception:  # noqa: BLE001 - no SAN extension
        out["san"] = []
    return out, cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()


def parse_direction(pieces: list[Piece], client: bool) -> TlsSide:
    """Walk the records of one direction while the bytes are contiguous; the engine's
    end-of-direction copy is searched for a final alert (cleartext, or the 19-byte
    encrypted record of TLS 1.3 that is almost always an alert)."""
    side = TlsSide()
    buf, start, frames = b"", 0, []
    handshake_buf = b""
    for p in pieces:
        if p.tail:
            continue
        if p.offset != start + len(buf):
            break                            # gap: stop walking records
        buf += p.data
        frames.append((start + len(buf), p.frame, p.ts_ns))
        if len(p.data) < p.length:
            break
    pos = 0

    def frame_at(off):
        for end, fr, ts in frames:
            if off < end:
                return fr, ts
        return frames[-1][1:] if frames else (0, 0)

    while pos + 5 <= len(buf):
        ctype, ver, ln = struct.unpack_from("!BHH", buf, pos)
        if ctype not in (20, 21, 22, 23, 24) or (ver >> 8) != 3:
            break
        body = buf[pos + 5: pos + 5 + ln]
        fr, ts = frame_at(pos)
        side.records += 1
        if ctype == 22 and side.ccs_frame is None:
            handshake_buf += body
            while len(handshake_buf) >= 4:
                ht = handshake_buf[0]
                hl = int.from_bytes(handshake_buf[1:4], "big")
                if len(handshake_buf) < 4 + hl:
                    break                    # continues in the next record
                msg = handshake_buf[4:4 + hl]
                side.handshake_msgs.append(ht)
                if ht == 1 and client:
                    side.hello, side.hello_frame = "client_hello", fr
                    _hello(msg, side, True)
                elif ht == 2 and not client:
                    side.hello, side.hello_frame = "server_hello", fr
                    _hello(msg, side, False)
                elif ht == 11 and not client:
                    _certificate(msg, side, ts)
                handshake_buf = handshake_buf[4 + hl:]
        elif ctype == 20:
            side.ccs_frame = side.ccs_frame or fr
        elif ctype == 21:
            if len(body) == 2 and side.ccs_frame is None:
                side.alerts.append(Alert(fr, ts, body[0], ALERTS.get(body[1], str(body[1]))))
            else:
                side.alerts.append(Alert(fr, ts, None, "encrypted alert", encrypted=True))
        elif ctype == 23:
            if len(side.app_data) < 2:
                side.app_data.append((fr, ts))
        pos += 5 + ln
    for p in pieces:
        if not p.tail:
            continue
        d = p.data
        if len(d) >= 7 and d[-7] == 21 and d[-6] == 3 and d[-4:-2] == b"\x00\x02" and side.ccs_frame is None:
            side.alerts.append(Alert(p.frame, p.ts_ns, d[-2], ALERTS.get(d[-1], str(d[-1]))))
        elif (len(d) >= 24 and d[-24] in (21, 23) and d[-23] == 3 and d[-21:-19] == b"\x00\x13") or \
                (len(d) >= 16 and d[-16] == 23 and d[-15] == 3 and d[-13:-11] == b"\x00\x0b"):   # (AES-CCM_8)
            if not any(a.frame == p.frame for a in side.alerts):
                side.alerts.append(Alert(p.frame, p.ts_ns, None, "encrypted alert", encrypted=True))
    return side
