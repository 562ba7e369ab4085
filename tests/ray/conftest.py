"""One real two-node Ray cluster for the module: the scenarios run against
it inside a loopback-only network namespace, and each test reads what its
scenario saw. Ray and root (for `unshare -n`) are required, not optional:
CI installs the test extra, which holds Ray, and runs as root."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.ray.cluster import end_processes_naming, in_loopback_namespace

SCENARIOS = Path(__file__).with_name("scenarios.py")
SCENARIOS_TIMEOUT_S = 420


@pytest.fixture(scope="package")
def findings(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import ray  # noqa: F401  (a missing Ray fails here, with its name)

    if os.geteuid() != 0:
        pytest.fail("the Ray tests run the cluster in a network namespace: they need root (as in CI); "
                    "without root: pytest -m 'not system'")
    base = tmp_path_factory.mktemp("ray")
    out = base / "findings.json"
    try:
        result = in_loopback_namespace(SCENARIOS, [str(out), str(base)], SCENARIOS_TIMEOUT_S)
        stderr = result.stderr
    except subprocess.TimeoutExpired as exc:
        # What the scenarios that finished found still counts; the others fail.
        stderr = f"the scenarios ran past {SCENARIOS_TIMEOUT_S} s\n{exc.stderr or ''}"
    finally:
        end_processes_naming(base / "ray-tmp")
    if not out.exists():
        pytest.fail(f"the scenarios wrote nothing:\n{stderr[-4000:]}")
    data = json.loads(out.read_text())
    data["stderr"] = stderr[-4000:] if isinstance(stderr, str) else stderr.decode(errors="replace")[-4000:]
    return data


def scenario(findings: dict, name: str) -> dict:
    """A scenario's findings, or the test fails with the scenario's traceback."""
    if name in findings["errors"]:
        pytest.fail(f"scenario {name} failed:\n{findings['errors'][name]}")
    if name not in findings:
        pytest.fail(f"scenario {name} did not run:\n{findings.get('stderr', '')}")
    return findings[name]
