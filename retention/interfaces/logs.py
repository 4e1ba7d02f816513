"""Log lines with structure: `time level logger action message key=value ...` on stderr."""

from __future__ import annotations

import json
import logging
import sys

from retention.config import dsn

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class StructuredFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        line = (
            f"{self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} {record.levelname} "
            f"{record.name}: {dsn.redact(record.getMessage())}"
        )
        if fields:
            line += " " + " ".join(
                f"{key}={dsn.redact(json.dumps(value, default=str, sort_keys=True))}"
                for key, value in sorted(fields.items())
            )
        if record.exc_info:
            line += "\n" + dsn.redact(self.formatException(record.exc_info))
        return line


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
