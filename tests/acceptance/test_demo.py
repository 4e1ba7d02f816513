"""`retention demo`: the real CLI in subprocesses, on the embedded default and on a test database,
with the demo's files on disk checked one by one."""

from __future__ import annotations

import datetime as dt
import json
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from retention.demo import demo
from retention.embedded import server as embedded
from tests.helpers import (
    demo_json,
    eligible_counts,
    files_by_detection,
    run_cli,
    seed_job,
    unreferenced,
)


def table_section(summary: dict[str, Any], name: str) -> dict[str, Any]:
    tables = summary["tables"]
    found = [section for key, section in tables.items() if key.split(".")[-1] == name]
    assert len(found) == 1, tables
    return found[0]


def deleted_everything(summary: dict[str, Any]) -> dict[str, int]:
    """Rows per target, and the files the tables queued (a dry run queues none, so it counts)."""
    counts = {"jobs": summary["jobs"]["deleted"]}
    for name in ("events", "gpu_stats", "logs"):
        counts[name] = table_section(summary, name)["deleted"]
    counts["detections"] = table_section(summary, "events")["child_rows"]
    counts["files"] = sum(section["files_queued"] for section in summary["tables"].values())
    return counts


def doomed_detections(conn: psycopg.Connection) -> list[tuple[int, str, str | None]]:
    return conn.execute(
        "SELECT d.id, d.thumbnail_path, d.image_path FROM retention_demo.detections d "
        "JOIN retention_demo.events e ON e.id = d.event_id "
        "WHERE e.started_at < now() - interval '30 days' ORDER BY d.id"
    ).fetchall()


def unfinished_jobs(conn: psycopg.Connection) -> set[int]:
    return {
        row[0]
        for row in conn.execute(
            "SELECT id FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
        )
    }


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    yield path
    stopped = run_cli("db", "--stop", env={"RETENTION_HOME": str(path)})
    embedded.stop(path)
    shutil.rmtree(path, ignore_errors=True)
    assert stopped.returncode == 0, stopped.stderr


