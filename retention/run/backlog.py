"""What is eligible for deletion right now, per policy, and how old the oldest of it is: when a
run cannot keep up, these grow. Counted with the same conditions the runs use."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from psycopg import sql

from retention import errors
from retention.config import policies
from retention.config import settings as settings_mod
from retention.jobs import policy, prune
from retention.pg import queries
from retention.tables import planning


def _entry(count: int, oldest: Any, now: dt.datetime) -> dict[str, Any]:
    if isinstance(oldest, dt.datetime) and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=dt.UTC)
    elif isinstance(oldest, dt.date) and not isinstance(oldest, dt.datetime):
        oldest = dt.datetime.combine(oldest, dt.time(), tzinfo=dt.UTC)
    return {
        "eligible": int(count),
        "oldest": oldest.isoformat() if oldest is not None else None,
        "oldest_age_seconds": round((now - oldest).total_seconds(), 1) if oldest else None,
    }


def job_backlog(
    conn: psycopg.Connection, jobs_policy: policies.JobsPolicy, now: dt.datetime
) -> dict[str, dict[str, Any]]:
    """Per final status that some age applies to: jobs a run would delete now (the prune
    walk's conditions, counted)."""
    found = prune.eligible(conn, jobs_policy, now)
    return {
        status: _entry(*found.get(status, (0, None)), now)
        for status in policies.FINAL_STATUSES
        if policy.shortest_age(jobs_policy, status) is not None
    }


def table_backlog(
    conn: psycopg.Connection, settings: settings_mod.Settings, now: dt.datetime
) -> dict[str, dict[str, Any]]:
    """Per enabled table policy: rows a run would delete now. A policy that does not match the
    database shows the problem instead."""
    if not any(policy.enabled for policy in settings.tables):
        return {}
    try:
        plans = planning.check(conn, settings)
    except errors.ConfigError as exc:
        return {"(invalid)": {"error": str(exc)}}
    out: dict[str, dict[str, Any]] = {}
    for plan in plans:
        query = queries.get("backlog_table").format(
            timestamp=sql.Identifier(plan.timestamp.name),
            relation=plan.relation.ident,
            eligible=plan.eligible("t"),
        )
        row = conn.execute(query, plan.params(now - plan.age)).fetchone()
        assert row is not None
        out[plan.name] = _entry(row[0], row[1], now)
    return out


def collect(conn: psycopg.Connection, settings: settings_mod.Settings) -> dict[str, Any]:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    now = row[0]
    return {
        "jobs": job_backlog(conn, settings.jobs, now) if settings.jobs.enabled else {},
        "tables": table_backlog(conn, settings, now),
    }
