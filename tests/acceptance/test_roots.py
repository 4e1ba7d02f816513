"""Roots given to the CLI go through the one root check: a `--root` that leads outside a storage
root through a symlink, and a file column's root that is a symlink to a system directory, are
refused with exit code 2 and nothing is deleted."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg

from tests.helpers import run_cli


def _config(tmp_path: Path, media: Path) -> Path:
    config = tmp_path / "retention.toml"
    config.write_text(
        f"""
[orphans]
enabled = true
grace = "1s"

[[tables]]
table = "attachments"
timestamp = "created_at"
files = [{{column = "path", root = "{media}"}}]
""",
        encoding="utf-8",
    )
    return config


def test_a_root_option_through_a_symlink_to_outside_is_refused(
    conn: psycopg.Connection, database, tmp_path
):
    conn.execute(
        "CREATE TABLE attachments (id serial PRIMARY KEY, created_at timestamptz NOT NULL"
        " DEFAULT now(), path text)"
    )
    media, outside = tmp_path / "media", tmp_path / "outside"
    media.mkdir()
    outside.mkdir()
    victim = outside / "victim.bin"
    victim.write_bytes(b"keep me")
    stamp = time.time() - 86400
    os.utime(victim, (stamp, stamp))
    (media / "link").symlink_to(outside)
    config = _config(tmp_path, media)
    done = run_cli(
        "--config",
        str(config),
        "sweep-orphans",
        "--root",
        str(media / "link"),
        "--delete",
        "--yes",
        database=database,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "resolves to" in done.stderr
    assert victim.exists()


def test_a_file_column_root_linked_to_a_system_directory_is_refused(tmp_path, database):
    media = tmp_path / "media"
    media.symlink_to("/tmp")
    config = _config(tmp_path, media)
    done = run_cli("--config", str(config), "config", database=database)
    assert done.returncode == 2, done.stdout
    assert "resolving to '/tmp'" in done.stderr
    assert "Traceback" not in done.stderr
