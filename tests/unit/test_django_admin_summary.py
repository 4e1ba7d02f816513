"""A run's per-target rows on its admin page, from the stored summary of any version: the real
shape a run writes, an older one, and data that is not a summary at all (never a failure)."""

from __future__ import annotations

import datetime as dt

from retention.contrib.django import admin_views
from retention.engine import results


def test_a_run_summary_is_one_row_per_target_in_stage_order() -> None:
    summary = results.RunSummary(
        run_id=7,
        kind="run",
        dry_run=False,
        status="succeeded",
        sections={
            "jobs": results.JobsSection(
                walk=results.Walk(
                    deleted=5,
                    counts={"events": 15},
                    by={"status": {"succeeded": 4, "failed": 1}},
                    oldest=dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
                )
            ),
            "tables": results.TablesStage(
                tables={
                    "shop_photo": results.TableSection(
                        walk=results.Walk(deleted=3, counts={"child_rows": 6, "files_queued": 3}),
                        cutoff=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                        warnings=("no index on taken_at",),
                    )
                }
            ),
            "files": results.OutboxSection(deleted=3, bytes=3 * 1024, failed=1, pending=1),
        },
    ).to_json()
    assert admin_views.targets(summary) == [
        admin_views.Target(
            name="jobs",
            deleted=5,
            details="failed: 1; succeeded: 4; events: 15; oldest finished 2026-01-02T00:00:00+00:00",
        ),
        admin_views.Target(
            name="table shop_photo",
            deleted=3,
            details="child_rows: 6; files_queued: 3; cutoff 2026-01-01T00:00:00+00:00; "
            "no index on taken_at",
        ),
        admin_views.Target(name="files", deleted=3, details="3.0 KiB, failed: 1, pending: 1"),
    ]


def test_older_or_odd_summaries_show_what_they_hold() -> None:
    # Version 0 kept `stopped` among the tables; a failed run may have recorded nothing.
    old = {"tables": {"events": {"deleted": "2"}, "stopped": None}, "orphans": {"deleted": 1}}
    assert [(t.name, t.deleted) for t in admin_views.targets(old)] == [
        ("table events", 2),
        ("orphans", 1),
    ]
    for nothing in (None, {}, [], "text", {"jobs": "not a section", "tables": 3}):
        assert admin_views.targets(nothing) == []  # type: ignore[arg-type]
