"""Safe file-system operations under a root: every open, lstat, unlink and rmdir below a
configured root goes through directory descriptors walked down from the root.

The root comes from the settings and is trusted: a walker resolves it once (symlinks in the root's
own path are followed) and opens it once. Below it nothing is ever checked by name and then used
by name. Each directory is opened relative to its parent's descriptor with O_NOFOLLOW, and files
are looked at and removed relative to their directory's descriptor (lstat, unlink, rmdir with
`dir_fd`), so a directory swapped for a symlink between two steps can only make a step fail or be
refused, never redirect it outside the root.

Stored paths are relative to the root, or absolute under the root as configured or under its real
path. Names are bytes on disk (str is encoded with os.fsencode). Refused with UnsafePath: an empty
path, NUL, an empty or `..` component, a final component of '', '.' or '..', the root itself, an
absolute path elsewhere, and anything that would leave the root.

Symlinks met in intermediate components are resolved here, as openat2(RESOLVE_BENEATH) does in
the kernel, when the walker follows links (the outbox: a stored path may go through a symlink of
the application's): the target is read relative to its directory, a relative target is spliced
into the components left, an absolute one is accepted only under the root's configured or real
path, and `..` pops a stack of descriptors that never pops above the root; at most MAX_LINKS
links per path. A walker that does not follow links (the sweeps: their paths come from a walk
that never follows any) refuses a path that now goes through one. The final component is never
followed: `Directory.unlink` removes a symlink itself, never its target; `Directory.rmdir` only
removes a directory.

Descriptors are cached (Descriptors: at most `limit` open, least recently used closed first). A
cached descriptor is reused only after an lstat of its name in its parent's descriptor shows the
same device and inode; otherwise the name is walked again. A Directory returned by a walker stays
open until another lookup of the same Descriptors may close it, or, for those looked up inside
`Descriptors.hold()`, until the hold ends: a batch shared between threads is looked up inside a
hold.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import resource
import stat
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator

OPEN_DIRECTORIES = min(1024, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 4)
MAX_LINKS = 40

_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
_CHILD_FLAGS = _ROOT_FLAGS | os.O_NOFOLLOW
_NOT_NAMES = (b"", b".", b"..")
_serials = itertools.count(1)

StrOrBytes = str | bytes | os.PathLike[str] | os.PathLike[bytes]


class UnsafePath(ValueError):
    """A path that resolves outside its root, or a root that must never be swept."""


class _Changed(Exception):
    """A symlink that was there a moment ago is no longer: the component is looked at again."""


def _encode(path: StrOrBytes) -> bytes:
    return os.fsencode(path)


def _shown(path: bytes) -> str:
    return repr(os.fsdecode(path))


def _check_name(name: bytes) -> bytes:
    if name in _NOT_NAMES or b"/" in name or b"\x00" in name:
        raise UnsafePath(f"{_shown(name)} is not a name in a directory")
    return name


class Directory:
    """An open directory under a root. Names given to its methods are single components; none of
    them follows a symlink."""

    __slots__ = ("closed", "device", "fd", "inode", "key")

    def __init__(self, fd: int, device: int, inode: int, key: bytes) -> None:
        self.fd = fd
        self.device = device
        self.inode = inode
        self.key = key
        self.closed = False

    def lstat(self, name: bytes) -> os.stat_result:
        return os.lstat(_check_name(name), dir_fd=self.fd)

    def unlink(self, name: bytes, *, dry_run: bool = False) -> os.stat_result:
        """Remove the entry `name` (a symlink is removed itself), unless it is a directory
        (IsADirectoryError); its lstat is returned. In a dry run nothing is removed."""
        if name in _NOT_NAMES or b"/" in name or b"\x00" in name:
            _check_name(name)
        info = os.lstat(name, dir_fd=self.fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory, not a file")
        if not dry_run:
            os.unlink(name, dir_fd=self.fd)
        return info

    def unlink_if(
        self, name: bytes, wanted: Callable[[os.stat_result], bool], *, dry_run: bool = False
    ) -> os.stat_result | None:
        """`unlink`, only when `wanted` says so of its lstat (None is returned otherwise)."""
        info = os.lstat(_check_name(name), dir_fd=self.fd)
        if not wanted(info):
            return None
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory, not a file")
        if not dry_run:
            os.unlink(name, dir_fd=self.fd)
        return info

    def rmdir(self, name: bytes, *, dry_run: bool = False) -> os.stat_result:
        """Remove the empty directory `name` (NotADirectoryError for anything else, a symlink to
        a directory included)."""
        info = os.lstat(_check_name(name), dir_fd=self.fd)
        if not stat.S_ISDIR(info.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory")
        if not dry_run:
            os.rmdir(name, dir_fd=self.fd)
        return info

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)


class Descriptors:
    """Open directory descriptors shared by walkers: at most `limit` (least recently used closed
    first), except those looked up inside `hold()`, which stay open until it ends."""

    def __init__(self, limit: int = OPEN_DIRECTORIES) -> None:
        self.limit = max(1, limit)
        self._open: OrderedDict[tuple[int, bytes], Directory] = OrderedDict()
        self._held: set[Directory] | None = None
        self._deferred: list[Directory] = []

    def __len__(self) -> int:
        return len(self._open)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Directories looked up inside stay open until the end of the (outermost) hold."""
        if self._held is not None:
            yield
            return
        self._held = set()
        try:
            yield
        finally:
            self._held = None
            deferred, self._deferred = self._deferred, []
            for directory in deferred:
                directory.close()
            self._trim(None)

    def _get(self, key: tuple[int, bytes]) -> Directory | None:
        return self._open.get(key)

    def _put(self, key: tuple[int, bytes], directory: Directory) -> None:
        self._open[key] = directory

    def _drop(self, key: tuple[int, bytes]) -> None:
        directory = self._open.pop(key, None)
        if directory is not None:
            self._release(directory)

    def _release(self, directory: Directory) -> None:
        if self._held is not None and directory in self._held:
            self._deferred.append(directory)
        else:
            directory.close()

    def _used(self, key: tuple[int, bytes] | None, directory: Directory) -> None:
        if key is not None:
            self._open.move_to_end(key)
        if self._held is not None:
            self._held.add(directory)
        self._trim(directory)

    def _trim(self, keep: Directory | None) -> None:
        held = self._held or ()
        while len(self._open) > self.limit:
            oldest = next(
                (k for k, d in self._open.items() if d is not keep and d not in held), None
            )
            if oldest is None:
                return
            self._open.pop(oldest).close()

    def _forget(self, serial: int) -> None:
        for key in [key for key in self._open if key[0] == serial]:
            self._drop(key)

    def close(self) -> None:
        for directory in self._open.values():
            directory.close()
        self._open.clear()
        for directory in self._deferred:
            directory.close()
        self._deferred.clear()


