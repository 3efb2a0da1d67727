"""What the "Map water" and "Export training data" dialogs do when Run is pressed.

1. ``validate``: problems the dialog can see (file missing, band out of range ...), in
   the dialog's message bar, in its words.
2. Band roles the engine needs but nobody said (a 4-band raster without descriptions):
   the band question (band_roles), answered into the dialog's own band fields.
3. The worker Python, probed in the background (first_run.Preflight): if it lacks
   packages, "Set up the worker now?" and the run starts after the setup; if the VAE file
   is missing, the VAE field's Download… is named.
4. The run: the plugin's old messages leave the bar, the job goes to a WorkerTask, the
   dialog closes.

A subclass gives ``validate``, ``build_job``, ``save_settings``, ``task_names``,
``probe_engine``, ``probe_executor``, ``band_question`` and ``apply_bands``.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsRasterLayer
from qgis.gui import QgsMessageBar
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QDialog, QMessageBox, QPushButton, QWidget

from .band_roles import BandRolesDialog
from .error_text import SEGMENT_DIALOG, FrontEnd, translate
from .first_run import Preflight, describe_python, keep, setup_question, setup_then_run
from .messages import clear_messages, push_message
from .setup_plan import plan_setup
from .task import WorkerTask
from .worker_env import ENV_PYTHON, worker_python


class JobDialog(QDialog):
    """The common part of both dialogs: checks in order, then a WorkerTask (see the module doc)."""

    ERROR_TITLE = "Cannot run"
    FRONT: FrontEnd = SEGMENT_DIALOG  # its words for errors (error_text)

    def __init__(self, iface, parent: QWidget | None, title: str) -> None:
        super().__init__(
            parent if parent is not None else (iface.mainWindow() if iface is not None else None)
        )
        self.iface = iface
        self.task = None  # the WorkerTask, or the setup task the run waits for
        self.errors: list[str] = []
        self.setWindowTitle(title)
        self.message_bar = QgsMessageBar(self)
        self.run_button: QPushButton | None = None  # the subclass's Run/Export button
        self.preflight: Preflight | None = None
        self.band_dialog: BandRolesDialog | None = None
        self.setup_box: QMessageBox | None = None

    # ---------------------------------------------------------------- the subclass's part
    def validate(self) -> list[str]:
        raise NotImplementedError

    def build_job(self, temp_dir: Path | None = None) -> dict:
        raise NotImplementedError

    def save_settings(self) -> None:
        raise NotImplementedError

    def task_names(self) -> tuple[str, str]:
        """(task description, layer group name) of the task ``run`` starts."""
        raise NotImplementedError

    def probe_engine(self) -> tuple[str, str | None, str | None]:
        """(what the run needs: "water-index", "paligemma" or "export", model, VAE) for the probe."""
        raise NotImplementedError

    def probe_executor(self) -> str:
        """Where the run goes: "ray" (Worker setup's Ray address; the worker then needs Ray) or "local"."""
        return "local"

    def band_question(self) -> tuple[QgsRasterLayer | None, list[str]]:
        """(the raster layer, the band roles to ask for); no roles: nothing to ask."""
        return None, []

    def apply_bands(self, roles: dict[str, int]) -> None:
        """Put the answer of the band question into the dialog's band fields."""

    def done(self, result: int) -> None:  # Close, Esc, the window's X, and accept() all end here
        """A dialog closed while the worker check runs must not start the run afterwards."""
        if self.preflight is not None:
            preflight, self.preflight = self.preflight, None
            preflight.done.disconnect()
            preflight.stop()
        super().done(result)

    # ---------------------------------------------------------------- size
    def fit(self) -> None:
        """As high as the contents need (rows hidden or shown, a message), never narrower.

        Not adjustSize(): that caps a window at 2/3 of the screen, which squeezes the labels.
        """
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            hint = self.sizeHint()
            width = max(self.width(), hint.width()) if self.isVisible() else hint.width()
            layout = self.layout()
            height = hint.height()
            if layout is not None and layout.hasHeightForWidth():  # wrapped text is taller when narrow
                height = max(height, layout.totalHeightForWidth(width))
            self.resize(width, height)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        QTimer.singleShot(0, self.fit)

    # ---------------------------------------------------------------- messages
    def show_errors(self, errors: list[str]) -> None:
        self.message_bar.clearWidgets()
        for error in reversed(errors):
            self.message_bar.pushMessage(self.ERROR_TITLE, error, Qgis.MessageLevel.Warning, 0)
        QTimer.singleShot(0, self.fit)

    def _busy(self, text: str | None) -> None:
        """Say what is being checked (None: done) and keep Run from starting a second time."""
        if self.run_button is not None:
            self.run_button.setEnabled(text is None)
        self.message_bar.clearWidgets()
        if text:
            self.message_bar.pushMessage("", text, Qgis.MessageLevel.Info, 0)

    # ---------------------------------------------------------------- Run
    def run(self) -> None:
        """Run pressed: the checks above in order; the run itself starts when they pass."""
        if self.preflight is not None:
            return
        errors = self.validate()
        if errors:
            self.show_errors(errors)
            return
        layer, roles = self.band_question()
        if roles and layer is not None:
            self._ask_bands(layer, roles)
            return
        self._check_worker()

    def _ask_bands(self, layer: QgsRasterLayer, roles: list[str]) -> None:
        dialog = BandRolesDialog(layer, roles, self)
        self.band_dialog = dialog

        def answered(result: int) -> None:
            self.band_dialog = None
            if result == QDialog.DialogCode.Accepted:
                self.apply_bands(dialog.chosen())
                self.run()  # validate again: the answer is now part of the choices
            else:
                self.show_errors(["Run stopped: the bands the engine needs are not known."])
            dialog.deleteLater()

        dialog.finished.connect(answered)
        dialog.open()

    def _check_worker(self) -> None:
        self.save_settings()
        python, source = worker_python()
        engine, model, vae = self.probe_engine()
        self._busy(f"Checking the worker Python {python} …")
        preflight = Preflight(python, engine, model, vae, self, executor=self.probe_executor())
        self.preflight = preflight
        preflight.done.connect(lambda probe: self._worker_checked(probe, python, source, engine))
        preflight.start()

    def _worker_checked(self, probe: dict, python: str, source: str, engine: str) -> None:
        self.preflight = None
        self._busy(None)
        if "error" in probe:
            self.show_errors(
                [
                    f"The worker Python {describe_python(python, source)} does not answer: {probe['error']}. "
                    "Choose another in Worker setup…"
                ]
            )
            return
        if not probe.get("ready"):
            if source == "environment":
                self.show_errors(
                    [
                        f"The worker Python {python} (set by {ENV_PYTHON}) lacks "
                        + ", ".join(p for group in probe["needs"] for p in probe["missing"].get(group, []))
                        + f": install them there, or unset {ENV_PYTHON} to let the plugin set up its own."
                    ]
                )
                return
            self._offer_setup(probe, python, source, engine)
            return
        vae = probe.get("vae") or {}
        if engine in ("paligemma", "export") and vae.get("known") and not vae.get("found"):
            self.show_errors([translate("", {"code": "vae_missing", "field": "vae"}, {}, self.FRONT)])
            return
        task = self.start_task(python)
        model = probe.get("model") or {}
        if engine == "paligemma" and model and not model.get("found") and not model.get("local"):
            push_message(
                self.iface,
                f"{task.description()}: the model is not on this computer yet; this first run downloads it "
                "(several GB) before mapping.",
                Qgis.MessageLevel.Info,
            )

    def _offer_setup(self, probe: dict, python: str, source: str, engine: str) -> None:
        plan = plan_setup(probe, engine, source)
        box = setup_question(self, plan, probe, python, source)
        self.setup_box = box

        def answered(_result: int) -> None:
            self.setup_box = None
            if box.clickedButton() is box.button(QMessageBox.StandardButton.Yes):
                self._setup_and_run(plan)
            else:
                self.show_errors(
                    ["The worker is not set up yet: Run again to set it up, or see Worker setup…"]
                )
            box.deleteLater()

        box.finished.connect(answered)
        box.open()

    # ---------------------------------------------------------------- starting
    def _job(self) -> tuple[dict, Path] | None:
        """(job, its temp folder), or None when the job cannot be built (said in the bar)."""
        temp_dir = Path(tempfile.mkdtemp(prefix="paligemma_qgis_"))
        try:
            return self.build_job(temp_dir), temp_dir
        except ValueError as exc:
            shutil.rmtree(temp_dir, ignore_errors=True)
            self.show_errors([str(exc)])
            return None

    def _worker_task(self, job: dict, temp_dir: Path, python: str) -> WorkerTask:
        description, group_name = self.task_names()
        return WorkerTask(
            description, job, python=python, group_name=group_name, iface=self.iface, cleanup=[temp_dir]
        )

    def start_task(self, python: str | None = None) -> WorkerTask | None:
        """Start the run now with ``python`` (default: the worker Python) and close the dialog."""
        built = self._job()
        if built is None:
            return None
        clear_messages(self.iface)  # a new run: the old messages no longer tell the truth
        task = self._worker_task(*built, python or worker_python()[0])
        self.task = task
        QgsApplication.taskManager().addTask(task)
        self.accept()
        return task

    def _setup_and_run(self, plan) -> None:
        """The setup task now, the run when it has succeeded (``setup.followed_by``); the dialog closes."""
        built = self._job()
        if built is None:
            return
        job, temp_dir = built
        description, group_name = self.task_names()  # now: the dialog is gone when the setup ends
        iface = self.iface
        clear_messages(iface)
        setup = None

        def run(python: str) -> None:
            task = WorkerTask(
                description, job, python=python, group_name=group_name, iface=iface, cleanup=[temp_dir]
            )
            keep(task)
            setup.followed_by = task
            QgsApplication.taskManager().addTask(task)

        setup = setup_then_run(
            plan, run, on_failure=lambda: shutil.rmtree(temp_dir, ignore_errors=True), iface=iface
        )
        setup.followed_by = None
        self.task = setup
        self.accept()
