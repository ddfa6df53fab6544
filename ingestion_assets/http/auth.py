"""Authentication: ``requests.auth.AuthBase`` subclasses that never leak their secrets.

Every class registers its secret values with :mod:`ingestion_assets.http.redaction` on
construction (and every token it later receives), so they are masked in logs, errors
and returned objects; ``repr`` shows no secret either.

Two hooks let the client cooperate with an auth:

* ``refresh(response)`` after a 401: return True when new credentials are in place (the
  client then retries once); static credentials return False and the 401 fails at once.
* ``on_response(response)`` after every response: return True when the auth handled the
  rate-limit state itself (key rotation switched to a key with headroom), so the client
  does not slow down or wait.

Each class takes the field names of its YAML model in ``specs.py`` (which builds it, with
the secrets read from the environment). Custom auths subclass :class:`ApiAuth` and are
named by import path in the YAML (``type: custom``); see docs/configuration.md.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import re
import threading
import time
from typing import Any
from urllib.parse import quote_plus, urljoin

import orjson
import requests
from requests.auth import AuthBase, HTTPBasicAuth

from ingestion_assets.http import defaults
from ingestion_assets.http.deadline import body_chunks, request_deadline
from ingestion_assets.http.errors import (
    ApiTimeoutError,
    AuthenticationError,
    ConfigurationError,
    DeadlineExceededError,
    TransportError,
)
from ingestion_assets.http.jsonpath import compile_path, find
from ingestion_assets.http.origins import OriginPolicy
from ingestion_assets.http.ratelimit import parse_reset
from ingestion_assets.http.redaction import (
    get_logger,
    redact_url,
    register_basic_credentials,
    register_secret,
)
from ingestion_assets.http.retry import parse_retry_after

log = get_logger()


def _join(prefix: str, secret: str) -> str:
    """``"Bearer" + token`` with exactly one space, whatever spacing the config used."""
    prefix = (prefix or "").strip()
    return f"{prefix} {secret}" if prefix else secret


class ApiAuth(AuthBase):
    """Base class of every auth (subclass it for a custom one)."""

    def bind(self, session: requests.Session, base_url: str, timeout: Any) -> None:
        """Called by the client with its pooled session (for token requests)."""

    def trust(self, origins: OriginPolicy) -> None:
        """Called by the client with the origins its credentials may go to (token URLs)."""

    def refresh(self, response: requests.Response) -> bool:
        """Obtain new credentials after a 401; True when a retry may now succeed."""
        return False

    def on_response(self, response: requests.Response) -> bool:
        """See every response; True when the auth handled the rate-limit state itself."""
        return False

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request

    def describe(self) -> dict[str, Any]:
        """Configuration summary without secrets."""
        return {"type": type(self).__name__}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(***)"


class NoAuth(ApiAuth):
    """No credentials."""

    def __repr__(self) -> str:
        return "NoAuth()"


class BearerToken(ApiAuth):
    """A static token in a header: ``Authorization: Bearer <token>``.

    Args:
        token: The token.
        header: Header name.
        prefix: Scheme written before the token (``"Bearer"``, ``"token"``; ``""`` for none).
    """

    def __init__(
        self, token: str, *, header: str = "Authorization", prefix: str = "Bearer"
    ) -> None:
        if not token:
            raise ConfigurationError("BearerToken needs a non-empty token")
        register_secret(token)
        self._token = token
        self.header = header
        self.prefix = prefix

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[self.header] = _join(self.prefix, self._token)
        return request

    def describe(self) -> dict[str, Any]:
        return {"type": "bearer", "header": self.header}


class _PlacedKey(ApiAuth):
    """A key sent in the header ``name`` (after ``prefix``) or as the query parameter ``name``."""

    def __init__(self, name: str, location: str, prefix: str) -> None:
        if location not in ("header", "query"):
            raise ConfigurationError(f"{type(self).__name__} location must be 'header' or 'query'")
        self.name = name
        self.location = location
        self.prefix = prefix

    def _render(self, key: str) -> str:
        return _join(self.prefix, key) if self.location == "header" else key

    def _place(self, request: requests.PreparedRequest, key: str) -> requests.PreparedRequest:
        if self.location == "header":
            request.headers[self.name] = self._render(key)
        else:
            request.prepare_url(request.url, {self.name: key})
        return request


class ApiKey(_PlacedKey):
    """An API key in a header or a query parameter.

    Args:
        key: The key.
        name: Header or query parameter name (``"X-API-Key"``, ``"api_key"``).
        location: ``"header"`` or ``"query"``.
        prefix: Optional text before the key in a header.
    """

    def __init__(
        self, key: str, *, name: str = "X-API-Key", location: str = "header", prefix: str = ""
    ) -> None:
        if not key:
            raise ConfigurationError("ApiKey needs a non-empty key")
        super().__init__(name, location, prefix)
        register_secret(key)
        self._key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return self._place(request, self._key)

    def describe(self) -> dict[str, Any]:
        return {"type": "api_key", "name": self.name, "location": self.location}


class HttpBasic(ApiAuth):
    """HTTP basic authentication.

    Args:
        username: User name (treated as a secret too: APIs use keys as user names).
        password: Password (may be empty).
    """

    def __init__(self, username: str, password: str = "") -> None:
        if not username:
            raise ConfigurationError("HttpBasic needs a username")
        register_secret(username, password)
        register_basic_credentials(username, password)
        self._basic = HTTPBasicAuth(username, password)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return self._basic(request)

    def describe(self) -> dict[str, Any]:
        return {"type": "basic"}


TOKEN_DEADLINE_S = 60.0
"""A token request (headers and body) must complete within this."""
TOKEN_BODY_LIMIT = 1024 * 1024
"""Largest token response read; a token endpoint has no reason to send more."""


def _read_token_body(resp: requests.Response, deadline: float, url: str) -> bytes:
    return b"".join(body_chunks(
        resp, deadline, chunk_bytes=64 * 1024, limit=TOKEN_BODY_LIMIT,
        too_large=lambda: AuthenticationError(
            f"token endpoint answered more than {TOKEN_BODY_LIMIT // 1024} KiB; "
            "stopped reading", url=url, status=resp.status_code,
        ),
        late=lambda size: DeadlineExceededError(
            f"token response did not complete within {TOKEN_DEADLINE_S:g} s", url=url
        ),
    ))


MIN_TOKEN_LIFETIME_S = 1.0
"""Shortest token lifetime believed (an ``exp`` in the past must not mean a login per request)."""
MAX_TOKEN_LIFETIME_S = 30 * 86400.0
"""Longest token lifetime believed, whatever ``expires_in`` or ``exp`` say."""
MAX_TOKEN_CHARS = 16 * 1024
_TOKEN_CHARS = re.compile(r"^[\x21-\x7e]+$")  # visible ASCII: safe in a header, no CR/LF


def _finite(value: Any) -> float | None:
    """A number (or numeric text) as a finite float; None for anything else (booleans too)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def bounded_lifetime(value: Any) -> float | None:
    """A server's token lifetime in seconds, clamped; None when it is not a finite number."""
    seconds = _finite(value)
    if seconds is None:
        return None
    return min(max(seconds, MIN_TOKEN_LIFETIME_S), MAX_TOKEN_LIFETIME_S)


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (epoch seconds), read without verifying the signature.

    The client only needs to know when to log in again; the API verifies the token. Anything
    that is not a three-part token with a JSON payload holding a numeric ``exp`` gives None.
    """
    parts = token.split(".")
    if len(parts) != 3 or not parts[1] or len(parts[1]) > MAX_TOKEN_CHARS:
        return None
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return _finite(exp) if isinstance(exp, int | float) else None


def _epoch_of(value: Any) -> float | None:
    """An absolute expiry: epoch seconds (or milliseconds) or an ISO 8601 time."""
    if isinstance(value, str) and not value.strip().lstrip("-").replace(".", "", 1).isdigit():
        try:
            moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
        return moment.timestamp()
    epoch = _finite(value)
    if epoch is None:
        return None
    return epoch / 1000 if epoch > 1e11 else epoch  # epoch milliseconds


def _keys_of(payload: Any) -> str:
    """What a token response holds, by key only (its values may be credentials)."""
    if isinstance(payload, dict):
        return "keys " + ", ".join(sorted(map(str, payload))[:20]) if payload else "an empty object"
    return "no JSON object"


class _TokenAuth(ApiAuth):
    """A token obtained by a POST to a token URL, cached, shared by threads, refreshed.

    The token is obtained on first use and again ``refresh_ahead_seconds`` before it expires
    (at most half its lifetime ahead), and once after a 401, under a lock so that concurrent
    workers obtain it once. The token request is never redirected (its body carries
    credentials), goes only to an origin the client trusts, reads at most
    :data:`TOKEN_BODY_LIMIT` within :data:`TOKEN_DEADLINE_S`, and is retried on a 429, a 5xx
    or a transport failure (3 attempts).
    """

    what = "token endpoint"

    def __init__(self, url: str, *, refresh_ahead_seconds: float, default_expires_in: float,
                 header: str = "Authorization", scheme: str = "Bearer") -> None:
        self._url = url
        self.header = header  # carries the token, after the scheme ("" for none)
        self.scheme = scheme
        self.refresh_ahead_seconds = refresh_ahead_seconds
        self.default_expires_in = default_expires_in
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self._session: requests.Session | None = None
        self._base_url = ""
        self._origins: OriginPolicy | None = None
        self._timeout: Any = (defaults.CONNECT_TIMEOUT_SECONDS, defaults.READ_TIMEOUT_SECONDS)
        self.token_requests = 0

    def bind(self, session: requests.Session, base_url: str, timeout: Any) -> None:
        self._session = session
        self._base_url = base_url
        self._timeout = timeout

    def trust(self, origins: OriginPolicy) -> None:
        self._origins = origins

    def _resolve(self, url: str) -> str:
        if "://" in url or not self._base_url:
            return url
        return self._base_url.rstrip("/") + "/" + url.lstrip("/")

    def _render(self, token: str) -> str:
        return _join(self.scheme, token)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[self.header] = self._render(self._current_token())
        return request

    def _current_token(self) -> str:
        token = self._token
        if token is not None and time.monotonic() < self._expires_at:
            return token
        with self._lock:
            if self._token is None or time.monotonic() >= self._expires_at:
                self._obtain()
            assert self._token is not None
            return self._token

    def refresh(self, response: requests.Response) -> bool:
        used = (response.request.headers.get(self.header) or "") if response.request else ""
        with self._lock:
            if self._token is not None and used != self._render(self._token):
                return True  # another worker already refreshed after the same expiry
            self._obtain()
            return True

    def _obtain(self) -> None:
        """Obtain a token and call :meth:`_accept`; the caller holds the lock."""
        raise NotImplementedError

    def _accept(self, token: Any, lifetime: float | None, url: str) -> str:
        """Keep a new token (registered as a secret first) valid for ``lifetime`` seconds."""
        if isinstance(token, int | float) and not isinstance(token, bool):
            token = str(token)
        if not isinstance(token, str) or not token:
            raise AuthenticationError(f"{self.what} answered without a usable token", url=url)
        register_secret(token)
        if len(token) > MAX_TOKEN_CHARS or not _TOKEN_CHARS.match(token):
            raise AuthenticationError(
                f"{self.what} answered a token that cannot be sent in a header (empty, longer "
                f"than {MAX_TOKEN_CHARS} characters, or not visible ASCII)", url=url,
            )
        lifetime = lifetime if lifetime is not None else bounded_lifetime(self.default_expires_in)
        lifetime = lifetime or MIN_TOKEN_LIFETIME_S
        ahead = min(self.refresh_ahead_seconds, lifetime / 2)
        self._token = token
        self._expires_at = time.monotonic() + lifetime - ahead
        return token

    def _post(self, url: str, *, data: Any = None, json: Any = None,
              auth: Any = None) -> tuple[requests.Response, bytes]:
        """POST to the token URL; the final 2xx/4xx response and its body."""
        if self._origins is None and self._base_url:
            self._origins = OriginPolicy(self._base_url)
        if self._origins is not None:
            self._origins.check(url, via=f"the {self.what} URL")
        session = self._session or requests.Session()
        self._session = session
        last: Exception | None = None
        for attempt in range(3):
            if attempt:
                time.sleep(0.2 * 2**attempt)
            try:
                # Never follow a redirect: a 307 would re-post the credentials to its target.
                deadline = time.monotonic() + TOKEN_DEADLINE_S
                with request_deadline(deadline, TOKEN_DEADLINE_S):
                    resp = session.post(
                        url, data=data, json=json, auth=auth, timeout=self._timeout,
                        allow_redirects=False, stream=True,
                    )
                self.token_requests += 1
                content = _read_token_body(resp, deadline, url)
            except (requests.Timeout, DeadlineExceededError) as exc:
                last = ApiTimeoutError(f"{self.what} timed out: {type(exc).__name__}", url=url)
                continue
            except requests.RequestException as exc:
                last = TransportError(f"{self.what} unreachable: {type(exc).__name__}", url=url)
                continue
            if 300 <= resp.status_code < 400:
                target = resp.headers.get("Location") or "(no Location)"
                raise AuthenticationError(
                    f"{self.what} answered {resp.status_code} redirecting to "
                    f"{redact_url(urljoin(url, target))}; a token request is never "
                    "redirected (its body carries credentials): set the URL to the final "
                    "address", url=url, status=resp.status_code,
                )
            if resp.status_code == 429 or resp.status_code >= 500:
                last = AuthenticationError(
                    f"{self.what} failed", url=url, status=resp.status_code, body=content,
                    transient=True,
                )
                wait = parse_retry_after(resp.headers.get("Retry-After"))
                if wait:
                    time.sleep(min(wait, 10.0))
                continue
            return resp, content
        assert last is not None
        raise last

    def _payload(self, resp: requests.Response, content: bytes, url: str) -> Any:
        """The JSON body of a successful token response (a refusal raises)."""
        if not 200 <= resp.status_code < 300:
            raise AuthenticationError(
                f"{self.what} refused the credentials", url=url, status=resp.status_code,
                body=content,
            )
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            raise AuthenticationError(
                f"{self.what} answered {resp.status_code} without a JSON body", url=url,
                status=resp.status_code,
            ) from None


class OAuth2ClientCredentials(_TokenAuth):
    """OAuth2 client credentials with a cached, thread-safe, refreshed-ahead token.

    The token is fetched on first use and refreshed ``refresh_ahead_seconds`` before it expires
    (at most half its lifetime ahead), under a lock so that concurrent workers fetch it
    once. When the server issues a ``refresh_token`` it is used for the next refresh
    (falling back to the client credentials if the server refuses it).

    Args:
        token_url: Token endpoint; absolute (on an origin the client trusts), or a path
            appended to the client's base URL.
        client_id: Client id.
        client_secret: Client secret.
        scope: Optional scope (a list is joined with spaces; empty: none sent).
        audience: Optional ``audience`` form field (Auth0, Okta).
        extra_params: Extra form fields sent to the token endpoint.
        refresh_ahead_seconds: Refresh this long before expiry.
        client_auth: ``"body"`` (credentials in the form) or ``"basic"`` (HTTP basic).
        default_expires_in: Lifetime assumed when the server sends no ``expires_in``.
    """

    what = "token endpoint"

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | list[str] | None = None,
        audience: str | None = None,
        extra_params: dict[str, str] | None = None,
        refresh_ahead_seconds: float = 60.0,
        client_auth: str = "body",
        default_expires_in: float = 3600.0,
    ) -> None:
        if not (token_url and client_id and client_secret):
            raise ConfigurationError(
                "OAuth2ClientCredentials needs token_url, client_id, client_secret"
            )
        if client_auth not in ("body", "basic"):
            raise ConfigurationError("client_auth must be 'body' or 'basic'")
        super().__init__(token_url, refresh_ahead_seconds=refresh_ahead_seconds,
                         default_expires_in=default_expires_in)
        register_secret(client_secret)
        if client_auth == "basic":
            register_basic_credentials(client_id, client_secret)
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = (" ".join(scope) if isinstance(scope, list | tuple) else scope) or None
        self.audience = audience or None
        self.extra_params = {k: str(v) for k, v in (extra_params or {}).items()}
        self.client_auth = client_auth
        self._refresh_token: str | None = None
        self.grants: dict[str, int] = {}  # tokens obtained per grant type (no secrets)

    @property
    def resolved_token_url(self) -> str:
        return self._resolve(self.token_url)

    def _obtain(self) -> None:
        """Fetch a token (refresh grant first when possible); caller holds the lock."""
        if self._refresh_token:
            try:
                self._request_token(
                    {"grant_type": "refresh_token", "refresh_token": self._refresh_token}
                )
                return
            except AuthenticationError:
                log.info("refresh_token grant refused; falling back to client credentials")
                self._refresh_token = None
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        if self.audience:
            form["audience"] = self.audience
        form.update(self.extra_params)
        self._request_token(form)

    def _request_token(self, form: dict[str, str]) -> None:
        url = self.resolved_token_url
        auth = None
        if self.client_auth == "basic":
            auth = HTTPBasicAuth(self.client_id, self._client_secret)
        else:
            form = {**form, "client_id": self.client_id, "client_secret": self._client_secret}
        resp, content = self._post(url, data=form, auth=auth)
        payload = self._payload(resp, content, url)
        token = payload.get("access_token") if isinstance(payload, dict) else None
        if not token:
            raise AuthenticationError(
                f"token endpoint answered without an access_token ({_keys_of(payload)})",
                url=url, status=resp.status_code,
            )
        refresh_token = payload.get("refresh_token")
        if isinstance(refresh_token, str) and refresh_token:
            register_secret(refresh_token)
            self._refresh_token = refresh_token
        lifetime = bounded_lifetime(payload.get("expires_in"))
        self._accept(token, lifetime, url)
        self.grants[form["grant_type"]] = self.grants.get(form["grant_type"], 0) + 1
        log.debug("obtained access token (grant=%s, expires_in=%ss)", form["grant_type"], lifetime)

    def describe(self) -> dict[str, Any]:
        return {"type": "oauth2_client_credentials", "token_url": self.token_url}


class LoginAuth(_TokenAuth):
    """A login request (user name and password, an API key...) that answers a session token.

    The credentials are POSTed as JSON or a form to ``login_url``; the token is read at
    ``token_path`` in the answer and sent in ``header`` (``"Authorization: Bearer <token>"``
    by default). Its expiry is read, in order, from ``expires_in_path`` (seconds from now),
    ``expires_at_path`` (epoch seconds or ISO 8601), the token's JWT ``exp`` claim (read
    without verifying: the API verifies it), else ``default_expires_in``; every value is
    bounded to [1 s, 30 days]. The token is renewed ahead of expiry and once after a 401,
    by logging in again.

    Args:
        login_url: Login endpoint; absolute (on an origin the client trusts) or a path
            appended to the client's base URL.
        credentials: Fields posted with secret values (``{"username": ..., "password": ...}``).
        extra_fields: Fields posted with plain values (``{"grant_type": "password"}``).
        body_format: ``"json"`` or ``"form"``.
        token_path: Path to the token in the answer (``"accessToken"``, ``"data.token"``).
        header: Header carrying the token.
        scheme: Text before the token in the header (``"Bearer"``; ``""`` for none).
        expires_in_path: Path to the lifetime in seconds, if the answer has one.
        expires_at_path: Path to the absolute expiry, if the answer has one.
        refresh_ahead_seconds: Log in again this long before expiry.
        default_expires_in: Lifetime assumed when nothing in the answer says it.
    """

    what = "login endpoint"

    def __init__(
        self,
        login_url: str,
        credentials: dict[str, str],
        *,
        extra_fields: dict[str, Any] | None = None,
        body_format: str = "json",
        token_path: str = "access_token",
        header: str = "Authorization",
        scheme: str = "Bearer",
        expires_in_path: str | None = "expires_in",
        expires_at_path: str | None = None,
        refresh_ahead_seconds: float = 60.0,
        default_expires_in: float = 3600.0,
    ) -> None:
        if not login_url or not credentials or not all(credentials.values()):
            raise ConfigurationError("LoginAuth needs login_url and non-empty credentials")
        if body_format not in ("json", "form"):
            raise ConfigurationError("body_format must be 'json' or 'form'")
        if not compile_path(token_path):
            raise ConfigurationError("token_path must name a field of the login answer")
        super().__init__(login_url, refresh_ahead_seconds=refresh_ahead_seconds,
                         default_expires_in=default_expires_in, header=header, scheme=scheme)
        register_secret(*credentials.values())
        self.login_url = login_url
        self._credentials = dict(credentials)
        self.extra_fields = dict(extra_fields or {})
        self.body_format = body_format
        # Where the answer holds the token and its expiry (read once per login).
        self.token_path = token_path
        self.expires_in_path = expires_in_path
        self.expires_at_path = expires_at_path
        self.logins = 0  # tokens obtained (no secrets)

    def _obtain(self) -> None:
        url = self._resolve(self.login_url)
        body = {**self.extra_fields, **self._credentials}
        if self.body_format == "json":
            resp, content = self._post(url, json=body)
        else:
            resp, content = self._post(url, data={k: str(v) for k, v in body.items()})
        payload = self._payload(resp, content, url)
        token = find(payload, compile_path(self.token_path))
        if token is None or token == "":
            raise AuthenticationError(
                f"login endpoint answered {resp.status_code} without a token at "
                f"{self.token_path!r} (the answer has {_keys_of(payload)}); set token_path",
                url=url, status=resp.status_code,
            )
        token = self._accept(token, self._lifetime(payload, token), url)
        self.logins += 1
        log.debug("logged in (token valid for %.0fs)", max(0.0, self._expires_at - time.monotonic()))

    def _lifetime(self, payload: Any, token: Any) -> float | None:
        in_steps, at_steps = compile_path(self.expires_in_path), compile_path(self.expires_at_path)
        if in_steps:
            seconds = bounded_lifetime(find(payload, in_steps))
            if seconds is not None:
                return seconds
        expiry = _epoch_of(find(payload, at_steps)) if at_steps else None
        if expiry is None and isinstance(token, str):
            expiry = jwt_expiry(token)
        return None if expiry is None else bounded_lifetime(expiry - time.time())

    def describe(self) -> dict[str, Any]:
        return {"type": "login", "login_url": self.login_url, "header": self.header}


class RotatingApiKeys(_PlacedKey):
    """Several API keys used in turn, driven by each key's rate-limit headers.

    Limits are usually per key: the current key is used until its
    ``X-RateLimit-Remaining`` drops to ``low_watermark`` (or it gets a 429); then the
    key with the most headroom takes over, and an exhausted key returns after its reset.
    When every key is exhausted the client's limiter slows down as usual.

    Args:
        keys: The keys (at least one).
        name: Header or query parameter name.
        location: ``"header"`` or ``"query"``.
        prefix: Text before the key in a header (``"Bearer"``).
        remaining_header: Header with the requests left for the key used.
        reset_header: Header with the window reset (delta or epoch seconds).
        low_watermark: Switch keys when this few requests remain.
    """

    def __init__(
        self,
        keys: list[str],
        *,
        name: str = "Authorization",
        location: str = "header",
        prefix: str = "Bearer",
        remaining_header: str = "X-RateLimit-Remaining",
        reset_header: str = "X-RateLimit-Reset",
        low_watermark: int = 1,
    ) -> None:
        keys = [k for k in keys if k]
        if not keys:
            raise ConfigurationError("RotatingApiKeys needs at least one key")
        super().__init__(name, location, prefix)
        register_secret(*keys)
        self._keys = list(keys)
        self.remaining_header = remaining_header
        self.reset_header = reset_header
        self.low_watermark = low_watermark
        self._lock = threading.Lock()
        self._current = 0
        self._remaining: list[float | None] = [None] * len(keys)
        self._reset_at: list[float] = [0.0] * len(keys)
        self.uses = [0] * len(keys)  # requests per key index (no secret)
        self._by_value = {self._render(k): i for i, k in enumerate(keys)}

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        with self._lock:
            index = self._current
            self.uses[index] += 1
        return self._place(request, self._keys[index])

    def _index_of(self, request: requests.PreparedRequest | None) -> int | None:
        if request is None:
            return None
        if self.location == "header":
            return self._by_value.get(request.headers.get(self.name, ""))
        url = request.url or ""
        for i, key in enumerate(self._keys):
            if key in url or quote_plus(key) in url:
                return i
        return None

    def _headroom(self, i: int, now: float) -> float:
        remaining = self._remaining[i]
        if remaining is None or now >= self._reset_at[i]:
            return float("inf")
        return remaining

    def on_response(self, response: requests.Response) -> bool:
        index = self._index_of(response.request)
        if index is None:
            return False
        now = time.monotonic()
        remaining_raw = response.headers.get(self.remaining_header)
        reset_in = parse_reset(response.headers.get(self.reset_header))
        with self._lock:
            if response.status_code == 429:
                wait = parse_retry_after(response.headers.get("Retry-After"))
                self._remaining[index] = 0
                self._reset_at[index] = now + max(wait or 0.0, reset_in or 0.0, 1.0)
            elif remaining_raw is not None:
                try:
                    self._remaining[index] = float(remaining_raw)
                except ValueError:
                    return False
                self._reset_at[index] = now + (reset_in if reset_in is not None else 1.0)
            if self._headroom(self._current, now) > self.low_watermark:
                return len(self._keys) > 1 and self._current != index
            best = max(range(len(self._keys)), key=lambda i: self._headroom(i, now))
            if self._headroom(best, now) > self.low_watermark:
                if best != self._current:
                    log.info("rate limit of key #%d low; rotating to key #%d", self._current, best)
                self._current = best
                return True
            return False

    def describe(self) -> dict[str, Any]:
        return {"type": "api_key_rotation", "keys": len(self._keys), "location": self.location}
