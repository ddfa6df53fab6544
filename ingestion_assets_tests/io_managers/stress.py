"""Writers and readers of one partition in separate processes: the storage stress test.

Each commit ``tag`` writes a table version the way the Parquet IO manager lays one out
(part file, dead letters, ``_SUCCESS``), with a row count that depends on the tag, every
row carrying the tag. A read is *complete* when every file it read belongs to one version
and holds exactly that version's rows; afterwards each read is matched against the tags
the writers committed. Every process writes its counts to a JSON file; nothing is timed.

Run by ``test_storage_stress.py`` (local folder) and the deploy tests (S3 on moto).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

MARKER = "_SUCCESS"
DEAD = "_dead_letters.parquet"
DEADLINE_S = 120  # bounds every loop by default (a run of the test passes in far less)
# Readers pause this long between reads: three readers spinning on a two-core machine would
# starve the writer (or the one S3 server process); they still read several times per commit.
PAUSE_S = 0.005
# At most this many reads per reader while the commit count stands still: the readers race
# every commit several times over, but on a loaded machine (slower commits) each waits for
# the next commit instead of spinning, so the readers' work follows the commits, not the
# clock. On a quiet machine the cap does not bind (the 1w3r S3 test read 1,535 times with 5,
# 1,633 with 2: about 5 reads a commit); with 5, the three readers could make up to 15 reads
# a commit on a loaded machine, where the S3 test took 257 s in the full suite, 73 s alone.
READS_PER_COMMIT = 2


def rows_for(tag: int) -> int:
    """Rows of version ``tag``: varies, so a mix of two versions cannot add up by chance."""
    return 1 + (tag * 7919) % 97


def dead_for(tag: int) -> int:
    return tag % 5


def _table(tag: int, n: int, writer: int):
    import pyarrow as pa

    return pa.table({
        "tag": pa.array([tag] * n, pa.int64()),
        "writer": pa.array([writer] * n, pa.int64()),
        "i": pa.array(range(n), pa.int64()),
    })


def commit_version(leaf: str, tag: int, writer_no: int, grace_s: float) -> str:
    """Write and commit one version; returns its id."""
    import orjson
    import pyarrow.parquet as pq

    from ingestion_assets.io_managers.parquet import encode_schema
    from ingestion_assets.io_managers.storage import PartitionWriter

    n = rows_for(tag)
    table = _table(tag, n, writer_no)
    with PartitionWriter(leaf, MARKER, grace=timedelta(seconds=grace_s)) as writer:
        with writer.open("part-00000.parquet") as f:
            pq.write_table(table, f)
        if dead_for(tag):
            with writer.open(DEAD) as f:
                pq.write_table(_table(tag, dead_for(tag), writer_no), f)
        marker = {"files": ["part-00000.parquet"], "rows": n, "tag": tag,
                  "schema": encode_schema(table.schema)}
        version = writer.commit(orjson.dumps(marker), rows=n)
    return version.id


def read_once(leaf: str) -> dict:
    """Read the partition as downstream readers do (the pointer once, then the rows and the
    dead letters of the version it names); describe what was read."""
    from ingestion_assets.io_managers.parquet import read_dead_letters, versions_dataset
    from ingestion_assets.io_managers.storage import current_version

    version = current_version(leaf, MARKER)
    if version is None:
        return {"missing": True}
    dataset = versions_dataset([version])
    versions = {Path(f).parent.name for f in dataset.files}
    table = dataset.to_table()
    tags = set(table.column("tag").to_pylist())
    dead = read_dead_letters(version)
    dead_tags = set(dead.column("tag").to_pylist()) if dead.num_rows else set()
    return {
        "missing": False,
        "versions": sorted(versions),
        "tags": sorted(tags),
        "rows": table.num_rows,
        "dead_tags": sorted(dead_tags),
        "dead_rows": dead.num_rows,
    }


def complete(read: dict) -> bool:
    """One version, exactly its rows, and exactly that version's dead letters."""
    if read.get("missing") or len(read["versions"]) != 1 or len(read["tags"]) != 1:
        return False
    tag = read["tags"][0]
    if read["rows"] != rows_for(tag) or read["dead_rows"] != dead_for(tag):
        return False
    return not read["dead_rows"] or read["dead_tags"] == [tag]


def _dump(path: str, payload: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f)
    os.replace(tmp, path)


def writer_main(leaf: str, writer_no: int, tags: list[int], grace_s: float, out: str,
                start: multiprocessing.synchronize.Event, deadline_s: float,
                commit_count: multiprocessing.sharedctypes.Synchronized) -> None:
    start.wait(30)
    committed, failures, checks = [], [], 0
    deadline = time.monotonic() + deadline_s
    try:
        for tag in tags:
            if time.monotonic() > deadline:
                failures.append({"kind": "deadline", "tag": tag})
                break
            version = commit_version(leaf, tag, writer_no, grace_s)
            committed.append({"tag": tag, "version": version})
            with commit_count.get_lock():
                commit_count.value += 1
            # The commit returned: the partition must be there, whole, right now.
            seen = read_once(leaf)
            checks += 1
            if not complete(seen):
                failures.append({"kind": "after_commit", "tag": tag, "read": seen})
    except Exception:  # noqa: BLE001 - reported to the test, which fails on it
        failures.append({"kind": "error", "trace": traceback.format_exc()})
    _dump(out, {"committed": committed, "failures": failures, "checks": checks})


