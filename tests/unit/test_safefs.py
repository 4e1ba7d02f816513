"""The safe file-system module attacked directly: symlinked ancestors, symlinks leading out,
`..`, absolute paths, odd names, the root itself, and directories swapped for symlinks between two
operations of the same walker. Real files in a temporary directory, no database."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from retention.files import safefs


def _put(path: Path | bytes, data: bytes = b"x" * 10) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    """root/top/d/f1..f3 and root/keep.txt; outside/top/d/f1..f3 (same names) and
    outside/secret.txt."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    for base in (root, outside):
        for name in ("f1", "f2", "f3"):
            _put(base / "top" / "d" / name)
    _put(root / "keep.txt")
    _put(outside / "secret.txt")
    return root, outside


def _outside_intact(outside: Path) -> None:
    assert sorted(p.relative_to(outside).as_posix() for p in outside.rglob("*")) == [
        "secret.txt",
        "top",
        "top/d",
        "top/d/f1",
        "top/d/f2",
        "top/d/f3",
    ]


def test_relative_and_absolute_paths_inside_the_root_are_deleted(world):
    root, outside = world
    with safefs.Walker(root) as walker:
        assert walker.unlink("top/d/f1").st_size == 10
        assert walker.unlink(str(root / "top/d/f2")).st_size == 10
        assert walker.unlink(os.fsencode(root / "top" / "d" / "f3")) is not None
        assert walker.unlink("./keep.txt") is not None
    assert list((root / "top" / "d").iterdir()) == []
    assert not (root / "keep.txt").exists()
    _outside_intact(outside)


def test_a_root_given_through_a_symlink_takes_both_spellings(world, tmp_path):
    root, outside = world
    alias = tmp_path / "alias"
    alias.symlink_to(root, target_is_directory=True)
    with safefs.Walker(alias) as walker:
        walker.unlink(str(alias / "top/d/f1"))
        walker.unlink(str(root / "top/d/f2"))
        with pytest.raises(safefs.UnsafePath, match="outside"):
            walker.unlink(str(outside / "top/d/f3"))
        with pytest.raises(safefs.UnsafePath, match="outside"):
            walker.unlink(str(tmp_path / "root-sibling" / "x"))
    assert sorted(p.name for p in (root / "top/d").iterdir()) == ["f3"]
    _outside_intact(outside)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "\x00",
        "top/d\x00/f1",
        "../outside/secret.txt",
        "top/../../outside/secret.txt",
        "top/d/../d/f1",
        "top//d/f1",
        "top/d/",
        "top/d/.",
        "top/d/..",
        "/elsewhere/f1",
    ],
)
def test_paths_that_are_not_file_paths_under_the_root_are_refused(world, stored):
    root, outside = world
    with safefs.Walker(root) as walker, pytest.raises(safefs.UnsafePath):
        walker.unlink(stored)
    assert sorted(p.name for p in (root / "top/d").iterdir()) == ["f1", "f2", "f3"]
    _outside_intact(outside)


def test_directory_paths_are_refused_as_file_paths_are(world):
    root, _ = world
    with safefs.Walker(root) as walker:
        assert walker.parts("") == () == walker.parts(str(root)) == walker.parts(f"{root}/")
        assert walker.parts("./top/./d") == (b"top", b"d") == walker.parts(f"{root}/top/d")
        for bad in ("top/", "top//d", "/", "/elsewhere", "..", "top/../..", "top/\x00"):
            with pytest.raises(safefs.UnsafePath):
                walker.parts(bad)
        assert walker.directory(b"top/d").lstat(b"f1").st_size == 10


@pytest.mark.parametrize("stored", [".", "./", "./.", "ROOT", "ROOT/", "ROOT/."])
def test_the_root_itself_is_refused(world, stored):
    root, _ = world
    stored = stored.replace("ROOT", str(root))
    with safefs.Walker(root) as walker:
        with pytest.raises(safefs.UnsafePath, match=r"root .* itself"):
            walker.rmdir(stored)
        with pytest.raises(safefs.UnsafePath):
            walker.unlink(stored)
    assert root.is_dir()


