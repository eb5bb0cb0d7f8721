"""gtok.paths and the writing commands: an output is checked before any work (it never destroys
an input, a folder, a foreign file or a device), inputs must be regular files, and a full or
read-only file system is one line with the old output kept (these were tests/test_edge_cases.py)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import BEDS, gtok, one_line_error, snapshot

from gtok.formats.manifest import write_manifest
from gtok.formats.shard import ShardReader


def mount_tmpfs(folder: Path, options: str) -> contextlib.AbstractContextManager:
    """A real small or read-only file system at `folder` (needs root, as CI has for SLURM)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")

    @contextlib.contextmanager
    def mounted():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)
        try:
            yield folder
        finally:
            subprocess.run(["umount", "-l", str(folder)], check=False)

    return mounted()


@pytest.mark.parametrize("target, words", [
    ("input", "must end in .gtok"),
    ("universe", "must end in .gtok"),
    ("no_suffix", "must end in .gtok"),
    ("folder", "is a folder"),
    ("foreign", "exists and is not a gtok shard; refusing to overwrite it"),
    ("shard_input", "is also an input"),
])
def test_tokenize_refuses_an_output_that_would_destroy_something(tmp_path, inputs, shard, target, words):
    beds = sorted(inputs.glob("Ex*.bed"))
    (tmp_path / "foreign.gtok").write_text("my notes\n")
    outputs = {"input": beds[0], "universe": inputs / "universe.bed", "no_suffix": tmp_path / "out" / "s",
               "folder": tmp_path, "foreign": tmp_path / "foreign.gtok", "shard_input": shard}
    extra = [shard] if target == "shard_input" else []
    before = snapshot(tmp_path)
    proc = gtok("tokenize", "-q", "-u", inputs / "universe.bed", "-o", outputs[target], *beds, *extra)
    one_line_error(proc, words)
    assert snapshot(tmp_path) == before


