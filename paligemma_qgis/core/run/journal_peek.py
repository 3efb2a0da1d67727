"""What an interrupted run left beside an output, read without changing anything (``peek``).

A front end asks before it starts a run into an output that has a journal: the same run
continues where it stopped, but a run of other rasters or options would start over and
throw that work away. ``peek`` says which (``same`` / ``other``), how much work the journal
holds and what differs, so that the front end can ask "Continue it / Start over / Cancel"
instead of deciding alone. The journal is opened read-only and only if it is a plain file of
this user (like ``Journal.open``); one that cannot be believed is ``unusable`` (a run would
discard it, with a warning).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import PaliGemmaQgisError
from ..redact import redact_tree
from .atomic import check_private_path
from .journal import _check_meta, _check_schema, _Discard, _side_files, journal_path


def peek(output: str | Path, fingerprint: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """{"journal": "none" | "same" | "other" | "unusable", ...} for a run of ``fingerprint`` into ``output``.

    ``same``/``other`` also give ``scenes_done`` (finished scenes), ``chips`` (answers of scenes
    not finished), ``total`` (scenes of the interrupted run) and, for ``other``, ``other_inputs``
    (its scenes are not these) and ``changed`` (the names of the other options that differ).
    """
    path = journal_path(output)
    if not os.path.lexists(path):
        return {"journal": "none"}
    try:
        for file in (path, *_side_files(path)):
            check_private_path(file, "run journal")
        return _read(path, fingerprint)
    except (PaliGemmaQgisError, _Discard, sqlite3.Error) as exc:
        return {"journal": "unusable", "why": str(exc)}


def _read(path: Path, fingerprint: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    # Without a -wal (a run that ended its journal cleanly) there is nothing beyond the file
    # itself: ``immutable`` reads it without making -wal/-shm files. With one (a killed run),
    # read-only mode reads the WAL's commits too.
    wal = os.path.lexists(_side_files(path)[0])
    uri = f"file:{quote(str(path.resolve()))}?" + ("mode=ro" if wal else "mode=ro&immutable=1")
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        db.execute("PRAGMA trusted_schema=OFF")
        db.execute("PRAGMA query_only=ON")
        if not _check_schema(db):
            return {"journal": "unusable", "why": "it is empty"}
        _seal, old = _check_meta(db, fingerprint[0])
        scenes = db.execute("SELECT count(*) FROM scenes WHERE status = 'done'").fetchone()[0]
        chips = db.execute("SELECT count(*) FROM chips").fetchone()[0]
    state: dict[str, Any] = {"journal": "same" if old is None else "other", "scenes_done": int(scenes)}
    state["chips"] = int(chips)
    options = fingerprint[1] if old is None else old
    state["total"] = len(options.get("scenes") or [])
    if old is not None:
        new = redact_tree(fingerprint[1])  # the journal holds its options redacted
        state["other_inputs"] = _scene_ids(old) != _scene_ids(new)
        state["changed"] = sorted(
            k for k in set(old) | set(new) if k != "scenes" and old.get(k) != new.get(k)
        )
    return state


def _scene_ids(options: dict[str, Any]) -> list[str]:
    """The scene ids of a fingerprint's options (their paths may be redacted in a journal)."""
    return [str(s[0]) for s in options.get("scenes") or [] if isinstance(s, list | tuple) and s]
