"""Which executor runs the steps of a run, chosen by the environment.

One code location serves a laptop and a cluster: nothing to change in code, only in the
environment of the code server (and of the Celery workers).

``INGESTION_EXECUTOR``
    unset or ``default``  Dagster's default: each step in its own process on the run's
                          machine (in-process for ``execute_in_process`` / tests).
    ``multiprocess``      the same, explicitly (``INGESTION_MAX_CONCURRENT`` caps the
                          processes at once; default: the CPU count).
    ``in_process``        every step in the run worker's own process.
    ``celery``            ``dagster_celery.celery_executor``: steps are queued on a broker and
                          run by Celery workers on any machine that can import this package
                          and reach the Dagster instance (Postgres) and the data (object
                          storage).

``INGESTION_CELERY_BROKER``   broker URL, e.g. ``redis://redis:6379/0`` or
                              ``pyamqp://user:password@rabbitmq:5672//`` (required for celery).
``INGESTION_CELERY_BACKEND``  result backend URL; default: the broker for ``redis://``,
                              ``rpc://`` (through the broker) otherwise.

The broker and backend are passed to Dagster as ``{env: NAME}``, so a password in the URL is
read where the run executes and never stored in the run's config or the job snapshot.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

EXECUTOR_ENV_VAR = "INGESTION_EXECUTOR"
MAX_CONCURRENT_ENV_VAR = "INGESTION_MAX_CONCURRENT"
BROKER_ENV_VAR = "INGESTION_CELERY_BROKER"
BACKEND_ENV_VAR = "INGESTION_CELERY_BACKEND"

EXECUTORS = ("default", "multiprocess", "in_process", "celery")


class ExecutorSettingError(ValueError):
    """The executor settings in the environment are invalid (names the variable)."""


def executor_from_env(environ: Mapping[str, str] | None = None) -> dg.ExecutorDefinition | None:
    """The executor the environment asks for, or None for Dagster's default."""
    env = os.environ if environ is None else environ
    name = (env.get(EXECUTOR_ENV_VAR) or "default").strip().lower().replace("-", "_")
    if name == "default":
        return None
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        limit = env.get(MAX_CONCURRENT_ENV_VAR)
        if not limit:
            return dg.multiprocess_executor
        if not limit.isdigit() or int(limit) < 1:
            raise ExecutorSettingError(
                f"{MAX_CONCURRENT_ENV_VAR} must be a positive integer, not {limit!r}"
            )
        return dg.multiprocess_executor.configured({"max_concurrent": int(limit)})
    if name == "celery":
        return _celery_executor(env)
    raise ExecutorSettingError(
        f"{EXECUTOR_ENV_VAR}={name!r} is not an executor; choose one of {', '.join(EXECUTORS)}"
    )


def _celery_executor(env: Mapping[str, str]) -> dg.ExecutorDefinition:
    try:
        from dagster_celery import celery_executor
    except ImportError as exc:  # pragma: no cover - dagster-celery is a dependency
        raise ExecutorSettingError(
            f"{EXECUTOR_ENV_VAR}=celery needs dagster-celery: pip install 'ingestion_assets[prod]'"
        ) from exc
    broker = env.get(BROKER_ENV_VAR)
    if not broker:
        raise ExecutorSettingError(
            f"{EXECUTOR_ENV_VAR}=celery needs {BROKER_ENV_VAR} (e.g. redis://127.0.0.1:6379/0)"
        )
    if env.get(BACKEND_ENV_VAR):
        backend: dict[str, str] | str = {"env": BACKEND_ENV_VAR}
    elif broker.startswith(("redis://", "rediss://")):
        backend = {"env": BROKER_ENV_VAR}
    else:
        backend = "rpc://"
    return celery_executor.configured(
        {"broker": {"env": BROKER_ENV_VAR}, "backend": backend},
        name="celery",
    )
