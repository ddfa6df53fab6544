"""`ingestion_assets.dagster_shim` against the installed Dagster, and no `dagster._` elsewhere.

Each shim entry is exercised as its caller uses it; a Dagster upgrade that moves or changes
one fails here, naming the entry (``dagster_shim.<name>``), before it breaks a run.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from ingestion_assets import dagster_shim

PACKAGE = Path(dagster_shim.__file__).resolve().parent
#: Non-public Dagster modules: `dagster._...` and component helpers not exported by
#: `dagster` / `dagster.components` (`dagster.components.utils...`).
PRIVATE_IMPORT = re.compile(
    r"^\s*(?:from|import)\s+dagster(?:\._|\.components\.utils\b)", re.MULTILINE
)


@contextmanager
def entry(name: str):
    """Re-raise any failure as one naming the shim entry."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - re-raised with the entry's name
        raise AssertionError(
            f"dagster_shim.{name} no longer works with Dagster {dg.__version__}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def test_every_shim_entry_is_tested():
    tested = {n.removeprefix("test_") for n in globals() if n.startswith("test_")}
    assert set(dagster_shim.__all__) <= tested, set(dagster_shim.__all__) - tested


def test_materialization_target():
    with entry("materialization_target"):
        target = dagster_shim.materialization_target(7, "run-1", 1700000000.0)
        evaluation = dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey("a"), check_name="c", passed=True,
            target_materialization_data=target,
        )
        data = evaluation.target_materialization_data
        assert (data.storage_id, data.run_id, data.timestamp) == (7, "run-1", 1700000000.0)


def test_check_output_name():
    specs = [dg.AssetCheckSpec("row_count", asset=dg.AssetKey(["src", "orders"])),
             dg.AssetCheckSpec("schema_drift", asset=dg.AssetKey(["src", "orders"]))]

    @dg.multi_asset_check(specs=specs, can_subset=True)
    def checks(context):
        for spec in specs:
            yield dg.AssetCheckResult(asset_key=spec.asset_key, check_name=spec.name,
                                      passed=True)

    with entry("check_output_name"):
        names = {dagster_shim.check_output_name(s) for s in specs}
        assert names == set(checks.node_def.output_dict), (names, checks.node_def.output_dict)


def _run_io_manager(handle_output) -> dg.DagsterInstance:
    class Probe(dg.IOManager):
        def handle_output(self, context, obj):
            handle_output(context)

        def load_input(self, context):
            return None

    pdef = dg.StaticPartitionsDefinition(["a", "b"])

    @dg.asset(partitions_def=pdef, io_manager_key="probe")
    def probed():
        return 1

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([probed], instance=instance, partition_key="b",
                            resources={"probe": Probe()}, raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return instance


def test_add_asset_partition_metadata():
    with entry("add_asset_partition_metadata"):
        instance = _run_io_manager(lambda context: dagster_shim.add_asset_partition_metadata(
            context, {"rows": 3}, "b"))
        records = instance.fetch_materializations(dg.AssetKey("probed"), limit=5).records
        assert [r.asset_materialization.partition for r in records] == ["b"]
        assert records[0].asset_materialization.metadata["rows"].value == 3


def test_output_instance():
    seen = []
    with entry("output_instance"):
        instance = _run_io_manager(lambda context: seen.append(
            dagster_shim.output_instance(context)))
        assert len(seen) == 1 and seen[0] is instance
    # Without a run there is no instance: callers rely on it raising.
    try:
        dagster_shim.output_instance(dg.build_output_context())
    except Exception:  # noqa: BLE001 - any error; the caller catches them all
        pass
    else:
        raise AssertionError("dagster_shim.output_instance: expected an error without a run")


def test_partition_status():
    pdef = dg.StaticPartitionsDefinition(["a", "b", "c"])

    @dg.asset(partitions_def=pdef)
    def letters(context):
        if context.partition_key == "b":
            raise RuntimeError("b fails")

    with entry("partition_status"), dg.instance_for_test() as instance:
        assert dagster_shim.partition_status(instance, letters.key, pdef) == (set(), set())
        for key in ("a", "b"):
            dg.materialize([letters], instance=instance, partition_key=key,
                           raise_on_error=False)
        assert dagster_shim.partition_status(instance, letters.key, pdef) == ({"a"}, {"b"})


def test_TranslatorResolvingInfo():  # noqa: N802 - named after the shim entry
    with entry("TranslatorResolvingInfo"):
        for attributes in (dg.AssetAttributesModel(group_name="{{ role }}_g", key_prefix="p"),
                           '{{ {"group_name": role + "_g", "key_prefix": "p"} }}'):
            info = dagster_shim.TranslatorResolvingInfo(
                asset_attributes=attributes,
                resolution_context=dg.ResolutionContext.default(),
                model_key="translation",
            )
            spec = info.get_asset_spec(dg.AssetSpec("a"), {"role": "raw"})
            assert spec.group_name == "raw_g", attributes
            if not isinstance(attributes, str):
                assert spec.key == dg.AssetKey(["p", "a"])


def test_no_module_outside_the_shim_imports_dagster_internals():
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{text[:m.start()].count(chr(10)) + 1}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "dagster_shim.py" or path.parent != PACKAGE
        for text in [path.read_text(encoding="utf-8")]
        for m in PRIVATE_IMPORT.finditer(text)
    ]
    assert not offenders, (
        f"import non-public Dagster through ingestion_assets/dagster_shim.py: {offenders}"
    )
