"""The `ipfs` plugin: the IPFS HTTP RPC API (kubo's, also served by js-ipfs): add, pin, cat.

The seller adds and pins through its own node with `ipfshttpclient` (a `Client` built
directly, which skips the library's daemon-version check; uploads stream the file in
`CHUNK`-sized multipart parts, typed `application/octet-stream`, sent without the local
file name or path). The locator names the CID, the API that holds it and the size:
`{"type": "ipfs", "cid": ..., "api": "http://host:port", "size": n}`.

Downloads do not use `ipfshttpclient`: its `cat` streams in constant memory, but it follows
redirects, honours environment proxies and reads a whole error body into memory, which is
unsafe against an API a seller named. They go through `httpfetch` instead (the API's host
checked by the FetchPolicy and the checked address pinned): first `pin/ls`, so a node that
does not hold the CID is a prompt ObjectMissing instead of a search of the network until
the timeout, then a streamed `cat` whose length must equal the locator's size.
"""

from __future__ import annotations

import ipaddress
import json
import re
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar

import ipfshttpclient
import requests

from cpchain.config import Config
from cpchain.storage.base import (
    CHUNK,
    Locator,
    LocatorError,
    ObjectMissing,
    PolicyRefused,
    Progress,
    StorageError,
    TransferTooLarge,
    register,
    validate,
)
from cpchain.storage.httpfetch import ErrorMapper, effective_limit, open_checked, parse_url, read_json, save_response
from cpchain.storage.policy import FetchPolicy

CID = re.compile(r"[A-Za-z0-9]{20,128}")
UNLIMITED = 1 << 62


def api_url(url: str) -> str:
    """The API's base URL, normalised (`http(s)://host:port`); LocatorError otherwise."""
    parts = parse_url(url, "IPFS API")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise LocatorError("IPFS API must be a bare http(s)://host:port URL")
    return f"{parts.scheme}://{parts.netloc}"


def api_multiaddr(url: str) -> str:
    """The multiaddr `ipfshttpclient` wants for an API URL."""
    parts = parse_url(url, "IPFS API")
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        proto = f"ip{ipaddress.ip_address(host).version}"
    except ValueError:
        proto = "dns"
    return f"/{proto}/{host}/tcp/{port}/{parts.scheme}"


class _CountingReader:
    """A file reader that reports progress and has no `name` (the path stays private)."""

    def __init__(self, fh: Any, progress: Progress | None) -> None:
        self._fh = fh
        self._progress = progress
        self._done = 0

    def read(self, size: int = -1) -> bytes:
        chunk: bytes = self._fh.read(size)
        self._done += len(chunk)
        if self._progress is not None and chunk:
            self._progress(self._done)
        return chunk


def _error_mapper(cid: str, api: str) -> ErrorMapper:
    """Errors of the RPC API: a JSON `{"Message": ...}`; "not pinned" means it lacks the CID."""

    def mapped(status: int, body: bytes) -> StorageError:
        try:
            data = json.loads(body)
            message = str(data["Message"]) if isinstance(data, dict) else f"HTTP {status}"
        except (ValueError, KeyError):
            message = f"HTTP {status}"
        if "not pinned" in message:
            return ObjectMissing(f"the IPFS node at {api} does not hold {cid}")
        return StorageError(f"IPFS API at {api}: {message[:200]}")

    return mapped


@register
class IpfsStorage:
    """Add and pin through `api`; fetch from the API a locator names.

    A locator naming this node's own API (`api` or `public_api`) is trusted; any other API
    is fetched only under `policy`, which checks its host (refused without a policy).
    """

    type_name: ClassVar[str] = "ipfs"
    fields: ClassVar[dict[str, type]] = {"cid": str, "api": str, "size": int}

    def __init__(
        self,
        api: str | None = None,
        *,
        public_api: str | None = None,
        policy: FetchPolicy | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.api = api_url(api) if api else None
        self.public_api = api_url(public_api) if public_api else self.api
        self.policy = policy
        self.timeout = timeout

    @classmethod
    def for_fetching(cls, config: Config, policy: FetchPolicy) -> IpfsStorage:
        """The plugin as a proxy uses it: every API a locator names is checked by `policy`."""
        del config
        return cls(policy=policy, timeout=min(policy.timeout, 60.0))

    def _client(self) -> Any:
        if self.api is None:
            raise StorageError("no IPFS API is configured for uploads")
        return ipfshttpclient.Client(api_multiaddr(self.api), chunk_size=CHUNK, timeout=self.timeout)

    def upload(self, source: Path, progress: Progress | None = None) -> Locator:
        size = source.stat().st_size
        client = self._client()
        try:
            with source.open("rb") as fh:
                added = client.add(_CountingReader(fh, progress), pin=True)
        except ipfshttpclient.exceptions.ConnectionError:
            raise StorageError(f"cannot reach the IPFS API at {self.api}") from None
        except ipfshttpclient.exceptions.TimeoutError:
            raise StorageError(f"the IPFS API at {self.api} did not answer within {self.timeout:g} s") from None
        except ipfshttpclient.exceptions.Error as exc:
            raise StorageError(f"IPFS API at {self.api}: {str(exc).splitlines()[0][:200]}") from None
        finally:
            client.close()
        return Locator(self.type_name, {"cid": str(added["Hash"]), "api": self.public_api, "size": size})

    def _policy_for(self, api: str) -> FetchPolicy:
        if api in (self.api, self.public_api):
            return FetchPolicy.of([self.type_name], UNLIMITED, allow_internal=True, timeout=self.timeout)
        if self.policy is None:
            raise PolicyRefused(f"IPFS API {api} is not this node's, and no fetch policy allows other APIs")
        return self.policy

    def download(
        self, locator: Locator, dest: Path, progress: Progress | None = None, max_bytes: int | None = None
    ) -> str:
        validate(locator)
        if locator.type != self.type_name:
            raise LocatorError(f"a {locator.type} locator given to the {self.type_name} plugin")
        cid, size = str(locator.params["cid"]), int(locator.params["size"])
        api = api_url(str(locator.params["api"]))
        if not CID.fullmatch(cid):
            raise LocatorError("ipfs locator: field 'cid' is not a CID")
        if size < 0:
            raise LocatorError("ipfs locator: field 'size' must not be negative")
        policy = self._policy_for(api)
        policy.check_locator(locator)
        policy.check_size(size)
        limit = effective_limit(policy, max_bytes)
        if size > limit:
            raise TransferTooLarge(f"object of {size} bytes exceeds the limit of {limit} bytes")
        on_error = _error_mapper(cid, api)

        def rpc(command: str, params: dict[str, str]) -> AbstractContextManager[requests.Response]:
            url = f"{api}/api/v0/{command}"
            return open_checked(
                "POST", url, policy, params=params, on_error=on_error, what="IPFS API", timeout=self.timeout
            )

        with rpc("pin/ls", {"arg": cid, "type": "recursive"}) as reply:
            pins = read_json(reply)
        if not isinstance(pins, dict) or not pins.get("Keys"):
            raise ObjectMissing(f"the IPFS node at {api} does not hold {cid}")
        with rpc("cat", {"arg": cid}) as reply:
            return save_response(reply, dest, progress=progress, max_bytes=limit, expected_size=size)
