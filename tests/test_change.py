"""``change``: gained / lost / persistent / unknown between two dates, on synthetic and real scenes."""

from __future__ import annotations

import json
import math

import geopandas as gpd
import pyogrio
import pytest
import rasterio
import shapely
from pyproj import Transformer
from shapely import affinity
from shapely.geometry import Point, box
from synthetic_rasters import equal_area_m2, make_scene
from water_series import SceneTruth, as_single_scene_output, write_run

from paligemma_qgis.cli import main
from paligemma_qgis.cli.wording import cli_message
from paligemma_qgis.core.errors import InputError, OutputExistsError
from paligemma_qgis.core.geometry.vectorize import metric_area_perimeter
from paligemma_qgis.core.run.driver import segment_raster
from paligemma_qgis.core.specs import segment_spec
from paligemma_qgis.core.temporal.change import ChangeOptions, water_change

W, H = 500, 400
LAKE_C, POND_C = (180, 180), (400, 100)
R_BEFORE, R_AFTER, R_POND = 60, 100, 20
NAIP = {"engine": "water-index", "preset": "naip"}


def _circle(c, r):
    return Point(*c).buffer(r, 128)


def _pixel_area(scene) -> float:
    t = scene.transform
    x, y = t * (W / 2, H / 2)
    return equal_area_m2(box(x, y - abs(t.e), x + t.a, y), scene.crs)


def _scenes(tmp_path, hole=None):
    """Before: lake r=60 px and a pond; after: lake r=100 px, the pond dry; ``hole``: nodata box (after)."""
    before = make_scene(
        tmp_path / "before.tif",
        width=W,
        height=H,
        water_px=[_circle(LAKE_C, R_BEFORE), _circle(POND_C, R_POND)],
    )
    after = make_scene(tmp_path / "after.tif", width=W, height=H, water_px=[_circle(LAKE_C, R_AFTER)], seed=1)
    if hole is not None:
        c0, r0, c1, r1 = hole
        with rasterio.open(after.path, "r+") as ds:
            data = ds.read()
            data[:, r0:r1, c0:c1] = 0
            ds.write(data)
    return before, after


def _layer(path, name):
    return gpd.read_file(path, layer=name, engine="pyogrio")


def test_lake_grows_and_pond_dries_exact_areas(tmp_path):
    """Rasters in, segmented first: the areas are the truth pixels' areas (within 1 %)."""
    before, after = _scenes(tmp_path)
    out = tmp_path / "change.gpkg"
    summary = water_change(
        ChangeOptions(before=str(before.path), after=str(after.path), output=str(out), segment=NAIP)
    )
    px = _pixel_area(before)
    wb, wa = before.water_mask(), after.water_mask()
    expected = {
        "gained": (wa & ~wb).sum() * px,
        "lost": (wb & ~wa).sum() * px,
        "persistent": (wa & wb).sum() * px,
    }
    for name, area in expected.items():
        assert summary.areas_m2[name] == pytest.approx(area, rel=0.01), name
        assert _layer(out, name)["area_m2"].sum() == pytest.approx(summary.areas_m2[name])
    # the truth itself: a ring of pi (100^2 - 60^2) px and a pond of pi 20^2 px
    assert summary.areas_m2["gained"] == pytest.approx(math.pi * (R_AFTER**2 - R_BEFORE**2) * px, rel=0.01)
    assert summary.areas_m2["lost"] == pytest.approx(math.pi * R_POND**2 * px, rel=0.01)
    assert summary.areas_m2["unknown"] == 0
    assert summary.observed_m2 == pytest.approx(W * H * px, rel=1e-3)
    assert summary.polygons == {"gained": 1, "lost": 1, "persistent": 1, "unknown": 0}
    gained = _layer(out, "gained")
    assert set(gained.columns) >= {"class", "area_m2", "perimeter_m", "before_date", "after_date"}
    assert gained.crs.to_epsg() == 32633
    layers = dict(pyogrio.list_layers(out))
    assert set(layers) == {"gained", "lost", "persistent", "unknown", "observed", "summary", "run"}
    table = pyogrio.read_dataframe(out, layer="summary")
    assert list(table["class"]) == ["gained", "lost", "persistent", "unknown", "observed"]
    assert table["area_m2"].iloc[0] == pytest.approx(summary.areas_m2["gained"])


