"""`ApiResource`: the Dagster face of the HTTP core, one per source.

Its configuration is what the UI shows on the resource page: base URL, rate limit, retries,
timeouts, and the auth settings with *names* of environment variables, never their values.
Secrets are read from the environment when the first request is made, so a missing variable
fails the run that needs it, naming the variable, while the code location still loads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import dagster as dg
from pydantic import PrivateAttr, TypeAdapter

from ingestion_assets.http import ApiClient, PageStream, RateLimiter, RetryPolicy, defaults
from ingestion_assets.http.budgets import MIB, Budgets
from ingestion_assets.http.headers import header_value_problem
from ingestion_assets.http.jsonpath import compile_path, find
from ingestion_assets.http.records import extract_records, page_body
from ingestion_assets.http.redaction import register_basic_credentials, register_secret
from ingestion_assets.partitions import PartitionRequest
from ingestion_assets.specs import (
    Auth,
    BasicAuth,
    DiscoverySpec,
    Endpoint,
    EnvSecret,
    MissingSecretError,
    Pagination,
    Source,
)

_AUTH = TypeAdapter(Auth)


def register_env_secrets(spec: Any) -> None:
    """Register with the redactor the secrets an auth spec names that are set right now.

    Called when the definitions load, so every process of a run (also a step that never
    calls the API, like a table rebuilt from raw pages) masks them in metadata and logs.
    """
    values: list[str] = []
    for name in type(spec).model_fields:
        field = getattr(spec, name, None)
        items = field if isinstance(field, list) else [field]
        items = list(field.values()) if isinstance(field, dict) else items  # custom options
        values += [os.environ.get(i.env) or "" for i in items if isinstance(i, EnvSecret)]
    register_secret(*values)
    if isinstance(spec, BasicAuth):
        user = spec.username
        user = os.environ.get(user.env) or "" if isinstance(user, EnvSecret) else user
        password = os.environ.get(spec.password.env) or ""
        if user and password:
            register_basic_credentials(user, password)


_HEADERS = TypeAdapter(dict[str, str | EnvSecret])


def header_config(headers: dict[str, Any]) -> dict[str, Any]:
    """Headers as resource configuration: values, or ``{"env": NAME}`` for secrets."""
    return {k: v.model_dump() if isinstance(v, EnvSecret) else v for k, v in headers.items()}


def resolve_headers(headers: dict[str, Any], what: str) -> tuple[dict[str, str], dict[str, str]]:
    """``(plain, secret)`` header values; secrets are read from the environment now and
    registered with the redactor (they are then masked wherever they would appear)."""
    plain: dict[str, str] = {}
    secret: dict[str, str] = {}
    for name, value in _HEADERS.validate_python(headers).items():
        if not isinstance(value, EnvSecret):
            plain[name] = value
            continue
        text = value.resolve(f"header {name} of {what}")
        register_secret(text)
        if header_value_problem(name, text):
            raise MissingSecretError(
                f"environment variable {value.env} (header {name} of {what}) holds a line "
                "break or control character, which a header value cannot"
            )
        secret[name] = text
    return plain, secret


def register_header_secrets(source: Source) -> None:
    """Register the header secrets of a source and its endpoints that are set right now."""
    for headers in [source.headers, *(e.headers for e in source.endpoints)]:
        register_secret(*(os.environ.get(v.env) or "" for v in headers.values()
                          if isinstance(v, EnvSecret)))


def records_of_page(body: bytes, records_path: str | None) -> list[Any]:
    """The records of one stored page body, by the very rule the client used when fetching.

    ``{"data": null}`` and an empty (204) body are pages without records, never a ``None``
    record; see :mod:`ingestion_assets.http.records`.
    """
    return extract_records(page_body(body), compile_path(records_path))


class ApiResource(dg.ConfigurableResource):
    """A REST API source: connection settings, auth, rate limit and retries.

    One pooled HTTP client per process and source; every thread of a run shares its rate
    limiter, so a source is never called faster than configured.
    """

    source: str
    base_url: str
    auth: dict[str, Any] = {"type": "none"}
    requests_per_second: float | None = None
    burst: int | None = None
    max_attempts: int = defaults.MAX_ATTEMPTS
    rate_limit_attempts: int = defaults.RATE_LIMIT_ATTEMPTS
    backoff_base_seconds: float = defaults.BACKOFF_BASE_SECONDS
    backoff_max_seconds: float = defaults.BACKOFF_MAX_SECONDS
    retry_after_floor_seconds: float = defaults.RETRY_AFTER_FLOOR_SECONDS
    connect_timeout_seconds: float = defaults.CONNECT_TIMEOUT_SECONDS
    read_timeout_seconds: float = defaults.READ_TIMEOUT_SECONDS
    headers: dict[str, Any] = {}
    user_agent: str | None = None
    endpoint_headers: dict[str, dict[str, Any]] = {}
    allowed_origins: list[str] = []
    max_body_mb: float = defaults.MAX_BODY_MB
    request_deadline_seconds: float = defaults.REQUEST_DEADLINE_SECONDS
    max_wait_seconds: float = defaults.MAX_WAIT_SECONDS
    max_redirects: int = defaults.MAX_REDIRECTS

    _client: ApiClient | None = PrivateAttr(default=None)

    @classmethod
    def from_source(cls, source: Source) -> ApiResource:
        register_env_secrets(source.auth)
        register_header_secrets(source)
        rl = source.rate_limit
        return cls(
            source=source.name,
            base_url=source.base_url,
            auth=source.auth.model_dump(),
            requests_per_second=rl.requests_per_second if rl else None,
            burst=rl.burst if rl else None,
            max_attempts=source.retry.max_attempts,
            rate_limit_attempts=source.retry.rate_limit_attempts,
            backoff_base_seconds=source.retry.backoff_base_seconds,
            backoff_max_seconds=source.retry.backoff_max_seconds,
            retry_after_floor_seconds=source.retry.retry_after_floor_seconds,
            connect_timeout_seconds=source.timeout.connect,
            read_timeout_seconds=source.timeout.read,
            headers=header_config(source.headers),
            user_agent=source.user_agent,
            endpoint_headers={e.name: header_config(e.headers) for e in source.endpoints
                              if e.headers},
            allowed_origins=source.allowed_origins,
            max_body_mb=source.limits.max_body_mb,
            request_deadline_seconds=source.limits.request_deadline_seconds,
            max_wait_seconds=source.limits.max_wait_seconds,
            max_redirects=source.limits.max_redirects,
        )

    def client(self) -> ApiClient:
        """The source's pooled client, created on first use (secrets are read then)."""
        if self._client is None:
            # Plain headers go on the session (also to a token endpoint); secret ones only
            # with each API request (`request_headers`), which the origin rule guards.
            plain, _ = resolve_headers(self.headers, f"source '{self.source}'")
            if self.user_agent:
                plain = {"User-Agent": self.user_agent, **plain}
            self._client = ApiClient(
                self.base_url,
                auth=_AUTH.validate_python(self.auth).build(self.source),
                headers=plain,
                rate_limiter=RateLimiter(self.requests_per_second, burst=self.burst),
                retry=RetryPolicy(
                    max_attempts=self.max_attempts,
                    rate_limit_attempts=self.rate_limit_attempts,
                    backoff_base=self.backoff_base_seconds,
                    backoff_max=self.backoff_max_seconds,
                    retry_after_floor=self.retry_after_floor_seconds,
                    retry_after_max=self.max_wait_seconds,
                ),
                timeout=(self.connect_timeout_seconds, self.read_timeout_seconds),
                source=self.source,
                pool_size=32,
                allowed_origins=self.allowed_origins,
                budgets=Budgets(
                    max_body_bytes=int(self.max_body_mb * MIB),
                    request_deadline_s=self.request_deadline_seconds,
                    max_wait_s=self.max_wait_seconds,
                    max_redirects=self.max_redirects,
                ),
            )
        return self._client

    def request_headers(self, endpoint: str | None, headers: dict[str, Any] | None = None
                        ) -> dict[str, str]:
        """The headers sent with each request of an endpoint, besides the session's: the
        source's secret ones, then the endpoint's (``headers``, or its configured ones)."""
        _, secret = resolve_headers(self.headers, f"source '{self.source}'")
        own = self.endpoint_headers.get(endpoint or "", {}) if headers is None else headers
        plain, own_secret = resolve_headers(
            own, f"endpoint '{endpoint}' of source '{self.source}'"
        )
        return {**secret, **plain, **own_secret}

    def fetch_pages(self, endpoint: Endpoint, request: PartitionRequest) -> PageStream:
        """Stream every page of one partition of an endpoint (lazily: nothing is sent yet)."""
        return self.client().fetch_pages(
            request.path,
            params={**endpoint.pagination.size_params(), **request.params},
            paginator=endpoint.pagination.build(self.source),
            records_path=endpoint.records_path,
            workers=endpoint.workers,
            max_pages=endpoint.max_pages,
            on_total_mismatch=endpoint.on_total_mismatch,
            endpoint=endpoint.name,
            headers=self.request_headers(endpoint.name, header_config(endpoint.headers)),
        )

    def iter_records(
        self,
        path: str,
        params: dict[str, Any],
        pagination: Pagination,
        records_path: str | None,
        endpoint: str | None = None,
    ) -> Iterator[Any]:
        """Every record of a (small) listing, page after page: the sensors' polls and look-ups.

        Raises the HTTP core's `ApiError` when the API cannot be read completely.
        """
        stream = self.client().fetch_pages(
            path,
            params={**pagination.size_params(), **params},
            paginator=pagination.build(self.source),
            records_path=records_path,
            on_total_mismatch="warn",
            endpoint=endpoint,
            headers=self.request_headers(endpoint),
        )
        for page in stream:
            yield from page.records

    def discover_keys(self, discovery: DiscoverySpec, endpoint: str | None = None) -> list[str]:
        """The entity keys (e.g. repository names) a dynamic partitioning's discovery lists."""
        keys: list[str] = []
        steps = compile_path(discovery.key_field)
        for record in self.iter_records(
            discovery.path, dict(discovery.params), discovery.pagination,
            discovery.records_path, endpoint,
        ):
            key = find(record, steps, default=None)
            if key is not None and str(key) not in keys:
                keys.append(str(key))
        return keys

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
