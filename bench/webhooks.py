"""Webhook receiver throughput: events per second accepted durably, with 8 senders.

Starts ``python -m ingestion_assets.webhooks`` on a free loopback port with a Stripe-style
test endpoint and a fresh spool (SQLite WAL, synchronous=FULL: an answered event is fsynced),
posts N signed events from S concurrent senders (each a keep-alive ``requests.Session``,
retrying any non-2xx), checks that the spool holds exactly N events, and prints the rate.

    python bench/webhooks.py                      # 5000 events, 8 senders
    python bench/webhooks.py --events 20000 --senders 16
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingestion_assets.webhooks.spool import Spool  # noqa: E402
from ingestion_assets_tests.webhooks.support import (  # noqa: E402
    SECRETS,
    Receiver,
    send_concurrently,
    stripe_events,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=5000)
    p.add_argument("--senders", type=int, default=8)
    p.add_argument("--runs", type=int, default=1)
    args = p.parse_args(argv)
    rates = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="webhooks-bench-") as folder:
            receiver = Receiver(Path(folder)).start()
            try:
                events = stripe_events(args.events, int(time.time()) - 60, 60)
                url = f"{receiver.url}/webhooks/hooks/stripe"
                started = time.perf_counter()
                counts = send_concurrently(url, events, args.senders,
                                           SECRETS["HOOK_STRIPE_SECRET"])
                elapsed = time.perf_counter() - started
                stored = Spool(receiver.spool).count("hooks", "stripe")
            finally:
                receiver.stop()
        if stored != args.events or counts["accepted"] != args.events:
            print(f"FAILED: {counts['accepted']} accepted, {stored} stored of {args.events}")
            return 1
        rates.append(args.events / elapsed)
        print(f"run {run + 1}: {args.events} events, {args.senders} senders, "
              f"{elapsed:.2f} s, {rates[-1]:.0f} events/s accepted durably "
              f"(retries {counts['retries']})")
    print(json.dumps({"events": args.events, "senders": args.senders,
                      "events_per_s": round(max(rates), 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
