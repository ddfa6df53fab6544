"""`ApiResource`: the Dagster face of the HTTP core, one per source.

Its configuration is what the UI shows on the resource page: base URL, rate limit, retries,
timeouts, and the auth settings with *names* of environment variables, never their values.
Secrets are read from the environment when the first request is made, so a missing variable
fails the run that needs it, naming the variable, while the code location still loads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from ingestion_assets.endpoint_io import (  # noqa: F401 - public here before endpoint_io
    build_client,
    client_settings,
    discover_keys,
    header_config,
    iter_records,
    records_of_page,
    register_env_secrets,
    register_header_secrets,
    request_headers,
)
from ingestion_assets.http import ApiClient, PageStream, defaults
from ingestion_assets.http.formats import JSON, BodyFormat, CsvOptions
from ingestion_assets.http.records import stored_page_records
from ingestion_assets.partitions import PartitionRequest
from ingestion_assets.specs import CsvSpec, DiscoverySpec, Endpoint, Pagination, Source


def body_format(endpoint: Endpoint) -> BodyFormat:
    """The HTTP core's body format of an endpoint (``format`` and ``csv``)."""
    if endpoint.format == "json":
        return JSON
    csv = endpoint.csv or CsvSpec()
    return BodyFormat(endpoint.format, CsvOptions(
        delimiter=csv.delimiter, quotechar=csv.quotechar, header=csv.header,
        columns=tuple(csv.columns), infer_types=csv.infer_types,
        declared=frozenset(endpoint.schema_ or {}),
    ), accept_unframed=endpoint.accept_unframed_body)


def stored_records(pages: Iterable[tuple[dict[str, Any], bytes]], endpoint: Endpoint
                   ) -> Iterator[list[Any]]:
    """The records of a stored raw partition's pages, in order, as the fetch counted them."""
    return stored_page_records(pages, endpoint.records_path, body_format(endpoint))


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
    max_concurrency: int | None = defaults.MAX_CONCURRENCY
    max_attempts: int = defaults.MAX_ATTEMPTS
    rate_limit_attempts: int = defaults.RATE_LIMIT_ATTEMPTS
    backoff_base_seconds: float = defaults.BACKOFF_BASE_SECONDS
    backoff_max_seconds: float = defaults.BACKOFF_MAX_SECONDS
    retry_after_floor_seconds: float = defaults.RETRY_AFTER_FLOOR_SECONDS
    connect_timeout_seconds: float = defaults.CONNECT_TIMEOUT_SECONDS
    read_timeout_seconds: float = defaults.READ_TIMEOUT_SECONDS
    headers: dict[str, Any] = {}  # values, or {"env": NAME} for secrets
    user_agent: str | None = None
    endpoint_headers: dict[str, dict[str, Any]] = {}
    allowed_origins: list[str] = []
    max_body_mb: float = defaults.MAX_BODY_MB
    request_deadline_seconds: float = defaults.REQUEST_DEADLINE_SECONDS
    max_wait_seconds: float = defaults.MAX_WAIT_SECONDS
    max_redirects: int = defaults.MAX_REDIRECTS
    max_stream_mb: float = defaults.MAX_STREAM_MB

    _client: ApiClient | None = PrivateAttr(default=None)

    @classmethod
    def from_source(cls, source: Source) -> ApiResource:
        register_env_secrets(source.auth)
        register_header_secrets(source)
        return cls(**client_settings(source))

    def client(self) -> ApiClient:
        """The source's pooled client, created on first use (secrets are read then)."""
        if self._client is None:
            self._client = build_client(self.model_dump())
        return self._client

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
            body_format=body_format(endpoint),
            partition=request.key,
            headers=request_headers(
                self.model_dump(), endpoint.name, header_config(endpoint.headers)
            ),
        )

    def iter_records(self, path: str, params: dict[str, Any], pagination: Pagination,
                     records_path: str | None, endpoint: str | None = None) -> Iterator[Any]:
        """Every record of a small listing (`endpoint_io.iter_records`): the sensors' polls."""
        yield from iter_records(self.client(), path, params, pagination, records_path, endpoint,
                                headers=request_headers(self.model_dump(), endpoint))

    def discover_keys(self, discovery: DiscoverySpec, endpoint: str | None = None) -> list[str]:
        """The entity keys (e.g. repository names) a dynamic partitioning's discovery lists."""
        return discover_keys(self.client(), discovery, endpoint,
                             headers=request_headers(self.model_dump(), endpoint))

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
