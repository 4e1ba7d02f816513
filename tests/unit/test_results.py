"""The typed results: their JSON, stop reasons, and reading stored summaries of any version."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from retention.engine import batches, results

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def _walk(**fields: object) -> results.Walk:
    return results.Walk(**fields)  # type: ignore[arg-type]


def test_stop_reasons_that_end_a_run():
    assert results.StopReason.ABORTED.ends_run
    assert results.StopReason.TIME_BUDGET.ends_run
    assert not results.StopReason.LOCK_CONTENTION.ends_run
    assert not results.StopReason.DRAIN_BUSY.ends_run
    assert json.dumps({"stopped": results.StopReason.TIME_BUDGET}) == (
        '{"stopped": "time budget spent"}'
    )


def test_jobs_section_leaves_events_out_when_not_counted():
    counted = results.JobsSection(walk=_walk(deleted=3, counts={"events": 9}))
    uncounted = results.JobsSection(walk=_walk(deleted=3))
    assert counted.to_json()["events"] == 9
    assert "events" not in uncounted.to_json()
    assert uncounted.to_json()["deleted"] == 3


def test_walk_figures_are_plain_json():
    walk = _walk(
        deleted=2,
        by={"status": {"succeeded": 2}},
        oldest=NOW,
        samples=(7, 8),
        stopped=results.StopReason.LOCK_CONTENTION,
        resume=results.Resume(segment="s", after=(NOW, 8)),
    )
    data = results.JobsSection(walk=walk).to_json()
    assert data["oldest"] == NOW.isoformat()
    assert data["samples"] == [7, 8]
    assert data["stopped"] == "lock contention"
    assert data["resume"] == {"segment": "s", "after": [NOW.isoformat(), 8]}
    json.dumps(data)


def test_table_section_adds_partitions_to_the_walk():
    drop = results.PartitionDrop(name="p1", rows=10, rows_exact=False, child_rows=4, files_queued=3)
    section = results.TableSection(
        walk=_walk(deleted=5, counts={"child_rows": 1, "files_queued": 2}),
        cutoff=NOW,
        partitions=(drop, drop),
        warnings=("no index",),
    )
    data = section.to_json()
    assert data["deleted"] == 5
    assert data["child_rows"] == 1 + 4 + 4
    assert data["files_queued"] == 2 + 3 + 3
    assert data["partitions_dropped"] == 2
    assert data["partition_rows"] == 20
    assert data["cutoff"] == NOW.isoformat()
    assert "partition_errors" not in data


def test_a_stop_in_the_partitions_is_the_tables_stop():
    section = results.TableSection(
        walk=_walk(), cutoff=NOW, stopped_in_partitions=results.StopReason.ABORTED
    )
    assert section.stopped is results.StopReason.ABORTED
    assert section.to_json()["stopped"] == "aborted"


def test_sweep_stage_totals_its_roots():
    one = results.SweepSection(walk=_walk(deleted=2, counts={"bytes": 10, "missing": 1}))
    two = results.SweepSection(walk=_walk(deleted=3, counts={"bytes": 5, "failed": 1}))
    stage = results.SweepStage(roots={"/a": one, "/b": two})
    data = stage.to_json()
    assert (data["deleted"], data["bytes"], data["failed"]) == (5, 15, 1)
    assert data["roots"]["/a"]["missing"] == 1
    assert "missing" not in data["roots"]["/b"]


def test_run_summary_json_has_its_version_and_stages_in_order():
    summary = results.RunSummary(
        run_id=4,
        kind="run",
        dry_run=True,
        status="succeeded",
        sections={
            "jobs": results.JobsSection(walk=_walk(deleted=1)),
            "files": results.OutboxSection(deleted=2, bytes=3),
        },
        seconds=1.5,
    )
    data = summary.to_json()
    assert data["summary_version"] == results.SUMMARY_VERSION == 1
    assert data["complete"] is True
    assert "stopped" not in data
    assert "error" not in data
    assert [key for key in data if key in ("jobs", "files")] == ["jobs", "files"]
    stopped = results.RunSummary(
        run_id=4, kind="run", dry_run=False, status="succeeded", stopped=results.StopReason.ABORTED
    )
    assert stopped.complete is False
    assert stopped.to_json()["stopped"] == "aborted"


def test_totals_read_a_summary_back():
    summary = results.RunSummary(
        run_id=1,
        kind="run",
        dry_run=False,
        status="succeeded",
        sections={
            "jobs": results.JobsSection(walk=_walk(deleted=4)),
            "tables": results.TablesStage(
                tables={"events": results.TableSection(walk=_walk(deleted=6), cutoff=NOW)}
            ),
            "files": results.OutboxSection(deleted=2, bytes=100, failed=1),
            "orphans": results.SweepStage(
                roots={"/r": results.SweepSection(walk=_walk(deleted=1, counts={"bytes": 5}))}
            ),
        },
    )
    totals = summary.totals()
    assert totals.deleted == {"jobs": 4, "table:events": 6, "files": 2, "orphans": 1}
    assert totals.bytes == 105
    assert totals.files["files"].failed == 1
    assert totals.complete


@pytest.mark.parametrize(
    "stored",
    [
        None,
        {},
        [],
        {"jobs": "garbage", "tables": 3, "files": None},
        {"jobs": {"deleted": "not a number"}},
    ],
)
def test_totals_of_damaged_or_empty_summaries_are_empty(stored):
    totals = results.RunTotals.from_json(stored)
    assert totals.bytes == 0
    assert all(value == 0 for value in totals.deleted.values())


def test_totals_read_version_0_summaries_with_stopped_among_the_tables():
    stored = {
        "jobs": {"deleted": 2},
        "tables": {"events": {"deleted": 3}, "stopped": "time budget spent"},
        "complete": False,
    }
    totals = results.RunTotals.from_json(stored)
    assert totals.deleted == {"jobs": 2, "table:events": 3}
    assert not totals.complete


def test_the_engine_freezes_what_it_accumulated():
    result = batches.Result(target="t", dry_run=False)
    result.deleted = 3
    result.counts["events"] = 5
    result.by["status"]["failed"] += 3
    result.samples.extend([1, 2])
    frozen = result.freeze()
    result.counts["events"] = 99
    result.by["status"]["failed"] = 99
    result.samples.append(3)
    assert frozen.counts == {"events": 5}
    assert frozen.by == {"status": {"failed": 3}}
    assert frozen.samples == (1, 2)


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        (dt.timedelta(milliseconds=200), 200),
        (dt.timedelta(microseconds=500), 1),
        (dt.timedelta(microseconds=1), 1),
        (dt.timedelta(milliseconds=1, microseconds=1), 2),
    ],
)
def test_a_lock_timeout_is_never_sent_as_zero(timeout, expected):
    limits = batches.Limits(
        batch_size=10, max_batch_seconds=1.0, lock_timeout=timeout, deadline=0.0
    )
    assert limits.lock_timeout_ms == expected
