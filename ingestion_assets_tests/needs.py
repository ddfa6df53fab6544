"""What a test needs from the machine: skip locally, fail in CI, when it is missing."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(what: str, why: str) -> None:
    """Skip the test with the reason (locally) or fail it (under CI=true): ``what`` is missing."""
    if in_ci():
        pytest.fail(f"{what} is required in CI (CI=true) but {why}", pytrace=False)
    pytest.skip(f"{what} not available on this machine ({why}); it runs in CI")
