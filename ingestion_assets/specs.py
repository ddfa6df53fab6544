"""Pydantic models of the source YAML, and the loader that finds and validates it.

A source file looks like::

    sources:
      - name: payments
        base_url: ${DEMO_API_URL:-http://127.0.0.1:8765}/payments
        auth: {type: bearer, token: {env: DEMO_PAYMENTS_KEY}}
        rate_limit: {requests_per_second: 25, burst: 25}
        endpoints:
          - name: charges
            path: /v1/charges
            records_path: data
            primary_key: id
            pagination: {type: cursor, cursor_param: starting_after, cursor_field: id,
                         has_more_path: has_more}
            partitioning: {type: daily, start: "2025-01-01"}
            window: {start_param: "created[gte]", end_param: "created[lt]", format: unix}

Secrets are written as ``{env: NAME}`` and resolved only when a request is made, so the
code location loads (and the UI shows the assets) even when a variable is missing.
Plain settings may use ``${NAME:-default}`` interpolation (base URLs, ports).

This module imports nothing from Dagster; it builds the HTTP core's objects (each pagination
and auth model's ``build()``), and the HTTP core never imports it.
"""

from __future__ import annotations

import datetime as dt
import inspect
import os
import re
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ingestion_assets.http import auth as http_auth
from ingestion_assets.http import defaults
from ingestion_assets.http import paginators as pg
from ingestion_assets.http.errors import ConfigurationError
from ingestion_assets.http.plugins import load_object

SOURCES_ENV_VAR = "INGESTION_SOURCES"
"""Environment variable naming YAML files or folders (separated by ``os.pathsep``)."""

DEFAULT_SOURCES_DIR = Path(__file__).parent / "defs"
"""The bundled demo sources: one Dagster component folder (``<name>/defs.yaml``) each."""

EXAMPLES_DIR = Path(__file__).parent / "sources" / "examples"
"""Example sources for real vendors (not loaded unless named)."""

_NAME = r"^[A-Za-z][A-Za-z0-9_]*$"


class SpecError(ValueError):
    """One or more problems in the source YAML; every problem is listed with its location."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__(
            f"{len(self.problems)} problem(s) in the source configuration:\n"
            + "\n".join(f"  - {p}" for p in self.problems)
        )


class MissingSecretError(RuntimeError):
    """A secret's environment variable is not set (or unusable) when a request needs it."""


class _Model(BaseModel):
    # Typos must not pass silently: an unknown key is an error, not ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- secrets


class EnvSecret(_Model):
    """A secret read from the environment at run time: ``{env: NAME}``."""

    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    def resolve(self, what: str) -> str:
        value = os.environ.get(self.env)
        if not value:
            raise MissingSecretError(
                f"environment variable {self.env} is not set; it holds the {what}"
            )
        return value


def _no_literal_secret(value: Any, field: str) -> Any:
    if isinstance(value, str):
        raise ValueError(
            f"{field} must come from the environment, written as {{env: VARIABLE_NAME}}, "
            "not as a literal value in the file"
        )
    return value


AuthSecret = Annotated[
    EnvSecret,
    BeforeValidator(lambda value, info: _no_literal_secret(value, f"auth.{info.field_name}")),
]
"""An auth field holding a secret: ``{env: NAME}`` only, a literal value is an error."""


# --------------------------------------------------------------------------- styles
#
# One definition per style: a pagination or auth style is ONE model here, whose `build()`
# makes ONE class of the HTTP core (ingestion_assets/http/paginators.py or auth.py) that takes
# the model's field names and reads its defaults from ingestion_assets/http/defaults.py.
# Adding a style:
#   1. the core class (subclass of Paginator / ApiAuth), keyword arguments = the YAML fields;
#   2. a model here: `type: Literal["my_style"]`, the fields, and `core = <class (1)>` (or
#      `_core()` when building it takes more than the fields); a pagination style whose core
#      does not send the page size derives from `_SizedPagination`; a pagination model
#      overrides `why_sequential()` when its pages can be planned and `sent_params()` when
#      its core sends parameters itself; a secret auth field is typed `AuthSecret`;
#   3. its name in the `Pagination` / `Auth` union below.
# Nothing else names styles (the resource calls `spec.build()`; error locations read the
# union's tags). A user's own class needs none of this: `type: custom` with `class_path`.


def _load_class(path: str, base: type, kind: str, options: dict[str, Any]) -> type:
    """The class a ``type: custom`` names, checked to accept ``options`` (when loading)."""
    try:
        cls = load_object(path, base=base, kind=kind)
    except ConfigurationError as exc:
        raise ValueError(str(exc)) from None
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        raise ValueError(f"{kind} {path!r} does not accept these options: {exc}") from None
    return cls