def test_cloud_hole_in_one_date_is_unknown_not_loss(tmp_path):
    """The pond dried, but the after scene has a nodata hole over it: unknown, never lost."""
    hole = (370, 70, 430, 130)  # pixel box around the pond (centre 400, 100, radius 20)
    before, after = _scenes(tmp_path, hole=hole)
    out = tmp_path / "change.gpkg"
    summary = water_change(
        ChangeOptions(before=str(before.path), after=str(after.path), output=str(out), segment=NAIP)
    )
    px = _pixel_area(before)
    pond = before.water_mask() & ~after.water_mask()
    assert summary.areas_m2["lost"] == 0
    assert summary.areas_m2["unknown"] == pytest.approx(pond.sum() * px, rel=0.01)
    unknown = _layer(out, "unknown")
    assert list(unknown["water_on"]) == ["before"]
    hole_m2 = (hole[2] - hole[0]) * (hole[3] - hole[1]) * px
    assert summary.observed_m2 == pytest.approx(W * H * px - hole_m2, rel=1e-3)
    # the lake is unaffected
    assert summary.areas_m2["gained"] == pytest.approx(math.pi * (R_AFTER**2 - R_BEFORE**2) * px, rel=0.01)


def test_rasters_in_two_crss(tmp_path):
    """Before in UTM 33N (10 m), after in EPSG:4326 (0.0001 deg): the same ground lakes, compared right."""
    before = make_scene(
        tmp_path / "before.tif",
        width=W,
        height=H,
        water_px=[_circle(LAKE_C, R_BEFORE), _circle(POND_C, R_POND)],
    )
    t = before.transform
    lake_after = affinity.affine_transform(_circle(LAKE_C, R_AFTER), [t.a, t.b, t.d, t.e, t.c, t.f])
    to_ll = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    lon0, lat0 = to_ll.transform(t.c - 200, t.f + 200)  # a little beyond the UTM scene's corner
    res = 0.0001
    grid = ((lon0, lat0), (res, res))
    lake_ll = shapely.transform(lake_after, lambda x, y: to_ll.transform(x, y), interleaved=False)
    lake_px = affinity.affine_transform(lake_ll, [1 / res, 0, 0, -1 / res, -lon0 / res, lat0 / res])
    after = make_scene(
        tmp_path / "after.tif", crs="EPSG:4326", width=700, height=420, grid=grid, water_px=[lake_px], seed=2
    )
    out = tmp_path / "change.gpkg"
    summary = water_change(
        ChangeOptions(before=str(before.path), after=str(after.path), output=str(out), segment=NAIP)
    )
    px = _pixel_area(before)
    assert summary.crs == "EPSG:32633"  # BEFORE's CRS
    assert summary.areas_m2["gained"] == pytest.approx(math.pi * (R_AFTER**2 - R_BEFORE**2) * px, rel=0.01)
    assert summary.areas_m2["lost"] == pytest.approx(math.pi * R_POND**2 * px, rel=0.01)
    assert summary.areas_m2["persistent"] == pytest.approx(math.pi * R_BEFORE**2 * px, rel=0.01)
    run = dict(pyogrio.read_dataframe(out, layer="run")[["key", "value"]].values)
    assert run["compared_in_crs"] == "EPSG:32633"


def _ground_circles():
    """Lake r=600 m -> 1000 m and a pond r=200 m that dries, in UTM 33N near 45 N, 15 E."""
    c = (502_000.0, 4_997_000.0)
    return (
        Point(*c).buffer(600, 256),
        Point(*c).buffer(1000, 256),
        Point(c[0] + 2500, c[1] + 800).buffer(200, 256),
    )


def _to(geom, src, dst):
    t = Transformer.from_crs(src, dst, always_xy=True)
    return shapely.transform(
        shapely.segmentize(geom, 10.0), lambda x, y: t.transform(x, y), interleaved=False
    )


