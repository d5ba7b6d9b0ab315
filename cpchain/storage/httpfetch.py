"""HTTP requests to a URL a remote party named, under the operator's FetchPolicy.

Owns the one SSRF-hardened HTTP path that plugins use when the data sits behind such a URL
(a presigned S3 URL, a seller's IPFS API; the proxy plugin can use it too). The host is
checked by the policy; plain HTTP then connects to the very address that was checked, so a
second DNS answer cannot rebind it to an internal one (HTTPS connects by name: a rebound
address cannot show a certificate for that name). No redirects, no proxies from the
environment, error bodies read only up to a bound, a size limit, and the Content-Length
(or the size the locator promised) enforced, so a cut connection is an error and never a
short file under the final name.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import SplitResult, urlsplit, urlunsplit

import requests
import urllib3.exceptions

from cpchain.storage.base import (
    LocatorError,
    ObjectMissing,
    PolicyRefused,
    Progress,
    StorageError,
    TransferTooLarge,
    copy_stream,
    write_atomically,
)
from cpchain.storage.policy import FetchPolicy

ERROR_BODY_LIMIT = 16 * 1024
JSON_BODY_LIMIT = 1024 * 1024
ErrorMapper = Callable[[int, bytes], StorageError]


def parse_url(url: str, what: str = "URL") -> SplitResult:
    """An http(s) URL with a host and no credentials, else LocatorError (nothing is fetched)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise LocatorError(f"{what} {url!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LocatorError(f"{what} must be an http or https URL with a host")
    if parts.username is not None or parts.password is not None:
        raise LocatorError(f"{what} must not carry credentials")
    if port == 0:
        raise LocatorError(f"{what} has port 0")
    return parts


def _pinned(parts: SplitResult, policy: FetchPolicy) -> tuple[str, dict[str, str]]:
    """The URL to connect to and the headers to send, after the policy checked the host."""
    addresses = policy.check_host(parts.hostname or "")
    netloc = parts.netloc
    if parts.scheme == "https":
        return urlunsplit(parts), {}
    address = ipaddress.ip_address(addresses[0].split("%", 1)[0])
    host = f"[{address}]" if address.version == 6 else str(address)
    port = f":{parts.port}" if parts.port is not None else ""
    return urlunsplit(parts._replace(netloc=host + port)), {"Host": netloc}


def _default_error(status: int, body: bytes) -> StorageError:
    text = body.decode("utf-8", "replace").strip().splitlines()
    detail = f": {text[0][:200]}" if text else ""
    if status == 404:
        return ObjectMissing(f"not found (HTTP 404){detail}")
    if status in (401, 403):
        return StorageError(f"access denied (HTTP {status}){detail}")
    return StorageError(f"HTTP {status}{detail}")


@contextmanager
def open_checked(
    method: str,
    url: str,
    policy: FetchPolicy,
    *,
    params: Mapping[str, str] | None = None,
    on_error: ErrorMapper = _default_error,
    what: str = "URL",
    timeout: float | None = None,
) -> Iterator[requests.Response]:
    """A streamed 200 response from `url`, the host checked by `policy`; typed errors otherwise.

    `timeout` bounds each connect and each wait for data (default: the policy's timeout, at
    most 60 s); the policy's timeout for a whole fetch is the caller's to enforce.
    """
    parts = parse_url(url, what)
    wait = timeout if timeout is not None else min(policy.timeout, 60.0)
    target, headers = _pinned(parts, policy)
    host = parts.hostname
    with requests.Session() as session:
        session.trust_env = False  # no environment proxies: connect where the policy checked
        try:
            response = session.request(
                method,
                target,
                params=params,
                headers={**headers, "Accept-Encoding": "identity"},
                stream=True,
                allow_redirects=False,
                timeout=(wait, wait),
            )
        except requests.Timeout:
            raise StorageError(f"{host} did not answer within {wait:g} s") from None
        except requests.RequestException as exc:
            raise StorageError(f"cannot connect to {host}: {_reason(exc)}") from None
        with response:
            if 300 <= response.status_code < 400:
                raise PolicyRefused(f"{host} answered with a redirect (HTTP {response.status_code}); not followed")
            if response.status_code != 200:
                raise on_error(response.status_code, _read_bounded(response, ERROR_BODY_LIMIT))
            yield response


def _reason(exc: BaseException) -> str:
    """The innermost cause's message, one line (requests nests urllib3 errors deeply)."""
    while exc.__context__ is not None and exc.__context__ is not exc:
        exc = exc.__context__
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return re.sub(r"<[^>]+>: ", "", text)[:200]


def _read_bounded(response: requests.Response, limit: int) -> bytes:
    try:
        return bytes(response.raw.read(limit, decode_content=False) or b"")
    except (urllib3.exceptions.HTTPError, OSError):
        return b""


def read_json(response: requests.Response) -> Any:
    """The body of a small JSON reply, refused if it is larger than JSON_BODY_LIMIT."""
    body = _read_bounded(response, JSON_BODY_LIMIT + 1)
    if len(body) > JSON_BODY_LIMIT:
        raise StorageError("reply too large")
    try:
        return json.loads(body)
    except ValueError:
        raise StorageError("reply is not JSON") from None


def effective_limit(policy: FetchPolicy, max_bytes: int | None) -> int:
    return policy.max_bytes if max_bytes is None else min(max_bytes, policy.max_bytes)


def save_response(
    response: requests.Response,
    dest: Path,
    *,
    progress: Progress | None = None,
    max_bytes: int | None = None,
    expected_size: int | None = None,
) -> str:
    """Stream the body into `dest` atomically; the byte count must match what was announced.
    Returns the hex SHA-256 of the body."""
    announced = response.headers.get("Content-Length")
    length = int(announced) if announced is not None and announced.isdigit() else None
    if length is not None and expected_size is not None and length != expected_size:
        raise StorageError(f"server announces {length} bytes, the locator {expected_size}")
    wanted = length if length is not None else expected_size
    if wanted is not None and max_bytes is not None and wanted > max_bytes:
        raise TransferTooLarge(f"object of {wanted} bytes exceeds the limit of {max_bytes} bytes")
    done = 0

    def fill(fh: BinaryIO) -> None:
        nonlocal done
        try:
            done = copy_stream(response.raw, fh, progress, max_bytes if wanted is None else wanted)
        except TransferTooLarge:
            if wanted is None:
                raise
            raise StorageError(f"server sent more than the {wanted} bytes announced") from None
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise StorageError(f"transfer interrupted: {_reason(exc)}") from None
        if wanted is not None and done != wanted:
            raise StorageError(f"transfer interrupted: got {done} of {wanted} bytes")

    return write_atomically(dest, fill)
