"""An interrupted run in the output: continue it, start over, or leave it — asked, never decided alone.

A segment run that is stopped keeps its finished scenes in a journal beside the output; the
same job run again continues from there. A run of other rasters or options into that output
would start over and throw the kept work away: before such a run the dialog asks "An
interrupted run of other rasters is in this file: Continue it / Start over / Cancel".

Whether the journal is "the same run" is the core's to say (``worker --journal``: the job's
scenes and the journal's keyed fingerprint; QGIS imports no core module), asked in a QProcess
so QGIS stays responsive. "Continue it" needs the interrupted job itself: the plugin keeps
the last job it started into each output (``remember_job``, in QgsSettings; never one whose
inputs carry credentials).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
from pathlib import Path

from qgis.core import QgsSettings
from qgis.PyQt.QtCore import QObject, Qt, pyqtSignal
from qgis.PyQt.QtWidgets import QMessageBox, QWidget

from ..core.redact import redact
from .worker_env import SETTINGS_GROUP, worker_command, worker_env
from .worker_question import WorkerQuestion

RUNS_GROUP = f"{SETTINGS_GROUP}/runs"
CHECK_TIMEOUT_S = 120.0
CONTINUE, START_OVER, CANCEL = "continue", "start over", "cancel"


def journal_beside(output: str | None) -> bool:
    """Whether a run journal lies beside ``output`` (a file check, before asking the worker)."""
    return bool(output) and Path(f"{output}.journal").exists()


def _key(output: str) -> str:
    resolved = str(Path(output).expanduser().resolve())
    return f"{RUNS_GROUP}/{hashlib.sha256(resolved.encode()).hexdigest()[:16]}"


def _inputs(job: dict) -> list[str]:
    raster = (job.get("options") or {}).get("raster")
    return [str(r) for r in raster] if isinstance(raster, list) else [str(raster or "")]


def remember_job(job: dict, description: str, group_name: str | None) -> bool:
    """Keep ``job`` as the last one started into its output (for "Continue it"); False when it is
    not kept (not a segment job, or its inputs carry a password or signature)."""
    options = job.get("options") or {}
    output = options.get("output")
    if job.get("task") != "segment" or not output:
        return False
    if any(redact(path) != path for path in _inputs(job)):
        return False  # QgsSettings is a plain file: a URL's credentials never go there
    kept = {k: v for k, v in options.items() if k not in ("workdir", "restart")}
    entry = {"job": {"task": "segment", "options": kept}, "description": description, "group": group_name}
    QgsSettings().setValue(_key(output), json.dumps(entry))
    return True


def remembered_job(output: str) -> tuple[dict, str, str | None] | None:
    """(job, description, group name) last started into ``output``, if its files are still there."""
    try:
        entry = json.loads(QgsSettings().value(_key(output), "", type=str) or "null")
        job, description = entry["job"], str(entry["description"])
    except (ValueError, KeyError, TypeError):
        return None
    aoi = (job.get("options") or {}).get("aoi")
    if (
        isinstance(aoi, str)
        and aoi.lower().endswith((".gpkg", ".shp", ".geojson"))
        and not Path(aoi).exists()
    ):
        return None  # its area was a temporary copy of a layer: that run cannot be repeated as it was
    return job, description, entry.get("group")


def interrupted_problem(job: dict, python: str, option: str = "OUTPUT") -> str | None:
    """For a front end that cannot ask (Processing): why ``job`` must not start (an interrupted run
    of other rasters or choices is in its output), or None. Asks ``worker --journal`` and waits."""
    options = job.get("options") or {}
    output = options.get("output")
    if job.get("task") != "segment" or not journal_beside(output) or options.get("restart"):
        return None
    command = worker_command("--journal", python=python)
    try:
        done = subprocess.run(
            command,
            input=json.dumps({"task": "segment", "options": options}) + "\n",
            capture_output=True,
            text=True,
            encoding="utf-8",
            env=worker_env(),
            timeout=CHECK_TIMEOUT_S,
        )
        state = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None  # the run itself then says what is wrong
    if not isinstance(state, dict) or state.get("journal") != "other":
        return None
    what = "other rasters" if state.get("other_inputs") else "other choices"
    name = Path(f"{output}.journal").name
    return (
        f"{output}: an interrupted run of {what} is in this file ({_kept(state)}). Run it again as it was "
        f"to continue it, choose another {option}, or delete {name} beside it to start over."
    )


class JournalCheck(WorkerQuestion):
    """``worker --journal`` for ``job`` in a QProcess; ``done`` carries its answer (``journal``: none,
    same, other, unusable, or unknown when the worker could not tell)."""

    _WHY = {
        "exit": "the worker did not answer",
        "start": "the worker could not be started",
        "timeout": "no answer in time",
        "stopped": "stopped",
    }

    def __init__(self, python: str, job: dict, parent: QObject | None = None) -> None:
        question = {k: v for k, v in job.items() if k in ("task", "options")}
        super().__init__(worker_command("--journal", python=python), CHECK_TIMEOUT_S, question, parent)

    def accepts(self, answer: object) -> bool:
        return isinstance(answer, dict) and isinstance(answer.get("journal"), str)

    def failure(self, why: str, code: int | None = None, output: str = "") -> dict:
        return {"journal": "unknown", "why": self._WHY[why]}


def _kept(state: dict) -> str:
    scenes, total, chips = state.get("scenes_done"), state.get("total"), state.get("chips")
    if isinstance(scenes, int) and scenes > 0 and isinstance(total, int) and total > 1:
        return f"{scenes} of {total} scenes are done"
    if isinstance(chips, int) and chips > 0:
        return f"the answers for {chips} chips are kept"
    return "its work so far is kept"


def question(parent: QWidget | None, output: str, state: dict, can_continue: bool) -> QMessageBox:
    """ "An interrupted run of other rasters is in this file: Continue it / Start over / Cancel"."""
    what = "other rasters" if state.get("other_inputs") else "other choices"
    box = QMessageBox(parent)
    box.setObjectName("paligemmaInterrupted")
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("PaliGemma Water — interrupted run")
    box.setTextFormat(Qt.TextFormat.PlainText)  # paths and names are user data, never HTML
    box.setText(f"An interrupted run of {what} is in this file ({_kept(state)}).")
    changed = [c for c in state.get("changed") or [] if isinstance(c, str)]
    lines = [f"{Path(output).name}: running these choices into it starts over and discards that work."]
    if changed and not state.get("other_inputs"):
        lines.append("Different: " + ", ".join(changed[:6]) + ".")
    lines.append(
        "Continue it: finish the interrupted run first (its rasters and choices)."
        if can_continue
        else "It was not started from this dialog, so it can only be continued the way it was started."
    )
    box.setInformativeText("\n".join(lines))
    buttons = {}
    if can_continue:
        buttons[CONTINUE] = box.addButton("Continue it", QMessageBox.ButtonRole.AcceptRole)
    buttons[START_OVER] = box.addButton("Start over", QMessageBox.ButtonRole.DestructiveRole)
    buttons[CANCEL] = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(buttons.get(CONTINUE) or buttons[CANCEL])
    box.buttons_by_answer = buttons  # read by the caller (answer())
    return box


def answer(box: QMessageBox) -> str:
    """The button pressed in ``question``'s box: CONTINUE, START_OVER or CANCEL."""
    clicked = box.clickedButton()
    for name, button in getattr(box, "buttons_by_answer", {}).items():
        if clicked is button:
            return name
    return CANCEL


