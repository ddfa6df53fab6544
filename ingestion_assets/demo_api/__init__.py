"""A bundled local demo API imitating Stripe, Shopify, HubSpot, GitHub and Zendesk contracts.

Start it with ``python -m ingestion_assets.demo_api --port 8765`` or in-process::

    with DemoApi(DemoConfig(seed=7, now="2025-03-01T00:00:00Z")).serve() as api:
        api.base_url("payments")

``docs/demo-api.md`` documents every source, endpoint, credential and fault.
"""

from .config import DemoConfig
from .credentials import ENV_VARS, demo_env
from .faults import KINDS as FAULT_KINDS
from .faults import Fault, FaultError
from .server import CONTROL_HEADERS, DemoApi

__all__ = [
    "CONTROL_HEADERS", "DemoApi", "DemoConfig", "Fault", "FaultError", "FAULT_KINDS", "ENV_VARS",
    "demo_env",
]
