"""The fetching side's policy: which plugins, hosts and sizes a proxy will fetch.

Owns the operator's rules against server-side request forgery: a seller names a locator,
never where the proxy may connect. Hosts are resolved and every address checked, so a
name that resolves to a private or loopback address is refused unless allowed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cpchain.storage.base import Locator, PolicyRefused, validate

Resolver = Callable[[str], list[str]]


def resolve_host(host: str) -> list[str]:
    """Every address `host` resolves to (IPv4 and IPv6)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise PolicyRefused(f"cannot resolve host {host!r}: {exc.strerror}") from None
    return sorted({str(info[4][0]) for info in infos})


def _is_internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


@dataclass(frozen=True)
class FetchPolicy:
    """What this proxy's operator allows a seller's locator to make it fetch."""

    allowed_types: frozenset[str]
    max_bytes: int
    timeout: float = 60.0
    allowed_hosts: frozenset[str] = frozenset()  # empty: any public host
    allow_internal: bool = False  # private, loopback and link-local addresses
    resolver: Resolver = field(default=resolve_host, compare=False)

    @classmethod
    def of(
        cls,
        types: Iterable[str],
        max_bytes: int,
        *,
        hosts: Iterable[str] = (),
        allow_internal: bool = False,
        timeout: float = 60.0,
        resolver: Resolver = resolve_host,
    ) -> FetchPolicy:
        return cls(frozenset(types), max_bytes, timeout, frozenset(h.lower() for h in hosts), allow_internal, resolver)

    def check_locator(self, locator: Locator) -> Locator:
        """The locator, if a valid one of an allowed type; PolicyRefused otherwise."""
        validate(locator)
        if locator.type not in self.allowed_types:
            raise PolicyRefused(f"this proxy does not fetch from {locator.type!r} storage")
        return locator

    def check_host(self, host: str) -> list[str]:
        """The addresses to connect to for `host`, if the policy allows every one of them."""
        name = host.strip().lower().rstrip(".")
        if not name:
            raise PolicyRefused("empty host")
        if self.allowed_hosts and name not in self.allowed_hosts:
            raise PolicyRefused(f"host {name!r} is not on this proxy's allow list")
        addresses = self.resolver(name)
        if not addresses:
            raise PolicyRefused(f"host {name!r} has no address")
        if not self.allow_internal:
            internal = [a for a in addresses if _is_internal(a)]
            if internal:
                raise PolicyRefused(f"host {name!r} resolves to an internal address ({internal[0]})")
        return addresses

    def check_size(self, size: int) -> None:
        if size > self.max_bytes:
            raise PolicyRefused(f"object of {size} bytes exceeds this proxy's limit of {self.max_bytes}")
