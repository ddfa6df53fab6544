"""Source and endpoint headers and the User-Agent, as the API receives them.

The demo help desk refuses a request without a User-Agent naming its client, and serves
ticket comments only with ``X-Helpdesk-Version: 2``: the bundled YAML sets both. A loopback
server records what arrives, to show which header reaches which request; a header whose
value comes from the environment is a secret: it reaches only the API's origin (never the
token endpoint of an OAuth server elsewhere) and never the event log or stored files.
"""

from __future__ import annotations

import http.client
import logging
from urllib.parse import urlsplit

import dagster as dg
import pytest
import requests

from ingestion_assets.definitions import build_definitions
from ingestion_assets.demo_api import credentials
from ingestion_assets.factory import build_assets
from ingestion_assets.http.errors import AuthenticationError, ClientError
from ingestion_assets.http.headers import default_user_agent
from ingestion_assets.partitions import PartitionRequest, partition_request, partitions_def
from ingestion_assets.resources import ApiResource
from ingestion_assets.specs import MissingSecretError, Source
from ingestion_assets_tests.hostile import HostileServer, Reply
from ingestion_assets_tests.test_safe_metadata import _hits

APP_KEY_SECRET = "tenant-key-SECRET-0a9b8c7d"  # a header secret whose name says nothing
DAY = "2025-02-10"


def endpoint(source: Source, name: str):
    return next(e for e in source.endpoints if e.name == name)


def test_the_helpdesk_refuses_a_request_without_a_user_agent_saying_why(demo_api):
    base = urlsplit(demo_api.base_url("helpdesk"))
    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=5)
    conn.putrequest("GET", base.path + "/api/v2/tickets", skip_accept_encoding=True)
    conn.putheader("Authorization", f"Bearer {credentials.HELPDESK_TOKEN}")
    conn.endheaders()  # http.client sends no User-Agent of its own
    refused = conn.getresponse()
    body = refused.read().decode()
    conn.close()
    assert refused.status == 403 and "must send a User-Agent header naming the client" in body
    # A library's generic agent is no better.
    generic = requests.get(demo_api.base_url("helpdesk") + "/api/v2/tickets", timeout=5)
    assert generic.status_code == 403 and "python-requests" in generic.json()["description"]


def test_with_the_yaml_every_request_names_the_client_and_comments_get_their_version(
    demo_api, demo_sources
):
    helpdesk = demo_sources["helpdesk"]
    tickets, comments = endpoint(helpdesk, "tickets"), endpoint(helpdesk, "comments")
    resource = ApiResource.from_source(helpdesk)
    pdef = partitions_def(helpdesk, tickets)
    pages = list(resource.fetch_pages(tickets, partition_request(tickets, pdef, DAY)))
    got = [t["id"] for p in pages for t in p.records]
    assert got == [t["id"] for t in demo_api.records("helpdesk", "tickets", f"{DAY}T00:00:00Z",
                                                      "2025-02-11T00:00:00Z")]
    first = PartitionRequest(key=DAY, path=f"/api/v2/tickets/{got[0]}/comments")
    (page,) = resource.fetch_pages(comments, first)
    assert page.records == demo_api.records("helpdesk", "comments", ticket=got[0])
    assert page.headers.get("X-Helpdesk-Served-Version") is None  # not a selected header
    # The endpoint's header is the endpoint's: the tickets endpoint without it cannot read
    # comments (version 1), which is what the version header is for.
    with pytest.raises(ClientError, match="served by API version 2 only"):
        list(resource.fetch_pages(tickets.model_copy(update={"path": first.path}), first))


def test_the_default_user_agent_names_the_project_and_is_accepted(demo_api, demo_sources):
    agent = default_user_agent()
    assert agent.startswith("ingestion_assets/0.") and " python-requests/" in agent
    helpdesk = demo_sources["helpdesk"].model_copy(update={"user_agent": None})
    tickets = endpoint(helpdesk, "tickets")
    request = partition_request(tickets, partitions_def(helpdesk, tickets), DAY)
    assert list(ApiResource.from_source(helpdesk).fetch_pages(tickets, request))
    # Without the app key header (an env value) the API refuses: the header is really sent.
    bare = helpdesk.model_copy(update={"headers": {}})
    with pytest.raises(AuthenticationError, match="app key"):
        list(ApiResource.from_source(bare).fetch_pages(tickets, request))


