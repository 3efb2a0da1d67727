"""Processing provider ``paligemma``: makes the algorithms scriptable (models, batch, qgis_process)."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import SegmentWaterAlgorithm
from .change_algorithms import WaterChangeAlgorithm
from .export_algorithm import ExportTrainingDataAlgorithm
from .occurrence_algorithm import WaterOccurrenceAlgorithm
from .region_algorithm import SegmentWaterRegionAlgorithm
from .resources import icon_path


class PaliGemmaProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "paligemma"

    def name(self) -> str:
        return "PaliGemma Water"

    def longName(self) -> str:  # noqa: N802 - QGIS API
        return "PaliGemma Water (water mapping with PaliGemma)"

    def icon(self) -> QIcon:
        path = icon_path()
        return QIcon(str(path)) if path else super().icon()

    def loadAlgorithms(self) -> None:  # noqa: N802
        for algorithm in algorithms():
            self.addAlgorithm(algorithm)

    def supportedOutputVectorLayerExtensions(self) -> list[str]:  # noqa: N802
        # The worker writes GeoPackages itself (several layers), so that is the one choice.
        return ["gpkg"]

    def defaultVectorFileExtension(self, hasGeometry: bool = True) -> str:  # noqa: N802, N803
        return "gpkg"


def algorithms() -> list:
    """Algorithm instances the provider offers."""
    return [SegmentWaterAlgorithm(), SegmentWaterRegionAlgorithm(), ExportTrainingDataAlgorithm()] + [
        WaterChangeAlgorithm(),
        WaterOccurrenceAlgorithm(),
    ]
