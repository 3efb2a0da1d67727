"""Worker setup: which Python runs the worker, is it ready, and the exact commands to fix it.

Runs ``<python> -m paligemma_qgis worker --check`` (a QProcess, so QGIS stays responsive
while torch imports; killed after CHECK_TIMEOUT_S, as a broken GPU driver can hang it) and
shows packages, CUDA/GPU, model and VAE with a fix per gap. Two
buttons apply the usual fixes in background tasks (setup_tasks): create the plugin's worker
venv (and make it the worker Python), and download the VAE weights.
"""

from __future__ import annotations

import contextlib
import html
import json
import subprocess

from qgis.core import QgsApplication
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import QProcess, QProcessEnvironment, QTimer
from qgis.PyQt.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from .setup_tasks import SetupTask, create_venv_task, download_weights_task
from .worker_env import (
    configured_python,
    managed_venv_dir,
    set_configured_python,
    setup_commands,
    venv_python,
    worker_command,
    worker_env,
    worker_python,
)

# Setup tasks outlive the dialog that started them: keep them referenced until they end.
RUNNING: list[SetupTask] = []

# The dialog's check is killed after this long (seconds): importing torch takes a few seconds,
# a cold start on a slow disk maybe a minute; a hung GPU driver never ends.
CHECK_TIMEOUT_S = 120.0


def start_setup_task(task: SetupTask) -> SetupTask:
    """Hand ``task`` to QGIS's task manager (progress in the status bar, cancel from there)."""
    RUNNING.append(task)

    def forget(*_args) -> None:
        if task in RUNNING:
            RUNNING.remove(task)

    task.taskCompleted.connect(forget)
    task.taskTerminated.connect(forget)
    QgsApplication.taskManager().addTask(task)
    return task


def check_args(model: str | None, vae: str | None) -> list[str]:
    args = ["--check"]
    if model:
        args += ["--model", model]
    if vae:
        args += ["--vae", vae]
    return args


