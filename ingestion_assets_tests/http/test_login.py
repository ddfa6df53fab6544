"""Login-flow auth: credentials POSTed to a login URL, the token read from the answer (and
the OAuth2 settings: scope, audience, extra_params, client_auth).

Against a loopback server that records what it receives: the body (JSON or form) and the
header the token goes in, the expiry read from ``expires_in``, a path, or the JWT ``exp``
claim (bounded), a new login ahead of expiry and once after a 401, refusals and hostile
answers failing with errors that hold no credential and no token. Then against the demo
API's crm session login, where the JWT is the only expiry.
"""

from __future__ import annotations

import base64
import time

import orjson
import pytest

from ingestion_assets.http import ApiClient, RetryPolicy, auth, errors, paginators
from ingestion_assets_tests.hostile import HostileServer, Reply

PASSWORD = "login-pass-SECRET-4242"
TOKEN = "login-token-SECRET-7373"


def jwt(claims: dict) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(obj)).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


def _client(server: HostileServer, auth_obj: auth.ApiAuth, **kw) -> ApiClient:
    return ApiClient(server.url, auth=auth_obj, source="login", timeout=(2, 5),
                     retry=RetryPolicy(max_attempts=1, backoff_base=0.01), **kw)


def _login(**kw) -> auth.LoginAuth:
    kw.setdefault("credentials", {"username": "login-user-ada", "password": PASSWORD})
    return auth.LoginAuth("/login", **kw)


def _data_route(token: str, header: str = "Authorization", value: str | None = None):
    expected = value if value is not None else f"Bearer {token}"

    def data(seen) -> Reply:
        if seen.headers.get(header) != expected:
            return Reply.json({"error": "unauthorized"}, 401)
        return Reply.json([{"id": 1}, {"id": 2}])

    return data


def test_json_login_token_at_a_path_sent_as_bearer():
    with HostileServer() as server:
        server.routes["/login"] = lambda s: Reply.json({"data": {"token": TOKEN}})
        server.routes["/items"] = _data_route(TOKEN)
        client = _client(server, _login(token_path="data.token", extra_fields={"remember": True}))
        for _ in range(3):
            assert list(client.fetch_pages("/items").iter_records()) == [{"id": 1}, {"id": 2}]
    logins = [s for s in server.seen if s.path == "/login"]
    assert len(logins) == 1  # one login serves every request while the token is valid
    assert logins[0].method == "POST"
    assert logins[0].headers["Content-Type"] == "application/json"
    assert orjson.loads(logins[0].body) == {"username": "login-user-ada", "password": PASSWORD,
                                            "remember": True}
    assert "Authorization" not in logins[0].headers


def test_form_login_token_in_a_named_header_without_scheme():
    with HostileServer() as server:
        server.routes["/login"] = lambda s: Reply.json({"accessToken": TOKEN})
        server.routes["/items"] = _data_route(TOKEN, "X-Session-Token", TOKEN)
        login = _login(body_format="form", token_path="accessToken", header="X-Session-Token",
                       scheme="")
        assert len(list(_client(server, login).fetch_pages("/items").iter_records())) == 2
    (sent,) = [s for s in server.seen if s.path == "/login"]
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert sent.body.decode() == f"username=login-user-ada&password={PASSWORD}"


