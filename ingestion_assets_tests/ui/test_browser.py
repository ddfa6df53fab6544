"""The Dagster UI as our users use it, in headless chromium against a running ``dagster dev``.

Each test is one step a user takes; it asserts what the page shows (names, edges, counts,
statuses), checks the numbers against the demo API's ground truth, and saves a screenshot
to ``artifacts/ui/``. The steps share one project (demo API + ``dagster dev`` with its
daemon) with the other files of ui/; each step works on its own endpoint or partitions so the
steps do not depend on one another's order.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from ingestion_assets_tests.ui.support import (
    AUTOMATIONS,
    LOCATION,
    UI_PROJECT,
    add_fault,
    checks_by_asset,
    clear_faults,
    day,
    demo_automations,
    demo_endpoints,
    demo_sources,
    demo_webhook_asset_keys,
    ground_truth_count,
    ground_truth_fields,
    materialized,
    screenshot,
    visit,
)

#: Runs and backfills wait on the daemon and the run queue; on a busy machine that is slow.
#: The project is shared with the other files of ui/ (ui/conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.xdist_group(UI_PROJECT)]

#: Long enough for a run or a backfill of a few small partitions on a slow CI machine.
RUN_TIMEOUT_MS = 420_000


def group_url(source: str, view: str) -> str:
    return f"/locations/{LOCATION}/asset-groups/{source}/{view}"


def asset_row(page, key: str):
    """The catalog table's row of one asset (found by its selection checkbox)."""
    return page.locator("[class*='VirtualizedTable_row']").filter(
        has=page.locator(f"[data-testid='checkbox-{key}']")
    )


def group_link(row):
    """The link in a catalog row's "Asset group" column."""
    return row.locator("a[href*='group%3A']")


def select_assets(page, keys: list[str]) -> None:
    for key in keys:
        # The checkbox input is drawn over by its label, as a user sees it.
        page.locator(f"label:has([data-testid='checkbox-{key}'])").click()


def wait_for_statuses(page) -> None:
    """The catalog's status column fills in after the names (for the screenshot's sake)."""
    expect(page.get_by_text(re.compile(r"^\d+ partitions$")).first).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Loading"))).to_have_count(0)


def shown_asset_keys(page) -> set[str]:
    hrefs = page.locator("a[href^='/assets/']").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    return {h.removeprefix("/assets/").split("?")[0] for h in hrefs}


# --- 1. the catalog ---------------------------------------------------------------------------


def test_catalog_shows_every_endpoint_raw_and_table_in_its_source_group(page):
    endpoints = demo_endpoints()
    # The catalog: every asset, with its group. Tall enough that the virtualised table
    # renders every row.
    page.set_viewport_size({"width": 1600, "height": 400 + 64 * 2 * len(endpoints)})
    visit(page, "/assets")
    expect(asset_row(page, endpoints[0].table_key)).to_be_visible()
    for endpoint in endpoints:
        for key in (endpoint.raw_key, endpoint.table_key):
            expect(group_link(asset_row(page, key))).to_have_text(endpoint.source)
    wait_for_statuses(page)
    screenshot(page, "01_catalog")
    page.set_viewport_size({"width": 1600, "height": 1200})

    for source in demo_sources():
        visit(page, group_url(source, "list"))
        mine = [e for e in endpoints if e.source == source]
        expect(asset_row(page, mine[0].raw_key)).to_be_visible()
        for endpoint in mine:
            for key in (endpoint.raw_key, endpoint.table_key):
                row = asset_row(page, key)
                expect(row).to_have_count(1)
                expect(row.get_by_role("link", name=key.replace("/", " / "))).to_be_visible()
                # the row's group column names the source's group
                expect(group_link(row)).to_have_text(source)
            # the raw asset carries the "api" kind; the table is described as typed rows
            expect(asset_row(page, endpoint.raw_key)).to_contain_text("api")
        shown = shown_asset_keys(page)
        expected = {k for e in mine for k in (e.raw_key, e.table_key)}
        assert expected <= shown, f"group {source} lacks {sorted(expected - shown)}"
        strangers = {k for k in shown if source not in k.split("/")[:2]}
        assert not strangers, f"group {source} shows other sources' assets: {sorted(strangers)}"
        wait_for_statuses(page)
        screenshot(page, f"01_catalog_group_{source}")


