"""Runs one worker job in a child process and follows its JSON lines (no QGIS import).

Shared by the dialog's QgsTask and the Processing algorithm so both cancel, clean up and
report errors the same way. The job goes to the worker as one line on stdin, which stays
open. Cancel escalates: the cancel line ``{"cancel": true}`` (the worker stops cleanly at
its next cancellation check, i.e. within one batch, on every OS), SIGTERM after
``term_after_s`` (POSIX; the worker then stops at once), a hard kill after ``grace_s``; an
output file this run created is removed, as are the core's temporary siblings.

On POSIX the worker runs in a process group of its own and signals go to the whole group:
a worker Python that is a wrapper script (``conda activate ...; python "$@"``) and helper
processes the worker starts are stopped with it, and none outlives the run. On Windows
there is no SIGTERM (``terminate`` is TerminateProcess, a hard kill), so the cancel line is
the only clean stop there; after a kill the cleanup above still runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .events import describe as describe_event
from .events import parse_line, problem
from .processes import escalate, popen_text, pump_lines, wait_or_kill

ProgressCallback = Callable[[int, int, str], None]
CancelledCallback = Callable[[], bool]

CANCEL_LINE = json.dumps({"cancel": True}) + "\n"


@dataclass(frozen=True)
class CancelPlan:
    """How a cancel escalates: the cancel line (when ``line``), SIGTERM at ``term_after_s``, kill at ``grace_s``."""

    grace_s: float
    line: bool
    term_after_s: float


@dataclass
class WorkerOutcome:
    """What a worker run ended with: ``status`` is "ok", "error" or "cancelled"."""

    status: str
    result: dict = field(default_factory=dict)
    message: str = ""
    details: str = ""
    returncode: int | None = None
    stderr: str = ""
    log: list[str] = field(default_factory=list)
    # What the worker's error event says beyond its message: ``field`` (the option at fault),
    # ``code``, ``kind`` (the error class), ``packages`` (missing ones), ``engine_only``.
    error_info: dict = field(default_factory=dict)
    # A cancelled run: what the worker said it keeps for the next run ({"scenes", "total", "chips"});
    # empty when it did not say (stopped before, or killed).
    kept: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def run_worker(
    job: dict,
    command: Sequence[str],
    env: dict[str, str] | None = None,
    on_progress: ProgressCallback | None = None,
    is_cancelled: CancelledCallback | None = None,
    grace_s: float = 20.0,
    poll_s: float = 0.1,
    cwd: str | None = None,
    cancel_line: bool = True,
    term_after_s: float | None = None,
) -> WorkerOutcome:
    """Start ``command`` (a worker), send ``job`` on stdin and follow it to the end.

    A segment job gets a scratch folder of its own (``workdir``, for the mosaic's temporary
    rasters) that is removed afterwards, so even a worker killed mid-batch leaves nothing.

    ``cancel_line``: keep stdin open after the job and cancel by writing CANCEL_LINE first
    (the worker protocol; a worker reads one job line). False: end-of-file after the job and
    SIGTERM at once on cancel, for a command that reads stdin to its end.
    ``term_after_s``: seconds from the cancel line to SIGTERM (POSIX); by default half of
    ``grace_s``; ``math.inf``: no SIGTERM, only the kill at ``grace_s``.
    """
    plan = CancelPlan(grace_s, bool(cancel_line), grace_s / 2 if term_after_s is None else term_after_s)
    scratch = None
    if job.get("task") == "segment" and not (job.get("options") or {}).get("workdir"):
        scratch = tempfile.mkdtemp(prefix="paligemma_qgis_work_")
        job = {**job, "options": {**job["options"], "workdir": scratch}}
    try:
        return _run_worker(job, command, env, on_progress, is_cancelled, plan, poll_s, cwd)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _run_worker(
    job: dict,
    command: Sequence[str],
    env: dict[str, str] | None,
    on_progress: ProgressCallback | None,
    is_cancelled: CancelledCallback | None,
    plan: CancelPlan,
    poll_s: float,
    cwd: str | None,
) -> WorkerOutcome:
    output = _output_path(job)
    output_existed = output is not None and output.exists()
    temp_before = _temp_siblings(output)
    out_dir = _out_dir(job)
    temp_dirs_before = _temp_dirs(out_dir)
    try:
        proc = popen_text(command, subprocess.PIPE, subprocess.PIPE, env, cwd, new_session=True)
    except OSError as exc:
        return WorkerOutcome(
            status="error",
            message=f"cannot start the worker Python {command[0]}: {exc.strerror or exc}",
            details=" ".join(command),
        )

    lines: queue.Queue[str | None] = queue.Queue()
    stderr_chunks: list[str] = []
    stdout_thread = threading.Thread(target=pump_lines, args=(proc.stdout, lines), daemon=True)
    stdout_thread.start()
    stderr_thread = threading.Thread(target=_pump_text, args=(proc.stderr, stderr_chunks), daemon=True)
    stderr_thread.start()
    try:
        _send(proc, json.dumps(job) + "\n")
        if not plan.line:
            _close_stdin(proc)
        outcome, log, cancelled = _follow(
            proc, lines, on_progress, is_cancelled, plan, poll_s, str(job.get("task") or "segment")
        )
        returncode = _wait(proc, plan.grace_s if cancelled else 5.0)
    except BaseException:  # never leave a worker running (and writing) unobserved
        _signal(proc, _SIGKILL)
        _wait(proc, 5.0)
        _remove_partial(output, output_existed, temp_before)
        raise
    finally:
        _close_stdin(proc)
        _signal(proc, _SIGKILL)  # POSIX: what the worker started and left behind
        for thread, stream in ((stdout_thread, proc.stdout), (stderr_thread, proc.stderr)):
            thread.join(timeout=2.0)
            if not thread.is_alive():  # closing a pipe another thread reads could block
                with contextlib.suppress(OSError):
                    stream.close()
    stderr = "".join(stderr_chunks)
    if cancelled:  # what the worker said about it, when it stopped itself and said so
        said = outcome if outcome is not None and outcome.status == "cancelled" else None
        outcome = WorkerOutcome(
            status="cancelled", message="cancelled by the user", kept=said.kept if said is not None else {}
        )
    elif outcome is None:
        outcome = WorkerOutcome(
            status="error",
            message=f"the worker stopped without a result (exit code {returncode})",
            details=_tail(stderr),
        )
    elif outcome.status == "ok" and returncode not in (0, None):
        outcome = WorkerOutcome(status="error", message=f"the worker exited with code {returncode}")
    # Another run holds the output: its lock, output and temporary files are that run's, not ours.
    busy = outcome.status == "error" and outcome.error_info.get("code") == "output_busy"
    if outcome.status != "ok" and not busy:
        _remove_partial(output, output_existed, temp_before)
        for folder in _temp_dirs(out_dir) - temp_dirs_before:  # an export killed mid-run
            shutil.rmtree(folder, ignore_errors=True)
    outcome.returncode = returncode
    outcome.stderr = stderr
    outcome.log = log
    if outcome.status == "error" and not outcome.details:
        outcome.details = _tail(stderr)
    return outcome


def _follow(
    proc: subprocess.Popen,
    lines: queue.Queue,
    on_progress: ProgressCallback | None,
    is_cancelled: CancelledCallback | None,
    plan: CancelPlan,
    poll_s: float,
    task: str = "segment",
    drain_s: float = 2.0,
) -> tuple[WorkerOutcome | None, list[str], bool]:
    """Read the worker's events until its stdout ends, or ``drain_s`` after the worker exited
    (a process it started may hold stdout open); stop it as ``plan`` says when ``is_cancelled``.
    An event whose fields are not what the plugin reads is logged and ignored (events.py)."""
    outcome: WorkerOutcome | None = None
    log: list[str] = []
    cancelled = False
    exited_at: float | None = None
    while True:
        if not cancelled and is_cancelled is not None and is_cancelled():
            cancelled = True
            _cancel(proc, plan)
        try:
            line = lines.get(timeout=poll_s)
        except queue.Empty:
            if proc.poll() is not None:
                exited_at = exited_at or time.monotonic()
                if time.monotonic() - exited_at > drain_s:
                    break
            continue
        if line is None:
            break
        event = parse_line(line)
        if event is None:
            log.append(line.rstrip())
            continue
        why = problem(event, task)
        if why is not None:
            log.append(describe_event(line, why))
            continue
        kind = event.pop("event", None)
        if kind == "progress" and on_progress is not None:
            on_progress(event.get("done", 0), event.get("total", 0), event.get("message", ""))
        elif kind == "result":
            outcome = WorkerOutcome(status="ok", result=event)
        elif kind == "error":
            outcome = WorkerOutcome(
                status="error",
                message=str(event.get("message", "")),
                details=str(event.get("details", "")),
                error_info={k: v for k, v in event.items() if k not in ("message", "details")},
            )
        elif kind == "cancelled":
            outcome = WorkerOutcome(
                status="cancelled",
                message=str(event.get("message", "cancelled")),
                kept=event.get("kept") or {},
            )
    return outcome, log, cancelled


_SIGKILL = getattr(signal, "SIGKILL", signal.SIGTERM)


def _signal(proc: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to the worker's process group (POSIX), or terminate it (Windows)."""
    if sys.platform == "win32":
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                if sig == _SIGKILL:
                    proc.kill()
                else:
                    proc.terminate()
        return
    with contextlib.suppress(OSError):  # ProcessLookupError: nothing left in the group
        os.killpg(proc.pid, sig)


