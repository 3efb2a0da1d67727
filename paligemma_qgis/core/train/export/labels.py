"""Known water for a georeferenced export: a vector file, a mask raster, or the water index.

Invalid polygons (self-intersections, bow-ties, rings that touch) rasterise unpredictably:
they are repaired with shapely's make_valid (structure method, polygons only) and counted,
or refused with the first one's reason under ``strict``.

Every source answers the same question, ``label(window, transform, raw, rgb, valid)``: the
known water of one chip, from the chip's pixels (``raw`` holds the ``raw_bands`` the source
asked for; only the water index looks at them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ...errors import InputError
from ...inputs.files import check_finite_geometries, open_raster_dataset, probe_raster, read_vectors, reading
from ..options import WATER_INDEX, ExportOptions

if TYPE_CHECKING:
    from affine import Affine
    from rasterio.windows import Window

    from ...inputs.raster import RasterSource

Bounds = tuple[float, float, float, float]


@dataclass
class ChipLabel:
    """Known water for one chip window, on the chip's pixels."""

    water: np.ndarray  # bool (h, w)
    labelled: np.ndarray  # bool (h, w): the label source says something here


class LabelSource(Protocol):
    """Known water for an export, chip by chip (a vector file, a mask raster or the water index)."""

    kind: str  # "vector", "mask" or "water-index"
    path: str
    label_bounds: Bounds  # the labels' extent in the raster's CRS
    raw_bands: Sequence[int]  # raw bands to read with each chip for ``label``
    n_skipped: int  # label features that are not polygons, ignored
    n_repaired: int  # invalid label polygons repaired with make_valid

    def label(
        self, window: Window, transform: Affine, raw: np.ndarray, rgb: np.ndarray, valid: np.ndarray
    ) -> ChipLabel: ...

    def close(self) -> None: ...


