"""deploy/workspace.yaml: the webserver/daemon side loads the project from a gRPC code server.

The code server is started as in production (``dagster code-server start``, own process
group), and Dagster's own validation loads every definition through deploy/workspace.yaml.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingestion_assets.demo_api import demo_env
from ingestion_assets_tests.deploy.services import DEPLOY
from ingestion_assets_tests.e2e.harness import free_port, started

VENV_BIN = Path(sys.executable).parent


pytestmark = pytest.mark.slow  # a gRPC code server and `dagster definitions validate`


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"code server not listening after {timeout} s:\n{log.read_text()[-3000:]}")


def test_workspace_loads_the_project_from_a_grpc_code_server(tmp_path):
    port = free_port()
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, **demo_env(), "DAGSTER_HOME": str(home),
           "INGESTION_DATA_DIR": str(tmp_path / "data"), "INGESTION_CODE_SERVER_HOST": "127.0.0.1"}
    workspace = tmp_path / "workspace.yaml"  # deploy/workspace.yaml on a free port
    workspace.write_text((DEPLOY / "workspace.yaml").read_text().replace("port: 4000",
                                                                        f"port: {port}"))
    log = tmp_path / "code-server.log"
    with started([str(VENV_BIN / "dagster"), "code-server", "start", "-m",
                  "ingestion_assets.definitions", "-h", "127.0.0.1", "-p", str(port)],
                 env, log) as server:
        _wait_for_port(port, server, log)
        checked = subprocess.run(
            [str(VENV_BIN / "dagster"), "definitions", "validate", "-w", str(workspace)],
            env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path,
        )
    output = checked.stdout + checked.stderr
    assert checked.returncode == 0, output[-3000:]
    assert "Validation successful for code location ingestion_assets" in output
