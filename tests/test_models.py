"""The models on their own (no Trainer): objectives, embeddings, seeding, checkpoints, options."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from gtok.errors import FingerprintMismatchError, GtokError
from gtok.formats.shard import write_shard
from gtok.models import MODELS, Classifier, Vocab, model_from, read_checkpoint
from gtok.models.region2vec import _window_sum, region_counts
from gtok.modelspec import BUILTIN_MODELS

N_REGIONS = 300
VOCAB = Vocab(vocab_size=N_REGIONS + 7, unk_token_id=N_REGIONS, pad_token_id=N_REGIONS + 1,
              mask_token_id=N_REGIONS + 2, cls_token_id=N_REGIONS + 3, fingerprint="ab" * 32)
TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}
CLASSES = ["a", "b", "c"]


def make(name: str, **config):
    options = {**(TINY if name != "region2vec" else {"embedding_dim": 16}), **config}
    extra = {"classes": CLASSES} if name == "classifier" else {}
    torch.manual_seed(0)
    return MODELS[name](dataclasses.asdict(VOCAB), config=options, **extra)


def batch(n: int = 6, width: int = 24, seed: int = 0) -> dict[str, torch.Tensor]:
    """Padded records of random regions; the first record is a lone <unk>."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, width + 1, (n,), generator=g)
    lengths[0] = 1
    ids = torch.randint(0, N_REGIONS, (n, width), generator=g)
    ids[0, 0] = VOCAB.unk_token_id
    mask = torch.arange(width) < lengths[:, None]
    ids[~mask] = VOCAB.pad_token_id
    return {"input_ids": ids, "attention_mask": mask.long(), "labels": torch.arange(n) % 3}


VARIANTS = [("region2vec", {}), ("region2vec", {"mode": "skipgram"}), ("encoder", {}),
            ("encoder", {"objective": "rtd"}), ("classifier", {})]


def test_cli_lists_every_model():
    assert set(BUILTIN_MODELS) == set(MODELS)


@pytest.mark.parametrize("name,config", VARIANTS)
def test_loss_falls_on_a_fixed_batch(name, config):
    model = make(name, lr=0.01, **config)
    b = batch()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(25):
        with model.seeded("train", 0):  # same masks and negatives every step: a learnable target
            loss = model.losses(b)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("name", list(MODELS))
