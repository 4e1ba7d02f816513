-- retention: no-transaction
-- Final events by type and time: finding jobs that finished before a cutoff costs O(eligible),
-- not O(table). Built without blocking writers; a failed build leaves an invalid index that the
-- next attempt drops first.
DROP INDEX CONCURRENTLY IF EXISTS retention_events_final_at_idx;
CREATE INDEX CONCURRENTLY retention_events_final_at_idx
    ON procrastinate_events (type, at, id)
    WHERE type IN ('succeeded', 'failed', 'cancelled', 'aborted');
