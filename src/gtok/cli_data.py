"""`gtok manifest` and `gtok verify` (argument definitions; the work happens in gtok.manifest)."""

from __future__ import annotations

import argparse
import sys


def _add_manifest(sub) -> None:
    help_ = "List shards with their sha256, counts and label classes in a JSON manifest."
    p = sub.add_parser("manifest", help=help_, description=help_)
    p.add_argument("shards", nargs="+", metavar="SHARD", help=".gtok shards, or folders of them (their *.gtok, sorted)")
    p.add_argument("--output", "-o", required=True, help="the manifest to write (.json); written atomically")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_manifest)


def _run_manifest(args: argparse.Namespace) -> int:
    from gtok.manifest import expand_shards, write_manifest

    manifest = write_manifest(args.output, expand_shards(args.shards), progress=not args.quiet)
    print(f"wrote {args.output}: {len(manifest['shards'])} shards, {manifest['records']:,} records, {manifest['tokens']:,} tokens")
    return 0


def _add_verify(sub) -> None:
    help_ = "Re-hash every shard of a manifest and check its format, fingerprint and counts."
    p = sub.add_parser("verify", help=help_, description=help_)
    p.add_argument("manifest", help="manifest written by 'gtok manifest'")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_verify)


def _run_verify(args: argparse.Namespace) -> int:
    from gtok.manifest import load_manifest, verify_manifest

    problems = verify_manifest(args.manifest, progress=not args.quiet)
    for line in problems:
        print(line)
    if problems:
        print(f"gtok verify: {len(problems)} problem(s) in {args.manifest}", file=sys.stderr)
        return 1
    m = load_manifest(args.manifest)
    print(f"OK: {len(m.entries)} shards, {m.records:,} records, {m.tokens:,} tokens match {args.manifest}")
    return 0


COMMANDS: list = [_add_manifest, _add_verify]
