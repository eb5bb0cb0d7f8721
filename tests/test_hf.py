"""Brought Hugging Face models (gtok.models.hf): geniml's Atacformer trained from gtok's shards.

The adapter's pieces against geniml's semantics (replacements, labels, the cell embedding of
`encode_tokenized_cells`), a transformers model trained by masked tokens, and the whole route
for real: cells tokenized and a tiny AtacformerForReplacedTokenDetection trained by the workflow,
killed and resumed to the weights of an uninterrupted run, fine-tuned as AtacformerForCellClustering
through `hf.init_from`, and `gtok embed` of its folder equal to geniml's own vectors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import gtok, one_line_error, snapshot

from gtok.cli import main
from gtok.errors import FingerprintMismatchError, GtokError

pytest.importorskip("geniml.atacformer")  # transformers 4.57 and scanpy: the test extra

RTD = "geniml.atacformer:AtacformerForReplacedTokenDetection"
CLUSTERING = "geniml.atacformer:AtacformerForCellClustering"
CONTEXT = 96
TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "max_position_embeddings": CONTEXT}
N_REGIONS = 300


def vocab(n_regions: int = N_REGIONS):
    from gtok.models import Vocab

    return dataclasses.replace(Vocab.of_size(n_regions + 7), fingerprint="ab" * 32)


def hf_model(model_class: str = RTD, model_args=None, **options):
    from gtok.models.hf import HFModel, hf_config
    from gtok.modelspec import ModelSpec, import_brought

    brought = import_brought(ModelSpec(model_class))
    return HFModel(vocab(), model_class, hf_config(brought, model_args or TINY, vocab()), options)


def batch(lengths=(5, 12, 1, 30), seed: int = 0, labels=None) -> dict[str, torch.Tensor]:
    from gtok.tokenizer import pad_batch

    rng = np.random.default_rng(seed)
    docs = [rng.integers(0, N_REGIONS, n) for n in lengths]
    docs[2] = np.array([vocab().unk_token_id])  # a cell without any region: [<unk>]
    out = pad_batch(docs, vocab().pad_token_id)
    if labels is not None:
        out["labels"] = torch.tensor(labels)
    return out


# -- the adapter's pieces ----------------------------------------------------------------------------


def test_config_takes_the_datas_vocabulary_and_refuses_a_smaller_one():
    from gtok.models.hf import hf_config
    from gtok.modelspec import ModelSpec, import_brought

    brought = import_brought(ModelSpec(RTD))
    config = hf_config(brought, TINY, vocab())
    v = vocab()
    assert config["vocab_size"] == v.vocab_size == N_REGIONS + 7 and config["hidden_size"] == 32
    assert (config["pad_token_id"], config["cls_token_id"], config["eos_token_id"], config["sep_token_id"]) == (
        N_REGIONS + 1, N_REGIONS + 3, N_REGIONS + 4, N_REGIONS + 6)
    with pytest.raises(GtokError, match=r"model_args': vocab_size 100 is smaller than the data's vocabulary of 307 tokens"):
        hf_config(brought, {**TINY, "vocab_size": 100}, v)


def test_rtd_replaces_regions_uniformly_with_genimls_labels():
    """As geniml's DataCollatorForReplacedTokenDetection: only region tokens are chosen, at
    mlm_probability, and replaced by a uniform region (itself included: then label 0); labels
    -100 on special tokens and padding, 1 where the input differs from the original."""
    from gtok.models.hf import corrupt

    b = batch(lengths=(400, 700, 1, 900))
    ids = b["input_ids"]
    regions = b["attention_mask"].bool() & (ids < N_REGIONS)
    torch.manual_seed(0)
    inputs, labels = corrupt("rtd", ids, regions, vocab(), 0.3)
    assert torch.equal(labels == -100, ~regions)
    assert torch.equal(inputs[~regions], ids[~regions])
    assert torch.equal(labels[regions] == 1, inputs[regions] != ids[regions])
    assert int(inputs.max()) < N_REGIONS + 7 and int(inputs[regions].max()) < N_REGIONS
    share = (labels[regions] == 1).float().mean().item()
    assert abs(share - 0.3 * (1 - 1 / N_REGIONS)) < 0.03


def test_mlm_masks_regions_only_and_labels_what_it_chose():
    from gtok.models.hf import corrupt

    b = batch(lengths=(400, 700, 1, 900))
    ids = b["input_ids"]
    regions = b["attention_mask"].bool() & (ids < N_REGIONS)
    torch.manual_seed(0)
    inputs, labels = corrupt("mlm", ids, regions, vocab(), 0.2)
    chosen = labels != -100
    assert not chosen[~regions].any() and torch.equal(labels[chosen], ids[chosen])
    assert abs((inputs[chosen] == vocab().mask_token_id).float().mean().item() - 0.8) < 0.05


def test_the_embedding_is_genimls_encode_tokenized_cells():
    from gtok.tokenizer import pad_batch

    net = hf_model().eval()
    rng = np.random.default_rng(1)
    docs = [rng.integers(0, N_REGIONS, n) for n in (3, 40, 17, CONTEXT, 1)]
    with torch.inference_mode():
        ours = net.embed(pad_batch(docs, vocab().pad_token_id)).numpy()
    theirs = net.model.encode_tokenized_cells([d.tolist() for d in docs], batch_size=2).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_triplets_pair_each_anchor_with_its_label_and_another():
    from gtok.models.hf import triplets

    labels = torch.tensor([0, 1, 0, 2, -100, 1, 2, 3])
    torch.manual_seed(0)
    anchors, positives, negatives = triplets(labels)
    assert anchors.tolist() == [0, 1, 2, 3, 5, 6]  # not the unlabelled record, nor the only 3
    assert torch.equal(labels[positives], labels[anchors]) and not (positives == anchors).any()
    assert (labels[negatives] != labels[anchors]).all() and (labels[negatives] >= 0).all()


def test_a_triplet_model_trains_on_labels_and_an_rtd_model_on_records():
    net = hf_model(CLUSTERING)
    assert net.objective == "triplet"
    out = net.losses(batch(labels=[0, 1, 0, 1]))
    assert out["loss"].requires_grad and out["triplets"] == 4
    assert net.losses(batch(labels=[0, 1, 2, 3]))["loss"] == 0  # no label twice: nothing to learn here
    with pytest.raises(GtokError, match="triplet needs labelled records"):
        net.losses(batch())
    rtd = hf_model()
    assert rtd.objective == "rtd" and 0 <= rtd.losses(batch())["detector_acc"] <= 1
    assert net.learns_from_labels and not rtd.learns_from_labels  # the evaluation says which learned from labels


def test_validation_says_nothing_of_torchs_nested_tensor_prototype():
    """In eval mode geniml's nn.TransformerEncoder takes torch's fast path, which warns on every
    batch that it uses a prototype API: not a line for `gtok train`'s output (embedding hides it too)."""
    import warnings

    net = hf_model().eval()
    with warnings.catch_warnings(record=True) as seen, torch.inference_mode():  # as Lightning validates
        warnings.simplefilter("always")
        net.validation_step(batch(), 0)
    assert not [w for w in seen if "nested tensors" in str(w.message)]


