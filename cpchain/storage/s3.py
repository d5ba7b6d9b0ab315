"""The `s3` plugin: any S3-compatible endpoint (AWS, MinIO, moto) through boto3.

The bucket, endpoint and credentials come from this node's own config; a locator only names
where the object is, `{"type": "s3", "endpoint", "bucket", "key", "size", "url"}`, where
`url` is empty or a presigned GET URL and never carries a key. Uploads are multipart
above `part_size` (boto3's TransferConfig, a few parts in flight, so memory stays bounded).
Downloads stream `get_object` with this node's credentials when the locator names its own
endpoint and bucket; any other locator is fetched only through its presigned URL, under the
FetchPolicy (`httpfetch`), so a seller can neither point the proxy's credentials at a
bucket of its choosing nor make it connect to an internal host.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import boto3
import boto3.exceptions
import botocore.exceptions
import urllib3.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig

from cpchain.config import Config
from cpchain.storage.base import (
    Locator,
    LocatorError,
    ObjectMissing,
    PolicyRefused,
    Progress,
    StorageError,
    TransferTooLarge,
    copy_stream,
    register,
    validate,
    write_atomically,
)
from cpchain.storage.httpfetch import effective_limit, open_checked, parse_url, save_response
from cpchain.storage.policy import FetchPolicy

DEFAULT_PART_SIZE = 16 * 1024 * 1024
# A connection that broke or stalled mid-transfer (as opposed to a refusal by the server).
INTERRUPTED = (
    botocore.exceptions.IncompleteReadError,
    botocore.exceptions.HTTPClientError,
    urllib3.exceptions.HTTPError,
    ConnectionError,
)
MAX_CONCURRENCY = 4


@dataclass(frozen=True)
class S3Credentials:
    """An access key pair; the secret never appears in a repr (and so in a log line)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)


@dataclass(frozen=True)
class S3Settings:
    """This node's own bucket: `endpoint` empty means AWS's regional endpoint."""

    bucket: str
    endpoint: str = ""
    region: str = "us-east-1"
    prefix: str = ""

    def where(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key} at {self.endpoint or 'AWS'}"


def _s3_error(exc: BaseException, settings: S3Settings, key: str) -> StorageError:
    """One clear line for a boto3/botocore failure (walking to the ClientError boto3 wraps)."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, botocore.exceptions.ClientError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, botocore.exceptions.ClientError):
        error = cause.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in ("NoSuchKey", "404"):
            return ObjectMissing(f"no object {settings.where(key)}")
        if code == "NoSuchBucket":
            return StorageError(f"bucket {settings.bucket!r} does not exist at {settings.endpoint or 'AWS'}")
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return StorageError(f"access denied to {settings.where(key)} ({code})")
        message = " ".join(str(error.get("Message", "")).split())[:200]
        return StorageError(f"S3 error {code} for {settings.where(key)}: {message}")
    if isinstance(exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectTimeoutError):
        return StorageError(f"cannot reach the S3 endpoint {settings.endpoint or 'AWS'}")
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return StorageError("no S3 credentials configured")
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, INTERRUPTED):
        return StorageError(f"transfer of {settings.where(key)} interrupted: {text[:200]}")
    return StorageError(f"S3 transfer {settings.where(key)} failed: {text[:200]}")


def _s3_http_error(status: int, body: bytes) -> StorageError:
    """Errors of a presigned URL: S3's XML `<Code>`."""
    text = body.decode("utf-8", "replace")
    code = text.split("<Code>", 1)[1].split("</Code>", 1)[0].strip()[:100] if "<Code>" in text else f"HTTP {status}"
    if code == "NoSuchKey":
        return ObjectMissing("no such S3 object (NoSuchKey)")
    if code == "NoSuchBucket":
        return StorageError("the presigned URL names a bucket that does not exist (NoSuchBucket)")
    if status == 403:
        return StorageError(f"access denied by S3 ({code}); the presigned URL may have expired")
    return StorageError(f"S3 answered {code}")


