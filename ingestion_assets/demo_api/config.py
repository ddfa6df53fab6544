"""Configuration of one demo API instance."""

from __future__ import annotations

from dataclasses import dataclass, field

from .timeutil import to_epoch, wall_now

DEFAULT_START = "2025-01-01T00:00:00Z"


@dataclass
class DemoConfig:
    """How a demo API instance behaves.

    Attributes:
        seed: all data derives from it; same seed, same data.
        now: freeze the data clock (ISO string, datetime or unix seconds); None = live clock.
        start: creation time of the first record of every endpoint.
        records: give every list endpoint exactly this many records, spread over
            ``[start, now)`` (``now`` taken at startup when the clock is live). None =
            records appear at a steady per-endpoint rate from ``start``.
        host: always 127.0.0.1; the demo API never listens on other interfaces.
        port: 0 picks a free port.
        max_page_size: raises every endpoint's page-size cap to at least this (benchmarks).
        rate_limit: False disables rate limiting.
        rate_limit_scale: multiplies every source's request allowance.
        rate_limits: per-source override of the allowance (requests per the vendor's
            window/burst), e.g. ``{"payments": 5}``.
        token_ttl: lifetime in seconds of crm OAuth access tokens.
        login_token_ttl: lifetime in seconds of crm session-login tokens (the JWT ``exp``);
            ``POST /_control/settings {"login_token_ttl": 2}`` changes it at run time.
        latency_ms: added to every response.
        faults: faults active from the start (Fault objects or dicts).
        webhooks_to: base URL of a webhook receiver; records inserted or updated by
            ``mutate`` are then posted to it as signed vendor-style events.
    """

    seed: int = 42
    now: object = None
    start: object = DEFAULT_START
    records: int | None = None
    host: str = "127.0.0.1"
    port: int = 0
    max_page_size: int | None = None
    rate_limit: bool = True
    rate_limit_scale: float = 1.0
    rate_limits: dict = field(default_factory=dict)
    token_ttl: int = 1800
    login_token_ttl: float = 900
    latency_ms: float = 0.0
    faults: list = field(default_factory=list)
    webhooks_to: str | None = None

    def __post_init__(self) -> None:
        if self.host != "127.0.0.1":
            raise ValueError("the demo API only listens on 127.0.0.1")
        self.start_ts = to_epoch(self.start)
        self.now_ts = None if self.now is None else to_epoch(self.now)
        # records mode needs a fixed end, even with a live clock
        self.end_ts = self.now_ts if self.now_ts is not None else wall_now()
        if self.end_ts <= self.start_ts:
            raise ValueError("now must be after start")

    def current_now(self) -> int:
        return self.now_ts if self.now_ts is not None else wall_now()

    def page_cap(self, vendor_cap: int) -> int:
        return max(vendor_cap, self.max_page_size or 0)

    def allowance(self, source: str, default: float) -> float:
        if source in self.rate_limits:
            return float(self.rate_limits[source])
        return max(1.0, default * self.rate_limit_scale)
