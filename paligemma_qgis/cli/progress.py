"""tqdm progress for the CLI commands, with Ctrl-C (and SIGTERM, SIGHUP) as a clean cancel.

The first Ctrl-C asks the core to stop at its next check (it then removes partial
outputs and raises core.progress.Cancelled); a second one interrupts at once. SIGTERM
(what a batch scheduler or `kill` sends) and SIGHUP (a closed terminal) do the same, so
they too leave no temp files behind.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class TqdmProgress:
    """core.progress.Progress on a tqdm bar (created on the first report)."""

    def __init__(self, desc: str = "", unit: str = "step") -> None:
        self.desc, self.unit = desc, unit
        self.bar: Any = None
        self.message = ""
        self._cancel = False

    def report(self, done: int, total: int, message: str = "") -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, leave=False, dynamic_ncols=True)
        if message != self.message:
            self.message = message
            self.bar.set_postfix_str(message)
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def cancelled(self) -> bool:
        return self._cancel

    def on_sigint(self, signum: int, frame: object) -> None:
        if self._cancel:
            raise KeyboardInterrupt
        self._cancel = True

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@contextmanager
def cli_progress(desc: str, unit: str = "step") -> Iterator[TqdmProgress]:
    """A TqdmProgress that owns SIGINT, SIGTERM and SIGHUP while the command runs."""
    progress = TqdmProgress(desc, unit)
    signums = [signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]
    previous = {s: signal.signal(s, progress.on_sigint) for s in signums}
    try:
        yield progress
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        progress.close()
