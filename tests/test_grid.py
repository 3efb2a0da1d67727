"""Chip grid: the stride/snap formula, small rasters, AOI selection, footprints."""

from __future__ import annotations

import math

import numpy as np
import pytest
from affine import Affine
from shapely.geometry import box

from paligemma_qgis.core.errors import InputError
from paligemma_qgis.core.inputs.grid import (
    ChipGrid,
    axis_offsets,
    chip_windows,
    load_aoi,
    window_footprint,
)


@pytest.mark.parametrize(
    "dim,size,overlap,expected",
    [
        (224, 224, 0, [0]),
        (100, 224, 0, [0]),  # smaller than a chip: one chip over the whole axis
        (448, 224, 0, [0, 224]),
        (449, 224, 0, [0, 224, 225]),  # last chip snapped to the edge, overlap grows to 223
        (500, 224, 32, [0, 192, 276]),
        (600, 224, 32, [0, 192, 376]),
        (608, 224, 32, [0, 192, 384]),  # exact fit: no extra chip
        (10, 4, 2, [0, 2, 4, 6]),
        (11, 4, 2, [0, 2, 4, 6, 7]),
        (225, 224, 223, [0, 1]),
    ],
)
def test_axis_offsets(dim: int, size: int, overlap: int, expected: list[int]) -> None:
    assert axis_offsets(dim, size, overlap) == expected


@pytest.mark.parametrize("dim", [1, 50, 223, 224, 225, 500, 1000, 4097])
@pytest.mark.parametrize("size,overlap", [(224, 0), (224, 32), (224, 112), (64, 63)])
def test_axis_offsets_properties(dim: int, size: int, overlap: int) -> None:
    offs = axis_offsets(dim, size, overlap)
    stride = size - overlap
    length = min(size, dim)
    # count follows the torchgeo formula
    expected_n = 1 if dim <= size else math.ceil((dim - size) / stride) + 1
    assert len(offs) == expected_n
    # inside the raster, sorted, first at 0, last flush with the edge (never padded)
    assert offs[0] == 0 and offs == sorted(set(offs))
    assert all(o >= 0 and o + length <= dim for o in offs)
    assert offs[-1] + length == dim
    # every pixel covered; regular stride except the snapped last step
    covered = np.zeros(dim, bool)
    for o in offs:
        covered[o : o + length] = True
    assert covered.all()
    steps = np.diff(offs)
    assert (steps[:-1] == stride).all() if len(steps) > 1 else True
    assert (steps <= stride).all()


@pytest.mark.parametrize("overlap", [-1, 224, 300])
def test_bad_overlap(overlap: int) -> None:
    with pytest.raises(ValueError, match="overlap"):
        axis_offsets(1000, 224, overlap)


@pytest.mark.parametrize(
    "width,height,size,overlap",
    [(600, 500, 224, 32), (224, 224, 224, 0), (1000, 90, 224, 16), (80, 70, 224, 0), (5000, 300, 128, 8)],
)
def test_chip_windows(width: int, height: int, size: int, overlap: int) -> None:
    chips = chip_windows(width, height, size, overlap)
    assert [c.id for c in chips] == list(range(len(chips)))
    cover = np.zeros((height, width), np.uint8)
    for c in chips:
        w = c.window
        assert (c.col_off, c.row_off) == (int(w.col_off), int(w.row_off))
        assert int(w.width) == min(size, width) and int(w.height) == min(size, height)
        assert c.full_size == (width >= size and height >= size)
        assert c.col_off + int(w.width) <= width and c.row_off + int(w.height) <= height
        cover[c.row_off : c.row_off + int(w.height), c.col_off : c.col_off + int(w.width)] = 1
    assert cover.all()
    assert len(chips) == len(axis_offsets(width, size, overlap)) * len(axis_offsets(height, size, overlap))


def test_aoi_keeps_only_intersecting_chips_with_grid_ids() -> None:
    transform = Affine(10, 0, 500_000, 0, -10, 5_000_000)
    width, height = 1000, 800
    # AOI: a small square inside the chip at row 0, col 1 (pixels 300..350, 50..100)
    aoi = box(500_000 + 3000, 5_000_000 - 1000, 500_000 + 3500, 5_000_000 - 500)
    grid = ChipGrid(width, height, 224, 0, aoi=aoi, transform=transform)
    all_chips = chip_windows(width, height, 224, 0)
    expected = [
        c
        for c in all_chips
        if c.col_off < 350 and c.col_off + 224 > 300 and c.row_off < 100 and c.row_off + 224 > 50
    ]
    assert list(grid) == expected  # same windows and the same ids as without the AOI
    assert len(grid) == len(expected) == 1
    assert grid.extent == expected[0].window


