"""`ApiResource` with the bundled YAML: every demo endpoint fetches exactly the API's records."""

from __future__ import annotations

import datetime as dt

import pytest

from ingestion_assets.http.errors import AuthenticationError
from ingestion_assets.partitions import partition_request, partitions_def
from ingestion_assets.resources import ApiResource, records_of_page
from ingestion_assets.specs import MissingSecretError

NOW = dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)


def _ids(records, pk):
    return sorted(tuple(str(r[k]) for k in pk) for r in records)


def _fetch(source, endpoint, key):
    pdef = partitions_def(source, endpoint)
    request = partition_request(endpoint, pdef, key)
    stream = ApiResource.from_source(source).fetch_pages(endpoint, request)
    pages = list(stream)
    return request, pages, stream.stats


def _some_key(source, endpoint):
    pdef = partitions_def(source, endpoint)
    if pdef is None:
        return None
    return pdef.get_partition_keys(current_time=NOW.replace(tzinfo=None))[-2]


CASES = [
    ("payments", "charges"), ("payments", "customers"), ("payments", "refunds"),
    ("commerce", "orders"), ("commerce", "products"), ("commerce", "customers"),
    ("crm", "contacts"), ("crm", "companies"), ("crm", "emails"), ("crm", "daily_report"),
    ("devhub", "repos"), ("devhub", "events"), ("helpdesk", "tickets"),
]


@pytest.mark.parametrize(("source_name", "endpoint_name"), CASES)
def test_every_demo_endpoint_fetches_exactly_the_apis_records(
    demo_api, demo_sources, source_name, endpoint_name
):
    source = demo_sources[source_name]
    endpoint = next(e for e in source.endpoints if e.name == endpoint_name)
    request, pages, stats = _fetch(source, endpoint, _some_key(source, endpoint))
    records = [r for p in pages for r in p.records]
    if request.window:
        field = "updated" if "updated" in endpoint.window.start_param else "created"
        truth = demo_api.records(source_name, endpoint_name, *request.window, field=field,
                                 **({"date": request.params["date"]} if "date" in request.params else {}))
    else:
        truth = demo_api.records(source_name, endpoint_name,
                                 **({"org": "demo-org"} if source_name == "devhub" else {}))
    assert records, "the chosen partition should not be empty"
    assert _ids(records, endpoint.primary_key) == _ids(truth, endpoint.primary_key)
    assert stats.pages == len(pages) and stats.records == len(records)
    # The stored body re-parses to the same records (the table asset relies on it).
    assert sum(len(records_of_page(p.body, endpoint.records_path)) for p in pages) == len(records)


def test_dynamic_partition_key_goes_into_the_path(demo_api, demo_sources):
    source = demo_sources["devhub"]
    issues = next(e for e in source.endpoints if e.name == "issues")
    repo = demo_api.records("devhub", "repos", org="demo-org")[0]["name"]
    _, pages, _ = _fetch(source, issues, repo)
    records = [r for p in pages for r in p.records]
    truth = demo_api.records("devhub", "issues", repo=f"demo-org/{repo}")
    assert records and _ids(records, ["id"]) == _ids(truth, ["id"])


def test_missing_secret_names_the_variable_only_when_fetching(demo_sources, monkeypatch):
    monkeypatch.delenv("DEMO_PAYMENTS_KEY")
    source = demo_sources["payments"]
    resource = ApiResource.from_source(source)  # building it needs no secret
    with pytest.raises(MissingSecretError, match="DEMO_PAYMENTS_KEY"):
        list(resource.fetch_pages(source.endpoints[0], partition_request(
            source.endpoints[0], partitions_def(source, source.endpoints[0]), "2025-02-01")))


def test_wrong_secret_fails_with_a_clear_error_and_no_secret_in_it(demo_sources, monkeypatch):
    monkeypatch.setenv("DEMO_PAYMENTS_KEY", "sk_test_wrong_value_123456")
    source = demo_sources["payments"]
    endpoint = source.endpoints[0]
    request = partition_request(endpoint, partitions_def(source, endpoint), "2025-02-01")
    with pytest.raises(AuthenticationError) as info:
        list(ApiResource.from_source(source).fetch_pages(endpoint, request))
    assert "401" in str(info.value) and "sk_test_wrong_value_123456" not in str(info.value)


