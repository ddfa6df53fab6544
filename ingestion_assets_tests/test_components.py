"""The `dg` project and the `RestApiSource` Component, through `dg` and through Dagster.

`dg` runs as a user runs it (the virtualenv's `dg`, a temporary DAGSTER_HOME); sources written
as component files are materialized against the demo API and compared with its records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ingestion_assets.definitions import build_definitions, location_definitions
from ingestion_assets.demo_api import demo_env
from ingestion_assets.specs import DEFAULT_SOURCES_DIR, SpecError, load_sources
from ingestion_assets.translation import EndpointSpecData, IngestionTranslator
from ingestion_assets.webhooks.assets import SPOOL_RESOURCE_KEY, WebhookSpoolResource
from ingestion_assets.webhooks.spool import SPOOL_ENV_VAR, Event, SpoolWriter
from ingestion_assets_tests.test_factory import window

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
COMPONENT = "ingestion_assets.components.RestApiSource"
DAY = "2025-02-10"

#: The demo API's Stripe-style charges endpoint, as a user would fill in a scaffolded file.
CHARGES = {
    "name": "charges",
    "path": "/v1/charges",
    "records_path": "data",
    "primary_key": "id",
    "params": {"limit": 100},
    "pagination": {"type": "cursor", "cursor_param": "starting_after", "cursor_field": "id",
                   "has_more_path": "has_more"},
    "partitioning": {"type": "daily", "start": "2025-01-01"},
    "window": {"start_param": "created[gte]", "end_param": "created[lt]", "format": "unix"},
    "timestamp_fields": ["created"],
}


def run_dg(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "INGESTION_SOURCES"}
    env.update(DAGSTER_HOME=str(home), VIRTUAL_ENV=str(VENV_BIN.parent),
               PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", NO_COLOR="1",
               COLUMNS="200")
    return subprocess.run([str(VENV_BIN / "dg"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def demo_env_vars(demo_api, monkeypatch):
    for name, value in demo_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DEMO_API_URL", demo_api.url)
    monkeypatch.delenv("INGESTION_SOURCES", raising=False)
    return demo_api


def new_project(root: Path, monkeypatch) -> tuple[Path, str]:
    """An empty dg project (own package, empty defs folder) using our Component registry."""
    module = f"proj_{uuid.uuid4().hex[:8]}"
    (root / module / "defs").mkdir(parents=True)
    (root / module / "__init__.py").write_text("")
    (root / module / "defs" / "__init__.py").write_text("")
    # The code location of a user's project: its defs folder, plus our IO managers/executor.
    (root / module / "definitions.py").write_text(
        "from pathlib import Path\n\nimport dagster as dg\n\n"
        "from ingestion_assets.definitions import location_definitions\n\n\n"
        "@dg.definitions\ndef defs():\n"
        "    folder = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)\n"
        "    return dg.Definitions.merge(folder, location_definitions())\n"
    )
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "{module}"\nversion = "0"\n\n'
        f'[tool.dg]\ndirectory_type = "project"\n\n'
        f'[tool.dg.project]\nroot_module = "{module}"\n'
        f'registry_modules = ["ingestion_assets.components"]\n'
    )
    monkeypatch.syspath_prepend(str(root))
    return root, module


def materialize_all(defs: dg.Definitions, partition_key: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(list(defs.assets), resources=defs.resources,
                          instance=dg.DagsterInstance.ephemeral(), partition_key=partition_key)


def row_counts(result: dg.ExecuteInProcessResult) -> dict[str, int]:
    return {
        e.asset_key.to_user_string(): e.materialization.metadata["dagster/row_count"].value
        for e in result.get_asset_materialization_events()
        if "dagster/row_count" in e.materialization.metadata
    }


# --------------------------------------------------------------------------- dg on the repo


def test_dg_check_defs_list_components_and_list_defs_on_the_repo(tmp_path):
    checked = run_dg("check", "defs", cwd=REPO_ROOT, home=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr

    components = run_dg("list", "components", "--json", cwd=REPO_ROOT, home=tmp_path)
    assert components.returncode == 0, components.stderr
    assert COMPONENT in components.stdout

    listed = run_dg("list", "defs", "--json", cwd=REPO_ROOT, home=tmp_path)
    assert listed.returncode == 0, listed.stderr
    for source in ("payments", "commerce", "crm", "devhub", "exports", "helpdesk"):  # six
        assert f'"{source}/' in listed.stdout and f'"raw/{source}/' in listed.stdout


def test_the_demo_sources_are_component_files_and_the_same_loader_reads_them():
    files = sorted(p.relative_to(DEFAULT_SOURCES_DIR).as_posix()
                   for p in DEFAULT_SOURCES_DIR.glob("*/defs.yaml"))
    assert files == [f"{s}/defs.yaml"
                     for s in ("commerce", "crm", "devhub", "exports", "helpdesk", "payments")]
    for path in DEFAULT_SOURCES_DIR.glob("*/defs.yaml"):
        assert yaml.safe_load(path.read_text())["type"] == COMPONENT
    # $INGESTION_SOURCES may name a component file: the same sources come out.
    assert load_sources(DEFAULT_SOURCES_DIR / "payments" / "defs.yaml") == [
        s for s in load_sources() if s.name == "payments"
    ]


# --------------------------------------------------------------------------- scaffold


def test_scaffolded_source_filled_for_the_demo_api_materializes_a_partition(
    demo_env_vars, tmp_path, monkeypatch
):
    project, module = new_project(tmp_path / "project", monkeypatch)
    scaffolded = run_dg("scaffold", "defs", COMPONENT, "my_api", cwd=project, home=tmp_path)
    assert scaffolded.returncode == 0, scaffolded.stdout + scaffolded.stderr
    path = project / module / "defs" / "my_api" / "defs.yaml"
    text = path.read_text()
    assert text.count("\n#") >= 3 and "name: my_api" in text  # commented, named after its folder
    config = yaml.safe_load(text)
    assert config["type"] == COMPONENT
    (scaffold,) = load_sources(path)  # valid as written, before any edit
    assert scaffold.name == "my_api" and scaffold.auth.token.env == "MY_API_TOKEN"

    # Filled in for the demo API's payments API, as a user would; the key stays a reference.
    config["attributes"].update(
        base_url="${DEMO_API_URL}/payments",
        auth={"type": "bearer", "token": "{{ env.DEMO_PAYMENTS_KEY }}"},
        endpoints=[CHARGES],
    )
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    checked = run_dg("check", "defs", cwd=project, home=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    defs = dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=project),
        location_definitions(str(tmp_path / "data")),
    )
    # The resource (what the UI shows as its config) holds the variable's name, not its value.
    assert defs.resources["api_my_api"].auth == {
        "type": "bearer", "token": {"env": "DEMO_PAYMENTS_KEY"}}
    result = materialize_all(defs, DAY)
    assert result.success
    truth = demo_env_vars.records("payments", "charges", *window(DAY))
    assert truth and row_counts(result)["my_api/charges"] == len(truth)
    secret = os.environ["DEMO_PAYMENTS_KEY"]
    for event in result.all_events:
        assert secret not in repr(event)


# --------------------------------------------------------------------------- translation

TRANSLATED = """\
type: ingestion_assets.components.RestApiSource
attributes:
  name: shop
  base_url: ${DEMO_API_URL}/payments
  auth: {type: bearer, token: "{{ env.DEMO_PAYMENTS_KEY }}"}
  endpoints: [%s]
  translation:
    key_prefix: warehouse
    group_name: "{{ source.name }}_{{ role }}"
    owners: [team:data]
    tags: {layer: "{{ role }}", endpoint: "{{ endpoint.name }}"}
    automation_condition: "{{ automation_condition.on_cron('0 2 * * *') }}"
