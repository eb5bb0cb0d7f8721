"""`GTokDataModule`: the training and validation loaders of a manifest, resumable mid-epoch.

How an interrupted run continues with exactly the batches an uninterrupted one would have seen
(Lightning 2.x; each point below is exercised by tests/test_train.py):

* The data set forms the batches itself (its `batch_size` or `token_budget` mode), which gives
  the loader an exact `len()` per rank for any number of workers; Lightning then fetches nothing
  ahead, so the batches the loader has yielded are the batches trained on.
* Where training stands in an epoch is one number, the epoch's *position*: the items consumed by
  all ranks together (`gtok.data.plan`). The module's own `state_dict`, which Lightning saves in
  every checkpoint and hands back before it builds the loaders of a resumed run, holds the data
  epoch, that position, and how many batches each rank has done in the epoch. A resumed run at
  the same world size continues bit-exactly; at another world size each rank continues with its
  part of exactly the items not seen yet, and `len()` counts the batches done before, as
  Lightning's restored progress expects.
* The epoch's order is chosen by `GTokDataset.set_epoch` before that epoch's workers start.
  Lightning calls `set_epoch` only on samplers, so the loader is rebuilt at every epoch
  (`Trainer(reload_dataloaders_every_n_epochs=1)`, which `train_dataloader` insists on). That
  also keeps `len()` right when `token_budget` packs each epoch into a different number of batches.
* The data epoch is counted here, not taken from `trainer.current_epoch`: Lightning counts an
  epoch cut short by `max_steps` as completed, so after extending a finished run its epoch number
  runs one ahead of the data.

With `verify=True` (the default) the shards are checked once, when the module is first set up,
before either data set opens them (see `check_shards`).
"""

from __future__ import annotations

import os
import signal
import sys
import weakref
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from gtok.data.dataset import GTokDataset, refuse_other_items
from gtok.errors import GtokError
from gtok.formats.manifest import check_shard, load_manifest
from gtok.options import DataOptions

_DEFAULTS = DataOptions()


class Loader(DataLoader):
    """A DataLoader whose workers can be stopped from outside (`stop_workers`): they ignore SIGTERM
    (`init_worker`), so one left to exit would make multiprocessing wait for it, at the process's
    exit, without end; torch stops them only when it drops the loader's iterator, which a stopped
    run's traceback (or a reference cycle) can keep alive past that point."""

    _live: weakref.ref | None = None

    def _get_iterator(self) -> Any:
        live = super()._get_iterator()
        self._live = weakref.ref(live)
        return live

    def stop_workers(self) -> None:
        live = self._live() if self._live is not None else None
        if live is not None and hasattr(live, "_shutdown_workers"):  # none without workers
            live._shutdown_workers()


