"""``python -m ingestion_assets.webhooks``: run the webhook receiver (127.0.0.1 by default)."""

from __future__ import annotations

import argparse
import logging
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ingestion_assets.webhooks",
        description="Receive signed webhooks for endpoints declaring `webhook:` and spool "
        "them durably. Listens on 127.0.0.1 unless --host says otherwise; in production put "
        "it behind a TLS reverse proxy (docs/webhooks.md).",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default 127.0.0.1; never a wildcard by default)")
    p.add_argument("--port", type=int, default=8766)
    p.add_argument("--spool", default=None,
                   help="SQLite spool file (default $INGESTION_WEBHOOK_SPOOL, else "
                        "<data dir>/webhooks/spool.sqlite3)")
    p.add_argument("--sources", default=None,
                   help="YAML files or folders (default $INGESTION_SOURCES or the demo sources)")
    p.add_argument("--read-timeout", type=float, default=30.0,
                   help="seconds to receive a whole request body (408 after)")
    p.add_argument("--max-connections", type=int, default=256,
                   help="concurrent connections; more are answered 503 (the sender retries)")
    p.add_argument("--log-level", default="info")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import uvicorn

    from ingestion_assets.specs import SpecError, load_sources
    from ingestion_assets.webhooks.app import create_app, webhook_endpoints
    from ingestion_assets.webhooks.spool import default_spool_path

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        sources = load_sources(args.sources)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    spool = args.spool or str(default_spool_path())
    routes = webhook_endpoints(sources)
    if not routes:
        print("error: no endpoint declares `webhook:`; nothing to receive", file=sys.stderr)
        return 2
    print(f"webhook receiver on http://{args.host}:{args.port}  spool: {spool}", flush=True)
    for source, endpoint in sorted(routes):
        print(f"  POST /webhooks/{source}/{endpoint}", flush=True)
    uvicorn.run(create_app(sources, spool, read_timeout=args.read_timeout), host=args.host,
                port=args.port, log_level=args.log_level, access_log=False, lifespan="on",
                limit_concurrency=args.max_connections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
