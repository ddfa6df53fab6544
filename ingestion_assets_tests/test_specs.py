"""The YAML loader: what a user sees for good files and for each kind of mistake."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from ingestion_assets.specs import (
    DEFAULT_SOURCES_DIR,
    SOURCES_ENV_VAR,
    EnvSecret,
    MissingSecretError,
    Source,
    SpecError,
    interpolate,
    load_sources,
)

GOOD_ENDPOINT = """\
      - name: charges
        path: /v1/charges
        records_path: data
        primary_key: id
        pagination: {type: cursor, cursor_param: starting_after, cursor_field: id, has_more_path: has_more}
        partitioning: {type: daily, start: "2025-01-01"}
        window: {start_param: "created[gte]", end_param: "created[lt]", format: unix}
"""


def source_yaml(name: str, extra_endpoints: str = "") -> str:
    """A valid one-source file (no dedent needed), optionally with more endpoint entries."""
    return (
        f"sources:\n  - name: {name}\n    base_url: https://{name}.example.com\n"
        f"    endpoints:\n{GOOD_ENDPOINT}{extra_endpoints}"
    )


def write(tmp_path: Path, text: str, name: str = "sources.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_bundled_demo_sources_load():
    sources = load_sources(DEFAULT_SOURCES_DIR)
    names = {s.name: [e.name for e in s.endpoints] for s in sources}
    assert set(names) == {"payments", "commerce", "crm", "devhub", "exports", "helpdesk"}
    assert "charges" in names["payments"] and "orders" in names["commerce"]


def test_env_var_names_the_files(tmp_path, monkeypatch):
    path = write(tmp_path, source_yaml("mine"))
    monkeypatch.setenv(SOURCES_ENV_VAR, str(path))
    (source,) = load_sources()
    assert source.name == "mine"
    assert source.endpoints[0].primary_key == ["id"]


def test_a_dozen_mistakes_each_get_one_clear_message(tmp_path):
    path = write(
        tmp_path,
        """\
        sources:
          - name: shop
            base_url: ftp://nowhere
            auth: {type: bearer, token: sk_live_123}
            rate_limit: {requests_per_second: fast}
            endpoints:
              - name: orders
                path: orders.json
                primary_key: id
                pagination: {type: cursr, cursor_param: x}
                partitioning: {type: daily, start: "2025-13-01"}
                window: {start_param: a}
              - name: refunds
                pth: /refunds
                primary_key: id
              - name: customers
                path: /customers
                primary_key: id
                pagination: {type: offset, limit: -5}
              - name: events
                path: /events
                primary_key: id
                pagination: {type: cursor, cursor_param: c}
              - name: reports
                path: /reports
                primary_key: id
                partitioning: {type: daily, start: "2025-01-01", timezone: Mars/Olympus}
                window: {start_param: date, format: date}
              - name: plain
                path: /plain
                primary_key: id
                partitioning: {type: weekly, start: "2025-01-06"}
              - name: 9bad-name
                path: /x
                primary_key: id
              - name: typed
                path: /typed
                primary_key: id
                schema: {amount: money}
        """,
    )
    with pytest.raises(SpecError) as info:
        load_sources(path)
    message = str(info.value)
    problems = info.value.problems
    expected = [
        ("base_url", "must be an http(s) URL"),
        ("auth.token", "must come from the environment"),
        ("rate_limit.requests_per_second", "number"),
        ("endpoint 'orders': field 'path'", "must start with '/'"),
        ("endpoint 'orders': field 'pagination'", "unknown type 'cursr'"),
        ("endpoint 'orders': field 'partitioning.start'", "'2025-13-01' is not an ISO date"),
        ("endpoint 'refunds': field 'path'", "required field is missing"),
        ("endpoint 'refunds': field 'pth'", "unknown field"),
        ("endpoint 'customers': field 'pagination.limit'", "greater than 0"),
        ("endpoint 'events'", "exactly one of cursor_path or cursor_field"),
        ("endpoint 'reports': field 'partitioning.timezone'", "unknown timezone 'Mars/Olympus'"),
        ("endpoint 'plain'", "needs `window`"),
        ("endpoint '9bad-name': field 'name'", "pattern"),
        ("endpoint 'typed': field 'schema.amount'", "'string'"),
    ]
    for where, what in expected:
        matching = [p for p in problems if where in p and what in p]
        assert len(matching) == 1, f"expected one problem with {where!r} and {what!r}:\n{message}"
        # Each message names the file, a line, and the source.
        assert matching[0].startswith(f"{path}:") and "source 'shop'" in matching[0]
    assert len(problems) == len(expected), message


def test_line_numbers_point_at_the_mistake(tmp_path):
    broken = (
        "      - name: broken\n        path: /broken\n        primary_key: id\n"
        "        pagination: {type: offset, limit: 0}\n"
    )
    path = write(tmp_path, source_yaml("shop", broken))
    with pytest.raises(SpecError) as info:
        load_sources(path)
    (problem,) = info.value.problems
    line_of_mistake = path.read_text().splitlines().index(
        "        pagination: {type: offset, limit: 0}"
    ) + 1
    assert problem.startswith(f"{path}:{line_of_mistake}: source 'shop': endpoint 'broken'")


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "sources:\n  - name: x\n    base_url: [unclosed\n")
    with pytest.raises(SpecError, match=rf"{path}:\d+: not valid YAML"):
        load_sources(path)


def test_missing_path_and_duplicate_source(tmp_path):
    with pytest.raises(SpecError, match="no such file or folder"):
        load_sources(str(tmp_path / "nope.yaml"))
    (tmp_path / "a.yaml").write_text(source_yaml("twice"))
    (tmp_path / "b.yaml").write_text(source_yaml("twice"))
    with pytest.raises(SpecError, match="source 'twice' is also defined in"):
        load_sources(tmp_path)


def test_secrets_resolve_at_run_time_and_name_the_variable(monkeypatch):
    secret = EnvSecret(env="SPEC_TEST_TOKEN")
    monkeypatch.delenv("SPEC_TEST_TOKEN", raising=False)
    with pytest.raises(MissingSecretError, match="SPEC_TEST_TOKEN is not set"):
        secret.resolve("API token")
    monkeypatch.setenv("SPEC_TEST_TOKEN", "s3cret")
    assert secret.resolve("API token") == "s3cret"


def test_interpolation_of_plain_settings(monkeypatch):
    monkeypatch.delenv("SPEC_TEST_URL", raising=False)
    assert interpolate("${SPEC_TEST_URL:-http://127.0.0.1:1}/x") == "http://127.0.0.1:1/x"
    monkeypatch.setenv("SPEC_TEST_URL", "http://127.0.0.1:2")
    assert interpolate("${SPEC_TEST_URL:-http://127.0.0.1:1}/x") == "http://127.0.0.1:2/x"
    monkeypatch.delenv("SPEC_TEST_URL")
    with pytest.raises(ValueError, match="SPEC_TEST_URL is not set"):
        interpolate("${SPEC_TEST_URL}")


def test_conflicting_settings_are_load_errors_at_the_line_of_the_conflict(tmp_path):
    # Each of these loaded silently before and then did something else than written: the
    # paginator's default limit=100 replaced params.limit=1000 (ten times the requests), a
    # window on a snapshot was never sent, workers on a cursor ran one page at a time.
    conflicts = """\
      - name: emails
        path: /marketing/v3/emails
        primary_key: id
        params: {limit: 1000}
        pagination: {type: offset, total_path: total}
      - name: issues
        path: /issues
        primary_key: id
        params: {per_page: 50}
        pagination: {type: page_number, page_size: 100, size_param: per_page}
      - name: linked
        path: /linked
        primary_key: id
        params: {limit: 50}
        pagination: {type: link, page_size: 250}
      - name: snapshot
        path: /snapshot
        primary_key: id
        window: {start_param: since, format: iso_z}
      - name: filtered
        path: /filtered
        primary_key: id
        params: {since: "2020-01-01"}
        partitioning: {type: daily, start: "2025-01-01"}
        window: {start_param: since}
      - name: cursor
        path: /cursor
        primary_key: id
        pagination: {type: cursor, cursor_param: after, cursor_path: next}
        workers: 4
      - name: offset_no_total
        path: /offset
        primary_key: id
        pagination: {type: offset, limit: 500}
        workers: 4
      - name: offset_header_total
        path: /offset2
        primary_key: id
        pagination: {type: offset, limit: 500, total_header: X-Total-Count}
        workers: 4
      - name: link_pages
        path: /link
        primary_key: id
        pagination: {type: link, total_header: X-Total-Count}
        workers: 4
