"""Legal holds: jobs and table rows that no retention path deletes while a hold is active.

from retention import holds
hold = holds.add(conn, settings, job_ids=[42], reason="case 2026-17", until="90d")
holds.release(conn, hold.id)
"""

from __future__ import annotations

from retention.holds.model import Counts, Hold, InForce
from retention.holds.store import add, counts, get, in_force, list_holds, release

__all__ = [
    "Counts",
    "Hold",
    "InForce",
    "add",
    "counts",
    "get",
    "in_force",
    "list_holds",
    "release",
]
