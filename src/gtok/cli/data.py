"""Commands on data: tokenize, index, dump, info, export-gtars, manifest, verify, simulate."""

from __future__ import annotations

import argparse
import sys

from gtok.cli.common import (
    add_cell_options,
    add_command,
    add_quiet,
    inform,
    non_negative_int,
    part,
    positive_float,
    positive_int,
)
from gtok.errors import GtokError


def _add_tokenize(sub) -> None:
    help_ = "Tokenize BED files, .h5ad files or fragment files into one .gtok shard."
    p = add_command(sub, "tokenize", help_, _run_tokenize)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="BED / BED.gz files (one record each), .h5ad / .h5mu files (one record per cell) or fragment files "
                        "(.tsv.gz, .tsv.bgz, .tsv, or any name whose lines are fragments: one record per barcode) or "
                        ".parquet token documents (from export-parquet or geniml)")
    p.add_argument("--universe", "-u", required=True, help="universe BED (.bed or .bed.gz): the vocabulary")
    p.add_argument("--output", "-o", required=True, help="the shard to write (.gtok); written atomically")
    p.add_argument("--rows", metavar="START:STOP", help="tokenize only this row range of one .h5ad (for fan-out)")
    p.add_argument("--label-key", metavar="COLUMN", help="obs column of the .h5ad to store as cell labels")
    p.add_argument("--labels", metavar="SHEET.tsv",
                   help="TSV with a 'label' column and a 'name' or 'path' column (BED files), or 'sample' and "
                        "'barcode' columns, a 'barcode' column (one sample) or a 'name' column of record names "
                        "(fragment files)")
    p.add_argument("--sample", action="append", metavar="NAME",
                   help="fragment and .h5ad inputs: the sample name of each, in their order (repeat it), so that "
                        "cells are named SAMPLE#BARCODE: barcodes repeat across samples (default: one input keeps "
                        "its barcodes, several are named by their file names)")
    p.add_argument("--name-format", metavar="FORMAT",
                   help="how a cell's record name is made of its sample and barcode (default '{sample}#{barcode}')")
    p.add_argument("--barcodes", metavar="FILE",
                   help="fragment files: keep only these cells (one barcode per line, or an .h5ad whose obs_names are the cells)")
    p.add_argument("--min-fragments", type=positive_int, default=1, metavar="N",
                   help="fragment files: keep barcodes with at least N fragments (default 1)")
    p.add_argument("--part", type=part, default=(0, 1), metavar="K/N",
                   help="fragment files: keep the barcodes of part K of N (a stable hash of the barcode), so that N jobs "
                        "split a file; default 0/1, all")
    add_cell_options(p, "tokenize")
    p.add_argument("--dataset", metavar="NAME",
                   help="the dataset the records belong to, recorded in the shard (weighted mixtures draw by dataset); "
                        "default: the --sample name when one names the only input, else the input's file name "
                        "without its suffix for one .h5ad, fragments or parquet file, else the shard's name without .gtok")
    p.add_argument("--chunk-rows", type=positive_int, default=2048, help="cells tokenized at a time (bounds memory; default 2048)")
    p.add_argument("--no-cache", action="store_true", help="do not use or write the binary universe cache")
    p.add_argument("--threads", type=positive_int, help="threads for reading files (default: the CPUs this process may use)")
    add_quiet(p)


def _run_tokenize(args: argparse.Namespace) -> int:
    from gtok.build import tokenize_to_shard
    from gtok.sources.fragments import FragmentOptions

    tokenize_to_shard(
        inputs=args.inputs,
        universe=args.universe,
        output=args.output,
        rows=args.rows,
        label_key=args.label_key,
        labels_sheet=args.labels,
        chunk_rows=args.chunk_rows,
        cache=not args.no_cache,
        progress=not args.quiet,
        threads=args.threads,
        fragments=FragmentOptions(args.barcodes, args.min_fragments, args.part),
        modality=args.modality,
        tile_width=args.tile_width,
        layer=args.layer,
        samples=args.sample,
        name_format=args.name_format,
        dataset=args.dataset,
    )
    return 0


def _add_index(sub) -> None:
    help_ = "Build the binary index of a universe BED (.gtokidx), which --universe of tokenize also takes."
    p = add_command(sub, "index", help_, _run_index)
    p.add_argument("--universe", "-u", required=True, help="universe BED (.bed or .bed.gz)")
    p.add_argument("--output", "-o", required=True, help="the index to write (.gtokidx); written atomically")
    add_quiet(p)


def _run_index(args: argparse.Namespace) -> int:
    from gtok.build import build_index
    from gtok.vocabulary import Vocabulary

    universe = build_index(args.universe, args.output)
    inform(args, f"wrote {args.output}: {len(universe):,} regions, vocabulary size {Vocabulary(len(universe)).size:,}, "
          f"fingerprint {universe.fingerprint}")
    return 0


