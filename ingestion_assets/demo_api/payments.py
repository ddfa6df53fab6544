"""payments: a Stripe-like API (``/payments/v1/...``).

Bearer (or basic) secret-key auth, cursor pagination with ``starting_after`` /
``ending_before`` and ``has_more``, ``created[gte|gt|lt|lte]`` filters in unix
seconds, newest first, Stripe-style error objects.
"""

from __future__ import annotations

import base64
import re

from . import credentials as creds
from .base import ApiError, Request, Response, Source
from .data import Collection, Query
from .fake import CURRENCIES, PEOPLE, WORDS, IdCodec
from .ratelimit import TokenBucket

_ENDPOINTS = {
    # name: (object, id prefix)
    "charges": ("charge", "ch_"),
    "customers": ("customer", "cus_"),
    "refunds": ("refund", "re_"),
}
_ALLOWED = {
    "limit", "starting_after", "ending_before", "created", "created[gte]", "created[gt]",
    "created[lt]", "created[lte]", "expand[]", "expand",
}
_ITEM_RE = re.compile(r"^/v1/(charges|customers|refunds)(?:/([^/]+))?/?$")
_CHARGE_STATUS = ("succeeded",) * 13 + ("failed", "failed", "pending")
_BRANDS = ("visa", "visa", "mastercard", "amex")
_REASONS = ("requested_by_customer", "duplicate", "fraudulent", None)
_BILLING = [
    {"address": address, "email": email, "name": name, "phone": None}
    for name, email, address in PEOPLE
]
_CARDS = [
    {"type": "card", "card": {"brand": _BRANDS[k & 3], "last4": f"{(k * 7919) % 10000:04d}"}}
    for k in range(1024)
]


