"""retention.contrib.django in a real Django project (tests/django_support.py) on a real,
empty database named only in DATABASES: `./manage.py migrate`, `./manage.py retention ...`,
`./manage.py procrastinate worker` running the retention tasks, model policies deleting rows,
their children and their FileFields' files. No command may start the embedded server."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.django_support import DEFAULT_RETENTION, Project, write_project
from tests.helpers import seed_job, wait_for

OLD = dt.timedelta(days=60)
FRESH = dt.timedelta(days=1)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture
def project(tmp_path: Path, empty_database: str) -> Project:
    return write_project(tmp_path / "site", database=empty_database)


def seed_photos(conn: psycopg.Connection, media: Path, *, old: int, fresh: int) -> None:
    """Photos `old` (60 days) and `fresh` (1 day) old, each with a file and two tags with a
    thumbnail each."""
    for index in range(old + fresh):
        age = OLD if index < old else FRESH
        kind = "old" if index < old else "fresh"
        image = f"photos/{kind}-{index}.jpg"
        (media / image).parent.mkdir(parents=True, exist_ok=True)
        (media / image).write_bytes(b"x" * 100)
        row = conn.execute(
            "INSERT INTO shop_photo (title, taken_at, image) VALUES (%s, now() - %s, %s) "
            "RETURNING id",
            (f"{kind} {index}", age, image),
        ).fetchone()
        assert row is not None
        for tag in range(2):
            thumbnail = f"thumbnails/{kind}-{index}-{tag}.jpg"
            (media / thumbnail).parent.mkdir(parents=True, exist_ok=True)
            (media / thumbnail).write_bytes(b"t" * 10)
            conn.execute(
                "INSERT INTO shop_tag (photo_id, name, thumbnail) VALUES (%s, %s, %s)",
                (row[0], f"tag{tag}", thumbnail),
            )


def files(media: Path) -> set[str]:
    return {str(p.relative_to(media)) for p in media.rglob("*") if p.is_file()}


def test_migrate_then_plan_reports_the_projects_jobs_and_model_rows(
    project: Project, empty_database: str
) -> None:
    ok(project.manage("migrate"))
    with psycopg.connect(empty_database, autocommit=True) as conn:
        for _ in range(3):
            seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=10))
        seed_job(conn, status="succeeded", finished_ago=dt.timedelta(hours=1))
        seed_photos(conn, project.media, old=4, fresh=2)

    plan = json.loads(ok(project.manage("retention", "plan", "--json")).stdout)

    assert plan["dry_run"] is True
    assert plan["jobs"]["deleted"] == 3
    assert plan["tables"]["shop_photo"]["deleted"] == 4
    assert plan["tables"]["shop_photo"]["child_rows"] == 8
    db = ok(project.manage("retention", "db")).stdout
    assert empty_database.split("dbname=")[-1].split()[0] in db
    assert not project.embedded_started()


def test_the_worker_runs_periodic_and_deferred_runs_deleting_rows_children_and_files(
    tmp_path: Path, empty_database: str
) -> None:
    retention = {**DEFAULT_RETENTION, "schedule": "* * * * *"}
    project = write_project(tmp_path / "site", database=empty_database, retention=retention)
    ok(project.manage("migrate"))
    with psycopg.connect(empty_database, autocommit=True) as conn:
        seed_photos(conn, project.media, old=3, fresh=2)
        seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=10))
    before = files(project.media)

    worker = subprocess.Popen(
        project.manage_args("procrastinate", "worker", "--wait"),
        cwd=project.root,
        env=project.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with psycopg.connect(empty_database, autocommit=True) as conn:

            def runs(trigger: str) -> list[tuple[str, str]]:
                return conn.execute(
                    "SELECT status, kind FROM retention_runs WHERE trigger = %s AND NOT dry_run",
                    (trigger,),
                ).fetchall()

            periodic = wait_for(lambda: runs("periodic"), timeout=90, what="a periodic run")
            assert periodic[0][0] in ("running", "succeeded")
            wait_for(lambda: runs("periodic")[0][0] == "succeeded", timeout=60, what="its success")
            photos = {row[0] for row in conn.execute("SELECT title FROM shop_photo")}
            assert photos == {"fresh 3", "fresh 4"}
            tags = conn.execute("SELECT count(*) FROM shop_tag").fetchone()
            assert tags == (4,)

            ok(project.manage("procrastinate", "defer", "retention:run", "{}"))
            wait_for(
                lambda: [r for r in runs("deferred") if r[0] == "succeeded"],
                timeout=60,
                what="a deferred run",
            )
            jobs = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'app.task'"
            ).fetchone()
            assert jobs == (0,)
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output
    gone = before - files(project.media)
    assert gone == {f"photos/old-{i}.jpg" for i in range(3)} | {
        f"thumbnails/old-{i}-{t}.jpg" for i in range(3) for t in range(2)
    }
    assert "Traceback" not in output, output
    assert not project.embedded_started()


def test_django_migrations_then_retention_migrate(project: Project, empty_database: str) -> None:
    ok(project.manage("migrate"))
    assert "up to date" in ok(project.manage("retention", "migrate")).stdout
    assert not project.embedded_started()


def test_retention_migrate_then_django_migrations(project: Project, empty_database: str) -> None:
    ok(project.manage("migrate", "procrastinate"))
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("SELECT to_regclass('retention_runs')").fetchone() == (None,)
    applied = ok(project.manage("retention", "migrate")).stdout
    assert "applied 0001_retention_runs.sql" in applied

    ok(project.manage("migrate"))

    with psycopg.connect(empty_database) as conn:
        recorded = conn.execute(
            "SELECT name FROM django_migrations WHERE app = 'retention'"
        ).fetchall()
        assert recorded == [("0001_initial",)]
    ok(project.manage("retention", "status"))
    assert not project.embedded_started()


def test_retention_migrate_before_procrastinates_migrations_is_refused(
    project: Project, empty_database: str
) -> None:
    result = project.manage("retention", "migrate")

    assert result.returncode == 2, result.stderr
    assert "run `./manage.py migrate`" in result.stderr
    assert "Traceback" not in result.stderr
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone() == (None,)
    ok(project.manage("migrate"))


def test_the_tasks_are_added_whichever_app_is_listed_first(
    tmp_path: Path, empty_database: str
) -> None:
    apps = [
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "retention.contrib.django",
        "procrastinate.contrib.django",
        "shop",
    ]
    project = write_project(tmp_path / "site", database=empty_database, installed_apps=apps)
    shown = ok(
        project.manage(
            "shell",
            "-c",
            "from procrastinate.contrib.django import app; "
            "print(sorted(app.tasks)); print(sorted(app.periodic_registry.periodic_tasks))",
        )
    ).stdout
    for task in ("retention:run", "retention:prune_jobs", "retention:purge_jobs", "shop.hello"):
        assert f"'{task}'" in shown


def test_a_users_hook_that_adds_the_tasks_too_is_a_warning(
    tmp_path: Path, empty_database: str
) -> None:
    hook = tmp_path / "site" / "site_settings" / "hooks.py"
    hook.parent.mkdir(parents=True)
    hook.write_text(
        "import retention\n\n\ndef on_ready(app):\n"
        '    app.add_tasks_from(retention.blueprint(), namespace="retention")\n'
    )
    project = write_project(
        tmp_path / "site",
        database=empty_database,
        retention=None,
        settings_extra='PROCRASTINATE_ON_APP_READY = "site_settings.hooks.on_ready"\n',
    )
    result = ok(project.manage("check"))
    assert "retention.W002" in result.stderr + result.stdout


def test_settings_from_a_retention_config_file_with_variables_on_top(
    tmp_path: Path, empty_database: str
) -> None:
    toml = tmp_path / "retention.toml"
    toml.write_text(
        '[jobs]\nsucceeded = "5d"\n\n[[tables]]\nmodel = "shop.Photo"\ntimestamp = "taken_at"\n'
        'age = "10d"\n\n[[tables.files]]\nfield = "image"\n'
    )
    project = write_project(
        tmp_path / "site",
        database=empty_database,
        retention=None,
        settings_extra=f"RETENTION_CONFIG = {str(toml)!r}\n",
    )
    shown = json.loads(
        ok(
            project.manage("retention", "config", "--json", env={"RETENTION_JOBS__FAILED": "2d"})
        ).stdout
    )
    assert shown["jobs"]["succeeded"] in ("5d", "5 days", 432000, "P5D")
    assert shown["jobs"]["failed"] != shown["jobs"]["succeeded"]
    assert shown["tables"][0]["table"] == "shop_photo"
    assert shown["tables"][0]["files"][0]["column"] == "image"
    assert shown["tables"][0]["files"][0]["root"] == str(project.media)


def test_a_variable_overrides_the_retention_setting(project: Project) -> None:
    base = json.loads(ok(project.manage("retention", "config", "--json")).stdout)
    moved = json.loads(
        ok(
            project.manage("retention", "config", "--json", env={"RETENTION_QUEUE": "cleanup"})
        ).stdout
    )
    assert base["queue"] == "retention"
    assert moved["queue"] == "cleanup"
