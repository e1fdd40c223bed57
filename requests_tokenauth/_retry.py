"""The guarded retry after a rejected token, shared by :class:`TokenAuth` (a response hook)
and the adapters (inside ``send``): one decision (:func:`._policy.after_unauthorized`),
two drivers."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from typing import Any, Callable, Optional

import requests
from requests.cookies import extract_cookies_to_jar
from requests.utils import rewind_body

from ._dpop import DPoPProofs
from ._errors import ConfigurationError
from ._manager import TokenManager
from ._origins import origin_of, origin_url
from ._policy import DEFAULT_REFRESH_STATUS_CODES, Rejection, after_unauthorized
from ._token import Token

log = logging.getLogger("requests_tokenauth")

Send = Callable[..., requests.Response]


def refresh_codes(codes: Iterable[int]) -> frozenset[int]:
    """Checked ``refresh_status_codes``: 4xx statuses (a 5xx is not about the token).

    :raises ConfigurationError: empty, or not all 4xx integers.
    """
    try:
        checked = frozenset(codes)
    except TypeError:
        raise ConfigurationError("refresh_status_codes must be a collection of statuses") from None
    if not checked or not all(
        isinstance(c, int) and not isinstance(c, bool) and 400 <= c < 500 for c in checked
    ):
        raise ConfigurationError("refresh_status_codes must be 4xx statuses, e.g. (401, 403)")
    return checked


def body_replayable(request: requests.PreparedRequest) -> bool:
    """Whether the body can be sent again in full: none, bytes/str, or a stream whose
    start position requests recorded (a ``BytesIO`` or file). Generators cannot."""
    body: object = request.body
    if body is None or isinstance(body, (bytes, str)):
        return True
    return isinstance(getattr(request, "_body_position", None), int)


def retry_with(
    response: requests.Response,
    sent: Token,
    manager: TokenManager,
    already_retried: bool,
    dpop: Optional[DPoPProofs] = None,
    refresh_status_codes: Collection[int] = DEFAULT_REFRESH_STATUS_CODES,
) -> Optional[requests.PreparedRequest]:
    """The guarded 401 retry, shared by :class:`TokenAuth` and the adapters.

    Decides (in :mod:`._policy`) what ``response`` does to the token, asks the manager to
    replace the token that was sent, drains and releases the 401, and returns a copy of
    the request with the body rewound, the cookies the 401 set, and the new token stamped.
    ``None``: return the response as it is. A body that cannot be sent again (a generator,
    requests-toolbelt's ``MultipartEncoder``) still gets the token replaced, so that the
    next request succeeds; this one is not re-sent (logged, and an
    ``unauthorized_not_retried`` event).

    With DPoP, a ``use_dpop_nonce`` challenge (or a request whose proof a redirect
    removed) keeps the token and only makes a fresh proof; either way it is the one retry.
    """
    status = response.status_code
    if status not in refresh_status_codes:
        return None
    request = response.request
    verdict = after_unauthorized(
        status_code=status,
        www_authenticate=response.headers.get("WWW-Authenticate"),
        already_retried=already_retried,
        sent_token=request.headers.get("Authorization") == sent.authorization,
        body_replayable=body_replayable(request),
        refresh_status_codes=refresh_status_codes,
    )
    if verdict is Rejection.IGNORE:
        return None
    new: Optional[Token] = sent
    if dpop is None or sent.token_type != "DPoP" or not _wants_new_proof(dpop, response):
        try:
            new = manager.replace(sent)
        except BaseException:
            response.close()
            raise
    if verdict is Rejection.REPLACE:
        log.info(
            "%s %s answered %d; its body (%s) cannot be sent again, so it is not retried; "
            "the next request carries the new token",
            request.method,
            origin_url(o) if (o := origin_of(request.url)) else "",
            status,
            type(request.body).__name__,
        )
        manager.notify_not_retried("body_not_replayable", new)
        return None
    if new is None:
        return None
    response.content  # noqa: B018 - drain, so the connection goes back to the pool
    response.close()
    retry = request.copy()
    body: object = retry.body
    if body is not None and not isinstance(body, (bytes, str)):
        rewind_body(retry)
    jar = getattr(retry, "_cookies", None)
    if jar is not None and response.raw is not None:
        extract_cookies_to_jar(jar, request, response.raw)  # type: ignore[no-untyped-call]
        # prepare_cookies keeps a Cookie header it finds; requests drops it before
        # re-preparing cookies for a redirect, and so do we, or the 401's cookies are lost
        retry.headers.pop("Cookie", None)
        retry.prepare_cookies(jar)
    retry.headers["Authorization"] = new.authorization
    if dpop is not None:
        dpop.stamp(retry, new)
    if new is not sent:
        manager.notify_retry(new)
    return retry


def _wants_new_proof(dpop: DPoPProofs, response: requests.Response) -> bool:
    return dpop.is_nonce_challenge(response) or "DPoP" not in response.request.headers


class RetryHook:
    """The response hook of one request: the token it carried and its one-retry budget.

    Lives on the request, not in a thread-local: a request prepared on one thread may be
    sent on another (requests#5178). A redirect chain shares it, so the budget covers it.
    """

    __slots__ = ("_manager", "_token", "_retried", "_dpop", "_codes")

    def __init__(
        self,
        manager: TokenManager,
        token: Token,
        dpop: Optional[DPoPProofs] = None,
        refresh_status_codes: Collection[int] = DEFAULT_REFRESH_STATUS_CODES,
    ) -> None:
        self._manager = manager
        self._token = token
        self._retried = False
        self._dpop = dpop
        self._codes = refresh_status_codes

    def __call__(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        dpop = self._dpop
        if dpop is not None and response.status_code != 401:
            dpop.remember_nonce(response)
            if response.is_redirect:
                # requests copies this request for the redirect; its proof names this URL
                # only, so it must not travel on (a same-origin hop gets a fresh one after
                # its 401, as the one retry)
                response.request.headers.pop("DPoP", None)
        if response.status_code not in self._codes:
            return response
        retry = retry_with(response, self._token, self._manager, self._retried, dpop, self._codes)
        if retry is None:
            return response
        self._retried = True
        original = response.request
        # the rejected answer keeps the request as it was sent...
        response.request = original.copy()
        new_response: requests.Response = response.connection.send(retry, **kwargs)
        new_response.history.append(response)
        new_response.request = retry
        if new_response.is_redirect:
            # ...while requests builds the redirect from the request it was given, not from
            # our retry: the next hop must carry what the retry carried (the new token, the
            # 401's cookies), never the rejected token
            _carry_to_redirect(original, retry)
        return new_response


def _carry_to_redirect(original: requests.PreparedRequest, retry: requests.PreparedRequest) -> None:
    for name in ("Authorization", "Cookie"):
        value = retry.headers.get(name)
        if value is None:
            original.headers.pop(name, None)
        else:
            original.headers[name] = value
    original.headers.pop("DPoP", None)  # names the retry's URL only
    original._cookies = retry._cookies  # type: ignore[attr-defined]
