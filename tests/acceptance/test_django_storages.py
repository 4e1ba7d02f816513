"""FileFields whose storage is not a local FileSystemStorage: their files are deleted through the
storage's own API (a custom storage of the test project, with another location and another
naming), still through the outbox: rows and outbox entries in one transaction, deletion after
commit, a file another row names kept, a name that escapes the storage refused, and a run that
cannot reach the storage (our CLI outside the Django project) leaves the entries pending."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.django_support import DEFAULT_RETENTION, Project, write_project
from tests.helpers import run_cli

RETENTION = {
    **DEFAULT_RETENTION,
    "tables": [
        {
            "model": "shop.Scan",
            "timestamp": "scanned_at",
            "age": "30d",
            "files": [{"field": "file"}],
        }
    ],
}

# Saves scans through the model's storage (the vault's own naming), some 60 days old.
SAVE = """
import datetime as dt
from django.core.files.base import ContentFile
from django.utils import timezone
from shop.models import Scan

for name, days in [("old-1.pdf", 60), ("old-2.pdf", 60), ("shared.pdf", 60), ("fresh.pdf", 1)]:
    scan = Scan(scanned_at=timezone.now() - dt.timedelta(days=days))
    scan.file.save(name, ContentFile(b"%PDF " + name.encode() * 10), save=True)
    print(scan.file.name)
# A young scan naming the same file as an old one.
Scan.objects.create(scanned_at=timezone.now(), file="scans/shared.pdf")
"""


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture
def project(tmp_path: Path, empty_database: str) -> Project:
    project = write_project(tmp_path / "site", database=empty_database, retention=RETENTION)
    ok(project.manage("migrate", "--no-input"))
    return project


def vault(project: Project) -> set[str]:
    root = project.root / "vault"
    return {p.name for p in root.rglob("*") if p.is_file()}


def test_files_of_a_custom_storage_go_through_its_api(project: Project, empty_database: str):
    out = ok(project.manage("shell", "-c", SAVE)).stdout.split()
    saved = [word for word in out if word.startswith("scans/")]
    assert saved == ["scans/old-1.pdf", "scans/old-2.pdf", "scans/shared.pdf", "scans/fresh.pdf"]
    assert vault(project) == {
        f"scans__{n}" for n in ("old-1.pdf", "old-2.pdf", "shared.pdf", "fresh.pdf")
    }

    plan = json.loads(ok(project.manage("retention", "plan", "--json")).stdout)
    assert plan["tables"]["shop_scan"]["deleted"] == 3, plan["tables"]

    summary = json.loads(ok(project.manage("retention", "run", "--json")).stdout)
    assert summary["status"] == "succeeded", summary
    assert summary["tables"]["shop_scan"]["deleted"] == 3
    files = summary["files"]
    assert (files["deleted"], files["referenced"], files["failed"]) == (2, 1, 0), files
    assert files["bytes"] > 0
    assert vault(project) == {"scans__shared.pdf", "scans__fresh.pdf"}
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("SELECT count(*) FROM retention_file_outbox").fetchone() == (0,)
    assert not project.embedded_started()


def test_a_name_that_escapes_the_storage_is_refused(project: Project, empty_database: str):
    outside = project.root / "vault" / "keep.txt"
    outside.parent.mkdir(parents=True, exist_ok=True)
    outside.write_text("not the storage's")
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO retention_file_outbox (root, path, source) VALUES"
            " ('storage:django:shop.Scan.file', '../keep.txt', 'x'),"
            " ('storage:django:shop.Scan.file', '/etc/hostname', 'x'),"
            " ('storage:django:shop.Nothing.file', 'scans/a.pdf', 'x')"
        )
    summary = json.loads(ok(project.manage("retention", "run", "--json")).stdout)
    # Two names the storage could resolve elsewhere: refused; a storage no setting names: refused.
    assert summary["files"]["refused"] == 3, summary["files"]
    assert outside.read_text() == "not the storage's"


def test_outside_the_project_the_entries_wait_for_a_run_that_has_the_storage(
    project: Project, empty_database: str, tmp_path: Path
):
    ok(project.manage("shell", "-c", SAVE))
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute(
            "DELETE FROM shop_scan WHERE scanned_at < now() - interval '30 days'"
            " AND file <> 'scans/shared.pdf'"
        )
        conn.execute(
            "INSERT INTO retention_file_outbox (root, path, source) VALUES"
            " ('storage:django:shop.Scan.file', 'scans/old-1.pdf', 'table:shop_scan.file')"
        )
    # Our own CLI, with the same policy written by storage key: the storage is not registered in
    # its process, so the entry stays pending (failed, with the reason), and nothing is lost.
    config = tmp_path / "retention.toml"
    config.write_text(
        '[[tables]]\ntable = "shop_scan"\ntimestamp = "scanned_at"\nage = "30d"\n'
        'files = [{column = "file", storage = "django:shop.Scan.file"}]\n'
    )
    outside = run_cli(
        "--config", str(config), "run", "--only", "files", "--json", database=empty_database
    )
    assert outside.returncode == 0, outside.stderr
    files = json.loads(outside.stdout)["files"]
    assert (files["failed"], files["pending"]) == (1, 1), files
    assert "scans__old-1.pdf" in vault(project)

    inside = json.loads(ok(project.manage("retention", "run", "--only", "files", "--json")).stdout)
    assert inside["files"]["deleted"] == 1, inside["files"]
    assert "scans__old-1.pdf" not in vault(project)


ORPHANS = """
import datetime as dt, os, time
from django.core.files.base import ContentFile
from django.utils import timezone
from shop.models import Scan

storage = Scan._meta.get_field("file").storage
Scan.objects.create(scanned_at=timezone.now(), file=storage.save("scans/kept.pdf", ContentFile(b"k")))
for name in ("scans/orphan-old.pdf", "scans/orphan-young.pdf", "loose.pdf"):
    storage.save(name, ContentFile(b"o" * 7))
old = time.time() - 3 * 86400
for name in ("scans/kept.pdf", "scans/orphan-old.pdf", "loose.pdf"):
    os.utime(storage._where(name), (old, old))
"""


def test_the_orphan_sweep_lists_a_storage_through_its_api(tmp_path: Path, empty_database: str):
    retention = {**RETENTION, "orphans": {"enabled": True, "grace": "1d"}}
    project = write_project(tmp_path / "site", database=empty_database, retention=retention)
    ok(project.manage("migrate", "--no-input"))
    ok(project.manage("shell", "-c", ORPHANS))
    before = vault(project)
    assert before == {
        "scans__kept.pdf",
        "scans__orphan-old.pdf",
        "scans__orphan-young.pdf",
        "loose.pdf",
    }

    dry = json.loads(ok(project.manage("retention", "run", "--dry-run", "--json")).stdout)
    section = dry["orphans"]["roots"]["storage:django:shop.Scan.file"]
    assert section["deleted"] == 2, section
    assert vault(project) == before

    real = json.loads(ok(project.manage("retention", "run", "--json")).stdout)
    section = real["orphans"]["roots"]["storage:django:shop.Scan.file"]
    assert (section["deleted"], section["bytes"]) == (2, 14), section
    assert vault(project) == {"scans__kept.pdf", "scans__orphan-young.pdf"}
    assert not project.embedded_started()
