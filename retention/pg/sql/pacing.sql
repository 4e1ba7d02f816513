-- name: replication_lag --
-- Every standby (or logical subscriber) that replays WAL, as this role sees pg_stat_replication:
-- `visible` is false for a WAL sender whose details the role may not read (that needs
-- pg_read_all_stats, which pg_monitor includes); `replay_lag_seconds` is PostgreSQL's own
-- measure (NULL when it has none); `behind_bytes`, the WAL sent to it and not yet replayed.
-- WAL senders that never replay (pg_basebackup, pg_receivewal: no replay_lsn) are left out.
SELECT pid,
       coalesce(application_name, '') AS name,
       state IS NOT NULL AS visible,
       extract(epoch FROM replay_lag)::float8 AS replay_lag_seconds,
       replay_lsn::text AS replay_lsn,
       greatest(pg_wal_lsn_diff(sent_lsn, replay_lsn), 0)::float8 AS behind_bytes
  FROM pg_stat_replication
 WHERE state IS NULL OR (replay_lsn IS NOT NULL AND state <> 'backup')
 ORDER BY pid;
