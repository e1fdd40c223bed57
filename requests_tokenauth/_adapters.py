"""The same stamping and one guarded 401 retry at the transport layer: :class:`TokenAdapter`,
and a wrapt proxy around an adapter the user already configured (retries, pools, TLS)."""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable
from typing import Any, Optional, Union

import requests
import wrapt
from requests.adapters import (
    DEFAULT_POOLBLOCK,
    DEFAULT_POOLSIZE,
    DEFAULT_RETRIES,
    HTTPAdapter,
)
from urllib3.util import Retry

from ._auth import TokenAuth
from ._dpop import DPoPProofs
from ._errors import ConfigurationError
from ._manager import TokenManager
from ._origins import (
    ALLOWED,
    INSECURE,
    LOOPBACK,
    Origins,
    OriginScope,
    insecure_error,
    origin_url,
    url_prefixes,
)
from ._policy import DEFAULT_REFRESH_STATUS_CODES
from ._retry import Send, refresh_codes, retry_with

#: wrapt 2 has ``BaseObjectProxy`` (no operator overloads to surprise anyone); wrapt 1.17
#: only ``ObjectProxy``, which is the same for an adapter.
_ObjectProxy: Any = getattr(wrapt, "BaseObjectProxy", None) or wrapt.ObjectProxy


def send_with_token(
    send: Send,
    manager: TokenManager,
    scope: OriginScope,
    request: requests.PreparedRequest,
    kwargs: dict[str, Any],
    dpop: Optional[DPoPProofs] = None,
    refresh_status_codes: Collection[int] = DEFAULT_REFRESH_STATUS_CODES,
) -> requests.Response:
    """Stamp the token (only for an allowed origin), send, and retry once after a 401.

    A request to any other origin loses our token if it carries it (requests keeps
    ``Authorization`` on an http to https redirect of the same host, for instance) and any
    DPoP proof; ``Proxy-Authorization`` and other headers are never touched. Plain http to
    this machine (allowed only by the loopback exemption) is sent with no proxy at all.

    :raises OriginNotAllowedError: the first request of a pinning adapter is plain http to
        a host that is not this machine, without ``allow_insecure_http``.
    """
    verdict = scope.verdict(request.url)
    if verdict == LOOPBACK:
        kwargs = {**kwargs, "proxies": {}}  # the token must not leave the machine in clear
    elif verdict != ALLOWED:
        if verdict == INSECURE:
            raise insecure_error(request.url)
        current = manager.token
        if current is not None and request.headers.get("Authorization") == current.authorization:
            del request.headers["Authorization"]
        if dpop is not None:
            request.headers.pop("DPoP", None)
        return send(request, **kwargs)
    hooks = manager.grant.compliance_hooks
    if hooks.protected_request:  # requests-oauthlib-style provider fixes
        hooks.before_protected_request(request)
    token = manager.get_token()
    request.headers["Authorization"] = token.authorization
    if dpop is not None:
        dpop.stamp(request, token)
    response = send(request, **kwargs)
    if dpop is not None and response.status_code != 401:
        dpop.remember_nonce(response)
    retry = retry_with(response, token, manager, False, dpop, refresh_status_codes)
    if retry is None:
        return response
    new_response = send(retry, **kwargs)
    new_response.history.insert(0, response)
    return new_response


def _codes(
    auth: Union[TokenAuth, TokenManager], refresh_status_codes: Optional[Iterable[int]]
) -> frozenset[int]:
    """The adapter's own ``refresh_status_codes``, else the auth's, else 401 only."""
    if refresh_status_codes is not None:
        return refresh_codes(refresh_status_codes)
    if isinstance(auth, TokenAuth):
        return auth.refresh_status_codes
    return DEFAULT_REFRESH_STATUS_CODES


