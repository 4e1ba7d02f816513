"""`retention --help` loads no database driver, no Procrastinate, no settings model and no
console; the names its help text writes out match their sources."""

from __future__ import annotations

import json
import subprocess
import sys

from retention.interfaces import cli, status_server
from retention.jobs import purge
from retention.run import stages

HEAVY = (
    "psycopg",
    "psycopg_pool",
    "procrastinate",
    "pydantic",
    "pydantic_settings",
    "croniter",
    "django",
    "retention.run.runner",
    "retention.config.settings",
    "retention.interfaces.console",
)


def loaded_after(argv: list[str]) -> set[str]:
    """The modules loaded once the `retention` command has run with `argv`, in a fresh process."""
    code = (
        "import json, sys\n"
        "from retention.interfaces import cli\n"
        f"sys.argv = ['retention', *{argv!r}]\n"
        "try:\n"
        "    cli.main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_help_loads_no_heavy_module() -> None:
    loaded = loaded_after(["--help"])
    assert sorted(name for name in HEAVY if name in loaded) == []


# A subcommand's --help runs the global options' callback first (the logs' set-up, whose
# redaction parses conninfo with psycopg) and Typer's own value conversion (pydantic).
BEFORE_SUBCOMMAND = {"psycopg", "pydantic"}


def test_subcommand_help_loads_no_heavy_module() -> None:
    for argv in (["status", "--help"], ["hold", "--help"], ["archive", "list", "--help"]):
        loaded = loaded_after(argv)
        heavy = sorted(name for name in HEAVY if name in loaded and name not in BEFORE_SUBCOMMAND)
        assert (argv, heavy) == (argv, [])


def test_help_names_match_their_sources() -> None:
    assert cli.STAGES == stages.ORDER
    assert cli.FINAL == purge.FINAL
    assert cli.UNFINISHED == purge.UNFINISHED
    assert cli.HTTP_VARIABLE == status_server.ENVIRONMENT_VARIABLE