def test_region_runs_in_two_crss_give_the_geometric_truth(tmp_path):
    lake0, lake1, pond = _ground_circles()
    frame = box(499_000, 4_994_000, 506_000, 4_999_000)
    before = write_run(
        tmp_path / "before.gpkg", "EPSG:32633", [SceneTruth("s85", "1985-07-01", [lake0, pond], frame)]
    )
    after_ll = [_to(lake1, "EPSG:32633", "EPSG:4326")]
    after = write_run(
        tmp_path / "after.gpkg",
        "EPSG:4326",
        [SceneTruth("s20", "2020-07-01", after_ll, _to(frame, "EPSG:32633", "EPSG:4326"))],
    )
    out = tmp_path / "change.gpkg"
    summary = water_change(ChangeOptions(before=str(before), after=str(after), output=str(out)))
    area = {n: metric_area_perimeter(gpd.GeoSeries([g], crs="EPSG:32633"))[0][0] for n, g in
            (("lake0", lake0), ("lake1", lake1), ("pond", pond))}  # fmt: skip
    assert summary.areas_m2["gained"] == pytest.approx(area["lake1"] - area["lake0"], rel=1e-3)
    assert summary.areas_m2["lost"] == pytest.approx(area["pond"], rel=1e-3)
    assert summary.areas_m2["persistent"] == pytest.approx(area["lake0"], rel=1e-3)
    assert (summary.before_date, summary.after_date) == ("1985-07-01", "2020-07-01")
    gained = _layer(out, "gained")
    assert list(gained["before_date"]) == ["1985-07-01"] and list(gained["after_date"]) == ["2020-07-01"]
    # the other way round: output in the after map's CRS, same areas
    back = water_change(ChangeOptions(before=str(after), after=str(before), output=str(tmp_path / "b.gpkg")))
    assert back.crs == "EPSG:4326"
    assert back.areas_m2["lost"] == pytest.approx(area["lake1"] - area["lake0"], rel=1e-3)
    assert back.areas_m2["gained"] == pytest.approx(area["pond"], rel=1e-3)


def test_one_dated_run_compares_two_of_its_dates_and_leaves_unobserved_water_unknown(tmp_path):
    lake0, lake1, pond = _ground_circles()
    seen_2019 = box(499_000, 4_994_000, 505_500, 4_999_000)  # holds the lake and the pond
    west = box(499_000, 4_994_000, 504_000, 4_999_000)  # 2020: the lake, not the pond
    east = box(506_000, 4_994_000, 508_000, 4_999_000)  # 2020 only
    flooded_east = box(506_500, 4_995_000, 507_500, 4_996_000)
    run = write_run(
        tmp_path / "run.gpkg",
        "EPSG:32633",
        [
            SceneTruth("a", "2019-05-02", [lake0, pond], seen_2019),
            SceneTruth("b", "2020-05-03T10:20:30Z", [lake1], west),
            SceneTruth("c", "2020-05-03T10:20:55Z", [flooded_east], east),
            SceneTruth("d", "2020-05-04", [], None, status="failed"),
        ],
    )
    out = tmp_path / "change.gpkg"
    summary = water_change(
        ChangeOptions(
            before=str(run), after=str(run), output=str(out), before_date="2019", after_date="2020-05"
        )
    )
    m2 = {n: metric_area_perimeter(gpd.GeoSeries([g], crs="EPSG:32633"))[0][0] for n, g in
          (("lake0", lake0), ("lake1", lake1), ("pond", pond), ("east", flooded_east))}  # fmt: skip
    assert summary.areas_m2["gained"] == pytest.approx(m2["lake1"] - m2["lake0"], rel=1e-6)
    assert summary.areas_m2["lost"] == 0  # the pond dried unseen: 2020 did not look there
    assert summary.areas_m2["unknown"] == pytest.approx(m2["pond"] + m2["east"], rel=1e-6)
    unknown = _layer(out, "unknown")
    assert sorted(unknown["water_on"]) == ["after", "before"]
    assert summary.after_date == "2020-05-03T10:20:30Z/2020-05-03T10:20:55Z"
    assert any("1 failed scene" in n for n in summary.notes)
    with pytest.raises(InputError, match="no scene dated 2018"):
        water_change(
            ChangeOptions(
                before=str(run), after=str(run), output=str(tmp_path / "x.gpkg"), before_date="2018"
            )
        )


