"""Who may reach what when Kiln is exposed: client addresses behind proxies, self-registration."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from starlette.requests import HTTPConnection

from kiln.core.auth.deps import AuthError

SIGNUP_CLOSED_MESSAGE = (
    "Self-registration is closed on this server; an administrator creates accounts with "
    "`kiln user create EMAIL` (or sets KILN_SIGNUP=open)"
)


def signup_open(settings: Any) -> bool:
    """Whether the contracts' own signup routes may create accounts (KILN_SIGNUP; by default open
    only while Kiln listens on loopback)."""
    return bool(settings.signup_open)


async def require_signup_open(conn: HTTPConnection) -> None:
    """Dependency for a signup route: AuthError 403 (code `signup_closed`) when signup is closed."""
    if not signup_open(conn.app.state.kernel.settings):
        raise AuthError(403, "signup_closed", SIGNUP_CLOSED_MESSAGE)


@lru_cache(maxsize=64)
def _networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip().strip('"')
    if value.startswith("["):  # "[2001:db8::1]:443"
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:  # "203.0.113.9:5000"
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _trusted(address: str, networks: tuple[Any, ...]) -> bool:
    ip = _ip(address)
    return ip is not None and any(ip in network for network in networks)


def client_address(conn: HTTPConnection) -> str:
    """The client address used as rate-limit key.

    The peer, unless the peer is one of `KILN_TRUSTED_PROXIES`: then the nearest address in
    `X-Forwarded-For` that is not itself a trusted proxy (entries further left are whatever the
    client claimed and are ignored). With no trusted proxies the header is never read.
    """
    peer = conn.client.host if conn.client else "unknown"
    state = getattr(conn.app, "state", None)
    kernel = getattr(state, "kernel", None)
    proxies = tuple(getattr(getattr(kernel, "settings", None), "trusted_proxies", None) or ())
    if not proxies:
        return peer
    networks = _networks(proxies)
    if not _trusted(peer, networks):
        return peer
    hops = [hop.strip() for value in conn.headers.getlist("x-forwarded-for") for hop in value.split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        if not _trusted(hop, networks):
            ip = _ip(hop)
            return str(ip) if ip is not None else peer
    return peer
