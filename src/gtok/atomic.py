"""Atomic file creation: a reader sees the old file or the complete new one, never a partial one.

A write goes to a hidden temporary file beside the target (`.NAME.XXXXXXXX.tmp`), which is
fsynced and renamed onto the target only when complete. Beside it the writer holds an exclusive
`flock` on an empty `.NAME.XXXXXXXX.lock` for as long as it lives, so a later writer of the same
target can tell what killed writers left (nobody holds their lock: delete it) from the live
temporary file of a writer running beside it (locked: leave it alone). The kernel releases the
lock when its holder dies, however it dies, and `flock` works across the hosts of a cluster file
system that supports locks; where locks are unsupported nothing is deleted. The lock is a file of
its own because what writes the temporary file may lock it too (HDF5 does).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

from gtok.errors import GtokError, describe

#: Errors of writing that a user can act on (free space, permissions), shown as one line.
WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.ENOTDIR}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed onto `path`.

    On any error, or a KeyboardInterrupt, the temporary file is removed and `path` is untouched; a
    full disk or a read-only folder becomes a `GtokError` that says so. A `kill -9` leaves only the
    hidden temporary and lock files, which the next writer of the same `path` removes; so does a
    folder made read-only half-way, where they cannot be removed (its error is still the one line).
    """
    target = Path(path)
    remove_stale_temporaries(target)
    lock_fd, lock = _held_lock(target)
    tmp = lock.with_suffix(".tmp")
    try:
        try:
            tmp.touch(mode=0o600, exist_ok=False)
            yield tmp
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except OSError as exc:
            if exc.errno in WRITE_ERRORS:
                raise _write_error(target, exc) from None
            raise
    except BaseException:
        with contextlib.suppress(OSError):  # a folder made read-only meanwhile: the next writer removes them
            os.unlink(tmp)
        raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(lock_fd)
    _fsync_dir(target.parent)


