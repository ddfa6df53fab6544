"""Concurrency speed-up of the HTTP core: workers=1 vs workers=8 on an offset endpoint.

Starts the bundled demo API in-process with a fixed per-request latency (50 ms by
default, standing in for a real API's server time), then fetches the same offset-paged
endpoint with a declared total (crm ``/marketing/v3/emails``) with 1 and with 8 workers,
checks that both fetches are complete, and prints the times and the ratio.

    python bench/http_workers.py                 # defaults: 4000 records, pages of 100
    python bench/http_workers.py --records 8000 --latency-ms 50 --runs 3
    python bench/http_workers.py --overhead      # also: client vs a bare requests+json loop
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402

from ingestion_assets.demo_api import DemoApi, DemoConfig  # noqa: E402
from ingestion_assets.http import ApiClient, RateLimiter, auth, paginators  # noqa: E402


def crm_client(api: DemoApi, pool_size: int = 16) -> ApiClient:
    return crm_client_at(api.base_url("crm"), api.credentials("crm"), pool_size)


def crm_client_at(base_url: str, creds: dict, pool_size: int = 16) -> ApiClient:
    """A client of the crm source at ``base_url`` (also a demo API in another process)."""
    return ApiClient(
        base_url,
        auth=auth.OAuth2ClientCredentials(
            "/oauth/v1/token", creds["client_id"], creds["client_secret"]
        ),
        rate_limiter=RateLimiter(None),
        source="crm",
        pool_size=pool_size,
    )


def fetch_emails(client: ApiClient, workers: int, page_size: int) -> tuple[float, int, dict]:
    stream = client.fetch_pages(
        "/marketing/v3/emails",
        paginator=paginators.OffsetPaginator(limit=page_size, total_path="total"),
        records_path="results",
        workers=workers,
        endpoint="emails",
    )
    started = time.perf_counter()
    records = sum(len(page.records) for page in stream)
    return time.perf_counter() - started, records, stream.stats.to_dict()


def bench_workers(args: argparse.Namespace) -> None:
    config = DemoConfig(
        seed=7,
        now="2025-03-01T00:00:00Z",
        records=args.records,
        rate_limit=False,
        latency_ms=args.latency_ms,
    )
    with DemoApi(config).serve() as api:
        client = crm_client(api)
        client.get_json("/marketing/v3/emails", {"limit": 1})  # token + warm connections
        results: dict[int, list[float]] = {1: [], 8: []}
        for _ in range(args.runs):
            for workers in (1, 8):
                elapsed, count, stats = fetch_emails(client, workers, args.page_size)
                if count != args.records or stats["declared_total"] != args.records:
                    raise SystemExit(f"incomplete fetch with workers={workers}: {count} records")
                results[workers].append(elapsed)
        client.close()
    pages = -(-args.records // args.page_size)
    one, eight = statistics.median(results[1]), statistics.median(results[8])
    print(
        f"offset endpoint, {args.records} records, {pages} pages of {args.page_size}, "
        f"{args.latency_ms:g} ms latency per request, {args.runs} run(s), median:"
    )
    print(f"  workers=1: {one:.3f} s  ({pages / one:.1f} pages/s)")
    print(f"  workers=8: {eight:.3f} s  ({pages / eight:.1f} pages/s)")
    print(f"  speed-up workers 8 vs 1: {one / eight:.2f}x")
    print(
        json.dumps(
            {
                "workers_1_s": round(one, 3),
                "workers_8_s": round(eight, 3),
                "speedup": round(one / eight, 2),
                "pages": pages,
            }
        )
    )


def bench_overhead(args: argparse.Namespace) -> None:
    """Client (workers=1) vs the simplest correct loop with requests + json, no latency."""
    records, page_size = args.overhead_records, 1000
    config = DemoConfig(
        seed=7,
        now="2025-03-01T00:00:00Z",
        records=records,
        rate_limit=False,
        max_page_size=page_size,
    )
    with DemoApi(config).serve() as api:
        client = crm_client(api)
        client.get_json("/marketing/v3/emails", {"limit": 1})
        token = client.auth._current_token()  # the bare loop reuses the client's token
        session = requests.Session()
        url = api.base_url("crm") + "/marketing/v3/emails"

        def bare() -> int:
            offset, total, count = 0, None, 0
            while total is None or offset < total:
                resp = session.get(
                    url,
                    params={"offset": offset, "limit": page_size},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                )
                resp.raise_for_status()
                body = json.loads(resp.content)
                total = body["total"]
                count += len(body["results"])
                offset += len(body["results"])
            return count

        bare_times, client_times = [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            assert bare() == records
            bare_times.append(time.perf_counter() - t)
            elapsed, count, _ = fetch_emails(client, 1, page_size)
            assert count == records
            client_times.append(elapsed)
    b, c = min(bare_times), min(client_times)
    print(f"overhead: {records} records in pages of {page_size}, best of {args.runs}:")
    print(f"  bare requests+json loop: {b:.3f} s ({records / b:,.0f} records/s)")
    print(f"  ApiClient.fetch_pages:   {c:.3f} s ({records / c:,.0f} records/s)")
    print(f"  client throughput = {b / c:.0%} of the bare loop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=4000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--overhead", action="store_true", help="also compare with a bare loop")
    parser.add_argument("--overhead-records", type=int, default=100_000)
    args = parser.parse_args()
    bench_workers(args)
    if args.overhead:
        bench_overhead(args)


if __name__ == "__main__":
    main()
