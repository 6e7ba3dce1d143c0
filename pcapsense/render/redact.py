"""Credentials out of reports: query parameters that carry secrets (API keys, tokens,
signatures, passwords) are replaced by REDACTED in every rendered string. Header values
(Authorization, Cookie, Proxy-Authorization, Set-Cookie) are never kept in the first
place; only Host, User-Agent, Server and Retry-After are."""

from __future__ import annotations

import re

import numpy as np
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
    """`df` with the credentials in its text columns redacted. The other columns are
    shared with `df`, not copied (a deep copy of the connections table was 60 MiB at
    10M packets); each distinct value is redacted once."""
    out = df.copy(deep=False)
    for col in COLUMNS:
        if col in out:
            out[col] = _redact_column(out[col])
    return out


def _redact_column(s: pd.Series) -> pd.Series:
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    uniques = list(uniques)
    redacted = [redact_text(u) for u in uniques]
    if redacted == uniques:
        return s                                   # nothing to hide: the column as it was
    values = s.to_numpy(dtype=object, copy=True)
    present = codes >= 0
    values[present] = np.asarray(redacted, dtype=object)[codes[present]]
    return pd.Series(values, index=s.index, dtype=s.dtype, name=s.name)