def test_a_symlinked_ancestor_inside_the_root_is_followed_or_refused(world):
    root, outside = world
    (root / "alias").symlink_to("top/d", target_is_directory=True)
    (root / "top" / "up").symlink_to("..", target_is_directory=True)
    (root / "absolute").symlink_to(root / "top", target_is_directory=True)
    with safefs.Walker(root, follow_links=False) as strict:
        for stored in ("alias/f1", "top/up/top/d/f1", "absolute/d/f1"):
            with pytest.raises(safefs.UnsafePath, match="symlink"):
                strict.unlink(stored)
    assert sorted(p.name for p in (root / "top/d").iterdir()) == ["f1", "f2", "f3"]
    with safefs.Walker(root) as walker:
        walker.unlink("alias/f1")
        walker.unlink("top/up/top/d/f2")
        walker.unlink("absolute/d/f3")
    assert list((root / "top/d").iterdir()) == []
    assert (root / "alias").is_symlink()
    assert (root / "absolute").is_symlink()
    _outside_intact(outside)


@pytest.mark.parametrize("how", ["absolute", "relative", "dotdot-chain", "through-root-alias"])
def test_a_symlink_leading_out_of_the_root_is_refused(world, tmp_path, how):
    root, outside = world
    link = root / "link"
    if how == "absolute":
        link.symlink_to(outside / "top", target_is_directory=True)
    elif how == "relative":
        link.symlink_to("../outside/top", target_is_directory=True)
    elif how == "dotdot-chain":
        (root / "top" / "hop").symlink_to("../..", target_is_directory=True)
        link.symlink_to("top/hop/outside/top", target_is_directory=True)
    else:
        (tmp_path / "alias").symlink_to(root, target_is_directory=True)
        link.symlink_to(tmp_path / "alias" / ".." / "outside" / "top", target_is_directory=True)
    with safefs.Walker(root) as walker:
        with pytest.raises(safefs.UnsafePath):
            walker.unlink("link/d/f1")
        with pytest.raises(safefs.UnsafePath):
            walker.rmdir("link/d")
    _outside_intact(outside)
    assert sorted(p.name for p in (root / "top/d").iterdir()) == ["f1", "f2", "f3"]


def test_a_symlink_as_the_final_component_is_removed_itself_never_its_target(world):
    root, outside = world
    (root / "to-secret").symlink_to(outside / "secret.txt")
    (root / "to-dir").symlink_to(outside / "top", target_is_directory=True)
    with safefs.Walker(root) as walker:
        assert stat_is_link(walker.lstat("to-secret"))
        with pytest.raises(NotADirectoryError):
            walker.rmdir("to-dir")
        walker.unlink("to-secret")
        walker.unlink("to-dir")
    assert not os.path.lexists(root / "to-secret")
    assert not os.path.lexists(root / "to-dir")
    _outside_intact(outside)


def stat_is_link(info: os.stat_result) -> bool:
    return (info.st_mode & 0o170000) == 0o120000


def test_a_directory_where_a_file_is_expected_is_not_removed(world):
    root, _ = world
    with safefs.Walker(root) as walker:
        with pytest.raises(IsADirectoryError):
            walker.unlink("top/d")
        with pytest.raises(NotADirectoryError):
            walker.unlink("keep.txt/f1")
        with pytest.raises(OSError, match="not empty") as raised:
            walker.rmdir("top/d")
        assert raised.value.errno == errno.ENOTEMPTY
        assert walker.unlink_if("top/d/f1", lambda info: False) is None
        with pytest.raises(NotADirectoryError):
            walker.rmdir("keep.txt")
    assert sorted(p.name for p in (root / "top/d").iterdir()) == ["f1", "f2", "f3"]
    assert (root / "keep.txt").is_file()


def test_missing_files_and_directories_are_file_not_found(world):
    root, _ = world
    with safefs.Walker(root) as walker:
        with pytest.raises(FileNotFoundError):
            walker.unlink("top/d/nope")
        with pytest.raises(FileNotFoundError):
            walker.unlink("nope/d/f1")
    with pytest.raises(FileNotFoundError):
        safefs.Walker(root / "nope")


