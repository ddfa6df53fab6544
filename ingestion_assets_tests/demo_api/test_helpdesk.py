"""helpdesk (Zendesk-like): cursor-paged tickets, per-ticket comments, User-Agent and version."""

from __future__ import annotations

import requests

from ingestion_assets.demo_api import credentials as creds

FEB10, FEB12 = "2025-02-10T00:00:00Z", "2025-02-12T00:00:00Z"


def helpdesk_session(**headers: str) -> requests.Session:
    s = requests.Session()
    s.headers.update({"Authorization": f"Bearer {creds.HELPDESK_TOKEN}",
                      "X-Helpdesk-App-Key": creds.HELPDESK_APP_KEY,
                      "User-Agent": "demo-tests/1.0 (+mailto:tests@example.com)", **headers})
    return s


def walk_tickets(session, url, params):
    out, pages, cursor = [], 0, None
    while True:
        r = session.get(url, params={**params, **({"page[after]": cursor} if cursor else {})},
                        timeout=10)
        assert r.status_code == 200, r.text
        body = r.json()
        out += body["tickets"]
        pages += 1
        if not body["meta"]["has_more"]:
            assert body["meta"]["after_cursor"] is None and body["links"]["next"] is None
            return out, pages
        cursor = body["meta"]["after_cursor"]


def test_cursor_walk_of_two_days_of_tickets_matches_ground_truth(demo_api):
    url = demo_api.base_url("helpdesk") + "/api/v2/tickets"
    got, pages = walk_tickets(helpdesk_session(), url, {
        "created_after": FEB10, "created_before": FEB12, "page[size]": 7})
    truth = demo_api.records("helpdesk", "tickets", FEB10, FEB12)
    assert got == truth and len(truth) == 48 and pages == -(-48 // 7)
    assert all(FEB10 <= t["created_at"] < FEB12 for t in got)


def test_comments_of_a_ticket_page_by_number_with_a_count(demo_api):
    ticket = next(t for t in demo_api.records("helpdesk", "tickets", FEB10, FEB12)
                  if t["comment_count"] >= 3)
    url = demo_api.base_url("helpdesk") + f"/api/v2/tickets/{ticket['id']}/comments"
    s = helpdesk_session(**{"X-Helpdesk-Version": "2"})
    first = s.get(url, params={"per_page": 2}).json()
    second = requests.get(first["next_page"], headers=s.headers, timeout=10).json()
    assert first["count"] == second["count"] == ticket["comment_count"]
    got = first["comments"] + second["comments"]
    if second["next_page"]:
        got += requests.get(second["next_page"], headers=s.headers, timeout=10).json()["comments"]
    assert got == demo_api.records("helpdesk", "comments", ticket=ticket["id"])
    assert {c["ticket_id"] for c in got} == {ticket["id"]}
    assert got[0]["created_at"] == ticket["created_at"]  # the description opens the ticket
    # the comments of a window are those of its tickets
    window = demo_api.records("helpdesk", "comments", FEB10, FEB12)
    assert len(window) == sum(t["comment_count"] for t in
                              demo_api.records("helpdesk", "tickets", FEB10, FEB12))


def test_comments_need_version_2_and_unknown_tickets_are_404(demo_api):
    (ticket,) = demo_api.records("helpdesk", "tickets", FEB10, "2025-02-10T01:00:00Z")
    url = demo_api.base_url("helpdesk") + f"/api/v2/tickets/{ticket['id']}/comments"
    old = helpdesk_session().get(url)
    assert old.status_code == 400 and "X-Helpdesk-Version: 2" in old.json()["description"]
    s = helpdesk_session(**{"X-Helpdesk-Version": "2"})
    assert s.get(url).status_code == 200
    for missing in ("99999999", "..", "abc", "10001%2F..%2F10002"):
        r = s.get(demo_api.base_url("helpdesk") + f"/api/v2/tickets/{missing}/comments")
        assert r.status_code == 404, missing
    assert helpdesk_session(**{"X-Helpdesk-Version": "3"}).get(url).status_code == 400


def test_credentials_and_the_user_agent_are_required(demo_api):
    url = demo_api.base_url("helpdesk") + "/api/v2/tickets"
    for agent in ("", "python-requests/2.32.3", "Python-urllib/3.11"):
        r = helpdesk_session(**{"User-Agent": agent}).get(url)
        assert r.status_code == 403 and r.json()["error"] == "UserAgentRequired", agent
    assert helpdesk_session(Authorization="Bearer nope").get(url).status_code == 401
    r = helpdesk_session(**{"X-Helpdesk-App-Key": "wrong"}).get(url)
    assert r.status_code == 403 and "X-Helpdesk-App-Key" in r.json()["description"]
