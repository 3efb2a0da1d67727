"""Ground area of the pixels of a raster grid: what a mosaic's water and valid areas sum.

Used by the mosaic's statistics (core.geometry.mosaic) and by the occurrence counts over
time (core.temporal.occurrence), for any CRS and affine transform.
"""

from __future__ import annotations

import math

import numpy as np
from affine import Affine

from ..errors import PaliGemmaQgisError
from .shapes import CrsLike, to_pyproj

_AREA_CELL = 16  # pixels per side of the cells on which pixel areas are evaluated


class PixelArea:
    """Ground area (m2) of pixels of a raster grid, for any CRS and affine transform.

    North-up geographic grids: exact per-row areas of the ellipsoidal quadrangle
    (Δλ a²(1-e²)/2 [F(φ1) - F(φ2)], F the authalic-latitude integral), so a whole-globe
    grid works. Everything else (projected, rotated): the pixel corner grid is sampled every
    16 px, projected to a Lambert azimuthal equal-area CRS centred on the raster on its own
    datum, and each 16x16 cell's area (shoelace) is spread over its pixels. Equal-area makes
    this exact up to the straightness of a 16-px edge, i.e. far below 0.01%.
    """

    def __init__(self, transform: Affine, crs: CrsLike | None, width: int, height: int) -> None:
        self.transform = transform
        self.kind: str | None = None
        pcrs = to_pyproj(crs)
        if pcrs is None:
            return
        import pyproj

        if pcrs.is_geographic and transform.b == 0 and transform.d == 0:
            self.kind = "rows"
            ell = pcrs.ellipsoid
            assert ell is not None  # a geographic CRS has one
            self.a = ell.semi_major_metre
            self.e2 = 1.0 - (ell.semi_minor_metre / ell.semi_major_metre) ** 2
            self.unit = pcrs.axis_info[0].unit_conversion_factor  # radians per CRS unit
            return
        from pyproj.crs import ProjectedCRS
        from pyproj.crs.coordinate_operation import LambertAzimuthalEqualAreaConversion

        geod = pcrs.geodetic_crs
        cx, cy = transform * (width / 2.0, height / 2.0)
        to_ll = pyproj.Transformer.from_crs(pcrs, geod, always_xy=True)
        lon, lat = to_ll.transform(cx, cy)
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise PaliGemmaQgisError("crs_off_earth", x=cx, y=cy)
        laea = ProjectedCRS(LambertAzimuthalEqualAreaConversion(lat, lon), geodetic_crs=geod)
        self.kind = "laea"
        self.to_laea = pyproj.Transformer.from_crs(pcrs, laea, always_xy=True)

    def _authalic(self, phi: np.ndarray) -> np.ndarray:
        s = np.sin(phi)
        if self.e2 == 0:
            return 2.0 * s
        e = math.sqrt(self.e2)
        return s / (1 - self.e2 * s * s) + np.log((1 + e * s) / (1 - e * s)) / (2 * e)

    def area(self, row_off: int, col_off: int, mask: np.ndarray) -> float:
        """Summed ground area of the True pixels of ``mask`` placed at (row_off, col_off)."""
        if self.kind is None:
            return float("nan")
        h, w = mask.shape
        if h == 0 or w == 0:
            return 0.0
        t = self.transform
        if self.kind == "rows":
            rows = np.arange(row_off, row_off + h + 1, dtype=np.float64)
            phi = np.clip((t.f + t.e * rows) * self.unit, -math.pi / 2, math.pi / 2)
            dlon = abs(t.a) * self.unit
            band = dlon * self.a**2 * (1 - self.e2) / 2 * np.abs(np.diff(self._authalic(phi)))
            return float(mask.sum(axis=1, dtype=np.int64) @ band)
        s = _AREA_CELL
        r_edges = np.unique(np.r_[np.arange(0, h, s), h])
        c_edges = np.unique(np.r_[np.arange(0, w, s), w])
        cc, rr = np.meshgrid(c_edges + col_off, r_edges + row_off)
        x, y = t * (cc.astype(np.float64), rr.astype(np.float64))
        X, Y = self.to_laea.transform(x, y)
        X = np.asarray(X)
        Y = np.asarray(Y)
        # shoelace over each cell's corners (tl, tr, br, bl)
        x0, x1, x2, x3 = X[:-1, :-1], X[:-1, 1:], X[1:, 1:], X[1:, :-1]
        y0, y1, y2, y3 = Y[:-1, :-1], Y[:-1, 1:], Y[1:, 1:], Y[1:, :-1]
        cell = 0.5 * np.abs(
            (x0 * y1 - x1 * y0) + (x1 * y2 - x2 * y1) + (x2 * y3 - x3 * y2) + (x3 * y0 - x0 * y3)
        )
        npx = np.outer(np.diff(r_edges), np.diff(c_edges))
        counts = np.add.reduceat(
            np.add.reduceat(mask, r_edges[:-1], axis=0, dtype=np.int32), c_edges[:-1], axis=1
        )
        return float(np.sum(counts * (cell / npx)))