def test_dry_runs_only_look(world):
    root, _ = world
    with safefs.Walker(root) as walker:
        assert walker.unlink("top/d/f1", dry_run=True).st_size == 10
        (root / "empty").mkdir()
        walker.rmdir("empty", dry_run=True)
    assert (root / "top/d/f1").is_file()
    assert (root / "empty").is_dir()


def test_non_utf8_names_and_names_with_newlines(tmp_path):
    root = tmp_path / "root"
    odd = os.fsencode(root) + b"/caf\xe9 \xff/na\nme\n.bin"
    _put(odd)
    _put(root / "line\nbreak" / "x\ny")
    with safefs.Walker(root) as walker:
        walker.unlink(b"caf\xe9 \xff/na\nme\n.bin")
        walker.rmdir(os.fsdecode(b"caf\xe9 \xff"))
        walker.unlink("line\nbreak/x\ny")
        walker.rmdir(str(root / "line\nbreak"))
    assert list(root.iterdir()) == []


def test_a_symlink_loop_is_an_error_not_a_hang(world):
    root, _ = world
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("a")
    with safefs.Walker(root) as walker, pytest.raises(OSError, match="symbolic links") as raised:
        walker.unlink("a/f1")
    assert raised.value.errno == errno.ELOOP


def _swap(root: Path, outside: Path, with_what: str) -> None:
    """root/top goes to root/.real; in its place, a symlink to outside/top, or a new directory
    holding the same names."""
    (root / "top").rename(root / ".real")
    if with_what == "symlink":
        (root / "top").symlink_to(outside / "top", target_is_directory=True)
    else:
        for name in ("f1", "f2", "f3"):
            _put(root / "top" / "d" / name)


@pytest.mark.parametrize("follow_links", [True, False])
def test_an_ancestor_swapped_for_a_symlink_between_two_operations_is_never_followed_out(
    world, follow_links
):
    root, outside = world
    with safefs.Walker(root, follow_links=follow_links) as walker:
        walker.unlink("top/d/f1")
        _swap(root, outside, "symlink")
        for name in ("f2", "f3"):
            with pytest.raises(safefs.UnsafePath):
                walker.unlink(f"top/d/{name}")
        with pytest.raises(safefs.UnsafePath):
            walker.rmdir("top/d")
        with pytest.raises(safefs.UnsafePath):
            walker.directory("top/d")
    _outside_intact(outside)
    assert sorted(p.name for p in (root / ".real/d").iterdir()) == ["f2", "f3"]


def test_an_ancestor_swapped_for_another_directory_is_walked_again(world):
    root, outside = world
    with safefs.Walker(root) as walker:
        walker.unlink("top/d/f1")
        _swap(root, outside, "directory")
        walker.unlink("top/d/f2")
    assert sorted(p.name for p in (root / ".real/d").iterdir()) == ["f2", "f3"]
    assert sorted(p.name for p in (root / "top/d").iterdir()) == ["f1", "f3"]
    _outside_intact(outside)


def test_a_directory_already_open_stays_the_one_that_was_walked(world):
    root, outside = world
    with safefs.Walker(root) as walker:
        directory, name = walker.locate("top/d/f1")
        _swap(root, outside, "symlink")
        directory.unlink(name)
        directory.unlink(b"f2")
        with pytest.raises(safefs.UnsafePath):
            directory.unlink(b"../../keep.txt")
        with pytest.raises(safefs.UnsafePath):
            directory.unlink(b"..")
    assert sorted(p.name for p in (root / ".real/d").iterdir()) == ["f3"]
    assert (root / "keep.txt").exists()
    _outside_intact(outside)


