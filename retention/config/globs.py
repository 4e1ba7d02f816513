"""Shell-style globs (`*`, `?`, `[abc]`, `[!abc]`) as anchored POSIX regular expressions, so that
PostgreSQL (`~`) and Python agree on what a glob matches."""

from __future__ import annotations

import functools
import re

_SPECIAL = set(".^$+{}()|\\")


@functools.lru_cache(maxsize=512)
def to_regex(glob: str) -> str:
    """Translate a glob; raise ValueError for an unclosed bracket."""
    out: list[str] = ["^"]
    i = 0
    while i < len(glob):
        char = glob[i]
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            end = glob.find("]", i + 2 if glob[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end == -1:
                raise ValueError(f"glob {glob!r} has an unclosed '[' at position {i}")
            body = glob[i + 1 : end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            body = body.replace("\\", "\\\\")
            out.append("[" + ("^" if negate else "") + body + "]")
            i = end
        elif char in _SPECIAL:
            out.append("\\" + char)
        else:
            out.append(char)
        i += 1
    out.append("$")
    return "".join(out)


def matches(glob: str | None, value: str) -> bool:
    """Whether `value` matches `glob`; None matches everything. The whole value must match:
    Python's `$` also matches before a final newline, PostgreSQL's only at the end."""
    return glob is None or re.fullmatch(to_regex(glob), value, re.DOTALL) is not None
