"""Outputs that appear whole or not at all, work folders that never pile up, one writer per output.

Everything a run writes goes through here:

- ``atomic_output(path)``: the writer gets a temp path beside ``path``; only a finished file is
  moved onto it (``os.replace``), so an old output survives any failure or cancel intact.
- ``claim_output(path)``: a lock file ``<path>.lock`` held with an OS file lock for the
  run's life. A second run to the same output fails at once and names the holder; a lock
  left by a killed run is no longer held by anyone (the OS releases it with the process),
  so the next run takes it over, and then also removes the temp files the killed run
  left beside the output.
- ``work_folder(prefix, base)``: a private temp folder (mosaic counts, chip files) locked the
  same way; ``sweep_work_folders`` removes those whose owner is gone (kill -9, power loss),
  so stale workspaces never accumulate. Catchable signals are turned into a clean cancel by
  the front ends, and the context managers here remove their files on the way out.

OS file locks (``fcntl.flock``, ``msvcrt.locking`` on Windows) rather than pid files: they
cannot go stale, survive pid reuse, and need no clock.

The lock file (and the run journal, through ``open_private``) lives beside the output, often
in a shared or synced folder: it is opened with ``O_NOFOLLOW`` (a symbolic link planted there
is refused, not followed onto another file), created 0600, and must be a plain file of this
user with no other hard link. Windows has no ``O_NOFOLLOW`` nor owners in ``st_uid``: there a
link is refused by a check before the open (racy, best effort) and ownership is not checked.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import OutputExistsError, PaliGemmaQgisError

LOCK_SUFFIX = ".lock"
WORK_PREFIX = "paligemma_work_"
_UNLOCKED_GRACE_S = 3600  # a work folder without a lock file is someone's being born, until this old
_SIDE_FILES = ("-wal", "-shm", "-journal", ".aux.xml")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # 0 on Windows
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


# ------------------------------------------------------------------ files of this user only
def private_problem(st: os.stat_result) -> str | None:
    """Why a file (``os.lstat``/``os.fstat`` result) is not a plain file of this user alone, or None."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISREG(st.st_mode):
        return "is not a plain file"
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        return f"belongs to another user (uid {st.st_uid})"
    if st.st_nlink > 1:
        return "has other hard links"
    return None


def open_private(path: Path, what: str) -> tuple[int, bool]:
    """Open or create ``path`` read-write as a file of this user alone: (descriptor, created).

    Never follows a symbolic link (``O_NOFOLLOW``); a new file is created 0600, an existing one
    must be a plain file of this user without other hard links (its mode is tightened to 0600).
    Anything else is a one-line PaliGemmaQgisError naming the file and ``what`` it is.
    """
    import errno

    def refuse(problem: str) -> PaliGemmaQgisError:
        return PaliGemmaQgisError("unsafe_file", field="output", path=str(path), what=what, problem=problem)

    if not _NOFOLLOW and os.path.islink(path):  # pragma: no cover - Windows: best effort
        raise refuse("is a symbolic link")
    flags = os.O_RDWR | _NOFOLLOW | _CLOEXEC | getattr(os, "O_BINARY", 0)
    try:
        try:
            fd, created = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600), True
        except FileExistsError:
            fd, created = os.open(path, flags), False
    except OSError as exc:
        if exc.errno in (errno.ELOOP, getattr(errno, "EMLINK", -1), getattr(errno, "EFTYPE", -1)):
            raise refuse("is a symbolic link") from None
        if exc.errno == errno.EISDIR:
            raise refuse("is not a plain file") from None
        raise PaliGemmaQgisError(
            "file_unopenable", path=str(path), what=what, reason=exc.strerror or str(exc)
        ) from exc
    try:
        st = os.fstat(fd)
        problem = private_problem(st)
        if problem:
            raise refuse(problem)
        if hasattr(os, "fchmod") and stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd, created


