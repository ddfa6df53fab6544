"""helpdesk: a Zendesk-like help desk API (``/helpdesk/api/v2/...``).

Bearer API tokens plus an app key header (``X-Helpdesk-App-Key``). Every request must name
its client in ``User-Agent``: a missing or empty one, or a library's generic agent
(``python-requests/2.32``, ``Python-urllib/3.11``), gets 403 with a body saying so.
Tickets are paged with a cursor (``page[size]``, ``page[after]``; ``meta.has_more``,
``meta.after_cursor``) and filtered by creation time (``created_after`` inclusive,
``created_before`` exclusive, ISO 8601). The comments of one ticket
(``/tickets/{id}/comments``) are paged by page number with a ``count``, and served by API
version 2 only: without ``X-Helpdesk-Version: 2`` they answer 400 saying so.
"""

from __future__ import annotations

import re

from . import credentials as creds
from .base import ApiError, Request, Response, Source
from .data import EXTRA_BASE, Collection, Query
from .fake import FIRST, LAST, WORDS
from .ratelimit import FixedWindow
from .timeutil import TimeParseError, iso_z

_TICKETS_RE = re.compile(r"^/api/v2/tickets/?$")
_COMMENTS_RE = re.compile(r"^/api/v2/tickets/([^/]+)/comments/?$")
_TICKET_PARAMS = {"created_after", "created_before", "page[size]", "page[after]"}
_COMMENT_PARAMS = {"page", "per_page"}
#: Agents a help desk refuses: a client must say who it is, not which library it uses.
GENERIC_AGENTS = ("python-requests/", "python-urllib/")
VERSION_HEADER = "X-Helpdesk-Version"
APP_KEY_HEADER = "X-Helpdesk-App-Key"
_STATUS = ("new", "open", "open", "pending", "solved", "solved", "closed", "closed")
_PRIORITY = ("low", "normal", "normal", "high", "urgent", None, "normal", "low")
_CHANNELS = ("email", "web", "api", "email")
_TICKET_ID_BASE = 10_001
_EXTRA_ID_BASE = 900_000  # tickets inserted by `mutate`
#: Comments of one ticket: 1 (the description) to 5, the k-th up to 2 days after the one before.
MAX_COMMENTS = 5
_COMMENT_GAP_S = 2 * 86400


