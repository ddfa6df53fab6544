"""Schedules and sensors built from the endpoint specs, tested through Dagster.

Schedules are evaluated with ``build_schedule_context`` at chosen tick times (boundaries, DST
changes in non-UTC timezones, lookback). Sensors are evaluated with ``build_sensor_context``
against the demo API over loopback HTTP, with data changed through its mutations and the API
taken down with a fault. Retries are checked through
``dg.materialize``.
"""

import datetime as dt
import json
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from pydantic import ValidationError

from ingestion_assets.automation import (
    ChangePollError,
    Watermark,
    build_schedule,
    changes_sensor_name,
    discovery_sensor_name,
    schedule_name,
)
from ingestion_assets.definitions import build_definitions
from ingestion_assets.demo_api import demo_env
from ingestion_assets.factory import build_assets
from ingestion_assets.partitions import dynamic_partitions_name, partitions_def
from ingestion_assets.resources import ApiResource
from ingestion_assets.specs import Endpoint, RetrySpec, Source, load_sources

UTC = dt.timezone.utc
DEMO_NOW = dt.datetime(2025, 3, 1, tzinfo=UTC)  # the demo_api fixture's frozen clock
FAST_RETRY = RetrySpec(max_attempts=2, backoff_base_seconds=0.01, backoff_max_seconds=0.01)


# --------------------------------------------------------------------------- helpers


def endpoint(name: str = "items", **spec) -> Endpoint:
    base = {
        "name": name,
        "path": f"/{name}",
        "primary_key": "id",
        "partitioning": {"type": "daily", "start": "2025-01-01"},
        "window": {"start_param": "since", "end_param": "until"},
        "automation": {"schedule": {"running": True, "delay_minutes": 30}},
    }
    return Endpoint.model_validate({**base, **spec})


def source_of(*endpoints: Endpoint) -> Source:
    return Source(name="shop", base_url="http://127.0.0.1:9", endpoints=list(endpoints))


def tick(sched: dg.ScheduleDefinition, at: dt.datetime) -> list[str] | dg.SkipReason:
    """The partition keys a schedule requests at ``at`` (or its SkipReason)."""
    result = sched(dg.build_schedule_context(scheduled_execution_time=at))
    if isinstance(result, dg.SkipReason):
        return result
    return [str(r.partition_key) if r.partition_key is not None else None for r in result]


def schedule_for(ep: Endpoint) -> dg.ScheduleDefinition:
    return build_schedule(source_of(ep), ep)


# --------------------------------------------------------------------------- schedules


def test_schedule_ticks_the_delay_after_each_window_closes():
    daily = schedule_for(endpoint())
    assert (daily.cron_schedule, daily.execution_timezone) == ("30 0 * * *", "UTC")
    assert daily.default_status == dg.DefaultScheduleStatus.RUNNING
    hourly = schedule_for(endpoint(partitioning={"type": "hourly", "start": "2025-01-01"},
                                   automation={"schedule": {"delay_minutes": 15}}))
    assert hourly.cron_schedule == "15 * * * *"
    assert hourly.default_status == dg.DefaultScheduleStatus.STOPPED  # not turned on in YAML
    weekly = schedule_for(endpoint(
        partitioning={"type": "weekly", "start": "2025-01-06", "day_offset": 1},
        automation={"schedule": {"delay_minutes": 90}},
    ))
    assert weekly.cron_schedule == "30 1 * * 1"  # weeks start Monday 00:00
    monthly = schedule_for(endpoint(partitioning={"type": "monthly", "start": "2025-01-01"},
                                    automation={"schedule": {"delay_minutes": 24 * 60 + 5}}))
    assert monthly.cron_schedule == "5 0 2 * *"


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param("2025-02-10T00:29:59+00:00", ["2025-02-08"], id="before-boundary"),
        pytest.param("2025-02-10T00:30:00+00:00", ["2025-02-09"], id="at-boundary"),
        pytest.param("2025-02-10T07:00:00+00:00", ["2025-02-09"], id="after-boundary"),
        pytest.param("2025-02-10T23:59:59+00:00", ["2025-02-09"], id="end-of-next-day"),
    ],
)
def test_schedule_requests_the_newest_complete_partition(at, expected):
    sched = schedule_for(endpoint())
    assert tick(sched, dt.datetime.fromisoformat(at)) == expected