"""
    path = write(tmp_path, source_yaml("api", conflicts))
    lines = path.read_text().splitlines()
    with pytest.raises(SpecError) as info:
        load_sources(path)
    problems = info.value.problems
    message = str(info.value)

    def line(text: str, after: str) -> int:
        start = lines.index(after)
        return lines.index(text, start) + 1

    expected = [
        ("emails", line("        pagination: {type: offset, total_path: total}", "      - name: emails"),
         ["`params.limit` (1000)", "`pagination.limit`", "limit=100",
          "the default page size", "limit: 1000"]),
        ("issues", line("        pagination: {type: page_number, page_size: 100, size_param: per_page}",
                        "      - name: issues"),
         ["`params.per_page` (50)", "`pagination.page_size`", "per_page=100"]),
        ("linked", line("        pagination: {type: link, page_size: 250}", "      - name: linked"),
         ["`params.limit` (50)", "`pagination.page_size`", "limit=250"]),
        ("snapshot", line("        window: {start_param: since, format: iso_z}", "      - name: snapshot"),
         ["`window` is set", "`partitioning` is 'none'"]),
        ("filtered", line("        window: {start_param: since}", "      - name: filtered"),
         ["`params.since` conflicts with `window`"]),
        ("cursor", line("        workers: 4", "      - name: cursor"),
         ["`workers: 4`", "'cursor'", "previous page"]),
        ("offset_no_total", line("        workers: 4", "      - name: offset_no_total"),
         ["`workers: 4`", "'offset'", "total_header"]),
    ]
    for endpoint, lineno, parts in expected:
        matching = [p for p in problems if f"endpoint '{endpoint}'" in p]
        assert len(matching) == 1, f"expected one problem for {endpoint}:\n{message}"
        assert matching[0].startswith(f"{path}:{lineno}: source 'api': endpoint '{endpoint}'"), (
            matching[0]
        )
        for part in parts:
            assert part in matching[0], f"{part!r} not in {matching[0]}"
    # Header totals make offset pages plannable, and link pages plan from rel="last".
    assert len(problems) == len(expected), message


def test_window_formats_accept_iso_ms_and_strftime_patterns(tmp_path):
    endpoint = """\
      - name: ms
        path: /ms
        primary_key: id
        partitioning: {type: daily, start: "2025-01-01"}
        window: {start_param: from, end_param: to, format: iso_ms}
      - name: pattern
        path: /pattern
        primary_key: id
        partitioning: {type: daily, start: "2025-01-01"}
        window: {start_param: from, format: "%Y%m%d %H%M"}
      - name: typo
        path: /typo
        primary_key: id
        partitioning: {type: daily, start: "2025-01-01"}
        window: {start_param: from, format: isoms}
