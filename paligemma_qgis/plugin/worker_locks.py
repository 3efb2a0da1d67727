"""The hashed lock files the worker's packages are installed from (paligemma_qgis/locks/).

``make lock`` (scripts/lock_requirements.py) writes them from requirements.in + constraints.txt:
every package pinned to one version and to the sha256 of its files, for every platform (pip
picks by marker) and Python >= the floor written in each header. The plugin installs a group
with ``pip install --require-hashes --no-deps -r LOCK``: a file that is not the one locked,
from any index or proxy, fails the install. No QGIS import: plain paths, tested as such.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

LOCKS_DIR = Path(__file__).resolve().parents[1] / "locks"
# The lock of each install group; "torch" is torch from PyPI (and what only it needs), "model" the rest.
LOCK_FILES = {"geo": "worker.txt", "model": "model.txt", "torch": "model-torch.txt", "region": "region.txt"}
HASHED = ("--require-hashes", "--no-deps")
_FLOOR_RE = re.compile(r"Python >= (\d+)\.(\d+)")


@dataclass(frozen=True)
class Locks:
    """The lock files in ``folder`` (the plugin's own by default)."""

    folder: Path = LOCKS_DIR

    def path(self, group: str) -> Path | None:
        """The lock of ``group`` ("geo", "model", "torch", "region"), or None when not shipped."""
        path = self.folder / LOCK_FILES[group]
        return path if path.is_file() else None

    def torch_variant(self, index_url: str) -> Path | None:
        """The lock of PyTorch's own build served at ``index_url`` (…/whl/cu128 → model-torch-cu128.txt)."""
        tag = index_url.rstrip("/").rsplit("/", 1)[-1]
        path = self.folder / f"model-torch-{tag}.txt"
        return path if re.fullmatch(r"[a-z0-9]+", tag) and path.is_file() else None

    @property
    def constraints(self) -> Path | None:
        """The pins (a copy of constraints.txt), for what is installed without a lock."""
        path = self.folder / "constraints.txt"
        return path if path.is_file() else None

    def python_floor(self) -> tuple[int, int] | None:
        """The oldest Python the locks cover (their header), None when there are none."""
        path = self.path("geo")
        if path is None:
            return None
        with open(path, encoding="utf-8") as f:
            head = f.read(2000)
        match = _FLOOR_RE.search(head)
        return (int(match.group(1)), int(match.group(2))) if match else None

    def covers(self, python_version: str | None) -> bool:
        """Whether a Python of ``python_version`` ("3.11.2") can install from the locks."""
        floor = self.python_floor()
        match = re.match(r"(\d+)\.(\d+)", python_version or "")
        return floor is not None and match is not None and (int(match.group(1)), int(match.group(2))) >= floor


def hashed_install(lock: Path) -> list[str]:
    """pip arguments that install exactly ``lock``: every file checked against its sha256."""
    return [*HASHED, "-r", str(lock)]