class Walker:
    """Walks from one root down with directory descriptors. `root` is trusted (from the
    settings): it is resolved and opened once, here. `follow_links`: whether symlinks in the
    intermediate components of a path are resolved (inside the root only) or refused."""

    def __init__(
        self,
        root: StrOrBytes,
        *,
        follow_links: bool = True,
        descriptors: Descriptors | None = None,
    ) -> None:
        configured = os.path.abspath(_encode(root))
        real = os.path.realpath(configured)
        fd = os.open(real, _ROOT_FLAGS)
        try:
            info = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        self.root = Directory(fd, info.st_dev, info.st_ino, b"")
        self.identity = (info.st_dev, info.st_ino)
        self.shown = _shown(configured)
        self.follow_links = follow_links
        self._prefixes = tuple(dict.fromkeys(p.rstrip(b"/") + b"/" for p in (configured, real)))
        self._serial = next(_serials)
        self._own = descriptors is None
        self._descriptors = Descriptors() if descriptors is None else descriptors

    def __enter__(self) -> Walker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own:
            self._descriptors.close()
        else:
            self._descriptors._forget(self._serial)
        self.root.close()

    def hold(self) -> contextlib.AbstractContextManager[None]:
        return self._descriptors.hold()

    # -- paths --------------------------------------------------------------------------------

    def split(self, stored: StrOrBytes) -> tuple[tuple[bytes, ...], bytes]:
        """The directory components (relative to the root) and the final name of a stored file
        path; UnsafePath when it is not one under the root."""
        path = _encode(stored)
        if not path or b"\x00" in path:
            raise UnsafePath(f"{_shown(path)} is not a file path")
        rel = self._relative(path) if path.startswith(b"/") else path
        parts = rel.split(b"/")
        name = parts.pop()
        if name in _NOT_NAMES:
            if name != b".." and all(p in (b"", b".") for p in parts):
                raise UnsafePath(f"{_shown(path)} is the root {self.shown} itself")
            raise UnsafePath(f"{_shown(path)} is not a file path")
        return self._components(path, parts), name

    def _components(self, path: bytes, parts: Iterable[bytes]) -> tuple[bytes, ...]:
        found: list[bytes] = []
        for part in parts:
            if part == b".":
                continue
            if part == b"..":
                raise UnsafePath(f"{_shown(path)} resolves outside its root {self.shown}")
            if not part:
                raise UnsafePath(f"{_shown(path)} is not a file path (an empty component)")
            found.append(part)
        return tuple(found)

    def _relative(self, path: bytes) -> bytes:
        """The part of an absolute path under the root; UnsafePath when it is not under it."""
        for prefix in self._prefixes:
            if path.startswith(prefix):
                return path[len(prefix) :]
            if path == prefix[:-1]:
                return b""
        raise UnsafePath(f"{_shown(path)} resolves outside its root {self.shown}")

    # -- lookups ------------------------------------------------------------------------------

    def locate(self, stored: StrOrBytes) -> tuple[Directory, bytes]:
        """The open directory of a stored file path, and the file's name in it."""
        parts, name = self.split(stored)
        return self.descend(parts), name

    def parts(self, directory: StrOrBytes) -> tuple[bytes, ...]:
        """The components (relative to the root) of a stored directory path, relative or
        absolute under the root ('' is the root); refused as `split` refuses."""
        raw = _encode(directory)
        if b"\x00" in raw:
            raise UnsafePath(f"{_shown(raw)} is not a directory path")
        rel = self._relative(raw) if raw.startswith(b"/") else raw
        return self._components(raw, rel.split(b"/")) if rel else ()

    def directory(self, path: StrOrBytes) -> Directory:
        """The open directory at a stored directory path (see `parts`)."""
        return self.descend(self.parts(path))

    def descend(self, parts: Iterable[bytes]) -> Directory:
        """The open directory reached from the root through the components `parts` (as `split`
        returns them)."""
        pending = [_check_name(part) for part in parts]
        pending.reverse()
        descriptors = self._descriptors
        stack = [self.root]
        links = 0
        while pending:
            name = pending.pop()
            if name in (b"", b"."):
                continue
            if name == b"..":
                if len(stack) == 1:
                    raise UnsafePath(f"a symlink leads out of the root {self.shown}")
                stack.pop()
                continue
            try:
                child = self._child(stack[-1], name)
            except _Changed:
                child = None
            if isinstance(child, Directory):
                stack.append(child)
                continue
            links += 1
            if links > MAX_LINKS:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", os.fsdecode(name))
            if child is None:
                pending.append(name)
                continue
            if not self.follow_links:
                raise UnsafePath(
                    f"{_shown(stack[-1].key + b'/' + name if stack[-1].key else name)} under "
                    f"{self.shown} is a symlink now"
                )
            if not child:
                raise FileNotFoundError(errno.ENOENT, "empty symlink", os.fsdecode(name))
            if child.startswith(b"/"):
                try:
                    child = self._relative(child)
                except UnsafePath:
                    raise UnsafePath(
                        f"a symlink leads out of the root {self.shown} (to {_shown(child)})"
                    ) from None
                del stack[1:]
            pending.extend(reversed(child.split(b"/")))
        found = stack[-1]
        descriptors._used((self._serial, found.key) if found.key else None, found)
        return found

    def _child(self, parent: Directory, name: bytes) -> Directory | bytes:
        """The open subdirectory `name` of `parent`, or the target of the symlink there."""
        key = parent.key + b"/" + name if parent.key else name
        slot = (self._serial, key)
        descriptors = self._descriptors
        cached = descriptors._get(slot)
        if cached is not None:
            try:
                info = os.lstat(name, dir_fd=parent.fd)
            except OSError:
                descriptors._drop(slot)
                raise
            if (
                info.st_ino == cached.inode
                and info.st_dev == cached.device
                and stat.S_ISDIR(info.st_mode)
            ):
                return cached
            descriptors._drop(slot)
            if stat.S_ISLNK(info.st_mode):
                return self._readlink(parent, name)
        try:
            fd = os.open(name, _CHILD_FLAGS, dir_fd=parent.fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR) and stat.S_ISLNK(
                os.lstat(name, dir_fd=parent.fd).st_mode
            ):
                return self._readlink(parent, name)
            raise
        try:
            info = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        directory = Directory(fd, info.st_dev, info.st_ino, key)
        descriptors._put(slot, directory)
        return directory

    @staticmethod
    def _readlink(parent: Directory, name: bytes) -> bytes:
        try:
            return os.readlink(name, dir_fd=parent.fd)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                raise _Changed() from None
            raise

    def batch(self) -> Batch:
        return Batch(self)

    # -- operations ---------------------------------------------------------------------------

    def lstat(self, stored: StrOrBytes) -> os.stat_result:
        directory, name = self.locate(stored)
        return directory.lstat(name)

    def unlink(self, stored: StrOrBytes, *, dry_run: bool = False) -> os.stat_result:
        """Directory.unlink of a stored path's final component."""
        directory, name = self.locate(stored)
        return directory.unlink(name, dry_run=dry_run)

    def unlink_if(
        self,
        stored: StrOrBytes,
        wanted: Callable[[os.stat_result], bool],
        *,
        dry_run: bool = False,
    ) -> os.stat_result | None:
        """Directory.unlink_if of a stored path's final component."""
        directory, name = self.locate(stored)
        return directory.unlink_if(name, wanted, dry_run=dry_run)

    def rmdir(self, stored: StrOrBytes, *, dry_run: bool = False) -> os.stat_result:
        """Directory.rmdir of a stored path's final component (never the root)."""
        directory, name = self.locate(stored)
        return directory.rmdir(name, dry_run=dry_run)

    @contextlib.contextmanager
    def scandir(self, path: StrOrBytes) -> Iterator[Iterator[os.DirEntry[str]]]:
        """The entries of the directory at `path`, through a descriptor of its own (their
        `stat(follow_symlinks=False)` is relative to it, valid while the listing is open)."""
        directory = self.directory(path)
        fd = os.open(b".", _ROOT_FLAGS, dir_fd=directory.fd)
        try:
            with os.scandir(fd) as entries:
                yield entries
        finally:
            os.close(fd)


