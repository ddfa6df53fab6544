"""Does one step cost about as long as its fetch? Fetch, normalize and the one step, side by side.

    python bench/overlap.py                          # 50k records, pages of 1,000, 20 ms latency
    python bench/overlap.py --records 100000 --latency-ms 50

One demo API process (``crm /marketing/v3/emails``, offset pagination with a total, the same
endpoint and YAML as ``bench/run.py``) answers three measurements made one after the other
in this process, each the best of ``--repeat`` rounds:

1. **fetch**: the endpoint's pages through `ApiResource.fetch_pages`, parsed and dropped
   (what the API side of the step costs);
2. **normalize**: ``rebuild_from_raw`` of the stored pages (the table side, no API call);
3. **one step**: ``dg.materialize`` of the endpoint (fetch, raw archive and table together).

The two materializations are timed by their step's own duration (Dagster's STEP_SUCCESS
event), after one untimed warm-up run, so the run's start-up is in neither.

``one_step_vs_sum`` near 1 means the two sides ran one after the other; near
``fetch_share`` (fetch / sum) means the normalizer worked while the fetch waited on the API.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import DemoServer, bench_source  # noqa: E402


def best(rounds: int, fn) -> float:
    """The shortest of ``rounds`` calls; ``fn`` returns its own seconds, or None to be timed."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        seconds = fn()
        times.append(seconds if seconds is not None else time.perf_counter() - started)
    return min(times)


def measure(url: str, workdir: Path, rounds: int) -> dict[str, float]:
    import dagster as dg

    from ingestion_assets.definitions import build_definitions
    from ingestion_assets.factory import api_resource_key, step_name
    from ingestion_assets.partitions import partition_request, partitions_def

    source = bench_source(url, workdir)
    (endpoint,) = source.endpoints
    defs = build_definitions([source], str(workdir / "data"))
    assets = list(defs.assets or [])
    api = defs.resources[api_resource_key(source)]
    request = partition_request(endpoint, partitions_def(source, endpoint), None)

    def fetch() -> None:
        records = sum(len(page.records) for page in api.fetch_pages(endpoint, request))
        assert records > 0

    def materialize(run_config: dict | None = None):
        """The step's own duration (Dagster's STEP_SUCCESS), without the run's start-up."""
        def go() -> float:
            with dg.DagsterInstance.ephemeral() as instance:
                result = dg.materialize(
                    assets, resources=defs.resources, instance=instance, run_config=run_config
                )
                assert result.success
                (done,) = [e for e in result.all_events if e.is_step_success]
                return done.event_specific_data.duration_ms / 1000
        return go

    rebuild = {"ops": {step_name(source, endpoint): {"config": {"rebuild_from_raw": True}}}}
    materialize()()  # warm-up (imports, first connections); stores the pages the rebuild reads
    one_step = best(rounds, materialize())
    fetch_s = best(rounds, fetch)
    normalize_s = best(rounds, materialize(rebuild))
    total = fetch_s + normalize_s
    return {
        "fetch_s": round(fetch_s, 3),
        "normalize_s": round(normalize_s, 3),
        "one_step_s": round(one_step, 3),
        "one_step_vs_sum": round(one_step / total, 3),
        "one_step_vs_fetch": round(one_step / fetch_s, 3),
        "fetch_share": round(fetch_s / total, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, DemoServer(args.records, args.latency_ms) as api:
        result = measure(api.url, Path(tmp), args.repeat)
    result.update(records=args.records, latency_ms=args.latency_ms)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