def test_schedule_lookback_rerequests_the_partitions_before_and_stops_at_the_start():
    sched = schedule_for(endpoint(automation={"schedule": {"delay_minutes": 30, "lookback": 2}}))
    assert tick(sched, dt.datetime(2025, 2, 10, 0, 30, tzinfo=UTC)) == [
        "2025-02-07", "2025-02-08", "2025-02-09",
    ]
    assert tick(sched, dt.datetime(2025, 1, 2, 0, 30, tzinfo=UTC)) == ["2025-01-01"]
    assert isinstance(tick(sched, dt.datetime(2025, 1, 1, 0, 30, tzinfo=UTC)), dg.SkipReason)


def test_schedule_run_keys_name_the_partition_and_the_tick():
    sched = schedule_for(endpoint(automation={"schedule": {"lookback": 1}}))
    at = dt.datetime(2025, 2, 10, 0, 30, tzinfo=UTC)
    runs = sched(dg.build_schedule_context(scheduled_execution_time=at))
    assert [r.run_key for r in runs] == [
        "2025-02-08@2025-02-10T00:30:00+00:00", "2025-02-09@2025-02-10T00:30:00+00:00",
    ]


def test_daily_schedule_in_new_york_requests_each_utc_day_once_across_dst():
    # UTC partitions, a schedule that ticks at 00:30 New York time: 05:30 UTC before the
    # change to summer time (2025-03-09), 04:30 UTC after it. Still one day per tick, no gap.
    ep = endpoint(automation={"schedule": {"delay_minutes": 30, "timezone": "America/New_York"}})
    sched = schedule_for(ep)
    assert (sched.cron_schedule, sched.execution_timezone) == ("30 0 * * *", "America/New_York")
    ny = ZoneInfo("America/New_York")
    requested = []
    for day in range(5, 14):
        at = dt.datetime(2025, 3, day, 0, 30, tzinfo=ny)
        keys = tick(sched, at)
        assert keys == [(dt.date(2025, 3, day) - dt.timedelta(days=1)).isoformat()], at
        requested += keys
    assert requested == [f"2025-03-{d:02d}" for d in range(4, 13)]


@pytest.mark.parametrize("change", ["2025-03-30", "2025-10-26"], ids=["spring", "autumn"])
def test_berlin_partitions_tick_after_their_23_or_25_hour_day(change):
    ep = endpoint(partitioning={"type": "daily", "start": "2025-01-01", "timezone": "Europe/Berlin"})
    sched = schedule_for(ep)
    assert (sched.cron_schedule, sched.execution_timezone) == ("30 0 * * *", "Europe/Berlin")
    tdef = partitions_def(source_of(ep), ep)
    window = tdef.time_window_for_partition_key(change)
    hours = (window.end.timestamp() - window.start.timestamp()) / 3600
    assert hours == (23 if change.endswith("03-30") else 25)  # the DST day itself
    berlin = ZoneInfo("Europe/Berlin")
    day = dt.date.fromisoformat(change)
    after = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0, 30), berlin)
    assert tick(sched, after) == [change]
    assert tick(sched, after - dt.timedelta(seconds=1)) == [
        (day - dt.timedelta(days=1)).isoformat()
    ]


def test_hourly_berlin_schedule_requests_every_hour_exactly_once_across_dst():
    ep = endpoint(partitioning={"type": "hourly", "start": "2025-03-01", "timezone": "Europe/Berlin"},
                  automation={"schedule": {"delay_minutes": 15}})
    sched = schedule_for(ep)
    tdef = partitions_def(source_of(ep), ep)
    start = dt.datetime(2025, 3, 29, 20, 0, tzinfo=UTC)
    requested: list[str] = []
    for hours in range(12):  # every tick (hh:15 local) through the night the clocks jump
        at = start + dt.timedelta(hours=hours, minutes=15)
        requested += tick(sched, at)
    expected = tdef.get_partition_keys_in_range(
        dg.PartitionKeyRange(requested[0], requested[-1])
    )
    assert requested == list(expected)  # contiguous, none twice
    assert len(requested) == 12
    assert "2025-03-30-02:00" not in requested  # the hour that does not exist


