"""Start the project as a user does (demo API + ``dagster dev``) and drive it over GraphQL.

Every process listens on 127.0.0.1, on a free port, with its own DAGSTER_HOME and data folder
under a temporary directory. Each runs in its own process group, which is ended as a whole:
``dagster dev`` does not stop promptly on SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s ({last})")


def wait_until(what: str, probe, timeout: float, log: Path):
    """``probe()``'s first truthy value, polled every 0.5 s; past ``timeout`` an error naming
    ``what`` with the tail of the server log ``log``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s; server log:\n{tail}")


def stop_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """End a process started with ``start_new_session=True`` and everything it started."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def kill_leftovers(marker: str) -> list[int]:
    """SIGKILL every process whose command line mentions ``marker`` (a test's own temporary
    folder): a code server that ``dagster dev`` started in a session of its own outlives the
    group ``stop_group`` ends. Returns the pids killed."""
    killed = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGKILL)
                killed.append(int(entry))
    return killed


@contextlib.contextmanager
def started(cmd: Sequence[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(cmd), cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            stop_group(proc)


def demo_env() -> dict[str, str]:
    """The demo API's credentials, as the README's run command exports them."""
    out = subprocess.run(
        [sys.executable, "-m", "ingestion_assets.demo_api", "--print-env"],
        check=True, capture_output=True, text=True, cwd=REPO_ROOT,
    ).stdout
    env = {}
    for line in out.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = value.strip("'\"")
    return env


@dataclass
class Project:
    """A running demo API + dagster dev, and a GraphQL client for the webserver."""

    api_url: str
    ui_url: str
    dagster_home: Path
    data_dir: Path
    env: dict[str, str]

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = requests.post(
            f"{self.ui_url}/graphql", json={"query": query, "variables": variables or {}},
            timeout=60,
        )
        resp.raise_for_status()
        body = resp.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def asset_nodes(self) -> list[dict[str, Any]]:
        return self.graphql(ASSET_NODES)["assetNodes"]

    def partition_keys(self, asset_path: list[str]) -> list[str]:
        node = self.graphql(PARTITIONS_DEF, {"path": asset_path})["assetNodeOrError"]
        return node["partitionKeys"]

    def launch(self, asset_paths: list[list[str]], partition: str | None) -> str:
        nodes = {tuple(n["assetKey"]["path"]): n for n in self.asset_nodes()}
        node = nodes[tuple(asset_paths[0])]
        location = node["repository"]["location"]["name"]
        repository = node["repository"]["name"]
        tags = [{"key": "dagster/partition", "value": partition}] if partition else []
        params = {
            "selector": {
                "repositoryLocationName": location,
                "repositoryName": repository,
                "jobName": node["jobNames"][0],
                "assetSelection": [{"path": p} for p in asset_paths],
            },
            "executionMetadata": {"tags": tags},
        }
        result = self.graphql(LAUNCH_RUN, {"executionParams": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise AssertionError(f"launch failed: {result}")
        return result["run"]["runId"]

    def wait_for_run(self, run_id: str, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.graphql(RUN_STATUS, {"runId": run_id})["runOrError"]
            if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                return run
            time.sleep(1)
        raise TimeoutError(f"run {run_id} did not finish within {timeout:.0f} s")


@contextlib.contextmanager
def running_project(
    tmp: Path, extra_env: dict[str, str] | None = None, instance_yaml: Path | None = None
) -> Iterator[Project]:
    """Start the demo API and ``dagster dev`` the way ``scripts/dev.sh`` does.

    ``instance_yaml``: the ``dagster.yaml`` to run with (default ``instance/dagster.yaml``),
    e.g. ``deploy/dagster.yaml`` with its PostgreSQL settings in ``extra_env``.
    """
    api_port, ui_port = free_port(), free_port()
    home, data = tmp / "dagster_home", tmp / "data"
    home.mkdir()
    data.mkdir()
    instance_yaml = instance_yaml or REPO_ROOT / "instance" / "dagster.yaml"
    (home / "dagster.yaml").write_text(instance_yaml.read_text())
    env = {
        **os.environ,
        **demo_env(),
        "DAGSTER_HOME": str(home),
        "INGESTION_DATA_DIR": str(data),
        "DEMO_API_URL": f"http://127.0.0.1:{api_port}",
        **(extra_env or {}),
    }
    if "INGESTION_SOURCES" not in (extra_env or {}):
        env.pop("INGESTION_SOURCES", None)  # the bundled demo sources, as a new user has
    api_cmd = [sys.executable, "-m", "ingestion_assets.demo_api", "--port", str(api_port)]
    dev_cmd = [str(VENV_BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(ui_port)]
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(kill_leftovers, str(home))
        api = cleanup.enter_context(started(api_cmd, env, tmp / "demo_api.log"))
        wait_for_http(f"http://127.0.0.1:{api_port}/", 30, api)
        with started(dev_cmd, env, tmp / "dagster_dev.log") as dev:
            ui = f"http://127.0.0.1:{ui_port}"
            wait_for_http(f"{ui}/server_info", 180, dev)
            project = Project(f"http://127.0.0.1:{api_port}", ui, home, data, env)
            # The webserver answers before the code location has loaded.
            deadline = time.monotonic() + 120
            while not project.asset_nodes():
                if time.monotonic() > deadline:
                    raise TimeoutError("the code location did not load; see dagster_dev.log")
                time.sleep(1)
            yield project


#: Every asset node as the catalog lists it. Not its partition keys: the webserver computes
#: them for every asset (about 3 CPU-seconds on 2 cores for the demo's 46 assets, against
#: 0.02 without), and a test asking for them asks for one asset's (``partition_keys``).
ASSET_NODES = """
query {
  assetNodes {
    assetKey { path }
    groupName
    jobNames
    kinds
    isPartitioned
    owners { ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
    dependencyKeys { path }
    repository { name location { name } }
  }
}
"""

#: One asset's partitions definition and keys (``Project.partition_keys``).
PARTITIONS_DEF = """
query($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode {
      partitionDefinition { type description dimensionTypes { name type } }
      partitionKeys
    }
  }
}
"""

LAUNCH_RUN = """
mutation($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  }
}
"""

RUN_STATUS = """
query($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status tags { key value } }
  }
}
"""

#: Every metadata value the tests read, for any query with ``metadataEntries``; append it to
#: the query (``QUERY + METADATA_ENTRIES``) and select ``metadataEntries { ...MetadataEntries }``.
METADATA_ENTRIES = """
fragment MetadataEntries on MetadataEntry {
  label
  __typename
  ... on IntMetadataEntry { intValue }
  ... on FloatMetadataEntry { floatValue }
  ... on TextMetadataEntry { text }
  ... on PathMetadataEntry { path }
  ... on UrlMetadataEntry { url }
  ... on JsonMetadataEntry { jsonString }
  ... on MarkdownMetadataEntry { mdStr }
  ... on TableMetadataEntry { table { records } }
  ... on TableSchemaMetadataEntry { schema { columns { name type } } }
}
"""

MATERIALIZATIONS = """
query($path: [String!]!, $partitions: [String!]) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset {
      assetMaterializations(partitions: $partitions) {
        partition
        runId
        metadataEntries { ...MetadataEntries }
      }
    }
  }
}
""" + METADATA_ENTRIES
