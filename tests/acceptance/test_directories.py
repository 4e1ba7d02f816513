"""`[[directories]]` through the real CLI: bad policies are clear errors, a full run sweeps them."""

from __future__ import annotations

from pathlib import Path

import pytest

from retention import errors
from retention.config import settings as settings_mod
from tests.helpers import HOUR, put, run_cli, tree, write_config

DAY = 24 * HOUR


def test_bad_directory_policies_are_clear_errors(database, tmp_path):
    with pytest.raises(errors.ConfigError, match="system or home"):
        settings_mod.load(
            write_config(tmp_path / "a.toml", {"directories": [{"root": "/", "age": "1d"}]})
        )
    with pytest.raises(errors.ConfigError, match="duration"):
        settings_mod.load(
            write_config(tmp_path / "b.toml", {"directories": [{"root": "/srv/x", "age": "old"}]})
        )
    with pytest.raises(errors.ConfigError, match="unclosed"):
        settings_mod.load(
            write_config(
                tmp_path / "c.toml",
                {"directories": [{"root": "/srv/x", "age": "1d", "include": ["[a"]}]},
            )
        )
    write_config(
        tmp_path / "retention.toml", {"directories": [{"root": str(tmp_path / "no"), "age": "1d"}]}
    )
    result = run_cli("run", "--only", "directories", database=database, cwd=tmp_path)
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_a_full_run_includes_directories(database, tmp_path):
    root = tmp_path / "exports"
    put(root, "old.csv", age=3 * DAY, data=b"c" * 4096)
    write_config(tmp_path / "retention.toml", {"directories": [{"root": str(root), "age": "1d"}]})
    result = run_cli("run", database=database, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "directories" in result.stdout
    assert "4.0 KiB" in result.stdout
    assert tree(root) == set()
    assert Path(root).is_dir()
