"""Where the plugin's files are: in the installed zip they sit next to metadata.txt in the
package folder; in a source checkout, one folder up."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def plugin_file(relative: str) -> Path | None:
    for base in (PACKAGE_DIR, PACKAGE_DIR.parent):
        candidate = base / relative
        if candidate.is_file():
            return candidate
    return None


def icon_path() -> Path | None:
    return plugin_file("resources/icon.svg")