"""


def translated_source(endpoint: dict, tmp_path: Path, monkeypatch) -> dg.Definitions:
    """The definitions of a new project holding one `TRANSLATED` source with ``endpoint``."""
    project, module = new_project(tmp_path / "project", monkeypatch)
    folder = project / module / "defs" / "shop"
    folder.mkdir()
    flow = yaml.safe_dump(endpoint, default_flow_style=True, width=10_000).strip()
    (folder / "defs.yaml").write_text(TRANSLATED % flow)
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=project),
        location_definitions(str(tmp_path / "data")),
    )


def test_translation_in_defs_yaml_changes_keys_groups_owners_tags_and_automation(
    demo_env_vars, tmp_path, monkeypatch
):
    defs = translated_source(CHARGES, tmp_path, monkeypatch)
    graph = defs.resolve_asset_graph()
    raw, table = dg.AssetKey("warehouse/raw/shop/charges".split("/")), dg.AssetKey(
        "warehouse/shop/charges".split("/"))
    assert set(graph.get_all_asset_keys()) == {raw, table}
    for key, role in ((raw, "raw"), (table, "table")):
        node = graph.get(key)
        assert node.group_name == f"shop_{role}"
        assert node.owners == ["team:data"]
        assert node.tags["layer"] == role and node.tags["endpoint"] == "charges"
        assert node.automation_condition is not None
        assert "0 2 * * *" in str(node.automation_condition.get_label() or
                                  node.automation_condition)
    assert raw in graph.get(table).parent_keys
    # The checks follow the translated table key.
    assert {k.asset_key for k in graph.asset_check_keys} == {table}

    result = materialize_all(defs, DAY)
    assert result.success
    truth = demo_env_vars.records("payments", "charges", *window(DAY))
    assert truth and row_counts(result)["warehouse/shop/charges"] == len(truth)


LAKE_COMPONENT = """\
import dagster as dg

