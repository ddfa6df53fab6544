"""Fault injection: what can go wrong with a real API, on demand.

A fault matches requests by source and path substring, lets ``after`` matching
requests through, then fires ``count`` times (``-1`` = on every match). Faults are
switched on per run (CLI ``--fault``), per test (:meth:`DemoApi.add_fault`) or over
HTTP (``POST /_control/faults``).
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import asdict, dataclass, fields

#: Faults that replace the response (the first one that fires wins).
TERMINAL_KINDS = (
    "server_error",
    "rate_limit",
    "drop_connection",
    "truncated_json",
    "error_body",
    "html",
)
#: Faults that alter the request handling but let it proceed.
SIDE_KINDS = ("slow", "latency", "expire_tokens", "insert_during_pagination", "ignore_params")
#: Faults applied when records are rendered (not per request).
DATA_KINDS = ("schema_change",)
#: Faults that make a matching request meet a quirk of some real APIs (default: always).
QUIRK_KINDS = ("null_when_empty", "string_time_filter", "link_needs_page")
KINDS = TERMINAL_KINDS + SIDE_KINDS + DATA_KINDS + QUIRK_KINDS


class FaultError(ValueError):
    """A fault description is invalid."""


@dataclass
class Fault:
    """One fault. Unused parameters of other kinds are ignored.

    Attributes:
        kind: one of :data:`KINDS`.
        source: source name, or None for every source.
        path: substring of the request path (e.g. ``"/v1/charges"``), or None for any.
        count: how many times it fires; -1 = always.
        after: matching requests let through before it starts firing.
        status: ``server_error`` status code (default 503).
        retry_after: ``rate_limit``: ``"2"``, ``"0"``, ``"http-date"`` or None (no header).
        retry_after_s: seconds from now used by the ``"http-date"`` form (default 2).
        delay: ``slow``: seconds to wait before answering.
        ms: ``latency``: milliseconds added to every matching request.
        mode: ``drop_connection``: ``"before_response"`` or ``"mid_body"``.
        records: ``insert_during_pagination``: records inserted at the head.
        since: ``schema_change``: ISO date; records created on or after it change.
        change: ``schema_change``: ``"add"``, ``"remove"`` or ``"retype"``.
        field: ``schema_change``: field name (dotted for nesting, e.g. ``properties.email``).
        value: ``schema_change`` add: value of the new field.
        type: ``schema_change`` retype: ``"string"``, ``"int"``, ``"float"``, ``"bool"``,
            ``"null"`` or ``"object"``.
        params: ``ignore_params``: query parameters the API acts as if it did not receive
            (an unsupported or misspelled filter, e.g. ``["created_at_min",
            "created_at_max"]``: every window gets every record).

    Quirks (no parameters; they fire on every match unless ``count`` says otherwise):
    ``null_when_empty`` sends ``null`` instead of an empty records list;
    ``string_time_filter`` makes the crm time filters compare the parameter's text with the
    records' ``...T00:00:00.000Z`` text; ``link_needs_page`` leaves out the devhub ``Link``
    header when the request has no ``page`` parameter.
    """

    kind: str
    source: str | None = None
    path: str | None = None
    count: int = 1
    after: int = 0
    status: int = 503
    retry_after: str | None = "2"
    retry_after_s: float = 2.0
    delay: float = 5.0
    ms: float = 0.0
    mode: str = "before_response"
    records: int = 1
    since: str | None = None
    change: str = "add"
    field: str | None = None
    value: object = None
    type: str = "string"
    params: list = dataclasses.field(default_factory=list)
    # bookkeeping (reported by GET /_control/faults)
    seen: int = dataclasses.field(default=0)
    fired: int = dataclasses.field(default=0)

    @classmethod
    def from_dict(cls, data: dict) -> Fault:
        if not isinstance(data, dict) or "kind" not in data:
            raise FaultError("a fault is an object with a 'kind'")
        known = {f.name for f in fields(cls)} - {"seen", "fired"}
        unknown = set(data) - known
        if unknown:
            raise FaultError(f"unknown fault parameters: {sorted(unknown)}")
        kw = dict(data)
        if kw["kind"] not in KINDS:
            raise FaultError(f"unknown fault kind {kw['kind']!r}; known: {list(KINDS)}")
        if kw["kind"] in ("latency", "schema_change", "ignore_params", *QUIRK_KINDS) and (
            "count" not in kw
        ):
            kw["count"] = -1
        if "params" in kw:
            params = kw["params"]
            if isinstance(params, str):
                params = [p for p in params.split("|") if p]
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                raise FaultError("params is a list of query parameter names")
            kw["params"] = params
        if "retry_after" in kw and kw["retry_after"] is not None:
            ra = kw["retry_after"]
            kw["retry_after"] = str(int(ra)) if isinstance(ra, (int, float)) and float(ra).is_integer() else str(ra)
        for name, typ in (("count", int), ("after", int), ("status", int), ("records", int)):
            if name in kw:
                try:
                    kw[name] = typ(kw[name])
                except (TypeError, ValueError) as exc:
                    raise FaultError(f"{name} must be an integer") from exc
        for name in ("delay", "ms", "retry_after_s"):
            if name in kw:
                try:
                    kw[name] = float(kw[name])
                except (TypeError, ValueError) as exc:
                    raise FaultError(f"{name} must be a number") from exc
        f = cls(**kw)
        if f.kind == "drop_connection" and f.mode not in ("before_response", "mid_body"):
            raise FaultError("drop_connection mode is 'before_response' or 'mid_body'")
        if f.kind == "ignore_params" and not f.params:
            raise FaultError("ignore_params needs 'params' (the query parameters to ignore)")
        if f.kind == "schema_change":
            if not f.field:
                raise FaultError("schema_change needs 'field'")
            if f.change not in ("add", "remove", "retype"):
                raise FaultError("schema_change change is 'add', 'remove' or 'retype'")
        return f

    def to_dict(self) -> dict:
        return asdict(self)

    def matches(self, source: str | None, path: str) -> bool:
        if self.source is not None and self.source != source:
            return False
        return self.path is None or self.path in path


@dataclass
class Triggered:
    """The faults that fired for one request."""

    terminal: Fault | None = None
    delay_s: float = 0.0
    expire_tokens: bool = False
    inserts: list = dataclasses.field(default_factory=list)
    quirks: set = dataclasses.field(default_factory=set)
    ignored_params: set = dataclasses.field(default_factory=set)


class FaultSet:
    """The active faults, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def schema_changes(self, source: str, path: str) -> list[Fault]:
        """Active schema changes for records served on ``path``."""
        with self._lock:
            return [
                f for f in self._faults if f.kind == "schema_change" and f.matches(source, path)
            ]

    def trigger(self, source: str | None, path: str, is_token_endpoint: bool = False) -> Triggered:
        """Counts this request against every matching fault and returns those that fire.

        The OAuth token endpoint is only hit by faults whose ``path`` names it, so a
        blanket fault on a source tests the data calls, not the login.
        """
        out = Triggered()
        with self._lock:
            for f in self._faults:
                if f.kind in DATA_KINDS or not f.matches(source, path):
                    continue
                if is_token_endpoint and f.path is None:
                    continue
                f.seen += 1
                if f.seen <= f.after or (f.count >= 0 and f.fired >= f.count):
                    continue
                if f.kind in TERMINAL_KINDS and out.terminal is not None:
                    continue  # one terminal fault per request; this one fires on the next
                f.fired += 1
                if f.kind in TERMINAL_KINDS:
                    out.terminal = f
                elif f.kind == "slow":
                    out.delay_s += f.delay
                elif f.kind == "latency":
                    out.delay_s += f.ms / 1000.0
                elif f.kind == "expire_tokens":
                    out.expire_tokens = True
                elif f.kind == "insert_during_pagination":
                    out.inserts.append(f)
                elif f.kind in QUIRK_KINDS:
                    out.quirks.add(f.kind)
                elif f.kind == "ignore_params":
                    out.ignored_params.update(f.params)
        return out