def test_multi_and_snapshot_schedules():
    multi = schedule_for(endpoint(
        partitioning={"type": "multi", "time": {"type": "daily", "start": "2025-01-01"},
                      "static": {"type": "static", "dimension": "region", "values": ["eu", "us"],
                                 "param": "region"}},
    ))
    keys = tick(multi, dt.datetime(2025, 2, 10, 1, 0, tzinfo=UTC))
    assert sorted(keys) == ["2025-02-09|eu", "2025-02-09|us"]
    snapshot = schedule_for(endpoint(partitioning={"type": "none"}, window=None,
                                     automation={"schedule": {"cron": "0 1 * * *"}}))
    assert snapshot.cron_schedule == "0 1 * * *"
    assert tick(snapshot, dt.datetime(2025, 2, 10, 1, 0, tzinfo=UTC)) == [None]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"automation": {"schedule": {"delay_minutes": 1440}}}, "shorter than one daily"),
        ({"partitioning": {"type": "none"}, "window": None,
          "automation": {"schedule": {}}}, "needs `cron`"),
        ({"automation": {"incremental": {"updated_since_param": "u", "updated_field": "u"}}},
         "needs `partition_field`"),
        ({"automation": {"schedule": {"timezone": "Mars/Olympus"}}}, "unknown timezone"),
        ({"automation": {"schedules": {}}}, "Extra inputs"),
    ],
)
def test_automation_settings_are_validated(changes, message):
    with pytest.raises(ValidationError, match=message):
        endpoint(**changes)


def test_demo_definitions_register_the_automation_turned_on():
    repo = build_definitions(load_sources()).get_repository_def()
    schedules = {s.name: s for s in repo.schedule_defs}
    sensors = {s.name: s for s in repo.sensor_defs}
    assert schedules["payments__charges_schedule"].default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedules["crm__contacts_schedule"].cron_schedule == "0 1 * * 1"
    for name in ("commerce__orders_changes", "devhub__issues_discovery"):
        assert sensors[name].default_status == dg.DefaultSensorStatus.RUNNING, name
    # Defined but stopped in the demo (see devhub.yaml): turned on in the UI when wanted.
    assert sensors["devhub__issues_changes"].default_status == dg.DefaultSensorStatus.STOPPED
    # An hourly re-fetch of a whole snapshot is more than a laptop should carry by default.
    events = schedules["devhub__events_schedule"]
    assert events.cron_schedule == "15 * * * *"
    assert events.default_status == dg.DefaultScheduleStatus.STOPPED
    hourly = [s.name for s in schedules.values() if s.cron_schedule.split()[1] == "*"
              and s.default_status == dg.DefaultScheduleStatus.RUNNING]
    assert hourly == [], f"hourly schedules on by default: {hourly}"
    job = repo.get_job(sensors["commerce__orders_changes"].targets[0].job_name)
    assert job.asset_layer.selected_asset_keys == {dg.AssetKey(["raw", "commerce", "orders"]), dg.AssetKey(["commerce", "orders"])}


# --------------------------------------------------------------------------- incremental sensor


@pytest.fixture
def demo_sources(demo_api, monkeypatch):
    for name, value in demo_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DEMO_API_URL", demo_api.url)
    return {s.name: s.model_copy(update={"retry": FAST_RETRY}) for s in load_sources()}


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


