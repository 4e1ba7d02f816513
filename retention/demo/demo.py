"""`retention demo`: a home-security application with 90 days of data, its retention config, the
plan (a dry run) and the run, and what went, rows and bytes.

The application lives in the schema `retention_demo` (events, detections with a thumbnail and an
original image on disk, GPU stats, logs) and its Procrastinate jobs are tasks `homesec.*`. The
demo runs only in a database of its own: the embedded default, or a database holding nothing but
Procrastinate's tables, ours and the demo's (it refuses any other, before touching anything). Its
files and its config are per database, under <RETENTION_HOME>/demo/<key>/ (`files/{thumbnails,
images}`, with a few files no row references, and `retention.toml`; see `database_key`), so two
demos on two databases never share a file. The data is seeded once (see `prepare`); a later `retention demo` reuses it, so a
rerun deletes nothing new: seeded ages are d days + up to 23 h, never within the hour before a
whole day. `--reset` seeds it again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import random
import re
import shutil
import string
import struct
import zlib
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import psycopg

from retention import errors
from retention.config import settings as settings_mod
from retention.engine import results
from retention.pg import database, migrate, queries
from retention.run import runner

logger = logging.getLogger(__name__)

SCHEMA = "retention_demo"
DEMO_DIR = "demo"
FILES_DIR = "files"
EMBEDDED_KEY = "embedded"
_KEY_NAME = re.compile(r"[^A-Za-z0-9_-]+")
_KEY_NAME_LENGTH = 40
ROOTS = ("thumbnails", "images")
TABLES = ("events", "detections", "gpu_stats", "logs")
THUMBNAIL_SIZE = (32, 24)
IMAGE_SIZE = (80, 60)
UNREFERENCED = {"thumbnails": 4, "images": 3}
UNREFERENCED_AGE = dt.timedelta(days=40)
SEED = 0.2026
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_YES = ("1", "true", "yes", "on")
_NO = ("", "0", "false", "no", "off")


def delete_images_from_env() -> bool:
    """DELETE_IMAGES: whether original images go with their detections (default: no)."""
    value = os.environ.get("DELETE_IMAGES", "").strip().lower()
    if value in _NO:
        return False
    if value in _YES:
        return True
    raise errors.ConfigError(
        f"DELETE_IMAGES={os.environ['DELETE_IMAGES']!r} is not a yes/no value: set it to 1, "
        "true, yes or on to delete the original images with their detections, or to 0, false, "
        "no or off (or unset it) to keep them"
    )


def database_key(conn: psycopg.Connection, *, embedded: bool) -> str:
    """The name of a database's demo directory: `embedded` for the embedded server, else the
    database's name (letters, digits, `_` and `-`) and a short hash of the host, port and database
    name the connection reached, so that the same database keeps its directory however it is
    named (URL or PG* variables) and two databases never share one. No password goes into it."""
    if embedded:
        return EMBEDDED_KEY
    info = conn.info
    name = _KEY_NAME.sub("_", info.dbname)[:_KEY_NAME_LENGTH] or "db"
    digest = hashlib.sha256(f"{info.host}\0{info.port}\0{info.dbname}".encode()).hexdigest()
    return f"{name}-{digest[:10]}"


def directory(home: Path, key: str) -> Path:
    """<home>/demo/<key>: the files and the config of one database's demo."""
    return Path(os.path.abspath(home)) / DEMO_DIR / key


def files_dir(home: Path, key: str) -> Path:
    return directory(home, key) / FILES_DIR


def config_path(home: Path, key: str) -> Path:
    return directory(home, key) / settings_mod.CONFIG_FILE_NAME


