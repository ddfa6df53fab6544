"""What a Spark read of one endpoint fetches: its options, input partitions and fetches.

Nothing here imports Spark or Dagster: the planning runs in a Spark Python worker on the
driver, the fetching in one on each executor, both through the HTTP core
(``ingestion_assets.http``) with the same auth, retries, origin rule, budgets, window guard
and total checks as the Dagster assets.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ingestion_assets.endpoint_io import (
    PartitionRequest,
    apply_target,
    build_client,
    client_settings,
    discover_keys,
    drop_repeated_records,
    mask_columns,
    pages_can_shift,
    register_env_secrets,
    register_header_secrets,
    request_headers,
    table_normalizer,
    time_windows,
    window_params,
)
from ingestion_assets.http import ApiClient, PageStream
from ingestion_assets.http import paginators as pg
from ingestion_assets.http.errors import IncompleteFetchError
from ingestion_assets.normalize import Normalizer
from ingestion_assets.specs import (
    DynamicPartitioning,
    Endpoint,
    MultiPartitioning,
    OffsetPagination,
    PageNumberPagination,
    Source,
    StaticPartitioning,
    TimePartitioning,
    load_sources,
)


class SparkReadError(ValueError):
    """Options of a Spark read that cannot be planned; the message names the option."""


@dataclass(frozen=True)
class ReadOptions:
    """The options of ``spark.read.format("ingestion_assets")``, validated."""

    source: Source
    endpoint: Endpoint
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    keys: tuple[str, ...] = ()
    concurrency: int | None = None
    pages_per_partition: int = 10
    on_dead_letter: str = "fail"
    since: dt.datetime | None = None

    @property
    def where(self) -> str:
        return f"source '{self.source.name}' endpoint '{self.endpoint.name}'"


def _instant(options: Mapping[str, str], name: str) -> dt.datetime | None:
    text = options.get(name)
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SparkReadError(
            f"option {name}={text!r} is not an ISO date or datetime (e.g. 2025-01-01)"
        ) from None
    return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).astimezone(
        dt.timezone.utc
    )


def _positive(options: Mapping[str, str], name: str, default: int | None) -> int | None:
    text = options.get(name)
    if text is None or text == "":
        return default
    if not str(text).isdigit() or int(text) < 1:
        raise SparkReadError(f"option {name}={text!r} must be a whole number >= 1")
    return int(text)


def parse_options(options: Mapping[str, str]) -> ReadOptions:
    """Load the YAML the options name and find the endpoint; every error names the option."""
    for required in ("source", "endpoint"):
        if not options.get(required):
            raise SparkReadError(
                f'option "{required}" is required, e.g. .option("{required}", '
                f'"{ {"source": "payments", "endpoint": "charges"}[required] }")'
            )
    sources = {s.name: s for s in load_sources(options.get("sources") or None)}
    source = sources.get(options["source"])
    if source is None:
        raise SparkReadError(
            f"no source {options['source']!r} in {options.get('sources') or 'the sources'}; "
            f"sources: {', '.join(sorted(sources))}"
        )
    endpoint = next((e for e in source.endpoints if e.name == options["endpoint"]), None)
    if endpoint is None:
        raise SparkReadError(
            f"source {source.name!r} has no endpoint {options['endpoint']!r}; endpoints: "
            f"{', '.join(e.name for e in source.endpoints)}"
        )
    if endpoint.parent is not None:
        raise SparkReadError(
            f"endpoint {endpoint.name!r} of source {source.name!r} is a child endpoint (parent: "
            f"{endpoint.parent.endpoint}): its requests come from the parent's stored table, "
            "which the Spark reader does not read; materialize it with Dagster"
        )
    if endpoint.format != "json":
        raise SparkReadError(
            f"endpoint {endpoint.name!r} of source {source.name!r} has `format: "
            f"{endpoint.format}`: the Spark reader reads JSON pages only; materialize it with "
            "Dagster and read its Parquet table"
        )
    on_dead = options.get("on_dead_letter") or "fail"
    if on_dead not in ("fail", "drop"):
        raise SparkReadError(f"option on_dead_letter={on_dead!r} must be 'fail' or 'drop'")
    keys = tuple(k.strip() for k in (options.get("keys") or "").split(",") if k.strip())
    return ReadOptions(
        source=source, endpoint=endpoint, start=_instant(options, "start"),
        end=_instant(options, "end"), keys=keys,
        concurrency=_positive(options, "concurrency", None),
        pages_per_partition=_positive(options, "pages_per_partition", 10) or 10,
        on_dead_letter=on_dead, since=_instant(options, "since"),
    )


# --------------------------------------------------------------------------- partitions


@dataclass(frozen=True)
class ReadPart(PartitionRequest):
    """One input partition: a partition's request, or a range of planned pages."""

    pages: tuple[tuple[str, tuple[tuple[str, Any], ...], int], ...] = ()  # (url, params, count)
    total: int | None = None