class Batch:
    """The lookups of one batch of stored paths (a sweep's batch): each directory is walked to
    once per batch, and again only if its descriptor was closed since; its files are then looked
    at and removed through that descriptor. What is true of the walker's lookups is true here,
    except that a directory swapped during the batch is not noticed before the next one (the
    descriptor still is the directory that was walked to)."""

    def __init__(self, walker: Walker) -> None:
        self.walker = walker
        self._parents: dict[bytes, Directory] = {}

    def locate(self, stored: StrOrBytes) -> tuple[Directory, bytes]:
        path = _encode(stored)
        cut = path.rfind(b"/") + 1
        directory = self._parents.get(path[:cut])
        if directory is None or directory.closed:
            parts, name = self.walker.split(path)
            directory = self._parents[path[:cut]] = self.walker.descend(parts)
            return directory, name
        return directory, path[cut:]

    def unlink_if(
        self,
        stored: StrOrBytes,
        wanted: Callable[[os.stat_result], bool],
        *,
        dry_run: bool = False,
    ) -> os.stat_result | None:
        directory, name = self.locate(stored)
        return directory.unlink_if(name, wanted, dry_run=dry_run)


class Roots:
    """The walkers of the roots met by one drain, opened once each, sharing one Descriptors."""

    def __init__(self, limit: int = OPEN_DIRECTORIES, *, follow_links: bool = True) -> None:
        self.descriptors = Descriptors(limit)
        self.follow_links = follow_links
        self._walkers: dict[str, Walker | OSError] = {}

    def walker(self, root: str) -> Walker:
        """The walker of `root` (OSError, the same each time, when it cannot be opened)."""
        found = self._walkers.get(root)
        if found is None:
            try:
                found = Walker(root, follow_links=self.follow_links, descriptors=self.descriptors)
            except OSError as exc:
                found = exc
            self._walkers[root] = found
        if isinstance(found, OSError):
            raise found.with_traceback(None)
        return found

    def close(self) -> None:
        self.descriptors.close()
        for walker in self._walkers.values():
            if isinstance(walker, Walker):
                walker.root.close()
        self._walkers.clear()


def display(name: bytes | str) -> str:
    """A file name as text that can be shown, logged and stored as JSON, losslessly: UTF-8 as it
    is, every other byte and every control character as `\\xNN`, a backslash as `\\\\`
    (undisplay reads it back)."""
    raw = os.fsencode(name)
    out: list[str] = []
    text = raw.decode("utf-8", "surrogateescape")
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char == "\\":
            out.append("\\\\")
        elif code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0 or char in "\u2028\u2029":
            out.append("".join(f"\\x{byte:02x}" for byte in char.encode("utf-8")))
        else:
            out.append(char)
    return "".join(out)


def undisplay(shown: str) -> bytes:
    """The name `display` showed as `shown`."""
    out = bytearray()
    index = 0
    while index < len(shown):
        char = shown[index]
        if char == "\\" and shown[index + 1 : index + 2] == "\\":
            out.append(0x5C)
            index += 2
        elif char == "\\" and shown[index + 1 : index + 2] == "x":
            out.append(int(shown[index + 2 : index + 4], 16))
            index += 4
        else:
            out.extend(char.encode("utf-8"))
            index += 1
    return bytes(out)