def test_an_output_that_is_a_device_or_fifo_stays_one(tmp_path, inputs):
    """As root, `-o /dev/null` once turned the device into a regular file. The test makes its own
    device node (a copy of /dev/null's) and FIFO, with the right suffix, so that a regression
    cannot damage the machine's /dev/null."""
    import stat

    specials = [tmp_path / "fifo.gtok"]
    os.mkfifo(specials[0])
    if os.geteuid() == 0:
        specials.append(tmp_path / "null.gtok")
        os.mknod(specials[1], 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    for special in specials:
        proc = gtok("tokenize", "-q", "-u", inputs / "universe.bed", "-o", special, BEDS[0], timeout=30)
        one_line_error(proc, special.name, "exists and is not a regular file")
        assert not special.is_file()
    one_line_error(gtok("manifest", "-q", "-o", "/dev/null", BEDS[0]), "/dev/null", "must end in .json")
    assert Path("/dev/null").is_char_device()


@pytest.mark.slow
def test_every_writing_command_checks_its_output(tmp_path, inputs, shard):
    before = snapshot(tmp_path)
    one_line_error(gtok("manifest", "-q", "-o", shard, shard), "must end in .json")
    (tmp_path / "notes.json").write_text('{"mine": 1}')
    before = snapshot(tmp_path)
    one_line_error(gtok("manifest", "-q", "-o", tmp_path / "notes.json", shard), "is not a gtok manifest")
    one_line_error(gtok("export-gtars", shard, shard), "exists and is not a folder")
    one_line_error(gtok("train", "-q", "-m", tmp_path / "notes.json", "--model", "encoder", "--out", shard),
                   "s.gtok: exists and is not a folder")
    one_line_error(gtok("embed", "-q", "-c", shard, "-o", BEDS[0], BEDS[0]), "must end in .npy")
    assert snapshot(tmp_path) == before


def test_a_missing_output_folder_is_created(tmp_path, inputs):
    out = tmp_path / "new" / "deeper" / "s.gtok"
    assert gtok("tokenize", "-q", "-u", inputs / "universe.bed", "-o", out, BEDS[0]).returncode == 0
    assert len(ShardReader(out)) == 1


def test_a_failed_command_removes_the_output_folders_it_created(tmp_path, inputs):
    tmp_path = tmp_path / "work"
    tmp_path.mkdir()
    bad = tmp_path / "bad.bed"
    bad.write_text("chr1\t500\t100\n")  # start after end
    (tmp_path / "kept").mkdir()  # a folder that was there stays, empty or not
    for args in (("tokenize", "-u", inputs / "universe.bed", "-o", tmp_path / "kept" / "new" / "s.gtok", bad),
                 ("index", "-u", bad, "-o", tmp_path / "i" / "u.gtokidx"),
                 ("manifest", "-o", tmp_path / "m" / "x.json", tmp_path / "nosuch.gtok")):
        assert gtok(*args).returncode == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["bad.bed", "kept"]


def test_empty_output_path(inputs):
    one_line_error(gtok("tokenize", "-q", "-u", inputs / "universe.bed", "-o", "", BEDS[0]), "output path is empty")


def test_read_only_folder(tmp_path, inputs):
    with mount_tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        proc = gtok("tokenize", "-q", "-u", inputs / "universe.bed", "-o", ro / "s.gtok", BEDS[0])
        one_line_error(proc, "s.gtok: its folder cannot be written (read-only, or not yours)")  # before any work



@pytest.mark.parametrize("how", ["atomic", "staged"])
def test_a_folder_made_read_only_half_way_is_one_error_and_keeps_the_old_file(tmp_path, monkeypatch, how):
    """The folder turns read-only while a file is written (chmod, a remount): the rename fails, and
    so does every clean-up; the error is still the one that names the file, not a traceback of the
    clean-up, and what is left the next writer removes. Simulated, so that it holds as root too."""
    from gtok.atomic import atomic_path, staged_files
    from gtok.errors import GtokError

    target = tmp_path / "x.gtok"
    target.write_bytes(b"old")

    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    with pytest.raises(GtokError, match=r"cannot write it: permission denied; nothing was written"):
        with atomic_path(target) if how == "atomic" else staged_files(tmp_path, owned=[target.name]) as tmp:
            (tmp if how == "atomic" else tmp / target.name).write_bytes(b"new")
            for name in ("replace", "unlink", "link", "mkdir"):
                monkeypatch.setattr(os, name, refuse)
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    with atomic_path(target) if how == "atomic" else staged_files(tmp_path, owned=[target.name]) as tmp:
        (tmp if how == "atomic" else tmp / target.name).write_bytes(b"new")  # the next writer removes the left-overs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.gtok"] and target.read_bytes() == b"new"

def test_full_disk_keeps_the_old_shard(tmp_path, inputs):
    big = tmp_path / "big.bed"
    rows = np.random.default_rng(0).integers(0, 10**8, 200_000)
    big.write_text("".join(f"chr1\t{s}\t{s + 500}\n" for s in rows))
    universe = tmp_path / "wide.bed"
    universe.write_text("".join(f"chr1\t{s}\t{s + 1000}\n" for s in range(0, 10**8, 1000)))
    with mount_tmpfs(tmp_path / "small", "size=1m") as small:
        assert gtok("tokenize", "-q", "-u", universe, "-o", small / "s.gtok", BEDS[0]).returncode == 0
        before = snapshot(small)
        proc = gtok("tokenize", "-q", "--no-cache", "-u", universe, "-o", small / "s.gtok", big)
        one_line_error(proc, "s.gtok: cannot write it: no space left on device; nothing was written (the existing file is unchanged)")
        assert snapshot(small) == before


@pytest.mark.slow
def test_train_out_and_export_into_a_file(tmp_path, shard):
    manifest = tmp_path / "m.json"
    write_manifest(manifest, [shard])
    before = snapshot(tmp_path)
    one_line_error(gtok("train", "-q", "-m", manifest, "--model", "encoder", "--out", manifest),
                   "m.json: exists and is not a folder")
    one_line_error(gtok("export-gtars", shard, manifest), "m.json: exists and is not a folder")
    assert snapshot(tmp_path) == before


def test_a_folder_or_fifo_input_is_named_as_such(tmp_path, inputs):
    one_line_error(gtok("tokenize", "-q", "-u", inputs / "universe.bed", "-o", tmp_path / "x.gtok", tmp_path),
                   "is a folder")
    fifo = tmp_path / "pipe.bed"
    os.mkfifo(fifo)
    one_line_error(gtok("tokenize", "-q", "-u", inputs / "universe.bed", "-o", tmp_path / "x.gtok", fifo),
                   "pipe.bed: is not a regular file")
    start = time.monotonic()  # a FIFO nobody writes to, as the universe: refused at once, no hang
    one_line_error(gtok("tokenize", "-q", "-u", fifo, "-o", tmp_path / "x.gtok", BEDS[0], timeout=30),
                   "pipe.bed: is not a regular file")
    assert time.monotonic() - start < 30 and not (tmp_path / "x.gtok").exists()


# -- several files at once (gtok.atomic.staged_files): all replaced, or none ---------------------------


def test_staged_files_replace_their_namesakes_together_or_not_at_all(tmp_path):
    from gtok.atomic import atomic_path, staged_files
    from gtok.errors import GtokError

    (tmp_path / "a.txt").write_text("old a")
    (tmp_path / "keep.txt").write_text("not ours")
    with staged_files(tmp_path) as stage:
        (stage / "a.txt").write_text("new a")
        with atomic_path(stage / "b.txt") as tmp:
            tmp.write_text("new b")
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"a.txt": "new a", "b.txt": "new b", "keep.txt": "not ours"}
    before = snapshot(tmp_path)
    with pytest.raises(GtokError, match=rf"^{tmp_path}/b.txt: cannot write it: no space left on device"):
        with staged_files(tmp_path) as stage:
            (stage / "a.txt").write_text("newer a")
            with atomic_path(stage / "b.txt"):
                raise OSError(28, "No space left on device")  # ENOSPC half-way
    assert snapshot(tmp_path) == before  # no file replaced, no staging folder left
    (tmp_path / "b.txt").write_text("old b")
    with pytest.raises(GtokError, match=r"b.txt: cannot write it: no space left on device; nothing was written "
                                        r"\(the existing file is unchanged\)\.$"):  # as atomic_path alone says
        with staged_files(tmp_path) as stage, atomic_path(stage / "b.txt"):
            raise OSError(28, "No space left on device")
    with pytest.raises(GtokError, match=rf"^{tmp_path}: cannot write it: no space left on device; nothing was written "
                                        r"\(the folder is as it was\)\.$"):  # a folder is not 'the existing file'
        with staged_files(tmp_path):
            raise OSError(28, "No space left on device")


