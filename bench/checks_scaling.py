"""How long the checks of one partition take with 1 vs hundreds of materialized partitions.

The checks read materialization metadata from the instance's event log (a few records,
whatever the asset's size) and never the data of other partitions (``uniqueness`` reads the
key sketches of at most 2 x ``partitions`` neighbours), so the time to check
one partition should not grow with the number of partitions. This script measures it:

1. starts the demo API (seed 7, clock frozen at 2025-03-01);
2. on a SQLite instance on disk (as ``dagster dev`` uses), materializes ``payments/refunds``
   partitioned *hourly* — once just the last partition, once the last ``N`` partitions (one
   single-run backfill, checks included);
3. re-runs only the checks of the last partition, several times, and reports the median
   time of (a) the check evaluation itself and (b) the whole check run through Dagster.

Run: ``.venv/bin/python bench/checks_scaling.py [--partitions 20 500] [--repeat 7]``
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import statistics
import tempfile
import time
import warnings

import dagster as dg

from ingestion_assets.checks import (
    CONTRACT,
    ROW_COUNT,
    SCHEMA_DRIFT,
    UNIQUENESS,
    WINDOW,
    evaluate_partition,
)
from ingestion_assets.definitions import build_definitions
from ingestion_assets.demo_api import DemoApi, DemoConfig, demo_env
from ingestion_assets.specs import Endpoint, load_sources

warnings.simplefilter("ignore")
NAMES = [ROW_COUNT, SCHEMA_DRIFT, CONTRACT, WINDOW, UNIQUENESS]
LAST = dt.datetime(2025, 2, 28, 23, tzinfo=dt.timezone.utc)


def _source():
    payments = {s.name: s for s in load_sources()}["payments"]
    refunds = next(e for e in payments.endpoints if e.name == "refunds")
    hourly = Endpoint.model_validate({
        **refunds.model_dump(by_alias=True),
        "partitioning": {"type": "hourly", "start": "2025-01-01-00:00"},
        "automation": {},
    })
    return payments.model_copy(update={"endpoints": [hourly]})


def _key(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d-%H:%M")


def materialized(instance, defs, partitions: int) -> None:
    """The last ``partitions`` hourly partitions, in one single-run backfill with checks."""
    table_key = dg.AssetKey(["payments", "refunds"])
    first = _key(LAST - dt.timedelta(hours=partitions - 1))
    tags = {"dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": _key(LAST)}
    result = dg.materialize([*defs.assets, *defs.asset_checks], resources=defs.resources,
                            instance=instance, tags=tags)
    assert result.success
    count = len({e.partition for e in result.get_asset_materialization_events()
                 if e.asset_key == table_key})
    assert count == partitions, count


def check_once(instance, defs, source) -> tuple[float, float]:
    """Seconds for (evaluating the checks of the last partition, a check-only run of it)."""
    last = _key(LAST)
    start = time.perf_counter()
    results = list(evaluate_partition(instance, source, source.endpoints[0], last, NAMES))
    evaluated = time.perf_counter() - start
    assert all(r.passed for r in results), [r.description for r in results]
    start = time.perf_counter()
    run = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        selection=dg.AssetSelection.checks_for_assets(dg.AssetKey(["payments", "refunds"])),
        resources=defs.resources, instance=instance,
        tags={"dagster/partition": last},  # (partition_key= refuses a checks-only selection)
    )
    ran = time.perf_counter() - start
    assert run.success and len(run.get_asset_check_evaluations()) == len(NAMES)
    return evaluated, ran


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, nargs="+", default=[20, 500],
                        help="materialized partition counts compared with 1")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    for name, value in demo_env().items():
        os.environ[name] = value
    sizes = [1, *args.partitions]
    timings: dict[int, list[tuple[float, float]]] = {n: [] for n in sizes}
    with DemoApi(DemoConfig(seed=7, now="2025-03-01T00:00:00Z", rate_limit=False)).serve() as api, \
            contextlib.ExitStack() as stack:
        os.environ["DEMO_API_URL"] = api.url
        source = _source()
        setups = {}
        for n in sizes:
            defs = build_definitions([source], stack.enter_context(tempfile.TemporaryDirectory()))
            instance = stack.enter_context(dg.instance_for_test())
            materialized(instance, defs, n)
            setups[n] = (instance, defs)
        # Interleaved, so that a busy machine slows every size alike.
        for _ in range(args.repeat):
            for n in sizes:
                timings[n].append(check_once(*setups[n], source))
    print(f"{'partitions':>10} {'check evaluation (ms)':>22} {'check-only run (ms)':>20}")
    for n in sizes:
        evaluate_s = statistics.median(t[0] for t in timings[n])
        run_s = statistics.median(t[1] for t in timings[n])
        print(f"{n:>10} {evaluate_s * 1000:>22.1f} {run_s * 1000:>20.1f}")


if __name__ == "__main__":
    main()
