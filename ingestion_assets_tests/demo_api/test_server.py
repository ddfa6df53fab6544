"""The server as a whole: listing, control endpoints, mutations, records mode, the CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from ingestion_assets.demo_api import CONTROL_HEADERS, ENV_VARS, DemoApi, DemoConfig, credentials

from .helpers import payments_session, ts, walk_stripe

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_root_lists_every_source_and_endpoint(demo_api):
    body = requests.get(demo_api.url + "/").json()
    sources = {s["name"]: s for s in body["sources"]}
    assert set(sources) == {"payments", "commerce", "crm", "devhub", "exports", "helpdesk"}
    assert {s["auth"]["model"] for s in sources.values()} >= {
        "api_key_bearer", "api_key_header", "oauth2_client_credentials",
    }
    for s in sources.values():
        assert s["base_path"].startswith("/") and s["rate_limit"] and s["endpoints"]
        for ep in s["endpoints"]:
            assert {"name", "path", "pagination", "max_page_size"} <= set(ep)
    assert sources["commerce"]["base_path"] == "/commerce/admin/api/2024-01"


def test_unknown_source_is_404_with_the_list(demo_api):
    r = requests.get(demo_api.url + "/nowhere/v1/things")
    assert r.status_code == 404 and "/payments" in r.json()["sources"]


def test_only_loopback_is_bound(demo_api):
    assert demo_api.url.startswith("http://127.0.0.1:")
    for other in ("", "192.0.2.10", "localhost"):  # all interfaces, another address, a name
        with pytest.raises(ValueError):
            DemoConfig(host=other)


def test_reset_clears_faults_mutations_and_buckets(demo_api):
    demo_api.add_fault(kind="server_error", count=-1)
    demo_api.mutate("payments", "charges", insert=2)
    assert requests.post(demo_api.url + "/_control/reset", headers=CONTROL_HEADERS).json() == {"reset": True}
    assert demo_api.list_faults() == []
    assert payments_session().get(demo_api.base_url("payments") + "/v1/charges").status_code == 200
    assert demo_api.sources["payments"].collection("charges").extras == {}


def test_mutations_insert_and_bump_updated_at(demo_api):
    r = requests.post(demo_api.url + "/_control/mutations", headers=CONTROL_HEADERS, json={
        "source": "commerce", "endpoint": "orders", "insert": 3, "at": "2025-02-27T12:00:00Z",
        "update": 2, "window": ["2025-01-05T00:00:00Z", "2025-01-06T00:00:00Z"],
    })
    assert r.status_code == 200
    out = r.json()
    assert len(out["inserted"]) == 3 and len(out["updated"]) == 2
    changed = demo_api.records("commerce", "orders", start="2025-02-27T12:00:00Z",
                               end="2025-02-27T12:00:01Z", field="updated")
    assert {o["id"] for o in changed} == set(out["inserted"]) | set(out["updated"])
    # the API serves them too
    from .helpers import commerce_session

    got = commerce_session().get(demo_api.base_url("commerce") + "/orders.json", params={
        "status": "any", "updated_at_min": "2025-02-27T12:00:00Z",
        "updated_at_max": "2025-02-27T12:00:00Z",
    }).json()["orders"]
    assert {o["id"] for o in got} == {o["id"] for o in changed}


def test_mutation_update_by_id_in_process(demo_api):
    first = demo_api.records("crm", "contacts", start="2025-01-02", end="2025-01-03")[0]
    out = demo_api.mutate("crm", "contacts", update=[first["id"]], at="2025-02-28T00:00:00Z")
    assert out["updated"] == [first["id"]]
    after = demo_api.records("crm", "contacts", start="2025-02-28", end="2025-02-28T00:00:01Z", field="updated")
    assert [c["id"] for c in after] == [first["id"]]
    bad = requests.post(
        demo_api.url + "/_control/mutations", json={"source": "crm"}, headers=CONTROL_HEADERS
    )
    assert bad.status_code == 400


def test_records_mode_gives_exactly_n_records(demo_api_factory):
    api = demo_api_factory(records=2500, max_page_size=1000)
    url = api.base_url("payments") + "/v1/charges"
    got, pages = walk_stripe(payments_session(), url, {"limit": 1000})
    assert len(got) == len({c["id"] for c in got}) == 2500 and pages == 3
    assert len(api.records("crm", "contacts")) == 2500


def test_millions_of_records_cost_no_memory(demo_api_factory):
    api = demo_api_factory(records=5_000_000, max_page_size=1000, rate_limit=False)
    url = api.base_url("payments") + "/v1/charges"
    s = payments_session()
    page = s.get(url, params={"limit": 1000}).json()
    assert len(page["data"]) == 1000 and page["has_more"]
    # a window deep in the data is found by bisection, not by scanning
    r = s.get(url, params={"limit": 100, "created[gte]": ts("2025-01-15T00:00:00Z"),
                           "created[lt]": ts("2025-01-15T00:00:10Z")})
    assert 0 < len(r.json()["data"]) <= 100
    assert api.sources["payments"].collection("charges").extras == {}


def test_credentials_and_env_names(demo_api):
    assert demo_api.credentials("payments")["api_key"] == credentials.PAYMENTS_KEY
    assert set(demo_api.credentials("crm")) == {"client_id", "client_secret", "username",
                                                 "password"}
    assert set(ENV_VARS) == {
        "DEMO_PAYMENTS_KEY", "DEMO_COMMERCE_TOKEN", "DEMO_CRM_CLIENT_ID",
        "DEMO_CRM_CLIENT_SECRET", "DEMO_CRM_USERNAME", "DEMO_CRM_PASSWORD", "DEMO_DEVHUB_TOKEN", "DEMO_PAYMENTS_WEBHOOK_SECRET",
        "DEMO_COMMERCE_WEBHOOK_SECRET", "DEMO_DEVHUB_WEBHOOK_SECRET", "DEMO_CRM_WEBHOOK_SECRET",
        "DEMO_EXPORTS_KEY",
        "DEMO_HELPDESK_TOKEN", "DEMO_HELPDESK_APP_KEY",
    }
    with pytest.raises(KeyError):
        demo_api.credentials("nope")


def test_live_clock_serves_data_up_to_now():
    api = DemoApi(DemoConfig(seed=3, start="2025-01-01T00:00:00Z"))
    with api.serve():
        got = payments_session().get(api.base_url("payments") + "/v1/charges", params={"limit": 1}).json()
        assert time.time() - got["data"][0]["created"] < 3600


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_starts_answers_and_stops():
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingestion_assets.demo_api", "--port", str(port), "--seed", "5",
         "--now", "2025-02-01T00:00:00Z", "--fault", "server_error:source=payments,count=1,status=502",
         "--no-rate-limit"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO_ROOT,
    )
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        base = f"http://127.0.0.1:{port}"
        assert requests.get(base + "/", timeout=5).json()["seed"] == 5
        s = payments_session()
        assert s.get(base + "/payments/v1/charges", timeout=5).status_code == 502
        r = s.get(base + "/payments/v1/charges", timeout=5)
        assert r.status_code == 200 and "X-RateLimit-Limit" not in r.headers
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_cli_rejects_a_bad_fault():
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    r = subprocess.run(
        [sys.executable, "-m", "ingestion_assets.demo_api", "--port", "0", "--fault", "explode"],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=30,
    )
    assert r.returncode == 2 and "unknown fault kind" in r.stderr


def test_control_refuses_what_a_browser_page_could_send(demo_api):
    """A cross-origin page can POST text/plain without a preflight, but cannot add a custom
    header or send application/json: the control API requires both."""
    ctl = demo_api.url + "/_control/faults"
    fault = b'{"kind": "server_error", "count": -1}'
    simple = requests.post(ctl, data=fault, headers={"Content-Type": "text/plain"})
    assert simple.status_code == 403 and "X-Demo-Control" in simple.json()["message"]
    plain = requests.post(ctl, data=fault, headers={**CONTROL_HEADERS, "Content-Type": "text/plain"})
    assert plain.status_code == 415
    assert requests.post(demo_api.url + "/_control/reset").status_code == 403
    assert demo_api.list_faults() == []
    ok = requests.post(ctl, data=fault, headers={**CONTROL_HEADERS, "Content-Type": "application/json"})
    assert ok.status_code == 201 and len(demo_api.list_faults()) == 1


def test_links_use_the_configured_host_not_the_host_header(demo_api):
    resp = payments_session().get(
        demo_api.base_url("devhub") + "/orgs/demo-org/repos", params={"per_page": 1},
        headers={"Host": "evil.example:666", "Authorization": "Bearer "
                 + demo_api.credentials("devhub")["token"]},
    )
    assert resp.status_code == 200, resp.text
    link = resp.headers["Link"]
    assert "evil.example" not in link and demo_api.url in link


def test_control_refuses_non_loopback_clients(demo_api):
    class FakeHandler:  # the guard only looks at the peer address
        client_address = ("192.0.2.10", 40000)

    resp = demo_api._control(FakeHandler(), "DELETE", "/_control/faults", b"")
    assert resp.status == 403


def test_configured_latency_and_startup_faults(demo_api_factory):
    api = demo_api_factory(latency_ms=20, faults=[{"kind": "html", "source": "payments"}])
    s = payments_session()
    url = api.base_url("payments") + "/v1/charges"
    assert s.get(url).headers["Content-Type"].startswith("text/html")
    assert s.get(url).status_code == 200 and s.get(url).json()["object"] == "list"


def test_cli_print_env_exports_the_demo_credentials():
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    out = subprocess.run(
        [sys.executable, "-m", "ingestion_assets.demo_api", "--print-env", "--port", "9999"],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=30, check=True,
    ).stdout
    exported = dict(
        line.removeprefix("export ").split("=", 1) for line in out.splitlines()
    )
    assert exported.pop("DEMO_API_URL") == "http://127.0.0.1:9999"
    assert exported == ENV_VARS  # plain values need no shell quoting


def test_settings_change_token_lifetimes_until_reset(demo_api):
    url = f"{demo_api.url}/_control/settings"
    changed = requests.post(url, json={"login_token_ttl": 2}, headers=CONTROL_HEADERS, timeout=5)
    assert changed.json() == {"token_ttl": 1800, "login_token_ttl": 2}
    refused = requests.post(url, json={"login_token_ttl": -1}, headers=CONTROL_HEADERS, timeout=5)
    assert refused.status_code == 400 and "positive" in refused.json()["message"]
    unknown = requests.post(url, json={"seed": 3}, headers=CONTROL_HEADERS, timeout=5)
    assert unknown.status_code == 400
    requests.post(f"{demo_api.url}/_control/reset", headers=CONTROL_HEADERS, timeout=5)
    assert demo_api.config.login_token_ttl == 900