class _Custom(_Model):
    """A user's class by import path, with its own keyword arguments (``options``).

    An option written ``{env: NAME}`` (or ``"{{ env.NAME }}"``) is read from the environment
    when the class is built, like a built-in style's secrets.
    """

    # Options may be anything the user's class takes: never echo them in an error.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    type: Literal["custom"]
    class_path: str = Field(pattern=r"^[\w.]+:[\w.]+$", description="package.module:ClassName")
    options: dict[str, Any] = {}

    @field_validator("options", mode="before")
    @classmethod
    def _env_options(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {k: EnvSecret(env=v["env"]) if isinstance(v, dict) and set(v) == {"env"} else v
                for k, v in value.items()}

    def _make(self, base: type, kind: str, source: str) -> Any:
        cls = _load_class(self.class_path, base, kind, self.options)
        options = {
            k: v.resolve(f"option {k!r} of the {kind} of source '{source}'")
            if isinstance(v, EnvSecret) else v
            for k, v in self.options.items()
        }
        return cls(**options)


# --------------------------------------------------------------------------- auth


class _AuthSpec(_Model):
    core: ClassVar[type[http_auth.ApiAuth]]
    """The HTTP core's class of the style; it takes the model's fields as keyword arguments."""

    def build(self, source: str) -> http_auth.ApiAuth:
        """The HTTP core's auth, with its secrets read from the environment now.

        Raises:
            MissingSecretError: A variable the auth names is not set (naming it, not a value).
        """
        options: dict[str, Any] = {}
        for name, value in self:
            if name == "type":
                continue
            what = f"of source '{source}'"
            if isinstance(value, EnvSecret):
                value = value.resolve(f"auth.{name} {what}")
            elif isinstance(value, list) and any(isinstance(v, EnvSecret) for v in value):
                value = [v.resolve(f"auth.{name}[{i}] {what}") for i, v in enumerate(value)]
            elif isinstance(value, dict) and any(isinstance(v, EnvSecret) for v in value.values()):
                value = {k: v.resolve(f"auth.{name}.{k} {what}") if isinstance(v, EnvSecret)
                         else v for k, v in value.items()}
            options[name] = value
        return self._core(**options)

    def _core(self, **options: Any) -> http_auth.ApiAuth:
        return self.core(**options)


class NoAuth(_AuthSpec):
    core = http_auth.NoAuth
    type: Literal["none"]


class BearerAuth(_AuthSpec):
    core = http_auth.BearerToken
    type: Literal["bearer"]
    token: AuthSecret


class ApiKeyAuth(_AuthSpec):
    core = http_auth.ApiKey
    type: Literal["api_key"]
    name: str = Field(description="header or query parameter name")
    location: Literal["header", "query"] = "header"
    key: AuthSecret
    prefix: str = ""


class BasicAuth(_AuthSpec):
    core = http_auth.HttpBasic
    type: Literal["basic"]
    username: str | EnvSecret
    password: AuthSecret


class OAuth2ClientCredentials(_AuthSpec):
    core = http_auth.OAuth2ClientCredentials
    type: Literal["oauth2_client_credentials"]
    token_url: str
    client_id: EnvSecret
    client_secret: EnvSecret
    scope: str | list[str] | None = Field(
        default=None, description="a list is sent space-separated; `scopes` is accepted too"
    )
    audience: str | None = None
    extra_params: dict[str, str] = Field(default={}, description="more token-request fields")
    client_auth: Literal["body", "basic"] = Field(
        default="body", description="client id and secret in the form body, or as HTTP Basic"
    )
    refresh_ahead_seconds: float = Field(default=60, ge=0)
    default_expires_in: float = Field(default=3600, gt=0)

    _literal = field_validator("client_id", "client_secret", mode="before")(
        lambda v: _no_literal_secret(v, "auth client credentials")
    )

    @model_validator(mode="before")
    @classmethod
    def _scopes_alias(cls, value: Any) -> Any:
        if isinstance(value, dict) and "scopes" in value:
            if value.get("scope") is not None:
                raise ValueError("write `scope` or `scopes`, not both")
            value = {**value, "scope": value["scopes"]}
            del value["scopes"]
        return value


def _no_literal_secrets(value: Any, field: str) -> Any:
    if isinstance(value, dict):
        for key, item in value.items():
            _no_literal_secret(item, f"{field}.{key}")
    return value


class LoginAuth(_AuthSpec):
    """``type: login``: credentials POSTed to a login URL answer a token (see LoginAuth)."""

    core = http_auth.LoginAuth
    type: Literal["login"]
    login_url: str
    credentials: dict[str, EnvSecret] = Field(
        min_length=1, description="posted fields whose values are secrets ({env: NAME})"
    )
    extra_fields: dict[str, str | int | float | bool] = Field(
        default={}, description="posted fields with plain values"
    )
    body_format: Literal["json", "form"] = "json"
    token_path: str = "access_token"
    header: str = "Authorization"
    scheme: str = Field(default="Bearer", description='text before the token; "" for none')
    expires_in_path: str = Field(default="expires_in", description='"" to ignore it')
    expires_at_path: str | None = None
    refresh_ahead_seconds: float = Field(default=60, ge=0)
    default_expires_in: float = Field(default=3600, gt=0)

    _literal = field_validator("credentials", mode="before")(
        lambda v: _no_literal_secrets(v, "auth.credentials")
    )


class KeyRotationAuth(_AuthSpec):
    core = http_auth.RotatingApiKeys
    type: Literal["key_rotation"]
    name: str = "Authorization"
    location: Literal["header", "query"] = "header"
    prefix: str = "Bearer"
    keys: list[EnvSecret] = Field(min_length=1)


class CustomAuth(_Custom):
    """``type: custom``: an :class:`~ingestion_assets.http.auth.ApiAuth` subclass by path."""

    @model_validator(mode="after")
    def _loadable(self) -> CustomAuth:
        _load_class(self.class_path, http_auth.ApiAuth, "auth", self.options)
        return self

    def build(self, source: str) -> http_auth.ApiAuth:
        return self._make(http_auth.ApiAuth, "auth", source)


# Register a new auth style here (see "styles" above).
Auth = Annotated[
    NoAuth | BearerAuth | ApiKeyAuth | BasicAuth | OAuth2ClientCredentials | KeyRotationAuth
    | LoginAuth | CustomAuth,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------- pagination

_SIZE = ("page_size", "size_param")


class _PaginationSpec(_Model):
    """Base of every pagination style; totals an API declares in response headers are
    checked like ``total_path`` (any style)."""

    total_header: str | None = Field(
        default=None, description="response header with the record total, e.g. X-Total-Count"
    )
    total_pages_header: str | None = Field(
        default=None, description="response header with the page count, e.g. X-Total-Pages"
    )

    def build(self, source: str = "") -> pg.Paginator:
        """The HTTP core's paginator for this style (header totals included)."""
        return self._with_totals(self._core())

    def _with_totals(self, paginator: pg.Paginator) -> pg.Paginator:
        return paginator.declare_totals(
            total_header=self.total_header, total_pages_header=self.total_pages_header
        )

    def _core(self) -> pg.Paginator:
        raise NotImplementedError

    def _options(self, *drop: str) -> dict[str, Any]:
        """The style's own fields: the core class's keyword arguments."""
        return self.model_dump(exclude={"type", "total_header", "total_pages_header", *drop})

    def size_params(self) -> dict[str, Any]:
        """The page size as a plain query parameter, for styles whose core does not send it."""
        return {}

    def sent_params(self) -> list[tuple[str, str, str]]:
        """(query parameter, setting, why) for each parameter the style sends itself: an
        endpoint's ``params`` naming one is a load error."""
        return [(param, "page_size", f"the paginator sends {param}={size}")
                for param, size in self.size_params().items()]

    def why_sequential(self) -> str | None:
        """Why the style cannot fetch pages concurrently (None: it can, with ``workers``)."""
        return "each request needs the cursor or key that the previous page returned"

    def _totals_declared(self) -> bool:
        return bool(self.total_header or self.total_pages_header)


class _SizedPagination(_PaginationSpec):
    """A style whose core does not send the page size: ``page_size`` goes as ``size_param``."""

    page_size: int | None = Field(default=None, gt=0)
    size_param: str = "limit"
    core: ClassVar[type[pg.Paginator]]
    """The HTTP core's class of the style; it takes the model's other fields."""

    def _core(self) -> pg.Paginator:
        return self.core(**self._options(*_SIZE))

    def size_params(self) -> dict[str, Any]:
        return {self.size_param: self.page_size} if self.page_size else {}


class _PlannedPagination(_PaginationSpec):
    """A style whose core sends the page size and the position on every request, and can
    plan its pages once the API declares a total (offset, page number)."""

    core: ClassVar[type[pg.Paginator]]
    size_fields: ClassVar[tuple[str, str]]
    """The fields of the page size and of the parameter sending it."""
    position_field: ClassVar[str]
    """The field of the parameter sending the position (offset, page number)."""
    position_note: ClassVar[str] = ""

    def _core(self) -> pg.Paginator:
        return self.core(**self._options())

    def sent_params(self) -> list[tuple[str, str, str]]:
        size_field, param_field = self.size_fields
        size, size_param = getattr(self, size_field), getattr(self, param_field)
        position_param = getattr(self, self.position_field)
        return [
            (size_param, size_field, f"the paginator sends {size_param}={size} on every "
             f"request{_default_note(self, size_field)}"),
            (position_param, self.position_field, f"the paginator sends {position_param} on "
             f"every request{self.position_note}"),
        ]


class OffsetPagination(_PlannedPagination):
    core = pg.OffsetPaginator
    size_fields = ("limit", "limit_param")
    position_field = "offset_param"

    type: Literal["offset"]
    limit: int = Field(default=defaults.PAGE_SIZE, gt=0)
    offset_param: str = "offset"
    limit_param: str = "limit"
    total_path: str | None = None

    def why_sequential(self) -> str | None:
        if self.total_path or self._totals_declared():
            return None
        return "offset pages can only be planned from a declared total (set `total_path` or "\
            "`total_header`)"


class PageNumberPagination(_PlannedPagination):
    core = pg.PageNumberPaginator
    size_fields = ("page_size", "size_param")
    position_field = "page_param"
    position_note = " (the first page is `first_page`)"

    type: Literal["page_number"]
    page_size: int = Field(default=defaults.PAGE_SIZE, gt=0)
    page_param: str = "page"
    size_param: str = "per_page"
    first_page: int = 1
    total_path: str | None = None
    total_pages_path: str | None = None

    def why_sequential(self) -> str | None:
        if self.total_path or self.total_pages_path or self._totals_declared():
            return None
        return "page numbers can only be planned from a declared total or page count (set "\
            "`total_path`, `total_pages_path`, `total_header` or `total_pages_header`)"


class CursorPagination(_SizedPagination):
    """Cursor in the body: at ``cursor_path``, or the last record's ``cursor_field``."""

    type: Literal["cursor"]
    cursor_param: str
    cursor_path: str | None = None
    cursor_field: str | None = None
    has_more_path: str | None = None

    @model_validator(mode="after")
    def _one_cursor_source(self) -> CursorPagination:
        if (self.cursor_path is None) == (self.cursor_field is None):
            raise ValueError("cursor pagination needs exactly one of cursor_path or cursor_field")
        return self

    def _core(self) -> pg.Paginator:
        if self.cursor_field:
            return pg.LastRecordCursor(**self._options("cursor_path", *_SIZE))
        return pg.JsonCursor(**self._options("cursor_field", *_SIZE))


class HeaderCursorPagination(_SizedPagination):
    core = pg.HeaderCursor
    type: Literal["header_cursor"]
    header: str
    cursor_param: str


class KeysetPagination(_SizedPagination):
    core = pg.KeysetPaginator
    type: Literal["keyset"]
    sort_field: str
    sort_param: str
    tiebreak_field: str
    tiebreak_param: str


class LinkPagination(_SizedPagination):
    core = pg.LinkHeader
    type: Literal["link"]
    rel: str = "next"
    page_param: str | None = Field(
        default="page",
        description="page-number parameter in the links: with rel=\"last\" it gives the page "
        "count (checked) and lets `workers` fetch pages concurrently; null to never plan",
    )

    def why_sequential(self) -> str | None:
        if self.page_param:
            return None
        return "pages are planned from the rel=\"last\" link's `page_param`, which is null"


class NextUrlPagination(_SizedPagination):
    """The next page's URL in the body; relative URLs resolve against the request URL."""

    core = pg.JsonLink
    type: Literal["next_url"]
    next_url_path: str = Field(description="path to the next URL; missing or null: the end")
    total_path: str | None = None

    def why_sequential(self) -> str | None:
        return "each request needs the next URL that the previous page returned"


class SinglePage(_PaginationSpec):
    type: Literal["single"]

    def _core(self) -> pg.Paginator:
        return pg.SinglePage()

    def why_sequential(self) -> str | None:
        return "there is only one page"


class CustomPagination(_Custom, _PaginationSpec):
    """``type: custom``: a :class:`~ingestion_assets.http.paginators.Paginator` subclass."""

    @model_validator(mode="after")
    def _loadable(self) -> CustomPagination:
        cls = _load_class(self.class_path, pg.Paginator, "paginator", self.options)
        if not any(isinstance(v, EnvSecret) for v in self.options.values()):
            try:  # a paginator holds no secret and sends nothing when built: try it now
                cls(**self.options)
            except (TypeError, ValueError, ConfigurationError) as exc:
                raise ValueError(
                    f"paginator {self.class_path!r} refused its options: {exc}"
                ) from None
        return self

    def build(self, source: str = "") -> pg.Paginator:
        return self._with_totals(self._make(pg.Paginator, "paginator", source))

    def why_sequential(self) -> str | None:
        return None  # the class decides (Paginator.random_access)


# Register a new pagination style here (see "styles" above).
Pagination = Annotated[
    OffsetPagination | PageNumberPagination | CursorPagination | HeaderCursorPagination
    | KeysetPagination | LinkPagination | NextUrlPagination | SinglePage | CustomPagination,
    Field(discriminator="type"),
]


def _default_note(spec: Any, setting: str) -> str:
    if setting in spec.model_fields_set:
        return ""
    return f" (the default page size, as `{setting}` is not set)"


# --------------------------------------------------------------------------- partitioning


def _parse_start(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


class TimePartitioning(_Model):
    type: Literal["hourly", "daily", "weekly", "monthly"]
    start: str
    end: str | None = None
    timezone: str = "UTC"
    end_offset: int = 0
    day_offset: int | None = Field(
        default=None, description="weekly: 0 = Sunday .. 6 = Saturday; monthly: day of month"
    )
    hour_offset: int = Field(default=0, ge=0, le=23)
    minute_offset: int = Field(default=0, ge=0, le=59)

    _start_str = field_validator("start", "end", mode="before")(_parse_start)

    @field_validator("start", "end")
    @classmethod
    def _iso(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not an ISO date or datetime (expected e.g. 2025-01-01)"
            ) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r} (expected an IANA name)") from None
        return value


class PartitionTarget(_Model):
    """How a static or dynamic partition key reaches the request."""

    param: str | None = Field(default=None, description="query parameter carrying the key")
    path_placeholder: str | None = Field(
        default=None, description="name of a {placeholder} in the endpoint path"
    )


class StaticPartitioning(PartitionTarget):
    type: Literal["static"]
    dimension: str = Field(default="key", pattern=_NAME)
    values: list[str] = Field(min_length=1)


class DiscoverySpec(_Model):
    """Where a dynamic partition's keys come from: an endpoint of the same source."""

    path: str
    records_path: str | None = None
    key_field: str
    pagination: Pagination = SinglePage(type="single")
    params: dict[str, Any] = {}


class DynamicPartitioning(PartitionTarget):
    type: Literal["dynamic"]
    dimension: str = Field(default="entity", pattern=_NAME)
    discovery: DiscoverySpec | None = None


class MultiPartitioning(_Model):
    type: Literal["multi"]
    time: TimePartitioning
    static: StaticPartitioning


class Unpartitioned(_Model):
    type: Literal["none"]


Partitioning = Annotated[
    TimePartitioning | StaticPartitioning | DynamicPartitioning | MultiPartitioning
    | Unpartitioned,
    Field(discriminator="type"),
]


WINDOW_FORMATS = {
    "iso": "2025-01-01T00:00:00+00:00",
    "iso_z": "2025-01-01T00:00:00Z",
    "iso_ms": "2025-01-01T00:00:00.000Z",
    "unix": "1735689600",
    "unix_ms": "1735689600000",
    "date": "2025-01-01",
}
"""The named formats of a window bound, each with the start of 2025 as it is sent."""


def _window_format(value: str) -> str:
    if value in WINDOW_FORMATS:
        return value
    if "%" not in value:
        raise ValueError(
            f"unknown format {value!r}: use one of {', '.join(WINDOW_FORMATS)} or a strftime "
            "pattern such as '%Y-%m-%dT%H:%M:%S.%fZ'"
        )
    try:
        dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc).strftime(value)
    except ValueError as exc:
        raise ValueError(f"format {value!r} is not a valid strftime pattern: {exc}") from None
    return value


WindowFormat = Annotated[str, AfterValidator(_window_format)]
"""A named format of :data:`WINDOW_FORMATS`, or a strftime pattern (applied in UTC)."""


class WindowParams(_Model):
    """Maps a half-open UTC window ``[start, end)`` to the API's filter parameters."""

    start_param: str
    end_param: str | None = None
    format: WindowFormat = Field(
        default="iso",
        description="iso, iso_z, iso_ms, unix, unix_ms, date, or a strftime pattern: the "
        "exact text the API compares its records' timestamps with",
    )
    end_inclusive: bool = Field(
        default=False,
        description="the API's end filter is <= (e.g. updated_at_max); we then send end - 1 unit",
    )
    # The window guard (normalize.WindowGuard): the API must have honoured the filter.
    field: str | None = Field(
        default=None,
        description="record field whose time must fall in the partition's [start, end); "
        "default: the first of timestamp_fields",
    )
    tolerance_seconds: float = Field(
        default=0, ge=0,
        description="accept records this far outside [start, end) (APIs with inclusive ends)",
    )
    out_of_window: Literal["fail", "dead_letter", "keep"] = Field(
        default="fail",
        description="a record outside the window: fail the step, set it aside as a dead "
        "letter, or keep it (the `window` check still counts it)",
    )


# --------------------------------------------------------------------------- endpoint / source

ColumnType = Literal[
    "string", "int64", "float64", "bool", "timestamp", "date", "json", "list", "struct"
]


class FreshnessSpec(_Model):
    """How old the table may get: becomes the table asset's Dagster freshness policy."""

    max_lag_hours: float = Field(gt=0, description="fail when not materialized for this long")
    warn_lag_hours: float | None = Field(
        default=None, gt=0, description="warn earlier (must be below max_lag_hours)"
    )
    timestamp_field: str | None = Field(
        default=None,
        description="column giving a record's time for the lag metadata; "
        "default: the newest of the endpoint's timestamp_fields",
    )

    @model_validator(mode="after")
    def _warn_below_max(self) -> FreshnessSpec:
        if self.warn_lag_hours is not None and self.warn_lag_hours >= self.max_lag_hours:
            raise ValueError("warn_lag_hours must be below max_lag_hours")
        return self


Severity = Literal["warn", "error"]


class _CheckSpec(_Model):
    # None = inherit from the endpoint's `checks:` block, then the check's own default.
    enabled: bool = True
    severity: Severity | None = None
    blocking: bool | None = None


class RowCountCheck(_CheckSpec):
    """Rows == raw records - dead letters; == the API's declared total; not empty; not far
    below the median of the last partitions."""

    allow_empty: bool = False
    match_declared_total: bool = True
    min_fraction_of_median: float = Field(default=0.5, ge=0, le=1)
    median_window: int = Field(default=10, gt=0, description="last N materialized partitions")
    median_min_partitions: int = Field(
        default=3, ge=1, description="history needed before the median rule applies"
    )


class SchemaDriftCheck(_CheckSpec):
    """Columns added, removed, retyped or changing nullability, against the previous
    materialization and the declared schema; each kind has its own severity."""

    added: Severity | None = None
    removed: Severity | None = None
    type_changed: Severity | None = None
    nullability_changed: Severity | None = None


class ContractCheck(_CheckSpec):
    """Records failing the declared schema/model go to dead letters; fails above a count."""

    max_dead_letters: int = Field(default=0, ge=0, description="0: any dead letter fails")


class WindowCheck(_CheckSpec):
    """Records whose partition timestamp falls outside the partition's window (counted by
    the window guard whatever ``window.out_of_window`` does with them); fails above 0."""


class UniquenessCheck(_CheckSpec):
    """A primary key of this partition also stored in one of the ``partitions`` partitions
    on either side of it (read from the key sketches stored with each partition)."""

    partitions: int = Field(
        default=10, ge=1, le=1000,
        description="compare with up to this many partitions on each side of the partition",
    )


class EndpointChecks(_Model):
    """Per-endpoint check settings; ``severity``/``blocking`` here apply to every check."""

    severity: Severity | None = None
    blocking: bool | None = None
    row_count: RowCountCheck = RowCountCheck()
    schema_drift: SchemaDriftCheck = SchemaDriftCheck()
    contract: ContractCheck = ContractCheck()
    window: WindowCheck = WindowCheck()
    uniqueness: UniquenessCheck = UniquenessCheck()


def _valid_timezone(value: str | None) -> str | None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if value is None:
        return value
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {value!r} (expected an IANA name)") from None
    return value


_PERIOD_MINUTES = {"hourly": 60, "daily": 1440, "weekly": 7 * 1440, "monthly": 28 * 1440}


class ScheduleSpec(_Model):
    """A schedule requesting each time partition once its window has closed.

    Every tick requests the newest partition whose window ended at least ``delay_minutes``
    ago, and the ``lookback`` partitions before it (records updated late). An endpoint that
    is not time partitioned needs ``cron``: each tick then requests its snapshot (or every
    static/dynamic key).
    """

    running: bool = Field(
        default=False, description="default status in the UI: running, or stopped until turned on"
    )
    delay_minutes: int = Field(default=30, ge=0, description="wait after the window closes")
    lookback: int = Field(default=0, ge=0, description="re-request the N partitions before")
    timezone: str | None = Field(
        default=None, description="timezone the schedule ticks in; default: the partitioning's"
    )
    cron: str | None = Field(
        default=None, description="override the derived cron (required when not time partitioned)"
    )

    _tz = field_validator("timezone")(lambda v: _valid_timezone(v))


class IncrementalSpec(_Model):
    """A sensor asking the API for records updated since a watermark (cursor, UTC).

    Each tick sends ``updated_since_param`` = watermark - overlap (in ``format``), pages through
    the (few) changed records, and requests the partitions that hold them: for time
    partitions the window containing the record's ``partition_field``; for static/dynamic
    partitions the key that was polled.
    """

    running: bool = Field(default=False, description="default status in the UI")
    updated_since_param: str = Field(description="the API's 'updated since' filter parameter")
    format: WindowFormat = "iso"
    updated_field: str = Field(description="record field with the update time (the watermark)")
    partition_field: str | None = Field(
        default=None, description="record field whose time tells its time partition"
    )
    overlap_seconds: float = Field(default=300, ge=0, description="re-read before the watermark")
    poll_interval_seconds: int = Field(default=60, ge=1)
    params: dict[str, Any] = Field(
        default={}, description="extra parameters of the poll, e.g. fields=id,updated_at"
    )


class DiscoverySensorSpec(_Model):
    """A sensor adding new dynamic partitions (from the partitioning's `discovery`).

    Only built for dynamically partitioned endpoints that declare `discovery`.
    """

    running: bool = Field(default=False, description="default status in the UI")
    poll_interval_seconds: int = Field(default=300, ge=1)
    request_runs: bool = Field(default=True, description="request the first run of each new key")
    request_runs_on_first_tick: bool = Field(
        default=False,
        description="also request runs for the keys found on the very first tick (the backlog); "
        "by default they are only added, and backfilled when you choose",
    )


class AutomationSpec(_Model):
    schedule: ScheduleSpec | None = None
    incremental: IncrementalSpec | None = None
    discovery: DiscoverySensorSpec | None = None


# --------------------------------------------------------------------------- webhooks

#: Per vendor style: where the event id, type and time are found when YAML does not say.
#: (header names are matched case-insensitively; a path is a dotted path into the JSON body)
WEBHOOK_STYLE_DEFAULTS: dict[str, dict[str, str | None]] = {
    "stripe": {"id_path": "id", "id_header": None, "type_path": "type", "type_header": None,
               "time_path": "created", "time_header": None},
    "shopify": {"id_path": None, "id_header": "X-Shopify-Webhook-Id", "type_path": None,
                "type_header": "X-Shopify-Topic", "time_path": None,
                "time_header": "X-Shopify-Triggered-At"},
    "github": {"id_path": None, "id_header": "X-GitHub-Delivery", "type_path": "action",
               "type_header": "X-GitHub-Event", "time_path": None, "time_header": None},
    "hmac": {"id_path": "id", "id_header": None, "type_path": "type", "type_header": None,
             "time_path": None, "time_header": None},
}


class WebhookSpec(_Model):
    """Push ingestion for an endpoint: ``POST /webhooks/<source>/<endpoint>`` on the receiver.

    Signed events are spooled durably, deduplicated by the vendor's event id, and become
    hourly partitions (by event time) of ``raw/<source>/<endpoint>_events`` and
    ``<source>/<endpoint>_events``.
    """

    style: Literal["stripe", "shopify", "github", "hmac"] = Field(
        description="signature style: Stripe-Signature, X-Shopify-Hmac-Sha256, "
        "X-Hub-Signature-256, or a generic HMAC-SHA256 header"
    )
    secrets: list[EnvSecret] = Field(
        min_length=1, max_length=2,
        description="signing secrets from the environment; two are accepted during a rotation",
    )
    header: str | None = Field(
        default=None, description="hmac style: the header carrying the signature"
    )
    encoding: Literal["hex", "base64"] = Field(default="hex", description="hmac style")
    prefix: str = Field(default="", description="hmac style: text before the digest, e.g. sha256=")
    tolerance_seconds: float = Field(
        default=300, gt=0, description="stripe style: maximum age of the signed timestamp"
    )
    max_body_bytes: int = Field(default=1_000_000, gt=0, le=64_000_000)
    id_path: str | None = None
    id_header: str | None = None
    type_path: str | None = None
    type_header: str | None = None
    time_path: str | None = Field(
        default=None, description="event time in the body (unix seconds or ISO 8601); "
        "without one, the time the receiver accepted the event"
    )
    time_header: str | None = None
    object_path: str | None = Field(
        default=None, description="dotted path to the changed object (default: the whole body)"
    )
    start: str = Field(
        default="2025-01-01", description="first hourly partition of the events assets"
    )
    freshness: FreshnessSpec | None = None
    request_pull_partition: bool = Field(
        default=False,
        description="also request the pulled endpoint's daily/hourly partition that the "
        "changed object belongs to (by its first timestamp field)",
    )
    running: bool = Field(default=True, description="default status of the events sensor")
    poll_interval_seconds: int = Field(default=30, ge=1)

    _secrets = field_validator("secrets", mode="before")(
        lambda v: [_no_literal_secret(x, "webhook secrets") for x in v] if isinstance(v, list)
        else _no_literal_secret(v, "webhook secrets")
    )

    @model_validator(mode="after")
    def _style_settings(self) -> WebhookSpec:
        if self.style == "hmac" and not self.header:
            raise ValueError("`header` is required with style hmac (the signature header)")
        defaults = WEBHOOK_STYLE_DEFAULTS[self.style]
        # Fill the style's defaults for every location left unset.
        for name, value in defaults.items():
            if getattr(self, name) is None and value is not None:
                object.__setattr__(self, name, value)
        if not self.id_path and not self.id_header:
            raise ValueError("an event id is needed for deduplication: set `id_path` or "
                             "`id_header`")
        try:
            dt.datetime.fromisoformat(self.start)
        except ValueError:
            raise ValueError(f"`start` {self.start!r} is not an ISO date") from None
        return self


# --------------------------------------------------------------------------- body formats
class CsvSpec(_Model):
    """How a CSV body is written (``format: csv``); see ``http/formats.py``."""

    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quotechar: str = Field(default='"', min_length=1, max_length=1)
    header: bool = Field(default=True, description="the first row names the columns")
    columns: list[str] = Field(
        default=[], description="column names in order: required without a header row; "
        "with one, the header must match them"
    )
    infer_types: bool = Field(
        default=True, description="numbers and booleans from the text of undeclared columns "
        "(decided on the first rows; leading zeros stay text)",
    )

    @model_validator(mode="after")
    def _usable(self) -> CsvSpec:
        if self.delimiter in "\r\n" or self.quotechar in "\r\n" or self.delimiter == self.quotechar:
            raise ValueError("`delimiter` and `quotechar` must differ and not be a newline")
        if not self.header and not self.columns:
            raise ValueError("a CSV body without a header row (`header: false`) needs `columns`")
        return self


#: Pagination styles a streamed (ndjson, csv) body can use: they read headers, the
#: response's record count and its last record, never the body as a whole.
STREAMED_PAGINATION = ("single", "link", "header_cursor", "offset", "page_number")


def _streamed_format_problem(endpoint: Any) -> str | None:
    """Why an endpoint's settings do not fit its streamed ``format`` (None: they do)."""
    fmt, pagination = endpoint.format, endpoint.pagination
    if endpoint.csv is not None and fmt != "csv":
        return f"`csv` options are set but `format` is {fmt!r}; set `format: csv`"
    if fmt == "json":
        if endpoint.accept_unframed_body:
            return "`accept_unframed_body` is for streamed bodies (`format: ndjson` or `csv`)"
        return None
    if endpoint.records_path not in (None, "", "$"):
        return f"`records_path` cannot be used with `format: {fmt}`: every line/row is a record"
    if endpoint.workers > 1:
        return f"`workers` cannot be used with `format: {fmt}`: a body is read as it streams"
    if pagination.type not in STREAMED_PAGINATION or getattr(pagination, "total_path", None) \
            or getattr(pagination, "total_pages_path", None):
        return (f"`format: {fmt}` works with pagination {', '.join(STREAMED_PAGINATION)} "
                "(without body totals: use `total_header`), not with what reads a JSON body")
    return None


# --------------------------------------------------------------------------- headers, parent


def _header_text(value: Any) -> Any:
    # `X-Api-Version: 2` in YAML is a number; a header value is its text.
    if isinstance(value, dict):
        return {k: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
                for k, v in value.items()}
    return value


def _checked_headers(value: dict[str, Any]) -> dict[str, Any]:
    from ingestion_assets.http.headers import header_name_problem, header_value_problem
    from ingestion_assets.http.redaction import is_sensitive_name

    for name, item in value.items():
        problem = header_name_problem(name) or (
            header_value_problem(name, item) if isinstance(item, str) else None
        )
        if problem:
            raise ValueError(problem)
        if isinstance(item, str) and is_sensitive_name(name):
            raise ValueError(
                f"header {name!r} carries a credential: its value must come from the "
                "environment, written as {env: VARIABLE_NAME}, not as a literal value in the file"
            )
    return value


Headers = Annotated[
    dict[str, str | EnvSecret], BeforeValidator(_header_text), AfterValidator(_checked_headers)
]
"""Request headers: name -> text, or ``{env: NAME}`` (a secret: masked like credentials)."""


class ParentSpec(_Model):
    """A child endpoint's parent: each record of the parent's stored partition fills one
    request of the child with one of its fields."""

    endpoint: str = Field(pattern=_NAME, description="the parent endpoint, of the same source")
    field: str = Field(
        min_length=1, description="the parent records' field (a column of its table; a dotted "
        "path goes into a struct column)",
    )
    as_: str = Field(
        alias="as", pattern=r"^[A-Za-z_][A-Za-z0-9_.\-\[\]]*$",
        description="the {placeholder} of the child's path the value fills (escaped as one "
        "path segment); without one in the path, the query parameter carrying it",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def in_path(self, path: str) -> bool:
        return "{" + self.as_ + "}" in path


class LocatedValueError(ValueError):
    """A problem a model validator found below its model, at ``loc`` (reported there)."""

    def __init__(self, message: str, loc: tuple):
        super().__init__(message)
        self.loc = loc


def inherit_parent_partitioning(source: Any) -> Any:
    """A source mapping whose child endpoints without `partitioning` take their parent's
    (a child's partition is its parent's partition). Other input is returned unchanged."""
    if not isinstance(source, dict) or not isinstance(source.get("endpoints"), list):
        return source
    endpoints = list(source["endpoints"])
    by_name = {e.get("name"): i for i, e in enumerate(endpoints) if isinstance(e, dict)}
    for _ in endpoints:  # a chain of n children settles in n passes (a cycle is refused later)
        changed = False
        for i, ep in enumerate(endpoints):
            parent = ep.get("parent") if isinstance(ep, dict) else None
            up = by_name.get(parent.get("endpoint")) if isinstance(parent, dict) else None
            if up is None or "partitioning" in ep or up == i:
                continue
            if "partitioning" in endpoints[up]:
                endpoints[i] = {**ep, "partitioning": endpoints[up]["partitioning"]}
                changed = True
        if not changed:
            break
    return {**source, "endpoints": endpoints}


def unknown_parent_text(name: str, names: Sequence[Any]) -> str:
    return f"unknown parent endpoint {name!r} (this source's endpoints: {', '.join(map(str, names))})"


def parent_problem(endpoints: Sequence[Endpoint]) -> LocatedValueError | None:
    """The first problem of the parent -> child declarations of a source's endpoints."""
    by_name = {e.name: e for e in endpoints}
    for i, child in enumerate(endpoints):
        if child.parent is None:
            continue
        at = ("endpoints", i, "parent")
        where = f"endpoint {child.name!r}: "
        parent = by_name.get(child.parent.endpoint)
        if parent is None:
            return LocatedValueError(
                where + unknown_parent_text(child.parent.endpoint, list(by_name)),
                (*at, "endpoint"))
        chain = [child.name]
        up: Endpoint | None = parent
        while up is not None and up.name not in chain:
            chain.append(up.name)
            up = by_name.get(up.parent.endpoint) if up.parent else None
        if up is not None:
            return LocatedValueError(
                f"{where}the parent chain loops: {' -> '.join([*chain, up.name])}",
                (*at, "endpoint"))
        if parent.partitioning.type == "dynamic":
            return LocatedValueError(
                f"{where}parent {parent.name!r} is dynamically partitioned; a child can follow "
                "a time, static, multi or unpartitioned parent", (*at, "endpoint"))
        if child.partitioning != parent.partitioning:
            return LocatedValueError(
                f"{where}its partitioning ({child.partitioning.type}) differs from its parent "
                f"{parent.name!r}'s ({parent.partitioning.type}): a child's partition is its "
                "parent's; remove `partitioning` to take the parent's",
                ("endpoints", i, "partitioning"))
        column = child.parent.field.split(".")[0]
        if child.parent.field in parent.mask_columns or column in parent.mask_columns:
            return LocatedValueError(
                f"{where}field {child.parent.field!r} is masked in {parent.name!r}'s table "
                "(mask_columns), so its values cannot fill requests", (*at, "field"))
    return None


#: Partitioning types whose partitions are time windows (``multi`` has a time dimension).
TIME_PARTITION_TYPES = ("hourly", "daily", "weekly", "monthly", "multi")


class Endpoint(_Model):
    """One API endpoint, which becomes a raw asset and a table asset."""

    name: str = Field(pattern=_NAME)
    path: str
    description: str | None = None
    records_path: str | None = Field(
        default=None, description="dotted path to the records list; None if the body is a list"
    )
    primary_key: list[str] = Field(min_length=1)
    params: dict[str, Any] = {}
    pagination: Pagination = SinglePage(type="single")
    partitioning: Partitioning = Unpartitioned(type="none")
    window: WindowParams | None = None
    schema_: dict[str, ColumnType] | None = Field(
        default=None, alias="schema", description="declared columns: column -> type"
    )
    model: str | None = Field(
        default=None,
        pattern=r"^[\w.]+:\w+$",
        description="a pydantic model validating each record, as package.module:Model",
    )
    required: list[str] = Field(
        default=[],
        description="columns every record must have (non-null); the primary key always is. "
        "A record without one goes to the dead letters",
    )
    extra_fields: Literal["columns", "json"] = Field(
        default="columns",
        description="fields outside the declared schema/model: new columns, or one JSON "
        "column `_extra`",
    )
    timestamp_fields: list[str] = []
    mask_columns: list[str] = Field(
        default=[],
        description="record fields masked in the table (Parquet) too, e.g. echoed credentials; "
        "the raw pages keep what the API sent",
    )
    nested: Literal["struct", "flatten"] = "struct"
    workers: int = Field(default=1, ge=1, le=64)
    max_pages: int | None = Field(default=None, gt=0)
    on_total_mismatch: Literal["error", "warn"] = "error"
    freshness: FreshnessSpec | None = None
    checks: EndpointChecks = EndpointChecks()
    tags: dict[str, str] = {}
    automation: AutomationSpec = AutomationSpec()
    webhook: WebhookSpec | None = Field(
        default=None, description="push ingestion: a signed webhook receiver route "
        "(ingestion_assets.webhooks)"
    )
    format: Literal["json", "ndjson", "csv"] = Field(
        default="json", description="the body: JSON (read whole), or NDJSON / CSV (streamed "
        "line by line; every line or row a record)",
    )
    csv: CsvSpec | None = Field(default=None, description="CSV dialect (`format: csv`)")
    accept_unframed_body: bool = Field(
        default=False, description="ndjson/csv: accept a body sent without Content-Length or "
        "chunked framing (a connection cut at a line break then passes for the end)",
    )
    headers: Headers = Field(
        default={}, description="headers of this endpoint's requests; override the source's"
    )
    parent: ParentSpec | None = Field(
        default=None, description="a child endpoint: one request per record of the parent "
        "endpoint's stored partition, filled with one of its fields",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("primary_key", mode="before")
    @classmethod
    def _pk_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"path {value!r} must start with '/'")
        return value

    @model_validator(mode="after")
    def _format_fits(self) -> Endpoint:
        problem = _streamed_format_problem(self)
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _window_matches_partitioning(self) -> Endpoint:
        kind = self.partitioning.type
        timed = kind in TIME_PARTITION_TYPES
        if timed and self.window is None and self.parent is None:
            raise ValueError(
                f"a {kind!r} partitioned endpoint needs `window` (the API's filter parameters "
                "for a time window)"
            )
        return self

    @model_validator(mode="after")
    def _child_settings(self) -> Endpoint:
        if self.parent is None:
            return self
        name = self.parent.as_
        if not self.parent.in_path(self.path) and name in self.params:
            raise LocatedValueError(
                f"parent.as {name!r} is not a {{placeholder}} of the path, so it is sent as a "
                f"query parameter, which `params.{name}` also sets", ("parent", "as"))
        if self.automation.incremental is not None:
            raise LocatedValueError(
                "a child endpoint cannot be polled for changes (each request needs a parent "
                "record); schedule it after its parent instead", ("automation", "incremental"))
        return self

    # Conflicting settings, each reported at the line of the later of the two (the fields
    # are validated in declaration order, so `info.data` holds the earlier ones).
    @field_validator("pagination")
    @classmethod
    def _pagination_leaves_params_alone(cls, value: Any, info: ValidationInfo) -> Any:
        params = info.data.get("params") or {}
        for name, setting, meaning in value.sent_params():
            if name in params:
                raise ValueError(
                    f"`params.{name}` ({params[name]!r}) conflicts with `pagination.{setting}`: "
                    f"{meaning}, so the value in params would be silently ignored; "
                    f"set it only in `pagination` (e.g. `{setting}: {params[name]}`)"
                )
        return value

    @field_validator("window")
    @classmethod
    def _window_needs_time_partitions(cls, value: Any, info: ValidationInfo) -> Any:
        partitioning = info.data.get("partitioning")
        if value is None or partitioning is None:
            return value
        if partitioning.type not in TIME_PARTITION_TYPES:
            raise ValueError(
                f"`window` is set but `partitioning` is {partitioning.type!r}: a window is "
                "filled from a time partition (hourly, daily, weekly, monthly or multi); "
                "remove it, or partition the endpoint by time"
            )
        params = info.data.get("params") or {}
        for name in filter(None, (value.start_param, value.end_param)):
            if name in params:
                raise ValueError(
                    f"`params.{name}` conflicts with `window`, which sets {name} from each "
                    "partition's time window: the value in params would be silently replaced"
                )
        return value

    @field_validator("workers")
    @classmethod
    def _workers_need_planned_pages(cls, value: int, info: ValidationInfo) -> int:
        pagination = info.data.get("pagination")
        if value > 1 and pagination is not None:
            reason = pagination.why_sequential()
            if reason:
                raise ValueError(
                    f"`workers: {value}` cannot be used with `pagination` {pagination.type!r}: "
                    f"{reason}; remove workers (or set 1)"
                )
        return value

    @property
    def window_field(self) -> str | None:
        """The record field the window guard reads: ``window.field``, else the first of
        ``timestamp_fields`` (None when the endpoint has no window or no such field)."""
        if self.window is None:
            return None
        if self.window.field:
            return self.window.field
        return self.timestamp_fields[0] if self.timestamp_fields else None

    @model_validator(mode="after")
    def _freshness_field_is_a_timestamp(self) -> Endpoint:
        field = self.freshness.timestamp_field if self.freshness else None
        if field and field not in self.record_time_fields:
            raise ValueError(
                f"freshness.timestamp_field {field!r} must be one of timestamp_fields or a "
                "column declared as timestamp in schema"
            )
        return self

    @property
    def record_time_fields(self) -> list[str]:
        """Columns holding a record's time: ``timestamp_fields`` and declared timestamps."""
        declared = [n for n, t in (self.schema_ or {}).items() if t == "timestamp"]
        return list(dict.fromkeys([*self.timestamp_fields, *declared]))

    @model_validator(mode="after")
    def _automation_matches_partitioning(self) -> Endpoint:
        auto, kind = self.automation, self.partitioning.type
        time = self.time_partitioning
        if auto.schedule is not None:
            if time is None and auto.schedule.cron is None:
                raise ValueError(
                    f"automation.schedule on a {kind!r} partitioned endpoint needs `cron` "
                    "(only time partitions have a cadence of their own)"
                )
            if time is not None and auto.schedule.delay_minutes >= _PERIOD_MINUTES[time.type]:
                raise ValueError(
                    f"automation.schedule.delay_minutes must be shorter than one {time.type} "
                    f"partition ({_PERIOD_MINUTES[time.type]} minutes)"
                )
        if auto.incremental is not None and time is not None and not auto.incremental.partition_field:
            raise ValueError(
                "automation.incremental on a time-partitioned endpoint needs `partition_field` "
                "(the record field whose time tells its partition, e.g. created_at)"
            )
        # automation.discovery is left alone here: it only applies to dynamic partitioning with
        # `discovery`, and is not built otherwise (an endpoint repartitioned in Python keeps it).
        return self

    @property
    def time_partitioning(self) -> TimePartitioning | None:
        p = self.partitioning
        if isinstance(p, TimePartitioning):
            return p
        if isinstance(p, MultiPartitioning):
            return p.time
        return None


class RateLimitSpec(_Model):
    requests_per_second: float = Field(gt=0)
    burst: int = Field(default=1, ge=1)


class RetrySpec(_Model):
    max_attempts: int = Field(default=defaults.MAX_ATTEMPTS, ge=1)
    # Dagster op retries of a raw asset after the client's own attempts ran out, for transient
    # errors only (a 503 storm, 429s, dropped connections); the delay doubles each time.
    op_retries: int = Field(default=2, ge=0)
    op_retry_delay_seconds: float = Field(default=30, ge=0)
    rate_limit_attempts: int = Field(default=defaults.RATE_LIMIT_ATTEMPTS, ge=1)
    backoff_base_seconds: float = Field(default=defaults.BACKOFF_BASE_SECONDS, ge=0)
    backoff_max_seconds: float = Field(default=defaults.BACKOFF_MAX_SECONDS, ge=0)
    retry_after_floor_seconds: float = Field(default=defaults.RETRY_AFTER_FLOOR_SECONDS, ge=0)


class TimeoutSpec(_Model):
    connect: float = Field(default=defaults.CONNECT_TIMEOUT_SECONDS, gt=0)
    read: float = Field(default=defaults.READ_TIMEOUT_SECONDS, gt=0)


class LimitsSpec(_Model):
    """What one response may cost, whatever the server does (defaults rarely need changing)."""

    max_body_mb: float = Field(
        default=defaults.MAX_BODY_MB, gt=0, description="largest decoded body; a bigger one fails unretried"
    )
    request_deadline_seconds: float = Field(
        default=defaults.REQUEST_DEADLINE_SECONDS, gt=0,
        description="connect + the whole body of one request"
    )
    max_wait_seconds: float = Field(
        default=defaults.MAX_WAIT_SECONDS, ge=0,
        description="longest Retry-After / rate-limit reset honoured; a longer one fails",
    )
    max_redirects: int = Field(default=defaults.MAX_REDIRECTS, ge=0, le=30)
    max_stream_mb: float = Field(
        default=defaults.MAX_STREAM_MB, gt=0, description="largest streamed (ndjson, csv) "
        "body, read piece by piece; each record still within max_body_mb. A longer body fails "
        "unretried",
    )


_ORIGIN = re.compile(r"^https?://[^/?#@\s]+/?$")


class Source(_Model):
    """A REST API: where it is, how to authenticate, how fast it may be called."""

    name: str = Field(pattern=_NAME)
    base_url: str
    description: str | None = None
    auth: Auth = NoAuth(type="none")
    rate_limit: RateLimitSpec | None = None
    max_concurrency: int = Field(
        default=defaults.MAX_CONCURRENCY, ge=1, le=64,
        description="requests of this source open at once, across every partition of a run "
        "(a backfill fetches that many partitions side by side, under rate_limit)",
    )
    retry: RetrySpec = RetrySpec()
    timeout: TimeoutSpec = TimeoutSpec()
    headers: Headers = Field(default={}, description="headers of every request")
    user_agent: str | None = Field(
        default=None, min_length=1, pattern=r"^[^\x00-\x1f\x7f]+$",
        description="the User-Agent of every request (default: ingestion_assets/<version>)",
    )
    allowed_origins: list[str] = Field(
        default=[],
        description="origins besides base_url's that may receive the credentials "
        "(e.g. https://uploads.example.com); next links and redirects elsewhere fail",
    )
    limits: LimitsSpec = LimitsSpec()
    owners: list[str] = []
    tags: dict[str, str] = {}
    endpoints: list[Endpoint] = Field(min_length=1)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not _ORIGIN.match(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: write scheme://host[:port], e.g. "
                    "https://api.example.com (no path)"
                )
        return [o.rstrip("/") for o in value]

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/]+", value):
            raise ValueError(f"base_url {value!r} must be an http(s) URL")
        return value.rstrip("/")

    _inherit = model_validator(mode="before")(inherit_parent_partitioning)

    @model_validator(mode="after")
    def _parents(self) -> Source:
        problem = parent_problem(self.endpoints)
        if problem is not None:
            raise problem
        return self

    @model_validator(mode="after")
    def _unique_endpoints(self) -> Source:
        seen: set[str] = set()
        for endpoint in self.endpoints:
            if endpoint.name in seen:
                raise ValueError(f"endpoint name {endpoint.name!r} is used twice")
            seen.add(endpoint.name)
        return self


# --------------------------------------------------------------------------- loading

_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: str) -> str:
    """Expand ``${NAME}`` and ``${NAME:-default}`` in a plain (non-secret) setting."""

    def _sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found:
            return found
        if default is None:
            raise ValueError(f"environment variable {name} is not set and has no default")
        return default

    return _INTERPOLATION.sub(_sub, value)


