"""The unit tier runs without PostgreSQL. No test here may ask for a database fixture (the root
conftest fails it before any fixture is set up), and libpq is pointed at a server that does not
exist: code that reaches for a database anyway fails at once instead of finding one."""

from __future__ import annotations

import pytest

from tests.helpers import PG_VARIABLES

NO_SERVER = "/nonexistent/the-unit-tier-has-no-database"


@pytest.fixture(autouse=True)
def _no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PG_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PGHOST", NO_SERVER)
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "1")
