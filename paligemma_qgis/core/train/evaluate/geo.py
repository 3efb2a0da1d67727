"""Georeferenced: predicted water (polygons or a mask raster) against truth polygons or a truth mask.

Both are rasterised (pixel-centre rule) on one reference grid (``reference_raster``, else the
truth raster's grid) block by block. Only pixels that are valid in the reference raster,
labelled in the truth (not its nodata, nor ``truth_nodata``: Sen1Floods11 labels mark
"unknown" with -1) and with a prediction (inside a chip the model saw, or not the prediction
mask's nodata) count; the left-out truth and prediction nodata are reported. No pixel left
means the two do not overlap: an error, never a score of nothing.

In stages: ``read_prediction`` (the water and chips layers, and the model text they carry),
``open_prediction`` / ``open_truth`` (each on the grid, checked to overlap it),
``score_window`` (one block's counts, numpy only) and ``evaluate_geo`` around them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import InputError
from ...inputs.files import list_layers, open_raster_dataset, probe_raster, read_vectors, require_exists
from ...progress import Progress, check_cancelled
from ..options import EvaluateOptions
from .result import EvalResult, Scores, count_outputs, count_statuses
from .sources import MaskOnGrid, PolygonsOnGrid, ReferenceGrid, polygons_on_grid

if TYPE_CHECKING:
    import geopandas as gpd
    from rasterio.windows import Window

_VECTOR_EXTS = {".gpkg", ".geojson", ".json", ".shp", ".fgb", ".kml", ".gml", ".sqlite"}


def _is_vector_name(path: Path) -> bool:
    return path.suffix.lower() in _VECTOR_EXTS


def is_raster(path: Path) -> bool:
    """A mask raster, not a vector file (by its name first: probing a GeoPackage opens it)."""
    return not _is_vector_name(path) and probe_raster(path)


@dataclass
class PredictionLayers:
    """PRED read as vectors: its water polygons and, from a segment run, its chips (those the model saw)."""

    water: gpd.GeoDataFrame
    chips: gpd.GeoDataFrame | None


def read_prediction(opts: EvaluateOptions, result: EvalResult) -> PredictionLayers:
    """The water layer (``pred_layer``, or the only layer) and the chips; model text counted into ``result``."""
    pred = Path(opts.pred)
    pred_layer = opts.pred_layer
    layers = list_layers(pred, "prediction") if pred.suffix.lower() == ".gpkg" else []
    if layers and pred_layer not in layers:
        if len(layers) == 1:
            pred_layer = layers[0]
        else:
            raise InputError(
                "evaluate_layer_missing",
                field="pred_layer",
                path=str(pred),
                layer=repr(pred_layer),
                layers=", ".join(layers),
            )
    water = read_vectors(pred, "prediction", layer=pred_layer if layers else None)
    chips = read_vectors(pred, "chips", layer="chips") if "chips" in layers else None
    if chips is not None:
        # Model text when the chips have it; a water-index run has none (no outputs to judge).
        if "text" in chips.columns:
            count_outputs(result, [t if isinstance(t, str) else None for t in chips["text"]])
        elif "status" in chips.columns:
            count_statuses(result, [str(s) for s in chips["status"]])
        if "status" in chips.columns:  # chips the model never saw are no prediction
            chips = chips[~chips["status"].astype(str).str.startswith("skipped")]
    return PredictionLayers(water, chips)


def open_grid(opts: EvaluateOptions, truth_is_raster: bool) -> ReferenceGrid:
    """The reference raster's grid, else the truth mask's; a vector truth needs a reference raster."""
    truth = Path(opts.truth)
    if opts.reference_raster is None and not truth_is_raster:
        if not _is_vector_name(truth):
            open_raster_dataset(truth, "truth mask").close()  # says why it is no raster
        raise InputError("evaluate_needs_grid", field="reference_raster", path=str(truth))
    return ReferenceGrid(Path(opts.reference_raster) if opts.reference_raster is not None else truth)


@dataclass
class OnGrid:
    """Water on the grid and where it says anything: a mask raster, or polygons (and their chips)."""

    mask: MaskOnGrid | None = None
    polygons: PolygonsOnGrid | None = None
    coverage: PolygonsOnGrid | None = None  # where the polygons say anything (None: everywhere)

    def read(self, win: Window) -> tuple[np.ndarray, np.ndarray]:
        """(water, where it has data) on the grid window."""
        if self.mask is not None:
            return self.mask.read(win)
        shape = (int(win.height), int(win.width))
        water = self.polygons.rasterize(win) if self.polygons is not None else np.zeros(shape, bool)
        covered = self.coverage.rasterize(win) if self.coverage is not None else np.ones(shape, bool)
        return water, covered

    def close(self) -> None:
        if self.mask is not None:
            self.mask.close()


def open_prediction(
    opts: EvaluateOptions, layers: PredictionLayers | None, grid: ReferenceGrid, result: EvalResult
) -> OnGrid:
    """The prediction on the grid: its mask raster (``layers`` None), or its polygons inside its chips."""
    pred = Path(opts.pred)
    if layers is None:
        return OnGrid(mask=MaskOnGrid(pred, "prediction mask", grid, 0.0))
    water, n_fixed = polygons_on_grid(layers.water, grid, pred, "prediction polygons")
    if n_fixed:
        result.notes.append(f"{pred}: {n_fixed} invalid prediction polygon(s) repaired")
    chips = polygons_on_grid(layers.chips, grid, pred, "chips")[0] if layers.chips is not None else None
    if chips is not None and not chips.overlaps(grid.bounds):
        raise InputError("evaluate_chips_outside", field="pred", path=str(pred), grid=str(grid.path))
    if chips is None and len(water) and not water.overlaps(grid.bounds):
        raise InputError("evaluate_prediction_outside", field="pred", path=str(pred), grid=str(grid.path))
    return OnGrid(polygons=water, coverage=chips)


def open_truth(
    opts: EvaluateOptions, truth_is_raster: bool, grid: ReferenceGrid, result: EvalResult
) -> OnGrid:
    """The truth on the grid: a mask raster (its nodata unlabelled), or polygons labelling everything."""
    truth = Path(opts.truth)
    if truth_is_raster:
        threshold = 0.0 if opts.mask_threshold is None else float(opts.mask_threshold)
        return OnGrid(mask=MaskOnGrid(truth, "truth mask", grid, threshold, opts.truth_nodata))
    gdf = read_vectors(truth, "truth", layer=opts.truth_layer, where=opts.truth_where)
    polygons, n_fixed = polygons_on_grid(gdf, grid, truth, "truth polygons")
    if n_fixed:
        result.notes.append(f"{truth}: {n_fixed} invalid truth polygon(s) repaired (make_valid)")
    if not len(polygons):
        result.notes.append(f"{truth}: truth holds no water polygons")
    elif not polygons.overlaps(grid.bounds):
        raise InputError("evaluate_truth_outside", field="truth", path=str(truth), grid=str(grid.path))
    return OnGrid(polygons=polygons)


def score_window(
    result: EvalResult,
    base: np.ndarray,
    truth: tuple[np.ndarray, np.ndarray],
    pred: tuple[np.ndarray, np.ndarray],
) -> None:
    """One window's counts into ``result``: ``base`` the grid's valid pixels, ``truth`` (water,
    labelled), ``pred`` (water, covered). Pixels without a truth label or a prediction are left
    out and counted; the rest are scored."""
    t_water, t_labelled = truth
    p_water, p_covered = pred
    result.truth_nodata_pixels += int(np.count_nonzero(base & ~t_labelled))
    result.pred_nodata_pixels += int(np.count_nonzero(base & t_labelled & ~p_covered))
    domain = base & t_labelled & p_covered
    result.scores.add(p_water, t_water, domain)
    result.pixels_evaluated += int(domain.sum())


def block_windows(width: int, height: int, block: int) -> list[Window]:
    """Windows of at most ``block`` x ``block`` pixels, row by row."""
    from rasterio.windows import Window

    return [
        Window(c, r, min(block, width - c), min(block, height - r))
        for r in range(0, height, block)
        for c in range(0, width, block)
    ]


def _score_blocks(
    opts: EvaluateOptions,
    grid: ReferenceGrid,
    truth: OnGrid,
    pred: OnGrid,
    result: EvalResult,
    progress: Progress | None,
) -> None:
    windows = block_windows(grid.width, grid.height, opts.block)
    for i, win in enumerate(windows):
        check_cancelled(progress)
        shape = (int(win.height), int(win.width))
        base = grid.valid(win) if opts.reference_raster is not None else np.ones(shape, bool)
        score_window(result, base, truth.read(win), pred.read(win))
        if progress is not None:
            progress.report(i + 1, len(windows), "scoring")


@contextmanager
def _opened(
    opts: EvaluateOptions,
    truth_is_raster: bool,
    grid: ReferenceGrid,
    layers: PredictionLayers | None,
    result: EvalResult,
) -> Iterator[tuple[OnGrid, OnGrid]]:
    """(truth, prediction) on the grid, closed on the way out."""
    pred = truth = None
    try:
        pred = open_prediction(opts, layers, grid, result)
        truth = open_truth(opts, truth_is_raster, grid, result)
        yield truth, pred
    finally:
        for source in (truth, pred):
            if source is not None:
                source.close()


def evaluate_geo(options: EvaluateOptions, progress: Progress | None = None) -> EvalResult:
    """Predicted water (polygons, or a mask raster) vs truth polygons or a truth mask, on a grid.

    Pixels are scored only where the reference raster has data, the truth is labelled (not its
    nodata, nor ``truth_nodata``) and the prediction has data (inside a chip the model saw, or
    not the prediction mask's nodata); the excluded pixels are counted in the result. When no
    pixel is left the two do not overlap: an InputError, not a score of nothing.
    """
    pred, truth = Path(options.pred), Path(options.truth)
    result = EvalResult(mode="raster", scores=Scores(), n_items=1)
    require_exists(pred, "prediction")
    require_exists(truth, "truth")
    pred_is_raster, truth_is_raster = is_raster(pred), is_raster(truth)
    if options.truth_nodata is not None and not truth_is_raster:
        raise InputError("evaluate_nodata_vectors", field="truth_nodata", path=str(truth))
    layers = None if pred_is_raster else read_prediction(options, result)
    grid = open_grid(options, truth_is_raster)
    if grid.note:
        result.notes.append(grid.note)
    try:
        with _opened(options, truth_is_raster, grid, layers, result) as (t, p):
            _score_blocks(options, grid, t, p, result, progress)
    finally:
        grid.close()
    if result.pixels_evaluated == 0:
        raise InputError(
            "evaluate_no_overlap",
            path=str(pred),
            truth=str(truth),
            truth_nodata=result.truth_nodata_pixels,
            pred_nodata=result.pred_nodata_pixels,
        )
    return result