_ENV_TEMPLATE = re.compile(r"^\{\{\s*env\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")
_ANY_TEMPLATE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}")


def _interpolate_tree(node: Any, loc: tuple = ()) -> Any:
    # Secrets ({env: NAME}) are left alone: only plain strings are interpolated. Dagster's
    # template `{{ env.NAME }}` (a whole value) is a reference to the variable, the same as
    # {env: NAME}: it is read when a request needs it, so the value is never in a definition.
    if isinstance(node, str):
        found = _ENV_TEMPLATE.match(node.strip())
        if found:
            return {"env": found.group(1)}
        if _ANY_TEMPLATE.search(node):
            raise ValueError(
                f"{node!r}: only a whole value `{{{{ env.NAME }}}}` (a secret or setting read "
                "from the environment) is supported here; use ${NAME:-default} inside a string"
            )
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, (*loc, k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate_tree(v, (*loc, i)) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:
        return interpolate(node)
    return node


def _line_index(node: yaml.Node, loc: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map every path in a YAML document to its 1-based line number."""
    out = {} if out is None else out
    out[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[(*loc, key)] = key_node.start_mark.line + 1
            _line_index(value_node, (*loc, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*loc, i), out)
    return out


def _nearest_line(lines: dict[tuple, int], loc: tuple) -> int | None:
    while loc not in lines and loc:
        loc = loc[:-1]
    return lines.get(loc)


def _describe(err: dict[str, Any]) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return "unknown field (check the spelling)"
    if kind == "missing":
        return "required field is missing"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        return (
            f"unknown type {ctx.get('tag')!r} (expected one of: {ctx.get('expected_tags')})"
        )
    if kind == "union_tag_not_found":
        return "a `type` is required here"
    value = err.get("input")
    if kind == "string_type" and isinstance(value, dict) and set(value) == {"env"}:
        return (
            f"a secret reference ({{{{ env.{value['env']} }}}} or {{env: ...}}) is not allowed "
            f"in a plain setting; write ${{{value['env']}}} to read its value from the environment"
        )
    return msg.removeprefix("Value error, ")


def _format_loc(loc: Sequence[Any]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(parts)


def _validation_problems(
    err: ValidationError, file: str, lines: dict[tuple, int], base: tuple, prefix: str
) -> list[str]:
    problems = []
    for e in err.errors():
        # Discriminated unions add the tag name (e.g. "cursor") to the location; drop it so
        # the location matches the YAML.
        loc = tuple(
            p for p in e["loc"] if not (isinstance(p, str) and p in _UNION_TAGS)
        )
        loc += getattr((e.get("ctx") or {}).get("error"), "loc", ())  # LocatedValueError
        line = _nearest_line(lines, base + loc)
        where = f"{file}:{line}" if line else file
        field = _format_loc(loc) or "(whole entry)"
        problems.append(f"{where}: {prefix}field '{field}': {_describe(e)}")
    return problems


def _tags(union: Any) -> set[str]:
    """The ``type`` values of a discriminated union's models."""
    models = typing.get_args(typing.get_args(union)[0])
    return {tag for m in models for tag in typing.get_args(m.model_fields["type"].annotation)}


_UNION_TAGS = {
    *_tags(Auth), *_tags(Pagination), *_tags(Partitioning),
    "function-after", "function-before", "function-wrap",
}


MAX_SOURCE_FILE_BYTES = 4 * 1024 * 1024
"""A source file larger than this is refused (a real one is a few kilobytes)."""

MAX_SOURCE_NODES = 200_000
"""Values in one file once aliases are expanded; refuses "billion laughs" alias bombs."""


def _count_nodes(root: yaml.Node, path: Path) -> None:
    """Walk the document as it expands (aliases re-walk their anchor); fail past the cap."""
    seen = 0
    stack = [root]
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_SOURCE_NODES:
            raise SpecError([
                f"{path}: the YAML expands to more than {MAX_SOURCE_NODES:,} values "
                "(aliases repeated inside aliases?); refusing to load it"
            ])
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack += (key, value)
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value


def _read_text(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_SOURCE_FILE_BYTES:
            raise SpecError([
                f"{path}: {size:,} bytes; a source file may have at most "
                f"{MAX_SOURCE_FILE_BYTES:,} (split it into several files)"
            ])
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError([f"{path}: cannot be read ({exc.strerror or exc})"]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError([
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); save the file as UTF-8"
        ]) from None


YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""The safe loader, libyaml's when PyYAML has it (about 6x faster: every Dagster process
that loads the definitions parses the sources)."""


def _load_document(path: Path) -> tuple[Any, dict[tuple, int]]:
    text = _read_text(path)
    try:
        node = yaml.compose(text, Loader=YAML_LOADER)
        if node is not None:
            _count_nodes(node, path)  # before anything walks the expanded tree
        data = yaml.load(text, Loader=YAML_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise SpecError([f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    return data, (_line_index(node) if node is not None else {})


def _validate_source(
    raw: Any, file: str, lines: dict[tuple, int], base: tuple, index: int
) -> tuple[Source | None, list[str]]:
    """Validate one source mapping found at ``base`` in a document; (source or None, problems)."""
    name = raw.get("name", f"#{index + 1}") if isinstance(raw, dict) else f"#{index + 1}"
    prefix = f"source '{name}': "
    try:
        raw = _interpolate_tree(raw)
    except ValueError as exc:
        return None, [f"{file}:{lines.get(base, 1)}: {prefix}{exc}"]
    if not isinstance(raw, dict):
        return None, [f"{file}:{lines.get(base, 1)}: {prefix}expected a mapping"]
    raw = inherit_parent_partitioning(raw)  # before each endpoint is checked on its own
    # Validate endpoints one by one so that one bad endpoint does not hide the others'
    # problems, and each message names its endpoint.
    endpoints_raw = raw.get("endpoints")
    problems: list[str] = []
    if isinstance(endpoints_raw, list):
        for j, ep in enumerate(endpoints_raw):
            ep_name = ep.get("name", f"#{j + 1}") if isinstance(ep, dict) else f"#{j + 1}"
            try:
                Endpoint.model_validate(ep)
            except ValidationError as exc:
                # A child whose parent is unknown took no partitioning: say that, not its effects.
                problems += _unknown_parent(endpoints_raw, j, file, lines, base, prefix) or \
                    _validation_problems(exc, file, lines, (*base, "endpoints", j),
                                         f"{prefix}endpoint '{ep_name}': ")
    try:
        return Source.model_validate(raw), problems
    except ValidationError as exc:
        own = [
            e for e in exc.errors()
            if not (len(e["loc"]) > 1 and e["loc"][0] == "endpoints"
                    and isinstance(e["loc"][1], int))
        ]
        if own:
            problems += _validation_problems(
                ValidationError.from_exception_data(exc.title, own), file, lines, base, prefix
            )
        return None, problems


def _unknown_parent(
    endpoints: list, j: int, file: str, lines: dict[tuple, int], base: tuple, prefix: str
) -> list[str]:
    """The problem of endpoint ``j`` naming a parent the source does not have (or none)."""
    names = [e.get("name") for e in endpoints if isinstance(e, dict)]
    parent = endpoints[j].get("parent") if isinstance(endpoints[j], dict) else None
    wanted = parent.get("endpoint") if isinstance(parent, dict) else None
    if not isinstance(wanted, str) or wanted in names:
        return []
    line = _nearest_line(lines, (*base, "endpoints", j, "parent", "endpoint"))
    return [f"{file}:{line}: {prefix}endpoint '{names[j]}': field 'parent.endpoint': "
            f"{unknown_parent_text(wanted, names)}"]


COMPONENT_TYPE_SUFFIX = "RestApiSource"
"""A ``defs.yaml`` document is a source when its ``type`` ends with this (the Component's
class name, or a subclass keeping the suffix)."""

COMPONENT_ONLY_KEYS = frozenset({"translation"})
"""Attributes of the Component that are not source settings (Dagster reads them)."""


def is_source_component(document: Any) -> bool:
    return isinstance(document, dict) and str(document.get("type", "")).endswith(
        COMPONENT_TYPE_SUFFIX
    )


def _component_documents(path: Path) -> list[tuple[Any, dict[tuple, int]]]:
    """The documents of a Dagster ``defs.yaml`` (several may be separated by ``---``)."""
    text = path.read_text(encoding="utf-8")
    try:
        nodes = list(yaml.compose_all(text, Loader=YAML_LOADER))
        for node in nodes:
            if node is not None:
                _count_nodes(node, path)  # before anything walks the expanded tree
        docs = list(yaml.load_all(text, Loader=YAML_LOADER))  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise SpecError([f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    return [(d, _line_index(n) if n is not None else {}) for d, n in zip(docs, nodes, strict=True)]


def load_component_file(
    path: Path, only: str | None = None, any_type: bool = False
) -> tuple[list[Source], list[str]]:
    """The sources of a Dagster ``defs.yaml`` (``type: ...RestApiSource``, ``attributes:`` =
    one source); ``only`` keeps the document whose source has that name. Other component
    types in the file are left to Dagster (``any_type``: the Component itself, which may be a
    subclass of any name, reads its own document)."""
    file = str(path)
    sources: list[Source] = []
    problems: list[str] = []
    for i, (doc, lines) in enumerate(_component_documents(path)):
        if not (is_source_component(doc) or (any_type and isinstance(doc, dict))):
            continue
        attributes = doc.get("attributes")
        if not isinstance(attributes, dict):
            problems.append(f"{file}:{lines.get(('type',), 1)}: expected `attributes:` holding "
                            "the source's settings")
            continue
        if only is not None and attributes.get("name") != only:
            continue
        raw = {k: v for k, v in attributes.items() if k not in COMPONENT_ONLY_KEYS}
        source, found = _validate_source(raw, file, lines, ("attributes",), i)
        problems += found
        if source is not None and not found:
            sources.append(source)
    return sources, problems


def load_sources_file(path: Path) -> tuple[list[Source], list[str]]:
    """Validate one YAML file; returns the valid sources and the problems found.

    Either a ``sources:`` list, or a Dagster component file (``defs.yaml``) whose ``type`` is
    the `RestApiSource` Component and whose ``attributes`` are one source.
    """
    if path.name == "defs.yaml":
        return load_component_file(path)
    data, lines = _load_document(path)
    file = str(path)
    if is_source_component(data):
        return load_component_file(path)
    if not isinstance(data, dict) or not isinstance(data.get("sources"), list):
        return [], [f"{file}:1: expected a top-level `sources:` list"]
    unknown = sorted(set(data) - {"sources"})
    problems = [f"{file}:{lines.get((k,), 1)}: unknown top-level key {k!r}" for k in unknown]
    sources: list[Source] = []
    for i, raw in enumerate(data["sources"]):
        source, found = _validate_source(raw, file, lines, ("sources", i), i)
        problems += found
        if source is not None:
            sources.append(source)
    return sources, problems


def source_files(locations: str | Iterable[str | Path] | None = None) -> list[Path]:
    """The YAML files to load: from the argument, ``$INGESTION_SOURCES``, or the demo sources."""
    if locations is None:
        locations = os.environ.get(SOURCES_ENV_VAR) or str(DEFAULT_SOURCES_DIR)
    if isinstance(locations, Path):
        locations = [locations]
    elif isinstance(locations, str):
        locations = [p for p in locations.split(os.pathsep) if p]
    files: list[Path] = []
    for loc in locations:
        path = Path(loc).expanduser()
        if path.is_dir():
            # YAML files in the folder, and the component files (defs.yaml) of a defs folder.
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
            files += sorted(p for p in path.glob("*/**/defs.yaml"))
        elif path.is_file():
            files.append(path)
        else:
            raise SpecError([f"{path}: no such file or folder (from {SOURCES_ENV_VAR} or argument)"])
    return files


def load_sources(locations: str | Iterable[str | Path] | None = None) -> list[Source]:
    """Load and validate every source; raises one `SpecError` listing every problem."""
    sources: list[Source] = []
    problems: list[str] = []
    where: dict[str, Path] = {}
    for path in source_files(locations):
        try:
            found, file_problems = load_sources_file(path)
        except SpecError as exc:
            problems += exc.problems
            continue
        problems += file_problems
        for source in found:
            if source.name in where:
                problems.append(
                    f"{path}: source '{source.name}' is also defined in {where[source.name]}"
                )
                continue
            where[source.name] = path
            sources.append(source)
    if problems:
        raise SpecError(problems)
    return sources
