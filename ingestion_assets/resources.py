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

from ingestion_assets.http import ApiClient, PageStream, RateLimiter, RetryPolicy
from ingestion_assets.http import auth as http_auth
from ingestion_assets.http import paginators as pg
from ingestion_assets.http.budgets import MIB, Budgets
from ingestion_assets.http.jsonpath import compile_path, find
from ingestion_assets.http.plugins import load_object
from ingestion_assets.http.records import extract_records, page_body
from ingestion_assets.http.redaction import register_basic_credentials, register_secret
from ingestion_assets.partitions import PartitionRequest
from ingestion_assets.specs import (
    ApiKeyAuth,
    Auth,
    BasicAuth,
    BearerAuth,
    CursorPagination,
    CustomAuth,
    CustomPagination,
    DiscoverySpec,
    Endpoint,
    EnvSecret,
    HeaderCursorPagination,
    KeyRotationAuth,
    KeysetPagination,
    LinkPagination,
    OAuth2ClientCredentials,
    OffsetPagination,
    PageNumberPagination,
    Pagination,
    Source,
)

_AUTH = TypeAdapter(Auth)


def build_auth(spec: Any, source: str) -> http_auth.ApiAuth:
    """The HTTP core's auth object for an auth spec, with secrets read from the environment."""
    what = f"source '{source}'"
    if isinstance(spec, BearerAuth):
        return http_auth.BearerToken(spec.token.resolve(f"bearer token of {what}"))
    if isinstance(spec, ApiKeyAuth):
        return http_auth.ApiKey(
            spec.key.resolve(f"API key of {what}"), name=spec.name, location=spec.location,
            prefix=spec.prefix,
        )
    if isinstance(spec, BasicAuth):
        user = spec.username
        if isinstance(user, EnvSecret):
            user = user.resolve(f"basic-auth user name of {what}")
        return http_auth.HttpBasic(user, spec.password.resolve(f"basic-auth password of {what}"))
    if isinstance(spec, OAuth2ClientCredentials):
        return http_auth.OAuth2ClientCredentials(
            spec.token_url,
            spec.client_id.resolve(f"OAuth2 client id of {what}"),
            spec.client_secret.resolve(f"OAuth2 client secret of {what}"),
            scope=" ".join(spec.scopes) or None,
            refresh_ahead_s=spec.refresh_ahead_seconds,
        )
    if isinstance(spec, KeyRotationAuth):
        return http_auth.RotatingApiKeys(
            [k.resolve(f"API key #{i + 1} of {what}") for i, k in enumerate(spec.keys)],
            name=spec.name, location=spec.location, prefix=spec.prefix.strip(),
        )
    if isinstance(spec, CustomAuth):
        return load_object(spec.class_path, base=http_auth.ApiAuth, kind="auth")(**spec.options)
    return http_auth.NoAuth()


def register_env_secrets(spec: Any) -> None:
    """Register with the redactor the secrets an auth spec names that are set right now.

    Called when the definitions load, so every process of a run (also a step that never
    calls the API, like a table rebuilt from raw pages) masks them in metadata and logs.
    """
    values: list[str] = []
    for name in type(spec).model_fields:
        field = getattr(spec, name, None)
        items = field if isinstance(field, list) else [field]
        values += [os.environ.get(i.env) or "" for i in items if isinstance(i, EnvSecret)]
    register_secret(*values)
    if isinstance(spec, BasicAuth):
        user = spec.username
        user = os.environ.get(user.env) or "" if isinstance(user, EnvSecret) else user
        password = os.environ.get(spec.password.env) or ""
        if user and password:
            register_basic_credentials(user, password)


def build_paginator(spec: Pagination) -> pg.Paginator:
    """The HTTP core's paginator for a pagination spec (header totals included)."""
    return _style_paginator(spec).declare_totals(
        total_header=spec.total_header, total_pages_header=spec.total_pages_header
    )