def _parts(
    auth: Union[TokenAuth, TokenManager], origins: Origins
) -> tuple[TokenManager, OriginScope, Optional[DPoPProofs]]:
    """The manager, the origin scope and the DPoP proofs an adapter takes from ``auth``.
    Without ``origins``: the auth's own list, else the first origin sent to (pinned)."""
    if isinstance(auth, TokenAuth):
        if origins is None and auth.origin_scope.origins is not None:
            origins = [origin_url(origin) for origin in auth.origin_scope.origins]
        insecure_ok = auth.origin_scope.allow_insecure_http
        scope = OriginScope(origins, allow_insecure_http=insecure_ok, pin_first=True)
        return auth.manager, scope, auth.dpop_proofs
    if isinstance(auth, TokenManager):
        return auth, OriginScope(origins, pin_first=True), None
    raise ConfigurationError(f"auth must be a TokenAuth or TokenManager, not {type(auth).__name__}")


class TokenAdapter(HTTPAdapter):
    """An :class:`~requests.adapters.HTTPAdapter` that adds the token itself.

    ``session.mount("https://api.example.com/", TokenAdapter(auth))``: only requests sent
    through this adapter carry the token, and only to its origins, whatever prefix it is
    mounted on, so a redirect to another host or scheme never carries it (each hop that
    goes through the adapter is stamped anew, with a fresh DPoP proof when DPoP is on).
    Without ``origins``, the auth's ``origins``, else the first origin it sends to, is the
    only one. Use it instead of ``session.auth``, not together with it. Thread-safe, like
    ``HTTPAdapter``. To keep an adapter you already configured, see :func:`wrap_adapter`.

    :param auth: the :class:`TokenAuth` (or :class:`TokenManager`) whose token to send.
    :param origins: origin(s) allowed to receive the token, e.g. ``"https://api.example.com"``.
    :param refresh_status_codes: the statuses that mean "this token was rejected"; default:
        the auth's (see :class:`TokenAuth`), else ``(401,)``.
    :param pool_connections: passed to :class:`~requests.adapters.HTTPAdapter`, as are
        ``pool_maxsize``, ``max_retries`` (a number or a :class:`urllib3.util.Retry`) and
        ``pool_block``.
    """

    # HTTPAdapter pickles exactly the attributes listed here
    __attrs__ = [*HTTPAdapter.__attrs__, "_manager", "_scope", "_dpop", "_codes"]

    def __init__(
        self,
        auth: Union[TokenAuth, TokenManager],
        origins: Origins = None,
        *,
        refresh_status_codes: Optional[Iterable[int]] = None,
        pool_connections: int = DEFAULT_POOLSIZE,
        pool_maxsize: int = DEFAULT_POOLSIZE,
        max_retries: Union[int, Retry, None] = DEFAULT_RETRIES,
        pool_block: bool = DEFAULT_POOLBLOCK,
    ) -> None:
        self._manager, self._scope, self._dpop = _parts(auth, origins)
        self._codes = _codes(auth, refresh_status_codes)
        super().__init__(
            pool_connections=pool_connections,
            pool_maxsize=pool_maxsize,
            max_retries=max_retries,
            pool_block=pool_block,
        )

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        return send_with_token(
            super().send, self._manager, self._scope, request, kwargs, self._dpop, self._codes
        )


class AuthorizedAdapter(_ObjectProxy):  # type: ignore[misc]
    """A transparent proxy around an adapter: its ``send`` stamps the token and makes the
    one guarded 401 retry; everything else (``max_retries``, pools, TLS, ``close``, custom
    methods, ``isinstance``) is the wrapped adapter's own. Made by :func:`wrap_adapter`.

    Thread-safe if the wrapped adapter is. Picklable and copyable (a copy wraps a copy of
    the adapter and shares the token).
    """

    def __init__(
        self,
        adapter: Any,
        manager: TokenManager,
        scope: OriginScope,
        dpop: Optional[DPoPProofs] = None,
        refresh_status_codes: Collection[int] = DEFAULT_REFRESH_STATUS_CODES,
    ) -> None:
        super().__init__(adapter)
        self._self_manager = manager
        self._self_scope = scope
        self._self_dpop = dpop
        self._self_codes = refresh_status_codes

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        return send_with_token(
            self.__wrapped__.send,
            self._self_manager,
            self._self_scope,
            request,
            kwargs,
            self._self_dpop,
            self._self_codes,
        )

    def _rebuild(self, adapter: Any) -> tuple[Any, ...]:
        return (adapter, self._self_manager, self._self_scope, self._self_dpop, self._self_codes)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return (AuthorizedAdapter, self._rebuild(self.__wrapped__))

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__reduce_ex__(2)

    def __copy__(self) -> AuthorizedAdapter:
        return AuthorizedAdapter(*self._rebuild(copy.copy(self.__wrapped__)))

    def __deepcopy__(self, memo: dict[int, Any]) -> AuthorizedAdapter:
        return AuthorizedAdapter(*self._rebuild(copy.deepcopy(self.__wrapped__, memo)))

    def __repr__(self) -> str:
        return f"<AuthorizedAdapter around {self.__wrapped__!r}>"


