"""Where the database is, and that no password is ever shown: redaction and the lookup order."""

from __future__ import annotations

import pytest

from retention import errors
from retention.config import dsn
from retention.config import settings as settings_mod
from retention.pg import database


@pytest.mark.parametrize(
    ("conninfo", "hidden"),
    [
        ("postgresql://app:s3cret@db:5432/app", "s3cret"),
        ("postgres://app:p%40ss@db/app?sslmode=require", "p%40ss"),
        ("postgresql://db/app?user=app&password=hunter2", "hunter2"),
        ("host=db user=app password=hunter2 dbname=app", "hunter2"),
        ("host=db password='with space' dbname=app", "with space"),
    ],
)
def test_redact_hides_passwords(conninfo, hidden):
    shown = dsn.redact(conninfo)
    assert hidden not in shown
    assert "***" in shown


def test_location_order(monkeypatch):
    for name in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGHOSTADDR", "PGSERVICE"):
        monkeypatch.delenv(name, raising=False)
    explicit = database.locate(settings_mod.Settings(database_url="postgresql://x@h/d"))
    assert explicit.source == "DATABASE_URL"
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    libpq_vars = database.locate(settings_mod.Settings())
    assert libpq_vars.source.startswith("PG* variables")
    assert libpq_vars.conninfo == ""
    monkeypatch.delenv("PGHOST")
    embedded = database.locate(settings_mod.Settings(), start=False)
    assert embedded.source == "embedded"


def test_a_bad_database_url_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="not a valid libpq"):
        database.locate(settings_mod.Settings(database_url="postgresql://a:b@h/d?bogus_param=1"))