def _add_dump(sub) -> None:
    help_ = "Print every record of a shard as NAME<TAB>id,id,id, once its checksums show it intact."
    p = add_command(sub, "dump", help_, _run_dump)
    p.add_argument("shard", help=".gtok shard (or gtars .gtok file)")


def _run_dump(args: argparse.Namespace) -> int:
    from gtok.formats.shard import ShardReader

    reader = ShardReader(args.shard)
    reader.verify()  # damaged data must not be printed as if it were the records
    out = sys.stdout
    for name, tokens in zip(reader.names, reader):
        out.write(f"{name}\t{','.join(map(str, tokens.tolist()))}\n")
    return 0


def _add_info(sub) -> None:
    help_ = ("Summarise shards (records, tokens, dtype, fingerprint, dataset, universe, lengths; their checksums "
             "checked) or manifests (totals, universe, and records and tokens per dataset).")
    p = add_command(sub, "info", help_, _run_info)
    p.add_argument("shards", nargs="+", metavar="SHARD", help=".gtok shards, gtars .gtok files, or manifests (.json)")


def _run_info(args: argparse.Namespace) -> int:
    from gtok.formats.manifest import load_manifest
    from gtok.formats.shard import ShardReader
    from gtok.stats import describe_manifest, describe_shard, shard_damage

    damaged = []
    for i, path in enumerate(args.shards):
        if i:
            print()
        if path.endswith(".json"):
            print(describe_manifest(load_manifest(path)))
            continue
        reader = ShardReader(path)
        damage = shard_damage(reader)
        print(describe_shard(reader, damage))
        damaged += [damage] if damage else []
    if damaged:
        more = f" (and {len(damaged) - 1} more damaged shard(s) above)" if len(damaged) > 1 else ""
        raise GtokError(damaged[0] + more)
    return 0


def _add_export(sub) -> None:
    p = add_command(sub, "export-gtars", "Write every record of a shard as a gtars-format NAME.gtok file.", _run_export)
    p.add_argument("shard")
    p.add_argument("outdir", help="folder for the files (created if missing)")


def _run_export(args: argparse.Namespace) -> int:
    from gtok.formats.gtars import MAX_STEM_BYTES, export_gtars_folder
    from gtok.formats.shard import ShardReader

    renamed = export_gtars_folder(ShardReader(args.shard), args.outdir)
    if renamed:
        shown = ", ".join(f"{_short(repr(name))} -> {_short(file)}" for name, file in renamed[:5]) + (" ..." if len(renamed) > 5 else "")
        print(f"note: {len(renamed)} records share a file name with another, or their name cannot be one as it is "
              f"(it holds '/' or NUL, or is over {MAX_STEM_BYTES} bytes), and got another: {shown}")
    inform(args, f"wrote {len(ShardReader(args.shard))} gtars .gtok files to {args.outdir}")
    return 0


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _add_export_parquet(sub) -> None:
    help_ = ("Write the records of shards to one parquet file (name, tokens, label), which geniml's Region2VecDataset "
             "and Hugging Face datasets read.")
    p = add_command(sub, "export-parquet", help_, _run_export_parquet)
    p.add_argument("shards", nargs="+", metavar="SHARD", help=".gtok shards of one universe, exported in this order")
    p.add_argument("--output", "-o", required=True, help="the parquet file to write (.parquet); written atomically")


def _run_export_parquet(args: argparse.Namespace) -> int:
    from gtok.formats.parquet import write_parquet

    done = write_parquet(args.shards, args.output)
    inform(args, f"wrote {done.path}: {done.records:,} records, {done.tokens:,} tokens from {done.shards} shard(s), "
          f"vocabulary size {done.vocab_size or 'unknown'}, fingerprint {(done.fingerprint or 'unknown')[:12]}")
    return 0


def _add_manifest(sub) -> None:
    help_ = ("List shards with their sha256, counts, datasets, label classes and universe in a JSON manifest; record "
             "names must be unique across its shards.")
    p = add_command(sub, "manifest", help_, _run_manifest)
    p.add_argument("shards", nargs="*", metavar="SHARD", help=".gtok shards, or folders of them (their *.gtok, sorted)")
    p.add_argument("--split", nargs="+", action="append", default=[], metavar=("NAME", "SHARD"),
                   help="shards that hold split NAME (train, val, ...): --split val a.gtok b.gtok; repeatable")
    p.add_argument("--dataset", nargs="+", action="append", default=[], metavar=("NAME", "SHARD"),
                   help="record these shards as dataset NAME instead of the one they record (listing them if they "
                        "are not listed otherwise): --dataset pbmc a.gtok b.gtok; repeatable")
    p.add_argument("--output", "-o", required=True, help="the manifest to write (.json); written atomically")
    add_quiet(p)


