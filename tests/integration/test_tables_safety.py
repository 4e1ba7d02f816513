"""Table retention's safety in-process: rows an application holds (a BEFORE DELETE trigger that
keeps the row) keep their children and every file; Procrastinate's tables and ours are never a
policy's target; filter values are checked against the column types before anything runs;
infinite timestamps load and are walked. Real PostgreSQL, real files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg
import pytest

from retention import errors
from retention.pg import database as pg_database
from retention.run import backlog
from retention.tables import planning
from tests.helpers import execute_tables as execute
from tests.helpers import files_on_disk, ids, make_settings
from tests.helpers import records_policy as policy

# An application with a parent, a child that must be deleted first (NO ACTION), a child left to
# the cascade, and a file column on each; `held` rows are kept by the application's triggers.
SCHEMA = """
CREATE SCHEMA app;
CREATE TABLE app.events (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL,
    held boolean NOT NULL DEFAULT false,
    image text
);
CREATE INDEX ON app.events (created_at, id);
CREATE TABLE app.detections (
    id bigserial PRIMARY KEY,
    event_id bigint NOT NULL REFERENCES app.events (id),
    held boolean NOT NULL DEFAULT false,
    crop text
);
CREATE INDEX ON app.detections (event_id);
CREATE TABLE app.notes (
    id bigserial PRIMARY KEY,
    event_id bigint NOT NULL REFERENCES app.events (id) ON DELETE CASCADE,
    held boolean NOT NULL DEFAULT false,
    attachment text
);
CREATE INDEX ON app.notes (event_id);
CREATE FUNCTION app.keep_held() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.held THEN
        RETURN NULL;
    END IF;
    RETURN OLD;
