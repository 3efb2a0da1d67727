"""The run journal: what an interrupted run had finished, so that the same command continues it.

An SQLite file beside the output (``water.gpkg.journal``), written by the driver alone:

- ``meta``: the schema version, a random nonce, the options' fingerprint (keyed) and the
  options as JSON (redacted), sealed together. A re-run with other options stops with a
  message naming what changed (``--restart`` starts over);
- ``chips``: each chip's model text and validity, committed batch by batch as the model
  answers (only for engines that answer in text: their masks are cheap to rebuild from the
  text, the text is what costs GPU time, and with the validity a resumed run need not even
  read those chips again);
- ``scenes``: each finished scene's result (``SceneResult.to_bytes``: JSON and WKB, never
  pickle), so a finished scene is never redone and the output is assembled from here.

Every row carries a MAC keyed with this user's secret (``journal_seal``): a journal is believed
only where this user wrote it. What fails its check is never used: a whole journal that is
damaged, of an older version or not this user's is discarded and the run starts over; a
record that fails is dropped and its scene mapped (its chip asked) again; both with a one-line
warning. A record that fails while the output is assembled stops the run with one line (the
next run redoes it). The file itself is opened ``O_NOFOLLOW``, 0600, and must be this user's
(``atomic.open_private``); SQLite then opens it by name: it is checked to be the same file
once SQLite has read it, before anything is written. Left open: in a folder where others may
rename files (not sticky), a link swapped in and out between those two instants is not seen.

WAL mode with ``synchronous=NORMAL``: a commit is an append, a crash or kill -9 loses at
most the batch being written, and a power loss can cost the last few commits, never the
file's consistency. The journal is removed once the output is in place.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError, PaliGemmaQgisError
from ..redact import redact, redact_tree
from .atomic import check_private_path, open_private
from .journal_seal import Seal

log = logging.getLogger(__name__)
SUFFIX = ".journal"
SCHEMA = 3  # 3: JSON/WKB records with keyed MACs (2 pickled its records: never read again)
_COLUMNS = {
    "meta": ["key", "value"],
    "chips": ["scene", "chip", "text", "valid", "mac"],
    "scenes": ["scene", "status", "result", "mac"],
}
_CREATE = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS chips (
    scene TEXT, chip INTEGER, text TEXT, valid BLOB, mac BLOB, PRIMARY KEY (scene, chip)
);
CREATE TABLE IF NOT EXISTS scenes (scene TEXT PRIMARY KEY, status TEXT, result BLOB, mac BLOB);
"""
# SQLite errors that say the file cannot be reached (any other one on reading it: it is damaged):
# PERM, BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN, NOLFS, AUTH
_ACCESS_CODES = {3, 5, 6, 7, 8, 10, 13, 14, 22, 23}
_READONLY = 8


class _Discard(Exception):
    """The journal found cannot be used and is not worth an error: start over (the reason)."""


def journal_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + SUFFIX)


def _side_files(path: Path) -> list[Path]:
    return [path.with_name(path.name + s) for s in ("-wal", "-shm")]


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    changed = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            if key == "scenes":
                changed.append("the input scenes")
            else:
                changed.append(f"{key} {old.get(key)!r} -> {new.get(key)!r}")
    if not changed:
        return "a credential or signature in the inputs, or the tool version"
    return ", ".join(changed[:4]) + (", ..." if len(changed) > 4 else "")


