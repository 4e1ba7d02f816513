"""The cheap test in front of a glob hold's regular expression (holds.sql's glob_like): every name
a glob matches is LIKE the glob's LIKE pattern, whatever the glob holds (brackets, `!`, a `]`
first, LIKE's own `%`, `_` and backslash); the regular expression still decides. Real PostgreSQL."""

from __future__ import annotations

import datetime as dt

import psycopg
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from psycopg import sql

from retention import holds
from retention.config import globs
from retention.holds import conditions
from retention.run import runner
from tests.helpers import job_ids, make_settings, seed_job

GLOB_CHARS = "ab*?[]!%_\\-."
NAME_CHARS = "ab!%_\\-.]["


def _like_query() -> sql.Composable:
    return sql.SQL("SELECT %(name)s ~ %(re)s, %(name)s LIKE {like}, {like}").format(
        like=conditions.glob_like(sql.SQL("%(glob)s::text"))
    )


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    glob=st.text(GLOB_CHARS, min_size=1, max_size=8),
    name=st.text(NAME_CHARS, max_size=8),
)
def test_every_name_a_glob_matches_is_like_its_pattern(conn, glob, name):
    try:
        regex = globs.to_regex(glob)
    except ValueError:
        assume(False)
    try:
        with conn.transaction():
            matched, like, pattern = conn.execute(
                _like_query(), {"name": name, "re": regex, "glob": glob}
            ).fetchone()
    except psycopg.errors.InvalidRegularExpression:
        assume(False)  # PostgreSQL refuses the pattern: no such hold can be placed
    if matched:
        assert like, (glob, name, regex, pattern)


def test_the_like_pattern_of_some_globs(conn):
    cases = {
        "legal-*": "legal-%",
        "a?c": "a_c",
        "50%_off": "50\\%\\_off",
        "case-[ab]x": "case-%",
        "[!a]": "%",
        "back\\slash": "back\\\\slash",
    }
    for glob, expected in cases.items():
        row = conn.execute(_like_query(), {"name": "", "re": "", "glob": glob}).fetchone()
        assert row[2] == expected, glob


def test_a_name_like_the_pattern_but_not_matching_the_glob_is_not_held(conn, database, location):
    """`case-[ab]` is LIKE-tested as `case-%`, which `case-c` passes: the regex keeps only
    case-a and case-b."""
    old = dt.timedelta(days=40)
    kept = [
        seed_job(conn, status="succeeded", finished_ago=old, queue=q) for q in ("case-a", "case-b")
    ]
    gone = [
        seed_job(conn, status="succeeded", finished_ago=old, queue=q) for q in ("case-c", "case-")
    ]
    also_gone = seed_job(conn, status="succeeded", finished_ago=old, task="reports.x1")
    also_kept = seed_job(conn, status="succeeded", finished_ago=old, task="reports.x_")
    settings_ = make_settings(database, jobs={"succeeded": "30d"})
    holds.add(conn, settings_, queue="case-[ab]", reason="case 20")
    holds.add(conn, settings_, task="reports.x_", reason="case 21")

    summary = runner.execute(
        settings_, location, stages=["jobs"], dry_run=False, trigger="cli"
    ).to_json()

    left = job_ids(conn)
    assert set(kept) | {also_kept} <= left
    assert not (set(gone) | {also_gone}) & left
    assert summary["jobs"]["held"] == 3
