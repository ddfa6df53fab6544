"""Fixtures for the deployment tests: a PostgreSQL-backed Dagster instance from deploy/."""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
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
def s3_app():
    """moto's S3 application, serving S3 only, that can record the requests it answers."""
    try:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    except ImportError as exc:
        unavailable("moto (S3-compatible test server)", f"cannot import it: {exc}")

    class S3Only(DomainDispatcherApplication):
        """moto's dispatcher for S3 alone. moto's own works out the service of every
        request, listing its package folder each time: a quarter of the server's CPU in the
        stress tests."""

        def __init__(self):
            super().__init__(create_backend_app)
            self.seen: list[tuple[str, str]] | None = None

        def get_application(self, environ):
            with self.lock:
                if "s3" not in self.app_instances:
                    self.app_instances["s3"] = self.create_app("s3")
                return self.app_instances["s3"]

        def __call__(self, environ, start_response):
            if self.seen is not None:
                self.seen.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
            return super().__call__(environ, start_response)

        @contextlib.contextmanager
        def recording(self):
            """The (method, path) of every request answered inside the block."""
            self.seen = []
            try:
                yield self.seen
            finally:
                self.seen = None

    return S3Only()


@pytest.fixture(scope="session")
def s3_server(s3_app):
    """moto's S3-compatible server on a free loopback port (the same for the whole run)."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    try:
        server = make_server("127.0.0.1", 0, s3_app, threaded=True,
                             request_handler=MotoRequestHandler)
    except Exception as exc:  # noqa: BLE001 - any start failure means "no S3 server here"
        unavailable("moto (S3-compatible test server)", f"it did not start: {exc}")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    thread = threading.Thread(target=server.serve_forever, name="moto-s3", daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        thread.join(10)


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
