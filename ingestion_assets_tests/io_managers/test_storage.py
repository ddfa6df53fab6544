"""Atomic partition folders: every way a write can stop half-way leaves a readable partition."""

import os

import pytest
from upath import UPath

from ingestion_assets.io_managers.storage import (
    PartitionWriter,
    escape_segment,
    resolve_partition,
)

MARKER = "_DONE"


def _write(leaf: UPath, content: str, files=("a.txt", "b.txt")) -> PartitionWriter:
    with PartitionWriter(leaf, MARKER) as writer:
        for name in files:
            (writer.staging / name).write_text(content)
        writer.commit(content.encode())
    return writer


def _names(folder: UPath) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(params=["local", "memory"])
def leaf(request, tmp_path):
    if request.param == "local":
        return UPath(tmp_path) / "asset" / "date=2025-01-05"
    return UPath(f"memory://storage-tests/{tmp_path.name}") / "asset" / "date=2025-01-05"


def test_commit_replaces_the_whole_folder(leaf):
    _write(leaf, "v1", files=("a.txt", "old-only.txt"))
    _write(leaf, "v2")
    assert _names(leaf) == [MARKER, "a.txt", "b.txt"]  # nothing of v1 survives
    assert (leaf / "a.txt").read_text() == "v2"
    assert _names(leaf.parent) == ["date=2025-01-05"]


def test_an_error_before_commit_keeps_the_previous_version(leaf):
    _write(leaf, "v1")
    with pytest.raises(RuntimeError), PartitionWriter(leaf, MARKER) as writer:
        (writer.staging / "a.txt").write_text("half")
        raise RuntimeError("the API went away")
    assert (leaf / "a.txt").read_text() == "v1"
    assert _names(leaf.parent) == ["date=2025-01-05"]
    assert resolve_partition(leaf, MARKER) == leaf


def test_killed_before_commit_leaves_a_hidden_staging_that_readers_ignore(leaf):
    _write(leaf, "v1")
    killed = PartitionWriter(leaf, MARKER).__enter__()  # never committed nor cleaned up
    (killed.staging / "a.txt").write_text("partial")
    assert resolve_partition(leaf, MARKER) == leaf
    assert (leaf / "a.txt").read_text() == "v1"


def test_local_swap_killed_between_the_renames_restores_the_previous_version(tmp_path):
    leaf = UPath(tmp_path) / "asset" / "date=2025-01-05"
    _write(leaf, "v1")
    # The run got as far as a complete staging folder and moving the old version aside.
    writer = PartitionWriter(leaf, MARKER).__enter__()
    (writer.staging / "a.txt").write_text("v2")
    (writer.staging / MARKER).write_text("v2")
    os.rename(leaf.path, (leaf.parent / f".{leaf.name}.old-{writer.token}").path)
    assert not leaf.exists()

    assert resolve_partition(leaf, MARKER) == leaf
    assert (leaf / "a.txt").read_text() == "v1"  # the failed run's data is not promoted
    _write(leaf, "v3")  # the next commit cleans the leftovers
    assert _names(leaf.parent) == ["date=2025-01-05"]
    assert (leaf / "a.txt").read_text() == "v3"


def test_object_store_copy_killed_half_way_is_finished_on_read(tmp_path):
    leaf = UPath(f"memory://storage-tests/{tmp_path.name}") / "asset" / "date=2025-01-05"
    _write(leaf, "v1")
    writer = PartitionWriter(leaf, MARKER).__enter__()
    for name in ("a.txt", "b.txt", MARKER):
        (writer.staging / name).write_text("v2")
    # Killed after the old files were deleted and one new file was copied in.
    leaf.fs.rm(leaf.path, recursive=True)
    (leaf / "a.txt").write_text("v2")
    assert not (leaf / MARKER).exists()

    assert resolve_partition(leaf, MARKER) == leaf
    assert _names(leaf) == [MARKER, "a.txt", "b.txt"]
    assert (leaf / "b.txt").read_text() == "v2"
    assert _names(leaf.parent) == ["date=2025-01-05"]


def test_missing_partition_resolves_to_none(leaf):
    assert resolve_partition(leaf, MARKER) is None


def test_stale_incomplete_staging_is_cleaned_but_a_live_one_is_kept(tmp_path):
    leaf = UPath(tmp_path) / "asset" / "date=2025-01-05"
    stale = leaf.parent / f".{leaf.name}.staging-20200101T000000000000-deadbeef"
    stale.mkdir(parents=True)
    live = PartitionWriter(leaf, MARKER).__enter__()  # a concurrent writer, still working
    _write(leaf, "v1")
    assert not stale.exists()
    assert live.staging.exists()


@pytest.mark.parametrize(
    ("value", "segment"),
    [
        ("2025-01-05", "2025-01-05"),
        ("2025-01-05-13:00", "2025-01-05-13%3A00"),
        ("globex/eu", "globex%2Feu"),
        ("a=b", "a%3Db"),
        ("..", "%2E."),
        ("acme inc", "acme inc"),
    ],
)
def test_partition_values_are_escaped_into_safe_folder_names(value, segment):
    assert escape_segment(value) == segment