def _time_requests(opts: ReadOptions, spec: TimePartitioning) -> list[tuple[str, dt.datetime,
                                                                           dt.datetime]]:
    if opts.start is None or opts.end is None:
        raise SparkReadError(
            f"{opts.where} is partitioned {spec.type}: options start and end are required "
            '(UTC, end exclusive), e.g. .option("start", "2025-01-01").option("end", '
            '"2025-02-01")'
        )
    windows = time_windows(spec, opts.start, opts.end)
    if not windows:
        raise SparkReadError(
            f"{opts.where}: no whole {spec.type} partition lies in [{opts.start.isoformat()}, "
            f"{opts.end.isoformat()}) (partitions start {spec.start})"
        )
    return windows


def _key_values(opts: ReadOptions, client: ApiClient | None) -> list[str]:
    p = opts.endpoint.partitioning
    static = p.static if isinstance(p, MultiPartitioning) else p
    if opts.keys:
        if isinstance(static, StaticPartitioning):
            unknown = [k for k in opts.keys if k not in static.values]
            if unknown:
                raise SparkReadError(f"option keys: {unknown} are not among {static.values}")
        return list(opts.keys)
    if isinstance(static, StaticPartitioning):
        return list(static.values)
    assert isinstance(p, DynamicPartitioning)
    if p.discovery is None or client is None:
        raise SparkReadError(
            f"{opts.where} is partitioned by dynamic keys without discovery: name them with "
            'option("keys", "a,b,c")'
        )
    return discover_keys(client, p.discovery, opts.endpoint.name,
                         headers=endpoint_request_headers(opts))


def partition_requests(opts: ReadOptions, client: ApiClient | None = None) -> list[ReadPart]:
    """The endpoint's own partitions in the read's range, as the Dagster assets request them."""
    endpoint = opts.endpoint
    p = endpoint.partitioning
    base = dict(endpoint.params)
    if isinstance(p, TimePartitioning | MultiPartitioning):
        spec = p if isinstance(p, TimePartitioning) else p.time
        assert endpoint.window is not None  # the spec requires one
        scopes = [(None, endpoint.path, base)]
        if isinstance(p, MultiPartitioning):
            scopes = [(v, apply_target(p.static, v, endpoint.path, d := dict(base)), d)
                      for v in _key_values(opts, client)]
        return [
            ReadPart(key=key if value is None else f"{key}|{value}", path=path,
                     params={**params, **window_params(endpoint.window, start, end)},
                     window=(start, end))
            for key, start, end in _time_requests(opts, spec)
            for value, path, params in scopes
        ]
    if isinstance(p, StaticPartitioning | DynamicPartitioning):
        parts = []
        for value in _key_values(opts, client):
            params = dict(base)
            parts.append(ReadPart(key=value, path=apply_target(p, value, endpoint.path, params),
                                  params=params))
        return parts
    return [ReadPart(key=None, path=endpoint.path, params=base)]


def plannable(endpoint: Endpoint) -> bool:
    """An unpartitioned offset or page-number endpoint with a declared total."""
    pag = endpoint.pagination
    if endpoint.partitioning.type != "none":
        return False
    return isinstance(pag, OffsetPagination | PageNumberPagination) and not pag.why_sequential()


def page_ranges(opts: ReadOptions, client: ApiClient) -> list[ReadPart]:
    """Split an unpartitioned offset/page endpoint into ranges of its planned pages.

    The first page is fetched here (through the core) for the declared total; the pages are
    then planned by the paginator's own ``plan`` and grouped ``pages_per_partition`` at a time.
    Each range checks that every page holds the planned count and the total is unchanged.
    """
    endpoint = opts.endpoint
    stream = client.fetch_pages(
        endpoint.path, params={**endpoint.pagination.size_params(), **endpoint.params},
        paginator=endpoint.pagination.build(opts.source.name),
        records_path=endpoint.records_path, endpoint=endpoint.name,
        headers=endpoint_request_headers(opts),
    )
    pages = iter(stream)
    first = next(pages)
    pages.close()
    paginator = stream.paginator
    first_request = (stream.request.url, tuple(stream.request.params.items()),
                     len(first.records))
    plan = paginator.plan(stream.request, len(first.records)) if paginator.has_next else None
    if paginator.has_next and plan is None:
        raise SparkReadError(
            f"{opts.where}: the first page declares no total to plan the pages from"
        )
    planned = [first_request] + [
        (p.request.url, tuple(p.request.params.items()), p.expected) for p in (plan or [])
    ]
    size = opts.pages_per_partition
    return [
        ReadPart(key=f"pages {i + 1}-{min(i + size, len(planned))}", path=endpoint.path,
                 pages=tuple(planned[i:i + size]), total=paginator.total)
        for i in range(0, len(planned), size)
    ]