def test_validation_and_embedding_do_not_repeat_warnings_python_says_once():
    """Hiding that notice with a catch_warnings on every batch reset Python's record of the
    warnings already said, so Lightning's per-epoch notices came again after each validation: in
    a 60-step Atacformer run on Corces' cells, 8 of train.log's 9 lines were one warning."""
    import warnings

    net = hf_model().eval()

    def said_once():
        warnings.warn("said once", UserWarning, stacklevel=1)

    with warnings.catch_warnings(record=True) as seen, torch.inference_mode():
        warnings.simplefilter("default")
        net.embed(batch())  # the filter is in place from the first batch on
        for _ in range(3):
            said_once()
            net.validation_step(batch(), 0)
            net.embed(batch())
    assert [str(w.message) for w in seen].count("said once") == 1
    assert not [w for w in seen if "nested tensors" in str(w.message)]


def test_a_transformers_masked_lm_learns_on_a_fixed_batch():
    """Any PreTrainedModel: BERT from transformers itself, trained by masked tokens."""
    args = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
            "max_position_embeddings": 64}
    net = hf_model("transformers:BertForMaskedLM", args, mlm_probability=0.3)
    assert net.objective == "mlm"
    b = batch(lengths=(30, 40, 1, 50))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    losses = []
    for step in range(30):
        with net.seeded("test", step % 2):  # two masks, seen again and again
            loss = net.losses(b)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-4:]) < 0.6 * np.mean(losses[:4])


def published_folder(folder: Path, model_class, n_regions: int = N_REGIONS, model_args=None) -> Path:
    """A folder as a Hugging Face repository holds a model: save_pretrained's files and universe.bed.gz."""
    from gtok.models.hf import hf_config
    from gtok.modelspec import ModelSpec, hf_config_class, import_brought

    brought = import_brought(ModelSpec(model_class))
    config = hf_config_class(brought).from_dict(hf_config(brought, model_args or TINY, vocab(n_regions)))
    brought.cls(config).save_pretrained(folder)
    rows = "".join(f"chr1\t{100 * i}\t{100 * i + 50}\n" for i in range(n_regions))
    (folder / "universe.bed.gz").write_bytes(gzip.compress(rows.encode()))
    return folder


@pytest.mark.parametrize("field, value", [("model_type", ["atacformer"]), ("architectures", [["AtacformerModel"]])])
def test_a_published_config_with_a_list_for_a_name_is_one_line(tmp_path, field, value):
    """A model_type given as a list gave a TypeError traceback (unhashable type: 'list')."""
    from gtok.inference.loading import load_model

    folder = published_folder(tmp_path / "pub", "geniml.atacformer:AtacformerModel")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, field: value}))
    with pytest.raises(GtokError, match=r"config.json: model_type .* and architectures\[0\] .* must be names \(text\)"):
        load_model(folder)


@pytest.mark.parametrize("model_type, hint", [("foo", True), ("bert", False), ("atacformer", False)])
def test_a_published_class_that_is_not_found_says_when_its_model_type_is_the_cause(tmp_path, model_type, hint):
    """A config.json of a model type gtok knows no package of was told only that transformers has no
    such class, which pointed at the class name rather than at the type."""
    from gtok.inference.loading import load_model

    folder = published_folder(tmp_path / "pub", "geniml.atacformer:AtacformerModel")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": model_type, "architectures": ["NoSuch"]}))
    with pytest.raises(GtokError) as err:
        load_model(folder)
    assert "has no class NoSuch" in str(err.value) and "\n" not in str(err.value)
    assert (f"Its model_type {model_type!r} is not one gtok knows the package of" in str(err.value)) is hint
    assert ("atacformer (geniml)" in str(err.value)) is hint


def test_a_published_base_model_embeds(tmp_path):
    """A base model (AtacformerModel) is trained for no objective; embedding asks for none."""
    from gtok.inference.loading import load_model

    loaded = load_model(published_folder(tmp_path, "geniml.atacformer:AtacformerModel"))
    with torch.inference_mode():
        assert loaded.model.embed(batch()).shape == (4, 32)


def test_records_of_no_universe_region_are_warned_of_when_embedded(tmp_path):
    """A region set between the universe's regions and an all-zero cell are `<unk>` alone: they
    all get one and the same vector, which must not pass for an embedding in silence."""
    import warnings

    import anndata
    import pandas as pd
    import scipy.sparse as sp

    from gtok.inference.embed import embed_anndata, embed_regions

    folder = published_folder(tmp_path / "pub", "geniml.atacformer:AtacformerModel")
    hit, miss = [("chr1", 110, 120)], [("chr1", 60, 90)]  # the universe: chr1 100i..100i+50
    with pytest.warns(UserWarning, match=r"^region sets overlapping no universe region: 1 of 3 \(region set 1\); "
                                         r"each is embedded as <unk> alone"):
        embed_regions(folder, [hit, miss, hit])
    cells = anndata.AnnData(sp.csr_matrix(np.array([[1, 0, 2], [0, 0, 0], [0, 1, 0]], dtype=np.float32)),
                            obs=pd.DataFrame(index=["a", "b", "c"]),
                            var=pd.DataFrame(index=["chr1:0-50", "chr1:100-150", "chr1:200-250"]))
    with pytest.warns(UserWarning, match=r"^cells overlapping no universe region: 1 of 3 \(b\)"):
        embed_anndata(folder, cells)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        embed_anndata(folder, cells[[0, 2]].copy())


