"""Before a run starts: is the worker Python ready for it? If not, offer to set it up, then run.

``Preflight`` runs ``worker --probe`` (core.environment: a fraction of a second, no torch
import) in a QProcess, so QGIS stays responsive while the worker Python starts. What it
lacks becomes a question ("Set up the worker now?") that says what will be installed where
and how much it downloads (setup_plan); on Yes the setup runs as a background task and the
run starts when it is done. Tasks started here stay referenced in ``PENDING`` until they
end, and the plugin cancels them when it is unloaded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QObject, Qt
from qgis.PyQt.QtWidgets import QMessageBox, QWidget

from .hf_token import stored_id
from .setup_plan import SetupPlan, model_download_text
from .setup_tasks import SetupTask
from .worker_env import set_configured_python, worker_command, worker_flags
from .worker_question import WorkerQuestion

PROBE_TIMEOUT_S = 60.0
# Setup tasks and the runs that wait on them, referenced until they end (QGIS holds no Python ref).
PENDING: list = []


def keep(task) -> None:
    """Keep ``task`` referenced until it ends."""
    PENDING.append(task)

    def forget(*_args) -> None:
        if task in PENDING:
            PENDING.remove(task)

    task.taskCompleted.connect(forget)
    task.taskTerminated.connect(forget)


def cancel_pending() -> None:
    """Cancel what was started here (the plugin is being unloaded)."""
    for task in list(PENDING):
        with contextlib.suppress(RuntimeError):  # the C++ task is already gone
            task.cancel()


def probe_args(
    engine: str, model: str | None = None, vae: str | None = None, executor: str = "local"
) -> list[str]:
    return ["--probe", "--engine", engine, *worker_flags(model, vae, executor)]


class Preflight(WorkerQuestion):
    """``worker --probe`` in a QProcess; ``done`` carries its JSON, or ``{"error", "details"}``."""

    def __init__(
        self,
        python: str,
        engine: str,
        model: str | None = None,
        vae: str | None = None,
        parent: QObject | None = None,
        timeout_s: float = PROBE_TIMEOUT_S,
        executor: str = "local",
    ) -> None:
        command = worker_command(*probe_args(engine, model, vae, executor), python=python)
        super().__init__(command, timeout_s, parent=parent)

    def failure(self, why: str, code: int | None = None, output: str = "") -> dict:
        command = " ".join(self.command)
        if why == "exit":
            return {
                "error": f"it stopped with exit code {code} before saying what it has",
                "details": f"{command}\n{output[-3000:]}",
            }
        if why == "start":
            return {"error": "it cannot be started (not found, or not a program)", "details": command}
        if why == "timeout":
            return {"error": f"it did not answer in {self.timeout_s:g} s", "details": command}
        return {"error": "stopped"}


def describe_python(python: str, source: str) -> str:
    """'/usr/bin/python3 (the Python QGIS runs on)' and the like, for messages."""
    where = {
        "QGIS python": "the Python QGIS runs on",
        "managed venv": "the plugin's worker environment",
        "settings": "chosen in Worker setup",
        "environment": "from PALIGEMMA_QGIS_PYTHON",
        "python3 on PATH": "the first python3 on PATH: QGIS's own Python was not found",
    }.get(source, source)
    return f"{python} ({where})"


def missing_text(probe: dict, python: str, source: str) -> str:
    """What the worker Python lacks, by package, and what for."""
    missing = probe.get("missing") or {}
    needs = probe.get("needs") or ["geo"]
    parts = []
    if "geo" in needs and missing.get("geo"):
        parts.append(f"{', '.join(missing['geo'])} (needed by every engine)")
    if "model" in needs and missing.get("model"):
        parts.append(f"{', '.join(missing['model'])} (needed by the PaliGemma engine)")
    if "region" in needs and missing.get("region"):
        parts.append(
            f"{', '.join(missing['region'])} (needed to send the work to the Ray address in Worker setup)"
        )
    return f"The worker Python {describe_python(python, source)} lacks " + " and ".join(parts) + "."


def setup_question(
    parent: QWidget | None,
    plan: SetupPlan,
    probe: dict,
    python: str,
    source: str,
    water_index: bool = False,
    model: str | None = None,
) -> QMessageBox:
    """The "Set up the worker now?" box (not shown yet: the caller opens it and reads the answer).

    ``water_index``: also offer the water index, which needs nothing more (``box.water_index_button``);
    ``model``: the PaliGemma model the run uses, whose download is said too when it is not here.
    """
    box = QMessageBox(parent)
    box.setObjectName("paligemmaSetupQuestion")
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("PaliGemma Water — worker setup")
    box.setTextFormat(Qt.TextFormat.PlainText)  # paths and names are user data, never HTML
    box.setText("Set up the worker now? The run starts when it is done.")
    switch = (
        f"\nAfterwards the plugin's environment is the worker Python instead of {python}."
        if source == "settings"
        else ""
    )
    found = (probe.get("model") or {}).get("found") or (probe.get("model") or {}).get("local")
    download = (
        ""
        if found or "model" not in (probe.get("needs") or [])
        else model_download_text(model, bool(stored_id()))
    )
    box.setInformativeText(
        f"{missing_text(probe, python, source)}\n\n{plan.describe()}{switch}"
        + (f"\n\n{download}" if download else "")
        + "\n\nIt runs in the background: progress and Cancel are in QGIS's task bar."
    )
    box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
    box.button(QMessageBox.StandardButton.Yes).setText("Set up and run")
    box.button(QMessageBox.StandardButton.No).setText("Not now")
    box.water_index_button = (
        box.addButton("Use the water index", QMessageBox.ButtonRole.ActionRole) if water_index else None
    )
    if water_index:
        box.water_index_button.setToolTip("Map with the water index instead: it needs nothing more")
    box.setDefaultButton(QMessageBox.StandardButton.Yes)
    return box


def setup_then_run(
    plan: SetupPlan, run: Callable[[str], object], on_failure: Callable[[], None] | None = None, iface=None
) -> SetupTask:
    """Start the setup in the background; when it succeeds, ``run(python)`` starts the run."""

    def succeeded() -> None:
        set_configured_python(plan.python)
        run(plan.python)

    task = SetupTask(
        "Set up the PaliGemma Water worker",
        plan.steps,
        on_success=succeeded,
        remove_on_failure=[plan.create_venv] if plan.create_venv is not None else [],
        iface=iface,
        on_failure=on_failure,
    )
    keep(task)
    QgsApplication.taskManager().addTask(task)
    return task
