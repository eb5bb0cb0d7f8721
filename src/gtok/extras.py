"""The optional parts of gtok and the packages each needs (pyproject.toml's extras).

`pip install gtok` gives the core: tokenizing, shards, manifests, data loaders and in-memory
inference. Training, evaluation, the workflow and Hugging Face models need extras; a command that
needs one checks for its packages before any work, so a missing extra is one line saying what to
install, not an ImportError from deep inside a run.
"""

from __future__ import annotations

import importlib.util

from gtok.errors import GtokError

#: extra -> the modules it provides, as imported.
EXTRAS = {
    "train": ("matplotlib",),
    "eval": ("matplotlib", "sklearn", "umap"),
    "workflow": ("snakemake", "snakemake_executor_plugin_slurm"),
    "hf": ("transformers",),
}


def require(extra: str, what: str) -> None:
    """Refuse `what` (e.g. "gtok train") unless the `extra`'s packages are installed."""
    missing = [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
    if missing:
        raise GtokError(f"{what} needs {', '.join(missing)}, which the '{extra}' extra installs: "
                        f"pip install 'gtok[{extra}]' (or 'gtok[all]').")
