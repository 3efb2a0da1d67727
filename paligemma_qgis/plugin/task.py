"""QgsTask that runs one worker job in the background and adds the result on the main thread.

``run`` (a QGIS worker thread) writes the job's pending layer copies (LayerSnapshot: taken
on the main thread, so no layer is read here) and then only talks to the child process;
everything that touches the project or the GUI happens in ``finished`` (main thread), as
QGIS requires.
"""

from __future__ import annotations

import re
import shutil
import traceback
from pathlib import Path

from qgis.core import Qgis, QgsMessageLog, QgsProject, QgsTask
from qgis.PyQt.QtCore import QTimer

from .error_text import EXPORT_DIALOG, SEGMENT_DIALOG, translate
from .layers import LAYER_COPIES, LayerSnapshot, add_export_layers, add_result_layers, unsure_scenes
from .messages import LOG_TAG, drop_task_notices, push_message
from .run_text import continued_text, region_name, single_name, stopped_text, unsure_text
from .runner import WorkerOutcome, run_worker
from .setup_tasks import _SILENT, TASK_FLAGS
from .worker_env import worker_command, worker_env

# QGIS 3.26+: no "Task complete"/"Task failed" notice of its own (the plugin's message says what
# happened); before, messages.drop_task_notices takes it off the bar.


