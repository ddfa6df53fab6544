"""Secrets an API echoes back never reach the event log, logs, stdout or the manifests.

A loopback server answers every request with records holding the request's headers and
query (as debugging endpoints and audit logs do). Two sources ingest it through Dagster,
one with a bearer token, one with an API key in the query. Afterwards every file of the
Dagster instance (SQLite event log, run storage, compute logs), everything printed or
logged, and every file of the data folder except the raw bodies and Parquet files are
searched for the secrets: none may appear. The Parquet keeps what the API sent, except the
columns an endpoint lists in ``mask_columns``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote, quote_plus

import dagster as dg
import pyarrow.dataset as ds

from ingestion_assets.checks import build_checks
from ingestion_assets.definitions import build_definitions
from ingestion_assets.factory import build_assets
from ingestion_assets.specs import Source
from ingestion_assets_tests.hostile import HostileServer, Reply

BEARER = "echo-bearer-SECRET-a1b2c3d4e5"
QUERY_KEY = "echo-query-SECRET-f6g7h8i9"
LOGIN_PASSWORD = "echo-login-password-SECRET-j1k2"
LOGIN_TOKEN = "echo-session-token-SECRET-l3m4n5"  # issued by the server, never in the config


def _login(seen) -> Reply:
    import orjson

    if orjson.loads(seen.body).get("password") != LOGIN_PASSWORD:
        return Reply.json({"error": "bad password"}, 401)
    return Reply.json({"data": {"token": LOGIN_TOKEN, "expires_in": 600}})


def _echo(seen) -> Reply:
    headers = dict(seen.headers)
    query = {k: v[0] for k, v in seen.query.items()}
    records = [
        {
            "id": i,
            "requested": seen.target,  # an innocent name, a secret value (the query key)
            "Authorization": headers.get("Authorization"),
            "api_key": query.get("api_key"),
            "headers": headers,
            "query": query,
            "note": f"called with {' '.join(headers.values())} {' '.join(query.values())}",
        }
        for i in range(3)
    ]
    return Reply.json(records)


def _sources(url: str) -> list[Source]:
    endpoints = [
        {"name": "echo", "path": "/echo", "primary_key": "id"},
        {"name": "echo_masked", "path": "/echo", "primary_key": "id",
         "mask_columns": ["Authorization", "headers.Authorization", "note", "requested",
                          "api_key", "query.api_key"]},
    ]
    return [
        Source.model_validate({
            "name": "echo_bearer", "base_url": url, "retry": {"op_retries": 0},
            "auth": {"type": "bearer", "token": {"env": "ECHO_BEARER"}}, "endpoints": endpoints,
        }),
        Source.model_validate({
            "name": "echo_query", "base_url": url, "retry": {"op_retries": 0},
            "auth": {"type": "api_key", "location": "query", "name": "api_key",
                     "key": {"env": "ECHO_QUERY_KEY"}},
            "endpoints": endpoints,
        }),
        Source.model_validate({
            "name": "echo_login", "base_url": url, "retry": {"op_retries": 0},
            "auth": {"type": "login", "login_url": "/login", "token_path": "data.token",
                     "extra_fields": {"user": "echo"},
                     "credentials": {"password": {"env": "ECHO_LOGIN_PASSWORD"}}},
            "endpoints": endpoints,
        }),
    ]


def _forms(secret: str) -> list[bytes]:
    return [f.encode() for f in {secret, quote(secret, safe=""), quote_plus(secret)}]


def _hits(path: Path, secrets: list[str]) -> list[str]:
    found = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        data = file.read_bytes()
        found += [f"{file}: {s}" for s in secrets if any(f in data for f in _forms(s))]
    return found


def test_echoed_secrets_stay_out_of_metadata_logs_and_manifests(
    tmp_path, monkeypatch, capfd, caplog
):
    monkeypatch.setenv("ECHO_BEARER", BEARER)
    monkeypatch.setenv("ECHO_QUERY_KEY", QUERY_KEY)
    monkeypatch.setenv("ECHO_LOGIN_PASSWORD", LOGIN_PASSWORD)
    caplog.set_level(logging.DEBUG)  # every log line the project and urllib3 emit
    home, data = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    with HostileServer({"/echo": _echo, "/login": _login}) as server:
        sources = _sources(server.url)
        defs = build_definitions(sources, str(data))
        with dg.DagsterInstance.local_temp(str(home)) as instance:
            result = dg.materialize(
                [*build_assets(sources), *build_checks(sources)],
                resources=defs.resources, instance=instance,
            )
            assert result.success
            previews = [
                e.materialization.metadata["preview"].md_str
                for e in result.get_asset_materialization_events()
                if "preview" in e.materialization.metadata
            ]
        assert len(server.seen) == 7  # every source and endpoint really asked the API (+ login)
    seen = server.everything_seen()
    assert all(s in seen for s in (BEARER, QUERY_KEY, LOGIN_PASSWORD, LOGIN_TOKEN))

    secrets = [BEARER, QUERY_KEY, LOGIN_PASSWORD, LOGIN_TOKEN]
    out, err = capfd.readouterr()
    leaks = _hits(home, secrets)
    leaks += [f"{f}: {s}" for f, text in (("stdout", out), ("stderr", err), ("logs", caplog.text))
              for s in secrets if s in text]
    stored = [p for p in data.rglob("*") if p.is_file()]
    assert any(p.name == "manifest.json" for p in stored)
    for file in stored:
        if file.name == "bodies.zst" or file.suffix == ".parquet":
            continue  # raw bodies and tables keep what the API sent
        leaks += [f"{file}: {s}" for s in secrets if any(f in file.read_bytes() for f in _forms(s))]
    assert not leaks, "\n".join(leaks)
    # The previews exist and show the echoed records, masked.
    assert len(previews) == 6 and all("***" in p for p in previews)

    # The tables keep what the API sent, except the endpoint's mask_columns.
    def table(source: str, endpoint: str) -> list[dict]:
        return ds.dataset(data / source / endpoint, format="parquet").to_table().to_pylist()

    assert table("echo_bearer", "echo")[0]["Authorization"] == f"Bearer {BEARER}"
    assert QUERY_KEY in table("echo_query", "echo")[0]["requested"]
    assert table("echo_login", "echo")[0]["Authorization"] == f"Bearer {LOGIN_TOKEN}"
    for source in ("echo_bearer", "echo_query", "echo_login"):
        for row in table(source, "echo_masked"):
            assert row["headers"].get("Authorization") in ("***", None)
            assert row["note"] == row["requested"] == "***"
            assert not [s for s in secrets if s in str(row)]


def test_loading_the_definitions_registers_the_sources_secrets(monkeypatch):
    """A step process that never calls the API (multiprocess executor) still masks them."""
    from ingestion_assets.http.redaction import redact_text
    from ingestion_assets.resources import ApiResource

    secret = "only-in-the-environment-SECRET-9911"
    monkeypatch.setenv("ECHO_BEARER", secret)
    monkeypatch.setenv("ECHO_QUERY_KEY", "unused-" + secret)
    assert secret in redact_text(f"value {secret}")  # nothing registered it yet
    for source in _sources("http://127.0.0.1:9"):
        ApiResource.from_source(source)
    assert secret not in redact_text(f"value {secret}")
