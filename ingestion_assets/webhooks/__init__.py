"""Push ingestion: a webhook receiver whose events become hourly partitions.

- :mod:`.signatures`: vendor signature styles (Stripe, Shopify, GitHub, generic HMAC).
- :mod:`.spool`: the durable, deduplicating SQLite spool.
- :mod:`.app`: the Starlette receiver (``python -m ingestion_assets.webhooks``).
- :mod:`.assets`: the events assets and the sensor that turns spooled events into runs.

Only :mod:`.assets` imports Dagster.
"""
