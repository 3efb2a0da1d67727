"""Worker setup: which Python runs the worker, is it ready, and buttons (and commands) that fix it.

Runs ``<python> -m paligemma_qgis worker --check`` (a QProcess, so QGIS stays responsive while
torch imports; killed after CHECK_TIMEOUT_S, as a broken GPU driver can hang it) and shows
packages, CUDA/GPU, model and VAE with a fix per gap; a button does what one can (setup_fixes:
install what is missing, the VAE weights, the model), said with its size first (setup_plan). The
Ray address sends segment runs to a Ray cluster (trusted once, ray_trust); the Hugging Face token
goes to QGIS's authentication database (hf_token). "Copy diagnostics" is for a bug report.
"""

from __future__ import annotations

import contextlib
import html

from qgis.core import QgsApplication
from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget
from qgis.PyQt.QtCore import QProcess, QProcessEnvironment, QTimer
from qgis.PyQt.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from . import ray_trust
from .check_report import (  # noqa: F401 - run_check and render_check: also this page's API
    CHECK_TIMEOUT_S,
    _mark,
    check_args,
    parse_check_output,
    render_check,
    run_check,
    timeout_result,
)
from .diagnostics import diagnostics_text
from .first_run import Preflight
from .hf_token import TokenField, stored_id
from .options import DEFAULT_MODEL
from .setup_fixes import INSTALL, MODEL, VAE, fixes, model_steps
from .setup_plan import model_download_text, plan_setup, torch_build
from .setup_tasks import SetupTask, download_weights_task
from .worker_env import (
    configured_python,
    managed_venv_dir,
    qgis_python,
    ray_address,
    ray_address_problem,
    set_configured_python,
    set_ray_address,
    setup_commands,
    system_python,
    venv_python,
    worker_command,
    worker_env,
    worker_python,
)