def _iso(epoch: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat()


LIFETIMES = {
    "expires_in": (lambda now: {"access_token": TOKEN, "expires_in": 120}, {}, 120),
    "path": (lambda now: {"access_token": TOKEN, "session": {"ttl": "300"}},
             {"expires_in_path": "session.ttl"}, 300),
    "expires_at_iso": (lambda now: {"access_token": TOKEN, "expires_at": _iso(now + 600)},
                       {"expires_at_path": "expires_at"}, 600),
    "expires_at_ms": (lambda now: {"access_token": TOKEN, "expires_at": (now + 600) * 1000},
                      {"expires_at_path": "expires_at"}, 600),
    "jwt_exp": (lambda now: {"access_token": jwt({"exp": now + 900})}, {}, 900),
    "default": (lambda now: {"access_token": TOKEN}, {"default_expires_in": 45}, 45),
    # hostile or broken values are bounded, never believed as they are
    "huge": (lambda now: {"access_token": TOKEN, "expires_in": 10**12}, {},
             auth.MAX_TOKEN_LIFETIME_S),
    "negative": (lambda now: {"access_token": TOKEN, "expires_in": -50}, {},
                 auth.MIN_TOKEN_LIFETIME_S),
    "nan": (lambda now: {"access_token": TOKEN, "expires_in": "NaN"},
            {"default_expires_in": 45}, 45),
    "jwt_huge": (lambda now: {"access_token": jwt({"exp": 10**15})}, {},
                 auth.MAX_TOKEN_LIFETIME_S),
    "jwt_past": (lambda now: {"access_token": jwt({"exp": 1})}, {}, auth.MIN_TOKEN_LIFETIME_S),
    "jwt_bool": (lambda now: {"access_token": jwt({"exp": True})},
                 {"default_expires_in": 45}, 45),
    "jwt_garbage": (lambda now: {"access_token": "a.bm90IGpzb24.c"},
                    {"default_expires_in": 45}, 45),
}


@pytest.mark.parametrize("case", sorted(LIFETIMES))
def test_the_token_lifetime_comes_from_the_answer_and_is_bounded(case):
    answer, settings, lifetime = LIFETIMES[case]
    body = answer(time.time())
    login = _login(refresh_ahead_seconds=0, **settings)
    login._accept(body["access_token"], login._lifetime(body, body["access_token"]), "/login")
    assert login._expires_at - time.monotonic() == pytest.approx(lifetime, abs=2)


def test_an_expired_token_is_renewed_ahead_and_a_401_logs_in_again_once():
    with HostileServer() as server:
        tokens = iter(f"{TOKEN}-{i}" for i in range(10))
        state = {"valid": None}

        def login(seen) -> Reply:
            state["valid"] = next(tokens)
            # the second token lives long, so a slow machine cannot add a login below
            lifetime = 1 if state["valid"].endswith("-0") else 600
            return Reply.json({"access_token": state["valid"], "expires_in": lifetime})

        server.routes["/login"] = login
        server.routes["/items"] = lambda s: (
            Reply.json([{"id": 1}]) if s.headers.get("Authorization") == f"Bearer {state['valid']}"
            else Reply.json({"error": "expired"}, 401))
        client = _client(server, _login(refresh_ahead_seconds=0))
        assert list(client.fetch_pages("/items").iter_records()) == [{"id": 1}]
        time.sleep(1.2)  # past the 1 s lifetime: the next request logs in first
        assert list(client.fetch_pages("/items").iter_records()) == [{"id": 1}]
        assert [s.path for s in server.seen] == ["/login", "/items", "/login", "/items"]
        state["valid"] = "revoked"  # the server revokes the session: 401, a login, a retry
        server.seen.clear()
        list(client.fetch_pages("/items").iter_records())
        assert [s.path for s in server.seen] == ["/items", "/login", "/items"]
        server.routes["/items"] = lambda s: Reply.json({"error": "nope"}, 401)
        server.seen.clear()
        with pytest.raises(errors.AuthenticationError) as caught:
            list(client.fetch_pages("/items").iter_records())
        assert [s.path for s in server.seen] == ["/items", "/login", "/items"]  # once, no loop
    assert TOKEN not in str(caught.value)


def test_a_refused_login_fails_clearly_without_the_password():
    with HostileServer() as server:
        server.routes["/login"] = lambda s: Reply.json(
            {"error": "bad password", "echo": orjson.loads(s.body)}, 401)
        with pytest.raises(errors.AuthenticationError, match="login endpoint refused") as caught:
            list(_client(server, _login()).fetch_pages("/items"))
    assert PASSWORD not in str(caught.value) and caught.value.status == 401
    assert [s.path for s in server.seen] == ["/login"]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"accessToken": TOKEN, "user": "ada"}, r"without a token at 'access_token' \(the answer "
         r"has keys accessToken, user\)"),
        ({"access_token": f"{TOKEN}\r\nX-Injected: 1"}, "cannot be sent in a header"),
        ({"access_token": "x" * (auth.MAX_TOKEN_CHARS + 1)}, "cannot be sent in a header"),
        ({"access_token": {"nested": TOKEN}}, "without a usable token"),
    ],
    ids=["wrong_path", "crlf", "too_long", "not_a_string"],
)
def test_a_login_answer_without_a_usable_token_fails_without_showing_it(answer, message):
    with HostileServer() as server:
        server.routes["/login"] = lambda s: Reply.json(answer)
        with pytest.raises(errors.AuthenticationError, match=message) as caught:
            list(_client(server, _login()).fetch_pages("/items"))
    assert TOKEN not in str(caught.value)
    assert [s.path for s in server.seen] == ["/login"]  # nothing sent without a token


