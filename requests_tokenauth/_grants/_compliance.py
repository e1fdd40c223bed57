"""Compliance hooks: requests-oauthlib's way of fixing providers that leave RFC 6749 (odd
``token_type`` values, ``expires`` for ``expires_in``, tokens under other names), with its
hook names and signatures, so that its own fixes (``ebay_compliance_fix(grant)``) and the
ones users wrote for an ``OAuth2Session`` work on a grant unchanged."""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import Any, Callable

import requests

from .._errors import ConfigurationError, MalformedTokenResponseError
from ._urls import check_url

log = logging.getLogger("requests_tokenauth")

#: requests-oauthlib's hook types (``OAuth2Session.compliance_hook``).
HOOK_TYPES = (
    "access_token_request",
    "access_token_response",
    "refresh_token_request",
    "refresh_token_response",
    "protected_request",
)

RequestHook = Callable[[str, MutableMapping[str, str], Any], tuple[str, Any, Any]]
ResponseHook = Callable[[requests.Response], requests.Response]


class ComplianceHooks:
    """The hooks registered on one grant, in registration order (a hook registered twice
    runs once, as in requests-oauthlib, whose registry is a set).

    - ``access_token_request`` / ``refresh_token_request``: ``(url, headers, body) ->
      (url, headers, body)`` before a token request goes out; ``body`` is the urlencoded
      form (a ``str``), ``headers`` a dict without the client's ``Authorization``.
    - ``access_token_response`` / ``refresh_token_response``: ``Response -> Response``
      before the answer is parsed (every answer, errors included, as in requests-oauthlib);
      a hook may rewrite ``response._content``.
    - ``protected_request``: ``(url, headers, body) -> (url, headers, body)`` for each
      request that carries the token, before it is stamped.

    "access" hooks run when the grant itself runs, "refresh" hooks when a refresh token is
    used. Not thread-safe to register while tokens are being obtained: register first.
    """

    def __init__(self) -> None:
        self._hooks: dict[str, list[Callable[..., Any]]] = {name: [] for name in HOOK_TYPES}

    def register(self, hook_type: str, hook: Callable[..., Any]) -> None:
        """Add ``hook`` to ``hook_type``.

        :raises ConfigurationError: an unknown hook type, or ``hook`` is not callable.
        """
        if hook_type not in self._hooks:
            raise ConfigurationError(
                f"hook type {hook_type!r} is not one of {', '.join(HOOK_TYPES)}"
            )
        if not callable(hook):
            raise ConfigurationError("a compliance hook must be callable")
        if hook not in self._hooks[hook_type]:
            self._hooks[hook_type].append(hook)

    def registered(self, hook_type: str) -> tuple[Callable[..., Any], ...]:
        """The hooks of ``hook_type``, in the order they run."""
        return tuple(self._hooks.get(hook_type, ()))

    def __bool__(self) -> bool:
        return any(self._hooks.values())

    @property
    def protected_request(self) -> list[Callable[..., Any]]:
        """The ``protected_request`` hooks (the live list: empty means nothing to do)."""
        return self._hooks["protected_request"]

    def before_token_request(
        self,
        grant_type: str,
        url: str,
        headers: dict[str, str],
        body: str,
        *,
        allow_insecure_http: bool = False,
    ) -> tuple[str, dict[str, str], str]:
        """Run the ``*_token_request`` hooks of ``grant_type``'s request. A URL a hook
        changed is held to the same rule as the grant's (https, or http to loopback).

        :raises ConfigurationError: a hook raised (the hook is named, its message is not:
            it may hold the request's secrets), or its URL is not allowed.
        """
        original = url
        for hook in self._hooks[_kind(grant_type) + "_token_request"]:
            try:
                url, new_headers, body = hook(url, headers, body)
            except Exception as exc:
                raise ConfigurationError(_failed(hook, exc)) from exc
            headers = dict(new_headers)
        if url != original:
            url = check_url(url, "token URL", allow_insecure_http=allow_insecure_http)
        return url, headers, body

    def after_token_response(
        self, grant_type: str, response: requests.Response
    ) -> requests.Response:
        """Run the ``*_token_response`` hooks on the answer to ``grant_type``'s request.

        A hook that fails on an error answer (a fix that expects JSON, given a 503 page) is
        skipped, so that the answer's own typed error is raised.

        :raises MalformedTokenResponseError: a hook failed on a 2xx answer.
        """
        for hook in self._hooks[_kind(grant_type) + "_token_response"]:
            try:
                response = hook(response)
            except Exception as exc:
                if 200 <= response.status_code < 300:
                    raise MalformedTokenResponseError(
                        _failed(hook, exc), status_code=response.status_code
                    ) from exc
                log.debug(
                    "%s; parsing the %d answer as it is", _failed(hook, exc), response.status_code
                )
        return response

    def before_protected_request(self, request: requests.PreparedRequest) -> None:
        """Run the ``protected_request`` hooks on a resource request, in place.

        :raises ConfigurationError: a hook raised.
        """
        for hook in self._hooks["protected_request"]:
            try:
                url, headers, body = hook(request.url, request.headers, request.body)
            except Exception as exc:
                raise ConfigurationError(_failed(hook, exc)) from exc
            request.url = url
            if headers is not request.headers:
                request.headers.update(dict(headers))
            if body is not request.body:
                request.prepare_body(body, None)


def _failed(hook: Callable[..., Any], exc: Exception) -> str:
    name = getattr(hook, "__qualname__", type(hook).__name__)
    return f"compliance hook {name} raised {type(exc).__name__}"


def _kind(grant_type: str) -> str:
    return "refresh" if grant_type == "refresh_token" else "access"


def registered_hooks(session_hooks: Mapping[str, Any]) -> list[tuple[str, Callable[..., Any]]]:
    """The ``(hook type, hook)`` pairs of an ``OAuth2Session.compliance_hook`` registry."""
    return [(name, hook) for name in HOOK_TYPES for hook in session_hooks.get(name, ())]
