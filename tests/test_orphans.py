from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from conftest import make_settings, run_cli

from retention import errors
from retention.config import settings as settings_mod
from retention.files import orphans
from retention.run import runner

HOUR = 3600.0


def put(root: Path, rel: str, *, age: float = 2 * HOUR, data: bytes = b"x" * 10) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    when = time.time() - age
    os.utime(path, (when, when))
    return path


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_symlink() or p.is_file()}


@pytest.fixture
def app(conn: psycopg.Connection) -> psycopg.Connection:
    conn.execute(
        "CREATE TABLE attachments (id serial PRIMARY KEY, created_at timestamptz NOT NULL "
        "DEFAULT now(), path text)"
    )
    conn.execute(
        "CREATE TABLE thumbnails (id serial PRIMARY KEY, attachment_id int, file varchar(500))"
    )
    conn.execute("CREATE TABLE avatars (id serial PRIMARY KEY, created_at timestamptz, img text)")
    return conn


def refer(conn: psycopg.Connection, *paths: str, table: str = "attachments") -> None:
    column = {"attachments": "path", "thumbnails": "file", "avatars": "img"}[table]
    for value in paths:
        conn.execute(f"INSERT INTO {table} ({column}) VALUES (%s)", (value,))


def policies(root: Path, **orphan: object) -> dict[str, object]:
    return {
        "tables": [
            {
                "table": "attachments",
                "timestamp": "created_at",
                "files": [{"column": "path", "root": str(root)}],
                "children": [
                    {
                        "table": "thumbnails",
                        "column": "attachment_id",
                        "files": [{"column": "file", "root": str(root / "thumbs")}],
                    }
                ],
            },
            {
                "table": "avatars",
                "timestamp": "created_at",
                "enabled": False,
                "files": [{"column": "img", "root": str(root), "delete": False}],
            },
        ],
        "orphans": {"enabled": True, **orphan},
    }


