"""The paths a command may read and write, checked before any work starts.

A forgotten output name (`gtok tokenize -o data/*.bed`) must not turn an input into a shard, and
`-o /dev/null` run as root must not turn a device into a regular file. So every command that
writes checks its output first: it has the command's suffix, it is none of the inputs, and if it
exists it is a regular file of the kind the command writes (it is replaced only by its own kind).
Inputs must be regular files: a folder or a FIFO is named as such instead of "no such file", and
a FIFO nobody writes to cannot hang a run.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from gtok.errors import GtokError, describe


def input_file(path: str | os.PathLike, what: str = "input") -> Path:
    """`path` as a Path, once it is known to be a readable regular file."""
    name = describe(path)
    if not name:
        raise GtokError(f"an empty path was given as the {what}.")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise GtokError(f"{name}: no such file.") from None
    except OSError as exc:
        raise GtokError(f"{name}: cannot read the {what} ({os.strerror(exc.errno).lower()}).") from None
    if stat.S_ISDIR(mode):
        file = "" if what.endswith("file") else " file"
        raise GtokError(f"{name}: is a folder; give the {what}{file} itself.")
    if not stat.S_ISREG(mode):
        raise GtokError(f"{name}: is not a regular file (a FIFO, device or socket); give the {what} as a file.")
    return Path(path)


def refuse_repeats(paths: Iterable[str | os.PathLike]) -> None:
    """Refuse a file listed twice (under any name of it): its records would count twice."""
    seen: dict[Path, Path] = {}
    for path in map(Path, paths):
        key = path.resolve()
        if key in seen:
            raise GtokError(f"{describe(path)}: listed twice (also as {describe(seen[key])}); list each shard once.")
        seen[key] = path


def output_file(
    path: str | os.PathLike,
    suffixes: tuple[str, ...],
    inputs: Iterable[str | os.PathLike] = (),
    is_own_kind: Callable[[Path], bool] | None = None,
    kind: str = "output",
) -> Path:
    """Check an output file before anything is computed; its folder is created if missing.

    `is_own_kind(path)` says whether an existing file is one this command wrote (and may replace).
    """
    name = describe(path)
    if not name:
        raise GtokError(f"the output path is empty; give a file name ending in {suffixes[0]}.")
    target = Path(path)
    if target.is_dir():
        raise GtokError(f"{name}: is a folder; give a file name ending in {suffixes[0]} for the {kind}.")
    if not name.endswith(suffixes):
        raise GtokError(
            f"{name}: the {kind} must end in {' or '.join(suffixes)} (a forgotten output name would "
            "otherwise overwrite an input); choose a name with that suffix."
        )
    if os.path.lexists(target):
        _check_replaceable(target, inputs, is_own_kind, kind)
    make_folder(target.parent)
    if not os.access(target.parent, os.W_OK | os.X_OK):  # said now, not once the work is done
        raise GtokError(f"{name}: its folder cannot be written (read-only, or not yours); choose a {kind} path in a "
                        "folder you can write.")
    return target


def _check_replaceable(target: Path, inputs, is_own_kind, kind: str) -> None:
    name = describe(target)
    try:
        mode = os.stat(target).st_mode
    except OSError:  # a dangling link: writing replaces the link, not what it pointed to
        return
    if not stat.S_ISREG(mode):
        raise GtokError(f"{name}: exists and is not a regular file (a device, FIFO or socket); refusing to replace it.")
    for item in inputs:
        if same_file(target, item):
            raise GtokError(f"{name}: is also an input ({describe(item)}); choose another name for the {kind}.")
    if is_own_kind is not None and target.stat().st_size and not is_own_kind(target):
        article = "an" if kind[:1].lower() in "aeiou" else "a"
        raise GtokError(f"{name}: exists and is not {article} {kind}; refusing to overwrite it (delete it first to replace it).")


def output_folder(path: str | os.PathLike, kind: str = "output folder") -> Path:
    """A folder to write into, created if missing; a file of that name is refused."""
    name = describe(path)
    if not name:
        raise GtokError(f"the {kind} path is empty.")
    folder = Path(path)
    if os.path.lexists(folder) and not folder.is_dir():
        raise GtokError(f"{name}: exists and is not a folder; the {kind} must be a folder.")
    make_folder(folder)
    return folder


#: The folders this process created for its outputs: a command that fails removes those still
#: empty (`remove_created_folders`), so that it leaves the file system as it was.
_CREATED: list[Path] = []


def make_folder(folder: Path) -> None:
    """Create `folder` (and its parents) if missing, with a one-line error when that is impossible."""
    if not str(folder) or folder.is_dir():
        return
    absolute = Path(os.path.abspath(folder))
    missing = [p for p in (absolute, *absolute.parents) if not os.path.lexists(p)]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _CREATED.extend(missing)
    except (FileExistsError, NotADirectoryError):
        raise GtokError(f"{describe(folder)}: cannot be created as a folder (a file of that name is in the way).") from None
    except OSError as exc:
        raise GtokError(f"{describe(folder)}: cannot create the folder ({os.strerror(exc.errno).lower()}).") from None


def remove_created_folders() -> None:
    """Remove the folders `make_folder` created in this process that are still empty, deepest
    first (what a failed command created and never wrote into)."""
    for folder in sorted(set(_CREATED), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()
    _CREATED.clear()


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file; False where either cannot be reached (a missing file is no other's)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def recorded_path(path: str | os.PathLike, folder: str | os.PathLike) -> str:
    """`path` as a file in `folder` records it: relative to `folder` when the file system finds the
    same file by that relative path (so the folder can move with it, and the file names no folder
    of the user's), else absolute: a '..' taken through a symlinked folder leads elsewhere than
    the name says, and another drive (Windows) has no relative path. `path` is absolute."""
    try:
        relative = os.path.relpath(path, folder)
    except ValueError:  # another drive
        return os.fspath(path)
    return relative if same_file(Path(folder, relative), path) else os.fspath(path)


def path_in(recorded: str, folder: str | os.PathLike) -> str:
    """A path recorded by a file in `folder` (recorded_path), absolute: its '..' are taken from the
    folder the file system reaches, so a file read through a symlink to its folder still finds what
    it names; an absolute one stays as it is."""
    return os.path.normpath(os.path.join(os.path.realpath(folder), recorded))


def has_magic(magic: bytes) -> Callable[[Path], bool]:
    """A test of whether a file starts with `magic` (for `output_file`'s `is_own_kind`)."""

    def test(path: Path) -> bool:
        try:
            with open(path, "rb") as fh:
                return fh.read(len(magic)) == magic
        except OSError:
            return False

    return test
