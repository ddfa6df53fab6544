"""Fixtures for the deployment tests: a PostgreSQL-backed Dagster instance from deploy/."""

from __future__ import annotations

import shutil
import uuid

import boto3
import dagster as dg
import pytest

from ingestion_assets.demo_api import demo_env
from ingestion_assets_tests.deploy.services import (
    DEPLOY,
    MOTO_SECRET_KEY,
    fresh_pg_database,
    pg_env,
)
from ingestion_assets_tests.needs import unavailable


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


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3-compatible server on a free loopback port (the same for the whole run)."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        unavailable("moto (S3-compatible test server)", f"cannot import it: {exc}")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001 - any start failure means "no S3 server here"
        unavailable("moto (S3-compatible test server)", f"it did not start: {exc}")
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_server, monkeypatch):
    """A new bucket; AWS credentials and endpoint only in the environment."""
    import s3fs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "moto-access-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", MOTO_SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    s3fs.S3FileSystem.clear_instance_cache()  # no client built for another endpoint
    name = f"ingestion-{uuid.uuid4().hex[:10]}"
    boto3.client("s3").create_bucket(Bucket=name)
    yield name
    s3fs.S3FileSystem.clear_instance_cache()
