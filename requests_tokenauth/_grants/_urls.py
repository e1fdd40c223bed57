"""Which URLs may carry secrets: https, or plain http to this machine, or with an opt-in."""

from __future__ import annotations

import functools
import ipaddress
import urllib.parse
from typing import Optional

from .._errors import ConfigurationError


@functools.lru_cache(maxsize=256)  # asked for every plain-http request's host: parse once
def is_loopback(host: Optional[str]) -> bool:
    """Whether ``host`` names this machine (127.0.0.0/8, ::1 or ``localhost``)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
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
