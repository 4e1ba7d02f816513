"""`./manage.py check` in the test Django project: every bad RETENTION setting is a system-check
message with its id (retention.E00x / W00x) saying what to fix; never a traceback, at import,
app-ready or check time. The commands refuse bad settings the same way (exit 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.django_support import write_project

PHOTO = {"model": "shop.Photo", "timestamp": "taken_at", "age": "30d"}


def check(tmp_path: Path, database: str, retention: Any) -> tuple[int, str]:
    project = write_project(
        tmp_path / "site", database=database, retention=retention, migrations=False
    )
    result = project.manage("check")
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    return result.returncode, output


@pytest.mark.parametrize(
    ("retention", "check_id", "words"),
    [
        ({"jobs": {"succeded": "3d"}}, "retention.E001", ["jobs.succeded", "did you mean"]),
        ({"batch_size": 0}, "retention.E001", ["batch_size", "the Django setting RETENTION"]),
        ("jobs=3d", "retention.E001", ["must be a dict"]),
        ({"tables": [{**PHOTO, "model": "shop.Phot"}]}, "retention.E002", ["'shop.Photo'"]),
        ({"tables": [{**PHOTO, "timestamp": "taken"}]}, "retention.E003", ["taken_at"]),
        ({"tables": [{**PHOTO, "timestamp": "title"}]}, "retention.E003", ["CharField"]),
        ({"tables": [{**PHOTO, "files": [{"field": "title"}]}]}, "retention.E003", ["FileField"]),
        (
            {"tables": [{**PHOTO, "children": [{"model": "shop.Log"}]}]},
            "retention.E003",
            ["no ForeignKey to shop.Photo"],
        ),
        (
            {
                "tables": [
                    {
                        "model": "shop.Poster",
                        "timestamp": "created_at",
                        "files": [{"field": "file"}],
                    }
                ]
            },
            "retention.E004",
            ["ReadOnlyStorage", "does not implement delete", "delete = false"],
        ),
    ],
)
def test_a_bad_setting_is_an_error_of_check(
    tmp_path: Path, empty_database: str, retention: Any, check_id: str, words: list[str]
) -> None:
    code, output = check(tmp_path, empty_database, retention)

    assert code != 0, output
    assert f"({check_id})" in output, output
    for word in words:
        assert word in output, output


def test_a_timestamp_without_an_index_is_a_warning(tmp_path: Path, empty_database: str) -> None:
    retention = {"tables": [{"model": "shop.Log", "timestamp": "logged_at"}]}

    code, output = check(tmp_path, empty_database, retention)

    assert code == 0, output
    assert "(retention.W001)" in output
    assert "shop.Log.logged_at" in output
    assert "db_index=True" in output


def test_good_settings_pass(tmp_path: Path, empty_database: str) -> None:
    code, output = check(tmp_path, empty_database, {"tables": [PHOTO]})

    assert code == 0, output
    assert "retention." not in output


def test_procrastinates_app_missing_is_an_error(tmp_path: Path, empty_database: str) -> None:
    project = write_project(
        tmp_path / "site",
        database=empty_database,
        installed_apps=["django.contrib.contenttypes", "retention.contrib.django", "shop"],
        migrations=False,
    )
    result = project.manage("check")
    assert result.returncode != 0
    assert "(retention.E005)" in result.stderr
    assert "Traceback" not in result.stderr


def test_commands_refuse_bad_settings_with_exit_2(tmp_path: Path, empty_database: str) -> None:
    project = write_project(
        tmp_path / "site",
        database=empty_database,
        retention={"tables": [{**PHOTO, "model": "shop.Phot"}]},
        migrations=False,
    )
    result = project.manage("retention", "plan")

    assert result.returncode == 2, result.stderr
    assert "unknown model 'shop.Phot'" in result.stderr
    assert "Traceback" not in result.stderr


def test_worker_and_demo_are_refused(tmp_path: Path, empty_database: str) -> None:
    project = write_project(tmp_path / "site", database=empty_database, migrations=False)
    for command, hint in (("worker", "./manage.py procrastinate worker"), ("demo", "its own")):
        result = project.manage("retention", command)
        assert result.returncode == 2, result.stderr
        assert hint in result.stderr


def test_a_file_field_the_orphan_sweep_would_take_for_orphans_is_a_warning(
    tmp_path: Path, empty_database: str
) -> None:
    """With the orphan sweep on and MEDIA_ROOT swept (shop.Photo.image), shop.Tag.thumbnail,
    stored there too and named by no policy, would have its files deleted as orphans."""
    photos_only = {
        "model": "shop.Photo",
        "timestamp": "taken_at",
        "files": [{"field": "image"}],
    }
    retention = {"tables": [photos_only], "orphans": {"enabled": True}}
    code, output = check(tmp_path / "bare", empty_database, retention)
    assert code == 0, output
    assert "(retention.W003)" in output
    assert "shop.Tag.thumbnail" in output
    assert "shop.Photo.image" not in output

    with_tags = {
        **photos_only,
        "children": [{"model": "shop.Tag", "files": [{"field": "thumbnail"}]}],
    }
    _, output = check(tmp_path / "named", empty_database, {**retention, "tables": [with_tags]})
    assert "(retention.W003)" not in output, output

    _, output = check(tmp_path / "off", empty_database, {"tables": [photos_only]})
    assert "(retention.W003)" not in output, output
