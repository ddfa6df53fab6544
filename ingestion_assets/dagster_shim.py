"""Every non-public Dagster API this project uses, in one place.

No other module of ``ingestion_assets`` imports ``dagster._`` or reaches into a Dagster
object's non-public attributes: it calls a function (or uses an alias) of this module.
Each entry says why it is needed and which public API would replace it; when Dagster
publishes one, the entry becomes a one-line call to it (or goes). The test
``ingestion_assets_tests/test_dagster_shim.py`` exercises every entry against the
installed Dagster, so an upgrade that moves or changes one fails naming the entry.
Checked against Dagster 1.13.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData as _TargetMaterializationData,
)
from dagster.components.utils.translation import TranslatorResolvingInfo

__all__ = [
    "TranslatorResolvingInfo",
    "add_asset_partition_metadata",
    "check_output_name",
    "materialization_target",
    "output_instance",
    "partition_status",
]

# ``TranslatorResolvingInfo`` (from ``dagster.components.utils.translation``, not exported by
# ``dagster`` or ``dagster.components``): renders a component's ``translation:`` attribute
# (a template or a mapping of AssetSpec attributes) into an AssetSpec per asset, as
# dagster-dlt's and dagster-sling's components do. Public replacement: none in 1.13 (the
# public ``dg.AssetAttributesModel`` declares the attributes but does not render per-asset
# templates with a scope); this alias goes when ``dagster.components`` exports it.


def materialization_target(storage_id: int, run_id: str, timestamp: float) -> Any:
    """The ``target_materialization_data`` of a ``dg.AssetCheckEvaluation``: links a check
    result to the materialization it judged (the UI shows the check on that materialization).

    ``AssetCheckEvaluationTargetMaterializationData`` is not exported by ``dagster`` in 1.13.
    Public replacement: a check that yields ``dg.AssetCheckResult`` from the asset's own step
    gets the link implicitly, but these checks run in a step of their own and judge several
    partitions, so they emit evaluations.
    """
    return _TargetMaterializationData(storage_id=storage_id, run_id=run_id, timestamp=timestamp)


def check_output_name(spec: dg.AssetCheckSpec) -> str:
    """The output name a ``@dg.multi_asset_check`` gives a check spec's (blocking) output.

    ``AssetCheckSpec.get_python_identifier()`` is not public API in 1.13. A check step that
    emits ``dg.AssetCheckEvaluation`` events (one per partition) must still yield one
    ``dg.Output`` per selected spec, under this name. Public replacement: yielding one
    ``dg.AssetCheckResult`` per spec (which names the output itself), once per-partition
    check results are public (``partitions_def`` on ``AssetCheckSpec`` is a preview).
    """
    return spec.get_python_identifier()


def add_asset_partition_metadata(
    context: dg.OutputContext, metadata: Mapping[str, Any], partition_key: str
) -> None:
    """Metadata on the materialization of one partition of a multi-partition output.

    ``OutputContext.step_context`` (and its ``add_asset_metadata``) is not public in 1.13;
    the public ``context.add_output_metadata`` lands on every partition of the output, so a
    backfill run of 60 partitions would show one partition's counts on all 60. Public
    replacement: a ``partition_key`` argument on ``OutputContext.add_output_metadata``.
    """
    context.step_context.add_asset_metadata(
        dict(metadata), asset_key=context.asset_key, partition_key=partition_key
    )


def output_instance(context: dg.OutputContext) -> dg.DagsterInstance:
    """The Dagster instance of the run handling an output (to read the asset's event log).

    ``OutputContext`` has no public ``instance`` in 1.13 and ``OutputContext.step_context``
    is not public. Raises when the context was built
    without a run (``dg.build_output_context``). Public replacement: an
    ``OutputContext.instance`` property.
    """
    return context.step_context.instance


def partition_status(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partitions_def: dg.PartitionsDefinition
) -> tuple[set[str], set[str]]:
    """``(materialized, failed)`` partition keys of an asset, as the UI's partition bar shows.

    A partition is failed when its latest planned materialization was in a failed run that
    did not materialize it. The asset status cache computing this is not public in 1.13
    (``instance.get_materialized_partitions`` gives only the first set). Public
    replacement: a failed-partitions method on ``DagsterInstance``.
    """
    from dagster._core.storage.partition_status_cache import (
        get_and_update_asset_status_cache_value,
    )

    value = get_and_update_asset_status_cache_value(instance, asset_key, partitions_def)
    if value is None:
        return set(), set()
    return (
        set(value.deserialize_materialized_partition_subsets(partitions_def).get_partition_keys()),
        set(value.deserialize_failed_partition_subsets(partitions_def).get_partition_keys()),
    )
