"""TLS record protection: the cipher suites pcapsense decrypts, their key derivation
(TLS 1.2's PRF, TLS 1.3's HKDF-Expand-Label) and record decryption, whole or in part.

The primitives are `cryptography`'s (AES-GCM, AES-CCM, ChaCha20-Poly1305, AES-CBC,
HMAC, HKDF). What is written here is the TLS framing around them, which no maintained
library exposes for a passive copy of a connection: the nonce and AAD of each record
(RFC 5288, 7905, 8446 §5.2-5.3), the TLS 1.2 PRF (RFC 5246 §5; `cryptography` has none)
and the key block layout.

Partial decryption: AEAD suites are counter mode, so the first bytes of a record (an
HTTP head) and its last bytes (TLS 1.3's inner content type) decrypt on their own with
the cipher's keystream at that offset (AES-CTR for GCM and CCM, ChaCha20 with its block
counter). That cannot verify the record's tag, which covers every byte: only records
copied whole are verified (`decrypt_whole`), which includes every handshake record,
every small record and the first record after a gap (how a resynchronisation is
confirmed). A partly decrypted record is trusted because the records around it verified
under the same key and sequence. CBC suites: a block decrypts with the previous
ciphertext block (the explicit IV for the first), so heads and tails work the same way;
the MAC is checked on whole records only.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand


@dataclass(frozen=True)
class Suite:
    name: str
    cipher: str          # "gcm", "ccm", "ccm8", "chacha", "cbc"
    key_len: int
    hash: str            # PRF / HKDF hash: "sha256" or "sha384"
    mac: str | None = None   # CBC: the record MAC's hash ("sha1", "sha256", "sha384")
    tls13: bool = False

    @property
    def mac_len(self) -> int:
        return {"sha1": 20, "sha256": 32, "sha384": 48}.get(self.mac or "", 0)

    @property
    def tag_len(self) -> int:
        return 8 if self.cipher == "ccm8" else 16


def _s(name, cipher, key_len, hsh, mac=None, tls13=False):
    return Suite(name, cipher, key_len, hsh, mac, tls13)


SUITES: dict[int, Suite] = {
    0x1301: _s("TLS_AES_128_GCM_SHA256", "gcm", 16, "sha256", tls13=True),
    0x1302: _s("TLS_AES_256_GCM_SHA384", "gcm", 32, "sha384", tls13=True),
    0x1303: _s("TLS_CHACHA20_POLY1305_SHA256", "chacha", 32, "sha256", tls13=True),
    0x1304: _s("TLS_AES_128_CCM_SHA256", "ccm", 16, "sha256", tls13=True),
    0x1305: _s("TLS_AES_128_CCM_8_SHA256", "ccm8", 16, "sha256", tls13=True),
    # TLS 1.2 AEAD
    0x009C: _s("TLS_RSA_WITH_AES_128_GCM_SHA256", "gcm", 16, "sha256"),
    0x009D: _s("TLS_RSA_WITH_AES_256_GCM_SHA384", "gcm", 32, "sha384"),
    0x009E: _s("TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "gcm", 16, "sha256"),
    0x009F: _s("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", "gcm", 32, "sha384"),
    0xC02B: _s("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "gcm", 16, "sha256"),
    0xC02C: _s("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "gcm", 32, "sha384"),
    0xC02F: _s("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "gcm", 16, "sha256"),
    0xC030: _s("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "gcm", 32, "sha384"),
    0xCCA8: _s("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "chacha", 32, "sha256"),
    0xCCA9: _s("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "chacha", 32, "sha256"),
    0xCCAA: _s("TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "chacha", 32, "sha256"),
    0xC09C: _s("TLS_RSA_WITH_AES_128_CCM", "ccm", 16, "sha256"),
    0xC09D: _s("TLS_RSA_WITH_AES_256_CCM", "ccm", 32, "sha256"),
    0xC0A0: _s("TLS_RSA_WITH_AES_128_CCM_8", "ccm8", 16, "sha256"),
    0xC0A1: _s("TLS_RSA_WITH_AES_256_CCM_8", "ccm8", 32, "sha256"),
    0xC0AC: _s("TLS_ECDHE_ECDSA_WITH_AES_128_CCM", "ccm", 16, "sha256"),
    0xC0AD: _s("TLS_ECDHE_ECDSA_WITH_AES_256_CCM", "ccm", 32, "sha256"),
    0xC0AE: _s("TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8", "ccm8", 16, "sha256"),
    0xC0AF: _s("TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8", "ccm8", 32, "sha256"),
    # TLS 1.2 CBC
    0x002F: _s("TLS_RSA_WITH_AES_128_CBC_SHA", "cbc", 16, "sha256", "sha1"),
    0x0035: _s("TLS_RSA_WITH_AES_256_CBC_SHA", "cbc", 32, "sha256", "sha1"),
    0x003C: _s("TLS_RSA_WITH_AES_128_CBC_SHA256", "cbc", 16, "sha256", "sha256"),
    0x003D: _s("TLS_RSA_WITH_AES_256_CBC_SHA256", "cbc", 32, "sha256", "sha256"),
    0x0033: _s("TLS_DHE_RSA_WITH_AES_128_CBC_SHA", "cbc", 16, "sha256", "sha1"),
    0x0039: _s("TLS_DHE_RSA_WITH_AES_256_CBC_SHA", "cbc", 32, "sha256", "sha1"),
    0x0067: _s("TLS_DHE_RSA_WITH_AES_128_CBC_SHA256", "cbc", 16, "sha256", "sha256"),
    0x006B: _s("TLS_DHE_RSA_WITH_AES_256_CBC_SHA256", "cbc", 32, "sha256", "sha256"),
    0xC009: _s("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "cbc", 16, "sha256", "sha1"),
    0xC00A: _s("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "cbc", 32, "sha256", "sha1"),
    0xC013: _s("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "cbc", 16, "sha256", "sha1"),
    0xC014: _s("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "cbc", 32, "sha256", "sha1"),
    0xC023: _s("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "cbc", 16, "sha256", "sha256"),
    0xC024: _s("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", "cbc", 32, "sha384", "sha384"),
    0xC027: _s("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "cbc", 16, "sha256", "sha256"),
    0xC028: _s("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", "cbc", 32, "sha384", "sha384"),
}

_HASH = {"sha256": hashes.SHA256, "sha384": hashes.SHA384}
_HASH_LEN = {"sha256": 32, "sha384": 48}


def suite_name(code: int | None) -> str | None:
    if code is None:
        return None
    s = SUITES.get(code)
    return s.name if s else f"0x{code:04X}"


# ------------------------------------------------------------------ key derivation

def prf12(secret: bytes, label: bytes, seed: bytes, n: int, hash_name: str = "sha256") -> bytes:
    """TLS 1.2's PRF: P_hash(secret, label + seed), n bytes (RFC 5246 §5), with the
    stdlib's one-shot HMAC."""
    seed = label + seed
    a, out = seed, b""
    while len(out) < n:
        a = hmac.digest(secret, a, hash_name)
        out += hmac.digest(secret, a + seed, hash_name)
    return out[:n]