from ingestion_assets.components import RestApiSource


class LakeSource(RestApiSource):
    def get_asset_spec(self, data):
        spec = super().get_asset_spec(data)  # the YAML's translation first
        owners = ["team:lake"] if data.role == "table" else spec.owners
        return spec.replace_attributes(key=spec.key.with_prefix("lake"), owners=owners)
"""


def test_a_component_subclass_translates_in_python_after_the_yaml(
    demo_env_vars, tmp_path, monkeypatch
):
    project, module = new_project(tmp_path / "project", monkeypatch)
    (project / module / "components.py").write_text(LAKE_COMPONENT)
    folder = project / module / "defs" / "shop"
    folder.mkdir()
    charges = yaml.safe_dump(CHARGES, default_flow_style=True, width=10_000).strip()
    (folder / "defs.yaml").write_text(
        (TRANSLATED % charges).replace(COMPONENT, f"{module}.components.LakeSource")
    )
    defs = dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=project),
        location_definitions(str(tmp_path / "data")),
    )
    graph = defs.resolve_asset_graph()
    table = dg.AssetKey(["lake", "warehouse", "shop", "charges"])
    assert set(graph.get_all_asset_keys()) == {
        table, dg.AssetKey(["lake", "warehouse", "raw", "shop", "charges"])}
    assert graph.get(table).owners == ["team:lake"] and graph.get(table).group_name == "shop_table"
    result = materialize_all(defs, DAY)
    assert result.success
    truth = demo_env_vars.records("payments", "charges", *window(DAY))
    assert truth and row_counts(result)["lake/warehouse/shop/charges"] == len(truth)


#: The charges endpoint with Stripe-style webhooks that also request the pull partition.
HOOKED = {**CHARGES, "webhook": {
    "style": "stripe", "secrets": [{"env": "SHOP_WEBHOOK_SECRET"}], "object_path": "data.object",
    "start": "2025-03-01", "request_pull_partition": True,
}}
EVENT_HOUR, EVENT_TIME = "2025-03-01-10:00", 1_740_823_200  # 2025-03-01T10:00:00Z
CREATED = 1_739_188_800  # 2025-02-10T12:00:00Z: the charges' pull partition is DAY


def test_translation_in_defs_yaml_also_translates_the_webhook_events_assets(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("DEMO_API_URL", "http://127.0.0.1:9")  # nothing is pulled here
    spool_path = tmp_path / "spool.sqlite3"
    monkeypatch.setenv(SPOOL_ENV_VAR, str(spool_path))
    defs = translated_source(HOOKED, tmp_path, monkeypatch)
    graph = defs.resolve_asset_graph()
    raw, table = (dg.AssetKey(["warehouse", *p, "charges_events"]) for p in (["raw", "shop"],
                                                                             ["shop"]))
    pulled = {dg.AssetKey(["warehouse", "raw", "shop", "charges"]),
              dg.AssetKey(["warehouse", "shop", "charges"])}
    assert set(graph.get_all_asset_keys()) == {raw, table, *pulled}
    for key, role in ((raw, "events_raw"), (table, "events_table")):
        node = graph.get(key)
        assert node.group_name == f"shop_{role}"
        assert node.owners == ["team:data"]
        assert node.tags["layer"] == role and node.tags["endpoint"] == "charges"
        assert node.tags["ingestion/mode"] == "push"  # the default spec's tags stay
        assert "0 2 * * *" in str(node.automation_condition.get_label() or
                                  node.automation_condition)
    assert graph.get(table).parent_keys == {raw}

    # Three events of 10:00 in the spool: the sensor asks for the translated events assets,
    # and for the translated pull assets of the day the changed charges were created.
    writer = SpoolWriter(spool_path)
    for n in range(3):
        body = {"id": f"evt_{n}", "type": "charge.updated",
                "data": {"object": {"id": f"ch_{n}", "created": CREATED, "amount": n}}}
        assert writer.append(Event("shop", "charges", f"evt_{n}", "charge.updated",
                                   EVENT_TIME + 60 * n, EVENT_TIME + 60 * n + 1,
                                   json.dumps(body).encode()))
    writer.close()
    sensor = defs.get_repository_def().get_sensor_def("shop_charges_webhook_events")
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(
            instance=instance, definitions=defs,
            resources={SPOOL_RESOURCE_KEY: WebhookSpoolResource(path=str(spool_path))},
        ) as context:
            tick = sensor.evaluate_tick(context)
        by_partition = {r.partition_key: set(r.asset_selection) for r in tick.run_requests}
        assert by_partition == {EVENT_HOUR: {raw, table}, DAY: pulled}
        job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={raw, table})
        result = job.execute_in_process(instance=instance, partition_key=EVENT_HOUR)
    assert result.success
    assert row_counts(result) == {"warehouse/raw/shop/charges_events": 3,
                                  "warehouse/shop/charges_events": 3}


class Renamed(IngestionTranslator):
    """A Python translator: endpoint tables under `lake/`, one group per endpoint."""

    def get_asset_spec(self, data: EndpointSpecData) -> dg.AssetSpec:
        spec = super().get_asset_spec(data)
        return spec.replace_attributes(
            key=spec.key.with_prefix("lake"), group_name=f"{data.source.name}_{data.endpoint.name}"
        )


def test_python_translator_subclass_renames_assets_schedules_and_checks(
    demo_env_vars, tmp_path
):
    (payments,) = [s for s in load_sources() if s.name == "payments"]
    # Without its webhook: the pulled assets only (the events assets' translation is tested
    # by test_translation_in_defs_yaml_also_translates_the_webhook_events_assets).
    charges = payments.model_copy(update={"endpoints": [
        e.model_copy(update={"webhook": None}) for e in payments.endpoints if e.name == "charges"
    ]})
    defs = build_definitions([charges], str(tmp_path / "data"), translator=Renamed())
    graph = defs.resolve_asset_graph()
    table = dg.AssetKey(["lake", "payments", "charges"])
    assert set(graph.get_all_asset_keys()) == {table, dg.AssetKey(["lake", "raw", "payments",
                                                                   "charges"])}
    assert graph.get(table).group_name == "payments_charges"
    assert {k.asset_key for k in graph.asset_check_keys} == {table}
    repo = defs.get_repository_def()
    job = repo.get_job(repo.get_schedule_def("payments__charges_schedule").job_name)
    assert job.asset_layer.selected_asset_keys == set(graph.get_all_asset_keys())
    result = materialize_all(defs, DAY)
    assert result.success
    truth = demo_env_vars.records("payments", "charges", *window(DAY))
    assert truth and row_counts(result)["lake/payments/charges"] == len(truth)


# --------------------------------------------------------------------------- errors


def test_a_mistake_in_a_component_file_names_file_line_source_and_field(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_API_URL", "http://127.0.0.1:9")  # never called
    project, module = new_project(tmp_path / "project", monkeypatch)
    folder = project / module / "defs" / "shop"
    folder.mkdir()
    bad = dict(CHARGES, pagination={"type": "cursor", "cursor_parm": "after"})
    text = TRANSLATED % yaml.safe_dump(bad, default_flow_style=True, width=10_000).strip()
    (folder / "defs.yaml").write_text(text)
    line = 1 + text.splitlines().index(next(x for x in text.splitlines() if "endpoints:" in x))
    expected = f"defs.yaml:{line}: source 'shop': endpoint 'charges': field 'pagination"

    with pytest.raises(Exception) as raised:  # Dagster wraps the component's own error
        dg.load_from_defs_folder(path_within_project=project)
    assert isinstance(raised.value.__cause__, SpecError)
    assert expected in str(raised.value.__cause__)
    # The same loader serves $INGESTION_SOURCES: the same message.
    with pytest.raises(SpecError, match=expected.replace("[", r"\[")):
        load_sources(folder / "defs.yaml")
    checked = run_dg("check", "defs", cwd=project, home=tmp_path)
    assert checked.returncode != 0 and "cursor_parm" in checked.stdout + checked.stderr


def test_an_env_template_in_a_plain_setting_says_how_to_read_a_value(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_API_URL", "http://127.0.0.1:9")
    path = tmp_path / "shop" / "defs.yaml"
    path.parent.mkdir()
    text = TRANSLATED % yaml.safe_dump(CHARGES, default_flow_style=True, width=10_000).strip()
    path.write_text(text.replace("name: shop", 'name: shop\n  description: "{{ env.SHOP_DESC }}"'))
    with pytest.raises(SpecError, match=r"defs.yaml:4: source 'shop': field 'description': a "
                       r"secret reference .* write \$\{SHOP_DESC\}"):
        load_sources(path)


def test_the_component_accepts_every_source_setting_and_translation():
    from ingestion_assets.components import RestApiSource
    from ingestion_assets.specs import Source

    model = RestApiSource.get_model_cls()
    assert set(model.model_fields) == {*Source.model_fields, "translation"}
    required = {n for n, f in model.model_fields.items() if f.is_required()}
    assert required == {n for n, f in Source.model_fields.items() if f.is_required()}


def test_an_installed_package_without_pyproject_loads_the_same_defs_folder(tmp_path):
    # `pip install .` (the production image) puts the package where no pyproject.toml is.
    import shutil

    site = tmp_path / "site"
    shutil.copytree(REPO_ROOT / "ingestion_assets", site / "ingestion_assets",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "INGESTION_SOURCES"}
    env.update(PYTHONPATH=str(site), DAGSTER_HOME=str(tmp_path))
    code = ("import ingestion_assets.definitions as d; print(d.__file__); "
            "print(sorted(k.to_user_string() for k in "
            "d.defs.resolve_asset_graph().get_all_asset_keys()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    where, keys = out.stdout.strip().splitlines()[-2:]
    assert where.startswith(str(site))
    graph = build_definitions(load_sources(), str(tmp_path)).resolve_asset_graph()
    expected = sorted(k.to_user_string() for k in graph.get_all_asset_keys())
    assert keys == repr(expected)
