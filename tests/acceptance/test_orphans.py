"""`retention sweep-orphans` through the real CLI: the dry run lists what the sweep deletes, text
output, dangerous roots, missing roots and columns refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import HOUR, put, refer, run_cli, tree, write_config
from tests.helpers import orphan_policies as policies


def test_dry_run_lists_exactly_what_the_real_sweep_deletes(app, database, tmp_path):
    root = tmp_path / "media"
    for i in range(40):
        put(root, f"d{i % 4}/f{i}.bin", age=HOUR * (2 + i), data=b"y" * (i + 1))
    refer(app, *[f"d{i % 4}/f{i}.bin" for i in range(0, 40, 3)])
    config = write_config(tmp_path / "retention.toml", policies(root))
    before = tree(root)

    dry = run_cli("sweep-orphans", "--json", "--sample", "100", database=database, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    listed = json.loads(dry.stdout)
    assert tree(root) == before
    assert listed["dry_run"] is True

    real = run_cli(
        "-c",
        str(config),
        "sweep-orphans",
        "--delete",
        "--json",
        "--sample",
        "100",
        database=database,
    )
    assert real.returncode == 0, real.stderr
    done = json.loads(real.stdout)
    would = listed["orphans"]["roots"][str(root)]
    went = done["orphans"]["roots"][str(root)]
    assert sorted(would["sample"]) == sorted(went["sample"])
    assert (
        (would["deleted"], would["bytes"])
        == (went["deleted"], went["bytes"])
        == (26, sum(i + 1 for i in range(40) if i % 3))
    )
    gone = {str(root / rel) for rel in before - tree(root)}
    assert gone == set(went["sample"])
    assert tree(root) == {f"d{i % 4}/f{i}.bin" for i in range(0, 40, 3)}

    again = run_cli("sweep-orphans", "--delete", "--json", database=database, cwd=tmp_path)
    assert json.loads(again.stdout)["orphans"]["deleted"] == 0


def test_cli_text_output_and_root_choice(app, database, tmp_path):
    root = tmp_path / "media"
    put(root, "orphan.bin", data=b"z" * 2048)
    write_config(tmp_path / "retention.toml", policies(root))
    shown = run_cli("sweep-orphans", database=database, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "dry run" in shown.stdout
    assert "2.0 KiB" in shown.stdout
    assert str(root / "orphan.bin") in shown.stdout
    assert "--delete" in shown.stdout
    assert (root / "orphan.bin").exists()

    wrong = run_cli("sweep-orphans", "--root", str(tmp_path), database=database, cwd=tmp_path)
    assert wrong.returncode == 2
    assert "not a storage root" in wrong.stderr
    assert str(root) in wrong.stderr

    bad_grace = run_cli("sweep-orphans", "--grace", "soon", database=database, cwd=tmp_path)
    assert bad_grace.returncode == 2
    assert "--grace" in bad_grace.stderr


@pytest.mark.parametrize("which", ["slash", "home", "symlink-to-slash", "holds-home"])
def test_dangerous_roots_are_refused_and_nothing_is_touched(app, database, tmp_path, which):
    home = tmp_path / "home" / "me"
    home.mkdir(parents=True)
    put(home, "precious.txt")
    root = {
        "slash": Path("/"),
        "home": home,
        "symlink-to-slash": tmp_path / "evil",
        "holds-home": tmp_path / "home",
    }[which]
    if which == "symlink-to-slash":
        root.symlink_to("/")
    write_config(tmp_path / "retention.toml", policies(root))
    result = run_cli(
        "sweep-orphans",
        "--delete",
        "--yes",
        database=database,
        cwd=tmp_path,
        env={"HOME": str(home)},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "home directory" in result.stderr or "system" in result.stderr
    assert tree(home) == {"precious.txt"}


def test_a_missing_root_and_no_roots_are_clear_errors(app, database, tmp_path):
    write_config(tmp_path / "retention.toml", policies(tmp_path / "nowhere"))
    missing = run_cli("sweep-orphans", database=database, cwd=tmp_path)
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr

    write_config(tmp_path / "retention.toml", {"orphans": {"enabled": True}})
    none = run_cli("sweep-orphans", database=database, cwd=tmp_path)
    assert none.returncode == 2
    assert "no storage root" in none.stderr


def test_a_file_column_that_does_not_exist_is_a_clear_error(app, database, tmp_path):
    root = tmp_path / "media"
    put(root, "x.bin")
    data = policies(root)
    data["tables"][0]["files"][0]["column"] = "no_such_column"  # type: ignore[index]
    write_config(tmp_path / "retention.toml", data)
    result = run_cli("sweep-orphans", "--delete", database=database, cwd=tmp_path)
    assert result.returncode == 2
    assert "no_such_column" in result.stderr
    assert tree(root) == {"x.bin"}
