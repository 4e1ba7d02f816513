"""docker-compose.yml as shipped, without a Docker engine: each service built from our Dockerfile
runs its command (after the image's ENTRYPOINT) in depends_on order, with its own environment,
against a fresh database on the test server instead of `postgres:5432`, its mounted files mapped
to their repository paths and its named volumes to temporary directories. The worker's nightly
job is deferred once, as its schedule would; the run must succeed and prune old jobs, and the
worker's healthcheck command must pass."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.helpers import (
    BIN,
    ROOT,
    Process,
    launcher,
    seed_job,
    wait_for,
    workers,
)
from tests.helpers import ledger_runs as runs

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    yield from launcher(tmp_path)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments left out."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            found.append((instruction.upper(), rest.strip()))
    return found


def entrypoint() -> list[str]:
    (value,) = [rest for name, rest in dockerfile_instructions() if name == "ENTRYPOINT"]
    return json.loads(value)


def runtime_user() -> str:
    users = [rest for name, rest in dockerfile_instructions() if name == "USER"]
    assert users, "the Dockerfile never leaves root (no USER)"
    return users[-1].split(":")[0]


def built_services() -> list[str]:
    """The services built from our Dockerfile, each after those it depends on."""
    ordered: list[str] = []

    def visit(name: str) -> None:
        for other in SERVICES[name].get("depends_on", {}):
            visit(other)
        if name not in ordered:
            ordered.append(name)

    for name in SERVICES:
        visit(name)
    return [name for name in ordered if SERVICES[name].get("build") == "."]


def named_volume_targets() -> dict[str, str]:
    """Mount point -> named volume, for every service built from our Dockerfile."""
    targets = {}
    for name in built_services():
        for volume in SERVICES[name].get("volumes", []):
            source, target = volume.split(":")[:2]
            if not source.startswith(("./", "/")):
                targets[target] = source
    return targets


def local_paths(service: str, volumes: Path) -> dict[str, Path]:
    """Each mount point of the service -> the path it stands for here."""
    mapped = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mapped[target] = ROOT / source
        else:
            mapped[target] = volumes / source
            mapped[target].mkdir(parents=True, exist_ok=True)
    return mapped


def service_env(service: str, database: str, volumes: Path) -> dict[str, str]:
    """The service's environment, on this machine: DATABASE_URL on the test database (after
    checking it names the compose file's postgres service), mounted paths mapped."""
    pg = SERVICES["postgres"]["environment"]
    paths = local_paths(service, volumes)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RETENTION_", "PG", "PROCRASTINATE_")) and key != "DATABASE_URL"
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    for key, value in SERVICES[service].get("environment", {}).items():
        value = str(value)
        if key == "DATABASE_URL":
            assert value == (
                f"postgresql://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/"
                f"{pg['POSTGRES_DB']}"
            )
            value = database
        for target, local in paths.items():
            if value == target or value.startswith(target + "/"):
                value = str(local) + value[len(target) :]
        env[key] = value
    return env


def command_of(service: str) -> list[str]:
    command = SERVICES[service]["command"]
    return entrypoint() + (shlex.split(command) if isinstance(command, str) else command)


def healthcheck_of(service: str) -> list[str]:
    test = SERVICES[service]["healthcheck"]["test"]
    assert test[0] == "CMD", f"{service}: a healthcheck is run without a shell (CMD)"
    return test[1:]


def run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_compose_file_runs_in_order_and_its_nightly_run_prunes(start, empty_database, tmp_path):
    assert built_services() == ["migrate", "worker"]
    volumes = tmp_path / "volumes"
    cwd = tmp_path / "container"
    cwd.mkdir()

    migrate = run(command_of("migrate"), service_env("migrate", empty_database, volumes), cwd)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    with psycopg.connect(empty_database, autocommit=True) as conn:
        old = [
            seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=10)) for _ in range(3)
        ]
        recent = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(hours=1))

        env = service_env("worker", empty_database, volumes)
        plan = run(["retention", "plan"], env, cwd)
        assert plan.returncode == 0, plan.stdout + plan.stderr
        waiting = run(healthcheck_of("worker"), env, cwd)
        assert waiting.returncode == 0, waiting.stdout + waiting.stderr
        assert waiting.stdout.startswith("healthy: no run has succeeded yet"), waiting.stdout

        worker = start(shlex.join(command_of("worker")), env, cwd)
        wait_for(lambda: workers(conn) == 1, what="the worker's row in procrastinate_workers")
        # The nightly run, deferred as the worker's periodic schedule defers it.
        defer = run(["procrastinate", "--app=retention.app", "defer", "retention:run"], env, cwd)
        assert defer.returncode == 0, defer.stdout + defer.stderr
        finished = wait_for(
            lambda: [
                r
                for r in runs(conn)
                if r["kind"] == "run" and not r["dry_run"] and r["status"] != "running"
            ],
            timeout=60,
            what="the deferred run in the ledger",
        )
        assert [r["status"] for r in finished] == ["succeeded"], worker.output()
        left = {row[0] for row in conn.execute("SELECT id FROM procrastinate_jobs")}
        assert not set(old) & left
        assert recent in left

        healthy = run(healthcheck_of("worker"), env, cwd)
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert healthy.stdout.startswith(f"healthy: the last run #{finished[0]['id']} succeeded")
        assert SERVICES["worker"]["stop_signal"] == "SIGTERM"
        assert worker.terminate() == 0, worker.output()


def test_dockerfile_creates_the_volume_mount_points_owned_by_the_runtime_user():
    targets = named_volume_targets()
    assert targets, "docker-compose.yml mounts no named volume on our image"
    user = runtime_user()
    instructions = dockerfile_instructions()
    (user_at,) = [i for i, (name, rest) in enumerate(instructions) if name == "USER"]
    before = " && ".join(rest for name, rest in instructions[:user_at] if name == "RUN")
    steps = [shlex.split(step) for step in re.split(r"&&|;", before)]
    assert any(step[:1] == ["useradd"] and step[-1] == user for step in steps), before
    for target, volume in targets.items():
        made = any(step[:1] == ["mkdir"] and target in step for step in steps)
        owned = any(
            step[:1] == ["chown"] and step[1].split(":")[0] == user and target in step[2:]
            for step in steps
        )
        assert made, f"volume {volume}: the Dockerfile does not create {target} before USER"
        assert owned, f"volume {volume}: {target} is not chowned to {user} before USER"


def test_compose_commands_follow_the_dockerfile_entrypoint():
    """The compose commands are arguments of the ENTRYPOINT: each is a command of the CLI."""
    assert entrypoint() == ["retention"]
    assert (BIN / "retention").exists()
    for name in built_services():
        argv = command_of(name)
        result = run([*argv[:2], "--help"], os.environ.copy(), ROOT)
        assert result.returncode == 0, f"{name}: {argv} is not a retention command"
    assert healthcheck_of("worker")[:1] == entrypoint()
