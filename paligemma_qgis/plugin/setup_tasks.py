"""The setup check's "fix it" buttons: create the worker venv, download the VAE weights.

Both are a list of commands (``Step``) built by plain functions, run one after the other by
``run_steps`` (no QGIS import, so tests run the real commands) inside a ``SetupTask``: a
QgsTask, so the GUI thread never waits for pip, with progress in the task bar and cancel
(the running command is terminated). A failed step reports which step, the command, its
exit code and the last lines it printed; a venv this task created is removed again when a
later step fails, so the automatic worker choice never lands on a half-made environment.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qgis.core import Qgis, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import QTimer

from .messages import LOG_TAG, drop_task_notices, push_message
from .processes import popen_text, pump_lines, stop_later, wait_or_kill
from .worker_env import (
    PACKAGE_DIR,
    managed_venv_dir,
    requirements_file,
    set_configured_python,
    system_python,
    venv_python,
    worker_env,
    worker_python,
)
from .worker_locks import Locks, hashed_install

# QGIS 3.26+: no "Task complete"/"Task failed" notice of its own (the plugin says what happened).
_SILENT = getattr(QgsTask.Flag, "Silent", None)
TASK_FLAGS = QgsTask.Flag.CanCancel | _SILENT if _SILENT is not None else QgsTask.Flag.CanCancel


@dataclass
class Step:
    """One command of a setup task; ``weight`` is its share of the progress bar."""

    title: str
    command: list[str]
    weight: float = 1.0
    env: dict[str, str] | None = None

    def shell(self) -> str:
        """The command as one would type it in a terminal (for the log and the setup page)."""
        if sys.platform == "win32":
            return subprocess.list2cmdline(self.command)
        return shlex.join(self.command)


@dataclass
class StepsOutcome:
    """How a list of steps ended: ``status`` is "ok", "error" or "cancelled"."""

    status: str
    message: str = ""
    failed: Step | None = None
    returncode: int | None = None
    output: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def setup_env() -> dict[str, str]:
    """Environment for venv/pip: the worker's (no QGIS PROJ/GDAL/PYTHONHOME), without PYTHONPATH."""
    env = worker_env()
    env.pop("PYTHONPATH", None)
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return env


def venv_step(venv_dir: Path, base_python: str, env: dict[str, str] | None = None) -> Step:
    """``python3 -m venv --system-site-packages VENV``: QGIS's own packages (numpy built for its
    GDAL) stay visible in the worker."""
    return Step(
        "Create the worker environment",
        [base_python, "-m", "venv", "--system-site-packages", str(venv_dir)],
        weight=1.0,
        env=env if env is not None else setup_env(),
    )


def install_step(
    title: str,
    python: str,
    requirements: Sequence[str],
    pip_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    weight: float = 3.0,
) -> Step:
    """``PYTHON -m pip install [PIP_ARGS] REQ...`` (``pip_args``: --index-url, or --no-index in tests)."""
    return Step(
        title,
        [python, "-m", "pip", "install", *pip_args, *requirements],
        weight=weight,
        env=env if env is not None else setup_env(),
    )


def venv_steps(
    venv_dir: Path | None = None,
    base_python: str | None = None,
    requirements: Path | None = None,
    pip_args: Sequence[str] = (),
) -> list[Step]:
    """The venv, then ``VENV/python -m pip install -r REQ`` (default: the geospatial packages, from
    their hashed lock: ``--require-hashes --no-deps``).

    The first-run setup (setup_plan) builds its own steps per group; this is the plain form
    of "make a venv from QGIS's Python with these requirements".
    """
    venv_dir = Path(venv_dir) if venv_dir is not None else managed_venv_dir()
    base = base_python or system_python()
    lock = Locks().path("geo") if requirements is None else None
    req = requirements if requirements is not None else lock or requirements_file()
    if req is None:
        raise FileNotFoundError(
            f"no requirements-worker.txt in {PACKAGE_DIR}: reinstall the plugin from its zip"
        )
    python = str(venv_python(venv_dir))
    env = setup_env()
    install = hashed_install(req) if lock is not None else ["-r", str(req)]
    return [
        venv_step(venv_dir, base, env),
        Step(
            "Install the worker packages",
            [python, "-m", "pip", "install", *pip_args, *install],
            weight=9.0,
            env=env,
        ),
    ]


