"""Processing ``segment_water``, and what it shares with ``segment_water_region``.

``SegmentAlgorithm`` holds the segment parameters (engine, bands, model, chips, area, Ray
address, the GeoPackage output), their defaults from core.rules and the worker job built
from them; region_algorithm.py adds many inputs. The worker run and its failure are
processing_base's.
"""

from __future__ import annotations

import json
from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from ..core import rules
from . import ray_trust
from .error_text import processing
from .layers import WATER_LAYER
from .options import (
    AUTO_OVERLAP,
    DEFAULT_DEVICE,
    DEFAULT_ENGINE,
    DEFAULT_MODEL,
    DEVICES,
    ENGINES,
    device_index,
    engine_index,
    segment_job,
)
from .processing_base import WorkerAlgorithm, _tr, failure
from .processing_results import load_segment_result, report_unsure
from .run_text import single_name
from .worker_env import ray_address, ray_address_problem


# The segment options' parameters, as segment_water, segment_water_region and water_change declare them.
def engine_parameter(name: str, description: str) -> QgsProcessingParameterEnum:
    return QgsProcessingParameterEnum(
        name, description, options=[label for _, label in ENGINES], defaultValue=engine_index(DEFAULT_ENGINE)
    )


def model_parameter(name: str) -> QgsProcessingParameterString:
    return QgsProcessingParameterString(
        name, _tr("Model (Hugging Face id or folder)"), defaultValue=DEFAULT_MODEL, optional=True
    )


def device_parameter(name: str) -> QgsProcessingParameterEnum:
    return QgsProcessingParameterEnum(
        name,
        _tr("Device"),
        options=[label for _, label in DEVICES],
        defaultValue=device_index(DEFAULT_DEVICE),
    )


def band_parameters(*names: str) -> list[QgsProcessingParameterNumber]:
    """GREEN, NIR, SWIR: band numbers, 0 = automatic (band descriptions, then the preset)."""
    return [
        QgsProcessingParameterNumber(
            name,
            _tr(f"{ {'GREEN': 'Green'}.get(name, name) } band (0 = automatic)"),
            QgsProcessingParameterNumber.Type.Integer,
            0,
            True,
            0,
        )
        for name in names
    ]


def overlap_parameter(name: str) -> QgsProcessingParameterNumber:
    return QgsProcessingParameterNumber(
        name,
        _tr(
            f"Chip overlap (pixels; {AUTO_OVERLAP} = auto: {rules.default_overlap('paligemma')} for "
            f"PaliGemma, {rules.default_overlap('water-index')} for the water index)"
        ),
        QgsProcessingParameterNumber.Type.Integer,
        AUTO_OVERLAP,
        False,
        AUTO_OVERLAP,
        200,
    )


def min_area_parameter(name: str) -> QgsProcessingParameterNumber:
    return QgsProcessingParameterNumber(
        name, _tr("Minimum polygon area (m²)"), QgsProcessingParameterNumber.Type.Double, 0.0, False, 0.0
    )


class EngineAlgorithm(WorkerAlgorithm):
    """An algorithm that segments rasters: its engine, band, model and device parameters."""

    ENGINE = "ENGINE"
    GREEN = "GREEN"
    NIR = "NIR"
    SWIR = "SWIR"
    MODEL = "MODEL"
    DEVICE = "DEVICE"

    def _engine_options(self, parameters: dict, context: QgsProcessingContext) -> dict:
        """Engine, bands, resolution, model, VAE and device: what segmenting a raster needs (also
        water_change's raster inputs)."""
        preset, bands_text = self._bands_choice(parameters, context)
        return {
            "engine": ENGINES[self.parameterAsEnum(parameters, self.ENGINE, context)][0],
            "bands": None if preset else (bands_text or None),
            "preset": preset,
            "green": self.parameterAsInt(parameters, self.GREEN, context),
            "nir": self.parameterAsInt(parameters, self.NIR, context),
            "swir": self.parameterAsInt(parameters, self.SWIR, context),
            "resolution": self.parameterAsDouble(parameters, self.RESOLUTION, context),
            "model": self._text(parameters, self.MODEL, context),
            "vae": self._vae(parameters, context),
            "device": DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)][0],
        }