def hkdf_expand_label(secret: bytes, label: str, length: int, hash_name: str, context: bytes = b"") -> bytes:
    """TLS 1.3's HKDF-Expand-Label (RFC 8446 §7.1). Every label TLS 1.3 expands here
    (key, iv, traffic upd) asks for at most one hash length, so HKDF-Expand is its
    first block, HMAC(secret, info || 0x01) (RFC 5869 §2.3), computed with the stdlib's
    one-shot hmac.digest: a fifth of the time of an HKDFExpand object (about 20 us a
    connection with four epochs). Longer outputs go through cryptography's HKDFExpand."""
    info = _INFO.get((label, length, context))
    if info is None:
        full = b"tls13 " + label.encode()
        info = _INFO[(label, length, context)] = \
            struct.pack("!HB", length, len(full)) + full + bytes([len(context)]) + context
    if length <= _HASH_LEN[hash_name]:
        return hmac.digest(secret, info + b"\x01", hash_name)[:length]
    return HKDFExpand(_HASH[hash_name](), length, info).derive(secret)


_INFO: dict = {}      # (label, length, context) -> HkdfLabel bytes


def tls13_keys(suite: Suite, secret: bytes) -> tuple[bytes, bytes]:
    """(key, iv) of a TLS 1.3 traffic secret."""
    return (hkdf_expand_label(secret, "key", suite.key_len, suite.hash),
            hkdf_expand_label(secret, "iv", 12, suite.hash))


def tls13_next_secret(suite: Suite, secret: bytes) -> bytes:
    """The traffic secret after a KeyUpdate (RFC 8446 §7.2)."""
    return hkdf_expand_label(secret, "traffic upd", _HASH_LEN[suite.hash], suite.hash)


