"""Vectorisation: seams dissolved, holes kept, filters, metric areas in any CRS, GeoPackage output."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pyogrio
import pyproj
import pytest
import shapely
from affine import Affine
from geodesy import GEOD, GRIDS, UTM, rectangle_truth
from rasterio.crs import CRS
from rasterio.windows import Window

from paligemma_qgis.core.errors import OutputExistsError
from paligemma_qgis.core.geometry.mosaic import Mosaic
from paligemma_qgis.core.geometry.vectorize import (
    chips_frame,
    metric_area_perimeter,
    vectorize_mosaic,
    write_geopackage,
)
from paligemma_qgis.core.progress import CallbackProgress, Cancelled


def mosaic_of(
    mask: np.ndarray, transform: Affine = UTM, crs=32633, valid: np.ndarray | None = None
) -> Mosaic:
    h, w = mask.shape
    m = Mosaic(w, h, transform, CRS.from_epsg(crs) if isinstance(crs, int) else crs)
    m.add(Window(0, 0, w, h), mask, np.ones_like(mask, bool) if valid is None else valid)
    return m


def circle_mask(transform: Affine, epsg: int, shape: tuple[int, int], radius_m: float) -> np.ndarray:
    h, w = shape
    rows, cols = np.mgrid[0:h, 0:w]
    to_ll = pyproj.Transformer.from_crs(epsg, 4326, always_xy=True)
    lon, lat = to_ll.transform(*(transform * (cols + 0.5, rows + 0.5)))
    lon0, lat0 = to_ll.transform(*(transform * (w / 2, h / 2)))
    _, _, dist = GEOD.inv(np.full(lon.size, lon0), np.full(lat.size, lat0), lon.ravel(), lat.ravel())
    return (dist < radius_m).reshape(shape)


def lake_with_island() -> np.ndarray:
    mask = np.zeros((64, 64), bool)
    mask[6:42, 5:40] = True  # spans blocks (0..2, 0..2) at block=16
    mask[14:20, 13:19] = False  # island straddling the seams at 16
    mask[50:55, 50:60] = True  # a second, small lake
    return mask


def test_lake_across_block_seams_is_one_polygon_with_its_hole():
    mask = lake_with_island()
    with mosaic_of(mask) as m:
        seamed = vectorize_mosaic(m, block=16)
        whole = vectorize_mosaic(m, block=4096)
    assert len(seamed) == 2 == len(whole)
    lake = seamed.geometry.iloc[0]
    assert lake.geom_type == "Polygon" and lake.is_valid
    assert len(lake.interiors) == 1
    assert lake.area == pytest.approx((36 * 35 - 36) * 100)
    assert shapely.Polygon(lake.interiors[0]).area == pytest.approx(36 * 100)
    for a, b in zip(seamed.geometry, whole.geometry, strict=True):
        assert a.equals_exact(b, 0.0)  # same vertices, same order: output does not depend on seams
    # seam vertices are dissolved: a rectangle with a square hole needs 4 + 4 corners
    assert len(lake.exterior.coords) == 5 and len(lake.interiors[0].coords) == 5


def test_lake_spanning_four_chips_is_one_polygon():
    h = w = 400
    lake = np.zeros((h, w), bool)
    lake[120:280, 130:270] = True
    with Mosaic(w, h, UTM, 32633) as m:
        for r0 in (0, 176):  # four 224-px chips overlapping by 48 px, all meeting inside the lake
            for c0 in (0, 176):
                win = Window(c0, r0, 224, 224)
                m.add(win, lake[win.toslices()], np.ones((224, 224), bool))
        gdf = vectorize_mosaic(m, block=128)
    assert len(gdf) == 1
    assert gdf.geometry.iloc[0].equals(
        shapely.box(500_000 + 1300, 6_650_000 - 2800, 500_000 + 2700, 6_650_000 - 1200)
    )


@pytest.mark.parametrize("block", [7, 16, 33])
def test_random_mask_is_the_same_whatever_the_block_size(block):
    """Many lakes, diagonal contacts and holes across seams: seams must not change the result."""
    rng = np.random.default_rng(block)
    noise = rng.random((70, 90))
    mask = (noise + np.roll(noise, 1, 0) + np.roll(noise, 1, 1)) > 1.7
    with mosaic_of(mask) as m:
        seamed = vectorize_mosaic(m, block=block)
        whole = vectorize_mosaic(m, block=1024)
    assert len(seamed) == len(whole) > 20
    assert seamed.geometry.is_valid.all()
    assert set(seamed.geometry.geom_type) == {"Polygon"}
    assert seamed.area.sum() == pytest.approx(mask.sum() * 100)
    assert shapely.union_all(seamed.geometry.values).symmetric_difference(
        shapely.union_all(whole.geometry.values)
    ).area == pytest.approx(0, abs=1e-6)
    np.testing.assert_allclose(np.sort(seamed.area_m2), np.sort(whole.area_m2), rtol=1e-9)


def test_nodata_and_land_are_not_polygons():
    mask = np.ones((20, 20), bool)
    valid = np.zeros((20, 20), bool)
    valid[5:10, 5:10] = True
    with mosaic_of(mask, valid=valid) as m:
        gdf = vectorize_mosaic(m, block=8)
    assert len(gdf) == 1
    assert gdf.geometry.iloc[0].area == pytest.approx(25 * 100)


def test_min_area_filter_uses_ground_area():
    mask = lake_with_island()  # big lake: 1224 px, small lake: 50 px (100 m2 each)
    with mosaic_of(mask) as m:
        all_ = vectorize_mosaic(m)
        big = vectorize_mosaic(m, min_area_m2=10_000)
    assert len(all_) == 2 and len(big) == 1
    assert big.area_m2.iloc[0] > 100_000


def test_simplify_reduces_vertices_and_keeps_valid_polygons():
    mask = circle_mask(UTM, 32633, (200, 200), 800.0)
    mask[90:110, 90:110] = False  # island
    with mosaic_of(mask) as m:
        raw = vectorize_mosaic(m, block=64)
        simple = vectorize_mosaic(m, block=64, simplify=15.0)
    assert len(raw) == len(simple) == 1
    g_raw, g_simple = raw.geometry.iloc[0], simple.geometry.iloc[0]
    assert shapely.get_num_coordinates(g_simple) < shapely.get_num_coordinates(g_raw) / 3
    assert g_simple.is_valid and len(g_simple.interiors) == 1
    assert simple.area_m2.iloc[0] == pytest.approx(raw.area_m2.iloc[0], rel=0.02)
    # Douglas-Peucker keeps vertices within the tolerance; GEOS may drop a ring's start
    # vertex, which can add a little more there, hence the margin
    assert shapely.hausdorff_distance(g_simple, g_raw, densify=0.05) <= 1.5 * 15.0
    # staircase edges are longer than the smooth shore: simplification shortens the perimeter
    assert simple.perimeter_m.iloc[0] < raw.perimeter_m.iloc[0]


@pytest.mark.parametrize("grid", GRIDS)
def test_areas_and_perimeters_match_rectangle_truth(grid):
    transform, epsg = GRIDS[grid]
    mask = np.zeros((300, 300), bool)
    mask[40:260, 30:280] = True
    mask[100:140, 100:160] = False  # hole: area excluded, shore counted in the perimeter
    truth_a, truth_p = rectangle_truth(transform, epsg, 40, 30, 260, 280)
    hole_a, hole_p = rectangle_truth(transform, epsg, 100, 100, 140, 160)
    with mosaic_of(mask, transform, epsg) as m:
        gdf = vectorize_mosaic(m, block=64)
    assert len(gdf) == 1
    assert gdf.crs == pyproj.CRS.from_epsg(epsg)
    assert gdf.area_m2.iloc[0] == pytest.approx(truth_a - hole_a, rel=1e-3)
    assert gdf.perimeter_m.iloc[0] == pytest.approx(truth_p + hole_p, rel=1e-3)


@pytest.mark.parametrize("grid", GRIDS)
def test_circle_area_within_one_percent(grid):
    transform, epsg = GRIDS[grid]
    mask = circle_mask(transform, epsg, (400, 400), 1000.0)
    with mosaic_of(mask, transform, epsg) as m:
        gdf = vectorize_mosaic(m, block=100)
        stats = m.stats()
    assert len(gdf) == 1
    assert gdf.area_m2.iloc[0] == pytest.approx(math.pi * 1000.0**2, rel=0.01)
    assert gdf.area_m2.iloc[0] == pytest.approx(stats["water_area_m2"], rel=1e-4)


def test_out_crs_reprojects_geometry_not_areas():
    mask = lake_with_island()
    with mosaic_of(mask) as m:
        native = vectorize_mosaic(m)
        ll = vectorize_mosaic(m, out_crs="EPSG:4326")
        merc = vectorize_mosaic(m, out_crs=CRS.from_epsg(3857))
    assert ll.crs == pyproj.CRS.from_epsg(4326) and merc.crs == pyproj.CRS.from_epsg(3857)
    np.testing.assert_allclose(ll.area_m2, native.area_m2)
    back = ll.to_crs(32633)
    for a, b in zip(back.geometry, native.geometry, strict=True):
        assert a.symmetric_difference(b).area < 1e-3 * b.area
    lon, lat = ll.geometry.iloc[0].exterior.coords[0]
    assert 14 < lon < 16 and 59 < lat < 61


def test_empty_scene_gives_empty_frame_with_schema():
    with mosaic_of(np.zeros((30, 30), bool)) as m:
        gdf = vectorize_mosaic(m, out_crs=4326)
    assert len(gdf) == 0
    assert list(gdf.columns) == ["label", "area_m2", "perimeter_m", "geometry"]
    assert gdf.crs == pyproj.CRS.from_epsg(4326)
    assert gdf.attrs["geometry_type"] == "Polygon"  # so write_geopackage writes a Polygon layer


def test_label_and_columns():
    with mosaic_of(lake_with_island()) as m:
        gdf = vectorize_mosaic(m, label="reservoir")
    assert list(gdf.columns) == ["label", "area_m2", "perimeter_m", "geometry"]
    assert (gdf.label == "reservoir").all()
    assert gdf.area_m2.is_monotonic_decreasing  # big lake first here: rows ordered top to bottom


def test_vectorize_reports_progress_and_can_be_cancelled():
    seen = []
    with mosaic_of(lake_with_island()) as m:
        vectorize_mosaic(
            m, block=16, progress=CallbackProgress(on_report=lambda d, t, msg: seen.append((d, t)))
        )
        assert seen[-1][0] == seen[-1][1] and len(seen) >= 16
        with pytest.raises(Cancelled):
            vectorize_mosaic(m, block=16, progress=CallbackProgress(is_cancelled=lambda: True))


def test_metric_area_perimeter_helper():
    # a 0.1 x 0.1 degree quadrangle at 60N, plus a missing and an empty geometry
    quad = shapely.box(15.0, 60.0, 15.1, 60.1)
    geoms = gpd.GeoSeries([quad, None, shapely.Polygon()], crs=4326)
    area, perim = metric_area_perimeter(geoms)
    lon = np.r_[
        np.linspace(15.0, 15.1, 500), np.full(500, 15.1), np.linspace(15.1, 15.0, 500), np.full(500, 15.0)
    ]
    lat = np.r_[
        np.full(500, 60.0), np.linspace(60.0, 60.1, 500), np.full(500, 60.1), np.linspace(60.1, 60.0, 500)
    ]
    truth_a, truth_p = GEOD.polygon_area_perimeter(lon, lat)
    assert area[0] == pytest.approx(abs(truth_a), rel=1e-4)
    assert perim[0] == pytest.approx(truth_p, rel=1e-4)
    assert area[1:].tolist() == [0.0, 0.0] and perim[1:].tolist() == [0.0, 0.0]
    # far-apart polygons each get their own equal-area centre
    far = gpd.GeoSeries(
        [shapely.box(15.0, 60.0, 15.1, 60.1), shapely.box(-120.0, -30.0, -119.9, -29.9)], crs=4326
    )
    a2, _ = metric_area_perimeter(far)
    assert a2[0] == pytest.approx(area[0], rel=1e-6)
    assert a2[1] > a2[0]  # nearer the equator, a degree square is larger
    with pytest.raises(ValueError, match="CRS"):
        metric_area_perimeter(gpd.GeoSeries([quad]))


# -- chips audit layer -----------------------------------------------------------------


def chip_records() -> list[dict]:
    return [
        {
            "chip_id": 0,
            "window": Window(0, 0, 224, 224),
            "status": "ok",
            "text": "<loc0001> water",
            "n_objects": 1,
        },
        {"chip_id": 1, "window": Window(192, 0, 224, 224), "status": "empty", "text": None, "n_objects": 0},
    ]


@pytest.mark.parametrize("transform", [UTM, GRIDS["utm_rotated"][0]], ids=["north_up", "rotated"])
def test_chips_frame_footprints(transform):
    gdf = chips_frame(chip_records(), transform, CRS.from_epsg(32633))
    assert list(gdf.columns) == [
        "chip_id", "row_off", "col_off", "height", "width", "status", "text", "n_objects", "geometry",
    ]  # fmt: skip
    assert gdf.crs == pyproj.CRS.from_epsg(32633)
    fp = gdf.geometry.iloc[1]
    corners = [transform * (c, r) for c, r in ((192, 0), (416, 0), (416, 224), (192, 224))]
    for corner in corners:
        assert fp.exterior.distance(shapely.Point(corner)) < 1e-6
    assert fp.area == pytest.approx(224 * 224 * abs(transform.determinant))
    assert gdf.text.iloc[1] is None and gdf.col_off.iloc[1] == 192


def test_chips_frame_empty_has_schema():
    gdf = chips_frame([], UTM, 32633)
    assert len(gdf) == 0 and "status" in gdf.columns and gdf.crs == pyproj.CRS.from_epsg(32633)


# -- GeoPackage ------------------------------------------------------------------------


def test_write_geopackage_layers_and_read_back(tmp_path):
    out = tmp_path / "result.gpkg"
    with mosaic_of(lake_with_island()) as m:
        water = vectorize_mosaic(m)
    chips = chips_frame(chip_records(), UTM, 32633)
    write_geopackage(out, {"water": water, "chips": chips})
    layers = dict(pyogrio.list_layers(out))
    assert layers == {"water": "Polygon", "chips": "Polygon"}
    back = gpd.read_file(out, layer="water", engine="pyogrio")
    assert len(back) == 2 and back.crs.to_epsg() == 32633
    np.testing.assert_allclose(back.area_m2, water.area_m2)
    assert len(back.geometry.iloc[0].interiors) == 1
    ch = gpd.read_file(out, layer="chips", engine="pyogrio")
    assert ch.text.isna().tolist() == [False, True]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.gpkg"]


def test_write_geopackage_empty_layers_keep_schema(tmp_path):
    out = tmp_path / "empty.gpkg"
    with mosaic_of(np.zeros((10, 10), bool)) as m:
        water = vectorize_mosaic(m)
    write_geopackage(out, {"water": water, "chips": chips_frame([], UTM, 32633)})
    info = pyogrio.read_info(out, layer="water")
    assert info["features"] == 0 and info["geometry_type"] == "Polygon"
    assert list(info["fields"]) == ["label", "area_m2", "perimeter_m"]
    assert list(info["ogr_types"]) == ["OFTString", "OFTReal", "OFTReal"]
    assert info["crs"] == "EPSG:32633"
    chips = pyogrio.read_info(out, layer="chips")
    assert chips["geometry_type"] == "Polygon" and "n_objects" in list(chips["fields"])


def test_write_geopackage_refuses_existing_and_overwrites(tmp_path):
    out = tmp_path / "result.gpkg"
    chips = chips_frame(chip_records(), UTM, 32633)
    write_geopackage(out, {"chips": chips})
    with pytest.raises(OutputExistsError, match="result.gpkg"):
        write_geopackage(out, {"chips": chips})
    write_geopackage(out, {"chips": chips.iloc[:1]}, overwrite=True)
    assert pyogrio.read_info(out, layer="chips")["features"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.gpkg"]


def test_write_geopackage_failure_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    out = tmp_path / "result.gpkg"
    chips = chips_frame(chip_records(), UTM, 32633)
    write_geopackage(out, {"chips": chips})
    before = out.read_bytes()

    real_to_file = gpd.GeoDataFrame.to_file
    calls = {"n": 0}

    def flaky_to_file(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the first layer is on disk, the second one fails
            raise RuntimeError("disk on fire")
        return real_to_file(self, *args, **kwargs)

    monkeypatch.setattr(gpd.GeoDataFrame, "to_file", flaky_to_file)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_geopackage(out, {"water": chips, "chips": chips}, overwrite=True)
    assert calls["n"] == 2
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.gpkg"]


def test_write_geopackage_missing_folder_is_a_clear_error(tmp_path):
    from paligemma_qgis.core.errors import PaliGemmaQgisError

    with pytest.raises(PaliGemmaQgisError, match="does not exist"):
        write_geopackage(tmp_path / "nope" / "x.gpkg", {"chips": chips_frame([], UTM, 32633)})


# --------------------------------------------------------------------------- review fixes


@pytest.mark.parametrize(
    "box_px",
    [(0, 0, 180, 360), (20, 100, 160, 350), (0, 0, 30, 360)],  # r0, c0, r1, c1 at 1 degree
)
@pytest.mark.slow
def test_areas_of_continent_and_globe_sized_polygons(box_px) -> None:
    """Polygons wider than a hemisphere broke the single equal-area centre (global rasters)."""
    r0, c0, r1, c1 = box_px
    mask = np.zeros((180, 360), bool)
    mask[r0:r1, c0:c1] = True
    mask[60:70, 200:210] = False  # an island
    with mosaic_of(mask, Affine(1.0, 0, -180.0, 0, -1.0, 90.0), 4326) as m:
        gdf = vectorize_mosaic(m)
        exact = m.stats()["water_area_m2"]  # per-row ellipsoidal quadrangles: exact
    assert gdf.area_m2.sum() == pytest.approx(exact, rel=1e-6)

    def ring(r0, c0, r1, c1):  # geodesic length of a pixel rectangle's densified ring
        n = 4000
        cols = np.r_[np.linspace(c0, c1, n), np.full(n, c1), np.linspace(c1, c0, n), np.full(n, c0)]
        rows = np.r_[np.full(n, r0), np.linspace(r0, r1, n), np.full(n, r1), np.linspace(r1, r0, n)]
        return GEOD.line_length(cols - 180.0, 90.0 - rows)

    island = r0 <= 60 and r1 >= 70 and c0 <= 200 and c1 >= 210
    truth = ring(r0, c0, r1, c1) + (ring(60, 200, 70, 210) if island else 0.0)
    assert gdf.perimeter_m.sum() == pytest.approx(truth, rel=1e-4)


def test_out_crs_that_cannot_hold_the_polygons_is_a_clear_error() -> None:
    """PROJ gives finite nonsense there (y = 2.4e8 m at the pole in Web Mercator): refuse it."""
    from paligemma_qgis.core.errors import PaliGemmaQgisError

    mask = np.zeros((20, 20), bool)
    mask[0:5, 5:10] = True  # touches the north pole
    with (
        mosaic_of(mask, Affine(0.5, 0, 0.0, 0, -0.5, 90.0), 4326) as m,
        pytest.raises(PaliGemmaQgisError, match="EPSG:3857"),
    ):
        vectorize_mosaic(m, out_crs="EPSG:3857")
    with mosaic_of(lake_with_island()) as m:  # UTM 33N scene, UTM 1N output: far side of the Earth
        with pytest.raises(PaliGemmaQgisError, match="EPSG:32601"):
            vectorize_mosaic(m, out_crs="EPSG:32601")
        assert len(vectorize_mosaic(m, out_crs="EPSG:32634")) > 0  # the next zone: fine