def _held_lock(target: Path, written: Path | None = None) -> tuple[int, Path]:
    """A new lock file for a write of `target`, locked (its fd, its path); `written` is what an
    error names (default `target`).

    Between creating the file and locking it, another writer's clean-up could take it for a dead
    writer's and delete it; so after locking, the path must still be the file we hold.
    """
    folder = target.parent if str(target.parent) else Path(".")
    while True:
        try:
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".lock", dir=folder)
        except OSError as exc:
            raise _write_error(written or target, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a clean-up took the new file for a dead writer's, and holds it: make another
            os.close(fd)
            continue
        except OSError:  # no locks on this file system: the files are still ours
            pass
        try:
            if os.stat(name).st_ino == os.fstat(fd).st_ino:
                return fd, Path(name)
        except FileNotFoundError:
            pass
        os.close(fd)


def remove_stale_temporaries(target: Path) -> None:
    """Delete what killed writers of `target` left: temporary files whose lock nobody holds.

    A temporary file without any lock file beside it predates locking (an older gtok wrote it)."""
    folder = target.parent if str(target.parent) else Path(".")
    pattern = re.compile(rf"(\.{re.escape(target.name)}\.[a-z0-9_]{{8}})\.(tmp|lock)")
    try:
        found = [m for m in map(pattern.fullmatch, os.listdir(folder)) if m]
    except OSError:
        return
    locks = {m[1] for m in found if m[2] == "lock"}
    for stem in locks:
        _remove_if_unlocked(folder / f"{stem}.lock", folder / f"{stem}.tmp")
    for m in found:  # a writer creates its lock before its temporary file and removes it after
        if m[2] == "tmp" and m[1] not in locks and not (folder / f"{m[1]}.lock").exists():
            with contextlib.suppress(OSError):
                os.unlink(folder / m[0])


def _remove_if_unlocked(lock: Path, tmp: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(lock, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises while its writer lives
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.unlink(lock)
        finally:
            os.close(fd)


class WriteError(GtokError):
    """A write that a full disk or a permission stopped, said in one line; `target` is the file it
    names and `errno` why, so that `staged_files` can name a staged file where it was to go."""

    target: Path
    errno: int


def _write_error(target: Path, exc: OSError | WriteError) -> WriteError:
    """The one line of a failed write, which says whether what it would have replaced is kept."""
    kept = " (the folder is as it was)" if target.is_dir() else " (the existing file is unchanged)" if target.exists() else ""
    error = WriteError(f"{describe(target)}: cannot write it: {os.strerror(exc.errno).lower()}; nothing was written{kept}.")
    error.target, error.errno = target, exc.errno
    return error


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder or ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def staged_files(folder: str | os.PathLike, owned: Collection[str] = (), last: str | None = None) -> Iterator[Path]:
    """Yield a hidden folder inside `folder` for a command that writes several files at once; on
    success each file written there replaces its namesake in `folder`, on any error none does.

    The files are whole before the first one is published, so a full disk fails while staging,
    with everything in `folder` as it was; the renames at the end need no space. `owned` names the
    set of files the write replaces as a whole: one of them it did not write is removed, so that
    nothing of an earlier set stays beside the new one. `last` is published after every other
    change: a file that vouches for the others (a model's config.yaml) is never newer than they are.
    Like `atomic_path`, the writer holds a lock beside its hidden `..gtok-staged.XXXXXXXX` folder, so
    the next staged write into `folder` removes what a killed writer left, and nothing of a live one.

    Renames that stop half-way are undone: before the first, the files they replace or remove are
    kept as hard links in the stage, with a journal (`_JOURNAL`). An error puts them back at once;
    a writer killed between two renames leaves them for `recover`, which the next staged write
    (before it publishes, holding the folder) and any reader that calls it run first. So the
    folder holds the old set or the new one, never a mix, even after a `kill -9`.
    """
    folder = Path(folder)
    if any("/" in name for name in owned):
        raise ValueError("staged_files owns files of the folder itself, not of its subfolders")
    lock_fd, lock = _held_lock(folder / _STAGE, folder)
    stage = lock.with_suffix("")
    settled = True  # False while a failed publication could not be undone: its stage keeps the old files
    try:
        try:
            stage.mkdir()
            yield stage
            with _publishing(folder):
                _settle_stale_stages(folder)  # what killed writers left goes before this set comes
                try:
                    _publish_stage(stage, folder, owned, last)
                except BaseException:
                    settled = False
                    _settle(stage, folder)
                    settled = True
                    raise
        except WriteError as exc:  # a staged file's: named where it was to go, and kept if it is there
            if not exc.target.is_relative_to(stage):
                raise
            raise _write_error(folder / exc.target.relative_to(stage), exc) from None
        except GtokError as exc:  # a staged file's error, naming it where it was to go
            raise GtokError(str(exc).replace(str(stage), str(folder))) from None
        except OSError as exc:
            if exc.errno in WRITE_ERRORS:
                raise _write_error(folder, exc) from None
            raise
        _fsync_dir(folder)
    finally:
        if settled:  # else the stage and its unheld lock stay, for `recover` to finish the undo
            shutil.rmtree(stage, ignore_errors=True)
            with contextlib.suppress(OSError):  # as the stage: what a read-only folder keeps, the next writer removes
                os.unlink(lock)
        os.close(lock_fd)


@contextlib.contextmanager
def _publishing(folder: Path) -> Iterator[None]:
    """Hold `folder` (an exclusive `flock` on the folder itself) while a stage is renamed into it:
    two writers of the same files publish one after the other, each set whole, never interleaved.
    The renames take milliseconds. Where the file system has no locks, nothing is held."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def replaced_together(targets: Sequence[Path]) -> Iterator[list[Path]]:
    """Paths to write `targets` at, which then replace them together: files of one folder as one
    staged publication (the old set or the new one, even after a `kill -9`: `staged_files`,
    the last target renamed last); files of several folders each atomically, one after another."""
    folders = {Path(t).parent for t in targets}
    if len(folders) == 1:
        with staged_files(folders.pop(), owned=[Path(t).name for t in targets], last=Path(targets[-1]).name) as stage:
            yield [stage / Path(t).name for t in targets]
    else:
        with contextlib.ExitStack() as each:
            yield [each.enter_context(atomic_path(t)) for t in targets]


#: The name a stage is made from (`_held_lock` makes it `..gtok-staged.XXXXXXXX`).
_STAGE = ".gtok-staged"
#: In a stage, the folder of hard links to the files a publication replaces or removes, and the
#: journal naming what it stages and which file completes it; both hidden, so never published.
_KEPT = ".replaced"
_JOURNAL = ".journal.json"


def _publish_stage(stage: Path, folder: Path, owned: Collection[str], last: str | None) -> None:
    """Rename the staged files into `folder` (`last` after the rest) and remove the `owned` ones not staged."""
    staged = sorted(name for name in os.listdir(stage) if not name.startswith("."))  # not an atomic_path's temporaries
    _keep_replaced(stage, folder, staged, owned)
    for name in staged:
        if name != last:
            os.replace(stage / name, folder / name)
    for name in set(owned).difference(staged):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folder / name)
    if last in staged:
        os.replace(stage / last, folder / last)


def _keep_replaced(stage: Path, folder: Path, staged: list[str], owned: Collection[str]) -> None:
    """Hard links to the files of `folder` the publication will replace or remove, then the journal
    (written whole, then renamed: its presence says the links are complete). A file system
    without hard links gets no journal: its publications cannot be undone, as before there was one."""
    kept, linked = stage / _KEPT, []
    kept.mkdir()
    for name in sorted({*staged, *owned}):
        try:
            os.link(folder / name, kept / name, follow_symlinks=False)
            linked.append(name)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                return
            raise  # a full disk, say: nothing is renamed yet, and the write fails as a whole
    journal = stage / f"{_JOURNAL}.tmp"
    journal.write_text(json.dumps({"staged": staged, "kept": linked, "removed": sorted(set(owned).difference(staged))}))
    os.replace(journal, stage / _JOURNAL)
    _fsync_dir(stage)


def _settle(stage: Path, folder: Path) -> None:
    """Settle a publication that stopped: undone while a staged file is still unpublished (the files
    it published go, those it replaced or removed come back); else finished (the files it was to
    remove go). Nothing when it had not begun: then it wrote no journal. Cut short itself, it can
    run again: a file it already put back has no link left to restore."""
    try:
        journal = json.loads((stage / _JOURNAL).read_text())
    except (OSError, ValueError):
        return
    if not any((stage / name).exists() for name in journal["staged"]):
        for name in journal["removed"]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(folder / name)
        return
    kept, had = stage / _KEPT, set(journal["kept"])
    for name in journal["staged"]:
        if name not in had and not (stage / name).exists():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(folder / name)  # published, with nothing of the same name before it
    for name in journal["kept"]:
        with contextlib.suppress(FileNotFoundError):  # put back by an earlier, interrupted undo
            os.replace(kept / name, folder / name)
    _fsync_dir(folder)


def recover(folder: str | os.PathLike) -> None:
    """Finish what killed staged writes into `folder` left (`_settle_stale_stages`), holding the
    folder as a publication does, so that no live writer's renames interleave with it."""
    with _publishing(Path(folder)):
        _settle_stale_stages(Path(folder))


def _settle_stale_stages(folder: Path) -> None:
    """Settle the publications of killed writers (their lock held by nobody), then delete their
    stages; a stage whose writer lives is left alone, and a folder that cannot be changed
    (read-only) as it is. The caller holds the folder (`_publishing`)."""
    pattern = re.compile(rf"\.{re.escape(_STAGE)}\.[a-z0-9_]{{8}}\.lock")  # as _held_lock names them
    with contextlib.suppress(OSError):
        for name in filter(pattern.fullmatch, os.listdir(folder)):
            with contextlib.suppress(OSError):
                fd = os.open(folder / name, os.O_RDONLY)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises while its writer lives
                    _settle(folder / name[: -len(".lock")], folder)
                    shutil.rmtree(folder / name[: -len(".lock")], ignore_errors=True)
                    os.unlink(folder / name)
                finally:
                    os.close(fd)