def run_check(
    python: str | None = None, model: str | None = None, vae: str | None = None, timeout: float = 120
) -> dict:
    """Run the check synchronously (tests, scripts); returns the worker's JSON or {"error": ...}."""
    command = worker_command(*check_args(model, vae), python=python)
    try:
        proc = subprocess.run(
            command,
            capture_output=True,
            encoding="utf-8",  # the worker writes UTF-8 (PYTHONIOENCODING), not the locale's code page
            errors="replace",
            env=worker_env(),
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else exc.stderr
        return timeout_result(command[0], command, timeout, stderr or "")
    except OSError as exc:
        return {"error": f"cannot run {command[0]}: {exc}", "command": " ".join(command)}
    return parse_check_output(proc.stdout, proc.stderr, proc.returncode, command)


def parse_check_output(stdout: str, stderr: str, returncode: int | None, command: list[str]) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    return {
        "error": f"the worker check failed (exit code {returncode})",
        "details": (stderr or stdout)[-3000:],
        "command": " ".join(command),
    }


def _mark(ok: bool, optional: bool = False) -> str:
    if ok:
        return '<span style="color:#1a7f37">✔</span>'
    return '<span style="color:#9a6700">●</span>' if optional else '<span style="color:#cf222e">✘</span>'


def timeout_result(python: str, command: list[str], seconds: float, stderr: str = "") -> dict:
    """The check's result when ``worker --check`` did not finish in ``seconds`` (and was killed)."""
    return {
        "error": f"the worker check did not finish in {seconds:g} s and was stopped "
        f"(worker Python: {python})",
        "hint": "The likely cause is a hang while importing torch or initialising the GPU: a broken or "
        "mismatched NVIDIA driver or CUDA install, or a package import that never returns. Run the "
        "command in a terminal to see where it stops; reinstall the GPU driver, or install the CPU "
        "build of torch in the worker environment, or choose another Python.",
        "details": stderr[-3000:],
        "command": " ".join(command),
    }


def render_check(check: dict) -> str:
    """HTML report of a worker check: one row per requirement, then the fix commands."""
    esc = html.escape
    if "error" in check:
        hint = check.get("hint") or (
            "Create the worker environment with the commands below, or choose another Python."
        )
        details = check.get("details", "")
        return (
            f"<p>{_mark(False)} <b>{esc(check['error'])}</b></p>"
            f"<p>Command: <code>{esc(check.get('command', ''))}</code></p>"
            + (f"<pre>{esc(details)}</pre>" if details else "")
            + f"<p>{esc(hint)}</p>"
        )
    packages = check.get("packages", {})
    cuda = check.get("cuda", {})
    model = check.get("model", {})
    vae = check.get("vae", {})
    rows = [
        (True, False, "Python", f"{check.get('python')} ({check.get('python_version')})"),
    ]
    for name in ("numpy", "rasterio", "geopandas", "pyogrio", "shapely", "pyproj"):
        rows.append((bool(packages.get(name)), False, name, packages.get(name) or "missing"))
    for name in ("torch", "transformers"):
        rows.append(
            (bool(packages.get(name)), False, name, packages.get(name) or "missing (PaliGemma engine only)")
        )
    gpu = cuda.get("device") if cuda.get("available") else ("Apple MPS" if cuda.get("mps") else None)
    rows.append((bool(gpu), True, "GPU", gpu or "none: PaliGemma runs on the CPU (slow)"))
    if model.get("value"):
        rows.append(
            (
                bool(model.get("found")),
                False,
                "Model",
                f"{model['value']}: {model.get('where') or 'not found locally'}",
            )
        )
    rows.append(
        (
            bool(vae.get("found")),
            False,
            "VAE codec",
            vae.get("where") or f"{vae.get('value') or 'vae-oid.npz'}: not found",
        )
    )
    body = "".join(
        f"<tr><td>{_mark(ok, optional)}</td><td><b>{esc(label)}</b></td><td>{esc(str(value))}</td></tr>"
        for ok, optional, label, value in rows
    )
    ready = check.get("ready", {})
    summary = (
        f"<p>Water-index engine: {_mark(bool(ready.get('water-index')))} &nbsp; "
        f"PaliGemma engine: {_mark(bool(ready.get('paligemma')))}</p>"
    )
    fixes = "".join(
        f"<li>{esc(fix['problem'])}<br><code>{esc(fix['command'])}</code></li>"
        for fix in check.get("fixes", [])
    )
    fixes_html = f"<p><b>To fix:</b></p><ol>{fixes}</ol>" if fixes else "<p>Nothing to fix.</p>"
    return f"{summary}<table cellspacing='4'>{body}</table>{fixes_html}"


class SetupCheckDialog(QDialog):
    """Choose the worker Python, check it, and see the commands that prepare it."""

    def __init__(
        self, model: str | None = None, vae: str | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.model = model
        self.vae = vae
        self.process: QProcess | None = None
        self.result: dict | None = None
        self.check_timer = QTimer(self)  # kills a check that hangs (CHECK_TIMEOUT_S)
        self.check_timer.setSingleShot(True)
        self.setWindowTitle("PaliGemma Water — worker setup")
        self.setMinimumSize(640, 520)
        layout = QVBoxLayout(self)
        intro = QLabel(
            "The model runs in a separate Python (the worker) so that QGIS never loads torch. "
            "Leave the field empty for the automatic choice: the plugin's own environment in the QGIS "
            f"profile ({managed_venv_dir()}) when it exists, else QGIS's Python."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.python_widget = QgsFileWidget()
        self.python_widget.setFilePath(configured_python())
        self.python_widget.lineEdit().setPlaceholderText(f"automatic: {worker_python()[0]}")
        form.addRow("Worker Python", self.python_widget)
        layout.addLayout(form)
        self.check_button = QPushButton("Check the worker")
        self.check_button.clicked.connect(self.start_check)
        layout.addWidget(self.check_button)
        self.report = QTextBrowser()
        self.report.setOpenExternalLinks(True)
        layout.addWidget(self.report, 1)
        commands_label = QLabel(
            "Commands that create the plugin's worker environment (run them in a terminal, "
            "or let the buttons below run them in the background):"
        )
        commands_label.setWordWrap(True)
        layout.addWidget(commands_label)
        self.commands = QPlainTextEdit("\n".join(setup_commands()))
        self.commands.setReadOnly(True)
        self.commands.setMaximumHeight(110)
        layout.addWidget(self.commands)
        fix_row = QHBoxLayout()
        self.venv_button = QPushButton("Create worker environment")
        self.venv_button.setToolTip(
            f"Runs the venv and pip install commands above in the background (progress and cancel in QGIS's "
            f"task bar), then uses {venv_python(managed_venv_dir())} as the worker Python. "
            "Downloads about 1 GB (torch) on the first run."
        )
        self.venv_button.clicked.connect(self.create_environment)
        self.weights_button = QPushButton("Download VAE weights")
        self.weights_button.setToolTip(
            "Runs 'weights download' in the worker Python (8.5 MB, sha256 checked)"
        )
        self.weights_button.clicked.connect(self.download_weights)
        fix_row.addWidget(self.venv_button)
        fix_row.addWidget(self.weights_button)
        fix_row.addStretch(1)
        layout.addLayout(fix_row)
        self.task: SetupTask | None = None
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Close
        )
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def python(self) -> str:
        return self.python_widget.filePath().strip() or worker_python()[0]

    def done(self, result: int) -> None:  # Save, Close and the window's X all end here
        self._stop_check()
        super().done(result)

    def _stop_check(self) -> None:
        """Stop a check still running: its handlers must not fire on a closed (deleted) page,
        nor overwrite the report of the check that replaced it or timed it out."""
        self.check_timer.stop()
        with contextlib.suppress(TypeError, RuntimeError):
            self.check_timer.timeout.disconnect()
        process, self.process = self.process, None
        if process is None:
            return
        for signal in (process.finished, process.errorOccurred):
            with contextlib.suppress(TypeError, RuntimeError):  # not connected / already gone
                signal.disconnect()
        with contextlib.suppress(RuntimeError):
            if process.state() != QProcess.ProcessState.NotRunning:
                process.kill()
                process.waitForFinished(2000)

    def save(self) -> None:
        set_configured_python(self.python_widget.filePath())
        self.accept()

    def create_environment(self) -> SetupTask | None:
        """Start the venv + pip task; when it succeeds its Python is the worker Python and is checked."""
        try:
            task = create_venv_task()
        except (FileNotFoundError, OSError) as exc:
            self.report.setHtml(
                f"<p><b>Cannot create the worker environment:</b> {html.escape(str(exc))}</p>"
            )
            return None
        return self._start(task, self._environment_created)

    def download_weights(self) -> SetupTask | None:
        """Start ``weights download`` in the chosen worker Python; the check runs again afterwards."""
        return self._start(download_weights_task(self.python()), self.start_check)

    def _start(self, task: SetupTask, on_done) -> SetupTask:
        self.task = task
        self.venv_button.setEnabled(False)
        self.weights_button.setEnabled(False)
        task.taskCompleted.connect(on_done)
        task.taskCompleted.connect(self._task_ended)
        task.taskTerminated.connect(self._task_ended)
        self.report.setHtml(
            f"<p>{html.escape(task.description())}: running in the background; follow it (or cancel it) "
            "in QGIS's task bar. Its output goes to the log panel, tab 'PaliGemma Water'.</p>"
        )
        return start_setup_task(task)

    def _task_ended(self) -> None:
        self.venv_button.setEnabled(True)
        self.weights_button.setEnabled(True)
        if self.task is not None and self.task.succeeded is False and self.task.error:
            self.report.setHtml(
                f"<p>{_mark(False)} <b>{html.escape(self.task.description())} failed:</b> "
                f"{html.escape(self.task.error)}</p><p>Details are in the log panel, tab 'PaliGemma Water'.</p>"
            )

    def _environment_created(self) -> None:
        self.python_widget.setFilePath(configured_python())
        self.start_check()

    def start_check(self) -> None:
        """Run ``worker --check`` without blocking QGIS; the report fills in when it ends, or says
        it hung after CHECK_TIMEOUT_S."""
        self._stop_check()  # a check still running would report over this one
        python = self.python()
        command = worker_command(*check_args(self.model, self.vae), python=python)
        self.report.setHtml(f"<p>Checking <code>{html.escape(' '.join(command))}</code> …</p>")
        self.check_button.setEnabled(False)
        process = QProcess(self)
        env = QProcessEnvironment()
        for key, value in worker_env().items():
            env.insert(key, value)
        process.setProcessEnvironment(env)
        process.finished.connect(lambda code, _status: self._check_done(process, command, code))
        process.errorOccurred.connect(lambda _err: self._check_failed(process, command))
        self.process = process
        timeout_s = CHECK_TIMEOUT_S
        self.check_timer.timeout.connect(lambda: self._check_timed_out(process, python, command, timeout_s))
        self.check_timer.start(int(timeout_s * 1000))
        process.start(command[0], command[1:])

    def _check_done(self, process: QProcess, command: list[str], code: int) -> None:
        if process is not self.process:  # stopped (timeout, close, new check): its report stands
            return
        self.check_timer.stop()
        stdout = bytes(process.readAllStandardOutput()).decode("utf-8", "replace")
        stderr = bytes(process.readAllStandardError()).decode("utf-8", "replace")
        self.show_result(parse_check_output(stdout, stderr, code, command))

    def _check_failed(self, process: QProcess, command: list[str]) -> None:
        if process is not self.process:
            return
        if process.error() == QProcess.ProcessError.FailedToStart:
            self.check_timer.stop()
            self.show_result({"error": f"cannot start {command[0]}", "command": " ".join(command)})

    def _check_timed_out(self, process: QProcess, python: str, command: list[str], timeout_s: float) -> None:
        if process is not self.process:
            return
        stderr = bytes(process.readAllStandardError()).decode("utf-8", "replace")  # where it stopped
        self._stop_check()
        self.show_result(timeout_result(python, command, timeout_s, stderr))

    def show_result(self, check: dict) -> None:
        self.result = check
        self.report.setHtml(render_check(check))
        self.check_button.setEnabled(True)
