"""One running project (demo API + ``dagster dev``) per test module, and a browser page per test."""

from __future__ import annotations

import pytest

from ingestion_assets_tests.e2e.harness import running_project
from ingestion_assets_tests.ui.support import chromium_browser, new_page


@pytest.fixture(scope="module")
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
