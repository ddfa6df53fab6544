"""crm: a HubSpot-like API (``/crm-api/...``).

OAuth2 client credentials (``POST /oauth/v1/token``) issuing expiring bearer
tokens and refresh tokens; CRM objects paged with an ``after`` cursor
(``paging.next.after``, absent on the last page); marketing emails paged by
``offset``/``limit`` with a ``total``; a daily analytics report keyed by date.

Beside them, a session-login family (``/accounts/v1/...``, a legacy partner API):
``POST /accounts/v1/login`` takes a user name and password (JSON or form) and answers a
JWT whose ``exp`` claim is its only expiry (lifetime ``login_token_ttl``, settable at run
time with ``POST /_control/settings``); ``GET /accounts/v1/activities`` takes that token
(``Authorization: Bearer`` or ``X-Session-Token``) and pages with a next URL in the body
(``links.next``: relative on odd pages, absolute on even ones, null on the last) and a
``total``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
import uuid
from datetime import date

import orjson

from . import credentials as creds
from .base import ApiError, Request, Response, Source
from .data import Query, stable_seed
from .fake import CITIES, COUNTRIES, PEOPLE, WORDS
from .ratelimit import FixedWindow
from .timeutil import TimeParseError, day_string, iso_ms_z, parse_iso, to_epoch

_OBJECTS = ("contacts", "companies", "deals")
_OBJ_RE = re.compile(r"^/crm/v3/objects/([a-z_]+)/?$")
_ID_BASE = 101
_LIFECYCLE = ("subscriber", "lead", "lead", "marketingqualifiedlead", "salesqualifiedlead",
              "opportunity", "customer", "customer")
_INDUSTRIES = ("COMPUTER_SOFTWARE", "RETAIL", "HOSPITAL_HEALTH_CARE", "FINANCIAL_SERVICES",
               "MARKETING_AND_ADVERTISING", "EDUCATION_MANAGEMENT", "LOGISTICS_AND_SUPPLY_CHAIN",
               "RESTAURANTS")
_STAGES = ("appointmentscheduled", "qualifiedtobuy", "presentationscheduled",
           "decisionmakerboughtin", "contractsent", "closedwon", "closedlost", "closedwon")
_DEFAULT_PROPS = {
    "contacts": ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
    "companies": ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
    "deals": ("amount", "closedate", "createdate", "dealname", "dealstage",
              "hs_lastmodifieddate", "hs_object_id", "pipeline"),
}


def props_id(i: int) -> str:
    return str(_ID_BASE + i)


_ACCOUNTS = "/accounts/v1"
_LOGIN = _ACCOUNTS + "/login"
_ACTIVITY_TYPES = ("call", "meeting", "email", "note", "task", "demo")
_JWT_KEY = b"demo-crm-login-signing-key"  # the demo's own signing key, not a secret


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def make_jwt(claims: dict) -> str:
    """An HS256 JWT signed with the demo's key (the client never verifies it)."""
    head = _b64url(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
    body = _b64url(orjson.dumps(claims))
    sig = hmac.new(_JWT_KEY, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64url(sig)}"


CHANNELS = ("direct", "organic_search", "paid_search", "email", "social", "referral")


def q_total(q: Query) -> Query:
    """The query of a whole listing (its window), without the page position."""
    return Query(now=q.now, created_min=q.created_min, created_max=q.created_max)


class Crm(Source):
    name = "crm"
    base_path = "/crm-api"
    auth_model = "oauth2_client_credentials"
    vendor = "HubSpot"
    intervals = {"contacts": 300, "companies": 3600, "deals": 1200, "emails": 7200,
                 "activities": 1800}
    default_limit, vendor_cap = 10, 100

    def __init__(self, api) -> None:
        super().__init__(api)
        self._tokens: dict[str, tuple[str, float]] = {}  # access token -> (client, expires_at)
        self._refresh: dict[str, str] = {}  # refresh token -> client
        self._sessions: dict[str, tuple[str, float]] = {}  # login token -> (user, expires_at)
        self.logins = 0  # successful logins (tests count them)
        self._tok_lock = threading.Lock()
        self.renderers = {
            "contacts": self.render_contact,
            "companies": self.render_company,
            "deals": self.render_deal,
            "emails": self.render_email,
            "activities": self.render_activity,
        }

    def make_limiter(self):
        return FixedWindow(self.config.allowance(self.name, 100), 10)

    # ---- protocol ---------------------------------------------------------------------

    def error(self, status, message, category="VALIDATION_ERROR", **extra):
        body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()),
                "category": category}
        body.update(extra)
        return Response.json(status, body)

    def is_token_endpoint(self, rel):
        return rel.rstrip("/") in ("/oauth/v1/token", _LOGIN)

    def expire_tokens(self):
        with self._tok_lock:
            past = time.time() - 1
            self._tokens = {t: (c, min(e, past)) for t, (c, e) in self._tokens.items()}
            self._sessions = {t: (u, min(e, past)) for t, (u, e) in self._sessions.items()}

    def reset(self):
        super().reset()
        with self._tok_lock:
            self._tokens.clear()
            self._refresh.clear()
            self._sessions.clear()
            self.logins = 0

    def authenticate(self, req):
        if req.rel.startswith(_ACCOUNTS + "/"):
            return self.session_user(req)
        auth = req.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            raise ApiError(self.error(
                401,
                "Authentication credentials not found. This API supports OAuth 2.0 "
                "authentication and you can find more details at "
                "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                category="INVALID_AUTHENTICATION",
            ))
        token = auth[7:].strip()
        with self._tok_lock:
            entry = self._tokens.get(token)
        if entry is None:
            raise ApiError(self.error(
                401, "The OAuth token used to make this call is not valid.",
                category="INVALID_AUTHENTICATION",
            ))
        client, expires_at = entry
        if time.time() >= expires_at:
            ago = max(1, int((time.time() - expires_at) // 60))
            raise ApiError(self.error(
                401,
                f"The OAuth token used to make this call expired {ago} minute(s) ago.",
                category="EXPIRED_AUTHENTICATION",
            ))
        return client

    def rate_headers(self, info):
        return super().rate_headers(info) + [
            ("X-HubSpot-RateLimit-Interval-Milliseconds", "10000"),
            ("X-HubSpot-RateLimit-Max", str(info["limit"])),
            ("X-HubSpot-RateLimit-Remaining", str(info["remaining"])),
            ("X-HubSpot-RateLimit-Daily", "250000"),
            ("X-HubSpot-RateLimit-Daily-Remaining", str(250000 - info["used"])),
        ]

    def rate_limited(self, info, retry_after):
        resp = self.error(
            429, "You have reached your ten_secondly_rolling limit.", category="RATE_LIMITS",
            errorType="RATE_LIMIT", policyName="TEN_SECONDLY_ROLLING",
        )
        if retry_after is not None:
            resp.headers.append(("Retry-After", retry_after))
        return resp

    def server_error(self, status):
        return self.error(status, "internal error", category="INTERNAL_ERROR")

    def route(self, req, cred):
        rel = req.rel.rstrip("/") or "/"
        if self.is_token_endpoint(rel):
            if req.method != "POST":
                return self.error(405, "Method not allowed", category="METHOD_NOT_ALLOWED")
            return self.login(req) if rel == _LOGIN else self.token(req)
        if rel == _ACCOUNTS + "/activities" and req.method == "GET":
            return self.activities(req)
        if req.method != "GET":
            return self.not_found(req)
        m = _OBJ_RE.match(rel)
        if m:
            if m.group(1) not in _OBJECTS:
                return self.error(
                    400, f"Unable to infer object type from: {m.group(1)}",
                    category="VALIDATION_ERROR", subCategory="ObjectTypeIdError.UNKNOWN_OBJECT_TYPE",
                )
            return self.objects(req, m.group(1))
        if rel == "/marketing/v3/emails":
            return self.emails(req)
        if rel == "/analytics/v2/reports/daily":
            return self.daily_report(req)
        return self.not_found(req)

    def not_found(self, req):
        return self.error(404, f"Resource not found: {req.method} {req.rel}",
                          category="OBJECT_NOT_FOUND")

    # ---- oauth --------------------------------------------------------------------------

    def token(self, req: Request) -> Response:
        form = req.form()
        grant = form.get("grant_type")
        if grant == "client_credentials":
            cid, secret = form.get("client_id"), form.get("client_secret")
            if cid not in creds.CRM_CLIENTS:
                return Response.json(400, {"status": "BAD_CLIENT_ID",
                                           "message": "missing or unknown client id"})
            if creds.CRM_CLIENTS[cid] != secret:
                return Response.json(400, {"status": "BAD_CLIENT_SECRET",
                                           "message": "missing or invalid client secret"})
            client = cid
        elif grant == "refresh_token":
            with self._tok_lock:
                client = self._refresh.get(form.get("refresh_token") or "")
            if client is None:
                return Response.json(400, {"status": "BAD_REFRESH_TOKEN",
                                           "message": "missing or unknown refresh token"})
            if form.get("client_id") not in (None, client):
                return Response.json(400, {"status": "BAD_CLIENT_ID",
                                           "message": "client id does not match the refresh token"})
        else:
            return Response.json(400, {"status": "BAD_GRANT_TYPE",
                                       "message": f"unsupported grant_type {grant!r}"})
        ttl = self.config.token_ttl
        access, refresh = f"demo-at-{secrets.token_hex(16)}", f"demo-rt-{secrets.token_hex(16)}"
        with self._tok_lock:
            self._tokens[access] = (client, time.time() + ttl)
            self._refresh[refresh] = client
        return Response.json(200, {"access_token": access, "token_type": "bearer",
                                   "expires_in": ttl, "refresh_token": refresh})

    # ---- session login (accounts) ---------------------------------------------------------

    def login(self, req: Request) -> Response:
        ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            body = orjson.loads(req.body) if ctype == "application/json" else req.form()
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            return Response.json(400, {"error": "bad_request", "message": "expected a JSON "
                                       "object or a form with username and password"})
        user, password = body.get("username"), body.get("password")
        if creds.CRM_LOGINS.get(str(user)) != password:
            return Response.json(401, {"error": "invalid_credentials",
                                       "message": "unknown user name or wrong password"})
        issued = time.time()
        expires = issued + self.config.login_token_ttl
        token = make_jwt({"sub": user, "iat": int(issued), "exp": round(expires, 3),
                          "jti": secrets.token_hex(8)})
        with self._tok_lock:
            self._sessions[token] = (str(user), expires)
            self.logins += 1
        return Response.json(200, {"data": {"token": token, "user": {"name": user}}})

    def session_user(self, req: Request) -> str:
        auth = req.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        token = token or req.headers.get("x-session-token", "").strip()
        with self._tok_lock:
            entry = self._sessions.get(token)
        if entry is None or time.time() >= entry[1]:
            raise ApiError(Response.json(401, {
                "error": "invalid_token" if entry is None else "token_expired",
                "message": "log in at POST /crm-api/accounts/v1/login and send the token",
            }))
        return f"login:{entry[0]}"

    def activities(self, req: Request) -> Response:
        coll = self.collection("activities")
        limit = self._limit(req)
        q = Query(now=req.now, order="id")
        q.created_min = self._time(req, "occurred_after")
        q.created_max = self._time(req, "occurred_before")
        token = req.arg("page_token")
        page = 1
        if token is not None:
            try:
                q.after, page = (int(x) for x in self.decode_cursor(token))
            except (ValueError, TypeError):
                raise self._bad(f"Invalid page_token: {token}") from None
        self.apply_inserts(req, coll, q.created_max)
        idxs, more = coll.page(q, limit)
        docs = [self.render_activity(coll, i, req.now) for i in idxs]
        self.apply_schema(req.path, coll, idxs, docs)
        nxt = None
        if more and idxs:
            params = {k: v[-1] for k, v in req.query.items() if k != "page_token"}
            params["page_token"] = self.encode_cursor([idxs[-1], page + 1])
            nxt = self.url(req, req.rel, params)
            if page % 2:  # odd pages link relatively (the path and query only)
                nxt = nxt[len(req.root_url):]
        return Response.json(200, {"items": docs, "total": coll.count(q_total(q)),
                                   "links": {"next": nxt}})

    # ---- data endpoints -----------------------------------------------------------------------

    def _bad(self, message, **extra):
        return ApiError(self.error(400, message, category="VALIDATION_ERROR", **extra))

    def _limit(self, req, default=None):
        cap = self.config.page_cap(self.vendor_cap)
        raw = req.arg("limit")
        if raw is None:
            return default or self.default_limit
        try:
            limit = int(raw)
        except ValueError:
            raise self._bad(f"Invalid input JSON: limit must be an integer, got '{raw}'") from None
        if not 1 <= limit <= cap:
            raise self._bad(f"limit must be between 1 and {cap}, got {limit}")
        return limit

    def _time(self, req, name):
        v = req.arg(name)
        if v is None:
            return None
        try:
            if v.isdigit():  # HubSpot also takes epoch milliseconds
                return int(v) // 1000
            ts = parse_iso(v)
            if "string_time_filter" in req.quirks and iso_ms_z(ts) < v:
                # Compared as text, "…T00:00:00.000Z" sorts before "…T00:00:00Z" ('.' < 'Z'):
                # the record stamped exactly at ts falls on the other side of the bound.
                ts += 1
            return ts
        except TimeParseError:
            raise self._bad(f"Invalid value for {name}: '{v}' is not an ISO 8601 timestamp "
                            "or epoch milliseconds") from None

    def _window(self, req, q):
        q.updated_min = self._time(req, "updated_gte")
        q.updated_max = self._time(req, "updated_lt")
        q.created_min = self._time(req, "created_gte")
        q.created_max = self._time(req, "created_lt")
        return q.updated_max or q.created_max

    def objects(self, req, endpoint):
        coll = self.collection(endpoint)
        limit = self._limit(req)
        q = Query(now=req.now, order="id")
        window_end = self._window(req, q)
        after = req.arg("after")
        if after is not None:
            try:
                idx = int(self.decode_cursor(after))
            except (ValueError, TypeError):
                raise self._bad(f"Invalid 'after' paging cursor: {after}") from None
            q.after = idx
        self.apply_inserts(req, coll, window_end)
        idxs, more = coll.page(q, limit)
        props = req.arg("properties")
        wanted = [p.strip() for p in props.split(",")] if props else None
        render = self.renderers[endpoint]
        docs = [render(coll, i, req.now, wanted) for i in idxs]
        self.apply_schema(req.path, coll, idxs, docs)
        body = {"results": docs}
        if more and idxs:
            cursor = self.encode_cursor(idxs[-1])
            params = {k: v[-1] for k, v in req.query.items() if k != "after"}
            params["after"] = cursor
            body["paging"] = {"next": {"after": cursor,
                                       "link": self.url(req, req.rel, params)}}
        return Response.json(200, body)

    def emails(self, req):
        coll = self.collection("emails")
        limit = self._limit(req)
        raw = req.arg("offset", "0")
        try:
            offset = int(raw)
            if offset < 0:
                raise ValueError
        except ValueError:
            raise self._bad(f"offset must be a non-negative integer, got '{raw}'") from None
        q = Query(now=req.now, order="created", desc=True)  # newest first
        window_end = self._window(req, q)
        self.apply_inserts(req, coll, window_end)
        idxs, _more = coll.page(q, limit, offset)
        docs = [self.render_email(coll, i, req.now) for i in idxs]
        self.apply_schema(req.path, coll, idxs, docs)
        body = {"results": docs}
        if (req.arg("includeTotal") or "true").lower() != "false":
            body = {"total": coll.count(q), "results": docs}
        return Response.json(200, body)

    def daily_report(self, req):
        raw = req.arg("date")
        if raw is None:
            raise self._bad("Missing required parameter: date (YYYY-MM-DD)")
        try:
            d = date.fromisoformat(raw)
            if len(raw) != 10:
                raise ValueError
        except ValueError:
            raise self._bad(f"Invalid date '{raw}': expected YYYY-MM-DD") from None
        day_ts = to_epoch(d)
        if day_ts >= req.now:
            raise self._bad(f"No report for {raw}: the day has not started yet")
        return Response.json(200, self.report(raw, day_ts, req.now))

    def report(self, day: str, day_ts: int, now: int) -> dict:
        complete = day_ts + 86400 <= now
        rows = []
        if day_ts + 86400 > self.config.start_ts:
            for k, ch in enumerate(CHANNELS):
                h = stable_seed(self.config.seed, "report", day, ch)
                base = (200, 150, 60, 90, 120, 40)[k]
                sessions = base + h % (base + 1)
                if not complete:  # today's numbers are partial
                    sessions = sessions * (now - day_ts) // 86400
                contacts = sessions * (2 + (h >> 10) % 6) // 100
                rows.append({
                    "date": day,
                    "channel": ch,
                    "sessions": sessions,
                    "pageviews": sessions * (2 + (h >> 20) % 3),
                    "new_contacts": contacts,
                    "bounce_rate": round(0.25 + ((h >> 30) % 400) / 1000, 3),
                })
        totals = {k: sum(r[k] for r in rows) for k in ("sessions", "pageviews", "new_contacts")}
        return {"date": day, "complete": complete, "rows": rows, "totals": totals}

    # ---- records ------------------------------------------------------------------------

    def _wrap(self, i, c_s, u_s, props, wanted, endpoint):
        if wanted is not None:
            props = {k: props.get(k) for k in wanted}
        return {
            "id": props_id(i),
            "properties": props,
            "createdAt": c_s,
            "updatedAt": u_s,
            "archived": False,
        }

    def render_contact(self, coll, i, now, wanted=None):
        h = coll.hash_of(i)
        created, updated = coll.times(i, now, h)
        c_s, u_s = iso_ms_z(created), iso_ms_z(updated)
        name, email, address = PEOPLE[(h >> 20) & 4095]
        first, _, last = name.partition(" ")
        if wanted is None:  # HubSpot's default property set, built directly (hot path)
            props = {"createdate": c_s, "email": email, "firstname": first,
                     "hs_object_id": props_id(i), "lastmodifieddate": u_s, "lastname": last}
        else:
            props = {
                "createdate": c_s,
                "email": email,
                "firstname": first,
                "hs_object_id": props_id(i),
                "lastmodifieddate": u_s,
                "lastname": last,
                "lifecyclestage": _LIFECYCLE[(h >> 8) & 7],
                "city": address["city"],
                "country": address["country"],
                "phone": f"+1555{(h >> 12) % 10_000_000:07d}",
            }
        return self._wrap(i, c_s, u_s, props, wanted, "contacts")

    def render_company(self, coll, i, now, wanted=None):
        h = coll.hash_of(i)
        created, updated = coll.times(i, now, h)
        c_s, u_s = iso_ms_z(created), iso_ms_z(updated)
        word = WORDS[(h >> 8) & 31]
        name = f"{word.title()} {('Labs', 'Inc', 'GmbH', 'Ltd', 'Group', 'Systems', 'Co', 'AG')[(h >> 13) & 7]}"
        props = {
            "createdate": c_s,
            "domain": f"{word}{i}.example.com",
            "hs_lastmodifieddate": u_s,
            "hs_object_id": str(_ID_BASE + i),
            "name": name,
            "industry": _INDUSTRIES[(h >> 16) & 7],
            "city": CITIES[(h >> 19) & 15],
            "country": COUNTRIES[(h >> 23) & 15],
            "numberofemployees": str(5 + (h >> 27) % 5000),
            "annualrevenue": str(100000 + (h >> 40) % 50_000_000),
        }
        if wanted is None:
            props = {k: props[k] for k in _DEFAULT_PROPS["companies"]}
        return self._wrap(i, c_s, u_s, props, wanted, "companies")

    def render_deal(self, coll, i, now, wanted=None):
        h = coll.hash_of(i)
        created, updated = coll.times(i, now, h)
        c_s, u_s = iso_ms_z(created), iso_ms_z(updated)
        props = {
            "amount": f"{(h >> 8) % 5_000_000 / 100:.2f}",
            "closedate": iso_ms_z(created + 86400 * (7 + (h >> 30) % 60)),
            "createdate": c_s,
            "dealname": f"{WORDS[(h >> 16) & 31].title()} renewal {i}",
            "dealstage": _STAGES[(h >> 21) & 7],
            "hs_lastmodifieddate": u_s,
            "hs_object_id": str(_ID_BASE + i),
            "pipeline": "default",
        }
        return self._wrap(i, c_s, u_s, props, wanted, "deals")

    def render_email(self, coll, i, now, wanted=None):
        h = coll.hash_of(i)
        created, updated = coll.times(i, now, h)
        u_s = iso_ms_z(updated)
        published = h & 3 != 0
        sent = 500 + (h >> 8) % 20000 if published else 0
        return {
            "id": str(_ID_BASE + i),
            "name": f"{WORDS[(h >> 30) & 31].title()} newsletter #{i}",
            "subject": f"News about {WORDS[(h >> 35) & 31]} and {WORDS[(h >> 40) & 31]}",
            "state": "PUBLISHED" if published else "DRAFT",
            "type": "BATCH_EMAIL",
            "createdAt": iso_ms_z(created),
            "updatedAt": u_s,
            "publishDate": u_s if published else None,
            "stats": {"counters": {"sent": sent, "open": sent * ((h >> 20) % 60) // 100,
                                   "click": sent * ((h >> 26) % 12) // 100}},
        }

    def render_activity(self, coll, i, now, wanted=None):
        h = coll.hash_of(i)
        created, _updated = coll.times(i, now, h)
        name = PEOPLE[(h >> 20) & 4095][0]
        return {
            "id": f"act_{_ID_BASE + i}",
            "type": _ACTIVITY_TYPES[(h >> 8) % len(_ACTIVITY_TYPES)],
            "contact_id": props_id((h >> 12) % 5000),
            "owner": name,
            "occurred_at": iso_ms_z(created),
            "duration_s": 60 * (1 + (h >> 32) % 90),
        }

    # ---- ground truth / listing ---------------------------------------------------------------

    def collection_for(self, endpoint, **scope):
        if endpoint not in self.renderers:
            raise KeyError(f"crm has no endpoint {endpoint!r}")
        return self.collection(endpoint)

    def encode_id(self, endpoint, idx, **scope):
        return str(_ID_BASE + idx)

    def decode_id(self, endpoint, token, now, **scope):
        idx = int(token) - _ID_BASE
        if not self.collection(endpoint).exists(idx, now):
            raise KeyError(f"no {endpoint} record {token!r}")
        return idx

    def records(self, endpoint, start=None, end=None, field="created", **scope):
        if endpoint == "daily_report":
            now = self.config.current_now()
            s = to_epoch(start) if start is not None else self.config.start_ts
            e = to_epoch(end) if end is not None else now
            s -= s % 86400
            out = []
            for day_ts in range(s, min(e, now), 86400):
                out += self.report(day_string(day_ts), day_ts, now)["rows"]
            return out
        coll = self.collection_for(endpoint)
        path = {"emails": "/marketing/v3/emails", "activities": _ACCOUNTS + "/activities"}.get(
            endpoint, f"/crm/v3/objects/{endpoint}")
        return self.window_records(
            coll, self.renderers[endpoint], start, end, field, self.base_path + path
        )

    def listing(self):
        cap = self.config.page_cap(self.vendor_cap)
        eps = [
            {
                "name": ep,
                "path": f"/crm/v3/objects/{ep}",
                "pagination": "cursor: after / paging.next.after (absent on the last page)",
                "order": "id asc",
                "filters": ["updated_gte", "updated_lt", "created_gte", "created_lt", "properties"],
                "filter_format": "ISO 8601 or epoch milliseconds; half-open",
                "records_path": "results",
                "default_page_size": self.default_limit,
                "max_page_size": cap,
            }
            for ep in _OBJECTS
        ]
        eps.append({
            "name": "emails",
            "path": "/marketing/v3/emails",
            "pagination": "offset/limit with total (includeTotal=false: no total, stop on empty page)",
            "order": "created desc",
            "filters": ["updated_gte", "updated_lt", "created_gte", "created_lt", "includeTotal"],
            "records_path": "results",
            "default_page_size": self.default_limit,
            "max_page_size": cap,
        })
        eps.append({
            "name": "daily_report",
            "path": "/analytics/v2/reports/daily",
            "pagination": "none: one page per date",
            "filters": ["date (YYYY-MM-DD, required)"],
            "records_path": "rows",
            "max_page_size": len(CHANNELS),
        })
        eps.append({
            "name": "activities",
            "path": _ACCOUNTS + "/activities",
            "auth": "session login: POST /accounts/v1/login {username, password} -> data.token "
                    "(a JWT; its exp claim is the only expiry)",
            "pagination": "next URL in the body: links.next (relative on odd pages, absolute on "
                          "even ones, null on the last), with total",
            "order": "id asc",
            "filters": ["occurred_after", "occurred_before"],
            "records_path": "items",
            "default_page_size": self.default_limit,
            "max_page_size": cap,
        })
        return {
            "name": self.name,
            "imitates": self.vendor,
            "base_path": self.base_path,
            "auth": {
                "model": "oauth2_client_credentials",
                "token_url": "/oauth/v1/token",
                "grants": ["client_credentials", "refresh_token"],
                "token_ttl_s": self.config.token_ttl,
                "env": ["DEMO_CRM_CLIENT_ID", "DEMO_CRM_CLIENT_SECRET"],
                "session_login": {"login_url": _LOGIN, "token_path": "data.token",
                                  "token_ttl_s": self.config.login_token_ttl,
                                  "env": ["DEMO_CRM_USERNAME", "DEMO_CRM_PASSWORD"]},
            },
            "rate_limit": {"algorithm": "fixed_window", "per": "client id",
                           "requests": self.limiter.limit, "window_s": 10,
                           "enabled": self.config.rate_limit},
            "endpoints": eps,
        }
