"""Budgets against hostile servers on loopback: a gzip bomb, a body that cannot be decoded,
a trickling body, and waits a server asks for that are too long or written oddly."""

from __future__ import annotations

import time
import zlib

import pytest

from ingestion_assets.http import ApiClient, RateLimiter, RetryPolicy, errors, paginators
from ingestion_assets.http.budgets import MIB, Budgets
from ingestion_assets_tests.hostile import HostileServer, Reply, trickle

QUICK = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.02, retry_after_floor=0.01)


def gzip_bomb(decoded_mib: int = 1024) -> bytes:
    """About 1 MB of gzip that inflates to ``decoded_mib`` MiB of zeros (one gzip member per
    MiB, concatenated: a valid gzip stream)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    member = packer.compress(bytes(MIB)) + packer.flush()
    return member * decoded_mib


def _client(server: HostileServer, **kw) -> ApiClient:
    kw.setdefault("retry", QUICK)
    kw.setdefault("rate_limiter", RateLimiter(None))
    return ApiClient(server.url, source="hostile", timeout=(2, 5), **kw)


def test_gzip_bomb_stops_at_the_body_budget_and_is_not_retried():
    bomb = gzip_bomb()
    assert len(bomb) < 1.1 * 1000 * 1000
    with HostileServer() as server:
        server.routes["/bomb"] = lambda seen: Reply(
            200, bomb, [("Content-Encoding", "gzip")]
        )
        client = _client(server, budgets=Budgets(max_body_bytes=8 * MIB))
        with pytest.raises(errors.BodyTooLargeError, match="larger than 8 MiB once decoded") as e:
            list(client.fetch_pages("/bomb", endpoint="bomb"))
        assert "gzip" in str(e.value) and e.value.transient is False
        assert len(server.seen) == 1  # retrying cannot help: not retried


def test_undecodable_body_is_not_retried():
    with HostileServer() as server:
        server.routes["/bad"] = lambda seen: Reply(
            200, b"this is not gzip at all", [("Content-Encoding", "gzip")]
        )
        with pytest.raises(errors.InvalidResponseError, match="cannot be decoded") as e:
            list(_client(server).fetch_pages("/bad", endpoint="bad"))
        assert e.value.transient is False
        assert len(server.seen) == 1


def test_trickling_body_fails_at_the_request_deadline():
    with HostileServer() as server:
        body = b'[{"id": 1}]' + b" " * 100
        server.routes["/slow"] = lambda seen: Reply(200, trickle(body, 0.2), length=len(body))
        client = _client(
            server, budgets=Budgets(request_deadline_s=1.0),
            retry=RetryPolicy(max_attempts=2, backoff_base=0.01),
        )
        with pytest.raises(errors.DeadlineExceededError, match="request deadline of 1 s") as e:
            list(client.fetch_pages("/slow", endpoint="slow"))
        assert "gave up after 2 attempts" in str(e.value)
        assert len(server.seen) == 2  # the client's own attempts, each cut at the deadline


def test_trickling_headers_fail_at_the_request_deadline():
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"x" * 200
    with HostileServer() as server:
        server.routes["/slow-head"] = lambda seen: Reply(raw=trickle(head, 0.2))
        client = _client(
            server, budgets=Budgets(request_deadline_s=1.0),
            retry=RetryPolicy(max_attempts=1, backoff_base=0.01),
        )
        with pytest.raises(errors.DeadlineExceededError, match="headers did not arrive") as e:
            list(client.fetch_pages("/slow-head", endpoint="slow_head"))
        assert "/slow-head" in str(e.value) and "hostile/slow_head" in str(e.value)


def _paged(reset: str, pages: int = 2):
    def reply(seen):
        page = int(seen.query.get("page", ["1"])[0])
        return Reply.json(
            [{"id": page}] if page <= pages else [],
            headers=[("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", reset)],
        )

    return reply


def _fetch_pages(client: ApiClient) -> list:
    paginator = paginators.PageNumberPaginator(page_size=1, total_pages_path=None)
    return list(client.fetch_pages("/items", paginator=paginator, endpoint="items").iter_records())


def test_reset_in_epoch_milliseconds_is_a_short_wait():
    with HostileServer() as server:
        soon_ms = str(int((time.time() + 0.5) * 1000))
        server.routes["/items"] = _paged(soon_ms)
        records = _fetch_pages(_client(server))  # used to raise OverflowError in sleep
        assert records == [{"id": 1}, {"id": 2}]


@pytest.mark.parametrize(
    "reset", ["999999999", "1e400", str(int(time.time() * 1000) + 10**12)],
    ids=["delta_seconds_31_years", "overflowing", "epoch_ms_32_years_ahead"],
)
def test_huge_reset_fails_with_the_servers_value(reset):
    with HostileServer() as server:
        server.routes["/items"] = _paged(reset)
        client = _client(server, budgets=Budgets(max_wait_s=5))
        with pytest.raises(errors.WaitTooLongError) as e:
            _fetch_pages(client)
        assert f"X-RateLimit-Reset: {reset!r}" in str(e.value)
        assert "longer than the 5 s cap" in str(e.value)
        assert len(server.seen) == 1


def test_huge_reset_after_the_last_page_does_not_fail():
    with HostileServer() as server:
        server.routes["/one"] = lambda seen: Reply.json(
            [{"id": 1}], headers=[("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", "999999999")]
        )
        assert list(_client(server).fetch_pages("/one").iter_records()) == [{"id": 1}]


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_past_the_cap_fails_with_the_servers_value(status):
    with HostileServer() as server:
        server.routes["/wait"] = lambda seen: Reply.json(
            {"error": "later"}, status, headers=[("Retry-After", "86400")]
        )
        client = _client(server, budgets=Budgets(max_wait_s=60))
        with pytest.raises(errors.WaitTooLongError, match="Retry-After: '86400'.*60 s cap"):
            list(client.fetch_pages("/wait", endpoint="wait"))
        assert len(server.seen) == 1


def test_token_endpoint_body_is_bounded():
    from ingestion_assets.http import auth

    with HostileServer() as server:
        server.routes["/token"] = lambda seen: Reply(200, b"[" + b"0," * (1024 * 1024) + b"0]")
        client = _client(server, auth=auth.OAuth2ClientCredentials("/token", "id", "secret-x"))
        with pytest.raises(errors.AuthenticationError, match="more than 1024 KiB"):
            list(client.fetch_pages("/items", endpoint="items"))
        assert [s.path for s in server.seen] == ["/token"]
