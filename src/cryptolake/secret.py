"""Secrets that cannot be printed by accident, and DSNs with their passwords blanked."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_MASK = "***"


class Secret:
    """A string that shows `***` in repr, str and f-strings; `.reveal()` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')"

    def __str__(self) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced by `***`, for messages and logs.

    Handles both libpq forms: URIs (`postgresql://user:pw@host/db`, `?password=pw`) and
    key=value strings (`host=h password=pw`).
    """
    if "://" in dsn:
        parts = urlsplit(dsn)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostinfo = netloc.rpartition("@")
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":" + _MASK
            netloc = f"{userinfo}@{hostinfo}"
        query = _KV_PASSWORD.sub(lambda m: m.group(1) + _MASK, parts.query.replace("&", " "))
        query = query.replace(" ", "&")
        # Not urlunsplit: it drops the empty host of `postgresql:///db` (a Unix socket).
        return (
            f"{parts.scheme}://{netloc}{parts.path}"
            + (f"?{query}" if query else "")
            + (f"#{parts.fragment}" if parts.fragment else "")
        )
    return _KV_PASSWORD.sub(lambda m: m.group(1) + _MASK, dsn)
