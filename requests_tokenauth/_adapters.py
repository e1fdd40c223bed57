"""TokenAdapter: the same stamping and one guarded 401 retry, at the transport layer."""

from __future__ import annotations

import logging
import threading
import urllib.parse
from collections.abc import Iterable
from typing import Any, Optional, Union

import requests
from requests.adapters import HTTPAdapter

from ._auth import Send, TokenAuth, retry_with
from ._errors import ConfigurationError
from ._manager import TokenManager

log = logging.getLogger("requests_tokenauth")

Origin = tuple[str, str, int]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: Optional[str]) -> Optional[Origin]:
    """``(scheme, host, port)`` of an absolute http(s) URL, lower-cased, default port filled."""
    parts = urllib.parse.urlsplit(url or "")
    scheme = (parts.scheme or "").lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    return scheme, parts.hostname.lower(), port


def parse_origins(origins: Union[str, Iterable[str], None]) -> Optional[frozenset[Origin]]:
    """Normalise an origin or a list of origins (``"https://api.example.com"``).

    :raises ConfigurationError: one is not an absolute http(s) URL.
    """
    if origins is None:
        return None
    if isinstance(origins, str):
        origins = [origins]
    out = set()
    for url in origins:
        origin = origin_of(url)
        if origin is None:
            raise ConfigurationError(f"{url!r} is not an http(s) origin")
        out.add(origin)
    return frozenset(out)


class _OriginGuard:
    """The origins a transport may send the token to. Without a list, the first origin
    the adapter sends to is the only one (pinned once, thread-safely)."""

    __slots__ = ("_origins", "_lock")

    def __init__(self, origins: Union[str, Iterable[str], None]) -> None:
        self._origins = parse_origins(origins)
        self._lock = threading.Lock()

    def allows(self, url: Optional[str]) -> bool:
        origin = origin_of(url)
        if origin is None:
            return False
        origins = self._origins
        if origins is None:
            with self._lock:
                if self._origins is None:
                    self._origins = frozenset({origin})
                    log.debug("token adapter pinned to %s://%s:%d", *origin)
                origins = self._origins
        return origin in origins

    def __getstate__(self) -> dict[str, Any]:
        return {"origins": self._origins}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._origins = state["origins"]
        self._lock = threading.Lock()


def send_with_token(
    send: Send,
    manager: TokenManager,
    guard: _OriginGuard,
    request: requests.PreparedRequest,
    kwargs: dict[str, Any],
) -> requests.Response:
    """Stamp the token (only for an allowed origin), send, and retry once after a 401."""
    if not guard.allows(request.url):
        return send(request, **kwargs)
    token = manager.get_token()
    request.headers["Authorization"] = token.authorization
    response = send(request, **kwargs)
    retry = retry_with(response, token, manager, already_retried=False)
    if retry is None:
        return response
    new_response = send(retry, **kwargs)
    new_response.history.insert(0, response)
    return new_response


class TokenAdapter(HTTPAdapter):
    """An :class:`~requests.adapters.HTTPAdapter` that adds the token itself.

    ``session.mount("https://api.example.com/", TokenAdapter(auth))``: only requests sent
    through this adapter carry the token, and only to its origins, whatever prefix it is
    mounted on, so a redirect to another host or scheme never carries it. Without
    ``origins``, the first origin it sends to is the only one. Use it instead of
    ``session.auth``, not together with it. Thread-safe, like ``HTTPAdapter``.

    :param auth: the :class:`TokenAuth` (or :class:`TokenManager`) whose token to send.
    :param origins: origin(s) allowed to receive the token, e.g. ``"https://api.example.com"``.
    :param kwargs: passed to :class:`~requests.adapters.HTTPAdapter` (``max_retries``, pools).
    """

    # HTTPAdapter pickles exactly the attributes listed here
    __attrs__ = [*HTTPAdapter.__attrs__, "_manager", "_guard"]

    def __init__(
        self,
        auth: Union[TokenAuth, TokenManager],
        origins: Union[str, Iterable[str], None] = None,
        **kwargs: Any,
    ) -> None:
        self._manager = auth.manager if isinstance(auth, TokenAuth) else auth
        self._guard = _OriginGuard(origins)
        super().__init__(**kwargs)

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        return send_with_token(super().send, self._manager, self._guard, request, kwargs)
