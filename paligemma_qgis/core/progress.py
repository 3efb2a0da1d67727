"""Progress and cancellation hooks shared by the CLI (tqdm), the worker (JSON lines) and QGIS.

The core never knows who is listening: it calls ``report`` and asks ``cancelled``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class Cancelled(Exception):
    """Raised inside the core when the user cancelled; front ends catch it.

    ``kept``: what the next run of the same command continues from, when the run says so
    (``{"scenes": done, "total": scenes, "chips": answers}``): "12 of 36 scenes are kept".
    """

    def __init__(self, message: str = "cancelled by the user", kept: dict[str, int] | None = None):
        super().__init__(message)
        self.kept = dict(kept or {})


class Progress(Protocol):
    def report(self, done: int, total: int, message: str = "") -> None: ...

    def cancelled(self) -> bool: ...


@dataclass
class CallbackProgress:
    """Adapts two plain callables to the Progress protocol."""

    on_report: Callable[[int, int, str], None] | None = None
    is_cancelled: Callable[[], bool] | None = None

    def report(self, done: int, total: int, message: str = "") -> None:
        if self.on_report is not None:
            self.on_report(done, total, message)

    def cancelled(self) -> bool:
        return bool(self.is_cancelled and self.is_cancelled())


class SilentProgress:
    def report(self, done: int, total: int, message: str = "") -> None:
        pass

    def cancelled(self) -> bool:
        return False


def check_cancelled(progress: Progress | None) -> None:
    if progress is not None and progress.cancelled():
        raise Cancelled("cancelled by the user")
