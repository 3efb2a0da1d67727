"""tqdm progress for the CLI commands, with Ctrl-C, SIGTERM and SIGHUP as a clean cancel.

The first signal asks the core to stop at its next check (it then removes partial outputs
and raises core.progress.Cancelled); a second one interrupts at once (KeyboardInterrupt,
and the context managers on the way out still remove temporary files). SIGTERM is what a
batch scheduler or ``kill`` sends, SIGHUP what a closed terminal or SSH session sends: a
long command treats them like Ctrl-C.
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

    def on_signal(self, signum: int, frame: object) -> None:
        if self._cancel:
            raise KeyboardInterrupt
        self._cancel = True

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


CANCEL_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@contextmanager
def cli_progress(desc: str, unit: str = "step") -> Iterator[TqdmProgress]:
    """A TqdmProgress that owns the cancel signals (CANCEL_SIGNALS) while the command runs."""
    progress = TqdmProgress(desc, unit)
    previous = {sig: signal.signal(sig, progress.on_signal) for sig in CANCEL_SIGNALS}
    try:
        yield progress
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        progress.close()