class SegmentAlgorithm(EngineAlgorithm):
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

    OPTIONS: dict[str, str] = {
        "raster": INPUT,
        "engine": ENGINE,
        "bands": BANDS,
        "preset": BANDS,
        "green": GREEN,
        "nir": NIR,
        "swir": SWIR,
        "model": MODEL,
        "vae": VAE,
        "device": DEVICE,
        "batch_size": BATCH_SIZE,
        "overlap": OVERLAP,
        "resolution": RESOLUTION,
        "min_area_m2": MIN_AREA,
        "aoi": AOI,
        "threshold": THRESHOLD,
        "ray_address": RAY_ADDRESS,
        "executor": RAY_ADDRESS,
        "output": OUTPUT,
    }
    FRONT = processing(OPTIONS)

    def _add_segment_parameters(self, advanced_extra: list | None = None) -> None:
        """Engine to minimum area, then the advanced ones (AOI, band numbers, ``advanced_extra``,
        Ray address)."""
        self.addParameter(engine_parameter(self.ENGINE, _tr("Engine")))
        self._add_shared_parameter(self.BANDS)
        self.addParameter(model_parameter(self.MODEL))
        self._add_shared_parameter(self.VAE)
        self.addParameter(device_parameter(self.DEVICE))
        self.addParameter(
            QgsProcessingParameterNumber(
                self.BATCH_SIZE,
                _tr(
                    "Batch size (chips per model call; 0 = auto: what GPU memory holds, "
                    f"{rules.CPU_BATCH_SIZE} on CPU)"
                ),
                QgsProcessingParameterNumber.Type.Integer,
                0,
                False,
                0,
                256,
            )
        )
        self.addParameter(overlap_parameter(self.OVERLAP))
        self._add_shared_parameter(self.RESOLUTION)
        self.addParameter(min_area_parameter(self.MIN_AREA))
        advanced = [
            QgsProcessingParameterFeatureSource(
                self.AOI,
                _tr("Area of interest (polygons)"),
                [QgsProcessing.SourceType.TypeVectorPolygon],
                optional=True,
            ),
            *band_parameters(self.GREEN, self.NIR, self.SWIR),
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
            raise failure(f"{output}: the output must be a GeoPackage (.gpkg)")
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
        aoi = None
        if parameters.get(self.AOI):
            aoi = self.parameterAsCompatibleSourceLayerPath(
                parameters, self.AOI, context, ["gpkg", "shp", "geojson"], "gpkg", feedback
            )
        address = self._text(parameters, self.RAY_ADDRESS, context) or ""
        problem = ray_address_problem(address)
        if problem:
            raise failure(problem.replace("Ray address", "RAY_ADDRESS", 1))
        if not ray_trust.trusted(
            address
        ):  # a cluster runs this plugin's code: confirmed once, in Worker setup
            raise failure(ray_trust.refused_text(address, "RAY_ADDRESS"))
        given = parameters.get(self.THRESHOLD)
        threshold = (
            None if given in (None, "") else self.parameterAsDouble(parameters, self.THRESHOLD, context)
        )
        overlap = self.parameterAsInt(parameters, self.OVERLAP, context)
        return segment_job(
            raster,
            output,
            **self._engine_options(parameters, context),
            overlap=None if overlap == AUTO_OVERLAP else overlap,
            aoi=aoi,
            min_area_m2=self.parameterAsDouble(parameters, self.MIN_AREA, context),
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

    def build_job(
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict:
        raster = self._raster_input(parameters, context, ", not a web service")
        return self._segment_job(raster, self._output(parameters, context), parameters, context, feedback)

    def processAlgorithm(  # noqa: N802
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict:
        job = self.build_job(parameters, context, feedback)
        output = job["options"]["output"]
        result = self._run(job, feedback)
        water_uri = f"{output}|layername={WATER_LAYER}"
        report_unsure(output, 1, feedback)
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        name = single_name(layer.name() if layer else Path(job["options"]["raster"]).stem)
        load_segment_result(context, output, name, region=False)
        return {
            self.OUTPUT: output,
            "WATER_LAYER": water_uri,
            "SUMMARY": json.dumps(result),
            "WATER_AREA_KM2": result.get("water_area_km2"),
        }
