"""GTokDataset: work split over ranks and workers, determinism, cropping, labels, refusals, and an
exact mid-epoch resume in a new process (this file doubles as that process's script)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from gtok.data.dataset import IGNORE_LABEL, GTokDataset
from gtok.errors import FingerprintMismatchError, GtokError, ShardFormatError
from gtok.formats.gtars import export_gtars
from gtok.formats.manifest import write_manifest
from gtok.formats.shard import ShardReader, write_shard

VOCAB = 1007  # 1,000 regions + 7 special tokens
FP = "ab" * 32
SIZES = (7, 23, 2)  # uneven shards
N = sum(SIZES)


def make_shards(folder: Path, sizes=SIZES, fingerprint=FP, labels=True, seed=0, max_len=30, constant=False) -> Path:
    """Shards whose record r starts with token r, so every yielded record can be identified (with
    `constant`, every token of record r is r, so even a cropped record can be)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rid = 0
    for s, n in enumerate(sizes):
        records = []
        for _ in range(n):
            tokens = rng.integers(0, 1000, int(rng.integers(1, max_len)))
            tokens[0] = rid
            if constant:
                tokens[:] = rid
            label = (None if rid % 5 == 0 else "BT"[rid % 2]) if labels else None
            records.append((f"rec{rid}", tokens, label))
            rid += 1
        write_shard(folder / f"s{s}.gtok", records, VOCAB, fingerprint)
    return folder


@pytest.fixture
def shards(tmp_path) -> Path:
    return make_shards(tmp_path / "shards")


def originals(folder: Path) -> list[np.ndarray]:
    """Every record's tokens, in manifest order."""
    return [np.array(t, dtype=np.int64) for path in sorted(folder.glob("*.gtok")) for t in ShardReader(path)]


def order(ds) -> list[int]:
    return [int(s["input_ids"][0]) for s in ds]


def first_tokens(batches) -> list[int]:
    return [i for b in batches for i in b["input_ids"][:, 0].tolist()]


# -- work split -------------------------------------------------------------------------------------