def weights_steps(python: str | None = None, extra_args: Sequence[str] = ()) -> list[Step]:
    """``<worker python> -m paligemma_qgis weights download`` (sha256 checked by the command)."""
    return [
        Step(
            "Download the VAE weights (vae-oid.npz)",
            [
                python or worker_python()[0],
                "-m",
                PACKAGE_DIR.name,
                "weights",
                "download",
                "--quiet",
                *extra_args,
            ],
            env=worker_env(),  # PYTHONPATH: this very plugin
        )
    ]


ProgressCallback = Callable[[float, str], None]


def run_steps(
    steps: Sequence[Step],
    on_progress: ProgressCallback | None = None,
    is_cancelled: Callable[[], bool] | None = None,
    on_line: Callable[[str], None] | None = None,
    grace_s: float = 10.0,
    poll_s: float = 0.1,
    keep_lines: int = 40,
) -> StepsOutcome:
    """Run ``steps`` in order, stopping at the first failure or at cancel (the command is terminated)."""
    total = sum(max(step.weight, 0.0) for step in steps) or 1.0
    done = 0.0
    output: list[str] = []
    for step in steps:
        if on_progress is not None:
            on_progress(100.0 * done / total, step.title)
        if is_cancelled is not None and is_cancelled():
            return StepsOutcome(
                status="cancelled", message="cancelled by the user", failed=step, output=output
            )
        if on_line is not None:
            on_line(f"$ {step.shell()}")
        try:
            proc = popen_text(step.command, subprocess.DEVNULL, subprocess.STDOUT, step.env)
        except OSError as exc:
            return StepsOutcome(
                status="error",
                message=f"{step.title}: cannot start {step.command[0]} ({exc.strerror or exc})",
                failed=step,
                output=output,
            )
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=pump_lines, args=(proc.stdout, lines), daemon=True).start()
        step_output: list[str] = []
        cancelled = False
        while True:
            if not cancelled and is_cancelled is not None and is_cancelled():
                cancelled = True
                _terminate(proc, grace_s)
            try:
                line = lines.get(timeout=poll_s)
            except queue.Empty:
                continue
            if line is None:
                break
            line = line.rstrip()
            step_output.append(line)
            del step_output[:-keep_lines]
            if on_line is not None:
                on_line(line)
        returncode = _wait(proc, grace_s)
        with contextlib.suppress(OSError):
            proc.stdout.close()
        output = step_output
        if cancelled:
            return StepsOutcome(
                status="cancelled",
                message="cancelled by the user",
                failed=step,
                returncode=returncode,
                output=output,
            )
        if returncode != 0:
            last = next((line for line in reversed(step_output) if line.strip()), "")
            return StepsOutcome(
                status="error",
                message=f"{step.title} failed (exit code {returncode})"
                + (f": {last.strip()}" if last else ""),
                failed=step,
                returncode=returncode,
                output=output,
            )
        done += max(step.weight, 0.0)
    if on_progress is not None:
        on_progress(100.0, "done")
    return StepsOutcome(status="ok", output=output)


