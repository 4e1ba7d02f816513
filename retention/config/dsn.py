"""Connection strings shown to people: any password replaced by ***."""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(conninfo: str | None) -> str:
    """The conninfo with any password replaced by ***."""
    if not conninfo:
        return ""
    text = _URL_PASSWORD.sub(r"\1***@", conninfo)
    text = re.sub(r"([?&]password=)[^&]*", r"\1***", text, flags=re.IGNORECASE)
    return _KV_PASSWORD.sub(r"\1***", text)