# --- 2. lineage -------------------------------------------------------------------------------

#: Every asset node of the lineage graph (its box, name, and the kinds shown under it) and
#: every edge (its first and last point), read from the SVG the graph is drawn in.
READ_GRAPH = """() => {
  const nodes = Array.from(document.querySelectorAll('foreignObject')).filter(
    f => f.querySelector('[class*="AssetNode_assetName"]')).map(f => ({
      x: +f.getAttribute('x'), y: +f.getAttribute('y'),
      w: +f.getAttribute('width'), h: +f.getAttribute('height'),
      name: f.querySelector('[class*="AssetNode_assetName"]').textContent.trim(),
      text: f.textContent}));
  const edges = Array.from(document.querySelectorAll('path[stroke*="lineage-edge"]')).map(p => {
      const nums = p.getAttribute('d').match(/-?[0-9.]+/g).map(Number);
      return {x1: nums[0], y1: nums[1], x2: nums[nums.length - 2], y2: nums[nums.length - 1]};
  });
  return {nodes, edges};
}"""


def _nearest(nodes: list[dict], x: float, y: float) -> dict:
    def distance(n: dict) -> float:
        dx = max(n["x"] - x, 0, x - (n["x"] + n["w"]))
        dy = max(n["y"] - y, 0, y - (n["y"] + n["h"]))
        return dx * dx + dy * dy

    return min(nodes, key=distance)


def _kind(node: dict) -> str:
    text = node["text"]
    if text.endswith("api") or text.endswith("webhook"):  # pulled pages / pushed events
        return "raw"
    if text.lower().endswith("parquet"):
        return "table"
    return "?"


def test_lineage_shows_raw_to_table_edges(page):
    endpoints = demo_endpoints()
    for source in demo_sources():
        mine = [e for e in endpoints if e.source == source]
        # endpoints declaring `webhook:` also have raw -> table events assets in the group
        pushed = sorted({k.rsplit("/", 1)[1] for k in demo_webhook_asset_keys()
                         if k.split("/")[-2] == source})
        visit(page, group_url(source, "lineage"))
        expect(page.locator("foreignObject [class*='AssetNode_assetName']")).to_have_count(
            2 * (len(mine) + len(pushed))
        )
        expect(page.locator("path[stroke*='lineage-edge']").first).to_be_attached()
        # statuses, partitions and checks fill in after the graph is drawn
        expect(page.locator("foreignObject").get_by_text(re.compile(r"^Loading"))).to_have_count(0)
        graph = page.evaluate(READ_GRAPH)
        shown = {(n["name"], _kind(n)) for n in graph["nodes"]}
        names = [e.endpoint for e in mine] + pushed
        assert shown == {(name, k) for name in names for k in ("raw", "table")}, shown
        edges = {
            ((a := _nearest(graph["nodes"], e["x1"], e["y1"]))["name"], _kind(a),
             (b := _nearest(graph["nodes"], e["x2"], e["y2"]))["name"], _kind(b))
            for e in graph["edges"]
        }
        for name in names:
            assert (name, "raw", name, "table") in edges, (
                f"no raw -> table edge for {source}/{name}: {sorted(edges)}"
            )
        for e in mine:  # a child endpoint: its parent's table -> its raw asset
            if e.parent:
                assert (e.parent, "table", e.endpoint, "raw") in edges, (
                    f"no parent -> child edge for {source}/{e.endpoint}: {sorted(edges)}"
                )
        # the checks attached to each table show on its node ("0 / 3 Passed"); raw: none
        checks = checks_by_asset()
        for node in graph["nodes"]:
            key = (f"raw/{source}/" if _kind(node) == "raw" else f"{source}/") + node["name"]
            expected = len(checks.get(key, ()))
            if expected:
                assert re.search(rf"Asset checks\s*\d+ / {expected}\b", node["text"]), node
            else:
                assert re.search(r"Asset checks\s*–", node["text"]), node
        screenshot(page, f"02_lineage_{source}")


# --- 3. one partition from the launch dialog ----------------------------------------------------


