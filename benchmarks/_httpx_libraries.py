"""Each httpx library under test, configured the way its documentation recommends, once
per client flavour: ``httpx.Client`` (sync) and ``httpx.AsyncClient`` (async).

An :class:`HttpxLibrary` turns a token dict (or, for client-credentials set-ups, nothing)
into an :class:`HttpxClient`: an ``httpx.Client`` / ``httpx.AsyncClient`` (or the
library's own subclass of one) that sends authenticated requests. Margins are scaled to the
short lifetimes as in :mod:`benchmarks._libraries`.

httpx-auth has no refresh-token support in its client-credentials flow, and no async code
at all: httpx drives its synchronous ``auth_flow`` from ``AsyncClient`` too, so its token
requests are sent by a blocking ``httpx.Client`` on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import httpx

from ._libraries import APP_ID, APP_SECRET, SVC_ID, SVC_SECRET, TOKEN_PATH

#: Every client's pool: the stampede has 64 threads or tasks.
LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=64)
#: Seconds every resource request may take at most (a caller that waits shows up, a hang does not).
REQUEST_TIMEOUT_SECONDS = 10.0

Client = Union[httpx.Client, httpx.AsyncClient]


@dataclass
class HttpxClient:
    """A configured library: the client to send with, and how to shut it down
    (``close`` is a coroutine function for async clients)."""

    client: Client
    close: Callable[[], Any]


#: ``build(base_url, token dict or None, margin_seconds)``; async builders are called on the
#: running loop that will use the client.
Builder = Callable[[str, Optional[dict[str, Any]], float], HttpxClient]


def _options() -> dict[str, Any]:
    # trust_env=False: the loopback server must never go through a proxy from the environment
    return {"trust_env": False, "limits": LIMITS, "timeout": REQUEST_TIMEOUT_SECONDS}


def _closer(client: Client) -> Callable[[], Any]:
    return client.aclose if isinstance(client, httpx.AsyncClient) else client.close


# -- one builder per library and flavour -------------------------------------------------


def bare(asynchronous: bool) -> Builder:
    """A bare client with a static ``Authorization`` header (the throughput baseline)."""

    def build(url: str, token: Optional[dict[str, Any]], margin: float) -> HttpxClient:
        assert token is not None
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        kind = httpx.AsyncClient if asynchronous else httpx.Client
        client = kind(headers=headers, **_options())
        return HttpxClient(client, _closer(client))

    return build


def tokenauth(asynchronous: bool) -> Builder:
    """``httpx.Client(auth=requests_tokenauth.httpx.TokenAuth(grant, token=...))`` (and the
    same ``TokenAuth`` with ``httpx.AsyncClient``); default options (refresh ahead in the
    background)."""

    def build(url: str, token: Optional[dict[str, Any]], margin: float) -> HttpxClient:
        from requests_tokenauth import ClientCredentials, RefreshToken
        from requests_tokenauth.httpx import TokenAuth

        grant: Any
        if token is None:
            grant = ClientCredentials(url + TOKEN_PATH, client_id=SVC_ID, client_secret=SVC_SECRET)
        else:
            grant = RefreshToken(url + TOKEN_PATH, client_id=APP_ID, client_secret=APP_SECRET)
        auth = TokenAuth(grant, token=token, on_token=_ignore)
        if not asynchronous:
            client: Client = httpx.Client(auth=auth, **_options())

            def close() -> None:
                auth.wait_for_refresh()
                client.close()

            return HttpxClient(client, close)
        aclient = httpx.AsyncClient(auth=auth, **_options())

        async def aclose() -> None:
            # a refresh ahead may be sending on this loop: wait for it off the loop
            await asyncio.to_thread(auth.wait_for_refresh)
            await aclient.aclose()

        return HttpxClient(aclient, aclose)

    return build


def authlib(asynchronous: bool) -> Builder:
    """Authlib's ``OAuth2Client`` / ``AsyncOAuth2Client(client_id, client_secret, token=...,
    token_endpoint=..., update_token=..., leeway=...)`` as its "HTTPX OAuth 2.0" docs show
    (``update_token`` is a coroutine function for the async client); ``leeway`` scaled."""

    def build(url: str, token: Optional[dict[str, Any]], margin: float) -> HttpxClient:
        with warnings.catch_warnings():  # Authlib 1.9 warns that it would prefer httpx2
            warnings.simplefilter("ignore")
            from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuth2Client

        assert token is not None
        common: dict[str, Any] = {
            "token": dict(token),
            "token_endpoint": url + TOKEN_PATH,
            "leeway": margin,
            **_options(),
        }
        client: Client
        if asynchronous:
            client = AsyncOAuth2Client(APP_ID, APP_SECRET, update_token=_aignore, **common)
        else:
            client = OAuth2Client(APP_ID, APP_SECRET, update_token=_ignore_kw, **common)
        return HttpxClient(client, _closer(client))

    return build


def httpx_auth_client_credentials(asynchronous: bool) -> Builder:
    """httpx-auth's ``OAuth2ClientCredentials(token_url, client_id=..., client_secret=...)``
    as ``auth=`` of the client (its README's first OAuth 2 example); ``early_expiry`` scaled.
    Client credentials: no refresh token, so no seeded token either (first use fetches)."""

    def build(url: str, token: Optional[dict[str, Any]], margin: float) -> HttpxClient:
        from httpx_auth import OAuth2, OAuth2ClientCredentials

        OAuth2.token_cache.clear()  # a process-wide cache: start each scenario empty
        auth = OAuth2ClientCredentials(
            url + TOKEN_PATH, client_id=SVC_ID, client_secret=SVC_SECRET, early_expiry=margin
        )
        kind = httpx.AsyncClient if asynchronous else httpx.Client
        client = kind(auth=auth, **_options())
        return HttpxClient(client, _closer(client))

    return build


def httpx_auth_password(asynchronous: bool) -> Builder:
    """httpx-auth's ``OAuth2ResourceOwnerPasswordCredentials(token_url, username, password,
    client_auth=(id, secret))``: its one flow without a browser that uses refresh tokens (the
    rotation scenario). It cannot be given a saved token: first use sends the password grant."""

    def build(url: str, token: Optional[dict[str, Any]], margin: float) -> HttpxClient:
        from httpx_auth import OAuth2, OAuth2ResourceOwnerPasswordCredentials

        OAuth2.token_cache.clear()
        auth = OAuth2ResourceOwnerPasswordCredentials(
            url + TOKEN_PATH,
            username="alice",
            password="wonderland",
            client_auth=(APP_ID, APP_SECRET),
            early_expiry=margin,
        )
        kind = httpx.AsyncClient if asynchronous else httpx.Client
        client = kind(auth=auth, **_options())
        return HttpxClient(client, _closer(client))

    return build


def _ignore(token: object) -> None:
    return None


def _ignore_kw(token: object, **kwargs: object) -> None:
    return None


async def _aignore(token: object, **kwargs: object) -> None:
    return None


@dataclass(frozen=True)
class HttpxLibrary:
    """One library in one client flavour.

    :ivar name: the row label.
    :ivar distribution: the PyPI distribution whose version is reported.
    :ivar module: imported to tell whether it is available.
    :ivar asynchronous: built on ``httpx.AsyncClient`` (run as tasks on one loop) rather
        than ``httpx.Client`` (run on threads).
    :ivar build: makes an :class:`HttpxClient` with the library's usual set-up.
    :ivar refresh_tokens: ``False``: ``build`` uses client credentials, seeded with no token.
    :ivar build_rotating: the set-up the rotation scenario uses instead of ``build`` (a flow
        that obtains its own refresh token on first use), ``None``: ``build``.
    """

    name: str
    distribution: str
    module: str
    asynchronous: bool
    build: Builder
    refresh_tokens: bool = True
    build_rotating: Optional[Builder] = None

    @property
    def version(self) -> Optional[str]:
        """The installed version, or ``None`` when it cannot be imported."""
        try:
            importlib.import_module(self.module)
            return importlib.metadata.version(self.distribution)
        except ImportError:
            return None
        except importlib.metadata.PackageNotFoundError:
            return "unknown"


def _both(name: str, distribution: str, module: str, make: Callable[[bool], Builder],
          **kw: Any) -> tuple[HttpxLibrary, HttpxLibrary]:  # fmt: skip
    rotating = kw.pop("build_rotating", None)
    return (
        HttpxLibrary(f"{name} (Client)", distribution, module, False, make(False),
                     build_rotating=rotating and rotating(False), **kw),
        HttpxLibrary(f"{name} (AsyncClient)", distribution, module, True, make(True),
                     build_rotating=rotating and rotating(True), **kw),
    )  # fmt: skip


OURS_SYNC, OURS_ASYNC = _both(
    "requests-tokenauth", "requests-tokenauth", "requests_tokenauth.httpx", tokenauth
)
AUTHLIB_SYNC, AUTHLIB_ASYNC = _both("Authlib", "Authlib", "authlib", authlib)
HTTPX_AUTH_SYNC, HTTPX_AUTH_ASYNC = _both(
    "httpx-auth",
    "httpx_auth",
    "httpx_auth",
    httpx_auth_client_credentials,
    refresh_tokens=False,
    build_rotating=httpx_auth_password,
)
#: Every httpx library and flavour the httpx scenarios compare, ours first.
HTTPX_LIBRARIES = (OURS_SYNC, OURS_ASYNC, AUTHLIB_SYNC, AUTHLIB_ASYNC, HTTPX_AUTH_SYNC,
                   HTTPX_AUTH_ASYNC)  # fmt: skip
#: The baselines: a bare client of each flavour with a static header.
BARE_SYNC = HttpxLibrary("bare httpx.Client", "httpx", "httpx", False, bare(False))
BARE_ASYNC = HttpxLibrary("bare httpx.AsyncClient", "httpx", "httpx", True, bare(True))
