"""Where a raster lies on the map: its ordered bounds, the georeferencing it must have, a resampled view."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine
from rasterio.coords import BoundingBox
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from ..errors import InputError
from .files import reading

if TYPE_CHECKING:
    from rasterio.io import DatasetReader


def ordered_bounds(ds: DatasetReader | WarpedVRT) -> BoundingBox:
    """A dataset's extent as (xmin, ymin, xmax, ymax): rasterio gives bottom > top when south-up."""
    left, bottom, right, top = ds.bounds
    return BoundingBox(min(left, right), min(bottom, top), max(left, right), max(bottom, top))


def check_georeferenced(f: DatasetReader, path: str) -> None:
    """Refuse a raster the tool cannot place on a map, or without bands."""
    if f.crs is None and f.gcps[0]:
        raise InputError("raster_gcps_only", field="raster", path=path)
    if f.crs is None:
        raise InputError("raster_no_crs", field="raster", path=path)
    if f.count < 1:
        raise InputError("raster_no_bands", field="raster", path=path)


def warped_view(
    f: DatasetReader, resolution: float, alpha_band: int | None, path: str
) -> tuple[WarpedVRT, int | None]:
    """``f`` resampled on the fly to ``resolution`` metres (same CRS), and its alpha band then.

    The warped view marks invalid pixels with nodata, NaN, or an alpha band it adds.
    """
    t = f.transform
    if t.b != 0 or t.d != 0:
        raise InputError("resolution_rotated", field="resolution", path=path)
    if resolution <= 0:
        raise InputError("resolution_not_positive", field="resolution", path=path, value=resolution)
    left, bottom, right, top = ordered_bounds(f)  # also for south-up rasters
    if f.crs.is_geographic:
        # Metres -> degrees at the scene centre (1 degree of latitude ~ 111.32 km).
        lat = (top + bottom) / 2
        res_y = resolution / 111_320.0
        res_x = resolution / (111_320.0 * max(math.cos(math.radians(lat)), 1e-6))
    else:
        factor = f.crs.linear_units_factor[1] if f.crs.linear_units_factor else 1.0
        res_x = res_y = resolution / factor
    width = max(1, round((right - left) / res_x))
    height = max(1, round((top - bottom) / res_y))
    transform = Affine(res_x, 0.0, left, 0.0, -res_y, top)
    coarser = res_x > abs(t.a) * 1.01
    kwargs: dict[str, Any] = dict(
        crs=f.crs,
        transform=transform,
        width=width,
        height=height,
        resampling=Resampling.average if coarser else Resampling.bilinear,
    )
    if alpha_band is None:
        if f.nodata is not None:
            kwargs.update(src_nodata=f.nodata, nodata=f.nodata)
        elif np.dtype(f.dtypes[0]).kind == "f":
            kwargs.update(src_nodata=float("nan"), nodata=float("nan"))
        else:
            kwargs["add_alpha"] = True  # marks pixels the source mask (or no data) left out
    with reading(path, "raster"):
        vrt = WarpedVRT(f, **kwargs)
    return vrt, (vrt.count if kwargs.get("add_alpha") else alpha_band)