def _run_manifest(args: argparse.Namespace) -> int:
    from gtok.formats.manifest import expand_shards, write_manifest

    shards = [(path, None) for path in expand_shards(args.shards)]
    for name, *paths in args.split:
        if not paths:
            raise GtokError(f"--split {name}: name the shards of split {name!r} after it.")
        shards += [(path, name) for path in expand_shards(paths)]
    datasets = _dataset_overrides(args.dataset)
    listed = {path.resolve() for path, _ in shards}
    shards += [(path, None) for key, (path, _) in datasets.items() if key not in listed]
    specs = [(path, split, datasets.get(path.resolve(), (None, None))[1]) for path, split in shards]
    manifest = write_manifest(args.output, specs, progress=not args.quiet)
    inform(args, f"wrote {args.output}: {len(manifest['shards'])} shards, {manifest['records']:,} records, {manifest['tokens']:,} tokens")
    return 0


def _dataset_overrides(groups: list[list[str]]) -> dict:
    """--dataset NAME SHARD... groups as {resolved path: (path as given, NAME)}; a shard given two names is refused."""
    from gtok.formats.manifest import expand_shards
    from gtok.formats.metadata import check_dataset

    out: dict = {}
    for name, *paths in groups:
        check_dataset(name, "--dataset")
        if not paths:
            raise GtokError(f"--dataset {name}: name the shards of dataset {name!r} after it.")
        for path in expand_shards(paths):
            key = path.resolve()
            if key in out and out[key][1] != name:
                raise GtokError(f"--dataset: {path} is given two datasets, {out[key][1]!r} and {name!r}; give it one.")
            out[key] = (path, name)
    return out


def _add_verify(sub) -> None:
    help_ = "Re-hash every shard of a manifest and check its format, fingerprint, counts and totals."
    p = add_command(sub, "verify", help_, _run_verify)
    p.add_argument("manifest", help="manifest written by 'gtok manifest'")
    add_quiet(p)


def _run_verify(args: argparse.Namespace) -> int:
    from gtok.formats.manifest import load_manifest, verify_manifest

    problems = verify_manifest(args.manifest, progress=not args.quiet)
    for line in problems:
        print(line)
    if problems:
        print(f"gtok verify: {len(problems)} problem(s) in {args.manifest}", file=sys.stderr)
        return 1
    m = load_manifest(args.manifest)
    print(f"OK: {len(m.entries)} shards, {m.records:,} records, {m.tokens:,} tokens match {args.manifest}")
    return 0


def _add_simulate(sub) -> None:
    from gtok.simulate import Simulation

    help_ = ("Simulate scATAC cells with a known answer (cell types with their own peak programs, library sizes, "
             "a batch effect; gtok.simulate) as an .h5ad, and its peaks as a universe BED.")
    p = add_command(sub, "simulate", help_, _run_simulate)
    p.add_argument("--output", "-o", required=True, help="the .h5ad to write")
    p.add_argument("--universe-out", help="also write the peaks as a BED file here")
    d = Simulation()
    for name in ("cells", "peaks", "cell_types", "program_peaks", "batches", "seed"):
        kind = non_negative_int if name == "seed" else positive_int
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=getattr(d, name), help=f"default {getattr(d, name)}")
    for name in ("base_rate", "rate_sigma", "program_boost", "library_sigma", "batch_sigma", "batch_depth"):
        p.add_argument(f"--{name.replace('_', '-')}", type=positive_float, default=getattr(d, name),
                       help=f"default {getattr(d, name)}")


def _run_simulate(args: argparse.Namespace) -> int:
    import dataclasses

    from gtok.atomic import replaced_together
    from gtok.paths import has_magic, output_file
    from gtok.simulate import Simulation, peaks_bed, simulate, wrote_peaks

    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(Simulation)}
    try:
        sim = Simulation(**fields)
    except ValueError as exc:
        raise GtokError(f"{exc}.") from None  # the command's name is the error line's prefix already
    target = output_file(args.output, (".h5ad",), [], has_magic(b"\x89HDF"), "simulated .h5ad")
    # an existing BED is replaced only when it holds the peaks this command wrote beside the cells
    bed = output_file(args.universe_out, (".bed",), [args.output], lambda p: wrote_peaks(p, target),
                      "BED of the peaks gtok simulate wrote beside that .h5ad") if args.universe_out else None
    adata = simulate(sim)
    with replaced_together([bed, target] if bed else [target]) as written:  # the cells and their peaks together
        if bed:
            written[0].write_text(peaks_bed(adata.var))
        adata.write_h5ad(written[-1], compression="gzip")
    inform(args, f"wrote {target}: {sim.cells:,} cells x {sim.peaks:,} peaks, {sim.cell_types} cell types, {sim.batches} batches")
    return 0


COMMANDS = [_add_tokenize, _add_index, _add_dump, _add_info, _add_export, _add_export_parquet, _add_manifest, _add_verify,
            _add_simulate]
