"""Where ЮKassa's notifications may come from (PRODUCT.md "Payment providers").

ЮKassa does not sign its notifications; it publishes the networks it sends them from. A
notification is only a trigger (billing re-reads the payment from ЮKassa), but one from
anywhere else is refused before anything is read, so a stranger cannot make billing call
ЮKassa on demand. ``BILLING_YOOKASSA_TRUSTED_NETWORKS`` overrides the list; by default it
is ЮKassa's published list while the API address is ЮKassa's, and anywhere otherwise (the
built-in sandbox, a test double). Behind a reverse proxy the client address comes from
``X-Forwarded-For``, believed only as far as ``BILLING_TRUSTED_PROXIES`` reaches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from billing.config import IpNetwork, parse_networks
from billing.dependencies import SettingsDep
from billing.errors import ApiError

IpAddress = IPv4Address | IPv6Address

YOOKASSA_API_HOST = "api.yookassa.ru"
#: ЮKassa's published sources of HTTP notifications
#: (https://yookassa.ru/developers/using-api/webhooks, "IP addresses").
YOOKASSA_NOTIFICATION_NETWORKS: tuple[IpNetwork, ...] = parse_networks(
    "185.71.76.0/27, 185.71.77.0/27, 77.75.153.0/25, 77.75.156.11, 77.75.156.35,"
    " 77.75.154.128/25, 2a02:5180::/32"
)

UNTRUSTED_NOTIFICATION_SOURCE = ApiError(
    403, "forbidden", "notifications are accepted only from the provider's networks"
)


def yookassa_networks(
    configured: tuple[IpNetwork, ...] | None, api_url: str
) -> tuple[IpNetwork, ...] | None:
    """The networks ЮKassa notifications must come from; ``None``: anywhere."""
    if configured is not None:
        return configured
    if urlsplit(api_url).hostname == YOOKASSA_API_HOST:
        return YOOKASSA_NOTIFICATION_NETWORKS
    return None


def is_within(address: IpAddress, networks: Iterable[IpNetwork]) -> bool:
    """Whether the address lies in one of the networks (an IPv4-mapped IPv6 address counts
    as its IPv4 address; a network of the other family never matches)."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def _parse_address(text: str) -> IpAddress | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:443"
        text = text.split(":", 1)[0]
    try:
        return ip_address(text)
    except ValueError:
        return None


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[IpNetwork]
) -> IpAddress | None:
    """The address a request came from: the direct peer, unless the peer is a trusted proxy;
    then X-Forwarded-For is read from the right (each proxy appends the address it saw) and
    the first address that is not a trusted proxy is the client. ``None`` when an address on
    the way is not an address at all — never believe what cannot be read."""
    address = _parse_address(peer) if peer is not None else None
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    while address is not None and hops and is_within(address, trusted_proxies):
        address = _parse_address(hops.pop())
    return address


def check_notification_source(
    provider_name: str,
    peer: str | None,
    forwarded_for: Sequence[str],
    *,
    yookassa: tuple[IpNetwork, ...] | None,
    trusted_proxies: Sequence[IpNetwork],
) -> bool:
    """Whether a notification to ``/webhooks/{provider_name}`` may be read: ЮKassa's only
    from its networks (Stripe's are signed, and checked by their signature)."""
    if provider_name != "yookassa" or yookassa is None:
        return True
    source = client_address(peer, forwarded_for, trusted_proxies)
    return source is not None and is_within(source, yookassa)


async def _from_trusted_network(
    provider_name: str, request: Request, settings: SettingsDep
) -> None:
    allowed = check_notification_source(
        provider_name,
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
        yookassa=yookassa_networks(settings.yookassa_trusted_networks, settings.yookassa_base_url),
        trusted_proxies=settings.trusted_proxies or (),
    )
    if not allowed:
        raise UNTRUSTED_NOTIFICATION_SOURCE()


#: The webhook's guard: 403 ``forbidden`` before the body is read.
TrustedNotificationSource = Annotated[None, Depends(_from_trusted_network)]
