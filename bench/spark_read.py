"""A 30-day Spark read of a cursor endpoint with 1 task and with 4, side by side.

    python bench/spark_read.py                      # 12,000 records, 200 ms latency, 2 rounds
    python bench/spark_read.py --latency-ms 50 --rounds 3

One demo API process (``payments /v1/charges``: daily partitions, cursor pages of 100, the
bundled YAML) with ``--latency-ms`` on every response. Each configuration runs in its own
process with its own ``local[N]`` Spark session (N = tasks at once, ``concurrency`` = N so
the source's 20 requests/s are shared by the N tasks); a first, untimed read warms the
session, then each round times ``spark.read.format("ingestion_assets")...load()`` written to
Spark's ``noop`` sink (every partition fetched, nothing kept). The rounds of the two
configurations alternate; the best of each is reported, and the ratio 1 task / N tasks.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import DemoServer  # noqa: E402

START, END = "2025-01-01", "2025-01-31"


def _sources(url: str, folder: Path) -> Path:
    from ingestion_assets.specs import DEFAULT_SOURCES_DIR

    text = (DEFAULT_SOURCES_DIR / "payments" / "defs.yaml").read_text()
    path = folder / "payments" / "defs.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace("${DEMO_API_URL:-http://127.0.0.1:8765}", url))
    return folder


def worker(tasks: int, sources: str, rounds: int) -> None:
    """Runs in a child process: one Spark session, a warm-up read, then timed reads."""
    from pyspark.sql import SparkSession

    from ingestion_assets.spark import register

    spark = (SparkSession.builder.master(f"local[{tasks}]")
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    register(spark)

    def read() -> float:
        started = time.perf_counter()
        (spark.read.format("ingestion_assets").option("sources", sources)
         .option("source", "payments").option("endpoint", "charges")
         .option("start", START).option("end", END).option("concurrency", str(tasks))
         .load().write.format("noop").mode("overwrite").save())
        return time.perf_counter() - started

    read()  # warm-up: JVM, Python workers, imports
    for _ in range(rounds):
        print(json.dumps({"seconds": read()}), flush=True)
    spark.stop()


def run(tasks: int, sources: Path, rounds: int) -> list[float]:
    from ingestion_assets.demo_api import demo_env

    env = {**os.environ, **demo_env(), "PYSPARK_PYTHON": sys.executable}
    out = subprocess.run(
        [sys.executable, __file__, "--worker", str(tasks), "--sources", str(sources),
         "--rounds", str(rounds)],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    return [json.loads(line)["seconds"] for line in out.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=12_000)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sources", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.sources, args.rounds)
    with DemoServer(args.records, args.latency_ms, max_page_size=100) as api, \
            tempfile.TemporaryDirectory() as tmp:
        sources = _sources(api.url, Path(tmp))
        one, many = [], []
        for _ in range(args.rounds):  # alternate, so both see the same machine load
            one += run(1, sources, 1)
            many += run(args.tasks, sources, 1)
    result = {
        "records": args.records, "latency_ms": args.latency_ms, "days": 30,
        "one_task_s": round(min(one), 2), f"{args.tasks}_tasks_s": round(min(many), 2),
        "speedup": round(min(one) / min(many), 2),
    }
    print(f"30-day read, 1 task: {result['one_task_s']} s; {args.tasks} tasks: "
          f"{result[f'{args.tasks}_tasks_s']} s ({result['speedup']}x)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
