"""Processing algorithms ``water_change`` and ``water_occurrence``: water over time, in the worker.

Like ``segment_water`` they only build a JSON job and follow the worker process
(core.temporal.change / core.temporal.occurrence run there; QGIS imports neither rasterio nor torch). The
results load as one group per run, styled (change classes, occurrence ramp).

Both algorithms in one file (about 460 lines, most of it parameter declarations): they are
registered together and share how a project layer is traced back to its file.
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
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProcessingParameterVectorLayer,
    QgsProviderRegistry,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QCoreApplication

from .algorithms import WorkerAlgorithm, _failure, _run
from .change_styles import style_class_layer, style_occurrence
from .options import DEFAULT_MODEL, DEVICES, ENGINES, raster_file, segment_job
from .run_groups import load_as_group, new_run
from .run_text import change_name, occurrence_name

CHANGE_LAYERS = ("gained", "lost", "persistent", "unknown")


def _tr(text: str) -> str:
    return QCoreApplication.translate("PaliGemmaProcessing", text)


def layer_file(layer: QgsMapLayer | None) -> tuple[str | None, str | None]:
    """(file on disk, layer name inside it) behind a project layer; (None, None) when there is none."""
    if isinstance(layer, QgsRasterLayer):
        return raster_file(layer), None
    if isinstance(layer, QgsVectorLayer) and layer.providerType() == "ogr":
        parts = QgsProviderRegistry.instance().decodeUri("ogr", layer.source())
        path = parts.get("path") or ""
        return (path if Path(path).is_file() else None), (parts.get("layerName") or None)
    return None, None


def _styler(name: str):
    return lambda layer: style_class_layer(layer, name)


class WaterChangeAlgorithm(WorkerAlgorithm):
    BEFORE = "BEFORE"
    AFTER = "AFTER"
    REFERENCE = "REFERENCE"
    BEFORE_DATE = "BEFORE_DATE"
    AFTER_DATE = "AFTER_DATE"
    MIN_AREA = "MIN_AREA"
    AOI = "AOI"
    ENGINE = "ENGINE"
    BANDS = "BANDS"
    GREEN = "GREEN"
    NIR = "NIR"
    SWIR = "SWIR"
    MODEL = "MODEL"
    VAE = "VAE"
    DEVICE = "DEVICE"
    RESOLUTION = "RESOLUTION"
    OUTPUT = "OUTPUT"

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
            QgsProcessingParameterString(
                self.BEFORE_DATE,
                _tr("Before date (YYYY-MM-DD)"),
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(self.AFTER_DATE, _tr("After date (YYYY-MM-DD)"), optional=True)
        )
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
        self.addParameter(
            QgsProcessingParameterEnum(
                self.ENGINE,
                _tr("Engine for raster inputs"),
                options=[label for _, label in ENGINES],
                defaultValue=0,
            )
        )
        self._add_shared_parameter(self.BANDS)
        advanced = [
            QgsProcessingParameterFeatureSource(
                self.AOI,
                _tr("Compare only inside (polygons)"),
                [QgsProcessing.SourceType.TypeVectorPolygon],
                optional=True,
            ),
            QgsProcessingParameterNumber(
                self.GREEN,
                _tr("Green band (0 = automatic)"),
                QgsProcessingParameterNumber.Type.Integer,
                0,
                True,
                0,
            ),
            QgsProcessingParameterNumber(
                self.NIR,
                _tr("NIR band (0 = automatic)"),
                QgsProcessingParameterNumber.Type.Integer,
                0,
                True,
                0,
            ),
            QgsProcessingParameterNumber(
                self.SWIR,
                _tr("SWIR band (0 = automatic)"),
                QgsProcessingParameterNumber.Type.Integer,
                0,
                True,
                0,
            ),
            QgsProcessingParameterString(
                self.MODEL,
                _tr("Model (Hugging Face id or folder)"),
                defaultValue=DEFAULT_MODEL,
                optional=True,
            ),
            QgsProcessingParameterEnum(
                self.DEVICE, _tr("Device"), options=[label for _, label in DEVICES], defaultValue=0
            ),
        ]
        self._add_advanced(advanced)
        self._add_shared_parameter(self.VAE)
        self._add_shared_parameter(self.RESOLUTION)
        for name in (self.VAE, self.RESOLUTION):
            param = self.parameterDefinition(name)
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
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
            raise _failure(
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

    def processAlgorithm(  # noqa: N802
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict:
        before = self._input(parameters, self.BEFORE, context)
        after = self._input(parameters, self.AFTER, context)
        reference, reference_layer = self._reference(parameters, context, feedback)
        if before is None and reference is None:
            raise _failure("give a Before water map or raster, or Known water in its place")
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if Path(output).suffix.lower() != ".gpkg":
            raise _failure(f"{output}: the output must be a GeoPackage (.gpkg)")
        aoi = None
        if parameters.get(self.AOI):
            aoi = self.parameterAsCompatibleSourceLayerPath(
                parameters, self.AOI, context, ["gpkg", "shp", "geojson"], "gpkg", feedback
            )
        preset, bands_text = self._bands_choice(parameters, context)
        segment = segment_job(
            "",
            "",
            engine=ENGINES[self.parameterAsEnum(parameters, self.ENGINE, context)][0],
            bands=None if preset else (bands_text or None),
            preset=preset,
            green=self.parameterAsInt(parameters, self.GREEN, context),
            nir=self.parameterAsInt(parameters, self.NIR, context),
            swir=self.parameterAsInt(parameters, self.SWIR, context),
            resolution=self.parameterAsDouble(parameters, self.RESOLUTION, context),
            model=(self.parameterAsString(parameters, self.MODEL, context) or "").strip() or None,
            vae=self._vae(parameters, context),
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)][0],
        )["options"]
        for key in ("raster", "output", "overwrite"):
            segment.pop(key, None)
        scratch = tempfile.mkdtemp(prefix="paligemma_qgis_change_")
        try:
            options = {
                "before": before,
                "after": after,
                "output": output,
                "reference": reference,
                "reference_layer": reference_layer,
                "before_date": (self.parameterAsString(parameters, self.BEFORE_DATE, context) or "").strip()
                or None,
                "after_date": (self.parameterAsString(parameters, self.AFTER_DATE, context) or "").strip()
                or None,
                "aoi": aoi,
                "min_area_m2": self.parameterAsDouble(parameters, self.MIN_AREA, context),
                "segment": segment,
                "workdir": scratch,
                "overwrite": True,  # Processing's file chooser already asked about replacing the file
            }
            result = _run({"task": "change", "options": options}, feedback)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        for note in result.get("notes") or []:
            feedback.pushWarning(note)
        group = change_name(result.get("before_date"), result.get("after_date"))
        layers = [(f"{output}|layername={name}", name, _styler(name), True) for name in CHANGE_LAYERS]
        layers.append((f"{output}|layername=observed", "observed on both dates", _styler("observed"), False))
        load_as_group(context, output, group, layers, new_run())
        out = {self.OUTPUT: output, "SUMMARY": json.dumps(result)}
        for name in CHANGE_LAYERS:
            out[f"{name.upper()}_LAYER"] = f"{output}|layername={name}"
            out[f"{name.upper()}_KM2"] = (result.get("areas_m2") or {}).get(name, 0.0) / 1e6
        return out


class WaterOccurrenceAlgorithm(WorkerAlgorithm):
    INPUTS = "INPUTS"
    FOLDER = "FOLDER"
    RESOLUTION = "RESOLUTION"
    PERMANENT = "PERMANENT"
    RARE = "RARE"
    MIN_OBSERVATIONS = "MIN_OBSERVATIONS"
    START = "START"
    END = "END"
    OUTPUT = "OUTPUT"
    CLASSES = "CLASSES"

    def name(self) -> str:
        return "water_occurrence"

    def displayName(self) -> str:  # noqa: N802
        return _tr("Water occurrence (how often water, over many dates)")

    def shortHelpString(self) -> str:  # noqa: N802
        return _tr(
            "From water maps of the same area on many dates (GeoPackages from Segment water: a region run "
            "with dated scenes, or one file per date), writes a raster of water occurrence: the % of the "
            "valid observations of each pixel that were water (0–100, nodata where never observed), with "
            "the number of observations (band 2) and of water observations (band 3). Scenes of one day "
            "count once; clouds and nodata are not observations.\n\n"
            "Classes (optional): permanent (≥ Permanent %), seasonal, rare water as polygons; the permanent "
            "layer is the Known water of Water change for floods."
        )

    def createInstance(self) -> WaterOccurrenceAlgorithm:  # noqa: N802
        return WaterOccurrenceAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.addParameter(
            QgsProcessingParameterMultipleLayers(
                self.INPUTS,
                _tr("Water maps (GeoPackages from Segment water)"),
                QgsProcessing.SourceType.TypeVectorPolygon,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.FOLDER,
                _tr("… or a folder of them"),
                behavior=QgsProcessingParameterFile.Behavior.Folder,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.PERMANENT,
                _tr("Permanent water from (%)"),
                QgsProcessingParameterNumber.Type.Double,
                90.0,
                False,
                0.0,
                100.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.RARE,
                _tr("Rare water below (%)"),
                QgsProcessingParameterNumber.Type.Double,
                25.0,
                False,
                0.0,
                100.0,
            )
        )
        advanced = [
            QgsProcessingParameterNumber(
                self.RESOLUTION,
                _tr("Pixel size in units of the maps' CRS (0 = the finest pixel of the inputs)"),
                QgsProcessingParameterNumber.Type.Double,
                0.0,
                False,
                0.0,
            ),
            QgsProcessingParameterNumber(
                self.MIN_OBSERVATIONS,
                _tr("Occurrence only where observed at least"),
                QgsProcessingParameterNumber.Type.Integer,
                1,
                False,
                1,
            ),
            QgsProcessingParameterString(self.START, _tr("Only dates from (YYYY-MM-DD)"), optional=True),
            QgsProcessingParameterString(self.END, _tr("Only dates up to (YYYY-MM-DD)"), optional=True),
        ]
        self._add_advanced(advanced)
        self.addParameter(
            QgsProcessingParameterRasterDestination(self.OUTPUT, _tr("Water occurrence (GeoTIFF)"))
        )
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                self.CLASSES,
                _tr("Permanent / seasonal / rare water (GeoPackage)"),
                QgsProcessing.SourceType.TypeVectorPolygon,
                optional=True,
                createByDefault=False,
            )
        )
        self.addOutput(QgsProcessingOutputString("SUMMARY", _tr("Occurrence summary (JSON)")))
        self.addOutput(QgsProcessingOutputNumber("OBSERVATIONS", _tr("Observations")))

    def processAlgorithm(  # noqa: N802
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict:
        inputs: list[str] = []
        for layer in self.parameterAsLayerList(parameters, self.INPUTS, context) or []:
            path, _ = layer_file(layer)
            if path is None:
                raise _failure(f"{layer.source()}: not a GeoPackage from Segment water on disk")
            if path not in inputs:
                inputs.append(path)
        folder = (self.parameterAsFile(parameters, self.FOLDER, context) or "").strip()
        if folder:
            inputs.append(folder)
        if not inputs:
            raise _failure("give the water maps, or a folder of them")
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if Path(output).suffix.lower() not in (".tif", ".tiff"):
            raise _failure(f"{output}: the occurrence raster must be a GeoTIFF (.tif)")
        classes = self.parameterAsOutputLayer(parameters, self.CLASSES, context) or None
        if classes and Path(classes).suffix.lower() != ".gpkg":
            raise _failure(f"{classes}: the classes must be a GeoPackage (.gpkg)")
        options = {
            "inputs": inputs,
            "output": output,
            "classes": classes,
            "resolution": self.parameterAsDouble(parameters, self.RESOLUTION, context) or None,
            "permanent": self.parameterAsDouble(parameters, self.PERMANENT, context),
            "rare": self.parameterAsDouble(parameters, self.RARE, context),
            "min_observations": self.parameterAsInt(parameters, self.MIN_OBSERVATIONS, context),
            "start": (self.parameterAsString(parameters, self.START, context) or "").strip() or None,
            "end": (self.parameterAsString(parameters, self.END, context) or "").strip() or None,
            "overwrite": True,  # Processing's file chooser already asked
        }
        result = _run({"task": "occurrence", "options": options}, feedback)
        for note in result.get("notes") or []:
            feedback.pushWarning(note)
        group, run = occurrence_name(result.get("observations"), result.get("dates")), new_run()
        load_as_group(
            context, output, group, [(output, "water occurrence", style_occurrence, True)], run, first_rank=10
        )
        if classes:
            load_as_group(
                context,
                classes,
                group,
                [
                    (f"{classes}|layername={name}", name, _styler(name), name != "observed")
                    for name in ("permanent", "seasonal", "rare", "observed")
                ],
                run,
            )
        return {
            self.OUTPUT: output,
            self.CLASSES: classes,
            "SUMMARY": json.dumps(result),
            "OBSERVATIONS": result.get("observations"),
        }