def test_the_spark_reader_sends_the_sources_headers_and_user_agent(demo_api, demo_sources):
    from ingestion_assets.spark.plan import (
        SparkReadError,
        fetch,
        open_client,
        parse_options,
        partition_requests,
    )

    window = {"source": "helpdesk", "start": DAY, "end": "2025-02-11"}
    opts = parse_options({**window, "endpoint": "tickets"})
    (part,) = partition_requests(opts)
    client = open_client(opts.source)  # what a Spark task builds from the same settings
    try:
        got = [t["id"] for page in fetch(client, opts, part) for t in page.records]
    finally:
        client.close()
    # The help desk answers only a named client with the app key header (403 otherwise).
    assert got and got == [t["id"] for t in demo_api.records(
        "helpdesk", "tickets", f"{DAY}T00:00:00Z", "2025-02-11T00:00:00Z")]
    with pytest.raises(SparkReadError, match="'comments' of source 'helpdesk' is a child"):
        parse_options({**window, "endpoint": "comments"})


def _recorder(seen) -> Reply:
    return Reply.json([{"id": 1}])


def _source(url: str, refused: bool = False, **changes) -> Source:
    refusing = [{"name": "refused", "path": "/refused", "primary_key": "id"}] if refused else []
    return Source.model_validate({
        "name": "hdrs", "base_url": url, "retry": {"op_retries": 0, "max_attempts": 1},
        "user_agent": "hdrs-sync/2.0 (+mailto:ops@example.com)",
        "headers": {"X-Shared": "source", "X-Tenant": {"env": "HDRS_TENANT"}},
        "endpoints": [
            {"name": "plain", "path": "/plain", "primary_key": "id"},
            {"name": "own", "path": "/own", "primary_key": "id",
             "headers": {"x-shared": "endpoint", "User-Agent": "own-agent/1", "X-Only": 1}},
            *refusing,
        ],
        **changes,
    })


def test_endpoint_headers_override_the_sources_and_reach_only_that_endpoint(monkeypatch):
    monkeypatch.setenv("HDRS_TENANT", APP_KEY_SECRET)
    with HostileServer({"/plain": _recorder, "/own": _recorder}) as server:
        source = _source(server.url)
        resource = ApiResource.from_source(source)
        for ep in source.endpoints:
            list(resource.fetch_pages(ep, PartitionRequest(key=None, path=ep.path)))
        plain, own = ({k.lower(): v for k, v in s.headers.items()} for s in server.seen)
    assert plain["user-agent"] == "hdrs-sync/2.0 (+mailto:ops@example.com)"
    assert plain["x-shared"] == "source" and "x-only" not in plain
    assert own["x-shared"] == "endpoint" and own["x-only"] == "1"
    assert own["user-agent"] == "own-agent/1"
    assert plain["x-tenant"] == own["x-tenant"] == APP_KEY_SECRET
    # The resource's configuration (shown in the UI) names the variable, not the value.
    assert resource.headers["X-Tenant"] == {"env": "HDRS_TENANT"}
    assert APP_KEY_SECRET not in repr(resource) and APP_KEY_SECRET not in str(
        resource.model_dump())


def test_a_missing_header_variable_fails_the_fetch_naming_it(monkeypatch):
    monkeypatch.delenv("HDRS_TENANT", raising=False)
    with HostileServer({"/plain": _recorder}) as server:
        source = _source(server.url)
        with pytest.raises(MissingSecretError, match="HDRS_TENANT is not set; it holds the "
                           "header X-Tenant of source 'hdrs'"):
            ApiResource.from_source(source).fetch_pages(
                source.endpoints[0], PartitionRequest(key=None, path="/plain"))
        monkeypatch.setenv("HDRS_TENANT", "one\r\nX-Injected: two")
        with pytest.raises(MissingSecretError, match="HDRS_TENANT .* holds a line break"):
            ApiResource.from_source(source).fetch_pages(
                source.endpoints[0], PartitionRequest(key=None, path="/plain"))
        assert server.seen == []


