"""What the dialogs learn about a raster file, read without writing anything beside it.

Opening a file as a QgsRasterLayer computes statistics for its default style, and GDAL keeps
computed statistics in a ``.aux.xml`` side file next to the raster (PAM): checking a file the
user only picked (More rasters, the band question) left such files in the user's folders.
Here GDAL reads the header (bands, CRS, descriptions) and a decimated sample for band
statistics with PAM switched off for this thread only (QGIS's own layers are untouched).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

SAMPLE_PIXELS = 250_000  # pixels read per band for its statistics: enough to tell bands apart


@contextlib.contextmanager
def no_side_files() -> Iterator[None]:
    """GDAL_PAM_ENABLED=NO for what this thread opens meanwhile (no .aux.xml is written for it)."""
    try:
        from osgeo import gdal
    except ImportError:  # pragma: no cover - QGIS always ships GDAL's Python bindings
        yield
        return
    before = gdal.GetThreadLocalConfigOption("GDAL_PAM_ENABLED", None)
    gdal.SetThreadLocalConfigOption("GDAL_PAM_ENABLED", "NO")
    try:
        yield
    finally:
        gdal.SetThreadLocalConfigOption("GDAL_PAM_ENABLED", before)


@dataclass(frozen=True)
class RasterFacts:
    """A raster's header: its band count, whether it has a CRS, its band descriptions."""

    bands: int
    crs: bool
    descriptions: tuple[str, ...]


def _open(path: str):
    from osgeo import gdal

    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        return gdal.OpenEx(path, gdal.OF_RASTER | gdal.OF_READONLY)
    finally:
        gdal.PopErrorHandler()


def raster_facts(path: str) -> RasterFacts | None:
    """The header of ``path``; None when GDAL cannot open it as a raster."""
    with no_side_files():
        dataset = _open(path)
        if dataset is None or dataset.RasterCount < 1:
            return None
        try:
            descriptions = tuple(
                dataset.GetRasterBand(i).GetDescription() or "" for i in range(1, dataset.RasterCount + 1)
            )
            has_crs = bool(dataset.GetProjectionRef()) or dataset.GetGCPCount() > 0
            return RasterFacts(dataset.RasterCount, has_crs, descriptions)
        finally:
            dataset = None


def band_samples(path: str) -> list[tuple[float, float, float] | None]:
    """(min, mean, max) of each band from a decimated read (None for a band that cannot be read)."""
    with no_side_files():
        dataset = _open(path)
        if dataset is None:
            return []
        try:
            scale = min(1.0, math.sqrt(SAMPLE_PIXELS / max(dataset.RasterXSize * dataset.RasterYSize, 1)))
            width = max(1, int(dataset.RasterXSize * scale))
            height = max(1, int(dataset.RasterYSize * scale))
            return [
                _sample(dataset.GetRasterBand(i), width, height) for i in range(1, dataset.RasterCount + 1)
            ]
        finally:
            dataset = None


def _sample(band, width: int, height: int) -> tuple[float, float, float] | None:
    try:
        import numpy as np

        values = band.ReadAsArray(buf_xsize=width, buf_ysize=height)
    except Exception:  # no numpy, or a read error: the band's names still help
        return None
    if values is None:
        return None
    values = values.astype("float64").ravel()
    nodata = band.GetNoDataValue()
    keep = np.isfinite(values) & (values != nodata if nodata is not None else True)
    values = values[keep]
    if not values.size:
        return None
    return float(values.min()), float(values.mean()), float(values.max())
