"""Transport integration and where the token goes: the wrapt proxy around an adapter the
user configured, authorize_session, origin scoping, the https rule, the redirect matrix
(through TokenAuth and through mounted adapters), netrc and Proxy-Authorization."""

from __future__ import annotations

import copy
import datetime
import ipaddress
import pickle
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from requests_tokenauth import (
    ClientCredentials,
    ConfigurationError,
    OriginNotAllowedError,
    TokenAdapter,
    TokenAuth,
    authorize_session,
    wrap_adapter,
)
from requests_tokenauth._origins import (
    ALLOWED,
    INSECURE,
    LOOPBACK,
    OUTSIDE,
    OriginScope,
    origin_url,
)
from requests_tokenauth.testing import AuthServer

from .helpers import LIFETIME, service_auth


@pytest.fixture
def server(auth_server: AuthServer) -> AuthServer:
    auth_server.token_lifetime_seconds = LIFETIME
    return auth_server


@pytest.fixture
def other(auth_server_factory, fake_clock) -> AuthServer:
    return auth_server_factory(clock=fake_clock)


def plain_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def tokens_sent(server: AuthServer, path: str = "/resource") -> list[Optional[str]]:
    return [s.authorization for s in server.seen if s.path == path]


class ConfiguredAdapter(HTTPAdapter):
    """An adapter as users build them: its own Retry, a custom method, a counted close()."""

    def __init__(self, **kwargs: Any) -> None:
        self.closed = 0
        super().__init__(**kwargs)

    def describe(self) -> str:
        return f"retries={self.max_retries.total}"

    def close(self) -> None:
        self.closed += 1
        super().close()


def retrying_adapter() -> ConfiguredAdapter:
    return ConfiguredAdapter(max_retries=Retry(total=3, status_forcelist=[503]), pool_maxsize=7)


# -- the wrapt proxy ------------------------------------------------------------------------


def test_wrapped_adapter_keeps_its_retry_config_and_adds_the_401_retry(server, fake_clock) -> None:
    adapter = retrying_adapter()
    wrapped = wrap_adapter(adapter, service_auth(server, fake_clock))
    session = plain_session()
    session.mount("http://", wrapped)

    server.fail_resource(503, count=1)
    r = session.get(server.resource_url)
    assert r.status_code == 200  # urllib3's Retry inside the original adapter absorbed the 503
    assert server.resource_requests == 2 and server.token_requests == 1

    server.revoke_all()
    server.fail_resource(503, count=1)
    server.reset_counters()
    r = session.get(server.resource_url)
    assert r.status_code == 200  # 503 (urllib3 retry), 401 (our retry), 200
    assert [h.status_code for h in r.history] == [401]
    assert server.resource_requests == 3 and server.token_requests == 1

    assert isinstance(wrapped, HTTPAdapter) and isinstance(wrapped, ConfiguredAdapter)
    assert wrapped.max_retries is adapter.max_retries
    assert wrapped._pool_maxsize == 7
    assert wrapped.describe() == "retries=3"
    session.close()
    assert adapter.closed == 1


def test_wrapping_twice_or_wrapping_a_non_adapter_is_refused(server, fake_clock) -> None:
    auth = service_auth(server, fake_clock)
    wrapped = wrap_adapter(HTTPAdapter(), auth)
    with pytest.raises(ConfigurationError, match="already wrapped"):
        wrap_adapter(wrapped, auth)
    with pytest.raises(ConfigurationError, match="not an adapter"):
        wrap_adapter(object(), auth)


def system_clock_auth(server: AuthServer, **kwargs: Any) -> TokenAuth:
    """A TokenAuth on the system clock (a FakeClock holds a lock and does not pickle)."""
    grant = ClientCredentials(server.token_url, client_id="svc", client_secret="svc-secret")
    return TokenAuth(grant, **kwargs)


