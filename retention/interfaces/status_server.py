"""`retention worker --http [HOST:]PORT`: the worker's health, metrics and status over HTTP.

    GET /healthz   200 `healthy: <why>`, or 503 `unhealthy: <why>` (the rule of
                   `retention status --check`, retention.interfaces.health)
    GET /metrics   the Prometheus text of `retention metrics` (text exposition format 0.0.4)
    GET /status    the JSON of `retention status --json`

Read-only: GET and HEAD; any other method is 405. Bound to 127.0.0.1 unless a host is given
(`--http 0.0.0.0:8080` to be scraped from elsewhere). Each request opens its own short-lived
connection to the database, in a thread of its own (so a slow database delays a probe, never the
worker); the server stops with the worker. No response holds a connection string: errors are
redacted, and the status is the one `retention status` prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from http import server as http_server
from typing import Any

from retention import errors
from retention.config import dsn
from retention.config import settings as settings_mod
from retention.interfaces import cli_state, health, metrics, report
from retention.pg import database

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
ENVIRONMENT_VARIABLE = "RETENTION_HTTP"
# The content type of the Prometheus text exposition format that `retention metrics` writes.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATUS_RUNS = 10
ALLOWED = "GET, HEAD"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Address:
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def parse_address(value: str) -> Address:
    """`PORT` (on 127.0.0.1), `HOST:PORT` or `[IPv6]:PORT`; a bad one is a ConfigError."""
    text = value.strip()
    host, _, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host or LOOPBACK
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535 or not port_text.isdigit() or any(c in host for c in " /[]"):
        raise errors.ConfigError(
            f"--http (or {ENVIRONMENT_VARIABLE}) {value!r}: expected PORT or HOST:PORT, a port "
            "from 0 to 65535, e.g. 8080 (on 127.0.0.1) or 0.0.0.0:8080 (every interface)"
        )
    return Address(host=host, port=port)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Response:
    status: http.HTTPStatus
    content_type: str
    body: str


def _text(status: http.HTTPStatus, body: str) -> Response:
    return Response(status=status, content_type="text/plain; charset=utf-8", body=body + "\n")


class Server(http_server.ThreadingHTTPServer):
    """The HTTP server of one worker: its settings and where its database is."""

    daemon_threads = True

    def __init__(
        self, address: Address, settings: settings_mod.Settings, location: database.Location
    ) -> None:
        self.settings = settings
        self.location = location
        if ":" in address.host:
            self.address_family = socket.AF_INET6
        super().__init__((address.host, address.port), Handler)

    def healthz(self) -> Response:
        try:
            with cli_state.ledger_connection(self.location) as conn:
                verdict = health.check(conn, self.settings)
        except errors.RetentionError as exc:
            return _text(http.HTTPStatus.SERVICE_UNAVAILABLE, f"unhealthy: {dsn.redact(str(exc))}")
        status = http.HTTPStatus.OK if verdict.healthy else http.HTTPStatus.SERVICE_UNAVAILABLE
        return _text(status, verdict.line())

    def metrics(self) -> Response:
        with cli_state.ledger_connection(self.location) as conn:
            text = metrics.exposition(conn, self.settings)
        return Response(status=http.HTTPStatus.OK, content_type=METRICS_CONTENT_TYPE, body=text)

    def status(self) -> Response:
        with cli_state.ledger_connection(self.location) as conn:
            data = report.status(conn, self.settings, limit=STATUS_RUNS)
        body = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
        return Response(
            status=http.HTTPStatus.OK, content_type="application/json; charset=utf-8", body=body
        )

    def respond(self, path: str) -> Response:
        route: dict[str, Callable[[], Response]] = {
            "/healthz": self.healthz,
            "/metrics": self.metrics,
            "/status": self.status,
        }
        found = route.get(path)
        if found is None:
            return _text(
                http.HTTPStatus.NOT_FOUND, f"not found: {path} (try /healthz, /metrics, /status)"
            )
        try:
            return found()
        except errors.RetentionError as exc:
            return _text(http.HTTPStatus.SERVICE_UNAVAILABLE, f"error: {dsn.redact(str(exc))}")


class Handler(http_server.BaseHTTPRequestHandler):
    server: Server

    def version_string(self) -> str:
        return "retention"

    def _send(self, response: Response, *, body: bool) -> None:
        data = response.body.encode("utf-8")
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if response.status == http.HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", ALLOWED)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _route(self) -> Response:
        path = self.path.split("?", 1)[0]
        try:
            return self.server.respond(path)
        except Exception as exc:  # one probe's failure is its answer, never the worker's
            logger.warning(
                "HTTP %s failed: %s",
                path,
                dsn.redact(str(exc)),
                extra={"action": "http_error", "path": path},
            )
            return _text(http.HTTPStatus.INTERNAL_SERVER_ERROR, f"error: {type(exc).__name__}")

    def do_GET(self) -> None:
        self._send(self._route(), body=True)

    def do_HEAD(self) -> None:
        self._send(self._route(), body=False)

    def _refuse(self) -> None:
        self._send(
            _text(http.HTTPStatus.METHOD_NOT_ALLOWED, f"read-only: {ALLOWED} only"), body=True
        )

    def __getattr__(self, name: str) -> Any:
        """Every other method (`do_POST`, `do_DELETE`, ...) is refused with 405."""
        if name.startswith("do_"):
            return self._refuse
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("HTTP " + format, *args, extra={"action": "http_request"})


@contextlib.contextmanager
def serving(
    address: Address | None, settings: settings_mod.Settings, location: database.Location
) -> Iterator[Server | None]:
    """Serve in a thread while the block runs (nothing when `address` is None); stopped, and
    its socket closed, when the block ends however it ends."""
    if address is None:
        yield None
        return
    try:
        server = Server(address, settings, location)
    except OSError as exc:
        raise errors.ConfigError(
            f"--http (or {ENVIRONMENT_VARIABLE}) {address.host}:{address.port}: cannot listen "
            f"there ({exc.strerror or exc}); choose another port or host"
        ) from None
    host, port = server.server_address[:2]
    bound = Address(host=str(host), port=int(port))
    thread = threading.Thread(target=server.serve_forever, name="retention-http", daemon=True)
    thread.start()
    logger.info(
        "serving /healthz, /metrics and /status on %s",
        bound.url,
        extra={"action": "http_serving", "url": bound.url},
    )
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        logger.info("stopped serving on %s", bound.url, extra={"action": "http_stopped"})
