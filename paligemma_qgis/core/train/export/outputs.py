"""Export folders: built in a temp folder and moved into place; only our own folders are replaced.

Write failures (no permission, disk full) become one-line OutputErrors naming the export
folder and the file in it, never an OSError traceback or a message blaming an input.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from ...errors import OutputError, OutputExistsError

_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


@contextmanager
def writing(out_dir: Path, what: str) -> Iterator[None]:
    """An OSError inside (writing ``what`` of the export ``out_dir``) becomes an OutputError."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno in _FULL:
            reason += "; is the disk full?"
        raise OutputError(
            "export_write_failed", field="out_dir", path=str(out_dir), what=what, reason=reason
        ) from None


def check_writable(out_dir: Path) -> None:
    """Fail before the work, not after it, when the export folder's parent cannot take a folder."""
    parent = Path(out_dir).parent
    with writing(out_dir, "the export folder"):
        parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryDirectory(dir=parent).cleanup()


# What an output folder of ours holds; overwrite only ever deletes a folder that has one.
_EXPORT_MARKERS = ("train.jsonl", "valid.jsonl", "images", "chips.gpkg", "export.json")


def check_output_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse an existing non-empty folder unless asked, and never one that is not an export."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise OutputExistsError("export_dir_is_file", field="out_dir", path=str(out_dir))
        contents = list(out_dir.iterdir())
        if contents and not overwrite:
            raise OutputExistsError("train_folder_not_empty", field="out_dir", path=str(out_dir))
        if contents and not any((out_dir / m).exists() for m in _EXPORT_MARKERS):
            raise OutputExistsError("not_an_export", field="out_dir", path=str(out_dir))
    check_writable(out_dir)


def prepare_output_dir(out_dir: Path, overwrite: bool) -> Path:
    """A fresh temp folder beside ``out_dir`` (``check_output_dir`` first: the folder may have changed)."""
    out_dir = Path(out_dir)
    check_output_dir(out_dir, overwrite)
    with writing(out_dir, "the export folder"):
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
        try:
            (tmp / "images").mkdir()
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return tmp


def finish_output_dir(tmp: Path, out_dir: Path) -> None:
    """Move the finished temp folder into place (the old export, if any, goes only now)."""
    out_dir = Path(out_dir)
    with writing(out_dir, "the export folder"):
        if not out_dir.exists():
            os.replace(tmp, out_dir)
            return
        # The old export is moved aside, not deleted, until the new one is in place.
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
        os.replace(out_dir, old / "export")
        try:
            os.replace(tmp, out_dir)
        except BaseException:
            os.replace(old / "export", out_dir)
            shutil.rmtree(old, ignore_errors=True)
            raise
    shutil.rmtree(old, ignore_errors=True)


def write_jsonl(path: Path, records: Iterable[Mapping[str, str]]) -> int:
    import json

    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_export_json(path: Path, options: Mapping[str, object], summary: Mapping[str, object]) -> None:
    """``export.json``: the options and summary of an export, redacted (an input URL's
    credentials must not travel with a shared training set)."""
    import json

    from ...redact import redact_tree

    text = json.dumps(redact_tree({"options": options, "summary": summary}), indent=2, default=str)
    Path(path).write_text(text, encoding="utf-8")