def _style_paginator(spec: Pagination) -> pg.Paginator:
    if isinstance(spec, OffsetPagination):
        return pg.OffsetPaginator(
            limit=spec.limit, offset_param=spec.offset_param, limit_param=spec.limit_param,
            total_path=spec.total_path,
        )
    if isinstance(spec, PageNumberPagination):
        return pg.PageNumberPaginator(
            page_size=spec.page_size, page_param=spec.page_param, size_param=spec.size_param,
            initial_page=spec.first_page, total_path=spec.total_path,
            total_pages_path=spec.total_pages_path,
        )
    if isinstance(spec, CursorPagination):
        if spec.cursor_field:
            return pg.LastRecordCursor(
                cursor_field=spec.cursor_field, cursor_param=spec.cursor_param,
                has_more_path=spec.has_more_path or "has_more",
            )
        return pg.JsonCursor(
            cursor_path=spec.cursor_path, cursor_param=spec.cursor_param,
            has_more_path=spec.has_more_path,
        )
    if isinstance(spec, HeaderCursorPagination):
        return pg.HeaderCursor(header=spec.header, cursor_param=spec.cursor_param)
    if isinstance(spec, KeysetPagination):
        return pg.KeysetPaginator(
            sort_key=spec.sort_field, sort_param=spec.sort_param,
            tiebreaker_key=spec.tiebreak_field, tiebreaker_param=spec.tiebreak_param,
        )
    if isinstance(spec, LinkPagination):
        return pg.LinkHeader(rel=spec.rel, page_param=spec.page_param)
    if isinstance(spec, CustomPagination):
        return load_object(spec.class_path, base=pg.Paginator, kind="paginator")(**spec.options)
    return pg.SinglePage()


def _page_size_params(spec: Pagination) -> dict[str, Any]:
    # Styles whose page size is a plain parameter (offset and page number send their own).
    size = getattr(spec, "page_size", None)
    if size and not isinstance(spec, OffsetPagination | PageNumberPagination):
        return {spec.size_param: size}
    return {}


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
    max_attempts: int = 5
    rate_limit_attempts: int = 8
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    retry_after_floor_seconds: float = 0.5
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 60.0
    headers: dict[str, str] = {}
    allowed_origins: list[str] = []
    max_body_mb: float = 256
    request_deadline_seconds: float = 600
    max_wait_seconds: float = 900
    max_redirects: int = 5

    _client: ApiClient | None = PrivateAttr(default=None)

    @classmethod
    def from_source(cls, source: Source) -> ApiResource:
        register_env_secrets(source.auth)
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
            headers=source.headers,
            allowed_origins=source.allowed_origins,
            max_body_mb=source.limits.max_body_mb,
            request_deadline_seconds=source.limits.request_deadline_seconds,
            max_wait_seconds=source.limits.max_wait_seconds,
            max_redirects=source.limits.max_redirects,
        )

    def client(self) -> ApiClient:
        """The source's pooled client, created on first use (secrets are read then)."""
        if self._client is None:
            self._client = ApiClient(
                self.base_url,
                auth=build_auth(_AUTH.validate_python(self.auth), self.source),
                headers=self.headers,
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

    def fetch_pages(self, endpoint: Endpoint, request: PartitionRequest) -> PageStream:
        """Stream every page of one partition of an endpoint (lazily: nothing is sent yet)."""
        return self.client().fetch_pages(
            request.path,
            params={**_page_size_params(endpoint.pagination), **request.params},
            paginator=build_paginator(endpoint.pagination),
            records_path=endpoint.records_path,
            workers=endpoint.workers,
            max_pages=endpoint.max_pages,
            on_total_mismatch=endpoint.on_total_mismatch,
            endpoint=endpoint.name,
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
            params={**_page_size_params(pagination), **params},
            paginator=build_paginator(pagination),
            records_path=records_path,
            on_total_mismatch="warn",
            endpoint=endpoint,
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
