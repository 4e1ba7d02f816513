"""Shell-style globs as anchored regular expressions: what they match, compared with Python's
fnmatch on the syntax both share, and the patterns refused."""

from __future__ import annotations

import fnmatch
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retention.config import globs


@pytest.mark.parametrize(
    ("glob", "value", "matched"),
    [
        ("emails*", "emails", True),
        ("emails*", "emails_bulk", True),
        ("emails*", "bulk_emails", False),
        ("*report", "app.report", True),
        ("*report", "app.reports", False),
        ("app.*", "app.send_mail", True),
        ("app.*", "appXsend", False),
        ("q?", "q1", True),
        ("q?", "q", False),
        ("[ab]x", "ax", True),
        ("[ab]x", "cx", False),
        ("[!ab]x", "cx", True),
        ("[!ab]x", "ax", False),
        ("[a-c]", "b", True),
        ("[a-c]", "d", False),
        ("[]]", "]", True),
        ("[!]]", "a", True),
        ("[!]]", "]", False),
        ("a+b", "a+b", True),
        ("a+b", "aab", False),
        ("(x|y)", "(x|y)", True),
        ("(x|y)", "x", False),
        ("$HOME^", "$HOME^", True),
        ("{a,b}", "{a,b}", True),
        ("{a,b}", "a", False),
        ("a\\b", "a\\b", True),
        ("[\\]", "\\", True),
        ("*", "", True),
        ("*", "a/b/c", True),
        ("*", "line\nbreak", True),
        ("?", "\n", True),
        ("exports/*.csv", "exports/2026/01.csv", True),
        ("Emails", "emails", False),
    ],
)
def test_what_a_glob_matches(glob, value, matched):
    assert globs.matches(glob, value) is matched


def test_no_glob_matches_everything():
    assert globs.matches(None, "")
    assert globs.matches(None, "any queue at all")


def test_the_regex_is_anchored_at_both_ends():
    regex = globs.to_regex("app.*")
    assert regex.startswith("^")
    assert regex.endswith("$")
    assert regex == "^app\\..*$"
    assert globs.to_regex("[!ab]x") == "^[^ab]x$"


@pytest.mark.parametrize(("glob", "position"), [("[abc", 0), ("x[", 1), ("ab[!", 2), ("[]", 0)])
def test_an_unclosed_bracket_is_refused_with_its_position(glob, position):
    with pytest.raises(ValueError, match=rf"unclosed '\[' at position {position}"):
        globs.to_regex(glob)


# Globs of the syntax fnmatch and ours share (no `^` or `[` inside brackets, brackets closed).
glob_pieces = st.sampled_from(
    [
        "a",
        "b",
        ".",
        "/",
        "+",
        "(",
        ")",
        "$",
        "|",
        "{",
        "}",
        "\\",
        "*",
        "?",
        "[ab]",
        "[!ab]",
        "[a-c]",
    ]
)
shared_globs = st.lists(glob_pieces, max_size=6).map("".join)
values = st.text(alphabet="abcd./+()$|{}\\\n", max_size=8)


@given(shared_globs, values)
def test_globs_agree_with_fnmatchcase(glob, value):
    assert globs.matches(glob, value) == fnmatch.fnmatchcase(value, glob)


@given(shared_globs)
def test_every_glob_translates_to_a_regex_that_compiles(glob):
    re.compile(globs.to_regex(glob))