def test_staged_files_remove_the_owned_files_not_written_and_publish_the_last_one_last(tmp_path, monkeypatch):
    """A model's files replaced by another's: a file the new set lacks goes, and config.yaml, which
    vouches for the others, is renamed only after every other change."""
    import gtok.atomic
    from gtok.atomic import staged_files

    for name in ("config.yaml", "model.ckpt", "model.safetensors", "notes.txt"):
        (tmp_path / name).write_text(f"old {name}")
    changes: list[str] = []
    replace, unlink = os.replace, os.unlink
    monkeypatch.setattr(gtok.atomic.os, "replace", lambda a, b: (
        changes.append(f"+{Path(b).name}") if Path(b).parent == tmp_path else None, replace(a, b)))
    monkeypatch.setattr(gtok.atomic.os, "unlink", lambda a, **kw: (
        unlink(a, **kw), changes.append(f"-{Path(a).name}") if Path(a).parent == tmp_path else None))
    with staged_files(tmp_path, owned=("config.yaml", "model.ckpt", "model.safetensors", "summary.json"),
                      last="config.yaml") as stage:
        for name in ("config.yaml", "model.ckpt", "metrics.csv"):
            (stage / name).write_text(f"new {name}")
    published = [c for c in changes if "gtok-staged" not in c]  # not the writer's own lock file
    assert published == ["+metrics.csv", "+model.ckpt", "-model.safetensors", "+config.yaml"]
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        "config.yaml": "new config.yaml", "model.ckpt": "new model.ckpt", "metrics.csv": "new metrics.csv",
        "notes.txt": "old notes.txt"}