class _SerialProgress:
    """boto3 reports increments from its worker threads; report running totals, in order."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._done = 0
        self._lock = threading.Lock()

    def __call__(self, increment: int) -> None:
        if self._progress is None:
            return
        with self._lock:
            self._done += increment
            self._progress(self._done)


@register
class S3Storage:
    """Upload to and fetch from this node's bucket; fetch other locators by presigned URL."""

    type_name: ClassVar[str] = "s3"
    fields: ClassVar[dict[str, type]] = {"endpoint": str, "bucket": str, "key": str, "size": int, "url": str}

    def __init__(
        self,
        settings: S3Settings | None = None,
        credentials: S3Credentials | None = None,
        *,
        policy: FetchPolicy | None = None,
        timeout: float = 60.0,
        part_size: int = DEFAULT_PART_SIZE,
        presign_expires: int = 3600,
    ) -> None:
        if settings is not None and settings.endpoint:
            parse_url(settings.endpoint, "S3 endpoint")
        self.settings = settings
        self.credentials = credentials
        self.policy = policy
        self.timeout = timeout
        self.presign_expires = presign_expires
        self.transfer = TransferConfig(
            multipart_threshold=part_size, multipart_chunksize=part_size, max_concurrency=MAX_CONCURRENCY
        )

    @classmethod
    def for_fetching(cls, config: Config, policy: FetchPolicy) -> S3Storage:
        """The plugin as a proxy uses it: presigned URLs only, their hosts checked by `policy`."""
        del config
        return cls(policy=policy, timeout=min(policy.timeout, 60.0))

    def _own(self) -> tuple[S3Settings, Any]:
        """This node's settings and a boto3 client for them."""
        if self.settings is None or self.credentials is None:
            raise StorageError("no S3 bucket and credentials are configured on this node")
        settings = self.settings
        client = boto3.client(
            "s3",
            endpoint_url=settings.endpoint or None,
            region_name=settings.region,
            aws_access_key_id=self.credentials.access_key_id,
            aws_secret_access_key=self.credentials.secret_access_key,
            config=BotoConfig(
                signature_version="s3v4",
                s3={"addressing_style": "path" if settings.endpoint else "auto"},
                connect_timeout=self.timeout,
                read_timeout=self.timeout,
                retries={"max_attempts": 2, "mode": "standard"},
            ),
        )
        return settings, client

    def _is_own(self, locator: Locator) -> bool:
        return (
            self.settings is not None
            and self.credentials is not None
            and locator.params["endpoint"] == self.settings.endpoint
            and locator.params["bucket"] == self.settings.bucket
        )

    def upload(self, source: Path, progress: Progress | None = None) -> Locator:
        settings, client = self._own()
        key = f"{settings.prefix}{secrets.token_hex(16)}.bin"
        size = source.stat().st_size
        self._call(
            settings,
            key,
            lambda: client.upload_file(
                str(source), settings.bucket, key, Config=self.transfer, Callback=_SerialProgress(progress)
            ),
        )
        if size == 0 and progress is not None:
            progress(0)
        params = {"endpoint": settings.endpoint, "bucket": settings.bucket, "key": key, "size": size, "url": ""}
        return Locator(self.type_name, params)

    def presign(self, locator: Locator, expires: int | None = None) -> Locator:
        """The locator with a GET URL valid for `expires` seconds (default `presign_expires`),
        to hand to a proxy."""
        validate(locator)
        if not self._is_own(locator):
            raise PolicyRefused("only objects in this node's own bucket can be presigned")
        settings, client = self._own()
        key = str(locator.params["key"])
        url = self._call(
            settings,
            key,
            lambda: client.generate_presigned_url(
                "get_object", Params={"Bucket": settings.bucket, "Key": key}, ExpiresIn=expires or self.presign_expires
            ),
        )
        return Locator(self.type_name, {**locator.params, "url": str(url)})

    def download(
        self, locator: Locator, dest: Path, progress: Progress | None = None, max_bytes: int | None = None
    ) -> str:
        validate(locator)
        if locator.type != self.type_name:
            raise LocatorError(f"a {locator.type} locator given to the {self.type_name} plugin")
        size, url = int(locator.params["size"]), str(locator.params["url"])
        if size < 0:
            raise LocatorError("s3 locator: field 'size' must not be negative")
        if self.policy is not None:
            self.policy.check_locator(locator)
            self.policy.check_size(size)
        limit = max_bytes if self.policy is None else effective_limit(self.policy, max_bytes)
        if limit is not None and size > limit:
            raise TransferTooLarge(f"object of {size} bytes exceeds the limit of {limit} bytes")
        if self._is_own(locator):
            return self._download_own(str(locator.params["key"]), dest, progress, limit)
        elif not url:
            raise PolicyRefused(
                f"s3 locator for bucket {locator.params['bucket']!r} has no presigned URL, "
                "and this node has no credentials for that bucket"
            )
        elif self.policy is None:
            raise PolicyRefused("fetching a presigned S3 URL needs a fetch policy")
        else:
            with open_checked(
                "GET", url, self.policy, on_error=_s3_http_error, what="presigned URL", timeout=self.timeout
            ) as reply:
                return save_response(reply, dest, progress=progress, max_bytes=limit, expected_size=size)

    def _download_own(self, key: str, dest: Path, progress: Progress | None, limit: int | None) -> str:
        settings, client = self._own()
        reply = self._call(settings, key, lambda: client.get_object(Bucket=settings.bucket, Key=key))
        body = reply["Body"]
        try:
            length = int(reply.get("ContentLength", 0))
            if limit is not None and length > limit:
                raise TransferTooLarge(f"object of {length} bytes exceeds the limit of {limit} bytes")

            def fill(fh: BinaryIO) -> None:
                self._call(settings, key, lambda: copy_stream(body, fh, progress, limit))

            return write_atomically(dest, fill)
        finally:
            body.close()

    @staticmethod
    def _call(settings: S3Settings, key: str, action: Callable[[], Any]) -> Any:
        """Run a boto3 call, turning its failures into the storage errors."""
        try:
            return action()
        except (
            botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError,
            boto3.exceptions.Boto3Error,
            urllib3.exceptions.HTTPError,
            ConnectionError,
        ) as exc:
            raise _s3_error(exc, settings, key) from None
