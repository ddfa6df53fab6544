"""The executor setting: Dagster's default unless the environment asks for another."""

import dagster as dg
import pytest

from ingestion_assets.definitions import build_definitions
from ingestion_assets.executors import ExecutorSettingError, executor_from_env
from ingestion_assets.specs import load_sources


def test_default_is_dagsters_own():
    assert executor_from_env({}) is None
    assert executor_from_env({"INGESTION_EXECUTOR": "default"}) is None


@pytest.mark.parametrize(
    ("value", "name"),
    [("in_process", "in_process"), ("in-process", "in_process"), ("multiprocess", "multiprocess")],
)
def test_named_executors(value, name):
    assert executor_from_env({"INGESTION_EXECUTOR": value}).name == name


def test_multiprocess_cap_must_be_a_positive_integer():
    env = {"INGESTION_EXECUTOR": "multiprocess", "INGESTION_MAX_CONCURRENT": "4"}
    assert executor_from_env(env).name == "multiprocess"
    with pytest.raises(ExecutorSettingError, match="INGESTION_MAX_CONCURRENT"):
        executor_from_env({**env, "INGESTION_MAX_CONCURRENT": "lots"})


def test_celery_needs_a_broker_and_keeps_its_url_out_of_the_definitions(monkeypatch):
    with pytest.raises(ExecutorSettingError, match="INGESTION_CELERY_BROKER"):
        executor_from_env({"INGESTION_EXECUTOR": "celery"})
    with pytest.raises(ExecutorSettingError, match="choose one of"):
        executor_from_env({"INGESTION_EXECUTOR": "kubernetes-please"})

    secret_url = "redis://:hunter2-broker-password@127.0.0.1:6379/0"
    monkeypatch.setenv("INGESTION_EXECUTOR", "celery")
    monkeypatch.setenv("INGESTION_CELERY_BROKER", secret_url)
    defs = build_definitions(load_sources(), "/tmp/unused")
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.executor_def.name == "celery"
    # The job snapshot (stored with every run, shown in the UI) names the variable only.
    snapshot = dg.serialize_value(job.get_job_snapshot())
    assert "hunter2" not in snapshot
