"""The README's first command runs the demo; here the demo itself runs until every check has results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.processes import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_demo_starts_everything_and_every_check_gets_results(tmp_path: Path) -> None:
    state = tmp_path / "demo-state"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "demo.py"),
            "--once",
            "--port",
            str(free_port()),
            "--target-port",
            str(free_port()),
            "--state-dir",
            str(state),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "every check has a status from every source" in done.stdout
    assert "Access token   pat_" in done.stdout
    for name in ("Demo shop", "Flaky API", "Coordinator port", "Loopback ping", "Shop (from coordinator)"):
        assert name in done.stdout
    assert (state / "agent" / "agent.key").exists()
