"""Fixtures for the deployment tests: a PostgreSQL-backed Dagster instance from deploy/."""

from __future__ import annotations

import shutil

import dagster as dg
import pytest

from ingestion_assets.demo_api import demo_env
from ingestion_assets_tests.deploy.services import DEPLOY, fresh_pg_database, pg_env


@pytest.fixture(scope="session")
def pg_database():
    """One fresh PostgreSQL database for this test run, dropped at the end."""
    with fresh_pg_database() as name:
        yield name


@pytest.fixture
def pg_home(pg_database, tmp_path, monkeypatch):
    """A DAGSTER_HOME holding the production ``deploy/dagster.yaml``, pointed at the test
    database through the environment (as on a server)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    for name, value in pg_env(pg_database).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def pg_instance(pg_home):
    with dg.DagsterInstance.from_config(str(pg_home)) as instance:
        yield instance


@pytest.fixture
def demo_credentials(demo_api, monkeypatch):
    """The demo API's credentials and URL in the environment, as the README exports them."""
    env = {**demo_env(), "DEMO_API_URL": demo_api.url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
