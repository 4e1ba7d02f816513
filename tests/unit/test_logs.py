"""Log lines: one event per line whatever the data holds, secrets redacted."""

from __future__ import annotations

import logging
import sys

import pytest

from retention.interfaces import logs


def _format(message: str, *args: object, exc: bool = False, **extra: object) -> str:
    record = logging.LogRecord("retention.test", logging.WARNING, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    if exc:
        try:
            raise ValueError("bad\n2026-01-01T00:00:00 INFO retention.run.runner: forged")
        except ValueError:
            record.exc_info = sys.exc_info()
    return logs.StructuredFormatter().format(record)


@pytest.mark.parametrize(
    "name",
    [
        "x\n2026-12-01T00:00:00 INFO retention.run.runner: retention run 999 succeeded",
        "x\r2026-12-01T00:00:00 INFO forged",
        "x\x1b[2Kcleared",
        "a\u2028b",
    ],
)
def test_data_in_a_message_cannot_start_a_new_line(name):
    line = _format("could not delete %s under %s", name, "/root")
    assert "\n" not in line
    assert "\r" not in line
    assert "\x1b" not in line
    assert "\u2028" not in line
    assert line.count("could not delete ") == 1


def test_undecodable_names_are_escaped_not_crashing():
    name = b"caf\xe9.png".decode("utf-8", "surrogateescape")
    line = _format("could not delete %s", name)
    line.encode("utf-8")
    assert "caf\\udce9.png" in line


def test_extra_fields_and_tracebacks_stay_within_the_event():
    line = _format("boom", exc=True, path="a\nb", password_dsn="postgresql://u:secret@h/d")
    first, *rest = line.split("\n")
    assert "secret" not in line
    assert 'path="a\\nb"' in first
    assert rest
    assert all(part.startswith("  ") for part in rest)
