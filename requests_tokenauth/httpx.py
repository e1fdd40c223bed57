"""OAuth 2.0 tokens for httpx, sync and async: ``httpx.Client(auth=TokenAuth(grant))`` or
``httpx.AsyncClient(auth=TokenAuth(grant))``, with the same guarantees as
:class:`requests_tokenauth.TokenAuth` (one token request however many callers, refresh
ahead, one guarded retry after a rejected token, origins, stores, DPoP).

Needs the ``httpx`` extra: ``pip install requests-tokenauth[httpx]``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator, Iterable, Mapping
from typing import Any, Callable, Optional

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "requests_tokenauth.httpx needs httpx: pip install requests-tokenauth[httpx]"
    ) from exc

from ._async_bridge import AsyncFlights, LoopSender
from ._clock import SYSTEM_CLOCK, Clock
from ._dpop import DPoPKey, proofs_for_grant
from ._errors import ConfigurationError
from ._events import EventCallback
from ._grants import Grant
from ._grants._wire import sending_with
from ._httpx_flow import HttpxFlow, refuse_requests_only
from ._httpx_send import AsyncHttpxSending, HttpxSender
from ._io_loop import IO_LOOP
from ._manager import DEFAULT_LOCK_TIMEOUT_SECONDS, DEFAULT_MAX_WAIT_SECONDS, TokenManager
from ._on_token import token_callback
from ._options import RefreshAhead
from ._origins import Origins, OriginScope
from ._policy import DEFAULT_POLICY, DEFAULT_REFRESH_STATUS_CODES, RefreshPolicy
from ._retry import refresh_codes
from ._stores import TokenStore
from ._token import Token

__all__ = ["TokenAuth"]


class TokenAuth(httpx.Auth):
    """OAuth 2.0 tokens for :class:`httpx.Client` and :class:`httpx.AsyncClient`:
    ``httpx.Client(auth=TokenAuth(grant))``.

    The same behaviour and keyword options as :class:`requests_tokenauth.TokenAuth`
    (which documents each): a token on first use, refreshed ahead of expiry with one token
    request however many threads or tasks ask, one retry of a request whose token a
    resource rejected, ``origins``, ``store``, ``dpop``. Thread-safe, and safe to share
    between event loops (each in its own thread) and between sync and async clients.

    Token requests go out with a private :class:`httpx.Client` (sync) or, from an async
    client, a private :class:`httpx.AsyncClient` on the library's own event loop (the
    daemon thread ``tokenauth-io``), so that a token request outlives the caller's loop:
    ``asyncio.run`` cancels its loop's tasks when it returns, and a refresh cancelled after
    the server rotated the refresh token would lose the new one. The renewal a task waits
    for (the manager's lock, a store, the outage wait) runs on a short-lived
    ``tokenauth-async`` thread while every waiting task awaits it, so the caller's loop
    never blocks. Under trio (no asyncio loop) the async flow raises
    :class:`ConfigurationError`.

    A request whose body is streamed (a generator, a file) is not sent again after a
    rejection: the token is replaced for the next request, and the rejection is returned.

    :param grant: how tokens are obtained, e.g. :class:`ClientCredentials`; without
        ``session=`` and without ``protected_request`` compliance hooks (requests-only).
    :param token_client_options: keyword arguments for the private httpx clients that send
        token requests (``verify``, ``cert``, ``proxy``, ``trust_env``, ``transport``,
        ``limits``...); not ``auth``. The async client takes an
        :class:`httpx.AsyncBaseTransport` as ``transport`` (and in ``mounts``): one used by
        both flows must be both, as :class:`httpx.MockTransport` is.
    :raises ConfigurationError: a grant with ``session=`` or ``protected_request`` hooks,
        a refused client option, or any of :class:`requests_tokenauth.TokenAuth`'s.
    """

    requires_request_body = False  # a streamed upload stays streamed
    requires_response_body = False  # httpx reads a rejection itself before the retry

    def __init__(
        self,
        grant: Grant,
        *,
        token: Optional[Mapping[str, Any]] = None,
        on_token: Optional[Callable[..., None]] = None,
        on_event: Optional[EventCallback] = None,
        store: Optional[TokenStore] = None,
        store_key: Optional[str] = None,
        clock: Clock = SYSTEM_CLOCK,
        policy: RefreshPolicy = DEFAULT_POLICY,
        random: Optional[Callable[[], float]] = None,
        refresh_ahead: RefreshAhead = "background",
        lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
        max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
        origins: Origins = None,
        strict_origins: bool = False,
        allow_insecure_http: bool = False,
        dpop: Optional[DPoPKey] = None,
        allow_dpop_downgrade: bool = False,
        refresh_status_codes: Iterable[int] = DEFAULT_REFRESH_STATUS_CODES,
        token_client_options: Optional[Mapping[str, Any]] = None,
    ) -> None:
        if not isinstance(grant, Grant):
            raise ConfigurationError(f"grant must be a Grant, not {type(grant).__name__}")
        refuse_requests_only(grant)
        #: The statuses that mean "this token was rejected" (see ``refresh_status_codes``).
        self.refresh_status_codes = refresh_codes(refresh_status_codes)
        #: Which origins may receive the token (and the https rule).
        self.origin_scope = OriginScope(origins, allow_insecure_http=allow_insecure_http)
        sender = HttpxSender(token_client_options)
        self._async_sending = AsyncHttpxSending(token_client_options)
        proofs = proofs_for_grant(
            grant, dpop, clock, allow_downgrade=allow_dpop_downgrade, token=token
        )
        extra: dict[str, Any] = {} if random is None else {"random": random}
        #: The :class:`TokenManager` behind this auth.
        self.manager = TokenManager(
            grant,
            token=token,
            on_token=token_callback(on_token, token),
            on_event=on_event,
            store=store,
            store_key=store_key,
            clock=clock,
            policy=policy,
            refresh_ahead=refresh_ahead,
            lock_timeout_seconds=lock_timeout_seconds,
            max_wait_seconds=max_wait_seconds,
            sender=sender,
            **extra,
        )
        self._flow = HttpxFlow(
            self.manager, self.origin_scope, strict_origins, proofs, self.refresh_status_codes
        )
        self._flights = AsyncFlights()
        self._io_sender: Optional[LoopSender] = None

    # -- the flows -------------------------------------------------------------------------

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        flow = self._flow
        if not flow.admit(request):
            yield request
            return
        manager = self.manager
        sent = manager.get_token()
        flow.stamp(request, sent)
        response = yield request
        flow.saw(response)
        rejected = flow.rejection(request, response, sent)
        if rejected is None:
            return
        new = manager.replace(sent) if rejected.replace else sent
        resend, report = flow.prepare_retry(rejected, response, sent, new)
        if report is not None:
            report()
        if not resend:
            return
        response = yield rejected.request
        flow.saw(response)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        flow = self._flow
        if not flow.admit(request):
            yield request
            return
        manager = self.manager
        sender = self._loop_sender()
        sent = await self._token(sender)
        flow.stamp(request, sent)
        response = yield request
        flow.saw(response)
        rejected = flow.rejection(request, response, sent)
        if rejected is None:
            return
        new: Optional[Token] = sent
        if rejected.replace:
            new = await self._flights.run(
                ("replace", id(sent)), lambda: manager.replace(sent), sender
            )
        resend, report = flow.prepare_retry(rejected, response, sent, new)
        if report is not None:  # it runs callbacks: off the loop, as every callback here
            await self._flights.run(("report", id(request)), report, sender)
        if not resend:
            return
        response = yield rejected.request
        flow.saw(response)

    def _loop_sender(self) -> LoopSender:
        """The sender of token requests made for async callers: an ``httpx.AsyncClient`` on
        the library's own loop (:mod:`._io_loop`), where a token request outlives the
        caller's loop (``asyncio.run`` cancels its tasks when it returns).

        :raises ConfigurationError: no asyncio loop is running (trio, say).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError(
                "requests_tokenauth.httpx.TokenAuth runs its async flow on asyncio; no "
                "asyncio event loop is running (trio is not supported)"
            ) from None
        loop = IO_LOOP.loop()
        sender = self._io_sender
        if sender is None or not sender.sends_on(loop):  # first use, or a forked child
            sender = self._io_sender = LoopSender(loop, self._async_sending.send)
        return sender

    async def _token(self, sender: LoopSender) -> Token:
        with sending_with(sender):  # a refresh ahead it starts sends on this loop
            token = self.manager.token_nowait()
        if token is None:
            token = await self._flights.run("token", self.manager.get_token, sender)
        return token

    # -- members ---------------------------------------------------------------------------

    @property
    def dpop(self) -> Optional[DPoPKey]:
        """The DPoP key tokens are bound to, if any."""
        proofs = self._flow.dpop
        return None if proofs is None else proofs.key

    @property
    def token(self) -> Optional[Token]:
        """The current token, if any (no refresh)."""
        return self.manager.token

    def get_token(self) -> Token:
        """A valid token, obtaining or refreshing it if needed (blocks; see
        :class:`TokenManager`). Token requests go out with the sync httpx client."""
        return self.manager.get_token()

    async def aget_token(self) -> Token:
        """A valid token, awaited: a token request runs off the loop, sent with the
        async httpx client on this loop.

        :raises ConfigurationError: no asyncio loop is running.
        """
        return await self._token(self._loop_sender())

    def revoke(self) -> bool:
        """Revoke the current token (its refresh token, else the access token; RFC 7009)
        and forget it; see :meth:`TokenManager.revoke`.

        :returns: whether there was a token to revoke.
        """
        return self.manager.revoke()

    async def arevoke(self) -> bool:
        """:meth:`revoke`, awaited (off the loop, sent with the async httpx client)."""
        sender = self._loop_sender()
        return await self._flights.run("revoke", self.manager.revoke, sender)

    def wait_for_refresh(self, timeout: float = 10.0) -> bool:
        """Wait for a refresh ahead in flight and the callbacks due (see
        :meth:`TokenManager.wait_for_refresh`); blocks, so not on an event loop's thread.

        :returns: ``False`` if one was still running after ``timeout`` seconds.
        """
        return self.manager.wait_for_refresh(timeout)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_io_sender", "_flights"):
            del state[name]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._flights = AsyncFlights()
        self._io_sender = None

    def __repr__(self) -> str:
        return f"TokenAuth({self.manager.grant!r})"
