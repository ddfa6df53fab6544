"""The storage stress test on a local folder: separate writer and reader processes.

1 writer commits 300 versions of one partition while 3 readers read it in a loop; then 2
writers share 300 commits with 3 readers. Every commit that returned is readable at once,
every read is complete and equal to exactly one committed version, no partition is ever
missing. Superseded versions are cleaned up (a short grace period) while readers run.
The same scenarios run against S3 (moto) in ``deploy/test_storage_stress_s3.py``.
"""

import pytest
from upath import UPath

from ingestion_assets_tests.io_managers.stress import run_stress

# Minutes of writer and reader processes; the two tests may run in different workers.
pytestmark = [pytest.mark.slow, pytest.mark.spread]

GRACE_S = 10.0  # short, so that the writers remove old versions while the readers work;
# longer than a commit or a read takes on 2 loaded cores (DESIGN: grace > longest read and write)


@pytest.mark.parametrize(("writers", "readers"), [(1, 3), (2, 3)], ids=["1w3r", "2w3r"])
def test_concurrent_commits_and_reads_never_lose_or_mix_a_partition(tmp_path, writers, readers):
    leaf = UPath(tmp_path) / "data" / "stress" / "table" / "date=2025-02-10"
    result = run_stress(str(leaf), tmp_path, writers=writers, readers=readers, commits=300,
                        grace_s=GRACE_S)
    print(f"local {writers}w{readers}r: {result.summary()}")
    assert result.failures == []
    assert result.commits == 300 and result.after_commit_checks == 300
    assert result.reads > 0 and result.unmatched_reads == 0
    assert result.lost == 0
    # Once the grace has passed, one commit removes every superseded version but the one it
    # has just superseded (run_stress commits once more after waiting out the grace).
    assert result.versions_after_grace == 2
