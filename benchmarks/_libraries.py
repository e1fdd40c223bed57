"""Each library under test, configured the way its documentation recommends.

A :class:`Library` turns a token dict (or, for client-credentials-only libraries, nothing)
into a :class:`Client`: a ``requests.Session`` (or the library's own session subclass)
that sends authenticated requests, plus a ``stamp`` callable that does only the per-request
auth work, for the fast-path scenario.

Every library decides "expired" with some margin before the real expiry. The scenarios use
lifetimes of seconds, not hours, so each library's margin is scaled to the same value our
policy uses (``margin_seconds``); requests-oauthlib has no margin and no knob.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import importlib.metadata
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable, Optional

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from requests_tokenauth import ClientCredentials, RefreshPolicy, RefreshToken, TokenAuth

#: Connection pool size of every session: the stampede has 64 threads.
POOL_SIZE = 64

APP_ID, APP_SECRET = "app", "app-secret"  # the testing server's refresh-token client
SVC_ID, SVC_SECRET = "svc", "svc-secret"  # its client-credentials client
TOKEN_PATH, RESOURCE_PATH = "/token", "/resource"


def margin_seconds(lifetime_seconds: float) -> float:
    """The expiry skew our default policy applies to a token of this lifetime; every other
    library's "expired early" margin is set to it too (their defaults are 30 s to 225 s)."""
    policy = RefreshPolicy()
    return min(policy.expiry_skew_seconds, lifetime_seconds / 10)


