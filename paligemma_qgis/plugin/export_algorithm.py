"""Processing ``export_training_data``: raster + known water -> PaliGemma fine-tuning chips.

The job is core.train.export's (run in the worker); its defaults are core.rules', as the
command line's ``export`` and the Training data dialog take them.
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
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from ..core import rules
from .error_text import processing
from .options import EMPTY_POLICIES, raster_file
from .processing_base import WorkerAlgorithm, _tr, failure


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
    OPTIONS = {
        "raster": INPUT,
        "labels": f"{LABELS_VECTOR} / {LABELS_MASK}",
        "label_layer": LABELS_VECTOR,
        "mask_threshold": MASK_THRESHOLD,
        "bands": BANDS,
        "preset": BANDS,
        "vae": VAE,
        "allow_custom_vae": ALLOW_CUSTOM_VAE,
        "resolution": RESOLUTION,
        "overlap": OVERLAP,
        "valid_fraction": VALID_FRACTION,
        "block_size": BLOCK_SIZE,
        "empty_policy": EMPTY_POLICY,
        "empty_cap": EMPTY_POLICY,
        "min_object_pixels": MIN_OBJECT_PIXELS,
        "seed": SEED,
        "out_dir": OUTPUT,
        "output": OUTPUT,
    }
    FRONT = processing(OPTIONS)

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
                rules.EXPORT_VALID_FRACTION,
                False,
                0.0,
                0.9,
            )
        )
        cap = f"Cap at {rules.EMPTY_CAP:.0%} of each split"
        self.addParameter(
            QgsProcessingParameterEnum(
                self.EMPTY_POLICY,
                _tr("Chips without water"),
                options=[_tr(cap if name == "cap" else label) for name, label in EMPTY_POLICIES],
                defaultValue=[name for name, _ in EMPTY_POLICIES].index(rules.EXPORT_EMPTY_POLICY),
            )
        )
        self._add_advanced(self._advanced_parameters())
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, _tr("Output folder")))
        self.addOutput(
            QgsProcessingOutputVectorLayer(
                "CHIPS_LAYER", _tr("Chips"), QgsProcessing.SourceType.TypeVectorPolygon
            )
        )
        self.addOutput(QgsProcessingOutputString("SUMMARY", _tr("Export summary (JSON)")))
        self.addOutput(QgsProcessingOutputNumber("N_TRAIN", _tr("Training chips")))
        self.addOutput(QgsProcessingOutputNumber("N_VALID", _tr("Validation chips")))

    def _advanced_parameters(self) -> list:
        return [
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
                rules.EXPORT_BLOCK_SIZE,
                False,
                1,
            ),
            QgsProcessingParameterNumber(
                self.MIN_OBJECT_PIXELS,
                _tr("Smallest water object (pixels)"),
                QgsProcessingParameterNumber.Type.Integer,
                rules.EXPORT_MIN_OBJECT_PIXELS,
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

    def _labels(
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> str:
        """The known water: a polygon file, a mask raster's file, or the water index."""
        has_vector = bool(parameters.get(self.LABELS_VECTOR))
        mask_layer = self.parameterAsRasterLayer(parameters, self.LABELS_MASK, context)
        if has_vector and mask_layer is not None:
            raise failure("give known water as polygons or as a mask raster, not both")
        if has_vector:
            return self.parameterAsCompatibleSourceLayerPath(
                parameters, self.LABELS_VECTOR, context, ["gpkg", "shp", "geojson"], "gpkg", feedback
            )
        if mask_layer is not None:
            labels = raster_file(mask_layer)
            if labels is None:
                raise failure(f"{mask_layer.source()}: the mask must be a raster file on disk")
            return labels
        feedback.pushInfo("no known water given: labels come from the water index")
        return rules.WATER_INDEX_LABELS

    def build_job(
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict:
        options: dict = {
            "raster": self._raster_input(parameters, context),
            "out_dir": self.parameterAsString(parameters, self.OUTPUT, context),
            "labels": self._labels(parameters, context, feedback),
            "overlap": self.parameterAsInt(parameters, self.OVERLAP, context),
            "valid_fraction": self.parameterAsDouble(parameters, self.VALID_FRACTION, context),
            "block_size": self.parameterAsInt(parameters, self.BLOCK_SIZE, context),
            "empty_policy": EMPTY_POLICIES[self.parameterAsEnum(parameters, self.EMPTY_POLICY, context)][0],
            "min_object_pixels": self.parameterAsInt(parameters, self.MIN_OBJECT_PIXELS, context),
            "mask_threshold": self.parameterAsDouble(parameters, self.MASK_THRESHOLD, context),
            "seed": self.parameterAsInt(parameters, self.SEED, context),
            "allow_custom_vae": self.parameterAsBool(parameters, self.ALLOW_CUSTOM_VAE, context),
            "overwrite": True,  # Processing's folder chooser already asked
        }
        preset, bands_text = self._bands_choice(parameters, context)
        if preset:
            options["preset"] = preset
        elif bands_text:
            try:
                options["bands"] = [int(b) for b in bands_text.replace(" ", "").split(",") if b]
            except ValueError:
                raise failure(f"bands {bands_text!r}: expected a preset or numbers like 3,2,1") from None
        resolution = self.parameterAsDouble(parameters, self.RESOLUTION, context)
        if resolution:
            options["resolution"] = resolution
        vae = self._vae(parameters, context)
        if vae:
            options["vae"] = vae
        return {"task": "export", "options": options}

    def processAlgorithm(  # noqa: N802
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict:
        job = self.build_job(parameters, context, feedback)
        out_dir = job["options"]["out_dir"]
        result = self._run(job, feedback)
        chips = str(Path(out_dir) / "chips.gpkg")
        return {
            self.OUTPUT: out_dir,
            "CHIPS_LAYER": f"{chips}|layername=chips",
            "SUMMARY": json.dumps(result),
            "N_TRAIN": result.get("n_train"),
            "N_VALID": result.get("n_valid"),
        }
