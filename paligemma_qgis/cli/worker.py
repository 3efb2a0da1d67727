"""``python -m paligemma_qgis worker``: the process the QGIS plugin runs the core in.

This module holds the job protocol; the error event is worker_errors', the check
(--check) worker_check's: together the worker's whole contract with the plugin.

Why a separate process: QGIS must never import torch or transformers (crashes, CUDA
out-of-memory and numpy/GDAL clashes stay out of QGIS, GPU memory is freed after each
run, cancel is a clean stop). Protocol:

stdin, first: the job, one JSON object on one line (ended by a newline or by end-of-file,
so ``worker < job.json`` works, a pretty-printed file included)::

    {"task": "segment" | "export" | "change" | "occurrence", "options": {...}}

stdin, afterwards (the plugin keeps stdin open): control lines, read by a daemon thread::

    {"cancel": true}

A cancel line asks for a clean stop: the core notices at its next cancellation check
(between batches), removes its temporary files and the worker reports "cancelled" and exits
with EXIT_CANCELLED. This works on every OS (Windows has no SIGTERM for a child). Other
lines are logged on stderr and ignored; end-of-file is no cancel (a job piped from a file
runs to the end). SIGTERM (POSIX) does the same as the cancel line; a SIGTERM after a
cancel request stops at once (Cancelled raised wherever the main thread is, cleanup still
runs). The plugin escalates: cancel line, SIGTERM after part of its grace period, then a
hard kill.

stdout: JSON lines::

    {"event": "progress", "done": 3, "total": 10, "message": "chips"}
    {"event": "result", ...summary...}
    {"event": "error", "message": "...", "details": "...", "kind": "InputError",
     "code": "band_unknown", "params": {...}, "field": "nir"}
    {"event": "cancelled", "message": "..."}

``code`` (what kind of problem, core.errors' catalogue), ``params`` (its facts) and ``field``
(the option at fault) let the plugin say it in the dialog's or Processing's words;
``message`` is the neutral rendering (the log, Details…), ``kind`` the error class. Every
error has a code: a missing package is ``missing_packages`` with ``params.packages`` (the
names people install, "rasterio"), anything unforeseen ``unexpected`` (worker_errors).

Only these lines go to stdout: anything else that writes there (libraries, C code) is
redirected to stderr, which the plugin keeps for its log panel.

``worker --check`` prints one JSON object describing the worker Python (packages, CUDA,
model, VAE) and the exact commands that fix what is missing. ``worker --probe --engine E``
is its quick form (no torch import, a fraction of a second): what the plugin asks before a
run (core.environment.probe).

The plugin starts it as ``python -m paligemma_qgis.cli.worker`` (same arguments): that imports
this module alone, not every CLI command, so a Python that lacks a package (QGIS's own, on a
fresh install) still answers --check and reports a missing package as one clear message.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import IO, Any, Protocol

from ..core.environment import probe
from ..core.progress import Cancelled
from ..core.redact import redact, redact_tree
from . import no_side_files
from .worker_check import check_environment
from .worker_errors import BadJob, error_event

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CANCELLED = 130
TASKS = ("segment", "export", "change", "occurrence")


DESCRIPTION = (
    "Reads a JSON job {'task': 'segment'|'export'|'change'|'occurrence', 'options': {...}} on stdin "
    "and writes JSON lines (progress, result, error) on stdout. With --check, describes this "
    "Python's readiness (torch, transformers, CUDA, model, VAE) as one JSON object."
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run one job from stdin, reporting JSON lines on stdout (used by the QGIS plugin)",
        description=DESCRIPTION,
    )
    _add_arguments(parser)
    parser.set_defaults(func=run)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true", help="describe this worker Python and exit")
    parser.add_argument(
        "--model", help="with --check: Hugging Face model id or local model folder to look for"
    )
    parser.add_argument("--vae", help="with --check: path of vae-oid.npz to look for")
    parser.add_argument(
        "--probe", action="store_true", help="quick check (no torch import): what the engine lacks, as JSON"
    )
    parser.add_argument(
        "--engine",
        default="water-index",
        help="with --probe: what the run needs (water-index, paligemma, export)",
    )
    parser.add_argument(
        "--journal",
        action="store_true",
        help="read a segment job on stdin and say (JSON) whether an interrupted run beside its output is "
        "the same run",
    )
    parser.add_argument(
        "--executor",
        default="local",
        choices=("local", "ray"),
        help="with --probe/--check: ray when the run goes to a Ray cluster (then Ray is needed too)",
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m paligemma_qgis.cli.worker``: the worker without the other commands' imports."""
    parser = argparse.ArgumentParser(prog="python -m paligemma_qgis.cli.worker", description=DESCRIPTION)
    _add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    no_side_files()  # no .aux.xml beside the rasters it reads, as on the command line
    if args.check:
        print(
            json.dumps(check_environment(model=args.model, vae=args.vae, executor=args.executor)), flush=True
        )
        return EXIT_OK
    if args.probe:
        print(
            json.dumps(probe(args.engine, model=args.model, vae=args.vae, executor=args.executor)), flush=True
        )
        return EXIT_OK
    if args.journal:
        from .worker_journal import journal_state

        try:
            state = journal_state(_read_job(_stdin_lines()))
        except BadJob as exc:
            state = {"journal": "unknown", "why": str(exc)}
        print(json.dumps(redact_tree(state)), flush=True)
        return EXIT_OK
    events = _private_stdout()
    return run_job_stream(_stdin_lines(), events)


