"""Known water for a georeferenced export: a vector file, a mask raster, or the water index.

Invalid polygons (self-intersections, bow-ties, rings that touch) rasterise unpredictably:
they are repaired with shapely's make_valid (structure method, polygons only) and counted,
or refused with the first one's reason under ``strict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from ...inputs.files import check_finite_geometries, open_raster_dataset, probe_raster, read_vectors, reading
from .options import WATER_INDEX, ExportOptions


@dataclass
class ChipLabel:
    """Known water for one chip window, on the chip's pixels."""

    water: np.ndarray  # bool (h, w)
    labelled: np.ndarray  # bool (h, w): the label source says something here


class _VectorLabels:
    """Water polygons in any CRS, reprojected once to the raster CRS, rasterised per chip."""

    kind = "vector"

    def __init__(
        self, path: str, layer: str | None, where: str | None, src: Any, strict: bool = False
    ) -> None:
        import shapely

        gdf = read_vectors(path, "water labels", layer=layer, where=where)
        if gdf.crs is None:
            raise InputError(f"{path}: water labels have no CRS")
        gdf = gdf[gdf.geometry.notna()]
        polys = gdf[gdf.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
        if polys.empty:
            kinds = ", ".join(sorted(set(gdf.geometry.geom_type))) or "no features"
            raise InputError(f"{path}: label layer holds no polygons ({kinds}); water labels must be areas")
        original = np.asarray(polys.geometry.values, dtype=object)
        invalid = ~shapely.is_valid(original)
        if strict and invalid.any():
            reason = shapely.is_valid_reason(original[np.flatnonzero(invalid)[0]])
            raise InputError(
                f"{path}: {int(invalid.sum())} invalid label polygon(s), the first: {reason}; fix them "
                "(QGIS: Fix geometries) or leave out --strict-labels to repair them with make_valid"
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

    def chip(self, window: Any, transform: Any, shape: tuple[int, int]) -> ChipLabel:
        from rasterio import features
        from shapely.geometry import Polygon

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

    def __init__(self, path: str, threshold: float, src: Any) -> None:
        from rasterio.enums import Resampling
        from rasterio.vrt import WarpedVRT

        self._ds = open_raster_dataset(path, "label mask")
        if self._ds.crs is None:
            self._ds.close()
            raise InputError(f"{path}: label mask has no CRS")
        kwargs: dict[str, Any] = dict(
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

    def chip(self, window: Any, transform: Any, shape: tuple[int, int]) -> ChipLabel:
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

    def __init__(self, src: Any) -> None:
        from ...model.segmenter import ChipBatch
        from ...model.water_index import WaterIndexSegmenter

        roles = src.band_roles
        self.seg = WaterIndexSegmenter(green=roles.get("green"), nir=roles.get("nir"), swir=roles.get("swir"))
        self.bands = list(self.seg.bands_needed(src.raster_bands))
        # One scene-wide threshold (the default method on a decimated read), as the segment command does.
        raw, valid = src.read_overview(self.bands)
        rgb = np.zeros((*valid.shape, 3), np.uint8)
        self.seg.prepare(ChipBatch(raw=raw[None], rgb=rgb[None], valid=valid[None], ids=[-1]))
        self.label_bounds = tuple(src.bounds)
        self.path = WATER_INDEX

    def segment(self, raw: np.ndarray, rgb: np.ndarray, valid: np.ndarray) -> ChipLabel:
        from ...model.segmenter import ChipBatch

        res = self.seg.segment(ChipBatch(raw=raw[None], rgb=rgb[None], valid=valid[None], ids=[0]))[0]
        return ChipLabel(water=np.asarray(res.water, bool) & valid, labelled=valid.copy())

    def close(self) -> None:
        pass


def _open_labels(opts: ExportOptions, src: Any) -> Any:
    if opts.labels == WATER_INDEX:
        return _IndexLabels(src)
    path = Path(opts.labels)
    if not path.exists() and "://" not in opts.labels and not opts.labels.startswith("/vsi"):
        raise InputError(
            f"{opts.labels}: label file not found (give a vector file, a mask raster or 'water-index')"
        )
    vector_exts = {".gpkg", ".geojson", ".json", ".shp", ".fgb", ".kml", ".gml", ".sqlite"}
    if path.suffix.lower() not in vector_exts and probe_raster(path):
        return _MaskLabels(str(path), opts.mask_threshold, src)
    return _VectorLabels(str(path), opts.label_layer, opts.label_where, src, strict=opts.strict_labels)