MODEL_SET = ("config.yaml", "model.ckpt", "model.safetensors", "summary.json")


def _old_model(folder: Path) -> dict:
    for name in ("config.yaml", "model.ckpt", "model.safetensors", "notes.txt"):
        (folder / name).write_text(f"old {name}")
    return snapshot(folder)


def test_a_publication_that_fails_between_two_renames_is_undone(tmp_path, monkeypatch):
    """The renames into place stop half-way (an I/O error on the second): the files already renamed
    go and the replaced ones come back, so the folder is the old model whole, not a mix."""
    import gtok.atomic
    from gtok.atomic import staged_files

    before = _old_model(tmp_path)
    replace, calls = os.replace, []

    def failing(a, b):
        calls.append(b)
        if len([c for c in calls if Path(c).parent == tmp_path]) == 2:
            raise OSError(5, "Input/output error")
        return replace(a, b)

    monkeypatch.setattr(gtok.atomic.os, "replace", failing)
    with pytest.raises(OSError, match="Input/output error"):
        with staged_files(tmp_path, owned=MODEL_SET, last="config.yaml") as stage:
            for name in ("config.yaml", "model.ckpt", "metrics.csv", "summary.json"):
                (stage / name).write_text(f"new {name}")
    monkeypatch.undo()
    assert snapshot(tmp_path) == before


KILLED_PUBLICATION = """
import os, signal, sys
from pathlib import Path
import gtok.atomic
folder, replace, done = Path(sys.argv[1]), os.replace, []
def killed(a, b):
    replace(a, b)
    if Path(b).parent == folder and not Path(b).name.startswith("."):
        done.append(b)
        if len(done) == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)
gtok.atomic.os.replace = killed
with gtok.atomic.staged_files(folder, owned=OWNED, last="config.yaml") as stage:
    for name in ("config.yaml", "model.ckpt", "metrics.csv", "summary.json"):
        (stage / name).write_text("new " + name)
""".replace("OWNED", repr(MODEL_SET))


@pytest.mark.parametrize("renames", [1, 2, 3, 4])
def test_a_publication_killed_between_two_renames_is_undone_by_the_next_reader(tmp_path, renames):
    """kill -9 after the first, second or third rename leaves a mix for a moment; `recover` (which
    loading a model and the next gtok train run first) puts the old model back. After the last,
    config.yaml's, the new model is whole and stays."""
    from gtok.atomic import recover

    before = _old_model(tmp_path)
    proc = subprocess.run([sys.executable, "-c", KILLED_PUBLICATION, str(tmp_path), str(renames)])
    assert proc.returncode == -9
    recover(tmp_path)
    if renames < 4:
        assert snapshot(tmp_path) == before
    else:
        assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
            "config.yaml": "new config.yaml", "model.ckpt": "new model.ckpt", "metrics.csv": "new metrics.csv",
            "summary.json": "new summary.json", "notes.txt": "old notes.txt"}


def test_an_undo_cut_short_itself_is_finished_by_the_next_recover(tmp_path, monkeypatch):
    """The reader undoing a killed publication is itself stopped after putting back one file: the
    next `recover` finishes the undo, and never takes a file it put back for a new one."""
    import gtok.atomic
    from gtok.atomic import recover

    before = _old_model(tmp_path)
    assert subprocess.run([sys.executable, "-c", KILLED_PUBLICATION, str(tmp_path), "2"]).returncode == -9
    replace, done = os.replace, []

    def stopped(a, b):
        if done:
            raise KeyboardInterrupt
        done.append(b)
        return replace(a, b)

    monkeypatch.setattr(gtok.atomic.os, "replace", stopped)
    with pytest.raises(KeyboardInterrupt):
        recover(tmp_path)
    monkeypatch.undo()
    recover(tmp_path)
    assert snapshot(tmp_path) == before