def _pump_text(stream, chunks: list[str]) -> None:
    for line in stream:
        chunks.append(line)


def _cancel(proc: subprocess.Popen, plan: CancelPlan) -> None:
    """Ask the worker to stop (cancel line, else SIGTERM); escalate while it is still there."""
    if plan.line:
        steps = [(0.0, lambda: _send(proc, CANCEL_LINE))]
        if sys.platform != "win32":  # terminate() would be the hard kill there
            steps.append((plan.term_after_s, lambda: _signal(proc, signal.SIGTERM)))
    else:
        steps = [(0.0, lambda: _signal(proc, signal.SIGTERM))]
    escalate(proc, [*steps, (plan.grace_s, lambda: _signal(proc, _SIGKILL))])


def _send(proc: subprocess.Popen, text: str) -> None:
    """Write ``text`` to the worker's stdin; a worker already gone (broken pipe) is no error here:
    its exit code and stderr tell why it went."""
    stream = proc.stdin
    if stream is None:
        return
    with contextlib.suppress(OSError, ValueError):  # ValueError: stdin already closed
        stream.write(text)
        stream.flush()


def _close_stdin(proc: subprocess.Popen) -> None:
    if proc.stdin is not None:
        with contextlib.suppress(OSError, ValueError):  # flushing into a broken pipe
            proc.stdin.close()