class WorkerTask(QgsTask):
    """Runs ``{"task": ..., "options": ...}`` in the worker; adds the result layers when it succeeds.

    segment: ``water`` and ``chips`` of the output GeoPackage (a region run: ``scenes`` too,
    and a warning naming the scenes that failed); export: ``chips`` and ``review`` of
    ``OUT_DIR/chips.gpkg``. The job's ``LAYER_COPIES`` (and ``copies``) are written first,
    on the task's thread; a copy that fails or is cancelled ends the task before the worker starts.
    ``env``: variables the worker gets for this run only (a Hugging Face token; never logged).
    """

    def __init__(
        self,
        description: str,
        job: dict,
        python: str | None = None,
        group_name: str | None = None,
        iface=None,
        add_layers: bool = True,
        grace_s: float = 20.0,
        cleanup: list | None = None,
        copies: list[LayerSnapshot] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description, TASK_FLAGS)
        self.copies: list[LayerSnapshot] = list(job.get(LAYER_COPIES) or []) + list(copies or [])
        self.job = {key: value for key, value in job.items() if key != LAYER_COPIES}  # what the worker gets
        self.python = python
        self.env = dict(env or {})
        options = job.get("options", {})
        raster = options.get("raster") or "result"
        # A region run is named from its summary ("Water in 5 rasters (2 failed)"): a folder's
        # count, and what failed, are the worker's to know.
        self.group_name = group_name or (
            region_name(len(raster)) if isinstance(raster, list) else single_name(Path(raster).stem)
        )
        self.iface = iface
        self.add_layers = add_layers
        self.grace_s = grace_s
        self.cleanup = [Path(p) for p in cleanup or []]
        self.outcome: WorkerOutcome | None = None
        self.message = ""
        self.layers: list = []
        self.error: str = ""
        self.notice: str = ""  # what the run's message said (success, stop or warning)
        self.worker_started = False  # False when a layer copy failed or the task was cancelled first
        self.finished_called = False  # set once finished() has run on the main thread
        self.succeeded: bool | None = None  # finished()'s verdict (the C++ task may be gone by then)

    # -- worker thread -------------------------------------------------------------
    def run(self) -> bool:
        def on_progress(done: int, total: int, message: str) -> None:
            if total > 0:
                self.setProgress(min(100.0, 100.0 * done / total))
            self.message = message

        try:
            if not self._write_copies():
                return False
            self.worker_started = True
            self.outcome = run_worker(
                self.job,
                worker_command(python=self.python),
                env={**worker_env(), **self.env},
                on_progress=on_progress,
                is_cancelled=self.isCanceled,
                grace_s=self.grace_s,
            )
        except Exception as exc:  # escaping run(), it would abort QGIS (PyQt's qFatal)
            self.outcome = WorkerOutcome(
                status="error", message=f"{type(exc).__name__}: {exc}", details=traceback.format_exc()
            )
            return False
        return self.outcome.ok and not self.isCanceled()

    def _write_copies(self) -> bool:
        """Write the pending layer copies; False (and ``outcome`` says why) when one did not finish."""
        for copy in self.copies:
            self.message = f"copying {copy.title}"
            problem = copy.write(self.isCanceled)
            if problem is None and not self.isCanceled():
                continue
            for written in self.copies:  # nothing half-done stays for the worker that will not run
                written.remove()
            if self.isCanceled():
                self.outcome = WorkerOutcome(
                    status="cancelled", message=f"cancelled while copying {copy.title}"
                )
            else:
                self.outcome = WorkerOutcome(status="error", message=problem)
            return False
        return True

    # -- main thread ---------------------------------------------------------------
    def finished(self, result: bool) -> None:
        self.succeeded = bool(result)
        try:
            self._finished(result)
        except Exception:  # never raise inside QGIS's GUI thread: say it, and log what happened
            self.succeeded = False
            QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.MessageLevel.Critical)
            self._push(
                f"{self.description()}: the plugin could not show the result (see the log panel).",
                Qgis.MessageLevel.Critical,
            )
        finally:
            self.finished_called = True
            for path in self.cleanup:  # temporary AOI files and the like
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            if _SILENT is None:  # QGIS < 3.26: its "Task failed" for a cancel, "Task complete" …
                description, iface = self.description(), self.iface
                QTimer.singleShot(0, lambda: drop_task_notices(iface, description))

    def _finished(self, result: bool) -> None:
        outcome = self.outcome
        if outcome is not None and outcome.log:
            QgsMessageLog.logMessage("\n".join(outcome.log), LOG_TAG, Qgis.MessageLevel.Info)
        if result and outcome is not None:
            self._on_success(outcome)
            return
        if self.isCanceled() or (outcome is not None and outcome.status == "cancelled"):
            output = (self.job.get("options") or {}).get("output")
            journal = bool(output) and Path(f"{output}.journal").exists()
            self.notice = stopped_text(outcome.kept if outcome else {}, journal, self.worker_started)
            self._push(self.notice, Qgis.MessageLevel.Info, title=self.description())
            return
        message = outcome.message if outcome is not None else "the worker did not run"
        front = EXPORT_DIALOG if self.job.get("task") == "export" else SEGMENT_DIALOG
        info = outcome.error_info if outcome is not None else {}
        # In the dialog's words ("choose the NIR band"); the worker's own words go to Details.
        self.error = translate(message, info, self.job.get("options", {}), front)
        params = info.get("params") if isinstance(info.get("params"), dict) else {}
        details = "\n".join(
            part
            for part in (
                f"{self.description()} failed: {message}",
                failed_scenes_text(params.get("failed_scenes") or {}, params.get("count")),
                f"command: {' '.join(worker_command(python=self.python))}" if self.worker_started else "",
                outcome.details if outcome is not None else "",
                f"worker stderr:\n{outcome.stderr[-4000:]}" if outcome is not None and outcome.stderr else "",
            )
            if part
        )
        QgsMessageLog.logMessage(details, LOG_TAG, Qgis.MessageLevel.Critical)
        self._push(f"{self.description()} failed. {self.error}", Qgis.MessageLevel.Critical, details)

    def _on_success(self, outcome: WorkerOutcome) -> None:
        summary = outcome.result
        QgsMessageLog.logMessage(
            f"{self.description()} finished:\n{summary_details(summary)}", LOG_TAG, Qgis.MessageLevel.Info
        )
        options = self.job.get("options", {})
        task = self.job.get("task")
        scenes = summary.get("scenes") if isinstance(summary.get("scenes"), int) else 1
        failed = summary.get("failed") or 0
        region = isinstance(options.get("raster"), list) or scenes > 1
        if region:
            self.group_name = region_name(scenes, failed)
        try:
            if task == "segment" and self.add_layers and options.get("output"):
                _, self.layers = add_result_layers(
                    options["output"], self.group_name, QgsProject.instance(), region=region
                )
            elif task == "export" and self.add_layers and options.get("out_dir"):
                _, self.layers = add_export_layers(options["out_dir"], self.group_name, QgsProject.instance())
        except ValueError as exc:
            self.error = str(exc)
            QgsMessageLog.logMessage(str(exc), LOG_TAG, Qgis.MessageLevel.Critical)
            self._push(str(exc), Qgis.MessageLevel.Critical)
            return
        said = " ".join(p for p in (continued_text(summary), describe_summary(summary) + ".") if p)
        notes: list[str] = []
        details = ""
        if task == "segment" and failed:
            # Written, with failures: the layers are there, and the failed scenes are named.
            failures = (summary.get("details") or {}).get("failed_scenes") or {}
            details = failed_scenes_text(failures, failed)
            QgsMessageLog.logMessage(details, LOG_TAG, Qgis.MessageLevel.Warning)
            notes.append(describe_failures(failures, failed))
        if task == "segment" and options.get("output") and summary.get("engine") == "water-index":
            unsure = unsure_text(unsure_scenes(options["output"]), scenes)
            if unsure:
                QgsMessageLog.logMessage(unsure, LOG_TAG, Qgis.MessageLevel.Warning)
                notes.append(unsure)
        # The warnings first: they are what the line a message bar shows must say (Details… has all).
        self.notice = " ".join([*notes, said])
        level = Qgis.MessageLevel.Warning if notes else Qgis.MessageLevel.Success
        # Titled by what was loaded ("Water in 5 rasters (1 failed)"), as its group is: the task's
        # own name was given before a folder's rasters were counted.
        self._push(self.notice, level, details or None, title=self.group_name)

    def _push(self, text: str, level, details: str | None = None, title: str = LOG_TAG) -> None:
        push_message(self.iface, text, level, details, title=title)


