"""Credentials never leave their origin: two loopback ports, every auth type, every way out.

Port A is the source. Its answers point at port B through a ``Link`` next link, a next URL
in the body, a 302, a 307, and an OAuth2 token URL that redirects (307). Port B records
every request line, header and body it receives; no credential of any auth type may be in
them. The fetch fails with an error naming both origins, instead of half-fetching.
"""

from __future__ import annotations

import base64

import pytest

from ingestion_assets.http import ApiClient, RetryPolicy, auth, errors, paginators
from ingestion_assets_tests.hostile import HostileServer, Reply

SECRETS = {
    "bearer": "bearer-SECRET-1111",
    "basic_user": "basic-user-SECRET-2222",
    "basic_password": "basic-pass-SECRET-3333",
    "header_key": "header-key-SECRET-4444",
    "query_key": "query-key-SECRET-5555",
    "client_secret": "client-secret-SECRET-6666",
    "access_token": "access-token-SECRET-7777",
    "rotation": "rotation-key-SECRET-8888",
    "login_password": "login-password-SECRET-9999",
    "session_token": "session-token-SECRET-1010",
}


def _auths(home: str) -> dict[str, auth.ApiAuth]:
    return {
        "bearer": auth.BearerToken(SECRETS["bearer"]),
        "basic": auth.HttpBasic(SECRETS["basic_user"], SECRETS["basic_password"]),
        "api_key_header": auth.ApiKey(SECRETS["header_key"], name="X-Shopify-Access-Token"),
        "api_key_query": auth.ApiKey(SECRETS["query_key"], name="api_key", location="query"),
        "oauth2": auth.OAuth2ClientCredentials("/token", "client-1", SECRETS["client_secret"]),
        "rotation": auth.RotatingApiKeys([SECRETS["rotation"]], name="X-Api-Key", prefix=""),
        "login": auth.LoginAuth("/login", {"user": "login-user-u1", "password": SECRETS["login_password"]},
                                token_path="data.token"),
    }


def _secret_forms() -> list[str]:
    forms = list(SECRETS.values())
    basic = f"{SECRETS['basic_user']}:{SECRETS['basic_password']}".encode()
    forms.append(base64.b64encode(basic).decode())
    return forms


@pytest.fixture
def two_ports():
    with HostileServer() as other, HostileServer() as home:
        steal = f"{other.url}/steal"
        other.routes["/*"] = lambda seen: Reply.json([{"id": "stolen"}])
        home.routes.update(
            {
                "/token": lambda seen: Reply.json(
                    {"access_token": SECRETS["access_token"], "expires_in": 3600}
                ),
                "/token-moved": lambda seen: Reply.redirect(307, f"{other.url}/token"),
                "/login": lambda seen: Reply.json({"data": {"token": SECRETS["session_token"]}}),
                "/login-moved": lambda seen: Reply.redirect(307, f"{other.url}/login"),
                "/body-next-relative": lambda seen: Reply.json(
                    {"data": [{"id": 1}], "next": "/body-next-2?after=1"}),
                "/body-next-2": lambda seen: Reply.json(
                    {"data": [{"id": 2}], "next": f"//{other.url.split('//')[1]}/steal"}),
                "/link": lambda seen: Reply.json(
                    [{"id": 1}], headers=[("Link", f'<{steal}?page=2>; rel="next"')]
                ),
                "/body-next": lambda seen: Reply.json({"data": [{"id": 1}], "next": steal}),
                "/r302": lambda seen: Reply.redirect(302, steal),
                "/r307": lambda seen: Reply.redirect(307, steal),
                "/moved-here": lambda seen: Reply.redirect(302, "/landing?x=1"),
                "/landing": lambda seen: Reply.json([{"id": 2}]),
            }
        )
        yield home, other