class Helpdesk(Source):
    name = "helpdesk"
    base_path = "/helpdesk"
    auth_model = "bearer_and_app_key_header"
    vendor = "Zendesk"
    intervals = {"tickets": 3600}
    default_limit, vendor_cap = 100, 100

    def make_limiter(self):
        return FixedWindow(self.config.allowance(self.name, 700), 60)

    # ---- protocol ---------------------------------------------------------------------

    def error(self, status, message, error="InvalidRequest", **extra):
        body = {"error": error, "description": message}
        body.update(extra)
        return Response.json(status, body)

    def authenticate(self, req: Request) -> str:
        agent = req.headers.get("user-agent", "").strip()
        if not agent or agent.lower().startswith(GENERIC_AGENTS):
            raise ApiError(self.error(
                403,
                "Requests must send a User-Agent header naming the client and how to reach "
                "its owner, e.g. 'acme-sync/1.2 (+mailto:data@acme.example)'; "
                f"got {agent or 'none'!r}. Generic library agents are refused.",
                error="UserAgentRequired",
            ))
        auth = req.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            raise ApiError(self.error(401, "Couldn't authenticate you: send Authorization: "
                                      "Bearer <API token>", error="Unauthorized"))
        token = auth[7:].strip()
        if token != creds.HELPDESK_TOKEN:
            raise ApiError(self.error(401, "Couldn't authenticate you", error="Unauthorized"))
        if req.headers.get(APP_KEY_HEADER.lower()) != creds.HELPDESK_APP_KEY:
            raise ApiError(self.error(
                403, f"This account needs its app key in the {APP_KEY_HEADER} header",
                error="AppKeyRequired",
            ))
        return token

    def rate_limited(self, info, retry_after):
        resp = self.error(429, "Number of allowed API requests per minute exceeded",
                          error="TooManyRequests")
        if retry_after is not None:
            resp.headers.append(("Retry-After", retry_after))
        return resp

    def server_error(self, status):
        return self.error(status, "Something went wrong on our side; please retry.",
                          error="InternalServerError")

    def extra_headers(self, req):
        return [("X-Helpdesk-Served-Version", self._version(req, strict=False))]

    def _version(self, req: Request, strict: bool = True) -> str:
        version = req.headers.get(VERSION_HEADER.lower(), "1").strip()
        if strict and version not in ("1", "2"):
            raise ApiError(self.error(
                400, f"Unknown API version {version!r} in {VERSION_HEADER} (1 or 2)",
                error="UnsupportedVersion",
            ))
        return version

    def route(self, req: Request, cred: str) -> Response:
        if req.method != "GET":
            return self.not_found(req)
        version = self._version(req)
        if _TICKETS_RE.match(req.rel):
            return self.tickets(req)
        m = _COMMENTS_RE.match(req.rel)
        if m:
            if version != "2":
                return self.error(
                    400, f"Ticket comments are served by API version 2 only: send the header "
                    f"{VERSION_HEADER}: 2", error="UnsupportedVersion",
                )
            return self.comments(req, m.group(1))
        return self.not_found(req)

    def not_found(self, req: Request) -> Response:
        return self.error(404, f"No route for {req.method} {req.rel}", error="RecordNotFound")

    @staticmethod
    def _unknown(req: Request, allowed: set[str]) -> str | None:
        return next((k for k in req.query if k not in allowed), None)

    # ---- tickets ----------------------------------------------------------------------

    def tickets(self, req: Request) -> Response:
        unknown = self._unknown(req, _TICKET_PARAMS)
        if unknown:
            return self.error(400, f"Unknown parameter {unknown!r}")
        coll = self.collection("tickets")
        size = self._size(req.arg("page[size]"), "page[size]")
        q = Query(now=req.now, order="created")
        try:
            q.created_min = self.parse_time(req.arg("created_after"))
            q.created_max = self.parse_time(req.arg("created_before"))
        except TimeParseError:
            return self.error(400, "created_after and created_before are ISO 8601 times")
        cursor = req.arg("page[after]")
        if cursor:
            try:
                created, idx = self.decode_cursor(cursor)
                q.after = (int(created), int(idx))
            except (ValueError, TypeError):
                return self.error(400, f"Invalid cursor {cursor!r}")
        self.apply_inserts(req, coll, q.created_max)
        idxs, more = coll.page(q, size)
        docs = [self.render_ticket(coll, i, req.now) for i in idxs]
        self.apply_schema(req.path, coll, idxs, docs)
        after = self.encode_cursor(list(coll.key_of(idxs[-1], "created", req.now))) if idxs else None
        params = {k: v[-1] for k, v in req.query.items() if k != "page[after]"}
        nxt = self.url(req, req.rel, {**params, "page[after]": after}) if more else None
        body = {"tickets": docs, "meta": {"has_more": more, "after_cursor": after if more else None},
                "links": {"next": nxt}}
        return Response.json(200, body)

    def _size(self, raw: str | None, name: str) -> int:
        if raw is None:
            return self.default_limit
        try:
            size = int(raw)
        except ValueError:
            raise ApiError(self.error(400, f"{name} must be a number")) from None
        cap = self.config.page_cap(self.vendor_cap)
        if not 1 <= size <= cap:
            raise ApiError(self.error(400, f"{name} must be between 1 and {cap}"))
        return size

    def ticket_id(self, i: int) -> int:
        return _TICKET_ID_BASE + i if i < EXTRA_BASE else _EXTRA_ID_BASE + (i - EXTRA_BASE)

    def ticket_index(self, token: str, now: int) -> int | None:
        """The record index of a ticket id as shown, or None when there is no such ticket."""
        if not token.isdigit() or len(token) > 12:
            return None
        t = int(token)
        i = t - _TICKET_ID_BASE if t < _EXTRA_ID_BASE else EXTRA_BASE + t - _EXTRA_ID_BASE
        return i if i >= 0 and self.collection("tickets").exists(i, now) else None

    def render_ticket(self, coll: Collection, i: int, now: int) -> dict:
        h = coll.hash_of(i)
        created, updated = coll.times(i, now, h)
        return {
            "id": self.ticket_id(i),
            "subject": f"{WORDS[(h >> 8) & 31].title()} {WORDS[(h >> 13) & 31]} not working",
            "description": f"Since this morning the {WORDS[(h >> 18) & 31]} page is blank.",
            "status": _STATUS[(h >> 23) & 7],
            "priority": _PRIORITY[(h >> 26) & 7],
            "requester_id": 36_000 + (h >> 29) % 500,
            "assignee_id": None if h & 2 else 77_000 + (h >> 38) % 20,
            "tags": [WORDS[(h >> 44) & 31]] if h & 4 else [],
            "comment_count": len(self.comment_times(coll, i, now)),
            "created_at": iso_z(created),
            "updated_at": iso_z(updated),
        }

    # ---- comments ---------------------------------------------------------------------

    def comment_times(self, coll: Collection, i: int, now: int) -> list[int]:
        """Creation times of the comments of ticket ``i`` that exist at ``now``."""
        h = coll.hash_of(i)
        t = coll.created_of(i)
        times = []
        for k in range(1 + (h >> 50) % MAX_COMMENTS):
            if k:
                t += 60 + (h >> (5 * k)) % _COMMENT_GAP_S
            if t >= now:
                break
            times.append(t)
        return times

    def render_comments(self, coll: Collection, i: int, now: int) -> list[dict]:
        ticket = self.ticket_id(i)
        h = coll.hash_of(i)
        docs = []
        for k, created in enumerate(self.comment_times(coll, i, now)):
            g = (h >> (3 * k)) ^ (k * 0x9E37)
            docs.append({
                "id": ticket * 100 + k + 1,
                "ticket_id": ticket,
                "author_id": 36_000 + (h >> 29) % 500 if k % 2 == 0 else 77_000 + g % 20,
                "public": bool(k == 0 or g & 1),
                "body": f"{FIRST[g & 31]} {LAST[(g >> 5) & 31]}: the {WORDS[(g >> 10) & 31]} "
                        "issue" + (" is still there." if k % 2 == 0 else " should be fixed now."),
                "via": {"channel": _CHANNELS[(g >> 15) & 3]},
                "created_at": iso_z(created),
            })
        return docs

    def comments(self, req: Request, token: str) -> Response:
        unknown = self._unknown(req, _COMMENT_PARAMS)
        if unknown:
            return self.error(400, f"Unknown parameter {unknown!r}")
        idx = self.ticket_index(token, req.now)
        if idx is None:
            return self.error(404, f"Ticket {token!r} not found", error="RecordNotFound")
        per_page = self._size(req.arg("per_page"), "per_page")
        try:
            page = max(1, int(req.arg("page", "1")))
        except ValueError:
            return self.error(400, "page must be a number")
        coll = self.collection("tickets")
        docs = self.render_comments(coll, idx, req.now)
        shown = docs[(page - 1) * per_page: page * per_page]
        more = page * per_page < len(docs)
        params = {"page": page + 1, "per_page": per_page}
        body = {"comments": shown, "count": len(docs),
                "next_page": self.url(req, req.rel, params) if more else None,
                "previous_page": self.url(req, req.rel, dict(params, page=page - 1))
                if page > 1 else None}
        return Response.json(200, body)

    # ---- ground truth / listing ---------------------------------------------------------

    def collection_for(self, endpoint: str, **scope) -> Collection:
        if endpoint != "tickets":
            raise KeyError(f"helpdesk has no endpoint {endpoint!r} to change (comments "
                           "follow their tickets)")
        return self.collection("tickets")

    def encode_id(self, endpoint, idx, **scope):
        return self.ticket_id(idx)

    def decode_id(self, endpoint, token, now, **scope):
        idx = self.ticket_index(str(token), now)
        if idx is None:
            raise KeyError(f"no ticket {token!r}")
        return idx

    def records(self, endpoint, start=None, end=None, field="created", **scope):
        """tickets: the window's tickets. comments: every comment of the window's tickets
        (the window applies to the tickets), or of one ticket with ``ticket=<id>``."""
        coll = self.collection("tickets")
        now = self.config.current_now()
        if endpoint == "tickets":
            return self.window_records(coll, self.render_ticket, start, end, field,
                                       f"{self.base_path}/api/v2/tickets")
        if endpoint != "comments":
            raise KeyError(f"helpdesk has no endpoint {endpoint!r}")
        if scope.get("ticket") is not None:
            idx = self.ticket_index(str(scope["ticket"]), now)
            return [] if idx is None else self.render_comments(coll, idx, now)
        tickets = self.window_records(coll, self.render_ticket, start, end, field,
                                      f"{self.base_path}/api/v2/tickets")
        return [c for t in tickets
                for c in self.render_comments(coll, self.ticket_index(str(t["id"]), now), now)]

    def listing(self) -> dict:
        cap = self.config.page_cap(self.vendor_cap)
        return self.listing_of(**{
            "auth": {
                "model": self.auth_model,
                "header": f"Authorization: Bearer <API token>; {APP_KEY_HEADER}: <app key>",
                "user_agent": "required: names the client (generic library agents get 403)",
                "env": ["DEMO_HELPDESK_TOKEN", "DEMO_HELPDESK_APP_KEY"],
            },
            "rate_limit": {"algorithm": "fixed_window", "per": "token",
                           "requests": self.limiter.limit, "window_s": 60,
                           "enabled": self.config.rate_limit},
            "endpoints": [
                {"name": "tickets", "path": "/api/v2/tickets", "records_path": "tickets",
                 "pagination": "cursor: page[size], page[after]; meta.has_more, "
                               "meta.after_cursor",
                 "order": "created asc", "filters": ["created_after", "created_before"],
                 "filter_format": "ISO 8601", "default_page_size": self.default_limit,
                 "max_page_size": cap},
                {"name": "comments", "path": "/api/v2/tickets/{id}/comments",
                 "records_path": "comments",
                 "pagination": "page number (page, per_page) with count and next_page",
                 "headers": f"{VERSION_HEADER}: 2 (required)", "order": "created asc",
                 "default_page_size": self.default_limit, "max_page_size": cap,
                 "note": f"1 to {MAX_COMMENTS} comments per ticket, the first when it opens"},
            ],
        })
