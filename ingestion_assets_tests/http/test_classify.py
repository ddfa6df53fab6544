"""The status classifier of the HTTP client: what one answer means, without any HTTP.

Each test hands `StatusClassifier` a response (or the exception an attempt raised) and checks
the decision a user would see: retried (and after how long the server asked), the
credentials refreshed once, or the request failing with the error message it shows.
"""

from __future__ import annotations

import email.utils
import time

import pytest
import requests

from ingestion_assets.http import RetryPolicy, errors, looks_like_error
from ingestion_assets.http.classify import (
    FATAL,
    RATE_LIMITED,
    REFRESH,
    RETRY,
    SUCCESS,
    StatusClassifier,
)
from ingestion_assets.http.jsonpath import compile_path

URL = "https://api.example.com/v1/charges?limit=100"
WHERE = {"source": "payments", "endpoint": "charges"}


def classifier(**kwargs) -> StatusClassifier:
    kwargs.setdefault("records_steps", compile_path("data"))
    kwargs.setdefault("error_detector", looks_like_error)
    return StatusClassifier(RetryPolicy(), 60.0, where=WHERE, **kwargs)


def answer(status: int, body: bytes = b'{"data": []}', **headers: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.url = URL
    response.headers.update({"Content-Type": "application/json", **headers})
    return response


def classify(status: int, body: bytes = b'{"data": []}', attempts: int = 1, **kwargs):
    flags = {k: kwargs.pop(k) for k in ("refreshed", "rotated") if k in kwargs}
    response = answer(status, body, **kwargs)
    return classifier().response(response, body, attempts, **flags)


# ------------------------------------------------------------------------------ 429


def test_429_with_retry_after_in_seconds_is_retried_after_that_wait():
    verdict = classify(429, b'{"error": "slow down"}', **{"Retry-After": "7"})
    assert verdict.action == RATE_LIMITED and verdict.cause == "rate_limited"
    assert verdict.retry_after == 7.0 and verdict.wait_error is None and not verdict.retry_now
    # What the user reads once the rate-limit budget is spent.
    assert isinstance(verdict.error, errors.RateLimitError)
    assert str(verdict.error).startswith(
        "[payments/charges] still rate limited after 8 retries; status=429"
    )


def test_429_with_retry_after_as_an_http_date_waits_until_then():
    date = email.utils.formatdate(time.time() + 120, usegmt=True)
    verdict = classify(429, **{"Retry-After": date})
    assert verdict.action == RATE_LIMITED
    assert 100 < verdict.retry_after <= 120


def test_429_without_retry_after_leaves_the_wait_to_the_policy_floor():
    verdict = classify(429)
    assert verdict.action == RATE_LIMITED and verdict.retry_after is None


def test_429_asking_to_wait_past_the_cap_fails_when_the_client_would_have_to_wait():
    verdict = classify(429, **{"Retry-After": "3600"})
    assert verdict.action == RATE_LIMITED and verdict.retry_after == 3600.0
    assert isinstance(verdict.wait_error, errors.WaitTooLongError)
    assert "Retry-After: '3600' (3600 s), longer than the 60 s cap (limits.max_wait_seconds)" in (
        str(verdict.wait_error)
    )
    # Another key with headroom (rotating auth): go at once, the long wait does not apply.
    rotated = classify(429, rotated=True, **{"Retry-After": "3600"})
    assert rotated.action == RATE_LIMITED and rotated.retry_now
    assert rotated.wait_error is None


def test_403_is_a_spent_rate_limit_only_when_no_requests_are_left():
    spent = classify(403, **{"X-RateLimit-Remaining": "0", "Retry-After": "5"})
    assert spent.action == RATE_LIMITED and spent.retry_after == 5.0
    refused = classify(403, **{"X-RateLimit-Remaining": "12"})
    assert refused.action == FATAL and isinstance(refused.error, errors.AuthenticationError)
    assert "request refused (403)" in str(refused.error)
    other_header = classifier(remaining_header="RateLimit-Remaining").response(
        answer(403, **{"RateLimit-Remaining": "0"}), b"{}", 1
    )
    assert other_header.action == RATE_LIMITED


# ------------------------------------------------------------------------------ 5xx


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599, 408, 425])
def test_server_errors_and_transient_statuses_are_retried(status):
    verdict = classify(status, b"<html>upstream down</html>")
    assert verdict.action == RETRY and verdict.cause == "server_error"
    assert isinstance(verdict.error, errors.ServerError) and verdict.error.transient
    assert str(verdict.error).startswith(f"[payments/charges] server error {status}; "
                                         f"status={status}; url={URL}")
    assert "upstream down" in str(verdict.error)  # the body excerpt


def test_a_server_error_with_retry_after_waits_at_least_that_long():
    assert classify(503, **{"Retry-After": "2"}).retry_after == 2.0
    too_long = classify(503, **{"Retry-After": "86400"})
    assert too_long.action == FATAL and isinstance(too_long.error, errors.WaitTooLongError)
    assert "longer than the 60 s cap" in str(too_long.error)


# ------------------------------------------------------------------------------ 401 and 4xx


