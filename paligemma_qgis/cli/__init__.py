"""Command line: ``python -m paligemma_qgis <command> ...``.

Each command lives in its own module with ``add_parser(subparsers)``; the parser it adds
sets ``func`` (args -> exit code). User-facing errors (PaliGemmaQgisError) are printed as
one line without a traceback; library warnings as one line each (cli.library_warnings).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .. import __version__
from ..core.errors import PaliGemmaQgisError
from ..core.progress import Cancelled
from .library_warnings import one_line_warnings

COMMAND_MODULES = (
    "segment",
    "revectorize",
    "export",
    "evaluate",
    "weights",
    "worker",
    "finetune",
    "change",
    "occurrence",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m paligemma_qgis",
        description="Map water in georeferenced rasters with PaliGemma.",
    )
    parser.add_argument("--version", action="version", version=f"paligemma_qgis {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def no_side_files() -> None:
    """Reading a user's raster leaves nothing beside it: no ``.aux.xml`` (GDAL's PAM side file,
    where it keeps statistics and metadata it was asked for). GDAL_PAM_ENABLED=YES brings it back."""
    os.environ.setdefault("GDAL_PAM_ENABLED", "NO")


def main(argv: list[str] | None = None) -> int:
    no_side_files()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with one_line_warnings():
            return int(args.func(args) or 0)
    except Cancelled as exc:
        detail = str(exc).partition("; ")[2]  # e.g. what a resumable run kept, and how to continue
        print("cancelled: no output written" + (f"; {detail}" if detail else ""), file=sys.stderr)
        return 130
    except PaliGemmaQgisError as exc:
        from .wording import cli_message

        print(f"error: {cli_message(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