# --------------------------------------------------------------- never silently incomplete


def _sources_of(api, monkeypatch):
    from ingestion_assets.demo_api import demo_env
    from ingestion_assets.specs import load_sources

    for name, value in demo_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DEMO_API_URL", api.url)
    return {s.name: s for s in load_sources()}


def _changed(endpoint, **changes):
    return endpoint.model_validate({**endpoint.model_dump(by_alias=True), **changes})


def _link_issues(source, **pagination):
    """devhub issues of one repository as a link-paginated endpoint (no page parameter sent)."""
    issues = next(e for e in source.endpoints if e.name == "issues")
    return _changed(
        issues, params={"state": "all"},
        pagination={"type": "link", "page_size": 100, "size_param": "per_page", **pagination},
    )


def test_link_pages_that_stop_early_fail_on_the_header_total(demo_api_factory, monkeypatch):
    from ingestion_assets.http.errors import IncompleteFetchError

    api = demo_api_factory(records=2345)
    source = _sources_of(api, monkeypatch)["devhub"]
    repo = api.sources["devhub"].repo_names()[0]
    truth = api.records("devhub", "issues", repo=f"demo-org/{repo}")
    assert len(truth) == 2345
    # The API pages only a request that names its page: the first one has no next link.
    api.add_fault(kind="link_needs_page", source="devhub")

    # Without the header total the fetch ends after one page and says nothing.
    _, pages, stats = _fetch(source, _link_issues(source), repo)
    assert (stats.records, stats.declared_total) == (100, None)

    # With it, the fetch fails, naming both counts.
    with pytest.raises(IncompleteFetchError, match="received 100 records but the API declared 2345"):
        _fetch(source, _link_issues(source, total_header="X-Total-Count"), repo)


def test_a_header_total_reaches_the_row_count_check(demo_api_factory, monkeypatch, tmp_path):
    import dagster as dg

    from ingestion_assets.partitions import dynamic_partitions_name
    from ingestion_assets_tests.materialize import run

    api = demo_api_factory(records=2345)
    api.add_fault(kind="link_needs_page", source="devhub")
    devhub = _sources_of(api, monkeypatch)["devhub"]
    repo = api.sources["devhub"].repo_names()[0]
    # on_total_mismatch: warn lets the 100 rows land; the check must then say what is missing.
    endpoint = _changed(_link_issues(devhub, total_header="X-Total-Count"),
                        on_total_mismatch="warn", automation={})
    source = devhub.model_copy(update={"endpoints": [endpoint]})
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(dynamic_partitions_name(source, endpoint), [repo])

    result = run(source, tmp_path, instance, repo)

    (row_count,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "row_count"]
    assert not row_count.passed
    assert "the API declared 2345 records, 100 were received" in row_count.description
    assert row_count.metadata["declared_total"].value == 2345


def test_link_pages_are_fetched_concurrently_from_the_last_link(demo_api_factory, monkeypatch):
    api = demo_api_factory(records=2345)
    source = _sources_of(api, monkeypatch)["devhub"]
    repo = api.sources["devhub"].repo_names()[0]
    truth = api.records("devhub", "issues", repo=f"demo-org/{repo}")
    for workers, totals in ((4, {"total_header": "X-Total-Count"}), (3, {})):
        endpoint = _changed(_link_issues(source, **totals), workers=workers)
        _, pages, stats = _fetch(source, endpoint, repo)
        records = [r for p in pages for r in p.records]
        assert _ids(records, ["id"]) == _ids(truth, ["id"]), "lost or repeated records"
        assert len(records) == len(truth) == 2345
        assert (stats.pages, stats.workers) == (24, workers)
        assert [p.index for p in pages] == list(range(24))
        assert stats.declared_total == (2345 if totals else None)


def test_page_number_pages_are_planned_from_a_header_total(demo_api_factory, monkeypatch):
    api = demo_api_factory(records=2345)
    source = _sources_of(api, monkeypatch)["devhub"]
    repo = api.sources["devhub"].repo_names()[0]
    issues = next(e for e in source.endpoints if e.name == "issues")
    endpoint = _changed(
        issues, workers=4,
        pagination={"type": "page_number", "page_size": 100, "size_param": "per_page",
                    "total_header": "X-Total-Count"},
    )
    _, pages, stats = _fetch(source, endpoint, repo)
    records = [r for p in pages for r in p.records]
    truth = api.records("devhub", "issues", repo=f"demo-org/{repo}")
    assert _ids(records, ["id"]) == _ids(truth, ["id"])
    assert (stats.pages, stats.workers, stats.declared_total) == (24, 4, 2345)


