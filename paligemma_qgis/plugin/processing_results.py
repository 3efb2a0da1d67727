"""What the segment algorithms load and say when a run has ended (Processing's thread, then its
post-processors on the main thread).

A segment result loads as one top-level group named by what it holds ("Water in lakes",
"Water in 5 rasters (2 failed)"): water_dissolved, water, scenes and chips, styled, the audit
layers hidden (run_groups files them). A map the water index doubts gets one warning line.
"""

from __future__ import annotations

from qgis.core import QgsProcessingContext, QgsProcessingFeedback

from .layers import (
    CHIPS_LAYER,
    RESULT_ORDER,
    WATER_LAYER,
    gpkg_layer_names,
    shown,
    style_result_layer,
    unsure_scenes,
)
from .run_groups import load_as_group, new_run
from .run_text import unsure_text


def load_segment_result(context: QgsProcessingContext, output: str, group: str, region: bool = True) -> None:
    """Instead of the GeoPackage's first layer: each of its result layers, styled, in one new group
    (one raster's: water and chips, as the dialog loads it)."""
    names = set(gpkg_layer_names(output))
    wanted = RESULT_ORDER if region else (WATER_LAYER, CHIPS_LAYER)
    kinds = [kind for kind in wanted if kind in names]
    layers = [(f"{output}|layername={kind}", kind, _styler(kind), shown(kind, set(kinds))) for kind in kinds]
    load_as_group(context, output, group, layers, new_run())


def _styler(kind: str):
    return lambda layer: style_result_layer(layer, kind)


def report_unsure(output: str, scenes: int, feedback: QgsProcessingFeedback) -> str:
    """Warn in Processing's log when the water index doubts a scene's map; returns the line ("" if none)."""
    text = unsure_text(unsure_scenes(output), scenes, "processing")
    if text:
        feedback.pushWarning(text)
    return text
