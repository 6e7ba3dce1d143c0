"""Credentials out of reports: query parameters that carry secrets (API keys, tokens,
signatures, passwords) are replaced by REDACTED in every rendered string. Header values
(Authorization, Cookie, Proxy-Authorization, Set-Cookie) are never kept in the first
place; only Host, User-Agent, Server and Retry-After are."""

from __future__ import annotations

import re

import pandas as pd

SECRET_PARAMS = re.compile(
    r"(?i)([?&;](?:api[_-]?key|apikey|key|token|access[_-]?token|auth|authorization|password|passwd|pwd|"
    r"secret|client[_-]?secret|sig|signature|session|sessionid|x-amz-signature|x-amz-credential|code)=)[^&;#\s]*")
USERINFO = re.compile(r"(?i)(\w+://)[^/@\s]+@")

COLUMNS = ("http_last_target",)


def redact_text(s: str | None) -> str | None:
    if s is None or not isinstance(s, str):
        return s
    s = SECRET_PARAMS.sub(r"\1REDACTED", s)
    return USERINFO.sub(r"\1REDACTED@", s)


def redact_frame(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in COLUMNS:
        if col in out:
            out[col] = out[col].map(redact_text, na_action="ignore")
    return out