def test_window_format_must_match_the_text_the_api_compares(demo_api, demo_sources):
    # The API compares the filter's text with records stamped "...T00:00:00.000Z".
    demo_api.add_fault(kind="string_time_filter", source="crm")
    source = demo_sources["crm"]
    contacts = next(e for e in source.endpoints if e.name == "contacts")
    truth = demo_api.records("crm", "contacts", "2025-01-02", "2025-01-03")
    truth_ids = {r["id"] for r in truth}

    def fetch(fmt):
        endpoint = _changed(
            contacts, automation={}, partitioning={"type": "daily", "start": "2025-01-01"},
            window={"start_param": "created_gte", "end_param": "created_lt", "format": fmt},
        )
        request, pages, _ = _fetch(source, endpoint, "2025-01-02")
        return request, {r["id"] for p in pages for r in p.records}

    request, got = fetch("iso_ms")
    assert request.params == {
        "limit": 100, "created_gte": "2025-01-02T00:00:00.000Z",
        "created_lt": "2025-01-03T00:00:00.000Z",
    }
    assert got == truth_ids

    # Seconds precision against millisecond text: the record at midnight moves to the day
    # before ('.' sorts before 'Z'): lost here, and the next midnight's record gained.
    _, got = fetch("iso_z")
    midnight = {r["id"] for r in truth if r["createdAt"] == "2025-01-02T00:00:00.000Z"}
    assert midnight and truth_ids - got == midnight
    after = demo_api.records("crm", "contacts", "2025-01-03", "2025-01-03T00:00:01")
    assert got - truth_ids == {r["id"] for r in after}


def test_a_data_null_day_is_an_empty_partition_not_a_dead_letter(
    demo_api_factory, monkeypatch, tmp_path
):
    import dagster as dg

    from ingestion_assets_tests.materialize import run
    from ingestion_assets_tests.test_factory import only_endpoint, read

    # The API's records start on Jan 5; it answers an empty window with {"data": null}.
    api = demo_api_factory(start="2025-01-05T00:00:00Z")
    api.add_fault(kind="null_when_empty", source="payments")
    payments = _sources_of(api, monkeypatch)["payments"]
    source = only_endpoint(payments, "charges", checks={"row_count": {"allow_empty": True}})

    result = run(source, tmp_path, dg.DagsterInstance.ephemeral(), "2025-01-02")

    assert result.success
    assert read(tmp_path, "payments", "charges", "date=2025-01-02").num_rows == 0
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["contract"].passed, checks["contract"].description
    assert checks["contract"].metadata["dead_letters"].value == 0
    assert checks["row_count"].passed, checks["row_count"].description
    events = {e.asset_key.to_user_string(): e.materialization.metadata
              for e in result.get_asset_materialization_events()}
    assert events["raw/payments/charges"]["records"].value == 0
    assert events["payments/charges"]["dagster/row_count"].value == 0


def test_allowed_origins_and_limits_reach_the_client():
    from ingestion_assets.http.budgets import MIB
    from ingestion_assets.specs import Source

    source = Source.model_validate({
        "name": "files", "base_url": "https://api.example.com/v2",
        "allowed_origins": ["https://uploads.example.com"],
        "limits": {"max_body_mb": 2, "request_deadline_seconds": 30, "max_wait_seconds": 60,
                   "max_redirects": 1},
        "endpoints": [{"name": "files", "path": "/files", "primary_key": "id"}],
    })
    client = ApiResource.from_source(source).client()
    assert client.origins.allows("https://uploads.example.com/x?y=1")
    assert client.origins.allows("https://api.example.com:443/other")
    assert not client.origins.allows("http://api.example.com/v2")  # another scheme
    assert not client.origins.allows("https://uploads.example.com:8443/")
    budgets = client.budgets
    assert (budgets.max_body_bytes, budgets.request_deadline_s, budgets.max_wait_s,
            budgets.max_redirects) == (2 * MIB, 30, 60, 1)
