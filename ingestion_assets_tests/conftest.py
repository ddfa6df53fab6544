"""Shared fixtures (a running demo API on a free loopback port) and the suite's scheduling.

The demo API: one server per test module (``demo_api_shared``), reset through its control
endpoint before every test that asks for ``demo_api``, so each test starts from the state a
new server has (no faults, no mutations, full rate-limit buckets, no issued tokens, no
webhook receiver). A test that leaves the server in a state the reset does not cover (it
stopped the server, or configured or used webhooks) gets the server replaced after it.

Scheduling under pytest-xdist (``scripts/test.sh``: ``--dist loadgroup``): the tests of one
file run in one worker, in order, as with ``--dist loadfile``, so module-scoped fixtures
(``dagster dev``, a browser, a receiver) start once; a module marked ``spread`` lets its tests
go to different workers (for independent long tests). Files start longest first (see
``SCHEDULE``): with 2-4 workers, one long file that starts last would run alone at the end.
"""

from __future__ import annotations

import signal

import pytest
import requests

from ingestion_assets.demo_api import CONTROL_HEADERS, DemoApi, DemoConfig, demo_env

#: The frozen clock of the default fixture: two months of data from 2025-01-01.
DEMO_NOW = "2025-03-01T00:00:00Z"
DEMO_SEED = 7

#: The longest scheduling units: seconds of a file (all its tests; a ``spread`` file's tests
#: run in parallel) from a ``--durations`` run of the whole suite with 3 workers on 2 cores
#: (2026-12-03). A unit of several files (one ``xdist_group``, as ui/) counts the sum of its
#: files. The scheduler hands these out first, longest first; every other file comes after
#: them, slow-marked files before the rest. Only the order depends on it: a file missing
#: here or renamed still runs.
SCHEDULE = {
    "ingestion_assets_tests/deploy/test_storage_stress_s3.py": 260,
    "ingestion_assets_tests/ui/test_browser.py": 150,  # one unit with the other ui/ files
    "ingestion_assets_tests/e2e/test_killed_run.py": 188,
    "ingestion_assets_tests/ui/test_graphql.py": 75,
    "ingestion_assets_tests/checks/test_checks_ui.py": 106,
    "ingestion_assets_tests/spark/test_spark_source.py": 97,
    "ingestion_assets_tests/ui/test_webhooks.py": 25,
    "ingestion_assets_tests/test_factory.py": 65,
    "ingestion_assets_tests/e2e/test_daemon.py": 59,
    "ingestion_assets_tests/io_managers/test_storage_stress.py": 58,
    "ingestion_assets_tests/test_dev_script.py": 46,
    "ingestion_assets_tests/e2e/test_dagster_dev.py": 38,
    "ingestion_assets_tests/webhooks/test_crash.py": 34,
    "ingestion_assets_tests/test_components.py": 32,
    "ingestion_assets_tests/test_bench_smoke.py": 31,
}


def pytest_configure(config):
    """SIGINT handled as Python handles it in a terminal, also when the suite runs as a
    background job (`scripts/test.sh &`), which starts it ignored. Dagster's in-process runs
    give SIGTERM whatever SIGINT has when they restore it
    (`dagster._utils.interrupts.setup_interrupt_handlers`): with SIGINT ignored, every
    `materialize` left SIGTERM ignored in the worker, and a process the worker started after
    it (dev.sh, the demo API, dagster dev) began with SIGTERM ignored; bash cannot trap a
    signal ignored at its start (test_dev_script.py)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# ---- the demo API --------------------------------------------------------------------------


def _new_demo_api() -> DemoApi:
    return DemoApi(DemoConfig(seed=DEMO_SEED, now=DEMO_NOW)).start()


class _SharedDemoApi:
    """The module's demo API server, started on first use and replaced when a test left it
    in a state that the control endpoint's reset does not undo."""

    def __init__(self) -> None:
        self.api: DemoApi | None = None

    def fresh(self) -> DemoApi:
        """The server, reset to its starting state."""
        if self.api is None:
            self.api = _new_demo_api()
            self.pristine = self.api.webhooks.status()
            return self.api
        resp = requests.post(f"{self.api.url}/_control/reset", headers=CONTROL_HEADERS,
                             timeout=10)
        assert resp.status_code == 200, f"demo API reset failed: {resp.status_code} {resp.text}"
        return self.api

    def after_test(self) -> None:
        """Drops the server if the test stopped it or touched its webhook sender."""
        if self.api is None:
            return
        try:
            self.api.url  # noqa: B018 - raises when the test stopped the server
            clean = self.api.webhooks.status() == self.pristine
        except RuntimeError:
            clean = False
        if not clean:
            self.close()

    def close(self) -> None:
        if self.api is not None:
            self.api.stop()
            self.api = None


