"""Test grids in several CRSs (north-up and rotated) and the geodesic truth of pixel rectangles.

Shared by the mosaic and vectorize tests, which both check ground areas in every CRS.
"""

from __future__ import annotations

import numpy as np
import pyproj
import shapely
from affine import Affine

UTM = Affine(10, 0, 500_000, 0, -10, 6_650_000)
GEOD = pyproj.Geod(ellps="WGS84")
_MX, _MY = pyproj.Transformer.from_crs(4326, 3857, always_xy=True).transform(15.0, 60.0)

GRIDS = {
    "utm": (UTM, 32633),
    "wgs84": (Affine(1e-4, 0, 15.0, 0, -1e-4, 60.0), 4326),
    "webmerc": (Affine(20, 0, _MX, 0, -20, _MY), 3857),
    "utm_rotated": (
        Affine.translation(500_000, 6_650_000) * Affine.rotation(30) * Affine.scale(10, -10),
        32633,
    ),
    "wgs84_rotated": (Affine.translation(15.0, 60.0) * Affine.rotation(10) * Affine.scale(1e-4, -1e-4), 4326),
}


def rectangle_truth(transform: Affine, epsg: int, r0: int, c0: int, r1: int, c1: int) -> tuple[float, float]:
    """Geodesic area (m2) and perimeter (m) of a pixel rectangle (edges straight in the raster CRS)."""
    cols = np.array([c0, c1, c1, c0, c0], dtype=float)
    rows = np.array([r0, r0, r1, r1, r0], dtype=float)
    x, y = transform * (cols, rows)
    ring = shapely.segmentize(
        shapely.LinearRing(np.column_stack([x, y])), max(c1 - c0, r1 - r0) * abs(transform.a) / 400
    )
    xy = shapely.get_coordinates(ring)
    lon, lat = pyproj.Transformer.from_crs(epsg, 4326, always_xy=True).transform(xy[:, 0], xy[:, 1])
    area, perim = GEOD.polygon_area_perimeter(lon, lat)
    return abs(area), perim
