"""``occurrence``: % of valid observations that were water, on six dated synthetic observations."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
from affine import Affine
from water_series import SceneTruth, pixel_box, write_run

from paligemma_qgis.cli import main
from paligemma_qgis.cli.wording import cli_message
from paligemma_qgis.core.errors import InputError, OutputExistsError
from paligemma_qgis.core.temporal.change import ChangeOptions, water_change
from paligemma_qgis.core.temporal.occurrence import OccurrenceOptions, water_occurrence

T = Affine(10, 0, 500_000, 0, -10, 5_000_000)  # UTM 33N, 10 m pixels
W, H = 120, 80
# pixel boxes (col0, row0, col1, row1)
LAKE = (10, 10, 30, 30)  # water on every date
SEASONAL = (40, 10, 60, 30)  # water on the first three dates
RARE = (70, 10, 90, 30)  # water on the fifth date only
HOLE = (20, 0, 50, 20)  # cloud (nodata) on the fourth date, over part of LAKE and SEASONAL
MAIN = (0, 0, 100, 80)  # dates 1-5 look here
STRIP = (0, 0, 120, 40)  # date 6 looks here: x 100-120 seen once, x 100-120 / y 40-80 never
DATES = ["2019-01-10", "2019-02-11", "2019-03-12", "2019-04-13", "2019-05-14", "2019-06-15"]


def _box(b):
    return pixel_box(T, *b)


def _scenes() -> list[SceneTruth]:
    """Six observations; the first is two scenes of one day (west and east halves)."""
    lake, seasonal, rare = _box(LAKE), _box(SEASONAL), _box(RARE)
    west, east = _box((0, 0, 50, 80)), _box((50, 0, 100, 80))
    out = [
        SceneTruth("d1w", "2019-01-10T10:00:00Z", [lake, seasonal & west], west),
        SceneTruth("d1e", "2019-01-10T10:00:25Z", [seasonal & east], east),
        SceneTruth("d2", DATES[1], [lake, seasonal], _box(MAIN)),
        SceneTruth("d3", DATES[2], [lake, seasonal], _box(MAIN)),
        SceneTruth("d4", DATES[3], [lake - _box(HOLE)], _box(MAIN) - _box(HOLE)),
        SceneTruth("d5", DATES[4], [lake, rare], _box(MAIN)),
        SceneTruth("d6", DATES[5], [lake], _box(STRIP)),
        SceneTruth("bad", "2019-07-01", [], None, status="failed"),
    ]
    return out


def _expected() -> tuple[np.ndarray, np.ndarray]:
    """(observations, water) per pixel, written out by hand from the boxes above."""
    count = np.zeros((H, W), int)
    water = np.zeros((H, W), int)

    def sl(b):
        return slice(b[1], b[3]), slice(b[0], b[2])

    count[sl(MAIN)] += 5
    count[sl(HOLE)] -= 1
    count[sl(STRIP)] += 1
    water[sl(LAKE)] += 6
    water[sl(SEASONAL)] += 3
    water[sl(RARE)] += 1
    water[sl((20, 10, 30, 20))] -= 1  # LAKE under the cloud on date 4
    return count, water


@pytest.fixture
def run_gpkg(tmp_path):
    return write_run(tmp_path / "run.gpkg", "EPSG:32633", _scenes(), transform=T, width=W, height=H)


def _read(tif):
    """(bands, facts about the file) of a GeoTIFF, closed again."""
    from types import SimpleNamespace

    with rasterio.open(tif) as ds:
        facts = SimpleNamespace(
            transform=ds.transform, crs=ds.crs, nodata=ds.nodata, descriptions=ds.descriptions, res=ds.res
        )
        return ds.read(), facts


def test_occurrence_gives_the_exact_percentages(run_gpkg, tmp_path):
    out = tmp_path / "occ.tif"
    classes = tmp_path / "classes.gpkg"
    summary = water_occurrence(
        OccurrenceOptions(inputs=[str(run_gpkg)], output=str(out), classes=str(classes))
    )
    assert summary.observations == 6 and summary.dates == DATES
    assert (summary.width, summary.height) == (W, H) and summary.resolution == (10.0, 10.0)
    bands, ds = _read(out)
    assert ds.transform == T and ds.crs.to_epsg() == 32633 and ds.nodata == -1
    assert ds.descriptions == ("occurrence", "observations", "water")
    count, water = _expected()
    np.testing.assert_array_equal(bands[1], count)
    np.testing.assert_array_equal(bands[2], water)
    expected = np.where(count > 0, 100.0 * water / np.maximum(count, 1), -1.0).astype(np.float32)
    np.testing.assert_array_equal(bands[0], expected)
    # spot values, stated plainly
    occ = bands[0]
    assert occ[25, 15] == 100  # lake, six of six
    assert occ[15, 25] == 100  # lake under the cloud: five of five, the cloud is not "dry"
    assert occ[25, 45] == 50  # seasonal: three of six
    assert occ[15, 45] == 60  # seasonal under the cloud: three of five
    assert occ[25, 75] == pytest.approx(100 / 6)  # rare: one of six
    assert occ[60, 50] == 0 and occ[20, 110] == 0  # land, and the strip seen once (date 6)
    assert occ[60, 110] == -1 and bands[1][60, 110] == 0  # never observed: nodata

    px = summary.observed_km2 * 1e6 / (count > 0).sum()
    assert px == pytest.approx(100, rel=1e-3)  # 10 m pixels, equal-area
    layers = dict(pyogrio.list_layers(classes))
    assert set(layers) == {"permanent", "seasonal", "rare", "observed", "run"}
    for name, box_px in (("permanent", LAKE), ("seasonal", SEASONAL), ("rare", RARE)):
        gdf = gpd.read_file(classes, layer=name)
        assert len(gdf) == 1 and list(gdf["class"]) == [name]
        assert gdf.geometry.iloc[0].equals(_box(box_px)), name
        assert summary.class_km2[name] == pytest.approx(400 * px / 1e6, rel=1e-6)
    observed = gpd.read_file(classes, layer="observed")
    assert observed["area_m2"].sum() == pytest.approx((count > 0).sum() * px, rel=1e-6)


def test_min_observations_and_date_range(run_gpkg, tmp_path):
    out = tmp_path / "occ.tif"
    water_occurrence(OccurrenceOptions(inputs=[str(run_gpkg)], output=str(out), min_observations=6))
    bands, _ = _read(out)
    count, water = _expected()
    np.testing.assert_array_equal(bands[0] >= 0, count >= 6)
    water_occurrence(
        OccurrenceOptions(
            inputs=[str(run_gpkg)], output=str(out), start="2019-02-01", end="2019-05-31", overwrite=True
        )
    )
    bands, _ = _read(out)
    assert bands[1].max() == 4  # dates 2-5
    assert bands[0][25, 45] == 100 * 2 / 4  # seasonal: dates 2 and 3 of 2-5


def test_a_folder_of_single_date_files_counts_the_same(tmp_path, run_gpkg):
    folder = tmp_path / "series"
    folder.mkdir()
    scenes = _scenes()
    for s in scenes:
        write_run(folder / f"{s.scene}.gpkg", "EPSG:32633", [s], transform=T, width=W, height=H)
    water_occurrence(OccurrenceOptions(inputs=[str(folder)], output=str(tmp_path / "a.tif")))
    water_occurrence(OccurrenceOptions(inputs=[str(run_gpkg)], output=str(tmp_path / "b.tif")))
    a, _ = _read(tmp_path / "a.tif")
    b, _ = _read(tmp_path / "b.tif")
    np.testing.assert_array_equal(a, b)


def test_coarser_grid_in_another_crs(run_gpkg, tmp_path):
    """Resampled by pixel centres onto 20 m pixels of UTM 32N: the lake stays 100 %, the areas hold."""
    out = tmp_path / "occ.tif"
    summary = water_occurrence(
        OccurrenceOptions(inputs=[str(run_gpkg)], output=str(out), crs="EPSG:32632", resolution=20)
    )
    bands, ds = _read(out)
    assert ds.crs.to_epsg() == 32632 and ds.res == (20, 20)
    assert (bands[0] == 100).sum() * 400 == pytest.approx(400 * 100, rel=0.1)  # the lake, 4 ha
    assert summary.observed_km2 == pytest.approx(8800 * 100 / 1e6, rel=0.02)


def test_permanent_class_is_a_flood_reference(run_gpkg, tmp_path):
    classes = tmp_path / "classes.gpkg"
    water_occurrence(
        OccurrenceOptions(inputs=[str(run_gpkg)], output=str(tmp_path / "o.tif"), classes=str(classes))
    )
    flood = _box((0, 50, 60, 70))
    event = write_run(
        tmp_path / "event.gpkg",
        "EPSG:32633",
        [SceneTruth("e", "2019-08-01", [_box(LAKE), flood], _box((0, 0, 120, 80)))],
    )
    summary = water_change(
        ChangeOptions(after=str(event), reference=str(classes), output=str(tmp_path / "f.gpkg"))
    )
    px = 100 / 0.9996**2  # 10 m of UTM grid is 10 / 0.9996 m on the ground at the central meridian
    assert summary.areas_m2["gained"] == pytest.approx(60 * 20 * px, rel=1e-3)
    assert summary.areas_m2["persistent"] == pytest.approx(400 * px, rel=1e-3)
    assert summary.areas_m2["lost"] == 0 and summary.areas_m2["unknown"] == 0
    # the never-observed corner is not compared: the reference only knows where it looked
    assert summary.observed_m2 == pytest.approx(8800 * px, rel=1e-3)


def test_errors_name_the_problem(run_gpkg, tmp_path):
    out = tmp_path / "occ.tif"
    water_occurrence(OccurrenceOptions(inputs=[str(run_gpkg)], output=str(out)))
    with pytest.raises(OutputExistsError, match="occ.tif: the output exists"):
        water_occurrence(OccurrenceOptions(inputs=[str(run_gpkg)], output=str(out)))
    # Options that cannot be right fail where they are made, before any file is read.
    with pytest.raises(InputError, match="must be a GeoTIFF"):
        OccurrenceOptions(inputs=[str(run_gpkg)], output=str(tmp_path / "o.png"))
    with pytest.raises(InputError, match="0 < rare <= permanent <= 100"):
        OccurrenceOptions(inputs=[str(run_gpkg)], output=str(tmp_path / "b.tif"), rare=95)
    with pytest.raises(InputError, match="missing.gpkg: water map not found"):
        water_occurrence(
            OccurrenceOptions(inputs=[str(tmp_path / "missing.gpkg")], output=str(tmp_path / "c.tif"))
        )
    with pytest.raises(InputError, match="cannot write, folder .*nodir does not exist"):
        water_occurrence(OccurrenceOptions(inputs=[str(run_gpkg)], output=str(tmp_path / "nodir" / "o.tif")))
    with pytest.raises(InputError, match="no observation left") as none_left:
        water_occurrence(
            OccurrenceOptions(inputs=[str(run_gpkg)], output=str(tmp_path / "d.tif"), start="2030-01-01")
        )
    assert (
        cli_message(none_left.value) == "no observation left; check --start / --end against the scene dates"
    )
    assert not list(tmp_path.glob(".*tmp*"))


def test_cli_and_worker(run_gpkg, tmp_path, capsys):
    out = tmp_path / "occ.tif"
    assert main(["occurrence", str(run_gpkg), str(out), "--classes", str(tmp_path / "c.gpkg")]) == 0
    text = capsys.readouterr().out
    assert "water occurrence from 6 observations (2019-01-10 .. 2019-06-15)" in text
    assert "permanent" in text
    assert main(["occurrence", str(run_gpkg), str(out)]) == 1
    assert "output exists" in capsys.readouterr().err

    from paligemma_qgis.cli.worker import run_job
    from paligemma_qgis.core.progress import SilentProgress

    result = run_job(
        {"task": "occurrence", "options": {"inputs": [str(run_gpkg)], "output": str(tmp_path / "w.tif")}},
        SilentProgress(),
    )
    assert result["observations"] == 6
    json.dumps(result)


def test_cancel_leaves_no_output(run_gpkg, tmp_path):
    from paligemma_qgis.core.progress import CallbackProgress, Cancelled

    seen = []
    progress = CallbackProgress(
        on_report=lambda done, total, message: seen.append(message),
        is_cancelled=lambda: "counting observations" in seen,
    )
    with pytest.raises(Cancelled):
        water_occurrence(
            OccurrenceOptions(inputs=[str(run_gpkg)], output=str(tmp_path / "o.tif"), block=32), progress
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.gpkg"]
    with pytest.raises(InputError, match="would overwrite an input"):
        water_occurrence(
            OccurrenceOptions(
                inputs=[str(run_gpkg)], output=str(tmp_path / "o.tif"), classes=str(run_gpkg), overwrite=True
            )
        )


def test_a_real_segment_run_over_six_dated_rasters(tmp_path):
    """segment over six dated synthetic scenes (one with a nodata hole), then occurrence: the
    counts are the truth masks' counts, pixel for pixel (same grid, no resampling)."""
    from shapely.geometry import Point, box
    from synthetic_rasters import make_scene

    from paligemma_qgis.core.run.driver import segment_raster
    from paligemma_qgis.core.specs import segment_spec

    lake, seasonal, pond = Point(60, 60).buffer(40, 64), box(140, 30, 220, 90), Point(180, 160).buffer(18, 32)
    plan = [[lake, seasonal], [lake, seasonal], [lake, seasonal], [lake], [lake, pond], [lake]]
    hole = (20, 20, 80, 60)  # cols 20-80, rows 20-60: a cloud masked as nodata on the fourth date
    counts = np.zeros((200, 240), int)
    waters = np.zeros((200, 240), int)
    paths = []
    for i, water in enumerate(plan):
        scene = make_scene(
            tmp_path / f"lake_2021{i + 1:02d}15.tif", width=240, height=200, water_px=water, seed=i
        )
        valid = np.ones((200, 240), bool)
        if i == 3:
            with rasterio.open(scene.path, "r+") as ds:
                data = ds.read()
                data[:, hole[1] : hole[3], hole[0] : hole[2]] = 0
                ds.write(data)
            valid[hole[1] : hole[3], hole[0] : hole[2]] = False
        counts += valid
        waters += scene.water_mask() & valid
        paths.append(str(scene.path))
    run = tmp_path / "run.gpkg"
    segment_raster(segment_spec(raster=paths, output=str(run), engine="water-index", preset="naip"))
    summary = water_occurrence(OccurrenceOptions(inputs=[str(run)], output=str(tmp_path / "occ.tif")))
    assert summary.observations == 6 and summary.dates[0] == "2021-01-15"
    bands, facts = _read(tmp_path / "occ.tif")
    assert (facts.res, summary.width, summary.height) == ((10.0, 10.0), 240, 200)
    np.testing.assert_array_equal(bands[1], counts)
    np.testing.assert_array_equal(bands[2], waters)
    assert (
        bands[0][60, 60] == 100 and bands[0][60, 180] == 50 and bands[0][160, 180] == pytest.approx(100 / 6)
    )
    assert bands[0][40, 50] == 100 and bands[1][40, 50] == 5  # the lake under the cloud: five of five