class Journal:
    """Open with ``Journal.open``; the driver's only record of finished work."""

    def __init__(self, path: Path, db: sqlite3.Connection, seal: Seal, resumed: bool):
        self.path, self._db, self._seal, self.resumed = path, db, seal, resumed

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
        what a dialog wants, which has no --restart to offer). A journal that cannot be
        believed is discarded with a warning (see the module docstring).
        """
        path = journal_path(output)
        if restart:
            remove_journal(path)
        for side in _side_files(path):
            check_private_path(side, "run journal's SQLite file")
        fd, created = open_private(path, "run journal")
        try:
            opened = cls._connect(path, fd, created, fingerprint)
        finally:
            os.close(fd)
        if isinstance(opened, Journal):
            return opened
        if isinstance(opened, dict):  # other options
            if restart_if_changed:
                return cls.open(output, fingerprint, restart=True)
            raise InputError(
                "journal_other_options",
                field="restart",
                path=str(output),
                journal=path.name,
                changed=_differences(opened, redact_tree(fingerprint[1])),
            )
        log.warning("%s: the journal of an earlier run is not used (%s); the run starts over", path, opened)
        return cls.open(output, fingerprint, restart=True)

    @classmethod
    def _connect(
        cls, path: Path, fd: int, created: bool, fingerprint: tuple[str, dict[str, Any]]
    ) -> Journal | dict[str, Any] | str:
        """The journal, or the old options (another fingerprint), or why the file is discarded."""
        db = None
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA trusted_schema=OFF")
            holds = not created and _check_schema(db)
            _same_file(fd, path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            if not holds:
                db.executescript(_CREATE)
                return cls._fresh(path, db, fingerprint)
            seal, old = _check_meta(db, fingerprint[0])
            if old is not None:
                db.close()
                return old
            _check_writable(db)
            journal = cls(path, db, seal, resumed=True)
            journal._drop_failing()
            return journal
        except _Discard as why:
            if db is not None:
                db.close()
            return str(why)
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if created:  # ours, and empty: leave nothing behind
                with contextlib.suppress(PaliGemmaQgisError):
                    remove_journal(path)
                raise PaliGemmaQgisError("journal_unwritable", path=str(path), detail=str(exc)) from None
            if code in _ACCESS_CODES:
                raise InputError(
                    "journal_unreadable", field="restart", path=str(path), detail=str(exc)
                ) from None
            return f"it is damaged: {exc}"
        except BaseException:
            if db is not None:
                db.close()
            raise

    @classmethod
    def _fresh(cls, path: Path, db: sqlite3.Connection, fingerprint: tuple[str, dict[str, Any]]) -> Journal:
        seal = Seal(Seal.new_nonce())
        rows = {
            "schema": str(SCHEMA),
            "nonce": seal.nonce,
            "fingerprint": seal.fingerprint(fingerprint[0]),
            "options": json.dumps(redact_tree(fingerprint[1])),
        }
        rows["seal"] = seal.mac("meta", rows["schema"], rows["fingerprint"], rows["options"]).hex()
        db.execute("BEGIN IMMEDIATE")  # errors pass through: _connect says what they mean
        db.execute("DELETE FROM meta")
        db.executemany("INSERT INTO meta VALUES (?, ?)", list(rows.items()))
        db.execute("COMMIT")
        return cls(path, db, seal, resumed=False)

    def _drop_failing(self) -> None:
        """Check every record of a resumed journal once; those that fail are removed, and said so.

        SQLite errors pass through: while opening, they mean the file is damaged."""
        scenes = [
            sid
            for sid, status, blob, mac in self._db.execute("SELECT scene, status, result, mac FROM scenes")
            if not self._seal.check(mac, "scene", sid, status, blob)
        ]
        chips = [
            (sid, chip)
            for sid, chip, text, valid, mac in self._db.execute(
                "SELECT scene, chip, text, valid, mac FROM chips"
            )
            if not self._seal.check(mac, "chip", sid, chip, text, valid)
        ]
        if scenes or chips:
            with self._write():
                self._db.executemany("DELETE FROM scenes WHERE scene IS ?", [(s,) for s in scenes])
                self._db.executemany("DELETE FROM chips WHERE scene IS ? AND chip IS ?", chips)
        if scenes:
            log.warning(
                "%s: %d finished scene(s) failed their check (damaged, or not written here) and are mapped "
                "again: %s",
                self.path.name,
                len(scenes),
                ", ".join(redact(str(s)) for s in scenes[:5]) + (", ..." if len(scenes) > 5 else ""),
            )
        if chips:
            log.warning(
                "%s: %d chip answer(s) failed their check (damaged, or not written here) and are asked again",
                self.path.name,
                len(chips),
            )

    # -- chips
    def answers(self, scene: str) -> tuple[dict[int, str], dict[int, bytes | None]]:
        """A scene's chips answered before: (model text, validity as ``scene_run.encode_valid`` packs it)."""
        with self._reading():
            rows = self._db.execute(
                "SELECT chip, text, valid, mac FROM chips WHERE scene = ?", (scene,)
            ).fetchall()
        good = [(c, t, v) for c, t, v, m in rows if self._seal.check(m, "chip", scene, c, t, v)]
        if len(good) < len(rows):
            log.warning(
                "%s: %d chip answer(s) of %s failed their check and are asked again",
                self.path.name,
                len(rows) - len(good),
                scene,
            )
        return {int(c): t for c, t, _ in good}, {int(c): v for c, _, v in good}

    def add_texts(self, scene: str, items: Iterable[tuple[int, str, bytes | None]]) -> None:
        """One batch of answers (chip, text, validity), in one transaction."""
        rows = [(scene, int(c), t, v) for c, t, v in items]
        with self._write():
            self._db.executemany(
                "INSERT OR REPLACE INTO chips VALUES (?, ?, ?, ?, ?)",
                [(*r, self._seal.mac("chip", *r)) for r in rows],
            )

    def holds_work(self) -> bool:
        """Whether anything finished is recorded (a scene done, or a chip answered)."""
        with self._reading():
            row = self._db.execute(
                "SELECT (SELECT count(*) FROM scenes WHERE status = 'done') + (SELECT count(*) FROM chips)"
            ).fetchone()
        return bool(row[0])

    def n_texts(self) -> int:
        with self._reading():
            return int(self._db.execute("SELECT count(*) FROM chips").fetchone()[0])

    # -- scenes
    def scene_done(self, scene: str, result: bytes, status: str = "done") -> None:
        """A finished (or failed) scene; its chip texts are no longer needed."""
        mac = self._seal.mac("scene", scene, status, result)
        with self._write():
            self._db.execute(
                "INSERT OR REPLACE INTO scenes VALUES (?, ?, ?, ?)", (scene, status, result, mac)
            )
            self._db.execute("DELETE FROM chips WHERE scene = ?", (scene,))

    def finished(self) -> dict[str, str]:
        """{scene id: status} of the scenes with a result (checked when the journal was opened)."""
        with self._reading():
            return dict(self._db.execute("SELECT scene, status FROM scenes").fetchall())

    def result(self, scene: str) -> bytes | None:
        """A scene's record, checked again: one that fails now (changed during the run) stops the run."""
        with self._reading():
            row = self._db.execute(
                "SELECT status, result, mac FROM scenes WHERE scene = ?", (scene,)
            ).fetchone()
        if row is None:
            return None
        status, blob, mac = row
        if not self._seal.check(mac, "scene", scene, status, blob):
            with contextlib.suppress(PaliGemmaQgisError), self._write():
                self._db.execute("DELETE FROM scenes WHERE scene = ?", (scene,))
            raise PaliGemmaQgisError("journal_record_changed", path=str(self.path), scene=scene)
        return bytes(blob)

    def results(self, scenes: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """Results in the given order, one at a time (memory stays flat in the number of scenes)."""
        for sid in scenes:
            blob = self.result(sid)
            if blob is not None:
                yield sid, blob

    # -- life cycle
    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise PaliGemmaQgisError(
                "journal_unreadable", field="restart", path=str(self.path), detail=str(exc)
            ) from None

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise PaliGemmaQgisError("journal_unwritable", path=str(self.path), detail=str(exc)) from None
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
        """The journal has served (the output is in place), or holds nothing: never raises."""
        self.close()
        try:
            remove_journal(self.path)
        except PaliGemmaQgisError as exc:
            log.warning("%s", exc)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_schema(db: sqlite3.Connection) -> bool:
    """Whether an existing file holds a journal: our three tables with our columns and nothing
    else (no view, no trigger), and sound pages, checked before any of its rows is read.
    False for an empty file (made, never written); _Discard for anything else."""
    objects = db.execute("SELECT type, name, tbl_name FROM sqlite_master").fetchall()
    if not objects:
        return False
    tables = {name for kind, name, _ in objects if kind == "table"}
    others = [(kind, name, table) for kind, name, table in objects if kind != "table"]
    if tables != set(_COLUMNS) or any(
        kind != "index" or not str(name).startswith("sqlite_autoindex_") or table not in _COLUMNS
        for kind, name, table in others
    ):
        raise _Discard("it is not a run journal of this version, or is damaged")
    if _columns(db, "scenes") == ["scene", "status", "result"]:
        raise _Discard("it was written by an older version, whose records are not read")
    if any(_columns(db, table) != columns for table, columns in _COLUMNS.items()):
        raise _Discard("it is not a run journal of this version, or is damaged")
    problems = [row[0] for row in db.execute("PRAGMA quick_check(3)")]
    if problems != ["ok"]:
        raise _Discard(f"it is damaged: {'; '.join(map(str, problems))}")
    return True


def _check_meta(db: sqlite3.Connection, digest: str) -> tuple[Seal, dict[str, Any] | None]:
    """The journal's seal, and the old options when its fingerprint is not ``digest``'s (else None)."""
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    if meta.get("schema") != str(SCHEMA):
        raise _Discard(f"it was written by another version (schema {redact(str(meta.get('schema')))})")
    try:
        seal = Seal(str(meta["nonce"]))
        sealed = seal.check(
            bytes.fromhex(str(meta["seal"])), "meta", meta["schema"], meta["fingerprint"], meta["options"]
        )
    except (KeyError, ValueError):
        sealed = False
    if not sealed:
        raise _Discard("it was not written by this user on this computer, or is damaged")
    if meta["fingerprint"] == seal.fingerprint(digest):
        return seal, None
    try:
        old = json.loads(meta["options"])
    except ValueError:
        old = None
    return seal, old if isinstance(old, dict) else {}


def _check_writable(db: sqlite3.Connection) -> None:
    """A write SQLite refuses in a file this process may write (``open_private`` opened it so):
    its header is damaged (a write version SQLite does not know makes it read-only)."""
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE meta SET value = value WHERE key = 'schema'")
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF == _READONLY:
            raise _Discard(f"it is damaged: {exc}") from None
        raise


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]  # noqa: S608 - our table names


def _same_file(fd: int, path: Path) -> None:
    """SQLite opened ``path`` by name: it must still be the file we checked (no link swapped in)."""
    try:
        ours, now = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        now = None
    if now is None or (ours.st_dev, ours.st_ino) != (now.st_dev, now.st_ino):
        raise PaliGemmaQgisError("journal_replaced", path=str(path))


def remove_journal(path: Path) -> None:
    """Delete a journal and its SQLite side files; a one-line error when one cannot be deleted."""
    for p in (path, *_side_files(path)):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise PaliGemmaQgisError(
                "journal_undeletable", field="output", path=str(p), reason=exc.strerror or str(exc)
            ) from None
