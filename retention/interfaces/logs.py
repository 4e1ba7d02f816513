"""Log lines with structure: `time level logger: message key=value ...` on stderr, one event per
line: control characters and undecodable names in the data are escaped, a traceback's lines are
indented, and connection strings are redacted."""

from __future__ import annotations

import json
import logging
import re
import sys

from retention.config import dsn

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """`text` on one line: control and line-separator characters as backslash escapes, lone
    surrogates (undecodable file name bytes) as \\udcXX."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class StructuredFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        line = (
            f"{self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} {record.levelname} "
            f"{record.name}: {escape(dsn.redact(record.getMessage()))}"
        )
        if fields:
            line += " " + " ".join(
                f"{key}={escape(dsn.redact(json.dumps(value, default=str, sort_keys=True)))}"
                for key, value in sorted(fields.items())
            )
        if record.exc_info:
            trace = dsn.redact(self.formatException(record.exc_info))
            line += "".join(f"\n  {escape(part)}" for part in trace.splitlines())
        return line


class RunResultFilter(logging.Filter):
    """Procrastinate logs a finished job's whole result: for a retention task that is the run's
    summary (1-2 KB on one line). Unless our logs are at DEBUG, the line ends with the run's
    totals instead (`retention status` and the ledger keep the summary)."""

    def filter(self, record: logging.LogRecord) -> bool:
        result = getattr(record, "result", None)
        if not (isinstance(result, dict) and "summary_version" in result):
            return True
        if logging.getLogger("retention").isEnabledFor(logging.DEBUG):
            return True
        totals = {
            name: section["deleted"]
            for name, section in result.items()
            if isinstance(section, dict) and isinstance(section.get("deleted"), int)
        }
        head = record.getMessage().split(" - Result: ", 1)[0]
        deleted = ", ".join(f"{name} {count}" for name, count in totals.items())
        record.msg = "%s - run #%s %s: %s"
        record.args = (head, result.get("run_id"), result.get("status"), deleted or "nothing")
        record.result = {"run_id": result.get("run_id"), "status": result.get("status")}
        return True


def shorten_run_results() -> None:
    """Install RunResultFilter on the logger of Procrastinate's job outcomes, once."""
    outcomes = logging.getLogger("procrastinate.worker")
    if not any(isinstance(f, RunResultFilter) for f in outcomes.filters):
        outcomes.addFilter(RunResultFilter())


def configure(*, verbose: bool = False) -> None:
    """Debug with --verbose; info when stderr is not a terminal (a terminal has the progress
    bar); warnings otherwise."""
    root = logging.getLogger("retention")
    level = (
        logging.DEBUG if verbose else logging.INFO if not sys.stderr.isatty() else logging.WARNING
    )
    if any(getattr(h, "_retention", False) for h in root.handlers):
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(StructuredFormatter())
    handler._retention = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
