"""What the UI tests share: the browser, the demo's endpoints, ground truth, GraphQL queries.

The browser is Debian's chromium driven by Playwright (Playwright's own browser download is
never used). Without it the browser tests skip with the reason, except in CI (``CI=true``),
where a missing browser is a failure: ``.ci/run`` installs it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from ingestion_assets.demo_api import CONTROL_HEADERS
from ingestion_assets.partitions import partition_request, partitions_def
from ingestion_assets.specs import load_sources
from ingestion_assets_tests.e2e.harness import METADATA_ENTRIES, REPO_ROOT, Project
from ingestion_assets_tests.needs import unavailable

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--headless=new",
]
ARTIFACTS = REPO_ROOT / "artifacts" / "ui"
#: The xdist group of the files of ui/: one worker runs them, and they share one project
#: (``conftest.project``).
UI_PROJECT = "ui_project"
#: The code location's name in workspace.yaml, part of every group URL.
LOCATION = "ingestion_assets"


def require(available: bool, what: str, why: str) -> None:
    """Skip locally, fail in CI, when something a test needs is missing."""
    if not available:
        unavailable(what, why)


@contextlib.contextmanager
def chromium_browser() -> Iterator[Any]:
    """Headless Debian chromium through Playwright; skips (fails in CI) when absent."""
    require(Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK), "chromium",
            f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - playwright is in the dev extras
        require(False, "playwright", str(exc))
    from playwright.sync_api import expect

    # Pages fill in over several GraphQL round trips; a slow CI machine needs more than
    # Playwright's 5 s default to show what a user would wait for.
    expect.set_options(timeout=30_000)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


#: Client-side navigation: the URL changes as a click on one of the UI's links changes it, and
#: the UI's router (which follows the browser history) draws the new page.
_ROUTE = """path => {
  window.history.pushState({}, '', path);
  window.dispatchEvent(new PopStateEvent('popstate', {state: {}}));
}"""


def visit(page: Any, path: str) -> None:
    """Open ``path`` (e.g. ``/assets/x?view=partitions``) as a user moving through the UI.

    The first page of a test loads the UI; later ones are routed inside the loaded UI, as a
    click on a link is, instead of reloading the whole application. Each reload parsed and
    started the UI's JavaScript anew: about 40 of the 147 CPU-s chromium spent on
    ``test_browser.py`` (docs/testing.md). The page then shows what a user reaching it by
    a link sees, fetched from the webserver as on a reload.
    """
    if not page.url.startswith("http"):  # about:blank: the test's first page
        page.goto(path)
        return
    page.evaluate(_ROUTE, path)
    page.wait_for_url(lambda url: url.endswith(path))


def new_page(browser: Any, ui_url: str) -> Any:
    """A page in a fresh context, as a first-time user on a large screen."""
    context = browser.new_context(viewport={"width": 1600, "height": 1200}, base_url=ui_url)
    # The community sign-up dialog opens over every page for a first-time user on
    # localhost; dismiss it the way its "Skip" button does.
    context.add_init_script("window.localStorage.setItem('communityNux', '\"1\"')")
    context.set_default_timeout(30_000)
    return context.new_page()


def screenshot(page: Any, name: str, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


# --- the demo sources, as the YAML declares them --------------------------------------------


@dataclass(frozen=True)
class DemoEndpoint:
    source: str
    endpoint: str
    partitioning: str
    parent: str | None = None  # a child endpoint's parent endpoint

    @property
    def raw_key(self) -> str:
        return f"raw/{self.source}/{self.endpoint}"

    @property
    def table_key(self) -> str:
        return f"{self.source}/{self.endpoint}"


def demo_endpoints() -> list[DemoEndpoint]:
    return [
        DemoEndpoint(s.name, e.name, e.partitioning.type, e.parent and e.parent.endpoint)
        for s in load_sources()
        for e in s.endpoints
    ]


def demo_webhook_asset_keys() -> set[str]:
    """The events assets (raw and table) of the endpoints declaring ``webhook:``."""
    return {
        k for s in load_sources() for e in s.endpoints if e.webhook is not None
        for k in (f"raw/{s.name}/{e.name}_events", f"{s.name}/{e.name}_events")
    }


def demo_sources() -> list[str]:
    return sorted({e.source for e in demo_endpoints()})


def demo_automations() -> dict[str, tuple[str, bool]]:
    """Every schedule and sensor of the code location: name -> (kind, running by default)."""
    from ingestion_assets.automation import build_schedules, build_sensors
    from ingestion_assets.webhooks.assets import build_webhook_sensors

    sources = load_sources()
    found = {s.name: ("schedule", s.default_status.value == "RUNNING")
             for s in build_schedules(sources)}
    found.update({s.name: ("sensor", s.default_status.value == "RUNNING")
                  for s in [*build_sensors(sources), *build_webhook_sensors(sources)]})
    return found


def checks_by_asset() -> dict[str, set[str]]:
    """The asset checks the code location defines, by asset key ("payments/charges")."""
    from ingestion_assets.checks import build_checks

    found: dict[str, set[str]] = {}
    for checks in build_checks(load_sources()):
        for spec in checks.check_specs:
            found.setdefault(spec.asset_key.to_user_string(), set()).add(spec.name)
    return found


def day(days_ago: int) -> str:
    """A daily partition key relative to today (UTC); the harness's demo API has a live clock."""
    return (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=days_ago)).isoformat()