def describe_summary(summary: dict) -> str:
    """One line for the message bar from the worker's summary (keys vary by task)."""
    if "n_train" in summary:  # a training-data export
        return describe_export(summary)
    parts = []
    if isinstance(summary.get("scenes"), int) and summary["scenes"] > 1:
        parts.append(f"{summary['scenes']} scenes")
    if isinstance(summary.get("polygons"), int):
        parts.append(f"{summary['polygons']} water polygons")
    if isinstance(summary.get("water_area_km2"), int | float):
        parts.append(f"{summary['water_area_km2']:.3f} km² of water")
    if isinstance(summary.get("chips"), int):
        skipped = summary.get("skipped")
        parts.append(f"{summary['chips']} chips" + (f" ({skipped} skipped)" if skipped else ""))
    if isinstance(summary.get("seconds"), int | float):
        parts.append(f"{summary['seconds']:.1f} s")
    text = ", ".join(parts) or "done"
    if summary.get("device"):  # users ask "did it use my GPU?": say where it ran
        text += f" on {summary['device']}"
    return text


def describe_failures(failures: dict, failed: int, shown: int = 3) -> str:
    """'2 scenes failed, see the scenes layer: lakes_b — cannot open as a raster; …' (dialog words)."""
    named = [f"{scene} — {_first_clause(str(error))}" for scene, error in list(failures.items())[:shown]]
    more = failed - len(named)
    listed = "; ".join(named) + (f"; and {more} more" if more > 0 and named else "")
    what = f"{failed} scene{'s' if failed != 1 else ''} failed, see the scenes layer"
    return f"{what}: {listed}" if listed else f"{what}."


def _first_clause(error: str, limit: int = 90) -> str:
    """The gist of a scene's error for one line: without its file name in front, cut short."""
    text = re.sub(r"^(?:[A-Za-z]:)?[^:\n]*[/\\][^:\n]*: ", "", error.strip())  # "/data/x.tif: ..."
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def failed_scenes_text(failures: dict, failed: int | None = None) -> str:
    """Every failed scene and its error, one per line (the message's Details…, the log)."""
    if not failures:
        return ""
    lines = [f"Scenes that failed ({failed if failed is not None else len(failures)}):"]
    lines += [f"    {scene}: {error}" for scene, error in failures.items()]
    if failed is not None and failed > len(failures):
        lines.append(f"    … and {failed - len(failures)} more (the scenes layer has every error)")
    return "\n".join(lines)


def describe_export(summary: dict) -> str:
    """'12 train + 3 valid chips (2 without water), 20 objects, mean decode-back IoU 0.874 → DIR'."""
    empty = summary.get("n_empty_written") or 0
    text = f"{summary.get('n_train', 0)} train + {summary.get('n_valid', 0)} valid chips" + (
        f" ({empty} without water)" if empty else ""
    )
    text += f", {summary.get('n_objects', 0)} water objects"
    iou = summary.get("mean_codec_iou")
    if isinstance(iou, int | float):
        text += f", mean decode-back IoU {iou:.3f}"
        if isinstance(summary.get("min_codec_iou"), int | float):
            text += f" (worst chip {summary['min_codec_iou']:.3f})"
    else:
        text += ", no water to decode back"
    warnings = summary.get("warnings") or []
    if warnings:
        text += f"; {len(warnings)} warning(s) in the log"
    if summary.get("out_dir"):
        text += f" → {summary['out_dir']}"
    return text


def summary_details(summary: dict) -> str:
    """The whole summary, one 'key: value' per line (nested details indented), for the log panel."""
    lines = []
    for key, value in summary.items():
        if isinstance(value, dict) and value:
            lines.append(f"{key}:")
            lines += [f"    {k}: {v}" for k, v in value.items()]
        elif isinstance(value, list) and value:
            lines.append(f"{key}:")
            lines += [f"    {v}" for v in value]
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)