def launch_from_dialog(page, source: str, keys: list[str], partitions: str):
    """Select assets in their group, open the launch dialog and type the partitions."""
    visit(page, group_url(source, "list"))
    expect(asset_row(page, keys[0])).to_be_visible()
    select_assets(page, keys)
    page.get_by_role("button", name=re.compile(r"Materialize selected")).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Launch runs to materialize {len(keys)} assets")
    box = dialog.get_by_placeholder("No matching partitions")
    box.fill(partitions)
    box.press("Enter")
    return dialog


def wait_for_status(page, pattern: str, timeout: int = RUN_TIMEOUT_MS) -> str:
    status = page.get_by_text(re.compile(pattern)).first
    expect(status).to_be_visible(timeout=timeout)
    return status.inner_text().strip()


def materialize_from_the_catalog(page, key: str, partitions: str):
    """What the README says: Catalog -> the table asset -> Materialize -> partitions.

    The table's step also writes its raw asset, so the UI first says which other asset
    comes along; confirming opens the launch dialog on the last 90 days.
    """
    visit(page, "/")
    page.locator("a[href='/assets']").filter(has_text=re.compile(r"^Catalog$")).click()
    page.locator(f"a[href='/assets/{key}']").filter(has_text=key.replace("/", " / ")).first.click()
    expect(page).to_have_url(re.compile(rf"/assets/{key}(\?|$)"))
    page.locator("button", has_text=re.compile(r"^Materialize")).first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Additional assets will be materialized")
    expect(dialog).to_contain_text(f"raw / {key.replace('/', ' / ')}")
    screenshot(page, f"03_{key.replace('/', '_')}_additional_assets")
    dialog.get_by_role("button", name="Confirm").click()
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
    expect(dialog).to_contain_text("Launch runs to materialize 2 assets")
    expect(dialog).to_contain_text("Showing the last 90 days")  # the default range
    box = dialog.get_by_placeholder("No matching partitions")
    box.fill(partitions)
    box.press("Enter")
    return dialog


def test_materialize_one_partition_of_the_table_from_the_catalog(page, project):
    key = day(3)
    dialog = materialize_from_the_catalog(page, "payments/charges", key)
    expect(dialog).to_contain_text("1 partition")
    screenshot(page, "03a_launch_dialog_one_partition")
    dialog.get_by_role("button", name="Launch 1 run").click()

    view = page.locator("a[href^='/runs/']").filter(has_text="View").first
    expect(view).to_be_visible()
    run_url = view.get_attribute("href")
    run_id = run_url.rsplit("/", 1)[1]
    visit(page, run_url)
    expect(page.get_by_text(f"partition: {key}").first).to_be_visible()
    status = wait_for_status(page, r"^(Success|Failure|Canceled)$")
    screenshot(page, "03b_run_page")
    assert status == "Success", f"run {run_url} ended {status}; see artifacts/ui/03b_run_page.png"

    # The partition's materialization: the row count, against the demo API's ground truth.
    rows = ground_truth_count(project, "payments", "charges", key)
    assert rows > 0
    visit(page, f"/assets/payments/charges?view=partitions&partition={key}")
    count_row = page.locator("tr").filter(has_text="dagster/row_count")
    expect(count_row.locator("td").nth(1)).to_have_text(str(rows))
    # ... written by the run we launched
    expect(page.get_by_role("link", name=run_id[:8])).to_be_visible()
    screenshot(page, "03c_partition_row_count")

    # The raw asset shows a materialization of the same partition, by the same run.
    visit(page, f"/assets/raw/payments/charges?view=partitions&partition={key}")
    records_row = page.locator("tr").filter(has_text="dagster/row_count")
    expect(records_row.locator("td").nth(1)).to_have_text(str(rows))
    expect(page.get_by_role("link", name=run_id[:8])).to_be_visible()
    screenshot(page, "03c_raw_partition")

    # The column schema of that materialization.
    visit(page, f"/assets/payments/charges?view=partitions&partition={key}")
    page.get_by_text("[Show Table Schema]").click()
    schema = page.get_by_role("dialog")
    expect(schema).to_contain_text("dagster/column_schema")
    cells = schema.locator("tbody tr").evaluate_all(
        "rows => rows.map(r => [r.cells[0].innerText.trim(), r.cells[1].innerText.trim()])"
    )
    # a cell's first line is the name or type; constraints (non-nullable) follow under it
    columns = {name.splitlines()[0]: kind.splitlines()[0] for name, kind in cells}
    fields = ground_truth_fields(project, "payments", "charges", key)
    assert fields <= set(columns), f"columns missing: {sorted(fields - set(columns))}"
    assert {"_partition", "_run_id"} <= set(columns)
    assert columns["created"].startswith("timestamp") and "UTC" in columns["created"]
    assert columns["amount"] == "int64", columns
    screenshot(page, "03d_column_schema")
    page.keyboard.press("Escape")

    # The asset page's overview shows the same row count and columns.
    visit(page, "/assets/payments/charges")
    row_count = page.get_by_text("Row count", exact=True).locator("xpath=following-sibling::*[1]")
    expect(row_count).to_have_text(f"{rows:,}")  # as the UI formats numbers
    expect(page.get_by_text(key, exact=True).first).to_be_visible()  # latest: our partition
    for name in ("id", "amount", "created", "_run_id"):
        expect(page.get_by_role("cell", name=name, exact=True).first).to_be_visible()
    screenshot(page, "03e_asset_overview", full_page=True)


