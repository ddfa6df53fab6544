"""A webhook receiver in its own process on a free loopback port, for the webhook tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ingestion_assets_tests.e2e.harness import REPO_ROOT, free_port, stop_group, wait_for_http

#: Secrets of the test source (test values).
SECRETS = {
    "HOOK_STRIPE_SECRET": "whsec_test_current",
    "HOOK_STRIPE_SECRET_OLD": "whsec_test_previous",
    "HOOK_SHOPIFY_SECRET": "shpss_test_secret",
    "HOOK_GITHUB_SECRET": "gh-test-secret",
    "HOOK_HMAC_SECRET": "generic-test-secret",
}

HOOKS_YAML = """
sources:
  - name: hooks
    base_url: http://127.0.0.1:9/hooks
    endpoints:
      - name: stripe
        path: /stripe
        primary_key: id
        webhook:
          style: stripe
          secrets: [{env: HOOK_STRIPE_SECRET}, {env: HOOK_STRIPE_SECRET_OLD}]
          object_path: data.object
      - name: shopify
        path: /shopify
        primary_key: id
        webhook: {style: shopify, secrets: [{env: HOOK_SHOPIFY_SECRET}]}
      - name: github
        path: /github
        primary_key: id
        webhook: {style: github, secrets: [{env: HOOK_GITHUB_SECRET}], object_path: issue}
      - name: generic
        path: /generic
        primary_key: id
        webhook:
          style: hmac
          header: X-Signature
          encoding: base64
          prefix: "v1="
          secrets: [{env: HOOK_HMAC_SECRET}]
          time_path: occurred_at
          max_body_bytes: 4096
"""


class Receiver:
    """``python -m ingestion_assets.webhooks`` as a subprocess; restartable on its port."""

    def __init__(self, folder: Path, sources: str | Path | None = None,
                 env: dict[str, str] | None = None, spool: Path | None = None,
                 args: list[str] | None = None):
        self.args = list(args or [])
        self.folder = folder
        self.spool = spool or folder / "spool.sqlite3"
        if sources is None:
            sources = folder / "hooks.yaml"
            Path(sources).write_text(HOOKS_YAML)
        self.sources = str(sources)
        self.env = {**os.environ, **SECRETS, **(env or {})}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "receiver.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Receiver:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingestion_assets.webhooks", "--port", str(self.port),
             "--spool", str(self.spool), "--sources", self.sources, *self.args],
            cwd=REPO_ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_http(self.url + "/health", 60, self.proc)
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
            self.proc = None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def stripe_events(count: int, start_epoch: int, spread_seconds: int) -> list[tuple[str, bytes]]:
    """``count`` Stripe-style events ``(id, body)`` dated over ``spread_seconds``."""
    import orjson

    events = []
    for i in range(count):
        event_id = f"evt_bulk_{i:07d}"
        created = start_epoch + (i * spread_seconds) // max(count, 1)
        events.append((event_id, orjson.dumps({
            "id": event_id, "type": "charge.updated", "created": created,
            "data": {"object": {"id": f"ch_{i:07d}", "amount": i, "created": created}},
        })))
    return events


def stripe_signature(body: bytes, secret: str) -> dict[str, str]:
    import hashlib
    import hmac
    import time

    t = str(int(time.time()))
    mac = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={t},v1={mac}", "Content-Type": "application/json"}


def send_concurrently(url: str, events: list[tuple[str, bytes]], senders: int, secret: str,
                      deadline_seconds: float = 300) -> dict[str, int]:
    """Posts every event from ``senders`` threads, each retrying a delivery until it gets a
    2xx (like a vendor: any other answer, or none, is retried after a short wait).

    Returns counts: ``accepted`` (2xx answers), ``retries``, ``unsent`` (gave up at the
    deadline).
    """
    import threading
    import time

    import requests

    counts = {"accepted": 0, "retries": 0, "unsent": 0}
    lock = threading.Lock()
    stop_at = time.monotonic() + deadline_seconds

    def run(share: list[tuple[str, bytes]]) -> None:
        session = requests.Session()
        accepted = retries = unsent = 0
        for _, body in share:
            while True:
                try:
                    r = session.post(url, data=body, headers=stripe_signature(body, secret),
                                     timeout=10)
                    if 200 <= r.status_code < 300:
                        accepted += 1
                        break
                except requests.RequestException:
                    session.close()
                    session = requests.Session()
                if time.monotonic() > stop_at:
                    unsent += 1
                    break
                retries += 1
                time.sleep(0.05)
        session.close()
        with lock:
            counts["accepted"] += accepted
            counts["retries"] += retries
            counts["unsent"] += unsent

    threads = [threading.Thread(target=run, args=(events[i::senders],)) for i in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts
