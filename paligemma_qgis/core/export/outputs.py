"""Export folders: built in a temp folder and moved into place; only our own folders are replaced."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import InputError, OutputExistsError

# What an output folder of ours holds; --overwrite only ever deletes a folder that has one.
_EXPORT_MARKERS = ("train.jsonl", "valid.jsonl", "images", "chips.gpkg", "export.json")


def prepare_output_dir(out_dir: Path, overwrite: bool) -> Path:
    """A fresh temp folder beside ``out_dir``; refuses an existing non-empty folder unless asked."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise OutputExistsError(f"{out_dir} exists and is not a folder", field="out_dir")
        contents = list(out_dir.iterdir())
        if contents and not overwrite:
            raise OutputExistsError(
                f"{out_dir} exists and is not empty (use --overwrite to replace it)", field="out_dir"
            )
        if contents and not any((out_dir / m).exists() for m in _EXPORT_MARKERS):
            raise OutputExistsError(
                f"{out_dir} is not empty and does not look like an export folder; refusing to replace it",
                field="out_dir",
                code="not_an_export",
            )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    (tmp / "images").mkdir()
    return tmp


def finish_output_dir(tmp: Path, out_dir: Path) -> None:
    """Move the finished temp folder into place (the old export, if any, goes only now)."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


def read_jsonl(path: Path, required: Sequence[str]) -> list[tuple[int, dict]]:
    """(line number, record) for every non-empty line of a JSONL file (ours, or one a user made).

    Errors name the file, the line and the problem; each record is an object with ``required``.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    out = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {n} is not JSON ({exc.msg})") from None
        if not isinstance(rec, dict) or not set(required) <= set(rec):
            raise InputError(f"{path}: line {n} needs the key(s) {', '.join(required)}")
        out.append((n, rec))
    return out


def write_jsonl(path: Path, records: Iterable[dict]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n