# Setup tasks outlive the dialog that started them: keep them referenced until they end.
RUNNING: list[SetupTask] = []


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
        self.setMinimumSize(700, 600)  # fits a 1366x768 screen with QGIS's title bar
        layout = QVBoxLayout(self)
        qgis_py, found = qgis_python()
        intro = QLabel(
            "The model runs in a separate Python (the worker) so that QGIS never loads torch. "
            "Leave the field empty for the automatic choice: the plugin's own environment in the QGIS "
            f"profile ({managed_venv_dir()}) when it exists, else the Python QGIS runs on ({qgis_py}"
            + ("" if found else ", guessed: QGIS's own was not found")
            + "). The first Run offers to set up what is missing."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.python_widget = QgsFileWidget()
        self.python_widget.setFilePath(configured_python())
        self.python_widget.lineEdit().setPlaceholderText(f"automatic: {worker_python()[0]}")
        form.addRow("Worker Python", self.python_widget)
        self.ray_edit = QLineEdit(ray_address())
        self.ray_edit.setObjectName("paligemmaRayAddress")
        self.ray_edit.setPlaceholderText("empty: map on this computer · local · auto · ray://host:10001")
        self.ray_edit.setToolTip(
            "Send 'Map water' runs to Ray: ray://host:10001 (a GPU server's Ray Client port), host:6379 "
            "(a cluster's head), auto (the cluster this computer belongs to) or local (a Ray on this "
            "computer, for its GPUs). The rasters must be readable there (shared storage, /vsis3/ ...); "
            "the cluster must run the worker's Ray and Python versions. The layers come back to QGIS."
        )
        form.addRow("Ray address", self.ray_edit)
        self.token_field = TokenField()
        form.addRow("Hugging Face token", self.token_field)
        layout.addLayout(form)
        self.check_button = QPushButton("Check the worker")
        self.check_button.clicked.connect(self.start_check)
        layout.addWidget(self.check_button)
        self.report = QTextBrowser()
        self.report.setOpenExternalLinks(True)
        layout.addWidget(self.report, 1)
        # The commands behind "Create worker environment", for a terminal: collapsed, so the
        # report keeps the room.
        commands_box = QgsCollapsibleGroupBox("Commands that create the worker environment (for a terminal)")
        commands_box.setObjectName("paligemmaSetupCommands")
        commands_box.setSaveCollapsedState(False)
        commands_layout = QVBoxLayout(commands_box)
        self.commands = QPlainTextEdit("\n".join(setup_commands()))
        self.commands.setReadOnly(True)
        self.commands.setMaximumHeight(120)
        commands_layout.addWidget(self.commands)
        commands_box.setCollapsed(True)
        self.commands_box = commands_box
        layout.addWidget(commands_box)
        fix_row = self._fix_row()
        self.copy_when_checked = False
        self.preflight: Preflight | None = None
        self.question: QMessageBox | None = None
        layout.addLayout(fix_row)
        self.task: SetupTask | None = None
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Close
        )
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def _fix_row(self) -> QHBoxLayout:
        """The buttons that fix what a check finds (shown when it finds it), Create and Copy diagnostics."""
        fix_row = QHBoxLayout()
        self.venv_button = QPushButton("Create worker environment")
        self.venv_button.setToolTip(
            f"Runs the venv and pip install commands above in the background (progress and cancel in QGIS's "
            f"task bar), then uses {venv_python(managed_venv_dir())} as the worker Python. Says first what "
            "it downloads: torch in the build for this machine (CUDA with an NVIDIA GPU)."
        )
        self.venv_button.clicked.connect(self.create_environment)
        self.weights_button = QPushButton("Download VAE weights")
        self.weights_button.setToolTip(
            "Runs 'weights download' in the worker Python (8.5 MB, sha256 checked)"
        )
        self.weights_button.clicked.connect(self.download_weights)
        self.diagnostics_button = QPushButton("Copy diagnostics")
        self.diagnostics_button.setToolTip(
            "Copies QGIS, Python, package, torch/CUDA/GPU (free memory), model and VAE details to the "
            "clipboard, for a bug report (checks the worker first when it was not checked yet)"
        )
        self.diagnostics_button.clicked.connect(self.copy_diagnostics)
        # The fixes a button can do, shown after a check finds the gap (setup_fixes).
        self.install_button = QPushButton("Install what is missing")
        self.install_button.setToolTip(
            "Installs the packages the worker lacks, in the background, after saying what it downloads"
        )
        self.install_button.clicked.connect(self.install_missing)
        self.model_button = QPushButton("Download the model")
        self.model_button.setToolTip(
            "Downloads the PaliGemma model into the Hugging Face cache, with the token given above "
            "(Google's models are gated: accept the licence on the model's page first)"
        )
        self.model_button.clicked.connect(self.download_model)
        for button in (self.install_button, self.model_button):
            button.setVisible(False)
        fix_row.addWidget(self.install_button)
        fix_row.addWidget(self.weights_button)
        fix_row.addWidget(self.model_button)
        fix_row.addStretch(1)
        fix_row.addWidget(self.venv_button)
        fix_row.addWidget(self.diagnostics_button)
        return fix_row

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
        """Save the choices; a new Ray cluster address is confirmed as trusted first (asked here)."""
        address = self.ray_address()
        problem = ray_address_problem(address) or self.token_field.save()
        if problem:
            self.report.setHtml(f"<p>{_mark(False)} <b>{html.escape(problem)}</b></p>")
            return
        if (
            address != ray_address()
            and ray_trust.needs_trust(address)
            and ray_trust.trusted(address) is not True
        ):
            box = ray_trust.trust_question(self, address)
            self.question = box

            def answered(_result: int) -> None:
                self.question = None
                yes = box.clickedButton() is box.button(QMessageBox.StandardButton.Yes)
                ray_trust.remember(address, yes)
                box.deleteLater()
                if yes:
                    self._commit(address)
                else:
                    self.report.setHtml(
                        f"<p>{_mark(False)} {html.escape(ray_trust.refused_text(address))}</p>"
                    )

            box.finished.connect(answered)
            box.open()
            return
        self._commit(address)

    def _commit(self, address: str) -> None:
        set_configured_python(self.python_widget.filePath())
        set_ray_address(address)
        self.accept()

    def ray_address(self) -> str:
        """The Ray address as typed here (saved with Save)."""
        return self.ray_edit.text().strip()

    def create_environment(self) -> None:
        """Ask QGIS's Python what this machine has (GPU), say what will be installed, then do it."""
        self.venv_button.setEnabled(False)
        self.report.setHtml("<p>Looking at this machine (Python, NVIDIA GPU) …</p>")
        preflight = Preflight(system_python(), "paligemma", parent=self)
        self.preflight = preflight
        preflight.done.connect(self._plan_environment)
        preflight.start()

    def install_missing(self) -> None:
        """What the checked worker Python lacks, installed as the first Run would (asked first)."""
        self.install_button.setEnabled(False)
        source = "settings" if self.python_widget.filePath().strip() else worker_python()[1]
        executor = "ray" if self.ray_address() else "local"
        preflight = Preflight(self.python(), "paligemma", self.model, self.vae, self, executor=executor)
        self.preflight = preflight
        preflight.done.connect(lambda probe: self._plan_environment(probe, source))
        preflight.start()

    def download_model(self) -> SetupTask | None:
        """Download the checked model into the Hugging Face cache (the check runs again afterwards)."""
        model = str((self.result or {}).get("model", {}).get("value") or self.model or "")
        try:
            steps = model_steps(self.python(), model)
        except ValueError as exc:
            self.report.setHtml(f"<p>{_mark(False)} {html.escape(str(exc))}</p>")
            return None
        return self._start(SetupTask(f"Download the model {model}", steps), self.start_check)

    def _plan_environment(self, probe: dict, source: str = "QGIS python") -> None:
        self.preflight = None
        self.venv_button.setEnabled(True)
        self.install_button.setEnabled(True)
        if "error" in probe:
            self.report.setHtml(
                f"<p>{_mark(False)} <b>The Python {html.escape(str(probe.get('python') or system_python()))} "
                f"does not answer:</b> {html.escape(probe['error'])}</p>"
            )
            return
        plan = plan_setup(
            {**probe, "needs": [*probe.get("needs", []), *(["region"] if self.ray_address() else [])]},
            "paligemma",
            source,
            with_vae=not (probe.get("vae") or {}).get("found"),
        )
        found = (probe.get("model") or {}).get("found") or (probe.get("model") or {}).get("local")
        download = "" if found else model_download_text(self.model or DEFAULT_MODEL, bool(stored_id()))
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "PaliGemma Water — worker setup",
            "Create the worker environment?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            self,
        )
        box.setObjectName("paligemmaCreateQuestion")
        box.setInformativeText(
            plan.describe()
            + (f"\n\n{download}" if download else "")
            + "\n\nProgress and Cancel are in QGIS's task bar."
        )
        self.question = box

        def answered(_result: int) -> None:
            self.question = None
            if box.clickedButton() is box.button(QMessageBox.StandardButton.Yes):
                task = SetupTask(
                    "Create the PaliGemma worker environment",
                    plan.steps,
                    on_success=lambda: set_configured_python(plan.python),
                    remove_on_failure=[plan.create_venv] if plan.create_venv is not None else [],
                )
                self._start(task, self._environment_created)
            box.deleteLater()

        box.finished.connect(answered)
        box.open()

    def copy_diagnostics(self) -> str | None:
        """Put the diagnostics on the clipboard (after a check when none ran yet); returns the text."""
        if self.result is None:
            self.copy_when_checked = True
            if self.process is None:
                self.start_check()
            return None
        text = diagnostics_text(self.result, self.python(), self._source(), self.ray_address())
        QApplication.clipboard().setText(text)
        self.diagnostics_button.setText("Copied ✔")
        return text

    def _source(self) -> str:
        return "chosen here" if self.python_widget.filePath().strip() else worker_python()[1]

    def download_weights(self) -> SetupTask | None:
        """Start ``weights download`` in the chosen worker Python; the check runs again afterwards."""
        return self._start(download_weights_task(self.python()), self.start_check)

    def _start(self, task: SetupTask, on_done) -> SetupTask:
        self.task = task
        for button in (self.venv_button, self.weights_button, self.install_button, self.model_button):
            button.setEnabled(False)
        task.taskCompleted.connect(on_done)
        task.taskCompleted.connect(self._task_ended)
        task.taskTerminated.connect(self._task_ended)
        self.report.setHtml(
            f"<p>{html.escape(task.description())}: running in the background; follow it (or cancel it) "
            "in QGIS's task bar. Its output goes to the log panel, tab 'PaliGemma Water'.</p>"
        )
        return start_setup_task(task)

    def _task_ended(self) -> None:
        for button in (self.venv_button, self.weights_button, self.install_button, self.model_button):
            button.setEnabled(True)
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
        executor = "ray" if self.ray_address() else "local"
        command = worker_command(*check_args(self.model, self.vae, executor), python=python)
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
        self.report.setHtml(render_check(check, self.ray_address()))
        self.check_button.setEnabled(True)
        can_fix = fixes(check, self.ray_address())
        self.install_button.setVisible(INSTALL in can_fix)
        self.model_button.setVisible(MODEL in can_fix)
        self.weights_button.setVisible("error" in check or VAE in can_fix)
        gpu = check.get("gpu")
        if isinstance(gpu, dict) and "error" not in check:  # the commands name the torch build for it
            build = torch_build(str(check.get("system")), str(check.get("machine")), gpu)
            self.commands.setPlainText("\n".join(setup_commands(build.index_url)))
        if self.copy_when_checked:
            self.copy_when_checked = False
            self.copy_diagnostics()
