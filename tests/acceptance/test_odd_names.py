"""File names are bytes on disk: a name that is not UTF-8 is swept, reported and recorded like
any other (escaped losslessly where it is shown), never a crash."""

from __future__ import annotations

import json
import os
import time

import psycopg

from retention.files import safefs
from tests.helpers import run_cli

ODD = b"caf\xe9 \xff\\x.tmp"


def test_a_name_that_is_not_utf8_is_swept_and_shown_escaped(
    conn: psycopg.Connection, database, tmp_path
):
    root = tmp_path / "scratch"
    root.mkdir()
    odd = os.path.join(os.fsencode(root), ODD)
    with open(odd, "wb") as handle:
        handle.write(b"12345")
    stamp = time.time() - 3600
    os.utime(odd, (stamp, stamp))
    config = tmp_path / "retention.toml"
    config.write_text(f'[[directories]]\nroot = "{root}"\nage = "1s"\n', encoding="utf-8")

    plan = run_cli("--config", str(config), "run", "--dry-run", "--json", database=database)
    assert plan.returncode == 0, plan.stderr
    sample = json.loads(plan.stdout)["directories"]["roots"][str(root)]["sample"]
    shown = safefs.display(os.path.join(os.fsencode(root), ODD))
    assert sample == [shown]
    assert os.path.exists(odd)

    done = run_cli("--config", str(config), "run", "--json", database=database)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["directories"]["deleted"] == 1
    assert summary["directories"]["bytes"] == 5
    assert not os.path.exists(odd)
    row = conn.execute(
        "SELECT status, summary->'directories'->>'deleted' FROM retention_runs"
        " ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert row == ("succeeded", "1")
    status = run_cli("status", database=database)
    assert status.returncode == 0, status.stderr


def test_display_is_lossless_and_plain_text():
    for name in (ODD, b"plain.txt", "é.txt".encode(), b"a\\xe9", b"new\nline"):
        shown = safefs.display(name)
        shown.encode("utf-8")
        assert "\n" not in shown
        assert safefs.undisplay(shown) == name
    assert safefs.display(b"plain.txt") == "plain.txt"
    assert safefs.display("é.txt".encode()) == "é.txt"