def check_private_path(path: Path, what: str) -> None:
    """A file SQLite opens by name (a journal's -wal, -shm): absent, or a plain file of this user alone."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise PaliGemmaQgisError(
            "file_unopenable", path=str(path), what=what, reason=exc.strerror or str(exc)
        ) from exc
    problem = private_problem(st)
    if problem:
        raise PaliGemmaQgisError("unsafe_file", field="output", path=str(path), what=what, problem=problem)


# ------------------------------------------------------------------ OS file locks
def _try_lock(f: IO[Any]) -> bool:
    """Take an exclusive, non-blocking lock on an open file; False when another process holds it."""
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        try:
            f.seek(0)
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:  # a file system without locks: do not block the run on it
        import errno

        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            return True
        raise


def _unlock(f: IO[Any]) -> None:
    if sys.platform == "win32":  # pragma: no cover
        import msvcrt

        with contextlib.suppress(OSError):
            f.seek(0)
            msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    with contextlib.suppress(OSError):
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _remove(paths: list[Path]) -> None:
    for p in paths:
        with contextlib.suppress(OSError):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink()


# ------------------------------------------------------------------ atomic files
def temp_name_prefix(path: Path) -> str:
    """Temp files for ``path`` are ``.<name>.<random>.tmp<suffix>`` in its folder."""
    return f".{path.name}."


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path in the destination folder; move it onto ``path`` only on success.

    Refuses an existing ``path`` unless ``overwrite`` (OutputExistsError). On any error the
    temp file and its GDAL/SQLite side files are removed and the old output stays intact.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError("output_exists", path=str(path))
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise PaliGemmaQgisError("folder_missing", path=str(path), folder=str(folder))
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=temp_name_prefix(path), suffix=f".tmp{suffix}", dir=folder)
    except OSError as exc:
        raise PaliGemmaQgisError(
            "output_not_writable", path=str(path), folder=str(folder), reason=exc.strerror or str(exc)
        ) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # GDAL drivers want to create the file themselves
    side = [tmp.with_name(tmp.name + s) for s in _SIDE_FILES]
    try:
        yield tmp
        if not tmp.exists():
            raise PaliGemmaQgisError("writer_no_file", path=str(path))
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise PaliGemmaQgisError(
                "output_unreplaceable", path=str(path), reason=exc.strerror or str(exc)
            ) from exc
    finally:
        _remove([tmp, *side])


def stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Temp files and folders an interrupted writer of ``path`` left beside it."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    prefix = temp_name_prefix(path)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [folder / n for n in names if n.startswith(prefix) and ".tmp" in n[len(prefix) :]]


# ------------------------------------------------------------------ one writer per output
class OutputClaim:
    """The lock on one output path (see ``claim_output``)."""

    def __init__(self, path: Path, handle: IO[Any], lock_path: Path, took_over: bool):
        self.path, self.lock_path, self.took_over = path, lock_path, took_over
        self._handle: IO[Any] | None = handle

    def release(self) -> None:
        """Remove the lock file, then let go of the lock (idempotent)."""
        if self._handle is None:
            return
        with contextlib.suppress(OSError):
            self.lock_path.unlink()
        _unlock(self._handle)
        self._handle.close()
        self._handle = None

    def __enter__(self) -> OutputClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder_text(handle: IO[Any]) -> str:
    try:
        handle.seek(0)
        info = json.loads(handle.read(4096) or "{}")
        if not isinstance(info, dict):
            return "another run"
    except (OSError, ValueError):
        return "another run"
    who = f"process {info.get('pid', '?')}"
    if info.get("host") and info["host"] != socket.gethostname():
        who += f" on {info['host']}"
    if info.get("started"):
        who += f", started {info['started']}"
    return who


def claim_output(path: str | os.PathLike) -> OutputClaim:
    """Claim ``path`` for this run, or fail at once (OutputExistsError) naming who holds it.

    The claim also removes what an earlier, killed writer of the same output left beside it
    (temp files): with the claim held, nobody else can be writing them.
    """
    path = Path(path)
    lock_path = path.with_name(path.name + LOCK_SUFFIX)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PaliGemmaQgisError(
            "file_unopenable", path=str(lock_path), what="lock file", reason=exc.strerror or str(exc)
        ) from exc
    handle, existed = _open_lock(lock_path)
    while True:
        if not _try_lock(handle):
            holder = _holder_text(handle)
            handle.close()
            raise OutputExistsError("output_busy", path=str(path), holder=holder)
        try:  # the holder may have removed the file between our open and our lock: retry
            if os.fstat(handle.fileno()).st_ino == os.stat(lock_path, follow_symlinks=False).st_ino:
                break
        except OSError:
            pass
        handle.close()
        handle, _ = _open_lock(lock_path)
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(info))
    handle.flush()
    _remove(stale_temp_files(path))
    return OutputClaim(path, handle, lock_path, took_over=existed)


def _open_lock(lock_path: Path) -> tuple[IO[Any], bool]:
    """The lock file, opened as a private file (see ``open_private``): (handle, it existed)."""
    fd, created = open_private(lock_path, "lock file")
    return os.fdopen(fd, "r+", encoding="utf-8"), not created


# ------------------------------------------------------------------ work folders
class WorkFolder:
    """A private temp folder, locked while its owner lives; removed by ``close``."""

    def __init__(self, path: Path, handle: IO[Any]):
        self.path = path
        self._handle: IO[Any] | None = handle

    def close(self) -> None:
        if self._handle is None:
            return
        _unlock(self._handle)
        self._handle.close()
        self._handle = None
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> WorkFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sweep_work_folders(base: str | os.PathLike | None = None) -> list[Path]:
    """Remove work folders under ``base`` (default: the temp folder) whose owner is gone.

    A folder counts as its owner's once its lock file exists, and that file appears already
    locked (``work_folder`` locks it under another name, then renames it): a sweeping run
    never mistakes another run's brand-new folder for a dead one. A folder left without a
    lock file (killed in between) goes once it is an hour old.
    """
    base = Path(base) if base is not None else Path(tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = [e for e in base.iterdir() if e.name.startswith(WORK_PREFIX) and _own_folder(e)]
    except OSError:
        return removed
    for folder in entries:
        try:
            with open(folder / LOCK_SUFFIX, "r+", encoding="utf-8") as handle:
                if not _try_lock(handle):
                    continue  # its owner is alive
                _unlock(handle)
        except FileNotFoundError:
            try:
                if time.time() - folder.stat().st_mtime < _UNLOCKED_GRACE_S:
                    continue  # being created right now
            except OSError:
                continue
        except OSError:
            continue  # not ours to judge (permissions)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _own_folder(path: Path) -> bool:
    """A real folder (not a link to one) of this user: another user's work folder is not ours to sweep."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and (not hasattr(os, "geteuid") or st.st_uid == os.geteuid())


def work_folder(base: str | os.PathLike | None = None, *, sweep: bool = True) -> WorkFolder:
    """A fresh locked work folder under ``base`` (default: the system temp folder).

    ``sweep``: first remove the folders of dead owners there, so a killed run's workspace is
    reclaimed by the next run instead of piling up.
    """
    if base is not None and not Path(base).is_dir():
        raise PaliGemmaQgisError("workdir_missing", field="workdir", folder=str(base))
    if sweep:
        sweep_work_folders(base)
    try:
        path = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}_", dir=base))
        pending = path / (LOCK_SUFFIX + ".new")
        handle = open(pending, "a+", encoding="utf-8")  # noqa: SIM115 - held for the folder's life
        _try_lock(handle)
        os.replace(pending, path / LOCK_SUFFIX)  # appears locked: see sweep_work_folders
    except OSError as exc:
        raise PaliGemmaQgisError(
            "workdir_unwritable",
            field="workdir",
            folder=str(base or tempfile.gettempdir()),
            reason=exc.strerror or str(exc),
        ) from exc
    return WorkFolder(path, handle)