class SensorRunner:
    """Evaluates one sensor of a source's definitions, the way the daemon does."""

    def __init__(self, source: Source, name: str, instance: dg.DagsterInstance, tmp: Path):
        self.source = source
        self.defs = build_definitions([source], str(tmp / "data"))
        self.sensor = self.defs.get_repository_def().get_sensor_def(name)
        self.instance = instance

    def tick(self, cursor: str | None) -> dg.SensorResult:
        with dg.build_sensor_context(
            instance=self.instance, instance_ref=self.instance.get_ref(), cursor=cursor,
            definitions=self.defs, resources={f"api_{self.source.name}": ApiResource.from_source(self.source)},
        ) as context:
            return self.sensor.evaluate_tick(context)


def _keys(result) -> list[str]:
    return sorted(str(r.partition_key) for r in result.run_requests)


def _created_days(api, source, endpoint, since: str, field="created_at") -> set[str]:
    """Ground truth: creation days (UTC) of the records updated at or after ``since``."""
    records = api.records(source, endpoint, start=since, end="2025-03-02T00:00:00Z", field="updated")
    return {
        dt.datetime.fromisoformat(r[field]).astimezone(UTC).date().isoformat() for r in records
    }


@pytest.fixture
def orders_sensor(demo_sources, instance, tmp_path):
    return SensorRunner(demo_sources["commerce"], "commerce__orders_changes", instance, tmp_path)


def test_changes_in_two_past_windows_request_exactly_those_two_partitions(orders_sensor, demo_api):
    start = Watermark(DEMO_NOW).to_cursor()
    # The overlap (5 min before the watermark) holds the demo's own late updates: the first
    # tick requests their creation days, as the API's ground truth says.
    first = orders_sensor.tick(start)
    assert set(_keys(first)) == _created_days(demo_api, "commerce", "orders", "2025-02-28T23:55:00Z")
    assert "2025-02-10" not in _keys(first)

    changed = demo_api.mutate("commerce", "orders", update=2,
                              window=["2025-02-10T00:00:00Z", "2025-02-11T00:00:00Z"])
    changed2 = demo_api.mutate("commerce", "orders", update=1,
                               window=["2025-02-20T00:00:00Z", "2025-02-21T00:00:00Z"])
    assert len(changed["updated"]) == 2 and len(changed2["updated"]) == 1
    second = orders_sensor.tick(first.cursor)
    assert _keys(second) == ["2025-02-10", "2025-02-20"]
    by_key = {r.partition_key: r for r in second.run_requests}
    assert by_key["2025-02-10"].tags["ingestion/changed_records"] == "2"
    assert by_key["2025-02-20"].tags["ingestion/changed_records"] == "1"
    watermark = json.loads(second.cursor)["watermark"]
    assert all(watermark in r.run_key for r in second.run_requests)  # watermark in the run key
    assert watermark == "2025-03-01T00:00:00+00:00"  # UTC


def test_no_change_no_run(orders_sensor, demo_api):
    first = orders_sensor.tick(Watermark(DEMO_NOW).to_cursor())
    again = orders_sensor.tick(first.cursor)
    assert again.run_requests == []
    assert "no records updated" in again.skip_message
    assert json.loads(again.cursor)["watermark"] == json.loads(first.cursor)["watermark"]


def test_api_down_surfaces_the_error_keeps_the_cursor_and_the_next_change_is_requested(
    orders_sensor, demo_api, demo_sources, instance
):
    cursor = orders_sensor.tick(Watermark(DEMO_NOW).to_cursor()).cursor
    demo_api.add_fault(kind="server_error", source="commerce", count=-1, status=503)
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=orders_sensor.defs,
        resources={"api_commerce": ApiResource.from_source(demo_sources["commerce"])},
    ) as context:
        with pytest.raises(ChangePollError, match=r"503.*|cursor stays") as failed:
            orders_sensor.sensor.evaluate_tick(context)
        assert context.cursor == cursor
    message = str(failed.value)
    assert "commerce__orders_changes" in message and "2025-03-01T00:00:00+00:00" in message
    assert "shpat_" not in message  # the token never appears

    demo_api.clear_faults()
    demo_api.mutate("commerce", "orders", update=1,
                    window=["2025-02-15T00:00:00Z", "2025-02-16T00:00:00Z"])
    after = orders_sensor.tick(cursor)
    assert _keys(after) == ["2025-02-15"]


