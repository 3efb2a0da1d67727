"""Processing: ``paligemma:segment_water_region``, water in many rasters in one run.

The same parameters and worker job as ``segment_water`` (algorithms.SegmentAlgorithm), with
many inputs (project layers or files, and a folder), Stop at the first failing scene and
Merge water across scenes. The result is one GeoPackage; loaded into QGIS it is one top-level group
"Water in N rasters (k failed)": water (blue), scenes (observed footprints, failed scenes hatched
red) and chips (hidden), filed by run_groups (QGIS 3.22 has no groups for Processing outputs,
and newer ones would join any group of the same name).
"""

from __future__ import annotations

import json

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
)

from .algorithms import SegmentAlgorithm
from .error_text import processing, scene_errors
from .layers import SCENES_LAYER, WATER_LAYER
from .options import gdal_path
from .processing_base import _tr, failure
from .processing_results import load_segment_result, report_unsure
from .run_text import region_name
from .stac_search_params import HELP as SEARCH_HELP
from .stac_search_params import cloud_mask_option, cloud_mask_parameter, search_options, search_parameters


class SegmentWaterRegionAlgorithm(SegmentAlgorithm):
    INPUTS = "INPUTS"
    FOLDER = "FOLDER"
    FAIL_FAST = "FAIL_FAST"
    DISSOLVE = "DISSOLVE"
    OPTIONS = {
        **SegmentAlgorithm.OPTIONS,
        "raster": f"{INPUTS} / {FOLDER}",
        "fail_fast": FAIL_FAST,
        "dissolve": DISSOLVE,
        "stac_api": "STAC_API",
        "collection": "STAC_COLLECTION",
        "bbox": "STAC_EXTENT",
        "datetime": "STAC_START / STAC_END",
        "max_cloud": "STAC_MAX_CLOUD",
        "limit": "STAC_LIMIT",
        "sign": "STAC_SIGN",
        "cloud_mask": "CLOUD_MASK",
    }
    FRONT = processing(OPTIONS)

    def name(self) -> str:
        return "segment_water_region"

    def displayName(self) -> str:  # noqa: N802
        return _tr("Map water in many rasters")

    def shortHelpString(self) -> str:  # noqa: N802
        return _tr(
            "Maps water in many rasters in one run (a district, a province, a flood season) and writes one "
            "GeoPackage: 'water' (every scene's polygons, with scene and date), 'scenes' (each scene's "
            "observed footprint, status and error) and 'chips'.\n\n"
            "INPUTS: raster layers or files; FOLDER: a folder of rasters; both may be given. Rasters may "
            "differ in CRS, size and band layout (the bands follow BANDS / GREEN / NIR / SWIR, or each "
            "raster's band descriptions). A scene that fails is recorded and the run goes on, unless "
            "FAIL_FAST. DISSOLVE adds 'water_dissolved', water merged across overlapping scenes.\n\n"
            "An interrupted run continues where it stopped when run again with the same parameters. "
            "RAY_ADDRESS (Worker setup's by default) sends the work to a Ray cluster (the rasters must "
            "be readable there: shared storage or /vsis3/ paths).\n\n" + SEARCH_HELP
        )

    def createInstance(self) -> SegmentWaterRegionAlgorithm:  # noqa: N802
        return SegmentWaterRegionAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.addParameter(
            QgsProcessingParameterMultipleLayers(
                self.INPUTS,
                _tr("Input rasters"),
                QgsProcessing.SourceType.TypeRaster,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.FOLDER,
                _tr("Folder of rasters"),
                behavior=QgsProcessingParameterFile.Behavior.Folder,
                optional=True,
            )
        )
        for param in search_parameters():
            self.addParameter(param)
        self.addParameter(cloud_mask_parameter())
        self._add_segment_parameters(
            [
                QgsProcessingParameterBoolean(
                    self.FAIL_FAST, _tr("Stop at the first failing scene"), defaultValue=False
                ),
                QgsProcessingParameterBoolean(
                    self.DISSOLVE, _tr("Merge water across scenes (water_dissolved)"), defaultValue=False
                ),
            ]
        )
        self._add_output()
        self.addOutput(
            QgsProcessingOutputVectorLayer(
                "SCENES_LAYER", _tr("Scenes layer"), QgsProcessing.SourceType.TypeVectorPolygon
            )
        )
        self.addOutput(QgsProcessingOutputNumber("SCENES", _tr("Scenes")))
        self.addOutput(QgsProcessingOutputNumber("FAILED", _tr("Scenes that failed")))

    def _inputs(self, parameters: dict, context: QgsProcessingContext, searching: bool = False) -> list[str]:
        """The rasters of INPUTS (files or /vsi paths) and the FOLDER, in that order (none for a search)."""
        inputs = []
        for layer in self.parameterAsLayerList(parameters, self.INPUTS, context):
            path = gdal_path(layer)
            if path is None:
                raise failure(f"{layer.source()}: INPUTS must be raster files (GDAL), not a web service")
            inputs.append(path)
        folder = (self.parameterAsFile(parameters, self.FOLDER, context) or "").strip()
        if folder:
            inputs.append(folder)
        if searching:
            if inputs:
                raise failure("give either the rasters to map (INPUTS, FOLDER) or a STAC search (STAC_API)")
            return []
        if not inputs:
            raise failure("give the rasters to map: INPUTS, FOLDER, or both (or a STAC search: STAC_API)")
        return list(dict.fromkeys(inputs))

    def build_job(
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict:
        search = search_options(self, parameters, context)
        return self._segment_job(
            self._inputs(parameters, context, searching=search is not None),
            self._output(parameters, context),
            parameters,
            context,
            feedback,
            fail_fast=self.parameterAsBool(parameters, self.FAIL_FAST, context),
            dissolve=self.parameterAsBool(parameters, self.DISSOLVE, context),
            search=search,
            cloud_mask=cloud_mask_option(self, parameters, context),
        )

    def processAlgorithm(  # noqa: N802
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict:
        job = self.build_job(parameters, context, feedback)
        output = job["options"]["output"]
        result = self._run(job, feedback)
        scenes = int(result.get("scenes") or 1)
        failed = int(result.get("failed") or 0)
        for scene, error in scene_errors(result.get("details") or {}, self.FRONT, job["options"]).items():
            feedback.pushWarning(f"scene {scene} failed: {error}")
        if failed:
            feedback.pushWarning(f"{failed} of {scenes} scenes failed: see the 'scenes' layer")
        report_unsure(output, scenes, feedback)
        load_segment_result(context, output, region_name(scenes, failed))
        return {
            self.OUTPUT: output,
            "WATER_LAYER": f"{output}|layername={WATER_LAYER}",
            "SCENES_LAYER": f"{output}|layername={SCENES_LAYER}",
            "SUMMARY": json.dumps(result),
            "WATER_AREA_KM2": result.get("water_area_km2"),
            "SCENES": scenes,
            "FAILED": failed,
        }
