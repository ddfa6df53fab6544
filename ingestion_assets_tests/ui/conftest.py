"""One running project (demo API + ``dagster dev``) for the package's files, and a browser
page per test.

``test_browser.py``, ``test_graphql.py`` and ``test_webhooks.py`` ask the same project: one
xdist group (``UI_PROJECT``), so they run in one worker one after the other and the project
starts once (a start is about 12 CPU-s and 15 s: the webserver, the daemon, the code
server). Each test works on its own endpoint and partitions, none adjacent to another
test's, and counts what it adds from what was there before it, so the tests pass in any
order.
"""

from __future__ import annotations

import pytest

from ingestion_assets_tests.e2e.harness import running_project
from ingestion_assets_tests.ui.support import chromium_browser, new_page


@pytest.fixture(scope="package")
def project(tmp_path_factory):
    # Steps run inside the run's own process (docs/production.md: the executor is
    # chosen by the environment): the subject here is the UI, and a process start per step
    # would cost more than the small partitions these tests fetch.
    env = {"INGESTION_EXECUTOR": "in_process"}
    with running_project(tmp_path_factory.mktemp("ui_project"), env) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as running:
        yield running


@pytest.fixture
def page(browser, project):
    """A fresh browser context on the project's UI (the browser first: no chromium, no dagster)."""
    page = new_page(browser, project.ui_url)
    yield page
    page.context.close()