def test_a_later_change_of_the_same_partition_gets_its_own_run_key(orders_sensor, demo_api):
    cursor = orders_sensor.tick(Watermark(DEMO_NOW).to_cursor()).cursor
    window = ["2025-02-12T00:00:00Z", "2025-02-13T00:00:00Z"]
    demo_api.mutate("commerce", "orders", update=1, window=window)
    first = orders_sensor.tick(cursor)
    # The same 12 February records changed again (same second on the frozen clock), plus one.
    demo_api.mutate("commerce", "orders", update=2, window=window)
    second = orders_sensor.tick(first.cursor)
    assert _keys(first) == _keys(second) == ["2025-02-12"]
    assert first.run_requests[0].run_key != second.run_requests[0].run_key
    # ...while evaluating the same tick again gives the same key (no double run).
    assert orders_sensor.tick(first.cursor).run_requests[0].run_key == second.run_requests[0].run_key


def test_first_tick_only_sets_the_watermark(orders_sensor):
    before = dt.datetime.now(UTC)
    result = orders_sensor.tick(None)
    assert result.run_requests == []
    watermark = dt.datetime.fromisoformat(json.loads(result.cursor)["watermark"])
    assert before <= watermark <= dt.datetime.now(UTC)


def test_changes_in_a_window_still_open_are_left_to_the_schedule(
    demo_api_factory, monkeypatch, instance, tmp_path
):
    now = dt.datetime.now(UTC).replace(microsecond=0)
    api = demo_api_factory(now=now.isoformat())  # the API's clock at the wall clock's time
    for name, value in demo_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DEMO_API_URL", api.url)
    commerce = next(s for s in load_sources() if s.name == "commerce")
    runner = SensorRunner(commerce, "commerce__orders_changes", instance, tmp_path)
    cursor = runner.tick(None).cursor  # first tick: the watermark is set, nothing requested
    # The generated orders may hold updates inside the sensor's overlap before the wall-clock
    # "now": count them first (the same cursor, no mutation yet), then add the two new ones.
    before = runner.tick(cursor)
    assert before.run_requests == []
    already = re.match(r"(\d+) record\(s\)", before.skip_message)
    api.mutate("commerce", "orders", insert=2)  # new orders created now: today's open window
    result = runner.tick(cursor)
    assert result.run_requests == []
    expected = 2 + (int(already.group(1)) if already else 0)
    assert result.skip_message.startswith(f"{expected} record(s)"), result.skip_message
    assert "still open" in result.skip_message


def test_dynamic_partitions_request_the_repositories_whose_issues_changed(
    demo_sources, demo_api, instance, tmp_path
):
    devhub = demo_sources["devhub"]
    runner = SensorRunner(devhub, "devhub__issues_changes", instance, tmp_path)
    repos = demo_api.sources["devhub"].repo_names()
    instance.add_dynamic_partitions(dynamic_partitions_name(devhub, devhub.endpoints[1]), repos)
    cursor = runner.tick(Watermark(DEMO_NOW).to_cursor()).cursor
    demo_api.mutate("devhub", "issues", update=1, repo=f"demo-org/{repos[3]}")
    result = runner.tick(cursor)
    assert _keys(result) == [repos[3]]
    assert runner.tick(result.cursor).run_requests == []


# --------------------------------------------------------------------------- discovery sensor