def parse_cli_fault(spec: str) -> Fault:
    """Parses ``KIND[:k=v,...]`` (``--fault``) into a :class:`Fault`.

    Values: integers and floats are converted, ``null``/``none`` becomes None.
    ``params`` lists names separated by ``|`` (``ignore_params:params=since|until``).
    ``retry_after`` is always kept as text (``0``, ``2``, ``http-date``).
    """
    kind, _, rest = spec.partition(":")
    data: dict = {"kind": kind.strip()}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        if "=" not in part:
            raise FaultError(f"fault parameter {part!r} is not k=v")
        k, v = (s.strip() for s in part.split("=", 1))
        if v.lower() in ("null", "none"):
            data[k] = None
        elif k in ("retry_after", "since", "field", "path", "source", "mode", "change", "type",
                   "params"):
            data[k] = v
        else:
            try:
                data[k] = int(v)
            except ValueError:
                try:
                    data[k] = float(v)
                except ValueError:
                    data[k] = v
    return Fault.from_dict(data)


def apply_schema_change(record: dict, fault: Fault) -> None:
    """Applies one schema change to a rendered record, in place."""
    *parents, leaf = fault.field.split(".")
    target = record
    for p in parents:
        nxt = target.get(p)
        if not isinstance(nxt, dict):
            if fault.change != "add":
                return
            nxt = {}
        # copy on write: nested dicts may be shared between rendered records
        nxt = target[p] = dict(nxt)
        target = nxt
    if fault.change == "add":
        target[leaf] = fault.value
    elif fault.change == "remove":
        target.pop(leaf, None)
    elif leaf in target:
        target[leaf] = _retype(target[leaf], fault.type)


def _retype(value, typ: str):
    try:
        if typ == "string":
            return str(value)
        if typ == "int":
            return int(float(value))
        if typ == "float":
            return float(value)
        if typ == "bool":
            return bool(value)
        if typ == "null":
            return None
        if typ == "object":
            return {"value": value}
    except (TypeError, ValueError):
        return str(value)
    return value