def _client(home: HostileServer, auth_obj: auth.ApiAuth, **kw) -> ApiClient:
    return ApiClient(
        home.url, auth=auth_obj, source="two_ports", timeout=(2, 5),
        retry=RetryPolicy(max_attempts=1, backoff_base=0.01), **kw,
    )


WAYS_OUT = {
    "link header": dict(path="/link", paginator=paginators.LinkHeader()),
    "body next url": dict(
        path="/body-next", paginator=paginators.JsonLink("next"), records_path="data"
    ),
    "relative then protocol-relative next url": dict(
        path="/body-next-relative", paginator=paginators.JsonLink("next"), records_path="data"
    ),
    "302": dict(path="/r302"),
    "307": dict(path="/r307"),
}


@pytest.mark.parametrize("way", sorted(WAYS_OUT))
@pytest.mark.parametrize(
    "auth_name",
    ["bearer", "basic", "api_key_header", "api_key_query", "oauth2", "rotation", "login"],
)
def test_no_credential_reaches_another_origin(two_ports, way, auth_name):
    home, other = two_ports
    spec = dict(WAYS_OUT[way])
    path = spec.pop("path")
    client = _client(home, _auths(home.url)[auth_name])
    with pytest.raises(errors.CrossOriginError) as caught:
        list(client.fetch_pages(path, endpoint="leaky", **spec))
    message = str(caught.value)
    assert home.url.replace("http://", "") in message and other.url.replace("http://", "") in message
    assert "allowed_origins" in message
    seen = other.everything_seen()
    leaked = [s for s in _secret_forms() if s in seen]
    assert not leaked, f"port B received {leaked}"
    assert other.seen == []  # nothing at all was sent there
    # The home origin did get the credentials (the test would prove nothing otherwise).
    assert any(s in home.everything_seen() for s in _secret_forms())


def test_oauth_token_request_is_never_redirected(two_ports):
    home, other = two_ports
    client = _client(
        home, auth.OAuth2ClientCredentials("/token-moved", "client-1", SECRETS["client_secret"])
    )
    with pytest.raises(errors.AuthenticationError, match="307.*never redirected"):
        list(client.fetch_pages("/landing", endpoint="x"))
    assert other.seen == []
    assert SECRETS["client_secret"] in home.everything_seen()  # it went to the token URL only


def test_same_origin_redirect_is_followed_with_credentials(two_ports):
    home, _ = two_ports
    client = _client(home, auth.ApiKey(SECRETS["header_key"], name="X-Api-Key"))
    records = list(client.fetch_pages("/moved-here", endpoint="x").iter_records())
    assert records == [{"id": 2}]
    landing = [s for s in home.seen if s.path == "/landing"]
    assert landing and landing[0].headers.get("X-Api-Key") == SECRETS["header_key"]


def test_allowed_origins_widens_the_rule(two_ports):
    home, other = two_ports
    client = _client(home, auth.BearerToken(SECRETS["bearer"]), allowed_origins=[other.url])
    records = list(
        client.fetch_pages("/link", paginator=paginators.LinkHeader(), endpoint="x").iter_records()
    )
    assert records == [{"id": 1}, {"id": "stolen"}]
    assert other.seen[0].headers["Authorization"] == f"Bearer {SECRETS['bearer']}"


def test_redirect_loop_is_bounded(two_ports):
    home, _ = two_ports
    home.routes["/loop"] = lambda seen: Reply.redirect(302, "/loop")
    client = _client(home, auth.NoAuth())
    with pytest.raises(errors.InvalidResponseError, match="more than 5 redirects"):
        list(client.fetch_pages("/loop", endpoint="x"))
    assert len([s for s in home.seen if s.path == "/loop"]) == 6


def test_bad_allowed_origin_is_a_configuration_error():
    with pytest.raises(errors.ConfigurationError, match="allowed_origins entry 'uploads'"):
        ApiClient("http://127.0.0.1:1", allowed_origins=["uploads"])


