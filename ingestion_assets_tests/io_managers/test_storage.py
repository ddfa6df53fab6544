"""Versioned partitions: one atomic pointer, readers that change nothing, writers that clean up.

Every case runs on a local folder and on an fsspec in-memory filesystem (object-storage
semantics: no directory renames). Time passing is simulated by handing the cleanup a later
``now``; nothing here sleeps.
"""

import hashlib
import os
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from upath import UPath

from ingestion_assets.io_managers.storage import (
    DEFAULT_GRACE,
    POINTER,
    PartitionPointerCorrupted,
    PartitionWriter,
    collect_garbage,
    current_version,
    current_versions,
    escape_segment,
    resolve_partition,
)

MARKER = "_DONE"
HOUR = timedelta(hours=1)


def _write(leaf: UPath, content: str, files=("a.txt", "b.txt"), **kwargs) -> PartitionWriter:
    with PartitionWriter(leaf, MARKER, **kwargs) as writer:
        for name in files:
            with writer.open(name) as f:
                f.write(content.encode())
        writer.commit(content.encode(), rows=len(files))
    return writer


def _read_all(leaf: UPath) -> dict[str, str]:
    version = current_version(leaf, MARKER)
    assert version is not None
    return {f.name: version.read_bytes(f.name).decode() for f in version.files}


def _tree(root: UPath) -> dict[str, bytes]:
    """Every file under ``root`` with its content: to show a reader changed nothing."""
    if root.protocol in ("", "file"):
        out = {}
        for folder, _, names in os.walk(root.path):
            for name in names:
                path = os.path.join(folder, name)
                with open(path, "rb") as f:
                    out[os.path.relpath(path, root.path)] = f.read()
        return out
    fs = root.fs
    return {p[len(root.path):]: fs.cat_file(p) for p in fs.find(root.path)}


def _names(folder: UPath) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(params=["local", "memory"])
def leaf(request, tmp_path):
    if request.param == "local":
        return UPath(tmp_path) / "asset" / "date=2025-01-05"
    return UPath(f"memory://storage-tests/{tmp_path.name}") / "asset" / "date=2025-01-05"


def test_a_commit_is_a_new_version_named_by_one_pointer(leaf):
    first = _write(leaf, "v1", files=("a.txt", "old-only.txt"))
    second = _write(leaf, "v2")
    assert _names(leaf) == sorted([POINTER, f"v={first.version}", f"v={second.version}"])
    assert _read_all(leaf) == {"a.txt": "v2", "b.txt": "v2", MARKER: "v2"}  # nothing of v1
    pointer = orjson.loads((leaf / POINTER).read_bytes())
    assert pointer["version"] == second.version and pointer["rows"] == 2
    assert pointer["files"] == [
        {"name": name, "bytes": 2, "sha256": hashlib.sha256(b"v2").hexdigest()}
        for name in (MARKER, "a.txt", "b.txt")
    ]
    assert second.version > first.version  # ids sort by time
    assert resolve_partition(leaf, MARKER) == leaf / f"v={second.version}"


def test_a_reader_holding_the_previous_version_still_reads_it_whole(leaf):
    _write(leaf, "v1")
    held = current_version(leaf, MARKER)
    _write(leaf, "v2")
    _write(leaf, "v3")
    assert [held.read_bytes(n).decode() for n in ("a.txt", "b.txt")] == ["v1", "v1"]
    assert _read_all(leaf)["a.txt"] == "v3"


def test_an_error_before_commit_keeps_the_current_version_and_drops_the_new_one(leaf):
    first = _write(leaf, "v1")
    with pytest.raises(RuntimeError), PartitionWriter(leaf, MARKER) as writer:
        with writer.open("a.txt") as f:
            f.write(b"half")
        raise RuntimeError("the API went away")
    assert _read_all(leaf)["a.txt"] == "v1"
    assert _names(leaf) == sorted([POINTER, f"v={first.version}"])


def test_readers_never_change_anything_whatever_a_killed_run_left(leaf):
    _write(leaf, "v1")
    killed = PartitionWriter(leaf, MARKER).__enter__()  # never committed nor cleaned up
    with killed.open("a.txt") as f:
        f.write(b"partial")
    (leaf / f".{POINTER}.{killed.version}.tmp").write_bytes(b"{}")  # killed mid-publish
    before = _tree(leaf.parent)
    for _ in range(3):
        assert _read_all(leaf)["a.txt"] == "v1"
    assert _tree(leaf.parent) == before


def test_superseded_versions_are_removed_by_a_later_writer_only_after_the_grace(leaf):
    first = _write(leaf, "v1")
    second = _write(leaf, "v2")
    assert (leaf / f"v={first.version}").exists()  # a reader may still hold v1
    now = datetime.now(timezone.utc)
    assert collect_garbage(leaf, DEFAULT_GRACE, now=now + 50 * timedelta(minutes=1)) == []
    assert collect_garbage(leaf, DEFAULT_GRACE, now=now + 61 * timedelta(minutes=1)) == [
        f"v={first.version}"
    ]
    # The current version is never removed, however old.
    assert collect_garbage(leaf, DEFAULT_GRACE, now=now + 1000 * HOUR) == []
    assert _names(leaf) == sorted([POINTER, f"v={second.version}"])
    assert _read_all(leaf)["a.txt"] == "v2"


def test_a_killed_runs_version_and_temporary_pointer_go_after_the_grace(leaf):
    _write(leaf, "v1")
    killed = PartitionWriter(leaf, MARKER).__enter__()
    with killed.open("a.txt") as f:
        f.write(b"partial")
    tmp = leaf / f".{POINTER}.{killed.version}.tmp"
    tmp.write_bytes(b"{}")
    now = datetime.now(timezone.utc)
    assert collect_garbage(leaf, HOUR, now=now + timedelta(minutes=10)) == []  # may be alive
    removed = collect_garbage(leaf, HOUR, now=now + 2 * HOUR)
    assert sorted(removed) == sorted([f"v={killed.version}", tmp.name])
    assert _read_all(leaf)["a.txt"] == "v1"


