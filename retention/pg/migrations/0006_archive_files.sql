-- Copies of the files of deleted rows (archive_files = true on a [[tables]] policy): the outbox
-- entries of such a policy's rows say archive = true, and the drain copies each file into the
-- archive root (content-addressed, files/<sha256[:2]>/<sha256>) before it unlinks it. One row
-- here per file copied, inserted (and committed) after the copy is durable and before the
-- unlink: a crash in between leaves the file in place with its entry, and the next drain copies
-- it again and updates this row (one row per outbox entry: `outbox_id` is unique). A copy with
-- no row here is what a drain left that was killed before recording it: its file was not
-- unlinked (at-least-once). A table of its own rather than retention_archive_files with a kind:
-- those rows are batches of rows (a rows count, a format, a path unique per batch), these are
-- single files whose archive path many entries may share (two rows' files of the same content).
ALTER TABLE retention_file_outbox ADD COLUMN archive boolean NOT NULL DEFAULT false;

CREATE TABLE retention_archived_files (
    id bigserial PRIMARY KEY,
    run_id bigint REFERENCES retention_runs (id) ON DELETE SET NULL,
    outbox_id bigint NOT NULL UNIQUE,
    root text NOT NULL,
    path text NOT NULL,
    archive_path text NOT NULL,
    bytes bigint NOT NULL CHECK (bytes >= 0),
    sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    archived_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX retention_archived_files_run_idx ON retention_archived_files (run_id);
