"""Connection strings shown to people: any password replaced by ***.

A whole conninfo (a `postgresql://` URL or `key=value` pairs) is read with libpq's own parser, so
what is hidden is exactly what libpq would send as the password, however it is written (quoted,
with escaped spaces, percent-encoded, in the URL's query). Free text that merely contains one (a
log line, an error message) is scanned for URLs, each read with libpq where possible, and for
`password=` pairs read as libpq's lexer reads them. Whatever cannot be parsed is hidden
conservatively: everything after `://user:` or after `password=`.
"""

from __future__ import annotations

import re
import urllib.parse

import psycopg
from psycopg import conninfo as libpq

MASK = "***"
SECRET_KEYS = frozenset({"password", "sslpassword"})

_URL_SCHEMES = ("postgresql://", "postgres://")
# A URL in free text: a scheme, then anything up to a space or a quote.
_URL_START = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://")
_URL_STOP = re.compile(r"[\s'\"`<>]")
_TRAILING = ".,;:!?)]}"
# `password = value` (or a quoted `"password": value`, as in JSON) as libpq's lexer reads it: a quoted value, backslash escapes inside (up to
# the end of the text when the quote is never closed), or an unquoted one up to a space, where a
# backslash escapes the next character (`abc\ def` is one value). A run of backslashes escapes
# the character after it, so text escaped once more (JSON, a repr) is hidden as well.
_KV_SECRET = re.compile(
    r"""(?P<key>\b\w*password\s*=\s*|\b\w*password["']\s*:\s*)"""
    r"""(?P<value>'(?:[^'\\]|\\.)*(?:'|\\?$)|"(?:[^"\\]|\\.)*(?:"|\\?$)|(?:\\+.?|[^\s\\])+)""",
    re.IGNORECASE | re.DOTALL,
)
_CONNINFO_HINT = re.compile(r"://|\b\w*pass(?:word)?\s*=", re.IGNORECASE)


def redact(conninfo: str | None) -> str:
    """The conninfo, or the text containing conninfos, with every password replaced by ***."""
    if not conninfo:
        return ""
    params = _parse(conninfo)
    if params is None:
        return redact_text(conninfo)
    return _redact_parsed(conninfo, params)


def redact_text(text: str) -> str:
    """Free text with every password in the URLs and `password=` pairs it contains hidden. The
    text is read from left to right: a URL is read whole (a `password=` in its query is its own),
    a `password=` value is hidden whole (a `://` inside it is part of the password)."""
    if not text:
        return ""
    pieces: list[str] = []
    position = 0
    while position < len(text):
        pair = _KV_SECRET.search(text, position)
        url = _URL_START.search(text, position)
        if url is not None and (pair is None or url.start() < pair.start()):
            end = _url_end(text, url)
            pieces += [text[position : url.start()], _redact_url_token(text[url.start() : end])]
            position = max(end, url.end())
        elif pair is not None:
            pieces += [text[position : pair.start()], _hide_pair(pair)]
            position = max(pair.end(), pair.start() + 1)
        else:
            pieces.append(text[position:])
            break
    return "".join(pieces)


def looks_like_conninfo(text: str) -> bool:
    """Whether the text may hold a connection string (a URL, a password pair, or key=value
    pairs libpq accepts): such a value is never echoed in an error message."""
    if _CONNINFO_HINT.search(text):
        return True
    if "=" not in text:
        return False
    params = _parse(text)
    return bool(params)


def _parse(conninfo: str) -> dict[str, str] | None:
    """libpq's reading of the conninfo, or None when it is not one (libpq would stop at a NUL:
    such text is never taken as a conninfo, what follows the NUL could hold a password)."""
    if "\x00" in conninfo:
        return None
    try:
        return {k: str(v) for k, v in libpq.conninfo_to_dict(conninfo).items()}
    except (psycopg.Error, ValueError, TypeError):
        return None


def _redact_parsed(conninfo: str, params: dict[str, str]) -> str:
    """A conninfo libpq parses: unchanged without a password; masked in place (a URL stays a
    URL, pairs keep their order) when libpq then reads exactly *** as each secret and every other
    parameter as before; else rebuilt from libpq's reading, each secret replaced."""
    if not SECRET_KEYS & params.keys():
        if _password_misread(conninfo):
            head, _, rest = conninfo.strip().partition("://")
            return f"{head}://{rest[: rest.index(':') + 1]}{MASK}"
        return conninfo
    masked_params = {k: MASK if k in SECRET_KEYS else v for k, v in params.items()}
    if conninfo.strip().lower().startswith(_URL_SCHEMES):
        masked = _mask_url(conninfo.strip())
    else:
        masked = _redact_pairs(conninfo)
    if _parse(masked) == masked_params:
        return masked
    return libpq.make_conninfo("", **masked_params)


