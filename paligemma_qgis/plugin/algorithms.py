"""Processing algorithms: the same worker process as the dialog, for models, batch and qgis_process.

The algorithm runs in Processing's thread (or qgis_process's main thread); it only starts
the worker and relays its progress, so it needs no heavy import either. One file: the
algorithms share their parameters (``SegmentAlgorithm``: segment_water and, in
region_algorithm.py, segment_water_region), the worker run and its one-line failure (``_failure``).
"""

from __future__ import annotations

import json
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)
from qgis.PyQt.QtCore import QCoreApplication

from . import ray_trust
from .error_text import PROCESSING, FrontEnd, translate, without_flags
from .interrupted import interrupted_problem
from .layers import WATER_LAYER
from .options import DEFAULT_ENGINE, DEFAULT_MODEL, DEVICES, ENGINES, PRESETS, raster_file, segment_job
from .processing_results import load_segment_result, report_unsure
from .run_text import single_name, stopped_text
from .runner import run_worker
from .worker_env import ray_address, ray_address_problem, worker_command, worker_env


def _tr(text: str) -> str:
    return QCoreApplication.translate("PaliGemmaProcessing", text)


class WorkerAlgorithm(QgsProcessingAlgorithm):
    """What both algorithms share: the input raster file, the band choice, the parameters
    they declare alike (bands, VAE, resolution) and the advanced-parameter flag."""

    INPUT = "INPUT"
    BANDS = "BANDS"
    VAE = "VAE"
    RESOLUTION = "RESOLUTION"

    def group(self) -> str:
        return ""

    def groupId(self) -> str:  # noqa: N802
        return ""

    def _add_shared_parameter(self, name: str) -> None:
        """Add BANDS, VAE or RESOLUTION, declared the same way in both algorithms."""
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
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        raster = raster_file(layer)
        if raster is None:
            source = layer.source() if layer is not None else parameters.get(self.INPUT)
            raise _failure(f"{source}: the input must be a raster file on disk (GDAL){hint}")
        return raster

    def _bands_choice(self, parameters: dict, context: QgsProcessingContext) -> tuple[str | None, str]:
        """(preset name or None, the BANDS text): BANDS names a preset or lists band numbers."""
        bands_text = (self.parameterAsString(parameters, self.BANDS, context) or "").strip()
        preset_names = {name for name, _ in PRESETS if name}
        return (bands_text.lower() if bands_text.lower() in preset_names else None), bands_text

    def _vae(self, parameters: dict, context: QgsProcessingContext) -> str | None:
        return (self.parameterAsFile(parameters, self.VAE, context) or "").strip() or None


