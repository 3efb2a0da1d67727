"""Piecewise overlays (core.geometry.overlay) give the same pieces as GEOS overlays of whole maps."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from shapely.geometry import Point, box

from paligemma_qgis.core.geometry import overlay


def _map(rng, n, shift=0.0):
    """n random disks and boxes, dissolved into disjoint polygons (like a water layer)."""
    shapes = []
    for x, y, r in rng.uniform([0, 0, 1], [100, 100, 6], (n, 3)):
        shapes.append(Point(x + shift, y).buffer(r, 16) if r > 3 else box(x, y, x + 2 * r, y + r))
    return overlay.parts(shapely.union_all(shapes))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_piecewise_overlays_match_whole_map_overlays(seed):
    rng = np.random.default_rng(seed)
    a, b = _map(rng, 120), _map(rng, 120, shift=1.5)
    footprint = overlay.parts(box(10, 5, 90, 95) - box(40, 40, 60, 60))  # a frame with a cloud hole
    whole_a, whole_b = shapely.union_all(a), shapely.union_all(b)
    grid = 1e-9
    cases = {
        "a - b": (overlay.difference(a, b, grid), whole_a - whole_b),
        "b - a": (overlay.difference(b, a, grid), whole_b - whole_a),
        "a & b": (overlay.intersection(a, b, grid), whole_a & whole_b),
        "a in footprint": (overlay.intersection(a, footprint, grid), whole_a & footprint[0]),
        "a off footprint": (overlay.difference(a, footprint, grid), whole_a - footprint[0]),
    }
    for name, (pieces, expected) in cases.items():
        got = shapely.union_all(pieces) if len(pieces) else shapely.Polygon()
        assert shapely.area(pieces).sum() == pytest.approx(expected.area, rel=1e-9, abs=1e-9), name
        assert got.symmetric_difference(expected).area < 1e-5, name  # snapping to the 1e-9 grid
        # the pieces never overlap one another
        assert shapely.area(pieces).sum() == pytest.approx(got.area, rel=1e-9, abs=1e-9), name


def test_empty_inputs():
    empty = np.empty(0, dtype=object)
    one = overlay.parts(box(0, 0, 1, 1))
    assert len(overlay.difference(empty, one, 1e-9)) == 0
    assert len(overlay.intersection(one, empty, 1e-9)) == 0
    assert overlay.difference(one, empty, 1e-9)[0].equals(one[0])
