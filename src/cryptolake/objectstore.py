"""Object storage for a team lake: S3 (and MinIO, R2, Ceph...) through its S3 API.

A lake given as `s3://bucket/prefix` keeps bronze and the DuckLake data files under that
prefix. Two clients reach it with the same credentials, taken from the environment under the
names the AWS tools use (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
`AWS_REGION`, `AWS_ENDPOINT_URL`):

- bronze writes and reads raw bytes through `pyarrow.fs.S3FileSystem`;
- DuckDB (silver and gold's Parquet, `read_json` over bronze) through its httpfs extension,
  given an S3 secret made here, in memory only.

With `AWS_ENDPOINT_URL` set (MinIO, R2, a local server) URLs are path-style, and plain HTTP
when the endpoint starts with `http://`. Keys are `Secret`s: never in a repr, a log, an error,
a manifest or the catalog.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .errors import ConfigError, LakeError
from .secret import Secret

SCHEMES = ("s3://",)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


def is_object_url(value: object) -> bool:
    """Whether a --lake value names object storage (`s3://...`) rather than a folder."""
    return isinstance(value, str) and "://" in value


@dataclass(frozen=True, slots=True)
class S3Config:
    """Where and as whom to reach S3: the endpoint, region and keys from the environment."""

    endpoint_url: str | None = None  # None: AWS itself
    region: str | None = None
    key_id: Secret | None = field(default=None, repr=False)
    secret_key: Secret | None = field(default=None, repr=False)
    session_token: Secret | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> S3Config:
        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def secret(name: str) -> Secret | None:
            value = get(name)
            return Secret(value) if value else None

        endpoint = get("AWS_ENDPOINT_URL_S3") or get("AWS_ENDPOINT_URL")
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise ConfigError(
                f"AWS_ENDPOINT_URL must start with http:// or https://, got {endpoint!r} "
                "(such as http://127.0.0.1:9000 for a local MinIO)."
            )
        return cls(
            endpoint_url=endpoint.rstrip("/") if endpoint else None,
            region=get("AWS_REGION") or get("AWS_DEFAULT_REGION"),
            key_id=secret("AWS_ACCESS_KEY_ID"),
            secret_key=secret("AWS_SECRET_ACCESS_KEY"),
            session_token=secret("AWS_SESSION_TOKEN"),
        )

    @property
    def host(self) -> str | None:
        """`host[:port]` of a custom endpoint, as DuckDB's secret wants it."""
        return urlsplit(self.endpoint_url).netloc if self.endpoint_url else None

    @property
    def use_ssl(self) -> bool:
        return not (self.endpoint_url or "").startswith("http://")

    @property
    def describe(self) -> str:
        """The endpoint as messages name it (never a key)."""
        return self.endpoint_url or f"AWS S3 ({self.region or 'default region'})"

    def filesystem(self) -> object:
        """A `pyarrow.fs.S3FileSystem` for these settings (typed loosely: pyarrow has no stubs)."""
        from pyarrow import fs

        return fs.S3FileSystem(
            access_key=self.key_id.reveal() if self.key_id else None,
            secret_key=self.secret_key.reveal() if self.secret_key else None,
            session_token=self.session_token.reveal() if self.session_token else None,
            anonymous=self.key_id is None and self.secret_key is None,
            region=self.region or "us-east-1",
            endpoint_override=self.host,
            scheme="https" if self.use_ssl else "http",
            force_virtual_addressing=False,
            connect_timeout=5,
            request_timeout=30,
            retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=3),
        )

    def duckdb_secret_sql(self, *, name: str = "cryptolake_s3") -> tuple[str, list[str]]:
        """`create secret` for DuckDB's httpfs, with its values as parameters (never in SQL)."""
        options: list[tuple[str, str]] = [("region", self.region or "us-east-1")]
        if self.key_id and self.secret_key:
            options += [("key_id", self.key_id.reveal()), ("secret", self.secret_key.reveal())]
        if self.session_token:
            options.append(("session_token", self.session_token.reveal()))
        if self.endpoint_url:
            options += [("endpoint", self.host or ""), ("url_style", "path")]
        values = [value for _, value in options]
        clauses = ", ".join(f"{key} ?" for key, _ in options)
        ssl = "" if self.use_ssl else ", use_ssl false"
        return (f"create or replace temporary secret {name} (type s3, {clauses}{ssl})", values)

    def cli_secret_sql(self, *, name: str = "cryptolake_s3") -> str:
        """`create secret` for the DuckDB CLI, its keys read there with getenv(): never on a
        command line (`ps` shows those to every user)."""
        options = [f"region '{self.region or 'us-east-1'}'"]
        if self.key_id and self.secret_key:
            options += [
                "key_id getenv('AWS_ACCESS_KEY_ID')",
                "secret getenv('AWS_SECRET_ACCESS_KEY')",
            ]
        if self.session_token:
            options.append("session_token getenv('AWS_SESSION_TOKEN')")
        if self.endpoint_url:
            options += [f"endpoint '{self.host}'", "url_style 'path'"]
        if not self.use_ssl:
            options.append("use_ssl false")
        return f"create or replace temporary secret {name} (type s3, {', '.join(options)})"