class _VectorLabels:
    """Water polygons in any CRS, reprojected once to the raster CRS, rasterised per chip."""

    kind = "vector"
    raw_bands: Sequence[int] = ()

    def __init__(
        self, path: str, layer: str | None, where: str | None, src: RasterSource, strict: bool = False
    ) -> None:
        import shapely

        gdf = read_vectors(path, "water labels", layer=layer, where=where)
        if gdf.crs is None:
            raise InputError("labels_no_crs", field="labels", path=path)
        gdf = gdf[gdf.geometry.notna()]
        polys = gdf[gdf.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
        if polys.empty:
            kinds = ", ".join(sorted(set(gdf.geometry.geom_type))) or "no features"
            raise InputError("labels_not_polygons", field="labels", path=path, kinds=kinds)
        original = np.asarray(polys.geometry.values, dtype=object)
        invalid = ~shapely.is_valid(original)
        if strict and invalid.any():
            reason = shapely.is_valid_reason(original[np.flatnonzero(invalid)[0]])
            raise InputError(
                "labels_invalid", field="labels", path=path, count=int(invalid.sum()), reason=str(reason)
            )
        geoms = np.asarray(polys.to_crs(src.crs).geometry.values, dtype=object)
        check_finite_geometries(geoms, path, "water labels", polys.crs)
        invalid |= ~shapely.is_valid(geoms)  # reprojection can fold a polygon too
        if invalid.any():
            geoms[invalid] = shapely.make_valid(geoms[invalid], method="structure", keep_collapsed=False)
        self.n_repaired = int(invalid.sum())
        self.geoms = geoms
        self.tree = shapely.STRtree(self.geoms)
        self.path = path
        self.label_bounds = tuple(shapely.total_bounds(self.geoms))
        self.n_features = len(polys)
        self.n_skipped = len(gdf) - len(polys)

    def label(
        self, window: Window, transform: Affine, raw: np.ndarray, rgb: np.ndarray, valid: np.ndarray
    ) -> ChipLabel:
        from rasterio import features
        from shapely.geometry import Polygon

        shape = valid.shape
        h, w = shape
        # All four corners: on a rotated grid two opposite corners do not span the chip.
        hits = self.tree.query(Polygon([transform * xy for xy in ((0, 0), (w, 0), (w, h), (0, h))]))
        if len(hits):
            water = features.rasterize(
                [(g, 1) for g in self.geoms[hits]], out_shape=shape, transform=transform, dtype="uint8"
            ).astype(bool)
        else:
            water = np.zeros(shape, bool)
        # A vector of water says "land" everywhere else: every pixel is labelled.
        return ChipLabel(water=water, labelled=np.ones(shape, bool))

    def close(self) -> None:
        pass


class _MaskLabels:
    """A mask raster warped (mode resampling) onto the raster grid; read window by window."""

    kind = "mask"
    raw_bands: Sequence[int] = ()
    n_skipped = n_repaired = 0

    def __init__(self, path: str, threshold: float, src: RasterSource) -> None:
        from rasterio.enums import Resampling
        from rasterio.vrt import WarpedVRT

        self._ds = open_raster_dataset(path, "label mask")
        if self._ds.crs is None:
            self._ds.close()
            raise InputError("labels_mask_no_crs", field="labels", path=path)
        kwargs: dict[str, object] = dict(
            crs=src.crs,
            transform=src.transform,
            width=src.width,
            height=src.height,
            resampling=Resampling.mode,
        )
        self._alpha = False
        if self._ds.nodata is not None:
            kwargs.update(src_nodata=self._ds.nodata, nodata=self._ds.nodata)
        else:
            kwargs["add_alpha"] = True
            self._alpha = True
        try:
            with reading(path, "label mask"):
                self._vrt = WarpedVRT(self._ds, **kwargs)
        except BaseException:
            self._ds.close()
            raise
        self.threshold = threshold
        self.path = path
        from rasterio.warp import transform_bounds

        from ...inputs.raster import ordered_bounds

        with reading(path, "label mask"):
            self.label_bounds = tuple(transform_bounds(self._ds.crs, src.crs, *ordered_bounds(self._ds)))

    def label(
        self, window: Window, transform: Affine, raw: np.ndarray, rgb: np.ndarray, valid: np.ndarray
    ) -> ChipLabel:
        with reading(self.path, "label mask", window=window):
            if self._alpha:
                data = self._vrt.read([1, self._vrt.count], window=window)
                values, labelled = data[0], data[1] > 0
            else:
                values = self._vrt.read(1, window=window)
                labelled = self._vrt.read_masks(1, window=window) > 0
        values = values.astype(np.float64)
        labelled &= np.isfinite(values)
        return ChipLabel(water=(values > self.threshold) & labelled, labelled=labelled)

    def close(self) -> None:
        self._vrt.close()
        self._ds.close()


class _IndexLabels:
    """The water-index segmenter's mask as the label (a quick start, not ground truth)."""

    kind = "water-index"
    n_skipped = n_repaired = 0

    def __init__(self, src: RasterSource) -> None:
        from ...model.segmenter import ChipBatch
        from ...model.water_index import WaterIndexSegmenter

        roles = src.band_roles
        self.seg = WaterIndexSegmenter(green=roles.get("green"), nir=roles.get("nir"), swir=roles.get("swir"))
        self.raw_bands: Sequence[int] = list(self.seg.bands_needed(src.raster_bands))
        # One scene-wide threshold (the default method on a decimated read), as the segment command does.
        raw, valid = src.read_overview(self.raw_bands)
        rgb = np.zeros((*valid.shape, 3), np.uint8)
        self.seg.prepare(ChipBatch(raw=raw[None], rgb=rgb[None], valid=valid[None], ids=[-1]))
        self.label_bounds = tuple(src.bounds)
        self.path = WATER_INDEX

    def label(
        self, window: Window, transform: Affine, raw: np.ndarray, rgb: np.ndarray, valid: np.ndarray
    ) -> ChipLabel:
        from ...model.segmenter import ChipBatch

        res = self.seg.segment(ChipBatch(raw=raw[None], rgb=rgb[None], valid=valid[None], ids=[0]))[0]
        return ChipLabel(water=np.asarray(res.water, bool) & valid, labelled=valid.copy())

    def close(self) -> None:
        pass


def open_labels(opts: ExportOptions, src: RasterSource) -> LabelSource:
    """The label source ``opts.labels`` names: the water index, a mask raster or a vector file."""
    if opts.labels == WATER_INDEX:
        return _IndexLabels(src)
    path = Path(opts.labels)
    if not path.exists() and "://" not in opts.labels and not opts.labels.startswith("/vsi"):
        raise InputError("labels_not_found", field="labels", path=opts.labels, water_index=WATER_INDEX)
    vector_exts = {".gpkg", ".geojson", ".json", ".shp", ".fgb", ".kml", ".gml", ".sqlite"}
    if path.suffix.lower() not in vector_exts and probe_raster(path):
        return _MaskLabels(str(path), opts.mask_threshold, src)
    return _VectorLabels(str(path), opts.label_layer, opts.label_where, src, strict=opts.strict_labels)
