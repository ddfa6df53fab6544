"""Ingestion speed and memory, side by side in one run: the ceiling, this project, and dlt.

    python bench/run.py              # 100k and 1M records, pages of 1,000, + latency variant
    python bench/run.py --quick      # a few thousand records (the smoke test runs this)
    python bench/run.py --sizes 200000 --skip-dlt

For each size N the bundled demo API is started as its own process on a free loopback port
(``python -m ingestion_assets.demo_api --records N --max-page-size 1000 --no-rate-limit``),
and each variant runs in its own fresh Python process against the same endpoint, the
HubSpot-style ``crm /marketing/v3/emails`` (OAuth2 client credentials, offset pagination
with a declared ``total``), all N records as one partition:

1. **ceiling** - the least work a client can do: one pooled ``requests.Session``, every page
   fetched in turn and parsed with orjson, nothing stored;
2. **ours** - ``dg.materialize`` of the endpoint's one step: raw asset (zstd page archive + manifest)
   and table asset (Parquet) in process, from a YAML written by the bench to a temp folder
   (``INGESTION_SOURCES``), ``limit: 1000``, workers 1 like the other two;
3. **dlt** - dlt's ``rest_api`` source writing Parquet to a local ``filesystem`` destination
   (telemetry off, everything under a temp folder).

Peak memory is the kernel's high-water mark of each variant's process (``ru_maxrss`` from
``os.wait4`` on that child): exact, per variant, and nothing a sampler could miss between
two samples. Throughput is records / wall time of the work itself (imports and interpreter
start excluded, the same for all three).

The demo API is a Python server sharing this machine's cores with the client, so absolute
figures are bounded by it; the ceiling is measured against the same server, which keeps the
ratios fair.

The latency variant reuses ``bench/http_workers.py``: the demo API adds 50 ms to every
response and the same offset endpoint is fetched with 1 and with 8 workers.

The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PAGE_SIZE = 1000
SEED = 7
NOW = "2025-03-01T00:00:00Z"
ENDPOINT_PATH = "/marketing/v3/emails"
CRM_PREFIX = "/crm-api"
VARIANTS = ("ceiling", "ours", "dlt")  # per size; "backfill" runs once (bench/backfill.py)


# -- the demo API as a subprocess ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DemoServer:
    """``python -m ingestion_assets.demo_api`` on a free loopback port, stopped by PID."""

    def __init__(
        self, records: int | None, latency_ms: float = 0.0, max_page_size: int = PAGE_SIZE,
        extra: list[str] | None = None,
    ):
        """``records`` None: the demo data as shipped, rate limits on; ``extra``: more
        command-line options of the demo API."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [
            sys.executable, "-m", "ingestion_assets.demo_api", "--port", str(self.port),
            "--seed", str(SEED), "--now", NOW,
        ]
        if records is not None:
            self.cmd += ["--records", str(records), "--max-page-size", str(max_page_size),
                         "--no-rate-limit"]
        if latency_ms:
            self.cmd += ["--latency-ms", str(latency_ms)]
        self.cmd += extra or []
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> DemoServer:
        self.proc = subprocess.Popen(
            self.cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        line = self.proc.stdout.readline()  # "demo API listening on ..." once it accepts
        if "listening" not in line:
            self.stop()
            raise RuntimeError(f"demo API did not start: {line!r}")
        # Drain its output in the background so the pipe never fills.
        threading_drain(self.proc.stdout)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def threading_drain(stream: Any) -> None:
    import threading

    threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()


# -- running one variant in its own process --------------------------------------------------


def run_variant(variant: str, url: str, records: int, workdir: Path) -> dict[str, Any]:
    """Run one variant in a fresh process; its result plus its kernel-reported peak RSS."""
    out = workdir / f"{variant}.json"
    env = dict(os.environ, RUNTIME__DLTHUB_TELEMETRY="false", PYTHONPATH=str(ROOT))
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--variant", variant, "--url", url,
        "--records", str(records), "--workdir", str(workdir), "--result", str(out),
    ]
    log = workdir / f"{variant}.log"
    with log.open("wb") as sink:  # Dagster's and dlt's own logs, shown only on failure
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.stderr.write(log.read_text(errors="replace")[-5000:])
        raise RuntimeError(f"variant {variant} failed with exit code {proc.returncode}")
    result = json.loads(out.read_text())
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # Linux: kilobytes
    # CPU seconds of the whole variant process (imports included): what it costs the machine.
    result["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    return result


def crm_credentials() -> dict[str, str]:
    from ingestion_assets.demo_api.credentials import CRM_CLIENT_ID, CRM_CLIENT_SECRET

    return {"client_id": CRM_CLIENT_ID, "client_secret": CRM_CLIENT_SECRET}


def variant_ceiling(url: str, records: int, workdir: Path) -> dict[str, Any]:
    import orjson
    import requests

    base = url + CRM_PREFIX
    session = requests.Session()
    token = session.post(
        base + "/oauth/v1/token", data={"grant_type": "client_credentials", **crm_credentials()},
        timeout=30,
    ).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    started = time.perf_counter()
    offset, total, count = 0, None, 0
    while total is None or offset < total:
        resp = session.get(
            base + ENDPOINT_PATH, params={"offset": offset, "limit": PAGE_SIZE}, timeout=60
        )
        resp.raise_for_status()
        body = orjson.loads(resp.content)
        total, n = body["total"], len(body["results"])
        if n == 0:
            break
        count += n
        offset += n
    return {"seconds": time.perf_counter() - started, "records": count}


BENCH_YAML = """\
sources:
  - name: crm
    base_url: {base}
    auth:
      type: oauth2_client_credentials
      token_url: {base}/oauth/v1/token
      client_id: {{env: DEMO_CRM_CLIENT_ID}}
      client_secret: {{env: DEMO_CRM_CLIENT_SECRET}}
    endpoints:
      - name: emails
        path: {path}
        records_path: results
        primary_key: id
        pagination: {{type: offset, limit: {limit}, total_path: total}}
        workers: 1
        timestamp_fields: [createdAt, updatedAt]
"""


def bench_source(url: str, workdir: Path):
    """The bench's one source (``BENCH_YAML`` written under ``workdir``), loaded as a user's
    YAML is, with the demo API's credentials in the environment."""
    from ingestion_assets.demo_api.credentials import ENV_VARS
    from ingestion_assets.specs import load_sources

    os.environ.update(ENV_VARS)
    yaml_path = workdir / "sources" / "bench.yaml"
    yaml_path.parent.mkdir(exist_ok=True)
    yaml_path.write_text(
        BENCH_YAML.format(base=url + CRM_PREFIX, path=ENDPOINT_PATH, limit=PAGE_SIZE)
    )
    os.environ["INGESTION_SOURCES"] = str(yaml_path.parent)
    (source,) = load_sources(os.environ["INGESTION_SOURCES"])
    return source


def variant_ours(url: str, records: int, workdir: Path) -> dict[str, Any]:
    # The package first, as in a Dagster process (the code location is imported before
    # anything reads a table): it chooses Arrow's allocator before pyarrow is imported.
    from ingestion_assets.definitions import build_definitions  # isort: skip

    import dagster as dg
    import pyarrow.parquet as pq

    data = workdir / "data"
    defs = build_definitions([bench_source(url, workdir)], str(data))
    assets = list(defs.assets or [])
    with dg.DagsterInstance.ephemeral() as instance:
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        sampler = RssSampler()
        started = time.perf_counter()
        result = dg.materialize(assets, resources=defs.resources, instance=instance)
        seconds = time.perf_counter() - started
        sampler.stop()
        if not result.success:
            raise RuntimeError("materialization failed")
        steps, step_rss, began = {}, {}, {}
        for entry in instance.all_logs(result.run_id):
            event = entry.dagster_event
            if event is None or not event.step_key:
                continue
            if event.event_type_value == "STEP_START":
                began[event.step_key] = entry.timestamp
            elif event.is_step_success:
                steps[event.step_key] = round(event.event_specific_data.duration_ms / 1000, 3)
                step_rss[event.step_key] = sampler.peak_mb(began[event.step_key], entry.timestamp)
    files = sorted((data / "crm" / "emails").rglob("*.parquet"))
    count = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    raw_bytes = sum(f.stat().st_size for f in (data / "raw").rglob("*") if f.is_file())
    return {
        "seconds": seconds, "records": count, "steps_s": steps, "raw_archive_bytes": raw_bytes,
        "rss_before_run_mb": round(rss_before, 1), "step_peak_rss_mb": step_rss,
        "pandas_loaded": "pandas" in sys.modules,
    }


class RssSampler:
    """Resident memory every 20 ms (only to tell which step holds the peak; the peak
    itself comes from the kernel's high-water mark)."""

    def __init__(self) -> None:
        import threading

        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with open("/proc/self/statm") as statm:
            while not self._stop.wait(0.02):
                statm.seek(0)
                self.samples.append((time.time(), int(statm.read().split()[1]) * self._page))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak_mb(self, start: float, end: float) -> float:
        inside = [rss for t, rss in self.samples if start <= t <= end]
        return round(max(inside) / 2**20, 1) if inside else 0.0


def variant_dlt(url: str, records: int, workdir: Path) -> dict[str, Any]:
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    os.environ["DLT_DATA_DIR"] = str(workdir / "dlt_data")
    os.environ["DLT_PROJECT_DIR"] = str(workdir)
    import dlt
    import pyarrow.parquet as pq
    from dlt.sources.helpers.rest_client.auth import OAuth2ClientCredentials
    from dlt.sources.helpers.rest_client.paginators import OffsetPaginator
    from dlt.sources.rest_api import rest_api_source

    base = url + CRM_PREFIX
    creds = crm_credentials()
    source = rest_api_source(
        {
            "client": {
                "base_url": base,
                "auth": OAuth2ClientCredentials(
                    access_token_url=base + "/oauth/v1/token",
                    client_id=creds["client_id"],
                    client_secret=creds["client_secret"],
                ),
                "paginator": OffsetPaginator(limit=PAGE_SIZE, total_path="total"),
            },
            "resources": [
                {
                    "name": "emails",
                    "endpoint": {"path": ENDPOINT_PATH.lstrip("/"), "data_selector": "results"},
                    "primary_key": "id",
                    "write_disposition": "replace",
                }
            ],
        }
    )
    out = workdir / "dlt_out"
    pipeline = dlt.pipeline(
        pipeline_name="bench_dlt",
        destination=dlt.destinations.filesystem(bucket_url=out.as_uri()),
        dataset_name="crm",
        pipelines_dir=str(workdir / "dlt_pipelines"),
    )
    started = time.perf_counter()
    pipeline.run(source, loader_file_format="parquet")
    seconds = time.perf_counter() - started
    files = sorted((out / "crm" / "emails").rglob("*.parquet"))
    count = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return {"seconds": seconds, "records": count}


def child_main(args: argparse.Namespace) -> None:
    if args.variant == "backfill":
        from backfill import variant_backfill

        result = variant_backfill(args.url, Path(args.workdir), days=args.records)
        Path(args.result).write_text(json.dumps(result))
        return
    fn = {"ceiling": variant_ceiling, "ours": variant_ours, "dlt": variant_dlt}[args.variant]
    result = fn(args.url, args.records, Path(args.workdir))
    if result["records"] != args.records:
        raise SystemExit(
            f"{args.variant}: {result['records']} records stored, expected {args.records}"
        )
    result["records_per_s"] = round(result["records"] / result["seconds"])
    result["seconds"] = round(result["seconds"], 3)
    Path(args.result).write_text(json.dumps(result))


# -- one size: the three variants against one server ---------------------------------------


def bench_size(
    records: int, variants: list[str], keep: bool, repeat: int = 1
) -> dict[str, dict[str, Any]]:
    """Every variant against one server; with ``repeat`` > 1, rounds in turn, best time kept
    (a machine shared with other work slows whichever variant happens to run then)."""
    results: dict[str, dict[str, Any]] = {}
    with DemoServer(records) as server:
        for round_ in range(repeat):
            for variant in variants:
                workdir = Path(tempfile.mkdtemp(prefix=f"bench-{variant}-"))
                try:
                    r = run_variant(variant, server.url, records, workdir)
                finally:
                    if not keep:
                        shutil.rmtree(workdir, ignore_errors=True)
                best = results.get(variant)
                peak = max(r["peak_rss_mb"], best["peak_rss_mb"] if best else 0)
                if best is None or r["seconds"] < best["seconds"]:
                    results[variant] = best = r
                best["peak_rss_mb"] = peak  # the highest of all rounds
                extra = f"  steps {r['steps_s']}" if "steps_s" in r else ""
                tag = f" (round {round_ + 1})" if repeat > 1 else ""
                print(
                    f"  {variant:<8} {r['records']:>9,} records  {r['seconds']:>8.2f} s  "
                    f"{r['records_per_s']:>9,} records/s  peak RSS {r['peak_rss_mb']:>6.1f} MB"
                    f"  cpu {r['cpu_s']:.1f} s{extra}{tag}",
                    flush=True,
                )
    return results


def bench_latency(records: int, page_size: int, latency_ms: float, runs: int) -> dict[str, Any]:
    """1 vs 8 workers on the offset endpoint with a declared total, through the HTTP core."""
    from http_workers import crm_client_at, fetch_emails

    with DemoServer(records, latency_ms=latency_ms) as server:
        client = crm_client_at(server.url + CRM_PREFIX, crm_credentials())
        client.get_json(ENDPOINT_PATH, {"limit": 1})  # token + warm connection
        times: dict[int, list[float]] = {1: [], 8: []}
        for _ in range(runs):
            for workers in (1, 8):
                elapsed, count, stats = fetch_emails(client, workers, page_size)
                if count != records or stats["declared_total"] != records:
                    raise SystemExit(f"incomplete fetch with workers={workers}: {count} records")
                times[workers].append(elapsed)
        client.close()
    one, eight = min(times[1]), min(times[8])
    return {
        "records": records, "page_size": page_size, "latency_ms": latency_ms,
        "workers_1_s": round(one, 3), "workers_8_s": round(eight, 3),
        "speedup": round(one / eight, 2),
    }


def bench_backfill(days: int) -> dict[str, Any]:
    """The ``backfill`` variant (bench/backfill.py) in its own process."""
    from backfill import DAYS, SERVER_ARGS

    with DemoServer(None, extra=SERVER_ARGS) as server:
        workdir = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
        try:
            result = run_variant("backfill", server.url, days or DAYS, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"  {result['partitions']} partitions, {result['requests']} requests in "
        f"{result['seconds']:.2f} s (floor {result['floor_s']:.2f} s: "
        f"{result['backfill_vs_floor']}x), peak {result['peak_in_flight']} in flight, "
        f"steps {result['steps_s']}, peak RSS {result['peak_rss_mb']} MB",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few thousand records only")
    parser.add_argument("--sizes", type=int, nargs="+", help="record counts (default 100k 1M)")
    parser.add_argument("--variants", nargs="+", choices=(*VARIANTS, "backfill"),
                        default=[*VARIANTS, "backfill"])
    parser.add_argument("--skip-dlt", action="store_true")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--latency-records", type=int, default=4000)
    parser.add_argument("--latency-page-size", type=int, default=100)
    parser.add_argument("--latency-runs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1, help="rounds per size, best time kept")
    parser.add_argument("--keep", action="store_true", help="keep the variants' output folders")
    # internal: one variant in this process
    parser.add_argument("--variant", choices=(*VARIANTS, "backfill"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--records", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        child_main(args)
        return

    sizes = args.sizes or ([2_000, 5_000] if args.quick else [100_000, 1_000_000])
    variants = [v for v in args.variants if not (args.skip_dlt and v == "dlt")]
    if args.quick:
        args.latency_records, args.latency_page_size, args.latency_runs = 800, 100, 1
    print(
        f"ingestion benchmark: crm {ENDPOINT_PATH} (offset pages of {PAGE_SIZE}), "
        f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}"
    )
    print(
        "note: the demo API is a Python server sharing these cores with the client; the "
        "ceiling runs against the same server, so the ratios are fair.",
        flush=True,
    )
    load_before = os.getloadavg()[0]
    by_size: dict[int, dict[str, dict[str, Any]]] = {}
    size_variants = [v for v in variants if v in VARIANTS]
    summary: dict[str, Any] = {}
    if size_variants:
        for n in sizes:
            print(f"{n:,} records:", flush=True)
            by_size[n] = bench_size(n, size_variants, args.keep, args.repeat)
        summary = size_summary(by_size, sizes, latency_variant(args))
    if "backfill" in variants:
        from backfill import DAYS

        print(f"backfill: {3 if args.quick else DAYS} daily partitions in one run, cursor "
              "pages of 100, API latency 200 ms, 100 req/s, max_concurrency 8:", flush=True)
        backfill = bench_backfill(3 if args.quick else DAYS)
        summary["backfill_vs_floor"] = backfill["backfill_vs_floor"]
        summary["backfill"] = backfill
    summary.update({
        "repeat": args.repeat,
        # Other work on the machine slows the CPU-heavier variants most: read wall-clock
        # ratios together with the load and with cpu_s.
        "load_avg_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "cpus": os.cpu_count(),
        "note": "demo API is a Python server on the same cores; the ceiling uses the same server",
    })
    if max(summary["load_avg_1m"]) > (os.cpu_count() or 1):
        print(
            f"warning: load average {summary['load_avg_1m']} above {os.cpu_count()} CPUs: "
            "other work competed for the cores, wall-clock ratios are pessimistic for the "
            "CPU-heavier variants"
        )
    print(json.dumps(summary))


def latency_variant(args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"latency: {args.latency_ms:g} ms per page, {args.latency_records:,} records in pages "
        f"of {args.latency_page_size}, workers 1 vs 8 (best of {args.latency_runs}):",
        flush=True,
    )
    latency = bench_latency(
        args.latency_records, args.latency_page_size, args.latency_ms, args.latency_runs
    )
    print(
        f"  workers=1 {latency['workers_1_s']:.2f} s, workers=8 {latency['workers_8_s']:.2f} s: "
        f"{latency['speedup']:.2f}x"
    )
    return latency


def size_summary(
    by_size: dict[int, dict[str, dict[str, Any]]], sizes: list[int], latency: dict[str, Any]
) -> dict[str, Any]:
    """The figures of the size variants: ratios at the largest size, memory growth."""
    big, small = max(sizes), min(sizes)
    top = by_size[big]

    def ratio(a: str, b: str) -> float | None:
        if a in top and b in top:
            return round(top[a]["records_per_s"] / top[b]["records_per_s"], 3)
        return None

    ours_small = by_size[small].get("ours", {}).get("peak_rss_mb")
    ours_big = top.get("ours", {}).get("peak_rss_mb")
    summary = {
        "records": big,
        "ours_vs_ceiling": ratio("ours", "ceiling"),
        "ours_vs_dlt": ratio("ours", "dlt"),
        "peak_rss_mb": ours_big,
        "rss_growth_100k_to_1m": (
            round(ours_big / ours_small - 1, 3) if ours_small and ours_big else None
        ),
        "workers8_vs_1": latency["speedup"],
        "records_per_s": {v: r["records_per_s"] for v, r in top.items()},
        "peak_rss_mb_by_variant": {
            str(n): {v: r["peak_rss_mb"] for v, r in res.items()} for n, res in by_size.items()
        },
        "ours_steps_s": top.get("ours", {}).get("steps_s"),
        "cpu_s": {v: r["cpu_s"] for v, r in top.items()},
        "ours_step_peak_rss_mb": top.get("ours", {}).get("step_peak_rss_mb"),
        "sizes": sizes,
        "latency": latency,
    }
    print(
        f"ours/ceiling {summary['ours_vs_ceiling']}, ours/dlt {summary['ours_vs_dlt']}, "
        f"ours peak RSS {ours_big} MB at {big:,} (growth from {small:,}: "
        f"{summary['rss_growth_100k_to_1m']}), workers 8 vs 1: {latency['speedup']}x"
    )
    return summary


if __name__ == "__main__":
    main()
