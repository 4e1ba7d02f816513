"""`retention status --check` and `retention worker --http`: the health rule from the CLI and over
real HTTP from a real worker, on the real database: a failed run is unhealthy until a run
succeeds; /metrics is `retention metrics`, /status is `status --json`; read-only, loopback by
default, no password in any answer, gone when the worker stops."""

from __future__ import annotations

import http.client
import json
import re
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    Process,
    launcher,
    metric_value,
    parse_metrics,
    run_cli,
    shell_env,
    tables_toml,
    wait_for,
    workers,
)

PASSWORD = "h3-S3cret-pw"
URL = re.compile(r'serving /healthz, /metrics and /status on (http://\S+) action="http_serving"')


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    yield from launcher(tmp_path)


@pytest.fixture
def with_password(database: str) -> str:
    """The test database's conninfo with a password (the test server trusts, so it is accepted
    and ignored): one that must never be shown."""
    return f"{database} password={PASSWORD}"


def broken_config(tmp_path: Path) -> Path:
    """A policy on a table that does not exist: a run fails on the catalog check."""
    path = tmp_path / "broken.toml"
    path.write_text(tables_toml({"table": "no_such_table", "timestamp": "created_at"}))
    return path


def request(url: str, path: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    where = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=30)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        body = response.read().decode("utf-8")
        return response.status, dict(response.getheaders()), body
    finally:
        connection.close()


def serving(worker: Process) -> str:
    found = wait_for(lambda: URL.search(worker.output()), what="the worker's HTTP address")
    return found.group(1)


def test_status_check_follows_the_last_run(database, with_password, tmp_path):
    fresh = run_cli("status", "--check", database=with_password, cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert fresh.stdout.startswith("healthy: no run has succeeded yet, and none is due before ")
    assert fresh.stdout.count("\n") == 1

    failed = run_cli(
        "--config", str(broken_config(tmp_path)), "run", database=with_password, cwd=tmp_path
    )
    assert failed.returncode != 0
    check = run_cli("status", "--check", database=with_password, cwd=tmp_path)
    assert check.returncode == 1, check.stdout + check.stderr
    assert re.match(r"unhealthy: the last run #1 failed at .* UTC: invalid table", check.stdout)
    assert "no_such_table" in check.stdout
    assert check.stdout.count("\n") == 1
    as_json = run_cli("status", "--check", "--json", database=with_password, cwd=tmp_path)
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout) == {"healthy": False, "reason": check.stdout[11:-1]}

    ok = run_cli("run", database=with_password, cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    check = run_cli("status", "--check", database=with_password, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.startswith("healthy: the last run #2 succeeded at ")
    for result in (fresh, failed, check, as_json, ok):
        assert PASSWORD not in result.stdout + result.stderr


def test_worker_http_serves_health_metrics_and_status(start, conn, with_password, tmp_path):
    env = shell_env(with_password)
    worker = start("retention worker --http 0", env)
    url = serving(worker)
    assert url.startswith("http://127.0.0.1:"), url
    wait_for(lambda: workers(conn) == 1, what="the worker's row in procrastinate_workers")
    answers: list[str] = []

    def get(path: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
        status, headers, body = request(url, path, method)
        answers.append(json.dumps(headers) + body)
        return status, headers, body

    status, headers, body = get("/healthz")
    assert status == 200, body
    assert body.startswith("healthy: no run has succeeded yet")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"

    failed = run_cli("--config", str(broken_config(tmp_path)), "run", database=with_password)
    assert failed.returncode != 0
    status, _, body = get("/healthz")
    assert status == 503
    assert re.match(r"unhealthy: the last run #1 failed at .* UTC: invalid table", body)
    cli = run_cli("status", "--check", database=with_password)
    assert body == cli.stdout

    status, headers, body = get("/metrics")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse_metrics(body)
    assert metric_value(samples, "retention_last_run_success") == 0
    text = run_cli("metrics", database=with_password).stdout
    assert {name for name, _ in samples} == {name for name, _ in parse_metrics(text)}

    status, headers, body = get("/status")
    assert status == 200
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    shown = json.loads(body)
    from_cli = json.loads(run_cli("status", "--json", database=with_password).stdout)
    assert set(shown) == set(from_cli)
    assert [(r["id"], r["status"]) for r in shown["runs"]] == [(1, "failed")]
    assert [(r["id"], r["status"]) for r in from_cli["runs"]] == [(1, "failed")]

    ok = run_cli("run", database=with_password)
    assert ok.returncode == 0, ok.stderr
    status, _, body = get("/healthz")
    assert status == 200
    assert body.startswith("healthy: the last run #2 succeeded")
    assert get("/healthz", "HEAD")[0] == 200

    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        status, headers, _ = get("/status", method)
        assert status == 405, method
        assert headers["Allow"] == "GET, HEAD"
    status, _, body = get("/")
    assert status == 404
    assert "/healthz" in body

    for answer in answers:
        assert PASSWORD not in answer
        assert "password" not in answer.lower()
    assert PASSWORD not in worker.output()

    assert worker.terminate() == 0, worker.output()
    assert "stopped serving on " + url in worker.output()
    with pytest.raises(ConnectionRefusedError):
        request(url, "/healthz")


def test_retention_http_variable_and_bad_addresses(start, database):
    worker = start("retention worker", shell_env(database, RETENTION_HTTP="0"))
    url = serving(worker)
    assert url.startswith("http://127.0.0.1:")
    assert request(url, "/healthz")[0] == 200
    port = urllib.parse.urlsplit(url).port

    taken = run_cli("worker", "--http", f"127.0.0.1:{port}", database=database)
    assert taken.returncode == 2
    assert f"--http (or RETENTION_HTTP) 127.0.0.1:{port}: cannot listen there" in taken.stderr
    assert "Starting worker" not in taken.stderr
    assert worker.terminate() == 0, worker.output()

    for value in ("nonsense", "8080x", "70000", "host:", "a b:80"):
        bad = run_cli("worker", "--http", value, database=database)
        assert bad.returncode == 2, value
        assert f"--http (or RETENTION_HTTP) {value!r}: expected PORT or HOST:PORT" in bad.stderr
        assert "Starting worker" not in bad.stderr
