"""Credentials out of reports: query parameters that carry secrets (API keys, tokens,
signatures, passwords) are replaced by REDACTED in every rendered string. Header values
(Authorization, Cookie, Proxy-Authorization, Set-Cookie) are never kept in the first
place; only Host, User-Agent, Server and Retry-After are."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..memory import shared_strings

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


#: credentials a log line may carry beside an exception (headers, keys as arguments)
LOG_SECRETS = re.compile(
    r"(?i)((?:authorization|proxy-authorization|cookie|set-cookie|x-api-key|api[_-]?key|apikey|"
    r"access[_-]?token|password|passwd|secret|token)['\"]?\s*[:=]\s*['\"]?)"
    r"(?:(?:bearer|basic|token)\s+)?[^'\"\s,;&}]+")


def redact_log_text(s: str | None) -> str | None:
    """redact_text, and the header and key=value credentials a log line may hold."""
    if s is None or not isinstance(s, str):
        return s
    return redact_text(LOG_SECRETS.sub(r"\1REDACTED", s))


def redact_frame(df: pd.DataFrame, columns=COLUMNS) -> pd.DataFrame:
    """`df` with the credentials in its text `columns` redacted (redact_column). The
    other columns are shared with `df`, not copied (a deep copy cost the CLI 37 MiB of
    peak at 10M packets)."""
    out = df.copy(deep=False)
    for col in columns:
        if col not in out:
            continue
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            if pd.api.types.is_string_dtype(out[col].cat.categories):
                out[col] = _redact_categories(out[col])
        elif pd.api.types.is_string_dtype(out[col]) or out[col].dtype == object:
            out[col] = redact_column(out[col])
    return out


def _redact_categories(s: pd.Series) -> pd.Series:
    """A column of text categories (bounded.py keeps repeated texts so) redacted: each
    category once; categories that become equal are merged. The result is what
    `pd.Categorical` makes of the redacted values (the categories seen, sorted), built
    from the codes: making it from the values took a million-row column's objects and
    their hashing (126 MB of an HTML report's peak on a 1M-connection flood)."""
    cats = [redact_text(c) for c in s.cat.categories.tolist()]
    codes = s.cat.codes.to_numpy()
    seen = np.flatnonzero(np.bincount(codes[codes >= 0], minlength=len(cats)))
    uniq = sorted({cats[i] for i in seen.tolist()})
    where = {v: k for k, v in enumerate(uniq)}
    lut = np.array([where.get(c, -1) for c in cats] + [-1], dtype=np.int64)      # (the last: code -1)
    return pd.Series(pd.Categorical.from_codes(lut[codes], categories=uniq), index=s.index)


def redact_column(s: pd.Series) -> pd.Series:
    """`redact_text` of every value of a text column. Python strings (object columns):
    each distinct value redacted once, one string object per value; values that are not
    text (certificates as dicts) are kept. pandas text columns (Arrow strings): only
    the values that can hold a secret, those with one of `?&;@` (the patterns above need
    one), are looked at; mapping all of them made a Python string of every row (25 MiB
    for the details of 85k connections)."""
    if s.dtype == object:
        try:
            return pd.Series(shared_strings(s, redact_text), index=s.index, dtype=object)
        except TypeError:                       # unhashable values (dicts): one call per row
            return s.map(redact_text, na_action="ignore")
    hit = s.str.contains(r"[?&;@]", regex=True, na=False).to_numpy(dtype=bool)
    if not hit.any():
        return s
    out = s.copy()
    out[hit] = s[hit].map(redact_text)
    return out