def _password_misread(conninfo: str) -> bool:
    """A URL whose password holds an unencoded '/' (`postgresql://u:x/y@h/db`: libpq reads `u:x`
    as host and port and sends no password, but `x/y` is the user's password all the same) or
    '@' (`postgresql://u:@x@h/db`): a ':' before the first '/' and an '@' after it in the path,
    or two '@' before it."""
    text = conninfo.strip()
    if not text.lower().startswith(_URL_SCHEMES):
        return False
    rest = text.partition("://")[2]
    authority, slash, path = rest.partition("/")
    if authority.count("@") > 1 and ":" in authority[: authority.rindex("@")]:
        return True  # an unencoded '@' in the password: libpq cuts it at the first
    return bool(slash) and ":" in authority and "@" not in authority and "@" in path.split("?")[0]


def _mask_url(url: str) -> str:
    """The URL with its userinfo password and any secret query parameter replaced by ***, as
    libpq splits a URL: the userinfo ends at the first '@' (when one comes before any '/'), its
    password after its first ':'; the query after the first '?' that follows."""
    head, _, rest = url.partition("://")
    cut = min((i for i in (rest.find("@"), rest.find("/")) if i != -1), default=-1)
    userinfo = ""
    if cut != -1 and rest[cut] == "@":
        userinfo, rest = rest[: cut + 1], rest[cut + 1 :]
        user, colon, _password = userinfo[:-1].partition(":")
        if colon:
            userinfo = f"{user}:{MASK}@"
    base, question, query = rest.partition("?")
    if question:
        pairs = []
        for pair in query.split("&"):
            name, equals, _value = pair.partition("=")
            if equals and urllib.parse.unquote(name) in SECRET_KEYS:
                pair = f"{name}={MASK}"
            pairs.append(pair)
        rest = base + "?" + "&".join(pairs)
    return f"{head}://{userinfo}{rest}"


def _url_end(text: str, start: re.Match[str]) -> int:
    """Where the URL starting at `start` ends: at a space or a quote, except that it reaches the
    last '@' before a space, and the next '@' on the same line when no '/' comes before it or
    it begins with `user:`: the userinfo of a password libpq cannot read (with a space, a quote,
    a '/' or an '@' in it) is hidden whole, at the cost of hiding more than needed in rare text."""
    after = start.end()
    line_end = text.find("\n", after)
    line = text[after : len(text) if line_end == -1 else line_end]
    reach = after
    word = re.split(r"\s", line, maxsplit=1)[0]
    if "@" in word:  # up to the last '@' before a space
        reach = after + word.rindex("@") + 1
    at = line.find("@")
    if at != -1 and ("/" not in line[:at] or re.match(r"[^:/@\s]*:", line[:at])):
        reach = max(reach, after + at + 1)
    stop = _URL_STOP.search(text, reach)
    return len(text) if stop is None else stop.start()


def _redact_url_token(token: str) -> str:
    """A URL found in text: read by libpq (trailing punctuation aside) when it is a PostgreSQL
    URL; else, or when libpq refuses it, everything after `://user:` or `password` is hidden."""
    body = token.rstrip(_TRAILING)
    tail = token[len(body) :]
    if body.lower().startswith(_URL_SCHEMES) and " " not in body:
        params = _parse(body)
        if params is not None:
            return _redact_parsed(body, params) + tail
    return _conservative_url(token)


def _conservative_url(token: str) -> str:
    """A URL libpq refuses: with a ':' before an '@', all after `://user:` is hidden (the '@'
    may come after a '/' or a space of a password libpq cannot read); with `password` in it
    (percent-decoded), all after the query's start, or after `://`."""
    head, _, rest = token.partition("://")
    at = rest.find("@")
    if at != -1 and ":" in rest[:at]:
        return f"{head}://{rest[: rest.index(':') + 1]}{MASK}"
    decoded = urllib.parse.unquote(rest).lower()
    if "password" in decoded:
        base = rest.split("?", 1)[0]
        if "password" in urllib.parse.unquote(base).lower():
            return f"{head}://{MASK}"
        return f"{head}://{base}?{MASK}"
    return token


def _hide_pair(match: re.Match[str]) -> str:
    value = match.group("value")
    if value.startswith(MASK) and not value[len(MASK) :].strip(_TRAILING + "'\""):
        return match.group(0)  # already hidden (a second pass changes nothing)
    return match.group("key") + MASK


def _redact_pairs(text: str) -> str:
    return _KV_SECRET.sub(_hide_pair, text)
