"""Servers the deployment tests need: found on loopback, else skipped locally, failed in CI.

CI (``CI=true``) provides PostgreSQL and Redis (``.ci/run`` starts them if they are stopped),
so a missing server there is a broken CI machine and must not turn into a silent skip. On a
developer's machine without them the tests skip and say what to start.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

from ingestion_assets_tests.needs import unavailable

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"

PG_HOST = os.environ.get("INGESTION_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("INGESTION_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("INGESTION_TEST_PG_USER", "postgres")
REDIS_HOST = os.environ.get("INGESTION_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("INGESTION_TEST_REDIS_PORT", "6379"))
# The AWS secret the S3 (moto) tests put in the environment: must never show up in objects.
MOTO_SECRET_KEY = "moto-secret-" + uuid.uuid4().hex




def require_port(what: str, host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=3):
            return
    except OSError as exc:
        unavailable(f"{what} at {host}:{port}", f"cannot connect: {exc}")


def pg_connect(dbname: str = "postgres"):
    import psycopg2

    return psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname,
                            connect_timeout=5)


@contextlib.contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new, empty PostgreSQL database (trust auth), dropped afterwards."""
    require_port("PostgreSQL", PG_HOST, PG_PORT)
    try:
        admin = pg_connect()
    except Exception as exc:  # noqa: BLE001 - any connection problem means "not usable here"
        unavailable(f"PostgreSQL at {PG_HOST}:{PG_PORT} as {PG_USER}", f"login failed: {exc}")
    admin.autocommit = True
    name = f"ingestion_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            # FORCE ends the connections Dagster's pools (and workers) may still hold.
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def pg_env(db_name: str) -> dict[str, str]:
    """The environment ``deploy/dagster.yaml`` reads its PostgreSQL settings from."""
    return {
        "DAGSTER_PG_HOST": PG_HOST,
        "DAGSTER_PG_PORT": str(PG_PORT),
        "DAGSTER_PG_DB": db_name,
        "DAGSTER_PG_USERNAME": PG_USER,
        "DAGSTER_PG_PASSWORD": "",  # trust auth on the CI machine
    }


def redis_url() -> str:
    """A Redis URL on loopback, on a database number of its own for this test run."""
    require_port("Redis", REDIS_HOST, REDIS_PORT)
    import redis

    try:
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        unavailable(f"Redis at {REDIS_HOST}:{REDIS_PORT}", f"PING failed: {exc}")
    db = 1 + uuid.uuid4().int % 15  # 1..15: leave db 0 to whoever else uses this server
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