"""
    path = write(tmp_path, source_yaml("api", endpoint))
    with pytest.raises(SpecError) as info:
        load_sources(path)
    (problem,) = info.value.problems
    assert "endpoint 'typo': field 'window.format'" in problem
    assert "unknown format 'isoms'" in problem and "iso_ms" in problem and "strftime" in problem


def test_window_guard_settings_and_their_mistakes(tmp_path):
    guarded = GOOD_ENDPOINT.replace(
        'format: unix}', 'format: unix, field: updated, tolerance_seconds: 1, '
        'out_of_window: dead_letter}').replace("charges", "guarded")
    good = write(tmp_path, source_yaml("shop", guarded), "good.yaml")
    [shop] = load_sources(good)
    charges, guarded_ep = shop.endpoints
    # Default: the first of timestamp_fields (none here), policy fail, no tolerance.
    assert charges.window_field is None and charges.window.out_of_window == "fail"
    assert guarded_ep.window_field == "updated" and guarded_ep.window.tolerance_seconds == 1
    bad = GOOD_ENDPOINT.replace(
        'format: unix}', 'format: unix, tolerance_seconds: -1, out_of_window: drop}')
    path = write(tmp_path, source_yaml("shop").replace(GOOD_ENDPOINT, bad), "bad.yaml")
    with pytest.raises(SpecError) as info:
        load_sources(path)
    problems = info.value.problems
    assert len(problems) == 2, problems
    assert any("field 'window.out_of_window'" in p and "'fail', 'dead_letter' or 'keep'" in p
               for p in problems), problems
    assert any("field 'window.tolerance_seconds'" in p and "greater than or equal to 0" in p
               for p in problems), problems
    assert all(p.startswith(f"{path}:11:") for p in problems), problems  # the window line


def test_non_utf8_file_names_the_file_and_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(source_yaml("shop").replace("name: shop", "name: shop\n    description: Caf\xe9").encode("latin-1"))
    with pytest.raises(SpecError, match=rf"{path}:3: not UTF-8 text \(byte 0xe9"):
        load_sources(path)


def test_alias_bomb_is_refused_before_it_expands(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\nsources: *a9\n")  # 10^10 values once expanded
    with pytest.raises(SpecError, match=rf"{path}: the YAML expands to more than 200,000 values"):
        load_sources(path)


def test_alias_bomb_in_a_component_file_is_refused_before_it_expands(tmp_path):
    lines = ["type: ingestion_assets.components.RestApiSource",
             "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    path = tmp_path / "src" / "defs.yaml"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\nattributes: *a9\n")
    with pytest.raises(SpecError, match=rf"{path}: the YAML expands to more than 200,000 values"):
        load_sources(path)


def test_oversized_file_is_refused(tmp_path, monkeypatch):
    import ingestion_assets.specs as specs

    monkeypatch.setattr(specs, "MAX_SOURCE_FILE_BYTES", 1000)
    path = write(tmp_path, source_yaml("shop") + "#" * 2000 + "\n")
    with pytest.raises(SpecError, match=rf"{path}: \d[\d,]* bytes; a source file may have at most 1,000"):
        load_sources(path)


def test_allowed_origins_and_limits_are_validated(tmp_path):
    text = source_yaml("shop").replace(
        "base_url:", "allowed_origins: [https://uploads.example.com/files]\n    limits: {max_body_mb: 0}\n    base_url:"
    )
    with pytest.raises(SpecError) as info:
        load_sources(write(tmp_path, text))
    message = str(info.value)
    assert "allowed_origins" in message and "is not an origin" in message
    assert "limits.max_body_mb" in message


# --------------------------------------------------------------------------- one definition


def _public(obj) -> dict:
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")}


def _client_settings(client) -> tuple:
    return client.retry, tuple(float(t) for t in client.timeout), client.budgets


def test_defaults_agree_across_layers():
    # A source with no options: the spec's, the resource's and the core's defaults are one.
    from ingestion_assets.http import ApiClient
    from ingestion_assets.resources import ApiResource
    from ingestion_assets.specs import Source

    source = Source.model_validate({
        "name": "s", "base_url": "https://api.example.com",
        "endpoints": [{"name": "e", "path": "/e", "primary_key": "id"}],
    })
    from_spec = ApiResource.from_source(source).client()
    from_resource = ApiResource(source="s", base_url="https://api.example.com").client()
    core = ApiClient("https://api.example.com")
    assert _client_settings(from_spec) == _client_settings(from_resource) == _client_settings(core)
    assert core.retry.retry_after_floor == source.retry.retry_after_floor_seconds
    assert core.timeout == (source.timeout.connect, source.timeout.read)


# Each pagination style with only its required fields, and the core class it builds with
# the same arguments: every setting left out must have the same default in both.
PAGINATION_STYLES = [
    ({"type": "single"}, "SinglePage", {}),
    ({"type": "offset"}, "OffsetPaginator", {}),
    ({"type": "page_number"}, "PageNumberPaginator", {}),
    ({"type": "cursor", "cursor_param": "after", "cursor_path": "next"}, "JsonCursor",
     {"cursor_param": "after", "cursor_path": "next"}),
    ({"type": "cursor", "cursor_param": "after", "cursor_field": "id"}, "LastRecordCursor",
     {"cursor_param": "after", "cursor_field": "id"}),
    ({"type": "header_cursor", "header": "X-Next", "cursor_param": "c"}, "HeaderCursor",
     {"header": "X-Next", "cursor_param": "c"}),
    ({"type": "keyset", "sort_field": "u", "sort_param": "u_min", "tiebreak_field": "id",
      "tiebreak_param": "since"}, "KeysetPaginator",
     {"sort_field": "u", "sort_param": "u_min", "tiebreak_field": "id", "tiebreak_param": "since"}),
    ({"type": "link"}, "LinkHeader", {}),
    ({"type": "next_url", "next_url_path": "links.next"}, "JsonLink",
     {"next_url_path": "links.next"}),
]


@pytest.mark.parametrize(
    ("spec", "core", "required"), PAGINATION_STYLES,
    ids=[f"{s['type']}-{c}" for s, c, _ in PAGINATION_STYLES],
)
def test_each_pagination_model_builds_its_core_class_with_the_same_defaults(spec, core, required):
    from pydantic import TypeAdapter

    from ingestion_assets.http import paginators
    from ingestion_assets.specs import Pagination

    built = TypeAdapter(Pagination).validate_python(spec).build("s")
    assert type(built) is getattr(paginators, core)
    assert _public(built) == _public(getattr(paginators, core)(**required).declare_totals())


AUTH_STYLES = [
    ({"type": "bearer", "token": {"env": "STYLE_A"}}, "BearerToken", {"token": "secret-a"}),
    ({"type": "api_key", "name": "X-Key", "key": {"env": "STYLE_A"}}, "ApiKey",
     {"key": "secret-a", "name": "X-Key"}),
    ({"type": "basic", "username": "style-user", "password": {"env": "STYLE_A"}},
     "HttpBasic", {"username": "style-user", "password": "secret-a"}),
    ({"type": "oauth2_client_credentials", "token_url": "/t", "client_id": {"env": "STYLE_A"},
      "client_secret": {"env": "STYLE_B"}}, "OAuth2ClientCredentials",
     {"token_url": "/t", "client_id": "secret-a", "client_secret": "secret-b"}),
    ({"type": "key_rotation", "keys": [{"env": "STYLE_A"}, {"env": "STYLE_B"}]},
     "RotatingApiKeys", {"keys": ["secret-a", "secret-b"]}),
    ({"type": "login", "login_url": "/login",
      "credentials": {"username": {"env": "STYLE_A"}, "password": {"env": "STYLE_B"}}},
     "LoginAuth", {"login_url": "/login",
                   "credentials": {"username": "secret-a", "password": "secret-b"}}),
]


@pytest.mark.parametrize(
    ("spec", "core", "required"), AUTH_STYLES, ids=[s["type"] for s, _, _ in AUTH_STYLES]
)
def test_each_auth_model_builds_its_core_class_with_the_same_defaults(
    spec, core, required, monkeypatch
):
    from pydantic import TypeAdapter

    from ingestion_assets.http import auth
    from ingestion_assets.specs import Auth

    monkeypatch.setenv("STYLE_A", "secret-a")
    monkeypatch.setenv("STYLE_B", "secret-b")
    built = TypeAdapter(Auth).validate_python(spec).build("s")
    assert type(built) is getattr(auth, core)
    ignore = {"_lock", "_by_value"}
    expected = getattr(auth, core)(**required)
    assert {k: v for k, v in vars(built).items() if k not in ignore} == {
        k: v for k, v in vars(expected).items() if k not in ignore
    }


def test_a_missing_secret_names_the_auth_field_and_source(monkeypatch):
    from pydantic import TypeAdapter

    from ingestion_assets.specs import Auth

    monkeypatch.delenv("STYLE_UNSET", raising=False)
    spec = TypeAdapter(Auth).validate_python(
        {"type": "key_rotation", "keys": [{"env": "STYLE_UNSET"}]}
    )
    with pytest.raises(MissingSecretError, match=r"STYLE_UNSET is not set.*auth.keys\[0\] of "
                       "source 's'"):
        spec.build("s")


@pytest.mark.parametrize(
    ("class_path", "options", "message"),
    [
        ("ingestion_assets.http.retry:RetryPolicy", {}, "must be a subclass of"),
        ("no_such_package.mod:Thing", {}, "cannot import module 'no_such_package.mod'"),
        ("ingestion_assets_tests.http.plugins:EveryOtherPage", {"nope": 1},
         "refused its options.*nope"),
    ],
    ids=["not-a-paginator", "no-module", "bad-option"],
)
def test_custom_pagination_problems_are_load_errors_naming_the_field(
    tmp_path, class_path, options, message
):
    import yaml

    text = source_yaml("custompg").replace(
        "pagination: {type: cursor, cursor_param: starting_after, cursor_field: id, "
        "has_more_path: has_more}",
        "pagination: " + yaml.safe_dump(
            {"type": "custom", "class_path": class_path, "options": options},
            default_flow_style=True,
        ).strip(),
    )
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_sources([path])
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}:")
    assert "source 'custompg': endpoint 'charges': field 'pagination'" in problem
    assert class_path in problem
    assert re.search(message, problem), problem


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("format: ndjson\n        workers: 4\n        pagination: {type: offset, total_header: X-Total}",
         "`workers` cannot be used with `format: ndjson`"),
        ("format: csv\n        pagination: {type: cursor, cursor_param: a, cursor_path: next}",
         "`format: csv` works with pagination single, link"),
        ("format: ndjson\n        records_path: data", "`records_path` cannot be used"),
        ("csv: {delimiter: ';'}", "`csv` options are set but `format` is 'json'"),
        ("format: csv\n        csv: {header: false}", "needs `columns`"),
        ("format: tsv", "format"),
        ("accept_unframed_body: true", "`accept_unframed_body` is for streamed bodies"),
    ],
    ids=["workers", "body-cursor", "records-path", "csv-without-format", "no-header",
         "unknown-format", "unframed-json"],
)
def test_body_format_settings_that_cannot_work_are_load_errors(tmp_path, settings, message):
    path = write(tmp_path, source_yaml("fmt", f"""      - name: export
        path: /export
        primary_key: id
        {settings}