class Payments(Source):
    name = "payments"
    base_path = "/payments"
    auth_model = "bearer"  # Authorization: Bearer <secret key>, or basic with the key as user
    vendor = "Stripe"
    intervals = {"charges": 120, "customers": 900, "refunds": 1800}
    default_limit, vendor_cap = 10, 100

    def __init__(self, api) -> None:
        super().__init__(api)
        self.codecs = {
            ep: IdCodec(prefix, self.collection(ep).seed) for ep, (_, prefix) in _ENDPOINTS.items()
        }
        self._customers = self.collection("customers")
        self._charge_codec = self.codecs["charges"]
        self._customer_codec = self.codecs["customers"]
        self.renderers = {
            "charges": self.render_charge,
            "customers": self.render_customer,
            "refunds": self.render_refund,
        }

    def make_limiter(self):
        n = self.config.allowance(self.name, 25)
        return TokenBucket(n, n)

    # ---- protocol ---------------------------------------------------------------------

    def error(self, status, message, type_="invalid_request_error", param=None, code=None):
        err = {"type": type_, "message": message}
        if param is not None:
            err["param"] = param
        if code is not None:
            err["code"] = code
            err["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        return Response.json(status, {"error": err})

    def authenticate(self, req: Request) -> str:
        auth = req.headers.get("authorization", "")
        key = None
        if auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        elif auth.lower().startswith("basic "):
            try:
                key = base64.b64decode(auth[6:].strip()).decode().split(":", 1)[0]
            except Exception:  # noqa: BLE001 - malformed header = bad key
                key = ""
        if not key:
            raise ApiError(self.error(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY').",
            ))
        if key not in creds.PAYMENTS_KEYS:
            # Like Stripe, show only the last four characters of the wrong key.
            raise ApiError(self.error(401, f"Invalid API Key provided: {'*' * 8}{key[-4:]}"))
        return key

    def rate_limited(self, info, retry_after):
        resp = self.error(
            429,
            "Too many requests hit the API too quickly. We recommend an exponential backoff "
            "of your requests.",
            type_="rate_limit_error",
            code="rate_limit",
        )
        if retry_after is not None:
            resp.headers.append(("Retry-After", retry_after))
        return resp

    def server_error(self, status):
        return self.error(status, "An unknown error occurred. Please retry the request.", type_="api_error")

    def error_body(self):
        resp = self.server_error(500)
        resp.status = 200
        return resp

    def extra_headers(self, req):
        return [("Stripe-Version", "2024-06-20")]

    def not_found(self, req: Request) -> Response:
        return self.error(
            404,
            f"Unrecognized request URL ({req.method}: {req.rel}). Please see "
            "https://stripe.com/docs or we can help at https://support.stripe.com/.",
        )

    def route(self, req: Request, cred: str) -> Response:
        m = _ITEM_RE.match(req.rel)
        if not m or req.method != "GET":
            return self.not_found(req)
        endpoint, item = m.groups()
        if item:
            return self.retrieve(req, endpoint, item)
        return self.list(req, endpoint)

    # ---- endpoints --------------------------------------------------------------------

    def retrieve(self, req, endpoint, token):
        coll = self.collection(endpoint)
        idx = self.codecs[endpoint].decode(token)
        if idx is None or not coll.exists(idx, req.now):
            obj = _ENDPOINTS[endpoint][0]
            return self.error(404, f"No such {obj}: '{token}'", param="id", code="resource_missing")
        doc = self.renderers[endpoint](coll, idx, req.now)
        self.apply_schema(req.path, coll, [idx], [doc])
        return Response.json(200, doc)

    def list(self, req: Request, endpoint: str) -> Response:
        for k in req.query:
            if k not in _ALLOWED:
                return self.error(400, f"Received unknown parameter: {k}", param=k)
        coll = self.collection(endpoint)
        cap = self.config.page_cap(self.vendor_cap)
        raw_limit = req.arg("limit")
        limit = self.default_limit
        if raw_limit is not None:
            try:
                limit = int(raw_limit)
            except ValueError:
                return self.error(400, f"Invalid integer: {raw_limit}", param="limit")
            if limit < 1 or limit > cap:
                return self.error(
                    400,
                    f"This value must be greater than or equal to 1 and less than or equal "
                    f"to {cap}.",
                    param="limit",
                )
        q = Query(now=req.now, order="created", desc=True)
        bounds = {}
        for op in ("gte", "gt", "lt", "lte"):
            name = f"created[{op}]"
            v = req.arg(name)
            if v is None:
                continue
            try:
                bounds[op] = int(v)
            except ValueError:
                return self.error(400, f"Invalid integer: {v}", param=name)
        if req.arg("created") is not None:
            v = req.arg("created")
            try:
                bounds["gte"] = int(v)
                bounds["lte"] = int(v)
            except ValueError:
                return self.error(400, f"Invalid integer: {v}", param="created")
        lows = [bounds["gte"]] if "gte" in bounds else []
        if "gt" in bounds:
            lows.append(bounds["gt"] + 1)
        highs = [bounds["lt"]] if "lt" in bounds else []
        if "lte" in bounds:
            highs.append(bounds["lte"] + 1)
        q.created_min = max(lows) if lows else None
        q.created_max = min(highs) if highs else None

        after, before = req.arg("starting_after"), req.arg("ending_before")
        if after is not None and before is not None:
            return self.error(
                400,
                "You may only specify one of these parameters: ending_before, starting_after.",
            )
        self.apply_inserts(req, coll, q.created_max)
        codec = self.codecs[endpoint]
        cursor = after if after is not None else before
        if cursor is not None:
            idx = codec.decode(cursor)
            if idx is None or not coll.exists(idx, req.now):
                obj = _ENDPOINTS[endpoint][0]
                return self.error(
                    400,
                    f"No such {obj}: '{cursor}'",
                    param="starting_after" if after is not None else "ending_before",
                    code="resource_missing",
                )
            q.after = coll.key_of(idx, "created", req.now)
        if before is not None:
            q.desc = False  # walk towards newer records, then present newest first
            idxs, more = coll.page(q, limit)
            idxs.reverse()
        else:
            idxs, more = coll.page(q, limit)
        render = self.renderers[endpoint]
        docs = [render(coll, i, req.now) for i in idxs]
        self.apply_schema(req.path, coll, idxs, docs)
        body = {"object": "list", "data": docs, "has_more": more, "url": f"/v1/{endpoint}"}
        return Response.json(200, body)

    # ---- records ----------------------------------------------------------------------

    def _ref(self, endpoint: str, t: int, h: int) -> str:
        """Id of an existing record of ``endpoint`` created before ``t``."""
        n = _approx_count_before(self.collection(endpoint), t)
        return self.codecs[endpoint].encode(h % n if n > 0 else 0)

    def render_charge(self, coll: Collection, i: int, now: int) -> dict:
        h = coll.hash_of(i)
        created = coll.created_of(i)
        amount = 100 + (h >> 8) % 49900
        status = _CHARGE_STATUS[(h >> 50) & 15]
        paid = status == "succeeded"
        refunded = paid and (h >> 54) & 15 == 0
        n_cus = _approx_count_before(self._customers, created)
        return {
            "id": self._charge_codec.encode(i),
            "object": "charge",
            "amount": amount,
            "amount_captured": amount if paid else 0,
            "amount_refunded": amount if refunded else 0,
            "billing_details": _BILLING[(h >> 20) & 4095],
            "captured": paid,
            "created": created,
            "currency": CURRENCIES[(h >> 58) & 7],
            "customer": self._customer_codec.encode((h >> 3) % n_cus if n_cus > 0 else 0),
            "description": f"Order {WORDS[(h >> 12) & 31]}-{(h >> 17) & 0xFFFF}",
            "failure_code": "card_declined" if status == "failed" else None,
            "livemode": False,
            "metadata": {"order_id": str(100000 + i)},
            "paid": paid,
            "payment_method_details": _CARDS[(h >> 33) & 1023],
            "refunded": refunded,
            "status": status,
        }

    def render_customer(self, coll: Collection, i: int, now: int) -> dict:
        h = coll.hash_of(i)
        name, email, address = PEOPLE[(h >> 20) & 4095]
        return {
            "id": self.codecs["customers"].encode(i),
            "object": "customer",
            "address": address,
            "balance": 0 if h & 7 else -((h >> 8) % 5000),
            "created": coll.created_of(i),
            "currency": CURRENCIES[(h >> 58) & 7],
            "delinquent": (h >> 50) & 31 == 0,
            "description": None,
            "email": email,
            "livemode": False,
            "metadata": {},
            "name": name,
        }

    def render_refund(self, coll: Collection, i: int, now: int) -> dict:
        h = coll.hash_of(i)
        created = coll.created_of(i)
        return {
            "id": self.codecs["refunds"].encode(i),
            "object": "refund",
            "amount": 100 + (h >> 8) % 20000,
            "charge": self._ref("charges", created, h >> 3),
            "created": created,
            "currency": CURRENCIES[(h >> 58) & 7],
            "metadata": {},
            "reason": _REASONS[(h >> 40) & 3],
            "status": "succeeded" if (h >> 44) & 7 else "pending",
        }

    # ---- ground truth / listing ------------------------------------------------------------

    def collection_for(self, endpoint: str, **scope) -> Collection:
        if endpoint not in _ENDPOINTS:
            raise KeyError(f"payments has no endpoint {endpoint!r}")
        return self.collection(endpoint)

    def encode_id(self, endpoint, idx, **scope):
        return self.codecs[endpoint].encode(idx)

    def decode_id(self, endpoint, token, now, **scope):
        idx = self.codecs[endpoint].decode(str(token))
        if idx is None or not self.collection(endpoint).exists(idx, now):
            raise KeyError(f"no {endpoint} record {token!r}")
        return idx

    def records(self, endpoint, start=None, end=None, field="created", **scope):
        coll = self.collection_for(endpoint)
        return self.window_records(
            coll, self.renderers[endpoint], start, end, field, f"{self.base_path}/v1/{endpoint}"
        )

    def listing(self) -> dict:
        cap = self.config.page_cap(self.vendor_cap)
        return {
            "name": self.name,
            "imitates": self.vendor,
            "base_path": self.base_path,
            "auth": {
                "model": "api_key_bearer",
                "header": "Authorization: Bearer <secret key>",
                "also": "HTTP basic auth with the key as user name, empty password",
                "env": ["DEMO_PAYMENTS_KEY"],
            },
            "rate_limit": {
                "algorithm": "token_bucket",
                "per": "api key",
                "requests_per_second": self.limiter.rate if self.config.rate_limit else None,
                "enabled": self.config.rate_limit,
            },
            "endpoints": [
                {
                    "name": ep,
                    "path": f"/v1/{ep}",
                    "pagination": "cursor: starting_after/ending_before + has_more",
                    "order": "created desc",
                    "filters": ["created[gte]", "created[gt]", "created[lt]", "created[lte]"],
                    "filter_format": "unix seconds",
                    "records_path": "data",
                    "default_page_size": self.default_limit,
                    "max_page_size": cap,
                }
                for ep in _ENDPOINTS
            ],
        }


def _approx_count_before(coll: Collection, t: int) -> int:
    """Records created before ``t``, by arithmetic (close enough to pick a reference)."""
    if t <= coll.start:
        return 0
    if coll.fixed_count is not None:
        return min(coll.fixed_count, (t - coll.start) * coll.fixed_count // coll.span)
    return int((t - coll.start) / coll.interval)