END
$$;
"""


def hold(conn: psycopg.Connection, table: str) -> None:
    conn.execute(
        f"CREATE TRIGGER keep_held BEFORE DELETE ON app.{table} "
        "FOR EACH ROW EXECUTE FUNCTION app.keep_held()"
    )


def write(root: Path, rel: str) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return rel


def add(
    conn: psycopg.Connection,
    root: Path,
    *,
    days: int,
    held: bool = False,
    detections: int = 1,
    notes: int = 1,
    held_detection: bool = False,
    held_note: bool = False,
) -> int:
    row = conn.execute(
        "INSERT INTO app.events (created_at, held) VALUES (now() - make_interval(days => %s), %s) "
        "RETURNING id",
        (days, held),
    ).fetchone()
    assert row is not None
    event = row[0]
    conn.execute(
        "UPDATE app.events SET image = %s WHERE id = %s", (write(root, f"e/{event}.jpg"), event)
    )
    for n in range(detections):
        conn.execute(
            "INSERT INTO app.detections (event_id, held, crop) VALUES (%s, %s, %s)",
            (event, held_detection and n == 0, write(root, f"d/{event}-{n}.png")),
        )
    for n in range(notes):
        conn.execute(
            "INSERT INTO app.notes (event_id, held, attachment) VALUES (%s, %s, %s)",
            (event, held_note and n == 0, write(root, f"n/{event}-{n}.txt")),
        )
    return event


def files_of(event: int, *, detections: int = 1, notes: int = 1) -> set[str]:
    return (
        {f"e/{event}.jpg"}
        | {f"d/{event}-{n}.png" for n in range(detections)}
        | {f"n/{event}-{n}.txt" for n in range(notes)}
    )


def child_events(conn: psycopg.Connection, table: str) -> set[int]:
    return {r[0] for r in conn.execute(f"SELECT event_id FROM app.{table}")}


def queued(conn: psycopg.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT path FROM retention_file_outbox")}


# 1. Rows an application holds.


@pytest.mark.parametrize("batch_size", [1, 50])
def test_a_held_parent_keeps_its_children_and_every_file(
    conn, database, location, tmp_path, batch_size
):
    conn.execute(SCHEMA)
    hold(conn, "events")
    root = tmp_path / "media"
    kept = add(conn, root, days=40, held=True, detections=2, notes=2)
    gone = [add(conn, root, days=40 + i) for i in range(3)]
    young = add(conn, root, days=1)
    before = files_on_disk(root)

    summary = execute(database, location, [policy(root)], batch_size=batch_size)

    section = summary["tables"]["app.events"]
    assert ids(conn, "app.events") == {kept, young}
    assert child_events(conn, "detections") == {kept, young}
    assert child_events(conn, "notes") == {kept, young}
    assert (
        conn.execute("SELECT count(*) FROM app.detections WHERE event_id = %s", (kept,)).fetchone()[
            0
        ]
        == 2
    )
    assert (
        conn.execute("SELECT count(*) FROM app.notes WHERE event_id = %s", (kept,)).fetchone()[0]
        == 2
    )
    assert files_on_disk(root) == before - set().union(*(files_of(e) for e in gone))
    assert files_of(kept, detections=2, notes=2) <= files_on_disk(root)
    assert section["deleted"] == 3
    assert section["child_rows"] == 6
    assert section["files_queued"] == summary["files"]["deleted"] == 9
    assert queued(conn) == set()


def test_a_held_parent_keeps_the_files_of_its_cascading_children(
    conn, database, location, tmp_path
):
    conn.execute(SCHEMA)
    conn.execute("DROP TABLE app.detections")
    hold(conn, "events")
    root = tmp_path / "media"
    kept = add(conn, root, days=40, held=True, detections=0, notes=3)
    before = files_on_disk(root)
    only_notes = policy(root)
    only_notes["children"] = only_notes["children"][1:]

    summary = execute(database, location, [only_notes])

    assert ids(conn, "app.events") == {kept}
    assert conn.execute("SELECT count(*) FROM app.notes").fetchone()[0] == 3
    assert files_on_disk(root) == before
    assert summary["tables"]["app.events"]["files_queued"] == 0
    assert summary["files"]["deleted"] == 0


def test_a_held_cascading_child_keeps_its_parent_and_files(conn, database, location, tmp_path):
    conn.execute(SCHEMA)
    hold(conn, "notes")
    root = tmp_path / "media"
    kept = add(conn, root, days=40, notes=2, held_note=True)
    gone = [add(conn, root, days=41 + i) for i in range(3)]
    before = files_on_disk(root)

    summary = execute(database, location, [policy(root)], batch_size=10)

    # No child left referencing a deleted row (a cascade a trigger cancels would leave one).
    orphans = conn.execute(
        "SELECT count(*) FROM app.notes n WHERE NOT EXISTS "
        "(SELECT 1 FROM app.events e WHERE e.id = n.event_id)"
    ).fetchone()[0]
    assert orphans == 0
    assert ids(conn, "app.events") == {kept}
    assert child_events(conn, "notes") == {kept}
    assert conn.execute("SELECT count(*) FROM app.notes").fetchone()[0] == 2
    assert child_events(conn, "detections") == {kept}
    assert files_on_disk(root) == before - set().union(*(files_of(e) for e in gone))
    assert files_of(kept, notes=2) <= files_on_disk(root)
    assert summary["tables"]["app.events"]["deleted"] == 3
    assert summary["tables"]["app.events"]["files_queued"] == 9


def test_a_held_child_that_must_go_first_keeps_its_parent(conn, database, location, tmp_path):
    conn.execute(SCHEMA)
    hold(conn, "detections")
    root = tmp_path / "media"
    kept = add(conn, root, days=40, detections=3, held_detection=True)
    gone = [add(conn, root, days=41 + i) for i in range(4)]
    before = files_on_disk(root)

    summary = execute(database, location, [policy(root)], batch_size=10)
    again = execute(database, location, [policy(root)], batch_size=10)

    assert summary["status"] == again["status"] == "succeeded"
    assert ids(conn, "app.events") == {kept}
    assert conn.execute("SELECT count(*) FROM app.detections").fetchone()[0] == 3
    assert conn.execute("SELECT count(*) FROM app.notes").fetchone()[0] == 1
    assert files_on_disk(root) == before - set().union(*(files_of(e) for e in gone))
    assert files_of(kept, detections=3) <= files_on_disk(root)
    assert summary["tables"]["app.events"]["deleted"] == 4
    assert summary["tables"]["app.events"]["child_rows"] == 8
    assert again["tables"]["app.events"]["deleted"] == 0
    assert again["tables"]["app.events"]["files_queued"] == 0
    assert queued(conn) == set()


def test_held_rows_among_many_batches(conn, database, location, tmp_path):
    conn.execute(SCHEMA)
    for table in ("events", "detections", "notes"):
        hold(conn, table)
    root = tmp_path / "media"
    kept = set()
    gone = set()
    for i in range(30):
        shape = i % 5
        event = add(
            conn,
            root,
            days=40 + i,
            held=shape == 1,
            held_detection=shape == 2,
            held_note=shape == 3,
        )
        (kept if shape in (1, 2, 3) else gone).add(event)
    before = files_on_disk(root)

    summary = execute(database, location, [policy(root)], batch_size=7)

    assert ids(conn, "app.events") == kept
    assert child_events(conn, "detections") == kept
    assert child_events(conn, "notes") == kept
    assert files_on_disk(root) == before - set().union(*(files_of(e) for e in gone))
    assert summary["tables"]["app.events"]["deleted"] == len(gone)
    assert summary["tables"]["app.events"]["files_queued"] == 3 * len(gone)


def test_a_dry_run_counts_what_a_run_deletes_without_holds(conn, database, location, tmp_path):
    conn.execute(SCHEMA)
    root = tmp_path / "media"
    for i in range(9):
        add(conn, root, days=40 + i, detections=i % 3, notes=i % 2)
    add(conn, root, days=2)
    plan = execute(database, location, [policy(root)], dry_run=True, batch_size=4)
    real = execute(database, location, [policy(root)], batch_size=4)
    keys = ("deleted", "child_rows", "files_queued")
    assert {k: plan["tables"]["app.events"][k] for k in keys} == {
        k: real["tables"]["app.events"][k] for k in keys
    }
    assert real["tables"]["app.events"]["deleted"] == 9
    assert real["tables"]["app.events"]["files_queued"] == real["files"]["deleted"] == 9 + 9 + 4


# Partitions: DETACH and DROP fire no row trigger, so a table whose rows an application can hold
# is pruned row by row.

PARTITIONED = """
CREATE TABLE logs (
    id bigint GENERATED ALWAYS AS IDENTITY,
    at timestamptz NOT NULL,
    held boolean NOT NULL DEFAULT false,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE logs_old PARTITION OF logs FOR VALUES FROM ('2000-01-01') TO ('2001-01-01');
CREATE TABLE logs_new PARTITION OF logs FOR VALUES FROM ('2001-01-01') TO (MAXVALUE);
INSERT INTO logs (at, held) SELECT '2000-06-01'::timestamptz + g * interval '1 hour', g = 3
  FROM generate_series(1, 10) g;
CREATE FUNCTION keep_held() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.held THEN
        RETURN NULL;
    END IF;
    RETURN OLD;
END
$$;
"""


def test_partitions_of_a_table_with_delete_triggers_are_not_dropped(conn, database, location):
    conn.execute(PARTITIONED)
    conn.execute(
        "CREATE TRIGGER keep_held BEFORE DELETE ON logs FOR EACH ROW EXECUTE FUNCTION keep_held()"
    )
    tables = [{"table": "logs", "timestamp": "at", "key": "id", "age": "1d"}]
    plans = planning.check(conn, make_settings(database, tables=tables))
    assert not plans[0].partitioned
    assert any("trigger" in w for w in plans[0].warnings)

    summary = execute(database, location, tables, stages=("tables",))

    section = summary["tables"]["logs"]
    assert section["partitions_dropped"] == 0
    assert section["deleted"] == 9
    assert conn.execute("SELECT count(*) FROM logs_old WHERE held").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM logs").fetchone()[0] == 1


def test_partitions_without_triggers_are_still_dropped(conn, database, location):
    conn.execute(PARTITIONED)
    tables = [{"table": "logs", "timestamp": "at", "key": "id", "age": "1d"}]
    summary = execute(database, location, tables, stages=("tables",))
    assert summary["tables"]["logs"]["partitions_dropped"] == 1
    assert conn.execute("SELECT to_regclass('logs_old')").fetchone()[0] is None


def test_a_held_child_of_a_composite_key_keeps_its_row(conn, database, location, tmp_path):
    conn.execute(
        """
        CREATE TABLE runs (region text, n int, at timestamptz NOT NULL, PRIMARY KEY (region, n));
        CREATE UNIQUE INDEX ON runs (n);
        CREATE TABLE steps (
            id serial PRIMARY KEY, region text, n int, held boolean NOT NULL DEFAULT false,
            log text, FOREIGN KEY (region, n) REFERENCES runs ON DELETE CASCADE
        );
        CREATE FUNCTION keep_held() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF OLD.held THEN
                RETURN NULL;
            END IF;
            RETURN OLD;
        END
        $$;
        CREATE TRIGGER keep_held BEFORE DELETE ON steps FOR EACH ROW EXECUTE FUNCTION keep_held();
        INSERT INTO runs SELECT 'r' || (g % 2), g, now() - interval '40 days'
          FROM generate_series(1, 6) g;
        INSERT INTO steps (region, n, held, log) SELECT region, n, n = 4, 'l/' || n FROM runs;
        """
    )
    root = tmp_path / "logs"
    for n in range(1, 7):
        write(root, f"l/{n}")
    tables = [
        {
            "table": "runs",
            "timestamp": "at",
            "key": "n",
            "children": [
                {"table": "steps", "column": "n", "files": [{"column": "log", "root": str(root)}]}
            ],
        }
    ]
    summary = execute(database, location, tables)
    assert {r[0] for r in conn.execute("SELECT n FROM runs")} == {4}
    assert {r[0] for r in conn.execute("SELECT n FROM steps")} == {4}
    assert files_on_disk(root) == {"l/4"}
    assert summary["tables"]["runs"]["deleted"] == 5


def test_a_held_child_whose_key_sets_null_keeps_its_row(conn, database, location, tmp_path):
    conn.execute(SCHEMA)
    conn.execute(
        "ALTER TABLE app.notes DROP CONSTRAINT notes_event_id_fkey, ALTER event_id DROP NOT NULL, "
        "ADD FOREIGN KEY (event_id) REFERENCES app.events ON DELETE SET NULL"
    )
    hold(conn, "notes")
    root = tmp_path / "media"
    kept = add(conn, root, days=40, held_note=True)
    gone = add(conn, root, days=41)
    summary = execute(database, location, [policy(root)])
    assert ids(conn, "app.events") == {kept}
    assert child_events(conn, "notes") == {kept}
    assert files_on_disk(root) == files_of(kept)
    assert summary["tables"]["app.events"]["deleted"] == 1
    assert gone not in ids(conn, "app.events")


def test_a_delete_rule_is_refused_before_anything_runs(conn, database, location, tmp_path):
    conn.execute(SCHEMA)
    conn.execute("CREATE RULE keep AS ON DELETE TO app.notes WHERE old.held DO INSTEAD NOTHING")
    root = tmp_path / "media"
    event = add(conn, root, days=40)
    with pytest.raises(
        errors.ConfigError, match=r"children\[1\]: app.notes has the ON DELETE rule"
    ):
        planning.check(conn, make_settings(database, tables=[policy(root)]))
    assert ids(conn, "app.events") == {event}


# 2. Procrastinate's tables and ours are never a policy's target.


def refusal(conn: psycopg.Connection, database: str, tables: list[dict]) -> str:
    with pytest.raises(errors.ConfigError) as caught:
        planning.check(conn, make_settings(database, tables=tables))
    return str(caught.value)


JOBS = "job retention is configured in [jobs]; todo and doing jobs are never deleted"
OURS = "our own tables are never a policy's table or child"


@pytest.mark.parametrize(
    "name",
    [
        "procrastinate_jobs",
        "public.procrastinate_jobs",
        '"procrastinate_jobs"',
        'public."procrastinate_jobs"',
        "PUBLIC.PROCRASTINATE_JOBS",
    ],
)
def test_procrastinate_jobs_is_refused_by_any_spelling(conn, database, name):
    message = refusal(conn, database, [{"table": name, "timestamp": "scheduled_at"}])
    assert "tables[0]" in message
    assert "public.procrastinate_jobs" in message
    assert JOBS in message


@pytest.mark.parametrize(
    ("table", "timestamp"),
    [
        ("procrastinate_events", "at"),
        ("procrastinate_periodic_defers", "defer_timestamp"),
        ("procrastinate_workers", "last_heartbeat"),
    ],
)
def test_other_procrastinate_tables_are_refused(conn, database, table, timestamp):
    message = refusal(conn, database, [{"table": table, "timestamp": timestamp}])
    assert f"public.{table}" in message
    assert JOBS in message


def test_any_procrastinate_table_in_any_schema_is_refused(conn, database):
    conn.execute(
        "CREATE SCHEMA other; CREATE TABLE other.procrastinate_archive "
        "(id int PRIMARY KEY, at timestamptz)"
    )
    message = refusal(conn, database, [{"table": "other.procrastinate_archive", "timestamp": "at"}])
    assert "other.procrastinate_archive is a Procrastinate table" in message


@pytest.mark.parametrize(
    ("table", "timestamp"),
    [
        ("retention_runs", "started_at"),
        ("retention_file_outbox", "queued_at"),
        ("retention_migrations", "applied_at"),
    ],
)
def test_our_own_tables_are_refused(conn, database, table, timestamp):
    columns = {
        r[0]
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0",
            (table,),
        )
    }
    timestamp = timestamp if timestamp in columns else sorted(columns)[0]
    message = refusal(conn, database, [{"table": table, "timestamp": timestamp}])
    assert f"public.{table} is one of retention's own tables" in message
    assert OURS in message


def test_a_new_table_of_ours_is_refused_and_an_application_one_of_the_same_prefix_is_not(
    conn, database
):
    conn.execute(
        "CREATE TABLE retention_future (id int PRIMARY KEY, at timestamptz);"
        "CREATE SCHEMA app; CREATE TABLE app.retention_policies (id int PRIMARY KEY, at "
        "timestamptz); CREATE INDEX ON app.retention_policies (at)"
    )
    message = refusal(conn, database, [{"table": "retention_future", "timestamp": "at"}])
    assert "public.retention_future is one of retention's own tables" in message
    plans = planning.check(
        conn,
        make_settings(database, tables=[{"table": "app.retention_policies", "timestamp": "at"}]),
    )
    assert plans[0].relation.display == "app.retention_policies"


def test_a_search_path_or_a_view_does_not_slip_through(conn, database):
    conn.execute(
        "CREATE SCHEMA app; CREATE VIEW app.jobs AS SELECT * FROM procrastinate_jobs;"
        "CREATE TABLE app.base (id bigint PRIMARY KEY, at timestamptz);"
    )
    assert "is not a table" in refusal(conn, database, [{"table": "app.jobs", "timestamp": "id"}])
    conn.execute("SET search_path TO app, public")
    message = refusal(
        conn, database, [{"table": "procrastinate_jobs", "timestamp": "scheduled_at"}]
    )
    assert "public.procrastinate_jobs is a Procrastinate table" in message


def test_protected_children_and_what_a_delete_reaches_are_refused(conn, database):
    conn.execute(
        """
        CREATE SCHEMA app;
        CREATE TABLE app.batches (id bigint PRIMARY KEY, at timestamptz NOT NULL);
        CREATE INDEX ON app.batches (at);
        ALTER TABLE procrastinate_jobs ADD COLUMN batch_id bigint REFERENCES app.batches;
        CREATE TABLE app.sites (id bigint PRIMARY KEY, at timestamptz NOT NULL);
        CREATE INDEX ON app.sites (at);
        ALTER TABLE retention_file_outbox ADD COLUMN site_id bigint
            REFERENCES app.sites ON DELETE CASCADE;
        CREATE TABLE app.parts (id bigint PRIMARY KEY, at timestamptz NOT NULL);
        CREATE TABLE app.parts_of_jobs () INHERITS (app.parts);
        CREATE TABLE procrastinate_parts () INHERITS (app.parts);
        """
    )
    as_child = refusal(
        conn,
        database,
        [
            {
                "table": "app.batches",
                "timestamp": "at",
                "children": [{"table": "procrastinate_jobs", "column": "batch_id"}],
            }
        ],
    )
    assert "children[0]: public.procrastinate_jobs is a Procrastinate table" in as_child
    cascade = refusal(conn, database, [{"table": "app.sites", "timestamp": "at"}])
    assert "reaches public.retention_file_outbox" in cascade
    assert OURS in cascade
    inherited = refusal(conn, database, [{"table": "app.parts", "timestamp": "at"}])
    assert "reaches public.procrastinate_parts" in inherited
    assert JOBS in inherited


def test_a_table_referencing_procrastinate_jobs_is_allowed(conn, database):
    conn.execute(
        "CREATE TABLE results (id bigint PRIMARY KEY, at timestamptz NOT NULL, "
        "job_id bigint REFERENCES procrastinate_jobs ON DELETE CASCADE);"
        "CREATE INDEX ON results (at)"
    )
    plans = planning.check(
        conn, make_settings(database, tables=[{"table": "results", "timestamp": "at"}])
    )
    assert plans[0].relation.display == "public.results"


# 3. Filter values that do not cast to their column's type.

FILTERED = """
CREATE TABLE readings (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL,
    n integer NOT NULL DEFAULT 0,
    small smallint NOT NULL DEFAULT 0,
    day date,
    label text,
    flag boolean
);
CREATE INDEX ON readings (at);
INSERT INTO readings (at, n, label) SELECT now() - interval '40 days', g, 'x' FROM generate_series(1, 5) g;
"""


@pytest.mark.parametrize(
    ("where", "key", "shown", "type_sql"),
    [
        ({"n": "abc"}, "n", "'abc'", "integer"),
        ({"n": 1.5}, "n", "'1.5'", "integer"),
        ({"n": [1, 2, 99999999999]}, "n", "'99999999999'", "integer"),
        ({"small": 40000}, "small", "'40000'", "smallint"),
        ({"day": "2024-02-30"}, "day", "'2024-02-30'", "date"),
        ({"flag": "maybe"}, "flag", "'maybe'", "boolean"),
    ],
)
def test_a_filter_value_that_does_not_cast_is_refused(conn, database, where, key, shown, type_sql):
    conn.execute(FILTERED)
    message = refusal(conn, database, [{"table": "readings", "timestamp": "at", "where": where}])
    assert f"tables[0].where.{key}: {shown} is not a valid {type_sql}" in message


def test_every_bad_filter_value_is_listed(conn, database):
    conn.execute(FILTERED)
    where = {"n": ["abc", 1, "def"], "day": "tomorrowish", "label": True}
    message = refusal(
        conn,
        database,
        [
            {"table": "readings", "timestamp": "at"},
            {"table": "readings", "timestamp": "at", "where": where},
        ],
    )
    assert "tables[1].where.n: 'abc'" in message
    assert "tables[1].where.n: 'def'" in message
    assert "tables[1].where.day: 'tomorrowish'" in message
    assert "label" not in message
    assert "'1'" not in message


def test_filter_values_that_cast_are_accepted(conn, database, location):
    conn.execute(FILTERED)
    tables = [
        {
            "table": "readings",
            "timestamp": "at",
            "where": {"n": [1, "2", 3.0], "label": True, "flag": [True, "false"]},
        }
    ]
    with pytest.raises(errors.ConfigError, match=r"where.n: '3.0' is not a valid integer"):
        planning.check(conn, make_settings(database, tables=tables))
    tables[0]["where"] = {"n": [1, "2"], "label": ["x", True]}
    planning.check(conn, make_settings(database, tables=tables))
    summary = execute(database, location, tables, stages=("tables",))
    assert summary["tables"]["readings"]["deleted"] == 2


# 4. Timestamps `infinity` and `-infinity`.


def test_every_connection_loads_and_sends_back_infinite_timestamps(location):
    with pg_database.connect(location) as conn:
        row = conn.execute(
            "SELECT '-infinity'::timestamptz, 'infinity'::timestamptz, '-infinity'::timestamp, "
            "'infinity'::timestamp, '-infinity'::date, 'infinity'::date, "
            "ARRAY['-infinity', '2020-01-01']::timestamptz[], '2020-01-02 03:04:05+00'::timestamptz"
        ).fetchone()
        binary = (
            conn.cursor(binary=True)
            .execute("SELECT '-infinity'::timestamptz, 'infinity'::timestamp, 'infinity'::date")
            .fetchone()
        )
        minus, plus, naive_minus, naive_plus, day_minus, day_plus, array, finite = row
        assert minus == dt.datetime.min.replace(tzinfo=dt.UTC)
        assert minus.tzinfo is not None
        assert plus == dt.datetime.max.replace(tzinfo=dt.UTC)
        assert naive_minus == dt.datetime.min
        assert naive_plus == dt.datetime.max
        assert day_minus == dt.date.min
        assert day_plus == dt.date.max
        assert array[0] == minus
        assert array[1].year == 2020
        assert finite == dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        assert minus < finite < plus
        assert binary == (minus, naive_plus, day_plus)
        back = conn.execute(
            "SELECT %s::timestamptz = '-infinity', %s::timestamptz = 'infinity', "
            "%s::timestamp = '-infinity', %s::date = 'infinity', %s::timestamptz",
            (minus, plus, naive_minus, day_plus, finite),
        ).fetchone()
        assert back == (True, True, True, True, finite)
        # A real date at the edge of Python's range is not taken for an infinity.
        edge = conn.execute("SELECT '0001-01-01'::date, %s::date::text", (dt.date.min,)).fetchone()
        assert edge == (dt.date.min, "0001-01-01")


@pytest.mark.parametrize("column_type", ["timestamptz", "timestamp", "date"])
@pytest.mark.parametrize("batch_size", [1, 3, 100])
def test_the_walk_deletes_minus_infinity_and_keeps_infinity(
    conn, database, location, column_type, batch_size
):
    conn.execute(
        f"CREATE TABLE marks (id int PRIMARY KEY, at {column_type} NOT NULL);"
        "CREATE INDEX ON marks (at, id);"
        "INSERT INTO marks SELECT g, '-infinity' FROM generate_series(1, 5) g;"
        "INSERT INTO marks SELECT g, 'infinity' FROM generate_series(6, 8) g;"
        "INSERT INTO marks SELECT g, now() - make_interval(days => 40 + g) "
        "FROM generate_series(9, 12) g;"
        "INSERT INTO marks SELECT g, now() FROM generate_series(13, 14) g;"
        # An early key dated -infinity after later ones: the walk starts at the smallest.
        "INSERT INTO marks VALUES (0, '-infinity')"
    )
    tables = [{"table": "marks", "timestamp": "at", "age": "30d"}]
    plan = execute(
        database, location, tables, dry_run=True, stages=("tables",), batch_size=batch_size
    )
    real = execute(database, location, tables, stages=("tables",), batch_size=batch_size)
    assert plan["status"] == real["status"] == "succeeded"
    assert plan["tables"]["marks"]["deleted"] == real["tables"]["marks"]["deleted"] == 10
    assert ids(conn, "marks") == {6, 7, 8, 13, 14}
    assert real["tables"]["marks"]["oldest"].startswith("0001-01-01")
    again = execute(database, location, tables, stages=("tables",), batch_size=batch_size)
    assert again["tables"]["marks"]["deleted"] == 0
    assert ids(conn, "marks") == {6, 7, 8, 13, 14}


def test_the_backlog_of_infinite_timestamps(conn, database, location):
    conn.execute(
        "CREATE TABLE marks (id int PRIMARY KEY, at timestamptz NOT NULL, day date);"
        "INSERT INTO marks VALUES (1, '-infinity', '-infinity'), (2, 'infinity', 'infinity'), "
        "(3, now() - interval '40 days', current_date - 40)"
    )
    settings = make_settings(
        database,
        tables=[
            {"table": "marks", "timestamp": "at"},
            {"table": "marks", "timestamp": "day"},
        ],
    )
    with pg_database.connect(location) as work:
        found = backlog.collect(work, settings)["tables"]
    for name in ("marks", "marks#2"):
        assert found[name]["eligible"] == 2
        assert found[name]["oldest"] == "0001-01-01T00:00:00+00:00"
        assert found[name]["oldest_age_seconds"] > 6.3e10


@pytest.mark.parametrize("key_type", ["uuid", "text"])
def test_rows_dated_minus_infinity_with_a_key_of_any_type(conn, database, location, key_type):
    conn.execute(
        f"CREATE TABLE tokens (id {key_type} PRIMARY KEY, at timestamptz NOT NULL);"
        "CREATE INDEX ON tokens (at, id);"
        "INSERT INTO tokens SELECT gen_random_uuid(), '-infinity' FROM generate_series(1, 7);"
        "INSERT INTO tokens SELECT gen_random_uuid(), now() - interval '40 days' "
        "FROM generate_series(1, 3);"
        "INSERT INTO tokens SELECT gen_random_uuid(), 'infinity' FROM generate_series(1, 2)"
    )
    tables = [{"table": "tokens", "timestamp": "at"}]
    summary = execute(database, location, tables, stages=("tables",), batch_size=2)
    assert summary["tables"]["tokens"]["deleted"] == 10
    assert conn.execute("SELECT count(*) FROM tokens WHERE at = 'infinity'").fetchone()[0] == 2
    assert conn.execute("SELECT count(*) FROM tokens").fetchone()[0] == 2


def test_a_foreign_key_further_down_still_fails_the_run(conn, database, location, tmp_path):
    conn.execute(SCHEMA)
    conn.execute(
        "CREATE TABLE app.labels (id serial PRIMARY KEY, detection_id bigint "
        "REFERENCES app.detections)"
    )
    root = tmp_path / "media"
    event = add(conn, root, days=40)
    conn.execute("INSERT INTO app.labels (detection_id) SELECT id FROM app.detections")
    before = files_on_disk(root)
    with pytest.raises(errors.RunFailed, match="labels"):
        execute(database, location, [policy(root)])
    assert ids(conn, "app.events") == {event}
    assert files_on_disk(root) == before
    assert queued(conn) == set()


def test_a_filter_value_outside_a_domain_is_refused(conn, database):
    conn.execute(
        "CREATE DOMAIN level AS int CHECK (VALUE BETWEEN 0 AND 5);"
        "CREATE TABLE notices (id int PRIMARY KEY, at timestamptz NOT NULL, lvl level)"
    )
    tables = [{"table": "notices", "timestamp": "at", "where": {"lvl": [1, 9]}}]
    message = refusal(conn, database, tables)
    assert "tables[0].where.lvl: '9' is not a valid level" in message
    assert "'1'" not in message


def test_a_partitioned_table_with_infinite_timestamps(conn, database, location):
    conn.execute(
        "CREATE TABLE ticks (id int NOT NULL, at timestamptz NOT NULL, PRIMARY KEY (id, at)) "
        "PARTITION BY RANGE (at);"
        "CREATE TABLE ticks_old PARTITION OF ticks FOR VALUES FROM (MINVALUE) TO ('2000-01-01');"
        "CREATE TABLE ticks_mid PARTITION OF ticks FOR VALUES FROM ('2000-01-01') TO "
        "('infinity');"
        "CREATE TABLE ticks_end PARTITION OF ticks FOR VALUES FROM ('infinity') TO (MAXVALUE);"
        "INSERT INTO ticks VALUES (1, '-infinity'), (2, '1999-06-01'), (3, '2001-01-01'), "
        "(4, now()), (5, 'infinity');"
        "INSERT INTO ticks_mid SELECT 10 + g, now() - interval '40 days' FROM generate_series(1, 3) g"
    )
    tables = [{"table": "ticks", "timestamp": "at", "key": "id", "age": "30d"}]
    summary = execute(database, location, tables, stages=("tables",), batch_size=2)
    section = summary["tables"]["ticks"]
    assert [p["name"] for p in section["partitions"]] == ["public.ticks_old"]
    assert section["deleted"] == 4
    assert {r[0] for r in conn.execute("SELECT id FROM ticks")} == {4, 5}