class SegmentAlgorithm(WorkerAlgorithm):
    """What the segment algorithms share: engine, bands, model, chips, area, Ray address, the
    GeoPackage output, and the job built from them (segment_water and segment_water_region)."""

    INPUT = "INPUT"
    ENGINE = "ENGINE"
    BANDS = "BANDS"
    GREEN = "GREEN"
    NIR = "NIR"
    SWIR = "SWIR"
    MODEL = "MODEL"
    VAE = "VAE"
    DEVICE = "DEVICE"
    BATCH_SIZE = "BATCH_SIZE"
    OVERLAP = "OVERLAP"
    RESOLUTION = "RESOLUTION"
    MIN_AREA = "MIN_AREA"
    AOI = "AOI"
    THRESHOLD = "THRESHOLD"
    RAY_ADDRESS = "RAY_ADDRESS"
    OUTPUT = "OUTPUT"

    def _add_segment_parameters(self, advanced_extra: list | None = None) -> None:
        """Engine to minimum area, then the advanced ones (AOI, band numbers, ``advanced_extra``,
        Ray address)."""
        self.addParameter(
            QgsProcessingParameterEnum(
                self.ENGINE,
                _tr("Engine"),
                options=[label for _, label in ENGINES],
                defaultValue=[value for value, _ in ENGINES].index(DEFAULT_ENGINE),
            )
        )
        self._add_shared_parameter(self.BANDS)
        self.addParameter(
            QgsProcessingParameterString(
                self.MODEL,
                _tr("Model (Hugging Face id or folder)"),
                defaultValue=DEFAULT_MODEL,
                optional=True,
            )
        )
        self._add_shared_parameter(self.VAE)
        self.addParameter(
            QgsProcessingParameterEnum(
                self.DEVICE, _tr("Device"), options=[label for _, label in DEVICES], defaultValue=0
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.BATCH_SIZE,
                _tr("Batch size (chips per model call; 0 = auto: what GPU memory holds, 8 on CPU)"),
                QgsProcessingParameterNumber.Type.Integer,
                0,
                False,
                0,
                256,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.OVERLAP,
                _tr("Chip overlap (pixels; -1 = auto: 32 for PaliGemma, 0 for the water index)"),
                QgsProcessingParameterNumber.Type.Integer,
                -1,
                False,
                -1,
                200,
            )
        )
        self._add_shared_parameter(self.RESOLUTION)
        self.addParameter(
            QgsProcessingParameterNumber(
                self.MIN_AREA,
                _tr("Minimum polygon area (m²)"),
                QgsProcessingParameterNumber.Type.Double,
                0.0,
                False,
                0.0,
            )
        )
        advanced = [
            QgsProcessingParameterFeatureSource(
                self.AOI,
                _tr("Area of interest (polygons)"),
                [QgsProcessing.SourceType.TypeVectorPolygon],
                optional=True,
            ),
            *(
                QgsProcessingParameterNumber(
                    name,
                    _tr(f"{label} band (0 = automatic)"),
                    QgsProcessingParameterNumber.Type.Integer,
                    0,
                    True,
                    0,
                )
                for name, label in ((self.GREEN, "Green"), (self.NIR, "NIR"), (self.SWIR, "SWIR"))
            ),
            QgsProcessingParameterNumber(
                self.THRESHOLD,
                _tr("Water index threshold (empty: one per scene, from its histogram)"),
                QgsProcessingParameterNumber.Type.Double,
                None,
                True,
                -1.0,
                1.0,
            ),
            *(advanced_extra or []),
            QgsProcessingParameterString(
                self.RAY_ADDRESS,
                _tr("Ray address (empty: map on this computer; local, auto or ray://host:10001)"),
                defaultValue=ray_address(),  # Worker setup's
                optional=True,
            ),
        ]
        self._add_advanced(advanced)

    def _add_output(self) -> None:
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT, _tr("Water polygons (GeoPackage)"), QgsProcessing.SourceType.TypeVectorPolygon
            )
        )
        self.addOutput(
            QgsProcessingOutputVectorLayer(
                "WATER_LAYER", _tr("Water layer"), QgsProcessing.SourceType.TypeVectorPolygon
            )
        )
        self.addOutput(QgsProcessingOutputString("SUMMARY", _tr("Run summary (JSON)")))
        self.addOutput(QgsProcessingOutputNumber("WATER_AREA_KM2", _tr("Water area (km²)")))

    def _output(self, parameters: dict, context: QgsProcessingContext) -> str:
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if Path(output).suffix.lower() != ".gpkg":
            raise _failure(f"{output}: the output must be a GeoPackage (.gpkg)")
        return output

    def _segment_job(
        self,
        raster: str | list[str],
        output: str,
        parameters: dict,
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
        **extra,
    ) -> dict:
        """The worker job for ``raster`` (one input or several) from the shared parameters."""
        preset, bands_text = self._bands_choice(parameters, context)
        aoi = None
        if parameters.get(self.AOI):
            aoi = self.parameterAsCompatibleSourceLayerPath(
                parameters, self.AOI, context, ["gpkg", "shp", "geojson"], "gpkg", feedback
            )
        engine = ENGINES[self.parameterAsEnum(parameters, self.ENGINE, context)][0]
        address = (self.parameterAsString(parameters, self.RAY_ADDRESS, context) or "").strip()
        problem = ray_address_problem(address)
        if problem:
            raise _failure(problem.replace("Ray address", "RAY_ADDRESS", 1))
        if not ray_trust.trusted(
            address
        ):  # a cluster runs this plugin's code: confirmed once, in Worker setup
            raise _failure(ray_trust.refused_text(address, "RAY_ADDRESS"))
        given = parameters.get(self.THRESHOLD)
        threshold = (
            None if given in (None, "") else self.parameterAsDouble(parameters, self.THRESHOLD, context)
        )
        overlap = self.parameterAsInt(parameters, self.OVERLAP, context)  # -1: the engine's default
        return segment_job(
            raster,
            output,
            engine=engine,
            bands=None if preset else (bands_text or None),
            preset=preset,
            green=self.parameterAsInt(parameters, self.GREEN, context),
            nir=self.parameterAsInt(parameters, self.NIR, context),
            swir=self.parameterAsInt(parameters, self.SWIR, context),
            overlap=overlap if overlap >= 0 else None,
            resolution=self.parameterAsDouble(parameters, self.RESOLUTION, context),
            aoi=aoi,
            min_area_m2=self.parameterAsDouble(parameters, self.MIN_AREA, context),
            model=(self.parameterAsString(parameters, self.MODEL, context) or "").strip() or None,
            vae=self._vae(parameters, context),
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)][0],
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            overwrite=True,  # Processing's file chooser already asked about replacing the file
            ray_address=address,
            threshold=threshold,
            **extra,
        )