def test_login_configuration_errors():
    with pytest.raises(errors.ConfigurationError, match="body_format"):
        _login(body_format="xml")
    with pytest.raises(errors.ConfigurationError, match="non-empty credentials"):
        auth.LoginAuth("/login", {"password": ""})
    with pytest.raises(errors.ConfigurationError, match="token_path"):
        _login(token_path="$")


# ------------------------------------------------------------------ the demo API's login


def crm_login(api, **kw) -> auth.LoginAuth:
    creds = api.credentials("crm")
    return auth.LoginAuth(
        "/accounts/v1/login", {"username": creds["username"], "password": creds["password"]},
        token_path="data.token", **kw,
    )


def _activities(client: ApiClient, day: str = "2025-02-10"):
    return list(client.fetch_pages(
        "/accounts/v1/activities",
        params={"occurred_after": f"{day}T00:00:00Z", "occurred_before": f"{day}T23:59:59Z",
                "limit": 7},
        paginator=paginators.JsonLink("links.next", total_path="total"),
        records_path="items", endpoint="activities",
    ).iter_records())


def test_demo_login_jwt_expiry_drives_a_new_login(demo_api_factory):
    api = demo_api_factory(rate_limit=False, login_token_ttl=1.5)
    crm = api.sources["crm"]
    login = crm_login(api, refresh_ahead_seconds=0, body_format="form")
    client = ApiClient(api.base_url("crm"), auth=login, source="crm", timeout=(2, 5))
    truth = api.records("crm", "activities", "2025-02-10T00:00:00Z", "2025-02-10T23:59:59Z")
    assert sorted(r["id"] for r in _activities(client)) == sorted(r["id"] for r in truth)
    before = crm.logins
    assert before >= 1 and login.logins == before
    time.sleep(1.6)  # the last token's exp has passed: the next request logs in first
    assert sorted(r["id"] for r in _activities(client)) == sorted(r["id"] for r in truth)
    assert crm.logins > before and login.logins == crm.logins


def test_demo_login_with_wrong_password_is_refused(demo_api):
    login = auth.LoginAuth("/accounts/v1/login", {"username": "demo-partner", "password": "wrong-password-for-the-test"},
                           token_path="data.token")
    client = ApiClient(demo_api.base_url("crm"), auth=login, source="crm", timeout=(2, 5))
    with pytest.raises(errors.AuthenticationError, match="login endpoint refused.*status=401"):
        _activities(client)


@pytest.mark.parametrize("client_auth", ["body", "basic"])
def test_oauth2_sends_scope_audience_extra_params_and_the_client_where_asked(client_auth):
    from urllib.parse import parse_qs

    secret = "oauth-client-secret-SECRET-5151"
    with HostileServer() as server:
        server.routes["/token"] = lambda s: Reply.json({"access_token": TOKEN, "expires_in": 60})
        server.routes["/items"] = _data_route(TOKEN)
        oauth = auth.OAuth2ClientCredentials(
            "/token", "oauth-client-id-7", secret, scope=["read", "write"],
            audience="https://api.example.com", extra_params={"resource": "r1"},
            client_auth=client_auth)
        assert len(list(_client(server, oauth).fetch_pages("/items").iter_records())) == 2
    (sent,) = [s for s in server.seen if s.path == "/token"]
    form = {k: v[0] for k, v in parse_qs(sent.body.decode()).items()}
    expected = {"grant_type": "client_credentials", "scope": "read write",
                "audience": "https://api.example.com", "resource": "r1"}
    if client_auth == "body":
        assert form == {**expected, "client_id": "oauth-client-id-7", "client_secret": secret}
        assert "Authorization" not in sent.headers
    else:
        assert form == expected
        basic = base64.b64encode(f"oauth-client-id-7:{secret}".encode()).decode()
        assert sent.headers["Authorization"] == f"Basic {basic}"