# --- 4. a backfill of a range ------------------------------------------------------------------


def test_backfill_three_partitions_of_the_table_from_the_catalog(page, project):
    first, last = day(10), day(8)
    partitions = [day(10), day(9), day(8)]
    keys = ["raw/payments/refunds", "payments/refunds"]
    # the partitions tab counts every materialized partition, test_graphql.py's too
    before = {key: materialized(project, key)[0] for key in keys}
    dialog = materialize_from_the_catalog(page, "payments/refunds", f"[{first}...{last}]")
    expect(dialog).to_contain_text("3 partitions")
    screenshot(page, "04a_launch_dialog_range")
    dialog.get_by_role("button", name="Launch backfill").click()

    view = page.locator("a[href^='/runs/b/']").filter(has_text="View").first
    expect(view).to_be_visible()
    backfill_url = view.get_attribute("href")
    visit(page, backfill_url)
    expect(page.get_by_text(f"{first}...{last}").first).to_be_visible()
    # The overview's "Status" tag turns from "In progress" once the daemon finishes it.
    status = page.get_by_text("Status", exact=True).locator("xpath=following-sibling::*[1]")
    expect(status).to_have_text(re.compile(r"^(?!In progress$|Canceling$|Failing$)\S.*$"),
                                timeout=RUN_TIMEOUT_MS)
    screenshot(page, "04b_backfill_page")
    ended = status.inner_text().strip()
    assert ended == "Succeeded", f"backfill {backfill_url} ended {ended}"
    for key in keys:
        row = page.locator("[class*='VirtualizedTable_row']").filter(
            has=page.locator(f"a[href='/assets/{key}']"))
        expect(row).to_contain_text("100% completed")
        # partitions targeted, in progress, succeeded, failed
        assert row.inner_text().split()[-4:] == ["3", "0", "3", "0"], row.inner_text()

    # Both assets' partitions: all three materialized, each with the ground-truth count.
    for key in keys:
        visit(page, f"/assets/{key}?view=partitions")
        expect(page.get_by_text(f"Materialized ({before[key] + 3})")).to_be_visible()
        screenshot(page, f"04c_partitions_materialized_{key.split('/')[0]}")
        for partition in partitions:
            visit(page, f"/assets/{key}?view=partitions&partition={partition}")
            rows = ground_truth_count(project, "payments", "refunds", partition)
            count_row = page.locator("tr").filter(has_text="dagster/row_count")
            expect(count_row.locator("td").nth(1)).to_have_text(str(rows))
    screenshot(page, "04d_partition_row_count")


# --- 5. the automation page --------------------------------------------------------------------


def automation_row(page, name: str):
    return page.locator("[class*='VirtualizedTable_row']").filter(
        has=page.locator(f"a[href$='/schedules/{name}'], a[href$='/sensors/{name}']")
    )


def automation_toggle(page, name: str):
    return automation_row(page, name).locator("label[class*='formatSwitch'] input")


