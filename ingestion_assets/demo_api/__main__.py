"""``python -m ingestion_assets.demo_api``: run the demo API on 127.0.0.1."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys

from .config import DEFAULT_START, DemoConfig
from .credentials import ENV_VARS
from .faults import FaultError, parse_cli_fault
from .server import DemoApi


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ingestion_assets.demo_api",
        description="Local demo API imitating Stripe, Shopify, HubSpot and GitHub (127.0.0.1 only).",
    )
    p.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0 = any free port)")
    p.add_argument("--seed", type=int, default=42, help="data seed (same seed, same data)")
    p.add_argument("--now", default=None, help="freeze the data clock at this ISO time (default: live)")
    p.add_argument("--start", default=DEFAULT_START, help="time of the first record (ISO)")
    p.add_argument("--records", type=int, default=None,
                   help="exactly N records per list endpoint, spread over [start, now)")
    p.add_argument("--max-page-size", type=int, default=None,
                   help="raise every endpoint's page-size cap to at least this (benchmarks)")
    p.add_argument("--no-rate-limit", action="store_true", help="disable rate limiting")
    p.add_argument("--rate-limit-scale", type=float, default=1.0,
                   help="multiply every source's rate limit by F")
    p.add_argument("--token-ttl", type=int, default=1800, help="crm access-token lifetime (s)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="added to every response")
    p.add_argument("--fault", action="append", default=[], metavar="KIND[:k=v,...]",
                   help="inject a fault from the start (repeatable), "
                        "e.g. rate_limit:source=payments,count=3,retry_after=0")
    p.add_argument("--webhooks-to", default=None, metavar="URL",
                   help="post signed vendor-style webhook events for mutated records to the "
                        "receiver at URL, e.g. http://127.0.0.1:8766")
    p.add_argument("--print-env", action="store_true",
                   help="print shell exports of the demo credentials (and DEMO_API_URL) and exit: "
                        'eval "$(python -m ingestion_assets.demo_api --print-env)"')
    return p


def print_env(port: int) -> None:
    """Shell exports of the demo credentials; demo values, not secrets."""
    env = dict(ENV_VARS, DEMO_API_URL=f"http://127.0.0.1:{port}")
    for name, value in env.items():
        print(f"export {name}={shlex.quote(value)}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.print_env:
        print_env(args.port)
        return 0
    try:
        faults = [parse_cli_fault(f) for f in args.fault]
    except FaultError as exc:
        print(f"error: --fault: {exc}", file=sys.stderr)
        return 2
    config = DemoConfig(
        seed=args.seed,
        now=args.now,
        start=args.start,
        records=args.records,
        port=args.port,
        max_page_size=args.max_page_size,
        rate_limit=not args.no_rate_limit,
        rate_limit_scale=args.rate_limit_scale,
        token_ttl=args.token_ttl,
        latency_ms=args.latency_ms,
        faults=faults,
        webhooks_to=args.webhooks_to,
    )
    api = DemoApi(config).start()
    # SIGTERM (kill PID) stops as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    print(f"demo API listening on {api.url}", flush=True)
    for name, src in api.sources.items():
        print(f"  {name:<9} {api.url}{src.base_path}", flush=True)
    try:
        api.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        api.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
