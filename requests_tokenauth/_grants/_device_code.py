"""The device authorization grant (RFC 8628)."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

import requests
from oauthlib.oauth2 import DeviceClient

from .._clock import Clock
from .._errors import (
    AccessDeniedError,
    DeviceCodeExpiredError,
    InvalidGrantError,
    MalformedTokenResponseError,
    redact_body,
)
from .._options import AuthMethod, Scope, Timeout
from .._token import Token
from ._base import Grant
from ._identity import unnamed_user
from ._jwt import Key
from ._response import raise_for_error
from ._transport import DEFAULT_TIMEOUT_SECONDS
from ._urls import check_url

log = logging.getLogger("requests_tokenauth")

#: Poll interval when the server names none (RFC 8628 §3.2).
DEFAULT_INTERVAL_SECONDS = 5.0

#: How much ``slow_down`` adds to the interval, for this and every later poll (§3.5).
SLOW_DOWN_SECONDS = 5.0


@dataclass(frozen=True)
class DeviceAuthorization:
    """What the person needs to approve a device (RFC 8628 §3.2); the device code itself
    stays inside the grant. Immutable.

    :ivar user_code: the code the person enters.
    :ivar verification_uri: where to enter it.
    :ivar verification_uri_complete: a URI that includes the code (for a QR code), if any.
    :ivar expires_in_seconds: how long the codes are valid.
    :ivar interval_seconds: the polling interval the server asked for.
    """

    user_code: str
    verification_uri: str
    verification_uri_complete: Optional[str]
    expires_in_seconds: float
    interval_seconds: float


def print_user_code(authorization: DeviceAuthorization) -> None:
    """The default prompt: tell the person where to go and what to enter."""
    print(
        f"To sign in, visit {authorization.verification_uri} and enter the code "
        f"{authorization.user_code}"
    )


class DeviceCode(Grant):
    """The device authorization grant (RFC 8628): for devices without a browser, a person
    approves on another device.

    Running the grant asks the device authorization endpoint for a device code, hands the
    user code and verification URI to ``on_user_code``, then polls the token endpoint
    (oauthlib's ``DeviceClient`` builds the request) every ``interval`` seconds:
    ``authorization_pending`` keeps polling, ``slow_down`` adds 5 s to the interval for
    good, ``expired_token`` (or the codes' ``expires_in`` passing) raises
    :class:`DeviceCodeExpiredError` and ``access_denied`` raises
    :class:`AccessDeniedError`. Afterwards ``TokenAuth`` renews with the refresh token; a
    rejected refresh token is terminal (a person is needed again).

    The polling blocks the thread that needs the token (and, under a ``TokenAuth``, others
    that wait for it, up to their lock timeout): obtain the first token with
    ``auth.get_token()`` at start-up. With a shared store, pass ``store_key=`` naming the
    person: the grant cannot tell whose token it is, and refuses a derived key.
    Thread-safety as for :class:`Grant`. Takes the
    :class:`Grant` parameters (usually ``auth_method="none"``), plus:

    :param device_authorization_url: the device authorization endpoint.
    :param on_user_code: called with a :class:`DeviceAuthorization` (default: print it).
    :param sleep: waits between polls (default :func:`time.sleep`); tests pass one that
        advances a fake clock.
    """

    grant_type = DeviceClient.grant_type
    unattended = False

    def __init__(
        self,
        token_url: str,
        *,
        device_authorization_url: str,
        on_user_code: Callable[[DeviceAuthorization], None] = print_user_code,
        sleep: Callable[[float], None] = time.sleep,
        client_id: str,
        client_secret: Optional[str] = None,
        scope: Scope = None,
        auth_method: AuthMethod = "client_secret_basic",
        extra: Optional[Mapping[str, str]] = None,
        session: Optional[requests.Session] = None,
        timeout: Timeout = DEFAULT_TIMEOUT_SECONDS,
        allow_insecure_http: bool = False,
        client_key: Optional[Key] = None,
        client_key_id: Optional[str] = None,
        client_assertion_algorithm: Optional[str] = None,
        revocation_url: Optional[str] = None,
    ) -> None:
        super().__init__(
            token_url,
            client_id=client_id,
            client_secret=client_secret,
            scope=scope,
            auth_method=auth_method,
            extra=extra,
            session=session,
            timeout=timeout,
            allow_insecure_http=allow_insecure_http,
            client_key=client_key,
            client_key_id=client_key_id,
            client_assertion_algorithm=client_assertion_algorithm,
            revocation_url=revocation_url,
        )
        self.device_authorization_url = check_url(
            device_authorization_url,
            "device authorization URL",
            allow_insecure_http=self.allow_insecure_http,
        )
        self._on_user_code = on_user_code
        self._sleep = sleep

    def store_identity(self) -> Optional[str]:
        # the token belongs to the person who approves the device, whom this grant never learns
        raise unnamed_user("DeviceCode", "whoever approves the device owns the token")
    if TYPE_CHECKING:  # the endpoint may come from the metadata: optional here

        @classmethod
        def from_issuer(  # type: ignore[override]
            cls,
            issuer: str,
            /,
            *,
            device_authorization_url: Optional[str] = None,
            on_user_code: Callable[[DeviceAuthorization], None] = print_user_code,
            sleep: Callable[[float], None] = time.sleep,
            client_id: str,
            client_secret: Optional[str] = None,
            scope: Scope = None,
            auth_method: AuthMethod = "client_secret_basic",
            extra: Optional[Mapping[str, str]] = None,
            session: Optional[requests.Session] = None,
            timeout: Timeout = DEFAULT_TIMEOUT_SECONDS,
            allow_insecure_http: bool = False,
            client_key: Optional[Key] = None,
            client_key_id: Optional[str] = None,
            client_assertion_algorithm: Optional[str] = None,
            revocation_url: Optional[str] = None,
        ) -> DeviceCode: ...

    @classmethod
    def _use_metadata(cls, metadata: Mapping[str, Any], kwargs: dict[str, Any]) -> None:
        kwargs.setdefault("device_authorization_url", metadata.get("device_authorization_endpoint"))

    def _run_grant(self, clock: Clock) -> Token:
        device_code, authorization = self._authorize_device(clock)
        deadline_monotonic = clock.monotonic() + authorization.expires_in_seconds
        self._on_user_code(authorization)
        interval = authorization.interval_seconds
        body: str = DeviceClient(self.client_id).prepare_request_body(
            device_code, **self.extra, **self._client_params()
        )
        # Every poll waits at least `interval` (>= 1 s) of the codes' lifetime: bounded.
        max_polls = math.ceil(authorization.expires_in_seconds / max(interval, 1.0)) + 1
        for _ in range(max_polls):
            self._sleep(interval)
            if clock.monotonic() >= deadline_monotonic:
                break
            try:
                return self._exchange(body, clock, self.grant_type, None)
            except InvalidGrantError as exc:
                if exc.error == "authorization_pending":
                    continue
                if exc.error == "slow_down":
                    interval += SLOW_DOWN_SECONDS
                    log.info("device flow: slow_down; polling every %gs", interval)
                    continue
                if exc.error in ("expired_token", "access_denied"):
                    cls = (
                        AccessDeniedError
                        if exc.error == "access_denied"
                        else DeviceCodeExpiredError
                    )
                    raise cls(
                        str(exc),
                        error=exc.error,
                        error_description=exc.error_description,
                        error_uri=exc.error_uri,
                        status_code=exc.status_code,
                        body=exc.body,
                    ) from None
                raise
        raise DeviceCodeExpiredError(
            "the device code expired before the person approved it", error="expired_token"
        )

    def _authorize_device(self, clock: Clock) -> tuple[str, DeviceAuthorization]:
        """The device authorization request (RFC 8628 §3.1): ``(device_code, what to show)``."""
        fields = [("scope", " ".join(self.scope))] if self.scope else []
        url = self.device_authorization_url
        where = f"device authorization endpoint {url}"
        response = self._post_form(url, fields, clock, "device authorization request")
        with response:
            if response.status_code != 200:
                raise_for_error(response, where, clock)
            text = response.text
        try:
            data = json.loads(text)
            authorization = DeviceAuthorization(
                user_code=_text(data, "user_code"),
                verification_uri=_text(data, "verification_uri"),
                verification_uri_complete=data.get("verification_uri_complete"),
                expires_in_seconds=float(data["expires_in"]),
                interval_seconds=float(data.get("interval", DEFAULT_INTERVAL_SECONDS)),
            )
            device_code = _text(data, "device_code")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise MalformedTokenResponseError(
                f"{where} answered something that is not a device authorization",
                status_code=200,
                body=redact_body(text),
            ) from None
        lifetime, interval = authorization.expires_in_seconds, authorization.interval_seconds
        if not (0 < lifetime < math.inf and 0 <= interval < math.inf):
            raise MalformedTokenResponseError(
                f"{where} answered an unusable expires_in or interval",
                status_code=200,
                body=redact_body(text),
            )
        return device_code, authorization


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str) or not value:
        raise ValueError(name)
    return value
