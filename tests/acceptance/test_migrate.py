"""`retention migrate` through the CLI, and the wheel a user installs: migrations, queries, demo."""

from __future__ import annotations

from retention.pg import migrate
from tests.helpers import ROOT, run_cli


def test_migrate_from_the_cli_and_run_refuses_an_unmigrated_database(empty_database):
    refused = run_cli("run", database=empty_database)
    assert refused.returncode == 2
    assert "retention migrate" in refused.stderr
    done = run_cli("migrate", database=empty_database)
    assert done.returncode == 0, done.stderr
    assert "applied" in done.stdout
    again = run_cli("migrate", database=empty_database)
    assert again.returncode == 0
    assert "up to date" in again.stdout
    assert run_cli("run", database=empty_database).returncode == 0


def test_the_wheel_ships_migrations_queries_and_the_demo_config(tmp_path):
    import subprocess
    import sys
    import zipfile

    root = ROOT
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(root),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("procrastinate_retention-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for migration in migrate.available():
        assert f"retention/pg/migrations/{migration.name}" in names
    queries = sorted((root / "retention" / "pg" / "sql").glob("*.sql"))
    assert queries
    for path in queries:
        assert f"retention/pg/sql/{path.name}" in names
    assert "retention/demo/demo.toml" in names
    assert "retention/demo/demo.sql" in names
