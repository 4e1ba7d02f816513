"""The migrations ship inside the package, in order."""

from __future__ import annotations

from retention.pg import migrate


def test_migrations_ship_inside_the_package():
    names = [m.name for m in migrate.available()]
    assert names
    assert names == sorted(names)
    assert names[0].startswith("0001_")
