"""The demo API's credentials.

These are public demo values, not secrets: they only open the bundled local demo
API. The rest of the project never uses them directly; it reads them from the
environment variables in :data:`ENV_VARS` (``{env: NAME}`` in YAML), exactly as it
would read a real vendor's secrets. ``demo_env()`` gives the mapping to export.
"""

from __future__ import annotations

#: payments (Stripe-like): two valid secret keys, so key rotation can be tested.
PAYMENTS_KEY = "sk_test_demo_51PaymentsKeyA"
PAYMENTS_KEY_ROTATED = "sk_test_demo_51PaymentsKeyB"
PAYMENTS_KEYS = (PAYMENTS_KEY, PAYMENTS_KEY_ROTATED)

#: commerce (Shopify-like): Admin API access tokens (``X-Shopify-Access-Token``).
COMMERCE_TOKEN = "shpat_demo_commerce_token_a"
COMMERCE_TOKEN_2 = "shpat_demo_commerce_token_b"
COMMERCE_TOKENS = (COMMERCE_TOKEN, COMMERCE_TOKEN_2)

#: crm (HubSpot-like): OAuth2 client credentials for ``POST /oauth/v1/token``.
CRM_CLIENT_ID = "demo-crm-client"
CRM_CLIENT_SECRET = "demo-crm-secret"
CRM_CLIENTS = {CRM_CLIENT_ID: CRM_CLIENT_SECRET}
#: crm session login (``POST /crm-api/accounts/v1/login``): user name -> password.
CRM_USERNAME = "demo-partner"
CRM_PASSWORD = "demo-partner-password"
CRM_LOGINS = {CRM_USERNAME: CRM_PASSWORD}

#: devhub (GitHub-like): personal access tokens; basic auth uses any user name.
DEVHUB_TOKEN = "ghp_demoDevhubToken000000000000000000A"
DEVHUB_TOKEN_2 = "ghp_demoDevhubToken000000000000000000B"
DEVHUB_TOKENS = (DEVHUB_TOKEN, DEVHUB_TOKEN_2)
DEVHUB_USER = "demo-user"

#: exports (a reporting/export API): an API key in ``X-Api-Key``.
EXPORTS_KEY = "exp_demo_key_0000000000000001"
#: helpdesk (Zendesk-like): an API token (bearer) and the account's app key header.
HELPDESK_TOKEN = "hd_demo_api_token_7c1e9b2f4a"
HELPDESK_APP_KEY = "hdapp_demo_key_3b8d5e0c91"

#: Webhook signing secrets, per source (the demo API signs the events it sends with them).
PAYMENTS_WEBHOOK_SECRET = "whsec_demo_payments_signing_a"
COMMERCE_WEBHOOK_SECRET = "shpss_demo_commerce_signing_a"
DEVHUB_WEBHOOK_SECRET = "demo-devhub-webhook-signing-a"
CRM_WEBHOOK_SECRET = "demo-crm-webhook-signing-a"
WEBHOOK_SECRETS = {
    "payments": PAYMENTS_WEBHOOK_SECRET,
    "commerce": COMMERCE_WEBHOOK_SECRET,
    "devhub": DEVHUB_WEBHOOK_SECRET,
    "crm": CRM_WEBHOOK_SECRET,
}

#: Environment variable -> demo value, as the project's configs expect them.
ENV_VARS = {
    "DEMO_PAYMENTS_KEY": PAYMENTS_KEY,
    "DEMO_COMMERCE_TOKEN": COMMERCE_TOKEN,
    "DEMO_CRM_CLIENT_ID": CRM_CLIENT_ID,
    "DEMO_CRM_CLIENT_SECRET": CRM_CLIENT_SECRET,
    "DEMO_CRM_USERNAME": CRM_USERNAME,
    "DEMO_CRM_PASSWORD": CRM_PASSWORD,
    "DEMO_DEVHUB_TOKEN": DEVHUB_TOKEN,
    "DEMO_EXPORTS_KEY": EXPORTS_KEY,
    "DEMO_HELPDESK_TOKEN": HELPDESK_TOKEN,
    "DEMO_HELPDESK_APP_KEY": HELPDESK_APP_KEY,
    "DEMO_PAYMENTS_WEBHOOK_SECRET": PAYMENTS_WEBHOOK_SECRET,
    "DEMO_COMMERCE_WEBHOOK_SECRET": COMMERCE_WEBHOOK_SECRET,
    "DEMO_DEVHUB_WEBHOOK_SECRET": DEVHUB_WEBHOOK_SECRET,
    "DEMO_CRM_WEBHOOK_SECRET": CRM_WEBHOOK_SECRET,
}


def demo_env() -> dict[str, str]:
    """The environment variables to export to point the project at the demo API."""
    return dict(ENV_VARS)


def credentials(source: str) -> dict:
    """The valid demo credentials of one source."""
    table = {
        "payments": {"api_key": PAYMENTS_KEY, "api_key_rotated": PAYMENTS_KEY_ROTATED},
        "commerce": {"access_token": COMMERCE_TOKEN, "access_token_2": COMMERCE_TOKEN_2},
        "crm": {"client_id": CRM_CLIENT_ID, "client_secret": CRM_CLIENT_SECRET,
                "username": CRM_USERNAME, "password": CRM_PASSWORD},
        "devhub": {"token": DEVHUB_TOKEN, "token_2": DEVHUB_TOKEN_2, "username": DEVHUB_USER},
        "exports": {"api_key": EXPORTS_KEY},
        "helpdesk": {"token": HELPDESK_TOKEN, "app_key": HELPDESK_APP_KEY},
    }
    if source not in table:
        raise KeyError(f"unknown source {source!r}")
    return dict(table[source])