def ground_truth_records(project: Project, source: str, endpoint: str, key: str) -> list[dict]:
    """The records the demo API holds for one time partition, over its control API."""
    (src,) = [s for s in load_sources() if s.name == source]
    (ep,) = [e for e in src.endpoints if e.name == endpoint]
    window = partition_request(ep, partitions_def(src, ep), key).window
    assert window is not None, f"{source}/{endpoint} is not time-partitioned"
    resp = requests.post(
        f"{project.api_url}/_control/records",
        json={"source": source, "endpoint": endpoint, "start": window[0].isoformat(),
              "end": window[1].isoformat()},
        headers=CONTROL_HEADERS, timeout=60,
    )
    resp.raise_for_status()
    return resp.json()["records"]


def ground_truth_count(project: Project, source: str, endpoint: str, key: str) -> int:
    return len(ground_truth_records(project, source, endpoint, key))


def ground_truth_fields(project: Project, source: str, endpoint: str, key: str) -> set[str]:
    """The top-level fields of the records the demo API serves for one partition."""
    fields: set[str] = set()
    for record in ground_truth_records(project, source, endpoint, key):
        fields |= set(record)
    return fields


def add_fault(project: Project, fault: dict[str, Any]) -> None:
    resp = requests.post(
        f"{project.api_url}/_control/faults", json=fault, headers=CONTROL_HEADERS, timeout=30
    )
    assert resp.status_code == 201, resp.text


def clear_faults(project: Project) -> None:
    requests.delete(
        f"{project.api_url}/_control/faults", headers=CONTROL_HEADERS, timeout=30
    ).raise_for_status()


# --- GraphQL: what the UI's pages query -------------------------------------------------------


def launch_backfill(project: Project, asset_paths: list[list[str]], partitions: list[str]) -> str:
    """Launch a backfill as the launch dialog's "Launch backfill" button does."""
    params = {
        "assetSelection": [{"path": p} for p in asset_paths],
        "partitionNames": partitions,
    }
    result = project.graphql(LAUNCH_BACKFILL, {"backfillParams": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise AssertionError(f"backfill launch failed: {result}")
    return result["backfillId"]


def wait_for_backfill(project: Project, backfill_id: str, timeout: float = 300) -> dict[str, Any]:
    """Poll until the daemon has finished the backfill; returns the backfill as GraphQL has it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        backfill = project.graphql(BACKFILL, {"backfillId": backfill_id})["partitionBackfillOrError"]
        if backfill["status"] not in ("REQUESTED", "CANCELING", "FAILING"):
            return backfill
        time.sleep(2)
    raise TimeoutError(f"backfill {backfill_id} did not finish within {timeout:.0f} s")


def asset_checks(project: Project, path: list[str]) -> list[dict[str, Any]]:
    node = project.graphql(ASSET_CHECKS, {"path": path})["assetNodeOrError"]
    return node["assetChecksOrError"].get("checks", [])


LAUNCH_BACKFILL = """
mutation($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionKeysNotFoundError { message }
    ... on InvalidSubsetError { message }
  }
}
"""

BACKFILL = """
query($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill {
      id
      status
      partitionNames
      runs { runId status tags { key value } }
      assetBackfillData {
        assetBackfillStatuses {
          ... on AssetPartitionsStatusCounts {
            assetKey { path }
            numPartitionsTargeted
            numPartitionsInProgress
            numPartitionsMaterialized
            numPartitionsFailed
          }
        }
      }
    }
  }
}
"""

PARTITION_STATUS = """
query($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode {
      partitionStats { numMaterialized numPartitions numFailed numMaterializing }
      assetPartitionStatuses {
        __typename
        ... on TimePartitionStatuses { ranges { startKey endKey status } }
        ... on DefaultPartitionStatuses { materializedPartitions failedPartitions }
      }
    }
  }
}
"""

def materialized(project: Project, key: str) -> tuple[int, set[tuple[str, str]]]:
    """What the partitions tab of the time-partitioned asset ``key`` counts as materialized:
    the count, and the ranges (first, last)."""
    status = project.graphql(PARTITION_STATUS, {"path": key.split("/")})["assetNodeOrError"]
    ranges = {(r["startKey"], r["endKey"])
              for r in status["assetPartitionStatuses"]["ranges"]
              if r["status"] == "MATERIALIZED"}
    return status["partitionStats"]["numMaterialized"], ranges


ASSET_CHECKS = """
query($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode {
      assetChecksOrError {
        __typename
        ... on AssetChecks {
          checks {
            name
            description
            blocking
            executionForLatestMaterialization {
              status
              partition
              runId
              evaluation {
                success
                severity
                description
                partition
                metadataEntries { ...MetadataEntries }
              }
            }
          }
        }
      }
    }
  }
}
""" + METADATA_ENTRIES

AUTOMATIONS = """
query {
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes {
        name
        location { name }
        schedules {
          name
          cronSchedule
          executionTimezone
          defaultStatus
          scheduleState { status }
          assetSelection { assetKeys { path } }
        }
        sensors {
          name
          sensorType
          minIntervalSeconds
          defaultStatus
          sensorState { status }
          assetSelection { assetKeys { path } }
        }
      }
    }
  }
}
"""