def test_a_killed_publication_is_settled_before_the_next_one_not_over_it(tmp_path):
    """Writer A is killed half-way; writer B then publishes its whole set: B's publication first
    undoes A's (holding the folder), so a later `recover` has nothing to replay over B's files."""
    from gtok.atomic import recover, staged_files

    _old_model(tmp_path)
    assert subprocess.run([sys.executable, "-c", KILLED_PUBLICATION, str(tmp_path), "2"]).returncode == -9
    with staged_files(tmp_path, owned=MODEL_SET, last="config.yaml") as stage:
        for name in ("config.yaml", "model.ckpt"):
            (stage / name).write_text(f"B {name}")
    after = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert after == {"config.yaml": "B config.yaml", "model.ckpt": "B model.ckpt", "notes.txt": "old notes.txt"}
    recover(tmp_path)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == after


def test_a_new_lock_file_a_clean_up_holds_is_not_taken_for_ones_own(tmp_path, monkeypatch):
    """Between a writer's creating its lock file and locking it, a clean-up may lock it (taking it
    for a dead writer's): the writer then makes another, and never works unlocked."""
    import fcntl

    import gtok.atomic

    flock, calls = fcntl.flock, []

    def contended(fd, op):
        calls.append(fd)
        if len(calls) == 1:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return flock(fd, op)

    monkeypatch.setattr(gtok.atomic.fcntl, "flock", contended)
    fd, lock = gtok.atomic._held_lock(tmp_path / "x.gtok")
    try:
        assert len(calls) == 2 and lock.exists()
        with pytest.raises(BlockingIOError):
            with open(lock) as other:
                flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by the writer
    finally:
        os.close(fd)


def test_two_writers_of_one_folder_publish_one_after_the_other(tmp_path):
    """While one writer renames its files into a folder (it holds the folder's flock), another
    waits: the two sets never interleave."""
    import fcntl
    import threading

    from gtok.atomic import staged_files

    def write(text: str) -> None:
        with staged_files(tmp_path, owned=("a.txt", "b.txt"), last="b.txt") as stage:
            (stage / "a.txt").write_text(text)
            (stage / "b.txt").write_text(text)

    held = os.open(tmp_path, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)  # a publication under way
    second = threading.Thread(target=write, args=("second",))
    second.start()
    time.sleep(0.5)
    assert second.is_alive() and not (tmp_path / "a.txt").exists()
    os.close(held)
    second.join(10)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"a.txt": "second", "b.txt": "second"}


def test_a_folder_that_cannot_be_written_is_named_not_the_staging_file(tmp_path):
    from gtok.atomic import staged_files
    from gtok.errors import GtokError

    with mount_tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        with pytest.raises(GtokError, match=rf"^{ro}: cannot write it: read-only file system; nothing was written"):
            with staged_files(ro):
                pass


def test_a_killed_writers_staging_folder_is_removed_and_a_live_ones_kept(tmp_path):
    import fcntl

    from gtok.atomic import staged_files

    for stem in ("dead0000", "live0000"):  # named as staged_files names them (it once looked for other names)
        (tmp_path / f"..gtok-staged.{stem}").mkdir()
        (tmp_path / f"..gtok-staged.{stem}" / "x.png").write_bytes(b"half")
        (tmp_path / f"..gtok-staged.{stem}.lock").touch()
    with open(tmp_path / "..gtok-staged.live0000.lock") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # its writer is still running
        with staged_files(tmp_path) as stage:
            (stage / "x.png").write_bytes(b"whole")
            assert stage.name.startswith("..gtok-staged.")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["..gtok-staged.live0000", "..gtok-staged.live0000.lock", "x.png"]


def test_export_gtars_on_a_full_disk_leaves_the_folder_as_it_was(tmp_path):
    from gtok.formats.shard import write_shard

    records = [(f"r{i:03d}", np.arange(2000) + i) for i in range(400)]  # 4 kB a file: 1.6 MB in all
    small_shard = write_shard(tmp_path / "small.gtok", records[:2], 5000, None)
    big_shard = write_shard(tmp_path / "big.gtok", records, 5000, None)
    with mount_tmpfs(tmp_path / "full", "size=1m") as full:
        gtok("export-gtars", small_shard, full / "gt", check=True)
        before = snapshot(full)
        one_line_error(gtok("export-gtars", big_shard, full / "gt"), f"{full}/gt/", "no space left on device; nothing was written")
        assert snapshot(full) == before

