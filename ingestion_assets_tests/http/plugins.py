"""Custom paginator and auth used by the plugin tests (loaded by import path)."""

from __future__ import annotations

from typing import Any

import requests

from ingestion_assets.http import auth, paginators


class EveryOtherPage(paginators.PageNumberPaginator):
    """A page-number style that must be named by import path (test plugin)."""

    def __init__(self, step: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step = step


class HeaderTokenAuth(auth.ApiAuth):
    """Sends a token in a custom header (test plugin)."""

    def __init__(self, token: str, header: str = "X-Custom-Token") -> None:
        from ingestion_assets.http.redaction import register_secret

        register_secret(token)
        self._token = token
        self.header = header

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[self.header] = self._token
        return request