def test_automation_page_lists_schedules_and_sensors_with_their_status(page, project):
    automations = demo_automations()
    assert automations, "the demo YAML defines schedules and sensors"
    page.set_viewport_size({"width": 1600, "height": 400 + 60 * len(automations)})
    visit(page, "/automation")
    for name, (kind, running) in automations.items():
        row = automation_row(page, name)
        expect(row).to_have_count(1)
        expect(row.locator(f"a[href$='/{kind}s/{name}']")).to_be_visible()
        if kind == "schedule":
            expect(row).to_contain_text("Scheduled")  # the cron, in words
        toggle = automation_toggle(page, name)
        if running:
            expect(toggle).to_be_checked()
        else:
            expect(toggle).not_to_be_checked()
    screenshot(page, "05a_automation")

    # Switching one off in the UI stops it (the instance keeps the user's choice).
    name = next(n for n, (kind, running) in automations.items() if kind == "schedule" and running)
    automation_toggle(page, name).locator("xpath=..").click()
    expect(automation_toggle(page, name)).not_to_be_checked()
    assert schedule_status(project, name, until="STOPPED") == "STOPPED"
    screenshot(page, "05b_automation_one_stopped")
    automation_toggle(page, name).locator("xpath=..").click()
    expect(automation_toggle(page, name)).to_be_checked()
    assert schedule_status(project, name, until="RUNNING") == "RUNNING"
    screenshot(page, "05c_automation_restarted")


def schedule_status(project, name: str, until: str, timeout: float = 30) -> str:
    """The schedule's status in the instance, once the toggle's mutation has landed."""
    deadline = time.monotonic() + timeout
    while True:
        (repo,) = project.graphql(AUTOMATIONS)["repositoriesOrError"]["nodes"]
        (schedule,) = [s for s in repo["schedules"] if s["name"] == name]
        status = schedule["scheduleState"]["status"]
        if status == until or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


# --- 6. a failing check after a schema change -----------------------------------------------------


def test_schema_change_at_the_api_shows_a_failing_check(page, project):
    """The API stops sending a field: the next partition's schema_drift check fails, visibly."""
    assets = [["raw", "payments", "customers"], ["payments", "customers"]]
    before, after = day(6), day(5)
    run = project.wait_for_run(project.launch(assets, before), timeout=RUN_TIMEOUT_MS / 1000)
    assert run["status"] == "SUCCESS", run

    add_fault(project, {"kind": "schema_change", "source": "payments", "path": "/v1/customers",
                        "since": after, "change": "remove", "field": "email"})
    try:
        keys = ["raw/payments/customers", "payments/customers"]
        dialog = launch_from_dialog(page, "payments", keys, after)
        expect(dialog).to_contain_text("1 partition")
        dialog.get_by_role("button", name="Launch 1 run").click()
        view = page.locator("a[href^='/runs/']").filter(has_text="View").first
        expect(view).to_be_visible()
        visit(page, view.get_attribute("href"))
        status = wait_for_status(page, r"^(Success|Failure|Canceled)$")
        # schema_drift is not blocking for customers: the run is green, the check is red
        assert status == "Success", status
        screenshot(page, "06a_run_after_schema_change")
    finally:
        clear_faults(project)

    visit(page, "/assets/payments/customers?view=checks")
    check = page.get_by_text("schema_drift", exact=True).first
    entry = check.locator("xpath=ancestor::*[contains(., 'Failed') or contains(., 'Succeeded')][1]")
    expect(entry).to_contain_text("Failed")
    check.click()
    expect(page).to_have_url(re.compile(r"checkDetail=schema_drift"))
    expect(page.get_by_text(re.compile(r"^removed: email"))).to_be_visible()
    expect(page.get_by_text("Evaluation result")).to_be_visible()
    differences = page.locator("tr").filter(has_text="email").filter(has_text="removed")
    expect(differences.first).to_be_visible()
    expect(page.get_by_text(after, exact=True).first).to_be_visible()  # the partition checked
    screenshot(page, "06b_failing_schema_drift_check")

    # the other checks of that partition passed
    for name in ("row_count", "contract"):
        entry = page.get_by_text(name, exact=True).first.locator(
            "xpath=ancestor::*[contains(., 'Succeeded') or contains(., 'Failed')][1]")
        expect(entry).to_contain_text("Succeeded")
