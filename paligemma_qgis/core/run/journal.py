"""The run journal: what an interrupted run had finished, so that the same command continues it.

An SQLite file beside the output (``water.gpkg.journal``), written by the driver alone:

- ``meta``: the options fingerprint (``SegmentOptions.fingerprint``) and the options as JSON.
  A re-run with other options stops with a message naming what changed (``--restart``
  starts over);
- ``chips``: each chip's model text and validity, committed batch by batch as the model
  answers (only for engines that answer in text: their masks are cheap to rebuild from the
  text, the text is what costs GPU time, and with the validity a resumed run need not even
  read those chips again);
- ``scenes``: each finished scene's result (polygons, footprint, chip records, counts), so
  a finished scene is never redone and the output is assembled from here at the end.

WAL mode with ``synchronous=NORMAL``: a commit is an append, a crash or kill -9 loses at
most the batch being written, and a power loss can cost the last few commits, never the
file's consistency. The journal is removed once the output is in place.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError, PaliGemmaQgisError

SUFFIX = ".journal"
SCHEMA = 2


def journal_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + SUFFIX)


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    changed = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            if key == "scenes":
                changed.append("the input scenes")
            else:
                changed.append(f"{key} {old.get(key)!r} -> {new.get(key)!r}")
    return ", ".join(changed[:4]) + (", ..." if len(changed) > 4 else "") or "the tool version"


class Journal:
    """Open with ``Journal.open``; the driver's only record of finished work."""

    def __init__(self, path: Path, db: sqlite3.Connection, resumed: bool):
        self.path, self._db, self.resumed = path, db, resumed

    @classmethod
    def open(
        cls,
        output: str | Path,
        fingerprint: tuple[str, dict[str, Any]],
        *,
        restart: bool = False,
        restart_if_changed: bool = False,
    ) -> Journal:
        """Continue the journal of an interrupted run with the same fingerprint, or start one.

        A journal with another fingerprint is an error naming the changed options, unless
        ``restart`` (any journal is deleted) or ``restart_if_changed`` (only such a one is:
        what a dialog wants, which has no --restart to offer).
        """
        path = journal_path(output)
        digest, values = fingerprint
        if restart:
            remove_journal(path)
        existed = path.exists()
        db: sqlite3.Connection | None = None

        def failed(exc: sqlite3.Error) -> PaliGemmaQgisError:
            if db is not None:
                db.close()
            if not existed:  # ours, and empty: leave nothing behind
                remove_journal(path)
                return PaliGemmaQgisError(f"{output}: cannot write the run journal {path.name} ({exc})")
            return InputError(
                f"{path}: the journal of an earlier run is unreadable ({exc}); add --restart to start over"
            )

        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(
                """
                CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
                CREATE TABLE IF NOT EXISTS chips (
                    scene TEXT, chip INTEGER, text TEXT, valid BLOB, PRIMARY KEY (scene, chip)
                );
                CREATE TABLE IF NOT EXISTS scenes (scene TEXT PRIMARY KEY, status TEXT, result BLOB);
                """
            )
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error as exc:
            raise failed(exc) from None
        if meta and (meta.get("fingerprint") != digest or meta.get("schema") != str(SCHEMA)):
            db.close()
            if restart_if_changed:
                return cls.open(output, fingerprint, restart=True)
            old = json.loads(meta.get("options") or "{}")
            raise InputError(
                f"{output}: an interrupted run with other options left {path.name} (changed: "
                f"{_differences(old, values)}); run the same command to continue it, or add --restart to start over"
            )
        if not meta:
            try:
                with db:
                    db.executemany(
                        "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                        [("fingerprint", digest), ("schema", str(SCHEMA)), ("options", json.dumps(values))],
                    )
            except sqlite3.Error as exc:
                raise failed(exc) from None
        return cls(path, db, resumed=existed and bool(meta))

    # -- chips
    def answers(self, scene: str) -> tuple[dict[int, str], dict[int, bytes | None]]:
        """A scene's chips answered before: (model text, validity as ``scene_run.encode_valid`` packs it)."""
        rows = self._db.execute("SELECT chip, text, valid FROM chips WHERE scene = ?", (scene,)).fetchall()
        return {int(c): t for c, t, _ in rows}, {int(c): v for c, _, v in rows}

    def add_texts(self, scene: str, items: Iterable[tuple[int, str, bytes | None]]) -> None:
        """One batch of answers (chip, text, validity), in one transaction."""
        with self._write():
            self._db.executemany(
                "INSERT OR REPLACE INTO chips VALUES (?, ?, ?, ?)",
                [(scene, int(c), t, v) for c, t, v in items],
            )

    def holds_work(self) -> bool:
        """Whether anything finished is recorded (a scene done, or a chip answered)."""
        row = self._db.execute(
            "SELECT (SELECT count(*) FROM scenes WHERE status = 'done') + (SELECT count(*) FROM chips)"
        ).fetchone()
        return bool(row[0])

    def n_texts(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM chips").fetchone()[0])

    # -- scenes
    def scene_done(self, scene: str, result: bytes, status: str = "done") -> None:
        """A finished (or failed) scene; its chip texts are no longer needed."""
        with self._write():
            self._db.execute("INSERT OR REPLACE INTO scenes VALUES (?, ?, ?)", (scene, status, result))
            self._db.execute("DELETE FROM chips WHERE scene = ?", (scene,))

    def finished(self) -> dict[str, str]:
        """{scene id: status} of the scenes with a result."""
        return dict(self._db.execute("SELECT scene, status FROM scenes").fetchall())

    def result(self, scene: str) -> bytes | None:
        row = self._db.execute("SELECT result FROM scenes WHERE scene = ?", (scene,)).fetchone()
        return None if row is None else bytes(row[0])

    def results(self, scenes: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """Results in the given order, one at a time (memory stays flat in the number of scenes)."""
        for sid in scenes:
            blob = self.result(sid)
            if blob is not None:
                yield sid, blob

    # -- life cycle
    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise PaliGemmaQgisError(f"{self.path}: cannot write the run journal ({exc})") from exc
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None  # type: ignore[assignment]

    def remove(self) -> None:
        """The output is in place: the journal has served."""
        self.close()
        remove_journal(self.path)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def remove_journal(path: Path) -> None:
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
