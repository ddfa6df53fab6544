"""Shared fixtures: a running demo API on a free loopback port."""

from __future__ import annotations

import pytest

from ingestion_assets.demo_api import DemoApi, DemoConfig, demo_env

#: The frozen clock of the default fixture: two months of data from 2025-01-01.
DEMO_NOW = "2025-03-01T00:00:00Z"
DEMO_SEED = 7


@pytest.fixture
def demo_api():
    """A running demo API (seed 7, clock frozen at 2025-03-01T00:00:00Z), stopped after the test."""
    with DemoApi(DemoConfig(seed=DEMO_SEED, now=DEMO_NOW)).serve() as api:
        yield api


@pytest.fixture
def demo_api_factory():
    """Starts demo APIs with a custom config: ``demo_api_factory(records=1000, ...)``.

    Accepts a DemoConfig or DemoConfig keyword arguments (seed and now default to the
    ``demo_api`` fixture's). Every server started is stopped after the test.
    """
    started: list[DemoApi] = []

    def start(config: DemoConfig | None = None, **kw) -> DemoApi:
        if config is None:
            kw.setdefault("seed", DEMO_SEED)
            kw.setdefault("now", DEMO_NOW)
            config = DemoConfig(**kw)
        api = DemoApi(config).start()
        started.append(api)
        return api

    yield start
    for api in started:
        api.stop()


@pytest.fixture
def demo_sources(demo_api, monkeypatch):
    """The bundled demo sources, pointed at the ``demo_api`` fixture with its credentials set
    in the environment (as a user exports them); a dict by source name."""
    from ingestion_assets.specs import load_sources

    for name, value in demo_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DEMO_API_URL", demo_api.url)
    return {s.name: s for s in load_sources()}
