"""Settings refuse a storage root of /."""

from __future__ import annotations

from pathlib import Path

import pytest

from retention import errors
from retention.config import settings as settings_mod
from tests.helpers import orphan_policies as policies
from tests.helpers import write_config


def test_settings_refuse_a_root_of_slash(tmp_path):
    with pytest.raises(errors.ConfigError, match="system or home"):
        settings_mod.load(write_config(tmp_path / "r.toml", policies(Path("/"))))