def _terminate(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM now, SIGKILL if the command is still there after ``grace_s``."""

    def stop() -> None:
        with contextlib.suppress(OSError):
            proc.terminate()

    def kill() -> None:
        with contextlib.suppress(OSError):
            proc.kill()

    stop_later(proc, grace_s, stop, kill)


def _wait(proc: subprocess.Popen, timeout: float) -> int:
    return wait_or_kill(proc, timeout, proc.kill)


class SetupTask(QgsTask):
    """Runs setup ``steps`` in the background; ``on_success`` runs on the main thread afterwards.

    ``remove_on_failure``: folders this task creates and must not leave behind half-made
    (a folder that already existed before the task started is never removed).
    """

    def __init__(
        self,
        description: str,
        steps: list[Step],
        on_success: Callable[[], None] | None = None,
        remove_on_failure: Sequence[Path] = (),
        iface=None,
        on_failure: Callable[[], None] | None = None,
        quiet: bool = False,
    ) -> None:
        super().__init__(description, TASK_FLAGS)
        self.quiet = quiet  # the caller says how it ended (a dialog's own message bar), not QGIS's bar
        self.steps = steps
        self.on_success = on_success
        self.on_failure = on_failure  # failed or cancelled (a run waiting on it gives up)
        self.remove_on_failure = [Path(p) for p in remove_on_failure if not Path(p).exists()]
        self.iface = iface
        self.outcome: StepsOutcome | None = None
        self.current = ""
        self.error = ""
        self.finished_called = False
        self.succeeded: bool | None = None

    def run(self) -> bool:  # a QGIS worker thread: no GUI here
        def on_progress(percent: float, title: str) -> None:
            self.setProgress(percent)
            self.current = title

        def on_line(line: str) -> None:
            QgsMessageLog.logMessage(line, LOG_TAG, Qgis.MessageLevel.Info)

        try:
            self.outcome = run_steps(self.steps, on_progress, self.isCanceled, on_line)
        except Exception as exc:  # escaping run(), it would abort QGIS (PyQt's qFatal)
            self.outcome = StepsOutcome(status="error", message=f"{type(exc).__name__}: {exc}")
            return False
        return self.outcome.ok and not self.isCanceled()

    def finished(self, result: bool) -> None:  # main thread
        self.succeeded = bool(result)
        try:
            self._finished(result)
        finally:
            self.finished_called = True
            if not result and self.on_failure is not None:
                self.on_failure()
            if _SILENT is None:  # QGIS < 3.26: its "Task complete: …" would stay while a run goes on
                description, iface = self.description(), self.iface
                QTimer.singleShot(0, lambda: drop_task_notices(iface, description))

    def _finished(self, result: bool) -> None:
        outcome = self.outcome
        if result and outcome is not None:
            if self.on_success is not None:
                self.on_success()
            self._push(f"{self.description()}: done.", Qgis.MessageLevel.Success)
            return
        for folder in self.remove_on_failure:
            shutil.rmtree(folder, ignore_errors=True)
        if self.isCanceled() or (outcome is not None and outcome.status == "cancelled"):
            self.error = "cancelled by the user"
            self._push(f"{self.description()}: cancelled.", Qgis.MessageLevel.Info)
            return
        self.error = outcome.message if outcome is not None else "the task did not run"
        details = [f"{self.description()} failed: {self.error}"]
        if outcome is not None and outcome.failed is not None:
            details.append(f"command: {outcome.failed.shell()}")
        if outcome is not None and outcome.output:
            details.append("output (last lines):\n" + "\n".join(outcome.output))
        QgsMessageLog.logMessage("\n".join(details), LOG_TAG, Qgis.MessageLevel.Critical)
        self._push(
            f"{self.description()} failed: {self.error}", Qgis.MessageLevel.Critical, "\n".join(details)
        )

    def _push(self, text: str, level, details: str | None = None) -> None:
        if not self.quiet:
            push_message(self.iface, text, level, details)


def create_venv_task(
    venv_dir: Path | None = None,
    base_python: str | None = None,
    requirements: Path | None = None,
    pip_args: Sequence[str] = (),
    iface=None,
) -> SetupTask:
    """The "Create worker environment" task; on success the venv's Python becomes the worker Python."""
    venv_dir = Path(venv_dir) if venv_dir is not None else managed_venv_dir()
    steps = venv_steps(venv_dir, base_python, requirements, pip_args)
    python = str(venv_python(venv_dir))
    if not venv_dir.parent.exists():
        os.makedirs(venv_dir.parent, exist_ok=True)
    return SetupTask(
        "Create the PaliGemma worker environment",
        steps,
        on_success=lambda: set_configured_python(python),
        remove_on_failure=[venv_dir],
        iface=iface,
    )


def download_weights_task(
    python: str | None = None, extra_args: Sequence[str] = (), iface=None, quiet: bool = False
) -> SetupTask:
    """The "Download VAE weights" task (``weights download`` in the worker Python)."""
    return SetupTask("Download the VAE weights", weights_steps(python, extra_args), iface=iface, quiet=quiet)