def tls12_keys(suite: Suite, master: bytes, client_random: bytes, server_random: bytes) -> dict:
    """The TLS 1.2 key block split by direction: {"client": (mac_key, key, iv), "server": ...}."""
    iv_len = 12 if suite.cipher == "chacha" else (4 if suite.cipher in ("gcm", "ccm", "ccm8") else 16)
    m, k = suite.mac_len, suite.key_len
    block = prf12(master, b"key expansion", server_random + client_random, 2 * (m + k + iv_len), suite.hash)
    cm, sm = block[:m], block[m:2 * m]
    ck, sk = block[2 * m:2 * m + k], block[2 * m + k:2 * m + 2 * k]
    civ, siv = block[2 * m + 2 * k:2 * m + 2 * k + iv_len], block[2 * m + 2 * k + iv_len:2 * m + 2 * k + 2 * iv_len]
    return {"client": (cm, ck, civ), "server": (sm, sk, siv)}


# ------------------------------------------------------------------ record decryption

_HDR = struct.Struct("!BHH")
_AAD12 = struct.Struct("!QBHH")


def _xor_seq(iv: bytes, seq: int) -> bytes:
    return (int.from_bytes(iv, "big") ^ seq).to_bytes(12, "big")


class RecordCipher:
    """One direction's protection under one key (a TLS 1.2 direction after its
    ChangeCipherSpec; a TLS 1.3 epoch). `seq` is the record's sequence number under this
    key. Bodies are the record after its 5-byte header."""

    __slots__ = ("suite", "key", "iv", "mac_key", "etm", "tls13", "aead", "tag_len", "xor_nonce", "iv_int",
                 "explicit")

    def __init__(self, suite: Suite, key: bytes, iv: bytes, mac_key: bytes = b"", etm: bool = False):
        self.suite, self.key, self.iv, self.mac_key, self.etm = suite, key, iv, mac_key, etm
        c = suite.cipher
        self.tls13 = suite.tls13
        if c == "gcm":
            self.aead = AESGCM(key)
        elif c == "chacha":
            self.aead = ChaCha20Poly1305(key)
        elif c in ("ccm", "ccm8"):
            self.aead = AESCCM(key, tag_length=suite.tag_len)
        else:
            self.aead = None
        self.tag_len = suite.tag_len if self.aead is not None else 0
        self.xor_nonce = self.tls13 or c == "chacha"          # nonce = iv XOR seq (RFC 8446, 7905)
        self.iv_int = int.from_bytes(iv, "big") if self.xor_nonce else 0
        # TLS 1.2 GCM/CCM records start with an 8-byte explicit nonce, CBC ones with the IV
        self.explicit = 8 if (not self.tls13 and c in ("gcm", "ccm", "ccm8")) else (16 if c == "cbc" else 0)

    # nonce of a record (AEAD)
    def _nonce(self, seq: int, body: bytes) -> bytes:
        if self.xor_nonce:
            return (self.iv_int ^ seq).to_bytes(12, "big")
        return self.iv + bytes(body[:8])

    def overhead(self) -> int:
        """Bytes of an AEAD record's body that are not plaintext (explicit nonce, tag)."""
        return self.explicit + self.tag_len

    # -------------------------------------------------------------- whole records
    def decrypt_whole(self, seq: int, rtype: int, version: int, body: bytes) -> bytes | None:
        """The plaintext of a whole record (TLS 1.3: the inner plaintext, content type
        and padding included), its tag or MAC verified; None when it does not verify
        (wrong key, wrong sequence number, damaged)."""
        try:
            if self.aead is not None:
                nonce = self._nonce(seq, body)
                ct = body[self.explicit:]
                if len(ct) < self.tag_len:
                    return None
                if self.tls13:
                    aad = _HDR.pack(rtype, version, len(body))
                else:
                    aad = _AAD12.pack(seq, rtype, version, len(ct) - self.tag_len)
                return self.aead.decrypt(nonce, ct, aad)
            return self._cbc_whole(seq, rtype, version, body)
        except InvalidTag:
            return None

    def _cbc_whole(self, seq, rtype, version, body) -> bytes | None:
        m = self.suite.mac_len
        digest = getattr(hashlib, self.suite.mac)
        if self.etm:
            if len(body) < 16 + 16 + m or (len(body) - 16 - m) % 16:
                return None
            ivc, mac = body[:len(body) - m], body[len(body) - m:]
            want = hmac.new(self.mac_key, struct.pack("!QBHH", seq, rtype, version, len(ivc)) + bytes(ivc),
                            digest).digest()
            if not hmac.compare_digest(want, bytes(mac)):
                return None
            pt = self._cbc_blocks(bytes(body[:16]), bytes(ivc[16:]))
            pad = pt[-1]
            if pad + 1 > len(pt):
                return None
            return pt[:len(pt) - pad - 1]
        if len(body) < 32 or len(body) % 16:
            return None
        pt = self._cbc_blocks(bytes(body[:16]), bytes(body[16:]))
        pad = pt[-1]
        if pad + 1 + m > len(pt):
            return None
        data, mac = pt[:len(pt) - pad - 1 - m], pt[len(pt) - pad - 1 - m:len(pt) - pad - 1]
        want = hmac.new(self.mac_key, struct.pack("!QBHH", seq, rtype, version, len(data)) + data, digest).digest()
        return data if hmac.compare_digest(want, mac) else None

    def _cbc_blocks(self, iv: bytes, ct: bytes) -> bytes:
        d = Cipher(algorithms.AES(self.key), modes.CBC(iv)).decryptor()
        return d.update(ct) + d.finalize()

    # -------------------------------------------------------------- parts of records
    def keystream_xor(self, seq: int, body_head: bytes, at: int, data: bytes) -> bytes:
        """`data` decrypted as the ciphertext at offset `at` of the record's ciphertext
        (after any explicit nonce; AEAD suites only), without verifying anything.
        `body_head`: the record body's first bytes (TLS 1.2's explicit nonce)."""
        if not data:
            return b""
        c = self.suite.cipher
        nonce = self._nonce(seq, body_head)
        if c == "gcm":
            blk, skip = divmod(at, 16)
            ctr = nonce + (2 + blk).to_bytes(4, "big")
            algo, mode = algorithms.AES(self.key), modes.CTR(ctr)
        elif c in ("ccm", "ccm8"):
            blk, skip = divmod(at, 16)
            ctr = b"\x02" + nonce + (1 + blk).to_bytes(3, "big")
            algo, mode = algorithms.AES(self.key), modes.CTR(ctr)
        else:                                                  # chacha
            blk, skip = divmod(at, 64)
            algo, mode = algorithms.ChaCha20(self.key, (1 + blk).to_bytes(4, "little") + nonce), None
        d = Cipher(algo, mode).decryptor()
        return d.update(bytes(skip) + bytes(data))[skip:]

    def decrypt_head(self, seq: int, body_head: bytes, body_len: int) -> bytes:
        """The plaintext at the start of a record of which only the first bytes of the
        body are here (possibly including tag bytes if the head reaches the end: the
        caller trims to the plaintext length)."""
        if self.aead is not None:
            return self.keystream_xor(seq, body_head, 0, body_head[self.explicit:])
        n = (len(body_head) - 16) // 16 * 16                   # CBC: whole blocks after the IV
        if n <= 0:
            return b""
        return self._cbc_blocks(bytes(body_head[:16]), bytes(body_head[16:16 + n]))

    def decrypt_tail(self, seq: int, body_head: bytes, tail: bytes, body_len: int) -> bytes:
        """The plaintext of the record's last bytes (`tail`, the body's last len(tail)
        bytes), tag or MAC bytes removed, padding kept: TLS 1.3's inner content type is
        its last non-zero byte."""
        if self.aead is not None:
            ct_len = body_len - self.explicit - self.tag_len
            keep = len(tail) - self.tag_len
            if keep <= 0:
                return b""
            return self.keystream_xor(seq, body_head, ct_len - keep, tail[:keep])
        return b""

    def cbc_plaintext_len(self, tail: bytes, body_len: int) -> int | None:
        """A CBC record's plaintext length from its last two ciphertext blocks (the
        padding length), None if the tail is too short."""
        m = self.suite.mac_len
        ct_end = len(tail) - (m if self.etm else 0)
        if ct_end < 32:
            return None
        last2 = bytes(tail[ct_end - 32:ct_end])
        p = self._cbc_blocks(last2[:16], last2[16:])
        pad = p[-1]
        ct_len = body_len - 16 - (m if self.etm else 0)
        n = ct_len - pad - 1 - (0 if self.etm else m)
        return n if n >= 0 else None
