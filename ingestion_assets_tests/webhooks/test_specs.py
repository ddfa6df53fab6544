"""`webhook:` in the source YAML: defaults per style, and clear errors for bad settings."""

from __future__ import annotations

import pytest

from ingestion_assets.specs import SpecError, load_sources

YAML = """
sources:
  - name: shop
    base_url: http://127.0.0.1:9/shop
    endpoints:
      - name: orders
        path: /orders
        primary_key: id
        webhook: {webhook}
"""


def _load(tmp_path, webhook: str):
    path = tmp_path / "shop.yaml"
    path.write_text(YAML.replace("{webhook}", webhook))
    return load_sources(path)


def test_style_defaults_fill_the_event_fields(tmp_path):
    (source,) = _load(tmp_path, "{style: shopify, secrets: [{env: SHOP_SECRET}]}")
    spec = source.endpoints[0].webhook
    assert spec.id_header == "X-Shopify-Webhook-Id"
    assert spec.type_header == "X-Shopify-Topic"
    assert spec.tolerance_seconds == 300 and spec.max_body_bytes == 1_000_000


@pytest.mark.parametrize(("webhook", "message"), [
    ("{style: hmac, secrets: [{env: S}]}", "`header` is required with style hmac"),
    ("{style: stripe, secrets: [whsec_literal]}", "must come from the environment"),
    ("{style: stripe, secrets: [{env: A}, {env: B}, {env: C}]}", "at most 2"),
    ("{style: paypal, secrets: [{env: A}]}", "style"),
    ("{style: stripe, secrets: [{env: A}], start: soon}", "not an ISO date"),
])
def test_bad_webhook_settings_name_the_file_source_and_endpoint(tmp_path, webhook, message):
    with pytest.raises(SpecError) as err:
        _load(tmp_path, webhook)
    text = str(err.value)
    assert "shop.yaml" in text and "'shop'" in text and "'orders'" in text
    assert message in text
    assert "whsec_literal" not in text  # a literal secret is not echoed back