def test_a_published_model_of_a_larger_vocab_size_takes_its_universes_layout(tmp_path):
    """A gtok folder trained with a model_args vocab_size above the data's, copied as a published
    model: its universe, not config.json's vocab_size, says which ids are which; it embeds, starts
    a fine-tuning, and a universe that does not fit it is still refused."""
    from gtok.inference.loading import load_model
    from gtok.models import Vocab
    from gtok.models.hf import HFModel
    from gtok.tokenizer import Tokenizer

    folder = published_folder(tmp_path / "large", RTD, model_args={**TINY, "vocab_size": 600})
    loaded = load_model(folder)
    assert loaded.vocab == Vocab.of_size(N_REGIONS + 7) and loaded.expected.vocab_size == N_REGIONS + 7
    assert Tokenizer.from_pretrained(folder).vocab_size == N_REGIONS + 7
    with torch.inference_mode():
        assert loaded.model.embed(batch()).shape == (4, 32)
    child, taken = HFModel.fine_tune(loaded.model, loaded.vocab, CLUSTERING, {}, {}, "test")
    assert child.model.config.vocab_size == 600 and taken > 0  # the parent's embedding rows, whole

    rows = "".join(f"chr2\t{100 * i}\t{100 * i + 50}\n" for i in range(700))
    (folder / "universe.bed.gz").write_bytes(gzip.compress(rows.encode()))
    with pytest.raises(GtokError, match=r"config.json: vocab_size 600 is smaller than the 707 tokens of its universe"):
        load_model(folder)
    rows = "".join(f"chr2\t{100 * i}\t{100 * i + 50}\n" for i in range(250))
    (folder / "universe.bed.gz").write_bytes(gzip.compress(rows.encode()))
    with pytest.raises(GtokError, match=r"pad_token_id 301 do not fit gtars' layout of its universe.bed.gz"):
        load_model(folder)


def test_a_published_config_without_pad_token_id_is_named_before_its_weights_are_read(tmp_path):
    """A config.json that sets no pad_token_id takes its class's default (geniml's: hg38's <pad>,
    890705), which stopped from_pretrained with 'AssertionError: Padding_idx must be within
    num_embeddings', a line that names neither the file nor the key."""
    from gtok.inference.loading import load_model

    folder = published_folder(tmp_path / "pub", "geniml.atacformer:AtacformerModel")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "pad_token_id"}))
    with pytest.raises(GtokError) as err:
        load_model(folder)
    message = str(err.value)
    assert message.startswith(f"{folder}/config.json: vocab_size 307 and pad_token_id 890705 (config.json sets none: "
                              "the class's default) do not fit") and "\n" not in message
    assert "Padding_idx" not in message


def test_a_published_model_beside_another_universe_is_not_said_to_be_untrained_on_gtars_tokens(tmp_path):
    """A model of 300 regions beside a universe of 250: its pad_token_id is gtars' <pad> of its own
    vocab_size, so the misfit is the universe, which the line said was the model's training."""
    from gtok.inference.loading import load_model

    folder = published_folder(tmp_path / "pub", "geniml.atacformer:AtacformerModel")
    rows = "".join(f"chr2\t{100 * i}\t{100 * i + 50}\n" for i in range(250))
    (folder / "universe.bed.gz").write_bytes(gzip.compress(rows.encode()))
    with pytest.raises(GtokError) as err:
        load_model(folder)
    assert str(err.value) == (f"{folder}/config.json: vocab_size 307 and pad_token_id 301 do not fit gtars' layout of "
                              "its universe.bed.gz (257 tokens, <pad> 251): the universe is not the one the model was "
                              "trained on, or the model was not trained on gtars' tokens.")


def test_checkpoint_round_trip_restores_the_adapter(tmp_path):
    import lightning as L

    from gtok.models import model_from, read_checkpoint

    net = hf_model()
    trainer = L.Trainer(max_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(net)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    back = model_from(read_checkpoint(tmp_path / "m.ckpt"))
    assert back.model_class == RTD and back.vocab == net.vocab
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), back.state_dict().values()))


def test_train_refuses_a_config_of_a_smaller_vocabulary_before_reading_the_shards(tmp_path):
    from gtok.formats.manifest import write_manifest
    from gtok.formats.shard import write_shard
    from gtok.training.train import train

    write_shard(tmp_path / "a.gtok", [("r0", np.arange(5), None)], N_REGIONS + 7, "ab" * 32)
    write_manifest(tmp_path / "m.json", [tmp_path / "a.gtok"])
    (tmp_path / "a.gtok").write_bytes(b"damaged")  # never read: the config is refused first
    config = {"data": {"max_length": 64}, "model_args": {**TINY, "vocab_size": 200}}
    with pytest.raises(GtokError, match=r"^config section 'model_args': vocab_size 200 is smaller than the data's "
                                        r"vocabulary of 307 tokens \(300 regions and the special tokens\)"):
        train(tmp_path / "m.json", RTD, tmp_path / "out", config, progress=False)
    assert not (tmp_path / "out" / "checkpoints").exists()