def write_config(home: Path, key: str, *, delete_images: bool) -> Path:
    """The demo's TOML, its roots filled in, written to <home>/demo/<key>/retention.toml."""
    template = resources.files("retention.demo").joinpath("demo.toml").read_text(encoding="utf-8")
    files = files_dir(home, key)
    text = string.Template(template).substitute(
        thumbnails=json.dumps(str(files / "thumbnails")),
        images=json.dumps(str(files / "images")),
        delete_images="true" if delete_images else "false",
    )
    path = config_path(home, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def written_config(settings: settings_mod.Settings, location: database.Location) -> Path:
    """The config `retention demo` wrote for this database (connecting only to name it: an
    embedded location need not be started); a ConfigError when no demo ran on it yet."""
    home = database.home(settings)
    if location.source == "embedded":
        key = EMBEDDED_KEY
    else:
        with database.connect(location) as conn:
            key = database_key(conn, embedded=False)
    path = config_path(home, key)
    if not path.is_file():
        where = (
            "the embedded server"
            if location.source == "embedded"
            else f"{location.display} ({location.source})"
        )
        raise errors.ConfigError(
            f"no demo has run on {where} yet ({path} does not exist): run `retention demo` first"
        )
    return path


def check_own_database(conn: psycopg.Connection, location: database.Location, queue: str) -> None:
    """Refuse a database that holds anything but Procrastinate's, ours and the demo's."""
    why: list[str] = []
    tables = [row[0] for row in conn.execute(queries.text("demo_foreign_tables"), {})]
    if tables:
        why.append(f"tables of another application ({', '.join(tables)})")
    exists = conn.execute(queries.text("demo_jobs_exist")).fetchone()
    if exists and exists[0]:
        jobs = conn.execute(queries.text("demo_foreign_jobs"), {"queue": queue}).fetchall()
        if jobs:
            listed = ", ".join(f"{task} ({count})" for task, count in jobs)
            why.append(f"jobs of another application ({listed})")
    if why:
        raise errors.ConfigError(
            "retention demo adds its own tables and jobs and prunes every job of the database by "
            f"the default ages, so it runs only in a database of its own; {location.display} "
            f"({location.source}) holds {' and '.join(why)}: unset DATABASE_URL and the PG* "
            "variables to use the embedded server, or give --database-url an empty database"
        )


def prepare(conn: psycopg.Connection, files: Path, *, reset: bool) -> bool:
    """Create the demo schema and seed it when empty (or when `reset`); True when it seeded.

    The rows commit first, marked `files_ready = false`; the files, a function of the rows, are
    written next and then marked ready (again when the files directory changed). Killed
    anywhere, the next call finishes the job."""
    conn.execute(queries.text("demo_lock"))
    try:
        with conn.transaction():
            if reset:
                conn.execute(queries.text("demo_drop"))
            conn.execute(queries.text("demo_schema"))
            row = conn.execute(queries.text("demo_is_seeded")).fetchone()
            seeding = not (row and row[0])
            if seeding:
                _seed_rows(conn, files)
        where = {"files_dir": str(files)}
        ready = conn.execute(queries.text("demo_files_ready"), where).fetchone()
        if not (ready and ready[0]):
            _write_files(conn, files)
            conn.execute(queries.text("demo_mark_files_ready"), where)
    finally:
        conn.execute(queries.text("demo_unlock"))
    if seeding:
        logger.info("seeded the demo", extra={"action": "demo_seeded", "files_dir": str(files)})
    return seeding


def _seed_rows(conn: psycopg.Connection, files: Path) -> None:
    conn.execute(queries.text("demo_delete_jobs"))
    outbox = conn.execute(queries.text("demo_outbox_exists")).fetchone()
    if outbox and outbox[0]:
        conn.execute(queries.text("demo_forget_outbox"), {"prefix": f"{files}{os.sep}"})
    conn.execute("SELECT setseed(%s)", (SEED,))
    conn.execute(queries.text("demo_seed_jobs"))
    conn.execute(queries.text("demo_seed_rows"))
    conn.execute(queries.text("demo_mark_seeded"), {"files_dir": str(files)})


def _write_files(conn: psycopg.Connection, files: Path) -> None:
    shutil.rmtree(files, ignore_errors=True)
    for detection, thumbnail, image, detected_at in conn.execute(
        queries.text("demo_detection_files")
    ):
        stamp = detected_at.timestamp()
        rng = random.Random(detection)
        _write_png(files / "thumbnails" / thumbnail, THUMBNAIL_SIZE, rng, stamp)
        if image:
            _write_png(files / "images" / image, IMAGE_SIZE, rng, stamp)
    old = (dt.datetime.now(dt.UTC) - UNREFERENCED_AGE).timestamp()
    rng = random.Random(SEED)
    for root, count in UNREFERENCED.items():
        size = THUMBNAIL_SIZE if root == "thumbnails" else IMAGE_SIZE
        for number in range(1, count + 1):
            _write_png(files / root / "unsorted" / f"upload-{number}.png", size, rng, old)


def _write_png(path: Path, size: tuple[int, int], rng: random.Random, mtime: float) -> None:
    width, height = size
    pixels = b"".join(b"\x00" + rng.randbytes(width * 3) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        _PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(pixels, 1))
        + _chunk(b"IEND", b"")
    )
    os.utime(path, (mtime, mtime))


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def inventory(conn: psycopg.Connection, files: Path) -> dict[str, Any]:
    """What the demo holds now: rows per table, its jobs by status, files and bytes per root."""
    rows = {
        name: {"rows": count, "oldest": _iso(oldest), "newest": _iso(newest)}
        for name, count, oldest, newest in conn.execute(queries.text("demo_inventory"))
    }
    jobs = {
        status: {"jobs": count, "oldest": _iso(oldest)}
        for status, count, oldest in conn.execute(queries.text("demo_job_statuses"), {})
    }
    return {
        "tables": rows,
        "jobs": jobs,
        "files": {root: disk_usage(files / root) for root in ROOTS},
    }