def test_embedding_ignores_token_order_and_padding(name):
    model = make(name, dropout=0.0) if name != "region2vec" else make(name)
    model.eval()
    b = batch()
    with torch.no_grad():
        full = model.embed(b)
        assert full.shape == (6, 16) and torch.isfinite(full).all()
        perm = torch.randperm(b["input_ids"].shape[1], generator=torch.Generator().manual_seed(1))
        shuffled = model.embed({k: v[:, perm] if v.ndim == 2 else v for k, v in b.items()})
        one = {k: v[3:4, : int(b["attention_mask"][3].sum())] for k, v in b.items() if v.ndim == 2}
        alone = model.embed(one)
    torch.testing.assert_close(shuffled, full, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(alone[0], full[3], atol=1e-5, rtol=1e-4)


def test_region2vec_embedding_is_the_mean_of_region_vectors_without_unk():
    model = make("region2vec")
    b = batch()
    vec = model.embed(b)
    ids = b["input_ids"][2][: int(b["attention_mask"][2].sum())]
    torch.testing.assert_close(vec[2], model.center.weight[ids].mean(0))
    assert torch.equal(vec[0], torch.zeros(16))  # a record of only <unk> has no region to average


def test_window_sum_matches_a_loop():
    x = torch.randn(2, 9, 3)
    for w in (1, 2, 5, 20):
        expected = torch.stack([x[:, max(0, t - w) : t + w + 1].sum(1) for t in range(9)], 1)
        torch.testing.assert_close(_window_sum(x, w), expected)


def test_masking_touches_only_region_tokens_at_the_configured_rate():
    model = make("encoder", mask_prob=0.3)
    b = batch(n=64, width=64)
    with model.seeded("test", 0):
        chosen = model._choose(b)
    assert not chosen[b["input_ids"] >= N_REGIONS].any()  # never padding or <unk>
    rate = chosen.sum() / model.region_mask(b).sum()
    assert 0.25 < float(rate) < 0.35


def test_step_seeding_repeats_within_a_step_and_differs_between_steps():
    model = make("encoder")
    b = batch()
    with model.seeded("train", 3, 0):
        a = model._choose(b)
    torch.rand(5)  # other users of the global generator change nothing
    with model.seeded("train", 3, 0):
        again = model._choose(b)
    with model.seeded("train", 4, 0):
        other = model._choose(b)
    assert torch.equal(a, again) and not torch.equal(a, other)


def test_negatives_follow_the_counts_and_are_regions():
    model = make("region2vec")
    counts = np.zeros(VOCAB.vocab_size)
    counts[:3] = [1, 16, 0]
    counts[VOCAB.unk_token_id] = 1000  # specials never become negatives
    model.set_noise_counts(counts)
    with model.seeded("t"):
        neg = model.sample_negatives((20000,))
    share = np.bincount(neg.numpy(), minlength=3) / neg.numel()
    assert share[2] == 0 and share.size == 3
    np.testing.assert_allclose(share[:2], [1 / 9, 8 / 9], atol=0.01)  # counts ** 0.75


def test_rtd_generator_never_proposes_special_tokens():
    model = make("encoder", objective="rtd", mask_prob=0.5)
    with torch.no_grad():
        model.mlm.bias[N_REGIONS:] = 1e4  # the generator would pick a special token if it could
    seen = []
    model.backbone.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    b = batch(n=16, width=32)
    with model.seeded("train", 0):
        out = model.losses(b)
    assert set(out) == {"loss", "generator_loss", "detector_loss", "detector_acc"}
    replaced = seen[-1]  # what the detector saw
    regions = model.region_mask(b)
    assert (replaced[regions] < N_REGIONS).all()
    assert (replaced[regions] != b["input_ids"][regions]).any()
    assert torch.equal(replaced[~regions], b["input_ids"][~regions])


def test_classifier_ignores_unlabeled_records():
    model = make("classifier", head_dropout=0.0, dropout=0.0)
    b = batch()
    labeled = model.losses(b)["loss"]
    b["labels"] = torch.tensor([0, 1, 2, -100, -100, -100])
    part = model.losses(b)
    logits = model.logits(b)[:3]
    torch.testing.assert_close(part["loss"], torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])))
    assert part["logits"].shape == (3, 3) and not torch.equal(labeled, part["loss"])


def test_unknown_options_are_named():
    with pytest.raises(GtokError, match="encoder model: unknown option.*d_modl"):
        make("encoder", d_modl=8)
    with pytest.raises(GtokError, match="objective"):
        make("encoder", objective="gpt")
    with pytest.raises(GtokError, match="multiple of n_heads"):
        make("encoder", d_model=10, n_heads=4)


def saved_checkpoint(model, path) -> None:
    """`model` trained one step by a real Lightning Trainer, and saved by it (as `gtok train` does)."""
    import lightning as L

    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, torch.utils.data.DataLoader([batch()], batch_size=None))
    trainer.save_checkpoint(path)


@pytest.mark.parametrize("name", ["encoder", "region2vec", "classifier"])
def test_checkpoint_round_trip_restores_the_model(tmp_path, name):
    model = make(name)
    saved_checkpoint(model, tmp_path / "m.ckpt")
    back = model_from(read_checkpoint(tmp_path / "m.ckpt"))
    assert type(back) is type(model) and back.vocab == VOCAB and not back.training
    model.eval()
    torch.testing.assert_close(back.embed(batch()), model.embed(batch()))


def test_a_checkpoint_whose_class_does_not_import_names_the_file(tmp_path):
    """A brought model's folder used where its package is not installed said 'checkpoint model:',
    not which of the user's checkpoints."""
    from gtok.inference.loading import load_model

    saved_checkpoint(make("region2vec"), tmp_path / "m.ckpt")
    ckpt = torch.load(tmp_path / "m.ckpt", weights_only=False)
    ckpt["gtok"]["model"] = "no_such_package.models:Net"
    torch.save(ckpt, tmp_path / "m.ckpt")
    with pytest.raises(GtokError, match=rf"^{tmp_path}/m.ckpt: model: no_such_package.models:Net: cannot import "
                                        "no_such_package.models"):
        load_model(tmp_path / "m.ckpt", universe=tmp_path / "u.bed")