def test_demo_on_the_embedded_default(home: Path, tmp_path: Path) -> None:
    env = {"RETENTION_HOME": str(home)}
    first = demo_json(env=env, cwd=tmp_path)

    assert first["source"] == "embedded"
    assert first["seeded"] is True
    files = Path(first["files_dir"])
    assert files == home.resolve() / "demo" / "embedded" / "files"
    assert first["config"] == str(home.resolve() / "demo" / "embedded" / "retention.toml")
    plan, run = first["plan"], first["run"]
    assert plan["dry_run"] is True
    assert run["dry_run"] is False
    assert run["status"] == "succeeded"
    assert run["complete"] is True
    assert deleted_everything(plan) == deleted_everything(run)
    plan_files = deleted_everything(plan)["files"]
    assert run["jobs"]["deleted"] > 0
    assert set(run["jobs"]["by"]["status"]) == {"succeeded", "failed", "cancelled", "aborted"}
    for name in ("events", "gpu_stats", "logs"):
        assert table_section(run, name)["deleted"] > 0, name
    before, after = first["before"], first["after"]
    assert before["jobs"]["todo"] == after["jobs"]["todo"]
    assert before["jobs"]["doing"] == after["jobs"]["doing"]
    gone_detections = before["tables"]["detections"]["rows"] - after["tables"]["detections"]["rows"]
    assert gone_detections > 0
    gone_thumbnails = before["files"]["thumbnails"]["files"] - after["files"]["thumbnails"]["files"]
    assert gone_thumbnails == gone_detections == run["files"]["deleted"] == plan_files
    assert after["files"]["images"] == before["files"]["images"]
    assert first["reclaimed_bytes"] == run["files"]["bytes"] > 0

    conninfo = embedded.start(home)
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT id, thumbnail_path, image_path FROM retention_demo.detections"
        ).fetchall()
        assert eligible_counts(conn) == dict.fromkeys(
            ("jobs", "events", "detections", "gpu_stats", "logs"), 0
        )
    kept = {row[0] for row in rows}
    thumbnails = files_by_detection(files / "thumbnails")
    images = files_by_detection(files / "images")
    assert set(thumbnails) == kept, "a thumbnail of a deleted detection is left, or one is missing"
    for detection_id, thumbnail, image in rows:
        assert thumbnails[detection_id] == files / "thumbnails" / thumbnail
        if image is not None:
            assert images[detection_id] == files / "images" / image
    deleted_with_images = set(images) - kept
    assert len(deleted_with_images) > 0, "original images of deleted detections were deleted"
    assert len(unreferenced(files)) == sum(demo.UNREFERENCED.values())

    status = run_cli("status", "--json", env=env, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    runs = {entry["id"]: entry for entry in json.loads(status.stdout)["runs"]}
    assert runs[run["run_id"]]["status"] == "succeeded"
    assert runs[run["run_id"]]["kind"] == "demo"
    assert runs[plan["run_id"]]["dry_run"] is True

    second = demo_json(env=env, cwd=tmp_path)
    assert second["seeded"] is False
    assert set(deleted_everything(second["run"]).values()) == {0}
    assert set(deleted_everything(second["plan"]).values()) == {0}
    assert second["run"]["files"]["deleted"] == 0
    assert second["reclaimed_bytes"] == 0
    assert second["after"] == second["before"] == after
    assert files_by_detection(files / "thumbnails") == thumbnails
    assert files_by_detection(files / "images") == images

    config = first["config"]
    plan_again = run_cli("--config", config, "plan", "--json", env=env, cwd=tmp_path)
    assert plan_again.returncode == 0, plan_again.stderr
    assert set(deleted_everything(json.loads(plan_again.stdout)).values()) == {0}
    orphans = run_cli("--config", config, "sweep-orphans", "--json", env=env, cwd=tmp_path)
    assert orphans.returncode == 0, orphans.stderr
    assert json.loads(orphans.stdout)["orphans"]["deleted"] == demo.UNREFERENCED["thumbnails"]
    assert len(unreferenced(files)) == sum(demo.UNREFERENCED.values())

    shown = run_cli("demo", env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "dry run, nothing deleted" in shown.stdout
    assert "space reclaimed on disk: 0 B" in shown.stdout
    assert "sweep-orphans" in shown.stdout
    assert "original images kept" in shown.stdout


def test_demo_counts_match_an_independent_count(
    conn: psycopg.Connection, database: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    files = demo.files_dir(home, demo.database_key(conn, embedded=False))
    assert demo.prepare(conn, files, reset=False) is True
    expected = eligible_counts(conn)
    doomed = doomed_detections(conn)
    assert len(doomed) == expected["detections"] > 0
    thumbnail_bytes = sum((files / "thumbnails" / row[1]).stat().st_size for row in doomed)
    unfinished = unfinished_jobs(conn)
    assert unfinished

    data = demo_json(database=database, env={"RETENTION_HOME": str(home)}, cwd=tmp_path)

    assert data["seeded"] is False
    for summary in (data["plan"], data["run"]):
        assert summary["jobs"]["deleted"] == expected["jobs"]
        events = table_section(summary, "events")
        assert events["deleted"] == expected["events"]
        assert events["child_rows"] == expected["detections"]
        assert table_section(summary, "gpu_stats")["deleted"] == expected["gpu_stats"]
        assert table_section(summary, "logs")["deleted"] == expected["logs"]
    assert data["run"]["files"]["deleted"] == len(doomed)
    assert data["run"]["files"]["bytes"] == thumbnail_bytes == data["reclaimed_bytes"]
    assert eligible_counts(conn) == dict.fromkeys(expected, 0)
    assert unfinished_jobs(conn) == unfinished
    for _, thumbnail, image in doomed:
        assert not (files / "thumbnails" / thumbnail).exists()
        if image is not None:
            assert (files / "images" / image).exists()


def test_retention_days_and_log_retention_days_from_the_environment(
    conn: psycopg.Connection, database: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    demo.prepare(conn, demo.files_dir(home, demo.database_key(conn, embedded=False)), reset=False)
    expected = eligible_counts(conn, retention_days=60, log_retention_days=14)
    assert expected != eligible_counts(conn)
    env = {"RETENTION_HOME": str(home), "RETENTION_DAYS": "60", "LOG_RETENTION_DAYS": "14"}

    data = demo_json(database=database, env=env)

    run = data["run"]
    assert table_section(run, "events")["deleted"] == expected["events"] > 0
    assert table_section(run, "events")["child_rows"] == expected["detections"]
    assert table_section(run, "gpu_stats")["deleted"] == expected["gpu_stats"] > 0
    assert table_section(run, "logs")["deleted"] == expected["logs"] > 0
    oldest_left = dt.datetime.fromisoformat(data["after"]["tables"]["events"]["oldest"])
    assert oldest_left >= dt.datetime.fromisoformat(table_section(run, "events")["cutoff"])
    shown = run_cli("demo", database=database, env=env)
    assert "thumbnails: older than 60 days (RETENTION_DAYS)" in shown.stdout
    assert "logs: older than 14 days (LOG_RETENTION_DAYS)" in shown.stdout


@pytest.mark.parametrize(
    ("args", "env"), [(("--delete-images",), {}), ((), {"DELETE_IMAGES": "1"})], ids=["flag", "env"]
)
def test_delete_images_also_deletes_the_original_images(
    conn: psycopg.Connection,
    database: str,
    tmp_path: Path,
    args: tuple[str, ...],
    env: dict[str, str],
) -> None:
    home = tmp_path / "home"
    files = demo.files_dir(home, demo.database_key(conn, embedded=False))
    demo.prepare(conn, files, reset=False)
    doomed = doomed_detections(conn)
    kept = conn.execute(
        "SELECT image_path FROM retention_demo.detections d JOIN retention_demo.events e "
        "ON e.id = d.event_id WHERE e.started_at >= now() - interval '30 days' "
        "AND image_path IS NOT NULL"
    ).fetchall()

    data = demo_json(*args, database=database, env={"RETENTION_HOME": str(home), **env})

    assert data["delete_images"] is True
    assert "delete = true" in Path(data["config"]).read_text()
    with_images = [row for row in doomed if row[2] is not None]
    assert data["run"]["files"]["deleted"] == len(doomed) + len(with_images)
    for _, thumbnail, image in doomed:
        assert not (files / "thumbnails" / thumbnail).exists()
        if image is not None:
            assert not (files / "images" / image).exists()
    for (image,) in kept:
        assert (files / "images" / image).exists()
    assert len(unreferenced(files)) == sum(demo.UNREFERENCED.values())


def test_reset_seeds_again(conn: psycopg.Connection, database: str, tmp_path: Path) -> None:
    env = {"RETENTION_HOME": str(tmp_path / "home")}
    first = demo_json(database=database, env=env)
    again = demo_json("--reset", database=database, env=env)

    assert first["seeded"] is True
    assert again["seeded"] is True
    assert again["run"]["jobs"]["deleted"] == first["run"]["jobs"]["deleted"] > 0
    assert (
        again["before"]["tables"]["events"]["rows"] == first["before"]["tables"]["events"]["rows"]
    )
    assert again["before"]["files"] == first["before"]["files"]
    (count,) = conn.execute("SELECT count(*) FROM retention_demo.seeded").fetchone()
    assert count == 1


def test_refuses_a_database_with_other_tables(
    conn: psycopg.Connection, database: str, tmp_path: Path
) -> None:
    conn.execute("CREATE TABLE public.customers (id bigint PRIMARY KEY)")

    result = run_cli("demo", database=database, env={"RETENTION_HOME": str(tmp_path / "h")})

    assert result.returncode == 2
    assert "database of its own" in result.stderr
    assert "public.customers" in result.stderr
    assert "--database-url" in result.stderr
    assert conn.execute("SELECT to_regnamespace('retention_demo')").fetchone() == (None,)
    assert not (tmp_path / "h").exists()


def test_refuses_a_database_with_other_jobs(
    conn: psycopg.Connection, database: str, tmp_path: Path
) -> None:
    job = seed_job(conn, status="succeeded", finished_ago=None, queue="emails", task="shop.mail")

    result = run_cli("demo", database=database, env={"RETENTION_HOME": str(tmp_path / "h")})

    assert result.returncode == 2
    assert "shop.mail (1)" in result.stderr
    assert conn.execute("SELECT to_regnamespace('retention_demo')").fetchone() == (None,)
    assert conn.execute("SELECT id FROM procrastinate_jobs").fetchall() == [(job,)]


def test_a_bad_delete_images_value_is_refused(
    conn: psycopg.Connection, database: str, tmp_path: Path
) -> None:
    result = run_cli(
        "demo",
        database=database,
        env={"RETENTION_HOME": str(tmp_path / "h"), "DELETE_IMAGES": "maybe"},
    )

    assert result.returncode == 2
    assert "DELETE_IMAGES='maybe' is not a yes/no value" in result.stderr
    assert conn.execute("SELECT to_regnamespace('retention_demo')").fetchone() == (None,)


README_DEMO_COMMANDS = ("retention demo --delete-images", "retention demo --reset --json")


def test_the_readme_demo_commands_run_as_written(database: str, tmp_path: Path) -> None:
    env = {"RETENTION_HOME": str(tmp_path / "home")}
    human = run_cli(*shlex.split(README_DEMO_COMMANDS[0])[1:], database=database, env=env)
    assert human.returncode == 0, human.stderr
    assert "space reclaimed" in human.stdout
    assert "original images kept" not in human.stdout
    reset = run_cli(*shlex.split(README_DEMO_COMMANDS[1])[1:], database=database, env=env)
    assert reset.returncode == 0, reset.stderr
    data = json.loads(reset.stdout)
    assert data["seeded"] is True
    assert data["run"]["jobs"]["deleted"] > 0


def every_file(root: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_two_demos_on_two_databases_never_share_files(
    database: str, empty_database: str, tmp_path: Path
) -> None:
    """One RETENTION_HOME, two databases: a run, a reset and an orphan sweep of one demo leave
    every file of the other, and each one's config names only its own roots."""
    env = {"RETENTION_HOME": str(tmp_path / "home")}
    first = demo_json(database=database, env=env)
    first_files = every_file(Path(first["files_dir"]))
    assert first_files
    first_config = Path(first["config"]).read_text()

    second = demo_json(database=empty_database, env=env)
    assert second["files_dir"] != first["files_dir"]
    assert second["config"] != first["config"]
    assert first["files_dir"] not in Path(second["config"]).read_text()
    assert every_file(Path(first["files_dir"])) == first_files
    again = demo_json("--reset", "--delete-images", database=empty_database, env=env)
    assert again["run"]["files"]["deleted"] > 0
    swept = run_cli(
        "--config",
        second["config"],
        "sweep-orphans",
        "--delete",
        "--yes",
        "--json",
        database=empty_database,
        env=env,
    )
    assert swept.returncode == 0, swept.stderr
    # The config of the --delete-images demo deletes images: both roots are swept.
    assert json.loads(swept.stdout)["orphans"]["deleted"] == sum(demo.UNREFERENCED.values())

    assert every_file(Path(first["files_dir"])) == first_files
    assert Path(first["config"]).read_text() == first_config
    rerun = demo_json(database=database, env=env)
    assert rerun["files_dir"] == first["files_dir"]
    assert rerun["seeded"] is False
    assert rerun["before"] == first["after"]
    assert every_file(Path(first["files_dir"])) == first_files


def test_config_path_prints_the_config_the_demo_wrote_for_this_database(
    database: str, tmp_path: Path
) -> None:
    env = {"RETENTION_HOME": str(tmp_path / "home")}
    before = run_cli("demo", "--config-path", database=database, env=env)
    assert before.returncode == 2
    assert "no demo has run on" in before.stderr
    assert "run `retention demo` first" in before.stderr
    assert not (tmp_path / "home" / "demo").exists()

    config = demo_json(database=database, env=env)["config"]

    shown = run_cli("demo", "--config-path", database=database, env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == f"{config}\n"
    refused = run_cli("demo", "--config-path", "--reset", database=database, env=env)
    assert refused.returncode == 2
    assert "--config-path prints the demo's config path and runs nothing" in refused.stderr


def test_a_database_keeps_its_demo_directory_however_it_is_named(
    database: str, empty_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same database by URL, by URL with a password and by PG* variables: one key, with no
    password in it; another database: another key."""
    params = psycopg.conninfo.conninfo_to_dict(database)
    with psycopg.connect(database) as conn:
        key = demo.database_key(conn, embedded=False)
    with psycopg.connect(psycopg.conninfo.make_conninfo(database, password="s3cret")) as conn:
        assert demo.database_key(conn, embedded=False) == key
    for name, value in (
        ("PGHOST", params["host"]),
        ("PGPORT", str(params.get("port", 5432))),
        ("PGUSER", params["user"]),
        ("PGDATABASE", params["dbname"]),
    ):
        monkeypatch.setenv(name, str(value))
    with psycopg.connect("") as conn:
        assert demo.database_key(conn, embedded=False) == key
        assert demo.database_key(conn, embedded=True) == "embedded"
    with psycopg.connect(empty_database) as conn:
        assert demo.database_key(conn, embedded=False) != key
    assert key.startswith(f"{params['dbname']}-")
    assert "s3cret" not in key
    assert "/" not in key
