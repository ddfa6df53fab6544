"""Request headers from the configuration: names and values checked, a default User-Agent.

Many APIs refuse a request without a ``User-Agent`` naming its client (GitHub, Reddit,
Wikipedia, help desks), or with a library's generic one: every request names this project
and its version unless the source sets ``user_agent:``. Header names and values come from
YAML or the environment, so they are checked before anything is sent: a line break in a
value would split the request.
"""

from __future__ import annotations

import re
from importlib import metadata

import requests

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def default_user_agent() -> str:
    """``ingestion_assets/<version> python-requests/<version>``: the project first, so an API
    that refuses generic library agents accepts it."""
    try:
        version = metadata.version("ingestion_assets")
    except metadata.PackageNotFoundError:  # a source checkout that is not installed
        version = "0+unknown"
    return f"ingestion_assets/{version} python-requests/{requests.__version__}"


def header_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an HTTP header name (None: it can)."""
    if not isinstance(name, str) or not _TOKEN.match(name):
        return f"{name!r} is not a valid HTTP header name (letters, digits and -_.!#$%&'*+^`|~)"
    return None


def header_value_problem(name: str, value: str) -> str | None:
    """Why ``value`` cannot be sent as header ``name`` (None: it can). The value itself is
    never quoted: it may be a secret."""
    if _CONTROL.search(value):
        return f"the value of header {name!r} contains a line break or control character"
    return None
