"""Training data for fine-tuning: chips + known water -> big_vision/HF PaliGemma JSONL.

Two entry points share one recipe:

- ``export_training_data(ExportOptions)``: a georeferenced raster plus water labels (a vector
  file in any CRS, a mask raster on any grid, or the water index) -> chips cut on the same
  grid the segmenter uses, a spatial-block train/valid split, and ``chips.gpkg`` for review.
- ``export_pairs(PairsOptions)``: plain image/mask folders (e.g. the Kaggle water-bodies
  set), no georeference, split image by image.

The recipe is big_vision's (and anamabo/SegmentWaterWithPaligemma's convert.py): one
object per 8-connected water component; its box is the tight pixel box with exclusive
x2/y2 edges, ``loc = round(v * 1023)``; its mask is the component cropped to the box,
resized to 64x64 (bilinear, antialiased, soft values) and encoded to 16 tokens by the
VQ-VAE. Components come from ``rasterio.features.shapes(connectivity=8)`` (GDAL's
polygonizer, already a dependency; scipy is not one) rasterised back with one value per
polygon: that gives an exact label image in two library calls.

Differences from convert.py, on purpose: objects are kept by pixel count
(``min_object_pixels``) instead of "the simplified contour has >= 8 points"; holes
(islands) stay land instead of being filled; a component nested in another's hole is its
own object; objects are ordered largest first, so a model that stops early loses the
small ones; objects whose box collapses on the 1024 grid (y2 <= y1 or x2 <= x1) are
dropped, since big_vision rejects them. Boxes of the objects both keep are identical.
"""

from ..options import LABEL, PREFIX, WATER_INDEX, ExportOptions, PairsOptions
from .georef import export_training_data
from .pairs import binarise_mask_image, export_pairs
from .recipe import (
    Component,
    EncodedChip,
    connected_components,
    encode_chip,
    load_codec,
    loc_box,
    mask_iou,
    water_components,
)
from .split import EMPTY_POLICIES, apply_empty_policy, exclude_overlaps, spatial_blocks, split_blocks
from .summary import ExportSummary

__all__ = [
    "EMPTY_POLICIES",
    "LABEL",
    "PREFIX",
    "WATER_INDEX",
    "Component",
    "EncodedChip",
    "ExportOptions",
    "ExportSummary",
    "PairsOptions",
    "apply_empty_policy",
    "binarise_mask_image",
    "connected_components",
    "encode_chip",
    "exclude_overlaps",
    "export_pairs",
    "export_training_data",
    "load_codec",
    "loc_box",
    "mask_iou",
    "spatial_blocks",
    "split_blocks",
    "water_components",
]