class SegmentWaterAlgorithm(SegmentAlgorithm):
    def name(self) -> str:
        return "segment_water"

    def displayName(self) -> str:  # noqa: N802
        return _tr("Segment water")

    def shortHelpString(self) -> str:  # noqa: N802
        return _tr(
            "Maps water in a georeferenced raster and writes dissolved water polygons (areas in m²) to a "
            "GeoPackage (layers 'water' and 'chips').\n\n"
            "Engines: PaliGemma ('segment water', needs torch + transformers in the worker Python and "
            "the model and vae-oid.npz) or a water index (NDWI/MNDWI, needs a NIR or SWIR band, no model).\n\n"
            "BANDS: a preset name (naip, sentinel2, landsat89) or the RGB bands shown to the model, like 3,2,1. "
            "The work runs in a separate worker Python (Raster > PaliGemma Water > Worker setup, or "
            "the PALIGEMMA_QGIS_PYTHON environment variable); RAY_ADDRESS (Worker setup's by default) "
            "sends it to a Ray cluster. Many rasters in one run: 'Map water in many rasters'."
        )

    def createInstance(self) -> SegmentWaterAlgorithm:  # noqa: N802
        return SegmentWaterAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, _tr("Input raster")))
        self._add_segment_parameters()
        self._add_output()

    def processAlgorithm(  # noqa: N802
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict:
        raster = self._raster_input(parameters, context, ", not a web service")
        output = self._output(parameters, context)
        job = self._segment_job(raster, output, parameters, context, feedback)
        result = _run(job, feedback)
        water_uri = f"{output}|layername={WATER_LAYER}"
        report_unsure(output, 1, feedback)
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        name = single_name(layer.name() if layer else Path(raster).stem)
        load_segment_result(context, output, name, region=False)
        return {
            self.OUTPUT: output,
            "WATER_LAYER": water_uri,
            "SUMMARY": json.dumps(result),
            "WATER_AREA_KM2": result.get("water_area_km2"),
        }


def _run(job: dict, feedback: QgsProcessingFeedback, front: FrontEnd = PROCESSING) -> dict:
    """Run a worker job with Processing's progress and cancel; raise QgsProcessingException on failure
    (said in ``front``'s words: its parameter names)."""
    command = worker_command()
    env = worker_env()
    feedback.pushInfo(f"worker: {' '.join(command)} (PYTHONPATH={env['PYTHONPATH']})")
    problem = interrupted_problem(job, command[0], "OUTPUT")  # never discard an interrupted run silently
    if problem:
        raise _failure(problem)
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
        raise _failure(stopped_text(outcome.kept, bool(output) and Path(f"{output}.journal").exists()))
    if not outcome.ok:
        if outcome.details:  # the worker's traceback or error class: for the log, not an error line
            feedback.pushDebugInfo(outcome.details)
        params = outcome.error_info.get("params") or {}
        for scene, error in (params.get("failed_scenes") or {}).items():  # every scene failed
            feedback.pushWarning(f"scene {scene} failed: {without_flags(str(error), front)}")
        raise _failure(translate(outcome.message, outcome.error_info, job.get("options", {}), front))
    return outcome.result


def _failure(message: str) -> QgsProcessingException:
    """The exception that ends a failed run, said once.

    qgis_process prints an algorithm's exception three times: QGIS logs it, reports it as
    ERROR, and its feedback logs that report again, with QGIS's message log echoed on
    stderr. It exits right after, so there the echo is switched off and the one
    "ERROR: <message>" line remains (exit code 1). Inside QGIS nothing changes.
    """
    if QgsApplication.platform() == "qgis_process":
        QgsApplication.messageLog().blockSignals(True)
    return QgsProcessingException(message)


class ExportTrainingDataAlgorithm(WorkerAlgorithm):
    """Raster + known water -> PaliGemma fine-tuning chips and JSONL (core.train.export in the worker)."""

    INPUT = "INPUT"
    LABELS_VECTOR = "LABELS_VECTOR"
    LABELS_MASK = "LABELS_MASK"
    MASK_THRESHOLD = "MASK_THRESHOLD"
    BANDS = "BANDS"
    VAE = "VAE"
    ALLOW_CUSTOM_VAE = "ALLOW_CUSTOM_VAE"
    RESOLUTION = "RESOLUTION"
    OVERLAP = "OVERLAP"
    VALID_FRACTION = "VALID_FRACTION"
    BLOCK_SIZE = "BLOCK_SIZE"
    EMPTY_POLICY = "EMPTY_POLICY"
    MIN_OBJECT_PIXELS = "MIN_OBJECT_PIXELS"
    SEED = "SEED"
    OUTPUT = "OUTPUT"
    EMPTY_POLICIES = ("cap", "keep", "drop")

    def name(self) -> str:
        return "export_training_data"

    def displayName(self) -> str:  # noqa: N802
        return _tr("Export training data (PaliGemma JSONL)")

    def shortHelpString(self) -> str:  # noqa: N802
        return _tr(
            "Cuts the raster into model-sized chips on the segmenter's grid and writes PNG chips, "
            "train.jsonl / valid.jsonl (keys image, prefix, suffix: <loc>/<seg> tokens encoded with the "
            "VQ-VAE) and chips.gpkg for review, for fine-tuning PaliGemma on your region.\n\n"
            "Known water: a polygon layer, or a mask raster (water where value > threshold), or, when "
            "neither is given, the water index. Chips go to train or valid by spatial blocks, so "
            "neighbouring chips do not leak between the two."
        )

    def createInstance(self) -> ExportTrainingDataAlgorithm:  # noqa: N802
        return ExportTrainingDataAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, _tr("Input raster")))
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.LABELS_VECTOR,
                _tr("Known water: polygons"),
                [QgsProcessing.SourceType.TypeVectorPolygon],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterRasterLayer(
                self.LABELS_MASK, _tr("Known water: mask raster"), optional=True
            )
        )
        self._add_shared_parameter(self.BANDS)
        self._add_shared_parameter(self.VAE)
        self._add_shared_parameter(self.RESOLUTION)
        self.addParameter(
            QgsProcessingParameterNumber(
                self.VALID_FRACTION,
                _tr("Validation share"),
                QgsProcessingParameterNumber.Type.Double,
                0.2,
                False,
                0.0,
                0.9,
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                self.EMPTY_POLICY,
                _tr("Chips without water"),
                options=[_tr("Cap at 20% of each split"), _tr("Keep all"), _tr("Drop all")],
                defaultValue=0,
            )
        )
        advanced = [
            QgsProcessingParameterNumber(
                self.MASK_THRESHOLD,
                _tr("Mask: water where value >"),
                QgsProcessingParameterNumber.Type.Double,
                0.0,
            ),
            QgsProcessingParameterNumber(
                self.OVERLAP,
                _tr("Chip overlap (pixels)"),
                QgsProcessingParameterNumber.Type.Integer,
                0,
                False,
                0,
                200,
            ),
            QgsProcessingParameterNumber(
                self.BLOCK_SIZE,
                _tr("Spatial block (chips per side)"),
                QgsProcessingParameterNumber.Type.Integer,
                4,
                False,
                1,
            ),
            QgsProcessingParameterNumber(
                self.MIN_OBJECT_PIXELS,
                _tr("Smallest water object (pixels)"),
                QgsProcessingParameterNumber.Type.Integer,
                16,
                False,
                1,
            ),
            QgsProcessingParameterNumber(
                self.SEED, _tr("Random seed"), QgsProcessingParameterNumber.Type.Integer, 0
            ),
            QgsProcessingParameterBoolean(
                self.ALLOW_CUSTOM_VAE, _tr("Accept a VAE file that is not Google's vae-oid.npz"), False
            ),
        ]
        self._add_advanced(advanced)
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, _tr("Output folder")))
        self.addOutput(
            QgsProcessingOutputVectorLayer(
                "CHIPS_LAYER", _tr("Chips"), QgsProcessing.SourceType.TypeVectorPolygon
            )
        )
        self.addOutput(QgsProcessingOutputString("SUMMARY", _tr("Export summary (JSON)")))
        self.addOutput(QgsProcessingOutputNumber("N_TRAIN", _tr("Training chips")))
        self.addOutput(QgsProcessingOutputNumber("N_VALID", _tr("Validation chips")))

    def processAlgorithm(  # noqa: N802
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict:
        raster = self._raster_input(parameters, context)
        has_vector = bool(parameters.get(self.LABELS_VECTOR))
        mask_layer = self.parameterAsRasterLayer(parameters, self.LABELS_MASK, context)
        if has_vector and mask_layer is not None:
            raise _failure("give known water as polygons or as a mask raster, not both")
        if has_vector:
            labels = self.parameterAsCompatibleSourceLayerPath(
                parameters, self.LABELS_VECTOR, context, ["gpkg", "shp", "geojson"], "gpkg", feedback
            )
        elif mask_layer is not None:
            labels = raster_file(mask_layer)
            if labels is None:
                raise _failure(f"{mask_layer.source()}: the mask must be a raster file on disk")
        else:
            labels = "water-index"
            feedback.pushInfo("no known water given: labels come from the water index")
        out_dir = self.parameterAsString(parameters, self.OUTPUT, context)
        preset, bands_text = self._bands_choice(parameters, context)
        options: dict = {
            "raster": raster,
            "out_dir": out_dir,
            "labels": labels,
            "overlap": self.parameterAsInt(parameters, self.OVERLAP, context),
            "valid_fraction": self.parameterAsDouble(parameters, self.VALID_FRACTION, context),
            "block_size": self.parameterAsInt(parameters, self.BLOCK_SIZE, context),
            "empty_policy": self.EMPTY_POLICIES[self.parameterAsEnum(parameters, self.EMPTY_POLICY, context)],
            "min_object_pixels": self.parameterAsInt(parameters, self.MIN_OBJECT_PIXELS, context),
            "mask_threshold": self.parameterAsDouble(parameters, self.MASK_THRESHOLD, context),
            "seed": self.parameterAsInt(parameters, self.SEED, context),
            "allow_custom_vae": self.parameterAsBool(parameters, self.ALLOW_CUSTOM_VAE, context),
            "overwrite": True,  # Processing's folder chooser already asked
        }
        if preset:
            options["preset"] = preset
        elif bands_text:
            try:
                options["bands"] = [int(b) for b in bands_text.replace(" ", "").split(",") if b]
            except ValueError:
                raise _failure(f"bands {bands_text!r}: expected a preset or numbers like 3,2,1") from None
        resolution = self.parameterAsDouble(parameters, self.RESOLUTION, context)
        if resolution:
            options["resolution"] = resolution
        vae = self._vae(parameters, context)
        if vae:
            options["vae"] = vae
        result = _run({"task": "export", "options": options}, feedback)
        chips = str(Path(out_dir) / "chips.gpkg")
        return {
            self.OUTPUT: out_dir,
            "CHIPS_LAYER": f"{chips}|layername=chips",
            "SUMMARY": json.dumps(result),
            "N_TRAIN": result.get("n_train"),
            "N_VALID": result.get("n_valid"),
        }