def write_config(path: Path, data: dict[str, object]) -> Path:
    lines: list[str] = []
    orphan = data.get("orphans") or {}
    if orphan:
        lines.append("[orphans]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in orphan.items()]  # type: ignore[union-attr]
    for table in data.get("tables", []):  # type: ignore[union-attr]
        lines.append("[[tables]]")
        for key in ("table", "timestamp", "enabled"):
            if key in table:
                lines.append(f"{key} = {json.dumps(table[key])}")
        lines.append(
            "files = ["
            + ", ".join(
                "{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in f.items()) + "}"
                for f in table.get("files", [])
            )
            + "]"
        )
    for directory in data.get("directories", []):  # type: ignore[union-attr]
        lines.append("[[directories]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in directory.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_orphans(database: str, location, root: Path, *, dry_run: bool, **orphan: object):
    settings = make_settings(database, **policies(root, **orphan))
    return runner.execute(settings, location, stages=["orphans"], dry_run=dry_run, trigger="cli")


def test_unreferenced_old_files_go_referenced_and_young_ones_stay(
    app, database, location, tmp_path
):
    root = tmp_path / "media"
    for rel in (
        "a/relative.jpg",
        "absolute.jpg",
        "b/dotted.jpg",
        "thumbs/t1.png",
        "avatar.png",
        "old-orphan.bin",
        "deep/er/old-orphan.bin",
        "thumbs/old-thumb-orphan.png",
        "spaced name ü.txt",
    ):
        put(root, rel)
    put(root, "young-orphan.bin", age=60)
    refer(app, "a/relative.jpg", str(root / "absolute.jpg"), "./b/../b//dotted.jpg")
    refer(app, "t1.png", table="thumbnails")
    refer(app, "avatar.png", table="avatars")
    refer(app, "spaced name ü.txt", None)
    refer(app, str(tmp_path / "elsewhere" / "x.jpg"), "../escape.jpg")

    summary = run_orphans(database, location, root, dry_run=False)

    assert tree(root) == {
        "a/relative.jpg",
        "absolute.jpg",
        "b/dotted.jpg",
        "thumbs/t1.png",
        "avatar.png",
        "young-orphan.bin",
        "spaced name ü.txt",
    }
    section = summary["orphans"]
    assert section["deleted"] == 3 and section["bytes"] == 30 and section["failed"] == 0
    mine = section["roots"][str(root)]
    assert mine["files"] == 10 and mine["older_than_grace"] == 9 and mine["referenced_old"] == 6
    assert sorted(mine["sample"]) == sorted(
        str(root / rel)
        for rel in ("old-orphan.bin", "deep/er/old-orphan.bin", "thumbs/old-thumb-orphan.png")
    )
    assert list(section["roots"]) == [str(root)], "the nested thumbs root is swept with its parent"


def test_grace_is_configurable_and_the_stage_is_off_by_default(app, database, location, tmp_path):
    root = tmp_path / "media"
    put(root, "two-hours.bin", age=2 * HOUR)
    put(root, "ten-hours.bin", age=10 * HOUR)
    settings = make_settings(database, **policies(root))
    assert "orphans" in runner.enabled_stages(settings, None)
    off = {**policies(root), "orphans": {}}
    assert "orphans" not in runner.enabled_stages(make_settings(database, **off), None)

    summary = run_orphans(database, location, root, dry_run=False, grace="5h")
    assert summary["orphans"]["deleted"] == 1
    assert tree(root) == {"two-hours.bin"}


def test_symlinks_are_never_followed_nor_their_targets_deleted(app, database, location, tmp_path):
    root = tmp_path / "media"
    outside = tmp_path / "outside"
    put(outside, "precious.db")
    put(outside, "dir/precious.txt")
    root.mkdir()
    (root / "out-dir").symlink_to(outside / "dir")
    (root / "out-file").symlink_to(outside / "precious.db")
    put(root, "real/kept-through-alias.jpg")
    put(root, "target.jpg")
    put(root, "real/orphan.jpg")
    (root / "alias").symlink_to(root / "real")
    (root / "link.jpg").symlink_to(root / "target.jpg")
    refer(app, "alias/kept-through-alias.jpg", "link.jpg")

    dry = run_orphans(database, location, root, dry_run=True)
    real = run_orphans(database, location, root, dry_run=False)

    assert tree(outside) == {"precious.db", "dir/precious.txt"}
    assert tree(root) == {
        "out-dir",
        "out-file",
        "alias",
        "link.jpg",
        "target.jpg",
        "real/kept-through-alias.jpg",
    }
    assert dry["orphans"]["roots"][str(root)]["sample"] == [str(root / "real/orphan.jpg")]
    assert real["orphans"]["deleted"] == dry["orphans"]["deleted"] == 1


def test_dry_run_lists_exactly_what_the_real_sweep_deletes(app, database, tmp_path):
    root = tmp_path / "media"
    for i in range(40):
        put(root, f"d{i % 4}/f{i}.bin", age=HOUR * (2 + i), data=b"y" * (i + 1))
    refer(app, *[f"d{i % 4}/f{i}.bin" for i in range(0, 40, 3)])
    config = write_config(tmp_path / "retention.toml", policies(root))
    before = tree(root)

    dry = run_cli("sweep-orphans", "--json", "--sample", "100", database=database, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    listed = json.loads(dry.stdout)
    assert tree(root) == before
    assert listed["dry_run"] is True

    real = run_cli(
        "-c",
        str(config),
        "sweep-orphans",
        "--delete",
        "--json",
        "--sample",
        "100",
        database=database,
    )
    assert real.returncode == 0, real.stderr
    done = json.loads(real.stdout)
    would = listed["orphans"]["roots"][str(root)]
    went = done["orphans"]["roots"][str(root)]
    assert sorted(would["sample"]) == sorted(went["sample"])
    assert (
        (would["deleted"], would["bytes"])
        == (went["deleted"], went["bytes"])
        == (26, sum(i + 1 for i in range(40) if i % 3))
    )
    gone = {str(root / rel) for rel in before - tree(root)}
    assert gone == set(went["sample"])
    assert tree(root) == {f"d{i % 4}/f{i}.bin" for i in range(0, 40, 3)}

    again = run_cli("sweep-orphans", "--delete", "--json", database=database, cwd=tmp_path)
    assert json.loads(again.stdout)["orphans"]["deleted"] == 0


def test_cli_text_output_and_root_choice(app, database, tmp_path):
    root = tmp_path / "media"
    put(root, "orphan.bin", data=b"z" * 2048)
    write_config(tmp_path / "retention.toml", policies(root))
    shown = run_cli("sweep-orphans", database=database, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "dry run" in shown.stdout and "2.0 KiB" in shown.stdout
    assert str(root / "orphan.bin") in shown.stdout
    assert "--delete" in shown.stdout
    assert (root / "orphan.bin").exists()

    wrong = run_cli("sweep-orphans", "--root", str(tmp_path), database=database, cwd=tmp_path)
    assert wrong.returncode == 2
    assert "not a storage root" in wrong.stderr and str(root) in wrong.stderr

    bad_grace = run_cli("sweep-orphans", "--grace", "soon", database=database, cwd=tmp_path)
    assert bad_grace.returncode == 2 and "--grace" in bad_grace.stderr


@pytest.mark.parametrize("which", ["slash", "home", "symlink-to-slash", "holds-home"])
def test_dangerous_roots_are_refused_and_nothing_is_touched(app, database, tmp_path, which):
    home = tmp_path / "home" / "me"
    home.mkdir(parents=True)
    put(home, "precious.txt")
    root = {
        "slash": Path("/"),
        "home": home,
        "symlink-to-slash": tmp_path / "evil",
        "holds-home": tmp_path / "home",
    }[which]
    if which == "symlink-to-slash":
        root.symlink_to("/")
    write_config(tmp_path / "retention.toml", policies(root))
    result = run_cli(
        "sweep-orphans",
        "--delete",
        "--yes",
        database=database,
        cwd=tmp_path,
        env={"HOME": str(home)},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "home directory" in result.stderr or "system" in result.stderr
    assert tree(home) == {"precious.txt"}


def test_a_missing_root_and_no_roots_are_clear_errors(app, database, tmp_path):
    write_config(tmp_path / "retention.toml", policies(tmp_path / "nowhere"))
    missing = run_cli("sweep-orphans", database=database, cwd=tmp_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr

    write_config(tmp_path / "retention.toml", {"orphans": {"enabled": True}})
    none = run_cli("sweep-orphans", database=database, cwd=tmp_path)
    assert none.returncode == 2 and "no storage root" in none.stderr


def test_a_file_referenced_after_the_listing_is_kept(app, database, tmp_path):
    app.execute("CREATE INDEX ON attachments (created_at)")
    app.execute("CREATE INDEX ON thumbnails (file)")
    root = tmp_path / "media"
    root.mkdir()
    settings = make_settings(database, **policies(root))
    columns = orphans.resolve(app, orphans.references(settings))
    assert [(c.ref.table, c.recheck is not None) for c in columns] == [
        ("attachments", True),
        ("thumbnails", True),
        ("avatars", False),
    ]
    since = app.execute("SELECT now() - interval '1 hour'").fetchone()[0]
    recheck = orphans._recheck(columns, root, root, since)
    refer(app, str(root / "late.jpg"))
    refer(app, "new.png", table="thumbnails")
    refer(app, "avatar.png", table="avatars")
    app.execute(
        "INSERT INTO attachments (created_at, path) VALUES (now() - interval '2 hours', 'old.jpg')"
    )
    with app.cursor() as cur:
        kept = recheck(
            cur,
            [b"late.jpg", b"thumbs/new.png", b"other.jpg", b"new.png", b"old.jpg", b"avatar.png"],
        )
    assert kept == {b"late.jpg", b"thumbs/new.png"}, "old rows were matched by the listing"


def test_a_file_column_that_does_not_exist_is_a_clear_error(app, database, tmp_path):
    root = tmp_path / "media"
    put(root, "x.bin")
    data = policies(root)
    data["tables"][0]["files"][0]["column"] = "no_such_column"  # type: ignore[index]
    write_config(tmp_path / "retention.toml", data)
    result = run_cli("sweep-orphans", "--delete", database=database, cwd=tmp_path)
    assert result.returncode == 2 and "no_such_column" in result.stderr
    assert tree(root) == {"x.bin"}


def _chattr(flag: str, path: Path) -> None:
    try:
        subprocess.run(["chattr", flag, str(path)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"chattr {flag} is not available here: {exc}")


def test_a_file_that_cannot_be_deleted_goes_to_the_outbox_and_is_retried(
    app, database, location, tmp_path
):
    root = tmp_path / "media"
    stuck = put(root, "stuck.bin")
    put(root, "free.bin")
    _chattr("+i", stuck)
    try:
        first = run_orphans(database, location, root, dry_run=False)
        second = run_orphans(database, location, root, dry_run=False)
    finally:
        _chattr("-i", stuck)
    assert first["orphans"]["failed"] == 1 and first["orphans"]["deleted"] == 1
    assert "stuck.bin" in first["orphans"]["roots"][str(root)]["errors"][0]
    assert second["orphans"]["roots"][str(root)].get("queued") == 1
    rows = app.execute("SELECT root, path, source FROM retention_file_outbox").fetchall()
    assert rows == [(str(root), "stuck.bin", f"orphans:{root}")]

    settings = make_settings(database, **policies(root))
    retry = runner.execute(settings, location, stages=["files"], dry_run=False, trigger="cli")
    assert retry["files"]["deleted"] == 1
    assert tree(root) == set()
    assert app.execute("SELECT count(*) FROM retention_file_outbox").fetchone() == (0,)


def test_settings_refuse_a_root_of_slash(tmp_path):
    with pytest.raises(errors.ConfigError, match="system or home"):
        settings_mod.load(write_config(tmp_path / "r.toml", policies(Path("/"))))


def test_a_sweep_killed_midway_loses_nothing_and_the_rerun_finishes(app, database, tmp_path):
    root = tmp_path / "media"
    oldest = time.time() - 10 * HOUR
    kept = set()
    for d in range(20):
        folder = root / f"d{d}"
        folder.mkdir(parents=True)
        for i in range(500):
            path = folder / f"f{i}.bin"
            path.touch()
            when = oldest + d * 500 + i
            os.utime(path, (when, when))
            if i % 2:
                kept.add(f"d{d}/f{i}.bin")
    first = root / "d0" / "f0.bin"
    with app.cursor() as cur, cur.copy("COPY attachments (path) FROM STDIN") as copy:
        for rel in kept:
            copy.write_row((rel,))
    write_config(tmp_path / "retention.toml", policies(root))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETENTION_", "PG"))}
    env.update(DATABASE_URL=database, RETENTION_BATCH_SIZE="50")
    process = subprocess.Popen(
        [sys.executable, "-m", "retention", "sweep-orphans", "--delete"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    total = 10_000
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if not first.exists():
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.0005)
    process.wait()
    interrupted = sum(1 for _ in root.rglob("*.bin"))
    assert process.returncode == -signal.SIGKILL, "killed after the oldest orphan went"
    assert len(kept) < interrupted < total

    rerun = run_cli("sweep-orphans", "--delete", "--json", database=database, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["orphans"]["deleted"] == interrupted - len(kept)
    assert tree(root) == kept
    runs = app.execute("SELECT status FROM retention_runs ORDER BY id").fetchall()
    assert runs == [("abandoned",), ("succeeded",)]
