"""Library warnings on the command line: one clear line each, shown once, above the progress bar.

rasterio, shapely, numpy and GDAL (through rasterio's logger) warn in their own words, with
the source line that raised the warning and often many times per run; a user needs one
line that says what happened. Warnings that only repeat an error the command reports itself
(rasterio's NotGeoreferencedWarning before "raster has no CRS") are silenced at the source,
in core.inputs.files.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..core.redact import redact

_PLAIN = ("UserWarning", "RuntimeWarning", "Warning")  # the class name adds nothing to these
MAX_CHARS = 300


def warning_line(message: Any, category: type[Warning] | None = None) -> str:
    """One line: 'warning: [Category: ]message', whitespace collapsed, long messages cut, secrets redacted."""
    text = " ".join(redact(str(message)).split())
    if len(text) > MAX_CHARS:
        text = text[: MAX_CHARS - 3] + "..."
    name = category.__name__ if category is not None else ""
    return f"warning: {text}" if not name or name in _PLAIN else f"warning: {name}: {text}"


def _emit(line: str) -> None:
    try:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)  # clears and redraws an active bar around the line
    except ImportError:  # pragma: no cover - tqdm is a dependency
        print(line, file=sys.stderr)


class _OnceHandler(logging.Handler):
    """Log records at WARNING and above (GDAL's, via rasterio) as one warning line each, once."""

    def __init__(self, seen: set[str]) -> None:
        super().__init__(logging.WARNING)
        self.seen = seen

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = warning_line(record.getMessage())
        except Exception:  # a broken log call must not break the command
            return
        if line not in self.seen:
            self.seen.add(line)
            _emit(line)


class RedactingFormatter(logging.Formatter):
    """Log records (tracebacks included) with URL credentials and signatures redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def redacted_logging() -> logging.Handler:
    """Warnings and errors of every logger to stderr, redacted (the worker, whose stderr the
    plugin shows under Details… and keeps in its log)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


@contextmanager
def one_line_warnings() -> Iterator[set[str]]:
    """While a command runs: warnings and library log records print as single, deduplicated lines."""
    seen: set[str] = set()

    def show(
        message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        text = warning_line(message, category)
        if text not in seen:
            seen.add(text)
            _emit(text)

    root = logging.getLogger()
    handler = _OnceHandler(seen)
    root.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            yield seen
    finally:
        root.removeHandler(handler)