def test_401_refreshes_the_credentials_once_then_fails():
    first = classify(401, b'{"error": "expired"}')
    assert first.action == REFRESH
    # The error shown when the auth cannot refresh (a static key, say).
    assert isinstance(first.error, errors.AuthenticationError)
    assert str(first.error).startswith("[payments/charges] credentials rejected (401); status=401")
    again = classify(401, b'{"error": "expired"}', attempts=2, refreshed=True)
    assert again.action == FATAL
    assert str(again.error).startswith(
        "[payments/charges] credentials rejected (401) again after refreshing them; status=401"
    )
    assert "attempts=2" in str(again.error) and not again.error.transient


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_client_errors_fail_at_once(status):
    verdict = classify(status, b'{"error": {"message": "No such parameter: limt"}}')
    assert verdict.action == FATAL and isinstance(verdict.error, errors.ClientError)
    assert not verdict.error.transient
    message = str(verdict.error)
    assert message.startswith(f"[payments/charges] request refused ({status}); status={status}")
    assert "No such parameter: limt" in message


def test_an_unexpected_redirect_status_fails():
    verdict = classify(304, b"")
    assert verdict.action == FATAL and isinstance(verdict.error, errors.InvalidResponseError)
    assert "unexpected status 304" in str(verdict.error) and not verdict.error.transient


# ------------------------------------------------------------------------------ 2xx bodies


def test_a_good_page_is_a_success_with_its_records():
    verdict = classify(200, b'{"data": [{"id": 1}, {"id": 2}], "has_more": false}')
    assert verdict.action == SUCCESS and verdict.error is None
    assert verdict.records == [{"id": 1}, {"id": 2}]
    assert verdict.body["has_more"] is False
    assert classify(204, b"").action == SUCCESS and classify(204, b"").records == []


@pytest.mark.parametrize(
    "body, content_type, message",
    [
        (b"<html>maintenance</html>", "text/html; charset=utf-8", "expected JSON, got text/html"),
        (b'{"data": [', "application/json", "body is not valid JSON"),
        (b'{"error": {"type": "api_error"}}', "application/json", "error"),
    ],
    ids=["html", "truncated-json", "error-object"],
)
def test_an_unusable_200_is_retried(body, content_type, message):
    verdict = classifier().response(answer(200, body, **{"Content-Type": content_type}), body, 1)
    assert verdict.action == RETRY and verdict.cause in ("invalid_body", "error_body")
    assert isinstance(verdict.error, errors.InvalidResponseError) and message in str(verdict.error)


def test_records_missing_from_a_200_fail_without_retrying():
    verdict = classify(200, b'{"items": []}')
    assert verdict.action == FATAL and isinstance(verdict.error, errors.InvalidResponseError)
    assert not verdict.error.transient and "status=200" in str(verdict.error)


# ------------------------------------------------------------------------------ exceptions


@pytest.mark.parametrize(
    "exc, cause, error_type, message",
    [
        (requests.ConnectionError("refused"), "connection", errors.TransportError,
         "connection failed (ConnectionError)"),
        (requests.exceptions.ConnectTimeout("slow"), "timeout", errors.ApiTimeoutError,
         "request timed out (ConnectTimeout)"),
        (requests.exceptions.ReadTimeout("slow"), "timeout", errors.ApiTimeoutError,
         "request timed out (ReadTimeout)"),
        (requests.exceptions.ChunkedEncodingError("cut"), "truncated", errors.TransportError,
         "response body cut short (ChunkedEncodingError)"),
        (errors.DeadlineExceededError("the response did not complete within 10 s"), "deadline",
         errors.DeadlineExceededError, "the response did not complete within 10 s"),
    ],
    ids=["connection", "connect-timeout", "read-timeout", "truncated", "deadline"],
)
def test_connection_failures_are_retried(exc, cause, error_type, message):
    verdict = classifier().exception(exc, URL, 1)
    assert verdict.action == RETRY and verdict.cause == cause and verdict.request_failed
    assert isinstance(verdict.error, error_type) and verdict.error.transient
    assert str(verdict.error).startswith(f"[payments/charges] {message}")
    assert f"url={URL}" in str(verdict.error)


def test_an_oversize_body_is_not_retried():
    too_large = errors.BodyTooLargeError(
        "response body larger than 1 MiB once decoded (Content-Encoding: gzip); stopped "
        "reading (limits.max_body_mb); not retried", url=URL, status=200, **WHERE,
    )
    verdict = classifier().exception(too_large, URL, 1)
    assert verdict.action == FATAL and verdict.error is too_large
    assert "not retried" in str(verdict.error) and not verdict.request_failed


def test_an_undecodable_body_and_an_invalid_request_are_not_retried():
    decoding = classifier().exception(requests.exceptions.ContentDecodingError("bad gzip"), URL, 3)
    assert decoding.action == FATAL and decoding.request_failed
    assert "response body cannot be decoded (ContentDecodingError); not retried" in str(
        decoding.error
    ) and "attempts=3" in str(decoding.error)
    invalid = classifier().exception(requests.exceptions.InvalidURL("no host"), URL, 1)
    assert invalid.action == FATAL and isinstance(invalid.error, errors.ConfigurationError)
    assert "invalid request: InvalidURL: no host" in str(invalid.error)
    assert not invalid.request_failed  # nothing was sent


def test_anything_else_is_not_the_classifier_s_to_swallow():
    with pytest.raises(ValueError, match="a bug"):
        classifier().exception(ValueError("a bug"), URL, 1)