# --------------------------------------------------------------------------- job mode


class Lines(Protocol):
    """What the worker reads stdin through: a text stream, or FdLines for the real stdin."""

    def readline(self) -> str: ...


class FdLines:
    """Lines of a file descriptor read with ``os.read``.

    Why not ``sys.stdin``: the cancel listener blocks in a read for the whole run, and a daemon
    thread blocked inside a buffered stream holds its lock, which Python may need at exit
    ("could not acquire lock for <stdin> at interpreter shutdown").
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = b""
        self._eof = False

    def readline(self) -> str:
        """The next line with its newline; the rest at end-of-file; "" once everything is read."""
        while b"\n" not in self._buffer and not self._eof:
            try:
                chunk = os.read(self._fd, 65536)
            except OSError:  # closed or invalid stdin: nothing more will come
                chunk = b""
            self._eof = not chunk
            self._buffer += chunk
        cut = self._buffer.find(b"\n") + 1 or len(self._buffer)
        line, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return line.decode("utf-8", "replace")


def _stdin_lines() -> Lines:
    try:
        return FdLines(sys.stdin.fileno())
    except (AttributeError, OSError, ValueError):  # no stdin at all (pythonw), or not a real file
        return io.StringIO("")


class JsonLinesProgress:
    """Progress protocol that reports JSON lines; SIGTERM and the cancel line set ``cancel_requested``."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.cancel_requested = threading.Event()

    def emit(self, event: str, **fields: Any) -> None:
        """One JSON line; every string in it redacted on the way out (an input URL's credentials
        must not reach the plugin's messages, logs or Details…)."""
        plain = json.loads(json.dumps({"event": event, **fields}, default=_json_default))
        line = json.dumps(redact_tree(plain))
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def report(self, done: int, total: int, message: str = "") -> None:
        self.emit("progress", done=int(done), total=int(total), message=str(message))

    def cancelled(self) -> bool:
        return self.cancel_requested.is_set()


def run_job_stream(stdin: Lines, events: IO[str]) -> int:
    """Run one job read from ``stdin``, then listen there for a cancel line; every outcome is
    reported as a JSON line on ``events``."""
    progress = JsonLinesProgress(events)
    _install_sigterm(progress)
    try:
        job = _read_job(stdin)
        listen_for_cancel(stdin, progress)
        result = run_job(job, progress)
    except Cancelled as exc:
        progress.emit("cancelled", message=str(exc) or "cancelled by the user", kept=exc.kept)
        return EXIT_CANCELLED
    except Exception as exc:  # every error, said by code: the plugin words it, the log keeps the rest
        progress.emit("error", **error_event(exc))
        return EXIT_ERROR
    # A SIGTERM after the last check lets the result stand; the plugin decides what to keep.
    progress.emit("result", **result)
    return EXIT_OK


