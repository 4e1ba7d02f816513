"""Pacing without a database: the replica lag rule (PostgreSQL's replay_lag, 0 once everything
sent is replayed, how long replay has stood still when PostgreSQL has no measure), the pacing
settings refused when negative or absurd, the pacing figures in the summary."""

from __future__ import annotations

import datetime as dt

import pytest

from retention import errors
from retention.config import settings as settings_mod
from retention.engine import batches, results


def _standby(lag: float | None, lsn: str, behind: float, pid: int = 7) -> batches.Standby:
    return batches.Standby(
        pid=pid, name="s", visible=True, replay_lag_seconds=lag, replay_lsn=lsn, behind_bytes=behind
    )


def test_a_standby_that_replayed_everything_has_no_lag_whatever_postgresql_last_measured():
    replication = batches.Replication(dt.timedelta(seconds=1))
    assert replication._lag(_standby(5.0, "0/10", 0), now=100.0) == 0.0


def test_a_standby_behind_has_postgresqls_replay_lag():
    replication = batches.Replication(dt.timedelta(seconds=1))
    assert replication._lag(_standby(3.5, "0/10", 4096), now=100.0) == 3.5


def test_without_a_measure_the_lag_is_how_long_replay_stood_still():
    replication = batches.Replication(dt.timedelta(seconds=1))
    assert replication._lag(_standby(None, "0/10", 4096), now=100.0) == 0.0
    assert replication._lag(_standby(None, "0/10", 8192), now=112.0) == 12.0
    # Replay moved: the stand-still counts again from now; another standby has its own.
    assert replication._lag(_standby(None, "0/20", 4096), now=113.0) == 0.0
    assert replication._lag(_standby(None, "0/10", 4096, pid=8), now=114.0) == 0.0
    assert replication._lag(_standby(None, "0/20", 4096), now=120.0) == 7.0
    # The larger of PostgreSQL's measure and the stand-still.
    assert replication._lag(_standby(2.0, "0/20", 4096), now=121.0) == 8.0
    assert replication._lag(_standby(None, "0/20", 0), now=122.0) == 0.0
    assert replication._lag(_standby(None, "0/20", 10), now=130.0) == 0.0


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("pause_between_batches", "-1s", "must be longer than zero"),
        ("pause_between_batches", "0s", "must be longer than zero"),
        ("pause_between_batches", "2h", "at most 1h"),
        ("pause_between_batches", "10m", "shorter than max_run_seconds"),
        ("pause_between_batches", "soon", "is not a duration"),
        ("max_replication_lag", "-30s", "must be longer than zero"),
        ("max_replication_lag", "2d", "at most 1d"),
        ("max_replication_lag", "100000000d", "too long"),
    ],
)
def test_bad_pacing_settings_are_refused_naming_the_key(key, value, message):
    with pytest.raises(errors.ConfigError, match=message) as raised:
        settings_mod.load(**{key: value})
    assert f"{key}:" in str(raised.value)
    assert raised.value.exit_code == 2


def test_pacing_settings_take_durations():
    settings = settings_mod.load(pause_between_batches="250ms", max_replication_lag="30s")
    assert settings.pause_between_batches == dt.timedelta(milliseconds=250)
    assert settings.max_replication_lag == dt.timedelta(seconds=30)
    assert settings.public()["pause_between_batches"] == "250ms"
    assert settings_mod.load().max_replication_lag is None


def test_the_summary_carries_pacing_the_wait_and_the_warnings():
    pacing = results.Pacing(pauses=3, paused_seconds=0.61234, lag_waits=1, lag_wait_seconds=2.0)
    walk = results.Walk(pacing=pacing, waiting=results.WAITING_FOR_REPLICA_LAG)
    section = results.JobsSection(walk=walk)
    summary = results.RunSummary(
        run_id=1, kind="run", dry_run=False, sections={"jobs": section}, warnings=("w",)
    )
    data = summary.to_json()
    assert data["jobs"]["pacing"] == {
        "pauses": 3,
        "paused_seconds": 0.612,
        "lag_waits": 1,
        "lag_wait_seconds": 2.0,
        "max_lag_seconds": None,
    }
    assert data["jobs"]["waiting"] == "replica lag"
    assert data["waiting"] == "replica lag"
    assert data["warnings"] == ["w"]
    plain = results.RunSummary(
        run_id=1,
        kind="run",
        dry_run=False,
        sections={"jobs": results.JobsSection(walk=results.Walk())},
    ).to_json()
    assert "pacing" not in plain["jobs"]
    assert "waiting" not in plain
    assert "warnings" not in plain


def test_replica_lag_ends_the_run():
    assert results.StopReason.REPLICA_LAG.ends_run
    assert results.StopReason.REPLICA_LAG.value == "replica lag"
