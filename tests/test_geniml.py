"""Interop with geniml 0.8.4: shards to parquet for geniml and Hugging Face datasets, and geniml's
Region2Vec folders embedded by gtok with geniml's own vectors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import GENIML, gtars_tokens, write_bed

from gtok.cli import main
from gtok.errors import GtokError
from gtok.formats.parquet import META_FINGERPRINT, META_VOCAB_SIZE, write_parquet
from gtok.formats.shard import ShardReader, write_shard
from gtok.sources.parquet import read_parquet_records

pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated:DeprecationWarning")  # geniml's own Region/RegionSet

UNIVERSE = GENIML / "universe.uniq.bed"  # no duplicate lines: gtars and gtok give the same ids (docs/tokenization.md)
BEDS = sorted((GENIML / "to_tokenize").glob("*.bed")) + sorted((GENIML / "hg38_sample").glob("*.bed")) + [GENIML / "s1_a.bed"]


def gtok(*args) -> int:
    return main([str(a) for a in args])


def error_line(capsys) -> str:
    """The one line a failed command printed (and nothing else, no traceback)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def shard(tmp_path_factory) -> Path:
    """A shard of every test BED file against the universe, with labels on all but one record."""
    folder = tmp_path_factory.mktemp("shard")
    sheet = folder / "labels.tsv"
    sheet.write_text("name\tlabel\n" + "".join(f"{b.stem}\t{'' if i == 0 else 'ab'[i % 2]}\n" for i, b in enumerate(BEDS)))
    out = folder / "s.gtok"
    assert gtok("tokenize", "-q", "-u", UNIVERSE, "-o", out, "--labels", sheet, *BEDS) == 0
    return out


