"""The one root check: every spelling of a system or home directory is refused, as written and
once its symlinks are resolved."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from retention import errors
from retention.config import roots
from retention.files import sweeps


@pytest.mark.parametrize(
    "root",
    [
        "/",
        "//",
        "///",
        "//etc",
        "/tmp",
        "//tmp",
        "/tmp/",
        "/tmp/../etc",
        "/usr/./",
        "/home",
        "/root",
    ],
)
def test_system_directories_in_any_spelling_are_refused(root):
    with pytest.raises(ValueError, match="system or home directory"):
        roots.check_root(Path(root))


def test_a_relative_root_is_refused():
    with pytest.raises(ValueError, match="absolute"):
        roots.check_root(Path("media/thumbnails"))


def test_a_directory_holding_the_home_directory_is_refused(monkeypatch, tmp_path):
    home = tmp_path / "people" / "me"
    home.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(ValueError, match="holds the home directory"):
        roots.check_root(tmp_path / "people")
    assert roots.check_root(home / "app") == home / "app"


def test_a_symlink_to_a_system_directory_is_refused(tmp_path):
    link = tmp_path / "media"
    link.symlink_to("/tmp")
    with pytest.raises(ValueError, match="resolving to '/tmp'"):
        roots.check_root(link)
    deeper = tmp_path / "deeper"
    deeper.symlink_to(tmp_path / "media")
    with pytest.raises(ValueError, match="resolving to '/tmp'"):
        roots.check_root(deeper)


def test_a_sweep_root_gets_the_same_check(tmp_path):
    link = tmp_path / "media"
    link.symlink_to("/etc")
    with pytest.raises(errors.ConfigError, match="resolving to '/etc'"):
        sweeps.check_sweep_root(link)
    with pytest.raises(errors.ConfigError, match="system or home"):
        sweeps.check_sweep_root(Path("//"))
    real = tmp_path / "real"
    real.mkdir()
    assert sweeps.check_sweep_root(real) == Path(os.path.realpath(real))


def test_normal_roots_are_kept_normalised(tmp_path):
    assert roots.check_root(Path("//var/lib/app/")) == Path("/var/lib/app")
    assert roots.check_root(tmp_path / "a" / ".." / "b") == tmp_path / "b"
