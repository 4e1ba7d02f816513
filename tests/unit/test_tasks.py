"""The blueprint without a database: importing retention reads nothing and starts nothing; the
tasks' queue, schedule and locks come from the settings."""

from __future__ import annotations

import logging
import subprocess
import sys

import procrastinate

import retention
from retention import errors
from retention.config import settings
from retention.interfaces import stalled, tasks
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
        "retention:place_hold",
        "retention:prune_jobs",
        "retention:purge_jobs",
        "retention:recover_stalled",
        "retention:release_hold",
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
    assert crons == {
        "retention:run": "0 4 * * *",
        "retention:prune_jobs": "0 5 * * *",
        "retention:recover_stalled": stalled.RECOVER_CRON,
    }
    recover = retention_tasks.recover_stalled
    assert (recover.queue, recover.lock, recover.queueing_lock) == (
        "maintenance",
        None,
        "retention:recover_stalled",
    )


def test_periodic_tasks_are_registered_under_their_namespaced_names_only(caplog):
    caplog.set_level(logging.INFO, logger="procrastinate")
    retention_tasks = retention.blueprint(settings.Settings())
    app = procrastinate.App(connector=procrastinate.PsycopgConnector())
    app.add_tasks_from(retention_tasks, namespace="retention")
    registered = [
        record.getMessage()
        for record in caplog.records
        if getattr(record, "action", None) == "registering_periodic_task"
    ]
    assert [line.split()[2] for line in registered] == [
        "retention:run",
        "retention:recover_stalled",
    ]


def test_a_job_failed_on_our_error_is_one_line_in_the_worker_log():
    retention.blueprint(settings.Settings())
    worker_logger = logging.getLogger("procrastinate.worker")
    try:
        raise errors.DatabaseError("the database is not migrated: run `retention migrate`")
    except errors.DatabaseError as exc:
        ours = worker_logger.makeRecord(
            worker_logger.name,
            logging.ERROR,
            __file__,
            1,
            "Job x ended with status: Error, ",
            None,
            (type(exc), exc, exc.__traceback__),
        )
    try:
        raise RuntimeError("a bug")
    except RuntimeError as exc:
        theirs = worker_logger.makeRecord(
            worker_logger.name,
            logging.ERROR,
            __file__,
            1,
            "Job y ended with status: Error, ",
            None,
            (type(exc), exc, exc.__traceback__),
        )
    assert all(f.filter(ours) for f in worker_logger.filters)
    assert all(f.filter(theirs) for f in worker_logger.filters)
    formatted = logging.Formatter().format(ours)
    assert formatted == (
        "Job x ended with status: Error,  - the database is not migrated: run `retention migrate`"
    )
    assert "Traceback" in logging.Formatter().format(theirs)