def test_a_batch_walks_to_each_directory_once_unless_its_descriptor_was_closed(world):
    root, outside = world
    _put(root / "other" / "g1")
    wanted = lambda info: True  # noqa: E731
    with safefs.Walker(root) as walker:
        batch = walker.batch()
        assert batch.unlink_if("top/d/f1", wanted) is not None
        for bad in ("top/d/..", "top/d/.", "top/d/", "top/d/a\x00b", "top/d/../../x"):
            with pytest.raises(safefs.UnsafePath):
                batch.unlink_if(bad, wanted)
        _swap(root, outside, "symlink")
        assert batch.unlink_if("top/d/f2", wanted) is not None
        with pytest.raises(safefs.UnsafePath):
            walker.batch().unlink_if("top/d/f3", wanted)
    assert sorted(p.name for p in (root / ".real/d").iterdir()) == ["f3"]
    (root / "top").unlink()
    (root / ".real").rename(root / "top")
    with safefs.Walker(root, descriptors=safefs.Descriptors(limit=1)) as walker:
        batch = walker.batch()
        batch.unlink_if("top/d/f3", lambda info: False)
        batch.unlink_if("other/g1", wanted)
        _swap(root, outside, "symlink")
        with pytest.raises(safefs.UnsafePath):
            batch.unlink_if("top/d/f3", wanted)
    assert sorted(p.name for p in (root / ".real/d").iterdir()) == ["f3"]
    _outside_intact(outside)


def test_a_symlink_swapped_back_into_a_directory_is_walked_again(world, tmp_path):
    root, outside = world
    (root / "top").rename(root / ".real")
    (root / "top").symlink_to(outside / "top", target_is_directory=True)
    with safefs.Walker(root) as walker:
        with pytest.raises(safefs.UnsafePath):
            walker.unlink("top/d/f1")
        (root / "top").unlink()
        (root / ".real").rename(root / "top")
        walker.unlink("top/d/f1")
    assert sorted(p.name for p in (root / "top/d").iterdir()) == ["f2", "f3"]
    _outside_intact(outside)


def test_descriptors_stay_within_their_limit_and_held_ones_stay_open(tmp_path):
    root = tmp_path / "root"
    for k in range(12):
        _put(root / f"d{k}" / "sub" / "f")
    descriptors = safefs.Descriptors(limit=4)
    with safefs.Walker(root, descriptors=descriptors) as walker:
        for k in range(12):
            walker.lstat(f"d{k}/sub/f")
            assert len(descriptors) <= 4
        with descriptors.hold():
            held = [walker.locate(f"d{k}/sub/f") for k in range(12)]
            for directory, name in held:
                assert not directory.closed
                assert directory.lstat(name).st_size == 10
        assert len(descriptors) <= 4
        assert sum(not directory.closed for directory, _ in held) <= 4
        for k, (directory, name) in enumerate(held):
            if directory.closed:
                assert walker.unlink_if(f"d{k}/sub/f", lambda info: True) is not None
            else:
                directory.unlink(name)
    assert all(directory.closed for directory, _ in held)
    assert not any(p.is_file() for p in root.rglob("*"))


def test_two_roots_share_descriptors_and_a_missing_root_fails_each_time(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _put(one / "a" / "f")
    _put(two / "a" / "f")
    roots = safefs.Roots(limit=8)
    try:
        roots.walker(str(one)).unlink("a/f")
        roots.walker(str(two)).unlink(str(two / "a" / "f"))
        with pytest.raises(safefs.UnsafePath):
            roots.walker(str(one)).unlink(str(two / "a" / "f"))
        for _ in range(2):
            with pytest.raises(FileNotFoundError):
                roots.walker(str(tmp_path / "gone"))
    finally:
        roots.close()
    assert not (one / "a" / "f").exists()
    assert not (two / "a" / "f").exists()


def test_listing_goes_through_the_same_walk(world):
    root, outside = world
    (root / "link").symlink_to(outside / "top", target_is_directory=True)
    with safefs.Walker(root, follow_links=False) as walker:
        with walker.scandir("") as entries:
            found = {entry.name: entry.is_dir(follow_symlinks=False) for entry in entries}
        assert found == {"top": True, "keep.txt": False, "link": False}
        with walker.scandir(b"top/d") as entries:
            sizes = {entry.name: entry.stat(follow_symlinks=False).st_size for entry in entries}
        assert sizes == {"f1": 10, "f2": 10, "f3": 10}
        with pytest.raises(safefs.UnsafePath), walker.scandir("link/d"):
            pass
        _swap(root, outside, "symlink")
        with pytest.raises(safefs.UnsafePath), walker.scandir("top/d"):
            pass
