"""``type: custom``: a user's paginator and auth classes, named in a source YAML.

The classes below are what a user writes in their own package: they subclass the HTTP
core's ``Paginator`` / ``ApiAuth`` and take their own options. The source file names them
by import path; the run materializes through Dagster against the demo API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests

from ingestion_assets.http.auth import ApiAuth
from ingestion_assets.http.paginators import PageRequest, Paginator
from ingestion_assets.http.redaction import register_secret
from ingestion_assets.specs import SpecError, load_sources
from ingestion_assets_tests.materialize import run
from ingestion_assets_tests.test_factory import read

HERE = "ingestion_assets_tests.test_custom_styles"
JAN2 = 1735776000  # 2025-01-02T00:00:00Z


class AfterLastId(Paginator):
    """Stripe's style, as a user would write it: while ``has_more``, continue after the
    last record's id."""

    def __init__(self, param: str = "starting_after", id_field: str = "id") -> None:
        super().__init__()
        self.param = param
        self.id_field = id_field
        self.after: Any = None
        self.pages = 0

    def reset(self) -> None:
        self.after = None

    def update_state(self, response: requests.Response, body: Any, records: list) -> None:
        self.has_next = bool(records) and body.get("has_more") is True
        if records:
            self.after = records[-1][self.id_field]

    def update_request(self, request: PageRequest) -> None:
        request.params[self.param] = self.after


class SchemeToken(ApiAuth):
    """A token in the Authorization header behind a configurable scheme."""

    def __init__(self, token: str, scheme: str = "Bearer") -> None:
        register_secret(token)
        self._token = token
        self.scheme = scheme

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"{self.scheme} {self._token}"
        return request


def custom_source(tmp_path: Path, paginator: str = f"{HERE}:AfterLastId") -> Path:
    path = tmp_path / "custom.yaml"
    path.write_text(f"""\
sources:
  - name: payments
    base_url: ${{DEMO_API_URL}}/payments
    auth:
      type: custom
      class_path: {HERE}:SchemeToken
      options: {{token: "{{{{ env.CUSTOM_STYLE_TOKEN }}}}", scheme: Bearer}}
    endpoints:
      - name: charges
        path: /v1/charges
        records_path: data
        primary_key: id
        params: {{limit: 7}}
        pagination:
          type: custom
          class_path: {paginator}
          options: {{param: starting_after}}
        partitioning: {{type: daily, start: "2025-01-01"}}
        window: {{start_param: "created[gte]", end_param: "created[lt]", format: unix}}
""")
    return path


@pytest.fixture
def payments_env(demo_api, monkeypatch):
    monkeypatch.setenv("DEMO_API_URL", demo_api.url)
    monkeypatch.setenv("CUSTOM_STYLE_TOKEN", demo_api.credentials("payments")["api_key"])
    return monkeypatch


def test_custom_paginator_and_auth_materialize_the_apis_records(demo_api, payments_env, tmp_path):
    (source,) = load_sources([custom_source(tmp_path)])
    day = "2025-01-02"

    result = run(source, tmp_path / "data", dg.DagsterInstance.ephemeral(), day)

    assert result.success
    table = read(tmp_path / "data", "payments", "charges", f"date={day}")
    truth = demo_api.records("payments", "charges", "2025-01-02T00:00:00Z", "2025-01-03T00:00:00Z")
    assert len(truth) > 7, "the day must span several pages of 7"
    assert sorted(table.column("id").to_pylist()) == sorted(r["id"] for r in truth)
    secret = demo_api.credentials("payments")["api_key"]
    assert all(secret not in repr(event) for event in result.all_events)


def test_the_custom_auths_credential_is_what_the_server_checks(demo_api, payments_env, tmp_path):
    # The same source with a wrong token: the server refuses it, so the rows above came
    # through the custom auth's header.
    payments_env.setenv("CUSTOM_STYLE_TOKEN", "not-the-payments-key")
    (source,) = load_sources([custom_source(tmp_path)])

    result = run(source, tmp_path / "data", dg.DagsterInstance.ephemeral(), "2025-01-02")

    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "401" in str(failure.step_failure_data.error)
    assert "not-the-payments-key" not in str(failure.step_failure_data.error)


def test_a_bad_class_path_is_a_load_error_naming_file_source_endpoint_and_field(
    payments_env, tmp_path
):
    path = custom_source(tmp_path, paginator=f"{HERE}:NoSuchPaginator")
    with pytest.raises(SpecError) as info:
        load_sources([path])
    (problem,) = info.value.problems
    assert str(path) in problem
    assert "payments" in problem and "charges" in problem
    assert "pagination" in problem and "NoSuchPaginator" in problem


def test_the_documented_example_paginator_fetches_every_record(demo_api, monkeypatch):
    # The class shown in docs/configuration.md, named by import path as the docs say.
    import re
    import types

    from ingestion_assets.http import ApiClient
    from ingestion_assets.http.auth import BearerToken
    from ingestion_assets.specs import CustomPagination

    docs = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    section = docs.split("### Your own pagination or auth: `type: custom`")[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    module = types.ModuleType("docs_example_pagination")
    exec(compile(code, "docs/configuration.md", "exec"), module.__dict__)
    monkeypatch.setitem(__import__("sys").modules, "docs_example_pagination", module)

    paginator = CustomPagination(
        type="custom", class_path="docs_example_pagination:AfterLastId",
        options={"param": "starting_after"},
    ).build("payments")
    key = demo_api.credentials("payments")["api_key"]
    with ApiClient(f"{demo_api.url}/payments", auth=BearerToken(key)) as client:
        stream = client.fetch_pages(
            "/v1/charges", paginator=paginator, records_path="data",
            params={"limit": 5, "created[gte]": JAN2, "created[lt]": JAN2 + 86400},
        )
        ids = [r["id"] for r in stream.iter_records()]
    truth = demo_api.records("payments", "charges", JAN2, JAN2 + 86400)
    assert len(truth) > 5 and sorted(ids) == sorted(r["id"] for r in truth)
