"""Where a webhook may be delivered: public addresses, and the networks an administrator allows
(`webhooks.allowNetworks`).

A subscription's host is checked when it is created and again before every delivery, since a
name may resolve elsewhere later: every address it resolves to must be allowed, and the
request then goes to the address that was checked (the URL's name stays in the `Host` header
and, over TLS, in the server name the certificate is verified against), so a second lookup
between the check and the connection cannot send it elsewhere.

Refused unless allowed: unspecified, loopback, link-local, multicast, private (RFC 1918, unique
local fc00::/7 and Python's other private ranges), site-local, reserved and any other address
that is not globally routable, the same for the IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d)
or 6to4 (2002::/16) IPv6 address.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from synod.state.webhooks import SubscriptionError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

DEFAULT_PORTS = {"http": 80, "https": 443}


class DestinationError(SubscriptionError):
    """A webhook destination that is refused: it is, or resolves to, an address outside the
    public internet that no allowed network covers."""


class UnresolvedError(Exception):
    """A webhook host that does not resolve (now)."""


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, by the system's resolver."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def _category(address: Address) -> str | None:
    """Why `address` is not a public destination, or None when it is."""
    site_local = isinstance(address, ipaddress.IPv6Address) and address.is_site_local
    for name, hit in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("site-local", site_local),
        ("reserved", address.is_reserved),
        ("not globally routable", not address.is_global),
    ):
        if hit:
            return name
    return None


def _embedded(address: Address) -> list[Address]:
    """The addresses a packet to `address` is really for: the IPv4 address inside an
    IPv4-mapped or 6to4 IPv6 address as well as the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return [address.ipv4_mapped]
        if address.sixtofour is not None:
            return [address, address.sixtofour]
    return [address]


def refusal(address: Address, allowed: Iterable[Network] = ()) -> str | None:
    """Why `address` is refused as a destination ('loopback', 'private', ...), or None when it
    is public or inside an allowed network."""
    forms = [address, *_embedded(address)]
    if any(form in network for form in forms for network in allowed):
        return None
    for form in _embedded(address):
        reason = _category(form)
        if reason is not None:
            return reason
    return None


@dataclass(frozen=True)
class Target:
    """Where one request goes: `url` with the checked address in place of the host name."""

    url: str
    host: str  # the Host header: the URL's own host[:port]
    sni: str | None  # the TLS server name (the host name), None for an address literal

    @property
    def extensions(self) -> dict[str, Any]:
        return {"sni_hostname": self.sni} if self.sni else {}


@dataclass(frozen=True)
class Destinations:
    """The destination rule: public addresses, and the `allowed` networks."""

    allowed: tuple[Network, ...] = ()
    resolve: Resolver = system_resolver

    def addresses(self, url: str) -> list[Address]:
        """Every address the URL's host stands for, each checked; `DestinationError` naming
        the first refused one, `UnresolvedError` when the name does not resolve."""
        try:
            parts = urlsplit(url)
            host, port = parts.hostname or "", parts.port or DEFAULT_PORTS.get(parts.scheme, 80)
        except ValueError as err:  # a malformed port or address literal
            raise UnresolvedError(f"webhook URL does not parse: {err}") from None
        try:
            found = [ipaddress.ip_address(host)]
        except ValueError:
            found = self._lookup(host, port)
        for address in found:
            reason = refusal(address, self.allowed)
            if reason is not None:
                raise DestinationError(
                    f"webhook host {host!r} is (or resolves to) {address}, refused ({reason}): "
                    "only public addresses, or those in webhooks.allowNetworks"
                )
        return found

    def _lookup(self, host: str, port: int) -> list[Address]:
        try:
            names = self.resolve(host, port)
            found = [ipaddress.ip_address(name) for name in names]
        except (OSError, UnicodeError, ValueError) as err:
            raise UnresolvedError(f"webhook host {host!r} does not resolve: {err}") from None
        if not found:
            raise UnresolvedError(f"webhook host {host!r} resolves to no address")
        return found

    def check(self, url: str) -> None:
        """For a new subscription: refuse a host that is or resolves to a refused address. A
        name that does not resolve now is accepted; each delivery checks again."""
        with contextlib.suppress(UnresolvedError):
            self.addresses(url)

    def target(self, url: str) -> Target:
        """For a delivery: resolve and check the host now, and aim at the first address."""
        first = self.addresses(url)[0]
        mapped = first.ipv4_mapped if isinstance(first, ipaddress.IPv6Address) else None
        address = first if mapped is None else mapped
        try:
            parsed = httpx.URL(url)
            aimed = str(parsed.copy_with(host=str(address)))
        except httpx.InvalidURL as err:
            raise UnresolvedError(f"webhook URL cannot be aimed at {address}: {err}") from None
        name = parsed.raw_host.decode("ascii")
        sni = name if parsed.scheme == "https" and not _is_address(name) else None
        return Target(aimed, parsed.netloc.decode("ascii"), sni)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