@pytest.mark.parametrize("config, words", [
    ({"model_args": {**TINY, "hidden_size": 30, "num_attention_heads": 4}},
     "config section 'model_args': geniml.atacformer:AtacformerForReplacedTokenDetection cannot be built from them "
     "(AssertionError: embed_dim must be divisible by num_heads)"),
    ({"model_args": {**TINY, "hidden_size": "abc"}}, "config section 'model_args': "
                                                     f"{RTD} cannot be built from them (TypeError: "),
    ({"hf": {"init_from": "PARENT"}, "data": {"max_length": CONTEXT + 32}},
     f"config section 'data': max_length {CONTEXT + 32} is longer than the {CONTEXT} positions of "
     f"{CLUSTERING} (the max_position_embeddings of hf.init_from PARENT; lower max_length"),
])
def test_train_refuses_values_the_model_cannot_take_before_reading_the_shards(tmp_path, config, words):
    """Values of model_args the class refuses, and a context longer than an init_from parent's
    positions (which the fine-tuned model keeps), are one line before any work."""
    from gtok.formats.manifest import write_manifest
    from gtok.formats.shard import write_shard
    from gtok.training.train import train

    parent = published_folder(tmp_path / "parent", RTD)
    config = yaml.safe_load(yaml.safe_dump(config).replace("PARENT", str(parent)))
    write_shard(tmp_path / "a.gtok", [("r0", np.arange(5), None)], N_REGIONS + 7, "ab" * 32)
    write_manifest(tmp_path / "m.json", [tmp_path / "a.gtok"])
    (tmp_path / "a.gtok").write_bytes(b"damaged")  # never read: the config is refused first
    with pytest.raises(GtokError) as err:
        train(tmp_path / "m.json", CLUSTERING if "hf" in config else RTD, tmp_path / "out",
              {"data": {"max_length": CONTEXT}, **config}, progress=False)
    message = str(err.value)
    assert message.startswith(words.replace("PARENT", str(parent))) and "\n" not in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("inside", ["", "checkpoints/last.ckpt", "a link elsewhere to checkpoints/last.ckpt"])
def test_fine_tuning_into_the_parents_own_folder_is_refused(tmp_path, inside):
    """The run would replace the model it starts from: a rerun with any other option would then
    start from the fine-tuned model, not from its parent. Refused before anything is read or
    changed, also through a symbolic link to the folder's checkpoint from another folder."""
    from gtok.pretrained import TRAIN_LOCK_FILE
    from gtok.training.train import train

    parent = published_folder(tmp_path / "run", RTD)
    (parent / TRAIN_LOCK_FILE).touch()  # a folder gtok train wrote, with its run's checkpoint
    (parent / "checkpoints").mkdir()
    (parent / "checkpoints" / "last.ckpt").write_bytes(b"never read")
    before = snapshot(parent)
    init_from = str(parent / inside) if inside else str(parent)
    if inside.startswith("a link"):
        init_from = str(tmp_path / "links" / "parent.ckpt")
        (tmp_path / "links").mkdir()
        os.symlink(parent / "checkpoints" / "last.ckpt", init_from)
    config = {"data": {"max_length": CONTEXT}, "hf": {"init_from": init_from}}
    with pytest.raises(GtokError, match=rf"^config section 'hf': init_from {init_from} is in the training folder "
                                        rf"{parent}, whose model this run replaces"):
        train(tmp_path / "m.json", CLUSTERING, parent, config, progress=False)
    assert snapshot(parent) == before


def test_an_init_from_that_is_not_there_is_named_before_any_work(tmp_path):
    """Not a bare "PATH: no such file" once the shards are read: the option, before anything."""
    from gtok.training.train import train

    missing = tmp_path / "pretrained"
    with pytest.raises(GtokError, match=rf"^config section 'hf': init_from {missing}: no such file or folder"):
        train(tmp_path / "m.json", CLUSTERING, tmp_path / "out", {"hf": {"init_from": str(missing)}}, progress=False)
    assert not (tmp_path / "out").exists()


def test_a_triplet_model_on_batches_too_small_for_a_triplet_is_refused(tmp_path):
    """Two records a batch never hold a triplet (two of one label, one of another): the model
    would train on nothing, with a loss of 0 at every step."""
    from gtok.training.train import train

    cells, universe = simulated_cells(tmp_path)
    assert main(["tokenize", "-q", "-u", str(universe), "-o", str(tmp_path / "a.gtok"), "--label-key", "cell_type",
                 str(cells)]) == 0
    assert main(["manifest", "-q", "-o", str(tmp_path / "m.json"), str(tmp_path / "a.gtok")]) == 0
    config = {"data": {"max_length": 64, "batch_size": 2, "val_fraction": 0, "num_workers": 0}, "model_args": TINY}
    with pytest.raises(GtokError, match=r"data.batch_size is 2, and .*AtacformerForCellClustering learns from triplets"):
        train(tmp_path / "m.json", CLUSTERING, tmp_path / "out", config, progress=False, universe=universe)
    assert main(["tokenize", "-q", "-u", str(universe), "-o", str(tmp_path / "u.gtok"), str(cells)]) == 0
    assert main(["manifest", "-q", "-o", str(tmp_path / "u.json"), str(tmp_path / "u.gtok")]) == 0
    with pytest.raises(GtokError, match=r"^config model: .*AtacformerForCellClustering trains on labelled triplets, and "
                                        "the data has no labels"):
        train(tmp_path / "u.json", CLUSTERING, tmp_path / "out", config, progress=False, universe=universe)
    assert not (tmp_path / "out" / "checkpoints").exists()


# -- the whole route, through the workflow ----------------------------------------------------------


def simulated_cells(folder: Path) -> tuple[Path, Path]:
    """Cells with a known answer (gtok simulate), and their peaks as the universe."""
    cells, universe = folder / "cells.h5ad", folder / "peaks.bed"
    assert main(["simulate", "-o", str(cells), "--universe-out", str(universe), "--cells", "160", "--peaks", "500",
                 "--cell-types", "3", "--base-rate", "0.04"]) == 0
    return cells, universe