def test_wrapped_adapter_pickles_and_copies_with_its_configuration(server) -> None:
    auth = system_clock_auth(server)
    session = plain_session()
    session.mount("http://", wrap_adapter(retrying_adapter(), auth, origins=[server.url]))
    assert session.get(server.resource_url).status_code == 200

    restored = pickle.loads(pickle.dumps(session))
    proxy = restored.get_adapter(server.url + "/")
    assert isinstance(proxy, ConfiguredAdapter)
    assert proxy.max_retries.total == 3 and proxy.max_retries.status_forcelist == [503]
    server.fail_resource(503, count=1)
    assert restored.get(server.resource_url).status_code == 200
    assert restored.get(server.resource_url).json()["client_id"] == "svc"

    for clone in (copy.copy(proxy), copy.deepcopy(proxy)):
        assert isinstance(clone, ConfiguredAdapter) and clone is not proxy
        assert clone.__wrapped__ is not proxy.__wrapped__
        assert clone.max_retries.total == 3


def test_authorize_session_wraps_the_mounted_adapter_for_those_origins_only(
    server, other, fake_clock
) -> None:
    adapter = retrying_adapter()
    session = plain_session()
    session.mount("http://", adapter)
    wrappers = authorize_session(session, service_auth(server, fake_clock), [server.url])
    assert len(wrappers) == 1 and wrappers[0].__wrapped__ is adapter
    assert session.get_adapter(server.url + "/resource") is wrappers[0]
    assert session.get_adapter(other.url + "/resource") is adapter
    assert session.get(server.resource_url).status_code == 200
    assert session.get(other.resource_url).status_code == 401
    assert tokens_sent(other) == [None]
    server.fail_resource(503, count=1)
    assert session.get(server.resource_url).status_code == 200  # still the user's Retry
    # doing it again re-wraps the original instead of stacking proxies
    again = authorize_session(session, service_auth(server, fake_clock), [server.url])
    assert again[0].__wrapped__ is adapter


def test_authorize_session_needs_origins(server, fake_clock) -> None:
    with pytest.raises(ConfigurationError, match="origins"):
        authorize_session(plain_session(), service_auth(server, fake_clock), None)


# -- origin scoping on TokenAuth ----------------------------------------------------------


def test_origins_allow_list_on_token_auth(server, other, fake_clock) -> None:
    auth = service_auth(server, fake_clock, origins=[server.url])
    session = plain_session()
    session.auth = auth
    assert session.get(server.resource_url).status_code == 200
    r = session.get(other.resource_url)  # outside the list: goes out, without the token
    assert r.status_code == 401
    assert "Authorization" not in r.request.headers
    assert tokens_sent(other) == [None]
    assert server.token_requests == 1


def test_strict_origins_raise_before_anything_is_sent(server, other, fake_clock) -> None:
    session = plain_session()
    session.auth = service_auth(server, fake_clock, origins=[server.url], strict_origins=True)
    with pytest.raises(OriginNotAllowedError, match="not among this TokenAuth's origins"):
        session.get(other.resource_url)
    assert other.seen == [] and server.token_requests == 0
    assert session.get(server.resource_url).status_code == 200


def test_two_allowed_origins_both_get_the_token_directly(server, other, fake_clock) -> None:
    session = plain_session()
    session.auth = service_auth(server, fake_clock, origins=[server.url, other.url])
    session.get(server.resource_url)
    token = session.auth.token.authorization
    session.get(other.resource_url)  # other does not know it: 401, one retry with a new one
    assert tokens_sent(server) == [token] and tokens_sent(other)[0] == token
    assert len(tokens_sent(other)) == 2


def test_token_auth_pickles_with_its_scope(server, other) -> None:
    session = plain_session()
    session.auth = system_clock_auth(server, origins=[server.url], strict_origins=True)
    restored = pickle.loads(pickle.dumps(session))
    assert restored.get(server.resource_url).status_code == 200
    with pytest.raises(OriginNotAllowedError):
        restored.get(other.resource_url)


