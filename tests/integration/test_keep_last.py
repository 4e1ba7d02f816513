"""`keep_last` and `max_count` on table policies, in-process against a real PostgreSQL: what goes
compared with a plain Python model of the rule on random rows (groups, ties, filters, NULL
groups), dry runs equal to real runs, the rule read by the deleting statement, the index warning
and bad `per` columns."""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from retention import errors
from retention.run import backlog
from retention.tables import delete, planning
from tests.helpers import execute_tables as execute
from tests.helpers import ids, make_settings

SCHEMA = """
DROP SCHEMA IF EXISTS cams CASCADE;
CREATE SCHEMA cams;
CREATE TABLE cams.shots (
    id bigint PRIMARY KEY,
    camera_id int,
    site text,
    kind text NOT NULL,
    taken_at timestamptz NOT NULL
);
CREATE INDEX ON cams.shots (taken_at, id);
CREATE INDEX ON cams.shots (camera_id, taken_at, id);
CREATE INDEX ON cams.shots (camera_id, site, taken_at, id);
"""
AGE_DAYS = 10


@dataclasses.dataclass(frozen=True)
class Shot:
    id: int
    camera_id: int | None
    site: str | None
    kind: str
    days: int  # how many days before the base time it was taken (ties: the same days)


def seed(conn: psycopg.Connection, shots: list[Shot]) -> None:
    conn.execute(SCHEMA)
    base = conn.execute("SELECT date_trunc('hour', now()) - interval '1 hour'").fetchone()
    assert base is not None
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO cams.shots VALUES (%s, %s, %s, %s, %s - %s * interval '1 day')",
            [(s.id, s.camera_id, s.site, s.kind, base[0], s.days) for s in shots],
        )


def policy(**rule: Any) -> dict[str, Any]:
    return {"table": "cams.shots", "timestamp": "taken_at", **rule}


def model(shots: list[Shot], rule: dict[str, Any]) -> set[int]:
    """The ids a policy leaves: the rule written plainly, in Python."""
    per = rule.get("per", [])
    kinds = rule.get("where", {}).get("kind")
    matching = [s for s in shots if kinds is None or s.kind in kinds]
    n = rule.get("keep_last") or rule["max_count"]
    groups: dict[tuple[Any, ...], list[Shot]] = {}
    for shot in matching:
        group = tuple(getattr(shot, column) for column in per)
        if None not in group:
            groups.setdefault(group, []).append(shot)
    beyond: set[int] = set()
    for members in groups.values():
        newest_first = sorted(members, key=lambda s: (-s.days, s.id), reverse=True)
        beyond |= {s.id for s in newest_first[n:]}
    aged = "keep_last" in rule or "age" in rule
    gone = set()
    for shot in matching:
        old = aged and shot.days > AGE_DAYS
        grouped = None not in tuple(getattr(shot, column) for column in per)
        if "keep_last" in rule:
            goes = old and (not grouped or shot.id in beyond)
        else:
            goes = old or shot.id in beyond
        if goes:
            gone.add(shot.id)
    return {s.id for s in shots} - gone


shot_lists = st.lists(
    st.tuples(
        st.sampled_from((1, 2, 3, None)),
        st.sampled_from(("north", "south", None)),
        st.sampled_from(("motion", "timelapse")),
        st.sampled_from((0, 1, 5, 9, 11, 12, 20, 40)),
    ),
    max_size=40,
).map(lambda rows: [Shot(i + 1, *row) for i, row in enumerate(rows)])
rules = st.fixed_dictionaries(
    {
        "count": st.sampled_from(("keep_last", "max_count")),
        "n": st.integers(1, 5),
        "per": st.sampled_from(([], ["camera_id"], ["camera_id", "site"])),
        "aged": st.booleans(),
        "where": st.sampled_from(({}, {"kind": ["motion"]})),
    }
).map(
    lambda r: {
        r["count"]: r["n"],
        **({"per": r["per"]} if r["per"] else {}),
        **({"age": f"{AGE_DAYS}d"} if r["aged"] or r["count"] == "keep_last" else {}),
        **({"where": r["where"]} if r["where"] else {}),
    }
)


@hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(shots=shot_lists, rule=rules)
def test_what_stays_matches_the_reference_model(conn, database, location, shots, rule):
    seed(conn, shots)
    before = ids(conn, "cams.shots")
    preview = execute(database, location, [policy(**rule)], dry_run=True, batch_size=3)
    assert ids(conn, "cams.shots") == before
    summary = execute(database, location, [policy(**rule)], batch_size=3)

    kept = model(shots, rule)
    assert ids(conn, "cams.shots") == kept
    section = summary["tables"]["cams.shots"]
    assert section["deleted"] == len(shots) - len(kept)
    assert preview["tables"]["cams.shots"]["deleted"] == section["deleted"]
    assert section["partitions_dropped"] == 0


def test_keep_last_keeps_the_newest_of_each_camera_however_old(conn, database, location):
    shots = [Shot(i, 1, None, "motion", 30 + i) for i in range(1, 6)]
    shots += [Shot(10 + i, 2, None, "motion", 50 + i) for i in range(1, 3)]
    seed(conn, shots)
    rule = {"keep_last": 2, "per": ["camera_id"], "age": "10d"}
    summary = execute(database, location, [policy(**rule)], batch_size=2)
    assert ids(conn, "cams.shots") == {1, 2, 11, 12}
    assert summary["tables"]["cams.shots"]["deleted"] == 3


def test_max_count_trims_young_rows(conn, database, location):
    seed(conn, [Shot(i, 1, None, "motion", 0) for i in range(1, 8)])
    execute(database, location, [policy(max_count=3)], batch_size=2)
    # Ties on the timestamp: the key decides, the greatest keys being the newest.
    assert ids(conn, "cams.shots") == {5, 6, 7}


def test_the_deleting_statement_reads_the_newest_rows_itself(conn, database, location):
    """A row that becomes one of the newest N after the batch was selected (newer rows deleted
    in between) stays: the delete reads the group's newest rows in its own snapshot."""
    seed(conn, [Shot(i, 1, None, "motion", 20 - i) for i in range(1, 6)])
    settings = make_settings(database, tables=[policy(keep_last=2, age="10d")])
    plan = planning.check(conn, settings)[0]
    cutoff = conn.execute("SELECT now() - interval '10 days'").fetchone()[0]  # type: ignore[index]
    deleter = delete.RowDeleter(plan, plan.params(cutoff), None)
    with conn.transaction(), conn.cursor() as cur:
        # Chosen while 4 and 5 were the newest two: 1, 2 and 3 were beyond them.
        conn.execute("DELETE FROM cams.shots WHERE id IN (4, 5)")
        counts = deleter.delete(cur, [1, 2, 3])
    assert counts["deleted"] == 1
    assert ids(conn, "cams.shots") == {2, 3}


def test_a_missing_index_is_named_with_the_statement(conn, database):
    seed(conn, [])
    conn.execute("DROP INDEX cams.shots_camera_id_taken_at_id_idx")
    conn.execute("DROP INDEX cams.shots_camera_id_site_taken_at_id_idx")
    settings = make_settings(database, tables=[policy(keep_last=3, per=["camera_id"], age="10d")])
    (plan,) = planning.check(conn, settings)
    assert any(
        'CREATE INDEX CONCURRENTLY ON "cams"."shots" ("camera_id", "taken_at", "id");' in w
        for w in plan.warnings
    ), plan.warnings
    settings = make_settings(database, tables=[policy(max_count=3, per=["site"])])
    (plan,) = planning.check(conn, settings)
    assert any('("site", "taken_at", "id")' in w for w in plan.warnings)


def test_per_naming_a_missing_column_is_refused(conn, database):
    seed(conn, [])
    settings = make_settings(database, tables=[policy(keep_last=3, per=["cam"], age="10d")])
    with pytest.raises(errors.ConfigError, match=r"per: .*no column 'cam'"):
        planning.check(conn, settings)


def test_status_backlog_counts_what_the_run_deletes(conn, database, location):
    shots = [Shot(i, i % 3 or None, None, "motion", 5 * i) for i in range(1, 13)]
    seed(conn, shots)
    rule = {"keep_last": 2, "per": ["camera_id"], "age": "10d"}
    settings = make_settings(database, tables=[policy(**rule)])
    now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    counted = backlog.table_backlog(conn, settings, now)["cams.shots"]["eligible"]
    summary = execute(database, location, [policy(**rule)], batch_size=4)
    assert summary["tables"]["cams.shots"]["deleted"] == counted
    assert ids(conn, "cams.shots") == model(shots, rule)
