"""devhub (GitHub-like): page numbers + Link, header cursor, auth forms, repos over time."""

from __future__ import annotations

import requests

from ingestion_assets.demo_api import credentials as creds

from .helpers import devhub_session, walk_links


def test_repos_appear_over_time(demo_api_factory):
    early = demo_api_factory(now="2025-01-20T00:00:00Z")
    late = demo_api_factory(now="2025-03-01T00:00:00Z")
    s = devhub_session()
    a = walk_links(s, early.base_url("devhub") + "/orgs/demo-org/repos")[0]
    b = walk_links(s, late.base_url("devhub") + "/orgs/demo-org/repos", {"per_page": 5})[0]
    assert len(a) == 4 and len(b) == 12
    assert {r["name"] for r in a} < {r["name"] for r in b}
    assert [r["name"] for r in b] == list(reversed(late.sources["devhub"].repo_names()))


def test_page_number_walk_of_issues_matches_ground_truth(demo_api):
    repo = demo_api.sources["devhub"].repo_names()[0]
    url = demo_api.base_url("devhub") + f"/repos/demo-org/{repo}/issues"
    got, pages = walk_links(devhub_session(), url, {"state": "all", "per_page": 40})
    truth = demo_api.records("devhub", "issues", repo=f"demo-org/{repo}")
    assert len(got) == len({i["number"] for i in got}) == len(truth) > 40
    assert {i["number"] for i in got} == {i["number"] for i in truth}
    assert pages == -(-len(truth) // 40)


def test_last_link_and_since_filter(demo_api):
    repo = demo_api.sources["devhub"].repo_names()[1]
    url = demo_api.base_url("devhub") + f"/repos/demo-org/{repo}/issues"
    s = devhub_session()
    r = s.get(url, params={"state": "all", "since": "2025-02-20T00:00:00Z", "per_page": 10})
    assert all(i["updated_at"] >= "2025-02-20T00:00:00Z" for i in r.json())
    last = s.get(r.links["last"]["url"])
    assert "next" not in last.links and "prev" in last.links and last.json()
    open_only = walk_links(s, url, {"per_page": 100})[0]
    assert open_only and all(i["state"] == "open" for i in open_only)


def test_per_page_is_clamped_silently_like_github(demo_api):
    r = devhub_session().get(demo_api.base_url("devhub") + "/orgs/demo-org/events", params={"per_page": 500})
    assert r.status_code == 200 and len(r.json()) == 100


def test_header_cursor_walk_of_events(demo_api):
    url = demo_api.base_url("devhub") + "/orgs/demo-org/events"
    s = devhub_session()
    got, cursor = [], None
    while True:
        r = s.get(url, params={"per_page": 100, **({"cursor": cursor} if cursor else {})})
        got += r.json()
        cursor = r.headers.get("X-Next-Cursor")
        if not cursor:
            break
    truth = demo_api.records("devhub", "events")
    assert len(got) == len({e["id"] for e in got}) == len(truth)
    created = [e["created_at"] for e in got]
    assert created == sorted(created, reverse=True)


def test_every_auth_form_works(demo_api):
    url = demo_api.base_url("devhub") + "/orgs/demo-org/repos"
    for kw in (
        {"headers": {"Authorization": f"token {creds.DEVHUB_TOKEN}"}},
        {"headers": {"Authorization": f"Bearer {creds.DEVHUB_TOKEN_2}"}},
        {"auth": (creds.DEVHUB_USER, creds.DEVHUB_TOKEN)},
        {"params": {"access_token": creds.DEVHUB_TOKEN}},
    ):
        assert requests.get(url, **kw).status_code == 200, kw


def test_github_rate_limit_headers_and_429(demo_api_factory):
    api = demo_api_factory(rate_limits={"devhub": 2})
    url = api.base_url("devhub") + "/orgs/demo-org/repos"
    s = devhub_session()
    first = s.get(url)
    assert first.headers["X-RateLimit-Limit"] == "2" and first.headers["X-RateLimit-Used"] == "1"
    assert first.headers["X-RateLimit-Resource"] == "core"
    assert int(first.headers["X-RateLimit-Reset"]) > 1_700_000_000  # epoch seconds
    s.get(url)
    r = s.get(url)
    assert r.status_code == 429 and "rate limit exceeded" in r.json()["message"]
    assert r.headers["X-RateLimit-Remaining"] == "0" and int(r.headers["Retry-After"]) > 0
    assert requests.get(url, headers={"Authorization": f"token {creds.DEVHUB_TOKEN_2}"}).status_code == 200


def test_bad_inputs_get_github_errors(demo_api):
    base = demo_api.base_url("devhub")
    s = devhub_session()
    r = s.get(base + "/orgs/demo-org/nothing")
    assert r.status_code == 404 and r.json()["message"] == "Not Found"
    assert s.get(base + "/repos/demo-org/no-such-repo/issues").status_code == 404
    assert s.get(base + "/orgs/other-org/repos").status_code == 404
    r = s.get(base + "/orgs/demo-org/events", params={"cursor": "!!bad!!"})
    assert r.status_code == 400 and "cursor" in r.json()["message"]
    repo = f"/repos/demo-org/{demo_api.sources['devhub'].repo_names()[0]}/issues"
    r = s.get(base + repo, params={"since": "not-a-date"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "since"
    r = requests.get(base + "/orgs/demo-org/repos", headers={"Authorization": "token ghp_wrong"})
    assert r.status_code == 401 and r.json()["message"] == "Bad credentials"
    assert requests.get(base + "/orgs/demo-org/repos").json()["message"] == "Requires authentication"


def test_sort_updated_ascending_since_walk(demo_api):
    repo = demo_api.sources["devhub"].repo_names()[0]
    url = demo_api.base_url("devhub") + f"/repos/demo-org/{repo}/issues"
    params = {"state": "all", "sort": "updated", "direction": "asc", "since": "2025-02-01T00:00:00Z",
              "per_page": 25}
    got, _ = walk_links(devhub_session(), url, params)
    updated = [i["updated_at"] for i in got]
    assert updated == sorted(updated) and updated[0] >= "2025-02-01T00:00:00Z"
    truth = demo_api.records("devhub", "issues", repo=repo, start="2025-02-01", field="updated")
    assert {i["number"] for i in got} == {i["number"] for i in truth}
    desc = walk_links(devhub_session(), url, dict(params, direction="desc"))[0]
    assert [i["number"] for i in desc] == [i["number"] for i in reversed(got)]