def test_reference_water_makes_the_flood_the_new_water(tmp_path):
    lake0, lake1, _ = _ground_circles()
    frame = box(499_000, 4_994_000, 506_000, 4_999_000)
    flood_field = box(500_000, 4_994_500, 500_600, 4_995_000)
    after = write_run(
        tmp_path / "after.gpkg", "EPSG:32633", [SceneTruth("f", "2021-03-01", [lake1, flood_field], frame)]
    )
    reference = tmp_path / "permanent.geojson"
    outside = box(510_000, 4_990_000, 511_000, 4_991_000)  # known water where AFTER did not look
    gpd.GeoDataFrame(geometry=[lake0, outside], crs="EPSG:32633").to_file(reference, driver="GeoJSON")
    out = tmp_path / "flood.gpkg"
    summary = water_change(ChangeOptions(after=str(after), reference=str(reference), output=str(out)))
    m2 = {n: metric_area_perimeter(gpd.GeoSeries([g], crs="EPSG:32633"))[0][0] for n, g in
          (("lake0", lake0), ("lake1", lake1), ("field", flood_field), ("outside", outside))}  # fmt: skip
    assert summary.areas_m2["gained"] == pytest.approx(m2["lake1"] - m2["lake0"] + m2["field"], rel=1e-6)
    assert summary.areas_m2["persistent"] == pytest.approx(m2["lake0"], rel=1e-6)
    assert summary.areas_m2["lost"] == 0
    assert summary.areas_m2["unknown"] == pytest.approx(m2["outside"], rel=1e-6)


def test_outputs_from_before_region_runs_rebuild_the_same_footprint(tmp_path):
    """A single-scene output without a scenes layer: its footprint is rebuilt from the raster
    (valid pixels inside the segmented chips), which gives what the scenes layer says; without
    the raster, the chips alone, and a note says so."""
    before, after = _scenes(tmp_path, hole=(370, 70, 430, 130))
    current, legacy = [], []
    for scene in (before, after):
        gpkg = tmp_path / f"{scene.path.stem}.gpkg"
        segment_raster(segment_spec(raster=str(scene.path), output=str(gpkg), **NAIP))
        current.append(gpkg)
        legacy.append(as_single_scene_output(gpkg, tmp_path / f"{scene.path.stem}_old.gpkg"))
    assert "scenes" not in dict(pyogrio.list_layers(legacy[1]))
    exact = water_change(
        ChangeOptions(before=str(current[0]), after=str(current[1]), output=str(tmp_path / "a.gpkg"))
    )
    rebuilt = water_change(
        ChangeOptions(before=str(legacy[0]), after=str(legacy[1]), output=str(tmp_path / "b.gpkg"))
    )
    assert rebuilt.notes == [] and rebuilt.areas_m2["lost"] == 0
    assert rebuilt.areas_m2 == pytest.approx(exact.areas_m2, rel=1e-9)
    assert rebuilt.observed_m2 == pytest.approx(exact.observed_m2, rel=1e-9)
    after.path.unlink()  # the raster is gone: the footprint falls back to the segmented chips
    without = water_change(
        ChangeOptions(before=str(legacy[0]), after=str(legacy[1]), output=str(tmp_path / "c.gpkg"))
    )
    assert any("footprint taken as the segmented chips" in n for n in without.notes)
    assert without.areas_m2["lost"] > 0  # the hole now reads as observed land: the documented limit
    # the region-run output does not need its raster
    again = water_change(
        ChangeOptions(before=str(current[0]), after=str(current[1]), output=str(tmp_path / "d.gpkg"))
    )
    assert again.areas_m2 == exact.areas_m2 and again.notes == []