@dataclass(frozen=True, slots=True)
class ObjectLocation:
    """`s3://bucket/prefix`, split: the bucket and the key prefix (no slashes at its ends)."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str, *, setting: str = "--lake") -> ObjectLocation:
        if not url.startswith(SCHEMES):
            scheme = url.split("://", 1)[0]
            raise ConfigError(
                f"{setting} {url} uses {scheme}://, which cryptolake cannot write: give a "
                "folder, or s3://bucket/prefix (S3, or MinIO, R2 and GCS through their S3 API "
                "with AWS_ENDPOINT_URL)."
            )
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        prefix = prefix.strip("/")
        if not _BUCKET.fullmatch(bucket):
            raise ConfigError(
                f"{setting} {url}: {bucket!r} is not an S3 bucket name (3-63 lowercase "
                "letters, digits, dots and hyphens); give s3://bucket/prefix."
            )
        if set("*?[]") & set(prefix):
            raise ConfigError(
                f"{setting} {url} contains a glob character, which DuckDB reads as a file "
                "pattern: give a prefix without * ? [ ]."
            )
        return cls(bucket, prefix)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def fs_path(self) -> str:
        """The lake root as pyarrow.fs names it (`bucket/prefix`)."""
        return f"{self.bucket}/{self.prefix}".rstrip("/")


# How pyarrow's S3 client (the AWS SDK) and DuckDB's httpfs word the causes a user can fix.
_CAUSES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        ("nosuchbucket", "bucket does not exist", "the specified bucket does not exist"),
        "the bucket does not exist",
        "create it (`aws s3 mb s3://<bucket>`, or the MinIO console), or fix --lake",
    ),
    (
        ("nosuchkey", "http 404", "404 (not found)", "404 not found"),
        "a file the lake catalog lists is missing from the object store",
        "objects were deleted behind its back: restore them (bucket versioning, a backup); "
        "cryptolake cannot repair a lake on object storage yet (a local copy can be: "
        "`aws s3 sync`, then `cryptolake verify --repair`)",
    ),
    (
        (
            "invalidaccesskeyid",
            "signaturedoesnotmatch",
            "access_denied",
            "accessdenied",
            "access denied",
            "http 403",
            "403 (forbidden)",
            "forbidden",
            "invalid_access_key_id",
        ),
        "the credentials were refused",
        "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and the bucket's policy)",
    ),
    (
        (
            "couldn't connect",
            "could not establish connection",
            "could not connect",
            "connection refused",
            "unable to connect",
            "network_connection",
            "curlcode: 7",
            "curlcode: 28",
            "timeout",
            "timed out",
            "could not resolve",
            "connection reset",
            "empty reply",
        ),
        "the object store did not answer",
        "check that it is up and that AWS_ENDPOINT_URL points at it",
    ),
)


def object_store_cause(message: str) -> tuple[str, str] | None:
    """(cause, fix) for an S3 error a user can act on, from the client's message."""
    lowered = message.lower()
    for words, cause, fix in _CAUSES:
        if any(word in lowered for word in words):
            return cause, fix
    return None


def object_store_error(message: str, *, doing: str, where: str) -> LakeError:
    """One LakeError naming what was done, the endpoint, the cause and the fix."""
    found = object_store_cause(message)
    if found is None:
        text = " ".join(message.split())[:300]
        return LakeError(f"Cannot {doing} on {where}: {text}.")
    cause, fix = found
    return LakeError(f"Cannot {doing} on {where}: {cause}; {fix}.")
