"""What the "Map water" and "Export training data" dialogs do when Run is pressed.

1. ``validate``: problems the dialog can see (file missing, band out of range ...), in
   the dialog's message bar, in its words.
2. A Ray cluster not confirmed yet: "trust it like code on this computer?" (ray_trust), once
   per address.
3. Band roles the engine needs but nobody said (a 4-band raster without descriptions):
   the band question (band_roles), answered into the dialog's own band fields (a sensor's
   band order becomes the Preset).
4. The worker Python, probed in the background (first_run.Preflight): if it lacks
   packages, "Set up the worker now?" (or, for PaliGemma, use the water index) and the run
   starts after the setup; if the VAE file is missing, a Download button says so.
5. An interrupted run of other rasters in the output: Continue it / Start over / Cancel
   (interrupted.py).
6. The run: the plugin's old messages leave the bar, the job goes to a WorkerTask (with the
   Hugging Face token for a run that downloads the model), the dialog closes.

A subclass gives ``validate``, ``build_job``, ``save_settings``, ``task_names``,
``probe_engine``, ``probe_executor``, ``band_question`` and ``apply_bands``; it lays its
fields out in ``self.body`` (they scroll past fitting.MAX_HEIGHT).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsRasterLayer
from qgis.gui import QgsMessageBar
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QDialog, QMessageBox, QPushButton, QVBoxLayout, QWidget

from . import hf_token, interrupted, ray_trust
from .band_roles import BandRolesDialog
from .error_text import SEGMENT_DIALOG, FrontEnd, translate
from .first_run import Preflight, describe_python, keep, setup_question, setup_then_run
from .fitting import MAX_HEIGHT, ScrollBody
from .messages import clear_messages, push_item, push_message
from .setup_plan import plan_setup
from .task import WorkerTask
from .worker_env import ENV_PYTHON, ray_address, worker_python

SHOWN_ERRORS = 3  # message bar items a dialog shows; the rest are behind the last one's Details…
Built = tuple[dict, Path]  # (job, its temp folder)


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
        self.journal_check: interrupted.Guard | None = None
        self.band_dialog: BandRolesDialog | None = None
        self.setup_box: QMessageBox | None = None
        self.question_box: QMessageBox | None = None  # the Ray or interrupted-run question, while open
        self.scroll_body = ScrollBody(self)

    def body(self, layout: QVBoxLayout) -> QVBoxLayout:
        """Add the scrolling body to the dialog's ``layout``; the subclass puts its groups in it."""
        layout.addWidget(self.scroll_body, 1)
        return self.scroll_body.fields

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

    def apply_bands(self, roles: dict[str, int], preset: str | None = None) -> None:
        """Put the answer of the band question into the dialog's band fields (a sensor: the Preset)."""

    def use_water_index(self) -> bool:
        """Switch the dialog to the water index engine (the setup question's offer); False: none."""
        return False

    def done(self, result: int) -> None:  # Close, Esc, the window's X, and accept() all end here
        """A dialog closed while a check runs must not start the run afterwards."""
        for name, signal in (("preflight", "done"), ("journal_check", "decided")):
            check = getattr(self, name)
            if check is not None:
                setattr(self, name, None)
                with contextlib.suppress(TypeError, RuntimeError):
                    getattr(check, signal).disconnect()
                check.stop()
        super().done(result)

    # ---------------------------------------------------------------- size
    def fit(self) -> None:
        """As high as the contents need (rows hidden or shown, a message) up to MAX_HEIGHT (the
        fields scroll beyond), never narrower.

        Not adjustSize(): that caps a window at 2/3 of the screen, which squeezes the labels.
        """
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            self.scroll_body.updateGeometry()
            layout = self.layout()
            if layout is not None:
                layout.invalidate()
            hint = self.sizeHint()
            width = max(self.width(), hint.width()) if self.isVisible() else hint.width()
            height = hint.height()
            if layout is not None and layout.hasHeightForWidth():  # wrapped text is taller when narrow
                height = max(height, layout.totalHeightForWidth(width))
            self.resize(width, min(height, MAX_HEIGHT))

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        QTimer.singleShot(0, self.fit)

    # ---------------------------------------------------------------- messages
    def show_errors(self, errors: list[str], buttons=()) -> None:
        """The first errors, one line each (Details… holds a long one whole); more behind the last."""
        self.message_bar.clearWidgets()
        shown = errors[:SHOWN_ERRORS]
        rest = errors[SHOWN_ERRORS:]
        if rest:
            push_item(
                self.message_bar,
                self.ERROR_TITLE,
                f"and {len(rest)} more problem{'s' if len(rest) > 1 else ''}",
                Qgis.MessageLevel.Warning,
                details="\n\n".join(errors),
            )
        for index, error in reversed(list(enumerate(shown))):
            push_item(
                self.message_bar,
                self.ERROR_TITLE,
                error,
                Qgis.MessageLevel.Warning,
                buttons=buttons if index == 0 else (),
            )
        QTimer.singleShot(0, self.fit)

    def _busy(self, text: str | None) -> None:
        """Say what is being checked (None: done) and keep Run from starting a second time."""
        if self.run_button is not None:
            self.run_button.setEnabled(text is None)
        self.message_bar.clearWidgets()
        if text:
            push_item(self.message_bar, "", text, Qgis.MessageLevel.Info)

    # ---------------------------------------------------------------- Run
    def run(self) -> None:
        """Run pressed: the checks above in order; the run itself starts when they pass."""
        if self.preflight is not None or self.journal_check is not None:
            return
        errors = self.validate()
        if errors:
            self.show_errors(errors)
            return
        if not self._cluster_trusted():
            return
        layer, roles = self.band_question()
        if roles and layer is not None:
            self._ask_bands(layer, roles)
            return
        self._check_worker()

    def _cluster_trusted(self) -> bool:
        """True when the run may go where it goes; else asks once (or says it was declined)."""
        address = ray_address() if self.probe_executor() == "ray" else ""
        answer = ray_trust.trusted(address)
        if answer:
            return True
        if answer is False:
            self.show_errors([ray_trust.refused_text(address)])
            return False
        box = ray_trust.trust_question(self, address)
        self.question_box = box

        def answered(_result: int) -> None:
            self.question_box = None
            yes = box.clickedButton() is box.button(QMessageBox.StandardButton.Yes)
            ray_trust.remember(address, yes)
            box.deleteLater()
            if yes:
                self.run()
            else:
                self.show_errors([ray_trust.refused_text(address)])

        box.finished.connect(answered)
        box.open()
        return False

    def _ask_bands(self, layer: QgsRasterLayer, roles: list[str]) -> None:
        dialog = BandRolesDialog(layer, roles, self)
        self.band_dialog = dialog

        def answered(result: int) -> None:
            self.band_dialog = None
            if result == QDialog.DialogCode.Accepted:
                self.apply_bands(dialog.chosen(), dialog.chosen_preset())
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
                ],
                buttons=[("Worker setup…", self.open_setup)],
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
            download = getattr(getattr(self, "vae_widget", None), "download", None)
            self.show_errors(  # the fix is a button on the message: the VAE field's Download
                [translate("", {"code": "vae_missing", "field": "vae"}, {}, self.FRONT)],
                buttons=[("Download", download)] if download is not None else (),
            )
            return
        self._before_start(python, probe, engine)

    def _offer_setup(self, probe: dict, python: str, source: str, engine: str) -> None:
        plan = plan_setup(probe, engine, source)
        geo_ready = not (probe.get("missing") or {}).get("geo")
        offer_index = engine == "paligemma" and geo_ready
        box = setup_question(
            self, plan, probe, python, source, water_index=offer_index, model=self.probe_engine()[1]
        )
        self.setup_box = box

        def answered(_result: int) -> None:
            self.setup_box = None
            clicked = box.clickedButton()
            if clicked is box.button(QMessageBox.StandardButton.Yes):
                self._setup_and_run(plan)
            elif (
                offer_index and clicked is getattr(box, "water_index_button", None) and self.use_water_index()
            ):
                self.run()
            else:
                self.show_errors(
                    ["The worker is not set up yet: Run again to set it up, or see Worker setup…"],
                    buttons=[("Worker setup…", self.open_setup)],
                )
            box.deleteLater()

        box.finished.connect(answered)
        box.open()

    def open_setup(self) -> None:
        """Worker setup, from the dialog (the subclass passes its model and VAE)."""

    # ---------------------------------------------------------------- an interrupted run
    def _before_start(self, python: str, probe: dict, engine: str) -> None:
        """Start the run, after asking about an interrupted run of other choices in its output."""
        built = self._job()
        if built is None:
            return
        job = built[0]
        output = (job.get("options") or {}).get("output") if job.get("task") == "segment" else None
        if not interrupted.journal_beside(output):
            self._start(built, python, probe, engine)
            return
        self._busy("Looking at the interrupted run in the output …")
        guard = interrupted.Guard(self, python, job)
        self.journal_check = guard

        def decided(choice: str, chosen: dict | None, names) -> None:
            self.journal_check = None
            self._busy(None)
            if chosen is None:
                shutil.rmtree(built[1], ignore_errors=True)
                self.show_errors(
                    [
                        "Run stopped: the interrupted run is kept. Choose another GeoPackage to map these choices."
                    ]
                )
                return
            self._start((chosen, built[1]), python, probe, engine, names)

        guard.decided.connect(decided)
        guard.asking.connect(lambda: self._busy(None))  # the question says it now
        guard.start()

    # ---------------------------------------------------------------- starting
    def _job(self) -> Built | None:
        """(job, its temp folder), or None when the job cannot be built (said in the bar)."""
        temp_dir = Path(tempfile.mkdtemp(prefix="paligemma_qgis_"))
        try:
            return self.build_job(temp_dir), temp_dir
        except ValueError as exc:
            shutil.rmtree(temp_dir, ignore_errors=True)
            self.show_errors([str(exc)])
            return None

    def _start(self, built: Built, python: str, probe: dict, engine: str, names=None) -> None:
        task = self.start_task(python, built, names)
        model = probe.get("model") or {}
        if (
            task is not None
            and engine == "paligemma"
            and model
            and not model.get("found")
            and not model.get("local")
        ):
            push_message(
                self.iface,
                "The model is not on this computer yet: this first run downloads it (several GB) "
                "before mapping.",
                Qgis.MessageLevel.Info,
                title=task.description(),
            )

    def _worker_task(self, job: dict, temp_dir: Path, python: str, names=None) -> WorkerTask:
        return make_task(job, temp_dir, python, names or self.task_names(), self.iface)

    def start_task(
        self, python: str | None = None, built: Built | None = None, names=None
    ) -> WorkerTask | None:
        """Start the run now with ``python`` (default: the worker Python) and close the dialog."""
        built = built or self._job()
        if built is None:
            return None
        clear_messages(self.iface)  # a new run: the old messages no longer tell the truth
        task = self._worker_task(*built, python or worker_python()[0], names)
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
        names = self.task_names()  # now: the dialog is gone when the setup ends
        iface = self.iface
        clear_messages(iface)
        setup = None

        def run(python: str) -> None:
            task = make_task(job, temp_dir, python, names, iface)
            keep(task)
            setup.followed_by = task
            QgsApplication.taskManager().addTask(task)

        setup = setup_then_run(
            plan, run, on_failure=lambda: shutil.rmtree(temp_dir, ignore_errors=True), iface=iface
        )
        setup.followed_by = None
        self.task = setup
        self.accept()


def make_task(job: dict, temp_dir: Path, python: str, names: tuple[str, str | None], iface) -> WorkerTask:
    """The WorkerTask of a job (remembered for "Continue it"; a PaliGemma run gets the Hugging Face
    token in its worker's environment, for this run only)."""
    description, group_name = names
    interrupted.remember_job(job, description, group_name)
    options = job.get("options") or {}
    uses_model = job.get("task") == "segment" and options.get("engine") == "paligemma"
    return WorkerTask(
        description,
        job,
        python=python,
        group_name=group_name,
        iface=iface,
        cleanup=[temp_dir],
        env=hf_token.run_env(uses_model),
    )
