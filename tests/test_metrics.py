from __future__ import annotations

import datetime as dt
import math
import re
import time
from pathlib import Path

import pytest
from conftest import run_cli, seed_job
from test_orphans import HOUR, put
from test_status import DAY, app_config, seed_events

from retention.interfaces import metrics

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
_LABEL_VALUE = r'"(?:[^"\\\n]|\\\\|\\"|\\n)*"'
_SAMPLE = re.compile(
    rf"^(?P<name>{_NAME})"
    rf"(?:\{{(?P<labels>(?:{_LABEL_NAME}={_LABEL_VALUE})(?:,{_LABEL_NAME}={_LABEL_VALUE})*)?\}})?"
    r" (?P<value>\S+)(?: (?P<ts>-?\d+))?$"
)
_PAIR = re.compile(rf"({_LABEL_NAME})=({_LABEL_VALUE})")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def _unescape(quoted: str) -> str:
    out, i, body = [], 0, quoted[1:-1]
    while i < len(body):
        if body[i] == "\\":
            out.append({"\\": "\\", '"': '"', "n": "\n"}[body[i + 1]])
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A strict reader of the Prometheus text format 0.0.4: every line well formed, one HELP and
    one TYPE per family before its samples, a family's samples together, no duplicate series,
    counters named *_total, values that are floats."""
    assert text.endswith("\n") and not text.endswith("\n\n"), "ends with exactly one newline"
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    helped: set[str] = set()
    typed: dict[str, str] = {}
    finished: set[str] = set()
    current: str | None = None
    for number, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {number}: {line!r}"
        assert line, f"{where}: empty line"
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                assert re.fullmatch(_NAME, name), where
                if name != current:
                    assert name not in finished, f"{where}: family split"
                    if current:
                        finished.add(current)
                    current = name
                if parts[1] == "HELP":
                    assert name not in helped, f"{where}: second HELP"
                    assert len(parts) == 4 and parts[3].strip(), f"{where}: empty HELP"
                    helped.add(name)
                else:
                    assert name not in typed, f"{where}: second TYPE"
                    assert len(parts) == 4 and parts[3] in TYPES, where
                    assert not any(key[0] == name for key in samples), f"{where}: TYPE late"
                    typed[name] = parts[3]
            continue
        match = _SAMPLE.match(line)
        assert match, f"{where}: not a sample"
        name = match["name"]
        assert name in typed and name in helped, f"{where}: sample before HELP/TYPE"
        assert name == current and name not in finished, f"{where}: family split"
        if typed[name] == "counter":
            assert name.endswith("_total"), f"{where}: counter not named *_total"
        labels = dict(_PAIR.findall(match["labels"] or ""))
        assert len(labels) == len(_PAIR.findall(match["labels"] or "")), f"{where}: label twice"
        assert not any(k.startswith("__") for k in labels), where
        key = (name, frozenset((k, _unescape(v)) for k, v in labels.items()))
        assert key not in samples, f"{where}: duplicate series"
        value = match["value"]
        assert value in ("NaN", "+Inf", "-Inf") or re.fullmatch(
            r"-?\d+(\.\d+)?([eE][-+]?\d+)?", value
        ), f"{where}: bad value"
        samples[key] = float(value)
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_the_strict_parser_rejects_what_scrapers_reject():
    good = '# HELP a_total x\n# TYPE a_total counter\na_total{k="v"} 1\n'
    assert parse(good)
    for bad in (
        "# TYPE a gauge\na 1\n",
        '# HELP a x\n# TYPE a gauge\na{k="v} 1\n',
        "# HELP a x\n# TYPE a gauge\na 1\na 2\n",
        "# HELP a x\n# TYPE a counter\na 1\n",
        "# HELP a x\n# TYPE a gauge\na one\n",
        "# HELP a x\n# TYPE a gauge\n# HELP b y\n# TYPE b gauge\nb 1\na 2\n",
        "# HELP 1a x\n# TYPE 1a gauge\n1a 1\n",
    ):
        with pytest.raises(AssertionError):
            parse(bad)


def test_rendering_escapes_label_values_and_help():
    family = metrics.Family(name="retention_x", kind="gauge", help='back\\slash\nnew "q"')
    family.add(1.5, policy='table:we"ird\\name\nx')
    family.add(float("nan"), policy="nan")
    family.add(None, policy="absent")
    text = metrics.render([family])
    assert '# HELP retention_x back\\\\slash\\nnew "q"\n' in text
    samples = parse(text)
    assert value(samples, "retention_x", policy='table:we"ird\\name\nx') == 1.5
    assert math.isnan(value(samples, "retention_x", policy="nan"))
    assert len(samples) == 2
    with pytest.raises(ValueError, match="invalid label name"):
        metrics.render(
            [
                metrics.Family(
                    name="ok",
                    kind="gauge",
                    help="h",
                    samples=[metrics.Sample(labels={"bad-name": "v"}, value=1)],
                )
            ]
        )


def test_metrics_show_the_figures_of_real_runs(conn, database, tmp_path):
    config, media, exports = app_config(tmp_path)
    conn.execute(
        "CREATE TABLE events (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL "
        "DEFAULT now(), path text)"
    )
    conn.execute("CREATE INDEX ON events (created_at, id)")
    for _ in range(3):
        seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=2))
    seed_events(conn, media, old=5, fresh=1, days=9)
    put(media, "orphan.jpg", age=5 * HOUR, data=b"o" * 1000)
    put(exports, "a.csv", age=3 * DAY, data=b"r" * 500)
    put(exports, "b.csv", age=3 * DAY, data=b"r" * 250)

    before = parse(run_cli("metrics", database=database, cwd=tmp_path).stdout)
    assert value(before, "retention_metrics_up") == 1
    assert value(before, "retention_backlog_rows", policy="jobs", status="succeeded") == 3
    assert value(before, "retention_backlog_rows", policy="table:events") == 5
    assert value(before, "retention_backlog_oldest_age_seconds", policy="table:events") > 8.9 * DAY
    assert ("retention_last_run_success", frozenset()) not in before

    run = run_cli("run", database=database, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=4))
    started = time.time()
    shown = run_cli("metrics", database=database, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    after = parse(shown.stdout)

    assert value(after, "retention_last_run_success") == 1
    assert value(after, "retention_last_run_complete") == 1
    assert 0 < value(after, "retention_last_run_duration_seconds") < 120
    assert started - 120 < value(after, "retention_last_run_timestamp_seconds") <= started + 1
    assert value(after, "retention_last_run_deleted_rows", target="jobs") == 3
    assert value(after, "retention_last_run_deleted_rows", target="table:events") == 5
    assert value(after, "retention_last_run_deleted_files", target="files") == 5
    assert value(after, "retention_last_run_deleted_bytes", target="files") == 500
    assert value(after, "retention_last_run_deleted_files", target="directories") == 2
    assert value(after, "retention_last_run_deleted_bytes", target="directories") == 750
    assert value(after, "retention_last_run_deleted_bytes", target="orphans") == 1000
    assert value(after, "retention_last_run_failed_files", target="orphans") == 0
    assert value(after, "retention_runs_total", kind="run", status="succeeded") == 1
    assert value(after, "retention_run_in_progress") == 0
    assert value(after, "retention_backlog_rows", policy="jobs", status="succeeded") == 1
    assert value(after, "retention_backlog_rows", policy="table:events") == 0
    assert value(after, "retention_outbox_files", state="pending") == 0
    assert value(after, "retention_policy_invalid") == 0


def test_failed_runs_and_outbox_failures_are_counted(conn, database, tmp_path):
    config, media, exports = app_config(tmp_path)
    conn.execute(
        "CREATE TABLE events (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL "
        "DEFAULT now(), path text)"
    )
    exports.rmdir()
    failed = run_cli("run", database=database, cwd=tmp_path)
    assert failed.returncode == 2 and "does not exist" in failed.stderr
    conn.execute(
        "INSERT INTO retention_file_outbox (root, path, source, attempts, last_error, "
        "enqueued_at) VALUES (%s, 'x.jpg', 'table:events.path', 3, 'EPERM', now() - interval "
        "'2 hours')",
        (str(media),),
    )
    samples = parse(run_cli("metrics", database=database, cwd=tmp_path).stdout)
    assert value(samples, "retention_runs_total", kind="run", status="failed") == 1
    assert value(samples, "retention_last_run_success") == 0
    assert value(samples, "retention_last_run_complete") == 0
    assert value(samples, "retention_outbox_files", state="failed") == 1
    assert value(samples, "retention_outbox_files", state="pending") == 1
    assert 1.9 * HOUR < value(samples, "retention_outbox_oldest_age_seconds") < 2.1 * HOUR


def test_output_is_written_atomically_for_the_textfile_collector(database, tmp_path):
    folder = tmp_path / "textfile"
    folder.mkdir()
    target = folder / "retention.prom"
    target.write_text("stale\n")
    result = run_cli("metrics", "--output", str(target), database=database, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert value(parse(target.read_text()), "retention_metrics_up") == 1
    assert sorted(p.name for p in folder.iterdir()) == ["retention.prom"]
    assert oct(target.stat().st_mode & 0o777) == "0o644"

    missing = run_cli(
        "metrics", "--output", str(tmp_path / "nope" / "r.prom"), database=database, cwd=tmp_path
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert not Path(tmp_path / "nope").exists()