@pytest.mark.parametrize("drop_remainder", [False, True])
def test_three_ranks_two_workers_cover_every_record(shards, drop_remainder):
    per_rank, batches_per_rank = [], []
    for rank in range(3):
        ds = GTokDataset(shards, seed=1, rank=rank, world_size=3, drop_remainder=drop_remainder)
        batches = list(DataLoader(ds, batch_size=4, collate_fn=ds.collate, num_workers=2))
        per_rank.append(first_tokens(batches))
        batches_per_rank.append(len(batches))
        assert len(per_rank[-1]) == len(ds)
    assert len({len(ids) for ids in per_rank}) == 1 and len(set(batches_per_rank)) == 1
    seen = Counter(i for ids in per_rank for i in ids)
    if drop_remainder:
        assert max(seen.values()) == 1 and len(seen) == 3 * (N // 3)
    else:
        assert set(seen) == set(range(N))
        assert sum(seen.values()) - N == 3 * -(-N // 3) - N  # the shortfall, filled by repeats only


@pytest.mark.parametrize("mode", [{"token_budget": 60}, {"batch_size": 4}, {"token_budget": 60, "max_length": 8}])
def test_ready_batches_are_equal_in_number_on_every_rank(tmp_path, mode):
    shards = make_shards(tmp_path / "c", constant=True, max_len=20)  # a cropped record is still recognisable
    counts, seen = [], Counter()
    for rank in range(3):
        ds = GTokDataset(shards, seed=2, rank=rank, world_size=3, **mode)
        batches = list(DataLoader(ds, batch_size=None, num_workers=2))
        counts.append((len(batches), len(ds)))
        seen.update(first_tokens(batches))
        for b in batches:
            size = b["input_ids"].numel()
            assert size <= mode.get("token_budget", 4 * 30) or len(b["input_ids"]) == 1
            assert b["attention_mask"].sum() == (b["input_ids"] != ds.pad_token_id).sum()
            assert b["labels"].shape == (len(b["input_ids"]),)
            assert b["attention_mask"].sum(1).max() <= mode.get("max_length", 30)
    assert len(set(counts)) == 1 and counts[0][0] == counts[0][1]
    assert set(seen) == set(range(N))


def test_a_record_over_the_budget_is_a_batch_of_one(tmp_path):
    folder = make_shards(tmp_path / "long", sizes=(5,), max_len=200, seed=3)
    lengths = {int(t[0]): t.size for t in ShardReader(folder / "s0.gtok")}
    for b in GTokDataset(folder, token_budget=50):
        if b["input_ids"].shape[1] > 50:
            assert b["input_ids"].shape[0] == 1 and lengths[int(b["input_ids"][0, 0])] > 50


# -- order --------------------------------------------------------------------------------------------


def test_order_is_determined_by_seed_and_epoch(shards):
    first = order(GTokDataset(shards, seed=3))
    assert first == order(GTokDataset(shards, seed=3))
    assert sorted(first) == list(range(N))
    other_epoch = GTokDataset(shards, seed=3)
    other_epoch.set_epoch(1)
    assert order(other_epoch) != first
    assert order(GTokDataset(shards, seed=4)) != first
    shard_of = np.searchsorted(np.cumsum(SIZES), first, side="right")
    assert np.count_nonzero(np.diff(shard_of)) == len(SIZES) - 1  # one shard at a time, records shuffled within


def test_no_shuffle_keeps_manifest_order(shards):
    assert order(GTokDataset(shards, shuffle=False)) == list(range(N))


def test_set_epoch_reaches_persistent_workers(shards):
    ds = GTokDataset(shards, seed=6)
    loader = DataLoader(ds, batch_size=4, collate_fn=ds.collate, num_workers=2, persistent_workers=True)
    expected = {}
    for epoch in (0, 1):
        fresh = GTokDataset(shards, seed=6)
        fresh.set_epoch(epoch)
        expected[epoch] = first_tokens(DataLoader(fresh, batch_size=4, collate_fn=fresh.collate, num_workers=2))
    assert expected[0] != expected[1]
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        assert first_tokens(loader) == expected[epoch]


# -- cropping -----------------------------------------------------------------------------------------


def test_max_length_crops_to_an_ordered_random_subset(tmp_path):
    folder = make_shards(tmp_path / "long", sizes=(20,), max_len=60, seed=4)
    full = originals(folder)

    def crops(epoch: int, **kw) -> list[np.ndarray]:
        ds = GTokDataset(folder, shuffle=False, max_length=10, **kw)
        ds.set_epoch(epoch)
        return [s["input_ids"].numpy() for s in ds]

    first = crops(0)
    assert all(got.size == min(10, orig.size) and _is_subsequence(got, orig) for got, orig in zip(first, full))
    assert any(orig.size > 10 for orig in full)
    assert all(np.array_equal(a, b) for a, b in zip(first, crops(0)))
    assert any(not np.array_equal(a, b) for a, b in zip(first, crops(1)))
    shuffled = crops(0, shuffle_tokens=True)
    assert all(got.size == min(10, orig.size) for got, orig in zip(shuffled, full))
    assert any(not _is_subsequence(got, orig) for got, orig in zip(shuffled, full))


def _is_subsequence(sub: np.ndarray, seq: np.ndarray) -> bool:
    it = iter(seq.tolist())
    return all(x in it for x in sub.tolist())


def test_shuffle_tokens_permutes_within_a_record(shards):
    got = [s["input_ids"].numpy() for s in GTokDataset(shards, shuffle=False, shuffle_tokens=True)]
    full = originals(shards)
    assert all(np.array_equal(np.sort(g), np.sort(f)) for g, f in zip(got, full))
    assert any(not np.array_equal(g, f) for g, f in zip(got, full))


# -- labels and vocabulary ----------------------------------------------------------------------------


def test_labels_become_class_ids_and_missing_labels_are_ignored(shards):
    ds = GTokDataset(shards, shuffle=False)
    assert ds.label_classes == ["B", "T"]
    expected = [IGNORE_LABEL if r % 5 == 0 else ds.label_classes.index("BT"[r % 2]) for r in range(N)]
    assert [s["label"] for s in ds] == expected
    batch = ds.collate(list(ds)[:4])
    assert batch["labels"].tolist() == expected[:4] and batch["labels"].dtype == torch.long
    assert (ds.vocab_size, ds.pad_token_id, ds.unk_token_id, ds.mask_token_id, ds.cls_token_id) == (1007, 1001, 1000, 1002, 1003)
    assert ds.fingerprint == FP and ds.num_records == N


def test_manifest_label_classes_must_be_the_shards_labels(shards, tmp_path):
    manifest = tmp_path / "m.json"
    content = write_manifest(manifest, sorted(shards.glob("*.gtok")))
    content["label_classes"] = ["A", "B", "T"]  # a hand-added class would shift the class ids of B and T
    manifest.write_text(json.dumps(content))
    with pytest.raises(GtokError, match="label_classes include 'A', which no shard's records have"):
        GTokDataset(manifest)
    content["label_classes"] = ["B"]
    manifest.write_text(json.dumps(content))
    with pytest.raises(GtokError, match="label 'T' is not among"):
        GTokDataset(manifest)


def test_unlabeled_shards_yield_no_labels(tmp_path):
    ds = GTokDataset(make_shards(tmp_path / "u", labels=False))
    assert ds.label_classes is None and "label" not in next(iter(ds))
    assert "labels" not in ds.collate(list(ds)[:2])


def test_gtars_files_are_one_record_shards(tmp_path, shards):
    folder = tmp_path / "gtars"
    folder.mkdir()
    export_gtars(np.array([5, 900, 17]), folder / "a.gtok")
    export_gtars(np.array([3]), folder / "b.gtok")
    ds = GTokDataset(folder, shuffle=False)
    assert ds.fingerprint is None and ds.vocab_size == 900 + 1 + 7  # unknown universe: ids stay below pad
    assert [s["input_ids"].tolist() for s in ds] == [[5, 900, 17], [3]]
    mixed = GTokDataset([*sorted(shards.glob("*.gtok")), folder / "a.gtok"])
    assert (mixed.fingerprint, mixed.vocab_size, mixed.num_records) == (FP, VOCAB, N + 1)


def test_mixed_fingerprints_are_refused_naming_both(tmp_path):
    a = make_shards(tmp_path / "a", sizes=(2,))
    b = make_shards(tmp_path / "b", sizes=(2,), fingerprint="cd" * 32)
    with pytest.raises(FingerprintMismatchError) as err:
        GTokDataset([a / "s0.gtok", b / "s0.gtok"])
    message = str(err.value)
    assert str(a / "s0.gtok") in message and str(b / "s0.gtok") in message and FP in message and "cd" * 32 in message


def test_the_models_fingerprint_is_checked(shards):
    assert GTokDataset(shards, expected_fingerprint=FP).fingerprint == FP
    with pytest.raises(FingerprintMismatchError, match=f"{FP}.*but the model expects {'ee' * 32}"):
        GTokDataset(shards, expected_fingerprint="ee" * 32)


def test_a_corrupt_shard_is_named(shards):
    bad = shards / "s1.gtok"
    data = bytearray(bad.read_bytes())
    data[200] ^= 0xFF  # inside the token data: only the checksum can tell
    bad.write_bytes(bytes(data))
    GTokDataset(shards)  # opening checks structure only
    with pytest.raises(ShardFormatError, match=str(bad)):
        GTokDataset(shards, verify=True)
    bad.write_bytes(bytes(data[:-10]))
    with pytest.raises(ShardFormatError, match=str(bad)):
        GTokDataset(shards)


# -- splits ---------------------------------------------------------------------------------------------


def test_validation_split_is_stable_and_disjoint(shards):
    train = order(GTokDataset(shards, split="train", val_fraction=0.3))
    val = order(GTokDataset(shards, split="val", val_fraction=0.3))
    assert not set(train) & set(val) and sorted(train + val) == list(range(N)) and val
    assert val == order(GTokDataset(shards, split="val", val_fraction=0.3))
    with pytest.raises(GtokError, match="no records"):
        GTokDataset(shards, split="val", val_fraction=0.0)


def test_manifest_split_column_assigns_whole_shards(shards, tmp_path):
    manifest = tmp_path / "m.json"
    content = write_manifest(manifest, sorted(shards.glob("*.gtok")))
    for entry, split in zip(content["shards"], ("train", "val", "train")):
        entry["split"] = split
    manifest.write_text(json.dumps(content))
    val = order(GTokDataset(manifest, split="val", val_fraction=0.5))
    assert sorted(val) == list(range(SIZES[0], SIZES[0] + SIZES[1]))


# -- batches and buffers ------------------------------------------------------------------------------


def test_batches_held_by_the_caller_are_never_overwritten(shards):
    ds = GTokDataset(shards, seed=7, token_budget=40)
    held = list(ds)  # every batch alive at once
    copied = [{k: v.clone() for k, v in b.items()} for b in ds]
    assert len(held) == len(copied) > 4
    assert all(torch.equal(h[k], c[k]) for h, c in zip(held, copied) for k in h)


def test_collate_pads_with_the_pad_token(shards):
    ds = GTokDataset(shards, shuffle=False)
    samples = list(ds)[:3]
    batch = ds.collate(samples)
    lengths = [s["input_ids"].numel() for s in samples]
    assert batch["input_ids"].shape == (3, max(lengths)) and batch["input_ids"].dtype == torch.long
    assert batch["attention_mask"].sum(1).tolist() == lengths
    for row, s, n in zip(batch["input_ids"], samples, lengths):
        assert torch.equal(row[:n], s["input_ids"]) and bool((row[n:] == ds.pad_token_id).all())


# -- exact resume in a new process --------------------------------------------------------------------

RESUME_MODES = {"samples": {"max_length": 6}, "budget": {"token_budget": 60, "max_length": 8}}
STOP_AFTER = 3


def _stateful_loader(folder: Path, mode: str) -> tuple[GTokDataset, StatefulDataLoader]:
    ds = GTokDataset(folder, seed=5, **RESUME_MODES[mode])
    batching = {"batch_size": None} if "token_budget" in RESUME_MODES[mode] else {"batch_size": 3, "collate_fn": ds.collate}
    return ds, StatefulDataLoader(ds, num_workers=2, **batching)


def _plain(batches) -> list:
    return [{k: v.tolist() for k, v in b.items()} for b in batches]


def _epoch(folder: Path, mode: str, epoch: int) -> list:
    ds, loader = _stateful_loader(folder, mode)
    ds.set_epoch(epoch)
    return _plain(loader)


def _stop(folder: Path, mode: str, state_file: Path) -> None:
    """Process 1: take STOP_AFTER batches of epoch 1, save the loader state, exit."""
    ds, loader = _stateful_loader(folder, mode)
    ds.set_epoch(1)
    batches = iter(loader)
    for _ in range(STOP_AFTER):
        next(batches)
    torch.save(loader.state_dict(), state_file)


def _resume(folder: Path, mode: str, state_file: Path, out: Path) -> None:
    """Process 2: restore, finish epoch 1, then run epoch 2."""
    ds, loader = _stateful_loader(folder, mode)
    loader.load_state_dict(torch.load(state_file))
    rest = _plain(loader)
    ds.set_epoch(2)
    out.write_text(json.dumps({"rest": rest, "next": _plain(loader)}))


@pytest.mark.slow
def test_resume_mid_epoch_in_a_new_process(shards, tmp_path):
    def run(*args) -> None:
        done = subprocess.run([sys.executable, __file__, *map(str, args)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]

    run("stop", shards, tmp_path)
    run("resume", shards, tmp_path)
    for mode in RESUME_MODES:
        got = json.loads((tmp_path / f"{mode}.out.json").read_text())
        full = _epoch(shards, mode, 1)
        assert len(full) > STOP_AFTER + 2
        assert got["rest"] == full[STOP_AFTER:]
        assert got["next"] == _epoch(shards, mode, 2)


def test_a_state_from_another_dataset_is_refused(shards):
    ds = GTokDataset(shards, seed=5)
    state = ds.state_dict()
    with pytest.raises(GtokError, match="cannot resume"):
        GTokDataset(shards, seed=6).load_state_dict(state)


@pytest.mark.parametrize("other", [{"batch_size": 8}, {"token_budget": 60, "max_length": 20}, {}])
def test_a_state_of_other_batching_is_refused(shards, other):
    """A position counts items: batches of 4 records, resumed as batches of 8, token budgets or
    single records, would skip or repeat records."""
    ds = GTokDataset(shards, seed=5, batch_size=4)
    it = iter(ds)
    next(it)
    with pytest.raises(GtokError, match=r"cannot resume: the loader state counts items of other batching \(.*batch_size 4 -> "):
        GTokDataset(shards, seed=5, **other).load_state_dict(ds.state_dict())
    GTokDataset(shards, seed=5, batch_size=4).load_state_dict(ds.state_dict())  # the same batching resumes


def test_a_data_modules_state_of_another_plan_is_refused(shards):
    from gtok.data.datamodule import GTokDataModule

    state = GTokDataModule(shards, batch_size=4, val_fraction=0).state_dict()
    GTokDataModule(shards, batch_size=4, val_fraction=0.0).load_state_dict(state)
    with pytest.raises(GtokError, match=r"data module's state counts items of other batching \(batch_size 4 -> 2\)"):
        GTokDataModule(shards, batch_size=2, val_fraction=0).load_state_dict(state)


def test_a_data_module_loaded_with_a_state_starts_there_whatever_it_had_yielded(shards):
    from gtok.data.datamodule import GTokDataModule
    from gtok.formats.manifest import write_manifest

    manifest = shards / "m.json"
    write_manifest(manifest, sorted(shards.glob("*.gtok")))
    dm = GTokDataModule(manifest, batch_size=2, val_fraction=0, num_workers=0, verify=False)
    start = dm.state_dict()
    loader = iter(dm.train_dataloader())
    for _ in range(3):
        next(loader)
    assert dm.state_dict()["position"] == 3
    dm.load_state_dict(start)
    assert dm.state_dict()["position"] == 0


def test_resuming_with_other_workers_is_refused(shards):
    ds = GTokDataset(shards, seed=5)
    it = iter(ds)
    next(it)
    state = {**ds.state_dict(), "num_workers": 2}
    ds.load_state_dict(state)
    with pytest.raises(GtokError, match="same num_workers"):
        iter(ds)


if __name__ == "__main__":
    phase, folder, tmp = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    for name in RESUME_MODES:
        if phase == "stop":
            _stop(folder, name, tmp / f"{name}.state.pt")
        else:
            _resume(folder, name, tmp / f"{name}.state.pt", tmp / f"{name}.out.json")
