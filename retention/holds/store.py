"""Placing, listing and releasing legal holds: every argument checked before anything is
written (a ConfigError naming what is wrong and how to fix it), one statement each."""

from __future__ import annotations

import datetime as dt
import getpass
import json
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
import pydantic
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from retention import errors
from retention.config import durations, globs, policies
from retention.config import settings as settings_mod
from retention.holds import conditions, model
from retention.pg import catalog, queries

KINDS = "--job-id, --queue, --task or --table"


def _present(conn: psycopg.Connection) -> bool:
    row = conn.execute(queries.text("holds_present")).fetchone()
    return bool(row and row[0])


def _require(conn: psycopg.Connection) -> None:
    if not _present(conn):
        raise errors.DatabaseError(
            "the database has no retention_holds table: run `retention migrate` once"
        )


def parse_until(value: str | None, now: dt.datetime) -> dt.datetime | None:
    """An expiry as a person gives it: a timestamp, or a duration from now; never in the past."""
    if value is None:
        return None
    try:
        moment = now + durations.parse_duration(value)
    except (ValueError, OverflowError):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise errors.ConfigError(
                f"--until {value!r} is neither a timestamp (2027-01-31, 2027-01-31T12:00:00+00:00) "
                "nor a duration from now (90d, 72h)"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
    if moment <= now:
        raise errors.ConfigError(
            f"--until {value!r} is in the past ({moment.isoformat()}): give a later time, or "
            "leave --until out for a hold that lasts until it is released"
        )
    return moment


def _glob(name: str, glob: str | None) -> str | None:
    if glob is None:
        return None
    if not glob:
        raise errors.ConfigError(f"--{name}: give a glob (e.g. 'emails' or 'reports.*')")
    try:
        return globs.to_regex(glob)
    except ValueError as exc:
        raise errors.ConfigError(f"--{name} {glob!r}: {exc}") from None


def _policy_table(
    conn: psycopg.Connection, settings: settings_mod.Settings, table: str
) -> tuple[catalog.Relation, catalog.Column]:
    """The relation of the enabled table policy `table` names, and its key column."""
    enabled = [policy for policy in settings.tables if policy.enabled]
    tables = ", ".join(dict.fromkeys(policy.table for policy in enabled)) or "none"
    relation = catalog.relation(conn, table)
    chosen = None
    if relation is not None:
        for policy in enabled:
            found = catalog.relation(conn, policy.table)
            if found is not None and found.oid == relation.oid:
                chosen = policy
                break
    if relation is None or chosen is None:
        raise errors.ConfigError(
            f"--table {table!r} is not the table of any enabled table policy (policy tables: "
            f"{tables}); a hold on rows names a [[tables]] policy's table"
        )
    key_name = chosen.key
    if key_name is None:
        primary = [
            cols for is_primary, cols in catalog.unique_keys(conn, relation.oid) if is_primary
        ]
        if not primary or len(primary[0]) != 1:
            raise errors.ConfigError(
                f"{relation.display} has no single-column primary key and its policy sets no "
                "`key`: set the policy's `key`, then place the hold"
            )
        key_name = primary[0][0]
    key = relation.columns.get(key_name)
    if key is None:
        raise errors.ConfigError(f"{relation.display} has no column {key_name!r} (its key)")
    return relation, key


def _cast(
    conn: psycopg.Connection, column: catalog.Column, values: Sequence[str], option: str
) -> list[str]:
    """The values cast to the column's type, as that type's text (what the deletes cast back)."""
    out = []
    for value in values:
        try:
            with conn.transaction():
                row = conn.execute(
                    sql.SQL("SELECT %s::text::{}::text").format(column.cast), [value]
                ).fetchone()
        except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
            reason = (exc.diag.message_primary or str(exc)).strip()
            raise errors.ConfigError(
                f"{option} {value!r} is not a valid {column.type_sql} (the type of "
                f"{column.name}): {reason}"
            ) from None
        assert row is not None
        out.append(row[0])
    return out


def _where(
    conn: psycopg.Connection, relation: catalog.Relation, where: str | Mapping[str, Any]
) -> dict[str, list[str]]:
    """A filter of the same form as a policy's `where`, each value cast to its column."""
    if isinstance(where, str):
        try:
            parsed = json.loads(where)
        except json.JSONDecodeError as exc:
            raise errors.ConfigError(
                f"--where {where!r} is not JSON ({exc.msg}): give an object such as "
                "'{\"camera_id\": 3}' or '{\"camera_id\": [3, 4]}'"
            ) from None
    else:
        parsed = dict(where)
    if not isinstance(parsed, dict) or not parsed:
        raise errors.ConfigError(
            "--where must be a JSON object of column = value or [values], e.g. '{\"camera_id\": 3}'"
        )
    try:
        policies.TablePolicy.model_validate({"table": "t", "timestamp": "t", "where": parsed})
    except pydantic.ValidationError as exc:
        messages = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise errors.ConfigError(f"--where: {messages}") from None
    out: dict[str, list[str]] = {}
    for name, wanted in parsed.items():
        column = relation.columns.get(name)
        if column is None:
            raise errors.ConfigError(
                f"--where: {relation.display} has no column {name!r} (columns: "
                f"{', '.join(relation.columns)})"
            )
        if not conditions.filterable(column):
            raise errors.ConfigError(
                f"--where: {relation.display}.{name} is {column.type_sql}, which a hold cannot "
                "compare; filter on a column of numbers, text, dates, booleans or uuids"
            )
        items = wanted if isinstance(wanted, list) else [wanted]
        text = ["true" if i is True else "false" if i is False else str(i) for i in items]
        out[name] = _cast(conn, column, text, f"--where {name}:")
    return out


def add(
    conn: psycopg.Connection,
    settings: settings_mod.Settings,
    *,
    reason: str,
    job_ids: Sequence[int] = (),
    queue: str | None = None,
    task: str | None = None,
    table: str | None = None,
    keys: Sequence[str] = (),
    where: str | Mapping[str, Any] | None = None,
    until: str | dt.datetime | None = None,
    by: str | None = None,
) -> model.Hold:
    """Place a hold; every argument is checked first, and nothing is written when one is wrong.
    `until` is a timestamp or a duration from now. Returns the hold as stored."""
    named = [
        name
        for name, given in (
            ("--job-id", bool(job_ids)),
            ("--queue", queue is not None),
            ("--task", task is not None),
            ("--table", table is not None),
        )
        if given
    ]
    if len(named) != 1:
        raise errors.ConfigError(
            f"a hold names one kind of thing: give exactly one of {KINDS} "
            f"({'none' if not named else ' and '.join(named)} given)"
        )
    if (keys or where is not None) and table is None:
        raise errors.ConfigError("--key and --where name rows of a table: give --table too")
    if not reason or not reason.strip():
        raise errors.ConfigError("--reason is required: say why these are held (e.g. a case id)")
    now = dt.datetime.now(dt.UTC)
    expires = until if isinstance(until, dt.datetime) else parse_until(until, now)
    if isinstance(until, dt.datetime) and until <= now:
        raise errors.ConfigError(f"until {until.isoformat()} is in the past")
    _require(conn)
    values: dict[str, Any] = {
        "job_ids": None,
        "queue_glob": queue,
        "queue_re": _glob("queue", queue),
        "task_glob": task,
        "task_re": _glob("task", task),
        "table_name": None,
        "keys": None,
        "filter": None,
        "reason": reason.strip(),
        "placed_by": by or getpass.getuser(),
        "expires_at": expires,
    }
    if job_ids:
        ids = sorted(set(job_ids))
        found = {row[0] for row in conn.execute(queries.text("existing_job_ids"), {"ids": ids})}
        missing = [i for i in ids if i not in found]
        if missing:
            raise errors.ConfigError(
                f"--job-id: no job with id {', '.join(map(str, missing))} (check the ids with "
                "procrastinate's shell or the jobs table)"
            )
        values["job_ids"] = ids
    if table is not None:
        relation, key = _policy_table(conn, settings, table)
        if not keys and where is None:
            raise errors.ConfigError(
                f"--table {table}: name its rows with --key (values of {key.name}) and/or --where"
            )
        values["table_name"] = relation.display
        values["keys"] = _cast(conn, key, [str(k) for k in keys], "--key") if keys else None
        values["filter"] = Jsonb(_where(conn, relation, where)) if where is not None else None
    with conn.transaction():
        row = conn.execute(queries.text("hold_insert"), values).fetchone()
    assert row is not None
    return get(conn, row[0])


def _list(conn: psycopg.Connection, *, include_inactive: bool) -> list[model.Hold]:
    statement = queries.get("holds_list").format(active=conditions.active())
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(statement, {"all": include_inactive}).fetchall()
    return [model.Hold.from_row(row) for row in rows]


def list_holds(conn: psycopg.Connection, *, include_inactive: bool = False) -> list[model.Hold]:
    """The active holds (with `include_inactive`: released and expired ones too), newest first."""
    if not _present(conn):
        return []
    return _list(conn, include_inactive=include_inactive)


def get(conn: psycopg.Connection, hold_id: int) -> model.Hold:
    for hold in _list(conn, include_inactive=True):
        if hold.id == hold_id:
            return hold
    raise errors.ConfigError(f"no hold with id {hold_id} (see `retention hold list --all`)")


def release(conn: psycopg.Connection, hold_id: int, *, by: str | None = None) -> model.Hold:
    """Release a hold: what it held is eligible again at the next run."""
    _require(conn)
    with conn.transaction():
        row = conn.execute(
            queries.text("hold_release"), {"id": hold_id, "by": by or getpass.getuser()}
        ).fetchone()
        if row is None:
            found = conn.execute(queries.text("hold_get"), {"id": hold_id}).fetchone()
            if found is None:
                raise errors.ConfigError(
                    f"no hold with id {hold_id} (see `retention hold list --all`)"
                )
            raise errors.ConfigError(f"hold {hold_id} was already released at {found[1]}")
    return get(conn, hold_id)


def counts(conn: psycopg.Connection) -> model.Counts:
    """Active holds by kind (none when the database predates holds)."""
    if not _present(conn):
        return model.Counts()
    row = conn.execute(queries.get("holds_counts").format(active=conditions.active())).fetchone()
    if row is None:
        return model.Counts()
    return model.Counts(jobs=int(row[0]), rows=int(row[1]), next_expiry=row[2])


def in_force(conn: psycopg.Connection) -> model.InForce:
    """The active holds now, for a run's summary (none when the database predates holds)."""
    if not _present(conn):
        return model.InForce()
    statement = queries.get("holds_in_force").format(active=conditions.active())
    row = conn.execute(statement, {"limit": model.InForce.IDS_LIMIT}).fetchone()
    if row is None:
        return model.InForce()
    return model.InForce(
        active=int(row[0]), jobs=int(row[1]), rows=int(row[2]), ids=tuple(int(i) for i in row[3])
    )