def test_a_secret_header_never_reaches_a_token_endpoint_on_another_origin(monkeypatch):
    """OAuth tokens come from another server: it gets the User-Agent, never the secret."""
    monkeypatch.setenv("HDRS_TENANT", APP_KEY_SECRET)
    monkeypatch.setenv("HDRS_CLIENT_ID", "client-1")
    monkeypatch.setenv("HDRS_CLIENT_SECRET", "client-secret-SECRET-77")
    token = Reply.json({"access_token": "tok-SECRET-123456", "expires_in": 3600})
    with HostileServer({"/token": lambda seen: token}) as auth_server, HostileServer(
        {"/plain": _recorder}
    ) as api:
        # The token server is another origin the source allows (the auth would stop there
        # otherwise): allowed for the auth, still never sent the secret header.
        source = _source(api.url, allowed_origins=[auth_server.url], auth={
            "type": "oauth2_client_credentials", "token_url": auth_server.url + "/token",
            "client_id": {"env": "HDRS_CLIENT_ID"}, "client_secret": {"env": "HDRS_CLIENT_SECRET"}})
        list(ApiResource.from_source(source).fetch_pages(
            source.endpoints[0], PartitionRequest(key=None, path="/plain")))
        (token_request,) = auth_server.seen
        (api_request,) = api.seen
    assert token_request.headers["User-Agent"] == "hdrs-sync/2.0 (+mailto:ops@example.com)"
    assert APP_KEY_SECRET not in token_request.dump()
    assert api_request.headers["X-Tenant"] == APP_KEY_SECRET


def _echo(seen) -> Reply:
    """Records quoting the request's headers, the tenant key first (as audit logs do)."""
    return Reply.json([{"id": 1, "note": f"{seen.headers.get('X-Tenant')} called",
                        "headers": dict(seen.headers)}])


def _refuse(seen) -> Reply:
    return Reply.json({"error": f"tenant {seen.headers.get('X-Tenant')} is suspended"}, 400)


def test_an_env_header_stays_out_of_the_event_log_logs_and_stored_files(
    tmp_path, monkeypatch, capfd, caplog
):
    monkeypatch.setenv("HDRS_TENANT", APP_KEY_SECRET)
    caplog.set_level(logging.DEBUG)
    home, data = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    with HostileServer({"/plain": _echo, "/own": _echo, "/refused": _refuse}) as server:
        sources = [_source(server.url, refused=True)]
        defs = build_definitions(sources, str(data))
        with dg.DagsterInstance.local_temp(str(home)) as instance:
            result = dg.materialize(build_assets(sources), resources=defs.resources,
                                    instance=instance, raise_on_error=False)
            (failure,) = [e for e in result.all_events if e.is_step_failure]
            assert "is suspended" in failure.step_failure_data.error.message  # the body shown
            previews = [e.materialization.metadata["preview"].md_str
                        for e in result.get_asset_materialization_events()
                        if "preview" in e.materialization.metadata]
        assert len(server.seen) == 3 and APP_KEY_SECRET in server.everything_seen()
    out, err = capfd.readouterr()
    leaks = _hits(home, [APP_KEY_SECRET])
    leaks += [where for where, text in (("stdout", out), ("stderr", err), ("logs", caplog.text))
              if APP_KEY_SECRET in text]
    stored = [p for p in data.rglob("*") if p.is_file()]
    assert any(p.name == "manifest.json" for p in stored)
    leaks += [f"{p}" for p in stored if p.name != "bodies.zst" and p.suffix != ".parquet"
              and APP_KEY_SECRET.encode() in p.read_bytes()]  # raw bodies, tables: as sent
    assert not leaks, "\n".join(leaks)
    assert len(previews) == 2 and not any(APP_KEY_SECRET in p for p in previews)
