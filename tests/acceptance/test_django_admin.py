"""The "Retention runs" admin pages in a real browser: headless Chromium (Debian's, through
Selenium: tests/browser.py) against a test Django project's `runserver` on a free port, on a real
database migrated with `./manage.py migrate`, with real runs of the CLI, a real worker
(`./manage.py procrastinate worker`) for the deferred ones, and staff users with and without the
permissions.

Every page the browser visits is kept as a PNG under the test's tmp_path; a failed test's output
lists them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shlex
import socket
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests import browser, django_support
from tests.helpers import (
    Process,
    launcher,
    queue_files,
    seed_job,
    wait_for,
)

PASSWORD = "a-long-test-password-42"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# The test project's settings: old jobs after a day, and photos by model (its shop app).
RETENTION = {
    **django_support.DEFAULT_RETENTION,
    "jobs": {"succeeded": "1d", "failed": "7d"},
}


@dataclasses.dataclass
class Site:
    """The test project (tests/django_support.py), its database and its processes."""

    project: django_support.Project
    database: str
    start: Callable[..., Process]

    @property
    def root(self) -> Path:
        return self.project.root

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.project.manage(*args, timeout=180)
        assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done

    def user(self, name: str, *permissions: str, superuser: bool = False) -> None:
        """A staff user with `permissions` (codenames of the retention app's Run model, as
        `migrate` created them)."""
        script = textwrap.dedent(
            f"""\
            from django.contrib.auth.models import Permission, User
            from django.contrib.contenttypes.models import ContentType
            from retention.contrib.django.models import Run
            kind = ContentType.objects.get_for_model(Run)
            maker = User.objects.create_superuser if {superuser!r} else User.objects.create_user
            user = maker({name!r}, password={PASSWORD!r}, is_staff=True)
            for codename in {list(permissions)!r}:
                perm = Permission.objects.get(codename=codename, content_type=kind)
                user.user_permissions.add(perm)
            """
        )
        self.manage("shell", "-c", script)

    def serve(self) -> str:
        port = free_port()
        # --insecure: the admin's CSS and scripts, served as DEBUG = False leaves them.
        self.start(
            shlex.join(
                self.project.manage_args(
                    "runserver", f"127.0.0.1:{port}", "--noreload", "--insecure"
                )
            ),
            self.project.env(),
            cwd=self.root,
        )
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(port), timeout=60, what=f"runserver on port {port}")
        return url


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def site(empty_database: str, tmp_path: Path) -> Iterator[Site]:
    """The project migrated by `./manage.py migrate` alone, on a database that had nothing."""
    reason = browser.missing()
    if reason is not None:
        pytest.fail(f"the admin tests need Debian's Chromium: {reason}")
    project = django_support.write_project(
        tmp_path / "site", database=empty_database, retention=RETENTION
    )
    started = launcher(tmp_path)
    found = Site(project=project, database=empty_database, start=next(started))
    found.manage("migrate", "--noinput")
    yield found
    next(started, None)
    assert not project.embedded_started()


def runs(database: str) -> list[dict]:
    with psycopg.connect(database) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return list(cur.execute("SELECT * FROM retention_runs ORDER BY id"))


def old_jobs(database: str, count: int) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        for _ in range(count):
            seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=3))


def test_runs_listed_with_detail_and_data_shown_as_text(site: Site, tmp_path: Path) -> None:
    old_jobs(site.database, 3)
    site.manage("retention", "run", "--dry-run")
    site.manage("retention", "run")
    with psycopg.connect(site.database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO retention_runs (kind, trigger, status, finished_at, summary, error) "
            "VALUES ('run', 'cli', 'failed', now(), %s, %s)",
            (
                json.dumps({"tables": {"<b>bold</b>": {"deleted": 2}}}),
                '<script>document.title="pwned"</script> boom',
            ),
        )
    site.user("admin", superuser=True)
    url = site.serve()
    with browser.browser_session(url, tmp_path / "shots") as page:
        page.login("admin", PASSWORD)
        assert "Retention runs" in page.text
        page.click_link("Retention runs")
        listed = page.text
        assert "run (dry run)" in listed
        assert "jobs: 3" in listed
        assert '<script>document.title="pwned"</script> boom' in listed
        assert page.driver.title != "pwned"
        ids = [run["id"] for run in runs(site.database)]
        page.get(f"/admin/retention/run/{ids[1]}/change/")
        detail = page.text
        assert "Per target" in detail
        assert "jobs 3 succeeded: 3" in detail
        page.get(f"/admin/retention/run/{ids[2]}/change/")
        assert "table <b>bold</b> 2" in page.text
        assert '<script>document.title="pwned"</script> boom' in page.text
        assert "<b>bold</b>" not in page.source
        assert page.driver.title != "pwned"
        page.get("/admin/retention/run/?status__exact=failed")
        assert "boom" in page.text
        assert "run (dry run)" not in page.text


def test_preview_deferred_once_then_run_by_a_worker(site: Site, tmp_path: Path) -> None:
    old_jobs(site.database, 2)
    site.user("admin", superuser=True)
    url = site.serve()
    with browser.browser_session(url, tmp_path / "shots") as page:
        page.login("admin", PASSWORD)
        page.get("/admin/retention/run/")
        assert "0 retention runs" in page.text
        page.submit("button[name=preview]")
        assert "A dry run (preview) is queued as job #" in page.text
        page.submit("button[name=preview]")
        assert "A retention run is already waiting (job #" in page.text
        page.submit("button[name=run_now]")
        assert "A retention run is already waiting (job #" in page.text
        assert "a retention run was not queued" in page.text
        with psycopg.connect(site.database) as conn:
            queued = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'retention:run'"
            ).fetchone()
        assert queued == (1,)
        worker = site.start(
            shlex.join(site.project.manage_args("procrastinate", "worker", "--one-shot")),
            site.project.env(),
            site.root,
        )
        assert worker.wait(120) == 0, worker.output()
        assert [(r["trigger"], r["dry_run"], r["status"]) for r in runs(site.database)] == [
            ("deferred", True, "succeeded")
        ]
        page.get("/admin/retention/run/")
        listed = page.text
        assert "1 retention run" in listed
        assert "deferred" in listed
        assert "run (dry run)" in listed
        assert "jobs: 2" in listed
        page.get("/admin/retention/run/?trigger__exact=cli")
        assert "0 retention runs" in page.text


def test_backlog_shows_what_status_computes(site: Site, tmp_path: Path) -> None:
    old_jobs(site.database, 4)
    with psycopg.connect(site.database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO shop_photo (title, taken_at, image) "
            "VALUES ('old', now() - interval '40 days', ''), ('new', now(), '')"
        )
        queue_files(conn, tmp_path / "media", ["a.jpg", "b.jpg"])
        conn.execute(
            "UPDATE retention_file_outbox SET attempts = 1, last_error = %s, "
            "last_attempt_at = now() WHERE path = 'b.jpg'",
            ("<i>permission denied</i>",),
        )
    status = json.loads(site.manage("retention", "status", "--json").stdout)
    site.user("viewer", "view_run")
    url = site.serve()
    with browser.browser_session(url, tmp_path / "shots") as page:
        page.login("viewer", PASSWORD)
        page.get("/admin/retention/run/")
        page.click_link("BACKLOG")
        shown = page.text
        entry = status["backlog"]["jobs"]["succeeded"]
        assert entry["eligible"] == 4
        assert f"jobs succeeded 4 {entry['oldest']}" in shown
        photos = status["backlog"]["tables"]["shop_photo"]
        assert photos["eligible"] == 1
        assert f"table shop_photo 1 {photos['oldest']}" in shown
        outbox = status["outbox"]
        assert (outbox["pending"], outbox["failed"]) == (2, 1)
        assert "2 pending (1 failed at least once), 0 refused" in shown
        assert "b.jpg" in shown
        assert "<i>permission denied</i>" in shown


def test_only_staff_with_the_permissions_see_runs_and_defer_them(
    site: Site, tmp_path: Path
) -> None:
    site.manage("retention", "run")
    site.user("nobody")
    site.user("viewer", "view_run")
    site.user("operator", "view_run", "run_retention")
    url = site.serve()
    with browser.browser_session(url, tmp_path / "shots") as page:
        page.login("nobody", PASSWORD)
        assert "Retention runs" not in page.text
        for path in ("/admin/retention/run/", "/admin/retention/run/backlog/"):
            page.get(path)
            assert "403 Forbidden" in page.text or "Forbidden" in page.driver.title
        page.get("/admin/logout/")
    with browser.browser_session(url, tmp_path / "shots-viewer") as page:
        page.login("viewer", PASSWORD)
        page.click_link("Retention runs")
        assert "1 retention run" in page.text
        assert "Preview (dry run)" not in page.text
        assert "Run now" not in page.text
        # The buttons' form, posted by hand: refused.
        page.driver.execute_script(
            "const form = document.createElement('form');"
            "form.method = 'post'; form.action = '/admin/retention/run/preview/';"
            "const token = document.createElement('input'); token.name = 'csrfmiddlewaretoken';"
            "token.value = document.cookie.match(/csrftoken=([^;]+)/)[1];"
            "form.appendChild(token); document.body.appendChild(form); form.submit();"
        )
        wait_for(lambda: "preview" in page.driver.current_url, what="the refused POST")
        page.screenshot()
        assert "Forbidden" in page.text
    with browser.browser_session(url, tmp_path / "shots-operator") as page:
        page.login("operator", PASSWORD)
        page.click_link("Retention runs")
        page.submit("button[name=run_now]")
        assert "A retention run is queued as job #" in page.text
    with psycopg.connect(site.database) as conn:
        deferred = conn.execute(
            "SELECT args FROM procrastinate_jobs WHERE task_name = 'retention:run'"
        ).fetchall()
    assert deferred == [({"dry_run": False},)]


def test_migrate_creates_the_permissions(site: Site) -> None:
    with psycopg.connect(site.database) as conn:
        codenames = {
            row[0]
            for row in conn.execute(
                "SELECT p.codename FROM auth_permission p "
                "JOIN django_content_type t ON t.id = p.content_type_id "
                "WHERE t.app_label = 'retention' AND t.model = 'run'"
            )
        }
    assert {"view_run", "run_retention"} <= codenames
