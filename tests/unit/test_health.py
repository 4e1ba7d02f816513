"""The health rule (retention.interfaces.health.judge) on facts written by hand: a failed last run,
a run late by two schedule periods, one missed tick, a fresh install."""

from __future__ import annotations

import dataclasses
import datetime as dt

from retention.interfaces import health

DAILY = "0 3 * * *"
NOW = dt.datetime(2026, 6, 10, 12, 0, tzinfo=dt.UTC)
INSTALLED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
BUDGET = 600.0


def facts(**overrides: object) -> health.Facts:
    base = health.Facts(
        checked_at=NOW,
        installed_at=INSTALLED,
        last_id=None,
        last_status=None,
        last_finished_at=None,
        last_error=None,
        ok_id=None,
        ok_started_at=None,
        ok_finished_at=None,
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def succeeded(run_id: int, started: dt.datetime) -> dict[str, object]:
    finished = started + dt.timedelta(seconds=5)
    return {
        "last_id": run_id,
        "last_status": "succeeded",
        "last_finished_at": finished,
        "ok_id": run_id,
        "ok_started_at": started,
        "ok_finished_at": finished,
    }


def judge(found: health.Facts, schedule: str = DAILY) -> health.Health:
    return health.judge(found, schedule=schedule, max_run_seconds=BUDGET)


def test_a_run_that_succeeded_last_night_is_healthy():
    verdict = judge(facts(**succeeded(7, dt.datetime(2026, 6, 10, 3, 0, tzinfo=dt.UTC))))
    assert verdict.healthy
    assert verdict.reason == (
        "the last run #7 succeeded at 2026-06-10 03:00:05 UTC; the next is scheduled at "
        "2026-06-11 03:00:00 UTC"
    )
    assert verdict.line().startswith("healthy: the last run #7 succeeded")


def test_a_failed_last_run_is_unhealthy_with_its_error_on_one_line():
    found = facts(
        **succeeded(7, dt.datetime(2026, 6, 9, 3, 0, tzinfo=dt.UTC)),
    )
    found = dataclasses.replace(
        found,
        last_id=8,
        last_status="failed",
        last_finished_at=dt.datetime(2026, 6, 10, 3, 0, 1, tzinfo=dt.UTC),
        last_error="invalid table policies, nothing was run:\n  - tables[0] (events): missing "
        "postgresql://app:hunter2@db/app",
    )
    verdict = judge(found)
    assert not verdict.healthy
    assert verdict.reason.startswith(
        "the last run #8 failed at 2026-06-10 03:00:01 UTC: invalid table policies, nothing was "
        "run: - tables[0] (events): missing postgresql://app:***@db/app"
    )
    assert "\n" not in verdict.line()
    assert "hunter2" not in verdict.line()


def test_one_missed_tick_is_tolerated_two_are_not():
    last_success = dt.datetime(2026, 6, 8, 3, 0, tzinfo=dt.UTC)
    # The tick of 06-09 03:00 was missed; the one of 06-10 03:00 has its run's time budget.
    within_budget = NOW.replace(day=10, hour=3, minute=9)
    assert judge(facts(**succeeded(3, last_success), checked_at=within_budget)).healthy
    late = within_budget + dt.timedelta(minutes=2)
    verdict = judge(facts(**succeeded(3, last_success), checked_at=late))
    assert not verdict.healthy
    assert verdict.reason == (
        "no run has succeeded since run #3 at 2026-06-08 03:00:00 UTC: with the schedule "
        "'0 3 * * *', one was due by 2026-06-10 03:10:00 UTC; is a worker running?"
    )


def test_an_aborted_or_abandoned_run_is_not_a_failure_nor_a_success():
    found = dataclasses.replace(
        facts(**succeeded(3, dt.datetime(2026, 6, 9, 3, 0, tzinfo=dt.UTC))),
        last_id=4,
        last_status="abandoned",
    )
    verdict = judge(found)
    assert verdict.healthy
    assert "(the last run, #4, was abandoned)" in verdict.reason
    late = judge(dataclasses.replace(found, checked_at=NOW + dt.timedelta(days=1)))
    assert not late.healthy
    assert "(the last run, #4, was abandoned)" in late.reason


def test_a_fresh_install_is_healthy_until_two_periods_have_passed_without_a_run():
    installed = dt.datetime(2026, 6, 10, 11, 0, tzinfo=dt.UTC)
    verdict = judge(facts(installed_at=installed))
    assert verdict.healthy
    assert verdict.reason.startswith("no run has succeeded yet, and none is due before ")
    later = judge(facts(installed_at=installed, checked_at=NOW + dt.timedelta(days=2)))
    assert not later.healthy
    assert later.reason.startswith(
        "no run has succeeded since retention was installed at 2026-06-10 11:00:00 UTC"
    )


def test_the_periods_are_the_schedules_own():
    every_ten_minutes = "*/10 * * * *"
    started = NOW - dt.timedelta(minutes=15)
    assert judge(facts(**succeeded(1, started)), every_ten_minutes).healthy
    stale = facts(**succeeded(1, started), checked_at=NOW + dt.timedelta(minutes=15))
    assert not judge(stale, every_ten_minutes).healthy
    assert judge(stale, DAILY).healthy
