"""`retention metrics` through the real CLI: the figures of real runs, failures, and the atomic
write for node_exporter's textfile collector."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from tests.helpers import DAY, HOUR, app_config, put, run_cli, seed_events, seed_job
from tests.helpers import metric_value as value
from tests.helpers import parse_metrics as parse


def test_metrics_show_the_figures_of_real_runs(conn, database, tmp_path):
    _config, media, exports = app_config(tmp_path)
    conn.execute(
        "CREATE TABLE events (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL "
        "DEFAULT now(), path text)"
    )
    conn.execute("CREATE INDEX ON events (created_at, id)")
    for _ in range(3):
        seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=2))
    seed_events(conn, media, old=5, fresh=1, days=9)
    put(media, "orphan.jpg", age=5 * HOUR, data=b"o" * 1000)
    put(exports, "a.csv", age=3 * DAY, data=b"r" * 500)
    put(exports, "b.csv", age=3 * DAY, data=b"r" * 250)

    before = parse(run_cli("metrics", database=database, cwd=tmp_path).stdout)
    assert value(before, "retention_metrics_up") == 1
    # The tests' role is a superuser on Procrastinate's own schema.
    assert value(before, "retention_jobs_set_based") == 1
    assert value(before, "retention_backlog_rows", policy="jobs", status="succeeded") == 3
    assert value(before, "retention_backlog_rows", policy="table:events") == 5
    assert value(before, "retention_backlog_oldest_age_seconds", policy="table:events") > 8.9 * DAY
    assert ("retention_last_run_success", frozenset()) not in before

    run = run_cli("run", database=database, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=4))
    started = time.time()
    shown = run_cli("metrics", database=database, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    after = parse(shown.stdout)

    assert value(after, "retention_last_run_success") == 1
    assert value(after, "retention_last_run_complete") == 1
    assert 0 < value(after, "retention_last_run_duration_seconds") < 120
    assert started - 120 < value(after, "retention_last_run_timestamp_seconds") <= started + 1
    assert value(after, "retention_last_run_deleted_rows", target="jobs") == 3
    assert value(after, "retention_last_run_deleted_rows", target="table:events") == 5
    assert value(after, "retention_last_run_deleted_files", target="files") == 5
    assert value(after, "retention_last_run_deleted_bytes", target="files") == 500
    assert value(after, "retention_last_run_deleted_files", target="directories") == 2
    assert value(after, "retention_last_run_deleted_bytes", target="directories") == 750
    assert value(after, "retention_last_run_deleted_bytes", target="orphans") == 1000
    assert value(after, "retention_last_run_failed_files", target="orphans") == 0
    assert value(after, "retention_runs_total", kind="run", status="succeeded") == 1
    assert value(after, "retention_run_in_progress") == 0
    assert value(after, "retention_backlog_rows", policy="jobs", status="succeeded") == 1
    assert value(after, "retention_backlog_rows", policy="table:events") == 0
    assert value(after, "retention_outbox_files", state="pending") == 0
    assert value(after, "retention_policy_invalid") == 0


def test_failed_runs_and_outbox_failures_are_counted(conn, database, tmp_path):
    _config, media, exports = app_config(tmp_path)
    conn.execute(
        "CREATE TABLE events (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL "
        "DEFAULT now(), path text)"
    )
    exports.rmdir()
    failed = run_cli("run", database=database, cwd=tmp_path)
    assert failed.returncode == 2
    assert "does not exist" in failed.stderr
    conn.execute(
        "INSERT INTO retention_file_outbox (root, path, source, attempts, last_error, "
        "enqueued_at) VALUES (%s, 'x.jpg', 'table:events.path', 3, 'EPERM', now() - interval "
        "'2 hours')",
        (str(media),),
    )
    samples = parse(run_cli("metrics", database=database, cwd=tmp_path).stdout)
    assert value(samples, "retention_runs_total", kind="run", status="failed") == 1
    assert value(samples, "retention_last_run_success") == 0
    assert value(samples, "retention_last_run_complete") == 0
    assert value(samples, "retention_outbox_files", state="failed") == 1
    assert value(samples, "retention_outbox_files", state="pending") == 1
    assert 1.9 * HOUR < value(samples, "retention_outbox_oldest_age_seconds") < 2.1 * HOUR


def test_output_is_written_atomically_for_the_textfile_collector(database, tmp_path):
    folder = tmp_path / "textfile"
    folder.mkdir()
    target = folder / "retention.prom"
    target.write_text("stale\n")
    result = run_cli("metrics", "--output", str(target), database=database, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert value(parse(target.read_text()), "retention_metrics_up") == 1
    assert sorted(p.name for p in folder.iterdir()) == ["retention.prom"]
    assert oct(target.stat().st_mode & 0o777) == "0o644"

    missing = run_cli(
        "metrics", "--output", str(tmp_path / "nope" / "r.prom"), database=database, cwd=tmp_path
    )
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
    assert not Path(tmp_path / "nope").exists()


def test_metrics_say_when_the_jobs_path_falls_back_to_normal(conn, database, tmp_path):
    """An application's trigger on the jobs sends runs to the normal path: the gauge says so,
    so that an operator can alert on it."""
    conn.execute("CREATE TABLE app_audit (job_id bigint)")
    conn.execute(
        "CREATE FUNCTION app_audit_delete() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN INSERT INTO app_audit VALUES (OLD.id); RETURN OLD; END $$"
    )
    conn.execute(
        "CREATE TRIGGER app_audit_jobs AFTER DELETE ON procrastinate_jobs "
        "FOR EACH ROW EXECUTE FUNCTION app_audit_delete()"
    )
    shown = parse(run_cli("metrics", database=database, cwd=tmp_path).stdout)
    assert value(shown, "retention_jobs_set_based") == 0
    normal = parse(
        run_cli(
            "metrics", database=database, cwd=tmp_path, env={"RETENTION_JOBS_PATH": "normal"}
        ).stdout
    )
    assert value(normal, "retention_jobs_set_based") == 0
