"""The README is the user's door: its commands are exercised by tests, its deployment is real."""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

from retention.config import settings as settings_mod

# README commands run end to end by their own tests (the demo on the embedded default, the worker).
README_ELSEWHERE = {"demo", "worker"}

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def readme_commands() -> list[str]:
    commands = []
    for block in re.findall(r"```console\n(.*?)```", README, re.DOTALL):
        for line in block.splitlines():
            if line.startswith("$ "):
                commands.append(line[2:].strip())
    return commands


def test_the_readme_shows_its_two_set_up_commands_first():
    commands = readme_commands()
    assert commands[0] == "pip install -e '.[embedded]' && retention demo"
    assert commands[1] == "pip install -e '.[embedded,test]' && python -m pytest -n 2"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest -n 2" in ci and "pip install --quiet -e '.[embedded,test]'" in ci


@pytest.mark.parametrize("command", readme_commands())
def test_every_readme_command_is_exercised_by_a_test(command):
    """`retention ...` commands run in test_readme_retention_commands_run below; any other command
    stands verbatim in a test or in .ci/run (docker compose: the file is validated below)."""
    if command.startswith("retention ") and command.split()[1] not in README_ELSEWHERE:
        return
    sources = [(ROOT / ".ci" / "run").read_text()]
    for path in (ROOT / "tests").glob("test_*.py"):
        tree = ast.parse(path.read_text())
        sources += [
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        ]
    wanted = command.split(" && ")[-1] if command.startswith("pip install") else command
    assert any(
        variant in source for source in sources for variant in (wanted, repr(wanted)[1:-1])
    ), f"no test runs the README command {command!r}"


def test_readme_retention_commands_run(conn, database, tmp_path):
    """Every `retention ...` command of the README, in order, on a database with old jobs, an
    application table whose rows reference files, and an orphaned file."""
    for job_id, queue, status in (
        (42, "default", "failed"),
        (43, "default", "failed"),
        (44, "emails-eu", "failed"),
    ):
        conn.execute(
            "INSERT INTO procrastinate_jobs (id, queue_name, task_name, status) "
            "VALUES (%s, %s, 'app.task', %s)",
            (job_id, queue, status),
        )
        conn.execute(
            "INSERT INTO procrastinate_events (job_id, type, at) "
            "VALUES (%s, %s, now() - interval '10 days')",
            (job_id, status),
        )
    thumbs = tmp_path / "thumbs"
    thumbs.mkdir()
    conn.execute(
        "CREATE TABLE events (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL, "
        "thumbnail_path text)"
    )
    conn.execute("CREATE INDEX ON events (created_at)")
    for name, age in (("old.png", "40 days"), ("new.png", "1 day")):
        (thumbs / name).write_bytes(b"x" * 100)
        conn.execute(
            "INSERT INTO events (created_at, thumbnail_path) VALUES (now() - %s::interval, %s)",
            (age, name),
        )
    orphan = thumbs / "orphan.png"
    orphan.write_bytes(b"y" * 10)
    os.utime(orphan, (time.time() - 7200, time.time() - 7200))
    (tmp_path / "retention.toml").write_text(
        '[[tables]]\ntable = "events"\ntimestamp = "created_at"\n'
        f'files = [{{column = "thumbnail_path", root = "{thumbs}"}}]\n'
    )
    seen = []
    for command in readme_commands():
        if not command.startswith("retention ") or command.split()[1] in README_ELSEWHERE:
            continue
        result = run_cli(*shlex.split(command)[1:], database=database, cwd=tmp_path)
        assert result.returncode == 0, f"{command}: {result.stderr}"
        seen.append(command)
    assert "retention run --only jobs" in seen and "retention sweep-orphans --delete --yes" in seen
    remaining = {row[0] for row in conn.execute("SELECT id FROM procrastinate_jobs")}
    assert not remaining & {42, 43}, "purge --job-id 42 --job-id 43 --yes deleted them"
    assert 44 in remaining, "the README's --dry-run purge deleted nothing"
    assert sorted(p.name for p in thumbs.iterdir()) == ["new.png"]
    assert "retention_last_run_deleted_rows" in (tmp_path / "retention.prom").read_text()


def _cli_commands() -> set[str]:
    result = subprocess.run(
        [sys.executable, "-m", "retention", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return set(re.findall(r"│ (\w[\w-]*) ", result.stdout))


def test_docker_compose_file_is_real():
    """`docker compose up -d`: no engine here, so check what can be checked of the file."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "migrate", "worker"} <= set(services)
    commands = _cli_commands()
    for name in ("migrate", "worker"):
        service = services[name]
        assert service["build"] == "."
        assert service["command"][0] in commands, f"{name}: not a retention command"
        url = service["environment"]["DATABASE_URL"]
        pg = services["postgres"]["environment"]
        assert (
            f"{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}"
            in url
        )
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    for volume in services["worker"].get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).exists(), f"{source} is mounted but missing"
    dockerfile = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE):
        for item in source.split():
            assert (ROOT / item).exists(), f"Dockerfile copies missing {item}"
    assert 'ENTRYPOINT ["retention"]' in dockerfile


def test_docker_compose_environment_names_real_settings(monkeypatch):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    environment = compose["services"]["worker"]["environment"]
    example = ROOT / "retention.example.toml"
    for key, value in environment.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.setenv("RETENTION_CONFIG", str(example))
    settings = settings_mod.load()
    assert settings.database_url == environment["DATABASE_URL"]
    assert settings.retention_days == int(environment["RETENTION_DAYS"])
    assert settings.log_retention_days == int(environment["LOG_RETENTION_DAYS"])
    assert settings.schedule == environment["RETENTION_SCHEDULE"]
    assert settings.delete_jobs == environment["RETENTION_DELETE_JOBS"]
    known = {"DATABASE_URL", "RETENTION_CONFIG", "RETENTION_DAYS", "LOG_RETENTION_DAYS"}
    fields = {f"RETENTION_{name.upper()}" for name in settings_mod.Settings.model_fields}
    assert set(environment) <= known | fields


def test_the_example_config_is_valid():
    settings = settings_mod.load(ROOT / "retention.example.toml")
    assert settings.tables and settings.jobs.rules


def test_no_registry_host_is_named():
    for path in ROOT.rglob("*"):
        if any(part in (".git", ".venv") or part.endswith(".egg-info") for part in path.parts):
            continue
        if path.is_file() and path.suffix in (".py", ".md", ".toml", ".yml", ".sql", ""):
            text = path.read_text(errors="ignore").lower()
            assert "pypi" + ".org" not in text and "python" + "hosted" not in text, path
