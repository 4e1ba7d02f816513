"""The catalog of Procrastinate's tables as each supported Procrastinate release (major and
minor version) defines it: the lines that procrastinate_catalog (retention/pg/sql/jobs_path.sql)
reads from a database whose schema that release applied. The set-based jobs path
(retention.jobs.paths) runs only where the catalog shows exactly these lines.

To add a version: apply its schema to an empty database and print the lines with
`python -m retention.jobs.schemas DATABASE_URL`; the releases 3.7 to 3.10 all define the same
schema (their schema.sql files are identical)."""

from __future__ import annotations

import sys

# Procrastinate 3.7 to 3.10 (procrastinate/sql/schema.sql is the same file in every release).
_V3_7: tuple[str, ...] = (
    "foreign key procrastinate_events FOREIGN KEY (job_id) REFERENCES procrastinate_jobs(id) ON DELETE CASCADE",
    "foreign key procrastinate_jobs FOREIGN KEY (worker_id) REFERENCES procrastinate_workers(id) ON DELETE SET NULL",
    "foreign key procrastinate_periodic_defers FOREIGN KEY (job_id) REFERENCES procrastinate_jobs(id)",
    "function procrastinate_notify_queue_abort_job_v1 6cb451c0d2bdc3ee887a6add5d245e08",
    "function procrastinate_notify_queue_job_inserted_v1 a372a7f2b246d1c6b36d831e6902742f",
    "function procrastinate_trigger_abort_requested_events_procedure_v1 f6746ca4cfc5c706f77b760a66f7e737",
    "function procrastinate_trigger_function_scheduled_events_v1 f57968b7c7af34a7b7bf51f0f8e5a6c9",
    "function procrastinate_trigger_function_status_events_insert_v1 79541f1a6c1fc42dd0b04cb13b8cd297",
    "function procrastinate_trigger_function_status_events_update_v1 ee220b0b1fd6ff4d009980d935d90188",
    "function procrastinate_unlink_periodic_defers_v1 417f72747c688def1d84cf2ccad14f1d",
    "table procrastinate_events r",
    "table procrastinate_jobs r",
    "table procrastinate_periodic_defers r",
    "trigger procrastinate_jobs procrastinate_jobs_notify_queue_job_aborted_v1 O CREATE TRIGGER procrastinate_jobs_notify_queue_job_aborted_v1 AFTER UPDATE OF abort_requested ON procrastinate_jobs FOR EACH ROW WHEN (((old.abort_requested = false) AND (new.abort_requested = true) AND (new.status = 'doing'::procrastinate_job_status))) EXECUTE FUNCTION procrastinate_notify_queue_abort_job_v1()",
    "trigger procrastinate_jobs procrastinate_jobs_notify_queue_job_inserted_v1 O CREATE TRIGGER procrastinate_jobs_notify_queue_job_inserted_v1 AFTER INSERT ON procrastinate_jobs FOR EACH ROW WHEN ((new.status = 'todo'::procrastinate_job_status)) EXECUTE FUNCTION procrastinate_notify_queue_job_inserted_v1()",
    "trigger procrastinate_jobs procrastinate_trigger_abort_requested_events_v1 O CREATE TRIGGER procrastinate_trigger_abort_requested_events_v1 AFTER UPDATE OF abort_requested ON procrastinate_jobs FOR EACH ROW WHEN ((new.abort_requested = true)) EXECUTE FUNCTION procrastinate_trigger_abort_requested_events_procedure_v1()",
    "trigger procrastinate_jobs procrastinate_trigger_delete_jobs_v1 O CREATE TRIGGER procrastinate_trigger_delete_jobs_v1 BEFORE DELETE ON procrastinate_jobs FOR EACH ROW EXECUTE FUNCTION procrastinate_unlink_periodic_defers_v1()",
    "trigger procrastinate_jobs procrastinate_trigger_scheduled_events_v1 O CREATE TRIGGER procrastinate_trigger_scheduled_events_v1 AFTER INSERT OR UPDATE ON procrastinate_jobs FOR EACH ROW WHEN (((new.scheduled_at IS NOT NULL) AND (new.status = 'todo'::procrastinate_job_status))) EXECUTE FUNCTION procrastinate_trigger_function_scheduled_events_v1()",
    "trigger procrastinate_jobs procrastinate_trigger_status_events_insert_v1 O CREATE TRIGGER procrastinate_trigger_status_events_insert_v1 AFTER INSERT ON procrastinate_jobs FOR EACH ROW WHEN ((new.status = 'todo'::procrastinate_job_status)) EXECUTE FUNCTION procrastinate_trigger_function_status_events_insert_v1()",
    "trigger procrastinate_jobs procrastinate_trigger_status_events_update_v1 O CREATE TRIGGER procrastinate_trigger_status_events_update_v1 AFTER UPDATE OF status ON procrastinate_jobs FOR EACH ROW EXECUTE FUNCTION procrastinate_trigger_function_status_events_update_v1()",
)

KNOWN: dict[str, tuple[str, ...]] = {version: _V3_7 for version in ("3.7", "3.8", "3.9", "3.10")}


def release(version: str) -> str:
    """A Procrastinate version's key in KNOWN: its major and minor numbers ("3.10.0" -> "3.10")."""
    return ".".join(version.split(".")[:2])


def main(argv: list[str]) -> int:
    """Print the catalog lines of the database at argv[0], sorted: an entry for KNOWN."""
    import psycopg

    from retention.pg import queries

    with psycopg.connect(argv[0]) as conn:
        lines = {row[0] for row in conn.execute(queries.text("procrastinate_catalog"))}
    for line in sorted(lines):
        print(repr(line) + ",")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