TRAIN = {"seed": 0, "data": {"batch_size": 8, "max_length": CONTEXT, "num_workers": 0, "val_fraction": 0.1},
         "trainer": {"max_steps": 12, "max_epochs": 100, "checkpoint_every_n_steps": 3, "log_every_n_steps": 1,
                     "num_sanity_val_steps": 0, "val_check_interval": 6},
         "model_args": TINY, "hf": {"lr": 0.002}}


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc), children before their own children."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory):
    """The workflow, with train.model the tiny Atacformer; its training job killed after the first
    checkpoint (as a preempted SLURM job is), so Snakemake fails it, then rerun."""
    from workflow_copy import start_snakemake, write_workflow

    folder = tmp_path_factory.mktemp("atacformer")
    cells, universe = simulated_cells(folder / "data")
    config = {"universe": str(universe), "results": "results",
              "inputs": {"bed": [], "h5ad": [str(cells)], "label_key": "cell_type"},
              "shards": {"cells_per_shard": 80}, "evaluate": {"enabled": False},
              "train": {"enabled": True, "model": RTD, **TRAIN}}
    write_workflow(folder, config)
    last = folder / "results" / "train" / "checkpoints" / "last.ckpt"
    run = start_snakemake(folder, folder / "first.log", "--cores", "2")
    deadline = time.monotonic() + 300
    while not last.exists():
        assert run.poll() is None and time.monotonic() < deadline, (folder / "first.log").read_text()[-3000:]
        time.sleep(0.05)
    for pid in descendants(run.pid):  # the job, not Snakemake
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert run.wait(timeout=60) != 0
    assert "Error in rule train" in (folder / "first.log").read_text()
    killed_at = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    rerun = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2"], cwd=folder, capture_output=True, text=True,
                           env=dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"))
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    return folder, cells, killed_at


@pytest.mark.slow
def test_atacformer_trains_through_the_workflow_and_resumes_exactly(workflow_run, tmp_path):
    from gtok.training.train import train

    folder, _, killed_at = workflow_run
    out = folder / "results" / "train"
    assert 3 <= killed_at < 12
    assert {"config.json", "model.safetensors", "model.ckpt", "universe.bed.gz", "config.yaml"} <= {p.name for p in out.iterdir()}
    card = yaml.safe_load((out / "config.yaml").read_text())
    assert card["model"] == RTD and card["model_args"] == TINY and card["saved_with"] == "save_pretrained"
    assert set(card["saved_files"]) >= {"config.json", "model.safetensors"}
    log = (folder / "results" / "logs" / "train.log").read_text()
    assert f"from step {killed_at} (checkpoints/last.ckpt)" in log and f"trained {RTD}" in log
    # the rerun continued from the checkpoint to the weights of a run never killed (on one thread,
    # as the workflow's job: another thread count sums in another order)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        whole = train(folder / "results" / "manifest.json", RTD, tmp_path / "whole", TRAIN, progress=False)
    finally:
        torch.set_num_threads(threads)
    ours = torch.load(out / "model.ckpt", map_location="cpu", weights_only=False)
    reference = torch.load(whole, map_location="cpu", weights_only=False)
    assert ours["global_step"] == reference["global_step"] == 12
    assert all(torch.equal(v, reference["state_dict"][k]) for k, v in ours["state_dict"].items())
    # a built-in model then trained into that folder replaces the model whole: the save_pretrained
    # files of the Hugging Face one leave with it for previous/, none stays beside the new model
    # (as for a model whose save_pretrained writes more files, or shards: config.yaml lists them all)
    card = yaml.safe_load((tmp_path / "whole" / "config.yaml").read_text())
    (tmp_path / "whole" / "generation_config.json").write_text("{}\n")
    (tmp_path / "whole" / "config.yaml").write_text(yaml.safe_dump(
        {**card, "saved_files": [*card["saved_files"], "generation_config.json"]}, sort_keys=False))
    plain = {"data": TRAIN["data"], "trainer": {**TRAIN["trainer"], "max_steps": 2}, "region2vec": {"embedding_dim": 8}}
    train(folder / "results" / "manifest.json", "region2vec", tmp_path / "whole", plain, progress=False)
    hf_files = {"config.json", "model.safetensors", "generation_config.json"}
    assert not hf_files & {p.name for p in (tmp_path / "whole").iterdir()}
    (kept,) = (tmp_path / "whole" / "previous").iterdir()
    assert hf_files | {"model.ckpt", "config.yaml"} <= {p.name for p in kept.iterdir()}


@pytest.mark.slow
def test_gtok_embed_of_the_folder_is_genimls_encode_tokenized_cells(workflow_run, tmp_path):
    """Both read the folder's save_pretrained files; on cells no longer than the context (geniml
    subsamples longer ones at random) the vectors agree."""
    import anndata
    from geniml.atacformer import AtacformerForReplacedTokenDetection

    from gtok.tokenizer import Tokenizer

    folder, cells, _ = workflow_run
    model = folder / "results" / "train"
    assert main(["embed", "-q", "--model", str(model), "-o", str(tmp_path / "e.h5ad"), str(cells)]) == 0
    ours = anndata.read_h5ad(tmp_path / "e.h5ad").obsm["X_gtok"]
    ids = [t.tolist() for t in Tokenizer.from_pretrained(model).encode_anndata(str(cells))]
    short = [i for i, doc in enumerate(ids) if len(doc) <= CONTEXT]
    assert len(short) > 100
    geniml_model = AtacformerForReplacedTokenDetection.from_pretrained(model).eval()
    theirs = geniml_model.encode_tokenized_cells([ids[i] for i in short], batch_size=16).numpy()
    np.testing.assert_allclose(ours[short], theirs, atol=1e-5)