def disk_usage(root: Path) -> dict[str, int]:
    count = size = 0
    for folder, _, names in os.walk(root):
        for name in names:
            try:
                size += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                continue
            count += 1
    return {"files": count, "bytes": size}


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, dt.datetime) else None


class View(Protocol):
    """How the demo's steps are shown (the `retention demo` command prints them)."""

    def intro(self, result: dict[str, Any], settings: settings_mod.Settings) -> None: ...

    def plan(self, summary: results.RunSummary) -> None: ...

    def done(self, summary: results.RunSummary) -> None: ...

    def outcome(self, result: dict[str, Any]) -> None: ...


def run(
    settings: settings_mod.Settings,
    location: database.Location,
    *,
    delete_images: bool,
    reset: bool,
    view: View | None = None,
) -> dict[str, Any]:
    """Seed (when needed), plan, run; show each step on `view`; return everything as JSON."""
    home = database.home(settings)
    with database.connect(location) as conn:
        check_own_database(conn, location, settings.queue)
        key = database_key(conn, embedded=location.source == "embedded")
        files = files_dir(home, key)
        config = write_config(home, key, delete_images=delete_images)
        demo_settings = settings_mod.load(config)
        migrate.apply(conn)
        seeded = prepare(conn, files, reset=reset)
        info = conn.execute(queries.text("demo_seeded_info")).fetchone()
        before = inventory(conn, files)
    result: dict[str, Any] = {
        "database": location.display,
        "source": location.source,
        "schema": SCHEMA,
        "config": str(config),
        "files_dir": str(files),
        "delete_images": delete_images,
        "seeded": seeded,
        "seeded_at": _iso(info[0]) if info else None,
        "before": before,
    }
    if view is not None:
        view.intro(result, demo_settings)
    stages = runner.enabled_stages(demo_settings, None)
    plan = runner.execute(
        demo_settings, location, stages=stages, dry_run=True, trigger="cli", kind="demo"
    )
    if view is not None:
        view.plan(plan)
    done = runner.execute(
        demo_settings, location, stages=stages, dry_run=False, trigger="cli", kind="demo"
    )
    if view is not None:
        view.done(done)
    with database.connect(location) as conn:
        after = inventory(conn, files)
    result.update(
        plan=plan.to_json(),
        run=done.to_json(),
        after=after,
        reclaimed_bytes=sum(
            before["files"][root]["bytes"] - after["files"][root]["bytes"] for root in ROOTS
        ),
    )
    if view is not None:
        view.outcome(result)
    return result
