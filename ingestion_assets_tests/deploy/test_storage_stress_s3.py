"""The storage stress test on S3 (moto's server on loopback): separate writer and reader
processes, the same scenarios as ``io_managers/test_storage_stress.py``.

On object storage the commit is one PUT of ``_CURRENT``; there is no rename at all. Reader
and writer processes reach the server through the standard AWS variables the ``bucket``
fixture exports (skips locally only if moto cannot start; fails under CI=true).

Every request goes through one moto process (a few commits per second on a small machine,
against hundreds on a local disk), so this is marked slow like the other end-to-end tests.
"""

import pytest

from ingestion_assets_tests.io_managers.stress import run_stress

GRACE_S = 10.0  # short, so that the writers remove old versions while the readers work;
# longer than a commit or a read takes on 2 loaded cores (DESIGN: grace > longest read and write)
# Every request goes to one moto process: readers pause longer than on a local disk so that
# the writers' requests are not queued behind theirs.
READER_PAUSE_S = 0.05
DEADLINE_S = 600  # a hang guard: 424 s were seen on 2 cores with a benchmark running beside the suite

# Its two tests are independent: they may run in different workers (a bucket each).
pytestmark = [pytest.mark.slow, pytest.mark.spread, pytest.mark.timeout(1200)]


@pytest.mark.parametrize(("writers", "readers"), [(1, 3), (2, 3)], ids=["1w3r", "2w3r"])
def test_concurrent_commits_and_reads_on_s3_never_lose_or_mix_a_partition(
    bucket, tmp_path, writers, readers
):
    leaf = f"s3://{bucket}/stress/table/date=2025-02-10"
    result = run_stress(leaf, tmp_path, writers=writers, readers=readers, commits=300,
                        grace_s=GRACE_S, reader_pause_s=READER_PAUSE_S,
                        deadline_s=DEADLINE_S)
    print(f"s3 {writers}w{readers}r: {result.summary()}")
    assert result.failures == []
    assert result.commits == 300 and result.after_commit_checks == 300
    assert result.reads > 0 and result.unmatched_reads == 0
    assert result.lost == 0
    # Once the grace has passed, one commit removes every superseded version but the one it
    # has just superseded (run_stress commits once more after waiting out the grace).
    assert result.versions_after_grace == 2
