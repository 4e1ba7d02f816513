"""The blueprint without a database: importing retention reads nothing and starts nothing; the
tasks' queue, schedule and locks come from the settings."""

from __future__ import annotations

import subprocess
import sys

import procrastinate

import retention
from retention.config import settings
from retention.interfaces import tasks
from tests.helpers import shell_env


def test_importing_retention_reads_nothing_and_starts_nothing(tmp_path):
    home = tmp_path / "home"
    code = (
        "import sys, retention; "
        "loaded = [m for m in ('procrastinate', 'psycopg', 'retention.embedded.server', "
        "'retention.config.settings') if m in sys.modules]; "
        "print(loaded, retention.__all__)"
    )
    env = shell_env("", RETENTION_HOME=str(home), RETENTION_SCHEDULE="not a cron")
    del env["DATABASE_URL"]
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] ['app', 'blueprint']"
    assert done.stderr == ""
    assert not home.exists()


def test_blueprint_takes_queue_schedule_and_locks_from_settings(tmp_path):
    config = tmp_path / "retention.toml"
    config.write_text(
        'queue = "maintenance"\nschedule = "0 4 * * *"\n[jobs]\nschedule = "0 5 * * *"\n'
    )
    retention_tasks = retention.blueprint(settings.load(config))
    app = procrastinate.App(connector=procrastinate.PsycopgConnector())
    app.add_tasks_from(retention_tasks, namespace="retention")
    assert sorted(name for name in app.tasks if name.startswith("retention:")) == [
        "retention:prune_jobs",
        "retention:purge_jobs",
        "retention:run",
    ]
    for name in ("run", "prune_jobs", "purge_jobs"):
        task = getattr(retention_tasks, name)
        assert task is app.tasks[f"retention:{name}"]
        assert (task.queue, task.lock, task.queueing_lock) == (
            "maintenance",
            tasks.EXECUTION_LOCK,
            f"retention:{name}",
        )
    crons = {
        periodic.task.name: periodic.cron
        for periodic in app.periodic_registry.periodic_tasks.values()
    }
    assert crons == {"retention:run": "0 4 * * *", "retention:prune_jobs": "0 5 * * *"}
