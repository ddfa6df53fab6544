"""commerce: a Shopify-like Admin REST API (``/commerce/admin/api/2024-01/...``).

``X-Shopify-Access-Token`` auth, a leaky-bucket rate limit per token, RFC 8288
``Link`` pagination with opaque ``page_info``, ``updated_at_min/max`` and
``created_at_min/max`` filters (inclusive, like Shopify; a timestamp without an
offset is read in the shop's time zone), timestamps rendered with the shop's UTC
offset, and the keyset extension ``order=updated_at asc`` + ``since_id``.
"""

from __future__ import annotations

import re

from . import credentials as creds
from .base import ApiError, Request, Response, Source
from .data import EXTRA_BASE, Query
from .fake import PEOPLE, PRODUCTS, WORDS
from .ratelimit import LeakyBucket
from .timeutil import TimeParseError, iso_offset, offset_suffix

SHOP_OFFSET = -5 * 3600  # the shop's time zone, UTC-05:00 (no DST, to stay simple)
_SUFFIX = offset_suffix(SHOP_OFFSET)
_ID_BASE = {"orders": 5_100_000_000_000, "products": 8_200_000_000_000, "customers": 6_300_000_000_000}
_GID = {"orders": "Order", "products": "Product", "customers": "Customer"}
_FILTERS = ("updated_at_min", "updated_at_max", "created_at_min", "created_at_max")
_LIST_PARAMS = set(_FILTERS) | {"limit", "since_id", "status", "fields", "page_info", "order", "ids"}
_ORDERS = {
    None: ("id", False),
    "id asc": ("id", False),
    "id desc": ("id", True),
    "created_at asc": ("created", False),
    "created_at desc": ("created", True),
    "updated_at asc": ("updated", False),
}
_PATH_RE = re.compile(r"^/(orders|products|customers)(/count)?\.json$")
_ORDER_STATE = ("open", "open", "open", "open", "closed", "closed", "closed", "cancelled")
_FIN = ("paid", "paid", "paid", "pending", "refunded", "partially_refunded", "authorized", "paid")
_FULFIL = (None, "fulfilled", "fulfilled", "partial")
_PRODUCT_STATUS = ("active", "active", "active", "draft", "archived", "active", "active", "active")




def _money(cents: int) -> str:
    """Shopify sends money as strings: ``"12.30"``."""
    return f"{cents // 100}.{cents % 100:02d}"


_BUYERS = [(*name.split(" ", 1), email, address) for name, email, address in PEOPLE]
#: 512 catalogue entries: (price in cents, title, sku)
_CATALOG = [
    (500 + (k * 7919) % 9500, PRODUCTS[k & 15], f"SKU-{k:04d}") for k in range(512)
]
_TITLES = [
    (t, t.lower().replace(" ", "-"))
    for t in (f"{WORDS[k & 31].title()} {PRODUCTS[(k >> 5) & 15]}" for k in range(512))
]