@pytest.fixture(scope="module")
def parquet(shard, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("parquet") / "s.parquet"
    assert gtok("export-parquet", shard, "-o", out) == 0
    return out


def all_records(path, **kwargs):
    """Every record of a parquet: names, token lists, labels (None without a label column)."""
    names, docs, labels = [], [], []
    for batch in read_parquet_records(path, **kwargs):
        assert batch.tokens.dtype == np.int64 and batch.lengths.dtype == np.int64
        names += batch.names
        docs += [d.tolist() for d in np.split(batch.tokens, np.cumsum(batch.lengths)[:-1])] if batch.names else []
        labels = None if batch.labels is None else (labels or []) + batch.labels
    return names, docs, labels


# -- export-parquet and reading back ---------------------------------------------------------------


def test_export_parquet_prints_one_summary_line(shard, tmp_path, capsys):
    assert gtok("export-parquet", shard, "-o", tmp_path / "x.parquet") == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and f"{len(BEDS)} records" in out[0] and "1 shard" in out[0]


def test_read_parquet_records_round_trip(shard, parquet):
    reader = ShardReader(shard)
    for batch_rows in (3, 1000):
        names, docs, labels = all_records(parquet, vocab_size=reader.vocab_size, fingerprint=reader.fingerprint,
                                          batch_rows=batch_rows)
        assert names == reader.names and labels == reader.labels and labels[0] is None
        assert docs == [d.tolist() for d in reader]
    import pyarrow.parquet as pq

    meta = pq.read_schema(parquet).metadata  # the vocabulary the export records, which tokenize checks
    assert (meta[META_VOCAB_SIZE], meta[META_FINGERPRINT]) == (str(reader.vocab_size).encode(), reader.fingerprint.encode())


def test_parquet_tokenizes_back_into_a_shard_with_the_same_records(shard, parquet, tmp_path):
    back = tmp_path / "back.gtok"
    assert gtok("tokenize", "-q", "-u", UNIVERSE, "-o", back, parquet) == 0
    a, b = ShardReader(shard), ShardReader(back)
    assert (b.names, b.labels, b.fingerprint) == (a.names, a.labels, a.fingerprint)
    assert [d.tolist() for d in b] == [d.tolist() for d in a]


@pytest.mark.parametrize("names, twice", [(["a", "a"], "a"), ([None, "row0"], "row0"), (["a\tb", "c"], None),
                                         (["c", ""], None)])
def test_tokenize_refuses_record_names_a_shard_cannot_hold(tmp_path, capsys, names, twice):
    """Names repeated (a null name is named by its row, and may meet a real one), split over
    lines, or empty (no label sheet can name it, and export-gtars would write it as '.gtok'): one
    line, and no shard (gtok manifest would refuse the repeat only later; dump writes a record a
    line)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"name": names, "tokens": [[1, 2], [3]]}), tmp_path / "in.parquet")
    assert gtok("tokenize", "-q", "-u", UNIVERSE, "-o", tmp_path / "x.gtok", tmp_path / "in.parquet") == 1
    said = error_line(capsys)
    refused = "holds a tab or a line break" if "" not in names else "a record's name is empty, and records are found by name"
    assert (f"two records would both be named {twice!r}" if twice else refused) in said
    assert not (tmp_path / "x.gtok").exists()


def test_a_recorded_fingerprint_that_is_not_text_is_one_line(tmp_path, capsys):
    """Bytes of a damaged or foreign file in the fingerprint's metadata were a UnicodeDecodeError traceback."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"tokens": [[1]]}).replace_schema_metadata({b"gtok.fingerprint": b"\xff\xfe"})
    pq.write_table(table, tmp_path / "in.parquet")
    assert gtok("tokenize", "-q", "-u", UNIVERSE, "-o", tmp_path / "x.gtok", tmp_path / "in.parquet") == 1
    assert error_line(capsys) == (f"gtok tokenize: error: {tmp_path / 'in.parquet'}: its recorded vocabulary fingerprint "
                                  "(metadata gtok.fingerprint) is not text; the file is damaged, or not gtok's: write "
                                  "it again with gtok export-parquet, or drop that metadata.")


def test_tokenize_refuses_a_parquet_without_rows(tmp_path, capsys):
    """As an .h5ad without cells: a shard of no records would be refused only by a later step."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"tokens": pa.array([], pa.list_(pa.int64()))}), empty)
    assert gtok("tokenize", "-q", "-u", UNIVERSE, "-o", tmp_path / "x.gtok", empty) == 1
    assert error_line(capsys) == f"gtok tokenize: error: {empty}: holds no rows (no records); nothing to tokenize."
    assert not (tmp_path / "x.gtok").exists()


def test_tokenize_refuses_a_parquet_of_another_universe(parquet, tmp_path, capsys):
    other = write_bed(tmp_path / "other.bed", [("chr1", 1, 100), ("chr2", 5, 50)])
    assert gtok("tokenize", "-q", "-u", other, "-o", tmp_path / "x.gtok", parquet) == 1
    assert str(parquet) in error_line(capsys) and not (tmp_path / "x.gtok").exists()


def test_several_shards_stream_in_row_groups(shard, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from gtok.formats import parquet as module

    monkeypatch.setattr(module, "BATCH_TOKENS", 100)
    other = tmp_path / "copy.gtok"  # the same shard twice would be refused: its records would count twice
    shutil.copy(shard, other)
    done = write_parquet([shard, ShardReader(other)], tmp_path / "two.parquet")
    reader = ShardReader(shard)
    assert (done.shards, done.records, done.tokens) == (2, 2 * len(reader), 2 * reader.n_tokens)
    groups = pq.ParquetFile(done.path)
    assert groups.metadata.num_row_groups > 2
    for g in range(groups.metadata.num_row_groups):  # at most BATCH_TOKENS tokens, or a single record
        table = groups.read_row_group(g, columns=["tokens"])
        assert table.num_rows == 1 or sum(len(t) for t in table.column("tokens").to_pylist()) <= 100
    names, docs, _ = all_records(done.path)
    assert names == reader.names * 2 and docs == [d.tolist() for d in reader] * 2


def test_parquet_reads_in_geniml_and_hugging_face_datasets(shard, parquet, tmp_path):
    utils = pytest.importorskip("geniml.region2vec.utils")
    datasets = pytest.importorskip("datasets")
    reader = ShardReader(shard)
    expected = [d.tolist() for d in reader]
    assert list(utils.Region2VecDataset(str(parquet), shuffle=False)) == expected
    table = datasets.load_dataset("parquet", data_files={"train": str(parquet)}, split="train", cache_dir=str(tmp_path))
    assert table.to_dict() == {"name": reader.names, "tokens": expected, "label": reader.labels}


def test_export_refuses_shards_of_two_vocabularies(shard, tmp_path, capsys):
    other = write_shard(tmp_path / "other.gtok", [("x", np.array([1, 2]))], 40, "ab" * 32)
    assert gtok("export-parquet", shard, other, "-o", tmp_path / "x.parquet") == 1
    line = error_line(capsys)
    assert str(other) in line and "different universes" in line
    assert not (tmp_path / "x.parquet").exists()


def test_export_checks_its_output_first(shard, tmp_path, capsys):
    assert gtok("export-parquet", shard, "-o", tmp_path / "x.txt") == 1
    assert ".parquet" in error_line(capsys)
    bed = tmp_path / "x.parquet"
    bed.write_text("chr1\t1\t2\n")
    assert gtok("export-parquet", shard, "-o", bed) == 1
    assert "refusing to overwrite" in error_line(capsys) and bed.read_text() == "chr1\t1\t2\n"


def test_export_parquet_does_not_import_torch_and_tokenize_not_pyarrow(shard, tmp_path):
    code = ("import sys; from gtok.cli import main; rc = main(sys.argv[2:]); "
            "assert sys.argv[1] not in sys.modules, sys.argv[1] + ' was imported'; sys.exit(rc)")
    run = [sys.executable, "-c", code]
    subprocess.run([*run, "torch", "export-parquet", str(shard), "-o", str(tmp_path / "x.parquet")], check=True)
    subprocess.run([*run, "pyarrow", "tokenize", "-q", "-u", str(UNIVERSE), "-o", str(tmp_path / "x.gtok"),
                    *map(str, BEDS)], check=True)


# -- bad parquet input: one line naming the file ----------------------------------------------------


def write_table(path: Path, columns: dict, metadata: dict | None = None) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns).replace_schema_metadata(metadata), path)
    return path


def refusal(path, **kwargs) -> str:
    with pytest.raises(GtokError) as info:
        all_records(path, **kwargs)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_refuses_what_is_not_a_parquet_file(tmp_path):
    bed = write_bed(tmp_path / "x.parquet", [("chr1", 1, 2)])
    assert "not a parquet file" in refusal(bed)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1" + bytes(20))
    assert "not a readable parquet file" in refusal(broken)
    assert "no such file" in refusal(tmp_path / "missing.parquet")


def test_refuses_a_table_without_a_tokens_list_of_integers(tmp_path):
    import pyarrow as pa

    assert "no 'tokens' column" in refusal(write_table(tmp_path / "a.parquet", {"ids": [[1, 2]]}))
    for name, column in (("b", pa.array([1, 2])), ("c", pa.array([["x"], ["y"]])), ("d", pa.array([[0.5], [1.0]]))):
        assert "not a list of integers" in refusal(write_table(tmp_path / f"{name}.parquet", {"tokens": column}))
    assert "row 1 has no tokens" in refusal(write_table(tmp_path / "e.parquet", {"tokens": [[1], None]}))
    assert "row 1 holds a null token id" in refusal(write_table(tmp_path / "f.parquet", {"tokens": [[1], [2, None]]}))


def test_refuses_ids_outside_the_vocabulary_naming_the_row(tmp_path):
    negative = write_table(tmp_path / "n.parquet", {"tokens": [[1, 2], [3], [4, -5]]})
    assert "row 2 has the negative token id -5" in refusal(negative)
    large = write_table(tmp_path / "l.parquet", {"tokens": [[1, 2], [], [3], [9, 10]]})
    message = refusal(large, vocab_size=10, batch_rows=2)
    assert "row 3 has token id 10" in message and "vocabulary of 10 tokens" in message
    recorded = write_table(tmp_path / "r.parquet", {"tokens": [[1], [12]]}, {b"gtok.vocab_size": b"12"})
    assert "row 1 has token id 12" in refusal(recorded)  # the recorded vocabulary size is checked too


def test_refuses_a_file_of_another_vocabulary(parquet):
    assert "tokenized with vocabulary" in refusal(parquet, fingerprint="ab" * 32)
    assert "vocabulary of" in refusal(parquet, vocab_size=99)


def test_names_and_labels_are_optional(tmp_path):
    plain = write_table(tmp_path / "p.parquet", {"tokens": [[1, 2], [3], [4]]})
    names, docs, labels = all_records(plain, vocab_size=5, batch_rows=2)
    assert names == ["row0", "row1", "row2"] and docs == [[1, 2], [3], [4]] and labels is None
    named = write_table(tmp_path / "n.parquet", {"name": ["a", None], "tokens": [[1], [2]], "label": [None, 3]})
    names, _, labels = all_records(named)
    assert names == ["a", "row1"] and labels == [None, "3"]


def test_a_name_or_label_column_that_is_not_text_is_one_line(tmp_path, capsys):
    """A column of lists (or structs) cannot be cast to text; pyarrow's error was a traceback."""
    import pyarrow as pa

    for column in ("name", "label"):
        table = write_table(tmp_path / f"{column}.parquet", {"tokens": [[1], [2]], column: pa.array([[1], [2]])})
        assert gtok("tokenize", "-q", "-u", UNIVERSE, "-o", tmp_path / "t.gtok", table) == 1
        said = error_line(capsys)
        assert f"{table}: its {column!r} column is list<" in said and "not text" in said, said
        assert not (tmp_path / "t.gtok").exists()


def test_an_empty_token_list_becomes_the_unk_document(tmp_path):
    """Everywhere else a document without a match is [<unk>]; a 0-token record crashes training."""
    from gtok import Tokenizer

    tok = Tokenizer.from_bed(UNIVERSE)
    table = write_table(tmp_path / "t.parquet", {"name": ["a", "b", "c"], "tokens": [[1, 2], [], [3]]})
    assert gtok("tokenize", "-q", "-u", UNIVERSE, "-o", tmp_path / "t.gtok", table) == 0
    reader = ShardReader(tmp_path / "t.gtok")
    assert [t.tolist() for t in reader] == [[1, 2], [tok.unk_token_id], [3]]


# -- geniml Region2Vec folders in gtok embed --------------------------------------------------------


def geniml_encode_file(model, bed) -> np.ndarray:
    """geniml's pooling (Region2VecExModel.encode) over the tokens gtars gives a whole BED file."""
    import torch

    ids = torch.tensor(gtars_tokens(UNIVERSE, bed))[None]
    projection = model.model.projection
    vectors, mask = projection(ids), ids.ne(projection.padding_idx).unsqueeze(-1)
    return ((vectors * mask).sum(1) / mask.sum(1).clamp(min=1))[0].detach().numpy()


def per_region_docs(tokenizer, bed) -> list[np.ndarray]:
    """Each region of a BED file as its own document, in geniml's RegionSet order (as encode takes them)."""
    from geniml.io import RegionSet

    return [tokenizer.tokenize([(r.chr, r.start, r.end)]) for r in RegionSet(str(bed))]


@pytest.fixture
def geniml_folder(tmp_path) -> Path:
    """An untrained geniml model exported by geniml itself (random weights), without universe.bed."""
    main_module = pytest.importorskip("geniml.region2vec.main")
    from gtars.tokenizers import Tokenizer

    folder = tmp_path / "geniml-model"
    main_module.Region2VecExModel(tokenizer=Tokenizer(str(UNIVERSE)), embedding_dim=8, device="cpu").export(str(folder))
    return folder


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_embedder_gives_geniml_encode_vectors(geniml_folder, pooling):
    from geniml.region2vec.main import Region2VecExModel

    from gtok.inference.embed import Embedder

    if pooling == "max":
        with open(geniml_folder / "config.yaml", "a") as fh:
            fh.write("pooling_method: max\n")
    shutil.copy(UNIVERSE, geniml_folder / "universe.bed")
    theirs = Region2VecExModel.from_pretrained(str(geniml_folder))
    ours = Embedder(geniml_folder, device="cpu")
    assert ours.model.pooling == theirs.pooling_method == pooling
    assert ours.order_sensitive is None  # a pooled bag of regions: var's order is never warned of
    for bed in BEDS[:2] + BEDS[-2:]:  # the last has no region in the universe: geniml keeps <unk> in the mean
        assert np.allclose(ours.embed_docs(per_region_docs(ours.tokenizer, bed)), theirs.encode(str(bed)), atol=1e-5)


def test_geniml_folder_without_universe_needs_universe_option(geniml_folder, tmp_path, capsys):
    out = tmp_path / "e.npy"
    assert gtok("embed", "-q", "--model", geniml_folder, "-o", out, BEDS[0]) == 1
    line = error_line(capsys)
    assert str(geniml_folder) in line and "universe.bed" in line and "--universe" in line
    assert gtok("embed", "-q", "--model", geniml_folder / "checkpoint.pt", "-u", UNIVERSE, "-o", out, BEDS[0]) == 0
    assert np.load(out).shape == (1, 8)


def test_geniml_folder_refuses_a_universe_of_another_size(geniml_folder, tmp_path, capsys):
    other = write_bed(tmp_path / "u.bed", [("chr1", 0, 100)])
    assert gtok("embed", "-q", "--model", geniml_folder, "-u", other, "-o", tmp_path / "e.npy", BEDS[0]) == 1
    line = error_line(capsys)
    assert str(other) in line and "8 tokens" in line and "trained on 2385" in line


def test_geniml_folder_with_duplicate_universe_lines_warns(geniml_folder, recwarn):
    from gtok.tokenizer import Tokenizer

    shutil.copy(GENIML / "universe.bed", geniml_folder / "universe.bed")  # 55 duplicate lines, same regions
    tok = Tokenizer.from_pretrained(geniml_folder)
    assert tok.universe.duplicate_lines == 55
    assert any("numbers the regions after a duplicate line" in str(w.message) for w in recwarn)


def test_geniml_universe_is_checked_only_by_its_size_and_says_so(geniml_folder, tmp_path, capsys):
    """geniml records no fingerprint: a universe of the right size but other regions is not refused,
    so every use of a geniml folder warns that only the size was checked (issue 16)."""
    rows = [line.split("\t")[:3] for line in UNIVERSE.read_text().splitlines()]
    swapped = write_bed(tmp_path / "swapped.bed", [(c, int(s) + 1, int(e) + 1) for c, s, e in rows])
    shutil.copy(swapped, geniml_folder / "universe.bed")
    assert gtok("embed", "-q", "--model", geniml_folder, "-o", tmp_path / "e.npy", BEDS[0]) == 0
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "records no fingerprint" in warning[0] and "checked only for its size" in warning[0]


def test_tokenizer_from_pretrained_reads_a_geniml_folder(geniml_folder):
    from gtok.tokenizer import Tokenizer

    shutil.copy(UNIVERSE, geniml_folder / "universe.bed")
    tok = Tokenizer.from_pretrained(geniml_folder)
    assert tok.fingerprint == Tokenizer.from_bed(UNIVERSE, cache_dir="off").fingerprint


@pytest.mark.slow
def test_geniml_trains_on_exported_parquet_and_gtok_embeds_its_model(parquet, tmp_path):
    """The round trip: gtok shard -> parquet -> geniml training and export -> `gtok embed` = geniml's vectors."""
    main_module = pytest.importorskip("geniml.region2vec.main")
    from geniml.region2vec.utils import Region2VecDataset
    from gtars.tokenizers import Tokenizer

    from gtok.inference.embed import Embedder
    from gtok.tokenizer import Tokenizer as GTokTokenizer

    ours = GTokTokenizer.from_bed(UNIVERSE, cache_dir="off")
    assert all(ours.tokenize(bed).tolist() == gtars_tokens(UNIVERSE, bed) for bed in BEDS)  # the same ids as gtars
    model = main_module.Region2VecExModel(tokenizer=Tokenizer(str(UNIVERSE)), embedding_dim=16, device="cpu")
    model.train(Region2VecDataset(str(parquet)), epochs=2, min_count=1, window_size=5, num_cpus=1, seed=0)
    folder = tmp_path / "trained"
    model.export(str(folder))
    shutil.copy(UNIVERSE, folder / "universe.bed")
    out = tmp_path / "e.npy"
    assert gtok("embed", "-q", "--model", folder, "-o", out, *BEDS) == 0
    expected = np.stack([geniml_encode_file(model, bed) for bed in BEDS])
    assert np.allclose(np.load(out), expected, atol=1e-5)
    embedder = Embedder(folder, device="cpu")
    for bed in BEDS[:3]:
        assert np.allclose(embedder.embed_docs(per_region_docs(embedder.tokenizer, bed)), model.encode(str(bed)), atol=1e-5)
