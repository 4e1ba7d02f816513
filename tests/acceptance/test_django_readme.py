"""The README's Django section, run as written in the test Django project (tests/django_support.py):
its `# settings.py` block gives the project's INSTALLED_APPS entries and RETENTION, and its
`./manage.py ...` commands (test_readme.py's "django" scenario) run through bash, in README
order, in the project's directory, with the database only in DATABASES; the worker runs in the
background until the deferred run is done, then gets SIGTERM and must exit with 0."""

from __future__ import annotations

import ast
import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

from tests.acceptance.test_readme import COMMANDS, long_running, scenario_of
from tests.django_support import write_project
from tests.helpers import code_blocks, seed_job, wait_for

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def readme_settings() -> dict[str, Any]:
    """The names the README's `# settings.py` block assigns, evaluated (INSTALLED_APPS as a list
    of the entries it shows)."""
    blocks = [
        b
        for b in code_blocks(README)
        if b.language == "python" and b.body.startswith("# settings.py")
    ]
    assert len(blocks) == 1, "the README's Django section shows no # settings.py block"
    found: dict[str, Any] = {}
    for node in ast.parse(blocks[0].body).body:
        assert isinstance(node, ast.Assign), ast.dump(node)
        target = node.targets[0]
        assert isinstance(target, ast.Name)
        found[target.id] = ast.literal_eval(node.value)
    return found


def django_commands() -> list[str]:
    return [c.text for c in COMMANDS if scenario_of(c) == "django"]


def test_the_readme_django_section_runs_as_written(tmp_path: Path, empty_database: str) -> None:
    shown = readme_settings()
    assert {"procrastinate.contrib.django", "retention.contrib.django"} <= set(
        shown["INSTALLED_APPS"]
    )
    assert shown["INSTALLED_APPS"].index("procrastinate.contrib.django") < shown[
        "INSTALLED_APPS"
    ].index("retention.contrib.django")
    commands = django_commands()
    assert commands, "no ./manage.py command in the README"
    # The README's model is the test project's shop.Photo, whose FileField is `image`.
    project = write_project(
        tmp_path / "site",
        database=empty_database,
        retention={**shown["RETENTION"], "schedule": "17 3 29 2 *"},
    )
    project.manage_py.chmod(0o755)
    env = project.env(PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    ran: list[str] = []
    worker: subprocess.Popen[str] | None = None
    try:
        for command in commands:
            if long_running(command):
                worker = subprocess.Popen(
                    ["bash", "-c", f"exec {command}"],
                    cwd=project.root,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                ran.append(command)
                continue
            done = subprocess.run(
                ["bash", "-c", command],
                cwd=project.root,
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stderr}"
            assert "Traceback" not in done.stderr, done.stderr
            ran.append(command)
            if command == "./manage.py migrate":
                with psycopg.connect(empty_database, autocommit=True) as conn:
                    seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=10))
            if command.startswith("./manage.py retention plan"):
                assert "shop_photo" in done.stdout, done.stdout
            if command.startswith("./manage.py procrastinate defer retention:run"):
                with psycopg.connect(empty_database, autocommit=True) as conn:
                    wait_for(
                        lambda conn=conn: conn.execute(
                            "SELECT 1 FROM retention_runs WHERE trigger = 'deferred' "
                            "AND status = 'succeeded'"
                        ).fetchone(),
                        timeout=90,
                        what="the deferred run, by the README's worker",
                    )
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            output, _ = worker.communicate(timeout=60)
            assert worker.returncode == 0, output
    assert ran == commands
    assert not project.embedded_started()