"""))
    with pytest.raises(SpecError, match="endpoint 'export'") as info:
        load_sources(path)
    assert message in str(info.value)
CHILD = """\
      - name: refunds
        path: /v1/charges/{charge}/refunds
        primary_key: id
        parent: {endpoint: charges, field: id, as: charge}
"""


def test_a_child_takes_its_parents_partitioning_and_needs_no_window(tmp_path):
    (source,) = load_sources(write(tmp_path, source_yaml("shop", CHILD)))
    charges, refunds = source.endpoints
    assert refunds.partitioning == charges.partitioning and refunds.window is None
    assert refunds.parent.endpoint == "charges" and refunds.parent.as_ == "charge"
    # the Python API: the same model, the same inheritance
    again = Source.model_validate(source.model_dump(by_alias=True, exclude={"endpoints": {
        1: {"partitioning"}}}))
    assert again.endpoints[1].partitioning == charges.partitioning


@pytest.mark.parametrize(("child", "field", "message"), [
    (CHILD.replace("endpoint: charges", "endpoint: charge"), "parent.endpoint",
     "unknown parent endpoint 'charge' (this source's endpoints: charges, refunds)"),
    (CHILD.replace("endpoint: charges", "endpoint: refunds"), "parent.endpoint",
     "the parent chain loops: refunds -> refunds"),
    (CHILD + "        partitioning: {type: weekly, start: '2025-01-06'}\n"
     "        window: {start_param: a}\n", "partitioning",
     "its partitioning (weekly) differs from its parent 'charges''s (daily)"),
    (CHILD + "        params: {charge: x}\n", "parent.as",
     "parent.as 'charge' is not a {placeholder} of the path, so it is sent as a query "
     "parameter, which `params.charge` also sets"),
    (CHILD + "        automation: {incremental: {updated_since_param: since, updated_field: u, "
     "partition_field: c}}\n", "automation.incremental", "cannot be polled for changes"),
], ids=["unknown", "self", "partitioning", "as-conflict", "incremental"])
def test_parent_mistakes_name_file_line_source_endpoint_and_field(tmp_path, child, field, message):
    path = write(tmp_path, source_yaml("shop", child.replace("{charge}", "{charge}" if
                                                             "params" not in child else "")))
    with pytest.raises(SpecError) as info:
        load_sources(path)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}:") and "source 'shop'" in problem, problem
    assert "refunds" in problem and field in problem and message in problem, problem
    line = int(problem.split(":")[1])
    assert path.read_text().splitlines()[line - 1].strip().startswith(
        ("- name: refunds", "parent:", "partitioning:", "automation:")), problem


def _endpoint(name: str, path: str, setting: str) -> str:
    return f"      - name: {name}\n        path: {path}\n        primary_key: id\n        {setting}\n"


def test_a_parent_cycle_and_a_dynamic_or_masked_parent_are_load_errors(tmp_path):
    cycle = source_yaml("shop", _endpoint("a", "/a/{x}", "parent: {endpoint: b, field: id, as: x}")
                        + _endpoint("b", "/b/{x}", "parent: {endpoint: a, field: id, as: x}"))
    with pytest.raises(SpecError, match=r"endpoint 'a': the parent chain loops: a -> b -> a"):
        load_sources(write(tmp_path, cycle))
    dynamic = source_yaml("shop", _endpoint(
        "repos", "/repos/{repo}", "partitioning: {type: dynamic, path_placeholder: repo}")
        + _endpoint("issues", "/issues/{n}", "parent: {endpoint: repos, field: number, as: n}"))
    with pytest.raises(SpecError, match=r"parent 'repos' is dynamically partitioned"):
        load_sources(write(tmp_path, dynamic))
    masked = source_yaml("shop", CHILD).replace(
        "        window:", "        mask_columns: [id]\n        window:", 1)
    with pytest.raises(SpecError, match=r"field 'id' is masked in 'charges''s table"):
        load_sources(write(tmp_path, masked))


def test_headers_and_user_agent_are_checked_when_loading(tmp_path):
    good = source_yaml("shop").replace("    endpoints:", """\
    user_agent: shop-sync/1.0 (+mailto:data@shop.example)
    headers: {X-Api-Version: 3, X-Tenant-Key: "{{ env.SHOP_TENANT }}"}
    endpoints:""").replace("        window:", "        headers: {x-api-version: '4'}\n        window:")
    (source,) = load_sources(write(tmp_path, good))
    assert source.user_agent == "shop-sync/1.0 (+mailto:data@shop.example)"
    assert source.headers == {"X-Api-Version": "3", "X-Tenant-Key": EnvSecret(env="SHOP_TENANT")}
    assert source.endpoints[0].headers == {"x-api-version": "4"}
    for bad, message in [
        ("headers: {Authorization: Bearer abc123}", "header 'Authorization' carries a credential"),
        ("headers: {X-Shop-Token: abc}", "value must come from the environment"),
        ('headers: {"Bad Name": x}', "'Bad Name' is not a valid HTTP header name"),
        ('headers: {X-A: "one\\r\\nX-Injected: two"}', "contains a line break"),
        ('user_agent: "a\\nb"', "user_agent"),
    ]:
        text = source_yaml("shop").replace("    endpoints:", f"    {bad}\n    endpoints:")
        with pytest.raises(SpecError) as info:
            load_sources(write(tmp_path, text))
        (problem,) = info.value.problems
        assert message in problem and problem.startswith(f"{tmp_path}/sources.yaml:4:"), problem


def test_an_unknown_parent_is_named_rather_than_its_consequences(tmp_path):
    # Without its parent the child has no partitioning, so its schedule would need a cron:
    # the message names the cause.
    child = CHILD.replace("endpoint: charges", "endpoint: charge") + (
        "        automation: {schedule: {delay_minutes: 40}}\n")
    path = write(tmp_path, source_yaml("shop", child))
    with pytest.raises(SpecError) as info:
        load_sources(path)
    (problem,) = info.value.problems
    line = path.read_text().splitlines().index(
        "        parent: {endpoint: charge, field: id, as: charge}") + 1
    assert problem == (f"{path}:{line}: source 'shop': endpoint 'refunds': field "
                       "'parent.endpoint': unknown parent endpoint 'charge' (this source's "
                       "endpoints: charges, refunds)")


def _one_source(tmp_path, auth_yaml: str, pagination: str = "{type: single}"):
    path = tmp_path / "s.yaml"
    path.write_text(
        "sources:\n  - name: s\n    base_url: http://127.0.0.1:1\n"
        f"    auth: {auth_yaml}\n"
        f"    endpoints:\n      - {{name: e, path: /e, primary_key: id, pagination: {pagination}}}\n"
    )
    return load_sources([path])[0]


def test_login_auth_from_yaml_reads_every_credential_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LOGIN_USER", "login-user-ada")
    monkeypatch.setenv("LOGIN_PASSWORD", "login-pw-SECRET-55")
    source = _one_source(
        tmp_path, '{type: login, login_url: /auth/login, token_path: data.token, '
        'header: X-Auth, scheme: "", body_format: form, extra_fields: {grant: password}, '
        'credentials: {username: "{{ env.LOGIN_USER }}", password: {env: LOGIN_PASSWORD}}}')
    built = source.auth.build("s")
    assert built._credentials == {"username": "login-user-ada", "password": "login-pw-SECRET-55"}
    assert (built.header, built.scheme, built.body_format) == ("X-Auth", "", "form")
    assert built.extra_fields == {"grant": "password"}
    assert "login-pw-SECRET-55" not in repr(built) and "login-pw-SECRET-55" not in str(
        source.auth.model_dump())


def test_a_literal_login_password_is_refused_naming_the_field(tmp_path):
    with pytest.raises(SpecError, match=r"auth.credentials.password must come from the "
                       "environment") as caught:
        _one_source(tmp_path, "{type: login, login_url: /l, credentials: {password: hunter2}}")
    assert "hunter2" not in str(caught.value)


def test_a_missing_login_secret_names_the_variable_and_field(monkeypatch):
    from pydantic import TypeAdapter

    from ingestion_assets.specs import Auth

    monkeypatch.delenv("LOGIN_UNSET", raising=False)
    spec = TypeAdapter(Auth).validate_python(
        {"type": "login", "login_url": "/l", "credentials": {"password": {"env": "LOGIN_UNSET"}}})
    with pytest.raises(MissingSecretError, match=r"LOGIN_UNSET is not set.*"
                       r"auth.credentials.password of source 's'"):
        spec.build("s")


def test_oauth2_settings_scope_audience_extra_params_and_basic(tmp_path, monkeypatch):
    monkeypatch.setenv("OA_ID", "oauth-client-id-SECRET-1")
    monkeypatch.setenv("OA_SECRET", "oauth-client-SECRET-1")
    source = _one_source(
        tmp_path, "{type: oauth2_client_credentials, token_url: /t, client_id: {env: OA_ID}, "
        "client_secret: {env: OA_SECRET}, scopes: [read, write], audience: https://api, "
        "extra_params: {resource: r1}, client_auth: basic}")
    built = source.auth.build("s")
    assert (built.scope, built.audience, built.client_auth) == ("read write", "https://api",
                                                                 "basic")
    assert built.extra_params == {"resource": "r1"}
    with pytest.raises(SpecError, match="client_auth"):
        _one_source(tmp_path, "{type: oauth2_client_credentials, token_url: /t, "
                    "client_id: {env: A}, client_secret: {env: B}, client_auth: header}")


def test_next_url_pagination_from_yaml(tmp_path):
    source = _one_source(tmp_path, "{type: none}",
                         "{type: next_url, next_url_path: links.next, total_path: total}")
    built = source.endpoints[0].pagination.build("s")
    assert (built.next_url_path, built.total_path) == ("links.next", "total")
    assert "next URL" in source.endpoints[0].pagination.why_sequential()
    with pytest.raises(SpecError, match="next_url_path.*required field is missing"):
        _one_source(tmp_path, "{type: none}", "{type: next_url}")