@pytest.mark.slow
def test_a_model_as_published_embeds_as_its_gtok_folder_and_starts_a_fine_tuning(workflow_run, tmp_path):
    """config.json, model.safetensors and universe.bed.gz, as a Hugging Face repository holds them
    (databio/atacformer-base-hg38): the class from config.json, the universe by its size."""
    import anndata

    from gtok.training.train import train

    folder, cells, _ = workflow_run
    model = folder / "results" / "train"
    published = tmp_path / "published"
    published.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(model / name, published / name)
    one_line_error(gtok("embed", "-q", "--model", published, "-o", tmp_path / "p.h5ad", cells),
                   f"{published}: a Hugging Face model folder without its universe.bed.gz", "pass --universe")
    shutil.copyfile(model / "universe.bed.gz", published / "universe.bed.gz")
    run = gtok("embed", "-q", "--model", published, "-o", tmp_path / "p.h5ad", cells)
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip() == ""  # the universe came with the model; geniml's import-time notice is not printed
    # another universe given beside the folder's own must be that very vocabulary, not merely of its size
    shuffled = tmp_path / "shuffled.bed"
    rows = gzip.decompress((published / "universe.bed.gz").read_bytes()).decode().splitlines(keepends=True)
    shuffled.write_text("".join(rows[1:] + rows[:1]))
    one_line_error(gtok("embed", "-q", "--model", published, "--universe", shuffled, "-o", tmp_path / "s.h5ad", cells),
                   f"{shuffled}: vocabulary", f"is not the one {published} was trained on")
    assert gtok("embed", "-q", "--model", model, "-o", tmp_path / "g.h5ad", cells).returncode == 0
    ours, theirs = (anndata.read_h5ad(tmp_path / f"{n}.h5ad").obsm["X_gtok"] for n in ("p", "g"))
    # the gtok folder crops to its training max_length, the published one to its positions (CONTEXT both)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    config = {**TRAIN, "model_args": {}, "hf": {"init_from": str(published)}}
    train(folder / "results" / "manifest.json", CLUSTERING, tmp_path / "ft", config, max_steps=2, progress=False)
    assert (tmp_path / "ft" / "model.safetensors").is_file()

    card = json.loads((published / "config.json").read_text())
    (published / "config.json").write_text(json.dumps({**card, "pad_token_id": 3}))
    one_line_error(gtok("embed", "-q", "--model", published, "-o", tmp_path / "q.h5ad", cells),
                   f"{published}/config.json: vocab_size", "and pad_token_id 3 do not fit gtars' layout of its universe.bed.gz")


@pytest.mark.slow
def test_cell_clustering_fine_tunes_from_the_pretrained_folder(workflow_run, tmp_path, capsys):
    """`hf.init_from`, as the classifier's `init_from`: the new head's model starts from the parent's backbone."""
    from gtok.inference.embed import embed_anndata
    from gtok.inference.loading import load_model
    from gtok.models.hf import HFModel
    from gtok.training.train import train

    folder, cells, _ = workflow_run
    parent_folder = folder / "results" / "train"
    parent = load_model(parent_folder).model
    child, taken = HFModel.fine_tune(parent, parent.vocab, CLUSTERING, {}, {}, "test")
    backbone = {k: v for k, v in parent.model.state_dict().items() if k.startswith("atacformer.")}
    assert taken == len(backbone) > 0
    assert all(torch.equal(child.model.state_dict()[k], v) for k, v in backbone.items())

    config = {**TRAIN, "model_args": {}, "hf": {"init_from": str(parent_folder)}}
    train(folder / "results" / "manifest.json", CLUSTERING, tmp_path / "ft", config, max_steps=2, progress=False)
    assert f"starts from {taken} weight tensors of {parent_folder} ({RTD})" in capsys.readouterr().err
    assert (tmp_path / "ft" / "universe.bed.gz").is_file()  # the parent's: the folder embeds on its own
    assert embed_anndata(tmp_path / "ft", str(cells)).shape == (160, 32)


@pytest.mark.slow
def test_fine_tuning_refuses_a_parent_of_another_vocabulary(workflow_run, tmp_path):
    from gtok.build import tokenize_to_shard
    from gtok.formats.manifest import write_manifest
    from gtok.training.train import train

    folder, cells, _ = workflow_run
    other = tmp_path / "other.bed"
    shutil.copy(folder / "data" / "peaks.bed", other)
    with open(other, "a") as fh:
        fh.write("chr22\t100\t200\n")
    shard = tokenize_to_shard([str(cells)], str(other), str(tmp_path / "o.gtok"), label_key="cell_type", progress=False)
    write_manifest(tmp_path / "m.json", [shard])
    config = {**TRAIN, "model_args": {}, "hf": {"init_from": str(folder / "results" / "train")}}
    with pytest.raises(FingerprintMismatchError, match="the training data: tokenized with vocabulary .* but .* was trained on"):
        train(tmp_path / "m.json", CLUSTERING, tmp_path / "ft", config, progress=False)


def test_embedding_never_crops_beyond_the_models_positions():
    """A model folder whose data.max_length exceeds the model's positions (edited by hand, or a
    model as published, which records none) is cropped to its positions, not an IndexError."""
    from gtok.inference.embed import _crop_length

    assert _crop_length(500, 64) == 64 and _crop_length(None, 64) == 64
    assert _crop_length(24, 64) == 24 and _crop_length(24, None) == 24 and _crop_length(None, None) is None


