"""The device authorization grant's token side of the test server (RFC 8628 §3.4-3.5); the
device authorization endpoint itself is in :mod:`._extra_routes`."""

from __future__ import annotations

from typing import Any

from oauthlib.oauth2 import InvalidGrantError, OAuth2Error

from ._extra_grant import ExtraGrant
from ._oauth import request_param
from ._state import DEVICE_CODE


class DeviceCodeGrant(ExtraGrant):
    """RFC 8628 §3.4-3.5: pending, slow_down (polling faster than the interval, which then
    grows by 5 s), expired_token, access_denied, or the token once approved."""

    grant_type = DEVICE_CODE

    def validate_grant(self, request: Any) -> None:
        server = self.request_validator._server
        code = request_param(request, "device_code")
        now = server.clock.monotonic()
        with server._lock:
            entry = server._extra.devices.get(code or "")
            if entry is None or entry.client_id != request.client_id or entry.status == "used":
                raise InvalidGrantError("unknown device_code", request=request)
            scripted = server._extra.scripted_polls.pop(0) if server._extra.scripted_polls else ""
            too_soon = (
                entry.last_poll_monotonic is not None
                and now - entry.last_poll_monotonic < entry.interval_seconds
            )
            entry.last_poll_monotonic = now
            if scripted == "slow_down" or (too_soon and not scripted):
                entry.interval_seconds += 5
                error = "slow_down"
            elif scripted:
                error = scripted
            elif now >= entry.expires_monotonic:
                error = "expired_token"
            elif entry.status == "denied":
                error = "access_denied"
            elif entry.status == "pending":
                error = "authorization_pending"
            else:
                error = ""
                entry.status = "used"
                request.user, request.scopes = entry.user, list(entry.scopes)
        if error:
            raise _DeviceError(error, request)


class _DeviceError(OAuth2Error):  # type: ignore[misc]
    status_code = 400

    def __init__(self, error: str, request: Any) -> None:
        self.error = error
        super().__init__(request=request)
