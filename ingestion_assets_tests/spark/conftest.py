"""One local Spark session for the Spark tests (the JVM starts once), and source files.

The session runs ``local[2]`` with the driver bound to 127.0.0.1 and no UI. Spark's own log
output (driver, executor and Python workers share the JVM's stderr) goes to a file, so a test
can read what Spark logged. Credentials are exported before the JVM starts: executors read
them from their environment, as on a cluster.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from ingestion_assets.demo_api import demo_env
from ingestion_assets.specs import DEFAULT_SOURCES_DIR
from ingestion_assets_tests.needs import unavailable

#: A wrong payments key, exported for the bad-credential test (distinct, greppable).
BAD_KEY_VAR = "SPARK_TEST_WRONG_PAYMENTS_KEY"
BAD_KEY = "sk_test_wrong_7f3a9c2e51d84b60"


#: The test JVM lives for a minute: only the quick (C1) JIT compiler, whose code is ready
#: sooner, and the serial collector, without G1's background threads. The Spark tests alone
#: on 2 cores (2026-12-03, two runs each): 88 and 93 busy CPU-s before, 61 and 58 after;
#: 75-76 s -> 63-67 s. Spark clusters keep their own JVM settings (docs/spark.md).
JVM_TEST_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


@pytest.fixture(scope="session")
def spark_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("spark") / "spark-stderr.log"


@pytest.fixture(scope="session")
def spark(spark_log):
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        unavailable("pyspark", "the spark extra is not installed (pip install -e '.[spark]')")
    if shutil.which("java") is None:
        unavailable("java", "no java on PATH (Debian: default-jre-headless)")
    from ingestion_assets.spark import register

    os.environ.update(demo_env())
    os.environ[BAD_KEY_VAR] = BAD_KEY
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    # The JVM inherits stderr: point fd 2 at the log file while it starts, then restore it.
    saved = os.dup(2)
    with open(spark_log, "ab") as log:
        os.dup2(log.fileno(), 2)
        try:
            session = (
                SparkSession.builder.master("local[2]").appName("ingestion_assets tests")
                .config("spark.driver.host", "127.0.0.1")
                .config("spark.driver.bindAddress", "127.0.0.1")
                .config("spark.ui.enabled", "false")
                .config("spark.sql.session.timeZone", "UTC")
                .config("spark.sql.shuffle.partitions", "2")
                .config("spark.task.maxFailures", "1")
                # A JVM that lives for one test run: see JVM_TEST_OPTIONS.
                .config("spark.driver.extraJavaOptions", JVM_TEST_OPTIONS)
                .getOrCreate()
            )
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    session.sparkContext.setLogLevel("INFO")
    register(session)
    yield session
    session.stop()


def write_sources(folder: Path, api, name: str, edit=None) -> Path:
    """The bundled ``name`` source as a YAML file pointed at ``api`` (``edit`` may change
    its attributes); returns the file's path."""
    text = (DEFAULT_SOURCES_DIR / name / "defs.yaml").read_text()
    text = text.replace("${DEMO_API_URL:-http://127.0.0.1:8765}", api.url)
    attributes = yaml.safe_load(text)["attributes"]
    attributes.pop("translation", None)
    if edit is not None:
        edit(attributes)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"sources": [attributes]}, sort_keys=False))
    return path


def endpoint_of(attributes: dict, name: str) -> dict:
    return next(e for e in attributes["endpoints"] if e["name"] == name)
