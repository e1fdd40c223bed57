"""Which URLs may carry secrets: https, or plain http to this machine, or with an opt-in."""

from __future__ import annotations

import functools
import ipaddress
import urllib.parse
from typing import Any, Optional

from .._errors import ConfigurationError


@functools.lru_cache(maxsize=256)  # asked for every plain-http request's host: parse once
def is_loopback(host: Optional[str]) -> bool:
    """Whether ``host`` names this machine: a numeric loopback address (127.0.0.0/8, ``::1``)
    or exactly ``localhost``. Other ``*.localhost`` names are not trusted: RFC 6761 only asks
    resolvers to keep them on loopback, and a resolver (or ``/etc/hosts``) may not."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str, *, allow_insecure_http: bool) -> str:
    """Refuse anything but ``https`` (or plain ``http`` to loopback, or with explicit opt-in).

    :raises ConfigurationError: with a message saying how to opt in.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname:
        if allow_insecure_http or is_loopback(parts.hostname):
            return url
        raise ConfigurationError(
            f"{what} {url!r} is plain http: tokens would travel unencrypted. Use https, or "
            "pass allow_insecure_http=True if this network is trusted."
        )
    raise ConfigurationError(f"{what} {url!r} is not an absolute http(s) URL")


def direct_proxies(url: str, *, allow_insecure_http: bool) -> Optional[dict[str, Any]]:
    """``proxies=`` for a request to ``url`` that must not go through any proxy, or ``None``
    (requests decides as usual).

    Plain http to this machine is allowed only because it never leaves the machine; a proxy
    (from the environment's ``HTTP_PROXY``/``ALL_PROXY`` or a session's ``proxies``) would
    carry the secret across the network unencrypted. So when the loopback exemption is what
    allows ``url`` (plain http, a loopback host, no ``allow_insecure_http``), every proxy key
    requests looks up for it is set to ``None``, which requests reads as "no proxy" and which
    the environment cannot fill in. A new dict each call: requests adds to it.
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    if allow_insecure_http or parts.scheme != "http" or not is_loopback(host):
        return None
    return dict.fromkeys(("http", "all", f"http://{host}", f"all://{host}"))
