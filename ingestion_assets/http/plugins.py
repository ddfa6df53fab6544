"""Loading custom paginator and auth classes named by import path."""

from __future__ import annotations

import importlib
from typing import Any

from ingestion_assets.http.errors import ConfigurationError


def load_object(path: str, *, base: type | None = None, kind: str = "object") -> Any:
    """Import ``"package.module:Name"`` (or ``"package.module.Name"``) and return the object.

    Args:
        path: Import path; ``Name`` may be dotted (``"mod:Outer.Inner"``).
        base: When given, the object must be a subclass of it.
        kind: What is being loaded, for the error message.

    Raises:
        ConfigurationError: The module or attribute is missing, or not a ``base`` subclass.
    """
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigurationError(
            f"{kind} path must look like 'package.module:ClassName', got {path!r}"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"cannot import module {module_name!r} for {kind} {path!r}: {exc}"
        ) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ConfigurationError(
                f"{kind} {path!r}: {module_name} has no attribute {attr!r}"
            ) from exc
    if base is not None and not (isinstance(obj, type) and issubclass(obj, base)):
        raise ConfigurationError(
            f"{kind} {path!r} must be a subclass of {base.__module__}.{base.__name__}"
        )
    return obj