@pytest.mark.parametrize(
    ("origins", "url", "verdict"),
    [
        (["https://api.example.com"], "https://api.example.com/x", ALLOWED),
        (["https://api.example.com"], "https://API.example.com:443/x?q#f", ALLOWED),
        (["https://api.example.com"], "https://user@api.example.com/x", ALLOWED),
        (["https://api.example.com"], "http://api.example.com/x", OUTSIDE),
        (["https://api.example.com"], "http://api.example.com:443/x", OUTSIDE),
        (["https://api.example.com"], "https://api.example.com:8443/x", OUTSIDE),
        (["https://api.example.com"], "https://api.example.com.evil.test/x", OUTSIDE),
        (["https://api.example.com"], "https://evil.test/api.example.com/", OUTSIDE),
        (["https://api.example.com:8443"], "https://api.example.com:8443/x", ALLOWED),
        (None, "https://anything.example.com/", ALLOWED),
        (None, "http://127.0.0.5:8080/", LOOPBACK),
        (None, "http://[::1]:8080/", LOOPBACK),
        (None, "http://localhost/", LOOPBACK),
        (None, "http://api.example.com/", INSECURE),
        (None, "ftp://api.example.com/", OUTSIDE),
        (None, None, OUTSIDE),
    ],
)
def test_origin_scope_verdicts(origins, url, verdict) -> None:
    assert OriginScope(origins).verdict(url) == verdict


def test_a_pinning_scope_pins_the_first_secure_origin_only() -> None:
    scope = OriginScope(None, pin_first=True)
    assert scope.verdict("http://api.example.com/") == INSECURE  # not pinned by that
    assert scope.verdict("https://api.example.com/a") == ALLOWED
    assert scope.verdict("https://other.example.com/") == OUTSIDE
    assert scope.verdict("http://api.example.com/") == OUTSIDE  # https -> http: never
    assert scope.origins == frozenset({("https", "api.example.com", 443)})


# -- the https rule ---------------------------------------------------------------------------


def test_plain_http_origin_needs_opt_in_at_construction(server, fake_clock) -> None:
    with pytest.raises(ConfigurationError, match="allow_insecure_http=True"):
        service_auth(server, fake_clock, origins=["http://api.example.com"])
    auth = service_auth(
        server, fake_clock, origins=["http://api.example.com"], allow_insecure_http=True
    )
    assert auth.origin_scope.allows("http://api.example.com/x")


def test_plain_http_request_to_a_remote_host_raises_before_any_traffic(server, fake_clock) -> None:
    auth = service_auth(server, fake_clock)
    with pytest.raises(OriginNotAllowedError, match="allow_insecure_http=True") as info:
        requests.Request("GET", "http://api.example.com/orders?secret=1", auth=auth).prepare()
    assert "secret=1" not in str(info.value)
    assert server.seen == []  # not even a token request
    opted_in = service_auth(server, fake_clock, allow_insecure_http=True)
    prepared = requests.Request("GET", "http://api.example.com/orders", auth=opted_in).prepare()
    assert prepared.headers["Authorization"] == opted_in.token.authorization


def test_plain_http_token_url_raises_before_any_traffic(monkeypatch) -> None:
    # oauthlib's environment switch is not ours: it does not lift the check
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    with pytest.raises(ConfigurationError, match="allow_insecure_http=True"):
        ClientCredentials("http://idp.example.com/token", client_id="svc", client_secret="x")
    grant = ClientCredentials(
        "http://idp.example.com/token", client_id="svc", client_secret="x", allow_insecure_http=True
    )
    assert grant.token_url == "http://idp.example.com/token"


def test_pinning_adapter_refuses_a_plain_http_first_origin(server, fake_clock) -> None:
    session = plain_session()
    session.mount("http://", TokenAdapter(service_auth(server, fake_clock)))
    with pytest.raises(OriginNotAllowedError, match="allow_insecure_http"):
        session.get("http://api.example.com/orders")
    assert server.seen == []


# -- the redirect matrix ------------------------------------------------------------------


