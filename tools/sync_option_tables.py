"""Rewrite the option tables of docs/training.md from gtok.options, the one source of defaults.

    python tools/sync_option_tables.py [FILE.md ...]     (default: docs/training.md docs/models.md)

A table stands between `<!-- options: CLASS -->` and `<!-- /options -->`; tests/test_options.py
fails when a table and its dataclass disagree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from gtok import options

BLOCK = re.compile(r"(<!-- options: (\w+) -->\n)(.*?)(<!-- /options -->)", re.S)


def synced(text: str) -> str:
    return BLOCK.sub(lambda m: m[1] + options.options_table(getattr(options, m[2])) + "\n" + m[4], text)


DOCS = ("docs/training.md", "docs/models.md")

if __name__ == "__main__":
    for path in map(Path, sys.argv[1:] or DOCS):
        path.write_text(synced(path.read_text()))
        print(f"synced the option tables of {path}")
