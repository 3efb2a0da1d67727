"""Processing ``water_occurrence``: how often each pixel was water, over many dated water maps.

Like the other algorithms it only builds a JSON job (core.temporal.occurrence runs in the
worker) and loads the results as one group, styled (the occurrence ramp, the classes).
Its class thresholds default to core.rules', as the command line's ``occurrence``.
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
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from ..core import rules
from .change_algorithms import class_styler, layer_file
from .change_styles import style_occurrence
from .error_text import processing
from .processing_base import WorkerAlgorithm, _tr, failure
from .run_groups import load_as_group, new_run
from .run_text import occurrence_name


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
    OPTIONS = {
        "inputs": f"{INPUTS} / {FOLDER}",
        "output": OUTPUT,
        "classes": CLASSES,
        "resolution": RESOLUTION,
        "permanent": PERMANENT,
        "rare": RARE,
        "min_observations": MIN_OBSERVATIONS,
        "start": START,
        "end": END,
    }
    FRONT = processing(OPTIONS)

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
                rules.OCCURRENCE_PERMANENT,
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
                rules.OCCURRENCE_RARE,
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
                rules.OCCURRENCE_MIN_OBSERVATIONS,
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

    def _inputs(self, parameters: dict, context: QgsProcessingContext) -> list[str]:
        """The water maps' files (INPUTS), then the FOLDER."""
        inputs: list[str] = []
        for layer in self.parameterAsLayerList(parameters, self.INPUTS, context) or []:
            path, _ = layer_file(layer)
            if path is None:
                raise failure(f"{layer.source()}: not a GeoPackage from Segment water on disk")
            if path not in inputs:
                inputs.append(path)
        folder = (self.parameterAsFile(parameters, self.FOLDER, context) or "").strip()
        if folder:
            inputs.append(folder)
        if not inputs:
            raise failure("give the water maps, or a folder of them")
        return inputs

    def build_job(
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict:
        inputs = self._inputs(parameters, context)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if Path(output).suffix.lower() not in (".tif", ".tiff"):
            raise failure(f"{output}: the occurrence raster must be a GeoTIFF (.tif)")
        classes = self.parameterAsOutputLayer(parameters, self.CLASSES, context) or None
        if classes and Path(classes).suffix.lower() != ".gpkg":
            raise failure(f"{classes}: the classes must be a GeoPackage (.gpkg)")
        options = {
            "inputs": inputs,
            "output": output,
            "classes": classes,
            "resolution": self.parameterAsDouble(parameters, self.RESOLUTION, context) or None,
            "permanent": self.parameterAsDouble(parameters, self.PERMANENT, context),
            "rare": self.parameterAsDouble(parameters, self.RARE, context),
            "min_observations": self.parameterAsInt(parameters, self.MIN_OBSERVATIONS, context),
            "start": self._text(parameters, self.START, context),
            "end": self._text(parameters, self.END, context),
            "overwrite": True,  # Processing's file chooser already asked
        }
        return {"task": "occurrence", "options": options}

    def processAlgorithm(  # noqa: N802
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict:
        job = self.build_job(parameters, context, feedback)
        output, classes = job["options"]["output"], job["options"]["classes"]
        result = self._run(job, feedback)
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
                    (f"{classes}|layername={name}", name, class_styler(name), name != "observed")
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
