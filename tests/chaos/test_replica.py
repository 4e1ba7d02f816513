"""`max_replication_lag` against a real streaming replica: a throwaway primary (initdb on a free
port, so the shared test server is left alone) and its standby (pg_basebackup -R), replay paused
with pg_wal_replay_pause() to make the standby fall behind. A run waits (the ledger's stage and
`retention status` say so), then goes on when replay resumes; a lag that never recovers within
the time budget stops the run (`replica lag`), and the next run finishes the work; a role that
cannot read the lag is told so once."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo as libpq
from psycopg import sql

from retention.config import settings as settings_mod
from retention.engine import batches, ledger, results
from retention.pg import database as pg_database
from retention.pg import migrate
from retention.run import runner
from tests.helpers import job_ids, run_cli, seed_bulk, wait_for

BINARIES = ("initdb", "pg_ctl", "pg_basebackup")
OLD = dt.timedelta(days=40)
JOBS = 60


def _bindir() -> Path | None:
    """A directory holding PostgreSQL's server binaries: pg_config's, else Debian's newest."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        candidates.append(Path(found.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for candidate in candidates:
        if all((candidate / name).is_file() for name in BINARIES):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass
class Pair:
    """A primary and its streaming standby, each on its own port, under `home`."""

    bindir: Path
    home: Path
    prefix: list[str]
    primary_port: int
    standby_port: int

    def run(self, *args: str) -> None:
        subprocess.run([*self.prefix, *args], check=True, capture_output=True, timeout=120)

    def conninfo(self, port: int, dbname: str = "postgres") -> str:
        return libpq.make_conninfo(host="127.0.0.1", port=str(port), user="postgres", dbname=dbname)

    def standby(self) -> psycopg.Connection:
        return psycopg.connect(self.conninfo(self.standby_port), autocommit=True)

    def start(self, name: str, port: int, extra: str) -> None:
        data = self.home / name
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.home}'\n{extra}"
            )
        self.run(
            str(self.bindir / "pg_ctl"), "-D", str(data), "-l", str(self.home / f"{name}.log"),
            "-w", "start",
        )  # fmt: skip

    def stop(self) -> None:
        for name in ("standby", "primary"):
            if (self.home / name / "postmaster.pid").exists():
                with contextlib.suppress(subprocess.SubprocessError):
                    self.run(
                        str(self.bindir / "pg_ctl"), "-D", str(self.home / name), "-m",
                        "immediate", "-w", "stop",
                    )  # fmt: skip


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    bindir = _bindir()
    if bindir is None:
        pytest.skip(f"no PostgreSQL server binaries ({', '.join(BINARIES)}) on this machine")
    home = Path(tempfile.mkdtemp(prefix="rt-replica-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(home, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    home.chmod(0o700)
    pair = Pair(bindir, home, prefix, _free_port(), _free_port())
    try:
        pair.run(
            str(bindir / "initdb"), "-D", str(home / "primary"), "-A", "trust", "-U", "postgres"
        )
        with (home / "primary" / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")
        pair.start("primary", pair.primary_port, "wal_level = replica\nmax_wal_senders = 5\n")
        pair.run(
            str(bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(pair.primary_port),
            "-U", "postgres", "-D", str(home / "standby"), "-R", "-X", "stream",
        )  # fmt: skip
        # The standby reports its replay position every second (10 s by default).
        pair.start("standby", pair.standby_port, "wal_receiver_status_interval = 1s\n")
        yield pair
    finally:
        pair.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def primary(pair: Pair) -> Iterator[str]:
    """A fresh database on the primary, with Procrastinate's schema and our migrations; replay
    on the standby resumed afterwards whatever the test did."""
    name = f"rt_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pair.conninfo(pair.primary_port), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = pair.conninfo(pair.primary_port, name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate.apply(conn)
    yield dsn
    with pair.standby() as standby:
        standby.execute("SELECT pg_wal_replay_resume()")
    with psycopg.connect(pair.conninfo(pair.primary_port), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _seed(conn: psycopg.Connection) -> set[int]:
    spec = {"status": "succeeded", "queue": "default", "task": "app.task", "finished_ago": OLD}
    return set(seed_bulk(conn, [spec] * JOBS))


def _caught_up(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE replay_lsn = pg_current_wal_lsn()), count(*) "
        "FROM pg_stat_replication WHERE replay_lsn IS NOT NULL"
    ).fetchone()
    return row is not None and row[1] > 0 and row[0] == row[1]


def _lag_beyond(conn: psycopg.Connection, seconds: float) -> bool:
    row = conn.execute(
        "SELECT max(extract(epoch FROM replay_lag)) FROM pg_stat_replication"
    ).fetchone()
    return row is not None and row[0] is not None and row[0] > seconds


def _fall_behind(pair: Pair, conn: psycopg.Connection, seconds: float) -> None:
    """Pause replay on the standby, write on the primary, until the standby is `seconds` behind."""
    wait_for(lambda: _caught_up(conn), what="the standby to catch up")
    with pair.standby() as standby:
        standby.execute("SELECT pg_wal_replay_pause()")
    conn.execute("CREATE TABLE IF NOT EXISTS scratch (x int)")
    conn.execute("INSERT INTO scratch VALUES (1)")
    wait_for(lambda: _lag_beyond(conn, seconds), what=f"replay lag beyond {seconds:g} s")


def _resume(pair: Pair) -> None:
    with pair.standby() as standby:
        standby.execute("SELECT pg_wal_replay_resume()")


def _location(dsn: str) -> pg_database.Location:
    return pg_database.Location(conninfo=dsn, source="DATABASE_URL")


def _running(conn: psycopg.Connection) -> dict | None:
    return next((run for run in ledger.recent(conn) if run["status"] == "running"), None)


def test_a_run_waits_for_a_paused_replica_and_goes_on_when_replay_resumes(pair, primary):
    with psycopg.connect(primary, autocommit=True) as conn:
        seeded = _seed(conn)
        _fall_behind(pair, conn, 1.0)
        settings = settings_mod.Settings(
            database_url=primary, max_replication_lag="1s", max_run_seconds=300, batch_size=20
        )
        outcome: dict[str, object] = {}

        def work() -> None:
            outcome["summary"] = runner.execute(
                settings, _location(primary), stages=["jobs"], dry_run=False, trigger="cli"
            )

        thread = threading.Thread(target=work)
        thread.start()
        try:
            run = wait_for(
                lambda: (r := _running(conn)) and "waiting" in (r["stage"] or "") and r,
                what="the run to wait for replica lag",
            )
            assert run["stage"] == "jobs: waiting for replica lag"
            assert run["summary"]["waiting"] == "replica lag"
            assert run["summary"]["jobs"]["waiting"] == "replica lag"
            assert job_ids(conn) >= seeded, "a batch ran while the replica was behind"
            status = run_cli("status", database=primary)
            assert status.returncode == 0, status.stderr
            assert "stage jobs: waiting for replica lag" in status.stdout
        finally:
            _resume(pair)
            thread.join(120)
        summary = outcome["summary"]
        assert isinstance(summary, results.RunSummary)
        assert summary.complete, summary.to_json()
        jobs = summary.to_json()["jobs"]
        assert jobs["deleted"] == JOBS
        assert jobs["pacing"]["lag_waits"] >= 1
        assert jobs["pacing"]["lag_wait_seconds"] > 0
        assert jobs["pacing"]["max_lag_seconds"] > 1.0
        assert "waiting" not in jobs
        assert not (job_ids(conn) & seeded)
        stored = ledger.get(conn, summary.run_id)
        assert stored is not None
        assert stored["status"] == "succeeded"
        assert stored["summary"]["jobs"]["pacing"]["lag_waits"] >= 1


def test_a_lag_that_never_recovers_stops_the_run_and_the_next_run_finishes(pair, primary):
    with psycopg.connect(primary, autocommit=True) as conn:
        seeded = _seed(conn)
        _fall_behind(pair, conn, 1.0)
        env = {"RETENTION_MAX_REPLICATION_LAG": "1s", "RETENTION_MAX_RUN_SECONDS": "3"}
        stopped = run_cli("run", "--json", database=primary, env=env)
        assert stopped.returncode == 0, stopped.stderr
        summary = json.loads(stopped.stdout)
        assert summary["stopped"] == "replica lag"
        assert summary["status"] == "succeeded"
        assert summary["complete"] is False
        assert summary["jobs"]["stopped"] == "replica lag"
        assert summary["jobs"]["deleted"] == 0
        assert job_ids(conn) >= seeded
        assert ledger.get(conn, summary["run_id"])["summary"]["stopped"] == "replica lag"

        _resume(pair)
        wait_for(lambda: _caught_up(conn), what="the standby to catch up")
        again = run_cli("run", "--json", database=primary, env=env)
        assert again.returncode == 0, again.stderr
        finished = json.loads(again.stdout)
        assert finished["complete"] is True, finished
        assert finished["jobs"]["deleted"] == JOBS
        assert not (job_ids(conn) & seeded)


def test_a_dry_run_counts_the_wait_without_waiting(pair, primary):
    with psycopg.connect(primary, autocommit=True) as conn:
        _seed(conn)
        _fall_behind(pair, conn, 1.0)
        env = {"RETENTION_MAX_REPLICATION_LAG": "1s", "RETENTION_MAX_RUN_SECONDS": "300"}
        plan = run_cli("plan", "--json", database=primary, env=env)
        assert plan.returncode == 0, plan.stderr
        jobs = json.loads(plan.stdout)["jobs"]
        assert jobs["deleted"] == JOBS
        assert jobs["stopped"] is None
        assert jobs["pacing"]["lag_waits"] >= 1
        assert jobs["pacing"]["lag_wait_seconds"] == 0


def test_a_role_that_cannot_read_the_lag_is_told_once(pair, primary):
    role = f"blind_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(primary, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        try:
            params = libpq.conninfo_to_dict(primary)
            params["user"] = role
            with psycopg.connect(libpq.make_conninfo(**params), autocommit=True) as blind:
                replication = batches.Replication(dt.timedelta(seconds=1))
                assert replication.lag(blind) is None
                assert replication.lag(blind) is None
                assert len(replication.warnings) == 1
                assert f"GRANT pg_monitor TO {role}" in replication.warnings[0]
                conn.execute(sql.SQL("GRANT pg_monitor TO {}").format(sql.Identifier(role)))
                seeing = batches.Replication(dt.timedelta(seconds=1))
                assert seeing.lag(blind) is not None
                assert seeing.warnings == []
        finally:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
