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
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo as libpq

from tests import browser
from tests.helpers import (
    QUIET_SCHEDULE,
    Process,
    cli_env,
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


def write_project(root: Path, conninfo: str) -> Path:
    """A Django project whose database is only in DATABASES; returns its manage.py."""
    params = libpq.conninfo_to_dict(conninfo)
    database = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params["dbname"],
        "HOST": params.get("host", ""),
        "PORT": params.get("port", ""),
        "USER": params.get("user", ""),
    }
    package = root / "adminsite"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(
        textwrap.dedent(
            f"""\
            SECRET_KEY = "test-only"
            DEBUG = True
            ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
            USE_TZ = True
            ROOT_URLCONF = "adminsite.urls"
            DATABASES = {{"default": {database!r}}}
            DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
            STATIC_URL = "/static/"
            INSTALLED_APPS = [
                "django.contrib.admin",
                "django.contrib.auth",
                "django.contrib.contenttypes",
                "django.contrib.sessions",
                "django.contrib.messages",
                "django.contrib.staticfiles",
                "procrastinate.contrib.django",
                "retention.contrib.django",
            ]
            MIDDLEWARE = [
                "django.middleware.security.SecurityMiddleware",
                "django.contrib.sessions.middleware.SessionMiddleware",
                "django.middleware.common.CommonMiddleware",
                "django.middleware.csrf.CsrfViewMiddleware",
                "django.contrib.auth.middleware.AuthenticationMiddleware",
                "django.contrib.messages.middleware.MessageMiddleware",
            ]
            TEMPLATES = [
                {{
                    "BACKEND": "django.template.backends.django.DjangoTemplates",
                    "APP_DIRS": True,
                    "OPTIONS": {{
                        "context_processors": [
                            "django.template.context_processors.request",
                            "django.contrib.auth.context_processors.auth",
                            "django.contrib.messages.context_processors.messages",
                        ]
                    }},
                }}
            ]
            RETENTION = {{"jobs": {{"succeeded": "1d", "failed": "7d"}}}}
            """
        )
    )
    (package / "urls.py").write_text(
        "from django.contrib import admin\n"
        "from django.urls import path\n\n"
        'urlpatterns = [path("admin/", admin.site.urls)]\n'
    )
    manage = root / "manage.py"
    manage.write_text(
        "import os, sys\n"
        'os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adminsite.settings")\n'
        "from django.core.management import execute_from_command_line\n"
        "execute_from_command_line(sys.argv)\n"
    )
    (root / "retention.toml").write_text('[jobs]\nsucceeded = "1d"\nfailed = "7d"\n')
    return manage


@dataclasses.dataclass
class Site:
    """The test project: its directory, its database and how to run its manage.py."""

    root: Path
    database: str
    start: Callable[..., Process]

    def env(self) -> dict[str, str]:
        env = cli_env(RETENTION_SCHEDULE=QUIET_SCHEDULE)
        env["PYTHONPATH"] = str(self.root)
        return env

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done

    def retention(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "retention", *args],
            cwd=self.root,
            env=cli_env(self.database, RETENTION_SCHEDULE=QUIET_SCHEDULE),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, f"retention {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done

    def user(self, name: str, *permissions: str, superuser: bool = False) -> None:
        """A staff user with `permissions` (codenames of the retention app's Run model)."""
        script = textwrap.dedent(
            f"""\
            from django.contrib.auth.models import Permission, User
            from django.contrib.contenttypes.models import ContentType
            from retention.contrib.django.models import Run
            kind = ContentType.objects.get_for_model(Run)
            maker = User.objects.create_superuser if {superuser!r} else User.objects.create_user
            user = maker({name!r}, password={PASSWORD!r}, is_staff=True)
            for codename in {list(permissions)!r}:
                perm, _ = Permission.objects.get_or_create(
                    codename=codename, content_type=kind, defaults={{"name": codename}}
                )
                user.user_permissions.add(perm)
            """
        )
        self.manage("shell", "-c", script)

    def serve(self) -> str:
        port = free_port()
        self.start(
            f"{sys.executable} manage.py runserver 127.0.0.1:{port} --noreload",
            self.env(),
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
    reason = browser.missing()
    if reason is not None:
        pytest.fail(f"the admin tests need Debian's Chromium: {reason}")
    root = tmp_path / "project"
    root.mkdir()
    write_project(root, empty_database)
    started = launcher(tmp_path)
    start = next(started)
    found = Site(root=root, database=empty_database, start=start)
    found.manage("migrate", "--noinput")
    found.retention("migrate")
    yield found
    next(started, None)


def runs(database: str) -> list[dict]:
    with psycopg.connect(database) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return list(cur.execute("SELECT * FROM retention_runs ORDER BY id"))


def old_jobs(database: str, count: int) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        for _ in range(count):
            seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=3))


def test_runs_listed_with_detail_and_data_shown_as_text(site: Site, tmp_path: Path) -> None:
    old_jobs(site.database, 3)
    site.retention("run", "--dry-run")
    site.retention("run")
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
            f"{sys.executable} manage.py procrastinate worker --one-shot", site.env(), site.root
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
        queue_files(conn, tmp_path / "media", ["a.jpg", "b.jpg"])
        conn.execute(
            "UPDATE retention_file_outbox SET attempts = 1, last_error = %s, "
            "last_attempt_at = now() WHERE path = 'b.jpg'",
            ("<i>permission denied</i>",),
        )
    status = json.loads(site.retention("status", "--json").stdout)
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
        outbox = status["outbox"]
        assert (outbox["pending"], outbox["failed"]) == (2, 1)
        assert "2 pending (1 failed at least once), 0 refused" in shown
        assert "b.jpg" in shown
        assert "<i>permission denied</i>" in shown


def test_only_staff_with_the_permissions_see_runs_and_defer_them(
    site: Site, tmp_path: Path
) -> None:
    site.retention("run")
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
