"""Truth and prediction on one reference grid, read window by window (the georeferenced case).

``ReferenceGrid``: the grid (a reference raster's, or the truth mask's) and its valid
pixels. ``MaskOnGrid``: a mask raster (truth, or a segment mask GeoTIFF prediction) warped
onto it. ``PolygonsOnGrid``: polygons (predicted water, truth, chip footprints) in the grid's
CRS, rasterised per window by the pixel-centre rule. So a large scene never sits in memory.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import InputError
from ...inputs.files import check_finite_geometries, open_raster_dataset, reading

if TYPE_CHECKING:
    import geopandas as gpd
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.windows import Window

Bounds = tuple[float, float, float, float]


class ReferenceGrid:
    """The reference grid: CRS, transform, size, and a per-window validity reader."""

    def __init__(self, path: Path) -> None:
        from rasterio.enums import ColorInterp

        self.path = path
        self.ds = open_raster_dataset(path, "reference raster")
        if self.ds.crs is None:
            self.ds.close()
            raise InputError("evaluate_no_crs", path=str(path), what="reference raster")
        self.crs: CRS = self.ds.crs
        self.transform: Affine = self.ds.transform
        self.width: int = self.ds.width
        self.height: int = self.ds.height
        self.note: str | None = None
        if self.ds.nodata is not None and ColorInterp.alpha in self.ds.colorinterp:
            self.note = (
                f"{path}: has both a nodata value and an alpha band; valid pixels follow the nodata value"
            )

    @property
    def bounds(self) -> Bounds:
        from ...inputs.raster import ordered_bounds

        b = ordered_bounds(self.ds)
        return (b[0], b[1], b[2], b[3])

    def valid(self, window: Window) -> np.ndarray:
        from rasterio.errors import NodataShadowWarning

        with reading(self.path, "reference raster", window=window), warnings.catch_warnings():
            # nodata and an alpha band: GDAL uses the nodata value (said once, in notes)
            warnings.simplefilter("ignore", NodataShadowWarning)
            return self.ds.dataset_mask(window=window) > 0

    def close(self) -> None:
        self.ds.close()


def _check_nodata_fits(path: Path, what: str, dtype: np.dtype, nodata: float) -> None:
    """A "no label" value an integer mask cannot hold is a mistake, not a value that never occurs."""
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        if not info.min <= nodata <= info.max:
            raise InputError(
                "evaluate_nodata_range",
                field="truth_nodata",
                path=str(path),
                value=f"{nodata:g}",
                dtype=str(dtype),
                what=what,
                low=int(info.min),
                high=int(info.max),
            )


class MaskOnGrid:
    """A mask raster (truth, or a segment mask GeoTIFF prediction) warped onto the reference grid.

    Water where value > ``threshold``; labelled where the file has data: not its declared
    nodata, not ``extra_nodata`` (e.g. -1 in Sen1Floods11 labels), not NaN, inside its extent.
    """

    def __init__(
        self, path: Path, what: str, grid: ReferenceGrid, threshold: float, extra_nodata: float | None = None
    ) -> None:
        from rasterio.enums import Resampling
        from rasterio.vrt import WarpedVRT

        self.path, self.what, self.threshold, self.extra_nodata = path, what, threshold, extra_nodata
        self.ds = open_raster_dataset(path, what)
        try:
            if self.ds.crs is None:
                raise InputError("evaluate_no_crs", path=str(path), what=what)
            if extra_nodata is not None:
                _check_nodata_fits(path, what, np.dtype(self.ds.dtypes[0]), extra_nodata)
            self.declared_nodata = self.ds.nodata
            kw: dict[str, object] = dict(
                crs=grid.crs,
                transform=grid.transform,
                width=grid.width,
                height=grid.height,
                resampling=Resampling.nearest,
            )
            if self.ds.nodata is not None:
                kw.update(src_nodata=self.ds.nodata, nodata=self.ds.nodata)
            else:
                kw["add_alpha"] = True
            with reading(path, what):
                self.vrt = WarpedVRT(self.ds, **kw)
        except BaseException:
            self.ds.close()
            raise

    def read(self, win: Window) -> tuple[np.ndarray, np.ndarray]:
        """(water, labelled) on the grid window."""
        with reading(self.path, self.what, window=win):
            if self.vrt.count > self.ds.count:  # added alpha
                data = self.vrt.read([1, self.vrt.count], window=win)
                values, labelled = data[0].astype(np.float64), data[1] > 0
            else:
                values = self.vrt.read(1, window=win).astype(np.float64)
                labelled = self.vrt.read_masks(1, window=win) > 0
        labelled &= np.isfinite(values)
        if self.extra_nodata is not None:
            labelled &= values != self.extra_nodata
        return (values > self.threshold) & labelled, labelled

    def close(self) -> None:
        self.vrt.close()
        self.ds.close()


class PolygonsOnGrid:
    """Polygons in the grid's CRS, indexed for rasterising one window at a time."""

    def __init__(self, geoms: np.ndarray, transform: Affine) -> None:
        import shapely

        self.geoms, self.transform = geoms, transform
        self.tree = shapely.STRtree(geoms)

    def __len__(self) -> int:
        return len(self.geoms)

    def overlaps(self, bounds: Bounds) -> bool:
        """Whether any polygon touches ``bounds`` (xmin, ymin, xmax, ymax)."""
        import shapely
        from shapely.geometry import box

        return bool(len(self.geoms)) and bool(shapely.intersects(self.geoms, box(*bounds)).any())

    def rasterize(self, window: Window) -> np.ndarray:
        """The window's pixels whose centre lies in a polygon (bool)."""
        from rasterio import features
        from rasterio.windows import bounds
        from rasterio.windows import transform as wtransform
        from shapely.geometry import box

        shape = (int(window.height), int(window.width))
        if not len(self.geoms):
            return np.zeros(shape, bool)
        hits = self.tree.query(box(*bounds(window, self.transform)))
        if not len(hits):
            return np.zeros(shape, bool)
        return features.rasterize(
            [(g, 1) for g in self.geoms[hits]],
            out_shape=shape,
            transform=wtransform(window, self.transform),
            dtype="uint8",
        ).astype(bool)


def polygons_on_grid(
    gdf: gpd.GeoDataFrame | None, grid: ReferenceGrid, path: Path, what: str
) -> tuple[PolygonsOnGrid, int]:
    """The polygons of ``gdf`` in the grid's CRS, invalid ones repaired; (polygons, number repaired)."""
    import shapely

    empty = np.empty(0, dtype=object)
    if gdf is None or not len(gdf):
        return PolygonsOnGrid(empty, grid.transform), 0
    gdf = gdf[gdf.geometry.notna()]
    gdf = gdf[gdf.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    if not len(gdf):
        return PolygonsOnGrid(empty, grid.transform), 0
    geoms = np.asarray(gdf.to_crs(grid.crs).geometry.values, dtype=object)
    check_finite_geometries(geoms, path, what, gdf.crs)
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        geoms = geoms.copy()
        geoms[invalid] = shapely.make_valid(geoms[invalid], method="structure", keep_collapsed=False)
    return PolygonsOnGrid(geoms, grid.transform), int(invalid.sum())
