"""Install the project's profiles/slurm as the named Snakemake profile `slurm` (`make profile`).

Why: users run `snakemake --profile slurm`, and a bare name is looked up in the current folder,
then in Snakemake's user and site config folders, never in profiles/. This copies the profile
to the user folder Snakemake itself searches (`$XDG_CONFIG_HOME/snakemake`, else
`~/.config/snakemake`), so the name works from the repository root, where the workflow's own
profiles/default still applies key by key on top.

A profile already there is never overwritten: the same one is a no-op, a different one (the
user's own edits, or an older copy) makes this print the difference and exit 1.

    python tools/install_profile.py [--name slurm] [--partition P] [--gpu-partition G] [--account A]

The options fill in profiles/slurm's <cpu-partition>, <gpu-partition> and <account> placeholders.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "profiles" / "slurm"
PLACEHOLDERS = {"partition": "<cpu-partition>", "gpu_partition": "<gpu-partition>", "account": "<account>"}


def profiles_folder() -> Path:
    """Snakemake's own user config folder (the one `--profile NAME` searches after the current one)."""
    from snakemake.common import get_appdirs  # the same lookup Snakemake makes, XDG_CONFIG_HOME included

    return Path(get_appdirs().user_config_dir)


def rendered(values: dict[str, str | None]) -> dict[str, str]:
    """profiles/slurm's files, by name, with the given placeholders filled in."""
    files = {}
    for path in sorted(SOURCE.iterdir()):
        if path.is_file():
            text = path.read_text()
            for key, placeholder in PLACEHOLDERS.items():
                if values.get(key):
                    text = text.replace(placeholder, values[key])
            files[path.name] = text
    return files


def installed(dest: Path) -> dict[str, str]:
    """The files of an installed profile, by name (empty when there is none)."""
    if not dest.exists():
        return {}
    if not dest.is_dir():
        return {"": dest.read_text(errors="replace")}  # a file in the way: always "different"
    return {p.name: p.read_text(errors="replace") for p in sorted(dest.iterdir()) if p.is_file()}


def difference(old: dict[str, str], new: dict[str, str], dest: Path) -> str:
    """A unified diff from the installed profile to the project's, file by file."""
    lines: list[str] = []
    for name in sorted(old.keys() | new.keys()):
        lines += difflib.unified_diff(
            old.get(name, "").splitlines(keepends=True), new.get(name, "").splitlines(keepends=True),
            fromfile=str(dest / name) if name in old else "/dev/null",
            tofile=str(SOURCE.relative_to(ROOT) / name) if name in new else "/dev/null")
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def write(dest: Path, files: dict[str, str]) -> None:
    """Write the profile into a temporary sibling folder and rename it into place, so that a
    half-written profile is never found under the name."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for name, text in files.items():
            (scratch / name).write_text(text)
        scratch.chmod(0o755)
        os.rename(scratch, dest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def install(name: str, values: dict[str, str | None]) -> int:
    """Install (or confirm) the profile; 0 when it is in place, 1 when a different one is."""
    dest = profiles_folder() / name
    new, old = rendered(values), installed(dest)
    if old == new:
        print(f"profile {name!r} is already installed in {dest}: `snakemake --profile {name}` uses it")
        return 0
    if dest.exists():
        sys.stdout.write(difference(old, new, dest))
        print(f"error: {dest} holds a different profile (difference above); it was left as it is. "
              f"Remove it (or merge the difference by hand) and run this again.", file=sys.stderr)
        return 1
    write(dest, new)
    left = sorted({p for text in new.values() for p in PLACEHOLDERS.values() if p in text})
    print(f"installed profiles/slurm as {dest}: `snakemake --profile {name}` now finds it")
    if left:
        print(f"fill in {', '.join(left)} in {dest / 'config.yaml'} before a real run "
              f"(or remove it and pass --partition/--gpu-partition/--account)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="slurm", help="profile name (default: slurm)")
    parser.add_argument("--partition", help="fills in <cpu-partition>")
    parser.add_argument("--gpu-partition", help="fills in <gpu-partition>")
    parser.add_argument("--account", help="fills in <account>")
    args = parser.parse_args(argv)
    if not args.name or "/" in args.name or args.name.startswith("."):
        parser.error(f"--name {args.name!r}: give a plain folder name such as slurm")
    return install(args.name, vars(args))


if __name__ == "__main__":
    sys.exit(main())