def reader_main(leaf: str, grace_s: float, out: str, start: multiprocessing.synchronize.Event,
                stop: multiprocessing.synchronize.Event, pause_s: float, deadline_s: float,
                commit_count: multiprocessing.sharedctypes.Synchronized) -> None:
    start.wait(30)
    reads, failures, slow = [], [], 0
    deadline = time.monotonic() + deadline_s
    seen_commits, reads_since = commit_count.value, 0
    while not stop.is_set() and time.monotonic() < deadline and len(reads) < 100_000:
        if commit_count.value != seen_commits:
            seen_commits, reads_since = commit_count.value, 0
        elif reads_since >= READS_PER_COMMIT:
            stop.wait(pause_s)  # no request: the next commit has not happened yet
            continue
        reads_since += 1
        began = time.monotonic()
        try:
            seen = read_once(leaf)
        except FileNotFoundError as exc:
            if time.monotonic() - began > grace_s:
                slow += 1  # slower than the grace period: its version may be gone by design
                continue
            failures.append({"kind": "file_gone_within_grace", "error": str(exc)})
            continue
        except Exception:  # noqa: BLE001
            failures.append({"kind": "error", "trace": traceback.format_exc()})
            continue
        if not complete(seen):
            failures.append({"kind": "incomplete", "read": seen})
        reads.append({"tag": seen.get("tags", [None])[0], "version": (seen.get("versions")
                      or [None])[0]})
        time.sleep(pause_s)
    _dump(out, {"reads": reads, "failures": failures, "slow": slow})


@dataclass
class StressResult:
    commits: int = 0
    reads: int = 0
    after_commit_checks: int = 0
    failures: list = field(default_factory=list)
    lost: int = 0
    slow_reads: int = 0
    unmatched_reads: int = 0
    versions_left: int = 0
    versions_after_grace: int = 0
    elapsed_s: float = 0.0

    def summary(self) -> str:
        return (f"commits={self.commits} reads={self.reads} "
                f"after_commit_checks={self.after_commit_checks} failures={len(self.failures)} "
                f"lost={self.lost} unmatched_reads={self.unmatched_reads} "
                f"slow_reads={self.slow_reads} versions_left={self.versions_left} "
                f"versions_after_grace={self.versions_after_grace} "
                f"elapsed_s={self.elapsed_s:.1f}")


def run_stress(leaf: str, workdir: Path, writers: int, readers: int, commits: int,
               grace_s: float, reader_pause_s: float = PAUSE_S,
               deadline_s: float = DEADLINE_S) -> StressResult:
    """``writers`` processes sharing ``commits`` commits of one partition, ``readers`` reading.

    The partition holds a first version before anyone starts, so a read that finds no
    partition is a lost partition.
    """
    # Separate processes that share nothing at run time, forked from a server process that
    # imported the storage code once: spawned, each of them imported Dagster, pyarrow and
    # s3fs anew, several CPU-seconds each on 2 loaded cores.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__, "ingestion_assets.io_managers.parquet", "s3fs"])
    began = time.monotonic()
    first = commit_version(leaf, 0, 0, grace_s)
    start, stop = ctx.Event(), ctx.Event()
    commit_count = ctx.Value("i", 0)
    tags = list(range(1, commits + 1))
    wprocs, rprocs = [], []
    for w in range(writers):
        out = str(workdir / f"writer-{w}.json")
        p = ctx.Process(target=writer_main, args=(leaf, w + 1, tags[w::writers], grace_s, out,
                                                  start, deadline_s, commit_count))
        wprocs.append((p, out))
    for r in range(readers):
        out = str(workdir / f"reader-{r}.json")
        p = ctx.Process(target=reader_main, args=(leaf, grace_s, out, start, stop,
                                                              reader_pause_s, deadline_s,
                                                              commit_count))
        rprocs.append((p, out))
    for p, _ in wprocs + rprocs:
        p.start()
    try:
        start.set()
        for p, _ in wprocs:
            p.join(deadline_s + 30)
        stop.set()
        for p, _ in rprocs:
            p.join(60)
    finally:
        for p, _ in wprocs + rprocs:
            if p.is_alive():
                p.kill()
                p.join(5)
    result = StressResult(elapsed_s=time.monotonic() - began)
    committed = {0: first}
    for p, out in wprocs:
        if not os.path.exists(out):
            result.failures.append({"kind": "writer_died", "exitcode": p.exitcode})
            continue
        data = json.loads(Path(out).read_text())
        committed.update({c["tag"]: c["version"] for c in data["committed"]})
        result.commits += len(data["committed"])
        result.after_commit_checks += data["checks"]
        result.failures += data["failures"]
    for p, out in rprocs:
        if not os.path.exists(out):
            result.failures.append({"kind": "reader_died", "exitcode": p.exitcode})
            continue
        data = json.loads(Path(out).read_text())
        result.reads += len(data["reads"])
        result.slow_reads += data["slow"]
        result.failures += data["failures"]
        # Each read equals exactly one committed version: its tag and its version id agree.
        result.unmatched_reads += sum(
            1 for r in data["reads"] if r["tag"] is None
            or committed.get(r["tag"]) != str(r["version"]).removeprefix("v=")
        )
    result.lost = sum(
        1 for f in result.failures if (f.get("read") or {}).get("missing")
    )
    final = read_once(leaf)
    if not complete(final) or committed.get(final["tags"][0]) != final["versions"][0][2:]:
        result.failures.append({"kind": "final_read", "read": final})
    result.versions_left = _versions(leaf)
    # How many of the 300 were removed during the run depends on the machine's speed (on 2
    # loaded cores all 300 commits may fall inside one grace period). What does not: once
    # every superseded version is older than the grace, the next commit removes them all,
    # leaving the new version and the one it has just superseded.
    time.sleep(grace_s + 1)
    commit_version(leaf, commits + 1, 0, grace_s)
    result.versions_after_grace = _versions(leaf)
    return result


def _versions(leaf: str) -> int:
    from upath import UPath

    return sum(1 for p in UPath(leaf).iterdir() if p.name.startswith("v="))
