"""Errors in the command line's words: options by their flags, remedies as commands.

The labels come from the parser itself (each option's ``dest`` is the spec's flat name), so a
renamed flag renames itself in every message. Positional arguments and options no flag sets
have their names here.
"""

from __future__ import annotations

import argparse
from functools import cache

from ..core.errors import ErrorInfo, PaliGemmaQgisError, Wording, render

# Names that are positional arguments or not options of any command.
_NAMES = {
    "raster": "INPUT",
    "output": "OUTPUT",
    "labels": "--labels",
    "out_dir": "OUT_DIR",
    "stretch": "the stretch",
    "cache": "--cache",
}
# Remedies the command line words otherwise than core's neutral ones: its positional arguments.
_REMEDIES: dict[str, str] = {
    "change_needs_files": "give BEFORE AFTER OUT.gpkg, or AFTER OUT.gpkg with --reference FILE",
    "change_file_count": "give BEFORE AFTER OUT.gpkg",
}


def labels_of(parser: argparse.ArgumentParser) -> dict[str, str]:
    """dest -> its first long flag, over every subcommand of ``parser``."""
    out: dict[str, str] = {}

    def walk(p: argparse.ArgumentParser) -> None:
        for action in p._actions:  # argparse has no public listing of its actions
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)
            elif action.option_strings:
                flag = next(
                    (s for s in action.option_strings if s.startswith("--")), action.option_strings[0]
                )
                out.setdefault(action.dest, flag)

    walk(parser)
    return out


@cache
def cli_wording() -> Wording:
    from . import build_parser

    return Wording("cli", {**labels_of(build_parser()), **_NAMES}, _REMEDIES)


def cli_message(exc: PaliGemmaQgisError | ErrorInfo) -> str:
    """One line for the terminal."""
    info = exc.info if isinstance(exc, PaliGemmaQgisError) else exc
    return render(info, cli_wording())