@pytest.mark.parametrize("kind", ["oauth2", "login"])
def test_a_token_url_on_another_origin_is_never_sent_the_credentials(two_ports, kind):
    home, other = two_ports
    if kind == "oauth2":
        token_auth = auth.OAuth2ClientCredentials(
            f"{other.url}/token", "client-1", SECRETS["client_secret"])
    else:
        token_auth = auth.LoginAuth(f"{other.url}/login", {"password": SECRETS["login_password"]})
    with pytest.raises(errors.CrossOriginError) as caught:
        list(_client(home, token_auth).fetch_pages("/landing", endpoint="x"))
    message = str(caught.value)
    assert home.url.replace("http://", "") in message and other.url.replace("http://", "") in message
    assert "allowed_origins" in message
    assert other.seen == [] and home.seen == []  # nothing sent anywhere without a token


def test_a_login_url_on_an_allowed_origin_is_used(two_ports):
    home, other = two_ports
    other.routes["/login"] = lambda seen: Reply.json({"token": SECRETS["session_token"]})
    login = auth.LoginAuth(f"{other.url}/login", {"password": SECRETS["login_password"]},
                           token_path="token")
    client = _client(home, login, allowed_origins=[other.url])
    assert list(client.fetch_pages("/landing", endpoint="x").iter_records()) == [{"id": 2}]
    assert SECRETS["login_password"] in other.everything_seen()
    assert home.seen[0].headers["Authorization"] == f"Bearer {SECRETS['session_token']}"


def test_a_login_request_is_never_redirected(two_ports):
    home, other = two_ports
    login = auth.LoginAuth("/login-moved", {"password": SECRETS["login_password"]})
    with pytest.raises(errors.AuthenticationError, match="307.*never redirected"):
        list(_client(home, login).fetch_pages("/landing", endpoint="x"))
    assert other.seen == []
    assert SECRETS["login_password"] not in str(home.seen[1:])  # only the login request got it


def test_relative_next_urls_resolve_against_the_request_url(two_ports):
    home, other = two_ports
    home.routes["/a/b/list"] = lambda seen: Reply.json({"data": [{"id": 1}], "next": "page2?x=1"})
    home.routes["/a/b/page2"] = lambda seen: Reply.json(
        {"data": [{"id": 2}], "next": f"{home.url}/a/last"})
    home.routes["/a/last"] = lambda seen: Reply.json({"data": [{"id": 3}], "next": None})
    client = _client(home, auth.BearerToken(SECRETS["bearer"]))
    stream = client.fetch_pages("/a/b/list", params={"limit": 5},
                                paginator=paginators.JsonLink("next"), records_path="data")
    assert [r["id"] for r in stream.iter_records()] == [1, 2, 3]
    assert [s.target for s in home.seen] == ["/a/b/list?limit=5", "/a/b/page2?x=1", "/a/last"]
    assert other.seen == []


@pytest.mark.parametrize(
    ("link", "error", "message"),
    [
        ({"url": "/x"}, errors.PaginationError, "is a dict, not a URL"),
        ("/x\r\nHost: evil", errors.PaginationError, "control characters"),
        ("/" + "x" * 9000, errors.PaginationError, "longer than 8192"),
        ("/same", errors.PaginationLoopError, "seen twice|loop"),
        ("javascript:alert(1)", errors.CrossOriginError, "not the source's origin"),
    ],
    ids=["object", "crlf", "too_long", "loop", "other_scheme"],
)
def test_hostile_next_urls_fail_the_fetch(two_ports, link, error, message):
    home, other = two_ports
    home.routes["/same"] = lambda seen: Reply.json({"data": [{"id": 1}], "next": link})
    client = _client(home, auth.BearerToken(SECRETS["bearer"]))
    with pytest.raises(error, match=message):
        list(client.fetch_pages("/same", paginator=paginators.JsonLink("next"),
                                records_path="data"))
    assert other.seen == []