@pytest.mark.parametrize("coordinates", ["columns", "names"])
def test_an_anndata_out_of_order_is_warned_of_once_with_the_lines_that_sort_it(tmp_path, coordinates):
    """Atacformer's position embeddings make a cell's vector depend on token order, which is var's
    (as geniml gives gtars the peaks): a var in another order than the training data's embeds
    other vectors, and must not in silence. The warning's own line sorts var, after which the
    cells embed as the sorted AnnData does, without a warning."""
    import warnings

    import anndata
    import pandas as pd
    import scipy.sparse as sp

    from gtok.inference.embed import embed_anndata

    folder = published_folder(tmp_path / "pub", "geniml.atacformer:AtacformerModel")
    rng = np.random.default_rng(0)
    peaks = pd.DataFrame({"chr": ["chr1"] * 40, "start": 100 * np.arange(40), "end": 100 * np.arange(40) + 50})
    peaks.index = [f"chr1:{s}-{e}" for s, e in zip(peaks.start, peaks.end)]
    if coordinates == "names":
        peaks = peaks[[]]
    X = sp.csr_matrix((rng.random((6, 40)) < 0.5).astype(np.float32))
    ordered = anndata.AnnData(X, obs=pd.DataFrame(index=[f"c{i}" for i in range(6)]), var=peaks)
    adata = ordered[:, rng.permutation(40)].copy()  # the same cells, var shuffled

    with pytest.warns(UserWarning) as caught:
        shuffled = embed_anndata(folder, adata)
    lines = [str(w.message) for w in caught if "var is not in" in str(w.message)]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith("the AnnData: var is not in its model's universe order nor in a BED file's, and "
                               "geniml.atacformer:AtacformerModel has position embeddings")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = embed_anndata(folder, ordered)
        for by_line in sorted_by_warning(lines[0], adata):  # one chromosome: the universe's order is a BED file's
            np.testing.assert_allclose(embed_anndata(folder, by_line), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(shuffled, expected, atol=1e-4)  # the order did change the vectors


def sorted_by_warning(line: str, adata):
    """The AnnData each `adata = ...` of a var order warning gives (the universe's order, then a BED file's)."""
    import re

    import gtok as package

    lines = re.findall(r"adata = (gtok\.sort_var\(.*?\))(?:;|$)", line)
    assert len(lines) == 2, line
    return [eval(code, {"gtok": package, "adata": adata}) for code in lines]


def natural_universe_folder(tmp_path: Path):
    """A published Atacformer whose universe is in natural order (chr1, chr2, chr10), and cells whose
    var is that universe, in its order: the cells as a model is trained on them."""
    import anndata
    import pandas as pd
    import scipy.sparse as sp

    folder = published_folder(tmp_path / "pub", "geniml.atacformer:AtacformerModel")
    starts = 100 * np.tile(np.arange(N_REGIONS // 3), 3)
    peaks = pd.DataFrame({"chr": np.repeat(["chr1", "chr2", "chr10"], N_REGIONS // 3), "start": starts, "end": starts + 50})
    peaks.index = [f"{c}:{s}-{e}" for c, s, e in peaks.itertuples(index=False)]
    (folder / "universe.bed.gz").write_bytes(gzip.compress(peaks.to_csv(sep="\t", header=False, index=False).encode()))
    X = sp.csr_matrix((np.random.default_rng(0).random((6, N_REGIONS)) < 0.1).astype(np.float32))
    return folder, anndata.AnnData(X, obs=pd.DataFrame(index=[f"c{i}" for i in range(6)]), var=peaks)


def test_cells_embed_as_in_training_once_var_is_in_the_models_order_which_the_warning_sorts_it_into(tmp_path):
    """The warning told users to sort var by chromosome name and start, as a BED file is read (chr1,
    chr10, chr2); but a model trained on cells saw their tokens in var's order, the universe's
    (chr1, chr2, chr10) when var was its universe, and after that sort an Atacformer gave the same
    cells other vectors. gtok cannot tell from a model which order it was trained in: the warning
    gives both lines, gtok.sort_var into the universe's order (the cells as trained) and into a BED
    file's (the cells as their peaks' BED files embed), and is silent for var in either."""
    import warnings

    from gtok.inference.embed import embed_anndata, embed_regions

    folder, trained = natural_universe_folder(tmp_path)
    peaks, X, rng = trained.var, trained.X, np.random.default_rng(0)
    beds = []
    for i in range(6):
        beds.append(tmp_path / f"c{i}.bed")
        peaks.iloc[X[i].indices].to_csv(beds[-1], sep="\t", header=False, index=False)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        as_trained = embed_anndata(folder, trained)
        as_beds = embed_regions(folder, beds)
    assert np.abs(as_trained - as_beds).max() > 1e-3  # chr1, chr2, chr10 against chr1, chr10, chr2
    with pytest.warns(UserWarning) as caught:
        embed_anndata(folder, trained[:, rng.permutation(N_REGIONS)].copy())
    (line,) = [str(w.message) for w in caught if "var is not in" in str(w.message)]
    by_universe, by_bed = sorted_by_warning(line, trained[:, rng.permutation(N_REGIONS)].copy())
    assert list(by_universe.var_names) == list(trained.var_names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # either order is one a model may have been trained in: no warning
        np.testing.assert_allclose(embed_anndata(folder, by_universe), as_trained, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(embed_anndata(folder, by_bed), as_beds, rtol=1e-5, atol=1e-6)


def test_region_sets_in_memory_out_of_genomic_order_are_warned_of_and_embed_as_their_bed_file_once_sorted(tmp_path):
    """A BED file is read sorted; a DataFrame keeps its order (as gtars keeps a list's): to
    Atacformer the two are other token orders of one region set, and gave two vectors in silence."""
    import warnings

    import pandas as pd

    from gtok.inference.embed import embed_regions

    folder = published_folder(tmp_path / "pub", "geniml.atacformer:AtacformerModel")
    frame = pd.DataFrame({"chrom": "chr1", "start": 100 * np.arange(30) + 10, "end": 100 * np.arange(30) + 40})
    shuffled = frame.sample(frac=1, random_state=0)
    bed = tmp_path / "set.bed"
    shuffled.to_csv(bed, sep="\t", header=False, index=False)
    with pytest.warns(UserWarning, match=r"^region sets in neither a BED file's order nor their universe's: 1 \(region "
                                         r"set 1\); geniml.atacformer:AtacformerModel has position embeddings"):
        vectors = embed_regions(folder, [bed, shuffled])
    assert not np.allclose(vectors[0], vectors[1], atol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(embed_regions(folder, [shuffled.sort_values(["chrom", "start"])])[0], vectors[0],
                                   rtol=1e-5, atol=1e-6)


def test_region_sets_in_their_universes_order_embed_as_the_cells_the_model_was_trained_on_without_a_warning(tmp_path):
    """A region set in the universe's order (chr1, chr2, chr10) has its tokens in the order of the
    cells a model was trained on when their var was the universe; it was warned of and told to sort
    into a BED file's order (chr1, chr10, chr2), which embeds another vector. Warned of now: a set in
    neither order, and not a set whose tokens are its BED file's (its other regions give none)."""
    import warnings

    from gtok.inference.embed import embed_anndata, embed_regions

    folder, trained = natural_universe_folder(tmp_path)
    peaks = trained.var.iloc[trained.X[0].indices].rename(columns={"chr": "chrom"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vectors = embed_regions(folder, [peaks, peaks.sort_values(["chrom", "start"]), peaks[peaks.chrom != "chr2"]])
        np.testing.assert_allclose(vectors[0], embed_anndata(folder, trained)[0], rtol=1e-5, atol=1e-6)
    assert np.abs(vectors[0] - vectors[1]).max() > 1e-3
    with pytest.warns(UserWarning, match=r"^region sets in neither a BED file's order nor their universe's: 1 \(region "
                                         r"set 0\); geniml.atacformer:AtacformerModel has position embeddings"):
        embed_regions(folder, [peaks.sample(frac=1, random_state=0)])


def natural_universe_runs(tmp_path: Path) -> tuple[Path, Path, object]:
    """A tiny Atacformer trained by gtok train on BED files, and one on cells whose var is their
    universe in its natural order (chr1, chr2, chr10), and those cells: two models of the two
    orders gtok trains in, whose folders say which."""
    import pandas as pd

    from gtok.training.train import train

    _, cells = natural_universe_folder(tmp_path / "published")
    universe = tmp_path / "universe.bed"
    cells.var.to_csv(universe, sep="\t", header=False, index=False)
    cells.write_h5ad(tmp_path / "cells.h5ad")
    beds = []
    for i, row in enumerate(cells.X.tocsr()):
        beds.append(tmp_path / f"b{i}.bed")
        pd.DataFrame(cells.var.iloc[row.indices]).to_csv(beds[-1], sep="\t", header=False, index=False)
    config = {**TRAIN, "data": {**TRAIN["data"], "val_fraction": 0, "batch_size": 2},
              "trainer": {**TRAIN["trainer"], "max_steps": 2, "val_check_interval": 1.0}}
    runs = []
    for name, inputs in (("beds", beds), ("cells", [tmp_path / "cells.h5ad"])):
        assert main(["tokenize", "-q", "-u", str(universe), "-o", str(tmp_path / f"{name}.gtok"),
                     *map(str, inputs)]) == 0
        assert main(["manifest", "-q", "-o", str(tmp_path / f"{name}.json"), str(tmp_path / f"{name}.gtok")]) == 0
        train(tmp_path / f"{name}.json", RTD, tmp_path / name, config, progress=False)
        runs.append(tmp_path / name)
    return runs[0], runs[1], cells


@pytest.mark.slow
def test_a_trained_models_folder_records_its_token_order_and_the_warning_gives_its_one_line(tmp_path):
    """gtok could not tell from a model which order its cells' tokens were trained in, so var in
    either order was embedded in silence: a model trained on BED files (chr1, chr10, chr2) given
    cells whose var is their universe in natural order (chr1, chr2, chr10) gave other vectors with
    no word, and a warning gave two lines to choose from. The folder now records the kinds of its
    inputs and the order their tokens came in, and a var in another is warned of with that order's
    one line, after which the cells embed without a warning."""
    import warnings

    from gtok.inference.embed import embed_anndata, embed_regions

    beds, cells_run, cells = natural_universe_runs(tmp_path)
    for run, inputs, order in ((beds, {"bed": 6}, ["bed"]), (cells_run, {"h5ad": 1}, ["universe"])):
        data = yaml.safe_load((run / "config.yaml").read_text())["data"]
        assert (data["inputs"], data["token_orders"]) == (inputs, order)
    by_bed = cells[:, cells.var.sort_values("chr", key=lambda c: c.astype(str), kind="stable").index].copy()  # starts ascend already
    assert list(by_bed.var.chr.unique()) == ["chr1", "chr10", "chr2"]
    for run, wrong, right, line in ((beds, cells, by_bed, 'adata = gtok.sort_var(adata, "bed")'),
                                    (cells_run, by_bed, cells,
                                     f"adata = gtok.sort_var(adata, gtok.Tokenizer.from_pretrained({str(cells_run)!r}))")):
        with pytest.warns(UserWarning) as caught:
            embed_anndata(run, wrong)
        (message,) = [str(w.message) for w in caught if "var is not in" in str(w.message)]
        assert message.startswith(f"the AnnData: var is not in the order {RTD} was trained in, ")
        assert message.endswith(f"put var in that order: {line}") and "\n" not in message
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            expected = embed_anndata(run, right)
            np.testing.assert_allclose(embed_anndata(run, eval(line.removeprefix("adata = "),
                                                                {"gtok": __import__("gtok"), "adata": wrong})),
                                       expected, rtol=1e-5, atol=1e-6)
    peaks = cells.var.iloc[cells.X[0].indices].rename(columns={"chr": "chrom"})  # chr1, chr2, chr10
    with pytest.warns(UserWarning, match=rf"^region sets not in the order {RTD} was trained in, as its model folder "
                                         r"records: 1 \(region set 0\); .* put them in a BED file's, by chromosome"):
        embed_regions(beds, [peaks])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        embed_regions(beds, [peaks.sort_values("chrom", key=lambda c: c.astype(str), kind="stable")])

    published = tmp_path / "published_beds"  # shared as docs/models.md says: config.json, the weights, the universe
    published.mkdir()
    for name in ("config.json", "model.safetensors", "universe.bed.gz"):
        shutil.copy(beds / name, published / name)
    with pytest.warns(UserWarning, match=r'was trained in, a BED file\'s .* put var in that order: adata = gtok.sort_var\(adata, "bed"\)$'):
        embed_anndata(published, cells)

    card = yaml.safe_load((beds / "config.yaml").read_text())  # as an older gtok wrote it: no order recorded
    del card["data"]["token_orders"]
    (beds / "config.yaml").write_text(yaml.safe_dump(card))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # either order may be the model's: silent, as before
        embed_anndata(beds, cells)
    with pytest.warns(UserWarning, match="which its model folder does not record"):
        embed_anndata(beds, cells[:, np.random.default_rng(0).permutation(N_REGIONS)].copy())