class ConstantHeader(AuthBase):
    """The trivial auth the fast-path cost is measured against: one constant header."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = self.value
        return r


@dataclass
class Client:
    """A configured library: the session to send with and the auth work alone."""

    session: requests.Session
    stamp: Callable[[], object]
    close: Callable[[], None]


def _mount(session: requests.Session) -> requests.Session:
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE)
    session.mount("http://", adapter)
    return session


#: The URL the fast-path scenario stamps (never sent): an https API, as in production.
STAMPED_URL = "https://api.example.com/orders"


def _stamp_auth(auth: Callable[[requests.PreparedRequest], object]) -> Callable[[], object]:
    prepared = requests.Request("GET", STAMPED_URL).prepare()

    def stamp() -> object:
        prepared.hooks = {"response": []}  # TokenAuth registers a hook per request
        return auth(prepared)

    return stamp


def _nothing() -> None:
    return None


# -- one builder per library -------------------------------------------------------------


def baseline(url: str, token: Optional[dict[str, Any]], margin: float) -> Client:
    """A bare ``requests.Session`` with a static ``Authorization`` header."""
    assert token is not None
    session = _mount(requests.Session())
    value = f"Bearer {token['access_token']}"
    session.headers["Authorization"] = value
    return Client(session, _stamp_auth(ConstantHeader(value)), session.close)


def tokenauth(refresh_ahead: str) -> Builder:
    def build(url: str, token: Optional[dict[str, Any]], margin: float) -> Client:
        if token is None:
            grant: Any = ClientCredentials(
                url + TOKEN_PATH, client_id=SVC_ID, client_secret=SVC_SECRET
            )
        else:
            grant = RefreshToken(url + TOKEN_PATH, client_id=APP_ID, client_secret=APP_SECRET)
        auth = TokenAuth(grant, token=token, on_token=_ignore, refresh_ahead=refresh_ahead)
        session = _mount(requests.Session())
        session.auth = auth

        def close() -> None:
            auth.manager.wait_for_refresh()
            session.close()

        return Client(session, _stamp_auth(auth), close)

    return build


def requests_oauthlib(url: str, token: Optional[dict[str, Any]], margin: float) -> Client:
    """``OAuth2Session(client_id, token=..., auto_refresh_url=..., auto_refresh_kwargs=...,
    token_updater=...)``, as its "Refreshing tokens" documentation shows."""
    from requests_oauthlib import OAuth2Session

    assert token is not None
    session = OAuth2Session(
        APP_ID,
        token=dict(token),
        auto_refresh_url=url + TOKEN_PATH,
        auto_refresh_kwargs={"client_id": APP_ID, "client_secret": APP_SECRET},
        token_updater=_ignore,
    )
    _mount(session)

    def stamp() -> object:  # what OAuth2Session.request does per request, minus sending
        return session._client.add_token(STAMPED_URL, http_method="GET", body=None, headers={})

    return Client(session, stamp, session.close)


def authlib(url: str, token: Optional[dict[str, Any]], margin: float) -> Client:
    """Authlib's ``OAuth2Session(client_id, client_secret, token=..., token_endpoint=...,
    update_token=...)``; ``leeway`` scaled to the short lifetimes."""
    from authlib.integrations.requests_client import OAuth2Session

    assert token is not None
    session = OAuth2Session(
        APP_ID,
        APP_SECRET,
        token=dict(token),
        token_endpoint=url + TOKEN_PATH,
        update_token=_ignore_kw,
        leeway=margin,
    )
    _mount(session)
    return Client(session, _stamp_auth(session.token_auth), session.close)


def google_auth(url: str, token: Optional[dict[str, Any]], margin: float) -> Client:
    """``AuthorizedSession(google.oauth2.credentials.Credentials(token=..., refresh_token=...,
    token_uri=..., client_id=..., client_secret=...))``; its refresh threshold (3 min 45 s
    by default, a module constant) scaled to the short lifetimes for the run."""
    import google.auth._helpers
    import google.oauth2.credentials
    from google.auth.transport.requests import AuthorizedSession, Request

    assert token is not None
    google.auth._helpers.REFRESH_THRESHOLD = datetime.timedelta(seconds=margin)
    expires_at = token.get("expires_at") or time.time() + float(token["expires_in"])
    credentials = google.oauth2.credentials.Credentials(
        token=token["access_token"],
        refresh_token=token.get("refresh_token"),
        token_uri=url + TOKEN_PATH,
        client_id=APP_ID,
        client_secret=APP_SECRET,
        expiry=datetime.datetime.fromtimestamp(expires_at, datetime.timezone.utc).replace(
            tzinfo=None
        ),
    )
    session = AuthorizedSession(credentials)
    _mount(session)
    request = Request(session)

    def stamp() -> object:  # what AuthorizedSession.request does before sending
        headers: dict[str, str] = {}
        credentials.before_request(request, "GET", STAMPED_URL, headers)
        return headers

    return Client(session, stamp, session.close)


def google_auth_non_blocking(url: str, token: Optional[dict[str, Any]], margin: float) -> Client:
    """google-auth as above, with ``credentials.with_non_blocking_refresh()``: a stale token
    is refreshed on a background thread while requests go on with it (outage scenarios)."""
    client = google_auth(url, token, margin)
    client.session.credentials.with_non_blocking_refresh()  # type: ignore[attr-defined]
    return client


def requests_auth(url: str, token: Optional[dict[str, Any]], margin: float) -> Client:
    """``OAuth2ClientCredentials(token_url, client_id=..., client_secret=...)``: client
    credentials only (it supports no refresh tokens); ``early_expiry`` scaled."""
    from requests_auth import OAuth2, OAuth2ClientCredentials

    OAuth2.token_cache.clear()  # a process-wide cache: start each scenario empty
    auth = OAuth2ClientCredentials(
        url + TOKEN_PATH, client_id=SVC_ID, client_secret=SVC_SECRET, early_expiry=margin
    )
    session = _mount(requests.Session())
    session.auth = auth
    return Client(session, _stamp_auth(auth), session.close)


def _ignore(token: object) -> None:
    return None


def _ignore_kw(token: object, **kwargs: object) -> None:
    return None


#: ``build(base_url, token dict or None, margin_seconds)``
Builder = Callable[[str, Optional[dict[str, Any]], float], Client]


@dataclass(frozen=True)
class Library:
    """One library (or configuration of one) in the comparison.

    :ivar name: the row label.
    :ivar distribution: the PyPI distribution whose version is reported.
    :ivar module: imported to tell whether it is installed.
    :ivar build: makes a :class:`Client`.
    :ivar refresh_tokens: ``False`` for client-credentials-only libraries (seeded with no
        token; the rotation scenario does not apply).
    """

    name: str
    distribution: str
    module: str
    build: Builder
    refresh_tokens: bool = True

    @property
    def version(self) -> Optional[str]:
        """The installed version, or ``None`` when the library is not installed."""
        try:
            importlib.import_module(self.module)
            return importlib.metadata.version(self.distribution)
        except ImportError:
            return None
        except importlib.metadata.PackageNotFoundError:
            return "unknown"


BASELINE = Library("bare requests.Session", "requests", "requests", baseline)
OURS = Library(
    "requests-tokenauth", "requests-tokenauth", "requests_tokenauth", tokenauth("background")
)
OURS_INLINE = Library(
    "requests-tokenauth (inline)", "requests-tokenauth", "requests_tokenauth", tokenauth("inline")
)
ANCHORS = (
    Library("requests-oauthlib", "requests-oauthlib", "requests_oauthlib", requests_oauthlib),
    Library("Authlib", "Authlib", "authlib", authlib),
    Library("google-auth", "google-auth", "google.oauth2.credentials", google_auth),
    Library("requests-auth", "requests-auth", "requests_auth", requests_auth, refresh_tokens=False),
)
#: The libraries every scenario compares, ours first.
LIBRARIES = (OURS, *ANCHORS)
#: An extra row of the outage scenarios (the issue that asked for them compared it).
GOOGLE_NON_BLOCKING = Library(
    "google-auth (non-blocking)",
    "google-auth",
    "google.oauth2.credentials",
    google_auth_non_blocking,
)


@contextlib.contextmanager
def insecure_loopback() -> Iterator[None]:
    """requests-oauthlib and Authlib refuse plain-http token URLs unless told; the testing
    server is plain http on 127.0.0.1."""
    names = ("OAUTHLIB_INSECURE_TRANSPORT", "AUTHLIB_INSECURE_TRANSPORT")
    old = {name: os.environ.get(name) for name in names}
    os.environ.update(dict.fromkeys(names, "1"))
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def google_threshold() -> Iterator[None]:
    """Restore google-auth's refresh threshold after a scenario changed it."""
    try:
        import google.auth._helpers as helpers
    except ImportError:
        yield
        return
    old = helpers.REFRESH_THRESHOLD
    try:
        yield
    finally:
        helpers.REFRESH_THRESHOLD = old