def wrap_adapter(
    adapter: Any,
    auth: Union[TokenAuth, TokenManager],
    origins: Origins = None,
    *,
    refresh_status_codes: Optional[Iterable[int]] = None,
) -> AuthorizedAdapter:
    """Wrap an adapter you already built (``HTTPAdapter(max_retries=Retry(...))``, a
    requests-toolbelt adapter, ...) so that its ``send`` adds the token, without giving up
    its configuration. ``session.mount(prefix, wrap_adapter(adapter, auth))``.

    :param adapter: any requests transport adapter (something with ``send``).
    :param auth: the :class:`TokenAuth` (or :class:`TokenManager`) whose token to send.
    :param origins: the origins that may receive the token; default: the auth's ``origins``,
        else the first origin the adapter sends to.
    :param refresh_status_codes: the statuses that mean "this token was rejected"; default:
        the auth's (see :class:`TokenAuth`), else ``(401,)``.
    :returns: an :class:`AuthorizedAdapter`; ``isinstance`` checks against the wrapped
        adapter's class still pass.
    :raises ConfigurationError: not an adapter, or already wrapped.
    """
    if isinstance(adapter, AuthorizedAdapter):
        raise ConfigurationError("this adapter is already wrapped")
    if not callable(getattr(adapter, "send", None)):
        raise ConfigurationError(f"{type(adapter).__name__} has no send(): not an adapter")
    return AuthorizedAdapter(adapter, *_parts(auth, origins), _codes(auth, refresh_status_codes))


def authorize_session(
    session: requests.Session, auth: Union[TokenAuth, TokenManager], origins: Origins
) -> list[AuthorizedAdapter]:
    """Give the token to ``origins`` through the adapters ``session`` already has mounted.

    For each origin, the adapter that serves it now is wrapped (:func:`wrap_adapter`) and
    the wrapper is mounted on that origin's own prefix (``"https://api.example.com/"``, and
    ``"https://api.example.com:443/"``), so other hosts keep the unwrapped adapter; an
    adapter that serves several of the origins is wrapped once. Use it instead of
    ``session.auth``, not together with it.

    :param session: the session to change.
    :param auth: the :class:`TokenAuth` (or :class:`TokenManager`) whose token to send.
    :param origins: the origin(s) that may receive the token (required).
    :returns: the wrappers mounted.
    :raises ConfigurationError: a bad or plain-http origin, or no adapter for one.
    """
    manager, scope, dpop = _parts(auth, origins)
    if scope.origins is None:
        raise ConfigurationError("authorize_session needs the origins that may get the token")
    wrappers: dict[int, AuthorizedAdapter] = {}
    for origin in sorted(scope.origins):
        for prefix in url_prefixes(origin):
            try:
                current = session.get_adapter(prefix)
            except requests.exceptions.InvalidSchema:
                raise ConfigurationError(f"no adapter is mounted for {prefix}") from None
            if isinstance(current, AuthorizedAdapter):
                current = current.__wrapped__
            wrapper = wrappers.get(id(current))
            if wrapper is None:
                wrapper = wrappers[id(current)] = AuthorizedAdapter(
                    current, manager, scope, dpop, _codes(auth, None)
                )
            session.mount(prefix, wrapper)
    return list(wrappers.values())