def test_classifier_starts_from_an_encoder_of_the_same_vocabulary(tmp_path):
    encoder = make("encoder", d_model=24, n_heads=3)
    path = tmp_path / "enc.ckpt"
    saved_checkpoint(encoder, path)
    clf = Classifier.from_encoder(path, dataclasses.asdict(VOCAB), CLASSES, {"lr": 0.1}, data="data.json")
    assert clf.cfg.d_model == 24 and clf.cfg.lr == 0.1
    for key, value in encoder.backbone.state_dict().items():
        assert torch.equal(clf.backbone.state_dict()[key], value)
    other = {**dataclasses.asdict(VOCAB), "fingerprint": "cd" * 32}
    with pytest.raises(FingerprintMismatchError, match="data.json: tokenized with vocabulary cdcdcd.*enc.ckpt"):
        Classifier.from_encoder(path, other, CLASSES, {}, data="data.json")


def test_region_counts_exact_and_sampled_from_the_training_split_alone(tmp_path):
    """The noise distribution counts the training records only: held-out ones never shape the model."""
    from gtok.data.records import Records

    rng = np.random.default_rng(0)
    records = [(f"r{i}", rng.integers(0, 50, rng.integers(1, 400)), None) for i in range(60)]
    paths = [write_shard(tmp_path / f"s{k}.gtok", records[k::2], 57, None) for k in range(2)]
    train = Records.open(paths, verify=False, split="train", val_fraction=0.3, expected_fingerprint=None)
    held_out = Records.open(paths, verify=False, split="val", val_fraction=0.3, expected_fingerprint=None)
    assert 0 < len(held_out) and len(train) + len(held_out) == 60
    every = np.bincount(np.concatenate([train.tokens(int(s))[a : a + n] for s, a, n in
                                        zip(train.shard, train.start, train.length)]), minlength=57)
    assert every.sum() < sum(len(r[1]) for r in records)  # the held-out records' tokens are not in it
    np.testing.assert_array_equal(region_counts(train, 57), every)
    sampled = region_counts(train, 57, max_tokens=2000)
    assert 1000 <= sampled.sum() <= 2000 and sampled[50:].sum() == 0


def test_a_checkpoint_cut_short_is_told_so_in_one_short_line(tmp_path):
    """A copy cut short gave torch's four-sentence miniz error inside gtok's line."""
    saved_checkpoint(make("region2vec"), tmp_path / "m.ckpt")
    data = (tmp_path / "m.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(GtokError) as err:
        read_checkpoint(tmp_path / "cut.ckpt")
    assert str(err.value) == (f"{tmp_path / 'cut.ckpt'}: a checkpoint cut short or damaged (its zip archive has no "
                              "end); copy it again.")


def test_a_manifest_given_as_a_checkpoint_is_not_called_a_bed_file(tmp_path):
    (tmp_path / "manifest.json").write_text('{\n  "schema_version": 1}\n')
    with pytest.raises(GtokError, match=r"manifest.json: not a checkpoint: it is a JSON file \(a manifest\?\); give"):
        read_checkpoint(tmp_path / "manifest.json")


def test_a_checkpoint_cut_short_is_offered_only_another_file_instead(tmp_path):
    """A run folder's model.ckpt cut short names its checkpoints/last.ckpt; last.ckpt itself cut
    short (gtok train resuming, gtok embed given it) was told to use checkpoints/last.ckpt, itself."""
    saved_checkpoint(make("region2vec"), tmp_path / "m.ckpt")
    data = (tmp_path / "m.ckpt").read_bytes()
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    last, model = tmp_path / "run" / "checkpoints" / "last.ckpt", tmp_path / "run" / "model.ckpt"
    last.write_bytes(data[: len(data) // 2])
    with pytest.raises(GtokError) as err:
        read_checkpoint(last)
    assert str(err.value).endswith("(its zip archive has no end); copy it again.")
    model.write_bytes(data[: len(data) // 2])
    with pytest.raises(GtokError) as err:
        read_checkpoint(model)
    assert str(err.value).endswith(f"(its zip archive has no end); copy it again, or give {last}.")
