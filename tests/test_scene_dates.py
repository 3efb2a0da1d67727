"""Dates from file names, at the precision they are written in, and partial dates downstream."""

from __future__ import annotations

import pyogrio
import pytest
from affine import Affine
from synthetic_rasters import make_scene
from water_series import SceneTruth, pixel_box, write_run

from paligemma_qgis.core.inputs.scenes import date_from_name, normalise_date, resolve_inputs
from paligemma_qgis.core.run.driver import segment_raster
from paligemma_qgis.core.specs import segment_spec
from paligemma_qgis.core.temporal.change import ChangeOptions, water_change
from paligemma_qgis.core.temporal.occurrence import OccurrenceOptions, _within, water_occurrence


@pytest.mark.parametrize(
    "name,date",
    [
        ("1985.tif", "1985"),  # a year is not a day
        ("2019-08.tif", "2019-08"),
        ("2019_08.tif", "2019-08"),
        ("2019-08-31.tif", "2019-08-31"),
        ("2019_08_31.tif", "2019-08-31"),
        ("20190831.tif", "2019-08-31"),
        ("m_4709963_se_14_1_20200831.tif", "2020-08-31"),  # a full date anywhere in the name
        ("LC08_L2SP_2020-06-01_T1.TIF", "2020-06-01"),
        ("/vsis3/bucket/1985.tif", "1985"),
        ("/data/2020/scene.tif", None),  # a folder's name dates nothing
        ("tile_2019.tif", None),  # a year inside a name may be a tile number
        ("chip_201908.tif", None),
        ("2019-13.tif", None),
        ("1885.tif", None),
        ("19850.tif", None),
        ("2019-08-32.tif", None),
        ("scene.tif", None),
    ],
)
def test_date_from_name(name: str, date: str | None) -> None:
    assert date_from_name(name) == date


def test_metadata_dates_keep_their_precision() -> None:
    assert normalise_date("1985") == "1985"
    assert normalise_date("2020:08:31 10:00:00") == "2020-08-31T10:00:00Z"
    assert normalise_date("not a date") is None


def test_a_folder_of_yearly_scenes_is_dated(tmp_path) -> None:
    for name in ("1985.tif", "2020.tif", "2019-08.tif", "lake_20200831.tif", "tile_2019.tif"):
        (tmp_path / name).write_bytes(b"")  # expansion opens nothing
    dates = {s.id: s.date for s in resolve_inputs([str(tmp_path)])}
    assert dates == {
        "1985": "1985",
        "2019-08": "2019-08",
        "2020": "2020",
        "lake_20200831": "2020-08-31",
        "tile_2019": None,
    }


@pytest.mark.parametrize(
    "date,start,end,inside",
    [
        ("1985", "1985-06-01", None, True),  # the year overlaps the range
        ("1985", "1986", None, False),
        ("1985", None, "1984-12-31", False),
        ("2020-08-31", None, "2020", True),  # --end 2020 keeps every day of 2020
        ("2020-08-31", "2020-09", None, False),
        ("2019-08", "2019-08-15", "2019-08-20", True),
        ("2019-07-10", "2019-02-01", "2019-05-31", False),
    ],
)
def test_partial_dates_overlap_the_range(date, start, end, inside) -> None:
    assert _within(date, start, end) is inside


def test_yearly_scenes_segment_and_count_by_year(tmp_path) -> None:
    """1985.tif and 2020.tif: dated '1985' and '2020' in the output, selected and counted by year."""
    folder = tmp_path / "years"
    folder.mkdir()
    for year, seed in (("1985", 0), ("2020", 1)):
        make_scene(folder / f"{year}.tif", width=200, height=160, seed=seed)
    out = tmp_path / "run.gpkg"
    segment_raster(segment_spec(raster=str(folder), output=str(out), nir=4))
    scenes = pyogrio.read_dataframe(out, layer="scenes", read_geometry=False)
    assert sorted(scenes["date"]) == ["1985", "2020"]
    water = pyogrio.read_dataframe(out, layer="water", read_geometry=False)
    assert set(water["date"]) == {"1985", "2020"}
    occ = water_occurrence(OccurrenceOptions(inputs=[str(out)], output=str(tmp_path / "o.tif"), end="2000"))
    assert occ.observations == 1 and occ.dates == ["1985"]
    change = water_change(
        ChangeOptions(
            before=str(out),
            after=str(out),
            before_date="1985",
            after_date="2020",
            output=str(tmp_path / "c.gpkg"),
        )
    )
    assert (change.before_date, change.after_date) == ("1985", "2020")


def test_partial_dates_in_a_dated_run(tmp_path) -> None:
    t = Affine(10, 0, 500_000, 0, -10, 5_000_000)
    lake, frame = pixel_box(t, 10, 10, 30, 30), pixel_box(t, 0, 0, 60, 40)
    scenes = [SceneTruth(name, date, [lake], frame) for name, date in (("a", "1985"), ("b", "2019-08"))]
    run = write_run(tmp_path / "run.gpkg", "EPSG:32633", scenes, transform=t, width=60, height=40)
    occ = water_occurrence(
        OccurrenceOptions(inputs=[str(run)], output=str(tmp_path / "o.tif"), start="1985-03-01", end="2019")
    )
    assert occ.observations == 2 and sorted(occ.dates) == ["1985", "2019-08"]