def test_a_live_writer_is_never_cleaned_away_by_another(leaf):
    live = PartitionWriter(leaf, MARKER).__enter__()
    with live.open("a.txt") as f:
        f.write(b"live")
    _write(leaf, "other", grace=timedelta(minutes=1))
    soon = datetime.now(timezone.utc) + timedelta(seconds=50)
    assert collect_garbage(leaf, timedelta(minutes=1), now=soon) == []
    assert (live.folder / "a.txt").exists()
    live.commit(b"live")
    assert _read_all(leaf) == {"a.txt": "live", MARKER: "live"}


def test_two_writers_interleaved_the_last_commit_wins_and_both_are_complete(leaf):
    one = PartitionWriter(leaf, MARKER).__enter__()
    two = PartitionWriter(leaf, MARKER).__enter__()
    for writer, tag in ((one, "one"), (two, "two")):
        for name in ("a.txt", "b.txt"):
            with writer.open(name) as f:
                f.write(tag.encode())
    two.commit(b"two")
    one.commit(b"one")
    assert _read_all(leaf) == {"a.txt": "one", "b.txt": "one", MARKER: "one"}
    assert (two.folder / "b.txt").read_bytes() == b"two"


def test_files_written_beside_the_writer_are_listed_and_hashed_too(leaf):
    with PartitionWriter(leaf, MARKER) as writer:
        (writer.folder / "plain.bin").write_bytes(b"xyz")  # not through writer.open
        writer.write_file("sketch.bin", b"\x00\x01")
        writer.commit(b"m")
    files = {f.name: (f.bytes, f.sha256) for f in current_version(leaf, MARKER).files}
    assert files["plain.bin"] == (3, hashlib.sha256(b"xyz").hexdigest())
    assert files["sketch.bin"] == (2, hashlib.sha256(b"\x00\x01").hexdigest())


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", POINTER])
def test_a_file_name_that_would_leave_the_version_is_refused(leaf, name):
    with PartitionWriter(leaf, MARKER) as writer, pytest.raises(ValueError, match="cannot be"):
        writer.open(name)


def test_missing_partition_is_none(leaf):
    assert current_version(leaf, MARKER) is None
    assert resolve_partition(leaf, MARKER) is None


def test_a_damaged_pointer_is_a_clear_error_naming_it(leaf):
    _write(leaf, "v1")
    (leaf / POINTER).write_bytes(b"{not json")
    with pytest.raises(PartitionPointerCorrupted, match=r"date=2025-01-05/_CURRENT"):
        current_version(leaf, MARKER)


def test_every_current_version_of_a_table_is_found(leaf):
    table = leaf.parent
    _write(leaf, "v1")
    _write(leaf, "v2")
    _write(table / "date=2025-01-06", "w1")
    found = sorted((v.leaf.name, v.read_bytes("a.txt").decode())
                   for v in current_versions(table, MARKER))
    assert found == [("date=2025-01-05", "v2"), ("date=2025-01-06", "w1")]


# -- the layout before versions (migration) -------------------------------------------------


def _legacy(leaf: UPath, content: str) -> None:
    leaf.mkdir(parents=True, exist_ok=True)
    for name in ("a.txt", MARKER):
        (leaf / name).write_text(content)


def test_a_partition_of_the_old_layout_is_read_in_place_then_replaced(leaf):
    _legacy(leaf, "old")
    version = current_version(leaf, MARKER)
    assert version.id is None and version.read_bytes("a.txt") == b"old"
    new = _write(leaf, "new")
    assert _read_all(leaf)["a.txt"] == "new"
    assert (leaf / "a.txt").exists()  # a reader of the old layout may still be at it
    removed = collect_garbage(leaf, HOUR, now=datetime.now(timezone.utc) + 2 * HOUR)
    assert sorted(removed) == [MARKER, "a.txt"]
    assert _names(leaf) == sorted([POINTER, f"v={new.version}"])


def test_old_layout_swap_killed_half_way_is_read_without_repairing(leaf):
    # Local swap killed after the old version was moved aside; on object storage, a copy
    # killed after the old files were deleted (the complete staging copy is what to read).
    _legacy(leaf.parent / f".{leaf.name}.old-20250105T000000000000-deadbeef", "moved-aside")
    before = _tree(leaf.parent)
    assert current_version(leaf, MARKER).read_bytes("a.txt") == b"moved-aside"
    assert _tree(leaf.parent) == before
    _write(leaf, "new")
    collect_garbage(leaf, HOUR, now=datetime.now(timezone.utc) + 2 * HOUR)
    assert _names(leaf.parent) == ["date=2025-01-05"]
    assert _read_all(leaf)["a.txt"] == "new"


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


def test_a_write_outlasting_the_grace_fails_instead_of_committing_missing_files(leaf):
    _write(leaf, "v1")
    slow = PartitionWriter(leaf, MARKER, grace=timedelta(minutes=1)).__enter__()
    with slow.open("a.txt") as f:
        f.write(b"slow")
    later = datetime.now(timezone.utc) + timedelta(minutes=5)  # stalled for five minutes
    assert collect_garbage(leaf, timedelta(minutes=1), now=later) == [f"v={slow.version}"]
    with pytest.raises(RuntimeError, match=r"outlasted the grace period"):
        slow.commit(b"slow")
    assert _read_all(leaf)["a.txt"] == "v1"
