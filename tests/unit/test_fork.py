"""The fork scenarios (``fork_scenarios.py``), each forking from a fresh interpreter, as a server's master does."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCENARIOS = Path(__file__).with_name("fork_scenarios.py")
ROOT = Path(__file__).resolve().parents[2]


def test_the_fork_scenarios_pass_in_a_fresh_interpreter() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(SCENARIOS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert re.search(r"^2 passed", run.stdout, re.M), run.stdout[-2000:]
