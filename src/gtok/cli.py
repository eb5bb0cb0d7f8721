"""The `gtok` command line.

Each subcommand imports what it needs when it runs, so `gtok tokenize` starts without torch or
Lightning. User errors (`GtokError`) print one line and exit 1; they never show a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from gtok.errors import GtokError

EPILOG = "Run 'gtok COMMAND --help' for the options of a command."


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except GtokError as exc:
        print(f"gtok {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `gtok dump x | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"gtok {args.command}: interrupted; nothing was written.", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gtok",
        description="Tokenize genomic interval collections into .gtok shards, and train on them.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _registrars():
        register(sub)
    return parser


def _command(sub, name: str, help_: str, run: Callable[[argparse.Namespace], int | None]) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=help_)
    p.set_defaults(run=run)
    return p


# -- tokenize -------------------------------------------------------------------------------------


def _add_tokenize(sub) -> None:
    p = _command(sub, "tokenize", "Tokenize BED files or an .h5ad into one .gtok shard.", _run_tokenize)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="BED / BED.gz files (one record each) or .h5ad files (one record per cell)")
    p.add_argument("--universe", "-u", required=True, help="universe BED (.bed or .bed.gz): the vocabulary")
    p.add_argument("--output", "-o", required=True, help="the shard to write (.gtok); written atomically")
    p.add_argument("--rows", metavar="START:STOP", help="tokenize only this row range of one .h5ad (for fan-out)")
    p.add_argument("--label-key", metavar="COLUMN", help="obs column of the .h5ad to store as cell labels")
    p.add_argument("--labels", metavar="SHEET.tsv", help="TSV with a 'name' or 'path' column and a 'label' column, for BED files")
    p.add_argument("--chunk-rows", type=int, default=2048, help="cells tokenized at a time (bounds memory; default 2048)")
    p.add_argument("--no-cache", action="store_true", help="do not use or write the binary universe cache")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _run_tokenize(args: argparse.Namespace) -> int:
    from gtok.tokenize_cmd import tokenize_to_shard

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
    )
    return 0


# -- inspection -----------------------------------------------------------------------------------


def _add_dump(sub) -> None:
    p = _command(sub, "dump", "Print every record of a shard as NAME<TAB>id,id,id.", _run_dump)
    p.add_argument("shard", help=".gtok shard (or gtars .gtok file)")


def _run_dump(args: argparse.Namespace) -> int:
    from gtok.shard import ShardReader

    reader = ShardReader(args.shard)
    out = sys.stdout
    for name, tokens in zip(reader.names, reader):
        out.write(f"{name}\t{','.join(map(str, tokens.tolist()))}\n")
    return 0


def _add_info(sub) -> None:
    p = _command(sub, "info", "Summarise a shard: records, tokens, dtype, fingerprint, lengths.", _run_info)
    p.add_argument("shards", nargs="+", metavar="SHARD")


def _run_info(args: argparse.Namespace) -> int:
    from gtok.shard import ShardReader
    from gtok.stats import describe_shard

    for i, path in enumerate(args.shards):
        if i:
            print()
        print(describe_shard(ShardReader(path)))
    return 0


def _add_export(sub) -> None:
    p = _command(sub, "export-gtars", "Write every record as a gtars-format NAME.gtok file.", _run_export)
    p.add_argument("shard")
    p.add_argument("outdir")


def _run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gtok.shard import ShardReader, export_gtars

    reader = ShardReader(args.shard)
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    for name, tokens in zip(reader.names, reader):
        export_gtars(tokens, out / f"{name.replace('/', '_')}.gtok")
    print(f"wrote {len(reader)} gtars .gtok files to {out}")
    return 0


def _registrars() -> list[Callable]:
    """Every subcommand's registration function. The modules only define arguments: importing
    them stays light, and each command imports its heavy dependencies when it runs."""
    from gtok import cli_data, cli_train

    return [_add_tokenize, _add_dump, _add_info, _add_export, *cli_data.COMMANDS, *cli_train.COMMANDS]

if __name__ == "__main__":
    sys.exit(main())
