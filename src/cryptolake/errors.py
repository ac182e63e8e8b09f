"""One exception hierarchy: every failure the user can fix is a `CryptolakeError`.

Messages name the thing that failed and the fix. The CLI prints them as one line and exits 1;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class CryptolakeError(Exception):
    """Base class of every error cryptolake raises on purpose.

    `transient` says whether the same work may succeed later unchanged (a service down for a
    while): an orchestrator retries those, and only those.
    """

    transient: bool = False


class ConfigError(CryptolakeError):
    """A setting is missing or invalid."""


class ApiError(CryptolakeError):
    """The CoinGecko API did not give a usable answer.

    `transient` says whether retrying the same request later may succeed (rate limit, 5xx,
    dropped connection, truncated body) or not (bad parameter, changed response shape).
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        status: int | None = None,
        code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status
        self.code = code  # CoinGecko's error code from the body (10012, ...), when it sent one


class ApiKeyError(ApiError):
    """The API rejected the key or the plan (wrong host for the key); retrying cannot help."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message, transient=False, status=status)


class ContractError(ApiError):
    """A body lacks fields gold needs (the API changed shape); its bodies are kept aside."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)


class LakeError(CryptolakeError):
    """The lake folder is unusable or holds something unexpected."""


class CommitConflict(LakeError):
    """Another writer committed a change this transaction's commit conflicts with (a lake
    with a Postgres catalog and several machines). Transient: the build is retried."""


class TransformError(CryptolakeError):
    """Building silver or gold failed."""


class CheckError(CryptolakeError):
    """A data-quality check returned offending rows."""


class PublishError(CryptolakeError):
    """Publishing to Postgres failed; Postgres keeps its previous state.

    `transient`: Postgres could not be reached (down, restarting), as opposed to refusing
    what was asked (credentials, a missing database, privileges)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class RunStopped(CryptolakeError):
    """A stop was asked for (SIGTERM, a schedule winding down) while a stage was waiting."""


class LockError(CryptolakeError):
    """Another cryptolake run holds the lake."""