def test_discovery_adds_new_repositories_and_requests_their_first_runs(
    demo_sources, demo_api, demo_api_factory, instance, tmp_path, monkeypatch
):
    devhub = demo_sources["devhub"]
    runner = SensorRunner(devhub, "devhub__issues_discovery", instance, tmp_path)
    name = dynamic_partitions_name(devhub, devhub.endpoints[1])
    repos = demo_api.sources["devhub"].repo_names()
    # The first tick adds the backlog as partitions, without runs (backfill them at will).
    first = runner.tick(None)
    [add] = first.dynamic_partitions_requests
    assert sorted(add.partition_keys) == sorted(repos)
    assert first.run_requests == []
    # the tick list says why nothing ran
    assert first.skip_message == (
        f"first tick: added {len(repos)} repo partition(s) without runs; backfill them when "
        "you choose")
    instance.add_dynamic_partitions(name, add.partition_keys)  # what the daemon does
    again = runner.tick(first.cursor)
    assert again.run_requests == [] and again.dynamic_partitions_requests == []
    assert again.skip_message == f"no new repo among {len(repos)}"

    # Ten days later the organisation has new repositories (one every 5 days).
    later = demo_api_factory(now="2025-03-11T00:00:00Z")
    monkeypatch.setenv("DEMO_API_URL", later.url)
    moved = load_sources()
    runner = SensorRunner(
        next(s for s in moved if s.name == "devhub"), "devhub__issues_discovery", instance, tmp_path
    )
    new = sorted(set(later.sources["devhub"].repo_names()) - set(repos))
    assert len(new) == 2
    third = runner.tick(again.cursor)
    assert sorted(third.dynamic_partitions_requests[0].partition_keys) == new
    assert _keys(third) == new  # their first runs
    assert all(r.run_key == f"first:{r.partition_key}" for r in third.run_requests)


def test_discovery_can_request_the_backlog_on_its_first_tick(
    demo_sources, demo_api, instance, tmp_path
):
    devhub = demo_sources["devhub"]
    ep = devhub.endpoints[1]
    auto = ep.automation.model_copy(update={"discovery": ep.automation.discovery.model_copy(
        update={"request_runs_on_first_tick": True})})
    devhub = devhub.model_copy(update={"endpoints": [ep.model_copy(update={"automation": auto})]})
    runner = SensorRunner(devhub, "devhub__issues_discovery", instance, tmp_path)
    assert _keys(runner.tick(None)) == sorted(demo_api.sources["devhub"].repo_names())


# --------------------------------------------------------------------------- retries and tables


def _events(result, kind: str) -> list:
    return [e for e in result.all_events if e.event_type_value == kind]


def _charges(source: Source, **changes) -> Source:
    ep = next(e for e in source.endpoints if e.name == "charges")
    ep = ep.model_validate({**ep.model_dump(by_alias=True, exclude_none=True), **changes})
    return source.model_copy(update={"endpoints": [ep], "retry": RetrySpec(max_attempts=1)})


def test_transient_errors_get_op_retries(demo_sources, demo_api, tmp_path, monkeypatch):
    monkeypatch.setenv("INGESTION_OP_RETRY_DELAY_SECONDS", "0")
    payments = _charges(demo_sources["payments"])
    demo_api.add_fault(kind="server_error", source="payments", path="/v1/charges", count=1)
    defs = build_definitions([payments], str(tmp_path))
    result = dg.materialize(
        build_assets([payments]), partition_key="2025-02-10", resources=defs.resources,
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    assert len(_events(result, "STEP_UP_FOR_RETRY")) == 1


def test_permanent_errors_fail_without_retries(demo_sources, demo_api, tmp_path, monkeypatch):
    monkeypatch.setenv("INGESTION_OP_RETRY_DELAY_SECONDS", "0")
    payments = _charges(demo_sources["payments"], path="/v1/chargez")  # 404
    defs = build_definitions([payments], str(tmp_path))
    result = dg.materialize(
        build_assets([payments]), partition_key="2025-02-10", resources=defs.resources,
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
    )
    assert not result.success
    assert _events(result, "STEP_UP_FOR_RETRY") == []
    [failure] = _events(result, "STEP_FAILURE")
    assert "404" in str(failure.event_specific_data.error.to_string())
    assert "permanent" in str(failure.event_specific_data.error.to_string())


def test_sensor_and_schedule_names_follow_source_and_endpoint():
    ep = endpoint()
    src = source_of(ep)
    assert schedule_name(src, ep) == "shop__items_schedule"
    assert changes_sensor_name(src, ep) == "shop__items_changes"
    assert discovery_sensor_name(src, ep) == "shop__items_discovery"