def test_one_segment_run_over_dated_rasters_compared_with_itself(tmp_path):
    """A real region run (segment over two rasters dated by their names), compared 2019 -> 2020."""
    before, after = _scenes(tmp_path)
    dated = []
    for scene, name in ((before, "lake_20190601.tif"), (after, "lake_20200601.tif")):
        dated.append(scene.path.rename(tmp_path / name))
    run = tmp_path / "run.gpkg"
    segment_raster(segment_spec(raster=[str(p) for p in dated], output=str(run), **NAIP))
    summary = water_change(
        ChangeOptions(
            before=str(run),
            after=str(run),
            output=str(tmp_path / "c.gpkg"),
            before_date="2019",
            after_date="2020",
        )
    )
    px = _pixel_area(before)
    wb, wa = before.water_mask(), after.water_mask()
    assert (summary.before_date, summary.after_date) == ("2019-06-01", "2020-06-01")
    assert summary.areas_m2["gained"] == pytest.approx((wa & ~wb).sum() * px, rel=0.01)
    assert summary.areas_m2["lost"] == pytest.approx((wb & ~wa).sum() * px, rel=0.01)
    assert summary.areas_m2["persistent"] == pytest.approx((wa & wb).sum() * px, rel=0.01)


def test_bad_inputs_and_existing_output_are_refused_by_name(tmp_path):
    lake0, lake1, _ = _ground_circles()
    frame = box(499_000, 4_994_000, 506_000, 4_999_000)
    run = write_run(tmp_path / "run.gpkg", "EPSG:32633", [SceneTruth("a", "2019-05-02", [lake0], frame)])
    out = tmp_path / "out.gpkg"
    water_change(ChangeOptions(before=str(run), after=str(run), output=str(out)))
    with pytest.raises(OutputExistsError, match="out.gpkg: the output exists") as exists:
        water_change(ChangeOptions(before=str(run), after=str(run), output=str(out)))
    assert (exists.value.code, exists.value.field) == ("output_exists", "output")
    assert cli_message(exists.value).endswith("; use --overwrite to replace it")
    with pytest.raises(InputError, match="nope.gpkg: after file not found"):
        water_change(
            ChangeOptions(before=str(run), after=str(tmp_path / "nope.gpkg"), output=str(out), overwrite=True)
        )
    with pytest.raises(InputError) as no_before:  # the options refuse it: no file is opened
        ChangeOptions(after=str(run), output=str(out), overwrite=True)
    assert cli_message(no_before.value) == "change needs BEFORE, or --reference (known water) in its place"
    with pytest.raises(InputError, match="after date: 'May' is not an ISO 8601 date") as bad_date:
        ChangeOptions(before=str(run), after=str(run), output=str(out), overwrite=True, after_date="May")
    assert (bad_date.value.code, bad_date.value.field) == ("water_map_date", "after_date")
    with pytest.raises(InputError, match="would overwrite the before input"):
        water_change(ChangeOptions(before=str(run), after=str(run), output=str(run), overwrite=True))
    with pytest.raises(InputError, match="cannot write, folder .*nodir does not exist"):
        water_change(
            ChangeOptions(before=str(run), after=str(run), output=str(tmp_path / "nodir" / "c.gpkg"))
        )
    plain = tmp_path / "plain.geojson"
    gpd.GeoDataFrame(geometry=[lake1], crs="EPSG:32633").to_file(plain, driver="GeoJSON")
    with pytest.raises(
        InputError, match="plain.geojson: before must be a GeoPackage written by segment, or a raster"
    ):
        water_change(ChangeOptions(before=str(plain), after=str(run), output=str(out), overwrite=True))