class EpochLoader(Loader):
    """The DataLoader of one training epoch, counting the batches it has yielded."""

    batches_yielded = 0

    def __iter__(self) -> Iterator[Any]:
        self.batches_yielded = 0
        for batch in super().__iter__():
            self.batches_yielded += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """Nothing: where the epoch stands is the data module's state, which Lightning restores
        before it builds the loaders (so `len()` is right from the start)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    @property
    def exhausted(self) -> bool:
        return self.batches_yielded and self.dataset._session(self.dataset.epoch)[1] + self.batches_yielded >= len(self)


class GTokDataModule(L.LightningDataModule):
    """Train/validation split of a manifest's records, batched by count or by token budget.

    A shard with a `split` in the manifest (from the sample sheet's `split` column) goes wholly to
    that split: `train` shards train, `val` shards validate, shards of any other split (`test`)
    do neither. Records of shards without a split go to validation by a stable hash of their name
    (`val_fraction`). There is a validation loader when there are `val` shards or val_fraction > 0.
    `verify` checks every shard against the manifest once per process (`check_shards`), with a
    progress bar when `progress` is true. A `mixture` (with `samples_per_epoch`) draws the training
    records by dataset (`GTokDataset`); validation reads its records once each, unmixed. The
    defaults are `gtok.options.DataOptions`'.
    """

    def __init__(
        self,
        manifest: str | os.PathLike,
        *,
        batch_size: int = _DEFAULTS.batch_size,
        token_budget: int | None = _DEFAULTS.token_budget,
        num_workers: int = _DEFAULTS.num_workers,
        max_length: int | None = _DEFAULTS.max_length,
        val_fraction: float = _DEFAULTS.val_fraction,
        shuffle_tokens: bool = _DEFAULTS.shuffle_tokens,
        seed: int = 0,
        verify: bool = _DEFAULTS.verify,
        mixture: dict[str, float] | None = _DEFAULTS.mixture,
        samples_per_epoch: int | None = _DEFAULTS.samples_per_epoch,
        progress: bool = False,
    ):
        super().__init__()
        self.manifest = os.fspath(manifest)
        self.save_hyperparameters(ignore=["manifest", "progress"])
        self._progress = progress
        self._verified = not verify
        self.hparams["manifest"] = self.manifest  # a str: checkpoints hold only plain types, for safe loading
        self.train_set: GTokDataset | None = None
        self.val_set: GTokDataset | None = None
        self._world: tuple[int, int] | None = None
        self._loader: EpochLoader | None = None
        self._loaders: weakref.WeakSet[Loader] = weakref.WeakSet()
        self._resume = {"epoch": 0, "position": 0, "done": 0}  # where the next train loader starts

    def _dataset(self, split: str | None, train: bool, rank: int | None, world: int | None) -> GTokDataset:
        """The training set (shuffled, mixed when there is a mixture) or the validation set."""
        h = self.hparams
        return GTokDataset(
            self.manifest,
            shuffle=train,
            seed=h.seed,
            max_length=h.max_length,
            shuffle_tokens=h.shuffle_tokens,
            token_budget=h.token_budget,
            batch_size=None if h.token_budget else h.batch_size,
            rank=rank,
            world_size=world,
            split=split,
            val_fraction=h.val_fraction,
            **({"mixture": h.mixture, "samples_per_epoch": h.samples_per_epoch} if train else {}),
        )

    def setup(self, stage: str | None = None) -> None:
        """Open the data sets, split for this process's rank (rebuilt if the rank is new)."""
        trainer = self.trainer
        world = (trainer.global_rank, trainer.world_size) if trainer is not None else None
        if self.train_set is not None and (world is None or world == self._world):
            return
        if not self._verified:
            check_shards(self.manifest, self._progress)
            self._verified = True
        rank, size = world if world is not None else (None, None)
        splits = {e.split for e in load_manifest(self.manifest).entries} - {None}
        by_split = bool(splits) or self.hparams.val_fraction > 0
        self.train_set = self._dataset("train" if by_split else None, True, rank, size)
        has_val = "val" in splits or self.hparams.val_fraction > 0
        self.val_set = self._dataset("val", False, rank, size) if has_val else None
        self._world = (self.train_set.rank, self.train_set.world_size)

    def train_dataloader(self) -> EpochLoader:
        """The next data epoch's loader, started where the run stands (`state_dict`)."""
        trainer = self.trainer
        if trainer is not None and trainer.reload_dataloaders_every_n_epochs != 1:
            raise GtokError("GTokDataModule needs Trainer(reload_dataloaders_every_n_epochs=1) to set each epoch's order.")
        self.setup("fit")
        self._resume = self._position()
        self.train_set.resume_at(**self._resume)
        self._loader = EpochLoader(self.train_set, batch_size=None, **self._loader_options())
        self._loaders.add(self._loader)
        return self._loader

    def val_dataloader(self) -> DataLoader | list:
        self.setup("fit")
        if self.val_set is None:
            return []
        loader = Loader(self.val_set, batch_size=None, **self._loader_options())
        self._loaders.add(loader)
        return loader

    def stop_workers(self) -> None:
        """Stop the loader workers of every loader made here that still has them (see `Loader`)."""
        for loader in list(self._loaders):
            loader.stop_workers()

    def _loader_options(self) -> dict[str, Any]:
        workers = self.hparams.num_workers
        return {
            "num_workers": workers,
            "pin_memory": torch.cuda.is_available(),
            "persistent_workers": False,
            "prefetch_factor": 4 if workers else None,
            "worker_init_fn": init_worker if workers else None,
        }

    def state_dict(self) -> dict[str, Any]:
        """Where training stands: the data epoch, its position (items consumed by all ranks) and
        the batches each rank has done in it; the next epoch's start once this one is used up."""
        return {**self._position(), "plan": self._plan()}

    def _position(self) -> dict[str, int]:
        loader = self._loader
        if loader is None or not loader.batches_yielded:
            return dict(self._resume)
        if loader.exhausted:
            return {"epoch": self._resume["epoch"] + 1, "position": 0, "done": 0}
        k, world = loader.batches_yielded, self.train_set.world_size
        return {"epoch": self._resume["epoch"], "position": self._resume["position"] + k * world,
                "done": self._resume["done"] + k}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        refuse_other_items(state.get("plan"), self._plan(), "data module's state")
        self._resume = {"epoch": int(state["epoch"]), "position": int(state.get("position", 0)),
                        "done": int(state.get("done", 0))}
        self._loader = None

    def _plan(self) -> dict[str, Any]:
        """The options the epochs' plan is made of, besides the manifest (what a position counts)."""
        h = self.hparams
        keys = ("seed", "batch_size", "token_budget", "max_length", "val_fraction", "mixture", "samples_per_epoch")
        plan = {key: h[key] for key in keys}
        if h.token_budget:
            plan["batch_size"] = None  # not used
        else:
            plan["max_length"] = None  # crops records, and does not decide the items
        return plan

    @property
    def data_epoch(self) -> int:
        """The data epoch the current (or next) train loader yields."""
        return self._resume["epoch"]

    @property
    def vocab_source(self) -> GTokDataset:
        """An opened data set, for the vocabulary (sizes, special ids, fingerprint) and label classes."""
        self.setup("fit")
        return self.train_set


def check_shards(manifest: str | os.PathLike, progress: bool = False) -> None:
    """Refuse, naming the shard, any shard whose bytes changed since `manifest` was written.

    Each shard's CRCs cover every byte of it, so re-checking them (`ShardReader.verify`, about
    1.7 GB/s on one core) catches any damaged byte; its records, tokens, vocabulary and labels
    must also still be the manifest's (`gtok.formats.manifest.shard_problems`). The sha256 costs more
    (about 1.1 GB/s) and adds only the detection of a shard replaced by another intact one of the
    same counts, which `gtok verify` is for; it is used here only for gtars files, which carry no
    CRCs.
    """
    from tqdm import tqdm

    listed = load_manifest(manifest)
    for entry in tqdm(listed.entries, desc="checking shards", unit="shard", disable=not progress or len(listed.entries) < 2):
        check_shard(entry, listed.path, integrity=True)


def init_worker(worker_id: int) -> None:
    """A loader worker's `worker_init_fn`: it ignores SIGTERM, and says nothing of a batch it was
    handing over when the training process stopped (`quiet_abandoned_handoffs`). SLURM's
    preemption, scancel and time limit signal every process of the job: a worker that died of it
    made the trainer fail with torch's traceback before it saved the step; the trainer, which
    saves the step and stops, ends its workers itself (`Loader.stop_workers`)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    quiet_abandoned_handoffs(worker_id)


def quiet_abandoned_handoffs(worker_id: int) -> None:
    """A loader worker's `worker_init_fn`: no traceback when the training process stops while it
    takes a batch. A worker hands each batch's tensors over as file descriptors, served by a
    thread of multiprocessing's resource_sharer; when Ctrl-C stops the training process in that
    handshake, the thread's EOFError or BrokenPipeError went to sys.excepthook, and its traceback
    followed `gtok train`'s one-line message on the shared stderr (seen under load). Any other
    error of the worker is printed as before."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if not (issubclass(kind, (EOFError, ConnectionError)) and _in_resource_sharer(tb)):
            previous(kind, value, tb)

    sys.excepthook = hook


def _in_resource_sharer(tb: TracebackType | None) -> bool:
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(os.path.join("multiprocessing", "resource_sharer.py")):
            return True
        tb = tb.tb_next
    return False

