"""`retention --version`: the real command in a subprocess prints the installed version."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata


def test_version_prints_the_installed_version_and_exits_0() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "retention", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == metadata.version("procrastinate-retention")
    assert result.stderr == ""


def test_version_wins_over_a_command_and_touches_no_database() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "retention",
            "--database-url",
            "postgresql://nowhere.invalid/x",
            "--version",
            "status",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == metadata.version("procrastinate-retention")