@pytest.mark.parametrize("overlap", [0, 32])
def test_aoi_grid_matches_brute_force(overlap: int) -> None:
    """Every chip whose 16-px cells meet the AOI, and no other, whatever the AOI's shape."""
    from rasterio.features import rasterize
    from shapely.geometry import Polygon

    transform = Affine(10, 0, 0, 0, -10, 0)
    width, height = 1100, 900
    aoi = Polygon([(2500, -1500), (7000, -2600), (5200, -8100), (3100, -6000)])
    grid = ChipGrid(width, height, 224, overlap, aoi=aoi, transform=transform)
    fine = rasterize([(aoi, 1)], out_shape=(height, width), transform=transform, all_touched=True) > 0
    touched = [c for c in chip_windows(width, height, 224, overlap) if fine[c.window.toslices()].any()]
    kept = list(grid)
    assert set(kept) >= set(touched)  # nothing the AOI touches is lost
    for c in set(kept) - set(touched):  # extras only within one 16-px cell of the AOI
        grown = fine[max(0, c.row_off - 16) : c.row_off + 240, max(0, c.col_off - 16) : c.col_off + 240]
        assert grown.any()
    assert [c.id for c in kept] == sorted(c.id for c in kept)
    assert all(grid.chip(c.id) == c for c in kept)


def test_aoi_outside_raster_keeps_nothing() -> None:
    transform = Affine(10, 0, 0, 0, -10, 0)
    grid = ChipGrid(500, 500, 224, aoi=box(1e6, 1e6, 1e6 + 10, 1e6 + 10), transform=transform)
    assert list(grid) == [] and len(grid) == 0 and grid.extent is None


def test_huge_grid_is_lazy() -> None:
    """A 1,000,000 px square raster: no chip list is built; an AOI costs only what it covers."""
    grid = ChipGrid(1_000_000, 1_000_000, 224, 32)
    assert len(grid) == 5209**2
    first = next(iter(grid))
    assert first.id == 0 and grid.chip(5209 * 5209 - 1).window.col_off == 1_000_000 - 224
    transform = Affine(1, 0, 0, 0, -1, 0)
    small = ChipGrid(
        1_000_000, 1_000_000, 224, 32, aoi=box(500_000, -500_500, 500_400, -500_000), transform=transform
    )
    assert 1 <= len(small) <= 9 and small.extent.width <= 3 * 224


def test_load_aoi_extent_in_other_crs() -> None:
    # 15E 45N in UTM 33N is (500000, ~4983000)
    geom = load_aoi("14.99,44.99,15.01,45.01,EPSG:4326", "EPSG:32633")
    minx, miny, maxx, maxy = geom.bounds
    assert 498_000 < minx < 499_500 and 500_500 < maxx < 502_000
    assert 4_981_000 < miny < 4_983_500 and 4_983_500 < maxy < 4_986_000
    # a tuple extent without CRS is taken in the raster CRS
    assert load_aoi((1, 2, 3, 4), "EPSG:32633").bounds == (1, 2, 3, 4)


def test_load_aoi_file_and_geometry(tmp_path) -> None:
    import geopandas as gpd

    path = tmp_path / "aoi.geojson"
    gpd.GeoDataFrame(
        geometry=[box(15.0, 45.0, 15.01, 45.01), box(15.02, 45.0, 15.03, 45.01)], crs=4326
    ).to_file(path)
    geom = load_aoi(str(path), "EPSG:3857")
    assert geom.geom_type == "MultiPolygon"
    assert geom.bounds[0] == pytest.approx(1_669_792.36, abs=1)
    g = load_aoi(box(0, 0, 1, 1), "EPSG:3857", aoi_crs="EPSG:3857")
    assert g.equals(box(0, 0, 1, 1))


@pytest.mark.parametrize("bad", ["/nonexistent/aoi.gpkg", "1,2,3"])
def test_load_aoi_errors(bad: str) -> None:
    with pytest.raises(InputError, match="aoi|area of interest"):
        load_aoi(bad, "EPSG:32633")


def test_window_footprint_rotated() -> None:
    from rasterio.windows import Window

    t = Affine.translation(100, 200) * Affine.rotation(30) * Affine.scale(2, -2)
    poly = window_footprint(Window(10, 20, 4, 5), t)
    assert poly.area == pytest.approx(4 * 5 * 4)
    assert poly.exterior.coords[0] == pytest.approx(t * (10, 20))