def _wait(proc: subprocess.Popen, timeout: float) -> int | None:
    return wait_or_kill(proc, timeout, lambda: _signal(proc, _SIGKILL))


def _output_path(job: dict) -> Path | None:
    options = job.get("options") or {}
    value = options.get("output")
    return Path(value) if value else None


def _out_dir(job: dict) -> Path | None:
    """The output folder of an export job (core.train.export writes it through a temp folder beside it)."""
    options = job.get("options") or {}
    value = options.get("out_dir") if job.get("task") == "export" else None
    return Path(value) if value else None


def _temp_dirs(out_dir: Path | None) -> set[Path]:
    """Folders next to ``out_dir`` named like core.train.export's temp folders (.NAME.xxxx.tmp)."""
    if out_dir is None or not out_dir.parent.is_dir():
        return set()
    return {
        p
        for p in out_dir.parent.iterdir()
        if p.is_dir() and p.name.startswith(f".{out_dir.name}.") and p.name.endswith(".tmp")
    }


def _temp_siblings(output: Path | None) -> set[Path]:
    """Files next to the output that look like the core's temporaries for it."""
    if output is None or not output.parent.is_dir():
        return set()
    stem = output.name
    return {
        p
        for p in output.parent.iterdir()
        if p != output
        and p.name != stem
        and (p.name.startswith(f".{stem}") or p.name.startswith(f"{stem}.tmp"))
    }


def _remove_partial(output: Path | None, output_existed: bool, temp_before: set[Path]) -> None:
    if output is None:
        return
    if not output_existed:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{output}{suffix}").unlink(missing_ok=True)
    # The worker has ended: a lock it held is stale (its run journal, ".journal", is kept so
    # that the same run continues where it stopped).
    Path(f"{output}.lock").unlink(missing_ok=True)
    for temp in _temp_siblings(output) - temp_before:
        try:
            if temp.is_file():
                temp.unlink()
        except OSError:
            pass


def _tail(text: str, limit: int = 4000) -> str:
    return text[-limit:]
