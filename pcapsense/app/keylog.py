"""TLS key logs (the NSS `SSLKEYLOGFILE` format, RFC 9850): the secrets that decrypt a
capture's TLS connections, from files, from `$SSLKEYLOGFILE`, or from the Decryption
Secrets Blocks of a pcapng (`editcap --inject-secrets tls,keys.txt`).

A key log is a secret. Nothing here prints, logs or returns a secret in a message:
warnings name the source and the line number and say what was wrong, never the line.

Parsing follows RFC 9850 (and what Wireshark accepts): `LABEL CLIENT_RANDOM SECRET` in
hex of either case, CR/LF/CRLF line ends, `#` comments and empty lines skipped, the
last line for a (label, random) wins, unknown labels (QUIC_*, ECH_*, OpenSSL's
CLIENT_TRAFFIC_SECRET_N after a KeyUpdate, which pcapsense derives itself) ignored.
Hand-written: it is a three-field line format, and no maintained library parses it
without also being a TLS endpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

#: the labels pcapsense uses, with the secret length each must have (None: a hash
#: length, 32 or 48 bytes)
LABELS = {
    "CLIENT_RANDOM": 48,                     # TLS <= 1.2 master secret
    "CLIENT_EARLY_TRAFFIC_SECRET": None,
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET": None,
    "SERVER_HANDSHAKE_TRAFFIC_SECRET": None,
    "CLIENT_TRAFFIC_SECRET_0": None,
    "SERVER_TRAFFIC_SECRET_0": None,
}
#: labels that are valid but not needed to decrypt
KNOWN_UNUSED = {"EXPORTER_SECRET", "EARLY_EXPORTER_SECRET", "RSA", "PMS_CLIENT_RANDOM",
                "CLIENT_TRAFFIC_SECRET_N", "SERVER_TRAFFIC_SECRET_N", "ECH_SECRET", "ECH_CONFIG"}
#: pcapng Decryption Secrets Block types
DSB_TLS = 0x544C534B
DSB_NAMES = {0x5353484B: "SSH", 0x57474B4C: "WireGuard", 0x55414B4C: "OPC UA", 0x5A4E574B: "Zigbee NWK",
             0x5A415053: "Zigbee APS"}
MAX_WARNINGS = 5
#: a path given with this prefix came from $SSLKEYLOGFILE (the CLI): said so in its source
ENV_SOURCE = "$SSLKEYLOGFILE="


@dataclass
class KeyLog:
    """Secrets by label and ClientHello random (bytes -> bytes), the sources they came
    from (descriptions only) and the problems met (one-line warnings, no secret in
    them)."""

    secrets: dict[str, dict[bytes, bytes]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lines: int = 0                   # secret lines accepted
    _bad: dict[str, int] = field(default_factory=dict)

    def get(self, label: str, random: bytes) -> bytes | None:
        return self.secrets.get(label, {}).get(random)

    def randoms(self) -> bytes:
        """Every ClientHello random with a usable secret, 32 bytes each, joined (what
        the engine frames: Engine.set_tls_randoms)."""
        seen: set[bytes] = set()
        for label in LABELS:
            seen.update(self.secrets.get(label, {}))
        return b"".join(sorted(seen))

    def __len__(self) -> int:
        return sum(len(v) for k, v in self.secrets.items() if k in LABELS)

    def add_text(self, text: bytes | str, source: str) -> None:
        """Parse key log text from `source` (a description: a path, "pcapng secrets
        block 2"), adding its secrets (later lines win)."""
        if isinstance(text, bytes):
            text = text.decode("ascii", "replace")
        self.sources.append(source)
        bad: list[tuple[int, str]] = []
        for no, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            label = parts[0]
            if label in KNOWN_UNUSED or label.startswith(("QUIC_", "ECH_")):
                continue
            if label not in LABELS:
                bad.append((no, f"unknown label {label[:40]!r}" if label.replace("_", "").isalnum()
                            else "not a key log line"))
                continue
            if len(parts) != 3:
                bad.append((no, f"{label}: expected 3 fields, found {len(parts)}"))
                continue
            try:
                random, secret = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
            except ValueError:
                bad.append((no, f"{label}: the random or the secret is not hex"))
                continue
            want = LABELS[label]
            if len(random) != 32:
                bad.append((no, f"{label}: the client random has {len(random)} bytes, not 32"))
                continue
            if (want is not None and len(secret) != want) or (want is None and len(secret) not in (32, 48)):
                bad.append((no, f"{label}: the secret has {len(secret)} bytes, not "
                                f"{want if want is not None else '32 or 48'}"))
                continue
            self.secrets.setdefault(label, {})[random] = secret
            self.lines += 1
        for no, why in bad[:MAX_WARNINGS]:
            self.warnings.append(f"key log {source} line {no}: {why}; line ignored")
        if len(bad) > MAX_WARNINGS:
            self.warnings.append(f"key log {source}: {len(bad) - MAX_WARNINGS} more lines ignored")

    def add_file(self, path: str, source: str | None = None) -> None:
        """Read a key log file; an unreadable one is a warning, not an error (the
        capture is still analysed, without those keys)."""
        desc = source or path
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            self.warnings.append(f"key log {desc}: cannot read it ({exc.strerror or exc}); "
                                 "TLS analysed without those keys")
            return
        self.add_text(data, desc)

    def add_block(self, secrets_type: int, data: bytes, number: int) -> None:
        """A pcapng Decryption Secrets Block (the `number`th of the capture)."""
        if secrets_type == DSB_TLS:
            self.add_text(data, f"pcapng secrets block {number}")
        else:
            name = DSB_NAMES.get(secrets_type, f"type 0x{secrets_type:08x}")
            self.warnings.append(f"pcapng secrets block {number}: {name} secrets, not TLS; ignored")


def load(paths) -> KeyLog | None:
    """The key log of `paths` (a path or a list of them; a path prefixed with
    ENV_SOURCE came from `$SSLKEYLOGFILE`). None when there is none (no decryption
    unless the capture carries secrets blocks)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in (paths or [])]
    if not paths:
        return None
    kl = KeyLog()
    for p in paths:
        if p.startswith(ENV_SOURCE):
            p = p[len(ENV_SOURCE):]
            kl.add_file(p, source=f"$SSLKEYLOGFILE ({p})")
        else:
            kl.add_file(p)
    return kl
