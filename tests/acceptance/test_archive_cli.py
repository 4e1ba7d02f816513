"""`retention archive list | verify | restore` and archiving runs, as a user runs them: a run that
archives what it deletes, the files listed and verified, a tampered file failing verify, the
rows restored (and refused the second time); bad settings refused with exit 2, nothing deleted
and nothing written. The real CLI in subprocesses, a real PostgreSQL, real files."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tests.helpers import job_ids, run_cli, seed_job

OLD = dt.timedelta(days=40)


def _config(tmp_path, body):
    path = tmp_path / "retention.toml"
    path.write_text(body)
    return path


def _cli(database, config, *args):
    return run_cli("--config", str(config), *args, database=database)


def test_run_list_verify_restore(conn, database, tmp_path):
    root = tmp_path / "archive"
    config = _config(
        tmp_path, f'[jobs]\nsucceeded = "30d"\narchive = true\n\n[archive]\nroot = "{root}"\n'
    )
    old = {seed_job(conn, status="succeeded", finished_ago=OLD) for _ in range(3)}

    plan = _cli(database, config, "run", "--only", "jobs", "--dry-run", "--json")
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["jobs"]["archive"]["rows"] == 3 + 9
    assert not root.exists()

    run = _cli(database, config, "run", "--only", "jobs", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["jobs"]["archive"]["rows"] == 12
    assert job_ids(conn) == set()

    listed = _cli(database, config, "archive", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)["files"]
    assert entry["rows"] == 12
    assert (root / entry["path"]).stat().st_size == entry["bytes"]

    verified = _cli(database, config, "archive", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "1 files checked, 0 failed" in verified.stdout

    dry = _cli(database, config, "archive", "restore", "--dry-run", entry["path"])
    assert dry.returncode == 0, dry.stderr
    assert "procrastinate_jobs: would insert 3" in dry.stdout
    assert job_ids(conn) == set()

    restored = _cli(database, config, "archive", "restore", str(root / entry["path"]))
    assert restored.returncode == 0, restored.stderr
    assert job_ids(conn) == old
    again = _cli(database, config, "archive", "restore", "--json", entry["path"])
    assert json.loads(again.stdout)["refused"] == {
        "procrastinate_jobs": 3,
        "procrastinate_events": 9,
    }

    (root / entry["path"]).write_bytes(b"not what the ledger says")
    broken = _cli(database, config, "archive", "verify")
    assert broken.returncode == 1
    assert f"FAILED {entry['path']}" in broken.stdout


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ('[jobs]\nsucceeded = "30d"\narchive = true\n', "jobs.archive"),
        (
            '[jobs]\nsucceeded = "30d"\n[[jobs.rules]]\nqueue = "q"\nsucceeded = "9d"\n'
            "archive = true\n",
            "jobs.rules[0].archive",
        ),
        ('[jobs]\nsucceeded = "30d"\narchive = true\n[archive]\nroot = "/etc"\n', "archive.root"),
        (
            '[jobs]\nsucceeded = "30d"\narchive = true\n[archive]\nroot = "/srv/a"\n'
            'format = "csv"\n',
            "archive.format",
        ),
        (
            '[jobs]\nsucceeded = "30d"\narchive = true\n[archive]\nroot = "/srv/app/media/archive"\n'
            '[[directories]]\nroot = "/srv/app/media"\nage = "2d"\n',
            "overlaps directories[0].root '/srv/app/media'",
        ),
        (
            '[jobs]\nsucceeded = "30d"\narchive = true\n[archive]\nroot = "/srv/app"\n'
            '[[tables]]\ntable = "events"\ntimestamp = "created_at"\n'
            '[[tables.children]]\ntable = "crops"\ncolumn = "event_id"\n'
            '[[tables.children.files]]\ncolumn = "path"\nroot = "/srv/app/crops"\n',
            "overlaps tables[0].children[0].files[0].root '/srv/app/crops'",
        ),
    ],
)
def test_bad_archive_settings_exit_2_touching_nothing(conn, database, tmp_path, body, named):
    old = {seed_job(conn, status="succeeded", finished_ago=OLD) for _ in range(2)}
    config = _config(tmp_path, body)
    run = _cli(database, config, "run", "--only", "jobs")
    assert run.returncode == 2, run.stdout + run.stderr
    assert named in run.stderr
    assert job_ids(conn) == old