class Commerce(Source):
    name = "commerce"
    base_path = "/commerce/admin/api/2024-01"
    auth_model = "api_key_header"
    vendor = "Shopify"
    intervals = {"orders": 180, "products": 3600, "customers": 600}
    default_limit, vendor_cap = 50, 250

    def __init__(self, api) -> None:
        super().__init__(api)
        self.renderers = {
            "orders": self.render_order,
            "products": self.render_product,
            "customers": self.render_customer,
        }

    def make_limiter(self):
        cap = self.config.allowance(self.name, 40)
        return LeakyBucket(cap, max(0.05, 2 * cap / 40))

    # ---- protocol ---------------------------------------------------------------------

    def error(self, status, message, field=None):
        if field is None:
            return Response.json(status, {"errors": message})
        return Response.json(status, {"errors": {field: [message]}})

    def authenticate(self, req):
        token = req.headers.get("x-shopify-access-token")
        if token not in creds.COMMERCE_TOKENS:
            raise ApiError(self.error(
                401, "[API] Invalid API key or access token (unrecognized login or wrong password)"
            ))
        return token

    def rate_headers(self, info):
        return super().rate_headers(info) + [
            ("X-Shopify-Shop-Api-Call-Limit", f"{info['used']}/{info['limit']}")
        ]

    def rate_limited(self, info, retry_after):
        resp = self.error(
            429,
            "Exceeded 2 calls per second for api client. Reduce request rates to resume "
            "uninterrupted service.",
        )
        if retry_after is not None:
            resp.headers.append(("Retry-After", retry_after))
        return resp

    def server_error(self, status):
        return self.error(status, "Internal Server Error" if status == 500 else "Service Unavailable")

    def extra_headers(self, req):
        return [("X-Shopify-API-Version", "2024-01"), ("X-Shopify-Stage", "production")]

    def route(self, req, cred):
        m = _PATH_RE.match(req.rel)
        if not m or req.method != "GET":
            return self.error(404, "Not Found")
        endpoint, count = m.groups()
        try:
            if count:
                q, _ = self._query(req, endpoint, allow_page_info=False)
                return Response.json(200, {"count": self.collection(endpoint).count(q)})
            return self.list(req, endpoint)
        except _BadParam as exc:
            return self.error(400, exc.message, exc.field)

    # ---- listing ------------------------------------------------------------------------

    def _time(self, req, name):
        v = req.arg(name)
        if v is None:
            return None
        try:
            return self.parse_time(v, SHOP_OFFSET)
        except TimeParseError:
            raise _BadParam(name, "is invalid") from None

    def _query(self, req: Request, endpoint: str, allow_page_info=True):
        for k in req.query:
            if k not in _LIST_PARAMS:
                pass  # Shopify ignores unknown parameters
        order_arg = req.arg("order")
        if order_arg is not None:
            order_arg = " ".join(order_arg.replace("+", " ").split()).lower()
        if order_arg not in _ORDERS:
            raise _BadParam("order", f"is not supported: {req.arg('order')}")
        order, desc = _ORDERS[order_arg]
        q = Query(now=req.now, order=order, desc=desc)
        lo = self._time(req, "created_at_min")
        hi = self._time(req, "created_at_max")
        q.created_min = lo
        q.created_max = None if hi is None else hi + 1  # inclusive, like Shopify
        lo = self._time(req, "updated_at_min")
        hi = self._time(req, "updated_at_max")
        q.updated_min = lo
        q.updated_max = None if hi is None else hi + 1
        status = req.arg("status")
        q.pred = self._status_pred(endpoint, status)
        since = req.arg("since_id")
        if since is not None:
            try:
                sid = int(since) - _ID_BASE[endpoint]
            except ValueError:
                raise _BadParam("since_id", "is invalid") from None
            if order == "updated":
                # keyset: (updated_at, id) > (updated_at_min, since_id)
                if q.updated_min is None:
                    raise _BadParam("since_id", "with order=updated_at asc needs updated_at_min")
                q.after = (q.updated_min, sid)
            elif order == "id" and not desc:
                q.after = sid
            else:
                raise _BadParam("since_id", "only works with ascending id or updated_at order")
        return q, status

    def _status_pred(self, endpoint, status):
        if endpoint == "orders":
            status = status or "open"  # Shopify's default: open orders only
            if status == "any":
                return None
            if status not in ("open", "closed", "cancelled"):
                raise _BadParam("status", "is invalid")
            return lambda coll, i, h: _ORDER_STATE[(h >> 12) & 7] == status
        if endpoint == "products" and status:
            wanted = set(status.split(","))
            if not wanted <= {"active", "draft", "archived"}:
                raise _BadParam("status", "is invalid")
            return lambda coll, i, h: _PRODUCT_STATUS[(h >> 12) & 7] in wanted
        return None

    def list(self, req: Request, endpoint: str) -> Response:
        coll = self.collection(endpoint)
        cap = self.config.page_cap(self.vendor_cap)
        raw = req.arg("limit")
        limit = self.default_limit
        if raw is not None:
            try:
                limit = int(raw)
            except ValueError:
                raise _BadParam("limit", "is invalid") from None
            if not 1 <= limit <= cap:
                raise _BadParam("limit", f"must be between 1 and {cap}")
        fields = req.arg("fields")
        page_info = req.arg("page_info")
        backwards = False
        if page_info is not None:
            extra = [k for k in req.query if k not in ("limit", "fields", "page_info")]
            if extra:
                raise _BadParam(
                    "page_info",
                    f"cannot be passed with other parameters ({', '.join(sorted(extra))}); "
                    "only limit and fields may accompany it",
                )
            try:
                state = self.decode_cursor(page_info)
                q = Query(
                    now=req.now, order=state["o"], desc=state["d"], after=_key(state["a"]),
                    created_min=state["f"][0], created_max=state["f"][1],
                    updated_min=state["f"][2], updated_max=state["f"][3],
                    pred=self._status_pred(endpoint, state["s"]),
                )
                backwards = bool(state.get("b"))
                status = state["s"]
            except (ValueError, KeyError, TypeError, IndexError):
                raise _BadParam("page_info", "Invalid value.") from None
        else:
            q, status = self._query(req, endpoint)
        self.apply_inserts(req, coll, q.updated_max or q.created_max)
        if backwards:
            q.desc = not q.desc
            idxs, more_before = coll.page(q, limit)
            idxs.reverse()
            q.desc = not q.desc
            has_prev, has_next = more_before, True
        else:
            idxs, has_next = coll.page(q, limit)
            has_prev = page_info is not None and bool(idxs)
        render = self.renderers[endpoint]
        docs = [render(coll, i, req.now) for i in idxs]
        self.apply_schema(req.path, coll, idxs, docs)
        if fields:
            keep = [f.strip() for f in fields.split(",")]
            docs = [{k: d[k] for k in keep if k in d} for d in docs]
        links = []
        filt = [q.created_min, q.created_max, q.updated_min, q.updated_max]
        base_state = {"o": q.order, "d": q.desc, "f": filt, "s": status}
        params = {"limit": limit, "fields": fields}
        if idxs and has_next:
            st = dict(base_state, a=coll.key_of(idxs[-1], q.order, req.now))
            url = self.url(req, f"/{endpoint}.json", dict(params, page_info=self.encode_cursor(st)))
            links.append(f'<{url}>; rel="next"')
        if idxs and has_prev and q.order != "updated":
            st = dict(base_state, a=coll.key_of(idxs[0], q.order, req.now), b=1)
            url = self.url(req, f"/{endpoint}.json", dict(params, page_info=self.encode_cursor(st)))
            links.insert(0, f'<{url}>; rel="previous"')
        headers = [("Link", ", ".join(links))] if links else []
        return Response.json(200, {endpoint: docs}, headers)

    # ---- records ------------------------------------------------------------------------

    def _ts(self, t):
        return iso_offset(t, SHOP_OFFSET, _SUFFIX)

    def render_order(self, coll, i, now):
        h = coll.hash_of(i)
        created, updated = coll.times(i, now, h)
        c_s, u_s = self._ts(created), self._ts(updated)
        state = _ORDER_STATE[(h >> 12) & 7]
        first, last, email, address = _BUYERS[(h >> 20) & 4095]
        n_items = 1 + (h >> 16) % 3
        items = []
        subtotal = 0
        for k in range(n_items):
            pidx = (h >> (24 + 7 * k)) & 511
            cents, title, sku = _CATALOG[pidx]
            qty = 1 + (h >> (45 + k)) % 3
            subtotal += cents * qty
            items.append({
                "id": 13_000_000_000_000 + i * 3 + k,
                "product_id": _ID_BASE["products"] + pidx,
                "title": title,
                "quantity": qty,
                "price": _money(cents),
                "sku": sku,
            })
        tax = subtotal * 8 // 100
        number = 1001 + i if i < EXTRA_BASE else 900000 + (i - EXTRA_BASE)
        oid = _ID_BASE["orders"] + i
        return {
            "id": oid,
            "admin_graphql_api_id": f"gid://shopify/Order/{oid}",
            "name": f"#{number}",
            "order_number": number,
            "email": email,
            "created_at": c_s,
            "updated_at": u_s,
            "processed_at": c_s,
            "closed_at": u_s if state == "closed" else None,
            "cancelled_at": u_s if state == "cancelled" else None,
            "cancel_reason": "customer" if state == "cancelled" else None,
            "currency": "USD",
            "financial_status": _FIN[(h >> 50) & 7],
            "fulfillment_status": _FULFIL[(h >> 53) & 3],
            "subtotal_price": _money(subtotal),
            "total_tax": _money(tax),
            "total_price": _money(subtotal + tax),
            "customer": {
                "id": _ID_BASE["customers"] + (h >> 8) % 5000,
                "email": email,
                "first_name": first,
                "last_name": last,
            },
            "shipping_address": address,
            "line_items": items,
            "tags": WORDS[(h >> 56) & 31] if h & 4 else "",
            "test": False,
        }

    def render_product(self, coll, i, now):
        h = coll.hash_of(i)
        created, updated = coll.times(i, now, h)
        c_s = self._ts(created)
        pid = _ID_BASE["products"] + i
        title, handle = _TITLES[(h >> 8) & 511]
        status = _PRODUCT_STATUS[(h >> 12) & 7]
        return {
            "id": pid,
            "admin_graphql_api_id": f"gid://shopify/Product/{pid}",
            "title": title,
            "handle": f"{handle}-{i}",
            "vendor": "Demo Goods",
            "product_type": PRODUCTS[(h >> 12) & 15],
            "status": status,
            "created_at": c_s,
            "updated_at": self._ts(updated),
            "published_at": c_s if status == "active" else None,
            "tags": WORDS[(h >> 20) & 31],
            "variants": [{
                "id": 40_000_000_000_000 + i,
                "product_id": pid,
                "price": _money(500 + (h >> 24) % 9500),
                "sku": f"SKU-{i:04d}",
                "inventory_quantity": (h >> 40) % 200,
            }],
        }

    def render_customer(self, coll, i, now):
        h = coll.hash_of(i)
        created, updated = coll.times(i, now, h)
        first, last, email, address = _BUYERS[(h >> 20) & 4095]
        cid = _ID_BASE["customers"] + i
        return {
            "id": cid,
            "admin_graphql_api_id": f"gid://shopify/Customer/{cid}",
            "email": email,
            "first_name": first,
            "last_name": last,
            "state": "enabled" if h & 3 else "disabled",
            "orders_count": (h >> 8) % 20,
            "total_spent": _money((h >> 16) % 100000),
            "currency": "USD",
            "verified_email": bool(h & 8),
            "created_at": self._ts(created),
            "updated_at": self._ts(updated),
            "tags": "",
            "default_address": address,
        }

    # ---- ground truth / listing ---------------------------------------------------------------

    def collection_for(self, endpoint, **scope):
        if endpoint not in self.renderers:
            raise KeyError(f"commerce has no endpoint {endpoint!r}")
        return self.collection(endpoint)

    def encode_id(self, endpoint, idx, **scope):
        return _ID_BASE[endpoint] + idx

    def decode_id(self, endpoint, token, now, **scope):
        idx = int(token) - _ID_BASE[endpoint]
        if not self.collection(endpoint).exists(idx, now):
            raise KeyError(f"no {endpoint} record {token!r}")
        return idx

    def records(self, endpoint, start=None, end=None, field="created", **scope):
        coll = self.collection_for(endpoint)
        return self.window_records(
            coll, self.renderers[endpoint], start, end, field, f"{self.base_path}/{endpoint}.json"
        )

    def listing(self):
        cap = self.config.page_cap(self.vendor_cap)
        return {
            "name": self.name,
            "imitates": self.vendor,
            "base_path": self.base_path,
            "auth": {"model": "api_key_header", "header": "X-Shopify-Access-Token",
                     "env": ["DEMO_COMMERCE_TOKEN"]},
            "rate_limit": {
                "algorithm": "leaky_bucket", "per": "access token",
                "bucket": self.limiter.capacity, "leak_per_second": self.limiter.rate,
                "enabled": self.config.rate_limit,
            },
            "endpoints": [
                {
                    "name": ep,
                    "path": f"/{ep}.json",
                    "count_path": f"/{ep}/count.json",
                    "pagination": "link header (RFC 8288) with page_info",
                    "order": "id asc (order=updated_at asc + since_id for keyset)",
                    "filters": list(_FILTERS) + ["since_id"]
                    + (["status (default open; any for all)"] if ep == "orders" else []),
                    "filter_format": "ISO 8601; inclusive; naive = shop time UTC-05:00",
                    "records_path": ep,
                    "default_page_size": self.default_limit,
                    "max_page_size": cap,
                }
                for ep in self.renderers
            ],
        }


def _key(k):
    return tuple(k) if isinstance(k, list) else int(k)


class _BadParam(Exception):
    def __init__(self, field, message):
        super().__init__(message)
        self.field, self.message = field, message
