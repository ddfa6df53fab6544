"""devhub: a GitHub-like REST API (``/devhub/...``).

Personal access tokens sent as ``Authorization: Bearer|token``, HTTP basic
(``user:token``) or the ``access_token`` query parameter; 5000 requests per hour
per token with GitHub's ``X-RateLimit-*`` headers (reset as epoch seconds);
page-number pagination with ``Link`` rel next/prev/first/last; repositories that
appear over time; an events feed whose cursor travels in a response header.
"""

from __future__ import annotations

import base64
import re
import threading
from itertools import islice

from . import credentials as creds
from .base import ApiError, Response, Source
from .data import EXTRA_BASE, Collection, Query
from .fake import FIRST, WORDS
from .ratelimit import FixedWindow
from .timeutil import TimeParseError, iso_z, parse_iso

ORGS = ("demo-org",)
_DOCS = "https://docs.github.com/rest"
_NOUNS = ("api", "web", "cli", "sdk", "infra", "docs", "etl", "app", "bot", "lib", "ops", "ui",
          "db", "ml", "auth", "core")
_REPOS_RE = re.compile(r"^/orgs/([^/]+)/repos$")
_ISSUES_RE = re.compile(r"^/repos/([^/]+)/([^/]+)/issues$")
_EVENTS_RE = re.compile(r"^/orgs/([^/]+)/events$")
_LANGS = ("Python", "Go", "TypeScript", "Rust", "Java", "Python", "Python", None)
_LABELS = ("bug", "enhancement", "documentation", "good first issue", "question", "wontfix")
_EVENT_TYPES = ("PushEvent", "PushEvent", "PushEvent", "PullRequestEvent", "IssuesEvent",
                "IssueCommentEvent", "CreateEvent", "WatchEvent")
REPO_INTERVAL = 5 * 86400  # a new repository every five days


