"""Where notifications may go: the server-side request forgery guard for rest-hook endpoints.

Policy (setting FHIRLEAD_SUBSCRIPTION_ENDPOINTS):
- `public`: https only, to hosts whose addresses are all public (no loopback, private, link-local,
  shared, reserved or multicast ranges);
- `loopback` (the default): as public, and also http or https to this machine's loopback interface
  (a receiver beside the server: the issue asks for "https required outside loopback");
- `private`: as loopback, and also https to private ranges (a hospital network's integration engine).

Checked twice: when the Subscription is written (the URL and any literal address), and before every
delivery on the addresses the name resolves to then (a name that later resolves inward is refused
then, not just at write). Deliveries never follow redirects.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from fhirlead.errors import FhirError, Issue

POLICIES = ("public", "loopback", "private")
LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


class EndpointRefused(Exception):
    """An endpoint the policy does not allow (at delivery: the subscription goes to `error`)."""


def _refuse(why: str) -> FhirError:
    return FhirError(422, [Issue("security", why, expression=("Subscription.channel.endpoint",))])


def _address_allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address, scheme: str, policy: str) -> str | None:
    """None when allowed; else why not."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return None if policy in ("loopback", "private") else "loopback endpoints are not allowed on this server"
    if scheme != "https":
        return "an endpoint outside loopback must use https"
    if address.is_global and not address.is_multicast:
        return None
    if address.is_private and not (address.is_link_local or address.is_reserved or address.is_unspecified) \
            and policy == "private":
        return None
    return f"endpoint address {address} is in a non-public range (FHIRLEAD_SUBSCRIPTION_ENDPOINTS={policy})"


def check(url: str, policy: str) -> None:
    """At write: the URL's form, scheme and any literal address (FhirError 422 when refused)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _refuse(f"'{url}' is not an absolute http(s) URL")
    if parts.username or parts.password:
        raise _refuse("an endpoint must not carry credentials in its URL (use channel.header)")
    host = parts.hostname
    if host in LOOPBACK_NAMES:
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if parts.scheme != "https":
            raise _refuse("an endpoint outside loopback must use https") from None
        return  # a name: its addresses are checked at each delivery
    why = _address_allowed(address, parts.scheme, policy)
    if why:
        raise _refuse(why)


async def resolve_allowed(url: str, policy: str) -> None:
    """Before a delivery: every address the host resolves to now is allowed (EndpointRefused if not)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise EndpointRefused(f"cannot resolve {host}: {error.strerror or error}") from None
    for info in infos:
        why = _address_allowed(ipaddress.ip_address(info[4][0].split("%")[0]), parts.scheme, policy)
        if why:
            raise EndpointRefused(why)