class Guard(QObject):
    """Before a segment run into an output with a journal: the worker says whether the journal is of
    this job; if not, the remembered job is checked too, and the question asked.

    ``decided`` carries (answer, job to run or None, (description, group) or None): CONTINUE with
    the remembered job, START_OVER with this job asking for ``restart``, CANCEL, or "run" (nothing
    to ask: the same run, or no journal that the worker could read) with this job.
    """

    decided = pyqtSignal(str, object, object)
    asking = pyqtSignal()  # the question is about to open

    def __init__(self, parent: QWidget, python: str, job: dict) -> None:
        super().__init__(parent)
        self.parent_widget, self.python, self.job = parent, python, job
        self.check: JournalCheck | None = None
        self.box: QMessageBox | None = None

    @property
    def output(self) -> str:
        return self.job["options"]["output"]

    def start(self) -> None:
        self._ask_worker(self.job, self._checked)

    def stop(self) -> None:
        if self.check is not None:
            with contextlib.suppress(TypeError, RuntimeError):
                self.check.done.disconnect()
            self.check.stop()
            self.check = None

    def _ask_worker(self, job: dict, then) -> None:
        self.check = JournalCheck(self.python, job, self)
        self.check.done.connect(then)
        self.check.start()

    def _checked(self, state: dict) -> None:
        self.check = None
        if state.get("journal") != "other":
            self.decided.emit("run", self.job, None)
            return
        remembered = remembered_job(self.output)
        if remembered is None or remembered[0] == {k: self.job[k] for k in ("task", "options")}:
            self._ask(state, None)
            return

        def checked(old: dict) -> None:  # is the remembered job the interrupted one?
            self.check = None
            self._ask(state, remembered if old.get("journal") == "same" else None)

        self._ask_worker(remembered[0], checked)

    def _ask(self, state: dict, remembered) -> None:
        box = question(self.parent_widget, self.output, state, remembered is not None)
        self.box = box
        self.asking.emit()

        def answered(_result: int) -> None:
            self.box = None
            choice = answer(box)
            box.deleteLater()
            if choice == CONTINUE and remembered is not None:
                self.decided.emit(CONTINUE, remembered[0], remembered[1:])
            elif choice == START_OVER:
                self.decided.emit(
                    START_OVER, {**self.job, "options": {**self.job["options"], "restart": True}}, None
                )
            else:
                self.decided.emit(CANCEL, None, None)

        box.finished.connect(answered)
        box.open()