class PageRange(pg.Paginator):
    """Fetches a planned range of pages with the style's paginator reading each response.

    Every page must hold its planned record count, and the declared total must stay the one
    the pages were planned from (records inserted or deleted meanwhile would shift them).
    """

    def __init__(self, style: pg.Paginator, part: ReadPart, where: dict[str, Any]):
        super().__init__()
        self.style = style.fresh()
        self.planned = part.pages
        self.planned_total = part.total
        self.where = where
        self.index = 0

    def read_headers(self, response: Any) -> None:
        self.style.read_headers(response)

    def update_state(self, response: Any, body: Any, records: list) -> None:
        self.style.update_state(response, body, records)
        url, _, expected = self.planned[self.index]
        self.total = self.style.total
        if self.planned_total is not None and self.total != self.planned_total:
            raise IncompleteFetchError(
                f"the declared total changed from {self.planned_total} to {self.total} since "
                "the pages were planned: records were inserted or deleted while reading",
                url=url, **self.where,
            )
        if expected is not None and len(records) != expected:
            raise IncompleteFetchError(
                f"page {self.index + 1} of the range returned {len(records)} records, expected "
                f"{expected} from the declared total", url=url, **self.where,
            )
        self.index += 1
        self.has_next = self.index < len(self.planned)

    def update_request(self, request: pg.PageRequest) -> None:
        url, params, _ = self.planned[self.index]
        request.url, request.params = url, dict(params)

    def expected_records(self) -> int | None:
        counts = [count for _, _, count in self.planned]
        return None if None in counts else sum(counts)


# --------------------------------------------------------------------------- fetching


def task_settings(source: Source, tasks: int) -> dict[str, Any]:
    """The source's client settings with its rate limit divided among ``tasks`` tasks."""
    settings = client_settings(source)
    if settings["requests_per_second"] is not None and tasks > 1:
        settings["requests_per_second"] /= tasks
        settings["burst"] = max(1, (settings["burst"] or 1) // tasks)
    return settings


def open_client(source: Source, tasks: int = 1) -> ApiClient:
    """A client of the source for one task (secrets from this process's environment).

    Its rate limiter starts empty: the task before it in the same slot may have sent a
    request a moment ago, and tasks of one read start and end together, so full buckets at
    every task start would send several shares' bursts at once.
    """
    register_env_secrets(source.auth)  # masked in this worker's logs and errors
    register_header_secrets(source)
    client = build_client(task_settings(source, tasks), pool_size=8)
    client.rate_limiter.drain()
    return client


def endpoint_request_headers(opts: ReadOptions) -> dict[str, str]:
    """The read endpoint's request headers, as the Dagster step sends them."""
    return request_headers(client_settings(opts.source), opts.endpoint.name)


def fetch(client: ApiClient, opts: ReadOptions, part: ReadPart) -> PageStream:
    """The pages of one input partition, through the HTTP core (lazily)."""
    endpoint = opts.endpoint
    where = {"source": opts.source.name, "endpoint": endpoint.name}
    if part.pages:
        url, params, _ = part.pages[0]
        return client.fetch_pages(
            url, params=dict(params),
            paginator=PageRange(endpoint.pagination.build(opts.source.name), part, where),
            records_path=endpoint.records_path, endpoint=endpoint.name,
            headers=endpoint_request_headers(opts),
        )
    return client.fetch_pages(
        part.path, params={**endpoint.pagination.size_params(), **part.params},
        paginator=endpoint.pagination.build(opts.source.name), records_path=endpoint.records_path,
        workers=endpoint.workers, max_pages=endpoint.max_pages,
        on_total_mismatch=endpoint.on_total_mismatch, endpoint=endpoint.name,
        headers=endpoint_request_headers(opts),
    )


def record_pages(opts: ReadOptions, stream: PageStream) -> Iterator[list[Any]]:
    """The records of each page: ``mask_columns`` masked, repeats dropped where offset pages
    can shift (what the Dagster step does before normalizing)."""
    pages: Any = (page.records for page in stream)
    if opts.endpoint.mask_columns:  # the table does not keep these (as the Parquet table)
        pages = mask_columns(pages, opts.endpoint.mask_columns)
    if not pages_can_shift(opts.endpoint):
        return pages
    return drop_repeated_records(pages, opts.endpoint.primary_key, {})


def normalizer_for(opts: ReadOptions, part: ReadPart | None) -> Normalizer:
    return table_normalizer(opts.endpoint, part.window if part else None)


def check_dead_letters(opts: ReadOptions, normalizer: Normalizer, part: ReadPart) -> None:
    """Fail the partition when records broke the contract (unless on_dead_letter=drop)."""
    dead = normalizer.dead_letters
    if dead is None or opts.on_dead_letter == "drop" or not dead.summary():
        return
    found = ", ".join(f"{d['count']} {d['rule']}" + (f" ({d['field']})" if d["field"] else "")
                      for d in dead.summary())
    raise SparkReadError(
        f"{opts.where} partition {part.key or '(snapshot)'}: records break the endpoint's "
        f"contract and would be left out: {found}; fix the schema, or read with "
        'option("on_dead_letter", "drop")'
    )
