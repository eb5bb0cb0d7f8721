"""The `gtok` command line: one subcommand per task, defined in the module of its group.

`gtok.cli.data` holds the commands on data (tokenize, index, dump, info, manifest, verify,
exports) and `gtok.cli.model` those on models (train, embed). Each command imports what it needs
when it runs, so `gtok tokenize` starts without torch or Lightning. A user error (`GtokError`)
prints one line, `gtok COMMAND: error: ...`, and exits with status 1; a warning prints one line
too. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from gtok import __version__
from gtok.cli import data, model
from gtok.errors import GtokError
from gtok.paths import remove_created_folders


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command's parser, which names the command and its --help
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    command = f"gtok {args.command}"
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warnings(command)
        try:
            return args.run(args) or 0
        except GtokError as exc:
            remove_created_folders()  # a failed command leaves no empty output folder behind
            print(f"{command}: error: {exc}", file=sys.stderr)
            return 1
        except BrokenPipeError:  # `gtok dump x | head`
            sys.stderr.close()
            return 0
        except KeyboardInterrupt:
            remove_created_folders()
            print(f"{command}: interrupted; nothing was written.", file=sys.stderr)
            return 130


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(
        prog="gtok",
        description="Tokenize genomic interval collections into .gtok shards, and train on them.",
        epilog="Run 'gtok COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"gtok {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineErrors)
    for register in (*data.COMMANDS, *model.COMMANDS):
        register(sub)
    parser.commands = sub.choices
    return parser


class OneLineErrors(argparse.ArgumentParser):
    """A usage mistake is one line that points at `--help`, not the whole usage text."""

    commands: dict[str, argparse.ArgumentParser]  # the top level's: each command's own parser

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help').\n")


def _one_line_warnings(command: str):
    """Warnings as one line each, without the source line Python's default format adds."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"{command}: warning: {message}", file=file or sys.stderr)

    return show
