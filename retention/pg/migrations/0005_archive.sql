-- Archive files: one row per file a batch wrote before it committed, inserted in that batch's
-- transaction, so a row here means the batch's rows were deleted. A file under the archive root
-- with no row here is what a batch left that did not commit (a crash between the file's fsync
-- and the commit): its rows were not deleted (at-least-once; restore dedupes by primary key).
CREATE TABLE retention_archive_files (
    id bigserial PRIMARY KEY,
    run_id bigint REFERENCES retention_runs (id) ON DELETE SET NULL,
    target text NOT NULL,
    path text NOT NULL UNIQUE,
    rows bigint NOT NULL CHECK (rows >= 0),
    bytes bigint NOT NULL CHECK (bytes >= 0),
    sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    format text NOT NULL,
    written_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX retention_archive_files_run_idx ON retention_archive_files (run_id);
