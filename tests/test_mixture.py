"""Weighted dataset mixtures: exact shares per epoch, repeats and subsamples, determinism, the
per-rank split and resume of the drawn epoch, and the refusals (gtok.data.plan, GTokDataset,
gtok.options.check_mixture)."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from gtok.data import plan
from gtok.data.dataset import GTokDataset
from gtok.errors import GtokError
from gtok.formats.manifest import write_manifest
from gtok.formats.metadata import DEFAULT_DATASET, ShardMeta
from gtok.formats.shard import ShardReader, write_shard
from gtok.options import DataOptions, check_mixture, check_train_config

VOCAB = 1007
FP = "cd" * 32
WEIGHTS = {"big": 0.7, "mid": 0.2, "tiny": 0.1}


def dataset_of(*sizes: int) -> np.ndarray:
    """Dataset ids of records: `sizes[d]` records of dataset d, interleaved as shards would be."""
    return np.repeat(np.arange(len(sizes)), sizes)


def write_datasets(folder: Path, sizes: dict[str | None, int], manifest: bool = True) -> Path:
    """One shard per dataset (None: a shard that records none), whose record r starts with token r
    (so every yielded record is known), and a manifest of them."""
    folder.mkdir(parents=True, exist_ok=True)
    rng, rid, paths = np.random.default_rng(0), 0, []
    for k, (name, n) in enumerate(sizes.items()):
        records = []
        for _ in range(n):
            tokens = rng.integers(0, 1000, int(rng.integers(2, 20)))
            tokens[0] = rid
            records.append((f"rec{rid}", tokens))
            rid += 1
        paths.append(write_shard(folder / f"s{k}.gtok", records, VOCAB, FP, ShardMeta(dataset=name)))
    if not manifest:
        return folder
    write_manifest(folder / "m.json", paths)
    return folder / "m.json"


# -- the plan --------------------------------------------------------------------------------------


@pytest.mark.parametrize("weights, samples", [([0.7, 0.2, 0.1], 100_000), ([3, 1], 26), ([1, 1, 1], 10),
                                              ([0.5, 0, 0.5], 7), ([1e-9, 1], 5), ([1e308, 1e308, 5e307], 10)])
def test_counts_are_largest_remainder_shares(weights, samples):
    counts = plan.mixture_counts(np.array(weights, dtype=float), samples)
    quota = np.array(weights) / max(weights) / sum(np.array(weights) / max(weights)) * samples  # weights whose sum overflows
    assert counts.sum() == samples and np.all(np.abs(counts - quota) < 1)
    assert np.all(counts >= np.floor(quota)) and np.all(counts[np.array(weights) == 0] == 0)


@pytest.mark.parametrize("sizes", [(3, 2, 1), (1_000_000, 5, 200_000), (1, 1_000_000, 40), (70_000, 20_000, 10_000)],
                         ids=["tiny", "huge", "mixed", "exact"])
def test_100000_draws_land_within_1_percent_of_each_share(sizes):
    of = dataset_of(*sizes)
    order = plan.mixture_order(of, of, np.array([0.7, 0.2, 0.1]), 100_000, seed=3, epoch=0)
    shares = np.bincount(of[order], minlength=3) / order.size
    assert order.size == 100_000 and np.all(np.abs(shares - [0.7, 0.2, 0.1]) < 0.01)


def test_a_small_dataset_repeats_whole_permutations_and_a_large_one_is_subsampled():
    of = dataset_of(7, 5000, 1500)
    order = plan.mixture_order(of, of, np.array([1.0, 1.0, 4.0]), 6000, seed=0, epoch=4)
    small = Counter(order[of[order] == 0].tolist())
    assert set(small) == set(range(7)) and set(small.values()) <= {142, 143}  # 1000 draws: 142 or 143 each
    longer = Counter(order[of[order] == 2].tolist())  # 4000 draws of 1500 (drawn a lap at a time)
    assert len(longer) == 1500 and Counter(longer.values()) == {2: 500, 3: 1000}
    large = order[of[order] == 1]
    assert large.size == 1000 and np.unique(large).size == 1000  # no repeats within the epoch
    runs = np.flatnonzero(np.diff(of[order])) + 1
    assert runs.size > 500  # the datasets alternate throughout, not one block after the other


def test_the_draws_are_a_function_of_seed_and_epoch():
    of = dataset_of(50, 80, 3)
    w = np.array([1.0, 2.0, 1.0])
    first = plan.mixture_order(of, of, w, 300, seed=1, epoch=2)
    assert np.array_equal(first, plan.mixture_order(of, of, w, 300, seed=1, epoch=2))
    assert not np.array_equal(first, plan.mixture_order(of, of, w, 300, seed=1, epoch=3))
    assert not np.array_equal(first, plan.mixture_order(of, of, w, 300, seed=2, epoch=2))


def plain_digest(folder: Path) -> str:
    """What plain epochs yield on two ranks, in three modes, as one digest."""
    seen = []
    for mode in ({}, {"batch_size": 5}, {"token_budget": 60}):
        for rank in range(2):
            ds = GTokDataset(folder, seed=7, rank=rank, world_size=2, **mode)
            ds.set_epoch(2)
            batches = [ds.collate([b]) if not mode else b for b in ds]
            seen.append([b["input_ids"][:, 0].tolist() for b in batches])
    return hashlib.sha256(repr(seen).encode()).hexdigest()[:16]


def test_plain_epochs_are_unchanged(tmp_path):
    """Without a mixture the data set yields what it yielded before mixtures existed (the digest
    is the one that code gave)."""
    folder = write_datasets(tmp_path / "d", {"a": 5, "b": 17, "c": 1, "d": 9}, manifest=False)
    assert plain_digest(folder) == PLAIN_DIGEST


PLAIN_DIGEST = "56ba374d1830d0ea"


def test_an_epoch_of_no_draws_is_an_empty_order():
    """As before the draws went shard by shard (numpy refuses to concatenate no runs)."""
    order = plan.mixture_order(dataset_of(5, 3), dataset_of(5, 3), np.array([1.0, 1.0]), 0, 0, 0)
    assert order.size == 0 and order.dtype == np.int64


def test_a_dataset_drawn_but_without_records_is_refused_by_the_plan():
    with pytest.raises(ValueError, match="dataset 1 is drawn"):
        plan.mixture_order(dataset_of(5, 0), dataset_of(5, 0), np.array([1.0, 1.0]), 10, 0, 0)


# -- the data set ----------------------------------------------------------------------------------


@pytest.fixture
def mixed(tmp_path) -> Path:
    return write_datasets(tmp_path / "d", {"big": 400, "mid": 30, "tiny": 3})


def first_ids(batches) -> list[int]:
    return [i for b in batches for i in b["input_ids"][:, 0].tolist()]


def dataset_shares(ids: list[int], sizes=(400, 30, 3)) -> np.ndarray:
    of = dataset_of(*sizes)
    return np.bincount(of[ids], minlength=len(sizes)) / len(ids)


def test_the_data_set_draws_the_mixture_from_shards(mixed):
    ds = GTokDataset(mixed, mixture=WEIGHTS, samples_per_epoch=100_000, batch_size=1000, seed=5, rank=0, world_size=1)
    ids = first_ids(ds)
    assert len(ids) == 100_000 and len(ds) == 100
    assert np.all(np.abs(dataset_shares(ids) - [0.7, 0.2, 0.1]) < 0.01)
    samples = GTokDataset(mixed, mixture={"tiny": 1, "big": 0}, samples_per_epoch=9, rank=0, world_size=1)
    assert len(samples) == 9 and sorted(int(s["input_ids"][0]) for s in samples) == [430, 430, 430, 431, 431, 431,
                                                                                       432, 432, 432]


def test_weights_and_sizes_computed_with_numpy_are_numbers(mixed):
    """np.float32 weights and an np.int64 epoch length, as numpy arithmetic gives them, draw as
    Python numbers do (they were refused as 'must be a non-negative number'), and the loader's
    state, saved in checkpoints, holds Python numbers."""
    given = {"big": np.float32(0.7), "mid": np.float32(0.2), "tiny": np.float32(0.1)}
    ds = GTokDataset(mixed, mixture=given, samples_per_epoch=np.int64(1000), batch_size=100, seed=5, rank=0, world_size=1)
    python = GTokDataset(mixed, mixture={k: float(v) for k, v in given.items()}, samples_per_epoch=1000, batch_size=100,
                         seed=5, rank=0, world_size=1)
    assert first_ids(ds) == first_ids(python)
    assert type(ds.samples_per_epoch) is int and all(type(w) is float for w in ds.mixture.values())


def test_options_computed_with_numpy_are_checked_as_numbers():
    from gtok.options import DataOptions, make_config

    opts = make_config(DataOptions, {"batch_size": np.int64(8), "val_fraction": np.float32(0.25)}, "data")
    assert (opts.batch_size, type(opts.batch_size), type(opts.val_fraction)) == (8, int, float)


def test_a_train_configs_mixture_weights_computed_with_numpy_are_numbers():
    """gtok.training.train checks and records its config's data section as make_config gives it:
    np.float32 weights there were still refused as 'must be a non-negative number' (only
    GTokDataset took them), and the run's YAML takes only Python's numbers."""
    import yaml

    from gtok.options import make_config

    cfg = {"data": {"mixture": {"a": np.float32(0.7), "b": np.int64(3)}, "samples_per_epoch": np.int64(100)}}
    check_train_config(cfg)
    data = make_config(DataOptions, cfg["data"], "config section 'data'")
    assert data.mixture == {"a": pytest.approx(0.7), "b": 3} and type(data.mixture["a"]) is float
    yaml.safe_dump(data.mixture)  # numpy scalars would be refused here


def test_an_epoch_is_as_many_draws_as_records_by_default(mixed):
    ds = GTokDataset(mixed, mixture={"mid": 1}, batch_size=10, rank=0, world_size=1)
    ids = first_ids(ds)
    assert ds.samples_per_epoch == 433 and len(ids) == 433 and set(ids) == set(range(400, 430))


def test_ranks_share_the_drawn_epoch_and_resume_it_at_another_world_size(mixed):
    def epoch(world: int, **kw) -> list[list[int]]:
        return [first_ids(GTokDataset(mixed, mixture=WEIGHTS, samples_per_epoch=120, batch_size=4, seed=2, rank=r,
                                      world_size=world, **kw)) for r in range(world)]

    whole = epoch(1)[0]
    assert len(whole) == 120
    three = epoch(3)  # 30 batches: 10 per rank, item g on rank g % 3
    assert sorted(sum(three, [])) == sorted(whole)
    assert [three[g % 3][(g // 3) * 4:(g // 3) * 4 + 4] for g in range(30)] == [whole[4 * g:4 * g + 4] for g in range(30)]

    ds = GTokDataset(mixed, mixture=WEIGHTS, samples_per_epoch=120, batch_size=4, seed=2, rank=1, world_size=3)
    it = iter(ds)
    for _ in range(4):
        next(it)
    state = ds.state_dict()  # 4 batches on each of 3 ranks: items 0..11 consumed
    rest = []
    for r in range(2):
        other = GTokDataset(mixed, mixture=WEIGHTS, samples_per_epoch=120, batch_size=4, seed=2, rank=r, world_size=2)
        other.load_state_dict(state)
        rest.append(first_ids(other))
    assert sorted(sum(rest, [])) == sorted(whole[48:])


def test_dataloader_workers_read_the_same_drawn_epoch(mixed):
    from torch.utils.data import DataLoader

    ds = GTokDataset(mixed, mixture=WEIGHTS, samples_per_epoch=90, seed=4, rank=0, world_size=1)
    ds.set_epoch(1)
    alone = [int(s["input_ids"][0]) for s in ds]
    loader = DataLoader(ds, batch_size=3, collate_fn=ds.collate, num_workers=2)
    # worker w reads items w, w + 2, ...; the loader takes a batch of 3 from each worker in turn
    assert first_ids(loader) == [alone[k + j] for k in range(0, 90, 6) for j in (0, 2, 4, 1, 3, 5)]


def test_token_budget_packs_the_mixed_epoch_into_full_batches(mixed):
    ds = GTokDataset(mixed, mixture=WEIGHTS, samples_per_epoch=500, token_budget=200, seed=1, rank=0, world_size=1)
    batches = list(ds)
    assert sum(b["input_ids"].shape[0] for b in batches) == 500
    assert all(b["input_ids"].numel() <= 200 for b in batches) and len(batches) < 100  # about 10 records a batch


def test_shards_without_a_dataset_count_as_the_default_dataset(tmp_path):
    folder = write_datasets(tmp_path / "d", {None: 4, "named": 6}, manifest=False)
    ds = GTokDataset(folder, mixture={DEFAULT_DATASET: 1}, samples_per_epoch=8, rank=0, world_size=1)
    assert ds.records.datasets == [DEFAULT_DATASET, "named"]
    assert sorted(Counter(int(s["input_ids"][0]) for s in ds).values()) == [2, 2, 2, 2]


def test_a_resume_state_of_another_mixture_is_refused(mixed):
    ds = GTokDataset(mixed, mixture=WEIGHTS, samples_per_epoch=40, rank=0, world_size=1)
    other = GTokDataset(mixed, mixture={"big": 1}, samples_per_epoch=40, rank=0, world_size=1)
    with pytest.raises(GtokError, match="cannot resume: the loader state is of mixture"):
        other.load_state_dict(ds.state_dict())
    plain = GTokDataset(mixed, rank=0, world_size=1)
    assert "mixture" not in plain.state_dict()  # a plain epoch's state is as before


@pytest.mark.parametrize("kwargs, error, message", [
    ({"mixture": {"brain": 1}}, GtokError, "mixture: the data has no dataset 'brain' .*'big', 'mid', 'tiny'"),
    ({"mixture": {"big": -1}}, ValueError, "mixture weight of 'big' must be a non-negative number"),
    ({"mixture": {"big": 0, "mid": 0}}, ValueError, "mixture weights are all zero"),
    ({"mixture": {}}, ValueError, "mixture must map dataset names to weights"),
    ({"samples_per_epoch": 10}, ValueError, "samples_per_epoch is the length of a mixture's epoch"),
    ({"mixture": {"big": 1}, "samples_per_epoch": 0}, ValueError, "samples_per_epoch must be a positive integer"),
    ({"mixture": {"big": 1}, "shuffle": False}, ValueError, "needs shuffle=True"),
])
def test_bad_mixtures_are_refused_in_one_line(mixed, kwargs, error, message):
    with pytest.raises(error, match=message) as info:
        GTokDataset(mixed, **kwargs)
    assert "\n" not in str(info.value)


def test_a_dataset_with_no_records_in_the_split_is_refused(tmp_path):
    folder = tmp_path / "d"
    write_datasets(folder, {"a": 5, "b": 5}, manifest=False)
    write_manifest(folder / "m.json", [(folder / "s0.gtok", "train"), (folder / "s1.gtok", "val")])
    with pytest.raises(GtokError, match="mixture: dataset 'b' has no records in the train split"):
        GTokDataset(folder / "m.json", split="train", mixture={"a": 1, "b": 1})
    assert len(GTokDataset(folder / "m.json", split="train", mixture={"a": 1, "b": 0}, rank=0, world_size=1)) == 5


# -- option checks (gtok train and the workflow's dry run) ----------------------------------------


@pytest.mark.parametrize("data, world, message", [
    ({"mixture": {"big": 1, "brain": 2}}, 1, "mixture names dataset 'brain', which the data lacks .*'big', 'mid'"),
    ({"mixture": {"big": 1}, "samples_per_epoch": 63, "batch_size": 8}, 8, "samples_per_epoch is 63, below the 64"),
    ({"mixture": {"big": 1}, "samples_per_epoch": 3, "token_budget": 100}, 4, "samples_per_epoch is 3, below the 4"),
])
def test_check_mixture_names_the_key(data, world, message):
    with pytest.raises(GtokError, match=message) as info:
        check_mixture(DataOptions(**data), ["big", "mid"], world, "config")
    assert str(info.value).startswith("config section 'data': ") and "\n" not in str(info.value)
    check_mixture(DataOptions(**{**data, "mixture": {"big": 1}, "samples_per_epoch": 64}), ["big", "mid"], world, "config")


@pytest.mark.parametrize("mixture, message", [
    ({"a": -0.5}, "mixture weight of 'a' must be a non-negative number"),
    ({"a": 0, "b": 0.0}, "mixture weights are all zero"),
    ([0.5], "mixture must be a mapping or null"),
    ({"a": "x"}, "mixture weight of 'a' must be a non-negative number"),
    ({"a": 10**400, "b": 1}, "mixture weight of 'a' must be a non-negative number"),  # an integer no float holds
])
def test_train_config_refuses_bad_weights(mixture, message):
    with pytest.raises(GtokError, match=f"config section 'data': {message}"):
        check_train_config({"data": {"mixture": mixture}})


def test_a_bad_weight_is_shown_not_the_whole_mixture():
    """'weight of 'b' must be a number, not {'a': 1, 'b': 'x'}' read as if the weight were the mapping."""
    with pytest.raises(GtokError) as info:
        check_train_config({"data": {"mixture": {"a": 1, "b": "x"}}})
    assert str(info.value) == "config section 'data': mixture weight of 'b' must be a non-negative number, not 'x'."
    with pytest.raises(ValueError, match=r"^mixture weights are all zero; give at least one dataset a positive weight$"):
        GTokDataset([], mixture={"a": 0})


def test_a_mixture_is_part_of_the_run_and_runs_without_one_keep_their_record(mixed, tmp_path):
    from gtok.formats.manifest import load_manifest
    from gtok.options import EncoderConfig, TrainerOptions
    from gtok.training.run import run_options

    manifest = load_manifest(mixed)

    def record(**data):
        return run_options("encoder", EncoderConfig(), DataOptions(**data), TrainerOptions(), {}, manifest)

    plain = record()
    assert not any(key.startswith(("data.mixture", "data.samples_per_epoch", "data.datasets")) for key in plain)
    mixed_run = record(mixture={"big": 1}, samples_per_epoch=100)
    assert mixed_run["data.mixture"] == {"big": 1} and mixed_run["data.samples_per_epoch"] == 100
    renamed = write_datasets(tmp_path / "r", {"huge": 400, "mid": 30, "tiny": 3})
    other = run_options("encoder", EncoderConfig(), DataOptions(mixture={"big": 1}, samples_per_epoch=100),
                        TrainerOptions(), {}, load_manifest(renamed))
    assert other["data.datasets"] != mixed_run["data.datasets"]


@pytest.mark.parametrize("datasets", [3, 12], ids=["4-shards-each", "more-than-kept-open"])
def test_a_mixed_epoch_reads_each_dataset_one_shard_at_a_time(tmp_path, monkeypatch, datasets):
    """Reopening a shard (its header, index and tables checked again) costs up to a millisecond:
    draws interleaved across every shard reopened one nearly per record, 40 times slower than a
    plain epoch. Each dataset's draws go shard by shard, as a plain epoch's records do, and a
    shard of every drawn dataset stays open."""
    from gtok.data import records

    folder = tmp_path / "d"
    write_datasets(folder, {f"s{k}": 30 for k in range(12)}, manifest=False)
    name = [f"d{k * datasets // 12}" for k in range(12)]
    write_manifest(folder / "m.json", [(folder / f"s{k}.gtok", None, name[k]) for k in range(12)])
    opened = []
    monkeypatch.setattr(records, "ShardReader", lambda path: opened.append(path) or ShardReader(path))
    mixture = {n: 2 if n == name[-1] else 1 for n in name}
    ds = GTokDataset(folder / "m.json", mixture=mixture, samples_per_epoch=720, batch_size=8, rank=0, world_size=1)
    ids = first_ids(ds)
    drawn = Counter(name[i // 30] for i in ids)
    assert len(ids) == 720 and drawn[name[-1]] > drawn[name[0]]
    laps = -(-max(drawn.values()) // (360 // datasets))  # the most laps of any dataset
    assert len(opened) <= 12 * laps + datasets  # each shard once a lap, and a few at a lap's turn
