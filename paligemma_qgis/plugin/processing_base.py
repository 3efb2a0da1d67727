"""What every Processing algorithm of the provider shares: the worker run and its failure.

An algorithm runs in Processing's thread (or qgis_process's main thread); it only builds a
JSON job (``build_job``, from its parameters) and follows the worker process, so it needs no
heavy import. Each algorithm names its parameters by the core's option names (``OPTIONS``:
option -> parameter), which gives its error messages their words (``FRONT``) and lets a test
compare its defaults with the command line's. Defaults and choices come from core.rules
(through options.py's labels), never from a copy here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QCoreApplication

from .error_text import FrontEnd, processing, scene_errors, translate
from .interrupted import interrupted_problem
from .options import PRESETS, raster_file
from .raster_probe import no_side_files
from .run_text import stopped_text
from .runner import run_worker
from .worker_env import worker_command, worker_env


def _tr(text: str) -> str:
    return QCoreApplication.translate("PaliGemmaProcessing", text)


class WorkerAlgorithm(QgsProcessingAlgorithm):
    """The base of the provider's algorithms: shared parameters (bands, VAE, resolution), the
    advanced flag, the input raster's file, and the job (``build_job``) run in the worker."""

    INPUT = "INPUT"
    BANDS = "BANDS"
    VAE = "VAE"
    RESOLUTION = "RESOLUTION"
    OPTIONS: Mapping[str, str] = {}  # the core's option name -> this algorithm's parameter
    FRONT: FrontEnd = processing({})  # its words for errors, from OPTIONS

    def group(self) -> str:
        return ""

    def groupId(self) -> str:  # noqa: N802
        return ""

    def checkParameterValues(self, parameters: dict, context: QgsProcessingContext):  # noqa: N802 - QGIS API
        """QGIS's own check, which opens a raster given as a file (it is kept for the run): with
        GDAL's side files off, so that no .aux.xml of its statistics lands beside the user's file."""
        with no_side_files():
            return super().checkParameterValues(parameters, context)

    def build_job(
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict:
        """The worker job ({"task": ..., "options": ...}) for ``parameters``."""
        raise NotImplementedError

    def _add_shared_parameter(self, name: str) -> None:
        """Add BANDS, VAE or RESOLUTION, declared the same way in every algorithm."""
        if name == self.BANDS:
            param = QgsProcessingParameterString(
                self.BANDS,
                _tr("Bands: preset (naip, sentinel2, landsat89) or RGB band numbers (e.g. 3,2,1)"),
                defaultValue="",
                optional=True,
            )
        elif name == self.VAE:
            param = QgsProcessingParameterFile(
                self.VAE,
                _tr("VAE mask codec (vae-oid.npz; empty: the downloaded one)"),
                behavior=QgsProcessingParameterFile.Behavior.File,
                extension="npz",
                optional=True,
            )
        else:
            param = QgsProcessingParameterNumber(
                self.RESOLUTION,
                _tr("Target resolution (m/pixel; 0 = native)"),
                QgsProcessingParameterNumber.Type.Double,
                0.0,
                False,
                0.0,
            )
        self.addParameter(param)

    def _add_advanced(self, params: list) -> None:
        for param in params:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
            self.addParameter(param)

    def _raster_input(self, parameters: dict, context: QgsProcessingContext, hint: str = "") -> str:
        """The input raster's file; QgsProcessingException when it is not a GDAL file on disk."""
        with no_side_files():  # a file QGIS opens for this run writes no .aux.xml beside it
            layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        raster = raster_file(layer)
        if raster is None:
            source = layer.source() if layer is not None else parameters.get(self.INPUT)
            raise failure(f"{source}: the input must be a raster file on disk (GDAL){hint}")
        return raster

    def _bands_choice(self, parameters: dict, context: QgsProcessingContext) -> tuple[str | None, str]:
        """(preset name or None, the BANDS text): BANDS names a preset or lists band numbers."""
        bands_text = (self.parameterAsString(parameters, self.BANDS, context) or "").strip()
        preset_names = {name for name, _ in PRESETS if name}
        return (bands_text.lower() if bands_text.lower() in preset_names else None), bands_text

    def _vae(self, parameters: dict, context: QgsProcessingContext) -> str | None:
        return (self.parameterAsFile(parameters, self.VAE, context) or "").strip() or None

    def _text(self, parameters: dict, name: str, context: QgsProcessingContext) -> str | None:
        """A string parameter, stripped; None when empty."""
        return (self.parameterAsString(parameters, name, context) or "").strip() or None

    def _run(self, job: dict, feedback: QgsProcessingFeedback) -> dict:
        return run_job(job, feedback, self.FRONT)


def run_job(job: dict, feedback: QgsProcessingFeedback, front: FrontEnd) -> dict:
    """Run a worker job with Processing's progress and cancel; raise QgsProcessingException on failure
    (said in ``front``'s words: its parameter names)."""
    command = worker_command()
    env = worker_env()
    feedback.pushInfo(f"worker: {' '.join(command)} (PYTHONPATH={env['PYTHONPATH']})")
    problem = interrupted_problem(job, command[0], front.labels.get("output", "OUTPUT"))
    if problem:  # never discard an interrupted run silently: Processing cannot ask, so it says
        raise failure(problem)
    last = {"message": None}

    def on_progress(done: int, total: int, message: str) -> None:
        if total > 0:
            feedback.setProgress(100.0 * done / total)
        if message and message != last["message"]:
            last["message"] = message
            feedback.setProgressText(message)

    outcome = run_worker(job, command, env=env, on_progress=on_progress, is_cancelled=feedback.isCanceled)
    for line in outcome.log:
        feedback.pushDebugInfo(line)
    if outcome.status == "cancelled":
        output = (job.get("options") or {}).get("output")
        raise failure(stopped_text(outcome.kept, bool(output) and Path(f"{output}.journal").exists()))
    if not outcome.ok:
        if outcome.details:  # the worker's traceback or error class: for the log, not an error line
            feedback.pushDebugInfo(outcome.details)
        params = outcome.error_info.get("params") or {}
        for scene, error in scene_errors(params, front, job.get("options")).items():  # every scene failed
            feedback.pushWarning(f"scene {scene} failed: {error}")
        raise failure(translate(outcome.message, outcome.error_info, job.get("options", {}), front))
    return outcome.result


def failure(message: str) -> QgsProcessingException:
    """The exception that ends a failed run, said once.

    qgis_process prints an algorithm's exception three times: QGIS logs it, reports it as
    ERROR, and its feedback logs that report again, with QGIS's message log echoed on
    stderr. It exits right after, so there the echo is switched off and the one
    "ERROR: <message>" line remains (exit code 1). Inside QGIS nothing changes.
    """
    if QgsApplication.platform() == "qgis_process":
        QgsApplication.messageLog().blockSignals(True)
    return QgsProcessingException(message)
