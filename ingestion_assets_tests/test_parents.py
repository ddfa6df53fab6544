"""Parent -> child endpoints, materialized through Dagster against the demo help desk.

``helpdesk/comments`` declares ``parent: {endpoint: tickets, field: id, as: ticket_id}``:
each of its daily partitions is one request per ticket stored in the same partition of
``helpdesk/tickets``. The tests compare every partition with the demo API's ground truth,
check the lineage and the visited-parents count, and provoke the ways it can go wrong.
"""

from __future__ import annotations

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingestion_assets.factory import build_assets
from ingestion_assets.parents import (
    PARENTS_VISITED_METADATA_KEY,
    ParentError,
    child_request,
    field_values,
)
from ingestion_assets.partitions import PartitionRequest
from ingestion_assets.translation import IngestionTranslator
from ingestion_assets_tests.materialize import run
from ingestion_assets_tests.test_factory import ids, keys, materialize, read, window

DAYS = ["2025-02-10", "2025-02-11", "2025-02-12"]
TICKETS, COMMENTS = dg.AssetKey(["helpdesk", "tickets"]), dg.AssetKey(["helpdesk", "comments"])
RAW_COMMENTS = dg.AssetKey(["raw", "helpdesk", "comments"])


def by_asset(result) -> dict[tuple[str, str | None], dict]:
    return {(e.asset_key.to_user_string(), e.partition): e.materialization.metadata
            for e in result.get_asset_materialization_events()}


def failure_message(result) -> str:
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    return failure.step_failure_data.error.message


def test_tickets_and_comments_match_the_api_in_every_partition(demo_api, demo_sources, tmp_path):
    helpdesk = demo_sources["helpdesk"]
    instance = dg.DagsterInstance.ephemeral()
    # One run for three days, tickets then comments (the child's step waits for its parent).
    result = materialize(helpdesk, tmp_path, instance, tags={
        "dagster/asset_partition_range_start": DAYS[0],
        "dagster/asset_partition_range_end": DAYS[-1]})
    assert result.success
    meta = by_asset(result)
    for day in DAYS:
        tickets = demo_api.records("helpdesk", "tickets", *window(day))
        comments = demo_api.records("helpdesk", "comments", *window(day))
        assert tickets and len(comments) > len(tickets)  # every ticket has its first comment
        assert ids(read(tmp_path, "helpdesk", "tickets", f"date={day}")) == keys(tickets)
        table = read(tmp_path, "helpdesk", "comments", f"date={day}")
        assert ids(table) == keys(comments), day
        assert set(table.column("ticket_id").to_pylist()) == {t["id"] for t in tickets}
        assert set(table.column("_partition").to_pylist()) == {day}
        # The request statistics: one fetch per stored ticket of that day, all added up.
        raw = meta[("raw/helpdesk/comments", day)]
        assert raw[PARENTS_VISITED_METADATA_KEY].value == len(tickets)
        stats = raw["request_stats"].value
        assert stats["parents"] == {"endpoint": "helpdesk/tickets", "field": "id",
                                    "visited": len(tickets), "without_value": 0}
        assert raw["http/requests"].value == len(tickets) == raw["pages"].value
        assert stats["declared_total"] == len(comments) == raw["records"].value
        assert meta[("helpdesk/comments", day)]["dagster/row_count"].value == len(comments)


def test_the_childs_checks_pass_and_it_adds_no_window_check(demo_api, demo_sources, tmp_path):
    with dg.DagsterInstance.ephemeral() as instance:
        result = run(demo_sources["helpdesk"], tmp_path, instance, partition=DAYS[0])
    assert result.success
    checks = {(e.asset_key.to_user_string(), e.check_name): e.passed
              for e in result.get_asset_check_evaluations()}
    assert checks[("helpdesk/comments", "row_count")]  # rows == the totals the API declared
    assert checks[("helpdesk/comments", "uniqueness")]
    assert ("helpdesk/tickets", "window") in checks
    assert ("helpdesk/comments", "window") not in checks  # no window of its own to guard
    assert all(checks.values()), checks