def run_job(job: dict, progress: JsonLinesProgress) -> dict:
    """Dispatch a parsed job to the core; returns the summary as a JSON-ready dict."""
    task = job.get("task")
    options = job.get("options")
    if task not in TASKS:
        raise BadJob("job_unknown_task", task=repr(task), tasks=", ".join(TASKS))
    if not isinstance(options, dict):
        raise BadJob("job_options_not_object")
    if task == "segment":
        from ..core.run.driver import segment_raster
        from ..core.specs import segment_spec

        return segment_raster(segment_spec(options), progress).to_dict()
    from ..core.serial import from_data

    if task == "change":
        from ..core.temporal.change import water_change
        from ..core.temporal.options import ChangeOptions

        return water_change(from_data(ChangeOptions, options), progress).to_dict()
    if task == "occurrence":
        from ..core.temporal.occurrence import water_occurrence
        from ..core.temporal.options import OccurrenceOptions

        return water_occurrence(from_data(OccurrenceOptions, options), progress).to_dict()
    return _run_export(options, progress)


def _run_export(options: dict, progress: JsonLinesProgress) -> dict:
    """The export task: options are core.train.options.ExportOptions' fields."""
    from ..core.serial import from_data
    from ..core.train.options import ExportOptions

    module = f"{__package__.rsplit('.', 1)[0]}.core.train.export"
    try:
        export = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:  # a package core.train.export needs: reported as such by the caller
            raise
        raise BadJob("export_unavailable") from exc
    return export.export_training_data(from_data(ExportOptions, options), progress).to_dict()


def _read_job(stdin: Lines) -> dict:
    """The job: lines up to the first one that completes a JSON document, or up to end-of-file.

    Reading stops there (not at end-of-file) because the plugin keeps stdin open for the
    cancel line; a pretty-printed job file still works because an incomplete document reads on.
    """
    text = ""
    while line := stdin.readline():
        text += line
        if not text.strip():
            continue
        try:
            return _job_object(json.loads(text.lstrip("\ufeff")))
        except json.JSONDecodeError as exc:
            if exc.pos < len(text.lstrip("\ufeff").rstrip()):  # wrong, not merely unfinished
                raise BadJob("job_not_json", detail=str(exc)) from exc
    if not text.strip():
        raise BadJob("job_empty")
    try:
        return _job_object(json.loads(text.lstrip("\ufeff")))
    except json.JSONDecodeError as exc:
        raise BadJob("job_not_json", detail=str(exc)) from exc


def _job_object(job: Any) -> dict:
    if not isinstance(job, dict):
        raise BadJob("job_not_object")
    return job


def listen_for_cancel(stdin: Lines, progress: JsonLinesProgress) -> threading.Thread:
    """Read control lines from ``stdin`` on a daemon thread until end-of-file (which cancels nothing)."""

    def listen() -> None:
        while line := stdin.readline():
            if not line.strip():
                continue
            if _is_cancel(line):
                print("worker: cancel requested on stdin", file=sys.stderr, flush=True)
                progress.cancel_requested.set()
            else:
                print(
                    f"worker: ignored stdin line {redact(line.strip()[:200])!r}", file=sys.stderr, flush=True
                )

    thread = threading.Thread(target=listen, name="worker-cancel-listener", daemon=True)
    thread.start()
    return thread


def _is_cancel(line: str) -> bool:
    try:
        message = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(message, dict) and message.get("cancel") is True


def _install_sigterm(progress: JsonLinesProgress) -> None:
    """First SIGTERM: cancel at the next check (clean). A second one: stop now."""

    def handler(signum: int, frame: object) -> None:
        if progress.cancel_requested.is_set():
            raise Cancelled("terminated")
        progress.cancel_requested.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def _private_stdout() -> IO[str]:
    """Keep the real stdout for events only; send fd 1 (prints, C libraries) to stderr."""
    sys.stdout.flush()
    events_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(events_fd, "w", encoding="utf-8", buffering=1)


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
