"""Write resources/example/universe.bed, the universe of the bundled example.

The example's BED files come from geniml's test suite and overlap its `universe.uniq.bed`; the
PBMC cells come from gtars and barely overlap it. So the example universe is geniml's regions
followed by every second PBMC peak: both kinds of input produce real tokens, and about half of the
PBMC peaks stay outside the vocabulary, so the report's coverage and `<unk>` plots show something.
Deterministic: rerunning it writes the same file.

    python tools/make_example_universe.py GENIML_UNIVERSE.bed PBMC.h5ad OUT.bed
"""

from __future__ import annotations

import argparse

import anndata

from gtok.atomic import atomic_path


def pbmc_regions(h5ad: str) -> list[str]:
    """Every second `var` region (chr/start/end columns) of an .h5ad, as BED lines."""
    var = anndata.read_h5ad(h5ad, backed="r").var.iloc[::2]
    return [f"{c}\t{s}\t{e}\n" for c, s, e in zip(var["chr"].astype(str), var["start"], var["end"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("geniml_universe")
    parser.add_argument("h5ad")
    parser.add_argument("output")
    args = parser.parse_args()
    with open(args.geniml_universe) as fh:
        lines = [line if line.endswith("\n") else line + "\n" for line in fh if line.strip()]
    lines += pbmc_regions(args.h5ad)
    with atomic_path(args.output) as tmp:
        tmp.write_text("".join(lines))
    print(f"wrote {len(lines)} regions to {args.output}")


if __name__ == "__main__":
    main()