@pytest.fixture(scope="module")
def demo_api_shared():
    """The module's demo API server (seed 7, clock frozen at 2025-03-01T00:00:00Z); tests ask
    for ``demo_api``, which resets it first."""
    shared = _SharedDemoApi()
    yield shared
    shared.close()


@pytest.fixture
def demo_api(demo_api_shared):
    """A running demo API (seed 7, clock frozen at 2025-03-01T00:00:00Z) in its starting state:
    the module's server, reset through ``POST /_control/reset`` before the test."""
    yield demo_api_shared.fresh()
    demo_api_shared.after_test()


@pytest.fixture
def fresh_demo_api():
    """A demo API of the test's own (the ``demo_api`` configuration), stopped after it."""
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


# ---- scheduling ------------------------------------------------------------------------------


def _file_of(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def _unit_of(item: pytest.Item) -> str:
    """What one worker runs in one go: the ``xdist_group`` a file is marked with (files that
    share a package-scoped fixture, as ui/ does), or else the file."""
    mark = item.get_closest_marker("xdist_group")
    if mark is None:
        return _file_of(item)
    return mark.args[0] if mark.args else mark.kwargs["name"]


@pytest.hookimpl(tryfirst=True)  # before xdist names the groups in the node ids
def pytest_collection_modifyitems(config, items):
    """Longest units first; one xdist group per file (unless the file names its own), or per
    test in ``spread`` modules."""
    first_seen: dict[str, int] = {}  # of each file and each unit
    slow: set[str] = set()
    seconds: dict[str, int] = {}  # of each unit in SCHEDULE
    files: dict[str, set[str]] = {}
    for i, item in enumerate(items):
        path, unit = _file_of(item), _unit_of(item)
        first_seen.setdefault(path, i)
        first_seen.setdefault(unit, i)
        if item.get_closest_marker("slow"):
            slow.add(unit)
        if path not in files.setdefault(unit, set()):
            files[unit].add(path)
            seconds[unit] = seconds.get(unit, 0) + SCHEDULE.get(path, 0)

    def rank(unit: str) -> tuple:
        if seconds[unit]:
            return (0, -seconds[unit], first_seen[unit])
        return (1 if unit in slow else 2, 0, first_seen[unit])

    # Stable: the files of a unit stay together, and the tests of a file in their order.
    items.sort(key=lambda item: (rank(_unit_of(item)), first_seen[_file_of(item)]))
    # Marked whenever pytest-xdist is loaded (it registers the mark; the marks are inert
    # without --dist loadgroup). Not `hasplugin("xdist")`: in xdist's workers, which name the
    # groups, the plugin goes by another name, and every file then ran in every worker.
    if not any(line.startswith("xdist_group") for line in config.getini("markers")):
        return
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            group = item.nodeid if item.get_closest_marker("spread") else _file_of(item)
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(optionalhook=True)  # an xdist hook: a run without pytest-xdist never calls it
def pytest_xdist_node_collection_finished(node, ids):
    """Under ``--dist loadgroup`` every test must carry its group in its node id. When it does
    not (pytest 9 ignores the node id xdist 3.8 writes), each file's tests go to every worker,
    which starts each file's ``dagster dev``, browser and Spark once per worker: stop early."""
    if node.config.getvalue("dist") != "loadgroup":
        return
    ungrouped = [nodeid for nodeid in ids if "@" not in nodeid]
    if ungrouped:
        pytest.exit(
            f"pytest-xdist did not name the test groups (e.g. {ungrouped[0]}): pytest "
            f"{pytest.__version__} with this pytest-xdist ignores --dist loadgroup; install "
            "the versions pyproject.toml pins", returncode=pytest.ExitCode.USAGE_ERROR)