def test_lineage_shows_parent_to_child(demo_sources):
    helpdesk = demo_sources["helpdesk"]
    steps = {a.op.name: a for a in build_assets([helpdesk])}
    child = steps["helpdesk__comments"]
    assert child.asset_deps[RAW_COMMENTS] == {TICKETS}  # the child reads the parent's table
    assert child.asset_deps[COMMENTS] == {RAW_COMMENTS}
    assert child.partitions_def == steps["helpdesk__tickets"].partitions_def

    class Prefixed(IngestionTranslator):
        def get_asset_spec(self, data):
            return data.spec.replace_attributes(key=data.spec.key.with_prefix("warehouse"))

    (child,) = [a for a in build_assets([helpdesk], Prefixed()) if "comments" in a.op.name]
    assert child.asset_deps[RAW_COMMENTS.with_prefix("warehouse")] == {
        TICKETS.with_prefix("warehouse")}


def test_a_missing_parent_partition_fails_clearly_and_sends_nothing(
    demo_api, demo_sources, tmp_path
):
    helpdesk = demo_sources["helpdesk"]
    result = materialize(helpdesk, tmp_path, only=[RAW_COMMENTS, COMMENTS],
                         partition_key=DAYS[0], raise_on_error=False)
    assert not result.success
    message = failure_message(result)
    assert "parent helpdesk/tickets partition 2025-02-10, which is not stored" in message
    assert "materialize helpdesk/tickets for 2025-02-10 first" in message
    assert "permanent: not retried" in message
    assert not (tmp_path / "helpdesk" / "comments").exists()


def test_hostile_parent_values_are_one_escaped_path_segment_or_refused(demo_sources):
    comments = next(e for e in demo_sources["helpdesk"].endpoints if e.name == "comments")
    request = PartitionRequest(key="2025-02-10", path=comments.path, params={"x": "1"})
    for value, segment in [("../../admin", "..%2F..%2Fadmin"),
                           ("//evil.example/x", "%2F%2Fevil.example%2Fx"),
                           ("1?admin=1#", "1%3Fadmin%3D1%23"), ("@evil:80", "%40evil%3A80")]:
        filled = child_request(comments, request, value, "parent")
        assert filled.path == f"/api/v2/tickets/{segment}/comments"
        assert filled.params == {"x": "1"}
    for value in ("", ".", ".."):
        with pytest.raises(ValueError, match="cannot fill the path placeholder {ticket_id}"):
            child_request(comments, request, value, "parent")


def test_a_parent_field_without_a_placeholder_is_a_query_parameter(demo_sources):
    comments = next(e for e in demo_sources["helpdesk"].endpoints if e.name == "comments")
    as_param = comments.model_validate({**comments.model_dump(by_alias=True),
                                        "path": "/api/v2/comments"})
    filled = child_request(as_param, PartitionRequest(key=None, path=as_param.path),
                           "12&admin=1", "parent")
    assert filled.path == "/api/v2/comments" and filled.params == {"ticket_id": "12&admin=1"}


def test_parent_values_are_distinct_in_stored_order_with_nulls_counted(tmp_path):
    """The values read from the parent's Parquet: one request per distinct value."""
    file = tmp_path / "part-0.parquet"
    pq.write_table(pa.table({
        "id": [3.0, 1.0, 3.0, None, 12.0],  # ids that became floats still read as 3, 12
        "owner": [{"login": "a"}, None, {"login": "b"}, {"login": None}, {"login": "a"}],
        "tags": [["x"], [], [], [], []],
    }), file)
    assert field_values([str(file)], "id", "parent p") == (["3", "1", "12"], 1)
    assert field_values([str(file)], "owner.login", "parent p") == (["a", "b"], 2)
    with pytest.raises(ParentError, match="parent p has no column 'idd'.*columns: id, owner"):
        field_values([str(file)], "idd", "parent p")
    with pytest.raises(ParentError, match="holds a list, not a value"):
        field_values([str(file)], "tags", "parent p")