class _Redirector(BaseHTTPRequestHandler):
    """An https endpoint that records Authorization and redirects to ``?to=``."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""

    def do_GET(self) -> None:
        self.server.seen.append(self.headers["Authorization"])  # type: ignore[attr-defined]
        target = parse_qs(urlsplit(self.path).query).get("to", [""])[0]
        self.send_response(302 if target else 200)
        if target:
            self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_redirector(tmp_path) -> Iterator[tuple[str, Path, list[Optional[str]]]]:
    """``(https base URL, CA file, Authorization headers seen)`` of a loopback TLS server."""
    pytest.importorskip("cryptography")
    cert, key = _self_signed(tmp_path)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    httpd.daemon_threads = True
    httpd.seen = []  # type: ignore[attr-defined]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}", cert, httpd.seen  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def session_in(mode: str, auth: TokenAuth) -> requests.Session:
    """A session that sends ``auth``'s token through ``session.auth`` (``"auth"``), one
    wrapped adapter mounted for every URL (``"wrapped"``, where only the adapter's own origin
    check stands between the token and other hosts), or :func:`authorize_session`."""
    session = plain_session()
    if mode == "auth":
        session.auth = auth
    elif mode == "wrapped":
        wrapped = wrap_adapter(HTTPAdapter(), auth)
        session.mount("http://", wrapped)
        session.mount("https://", wrapped)
    else:
        adapter = HTTPAdapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        assert auth.origin_scope.origins is not None
        authorize_session(session, auth, [origin_url(o) for o in auth.origin_scope.origins])
    return session


MODES = ["auth", "wrapped", "authorized"]


@pytest.mark.parametrize("mode", MODES)
def test_redirect_to_the_same_origin_keeps_the_token(server, fake_clock, mode) -> None:
    auth = service_auth(server, fake_clock, origins=[server.url])
    r = session_in(mode, auth).get(server.url + "/redirect", params={"to": server.resource_url})
    assert r.status_code == 200 and [h.status_code for h in r.history] == [302]
    assert tokens_sent(server) == [auth.token.authorization]


@pytest.mark.parametrize("mode", MODES)
def test_redirect_to_another_host_on_the_same_port_drops_the_token(
    server, fake_clock, mode
) -> None:
    auth = service_auth(server, fake_clock, origins=[server.url])
    target = f"http://localhost:{server.server_port}/resource"
    r = session_in(mode, auth).get(server.url + "/redirect", params={"to": target})
    assert r.status_code == 401  # same server, but another host name: no token
    assert "Authorization" not in r.request.headers
    assert tokens_sent(server) == [None]


@pytest.mark.parametrize("mode", MODES)
def test_redirect_to_another_port_drops_the_token(server, other, fake_clock, mode) -> None:
    auth = service_auth(server, fake_clock, origins=[server.url])
    r = session_in(mode, auth).get(server.url + "/redirect", params={"to": other.resource_url})
    assert r.status_code == 401
    assert tokens_sent(other) == [None]
    assert server.token_requests == 1 and other.token_requests == 0


@pytest.mark.parametrize("mode", MODES)
def test_redirect_from_https_to_http_drops_the_token(
    server, fake_clock, tls_redirector, mode
) -> None:
    https_url, ca_file, seen = tls_redirector
    auth = service_auth(server, fake_clock, origins=[https_url])
    session = session_in(mode, auth)
    session.verify = str(ca_file)
    r = session.get(https_url + "/hop", params={"to": server.resource_url})
    assert seen == [auth.token.authorization]  # the https origin is allowed: it got the token
    assert r.status_code == 401 and tokens_sent(server) == [None]


@pytest.mark.parametrize("mode", MODES)
def test_redirect_between_two_allowed_origins(server, other, fake_clock, mode) -> None:
    auth = service_auth(server, fake_clock, origins=[server.url, other.url])
    session = session_in(mode, auth)
    session.get(server.resource_url)
    token = auth.token.authorization
    session.get(server.url + "/redirect", params={"to": other.resource_url})
    if mode == "auth":
        # requests drops Authorization when the origin changes and never asks session.auth
        # again: a redirect never gains the token under session.auth
        assert tokens_sent(other) == [None]
    else:
        # the adapter stamps every hop it sends to an allowed origin (other does not know
        # this server's tokens: its 401 gets the one retry, with a new token)
        assert tokens_sent(other)[0] == token and len(tokens_sent(other)) == 2


@pytest.mark.parametrize("mode", MODES)
def test_redirect_to_an_origin_outside_the_list(server, other, fake_clock, mode) -> None:
    auth = service_auth(server, fake_clock, origins=[server.url])
    session = session_in(mode, auth)
    r = session.get(server.url + "/redirect", params={"to": other.url + "/redirect"})
    assert r.status_code == 400  # other's /redirect without a target
    assert [s.authorization for s in other.seen] == [None]


def test_adapter_removes_our_token_that_requests_kept_on_an_upgrade(server, fake_clock) -> None:
    # requests keeps Authorization on an http:80 -> https:443 redirect of one host; an
    # adapter whose origins do not include the https origin must not let it through
    auth = service_auth(server, fake_clock)
    token = auth.get_token()
    sent: list[requests.PreparedRequest] = []

    def capture(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        sent.append(request.copy())
        response = requests.Response()
        response.status_code, response.request, response.url = 200, request, request.url
        return response

    adapter = HTTPAdapter()
    adapter.send = capture  # type: ignore[method-assign]
    wrapped = wrap_adapter(adapter, auth, origins=[server.url])
    request = requests.Request("GET", "https://api.example.com/x").prepare()
    request.headers["Authorization"] = token.authorization
    request.headers["Proxy-Authorization"] = "Basic cHJveHk6cHc="
    wrapped.send(request)
    assert "Authorization" not in sent[0].headers
    assert sent[0].headers["Proxy-Authorization"] == "Basic cHJveHk6cHc="


# -- what is never touched: Proxy-Authorization, and netrc ---------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_proxy_authorization_is_never_touched(server, fake_clock, mode) -> None:
    auth = service_auth(server, fake_clock, origins=[server.url])
    session = session_in(mode, auth)
    session.get(server.resource_url)
    server.revoke_all()
    r = session.get(server.resource_url, headers={"Proxy-Authorization": "Basic cHJveHk6cHc="})
    assert r.status_code == 200 and len(r.history) == 1  # retried with a new token
    for request in (r.history[0].request, r.request):
        assert request.headers["Proxy-Authorization"] == "Basic cHJveHk6cHc="


def test_netrc_is_not_consulted_for_a_request_outside_the_origins(
    server, other, fake_clock, tmp_path, monkeypatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password netrc-pass\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    session = requests.Session()  # trust_env: requests would use netrc when auth is None
    session.auth = service_auth(server, fake_clock, origins=[server.url])
    assert session.get(other.resource_url).status_code == 401
    assert tokens_sent(other) == [None]  # session.auth is set: requests skips netrc


def test_adapter_token_wins_over_netrc_on_its_origin(
    server, other, fake_clock, tmp_path, monkeypatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password netrc-pass\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    session = requests.Session()
    auth = service_auth(server, fake_clock)
    authorize_session(session, auth, [server.url])
    assert session.get(server.resource_url).status_code == 200
    assert tokens_sent(server) == [auth.token.authorization]
    # another origin gets what requests itself puts there (netrc Basic), never our token
    session.get(other.resource_url)
    assert tokens_sent(other)[0].startswith("Basic ")


def test_token_adapter_uses_the_auth_origins_by_default(server, other, fake_clock) -> None:
    auth = service_auth(server, fake_clock, origins=[server.url, other.url])
    session = plain_session()
    session.mount("http://", TokenAdapter(auth))
    session.get(server.resource_url)
    token = auth.token.authorization
    session.get(other.resource_url)  # not pinned: both listed origins stay allowed
    assert tokens_sent(server) == [token] and tokens_sent(other)[0] == token
