"""Processing ``water_change``: water gained, lost, persistent and unknown between two dates.

Like ``segment_water`` it only builds a JSON job and follows the worker process
(core.temporal.change runs there; QGIS imports neither rasterio nor torch). Raster inputs
are segmented first with the engine parameters, whose defaults are core.rules' (the water
index: Water change once defaulted to PaliGemma). The results load as one group, styled.
Water occurrence is occurrence_algorithm's; it shares ``layer_file`` and the class styles.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from qgis.core import (
    QgsMapLayer,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProcessingParameterVectorLayer,
    QgsProviderRegistry,
    QgsRasterLayer,
    QgsVectorLayer,
)

from .algorithms import (
    EngineAlgorithm,
    band_parameters,
    device_parameter,
    engine_parameter,
    min_area_parameter,
    model_parameter,
)
from .change_styles import style_class_layer
from .error_text import processing
from .options import raster_file, segment_job
from .processing_base import _tr, failure
from .run_groups import load_as_group, new_run
from .run_text import change_name

CHANGE_LAYERS = ("gained", "lost", "persistent", "unknown")


def layer_file(layer: QgsMapLayer | None) -> tuple[str | None, str | None]:
    """(file on disk, layer name inside it) behind a project layer; (None, None) when there is none."""
    if isinstance(layer, QgsRasterLayer):
        return raster_file(layer), None
    if isinstance(layer, QgsVectorLayer) and layer.providerType() == "ogr":
        parts = QgsProviderRegistry.instance().decodeUri("ogr", layer.source())
        path = parts.get("path") or ""
        return (path if Path(path).is_file() else None), (parts.get("layerName") or None)
    return None, None


def class_styler(name: str):
    """The style of a change or occurrence class layer (gained, permanent ...)."""
    return lambda layer: style_class_layer(layer, name)


class WaterChangeAlgorithm(EngineAlgorithm):
    BEFORE = "BEFORE"
    AFTER = "AFTER"
    REFERENCE = "REFERENCE"
    BEFORE_DATE = "BEFORE_DATE"
    AFTER_DATE = "AFTER_DATE"
    MIN_AREA = "MIN_AREA"
    AOI = "AOI"
    OUTPUT = "OUTPUT"
    OPTIONS = {
        "before": BEFORE,
        "after": AFTER,
        "raster": f"{BEFORE} / {AFTER}",  # a raster input's errors, while it is segmented
        "reference": REFERENCE,
        "reference_layer": REFERENCE,
        "before_date": BEFORE_DATE,
        "after_date": AFTER_DATE,
        "min_area_m2": MIN_AREA,
        "aoi": AOI,
        "engine": EngineAlgorithm.ENGINE,
        "bands": EngineAlgorithm.BANDS,
        "preset": EngineAlgorithm.BANDS,
        "green": EngineAlgorithm.GREEN,
        "nir": EngineAlgorithm.NIR,
        "swir": EngineAlgorithm.SWIR,
        "model": EngineAlgorithm.MODEL,
        "vae": EngineAlgorithm.VAE,
        "device": EngineAlgorithm.DEVICE,
        "resolution": EngineAlgorithm.RESOLUTION,
        "output": OUTPUT,
    }
    FRONT = processing(OPTIONS)

    def name(self) -> str:
        return "water_change"

    def displayName(self) -> str:  # noqa: N802
        return _tr("Water change (gained / lost between two dates)")

    def shortHelpString(self) -> str:  # noqa: N802
        return _tr(
            "Compares two water maps and writes gained (water after, not before: the flood extent when "
            "Before is a dry-season map), lost, persistent and unknown water, with areas in m² and both "
            "dates, plus a summary table.\n\n"
            "Before and After: the water layer of a Segment water GeoPackage, or a raster (segmented "
            "first with the engine options). Unknown: water on one date where the other did not look "
            "(nodata, clouds, outside its scene): never counted as gain or loss.\n\n"
            "Known water (optional): water that counts as there before, e.g. the permanent layer of Water "
            "occurrence: flood = After − known water. Without Before, it is the only before.\n\n"
            "Dates: on a map with dated scenes, only the scenes of that date (2019, 2019-08 or "
            "2019-08-31) are compared, so one run can be compared with itself; an undated map takes "
            "the date given.\n\n"
            "Maps on different grids or CRSs are compared as polygons (no resampling); two grids leave "
            "thin slivers along unchanged shores, which Minimum polygon area drops."
        )

    def createInstance(self) -> WaterChangeAlgorithm:  # noqa: N802
        return WaterChangeAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self._add_maps()
        self.addParameter(min_area_parameter(self.MIN_AREA))
        self.addParameter(engine_parameter(self.ENGINE, _tr("Engine for raster inputs")))
        self._add_shared_parameter(self.BANDS)
        advanced = [
            QgsProcessingParameterFeatureSource(
                self.AOI,
                _tr("Compare only inside (polygons)"),
                [QgsProcessing.SourceType.TypeVectorPolygon],
                optional=True,
            ),
            *band_parameters(self.GREEN, self.NIR, self.SWIR),
            model_parameter(self.MODEL),
            device_parameter(self.DEVICE),
        ]
        self._add_advanced(advanced)
        self._add_shared_parameter(self.VAE)
        self._add_shared_parameter(self.RESOLUTION)
        for name in (self.VAE, self.RESOLUTION):
            param = self.parameterDefinition(name)
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
        self._add_outputs()

    def _add_maps(self) -> None:
        """Before, After, Known water and the two dates."""
        self.addParameter(
            QgsProcessingParameterMapLayer(self.BEFORE, _tr("Before: water map or raster"), optional=True)
        )
        self.addParameter(QgsProcessingParameterMapLayer(self.AFTER, _tr("After: water map or raster")))
        self.addParameter(
            QgsProcessingParameterVectorLayer(
                self.REFERENCE,
                _tr("Known water, counted as before"),
                [QgsProcessing.SourceType.TypeVectorPolygon],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(self.BEFORE_DATE, _tr("Before date (YYYY-MM-DD)"), optional=True)
        )
        self.addParameter(
            QgsProcessingParameterString(self.AFTER_DATE, _tr("After date (YYYY-MM-DD)"), optional=True)
        )

    def _add_outputs(self) -> None:
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT, _tr("Water change (GeoPackage)"), QgsProcessing.SourceType.TypeVectorPolygon
            )
        )
        for name in CHANGE_LAYERS:
            self.addOutput(
                QgsProcessingOutputVectorLayer(
                    f"{name.upper()}_LAYER",
                    _tr(f"{name.capitalize()} water"),
                    QgsProcessing.SourceType.TypeVectorPolygon,
                )
            )
            self.addOutput(
                QgsProcessingOutputNumber(f"{name.upper()}_KM2", _tr(f"{name.capitalize()} (km²)"))
            )
        self.addOutput(QgsProcessingOutputString("SUMMARY", _tr("Change summary (JSON)")))

    def _input(self, parameters: dict, name: str, context: QgsProcessingContext) -> str | None:
        if not parameters.get(name):
            return None
        layer = self.parameterAsLayer(parameters, name, context)
        path, _ = layer_file(layer)
        if path is None:
            source = layer.source() if layer is not None else parameters.get(name)
            raise failure(
                f"{source}: {name.lower()} must be a GeoPackage from Segment water or a raster file on disk"
            )
        return path

    def _reference(
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> tuple[str | None, str | None]:
        if not parameters.get(self.REFERENCE):
            return None, None
        path, layer_name = layer_file(self.parameterAsVectorLayer(parameters, self.REFERENCE, context))
        if path is not None:
            return path, layer_name
        copy = self.parameterAsCompatibleSourceLayerPath(
            parameters, self.REFERENCE, context, ["gpkg"], "gpkg", feedback
        )
        return copy.split("|")[0], None

    def build_job(
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict:
        """The change job; its ``workdir`` (temporary segment outputs) is processAlgorithm's to add."""
        before = self._input(parameters, self.BEFORE, context)
        after = self._input(parameters, self.AFTER, context)
        reference, reference_layer = self._reference(parameters, context, feedback)
        if before is None and reference is None:
            raise failure("give a Before water map or raster, or Known water in its place")
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if Path(output).suffix.lower() != ".gpkg":
            raise failure(f"{output}: the output must be a GeoPackage (.gpkg)")
        aoi = None
        if parameters.get(self.AOI):
            aoi = self.parameterAsCompatibleSourceLayerPath(
                parameters, self.AOI, context, ["gpkg", "shp", "geojson"], "gpkg", feedback
            )
        segment = segment_job("", "", **self._engine_options(parameters, context))["options"]
        for key in ("raster", "output", "overwrite"):
            segment.pop(key, None)
        options = {
            "before": before,
            "after": after,
            "output": output,
            "reference": reference,
            "reference_layer": reference_layer,
            "before_date": self._text(parameters, self.BEFORE_DATE, context),
            "after_date": self._text(parameters, self.AFTER_DATE, context),
            "aoi": aoi,
            "min_area_m2": self.parameterAsDouble(parameters, self.MIN_AREA, context),
            "segment": segment,
            "overwrite": True,  # Processing's file chooser already asked about replacing the file
        }
        return {"task": "change", "options": options}

    def processAlgorithm(  # noqa: N802
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict:
        job = self.build_job(parameters, context, feedback)
        output = job["options"]["output"]
        scratch = tempfile.mkdtemp(prefix="paligemma_qgis_change_")
        try:
            job["options"]["workdir"] = scratch
            result = self._run(job, feedback)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        for note in result.get("notes") or []:
            feedback.pushWarning(note)
        group = change_name(result.get("before_date"), result.get("after_date"))
        layers = [(f"{output}|layername={name}", name, class_styler(name), True) for name in CHANGE_LAYERS]
        layers.append(
            (f"{output}|layername=observed", "observed on both dates", class_styler("observed"), False)
        )
        load_as_group(context, output, group, layers, new_run())
        out = {self.OUTPUT: output, "SUMMARY": json.dumps(result)}
        for name in CHANGE_LAYERS:
            out[f"{name.upper()}_LAYER"] = f"{output}|layername={name}"
            out[f"{name.upper()}_KM2"] = (result.get("areas_m2") or {}).get(name, 0.0) / 1e6
        return out
