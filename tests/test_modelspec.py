"""gtok.modelspec: what `--model` may name, and each mistake about a brought class refused in one
line before any work (these checks also run at the workflow's dry run)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import lightning as L
import pytest
from torch import nn

from gtok.errors import GtokError
from gtok.modelspec import parse_model, resolve_model

ROOT = Path(__file__).resolve().parent.parent
ATACFORMER = "geniml.atacformer:AtacformerForReplacedTokenDetection"
TINY_ATACFORMER = {"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                   "max_position_embeddings": 64}


class Tiny(L.LightningModule):
    """A brought LightningModule for these tests: vocab, then its own arguments."""

    def __init__(self, vocab, dim: int, scale: float = 1.0):
        super().__init__()
        self.table = nn.Embedding(vocab.vocab_size, dim)

    def embed(self, batch):
        return self.table(batch["input_ids"]).mean(1)


class NoEmbed(L.LightningModule):
    def __init__(self, vocab, **anything):
        super().__init__()


class NoVocab(L.LightningModule):
    def __init__(self, *, dim: int = 4):
        super().__init__()


class OwnArgumentsOnly(L.LightningModule):
    def __init__(self, dim: int = 8):
        super().__init__()


class Refuses(L.LightningModule):
    """Refuses its arguments with a message of several lines, as library code often does."""

    def __init__(self, vocab, dim: int = 4):
        super().__init__()
        raise ValueError(f"dim {dim} is odd\nuse an even dim")


class Plain:
    """Neither a LightningModule nor a PreTrainedModel."""


not_a_class = 3


def refusal(model, cfg=None, **kwargs) -> str:
    with pytest.raises(GtokError) as err:
        resolve_model(model, cfg or {}, 0, "cfg", **kwargs)
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("text", ["encoder", "region2vec", "classifier", "pkg.mod:Class", "m:Outer.Inner"])
def test_builtins_and_import_paths_parse(text):
    spec = parse_model(text)
    assert spec.builtin == (":" not in text)


@pytest.mark.parametrize("text", ["bert", "pkg.mod", "pkg.mod:", ":Class", "pkg-x.mod:Class", "a:b:c", 3])
def test_anything_else_is_named(text):
    with pytest.raises(GtokError, match=r"--model: .* is neither a built-in model \(region2vec, encoder, classifier\)"):
        parse_model(text)


def test_labels_name_files():
    assert parse_model("encoder").label == "encoder" and parse_model(ATACFORMER).label == "atacformerforreplacedtokendetection"


@pytest.mark.parametrize("model, words", [
    ("no_such_package.models:Net", "cfg model: no_such_package.models:Net: cannot import no_such_package.models "
                                   "(ModuleNotFoundError: No module named 'no_such_package')"),
    ("test_modelspec:Missing", "cfg model: test_modelspec:Missing: test_modelspec has no class Missing (nothing by that name)."),
    ("test_modelspec:not_a_class", "has no class not_a_class (a int by that name)."),
    ("test_modelspec:Plain", "cfg model: test_modelspec:Plain is neither a LightningModule nor a Hugging Face PreTrainedModel"),
])
def test_an_import_path_must_name_a_class_of_either_kind(model, words):
    assert words in refusal(model)


@pytest.mark.parametrize("model, cfg, words", [
    ("test_modelspec:Tiny", {"model_args": {"dim": 4, "dimm": 2}},
     "cfg section 'model_args': test_modelspec:Tiny accepts no argument dimm; it accepts: dim, scale."),
    ("test_modelspec:Tiny", {}, "cfg section 'model_args': test_modelspec:Tiny needs dim; give them in model_args."),
    ("test_modelspec:NoVocab", {}, "takes no vocabulary as its first argument"),
    ("test_modelspec:OwnArgumentsOnly", {}, "takes no vocabulary as its first argument"),
    ("test_modelspec:OwnArgumentsOnly", {"model_args": {"dim": 4}}, "takes no vocabulary as its first argument"),
    ("test_modelspec:Tiny", {"model_args": {"dim": 4}, "hf": {"lr": 0.1}},
     "cfg section 'hf': applies to Hugging Face models, and test_modelspec:Tiny is a LightningModule"),
    ("test_modelspec:Tiny", {"model_args": ["dim"]}, "cfg section 'model_args': expected a mapping"),
    ("encoder", {"model_args": {"d_model": 8}},
     "cfg section 'model_args': applies to a brought class (package.module:ClassName); the options of encoder go in its section 'encoder'."),
])
def test_brought_lightning_mistakes_are_named(model, cfg, words):
    assert words in refusal(model, cfg)


def test_the_classs_own_refusal_is_one_line():
    from gtok.models import Vocab
    from gtok.models.brought import build_lightning

    brought = resolve_model("test_modelspec:Refuses", {"model_args": {"dim": 3}}, 0, "cfg").brought
    with pytest.raises(GtokError) as err:
        build_lightning(brought, Vocab.of_size(20), {"dim": 3})
    assert str(err.value) == ("model_args: test_modelspec:Refuses(vocab, **model_args) failed: ValueError: dim 3 is odd "
                              "use an even dim")


def test_a_model_the_evaluation_embeds_must_embed():
    assert resolve_model("test_modelspec:NoEmbed", {"model_args": {"x": 1}}, 0, "cfg").brought.kind == "lightning"
    words = refusal("test_modelspec:NoEmbed", embeds=True)
    assert "cannot embed (it defines no embed(batch) -> Tensor[B, D])" in words and "evaluate.enabled: false" in words


def test_a_good_brought_lightning_module_resolves():
    resolved = resolve_model("test_modelspec:Tiny", {"model_args": {"dim": 4}, "seed": 3}, 3, "cfg", embeds=True)
    assert resolved.brought.cls is Tiny and resolved.model_args == {"dim": 4} and resolved.config.seed == 3


@pytest.mark.parametrize("cfg, words", [
    ({"model_args": {**TINY_ATACFORMER, "hiden_size": 8}}, "cfg section 'model_args': AtacformerConfig has no option hiden_size; its options:"),
    ({"model_args": {**TINY_ATACFORMER, "pad_token_id": 0}}, "cfg section 'model_args': pad_token_id are set from the data's vocabulary; remove them."),
    ({"model_args": TINY_ATACFORMER, "data": {"max_length": 128}},
     "cfg section 'data': max_length 128 is longer than the 64 positions of " + ATACFORMER),
    ({"model_args": TINY_ATACFORMER, "data": {"max_length": None}}, "max_length None is longer than the 64 positions"),
    ({"model_args": TINY_ATACFORMER, "hf": {"objective": "glove"}}, "cfg section 'hf': objective must be one of auto, rtd, mlm, triplet"),
])
def test_hugging_face_config_mistakes_are_named(cfg, words):
    pytest.importorskip("geniml.atacformer")
    assert words in refusal(ATACFORMER, {"data": {"max_length": 64}, **cfg})


def test_auto_objective_needs_a_class_it_can_read():
    pytest.importorskip("transformers")
    words = refusal("transformers:BertModel", {"data": {"max_length": 64}})
    assert "objective auto cannot tell what transformers:BertModel is trained for; set hf.objective" in words
    # ELECTRA's discriminator: neither its forward nor its name says; its labels make rtd the user's to name
    cfg = {"data": {"max_length": 64}, "hf": {"objective": "rtd"}}
    assert resolve_model("transformers:ElectraForPreTraining", cfg, 0).brought.kind == "hf"


@pytest.mark.parametrize("model, objective, words", [
    (ATACFORMER, "mlm", "objective mlm does not fit geniml.atacformer:AtacformerForReplacedTokenDetection, which is "
                        "trained for rtd (its name); set hf.objective to rtd (or auto)"),
    ("transformers:BertForMaskedLM", "rtd", "objective rtd does not fit transformers:BertForMaskedLM, which is trained "
                                            "for mlm (its name)"),
    (ATACFORMER, "triplet", "objective triplet does not fit geniml.atacformer:AtacformerForReplacedTokenDetection"),
    ("geniml.atacformer:AtacformerForCellClustering", "rtd",
     "trained for triplet (its forward takes anchor, positive and negative inputs)"),
    ("transformers:ElectraForPreTraining", "triplet", "objective triplet needs a forward of anchor, positive and negative"),
    ("transformers:BertModel", "mlm", "transformers:BertModel's forward takes no labels, so it computes no mlm loss"),
])
def test_an_objective_the_class_is_not_trained_for_is_refused(model, objective, words):
    pytest.importorskip("geniml.atacformer")
    assert words in refusal(model, {"data": {"max_length": 64}, "hf": {"objective": objective}})


def test_a_class_whose_loss_needs_a_missing_package_is_refused():
    """geniml's AtacformerForMaskedLM asserts cut-cross-entropy in its forward: without it, the
    first training step would fail with an AssertionError."""
    pytest.importorskip("geniml.atacformer")
    if importlib.util.find_spec("cut_cross_entropy") is not None:
        pytest.skip("cut-cross-entropy is installed")
    words = refusal("geniml.atacformer:AtacformerForMaskedLM", {"model_args": TINY_ATACFORMER, "data": {"max_length": 64}})
    assert "cfg model: geniml.atacformer:AtacformerForMaskedLM computes its training loss with cut-cross-entropy, " \
           "which is not installed here" in words


def test_the_docs_example_is_the_tested_file():
    """docs/models.md shows docs/examples/bag_of_regions.py as it is (the distributed and SLURM tests train it)."""
    doc = (ROOT / "docs" / "models.md").read_text()
    block = re.search(r"<!-- example: docs/examples/bag_of_regions.py -->\n```python\n(.*?)```", doc, re.S)
    assert block is not None and block.group(1) == (ROOT / "docs" / "examples" / "bag_of_regions.py").read_text()