class Devhub(Source):
    name = "devhub"
    base_path = "/devhub"
    auth_model = "bearer_or_basic_or_query"
    vendor = "GitHub"
    intervals = {"issues": 6 * 3600, "events": 600}
    default_limit, vendor_cap = 30, 100

    def __init__(self, api) -> None:
        super().__init__(api)
        self._repo_names: list[str] = []
        self._names_lock = threading.Lock()

    def make_limiter(self):
        return FixedWindow(self.config.allowance(self.name, 5000), 3600)

    # ---- protocol ---------------------------------------------------------------------

    def error(self, status, message, **extra):
        body = {"message": message, "documentation_url": _DOCS, "status": str(status)}
        body.update(extra)
        return Response.json(status, body)

    def authenticate(self, req):
        auth = req.headers.get("authorization", "")
        low = auth.lower()
        token = None
        if low.startswith("bearer ") or low.startswith("token "):
            token = auth.split(None, 1)[1].strip() if " " in auth else ""
        elif low.startswith("basic "):
            try:
                token = base64.b64decode(auth[6:].strip()).decode().split(":", 1)[1]
            except Exception:  # noqa: BLE001 - malformed header = bad credentials
                token = ""
        elif req.arg("access_token") is not None:
            token = req.arg("access_token")
        if token is None:
            raise ApiError(self.error(401, "Requires authentication"))
        if token not in creds.DEVHUB_TOKENS:
            raise ApiError(self.error(401, "Bad credentials"))
        return token

    def rate_headers(self, info):
        return [
            ("X-RateLimit-Limit", str(info["limit"])),
            ("X-RateLimit-Remaining", str(info["remaining"])),
            ("X-RateLimit-Reset", str(info["reset_epoch"])),
            ("X-RateLimit-Used", str(info["used"])),
            ("X-RateLimit-Resource", "core"),
        ]

    def rate_limited(self, info, retry_after):
        resp = self.error(
            429, "API rate limit exceeded for user ID 1. If you reach out to GitHub Support "
            "for help, please include the request ID.",
            documentation_url="https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
        )
        if retry_after is not None:
            resp.headers.append(("Retry-After", retry_after))
        return resp

    def server_error(self, status):
        return self.error(status, "Server Error")

    def extra_headers(self, req):
        return [("X-GitHub-Api-Version", "2022-11-28"), ("X-GitHub-Media-Type", "github.v3")]

    def route(self, req, cred):
        if req.method != "GET":
            return self.error(404, "Not Found")
        rel = req.rel.rstrip("/")
        m = _REPOS_RE.match(rel)
        if m:
            return self.repos(req, self._org(m.group(1)))
        m = _ISSUES_RE.match(rel)
        if m:
            org = self._org(m.group(1))
            return self.issues(req, org, self._repo_idx(m.group(2), req.now, org))
        m = _EVENTS_RE.match(rel)
        if m:
            return self.events(req, self._org(m.group(1)))
        return self.error(404, "Not Found")

    def _org(self, org):
        if org not in ORGS:
            raise ApiError(self.error(404, "Not Found"))
        return org

    # ---- repositories ---------------------------------------------------------------------

    def repo_coll(self) -> Collection:
        coll = self._collections.get(("repos", ""))
        if coll is None:
            # Entities, not records: always one every REPO_INTERVAL, even with --records.
            seed = self.collection_seed("repos")
            coll = self._collections.setdefault(
                ("repos", ""), Collection(seed, self.config.start_ts, interval=REPO_INTERVAL)
            )
        return coll

    def collection_seed(self, endpoint, scope=""):
        from .data import stable_seed

        return stable_seed(self.config.seed, self.name, endpoint, scope)

    def repo_name(self, i: int) -> str:
        if i >= EXTRA_BASE:
            return f"new-repo-{i - EXTRA_BASE}"
        off = self.config.seed
        # (i // 32 + 5 i) mod 16 differs for every i < 512 sharing i mod 32: names stay unique
        name = f"{WORDS[(i + off) % 32]}-{_NOUNS[(i // 32 + 5 * i + off) % 16]}"
        return name if i < 512 else f"{name}-{i // 512}"

    def _repo_idx(self, name, now, org):
        coll = self.repo_coll()
        n = coll.base_count(now)
        with self._names_lock:  # handler threads share the cache
            while len(self._repo_names) < n:
                self._repo_names.append(self.repo_name(len(self._repo_names)))
        try:
            return self._repo_names.index(name, 0, n)
        except ValueError:
            for i in coll.extras:
                if self.repo_name(i) == name and coll.extras[i] <= now:
                    return i
        raise ApiError(self.error(404, "Not Found"))

    def issue_coll(self, repo_idx: int) -> Collection:
        start = self.repo_coll().created_of(repo_idx)
        return self.collection("issues", scope=self.repo_name(repo_idx), start=start)

    def render_repo(self, coll, i, now, org="demo-org"):
        h = coll.hash_of(i)
        created, updated = coll.times(i, now, h)
        name = self.repo_name(i)
        rid = 700_000_000 + i
        return {
            "id": rid,
            "node_id": f"R_kgDO{rid:x}",
            "name": name,
            "full_name": f"{org}/{name}",
            "private": False,
            "owner": {"login": org, "id": 9_000_001, "type": "Organization"},
            "html_url": f"https://devhub.example/{org}/{name}",
            "description": f"The {name.replace('-', ' ')} project",
            "fork": False,
            "created_at": iso_z(created),
            "updated_at": iso_z(updated),
            "pushed_at": iso_z(updated),
            "language": _LANGS[(h >> 8) & 7],
            "stargazers_count": (h >> 12) % 500,
            "forks_count": (h >> 22) % 50,
            "open_issues_count": (h >> 30) % 40,
            "default_branch": "main",
            "archived": False,
            "visibility": "public",
        }

    def _paging(self, req):
        raw_pp = req.arg("per_page")
        try:
            per_page = int(raw_pp) if raw_pp is not None else self.default_limit
        except ValueError:
            per_page = self.default_limit
        # like GitHub: silently clamped to the maximum (a client asking for more must not
        # treat the shorter page as the last one)
        per_page = max(1, min(per_page, self.config.page_cap(self.vendor_cap)))
        try:
            page = max(1, int(req.arg("page", "1")))
        except ValueError:
            page = 1
        return per_page, page

    def _page_links(self, req, page, per_page, total):
        last = max(1, -(-total // per_page))
        params = {k: v[-1] for k, v in req.query.items() if k not in ("page", "access_token")}
        params["per_page"] = per_page
        links = []
        if "link_needs_page" in req.quirks and not req.has("page"):
            links = []  # this API pages only a request that names its page
        elif page < last:
            links.append(f'<{self.url(req, req.rel, dict(params, page=page + 1))}>; rel="next"')
            links.append(f'<{self.url(req, req.rel, dict(params, page=last))}>; rel="last"')
        if page > 1:
            links.append(f'<{self.url(req, req.rel, dict(params, page=1))}>; rel="first"')
            links.append(f'<{self.url(req, req.rel, dict(params, page=min(page - 1, last)))}>; rel="prev"')
        # Not GitHub's: the total only in a header, as GitLab and many JSON:API servers send it.
        headers = [("X-Total-Count", str(total))]
        return headers + ([("Link", ", ".join(links))] if links else [])

    def repos(self, req, org):
        coll = self.repo_coll()
        per_page, page = self._paging(req)
        direction = req.arg("direction", "desc")
        q = Query(now=req.now, order="created", desc=direction != "asc")
        self.apply_inserts(req, coll, None)
        idxs, _ = coll.page(q, per_page, (page - 1) * per_page)
        docs = [self.render_repo(coll, i, req.now, org) for i in idxs]
        self.apply_schema(req.path, coll, idxs, docs)
        return Response.json(200, docs, self._page_links(req, page, per_page, coll.count(q)))

    # ---- issues -----------------------------------------------------------------------------

    def _issue_state(self, h):
        return "closed" if h % 3 == 0 else "open"

    def issues(self, req, org, repo_idx):
        coll = self.issue_coll(repo_idx)
        per_page, page = self._paging(req)
        state = req.arg("state", "open")
        if state not in ("open", "closed", "all"):
            raise ApiError(self.error(
                422, "Validation Failed",
                errors=[{"resource": "Issue", "field": "state", "code": "invalid"}],
            ))
        sort, direction = req.arg("sort", "created"), req.arg("direction", "desc")
        if sort not in ("created", "updated") or direction not in ("asc", "desc"):
            raise ApiError(self.error(
                422, "Validation Failed",
                errors=[{"resource": "Issue", "field": "sort", "code": "invalid"}],
            ))
        q = Query(now=req.now, order=sort, desc=direction == "desc")
        since = req.arg("since")
        if since is not None:
            try:
                q.updated_min = parse_iso(since)
            except TimeParseError:
                raise ApiError(self.error(
                    422, "Validation Failed",
                    errors=[{"resource": "Issue", "field": "since", "code": "invalid"}],
                )) from None
        if state != "all":
            q.pred = lambda c, i, h: self._issue_state(h) == state
        self.apply_inserts(req, coll, None)
        offset = (page - 1) * per_page
        if sort == "updated" and q.desc:
            q.desc = False  # the streaming sort runs ascending; reverse it here
            all_idx = list(coll.iter(q))
            all_idx.reverse()
            total = len(all_idx)
            idxs = all_idx[offset:offset + per_page]
        else:
            idxs = list(islice(coll.iter(q), offset, offset + per_page))
            total = coll.count(q)
        full = self.repo_name(repo_idx)
        docs = [self.render_issue(coll, i, req.now, org, full) for i in idxs]
        self.apply_schema(req.path, coll, idxs, docs)
        return Response.json(200, docs, self._page_links(req, page, per_page, total))

    def render_issue(self, coll, i, now, org="demo-org", repo=""):
        h = coll.hash_of(i)
        created, updated = coll.times(i, now, h)
        number = 1 + i if i < EXTRA_BASE else 100000 + (i - EXTRA_BASE)
        state = self._issue_state(h)
        base = f"https://devhub.example/api/repos/{org}/{repo}"
        user = FIRST[(h >> 8) & 31].lower()
        return {
            "id": 2_000_000_000 + (coll.seed % 1000) * 1_000_000 + number,
            "node_id": f"I_kwDO{number:x}",
            "number": number,
            "title": f"{WORDS[(h >> 13) & 31].title()} fails when {WORDS[(h >> 18) & 31]} is empty",
            "state": state,
            "user": {"login": user, "id": 1000 + ((h >> 8) & 31), "type": "User"},
            "labels": [{"name": _LABELS[(h >> 23) % 6]}] if h & 4 else [],
            "comments": (h >> 26) % 12,
            "created_at": iso_z(created),
            "updated_at": iso_z(updated),
            "closed_at": iso_z(updated) if state == "closed" else None,
            "body": f"Steps to reproduce: {WORDS[(h >> 31) & 31]}.",
            "url": f"{base}/issues/{number}",
            "repository_url": base,
            "html_url": f"https://devhub.example/{org}/{repo}/issues/{number}",
        }

    # ---- events -------------------------------------------------------------------------------

    def events(self, req, org):
        coll = self.collection("events", scope=org)
        per_page, _ = self._paging(req)
        q = Query(now=req.now, order="created", desc=True)
        cursor = req.arg("cursor")
        if cursor:
            try:
                c, i = self.decode_cursor(cursor)
                q.after = (int(c), int(i))
            except (ValueError, TypeError):
                raise ApiError(self.error(400, f"Invalid cursor: {cursor}")) from None
        self.apply_inserts(req, coll, None)
        idxs, more = coll.page(q, per_page)
        docs = [self.render_event(coll, i, req.now, org) for i in idxs]
        self.apply_schema(req.path, coll, idxs, docs)
        headers = []
        if more and idxs:
            headers.append(("X-Next-Cursor", self.encode_cursor(list(coll.key_of(idxs[-1], "created", req.now)))))
        return Response.json(200, docs, headers)

    def render_event(self, coll, i, now, org="demo-org"):
        h = coll.hash_of(i)
        created = coll.created_of(i)
        # repositories come at a fixed interval: count them by arithmetic, not bisection
        n_repos = max(1, (created - self.config.start_ts) // REPO_INTERVAL + 1)
        repo = self.repo_name((h >> 16) % n_repos)
        etype = _EVENT_TYPES[(h >> 8) & 7]
        user = FIRST[(h >> 11) & 31].lower()
        return {
            "id": str(40_000_000_000 + i),
            "type": etype,
            "actor": {"id": 1000 + ((h >> 11) & 31), "login": user},
            "repo": {"id": 700_000_000 + (h >> 16) % n_repos, "name": f"{org}/{repo}"},
            "org": {"id": 9_000_001, "login": org},
            "payload": {"size": 1 + (h >> 40) % 5} if etype == "PushEvent" else {"action": "opened"},
            "public": True,
            "created_at": iso_z(created),
        }

    # ---- ground truth / listing ---------------------------------------------------------------

    def _scope_repo(self, scope, now):
        repo = scope.get("repo")
        if not repo:
            raise KeyError("devhub issues need repo='org/name' (or a name)")
        org, _, name = repo.rpartition("/")
        return self._repo_idx(name, now, org or ORGS[0])

    def collection_for(self, endpoint, **scope):
        now = self.config.current_now()
        if endpoint == "repos":
            return self.repo_coll()
        if endpoint == "issues":
            try:
                return self.issue_coll(self._scope_repo(scope, now))
            except ApiError:
                raise KeyError(f"no repository {scope.get('repo')!r}") from None
        if endpoint == "events":
            return self.collection("events", scope=scope.get("org", ORGS[0]))
        raise KeyError(f"devhub has no endpoint {endpoint!r}")

    def encode_id(self, endpoint, idx, **scope):
        if endpoint == "repos":
            return 700_000_000 + idx
        if endpoint == "events":
            return str(40_000_000_000 + idx)
        return 1 + idx if idx < EXTRA_BASE else 100000 + (idx - EXTRA_BASE)  # issue number

    def decode_id(self, endpoint, token, now, **scope):
        t = int(token)
        if endpoint == "repos":
            idx = t - 700_000_000
        elif endpoint == "events":
            idx = t - 40_000_000_000
        else:
            idx = t - 1 if t < 100000 else EXTRA_BASE + t - 100000
        if not self.collection_for(endpoint, **scope).exists(idx, now):
            raise KeyError(f"no {endpoint} record {token!r}")
        return idx

    def records(self, endpoint, start=None, end=None, field="created", **scope):
        now = self.config.current_now()
        coll = self.collection_for(endpoint, **scope)
        if endpoint == "repos":
            org = scope.get("org", ORGS[0])
            return self.window_records(coll, lambda c, i, n: self.render_repo(c, i, n, org),
                                       start, end, field, f"{self.base_path}/orgs/{org}/repos")
        if endpoint == "events":
            org = scope.get("org", ORGS[0])
            return self.window_records(coll, lambda c, i, n: self.render_event(c, i, n, org),
                                       start, end, field, f"{self.base_path}/orgs/{org}/events")
        idx = self._scope_repo(scope, now)
        name = self.repo_name(idx)
        return self.window_records(
            coll, lambda c, i, n: self.render_issue(c, i, n, ORGS[0], name), start, end, field,
            f"{self.base_path}/repos/{ORGS[0]}/{name}/issues",
        )

    def repo_names(self, now: int | None = None) -> list[str]:
        """Names of the repositories that exist at ``now`` (oldest first)."""
        now = self.config.current_now() if now is None else now
        coll = self.repo_coll()
        q = Query(now=now, order="created")
        return [self.repo_name(i) for i in coll.iter(q)]

    def listing(self):
        cap = self.config.page_cap(self.vendor_cap)
        common = {"default_page_size": self.default_limit, "max_page_size": cap,
                  "records_path": "$ (the body is a JSON array)"}
        return {
            "name": self.name,
            "imitates": self.vendor,
            "base_path": self.base_path,
            "orgs": list(ORGS),
            "auth": {
                "model": "bearer_or_basic_or_query",
                "header": "Authorization: Bearer <token> | token <token> | Basic user:token",
                "query": "access_token=<token>",
                "env": ["DEMO_DEVHUB_TOKEN"],
            },
            "rate_limit": {"algorithm": "fixed_window", "per": "token",
                           "requests": self.limiter.limit, "window_s": 3600,
                           "reset_header": "epoch seconds", "enabled": self.config.rate_limit},
            "endpoints": [
                dict(common, name="repos", path="/orgs/{org}/repos",
                     pagination="page number (page, per_page) + Link next/last/first/prev",
                     order="created desc (direction=asc)", filters=["direction"],
                     note="a new repository every 5 days: entities for dynamic partitions"),
                dict(common, name="issues", path="/repos/{org}/{repo}/issues",
                     pagination="page number (page, per_page) + Link next/last/first/prev",
                     order="created desc (sort=created|updated, direction=asc|desc)",
                     filters=["state (default open; all)", "since (ISO, updated >=)", "sort",
                              "direction"]),
                dict(common, name="events", path="/orgs/{org}/events",
                     pagination="cursor in response header X-Next-Cursor (absent at the end); "
                                "request param cursor",
                     order="created desc", filters=[]),
            ],
        }
