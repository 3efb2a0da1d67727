"""Keyed checksums for the run journal: a journal is believed only if this user wrote it here.

What protects what (the journal lives beside the output, often in a shared or synced folder):

- The journal is data, never code (JSON and WKB, see ``results``): a planted or damaged journal
  cannot run anything, whoever wrote it.
- Every record (a scene's result, a chip's answer) and the journal's own header carry a
  blake2b MAC keyed with a secret of this user (``journal.key``, 32 random bytes, 0600, in the
  user's state folder, never beside the output) over a per-journal random nonce, the record's
  table and key (scene id, chip) and its bytes. So a record changed after it was written (a bit
  flip, an edit) fails its check; so does one moved from another journal or another scene; and
  a journal not written by this user on this computer (planted, or synced from elsewhere)
  fails as a whole. A checksum stored beside the record, or keyed with a key stored in the
  same file, would only catch accidents: whoever can write the file can recompute it from the
  command alone.
- The options' fingerprint is stored keyed too, so the secrets a command held (a URL's
  password) cannot be guessed offline from the journal.

Not protected: someone who can read the key (this user, root) can forge a journal, but can
run code as this user anyway; someone who can write the output's folder can replace the output
itself after the run. Resuming on another computer (a synced folder) redoes the work, with a
warning. Where the key cannot be kept (a read-only home), a key for this process only is used:
the run works, an interrupted one starts over.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import threading
from pathlib import Path

from .atomic import open_private

log = logging.getLogger(__name__)

KEY_FILE = "journal.key"
STATE_ENV = "PALIGEMMA_QGIS_STATE_DIR"  # where the key lives (default: the user's state folder)
_KEY_BYTES = 32
_PERSON = b"pgq-journal-3"
_lock = threading.Lock()
_keys: dict[Path, bytes] = {}


def key_path() -> Path:
    folder = os.environ.get(STATE_ENV)
    if not folder:
        from platformdirs import user_state_dir

        folder = user_state_dir("paligemma_qgis", appauthor=False)
    return Path(folder).expanduser() / KEY_FILE


def user_key() -> bytes:
    """This user's journal key: read, or made once (0600, a private folder); cached per process."""
    path = key_path()
    with _lock:
        if path not in _keys:
            try:
                _keys[path] = _load_or_make(path)
            except Exception as exc:  # noqa: BLE001 - any failure: a key of this process only
                log.warning(
                    "cannot keep the run journal's key in %s (%s): an interrupted run will start over",
                    path,
                    exc,
                )
                _keys[path] = secrets.token_bytes(_KEY_BYTES)
        return _keys[path]


def _load_or_make(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for _ in range(50):
        fd, created = open_private(path, "journal key")
        try:
            if created:
                key = secrets.token_bytes(_KEY_BYTES)
                os.write(fd, key)
                os.fsync(fd)
                return key
            key = os.read(fd, _KEY_BYTES + 1)
        finally:
            os.close(fd)
        if len(key) == _KEY_BYTES:
            return key
        if key:  # not a key of ours: the caller falls back to a key of this process
            raise ValueError(f"{path} is not a journal key ({len(key)} bytes)")
        threading.Event().wait(0.02)  # another process is writing it right now
    raise ValueError(f"{path} stays empty")


class Seal:
    """MACs of one journal: the user's key over the journal's nonce and each record's fields."""

    def __init__(self, nonce: str, key: bytes | None = None):
        self.nonce = nonce
        self._key = user_key() if key is None else key

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_hex(16)

    def mac(self, kind: str, *fields: object) -> bytes:
        h = hashlib.blake2b(key=self._key, digest_size=32, person=_PERSON)
        for value in (self.nonce, kind, *fields):
            h.update(_framed(value))
        return h.digest()

    def check(self, mac: object, kind: str, *fields: object) -> bool:
        if not isinstance(mac, (bytes, bytearray, memoryview)):
            return False
        with contextlib.suppress(TypeError, ValueError):
            return hmac.compare_digest(bytes(mac), self.mac(kind, *fields))
        return False

    def fingerprint(self, digest: str) -> str:
        """The options' fingerprint as stored: keyed, so the options cannot be guessed from it."""
        h = hashlib.blake2b(digest.encode(), key=self._key, digest_size=16, person=_PERSON)
        return h.hexdigest()


def _framed(value: object) -> bytes:
    """One field, typed and length-prefixed, so no two different records frame alike."""
    if value is None:
        return b"N"
    if isinstance(value, (bytes, bytearray, memoryview)):
        tag, data = b"B", bytes(value)
    elif isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"cannot seal a {type(value).__name__}")
    elif isinstance(value, int):
        tag, data = b"I", str(value).encode()
    else:
        tag, data = b"S", value.encode("utf-8", "surrogatepass")
    return tag + len(data).to_bytes(8, "little") + data