@pytest.mark.slow
def test_cli_prints_the_summary_and_refuses_an_existing_output(tmp_path, capsys):
    before, after = _scenes(tmp_path)
    out = tmp_path / "change.gpkg"
    args = [
        "change",
        str(before.path),
        str(after.path),
        str(out),
        "--preset",
        "naip",
        "--before-date",
        "2019-06-01",
    ]
    assert main([*args, "--after-date", "2020-06-01"]) == 0
    text = capsys.readouterr().out
    assert "water change 2019-06-01 -> 2020-06-01" in text
    for name in ("gained", "lost", "persistent", "unknown"):
        assert name in text
    assert main([*args, "--after-date", "2020-06-01"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: {out}: the output exists; use --overwrite to replace it"
    assert main(["change", str(after.path), str(out)]) == 1
    assert "change needs BEFORE AFTER OUTPUT (or AFTER OUTPUT with --reference)" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--json", "--min-area", "1e12"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["polygons"] == {"gained": 0, "lost": 0, "persistent": 0, "unknown": 0}


def test_worker_runs_a_change_job(tmp_path):
    from paligemma_qgis.cli.worker import run_job
    from paligemma_qgis.core.progress import SilentProgress

    lake0, lake1, _ = _ground_circles()
    frame = box(499_000, 4_994_000, 506_000, 4_999_000)
    a = write_run(tmp_path / "a.gpkg", "EPSG:32633", [SceneTruth("a", "2019-05-02", [lake0], frame)])
    b = write_run(tmp_path / "b.gpkg", "EPSG:32633", [SceneTruth("b", "2020-05-02", [lake1], frame)])
    result = run_job(
        {
            "task": "change",
            "options": {"before": str(a), "after": str(b), "output": str(tmp_path / "c.gpkg")},
        },
        SilentProgress(),
    )
    assert result["areas_m2"]["gained"] > 0 and result["output"] == str(tmp_path / "c.gpkg")
    json.dumps(result)  # JSON-ready for the plugin


# --------------------------------------------------------------------------- real Landsat pair


@pytest.mark.slow
@pytest.mark.shared_data
def test_pucallpa_gains_and_losses_are_the_polygon_differences(shared_data, tmp_path):
    """The Ucayali moved between 1985 and 2020: gained/lost equal the polygon differences of the
    two segment outputs, whether change reads the GeoPackages or segments the rasters itself."""
    rasters = {y: shared_data / "rasters" / f"opengeos_landsat_pucallpa_{y}.tif" for y in (1985, 2020)}
    engine = {"engine": "water-index", "green": 4, "swir": 1}
    gpkg = {}
    for year, raster in rasters.items():
        gpkg[year] = tmp_path / f"p{year}.gpkg"
        segment_raster(segment_spec(raster=str(raster), output=str(gpkg[year]), **engine))
    w = {y: shapely.union_all(_layer(p, "water").geometry.values) for y, p in gpkg.items()}

    def m2(geom):
        return metric_area_perimeter(gpd.GeoSeries([geom], crs="EPSG:4326"))[0][0]

    truth = {
        "gained": m2(w[2020] - w[1985]),
        "lost": m2(w[1985] - w[2020]),
        "persistent": m2(w[1985] & w[2020]),
    }
    assert truth["gained"] > 10e6 and truth["lost"] > 10e6  # km2 of river migration, not noise
    from_maps = water_change(
        ChangeOptions(
            before=str(gpkg[1985]), after=str(gpkg[2020]), output=str(tmp_path / "c1.gpkg"),
            before_date="1985", after_date="2020",
        )
    )  # fmt: skip
    from_rasters = water_change(
        ChangeOptions(
            before=str(rasters[1985]),
            after=str(rasters[2020]),
            output=str(tmp_path / "c2.gpkg"),
            segment=engine,
        )
    )
    for name, area in truth.items():
        assert from_maps.areas_m2[name] == pytest.approx(area, rel=0.01), name
        assert from_rasters.areas_m2[name] == pytest.approx(from_maps.areas_m2[name], rel=1e-9), name
    assert from_maps.areas_m2["unknown"] == 0 and from_maps.notes == []

    # the 2020 map in UTM 18S (polygons and footprint reprojected): the same answer
    from paligemma_qgis.core.temporal.map_reader import read_water_map

    m = read_water_map(gpkg[2020]).to_crs("EPSG:32718")
    utm = write_run(
        tmp_path / "p2020_utm.gpkg", "EPSG:32718", [SceneTruth("p2020", "2020-07-01", [m.water], m.observed)]
    )
    across = water_change(
        ChangeOptions(before=str(gpkg[1985]), after=str(utm), output=str(tmp_path / "c3.gpkg"))
    )
    for name, area in truth.items():
        assert across.areas_m2[name] == pytest.approx(area, rel=0.01), name
    assert across.areas_m2["unknown"] < 1e-4 * truth["gained"]
