"""What every report says of TLS decryption: that a key log was used, where it came
from and what it decrypted, in one line (terminal, Markdown, HTML), never what it held.
The JSON has the same facts as `capture.tls_keys` and `tls_decrypted` per connection."""

from __future__ import annotations

import pandas as pd


def keys_line(cap, df: pd.DataFrame) -> str | None:
    """'TLS decrypted with keys.txt (312 secrets): 5 of 6 TLS connections; 1 without its
    keys' (None when no key log or secrets block was used)."""
    info = getattr(cap, "tls_keys", None)
    if info is None:
        return None
    src = ", ".join(info.get("sources") or []) or "-"
    col = df["tls_decrypted"] if "tls_decrypted" in df else pd.Series(dtype=object)
    counts = col.dropna().astype(str).value_counts()
    total = int(counts.sum())
    ok = int(counts.get("yes", 0))
    rest = [f"{int(n)} {_WORDS.get(k, k)}" for k, n in counts.items() if k != "yes"]
    line = (f"TLS decrypted with {src} ({info.get('secrets', 0)} secrets): {ok} of {total} TLS connections"
            + (f"; {', '.join(rest)}" if rest else ""))
    if info.get("records_lost"):
        line += f"; {info['records_lost']} records lost to holes in the capture, the rest found again"
    return line


_WORDS = {"no key": "without their keys", "missing handshake": "without a captured handshake",
          "gap": "with records lost", "failed": "whose keys did not fit", "unsupported": "of an unsupported version or suite"}
